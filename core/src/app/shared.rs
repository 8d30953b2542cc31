//! The shared token store as the app sees it: attached or not, given up on for a while after a
//! failure (one warning an outage), and the tokens the registry refused that are never read back
//! from it.

use std::collections::HashMap;

use super::{App, TokenScope};
use crate::clock::Timestamp;
use crate::error::Error;
use crate::secret::SecretString;
use crate::stats::Counter;
use crate::store::{Sealer, StoreCommand, StoreReply, StoreSettings};

/// What the app knows of its shared token store.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) sealer: Sealer,
    pub(crate) settings: StoreSettings,
    /// Set by a store failure (the outage's warning given); until then the store is not asked.
    /// Cleared, with a note that sharing resumed, by the next reply.
    down_until: Option<Timestamp>,
    /// Per scope, the id of the last token the registry refused: never adopted from the store.
    pub(crate) refused: HashMap<TokenScope, Vec<u8>>,
}

impl App {
    /// Tells the app that its driver runs a shared token store (see
    /// [`StoreCommand`]): from now on operations read tokens from it before
    /// minting, take its lease to mint, and store what they mint. `owner_seed` makes this
    /// process's lease owner id: pass randomness.
    ///
    /// Fails when the signer cannot derive a sealing secret (a [`Signer`](crate::Signer) other than
    /// [`AppKey`](crate::AppKey) that does not implement [`Signer::sealing_secret`](crate::Signer::sealing_secret)).
    pub fn attach_store(&mut self, settings: StoreSettings, owner_seed: u64) -> Result<(), Error> {
        let secret = self.jwt.signer().sealing_secret().ok_or_else(|| {
            Error::config(
                "shared token store",
                "no sealing secret: an app without a key needs AppBuilder::sealing_secret (the same in every process), and a Signer other than AppKey must implement Signer::sealing_secret",
            )
        })?;
        let sealer = Sealer::new(&secret, self.api.base_url(), self.jwt.app_id().as_str(), owner_seed)?;
        self.shared = Some(Shared {
            sealer,
            settings,
            down_until: None,
            refused: HashMap::new(),
        });
        Ok(())
    }

    /// The shared store, if one is attached and not given up on at `now` after a failure.
    pub(crate) fn store(&self, now: Timestamp) -> Option<&Shared> {
        self.shared
            .as_ref()
            .filter(|s| s.down_until.is_none_or(|until| now >= until))
    }

    /// The store answered: sharing is (again) in use.
    pub(crate) fn store_answered(&mut self) {
        if let Some(shared) = &mut self.shared
            && shared.down_until.take().is_some()
        {
            tracing::info!(target: "icr_app", "the shared token store answers again: tokens are shared again");
        }
    }

    /// The store failed: mint without it for a while; the first failure of an outage is
    /// logged as a warning, the rest at debug.
    pub(crate) fn store_failed(&mut self, error: &Error, now: Timestamp) {
        let Some(shared) = &mut self.shared else { return };
        self.stats.count(Counter::SharedFallback);
        let until = now.plus(shared.settings.retry_after_failure);
        if shared.down_until.replace(until).is_none() {
            tracing::warn!(target: "icr_app", cause = %error, "the shared token store failed: minting without it until it answers again");
        } else {
            tracing::debug!(target: "icr_app", cause = %error, "the shared token store failed again");
        }
    }

    /// The store answered command `id` of an operation that only tells it something.
    pub(crate) fn store_told(&mut self, reply: Result<StoreReply, Error>, now: Timestamp) {
        match reply {
            Ok(_) => self.store_answered(),
            Err(error) => self.store_failed(&error, now),
        }
    }

    /// The store command that removes `token` from `scope`'s shared entry, if the entry still
    /// holds it (a newer token is kept), when a store is attached and answering.
    pub(crate) fn forget_shared(
        &self,
        scope: &TokenScope,
        token: &SecretString,
        now: Timestamp,
    ) -> Option<StoreCommand> {
        let shared = self.store(now)?;
        Some(StoreCommand::Delete {
            key: shared.sealer.entry(scope),
            prefix: shared.sealer.token_prefix(token),
        })
    }
}
