//! [`AppBuilder`]: an [`App`] made from plain settings, each checked when it is built.

use std::sync::Arc;
use std::time::Duration;

use super::App;
use crate::api::ApiConfig;
use crate::cache::{CacheConfig, TokenCache};
use crate::error::Error;
use crate::jwt::{AppId, JwtSigner};
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
    /// `None`: the app has no private key (see [`App::builder_without_key`]).
    signer: Option<Arc<dyn Signer>>,
    /// The secret a shared store seals under, for an app without a key, as given.
    sealing: Option<zeroize::Zeroizing<Vec<u8>>>,
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

    /// For an app without a private key ([`App::builder_without_key`]): the secret a shared
    /// token store seals tokens under (an app with a key derives it from the key). Every
    /// process sharing the store must be given the same secret, of at least 32 random bytes
    /// (`openssl rand 32`, kept with the app's other secrets); it is stretched with HKDF. Without
    /// one, [`App::attach_store`] fails.
    pub fn sealing_secret(mut self, secret: &[u8]) -> Self {
        self.sealing = Some(zeroize::Zeroizing::new(secret.to_vec()));
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
        let app_id = AppId::new(self.app_id)?;
        let jwt = match (self.signer, self.sealing) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "sealing secret",
                    "an app with a private key seals shared tokens under a secret derived from the key; give a sealing secret only to an app built with App::builder_without_key",
                ));
            }
            (None, Some(secret)) if secret.len() < 32 => {
                return Err(Error::config(
                    "sealing secret",
                    "it is shorter than 32 bytes; use at least 32 random bytes (e.g. `openssl rand 32`), the same in every process",
                ));
            }
            (Some(signer), None) => JwtSigner::new(app_id, signer),
            (None, sealing) => JwtSigner::without_key(app_id, sealing.map(|s| crate::keys::sealing_secret(&s))),
        };
        let mut app = App::new(api, jwt).with_cache(self.cache, self.seed);
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
        Self::builder_with(app_id.into(), Some(Arc::new(signer)))
    }

    /// A builder for an app whose private key is not in this process (a KMS, an HSM, a signer
    /// written in another language, asynchronous or slow): every app JWT's signature is a step
    /// the driver performs ([`Step::Sign`](crate::Step::Sign): the bytes out, the RS256
    /// signature back), once however many operations need it, about every eight minutes. The
    /// clients take the signer that performs it (`ClientBuilder::signer`). For a shared token
    /// store, also give [`AppBuilder::sealing_secret`].
    ///
    /// ```
    /// # use icr_app_core::{App, GetToken, Operation, Step, Timestamp, TokenScope};
    /// let mut app = App::builder_without_key("67890").build()?;
    /// let now = Timestamp::from_unix_seconds(1_700_000_000);
    /// let mut op = GetToken::new(TokenScope::App, None);
    /// let Step::Sign { id, message } = op.poll(&mut app, now) else { panic!("the JWT is signed first") };
    /// # let key = icr_app_core::AppKey::from_pem(include_str!("../../tests/fixtures/keys/rsa2048-pkcs8.pem")).unwrap();
    /// let signature = kms_sign(&message); // your KMS, HSM or remote signer: RS256 of `message`
    /// # fn kms_sign(_: &[u8]) -> Vec<u8> { vec![1; 256] }
    /// op.handle_signature(&mut app, id, Ok(signature), now);
    /// let Step::Send { request, .. } = op.poll(&mut app, now) else { panic!("then it mints") };
    /// assert!(request.headers()["authorization"].to_str()?.starts_with("Bearer eyJ"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder_without_key(app_id: impl Into<String>) -> AppBuilder {
        Self::builder_with(app_id.into(), None)
    }

    fn builder_with(app_id: String, signer: Option<Arc<dyn Signer>>) -> AppBuilder {
        AppBuilder {
            app_id,
            signer,
            sealing: None,
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
