//! Forgetting what the registry took away: an installation's token and an organization's
//! remembered installation, in this process and in the shared store (see [`crate::Forget`]).

use super::{App, TokenScope};
use crate::api::{InstallationId, OrganizationId};
use crate::store::StoreCommand;

impl App {
    /// Drops `installations`' tokens and `organizations`' remembered installations (and their
    /// tokens) from this process, and returns the store commands that drop them from the shared
    /// store: an unconditional delete of each entry (a `Delete` whose prefix is empty), whatever
    /// token it holds, when a store is attached (even one given up on for a while: a delete is
    /// worth trying). A token this process held is never read back from the store afterwards,
    /// should a delete fail.
    pub(crate) fn forget_scopes(
        &mut self,
        installations: &[InstallationId],
        organizations: &[OrganizationId],
    ) -> Vec<StoreCommand> {
        let mut scopes: Vec<TokenScope> = installations.iter().cloned().map(TokenScope::Installation).collect();
        for organization in organizations {
            if let Some(state) = self.organizations.get_mut(organization)
                && let Some(installation) = state.installation.take()
            {
                if let TokenScope::Installation(id) = &installation {
                    state.stale = Some(id.clone());
                }
                if !scopes.contains(&installation) {
                    scopes.push(installation);
                }
            }
        }
        for scope in &scopes {
            if let Some(token) = self.cache.token_even_expired(scope) {
                let token = token.secret().clone();
                self.cache.invalidate(scope, token.expose());
                if let Some(shared) = &mut self.shared {
                    let prefix = shared.sealer.token_prefix(&token);
                    shared.refused.insert(scope.clone(), prefix);
                }
            }
        }
        for organization in organizations {
            scopes.push(TokenScope::Organization(organization.clone()));
        }
        if !scopes.is_empty() {
            tracing::info!(target: "icr_app", installations = installations.len(), organizations = organizations.len(), "forgetting installations: their tokens are minted anew");
            self.changed();
        }
        let Some(shared) = &self.shared else {
            return Vec::new();
        };
        scopes
            .iter()
            .map(|scope| StoreCommand::Delete {
                key: shared.sealer.entry(scope),
                prefix: Vec::new(),
            })
            .collect()
    }
}
