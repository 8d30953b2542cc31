//! [`Forget`]: drops what the registry took away (an installation's token, an organization's
//! remembered installation) in this process and in the shared store; built by hand or from a
//! verified webhook event ([`Forget::event`]).

use std::collections::VecDeque;

use http::Response;

use super::{Finished, Operation, RequestId, Step};
use crate::api::{InstallationId, OrganizationId};
use crate::app::{App, TokenScope};
use crate::clock::Timestamp;
use crate::error::Error;
use crate::store::{StoreCommand, StoreReply};
use crate::webhook::{EventKind, WebhookEvent};

/// Forgets installations and organizations: each installation's token is dropped from this
/// process's cache and its shared entry deleted (unconditionally: whatever token it holds, not
/// only one this process minted); each organization's remembered installation is dropped the
/// same way, here and in the store, with that installation's token when this process knows it.
/// The next call for them mints anew (or looks the organization up anew).
///
/// Its steps are [`Step::Store`] only (one `Delete` with an empty prefix per entry, which
/// deletes whatever the entry holds), and none without a shared store: the dropping in this
/// process is done at the first poll. A failed delete is not an error (the store's outage logic
/// takes it, as for any store command); the result is `true` when anything was named to forget.
///
/// ```
/// use icr_app_core::{AppKey, App, Forget, InstallationId, Operation, Step, Timestamp};
///
/// # let pem = include_str!("../../tests/fixtures/keys/rsa2048-pkcs8.pem");
/// let mut app = App::builder("my-app", AppKey::from_pem(pem)?).build()?;
/// let mut forget = Forget::new(InstallationId::new("88f89df1-0a53-41c5-974d-dd99708b2f9f")?);
/// // No store attached: nothing to run; the cached token (none here) is gone.
/// assert!(matches!(forget.poll(&mut app, Timestamp::from_unix_millis(0)), Step::Done(Ok(true))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct Forget {
    installations: Vec<InstallationId>,
    organizations: Vec<OrganizationId>,
    /// The deletes still to run (set at the first poll).
    commands: Option<VecDeque<StoreCommand>>,
    running: Option<RequestId>,
    finished: Finished,
}

impl Forget {
    /// Forgets `scope`: an installation (its token), an organization (its remembered
    /// installation, and that installation's token when known here), or the app (its app token).
    pub fn new(scope: impl Into<TokenScope>) -> Self {
        let mut forget = Self::default();
        match scope.into() {
            TokenScope::Installation(id) => forget.installations.push(id),
            TokenScope::Organization(id) => forget.organizations.push(id),
            TokenScope::App => {}
        }
        forget
    }

    /// What a verified webhook `event` drops: for `uninstalled`, `suspended` and
    /// `newPermissionsAccepted`, its installation (and the installation's organization, when
    /// the payload names it); `None` for every other event (nothing to drop).
    pub fn event(event: &WebhookEvent) -> Option<Self> {
        if !Self::drops(&event.event) {
            return None;
        }
        let installation = event.installation.as_ref()?;
        let mut forget = Self::default();
        if let Ok(id) = InstallationId::new(installation.id.as_str()) {
            forget.installations.push(id);
        }
        if let Some(id) = installation
            .organization
            .as_ref()
            .and_then(|organization| OrganizationId::new(organization.id.as_str()).ok())
        {
            forget.organizations.push(id);
        }
        (!forget.installations.is_empty() || !forget.organizations.is_empty()).then_some(forget)
    }

    /// Whether an event of this kind drops the installation's tokens: `uninstalled`,
    /// `suspended` (its tokens stop working) and `newPermissionsAccepted` (a token minted
    /// before carries the old permissions).
    pub fn drops(kind: &EventKind) -> bool {
        matches!(
            kind,
            EventKind::Uninstalled | EventKind::Suspended | EventKind::NewPermissionsAccepted
        )
    }

    /// The installations it forgets.
    pub fn installations(&self) -> &[InstallationId] {
        &self.installations
    }

    /// The organizations it forgets.
    pub fn organizations(&self) -> &[OrganizationId] {
        &self.organizations
    }

    /// What to do next, while not finished (see [`Operation::poll`]).
    fn next_step(&mut self, app: &mut App) -> Step<bool> {
        self.running = None;
        let commands = self
            .commands
            .get_or_insert_with(|| app.forget_scopes(&self.installations, &self.organizations).into());
        match commands.pop_front() {
            Some(command) => {
                let id = app.next_request_id();
                self.running = Some(id);
                Step::Store { id, command }
            }
            None => Step::Done(Ok(!self.installations.is_empty() || !self.organizations.is_empty())),
        }
    }
}

