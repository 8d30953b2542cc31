//! The ids that go into URL paths: [`InstallationId`] and [`OrganizationId`], checked once when
//! made.

use std::fmt;
use std::sync::Arc;

use crate::error::Error;

/// An installation id (a UUID in practice), checked so it can go into a URL path.
///
/// Ids of up to 38 bytes (a UUID is 36) are held in place rather than behind a pointer, so a
/// token cache keyed by them compares keys without reading other memory: with a million cached
/// installations that saves a cache miss per lookup (see `BENCHMARKS.md`, scale).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstallationId(IdRepr);

/// Which form is used is decided by the length alone, so two equal ids always have the same form.
#[derive(Clone)]
enum IdRepr {
    Inline { len: u8, bytes: [u8; INLINE_ID] },
    Heap(Arc<str>),
}

/// The longest id held in place; 38 keeps an [`InstallationId`] at 40 bytes.
const INLINE_ID: usize = 38;

impl InstallationId {
    /// Checks an id: not empty, not `.` or `..`, at most 256 characters, no whitespace or control
    /// characters. Anything else is allowed and percent-encoded where it enters a path.
    ///
    /// `id.parse::<InstallationId>()` checks the same from a `&str`, without a `String` made
    /// on the way (nothing is allocated for an id held in place).
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        id.into().parse()
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Copied from a `str` in `new` and cut at its own length: always valid UTF-8.
            IdRepr::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            IdRepr::Heap(id) => id,
        }
    }

    /// The id's bytes, without the UTF-8 check `as_str` makes (about 9 ns for a UUID, a third
    /// of a cache hit): what hashing and comparing use.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            IdRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            IdRepr::Heap(id) => id.as_bytes(),
        }
    }
}

impl PartialEq for InstallationId {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            // Unused bytes are zero, so comparing the whole buffers is comparing the ids.
            (IdRepr::Inline { len: a, bytes: x }, IdRepr::Inline { len: b, bytes: y }) => a == b && x == y,
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}

impl Eq for InstallationId {}

impl std::hash::Hash for InstallationId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Exactly what `str`'s `Hash` feeds the hasher.
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

impl PartialOrd for InstallationId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InstallationId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // `str` orders by bytes too.
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for InstallationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InstallationId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for InstallationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for InstallationId {
    type Err = Error;

    /// As [`InstallationId::new`].
    fn from_str(id: &str) -> Result<Self, Error> {
        check_id("installation id", id)?;
        Ok(Self(match u8::try_from(id.len()) {
            Ok(len) if id.len() <= INLINE_ID => {
                let mut bytes = [0; INLINE_ID];
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                IdRepr::Inline { len, bytes }
            }
            _ => IdRepr::Heap(id.into()),
        }))
    }
}

impl TryFrom<String> for InstallationId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<InstallationId> for String {
    fn from(id: InstallationId) -> String {
        id.as_str().to_owned()
    }
}

/// An organization id (a UUID in practice), checked so it can go into a URL path: by the same
/// rules as an [`InstallationId`].
///
/// An organization keeps its id when it uninstalls and reinstalls an app, while the installation
/// gets a new one: name the organization ([`TokenScope::Organization`](crate::TokenScope)) to act
/// as whatever installation the app has there.
///
/// ```
/// use icr_app_core::OrganizationId;
///
/// let org = OrganizationId::new("3f1c2b9e-7d3f-4c1d-9a0e-5b0f7c1e2a44")?;
/// assert_eq!(org.as_str(), "3f1c2b9e-7d3f-4c1d-9a0e-5b0f7c1e2a44");
/// assert!(OrganizationId::new("two words").is_err());
/// # Ok::<(), icr_app_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrganizationId(
    /// Behind a pointer, so that a [`TokenScope`](crate::TokenScope) naming an organization
    /// takes no more room than one naming an installation (an organization is never a token
    /// cache's key: its installation is).
    Arc<str>,
);

impl OrganizationId {
    /// Checks an id: not empty, not `.` or `..`, at most 256 characters, no whitespace or control
    /// characters. Anything else is allowed and percent-encoded where it enters a path.
    ///
    /// `id.parse::<OrganizationId>()` checks the same from a `&str`.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        id.into().parse()
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OrganizationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OrganizationId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for OrganizationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OrganizationId {
    type Err = Error;

    /// As [`OrganizationId::new`].
    fn from_str(id: &str) -> Result<Self, Error> {
        check_id("organization id", id)?;
        Ok(Self(id.into()))
    }
}

impl TryFrom<String> for OrganizationId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<OrganizationId> for String {
    fn from(id: OrganizationId) -> String {
        id.as_str().to_owned()
    }
}

/// Checks an id of either kind (`what` names it in the error).
pub(super) fn check_id(what: &'static str, id: &str) -> Result<(), Error> {
    let problem = if id.is_empty() {
        "it is empty"
    } else if id == "." || id == ".." {
        "`.` and `..` are not ids"
    } else if id.len() > 256 && id.chars().count() > 256 {
        "it is longer than 256 characters"
    } else if !id.bytes().all(|b| b.is_ascii_graphic()) && id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it contains whitespace or control characters (remove the spaces or newline around it)"
    } else {
        return Ok(());
    };
    Err(Error::config(
        what,
        format!("{problem}; pass the id exactly as the registry shows it"),
    ))
}
