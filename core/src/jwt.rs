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
use crate::ops::RequestId;
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

/// The app JWT's claims: `iat` and `exp` (server clock, whole seconds) and `iss`.
fn claims_json(app_id: &AppId, iat: i64, exp: i64) -> Result<Vec<u8>, Error> {
    let claims = serde_json::json!({ "iat": iat, "exp": exp, "iss": app_id.as_str(), "alg": "RS256" });
    serde_json::to_vec(&claims).map_err(|e| Error::Signing(e.to_string()))
}

/// `base64url(header) . base64url(claims)`: what an outside signer signs.
fn signing_input(app_id: &AppId, iat: i64, exp: i64) -> Result<String, Error> {
    let claims = claims_json(app_id, iat, exp)?;
    let mut out = String::with_capacity((HEADER_JSON.len() + claims.len()) * 4 / 3 + 2);
    URL_SAFE_NO_PAD.encode_string(HEADER_JSON, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&claims, &mut out);
    Ok(out)
}

/// Mints app JWTs for one app and caches the latest.
pub struct JwtSigner {
    app_id: AppId,
    signer: Arc<dyn Signer>,
    lifetime: Duration,
    cached: Option<AppJwt>,
    /// Set when the app has no private key: the signature is a step a driver performs.
    outside: Option<Outside>,
}

/// The signer of an app without a private key: it signs nothing itself (its JWT is signed by
/// the driver, see [`JwtSigner::poll`]), and holds the sealing secret a shared store needs, when
/// one was given.
struct NoKey {
    sealing: Option<zeroize::Zeroizing<[u8; 32]>>,
}

impl Signer for NoKey {
    fn sign_rs256(&self, _message: &[u8]) -> Result<Vec<u8>, Error> {
        Err(Error::config(
            "signer",
            "this app has no private key: its JWT is signed by the driver (Step::Sign), not in the core",
        ))
    }

    fn sealing_secret(&self) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        self.sealing.clone()
    }
}

/// Signing the app JWT outside the core: the one signature in flight (whatever number of
/// operations need it) and the last one that failed.
#[derive(Default)]
struct Outside {
    pending: Option<Pending>,
    /// The last signing that failed, for the operations that asked for it or waited on it.
    failed: Option<(RequestId, Error)>,
}

/// A signature asked of the driver: the JWT it completes.
struct Pending {
    id: RequestId,
    /// `base64url(header) . base64url(claims)`: the bytes to sign.
    signing_input: String,
    issued_at: Timestamp,
    expires_at: Timestamp,
    offset: ClockOffset,
    /// When another operation stops waiting for it and asks for a signature itself.
    until: Timestamp,
}

