//! Authentication for requests sent with your own `ureq::Agent`, as a ureq 3
//! [`Middleware`].
//!
//! Add [`InstallationAuth`] (or [`OrganizationAuth`], or [`AppAuth`]) to your agent's configuration
//! (`Agent::config_builder().middleware(...)`), and every request that agent sends to the
//! registry carries `Authorization: Bearer <token>`:
//!
//! - **The registry's requests only.** A request gets a token when its URL is on the client's
//!   registry: the same scheme, host, port and base path as the base URL, by the core's rule
//!   ([`ApiConfig::is_registry`](icr_app_core::ApiConfig::is_registry)). Requests to any other
//!   host pass through untouched, and so does a request that already carries an `Authorization`
//!   header of its own.
//! - **Through the client's cache.** The token is the [`Client`]'s: minted once (by the SDK's own
//!   transport, not through your agent), shared by every thread and every clone, refreshed ahead
//!   of expiry, never handed out with less than the minimum life left. The registry's `Date`
//!   headers keep teaching the client its clock, as the SDK's own requests do.
//! - **Only the registry's own answers count.** A request that carries a token follows no
//!   redirect, whatever the agent's `max_redirects` (a 3xx comes back as a response, as with the
//!   SDK's own requests): so the answer is always the registry's, and only the registry's `Date`
//!   teaches the clock and only its 401 drops a token. (Followed, a redirect would bring back
//!   another host's answer, and ureq, which drops `Authorization` across a redirect, would not
//!   have sent the token there anyway.) Checking the final URL instead cannot work: ureq returns
//!   a 4xx as `Err(StatusCode)` by default, which carries no URL.
//! - **A 401 drops the token.** Whether the agent returns it as a response or, as ureq does by
//!   default, as `Err(ureq::Error::StatusCode(401))`, the refused token leaves the cache, so the
//!   next request gets a new one.
//!
//!   With a shared token store attached (`Client::builder(app).store(..)`), the refused token
//!   is never read back from the store's entry by this process either: the next fetch mints
//!   and stores a new one in its place.
//! - **No credential in clear.** A token is never sent over plain `http://` to a host other than
//!   loopback unless the client's transport allows it
//!   ([`UreqTransport::allow_insecure_http`](crate::UreqTransport::allow_insecure_http)), as with
//!   the SDK's own requests. **Nor through a proxy in clear**: a request that carries a token to
//!   a loopback registry (or over plain `http` without that opt-in) goes straight to the host,
//!   with the agent's proxy switched off for that request, whether the proxy was set in code
//!   (`ConfigBuilder::proxy`) or read from the environment (`HTTP_PROXY`, `ALL_PROXY`,
//!   `HTTPS_PROXY`, which ureq uses for `http://` too). A middleware cannot read the agent's
//!   proxy, but it can override it per request (`RequestExt::middleware_config`), exactly as the
//!   SDK's own transport does. An `https` registry may use the agent's proxy: it sees only the
//!   encrypted tunnel. Nothing here logs.
//!
//! # Why the 401 retry is outside the chain
//!
//! ureq 3 cannot send a request a second time from inside a middleware:
//! [`MiddlewareNext::handle`](ureq::middleware::MiddlewareNext::handle) takes the continuation
//! by value and it is not `Clone`, a middleware has no way to reach the agent (ureq keeps it in a
//! crate-private request extension), and the body
//! ([`SendBody`]) is a one-pass reader. So the middleware drops the refused
//! token and returns the 401; [`retry_if_refused`] runs your call once more when, and only when,
//! the middleware saw the registry refuse a token during it. The call builds its request again,
//! so any body can be re-sent.
//!
//! When the token cannot be had (the registry refuses the app's key, the installation was
//! removed, the registry cannot be reached), the request is not sent and the error is
//! `ureq::Error::Other` holding the SDK's [`Error`] (`downcast_ref::<icr_app_core::Error>()`).
//!
//! ```
//! use icr_app_core::{App, AppKey, InstallationId};
//! use icr_app_testkit::FakeRegistry;
//! use icr_app_ureq::Client;
//! use icr_app_ureq::middleware::{InstallationAuth, retry_if_refused};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let demo = FakeRegistry::demo();
//! let key = AppKey::from_pem(demo.private_key_pem)?;
//! let base_url = demo.registry.base_url();
//! let icr = Client::new(App::builder(demo.app_id.clone(), key).base_url(&base_url).build()?);
//! let installation = InstallationId::new(demo.installation_ids[0].clone())?;
//!
//! // Your own agent, with the middleware in its chain.
//! let agent: ureq::Agent = ureq::Agent::config_builder()
//!     .middleware(InstallationAuth::new(icr.clone(), installation.clone()))
//!     .build()
//!     .into();
//!
//! let url = format!("{base_url}/projects?limit=10&page=0");
//! let body = retry_if_refused(|| agent.get(&url).call())?.body_mut().read_to_vec()?;
//! let projects: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(projects["projects"][0]["fullName"], "Sample project 1");
//! assert_eq!(demo.registry.mint_count(installation.as_str()), 1);
//! # Ok(())
//! # }
//! ```
//!
//! One middleware serves one scope; a request may name another with a [`TokenScope`] in its
//! extensions (build an `http::Request`, insert `TokenScope::Installation(id)` or
//! `TokenScope::Organization(id)` into its extensions and send it with `agent.run(request)`), so
//! one agent can act for every installation.

