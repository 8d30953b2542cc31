//! Shared setup for the end-to-end tests: a fake registry with a demo app, and clients for it.
#![allow(missing_docs)]

use std::time::Duration;

use icr_app_core::{App, AppKey, CacheConfig, InstallationId, RetryPolicy};
use icr_app_testkit::{DEMO_PRIVATE_KEY_PEM, FakeRegistry};

/// A registry with the demo app registered and `installations` installations.
pub struct Setup {
    pub registry: FakeRegistry,
    pub app_id: String,
    pub installations: Vec<InstallationId>,
}

impl Setup {
    pub fn new(installations: usize) -> Self {
        let registry = FakeRegistry::start();
        let app_id = "d23967cc-dd16-452b-8af4-869965745978".to_owned();
        registry
            .register_app_with_private_key(&app_id, DEMO_PRIVATE_KEY_PEM)
            .expect("register the demo app");
        let installations = (0..installations)
            .map(|i| {
                let id = registry.add_installation(
                    &app_id,
                    &format!("Organization {i}"),
                    &[("organization_info", "VIEW"), ("organization_inventory", "REQUEST")],
                );
                InstallationId::new(id).unwrap()
            })
            .collect();
        Self {
            registry,
            app_id,
            installations,
        }
    }

    /// An app with fast back-off (tests wait milliseconds, not seconds) and `min_remaining` of 1 s
    /// so that short-lived tokens are usable.
    pub fn app(&self) -> App {
        self.app_with(CacheConfig {
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            min_remaining: Duration::from_secs(1),
            ..CacheConfig::default()
        })
    }

    pub fn app_with(&self, cache: CacheConfig) -> App {
        App::builder(self.app_id.clone(), AppKey::from_pem(DEMO_PRIVATE_KEY_PEM).unwrap())
            .base_url(self.registry.base_url())
            .cache(cache)
            .retry(RetryPolicy {
                max_attempts: 4,
                max_wait: Duration::from_secs(10),
            })
            .seed(42)
            .build()
            .unwrap()
    }
}