/// Where the app JWT stands for an operation that needs it (see [`JwtSigner::poll`]).
#[derive(Debug)]
pub(crate) enum JwtPoll {
    /// Here it is.
    Ready(AppJwt),
    /// Have the driver sign `message` ([`Step::Sign`](crate::Step::Sign)); the operation now
    /// waits on signing `id`.
    Sign {
        /// The signing's id, to report the signature for.
        id: RequestId,
        /// The bytes to sign.
        message: Vec<u8>,
    },
    /// Another operation's signature is in flight: poll again when it is reported, or at
    /// `until`.
    Wait {
        /// When to poll again at the latest.
        until: Timestamp,
    },
    /// Signing failed: the signer's error (the signing this operation asked for or waited on).
    Failed(Error),
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
            outside: None,
        }
    }

    /// For an app whose private key is not in this process (a KMS, an HSM, a JavaScript or
    /// Python signer): each JWT's signature is a step a driver performs (see
    /// `poll`). `sealing` is the secret a shared token store seals under (every
    /// process of the fleet must be given the same); without it no store can be attached.
    pub(crate) fn without_key(app_id: AppId, sealing: Option<zeroize::Zeroizing<[u8; 32]>>) -> Self {
        Self {
            outside: Some(Outside::default()),
            ..Self::new(app_id, Arc::new(NoKey { sealing }))
        }
    }

    /// Whether the JWT is signed outside the core (see `without_key`).
    pub(crate) fn signs_outside(&self) -> bool {
        self.outside.is_some()
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
    ///
    /// For an app without a private key, only the cached JWT: signing one is a step (see
    /// `poll`).
    pub fn jwt(&mut self, now: Timestamp, offset: ClockOffset) -> Result<AppJwt, Error> {
        if let Some(jwt) = self.fresh(now, offset) {
            return Ok(jwt);
        }
        if self.outside.is_some() {
            return Err(Error::config(
                "signer",
                "this app has no private key and holds no JWT valid now: an operation gets one signed by its driver (Step::Sign)",
            ));
        }
        let jwt = self.mint_at(offset.server_time(now), offset)?;
        self.cached = Some(jwt.clone());
        Ok(jwt)
    }

    /// The cached JWT, if it is still good for a request made at `now` with `offset`.
    fn fresh(&self, now: Timestamp, offset: ClockOffset) -> Option<AppJwt> {
        let server_now = offset.server_time(now);
        let jwt = self.cached.as_ref()?;
        let fresh_enough = jwt.expires_at.saturating_since(server_now) > JWT_REUSE_MARGIN;
        (jwt.offset == offset && fresh_enough && jwt.issued_at <= server_now).then(|| jwt.clone())
    }

    /// The app JWT for an operation that needs one now: in the core with a key; without one,
    /// one signature asked of a driver at a time however many operations need it (the others
    /// wait for it, up to `timeout`). `mine` is the signing the operation asked for or waited
    /// on (kept between polls, so that its failure is the operation's); `new_id` names a new
    /// signing.
    pub(crate) fn poll(
        &mut self,
        now: Timestamp,
        offset: ClockOffset,
        mine: &mut Option<RequestId>,
        new_id: impl FnOnce() -> RequestId,
        timeout: Duration,
    ) -> JwtPoll {
        if self.outside.is_none() {
            *mine = None;
            return match self.jwt(now, offset) {
                Ok(jwt) => JwtPoll::Ready(jwt),
                Err(error) => JwtPoll::Failed(error),
            };
        }
        if let Some(jwt) = self.fresh(now, offset) {
            *mine = None;
            return JwtPoll::Ready(jwt);
        }
        let lifetime = self.lifetime;
        let app_id = self.app_id.clone();
        let Some(outside) = self.outside.as_mut() else {
            unreachable!("checked above")
        };
        if let (Some((failed, error)), Some(own)) = (&outside.failed, *mine)
            && *failed == own
        {
            *mine = None;
            return JwtPoll::Failed(error.clone());
        }
        match &outside.pending {
            // One signature at a time: the others wait for it (the one that asked included,
            // should it poll before reporting).
            Some(pending) if now < pending.until && pending.offset == offset => {
                *mine = Some(pending.id);
                JwtPoll::Wait { until: pending.until }
            }
            // None in flight, or one given up on (never reported within the timeout, or made
            // for a clock offset since corrected): ask for a new one.
            _ => {
                let server_now = offset.server_time(now);
                let iat = server_now.minus(IAT_BACKDATE).unix_seconds();
                let exp = server_now.plus(lifetime).unix_seconds();
                let signing_input = match signing_input(&app_id, iat, exp) {
                    Ok(input) => input,
                    Err(error) => return JwtPoll::Failed(error),
                };
                let id = new_id();
                let message = signing_input.as_bytes().to_vec();
                outside.pending = Some(Pending {
                    id,
                    signing_input,
                    issued_at: Timestamp::from_unix_seconds(iat),
                    expires_at: Timestamp::from_unix_seconds(exp),
                    offset,
                    until: now.plus(timeout),
                });
                *mine = Some(id);
                JwtPoll::Sign { id, message }
            }
        }
    }

    /// The driver's answer to signing `id`: the RS256 signature, or why there is none. The JWT
    /// it completes is cached for every operation; a failure is handed to the operations that
    /// asked for it or waited on it. Returns whether `id` was the signing in flight (a late or
    /// unknown answer changes nothing).
    pub(crate) fn handle_signature(&mut self, id: RequestId, signature: Result<Vec<u8>, Error>) -> bool {
        let Some(outside) = self.outside.as_mut() else {
            return false;
        };
        let Some(pending) = outside.pending.take_if(|p| p.id == id) else {
            return false;
        };
        let signature = signature.and_then(|signature| {
            if signature.is_empty() {
                Err(Error::Signing(
                    "the signer returned an empty signature; it must return the RS256 (RSASSA-PKCS1-v1_5, SHA-256) signature of the bytes it was given".to_owned(),
                ))
            } else {
                Ok(signature)
            }
        });
        let jwt = signature.and_then(|signature| {
            let mut token = pending.signing_input;
            token.push('.');
            URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
            let token = SecretString::new(token);
            Ok(AppJwt {
                bearer: crate::api::bearer(&token)?,
                token: Arc::new(token),
                issued_at: pending.issued_at,
                expires_at: pending.expires_at,
                offset: pending.offset,
            })
        });
        match jwt {
            Ok(jwt) => {
                outside.failed = None;
                self.cached = Some(jwt);
            }
            Err(error) => {
                let error = match error {
                    Error::Signing(_) => error,
                    other => Error::Signing(other.to_string()),
                };
                outside.failed = Some((id, error));
            }
        }
        true
    }

    /// The operation that asked for signing `id` is leaving: the signature is no longer
    /// awaited, so the next operation that needs the JWT asks for one at once.
    pub(crate) fn abandon_signing(&mut self, id: RequestId) {
        if let Some(outside) = self.outside.as_mut() {
            outside.pending.take_if(|p| p.id == id);
        }
    }

    /// Forgets the signature asked of the driver, if one is awaited (the child of a fork: the
    /// parent's signer never answers it there).
    pub(crate) fn forget_pending(&mut self) {
        if let Some(outside) = self.outside.as_mut() {
            outside.pending = None;
        }
    }

    /// Signs a new JWT for the server-clock instant `server_now`, bypassing the cache.
    pub fn mint_at(&self, server_now: Timestamp, offset: ClockOffset) -> Result<AppJwt, Error> {
        let iat = server_now.minus(IAT_BACKDATE).unix_seconds();
        let exp = server_now.plus(self.lifetime).unix_seconds();
        let claims = claims_json(&self.app_id, iat, exp)?;
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

    /// Forgets the cached JWT if it was made for the clock `offset` (the one a refused request
    /// carried); one made since for another offset stays.
    pub(crate) fn invalidate_made_with(&mut self, offset: ClockOffset) {
        self.cached.take_if(|jwt| jwt.offset == offset);
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

    /// Without a key: one signature asked of the driver however many need it, the others wait;
    /// the reported signature completes a JWT every operation then uses; a failure is the
    /// error of the operations that asked or waited; an abandoned signing is asked again.
    #[test]
    fn outside_signing_is_single_flight() {
        let mut signer = JwtSigner::without_key(AppId::new("app").unwrap(), None);
        let t0 = Timestamp::from_unix_seconds(1_700_000_000);
        let off = ClockOffset::default();
        let timeout = Duration::from_secs(10);
        let mut next = 0;
        let mut new_id = || {
            next += 1;
            RequestId(next)
        };
        assert!(signer.jwt(t0, off).is_err(), "no key: nothing to sign with in the core");
        let (mut a, mut b) = (None, None);
        let JwtPoll::Sign { id, message } = signer.poll(t0, off, &mut a, &mut new_id, timeout) else {
            panic!("the first asks for a signature")
        };
        assert_eq!(a, Some(id));
        assert!(message.starts_with(&URL_SAFE_NO_PAD.encode(HEADER_JSON).into_bytes()));
        let JwtPoll::Wait { until } = signer.poll(t0, off, &mut b, &mut new_id, timeout) else {
            panic!("the second waits")
        };
        assert_eq!((until, b), (t0.plus(timeout), Some(id)));
        // A late answer for another id changes nothing.
        assert!(!signer.handle_signature(RequestId(99), Ok(b"sig".to_vec())));
        assert!(signer.handle_signature(id, Ok(b"sig".to_vec())));
        let JwtPoll::Ready(jwt) = signer.poll(t0, off, &mut b, &mut new_id, timeout) else {
            panic!()
        };
        assert!(jwt.token().expose().starts_with(std::str::from_utf8(&message).unwrap()));
        assert!(jwt.token().expose().ends_with(&URL_SAFE_NO_PAD.encode(b"sig")));
        assert_eq!(claims(&jwt)["iss"], "app");
        assert!(same_signing(&jwt, &signer.jwt(t0, off).unwrap()));

        // Expired: a new signing; its failure is the asker's and the waiter's error.
        let t1 = t0.plus(Duration::from_secs(480));
        let (mut a, mut b) = (None, None);
        let JwtPoll::Sign { id, .. } = signer.poll(t1, off, &mut a, &mut new_id, timeout) else {
            panic!()
        };
        assert!(matches!(
            signer.poll(t1, off, &mut b, &mut new_id, timeout),
            JwtPoll::Wait { .. }
        ));
        signer.handle_signature(id, Err(Error::Signing("KMS said no".into())));
        for mine in [&mut a, &mut b] {
            let JwtPoll::Failed(error) = signer.poll(t1, off, mine, &mut new_id, timeout) else {
                panic!()
            };
            assert!(error.to_string().contains("KMS said no"), "{error}");
        }
        // An empty signature is a failure that says what a signer must return.
        let mut c = None;
        let JwtPoll::Sign { id, .. } = signer.poll(t1, off, &mut c, &mut new_id, timeout) else {
            panic!()
        };
        signer.handle_signature(id, Ok(Vec::new()));
        let JwtPoll::Failed(error) = signer.poll(t1, off, &mut c, &mut new_id, timeout) else {
            panic!()
        };
        assert!(error.to_string().contains("RS256"), "{error}");

        // Abandoned, or never answered within the timeout: the next one asks again at once.
        let mut d = None;
        let JwtPoll::Sign { id, .. } = signer.poll(t1, off, &mut d, &mut new_id, timeout) else {
            panic!()
        };
        signer.abandon_signing(id);
        let mut e = None;
        let JwtPoll::Sign { id: again, .. } = signer.poll(t1, off, &mut e, &mut new_id, timeout) else {
            panic!()
        };
        assert_ne!(id, again);
        let JwtPoll::Sign { .. } = signer.poll(t1.plus(timeout), off, &mut d, &mut new_id, timeout) else {
            panic!("the wait is over: ask again")
        };
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
