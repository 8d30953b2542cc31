//! Authentication for requests sent with your own reqwest client, as a
//! [`reqwest-middleware`](https://docs.rs/reqwest-middleware) middleware (feature `middleware`).
//!
//! Add [`InstallationAuth`] (or [`OrganizationAuth`], or [`AppAuth`]) to a
//! `reqwest_middleware::ClientBuilder`, and every
//! request that client sends to the registry carries `Authorization: Bearer <token>`:
//!
//! - **The registry's requests only.** A request gets a token when its URL is on the client's
//!   registry: the same scheme, host, port and base path as the base URL, by the core's rule
//!   ([`ApiConfig::is_registry`](icr_app_core::ApiConfig::is_registry)). Requests to any other
//!   host pass through untouched, and so does a request that already carries an `Authorization`
//!   header of its own.
//! - **Through the client's cache.** The token is the [`Client`]'s: minted once (by the SDK's own
//!   transport, not through your client), shared by every request and every clone, refreshed
//!   ahead of expiry, never handed out with less than the minimum life left. The registry's
//!   `Date` headers keep teaching the client its clock, as the SDK's own requests do.
//! - **Only the registry's own answers count.** reqwest follows redirects (unless your client
//!   says otherwise), so the response handed back may come from another host: only a response
//!   whose final URL (`Response::url`) is on the registry teaches the clock or drops a token with
//!   its 401. Another host's 401 is returned as it is, and the token stays cached. (reqwest drops
//!   `Authorization` on a redirect to another host.)
//! - **A 401 drops the token, and the request is sent once more** with a fresh one, when its
//!   body can be cloned (every body but a stream: `reqwest::Request::try_clone`). A request with
//!   a streaming body is not re-sent: its 401 is returned, and the refused token is already gone
//!   from the cache, so the next request gets a new one. A second 401 is returned as it is (and
//!   that token dropped too).
//!
//!   With a shared token store attached (`Client::builder(app).store(..)`), the refused token
//!   is never read back from the store's entry by this process either: the next fetch mints
//!   and stores a new one in its place.
//! - **No credential in clear.** A token is never sent over plain `http://` to a host other than
//!   loopback unless the client's transport allows it
//!   ([`ReqwestTransport::allow_insecure_http`](crate::ReqwestTransport::allow_insecure_http)),
//!   as with the SDK's own requests. The header value is marked sensitive; nothing here logs.
//! - **Nor through a proxy in clear.** reqwest sends plain `http://` through the proxy that
//!   `HTTP_PROXY`, `http_proxy`, `ALL_PROXY` or `all_proxy` names, unless `NO_PROXY` covers the
//!   host. So a token is not added to a plain `http://` request (a loopback registry, a sidecar)
//!   while any of them is set and `NO_PROXY` (or `no_proxy`) does not cover the host by the
//!   rules every client honours ([`ProxyEnv`]: the IP address for an IP host, which `*` does
//!   not cover in reqwest; `*`, the host or a domain it ends in for a name; a port never
//!   counts): the request is not sent, and the error
//!   (a `Transport` error of kind `Refused`) says to set `NO_PROXY` for that host, use `https`,
//!   or unset the proxy. The environment is read for each such request. An `https` registry may
//!   go through any proxy: it sees only the encrypted tunnel.
//!
//!   A proxy configured in code on your client (`ClientBuilder::proxy`) cannot be seen by a
//!   middleware: reqwest does not expose a client's proxies. Do not use this middleware on such
//!   a client with a plain `http://` registry unless that proxy excludes the registry's host
//!   (`Proxy::no_proxy`); give the registry's requests a client without a proxy, or use `https`.
//!   A client built with `no_proxy()` goes direct whatever the environment says; the check
//!   above still refuses while a proxy variable is set: add the host to `NO_PROXY`.
//!
//! When the token cannot be had (the registry refuses the app's key, the installation was
//! removed, the registry cannot be reached), the request is not sent and the error is
//! [`reqwest_middleware::Error::Middleware`] wrapping the SDK's [`Error`]:
//! `error.downcast_ref::<icr_app_core::Error>()` on its `anyhow::Error` gets it back.
//!
//! ```
//! use icr_app_core::{App, AppKey, InstallationId};
//! use icr_app_reqwest::Client;
//! use icr_app_reqwest::middleware::InstallationAuth;
//! use icr_app_testkit::FakeRegistry;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let demo = FakeRegistry::demo();
//! let key = AppKey::from_pem(demo.private_key_pem)?;
//! let base_url = demo.registry.base_url();
//! let icr = Client::new(App::builder(demo.app_id.clone(), key).base_url(&base_url).build()?)?;
//! let installation = InstallationId::new(demo.installation_ids[0].clone())?;
//!
//! // Your own client (any `reqwest::Client`; this one has the SDK's TLS settings), with the
//! // middleware in its chain.
//! let own = icr_app_reqwest::ReqwestTransport::client_builder()?.build()?;
//! let http = reqwest_middleware::ClientBuilder::new(own)
//!     .with(InstallationAuth::new(icr.clone(), installation.clone()))
//!     .build();
//!
//! let response = http
//!     .get(format!("{base_url}/projects?limit=10&page=0"))
//!     .header("x-icr-api-version", "2023-06-16")
//!     .send()
//!     .await?
//!     .error_for_status()?;
//! let projects: serde_json::Value = serde_json::from_slice(&response.bytes().await?)?;
//! assert_eq!(projects["projects"][0]["fullName"], "Sample project 1");
//! assert_eq!(demo.registry.mint_count(installation.as_str()), 1);
//! # Ok(())
//! # }
//! ```
//!
//! One middleware serves one scope; a request may name another with a [`TokenScope`] in its
//! extensions (`RequestBuilder::with_extension(TokenScope::Installation(id))`, or
//! `TokenScope::Organization(id)`), so one client can act for every installation.

