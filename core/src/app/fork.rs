//! The child of a `fork()`: what it keeps of the app its parent held, and what it gives up.

use super::App;
use crate::clock::Timestamp;
use crate::stats::Stats;

impl App {
    /// Makes an app inherited through `fork()` the child's own. It keeps what is known: the
    /// cached tokens (served without a mint), the learned clock offset, the organizations'
    /// installations and the settings. It gives up what was in flight in the parent, whose
    /// operations never report back in the child: every mint (its scope is free at once, with no
    /// back-off), every organization lookup and the signature asked of an outside signer. The
    /// back-off jitter is seeded anew with `seed` (pass randomness: siblings then spread their
    /// retries), the [`stats`](Self::stats) start from zero (they count what this process
    /// does), and the shared store is detached: the child attaches its own with
    /// [`attach_store`](Self::attach_store) (new connections, a new lease owner id, so that it
    /// never passes for its parent, whose leases lapse by themselves).
    ///
    /// Call it in the child before anything else uses the app, with the app's lock taken in the
    /// child (a lock held by another thread of the parent at the moment of the fork stays taken
    /// in the child: build a new app then).
    ///
    /// ```
    /// # use icr_app_core::{App, AppKey, Timestamp};
    /// # let key = AppKey::from_pem(include_str!("../../tests/fixtures/keys/rsa2048-pkcs8.pem")).unwrap();
    /// let mut app = App::builder("app_123", key).build().unwrap();
    /// // ... in the child of a fork:
    /// app.after_fork(0x5eed, Timestamp::from_unix_millis(1_700_000_000_000));
    /// ```
    pub fn after_fork(&mut self, seed: u64, now: Timestamp) {
        for id in self.cache.in_flight_ids() {
            self.cancel_mint(id, now);
        }
        self.mints.clear();
        for organization in self.organizations.values_mut() {
            organization.lookup = None;
        }
        self.jwt.forget_pending();
        self.cache.reseed(seed);
        self.shared = None;
        self.stats = Stats::default();
        self.changed();
    }
}
