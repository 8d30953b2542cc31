//! [`Call`]: one request authorised with the app JWT; [`ListInstallations`]: every page.

use std::marker::PhantomData;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::{Finished, Operation, RequestId, Step, retrying};
use crate::api::{InstallationId, OrganizationId, authorize};
use crate::app::{App, Signing, Unsigned};
use crate::clock::Timestamp;
use crate::error::{Credential, Error};
use crate::models::{CreateUserOrganization, CreatedUserOrganization, Installation, InstallationsPage};
use crate::pager::{DEFAULT_PAGE_SIZE, InstallationPager};
use crate::response::{parse_json, status_error};
use crate::stats::Counter;
use crate::store::StoreReply;

/// One app-JWT request (list a page, read an installation, find the installation on an
/// organization, create a user and organization, or any request you build), read as `T`.
///
/// The JWT is signed (or taken from the JWT cache) when the request is sent. A 401 whose `Date`
/// shows the clock skew moved since the JWT was signed is retried once with the server's clock.
/// Idempotent calls are also retried on 429, 5xx and connection failures within the app's
/// [`RetryPolicy`](crate::RetryPolicy); creating a user and organization is not.
pub struct Call<T> {
    endpoint: Endpoint,
    idempotent: bool,
    attempts: u32,
    waited: Duration,
    /// How the request was last signed, for the clock-skew retry.
    signing: Signing,
    progress: Progress<T>,
    finished: Finished,
    /// `call` (target `icr_app`, DEBUG): endpoint, attempt, status.
    span: tracing::Span,
    _answer: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Call<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("endpoint", &self.endpoint)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Endpoint {
    Page { limit: u32, page: u32 },
    Installation(InstallationId),
    OrganizationInstallation(OrganizationId),
    CreateUserOrganization(Box<CreateUserOrganization>),
    Request(Box<Request<Vec<u8>>>),
}

enum Progress<T> {
    Idle,
    Sent { id: RequestId },
    RetryAt(Timestamp),
    Finished(Result<T, Error>),
}

impl<T> Call<T> {
    fn new(endpoint: Endpoint, idempotent: bool) -> Self {
        let name = match &endpoint {
            Endpoint::Page { .. } => "installations page",
            Endpoint::Installation(_) => "installation",
            Endpoint::OrganizationInstallation(_) => "organization installation",
            Endpoint::CreateUserOrganization(_) => "create user and organization",
            Endpoint::Request(_) => "app request",
        };
        let span = tracing::debug_span!(
            target: "icr_app",
            "call",
            endpoint = name,
            attempt = tracing::field::Empty,
            status = tracing::field::Empty,
        );
        Self {
            span,
            endpoint,
            idempotent,
            attempts: 0,
            waited: Duration::ZERO,
            signing: Signing::default(),
            progress: Progress::Idle,
            finished: Finished::default(),
            _answer: PhantomData,
        }
    }

    /// Any request you built (e.g. with [`ApiConfig::request`](crate::ApiConfig::request)),
    /// authorised with the app JWT when sent. `idempotent` allows retries of transient failures.
    pub fn request(request: Request<Vec<u8>>, idempotent: bool) -> Self {
        Self::new(Endpoint::Request(Box::new(request)), idempotent)
    }

    /// The request, signed with the app JWT; without a key, the step that gets it signed first.
    fn build(&mut self, app: &mut App, now: Timestamp) -> Result<Request<Vec<u8>>, Unsigned> {
        let jwt = app.sign(&mut self.signing, now)?;
        let api = app.api();
        Ok(self.request_with(api, &jwt)?)
    }

    fn request_with(&self, api: &crate::ApiConfig, jwt: &crate::AppJwt) -> Result<Request<Vec<u8>>, Error> {
        match &self.endpoint {
            Endpoint::Page { limit, page } => api.list_installations(jwt.token(), *limit, *page),
            Endpoint::Installation(id) => api.get_installation(jwt.token(), id),
            Endpoint::OrganizationInstallation(org) => api.get_organization_installation(jwt.token(), org),
            Endpoint::CreateUserOrganization(body) => api.create_user_organization(jwt.token(), body),
            Endpoint::Request(request) => {
                let mut request = Request::clone(request);
                authorize(&mut request, jwt.token())?;
                Ok(request)
            }
        }
    }

