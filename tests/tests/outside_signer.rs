//! An App without its private key (`App::builder_without_key`) through both clients, over real
//! loopback HTTP against the fake registry, which verifies every JWT with the app's public key:
//!
//! - the client's signer (blocking for ureq, async for reqwest; a stand-in for a KMS that takes
//!   20 ms) is called once for 16 concurrent cold callers over 4 installations, and each
//!   installation is minted once;
//! - a signer that fails is every caller's `Error::Signing`, with the signer's words and no
//!   credential; after the back-off the next call asks the signer again;
//! - a client built for an App without its key and no signer (or with its key and a signer)
//!   is refused with the fix.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use icr_app_core::{App, AppKey, Error, Signer};
use icr_app_e2e::Setup;
use icr_app_reqwest::{AsyncSigner, SignFuture};
use icr_app_testkit::DEMO_PRIVATE_KEY_PEM;

/// A KMS stand-in: signs with the demo key after 20 ms, counts its calls, fails on demand.
#[derive(Clone)]
struct Kms {
    key: Arc<AppKey>,
    calls: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl Kms {
    fn new() -> Self {
        Self {
            key: Arc::new(AppKey::from_pem(DEMO_PRIVATE_KEY_PEM).unwrap()),
            calls: Arc::default(),
            failing: Arc::default(),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::Signing(
                "KMS: AccessDeniedException for key alias/icr-app".into(),
            ));
        }
        self.key.sign_rs256(message)
    }
}

impl Signer for Kms {
    fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        std::thread::sleep(Duration::from_millis(20));
        self.sign(message)
    }
}

impl AsyncSigner for Kms {
    fn sign_rs256<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.sign(message)
        })
    }
}

fn keyless(setup: &Setup) -> App {
    App::builder_without_key(setup.app_id.clone())
        .base_url(setup.registry.base_url())
        .cache(Setup::fast_cache())
        .build()
        .unwrap()
}

#[test]
fn blocking_one_signature_for_many_cold_callers() {
    let setup = Setup::new(4);
    let kms = Kms::new();
    let client = icr_app_ureq::Client::builder(keyless(&setup))
        .signer(kms.clone())
        .build()
        .unwrap();
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let (client, id) = (client.clone(), setup.installations[i % 4].clone());
            std::thread::spawn(move || client.installation_token(&id))
        })
        .collect();
    for thread in threads {
        assert!(thread.join().unwrap().unwrap().secret().expose().starts_with("crs_"));
    }
    assert_eq!(kms.calls.load(Ordering::SeqCst), 1, "one signature for every caller");
    for id in &setup.installations {
        assert_eq!(setup.registry.mint_count(id.as_str()), 1);
    }
    // The app JWT itself, and app calls, reuse it.
    assert_eq!(client.jwt().unwrap().token().expose().split('.').count(), 3);
    assert_eq!(client.installations().unwrap().len(), 4);
    assert_eq!(kms.calls.load(Ordering::SeqCst), 1);
}

#[test]
fn async_one_signature_for_many_cold_callers() {
    let setup = Setup::new(4);
    let kms = Kms::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = icr_app_reqwest::Client::builder(keyless(&setup))
            .signer(kms.clone())
            .build()
            .unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (client, id) = (client.clone(), setup.installations[i % 4].clone());
                tokio::spawn(async move { client.installation_token(&id).await })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().unwrap().secret().expose().starts_with("crs_"));
        }
        assert_eq!(kms.calls.load(Ordering::SeqCst), 1, "one signature for every caller");
        for id in &setup.installations {
            assert_eq!(setup.registry.mint_count(id.as_str()), 1);
        }
        assert_eq!(client.installations().await.unwrap().len(), 4);
        assert_eq!(kms.calls.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn a_failing_signer_is_every_callers_signing_error_and_is_asked_again_next_time() {
    let setup = Setup::new(2);
    let kms = Kms::new();
    kms.failing.store(true, Ordering::SeqCst);
    let client = icr_app_ureq::Client::builder(keyless(&setup))
        .signer(kms.clone())
        .build()
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (client, id) = (client.clone(), setup.installations[i % 2].clone());
            std::thread::spawn(move || client.installation_token(&id))
        })
        .collect();
    for thread in threads {
        let error = thread.join().unwrap().unwrap_err();
        assert!(matches!(error, Error::Signing(_)), "{error:?}");
        let text = error.to_string();
        assert!(
            text.contains("AccessDeniedException") && text.contains("signer"),
            "{text}"
        );
        assert!(!text.contains("eyJ"), "{text}");
    }
    assert!(kms.calls.load(Ordering::SeqCst) <= 4);
    assert_eq!(setup.registry.mint_count(setup.installations[0].as_str()), 0);
    // The failure is held for the cache's back-off (at most 400 ms here), as any mint's is:
    // a failing KMS is not hammered. Then the signer is asked again.
    kms.failing.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(450));
    let token = client.installation_token(&setup.installations[0]).unwrap();
    assert!(token.secret().expose().starts_with("crs_"));
}

#[test]
fn a_client_without_the_signer_its_app_needs_is_refused_with_the_fix() {
    let setup = Setup::new(1);
    let error = icr_app_ureq::Client::builder(keyless(&setup))
        .build()
        .unwrap_err()
        .to_string();
    assert!(error.contains("ClientBuilder::signer"), "{error}");
    let error = icr_app_ureq::Client::builder(setup.app())
        .signer(Kms::new())
        .build()
        .unwrap_err()
        .to_string();
    assert!(error.contains("builder_without_key"), "{error}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _entered = rt.enter();
    let error = icr_app_reqwest::Client::builder(keyless(&setup))
        .build()
        .unwrap_err()
        .to_string();
    assert!(error.contains("ClientBuilder::signer"), "{error}");
}
