//! The async client: one driving loop over the core's operations.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::drive::Driven;
use http::{Method, Request, Response};
use icr_app_core::{
    App, AppJwt, Call, CreateUserOrganization, CreatedUserOrganization, Error, Forget, GetJwt, GetToken, Installation,
    InstallationId, InstallationsPage, ListInstallations, OrganizationId, Revoke, RevokeAll, SecretString, SendAs,
    Stats, Token, TokenScope, WebhookEvent,
};
use icr_app_driver::{AsyncSharedStore, AsyncSigner, HeldSigner, now};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::builder::ClientBuilder;
use crate::transport::ReqwestTransport;

/// An async ICR app client. Cheap to clone; clones share the token cache.
///
/// Tasks asking for the same installation's token cause one mint between them; other
/// installations are never held up by it, and no lock is held across an `.await`. With
/// [`spawn_refresher`](Self::spawn_refresher), tokens are renewed by a background task ahead of
/// expiry and callers never wait for a refresh. Every decision is the core's: this client only
/// sends requests, sleeps and waits, as each [`Operation`](icr_app_core::Operation) asks.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) app: Mutex<App>,
    /// Bumped whenever an operation reports back or is abandoned while another waits (see
    /// [`Step::Wait`] and `announce`).
    pub(crate) changed: watch::Sender<u64>,
    pub(crate) transport: ReqwestTransport,
    pub(crate) store: Option<Box<dyn AsyncSharedStore>>,
    /// Signs the JWT of an App built without its key.
    pub(crate) signer: Option<HeldSigner<dyn AsyncSigner>>,
}

impl Client {
    /// A client over the default transport (rustls, timeouts, no redirects). An App built
    /// without its key needs a signer ([`ClientBuilder::signer`]): through this client, its
    /// calls fail with an [`Error::Signing`] that says so.
    pub fn new(app: App) -> Result<Self, Error> {
        Ok(Self::with_transport(app, ReqwestTransport::new()?))
    }

    /// A client over a transport you configured (e.g. around your own `reqwest::Client`).
    pub fn with_transport(app: App, transport: ReqwestTransport) -> Self {
        Self::from_parts(app, transport, None, None)
    }

    /// A builder, for a shared token store (and a transport).
    pub fn builder(app: App) -> ClientBuilder {
        ClientBuilder::new(app)
    }

    pub(crate) fn from_parts(
        app: App,
        transport: ReqwestTransport,
        store: Option<Box<dyn AsyncSharedStore>>,
        signer: Option<HeldSigner<dyn AsyncSigner>>,
    ) -> Self {
        let (app, changed) = (Mutex::new(app), watch::Sender::new(0));
        Self {
            inner: Arc::new(Inner {
                app,
                changed,
                transport,
                store,
                signer,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, App> {
        self.inner.app.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the client has done so far: hits, misses, mints, refreshes, failures by kind, waits,
    /// shared-store hits and fallbacks (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        self.lock().stats()
    }

    /// Runs `f` on the core [`App`] (settings, clock offset, token state).
    pub fn with_app<R>(&self, f: impl FnOnce(&mut App) -> R) -> R {
        f(&mut self.lock())
    }

    /// The transport, to send requests the client does not describe.
    pub fn transport(&self) -> &ReqwestTransport {
        &self.inner.transport
    }

    /// An installation access token with at least the default minimum life (60 s) left.
    pub fn installation_token(&self, installation: &InstallationId) -> Driven<'_, Token> {
        self.token(&TokenScope::Installation(installation.clone()), None)
    }

    /// The access token of the app's installation on `organization`, whatever its id: the
    /// installation is looked up once (then remembered, and followed when the organization
    /// reinstalls the app; tasks asking at once share one lookup), and the token is that
    /// installation's, the one [`installation_token`](Self::installation_token) hands out for
    /// it. An organization without the app is an [`Error::NotFound`] that says so. See
    /// [`TokenScope::Organization`].
    pub fn organization_token(&self, organization: &OrganizationId) -> Driven<'_, Token> {
        self.token(&TokenScope::Organization(organization.clone()), None)
    }

    /// An app access token.
    pub fn app_token(&self) -> Driven<'_, Token> {
        self.token(&TokenScope::App, None)
    }

    /// A token for `scope` with at least `min_life` left (default 60 s); see [`GetToken`].
    ///
    /// A hit is answered by the core's [`App::hit`] before any operation is made.
    pub fn token(&self, scope: &TokenScope, min_life: Option<Duration>) -> Driven<'_, Token> {
        if let Some(token) = self.lock().hit(scope, now(), min_life) {
            return Driven::ready(token);
        }
        self.drive(GetToken::new(scope.clone(), min_life))
    }

    /// Drops a cached token the registry refused, so the next call mints a new one.
    pub fn invalidate(&self, scope: &TokenScope, token: &Token) -> bool {
        self.lock().invalidate(scope, token.secret().expose())
    }

    /// An app JWT (cached until about a minute before it expires); for an App without its key,
    /// signed by the client's signer when none is cached.
    pub async fn jwt(&self) -> Result<AppJwt, Error> {
        self.drive(GetJwt::new()).await
    }

    /// Every installation of the app, following every page.
    pub async fn installations(&self) -> Result<Vec<Installation>, Error> {
        self.drive(ListInstallations::default()).await
    }

    /// One page of installations (`page` counts from 0).
    pub async fn installations_page(&self, limit: u32, page: u32) -> Result<InstallationsPage, Error> {
        self.drive(Call::installations_page(limit, page)).await
    }

    /// One installation (also how to check an `installationId` from a callback URL).
    pub async fn installation(&self, installation: &InstallationId) -> Result<Installation, Error> {
        self.drive(Call::installation(installation.clone())).await
    }