    fn failed(&mut self, app: &App, error: Error, now: Timestamp) {
        let policy = app.retry_policy();
        self.progress = match policy.call_delay(self.attempts, self.waited, &error) {
            Some(delay) if self.idempotent => {
                retrying(&"app call", self.attempts, policy.max_attempts, delay, &error);
                self.waited += delay;
                Progress::RetryAt(now.plus(delay))
            }
            _ => {
                let _entered = self.span.enter();
                // Out of budget for a failure that might have passed: say so. A final answer
                // (a 404, say) is the caller's error and nothing more.
                if self.idempotent && error.is_retryable() {
                    tracing::warn!(target: "icr_app", attempts = self.attempts, cause = %error, "giving up on an app call");
                }
                Progress::Finished(Err(error))
            }
        };
    }
}

impl Call<InstallationsPage> {
    /// `GET /app/installations?limit&page` (`page` counts from 0).
    pub fn installations_page(limit: u32, page: u32) -> Self {
        Self::new(Endpoint::Page { limit, page }, true)
    }
}

impl Call<Installation> {
    /// `GET /app/installations/{id}`: one installation (also how to check an `installationId`
    /// from a callback URL).
    pub fn installation(id: InstallationId) -> Self {
        Self::new(Endpoint::Installation(id), true)
    }
}

impl Call<Installation> {
    /// `GET /app/organizations/{organizationId}/installation`: the app's installation on that
    /// organization. A 404 means the app is not installed there, and the error
    /// ([`Error::NotFound`] with `organization` set) says so.
    ///
    /// The installation found is remembered for the organization (see
    /// [`App::organization_installation`]), so a token asked for by organization
    /// ([`TokenScope::Organization`](crate::TokenScope::Organization)) then needs no lookup.
    pub fn installation_for_organization(organization: OrganizationId) -> Self {
        Self::new(Endpoint::OrganizationInstallation(organization), true)
    }
}

/// What a lookup of an organization's installation is read as to remember it (whatever the
/// caller reads the answer as).
#[derive(serde::Deserialize)]
struct InstallationIdOnly {
    id: String,
}

impl Call<CreatedUserOrganization> {
    /// `POST /app/create/user/organization`. Not retried: it is not idempotent.
    pub fn create_user_organization(body: CreateUserOrganization) -> Self {
        Self::new(Endpoint::CreateUserOrganization(Box::new(body)), false)
    }
}

impl<T: DeserializeOwned> Call<T> {
    /// What to do next, while not finished (see [`Operation::poll`]).
    fn next_step(&mut self, app: &mut App, now: Timestamp) -> Step<T> {
        match std::mem::replace(&mut self.progress, Progress::Idle) {
            Progress::Finished(result) => return Step::Done(result),
            Progress::RetryAt(at) if now < at => {
                self.progress = Progress::RetryAt(at);
                return Step::Sleep { until: at };
            }
            Progress::RetryAt(_) | Progress::Idle | Progress::Sent { .. } => {}
        }
        match self.build(app, now) {
            Ok(request) => {
                let id = app.next_request_id();
                if let Endpoint::OrganizationInstallation(_) = self.endpoint {
                    app.count(Counter::Lookup);
                }
                self.attempts += 1;
                self.span.record("attempt", self.attempts);
                self.progress = Progress::Sent { id };
                Step::Send { id, request }
            }
            Err(unsigned) => unsigned.into_step(),
        }
    }
}

impl<T: DeserializeOwned> Call<T> {
    /// The answer to a lookup of `org`'s installation: remembered when found; a 404 says the app
    /// is not installed there.
    fn found_for_organization(
        &mut self,
        app: &mut App,
        org: &OrganizationId,
        response: &Response<Vec<u8>>,
        parsed: Result<T, Error>,
        now: Timestamp,
    ) {
        match parsed {
            Ok(value) => {
                match parse_json::<InstallationIdOnly>(response, Credential::AppJwt)
                    .and_then(|found| app.organization_found(org, None, &found.id))
                {
                    Ok(_) => self.progress = Progress::Finished(Ok(value)),
                    Err(error) => self.failed(app, error, now),
                }
            }
            Err(Error::NotFound { api, .. }) => {
                let error = Error::NotFound {
                    api,
                    organization: Some(org.clone()),
                };
                self.progress = Progress::Finished(Err(error));
            }
            Err(error) => self.failed(app, error, now),
        }
    }
}

impl<T: DeserializeOwned> Operation for Call<T> {
    type Output = T;

    fn poll(&mut self, app: &mut App, now: Timestamp) -> Step<T> {
        let mut finished = self.finished;
        let step = finished.poll(|| self.next_step(app, now));
        self.finished = finished;
        step
    }

