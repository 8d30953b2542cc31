//! The app JWT: RS256, `iat` = now - 60 s, `exp` = now + 9 min, `iss` = the app id.
//!
//! ICR picks the public key by `iss` and refuses a JWT whose `exp` is more than 10 minutes
//! ahead of its own clock, so times are computed on the *server's* clock (local time plus the
//! [`ClockOffset`] learned from `Date` headers). A minted JWT is re-used until about a minute
//! before it expires.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;

use crate::clock::{ClockOffset, Timestamp};
use crate::error::Error;
use crate::secret::SecretString;
use crate::signer::Signer;

/// ICR's hard cap on `exp - now`.
pub const MAX_JWT_LIFETIME: Duration = Duration::from_secs(600);
/// The default `exp - now`: a minute under the cap, to absorb drift while in transit.
pub const DEFAULT_JWT_LIFETIME: Duration = Duration::from_secs(540);
/// How far `iat` is back-dated, as ICR recommends, so a server slightly behind accepts it.
pub const IAT_BACKDATE: Duration = Duration::from_secs(60);
/// A cached JWT is re-signed once it has less than this left.
pub const JWT_REUSE_MARGIN: Duration = Duration::from_secs(60);

/// The JOSE header of every app JWT.
const HEADER_JSON: &[u8] = br#"{"alg":"RS256","typ":"JWT"}"#;

/// An ICR app id (the dashboard's "App ID"; UUIDs in practice), used as the JWT's `iss`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppId(Arc<str>);

