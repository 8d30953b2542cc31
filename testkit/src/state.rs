//! The registry's data: apps, installations, tokens, the clock, faults and the request log.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};

/// A fault to inject into the next requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a NestJS-style error body, with `Retry-After` (seconds) when given.
    Status {
        /// The status code.
        status: u16,
        /// `Retry-After` in seconds.
        retry_after: Option<u64>,
    },
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer 200 with a body that is not JSON.
    MalformedBody,
    /// Read the request, then close the connection without answering.
    DropConnection,
    /// Answer with a redirect to `location`.
    Redirect {
        /// Where to.
        location: String,
        /// 301, 302, 303, 307 or 308.
        status: u16,
    },
}

/// Probabilities of faults to inject at random into every request, on every endpoint (token
/// mints included), drawn from a seeded generator so that a run can be reproduced.
///
/// Each request draws once: with probability `server_error` it is answered 500, 502 or 503
/// without `Retry-After`; `drop_connection`, the connection is closed unanswered;
/// `malformed_body`, a 200 whose body is not JSON; `retry_after`, a 429 or 503 with
/// `Retry-After: retry_after_secs`; `delay`, it is answered normally after a pause of up to
/// `max_delay`. Otherwise it is answered normally. The bands do not overlap, so their sum must be
/// at most 1. Faults queued with [`inject`](crate::FakeRegistry::inject) come first. The
/// registry's own state (tokens, [`token_is_valid`](crate::FakeRegistry::token_is_valid)) is
/// never faulted: a faulted request changes nothing (a delayed one is then served normally).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultRates {
    /// 500/502/503 without `Retry-After`.
    pub server_error: f64,
    /// Close the connection without answering.
    pub drop_connection: f64,
    /// 200 with a body that is not JSON.
    pub malformed_body: f64,
    /// 429 or 503 (alternately) with `Retry-After`.
    pub retry_after: f64,
    /// The `Retry-After` value, in seconds.
    pub retry_after_secs: u64,
    /// Answer normally after a random pause.
    pub delay: f64,
    /// The longest pause.
    pub max_delay: Duration,
    /// Seeds the generator (the same seed and the same order of requests give the same faults).
    pub seed: u64,
}

/// How many faults [`FaultRates`] injected, by kind (queued faults are not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InjectedFaults {
    /// 500/502/503 without `Retry-After`.
    pub server_error: u64,
    /// Connections closed unanswered.
    pub drop_connection: u64,
    /// 200s with a body that is not JSON.
    pub malformed_body: u64,
    /// 429/503 with `Retry-After`.
    pub retry_after: u64,
    /// Delayed answers.
    pub delay: u64,
}

/// What the registry thinks of an access token right now (see
/// [`FakeRegistry::token_status`](crate::FakeRegistry::token_status)).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TokenStatus {
    /// Issued, not revoked, not expired: requests with it are served.
    Valid,
    /// Past its `expiresAt` on the registry's clock.
    Expired,
    /// Revoked (and possibly also expired).
    Revoked,
    /// Never issued by this registry.
    Unknown,
}

/// A small seeded generator (splitmix64) for the random faults: reproducible, no dependency.
#[derive(Debug)]
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One request as the registry received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path with its query.
    pub path: String,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// When it arrived, on the registry's clock.
    pub at: SystemTime,
    /// The status answered (0 when the connection was dropped).
    pub status: u16,
}

impl RecordedRequest {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub(crate) struct App {
    pub(crate) public_key: Vec<u8>,
    pub(crate) name_id: String,
}

pub(crate) struct Installation {
    pub(crate) id: String,
    pub(crate) app_id: String,
    pub(crate) created: i64,
    pub(crate) permissions: Vec<(String, String)>,
    pub(crate) organization: Value,
}

pub(crate) struct IssuedToken {
    pub(crate) app_id: String,
    pub(crate) installation: Option<String>,
    pub(crate) expires: i64,
    pub(crate) revoked: bool,
}

pub(crate) struct State {
    pub(crate) apps: HashMap<String, App>,
    /// By id, in the order they were made.
    pub(crate) installations: IndexMap<String, Installation>,
    pub(crate) tokens: HashMap<String, IssuedToken>,
    pub(crate) clock_offset_ms: i64,
    pub(crate) token_lifetime: Duration,
    pub(crate) faults: VecDeque<(Option<String>, Fault)>,
    pub(crate) requests: Vec<RecordedRequest>,
    /// How many recorded requests were taken away before `requests[0]` (so that an answer in
    /// flight finds its record by sequence number after the log was drained).
    pub(crate) requests_taken: usize,
    pub(crate) fault_rates: Option<(FaultRates, SplitMix)>,
    pub(crate) injected: InjectedFaults,
    pub(crate) installation_mints: HashMap<String, usize>,
    pub(crate) app_mints: usize,
    /// Lookups of an app's installation per organization id (answered, 404 included).
    pub(crate) lookups: HashMap<String, usize>,
    pub(crate) base_url: String,
    /// The path the API is served under (`/v1`), or empty: see
    /// [`FakeRegistry::serve_under`](crate::FakeRegistry::serve_under).
    pub(crate) base_path: String,
    rng: SystemRandom,
}

impl State {
    pub(crate) fn new(base_url: String) -> Self {
        Self {
            apps: HashMap::new(),
            installations: IndexMap::new(),
            tokens: HashMap::new(),
            clock_offset_ms: 0,
            token_lifetime: Duration::from_secs(7200),
            faults: VecDeque::new(),
            requests: Vec::new(),
            requests_taken: 0,
            fault_rates: None,
            injected: InjectedFaults::default(),
            installation_mints: HashMap::new(),
            app_mints: 0,
            lookups: HashMap::new(),
            base_url,
            base_path: String::new(),
            rng: SystemRandom::new(),
        }
    }