    fn handle_response(&mut self, app: &mut App, id: RequestId, response: Response<Vec<u8>>, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        let Progress::Sent { id: sent } = self.progress else {
            return;
        };
        if sent != id {
            return;
        }
        let span = self.span.clone();
        let _entered = span.enter();
        span.record("status", response.status().as_u16());
        app.observe(&response, now);
        if response.status() == StatusCode::UNAUTHORIZED {
            if app.retry_for_skew(&mut self.signing) {
                // Made again, and signed again, at the next poll.
                self.progress = Progress::Idle;
                return;
            }
            let error = status_error(
                401,
                response.headers(),
                response.body(),
                Credential::AppJwt,
                Some(app.clock_offset().millis),
            );
            self.progress = Progress::Finished(Err(error));
            return;
        }
        let parsed = parse_json(&response, Credential::AppJwt);
        if let Endpoint::OrganizationInstallation(org) = &self.endpoint {
            return self.found_for_organization(app, &org.clone(), &response, parsed, now);
        }
        match parsed {
            Ok(value) => self.progress = Progress::Finished(Ok(value)),
            Err(error) => self.failed(app, error, now),
        }
    }

    fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        if matches!(self.progress, Progress::Sent { id: sent, .. } if sent == id) {
            self.failed(app, error, now);
        }
    }

    /// A JWT call never uses the shared store: a reply changes nothing but the app's change
    /// counter.
    fn handle_store(&mut self, app: &mut App, _id: RequestId, _reply: Result<StoreReply, Error>, _now: Timestamp) {
        if !self.finished.is_set() {
            app.changed();
        }
    }

    fn abandon(&mut self, app: &mut App, _now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        app.abandon_signing(&mut self.signing);
        self.progress = Progress::Idle;
    }
}

/// Every installation of the app, following every page (see
/// [`InstallationPager`](crate::InstallationPager) for how the end is found).
#[derive(Debug)]
pub struct ListInstallations {
    pager: InstallationPager,
    current: Option<Call<InstallationsPage>>,
    finished: Finished,
}

impl Default for ListInstallations {
    fn default() -> Self {
        Self::new(DEFAULT_PAGE_SIZE)
    }
}

impl ListInstallations {
    /// Every installation, asking for `limit` a page.
    pub fn new(limit: u32) -> Self {
        Self {
            pager: InstallationPager::new(limit),
            current: None,
            finished: Finished::default(),
        }
    }
}

impl ListInstallations {
    /// What to do next, while not finished (see [`Operation::poll`]).
    fn next_step(&mut self, app: &mut App, now: Timestamp) -> Step<Vec<Installation>> {
        loop {
            let call = match &mut self.current {
                Some(call) => call,
                None => match self.pager.next_page() {
                    Ok(Some((limit, page))) => self.current.insert(Call::installations_page(limit, page)),
                    Ok(None) => return Step::Done(Ok(std::mem::take(&mut self.pager).into_items())),
                    Err(error) => return Step::Done(Err(error)),
                },
            };
            match call.poll(app, now).pass() {
                Err(Ok(page)) => {
                    self.current = None;
                    self.pager.add(page);
                }
                Err(Err(error)) => return Step::Done(Err(error)),
                Ok(effect) => return effect,
            }
        }
    }
}

impl Operation for ListInstallations {
    type Output = Vec<Installation>;

    fn poll(&mut self, app: &mut App, now: Timestamp) -> Step<Vec<Installation>> {
        let mut finished = self.finished;
        let step = finished.poll(|| self.next_step(app, now));
        self.finished = finished;
        step
    }

    fn handle_response(&mut self, app: &mut App, id: RequestId, response: Response<Vec<u8>>, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        if let Some(call) = &mut self.current {
            call.handle_response(app, id, response, now);
        }
    }

    fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        if let Some(call) = &mut self.current {
            call.handle_failure(app, id, error, now);
        }
    }

    /// Pages never use the shared store: a reply changes nothing but the app's change counter.
    fn handle_store(&mut self, app: &mut App, _id: RequestId, _reply: Result<StoreReply, Error>, _now: Timestamp) {
        if !self.finished.is_set() {
            app.changed();
        }
    }

    fn abandon(&mut self, app: &mut App, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        // The page's call releases what it holds (a signature it asked for, for one).
        if let Some(mut call) = self.current.take() {
            call.abandon(app, now);
        }
        app.changed();
    }
}