use std::cell::Cell;

use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use icr_app_core::{Error, InstallationId, OrganizationId, Route, Token, TokenScope};
use ureq::middleware::{Middleware, MiddlewareNext};
use ureq::{Body, RequestExt as _, SendBody};

use crate::client::Client;

thread_local! {
    /// How many tokens the middleware saw refused on this thread: ureq runs a request's whole
    /// chain on the thread that sent it, so [`retry_if_refused`] reads this before and after.
    static REFUSALS: Cell<u64> = const { Cell::new(0) };
}

/// Adds an installation access token to every request for the registry (see the
/// [module docs](self)).
///
/// Cheap to clone; clones (and the [`Client`] it was made with) share one token cache.
#[derive(Clone, Debug)]
pub struct InstallationAuth {
    auth: Auth,
}

impl InstallationAuth {
    /// Authorises requests as `installation`, with tokens from `client`'s cache.
    pub fn new(client: Client, installation: InstallationId) -> Self {
        Self {
            auth: Auth {
                client,
                scope: TokenScope::Installation(installation),
            },
        }
    }
}

/// Adds the access token of the app's installation on an organization to every request for
/// the registry, whatever the installation's id (see the [module docs](self), and
/// [`TokenScope::Organization`]): after the organization reinstalls the app, the old
/// installation's token is refused, dropped, and the next request (or [`retry_if_refused`]'s
/// second run) gets the new installation's.
///
/// Cheap to clone; clones (and the [`Client`] it was made with) share one token cache.
#[derive(Clone, Debug)]
pub struct OrganizationAuth {
    auth: Auth,
}

impl OrganizationAuth {
    /// Authorises requests as the app's installation on `organization`, with tokens from
    /// `client`'s cache.
    pub fn new(client: Client, organization: OrganizationId) -> Self {
        Self {
            auth: Auth {
                client,
                scope: TokenScope::Organization(organization),
            },
        }
    }
}

impl Middleware for OrganizationAuth {
    fn handle(&self, request: Request<SendBody>, next: MiddlewareNext) -> Result<Response<Body>, ureq::Error> {
        self.auth.handle(request, next)
    }
}

/// Adds the app access token (`POST /app/accessTokens`) to every request for the registry: for
/// the app's own and the public resources, e.g. `GET /projects`, when no organization's data is
/// needed (see the [module docs](self)).
///
/// Cheap to clone; clones (and the [`Client`] it was made with) share one token cache.
#[derive(Clone, Debug)]
pub struct AppAuth {
    auth: Auth,
}

impl AppAuth {
    /// Authorises requests as the app, with tokens from `client`'s cache.
    pub fn new(client: Client) -> Self {
        Self {
            auth: Auth {
                client,
                scope: TokenScope::App,
            },
        }
    }
}

impl Middleware for InstallationAuth {
    fn handle(&self, request: Request<SendBody>, next: MiddlewareNext) -> Result<Response<Body>, ureq::Error> {
        self.auth.handle(request, next)
    }
}