    /// The registry's clock, in milliseconds since the epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        let local = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        local + self.clock_offset_ms
    }

    pub(crate) fn now_system(&self) -> SystemTime {
        let ms = self.now_ms();
        if ms >= 0 {
            UNIX_EPOCH + Duration::from_millis(ms as u64)
        } else {
            UNIX_EPOCH
        }
    }

    pub(crate) fn random_hex(&self, bytes: usize) -> String {
        let mut buf = vec![0u8; bytes];
        self.rng.fill(&mut buf).expect("the system random source works");
        buf.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn uuid(&self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill(&mut b).expect("the system random source works");
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// Takes the next fault for `path`, if one is queued.
    pub(crate) fn next_fault(&mut self, path: &str) -> Option<Fault> {
        let pos = self
            .faults
            .iter()
            .position(|(prefix, _)| prefix.as_deref().is_none_or(|p| path.starts_with(p)))?;
        self.faults.remove(pos).map(|(_, f)| f)
    }

    /// The next fault: a queued one for `path`, else one drawn from the fault rates, if set.
    pub(crate) fn draw_fault(&mut self, path: &str) -> Option<Fault> {
        if let Some(f) = self.next_fault(path) {
            return Some(f);
        }
        let (rates, rng) = self.fault_rates.as_mut()?;
        let u = rng.next_f64();
        let pick = rng.next_u64();
        let mut band = 0.0;
        let mut hit = |p: f64| {
            band += p;
            u < band
        };
        let injected = &mut self.injected;
        if hit(rates.server_error) {
            injected.server_error += 1;
            Some(Fault::Status {
                status: [500, 502, 503][(pick % 3) as usize],
                retry_after: None,
            })
        } else if hit(rates.drop_connection) {
            injected.drop_connection += 1;
            Some(Fault::DropConnection)
        } else if hit(rates.malformed_body) {
            injected.malformed_body += 1;
            Some(Fault::MalformedBody)
        } else if hit(rates.retry_after) {
            injected.retry_after += 1;
            Some(Fault::Status {
                status: if pick % 2 == 0 { 429 } else { 503 },
                retry_after: Some(rates.retry_after_secs),
            })
        } else if hit(rates.delay) {
            injected.delay += 1;
            let max_ms = u64::try_from(rates.max_delay.as_millis()).unwrap_or(u64::MAX);
            Some(Fault::Delay(Duration::from_millis(pick % max_ms.saturating_add(1))))
        } else {
            None
        }
    }

    pub(crate) fn installation_json(&self, i: &Installation) -> Value {
        json!({
            "id": i.id,
            "appId": i.app_id,
            "appNameId": self.apps.get(&i.app_id).map_or("app", |a| a.name_id.as_str()),
            "createdAt": rfc3339(i.created),
            "updatedAt": rfc3339(i.created),
            "permissions": permissions_json(&i.permissions),
            "organization": i.organization,
            "accessTokensUrl": format!("{}/app/installations/{}/accessTokens", self.base_url, i.id),
        })
    }

    pub(crate) fn organization(&self, name: &str, created: i64) -> Value {
        let id = self.uuid();
        json!({
            "id": id,
            "fullName": name,
            "type": "projectDeveloper",
            "countryCode": "IS",
            "city": "Reykjavík",
            "zip": "101",
            "physicalAddress": null,
            "registrationNumber": "123456-7890",
            "website": null,
            "logo": format!("https://www.carbonregistry.com/logos/{id}.png"),
            "isPublic": true,
            "organizationIndustries": null,
            "createdAt": rfc3339(created),
            "updatedAt": rfc3339(created),
            "url": format!("{}/organizations/{id}", self.base_url),
        })
    }
}

pub(crate) fn permissions_json(p: &[(String, String)]) -> Value {
    Value::Object(p.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

/// RFC 3339 with milliseconds and `Z`.
pub(crate) fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
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
