//! A shared token store (Redis, say) as effects: what an operation asks a store driver to do
//! ([`StoreCommand`], in [`Step::Store`](crate::Step::Store)), and what it answers
//! ([`StoreReply`]).
//!
//! The core decides everything (when to read the shared entry, when to take the lease, what to
//! store, when to give the store up for a while and mint alone); a store driver only runs one
//! command at a time against its server, with short timeouts, and reports the reply or the
//! failure. Values are sealed here (AES-256-GCM, key from the app's private key through HKDF, the
//! entry's name as associated data), so a store never sees a token.
//!
//! The entries, after the namespace `icr-app:v2:{registry}:{app id}:` (the registry as the first
//! 8 bytes of its base URL's SHA-256, in hex; the app id with `%`, `{` and `}` percent-encoded).
//! Every name carries one Redis Cluster hash tag, `{...}`, naming its scope: an entry and its
//! lease hash to the same slot (the store's scripts touch both at once), while one app's
//! installations spread over the slots. No `{` comes before the tag, so the tag is always the
//! scope's, whatever the ids hold.
//!
//! | name | holds |
//! |---|---|
//! | `{app}` | the app access token |
//! | `{installation:ID}` | the installation's access token |
//! | `{installation:ID}:lease`, `{app}:lease` | the lease on minting it: the owner's id |
//! | `{organization:ID}` | the id of the app's installation on the organization (for [`TokenScope::Organization`](crate::TokenScope::Organization)), kept a day |
//!
//! For example `icr-app:v2:1f0e3dad99908345:d23967cc-dd16-452b-8af4-869965745978:{installation:88f89df1-0a53-41c5-974d-dd99708b2f9f}`.
//! (Version 1 had no hash tags; its entries are neither read nor written.)
//!
//! An organization's entry is sealed like a token (its name as associated data, so it cannot be
//! moved to another organization's name), is written by the process that looked the
//! organization up, and read instead of looking it up; a process that finds the installation
//! gone never reads that value back, and writes the new one once it has looked it up again.
//!
//! The commands, in Redis terms:
//!
//! | command | Redis | reply |
//! |---|---|---|
//! | [`Get`](StoreCommand::Get) | `GETRANGE key 0 65536` (an entry is a few hundred bytes: a larger value is never read) | [`Value`](StoreReply::Value) |
//! | [`Lease`](StoreCommand::Lease) | `SET key owner NX PX ttl`, and a `PEXPIRE key ttl` on a lease held with no expiry, in one script | [`Leased`](StoreReply::Leased) |
//! | [`Put`](StoreCommand::Put) | `SET key value PX ttl`, then `DEL lease` if it holds `owner`, in one script | [`Done`](StoreReply::Done) |
//! | [`Delete`](StoreCommand::Delete) | `DEL key` if its value starts with `prefix`, in one script | [`Done`](StoreReply::Done) |

use std::fmt;
use std::time::Duration;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::hmac;
use zeroize::Zeroizing;

use crate::api::InstallationId;
use crate::app::TokenScope;
use crate::error::Error;
use crate::models::AccessToken;
use crate::secret::SecretString;

/// One command for a shared store. See the module docs for its meaning in Redis terms.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreCommand {
    /// Read `key`. Reply [`StoreReply::Value`].
    Get {
        /// The entry's name.
        key: String,
    },
    /// Set `key` to `owner` for `ttl` only if `key` does not exist (take a lease). Reply
    /// [`StoreReply::Leased`].
    Lease {
        /// The lease's name.
        key: String,
        /// Who takes it.
        owner: Vec<u8>,
        /// When it lapses by itself (its holder died).
        ttl: Duration,
    },
    /// Set `key` to `value` for `ttl`; then delete `lease` if it still holds `owner` (the writer's
    /// own lease, released). Atomically. Reply [`StoreReply::Done`].
    Put {
        /// The entry's name.
        key: String,
        /// The sealed token.
        value: Vec<u8>,
        /// When the entry expires (with its token).
        ttl: Duration,
        /// The lease to release.
        lease: String,
        /// The owner the lease must hold to be released.
        owner: Vec<u8>,
    },
    /// Delete `key` only if its value starts with `prefix` (compare-and-delete: a lease of this
    /// owner, or an entry holding this token, never a newer one). Atomically. Reply
    /// [`StoreReply::Done`].
    Delete {
        /// The entry's or lease's name.
        key: String,
        /// What its value must start with.
        prefix: Vec<u8>,
    },
}