impl Operation for Forget {
    type Output = bool;

    fn poll(&mut self, app: &mut App, _now: Timestamp) -> Step<bool> {
        let mut finished = self.finished;
        let step = finished.poll(|| self.next_step(app));
        self.finished = finished;
        step
    }

    fn handle_response(&mut self, _app: &mut App, _id: RequestId, _response: Response<Vec<u8>>, _now: Timestamp) {}

    fn handle_failure(&mut self, _app: &mut App, _id: RequestId, _error: Error, _now: Timestamp) {}

    fn handle_store(&mut self, app: &mut App, id: RequestId, reply: Result<StoreReply, Error>, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        if self.running.take_if(|own| *own == id).is_some() {
            app.changed();
            app.store_told(reply, now);
        }
    }

    fn abandon(&mut self, app: &mut App, _now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        self.running = None;
        app.changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::AppKey;
    use crate::store::StoreSettings;

    fn app() -> App {
        let pem = include_str!("../../tests/fixtures/keys/rsa2048-pkcs8.pem");
        let mut app = App::builder("app-1", AppKey::from_pem(pem).unwrap()).build().unwrap();
        app.attach_store(StoreSettings::default(), 7).unwrap();
        app
    }

    fn event(kind: &str, organization: bool) -> WebhookEvent {
        let mut installation = serde_json::json!({"id": "i-1", "permissions": {}});
        if organization {
            installation["organization"] = serde_json::json!({"id": "o-1"});
        }
        let payload = serde_json::json!({"event": kind, "installation": installation});
        let secret = crate::webhook::WebhookSecret::new("whsec").unwrap();
        let delivery = crate::webhook::Delivery::new(&secret, &payload);
        crate::webhook::verify(&secret, Some(&delivery.signature), &delivery.body).unwrap()
    }

    /// Every store command an operation asks for, answered `Done`, and its result.
    fn run(op: &mut Forget, app: &mut App) -> (Vec<StoreCommand>, bool) {
        let now = Timestamp::from_unix_millis(1_000);
        let mut commands = Vec::new();
        loop {
            match op.poll(app, now) {
                Step::Store { id, command } => {
                    commands.push(command);
                    op.handle_store(app, id, Ok(StoreReply::Done), now);
                }
                Step::Done(result) => return (commands, result.unwrap()),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_events_that_take_tokens_away_delete_the_entries_unconditionally() {
        for kind in ["uninstalled", "suspended", "newPermissionsAccepted"] {
            let mut app = app();
            let mut op = Forget::event(&event(kind, true)).unwrap();
            let (commands, forgot) = run(&mut op, &mut app);
            assert!(forgot);
            let keys: Vec<&str> = commands.iter().map(StoreCommand::key).collect();
            assert_eq!(keys.len(), 2, "{keys:?}");
            assert!(keys[0].ends_with(":{installation:i-1}"), "{keys:?}");
            assert!(keys[1].ends_with(":{organization:o-1}"), "{keys:?}");
            for command in &commands {
                assert!(matches!(command, StoreCommand::Delete { prefix, .. } if prefix.is_empty()));
            }
        }
        for kind in ["installed", "unsuspended", "warehouseTransaction", "somethingNew"] {
            assert!(Forget::event(&event(kind, true)).is_none(), "{kind}");
        }
    }

    #[test]
    fn by_hand_and_without_a_store() {
        let mut op = Forget::new(InstallationId::new("i-1").unwrap());
        let (commands, forgot) = run(&mut op, &mut app());
        assert_eq!(commands.len(), 1);
        assert!(forgot);
        let pem = include_str!("../../tests/fixtures/keys/rsa2048-pkcs8.pem");
        let mut bare = App::builder("app-1", AppKey::from_pem(pem).unwrap()).build().unwrap();
        let mut op = Forget::new(OrganizationId::new("o-1").unwrap());
        assert_eq!(run(&mut op, &mut bare), (Vec::new(), true));
        // Polled again once done: the error that says so.
        assert!(matches!(
            op.poll(&mut bare, Timestamp::from_unix_millis(0)),
            Step::Done(Err(_))
        ));
    }
}
