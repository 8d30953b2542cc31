//! Time as data: the core never reads a clock, callers pass `now` in.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// An instant on the wall clock, in milliseconds since the Unix epoch.
///
/// Every core function that needs the time takes one of these; adapters make it with
/// [`Timestamp::from_system_time`]. Milliseconds keep back-off and refresh times precise while
/// staying a plain integer for persistence and language bindings.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `ms` milliseconds after the Unix epoch.
    pub const fn from_unix_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// The instant `s` seconds after the Unix epoch.
    pub const fn from_unix_seconds(s: i64) -> Self {
        Self(s.saturating_mul(1000))
    }

    /// Converts a [`SystemTime`] (times before 1970 count as negative).
    pub fn from_system_time(t: SystemTime) -> Self {
        // Whole seconds and the milliseconds within them, without `as_millis`'s 128-bit sum (the
        // clock is read on every cache hit).
        let millis = |d: Duration| {
            i64::try_from(d.as_secs())
                .ok()
                .and_then(|s| s.checked_mul(1000))
                .map_or(i64::MAX, |ms| ms.saturating_add(i64::from(d.subsec_millis())))
        };
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(millis(d)),
            Err(e) => Self(-millis(e.duration())),
        }
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch, rounded down.
    pub const fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This instant plus `d`, saturating at the end of time.
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_ms(d)))
    }

    /// This instant minus `d`, saturating at the start of time.
    pub fn minus(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(duration_ms(d)))
    }

    /// This instant shifted by a signed number of milliseconds.
    pub const fn offset_by(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// How long after `earlier` this instant is; zero when it is not after it.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// Parses an RFC 3339 date-time (`2024-03-26T08:47:15.356Z`, `2022-01-01T00:00:00+02:00`).
    /// Fractions beyond milliseconds are truncated.
    ///
    /// An offset that moves the instant out of the years 0000 to 9999 in UTC (such as
    /// `0000-01-01T00:00:00+00:01`) is refused, since [`to_rfc3339`](Self::to_rfc3339) could not
    /// write it back.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
        let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
        i64::try_from(ms)
            .ok()
            .filter(|ms| (FIRST_RFC3339_MS..=LAST_RFC3339_MS).contains(ms))
            .map(Self)
    }

    /// Formats as RFC 3339 in UTC with millisecond precision, e.g. `2024-03-26T08:47:15.356Z`.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
            return format!("@{}ms", self.0);
        };
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }

    /// Parses an HTTP `Date` header value (IMF-fixdate, RFC 850 or asctime form).
    pub fn parse_http_date(s: &str) -> Option<Self> {
        httpdate::parse_http_date(s.trim()).ok().map(Self::from_system_time)
    }

    /// Formats as an HTTP `Date` header value (IMF-fixdate); instants before 1970 give the epoch,
    /// and instants after 9999 the last second of 9999 (the form has four-digit years).
    pub fn to_http_date(self) -> String {
        /// `Fri, 31 Dec 9999 23:59:59 GMT`, the last instant `httpdate` can format.
        const LAST_HTTP_DATE_SECS: u64 = 253_402_300_799;
        let secs = u64::try_from(self.unix_seconds()).unwrap_or(0).min(LAST_HTTP_DATE_SECS);
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// `0000-01-01T00:00:00.000Z`, the first instant RFC 3339 can write in UTC.
const FIRST_RFC3339_MS: i64 = -62_167_219_200_000;
/// `9999-12-31T23:59:59.999Z`, the last.
const LAST_RFC3339_MS: i64 = 253_402_300_799_999;

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Serde helpers for RFC 3339 fields of the API's JSON models: a [`Timestamp`] as an RFC 3339
/// string, read in place (no copy of the string is made).
pub(crate) mod rfc3339 {
    use std::fmt;

    use serde::Serializer;
    use serde::de::{self, Deserializer, Visitor};

    use super::Timestamp;

    pub(crate) fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        d.deserialize_str(Rfc3339)
    }

    /// Reads an RFC 3339 string.
    struct Rfc3339;

    impl Visitor<'_> for Rfc3339 {
        type Value = Timestamp;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 date-time")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
            Timestamp::parse_rfc3339(s).ok_or_else(|| {
                E::custom(format!(
                    "`{}` is not an RFC 3339 date-time",
                    crate::redact::excerpt(s, 40)
                ))
            })
        }
    }

    pub(crate) mod option {
        use std::fmt;

        use serde::Serializer;
        use serde::de::{self, Deserializer, Visitor};

        use super::Timestamp;

        pub(crate) fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&t.to_rfc3339()),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            d.deserialize_option(Optional)
        }

        /// Reads `null` or an RFC 3339 string.
        struct Optional;

        impl<'de> Visitor<'de> for Optional {
            type Value = Option<Timestamp>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 date-time or null")
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::deserialize(d).map(Some)
            }
        }
    }
}

/// The difference between the server's clock and ours, learned from `Date` headers.
///
/// `server_time = local_time + offset`. JWT times are computed on the server's clock so a
/// machine whose clock is wrong by hours still gets valid JWTs.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockOffset {
    /// Server minus local, in milliseconds.
    pub millis: i64,
}

