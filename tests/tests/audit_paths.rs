//! Issue 21 (6c): with a base URL that has a path (`…/v1`), a request for `…/v1/../admin` or
//! `…/v1/%2e%2e/admin` is not the registry's: no token is added to it. Such a path passed the
//! registry check before, and an HTTP stack or a proxy resolves it to `/admin`, outside the base
//! URL (reqwest does so itself: the token reached `/admin`).
//!
//! Over real loopback HTTP, against the fake registry served under `/v1`; it records every
//! request with the path it arrived with.

use http::Method;
use icr_app_core::Error;
use icr_app_e2e::{Setup, assert_registry_request_authorised, assert_registry_request_authorised_async};
use icr_app_testkit::RecordedRequest;

/// The paths that escape the base path, as written after the base URL.
const ESCAPES: [&str; 4] = [
    "/../admin",
    "/%2e%2e/admin",
    "/%2E%2e/admin",
    "/projects/..%2f..%2fadmin",
];

fn setup() -> Setup {
    let setup = Setup::new(1);
    setup.registry.serve_under("/v1");
    assert!(setup.registry.base_url().ends_with("/v1"));
    setup
}

/// Every request the registry received that carried a token and was not for a path under
/// `/v1/` that stays there: what must never happen.
fn tokens_outside_the_base(setup: &Setup) -> Vec<String> {
    setup
        .registry
        .requests()
        .iter()
        .filter(|r: &&RecordedRequest| r.header("authorization").is_some())
        .filter(|r| !r.path.starts_with("/v1/") || r.path.contains("..") || r.path.to_ascii_lowercase().contains("%2"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn assert_refused(result: Result<http::Response<Vec<u8>>, Error>, path: &str) {
    let error = result.expect_err(path);
    assert!(matches!(error, Error::Config { .. }), "{path}: {error:?}");
    assert!(
        error.to_string().contains("`..`"),
        "{path}: the message names the cause: {error}"
    );
}

#[test]
fn the_blocking_client_adds_no_token_to_a_path_that_leaves_the_base() {
    let setup = setup();
    let client = icr_app_ureq::Client::new(setup.app());
    let installation = &setup.installations[0];
    for path in ESCAPES {
        let request = client.request(Method::GET, path, None).unwrap();
        assert_refused(client.send_as_installation(installation, request), path);
        let request = client.request(Method::GET, path, None).unwrap();
        assert_refused(client.send_as_app(request), path);
    }
    assert_eq!(tokens_outside_the_base(&setup), Vec::<String>::new());
    // The base's own paths still get the token.
    assert_registry_request_authorised(&client, installation);
}

#[tokio::test]
async fn the_async_client_adds_no_token_to_a_path_that_leaves_the_base() {
    let setup = setup();
    let client = icr_app_reqwest::Client::new(setup.app()).unwrap();
    let installation = &setup.installations[0];
    for path in ESCAPES {
        let request = client.request(Method::GET, path, None).unwrap();
        assert_refused(client.send_as_installation(installation, request).await, path);
        let request = client.request(Method::GET, path, None).unwrap();
        assert_refused(client.send_as_app(request).await, path);
    }
    assert_eq!(tokens_outside_the_base(&setup), Vec::<String>::new());
    assert_registry_request_authorised_async(&client, installation).await;
}

#[test]
fn the_ureq_middleware_adds_no_token_to_a_path_that_leaves_the_base() {
    let setup = setup();
    let client = icr_app_ureq::Client::new(setup.app());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .middleware(icr_app_ureq::middleware::InstallationAuth::new(
            client.clone(),
            setup.installations[0].clone(),
        ))
        .build()
        .into();
    let base = setup.registry.base_url();
    for path in ESCAPES {
        // Sent as it is (ureq does not resolve `..`), without a token: the registry answers 404.
        let response = agent.get(format!("{base}{path}")).call().unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    assert_eq!(tokens_outside_the_base(&setup), Vec::<String>::new());
    let response = agent.get(format!("{base}/projects?limit=1&page=0")).call().unwrap();
    assert_eq!(response.status(), 200);
}
