//! [`TokenScope`]: what a token is for (the app, an installation, or an organization), the token
//! cache's key.

use std::fmt;

use crate::api::{InstallationId, OrganizationId};

/// What a token is for: the app, an installation, or an organization (whatever installation the
/// app has on it).
///
/// Every API that takes a scope ([`GetToken`](crate::GetToken), [`SendAs`](crate::SendAs),
/// [`App::hit`](crate::App::hit), the clients' `token`, `send_as` and middlewares) takes an organization too.
/// Its installation is looked up once (`GET /app/organizations/{id}/installation`; concurrent
/// callers share one lookup) and remembered, and the token is that installation's: one token,
/// cached once, whichever way it was asked for. When the registry no longer knows the remembered
/// installation (a mint answered 404: the organization uninstalled and reinstalled the app, so
/// its installation has a new id), the organization is looked up again, once, and the operation
/// carries on with the new installation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum TokenScope {
    /// An app access token (`POST /app/accessTokens`).
    App,
    /// An installation access token.
    Installation(InstallationId),
    /// The access token of the app's installation on this organization, whatever its id.
    Organization(OrganizationId),
}

/// One write into the hasher (a cache lookup hashes a scope on every hit): the id's bytes, or a
/// byte no id can be (ids hold no control characters) for the app. An organization's bytes
/// follow such a byte, so they never hash as the installation of the same name does.
impl std::hash::Hash for TokenScope {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            TokenScope::App => state.write(&[0]),
            TokenScope::Installation(id) => state.write(id.as_bytes()),
            TokenScope::Organization(id) => {
                state.write(&[1]);
                state.write(id.as_str().as_bytes());
            }
        }
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenScope::App => f.write_str("app"),
            TokenScope::Installation(id) => write!(f, "installation {id}"),
            TokenScope::Organization(id) => write!(f, "organization {id}"),
        }
    }
}

impl From<InstallationId> for TokenScope {
    fn from(id: InstallationId) -> Self {
        TokenScope::Installation(id)
    }
}

impl From<OrganizationId> for TokenScope {
    fn from(id: OrganizationId) -> Self {
        TokenScope::Organization(id)
    }
}