impl ClockOffset {
    /// The offset a response's `Date` header shows, given when (locally) it was received.
    ///
    /// `Date` has one-second resolution, so offsets under a second are reported as zero.
    pub fn from_date_header(date: &str, received_at: Timestamp) -> Option<Self> {
        let server = Timestamp::parse_http_date(date)?;
        // `Date` is truncated to the second: the server's clock was somewhere in the second
        // that follows it, so take its middle.
        // Saturating: `received_at` is the caller's clock, which may be absurd.
        let raw = (server.unix_millis() + 500).saturating_sub(received_at.unix_millis());
        // The header truncates to the second: anything within (-1 s, +1 s) is noise.
        let millis = if raw.unsigned_abs() < 1000 { 0 } else { raw };
        Some(Self { millis })
    }

    /// The server's time at local instant `now`.
    pub fn server_time(self, now: Timestamp) -> Timestamp {
        now.offset_by(self.millis)
    }

    /// The local instant at which the server's clock shows `server`.
    pub fn local_time(self, server: Timestamp) -> Timestamp {
        server.offset_by(self.millis.saturating_neg())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_forms() {
        let z = Timestamp::parse_rfc3339("2022-01-01T00:00:00Z").unwrap();
        assert_eq!(z.unix_seconds(), 1_640_995_200);
        let frac = Timestamp::parse_rfc3339("2024-03-26T08:47:15.356Z").unwrap();
        assert_eq!(frac.unix_millis() % 1000, 356);
        let off = Timestamp::parse_rfc3339("2022-01-01T02:00:00+02:00").unwrap();
        assert_eq!(off, z);
        let nanos = Timestamp::parse_rfc3339("2022-01-01T00:00:00.123456789Z").unwrap();
        assert_eq!(nanos.unix_millis(), z.unix_millis() + 123);
        assert!(Timestamp::parse_rfc3339("2022-01-01").is_none());
        assert!(Timestamp::parse_rfc3339("").is_none());
        assert_eq!(frac.to_rfc3339(), "2024-03-26T08:47:15.356Z");
        assert_eq!(
            z.plus(Duration::from_millis(120)).to_rfc3339(),
            "2022-01-01T00:00:00.120Z"
        );
        assert_eq!(Timestamp::parse_rfc3339(&z.to_rfc3339()), Some(z));
        // Found by `cargo fuzz run time`: offsets that leave the years 0000-9999 in UTC printed
        // as text (`-001-12-31T23:59:00.000Z`) that does not parse back.
        assert_eq!(Timestamp::parse_rfc3339("0000-01-01T00:00:00+00:01"), None);
        assert_eq!(Timestamp::parse_rfc3339("9999-12-31T23:59:59-00:01"), None);
        for edge in ["0000-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"] {
            assert_eq!(Timestamp::parse_rfc3339(edge).unwrap().to_rfc3339(), edge);
        }
    }

    #[test]
    fn http_date_and_offset() {
        let t = Timestamp::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.unix_seconds(), 784_111_777);
        assert_eq!(t.to_http_date(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(Timestamp::parse_http_date("yesterday").is_none());

        let local = Timestamp::from_unix_millis((784_111_777 - 7200) * 1000 + 500);
        let off = ClockOffset::from_date_header("Sun, 06 Nov 1994 08:49:37 GMT", local).unwrap();
        assert_eq!(off.millis, 7_200_000);
        assert_eq!(off.server_time(local), t.plus(Duration::from_millis(500)));
        assert_eq!(off.local_time(t.plus(Duration::from_millis(500))), local);
        // Sub-second differences are the header's rounding, not skew.
        let near = Timestamp::from_unix_millis(784_111_777_400);
        assert_eq!(
            ClockOffset::from_date_header("Sun, 06 Nov 1994 08:49:37 GMT", near)
                .unwrap()
                .millis,
            0
        );
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        // Found by `cargo fuzz run time`: httpdate panics past 9999, and the offset overflowed.
        let far = Timestamp::from_unix_millis(1 << 62);
        assert_eq!(far.to_http_date(), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(
            Timestamp::from_unix_millis(i64::MAX).to_http_date(),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(
            Timestamp::from_unix_millis(i64::MIN).to_http_date(),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let min = ClockOffset::from_date_header(date, Timestamp::from_unix_millis(i64::MIN)).unwrap();
        assert_eq!(min.millis, i64::MAX);
        let max = ClockOffset::from_date_header(date, Timestamp::from_unix_millis(i64::MAX)).unwrap();
        assert!(max.millis < -1_000);
        assert_eq!(
            max.local_time(max.server_time(Timestamp::from_unix_millis(0)))
                .unix_millis(),
            0
        );
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_unix_millis(i64::MAX - 1);
        assert_eq!(t.plus(Duration::from_secs(10)).unix_millis(), i64::MAX);
        assert_eq!(
            Timestamp::from_unix_seconds(5).saturating_since(Timestamp::from_unix_seconds(9)),
            Duration::ZERO
        );
        assert_eq!(Timestamp::from_unix_millis(-1).unix_seconds(), -1);
    }
}