/// The longest lifetime [`StoreCommand::ttl_ms`] gives (2^42 ms, about 139 years): Redis
/// refuses an expiry that overflows its clock.
pub const MAX_TTL_MS: u64 = 1 << 42;

impl StoreCommand {
    /// The name of the key it acts on.
    pub fn key(&self) -> &str {
        match self {
            StoreCommand::Get { key }
            | StoreCommand::Lease { key, .. }
            | StoreCommand::Put { key, .. }
            | StoreCommand::Delete { key, .. } => key,
        }
    }

    /// A Lease's or a Put's `ttl` as a store takes it (Redis's `PX`): whole milliseconds,
    /// rounded up, at least 1 (Redis refuses `PX 0`), at most [`MAX_TTL_MS`].
    pub fn ttl_ms(ttl: Duration) -> u64 {
        let ms = ttl.as_nanos().div_ceil(1_000_000);
        u64::try_from(ms).unwrap_or(MAX_TTL_MS).clamp(1, MAX_TTL_MS)
    }
}

/// Names and sizes only: values are sealed, but they are nobody's business in a log.
impl fmt::Debug for StoreCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreCommand::Get { key } => f.debug_struct("Get").field("key", key).finish(),
            StoreCommand::Lease { key, ttl, .. } => f
                .debug_struct("Lease")
                .field("key", key)
                .field("ttl", ttl)
                .finish_non_exhaustive(),
            StoreCommand::Put {
                key, value, ttl, lease, ..
            } => f
                .debug_struct("Put")
                .field("key", key)
                .field("value_len", &value.len())
                .field("ttl", ttl)
                .field("lease", lease)
                .finish_non_exhaustive(),
            StoreCommand::Delete { key, prefix } => f
                .debug_struct("Delete")
                .field("key", key)
                .field("prefix_len", &prefix.len())
                .finish(),
        }
    }
}

/// A store's answer to a [`StoreCommand`].
#[derive(Clone, PartialEq, Eq)]
pub enum StoreReply {
    /// To [`StoreCommand::Get`]: the value, if the key exists.
    Value(Option<Vec<u8>>),
    /// To [`StoreCommand::Lease`]: whether the lease was taken.
    Leased(bool),
    /// To [`StoreCommand::Put`] and [`StoreCommand::Delete`]: done (whether or not anything
    /// was deleted).
    Done,
}

impl fmt::Debug for StoreReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreReply::Value(value) => write!(f, "Value({:?})", value.as_ref().map(Vec::len)),
            StoreReply::Leased(taken) => write!(f, "Leased({taken})"),
            StoreReply::Done => f.write_str("Done"),
        }
    }
}

/// How the core uses a shared store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSettings {
    /// How long a lease to mint lasts: a holder that dies is replaced after this. Longer than a
    /// mint takes. Default 15 s.
    pub lease_ttl: Duration,
    /// After a store failure, how long to mint alone before asking the store again. Default 5 s.
    pub retry_after_failure: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(15),
            retry_after_failure: Duration::from_secs(5),
        }
    }
}

/// Version of the sealed layout: `1 | token id (16) | nonce (12) | ciphertext | tag (16)`.
const VERSION: u8 = 1;
/// How long an organization's entry (its installation's id) is kept: a day. An id that went
/// stale meanwhile costs the process that reads it one mint answered 404 and one lookup.
pub(crate) const ORGANIZATION_TTL: Duration = Duration::from_secs(24 * 3600);
const TOKEN_ID_LEN: usize = 16;

/// Seals and opens shared entries, and names them.
pub(crate) struct Sealer {
    aead: LessSafeKey,
    /// Keys the synthetic nonce: HMAC of the entry's name and the plaintext.
    nonce: hmac::Key,
    /// Keys the token id that prefixes a value (for compare-and-delete).
    token_id: hmac::Key,
    /// `icr-app:v2:{registry}:{app id}:`, the start of every name (no `{` in it).
    prefix: String,
    /// This process's lease owner id.
    owner: Vec<u8>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn derive(secret: &[u8; 32], info: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret);
    let mut out = Zeroizing::new(vec![0; len]);
    // At most 255 * 32 bytes may be expanded; these are 32.
    if let Ok(okm) = prk.expand(&[info], Len(len)) {
        let _ = okm.fill(&mut out);
    }
    out
}

