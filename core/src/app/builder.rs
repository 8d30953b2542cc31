//! [`AppBuilder`]: an [`App`] made from plain settings, each checked when it is built.

use std::sync::Arc;
use std::time::Duration;

use super::App;
use crate::api::ApiConfig;
use crate::cache::{CacheConfig, TokenCache};
use crate::error::Error;
use crate::jwt::AppId;
use crate::retry::RetryPolicy;
use crate::signer::Signer;

/// Builds an [`App`] from plain settings, checking each at [`build`](Self::build).
///
/// ```
/// # use icr_app_core::{App, AppKey};
/// # let key = AppKey::from_pem(include_str!("../../tests/fixtures/keys/rsa2048-pkcs8.pem")).unwrap();
/// let app = App::builder("d23967cc-dd16-452b-8af4-869965745978", key).base_url("http://127.0.0.1:8080").build()?;
/// assert_eq!(app.api().base_url(), "http://127.0.0.1:8080");
/// # Ok::<(), icr_app_core::Error>(())
/// ```
#[must_use = "call build()"]
pub struct AppBuilder {
    app_id: String,
    signer: Arc<dyn Signer>,
    base_url: Option<String>,
    api_version: Option<String>,
    user_agent: Option<String>,
    jwt_lifetime: Option<Duration>,
    cache: CacheConfig,
    retry: RetryPolicy,
    seed: u64,
}

impl AppBuilder {
    /// The registry's base URL (default `https://api.carbonregistry.com`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The `x-icr-api-version` to send (default `2023-06-16`).
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = Some(version.into());
        self
    }

    /// The `user-agent` to send.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// The JWT lifetime (default 9 minutes, at most 10).
    pub fn jwt_lifetime(mut self, lifetime: Duration) -> Self {
        self.jwt_lifetime = Some(lifetime);
        self
    }

    /// Token cache settings.
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = config;
        self
    }

    /// How clients retry failed mints.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The seed of the back-off jitter (drivers pass randomness; tests a constant).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks every setting and makes the [`App`].
    pub fn build(self) -> Result<App, Error> {
        let mut api = ApiConfig::new();
        if let Some(url) = &self.base_url {
            api = api.with_base_url(url)?;
        }
        if let Some(v) = &self.api_version {
            api = api.with_api_version(v)?;
        }
        if let Some(ua) = &self.user_agent {
            api = api.with_user_agent(ua)?;
        }
        let mut app = App::new(api, AppId::new(self.app_id)?, self.signer).with_cache(self.cache, self.seed);
        if let Some(lifetime) = self.jwt_lifetime {
            app = app.with_jwt_lifetime(lifetime)?;
        }
        app.retry = self.retry;
        Ok(app)
    }
}

impl App {
    /// A builder taking plain settings: the app id and the key (or any [`Signer`]).
    pub fn builder(app_id: impl Into<String>, signer: impl Signer + 'static) -> AppBuilder {
        AppBuilder {
            app_id: app_id.into(),
            signer: Arc::new(signer),
            base_url: None,
            api_version: None,
            user_agent: None,
            jwt_lifetime: None,
            cache: CacheConfig::default(),
            retry: RetryPolicy::default(),
            seed: 0,
        }
    }

    /// Replaces the token cache (dropping anything cached) with one of `config`, whose back-off
    /// jitter is drawn from `seed`.
    pub(crate) fn with_cache(mut self, config: CacheConfig, seed: u64) -> Self {
        self.cache = TokenCache::new(config, seed);
        self
    }

    /// Sets the JWT lifetime (at most 10 minutes; see [`JwtSigner::with_lifetime`](crate::JwtSigner::with_lifetime)).
    pub(crate) fn with_jwt_lifetime(mut self, lifetime: Duration) -> Result<Self, Error> {
        self.jwt = self.jwt.with_lifetime(lifetime)?;
        Ok(self)
    }
}
