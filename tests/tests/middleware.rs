//! The middlewares that authenticate requests sent with the user's own HTTP client
//! (`icr_app_reqwest::middleware` over reqwest-middleware, `icr_app_ureq::middleware` over a
//! `ureq::Agent`), over real loopback HTTP against the fake registry:
//!
//! - the token goes to the registry and to no other host (a second loopback listener records
//!   what reaches it), and a request with an `Authorization` of its own keeps it;
//! - a 401 from the registry drops the token, and the request goes once more with a fresh one
//!   (reqwest: in the middleware, for a body that can be cloned; ureq: through
//!   `retry_if_refused`), never more than once;
//! - tokens come from the client's cache: one mint for many concurrent requests, and a refresh
//!   ahead of expiry once the registry's `Date` shows the token near its end, without a 401;
//! - a token that cannot be had is the SDK's error, and the plain-http rule holds;
//! - both examples call two endpoints through the user's client with one mint.

use icr_app_core::{App, AppKey, InstallationId, TokenScope};
use icr_app_e2e::{Peer, Setup};
use icr_app_reqwest::middleware::reqwest_middleware::{self, ClientWithMiddleware};
use icr_app_testkit::{DEMO_PRIVATE_KEY_PEM, FakeRegistry, Fault, RecordedRequest};

fn has_authorization(head: &str) -> bool {
    head.lines()
        .any(|l| l.to_ascii_lowercase().starts_with("authorization:"))
}

/// The `Bearer` token of each request the registry received for `path`, with its status.
fn bearers(registry: &FakeRegistry, path: &str) -> Vec<(String, u16)> {
    registry
        .requests()
        .iter()
        .filter(|r| r.path.starts_with(path))
        .map(|r: &RecordedRequest| {
            let auth = r.header("authorization").unwrap_or_default();
            (auth.strip_prefix("Bearer ").unwrap_or(auth).to_owned(), r.status)
        })
        .collect()
}

fn projects_url(setup: &Setup) -> String {
    format!("{}/projects?limit=10&page=0", setup.registry.base_url())
}

// ---------------------------------------------------------------------------------------------
// reqwest

fn reqwest_client(app: App) -> icr_app_reqwest::Client {
    icr_app_reqwest::Client::new(app).unwrap()
}

/// The user's own client with `middleware` in its chain.
fn own_reqwest(middleware: impl reqwest_middleware::Middleware) -> ClientWithMiddleware {
    let own = icr_app_reqwest::ReqwestTransport::client_builder()
        .unwrap()
        .build()
        .unwrap();
    reqwest_middleware::ClientBuilder::new(own).with(middleware).build()
}