impl Sealer {
    /// A sealer for app `app_id` at registry `base_url`, from the signer's sealing secret;
    /// `owner_seed` makes this process's lease owner id (pass randomness).
    pub(crate) fn new(secret: &[u8; 32], base_url: &str, app_id: &str, owner_seed: u64) -> Result<Self, Error> {
        let aead = UnboundKey::new(&AES_256_GCM, &derive(secret, b"aes-256-gcm key", 32))
            .map_err(|_| Error::config("shared store", "could not make the sealing key"))?;
        let registry = ring::digest::digest(&ring::digest::SHA256, base_url.trim_end_matches('/').as_bytes());
        let registry: String = registry.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        let mut owner = format!("{:016x}", splitmix(owner_seed)).into_bytes();
        owner.extend(format!("{:016x}", splitmix(owner_seed ^ 0x5851_F42D_4C95_7F2D)).bytes());
        Ok(Self {
            aead: LessSafeKey::new(aead),
            nonce: hmac::Key::new(hmac::HMAC_SHA256, &derive(secret, b"synthetic nonce key", 32)),
            token_id: hmac::Key::new(hmac::HMAC_SHA256, &derive(secret, b"token id key", 32)),
            prefix: format!("icr-app:v2:{registry}:{}:", escape_braces(app_id)),
            owner,
        })
    }

    /// The entry holding `scope`'s token; for an organization, the entry holding its
    /// installation's id. Its hash tag (`{...}`, the first `{` of the name) names the scope.
    pub(crate) fn entry(&self, scope: &TokenScope) -> String {
        match scope {
            TokenScope::App => format!("{}{{app}}", self.prefix),
            TokenScope::Installation(id) => format!("{}{{installation:{id}}}", self.prefix),
            TokenScope::Organization(id) => format!("{}{{organization:{id}}}", self.prefix),
        }
    }

    /// The lease on minting `scope`'s token.
    pub(crate) fn lease(&self, scope: &TokenScope) -> String {
        format!("{}:lease", self.entry(scope))
    }

    /// This process's lease owner id.
    pub(crate) fn owner(&self) -> &[u8] {
        &self.owner
    }

    /// What a value holding `token` starts with: the version and the token's keyed id.
    pub(crate) fn token_prefix(&self, token: &SecretString) -> Vec<u8> {
        let tag = hmac::sign(&self.token_id, token.expose().as_bytes());
        let mut prefix = Vec::with_capacity(1 + TOKEN_ID_LEN);
        prefix.push(VERSION);
        prefix.extend_from_slice(&tag.as_ref()[..TOKEN_ID_LEN]);
        prefix
    }

