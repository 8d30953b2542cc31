//! Organizations named as scopes: the installation remembered for each, its single-flight lookup,
//! and forgetting an installation the registry no longer knows.

use super::{App, TokenScope};
use crate::api::{InstallationId, OrganizationId};
use crate::clock::Timestamp;
use crate::error::Error;
use crate::ops::RequestId;

/// What the app knows of one organization named as a scope.
#[derive(Debug, Default)]
pub(super) struct OrganizationState {
    /// Its installation, as the token cache's key (`TokenScope::Installation`), once found.
    pub(super) installation: Option<TokenScope>,
    /// The lookup in flight: its id, and when it started.
    pub(super) lookup: Option<(RequestId, Timestamp)>,
    /// How the last lookup failed, for the operations that waited for it.
    pub(super) failed: Option<(RequestId, Error)>,
    /// The installation last found gone (a mint for it answered 404): a shared store's entry
    /// that still names it is not read back.
    pub(super) stale: Option<InstallationId>,
}

/// Where an operation that named an organization stands (see [`App::poll_organization`]).
#[derive(Debug)]
pub(crate) enum OrganizationPoll {
    /// Its installation, as the token cache's key.
    Found(TokenScope),
    /// Nobody is looking it up: this operation does, as lookup `id`.
    Lookup(RequestId),
    /// Another operation is looking it up as lookup `id`: poll again when an operation reports
    /// back, or at `until` (when that lookup would be presumed abandoned).
    Wait {
        /// The lookup waited for.
        id: RequestId,
        /// When to poll again at the latest.
        until: Timestamp,
    },
    /// The lookup this operation waited for failed, with this error.
    Failed(Error),
}

impl App {
    /// The installation the app was last found to have on `organization` (looked up, read from
    /// the shared store, or given by a [`Call::installation_for_organization`]), if it is
    /// remembered.
    ///
    /// [`Call::installation_for_organization`]: crate::Call::installation_for_organization
    pub fn organization_installation(&self, organization: &OrganizationId) -> Option<&InstallationId> {
        match self.organizations.get(organization)?.installation.as_ref()? {
            TokenScope::Installation(id) => Some(id),
            _ => None,
        }
    }

    /// The key `scope`'s token is cached under: the scope itself, or for an organization its
    /// installation's (`None` until it is known).
    pub(crate) fn cache_key<'a>(&'a self, scope: &'a TokenScope) -> Option<&'a TokenScope> {
        match scope {
            TokenScope::Organization(org) => self.organizations.get(org)?.installation.as_ref(),
            _ => Some(scope),
        }
    }

    /// Where an operation for `organization` stands at `now`; `waited` is the lookup it last
    /// waited for, whose failure is then its own.
    pub(crate) fn poll_organization(
        &mut self,
        organization: &OrganizationId,
        now: Timestamp,
        waited: Option<RequestId>,
    ) -> OrganizationPoll {
        let fetch_timeout = self.cache.config().fetch_timeout;
        if !self.organizations.contains_key(organization) {
            self.make_room_for_an_organization();
        }
        let state = self.organizations.entry(organization.clone()).or_default();
        if let Some(key) = &state.installation {
            return OrganizationPoll::Found(key.clone());
        }
        if let Some((id, started)) = state.lookup {
            let until = started.plus(fetch_timeout);
            if now < until {
                return OrganizationPoll::Wait { id, until };
            }
            // Presumed abandoned: its answer, if it ever comes, changes nothing.
            state.lookup = None;
        }
        if let Some((failed, error)) = &state.failed
            && waited == Some(*failed)
        {
            return OrganizationPoll::Failed(error.clone());
        }
        let id = self.cache.next_request_id();
        state.lookup = Some((id, now));
        OrganizationPoll::Lookup(id)
    }

    /// Keeps the organizations remembered within the cache's `max_entries`: the ones neither
    /// found nor being looked up go first, then the ones not being looked up.
    fn make_room_for_an_organization(&mut self) {
        let most = self.cache.config().max_entries.max(1);
        if self.organizations.len() < most {
            return;
        }
        self.organizations
            .retain(|_, o| o.lookup.is_some() || o.installation.is_some());
        if self.organizations.len() >= most {
            self.organizations.retain(|_, o| o.lookup.is_some());
        }
    }

    /// Lookup `lookup` (or a [`Call`](crate::Call) for the organization) found `installation` on
    /// `organization`: remembered, and returned as the token cache's key. An id that cannot be
    /// one is an error (and the lookup's failure).
    pub(crate) fn organization_found(
        &mut self,
        organization: &OrganizationId,
        lookup: Option<RequestId>,
        installation: &str,
    ) -> Result<TokenScope, Error> {
        // Operations wait for this lookup: wake them, even when it ends in a poll.
        self.changed();
        let found = InstallationId::new(installation).map_err(|_| Error::MalformedBody {
            status: 200,
            problem: format!(
                "the installation of the app on organization {organization} has an id that is not one (empty, or with spaces or control characters)"
            ),
            excerpt: String::new(),
        });
        if !self.organizations.contains_key(organization) {
            self.make_room_for_an_organization();
        }
        let state = self.organizations.entry(organization.clone()).or_default();
        if lookup.is_some() && state.lookup.map(|(id, _)| id) == lookup {
            state.lookup = None;
        }
        match found {
            Ok(id) => {
                let key = TokenScope::Installation(id);
                state.installation = Some(key.clone());
                state.failed = None;
                Ok(key)
            }
            Err(error) => {
                if let Some(lookup) = lookup {
                    state.failed = Some((lookup, error.clone()));
                }
                Err(error)
            }
        }
    }

    /// Lookup `lookup` for `organization` failed with `error` (the operations that waited for it
    /// fail with it too).
    pub(crate) fn organization_failed(&mut self, organization: &OrganizationId, lookup: RequestId, error: &Error) {
        self.changed();
        if let Some(state) = self.organizations.get_mut(organization) {
            if state.lookup.map(|(id, _)| id) == Some(lookup) {
                state.lookup = None;
            }
            state.failed = Some((lookup, error.clone()));
        }
    }

    /// Lookup `lookup` for `organization` was given up by its operation: another may start at
    /// once.
    pub(crate) fn cancel_lookup(&mut self, organization: &OrganizationId, lookup: RequestId) {
        self.changed();
        if let Some(state) = self.organizations.get_mut(organization)
            && state.lookup.map(|(id, _)| id) == Some(lookup)
        {
            state.lookup = None;
        }
    }

    /// The registry no longer knows `installation` (a mint for it answered 404): if it is still
    /// `organization`'s, forget it, so the next operation looks the organization up again.
    /// Returns whether it was forgotten (another operation may have done it first).
    pub(crate) fn organization_installation_gone(
        &mut self,
        organization: &OrganizationId,
        installation: &TokenScope,
    ) -> bool {
        let Some(state) = self.organizations.get_mut(organization) else {
            return false;
        };
        if state.installation.as_ref() != Some(installation) {
            return false;
        }
        state.installation = None;
        if let TokenScope::Installation(id) = installation {
            state.stale = Some(id.clone());
        }
        tracing::info!(target: "icr_app", %organization, %installation, "the registry no longer knows this installation of the organization (reinstalled or uninstalled): looking the organization up again");
        true
    }

    /// The installation last found gone for `organization`, if any (never read back from the
    /// shared store).
    pub(crate) fn stale_installation(&self, organization: &OrganizationId) -> Option<&InstallationId> {
        self.organizations.get(organization)?.stale.as_ref()
    }
}