use http::Extensions;
use icr_app_core::{Error, InstallationId, OrganizationId, ProxyEnv, Token, TokenScope};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Request, Response, StatusCode};
use reqwest_middleware::{Middleware, Next};

use crate::client::Client;

pub use reqwest_middleware;

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
/// installation's token is refused and dropped, and the request sent once more with the new
/// installation's.
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

#[async_trait::async_trait]
impl Middleware for OrganizationAuth {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.auth.handle(request, extensions, next).await
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

#[async_trait::async_trait]
impl Middleware for InstallationAuth {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.auth.handle(request, extensions, next).await
    }
}

#[async_trait::async_trait]
impl Middleware for AppAuth {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.auth.handle(request, extensions, next).await
    }
}

/// What both middlewares do, for their scope.
#[derive(Clone, Debug)]
struct Auth {
    client: Client,
    scope: TokenScope,
}

impl Auth {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        if request.headers().contains_key(AUTHORIZATION) || !self.is_registry(&request) {
            return next.run(request, extensions).await;
        }
        self.check_security(&request)
            .map_err(reqwest_middleware::Error::middleware)?;
        let scope = extensions
            .get::<TokenScope>()
            .cloned()
            .unwrap_or_else(|| self.scope.clone());

        let token = self.token(&scope).await?;
        // Taken before the token goes in: the copy is sent only after a 401, with a new token.
        let again = request.try_clone();
        authorize(&mut request, &token)?;
        let response = next.clone().run(request, &mut *extensions).await?;
        if !self.refused(&scope, &token, &response) {
            return Ok(response);
        }
        let Some(mut request) = again else {
            // A streaming body cannot be sent twice; the next request gets a new token.
            return Ok(response);
        };
        drop(response);
        let token = self.token(&scope).await?;
        authorize(&mut request, &token)?;
        let response = next.run(request, extensions).await?;
        self.refused(&scope, &token, &response);
        Ok(response)
    }

    /// The core's rule: the base URL's scheme, host, port and path prefix.
    fn is_registry(&self, request: &Request) -> bool {
        self.is_registry_url(request.url())
    }

    /// [`is_registry`](Self::is_registry) for a URL (a request's, or a response's final one).
    fn is_registry_url(&self, url: &reqwest::Url) -> bool {
        let Ok(uri) = url.as_str().parse::<http::Uri>() else {
            return false;
        };
        self.client.with_app(|app| app.api().is_registry(&uri))
    }

    /// The SDK's transport policy for a request that carries a credential: no plain `http://`
    /// to a remote host unless allowed, and none through a proxy the environment names.
    fn check_security(&self, request: &Request) -> Result<(), Error> {
        let uri = request
            .url()
            .as_str()
            .parse()
            .map_err(|_| Error::config("request URL", "it is not a valid URI"))?;
        // Only plain http needs the environment (https may go through any proxy).
        let proxies = if request.url().scheme() == "http" {
            ProxyEnv::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
        } else {
            ProxyEnv::default()
        };
        self.client
            .transport()
            .policy()
            .check_credential_target_with_proxies(&uri, &proxies)
            .map(drop)
    }

    async fn token(&self, scope: &TokenScope) -> reqwest_middleware::Result<Token> {
        self.client
            .token(scope, None)
            .await
            .map_err(reqwest_middleware::Error::middleware)
    }

    /// Teaches the client the registry's clock from `response`, and drops `token` when the
    /// registry refused it; whether it did. A response from another host (a redirect was
    /// followed) does neither.
    fn refused(&self, scope: &TokenScope, token: &Token, response: &Response) -> bool {
        if !self.is_registry_url(response.url()) {
            return false;
        }
        if let Some(seen) = icr_app_driver::date_only(response.headers()) {
            let now = icr_app_driver::now();
            self.client.with_app(|app| app.observe(&seen, now));
        }
        if response.status() != StatusCode::UNAUTHORIZED {
            return false;
        }
        self.client.invalidate(scope, token);
        true
    }
}

/// Sets `Authorization: Bearer <token>`, marked sensitive.
fn authorize(request: &mut Request, token: &Token) -> reqwest_middleware::Result<()> {
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.secret().expose())).map_err(|_| {
        reqwest_middleware::Error::middleware(Error::config(
            "token",
            "it contains characters not allowed in an HTTP header",
        ))
    })?;
    value.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
}