impl AppId {
    /// Checks and wraps an app id: not empty, at most 256 characters, no whitespace or control
    /// characters (a pasted id with a trailing newline is refused rather than silently trimmed).
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        if id.is_empty() {
            return Err(Error::config(
                "app id",
                "it is empty; copy the App ID from the app's dashboard",
            ));
        }
        if id.chars().count() > 256 {
            return Err(Error::config(
                "app id",
                "it is longer than 256 characters; copy the App ID from the app's dashboard",
            ));
        }
        if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::config(
                "app id",
                "it contains whitespace or control characters; remove the spaces or newline around the App ID",
            ));
        }
        Ok(Self(id.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AppId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<AppId> for String {
    fn from(id: AppId) -> String {
        id.0.to_string()
    }
}

/// A signed app JWT and the (server-clock) times it was made for. `Debug` redacts the token.
/// Cheap to clone: the token is shared (and zeroed when the last clone is dropped).
#[derive(Clone, Debug)]
pub struct AppJwt {
    token: Arc<SecretString>,
    /// `Bearer <token>`, made once for every request the JWT authorises.
    bearer: HeaderValue,
    issued_at: Timestamp,
    expires_at: Timestamp,
    offset: ClockOffset,
}

impl AppJwt {
    /// The compact JWT, for the `Authorization: Bearer` header.
    pub fn token(&self) -> &SecretString {
        &self.token
    }

    /// `Authorization: Bearer <token>`'s value, marked sensitive.
    pub(crate) fn bearer(&self) -> &HeaderValue {
        &self.bearer
    }

    /// The `iat` claim (server clock, whole seconds).
    pub fn issued_at(&self) -> Timestamp {
        self.issued_at
    }

    /// The `exp` claim (server clock, whole seconds).
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// The clock offset it was made with.
    pub fn clock_offset(&self) -> ClockOffset {
        self.offset
    }
}

/// Joins `base64url(header) . base64url(claims)` and appends the base64url RS256 signature.
///
/// This is the whole signing path; [`JwtSigner`] feeds it the app JWT's header and claims. It
/// takes raw JSON bytes so that any JWS (e.g. RFC 7515's A.2 example) can be reproduced exactly.
pub fn encode_compact(header_json: &[u8], claims_json: &[u8], signer: &dyn Signer) -> Result<String, Error> {
    let mut out = String::with_capacity((header_json.len() + claims_json.len()) * 4 / 3 + 350);
    URL_SAFE_NO_PAD.encode_string(header_json, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(claims_json, &mut out);
    let signature = signer.sign_rs256(out.as_bytes())?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut out);
    Ok(out)
}

/// Mints app JWTs for one app and caches the latest.
pub struct JwtSigner {
    app_id: AppId,
    signer: Arc<dyn Signer>,
    lifetime: Duration,
    cached: Option<AppJwt>,
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigner")
            .field("app_id", &self.app_id)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// The signer.
    pub(crate) fn signer(&self) -> &dyn Signer {
        &*self.signer
    }

    /// A signer for `app_id` with the default 9-minute lifetime.
    pub fn new(app_id: AppId, signer: Arc<dyn Signer>) -> Self {
        Self {
            app_id,
            signer,
            lifetime: DEFAULT_JWT_LIFETIME,
            cached: None,
        }
    }

    /// Sets `exp - now`. Refuses more than 10 minutes (ICR's cap, counted from the server's now)
    /// and less than 2 minutes (a JWT must outlive the 60 s re-use margin).
    pub fn with_lifetime(mut self, lifetime: Duration) -> Result<Self, Error> {
        if lifetime > MAX_JWT_LIFETIME {
            return Err(Error::config(
                "JWT lifetime",
                format!(
                    "{} s exceeds ICR's 600 s (10 minute) cap on exp; use at most 600 s",
                    lifetime.as_secs()
                ),
            ));
        }
        if lifetime < Duration::from_secs(120) {
            return Err(Error::config(
                "JWT lifetime",
                format!(
                    "{} s is too short to re-use; use between 120 s and 600 s",
                    lifetime.as_secs()
                ),
            ));
        }
        self.lifetime = lifetime;
        self.cached = None;
        Ok(self)
    }

    /// The app id this signer issues for.
    pub fn app_id(&self) -> &AppId {
        &self.app_id
    }

    /// A JWT valid at local time `now` on a server whose clock is `offset` ahead: the cached
    /// one while it has more than a minute left and was made with the same offset, else a new one.
    pub fn jwt(&mut self, now: Timestamp, offset: ClockOffset) -> Result<AppJwt, Error> {
        let server_now = offset.server_time(now);
        if let Some(jwt) = &self.cached {
            let fresh_enough = jwt.expires_at.saturating_since(server_now) > JWT_REUSE_MARGIN;
            if jwt.offset == offset && fresh_enough && jwt.issued_at <= server_now {
                return Ok(jwt.clone());
            }
        }
        let jwt = self.mint_at(server_now, offset)?;
        self.cached = Some(jwt.clone());
        Ok(jwt)
    }

    /// Signs a new JWT for the server-clock instant `server_now`, bypassing the cache.
    pub fn mint_at(&self, server_now: Timestamp, offset: ClockOffset) -> Result<AppJwt, Error> {
        let iat = server_now.minus(IAT_BACKDATE).unix_seconds();
        let exp = server_now.plus(self.lifetime).unix_seconds();
        let claims = serde_json::json!({ "iat": iat, "exp": exp, "iss": self.app_id.as_str(), "alg": "RS256" });
        let claims = serde_json::to_vec(&claims).map_err(|e| Error::Signing(e.to_string()))?;
        let token = SecretString::new(encode_compact(HEADER_JSON, &claims, self.signer.as_ref())?);
        Ok(AppJwt {
            bearer: crate::api::bearer(&token)?,
            token: Arc::new(token),
            issued_at: Timestamp::from_unix_seconds(iat),
            expires_at: Timestamp::from_unix_seconds(exp),
            offset,
        })
    }

    /// Forgets the cached JWT (e.g. after the registry refused it).
    pub fn invalidate(&mut self) {
        self.cached = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in signer that "signs" with a fixed byte string.
    struct Fixed;
    impl Signer for Fixed {
        fn sign_rs256(&self, _message: &[u8]) -> Result<Vec<u8>, Error> {
            Ok(b"sig".to_vec())
        }
    }

    /// Whether two JWTs are one signature (the cache hands out the same token, not a new one).
    fn same_signing(a: &AppJwt, b: &AppJwt) -> bool {
        Arc::ptr_eq(&a.token, &b.token)
    }

    fn claims(jwt: &AppJwt) -> serde_json::Value {
        let part = jwt.token().expose().split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn claims_and_header() {
        let signer = JwtSigner::new(
            AppId::new("d23967cc-dd16-452b-8af4-869965745978").unwrap(),
            Arc::new(Fixed),
        );
        let jwt = signer
            .mint_at(Timestamp::from_unix_millis(1_700_000_000_999), ClockOffset::default())
            .unwrap();
        let c = claims(&jwt);
        assert_eq!(c["iat"], 1_700_000_000 - 60);
        assert_eq!(c["exp"], 1_700_000_000 + 540);
        assert_eq!(c["iss"], "d23967cc-dd16-452b-8af4-869965745978");
        assert_eq!(c["alg"], "RS256");
        let header = jwt.token().expose().split('.').next().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(header).unwrap(), HEADER_JSON);
        assert!(!jwt.token().expose().contains('='));
        // The `Authorization` value made with it: the same JWT, sensitive, never in `Debug`.
        assert_eq!(
            jwt.bearer().as_bytes(),
            format!("Bearer {}", jwt.token().expose()).as_bytes()
        );
        assert!(jwt.bearer().is_sensitive());
        assert!(!format!("{jwt:?}").contains(header));
    }

    #[test]
    fn numeric_looking_app_id_is_a_string_claim() {
        let signer = JwtSigner::new(AppId::new("67890").unwrap(), Arc::new(Fixed));
        let jwt = signer
            .mint_at(Timestamp::from_unix_seconds(1_700_000_000), ClockOffset::default())
            .unwrap();
        assert_eq!(claims(&jwt)["iss"], serde_json::json!("67890"));
    }

    #[test]
    fn reuse_until_a_minute_before_exp() {
        let mut signer = JwtSigner::new(AppId::new("app").unwrap(), Arc::new(Fixed));
        let t0 = Timestamp::from_unix_seconds(1_700_000_000);
        let off = ClockOffset::default();
        let a = signer.jwt(t0, off).unwrap();
        let b = signer.jwt(t0.plus(Duration::from_secs(479)), off).unwrap();
        assert!(same_signing(&a, &b));
        let c = signer.jwt(t0.plus(Duration::from_secs(480)), off).unwrap();
        assert!(!same_signing(&a, &c));
        assert_ne!(a.expires_at(), c.expires_at());
        // A new clock offset means the cached times are wrong for the server: re-sign.
        let skewed = ClockOffset { millis: 7_200_000 };
        let d = signer.jwt(t0.plus(Duration::from_secs(480)), skewed).unwrap();
        assert!(!same_signing(&c, &d));
        assert_eq!(claims(&d)["iat"], 1_700_000_000 + 480 + 7200 - 60);
        assert!(same_signing(
            &d,
            &signer.jwt(t0.plus(Duration::from_secs(481)), skewed).unwrap()
        ));
        signer.invalidate();
        let e = signer.jwt(t0.plus(Duration::from_secs(480)), skewed).unwrap();
        assert!(!same_signing(&d, &e));
    }

    #[test]
    fn lifetime_bounds() {
        let s = || JwtSigner::new(AppId::new("app").unwrap(), Arc::new(Fixed));
        assert!(s().with_lifetime(Duration::from_secs(601)).is_err());
        assert!(s().with_lifetime(Duration::from_secs(119)).is_err());
        let ok = s().with_lifetime(Duration::from_secs(600)).unwrap();
        let jwt = ok
            .mint_at(Timestamp::from_unix_seconds(1000), ClockOffset::default())
            .unwrap();
        assert_eq!(jwt.expires_at().unix_seconds(), 1600);
    }

    #[test]
    fn app_id_validation() {
        assert!(AppId::new("").is_err());
        assert!(AppId::new("abc\n").is_err());
        assert!(AppId::new(" abc").is_err());
        assert!(AppId::new("x".repeat(257)).is_err());
        let e = AppId::new("abc def").unwrap_err().to_string();
        assert!(e.contains("app id"), "{e}");
    }
}