fn reqwest_auth(client: &icr_app_reqwest::Client, installation: &InstallationId) -> ClientWithMiddleware {
    own_reqwest(icr_app_reqwest::middleware::InstallationAuth::new(
        client.clone(),
        installation.clone(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reqwest_adds_the_token_for_the_registry_and_no_other_host() {
    let setup = Setup::new(1);
    let installation = &setup.installations[0];
    let client = reqwest_client(setup.app());
    let http = reqwest_auth(&client, installation);

    let response = http.get(projects_url(&setup)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let token = client.installation_token(installation).await.unwrap();
    assert_eq!(
        bearers(&setup.registry, "/projects"),
        [(token.secret().expose().to_owned(), 200)]
    );
    assert_eq!(setup.registry.mint_count(installation.as_str()), 1);

    // Another host (the same address, another port): untouched.
    let peer = Peer::start(200, None);
    let response = http.get(format!("{}/projects", peer.url())).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = peer.seen();
    assert_eq!(seen.len(), 1);
    assert!(!has_authorization(&seen[0]), "{}", seen[0]);

    // A request with an Authorization of its own keeps it; its 401 drops nothing.
    setup.registry.clear_requests();
    let response = http
        .get(projects_url(&setup))
        .header("authorization", "Bearer crs_mine")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(bearers(&setup.registry, "/projects"), [("crs_mine".to_owned(), 401)]);
    assert!(client.installation_token(installation).await.unwrap().same_as(&token));
    assert_eq!(setup.registry.mint_count(installation.as_str()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reqwest_401_drops_the_token_and_sends_once_more_with_a_new_one() {
    let setup = Setup::new(1);
    let installation = &setup.installations[0];
    let client = reqwest_client(setup.app());
    let http = reqwest_auth(&client, installation);
    assert_eq!(http.get(projects_url(&setup)).send().await.unwrap().status(), 200);
    let first = client.installation_token(installation).await.unwrap();

    // Revoked on the registry's side: the cached token is refused.
    setup.registry.revoke_all_tokens();
    setup.registry.clear_requests();
    let response = http
        .get(projects_url(&setup))
        .body(b"a body that can be cloned".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let second = client.installation_token(installation).await.unwrap();
    assert!(!second.same_as(&first));
    assert_eq!(
        bearers(&setup.registry, "/projects"),
        [
            (first.secret().expose().to_owned(), 401),
            (second.secret().expose().to_owned(), 200)
        ]
    );
    let bodies: Vec<Vec<u8>> = setup
        .registry
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/projects"))
        .map(|r| r.body)
        .collect();
    assert_eq!(
        bodies,
        [
            b"a body that can be cloned".to_vec(),
            b"a body that can be cloned".to_vec()
        ]
    );
    assert_eq!(setup.registry.mint_count(installation.as_str()), 2);

    // Refused twice: the second 401 is returned, not retried again; both tokens are dropped.
    setup.registry.clear_requests();
    setup.registry.inject_for(
        "/projects",
        Fault::Status {
            status: 401,
            retry_after: None,
        },
        2,
    );
    let response = http.get(projects_url(&setup)).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let seen = bearers(&setup.registry, "/projects");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].0, second.secret().expose());
    assert_ne!(seen[1].0, seen[0].0);
    assert_eq!(setup.registry.mint_count(installation.as_str()), 3);
    let fourth = client.installation_token(installation).await.unwrap();
    assert_ne!(fourth.secret().expose(), seen[1].0);
    assert_eq!(setup.registry.mint_count(installation.as_str()), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reqwest_401_with_a_streaming_body_is_returned_and_the_next_request_gets_a_new_token() {
    let setup = Setup::new(1);
    let installation = &setup.installations[0];
    let client = reqwest_client(setup.app());
    let http = reqwest_auth(&client, installation);
    assert_eq!(http.get(projects_url(&setup)).send().await.unwrap().status(), 200);
    let first = client.installation_token(installation).await.unwrap();

    setup.registry.revoke_all_tokens();
    setup.registry.clear_requests();
    // A body that is a stream (here another response's) cannot be sent twice.
    let streaming = reqwest::Body::from(reqwest::Response::from(http::Response::new(b"streamed".to_vec())));
    let response = http.get(projects_url(&setup)).body(streaming).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        bearers(&setup.registry, "/projects"),
        [(first.secret().expose().to_owned(), 401)]
    );
    // The refused token is gone: the next request mints and succeeds.
    assert_eq!(http.get(projects_url(&setup)).send().await.unwrap().status(), 200);
    assert_eq!(setup.registry.mint_count(installation.as_str()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reqwest_many_requests_one_mint_and_a_refresh_ahead_of_expiry() {
    let setup = Setup::new(1);
    let installation = &setup.installations[0];
    let client = reqwest_client(setup.app());
    let http = reqwest_auth(&client, installation);

    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (http, url) = (http.clone(), projects_url(&setup));
            tokio::spawn(async move { http.get(url).send().await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(setup.registry.mint_count(installation.as_str()), 1);
    let seen = bearers(&setup.registry, "/projects");
    assert_eq!(seen.len(), 32);
    assert!(seen.iter().all(|s| *s == seen[0]), "one token for all: {seen:?}");

    // Ten minutes before the (two-hour) token expires on the registry's clock: the next answer's
    // `Date` shows it, the token is due for a refresh (12 minutes ahead), and the request after
    // it goes with a new token. The old one was never refused.
    setup.registry.advance_clock(2 * 3600 - 600);
    assert_eq!(http.get(projects_url(&setup)).send().await.unwrap().status(), 200);
    assert_eq!(http.get(projects_url(&setup)).send().await.unwrap().status(), 200);
    assert_eq!(setup.registry.mint_count(installation.as_str()), 2);
    let seen = bearers(&setup.registry, "/projects");
    assert!(seen.iter().all(|(_, status)| *status == 200), "{seen:?}");
    assert_eq!(
        seen[32].0, seen[0].0,
        "the old token served until the clock was learned"
    );
    assert_ne!(seen[33].0, seen[0].0, "then a new one, before the old one expired");
    assert!(setup.registry.token_is_valid(&seen[0].0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reqwest_app_tokens_and_a_scope_per_request() {
    let setup = Setup::new(2);
    let client = reqwest_client(setup.app());
    let http = own_reqwest(icr_app_reqwest::middleware::AppAuth::new(client.clone()));

    assert_eq!(http.get(projects_url(&setup)).send().await.unwrap().status(), 200);
    assert_eq!(http.get(projects_url(&setup)).send().await.unwrap().status(), 200);
    assert_eq!(setup.registry.app_token_mint_count(), 1);
    let app_token = client.app_token().await.unwrap();

    // A request that names an installation goes as that installation.
    let other = &setup.installations[1];
    let response = http
        .get(projects_url(&setup))
        .with_extension(TokenScope::Installation(other.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let token = client.installation_token(other).await.unwrap();
    let seen = bearers(&setup.registry, "/projects");
    assert_eq!(seen[0].0, app_token.secret().expose());
    assert_eq!(seen[1].0, app_token.secret().expose());
    assert_eq!(seen[2].0, token.secret().expose());
    assert_eq!(setup.registry.mint_count(other.as_str()), 1);
    assert_eq!(setup.registry.mint_count(setup.installations[0].as_str()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reqwest_a_token_that_cannot_be_had_is_the_sdks_error_and_nothing_is_sent() {
    let setup = Setup::new(1);
    let installation = &setup.installations[0];
    let client = reqwest_client(setup.app());
    let http = reqwest_auth(&client, installation);
    setup.registry.remove_installation(installation.as_str());

    let error = http.get(projects_url(&setup)).send().await.unwrap_err();
    let reqwest_middleware::Error::Middleware(error) = error else {
        panic!("expected the middleware's error, got {error:?}")
    };
    let error = error.downcast_ref::<icr_app_core::Error>().expect("the SDK's error");
    assert_eq!(error.status(), Some(404), "{error}");
    assert!(bearers(&setup.registry, "/projects").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_no_token_over_plain_http_to_a_remote_registry() {
    // Never reached: the middleware refuses before asking for a token.
    let app = App::builder(
        "d23967cc-dd16-452b-8af4-869965745978",
        AppKey::from_pem(DEMO_PRIVATE_KEY_PEM).unwrap(),
    )
    .base_url("http://registry.invalid")
    .build()
    .unwrap();
    let client = reqwest_client(app);
    let http = reqwest_auth(&client, &InstallationId::new("i-1").unwrap());
    let error = http.get("http://registry.invalid/projects").send().await.unwrap_err();
    assert!(error.to_string().contains("plain http://"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// ureq

fn ureq_auth(client: &icr_app_ureq::Client, installation: &InstallationId, status_as_error: bool) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(status_as_error)
        .middleware(icr_app_ureq::middleware::InstallationAuth::new(
            client.clone(),
            installation.clone(),
        ))
        .build()
        .into()
}

fn status(result: Result<http::Response<ureq::Body>, ureq::Error>) -> u16 {
    match result {
        Ok(response) => response.status().as_u16(),
        Err(ureq::Error::StatusCode(code)) => code,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn ureq_adds_the_token_for_the_registry_and_no_other_host() {
    let setup = Setup::new(1);
    let installation = &setup.installations[0];
    let client = icr_app_ureq::Client::new(setup.app());
    let agent = ureq_auth(&client, installation, true);

    assert_eq!(status(agent.get(projects_url(&setup)).call()), 200);
    let token = client.installation_token(installation).unwrap();
    assert_eq!(
        bearers(&setup.registry, "/projects"),
        [(token.secret().expose().to_owned(), 200)]
    );

    let peer = Peer::start(200, None);
    assert_eq!(status(agent.get(format!("{}/projects", peer.url())).call()), 200);
    let seen = peer.seen();
    assert_eq!(seen.len(), 1);
    assert!(!has_authorization(&seen[0]), "{}", seen[0]);

    setup.registry.clear_requests();
    let result = agent
        .get(projects_url(&setup))
        .header("authorization", "Bearer crs_mine")
        .call();
    assert_eq!(status(result), 401);
    assert_eq!(bearers(&setup.registry, "/projects"), [("crs_mine".to_owned(), 401)]);
    assert!(client.installation_token(installation).unwrap().same_as(&token));
    assert_eq!(setup.registry.mint_count(installation.as_str()), 1);
}

#[test]
fn ureq_401_drops_the_token_and_retry_if_refused_sends_once_more() {
    use icr_app_ureq::middleware::retry_if_refused;

    let setup = Setup::new(1);
    let installation = &setup.installations[0];
    let client = icr_app_ureq::Client::new(setup.app());
    for status_as_error in [true, false] {
        let agent = ureq_auth(&client, installation, status_as_error);
        assert_eq!(status(agent.get(projects_url(&setup)).call()), 200);
        let first = client.installation_token(installation).unwrap();

        // The chain cannot re-send: the 401 comes back, and the refused token is gone.
        setup.registry.revoke_all_tokens();
        setup.registry.clear_requests();
        assert_eq!(status(agent.get(projects_url(&setup)).call()), 401);
        let second = client.installation_token(installation).unwrap();
        assert!(!second.same_as(&first), "status_as_error {status_as_error}");

        // Around the call: once more, with the new token.
        setup.registry.revoke_all_tokens();
        setup.registry.clear_requests();
        let mut calls = 0;
        let result = retry_if_refused(|| {
            calls += 1;
            agent.get(projects_url(&setup)).call()
        });
        assert_eq!(status(result), 200);
        assert_eq!(calls, 2);
        let third = client.installation_token(installation).unwrap();
        assert_eq!(
            bearers(&setup.registry, "/projects"),
            [
                (second.secret().expose().to_owned(), 401),
                (third.secret().expose().to_owned(), 200)
            ],
            "status_as_error {status_as_error}"
        );
    }
    assert_eq!(setup.registry.mint_count(installation.as_str()), 5);

    // Refused twice: returned after one retry.
    let agent = ureq_auth(&client, installation, true);
    setup.registry.clear_requests();
    setup.registry.inject_for(
        "/projects",
        Fault::Status {
            status: 401,
            retry_after: None,
        },
        3,
    );
    assert_eq!(status(retry_if_refused(|| agent.get(projects_url(&setup)).call())), 401);
    assert_eq!(bearers(&setup.registry, "/projects").len(), 2);
    setup.registry.clear_faults();

    // A 401 from another host is nobody's refusal: not retried.
    let peer = Peer::start(401, None);
    let mut calls = 0;
    let result = retry_if_refused(|| {
        calls += 1;
        agent.get(format!("{}/x", peer.url())).call()
    });
    assert_eq!(status(result), 401);
    assert_eq!(calls, 1);
}

#[test]
fn ureq_many_threads_one_mint_and_a_refresh_ahead_of_expiry() {
    let setup = Setup::new(1);
    let installation = &setup.installations[0];
    let client = icr_app_ureq::Client::new(setup.app());
    let agent = ureq_auth(&client, installation, true);

    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                for _ in 0..2 {
                    assert_eq!(status(agent.get(projects_url(&setup)).call()), 200);
                }
            });
        }
    });
    assert_eq!(setup.registry.mint_count(installation.as_str()), 1);
    let seen = bearers(&setup.registry, "/projects");
    assert_eq!(seen.len(), 32);
    assert!(seen.iter().all(|s| *s == seen[0]), "one token for all: {seen:?}");

    setup.registry.advance_clock(2 * 3600 - 600);
    assert_eq!(status(agent.get(projects_url(&setup)).call()), 200);
    assert_eq!(status(agent.get(projects_url(&setup)).call()), 200);
    assert_eq!(setup.registry.mint_count(installation.as_str()), 2);
    let seen = bearers(&setup.registry, "/projects");
    assert!(seen.iter().all(|(_, status)| *status == 200), "{seen:?}");
    assert_eq!(seen[32].0, seen[0].0);
    assert_ne!(seen[33].0, seen[0].0);
    assert!(setup.registry.token_is_valid(&seen[0].0));
}

#[test]
fn ureq_app_tokens_a_scope_per_request_and_the_sdks_error() {
    let setup = Setup::new(2);
    let client = icr_app_ureq::Client::new(setup.app());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .middleware(icr_app_ureq::middleware::AppAuth::new(client.clone()))
        .build()
        .into();
    assert_eq!(status(agent.get(projects_url(&setup)).call()), 200);
    assert_eq!(setup.registry.app_token_mint_count(), 1);

    let other = &setup.installations[1];
    let mut request = http::Request::get(projects_url(&setup)).body(()).unwrap();
    request.extensions_mut().insert(TokenScope::Installation(other.clone()));
    assert_eq!(status(agent.run(request)), 200);
    let token = client.installation_token(other).unwrap();
    assert_eq!(bearers(&setup.registry, "/projects")[1].0, token.secret().expose());
    assert_eq!(setup.registry.mint_count(other.as_str()), 1);

    // The installation is gone: its token cannot be minted, and nothing is sent.
    setup.registry.remove_installation(other.as_str());
    setup.registry.clear_requests();
    let mut request = http::Request::get(projects_url(&setup)).body(()).unwrap();
    request
        .extensions_mut()
        .insert(TokenScope::Installation(InstallationId::new("gone").unwrap()));
    let Err(ureq::Error::Other(error)) = agent.run(request) else {
        panic!("expected the SDK's error")
    };
    let error = error.downcast_ref::<icr_app_core::Error>().expect("the SDK's error");
    assert_eq!(error.status(), Some(404), "{error}");
    assert!(bearers(&setup.registry, "/projects").is_empty());
}

#[test]
fn ureq_no_token_over_plain_http_to_a_remote_registry() {
    let app = App::builder(
        "d23967cc-dd16-452b-8af4-869965745978",
        AppKey::from_pem(DEMO_PRIVATE_KEY_PEM).unwrap(),
    )
    .base_url("http://registry.invalid")
    .build()
    .unwrap();
    let client = icr_app_ureq::Client::new(app);
    let agent = ureq_auth(&client, &InstallationId::new("i-1").unwrap(), true);
    let error = agent.get("http://registry.invalid/projects").call().unwrap_err();
    assert!(error.to_string().contains("plain http://"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// The examples

#[test]
fn both_examples_call_two_endpoints_through_the_users_client_with_one_mint() {
    for (package, example, features) in [
        ("icr-app-ureq", "ureq_middleware_auth", None),
        ("icr-app-reqwest", "reqwest_middleware_auth", Some("middleware")),
    ] {
        let demo = FakeRegistry::demo();
        let installation = demo.installation_ids[0].as_str();
        let mut cmd = icr_app_e2e::cargo_example(package, example, features);
        let out = cmd
            .envs([
                ("ICR_BASE_URL", demo.registry.base_url().as_str()),
                ("ICR_APP_ID", demo.app_id.as_str()),
                ("ICR_PRIVATE_KEY", demo.private_key_pem),
                ("ICR_INSTALLATION_ID", installation),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["projects"][0], "Sample project 1", "{example}: {v}");
        assert_eq!(v["organization"], "Nordic Peatland Restoration", "{example}: {v}");

        assert_eq!(demo.registry.mint_count(installation), 1, "{example}");
        let organization = demo.registry.organization_id(installation).unwrap();
        for path in ["/projects", &format!("/organizations/{organization}")] {
            let seen = bearers(&demo.registry, path);
            assert_eq!(seen.len(), 1, "{example} {path}: {seen:?}");
            assert!(seen[0].0.starts_with("crs_") && seen[0].1 == 200, "{example} {path}");
        }
    }
}