    /// What a value holding installation id `id` starts with: the version and the id's keyed
    /// id (distinct from any token's).
    fn installation_prefix(&self, id: &InstallationId) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.token_id);
        ctx.update(b"installation id\0");
        ctx.update(id.as_str().as_bytes());
        let tag = ctx.sign();
        let mut prefix = Vec::with_capacity(1 + TOKEN_ID_LEN);
        prefix.push(VERSION);
        prefix.extend_from_slice(&tag.as_ref()[..TOKEN_ID_LEN]);
        prefix
    }

    /// `access` sealed for the entry named `key`. The nonce is synthetic (an HMAC of the name
    /// and the plaintext), so sealing needs no randomness and one token always seals the same.
    pub(crate) fn seal(&self, key: &str, access: &AccessToken) -> Option<Vec<u8>> {
        let plaintext = Zeroizing::new(serde_json::to_vec(access).ok()?);
        self.seal_plaintext(key, self.token_prefix(&access.token), &plaintext)
    }

    /// Installation id `id` sealed for the entry named `key` (an organization's).
    pub(crate) fn seal_installation(&self, key: &str, id: &InstallationId) -> Option<Vec<u8>> {
        self.seal_plaintext(key, self.installation_prefix(id), id.as_str().as_bytes())
    }

    /// `plaintext` sealed for the entry named `key`, after `prefix` (in clear).
    fn seal_plaintext(&self, key: &str, prefix: Vec<u8>, plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut ctx = hmac::Context::with_key(&self.nonce);
        ctx.update(&(key.len() as u64).to_be_bytes());
        ctx.update(key.as_bytes());
        ctx.update(plaintext);
        let tag = ctx.sign();
        let nonce: [u8; NONCE_LEN] = tag.as_ref()[..NONCE_LEN].try_into().ok()?;
        let mut value = prefix;
        value.extend_from_slice(&nonce);
        let start = value.len();
        value.extend_from_slice(plaintext);
        let mut body = value.split_off(start);
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.as_bytes()),
                &mut body,
            )
            .ok()?;
        value.extend_from_slice(&body);
        Some(value)
    }

    /// The token sealed in `value` for the entry named `key`; `None` when it was sealed under
    /// another key or for another entry, altered, or in a layout this version does not know.
    pub(crate) fn open(&self, key: &str, value: &[u8]) -> Option<AccessToken> {
        let plaintext = self.open_plaintext(key, value)?;
        let access: AccessToken = serde_json::from_slice(&plaintext).ok()?;
        // The id in clear must be this token's, or a compare-and-delete could miss it.
        (self.token_prefix(&access.token) == value[..1 + TOKEN_ID_LEN]).then_some(access)
    }

    /// The installation id sealed in `value` for the entry named `key` (an organization's);
    /// `None` as for [`open`](Self::open).
    pub(crate) fn open_installation(&self, key: &str, value: &[u8]) -> Option<InstallationId> {
        let plaintext = self.open_plaintext(key, value)?;
        let id = InstallationId::new(std::str::from_utf8(&plaintext).ok()?).ok()?;
        (self.installation_prefix(&id) == value[..1 + TOKEN_ID_LEN]).then_some(id)
    }

    /// The plaintext sealed in `value` for the entry named `key`.
    fn open_plaintext(&self, key: &str, value: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let head = 1 + TOKEN_ID_LEN;
        if value.len() < head + NONCE_LEN || value[0] != VERSION {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = value[head..head + NONCE_LEN].try_into().ok()?;
        let mut body = Zeroizing::new(value[head + NONCE_LEN..].to_vec());
        let len = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.as_bytes()),
                &mut body,
            )
            .ok()?
            .len();
        body.truncate(len);
        Some(body)
    }
}

/// `text` with `%`, `{` and `}` percent-encoded: no hash tag can start before the scope's.
fn escape_braces(text: &str) -> String {
    text.replace('%', "%25").replace('{', "%7B").replace('}', "%7D")
}