    /// The app's installation on `organization` (`GET /app/organizations/{id}/installation`),
    /// remembered for [`organization_token`](Self::organization_token) and the other calls by
    /// organization. An organization without the app is an [`Error::NotFound`] whose message
    /// says the app is not installed there.
    pub async fn installation_for_organization(&self, organization: &OrganizationId) -> Result<Installation, Error> {
        self.drive(Call::installation_for_organization(organization.clone()))
            .await
    }

    /// Creates a user and an organization with the app installed (not retried).
    pub async fn create_user_organization(
        &self,
        body: &CreateUserOrganization,
    ) -> Result<CreatedUserOrganization, Error> {
        self.drive(Call::create_user_organization(body.clone())).await
    }

    /// Revokes `token` (`DELETE /app/installations/token`) and drops it from the cache.
    pub async fn revoke(&self, token: &SecretString) -> Result<(), Error> {
        self.drive(Revoke::new(token.clone())).await
    }

    /// Revokes `token`, which `scopes` may hold: with a shared store, each scope's entry
    /// drops it too, if it holds it (a compare-and-delete on the token's keyed id; an entry
    /// holding another token is left alone). For a token this process did not mint, such as
    /// one read from a file: name its installation, or every installation of the app.
    pub async fn revoke_held_by(&self, token: &SecretString, scopes: &[TokenScope]) -> Result<(), Error> {
        self.drive(Revoke::held_by(token.clone(), scopes.to_vec())).await
    }

    /// Acts on a verified webhook event (see `icr_app_core::webhook::verify`): on
    /// `uninstalled`, `suspended` and `newPermissionsAccepted`, drops the installation's token
    /// in this process and in the shared store (whatever token the store holds, not only one
    /// this process minted), and the organization's remembered installation; the next call
    /// mints anew (or looks the organization up anew). Returns whether the event dropped
    /// anything (`false` for every other event). A store that fails is not an error: it is
    /// given up on for a while, as for any call.
    pub async fn handle_event(&self, event: &WebhookEvent) -> Result<bool, Error> {
        match Forget::event(event) {
            Some(forget) => self.drive(forget).await,
            None => Ok(false),
        }
    }

    /// Forgets an installation (its token) or an organization (its remembered installation,
    /// and that installation's token), here and in the shared store, as
    /// [`handle_event`](Self::handle_event) does for an `uninstalled` event: the next call
    /// mints anew.
    pub async fn forget(&self, scope: &TokenScope) -> Result<(), Error> {
        self.drive(Forget::new(scope.clone())).await.map(|_| ())
    }

    /// Revokes every cached token (e.g. on shutdown), after waiting for mints in flight;
    /// returns how many were revoked, or the first failure after trying them all (a token the
    /// registry already refuses with 401 is dropped and not counted; see [`RevokeAll`]).
    pub async fn revoke_all(&self) -> Result<usize, Error> {
        self.drive(RevokeAll::new()).await
    }

    /// A request for `path_and_query` relative to the base URL, with the standard headers.
    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Vec<u8>>, Error> {
        self.lock().api().request(method, path_and_query, body)
    }

    /// Sends `request` as `installation` and returns the response whatever its status; see
    /// [`SendAs`].
    pub async fn send_as_installation(
        &self,
        installation: &InstallationId,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, Error> {
        self.send_as(&TokenScope::Installation(installation.clone()), request)
            .await
    }

    /// Sends `request` as the app's installation on `organization`, whatever its id, and
    /// returns the response whatever its status; see [`SendAs`]. After a reinstall, the old
    /// installation's token is refused, and the request is sent again as the new installation.
    pub async fn send_as_organization(
        &self,
        organization: &OrganizationId,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, Error> {
        self.send_as(&TokenScope::Organization(organization.clone()), request)
            .await
    }

    /// Sends `request` with the app access token; see [`SendAs`].
    pub async fn send_as_app(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        self.send_as(&TokenScope::App, request).await
    }

    /// Sends `request` as `scope` (the app, an installation or an organization) and returns the
    /// response whatever its status; see [`SendAs`].
    pub async fn send_as(&self, scope: &TokenScope, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        self.drive(SendAs::new(scope.clone(), request)).await
    }

    /// `GET path` as `installation`, parsed as JSON.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        installation: &InstallationId,
        path_and_query: &str,
    ) -> Result<T, Error> {
        self.get_json_as(&TokenScope::Installation(installation.clone()), path_and_query)
            .await
    }

    /// `GET path` as `scope` (the app, an installation or an organization), parsed as JSON.
    ///
    /// ```
    /// # use icr_app_core::{App, AppKey, OrganizationId, TokenScope};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let demo = icr_app_testkit::FakeRegistry::demo();
    /// # let app = App::builder(demo.app_id.clone(), AppKey::from_pem(demo.private_key_pem)?)
    /// #     .base_url(demo.registry.base_url()).build()?;
    /// # let client = icr_app_reqwest::Client::new(app)?;
    /// let org = OrganizationId::new(demo.organization_ids[0].clone())?;
    /// let path = format!("/organizations/{org}");
    /// let organization: serde_json::Value = client.get_json_as(&TokenScope::Organization(org), &path).await?;
    /// assert_eq!(organization["fullName"], "Nordic Peatland Restoration");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_json_as<T: DeserializeOwned>(&self, scope: &TokenScope, path_and_query: &str) -> Result<T, Error> {
        let request = self.request(Method::GET, path_and_query, None)?;
        let response = self.send_as(scope, request).await?;
        icr_app_core::response::parse_json(&response, icr_app_core::Credential::AccessToken)
    }
}