impl Middleware for AppAuth {
    fn handle(&self, request: Request<SendBody>, next: MiddlewareNext) -> Result<Response<Body>, ureq::Error> {
        self.auth.handle(request, next)
    }
}

/// Runs `call` (requests sent through an agent with [`InstallationAuth`], [`OrganizationAuth`]
/// or [`AppAuth`]), and
/// runs it once more if the registry refused a token during it, with the fresh token the
/// middleware then adds.
///
/// Only a refusal the middleware saw counts: a 401 from another host, or for a request with an
/// `Authorization` of its own, is returned as it is. The second outcome is returned whatever it
/// is. `call` builds and sends its request each time, so any body can be sent again; make it a
/// call that is safe to repeat.
///
/// ```no_run
/// # fn demo(agent: &ureq::Agent, url: &str) -> Result<(), ureq::Error> {
/// let response = icr_app_ureq::middleware::retry_if_refused(|| agent.post(url).send("{}"))?;
/// # Ok(()) }
/// ```
pub fn retry_if_refused<T>(mut call: impl FnMut() -> Result<T, ureq::Error>) -> Result<T, ureq::Error> {
    let before = REFUSALS.with(Cell::get);
    let first = call();
    if REFUSALS.with(Cell::get) == before {
        return first;
    }
    drop(first);
    call()
}

/// What both middlewares do, for their scope.
#[derive(Clone, Debug)]
struct Auth {
    client: Client,
    scope: TokenScope,
}

impl Auth {
    fn handle(&self, request: Request<SendBody>, next: MiddlewareNext) -> Result<Response<Body>, ureq::Error> {
        if request.headers().contains_key(AUTHORIZATION) || !self.is_registry(&request) {
            return next.handle(request);
        }
        // The SDK's rule for a request that carries a credential: no plain `http://` to a
        // remote host unless allowed; and the route: loopback and plain `http` go direct.
        let route = self
            .client
            .transport()
            .policy()
            .check_credential_target(request.uri())
            .map_err(other)?;

        let scope = request
            .extensions()
            .get::<TokenScope>()
            .cloned()
            .unwrap_or_else(|| self.scope.clone());
        let token = self.client.token(&scope, None).map_err(other)?;
        // For this request only, whatever the agent says: no redirect (the answer is the
        // registry's own), and no proxy where the route is direct (no token through a proxy in
        // clear).
        let Some(config) = request.middleware_config() else {
            return Err(other(Error::config(
                "ureq middleware",
                "the request reached it without its agent (another middleware rebuilt the request without its \
                 extensions?), so its proxy and redirects cannot be set; nothing was sent: keep the request's \
                 extensions in the middlewares before this one",
            )));
        };
        let config = config.max_redirects(0);
        let mut request = if route == Route::Direct {
            config.proxy(None)
        } else {
            config
        }
        .build();
        icr_app_core::api::authorize(&mut request, token.secret()).map_err(other)?;
        let outcome = next.handle(request);
        let status = match &outcome {
            Ok(response) => {
                self.observe(response);
                response.status()
            }
            Err(ureq::Error::StatusCode(code)) => StatusCode::from_u16(*code).unwrap_or(StatusCode::OK),
            Err(_) => return outcome,
        };
        if status == StatusCode::UNAUTHORIZED {
            self.refused(&scope, &token);
        }
        outcome
    }

    /// The core's rule: the base URL's scheme, host, port and path prefix.
    fn is_registry(&self, request: &Request<SendBody>) -> bool {
        self.client.with_app(|app| app.api().is_registry(request.uri()))
    }

    /// Teaches the client the registry's clock from `response`'s `Date`.
    fn observe(&self, response: &Response<Body>) {
        if let Some(seen) = icr_app_driver::date_only(response.headers()) {
            let now = icr_app_driver::now();
            self.client.with_app(|app| app.observe(&seen, now));
        }
    }

    /// Drops `token`, which the registry refused, and counts the refusal for [`retry_if_refused`].
    fn refused(&self, scope: &TokenScope, token: &Token) {
        self.client.invalidate(scope, token);
        REFUSALS.with(|n| n.set(n.get() + 1));
    }
}

fn other(error: Error) -> ureq::Error {
    ureq::Error::Other(Box::new(error))
}