/// The hash tag Redis Cluster hashes `key` by: what is between its first `{` and the next `}`,
/// when that is not empty; else the whole key.
#[cfg(test)]
pub(crate) fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InstallationId;

    fn access(token: &str) -> AccessToken {
        serde_json::from_value(serde_json::json!({
            "token": token, "expiresAt": "2030-01-01T00:00:00Z", "permissions": {"organization_info": "VIEW"}
        }))
        .unwrap()
    }

    fn sealer(secret: u8, url: &str, app: &str) -> Sealer {
        Sealer::new(&[secret; 32], url, app, 7).unwrap()
    }

    #[test]
    fn ttls_are_whole_milliseconds_rounded_up_at_least_one_and_capped() {
        assert_eq!(StoreCommand::ttl_ms(Duration::ZERO), 1);
        assert_eq!(StoreCommand::ttl_ms(Duration::from_micros(1)), 1);
        assert_eq!(StoreCommand::ttl_ms(Duration::from_micros(1_001)), 2);
        assert_eq!(StoreCommand::ttl_ms(Duration::from_micros(1_500)), 2);
        assert_eq!(StoreCommand::ttl_ms(Duration::from_secs(15)), 15_000);
        assert_eq!(StoreCommand::ttl_ms(Duration::MAX), MAX_TTL_MS);
    }

    #[test]
    fn seals_and_opens_only_for_its_entry_and_key() {
        let s = sealer(1, "https://api.carbonregistry.com", "app-1");
        let one = TokenScope::Installation(InstallationId::new("i-1").unwrap());
        let two = TokenScope::Installation(InstallationId::new("i-2").unwrap());
        let token = "crs_0123456789abcdef0123456789abcdef";
        let value = s.seal(&s.entry(&one), &access(token)).unwrap();
        assert!(!value.windows(8).any(|w| token.as_bytes().windows(8).any(|t| t == w)));
        assert_eq!(s.open(&s.entry(&one), &value).unwrap().token.expose(), token);
        // Deterministic: the same token seals the same, so any process can compare it.
        assert_eq!(value, s.seal(&s.entry(&one), &access(token)).unwrap());
        assert!(value.starts_with(&s.token_prefix(&access(token).token)));
        // Moved to another entry, altered, or read with another key: refused.
        assert!(s.open(&s.entry(&two), &value).is_none());
        let mut altered = value.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(s.open(&s.entry(&one), &altered).is_none());
        assert!(
            sealer(2, "https://api.carbonregistry.com", "app-1")
                .open(&s.entry(&one), &value)
                .is_none()
        );
        assert!(s.open(&s.entry(&one), b"").is_none());
    }

    #[test]
    fn an_organizations_installation_opens_only_for_its_entry() {
        use crate::api::OrganizationId;
        let s = sealer(1, "https://api.carbonregistry.com", "app-1");
        let org = |id: &str| TokenScope::Organization(OrganizationId::new(id).unwrap());
        let (one, two) = (s.entry(&org("o-1")), s.entry(&org("o-2")));
        assert!(one.ends_with(":{organization:o-1}"), "{one}");
        let id = InstallationId::new("i-1").unwrap();
        let value = s.seal_installation(&one, &id).unwrap();
        assert_eq!(s.open_installation(&one, &value), Some(id.clone()));
        assert_eq!(value, s.seal_installation(&one, &id).unwrap());
        // Another organization's name, another key, an altered value, a token's entry: refused.
        assert!(s.open_installation(&two, &value).is_none());
        assert!(
            sealer(2, "https://api.carbonregistry.com", "app-1")
                .open_installation(&one, &value)
                .is_none()
        );
        let mut altered = value.clone();
        altered[1] ^= 1;
        assert!(s.open_installation(&one, &altered).is_none());
        let token = s.seal(&one, &access("crs_0123456789abcdef0123456789abcdef")).unwrap();
        assert!(s.open_installation(&one, &token).is_none());
        assert!(s.open(&one, &value).is_none());
        // The installation id is not a token's id: a compare-and-delete for a token misses it.
        assert!(!value.starts_with(&s.token_prefix(&SecretString::new("i-1"))));
    }

    #[test]
    fn names_keep_apps_and_registries_apart() {
        let a = sealer(1, "https://api.carbonregistry.com", "app-1");
        let b = sealer(1, "https://staging.carbonregistry.com", "app-1");
        let c = sealer(1, "https://api.carbonregistry.com", "app-2");
        let scope = TokenScope::App;
        assert_ne!(a.entry(&scope), b.entry(&scope));
        assert_ne!(a.entry(&scope), c.entry(&scope));
        assert_eq!(
            a.entry(&scope),
            sealer(1, "https://api.carbonregistry.com/", "app-1").entry(&scope)
        );
        assert!(a.lease(&scope).starts_with(&a.entry(&scope)));
        assert_eq!(a.owner().len(), 32);
    }

    #[test]
    fn an_entry_and_its_lease_share_one_hash_tag_per_scope() {
        let s = sealer(1, "https://api.carbonregistry.com", "app-1");
        let installation = |id: &str| TokenScope::Installation(InstallationId::new(id).unwrap());
        let entry = s.entry(&installation("i-1"));
        assert!(entry.starts_with("icr-app:v2:"), "{entry}");
        assert!(entry.ends_with(":app-1:{installation:i-1}"), "{entry}");
        assert_eq!(hash_tag(&entry), "installation:i-1");
        assert_eq!(hash_tag(&s.lease(&installation("i-1"))), "installation:i-1");
        assert_eq!(hash_tag(&s.entry(&TokenScope::App)), "app");
        assert_eq!(hash_tag(&s.lease(&TokenScope::App)), "app");
        // Another installation of the same app: another tag (the app's keys spread).
        assert_ne!(hash_tag(&s.entry(&installation("i-2"))), hash_tag(&entry));
        // Braces in the app id or the installation id never move the tag off the scope's, nor
        // part an entry from its lease.
        let odd = sealer(1, "https://api.carbonregistry.com", "a{}p}{");
        for id in ["i}d", "{i", "}", "{}", "a{b}c"] {
            let (entry, lease) = (odd.entry(&installation(id)), odd.lease(&installation(id)));
            assert!(hash_tag(&entry).starts_with("installation:"), "{entry}");
            assert_eq!(hash_tag(&entry), hash_tag(&lease), "{entry}");
        }
        assert_eq!(hash_tag(&odd.entry(&TokenScope::App)), "app");
    }
}
