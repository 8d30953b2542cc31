//! Issue 21 (2 and 3): the middlewares that add tokens to the user's own requests
//! (`icr_app_ureq::middleware`, `icr_app_reqwest::middleware`), over real loopback HTTP:
//!
//! - no token goes through a proxy in clear: with a loopback (plain `http://`) registry, a
//!   proxy set on the ureq agent in code or named by the environment is switched off for the
//!   request; the reqwest middleware refuses while the environment names a proxy that
//!   `NO_PROXY` does not except (the proxy, a real forwarding proxy written here, records every
//!   byte it is sent and must see none);
//! - only the registry's own answers count: a registry answer that redirects to another host,
//!   whose 401 carries a `Date` 25 days off, neither moves the app's clock nor drops the token.
//!
//! The environment cases run this test binary again as a child process with the proxy
//! variables set (a test cannot set variables in its own process safely).

use std::process::Command;
use std::time::Duration;

use icr_app_core::{Error, InstallationId, TransportErrorKind};
use icr_app_e2e::{Peer, RecordingProxy, Setup};
use icr_app_reqwest::middleware::reqwest_middleware;
use icr_app_testkit::{FakeRegistry, Fault};

/// Another host (a loopback port of its own): answers every request 401 with a `Date` 25 days
/// ahead, and records the request heads.
fn far_off() -> Peer {
    Peer::start(401, Some(Duration::from_secs(25 * 86_400)))
}

fn projects_url(registry: &FakeRegistry) -> String {
    format!("{}/projects?limit=10&page=0", registry.base_url())
}

/// The `Authorization` values the registry received for `/projects`.
fn bearers(registry: &FakeRegistry) -> Vec<String> {
    registry
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/projects"))
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .collect()
}

/// The user's own reqwest client `own`, with the SDK's middleware adding `installation`'s token.
fn with_installation_auth(
    own: reqwest::Client,
    client: &icr_app_reqwest::Client,
    installation: &InstallationId,
) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(own)
        .with(icr_app_reqwest::middleware::InstallationAuth::new(
            client.clone(),
            installation.clone(),
        ))
        .build()
}

// ---------------------------------------------------------------------------------------------
// 2: no token through a proxy in clear

#[test]
fn the_ureq_middleware_never_sends_a_token_through_the_agents_own_proxy() {
    let setup = Setup::new(1);
    let proxy = RecordingProxy::start();
    let client = icr_app_ureq::Client::new(setup.app());
    for status_as_error in [true, false] {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(status_as_error)
            .proxy(Some(ureq::Proxy::new(proxy.url()).unwrap()))
            .middleware(icr_app_ureq::middleware::InstallationAuth::new(
                client.clone(),
                setup.installations[0].clone(),
            ))
            .build()
            .into();
        let response = agent.get(projects_url(&setup.registry)).call().unwrap();
        assert_eq!(response.status(), 200);
    }
    let token = client.installation_token(&setup.installations[0]).unwrap();
    let expected = format!("Bearer {}", token.secret().expose());
    assert_eq!(bearers(&setup.registry), [expected.clone(), expected]);
    proxy.assert_untouched();
}

/// Runs this binary's `child_in_a_proxy_environment` with every proxy variable naming `proxy`,
/// and `no_proxy` (when given) as `NO_PROXY`.
fn run_child(scenario: &str, proxy: &RecordingProxy, no_proxy: Option<&str>) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_in_a_proxy_environment",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env("ICR_AUDIT_CHILD", scenario)
    .envs(ProxyVars::ALL.map(|v| (v, proxy.url())))
    .env_remove("NO_PROXY")
    .env_remove("no_proxy")
    .env_remove("REQUEST_METHOD");
    if let Some(no_proxy) = no_proxy {
        cmd.env("NO_PROXY", no_proxy);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("scenario {scenario} passed")),
        "{scenario}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct ProxyVars;

impl ProxyVars {
    const ALL: [&str; 6] = [
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
    ];
}

#[test]
fn no_token_goes_through_a_proxy_named_by_the_environment() {
    let proxy = RecordingProxy::start();
    // No exception: the ureq middleware goes direct, the reqwest middleware refuses.
    run_child("proxied", &proxy, None);
    // A port in NO_PROXY is not honoured by reqwest: still refused. Nor is `*` for an IP
    // address (reqwest matches an IP host against the IP entries only).
    run_child("proxied", &proxy, Some("localhost,127.0.0.1:1"));
    run_child("proxied", &proxy, Some("*"));
    // NO_PROXY names the host: reqwest goes direct, so the token is added.
    run_child("excepted", &proxy, Some("example.com, 127.0.0.1"));
    proxy.assert_untouched();
}

/// The child's side of [`no_token_goes_through_a_proxy_named_by_the_environment`]; does nothing
/// when run as an ordinary test.
#[test]
fn child_in_a_proxy_environment() {
    let Ok(scenario) = std::env::var("ICR_AUDIT_CHILD") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let setup = Setup::new(1);
    let installation = &setup.installations[0];

    // reqwest: the user's client, which reads the proxy variables as reqwest's default does
    // (with the SDK's TLS settings: this build of reqwest has no default crypto provider).
    let client = icr_app_reqwest::Client::new(setup.app()).unwrap();
    let own = icr_app_reqwest::ReqwestTransport::client_builder()
        .unwrap()
        .build()
        .unwrap();
    let http = with_installation_auth(own, &client, installation);
    let sent = runtime.block_on(async { http.get(projects_url(&setup.registry)).send().await });
    match scenario.as_str() {
        "proxied" => {
            let Err(reqwest_middleware::Error::Middleware(error)) = sent else {
                panic!("{scenario}: expected the middleware's refusal, got {sent:?}")
            };
            let error = error.downcast_ref::<Error>().expect("the SDK's error");
            assert!(
                matches!(
                    error,
                    Error::Transport {
                        kind: TransportErrorKind::Refused,
                        ..
                    }
                ),
                "{error:?}"
            );
            let text = error.to_string();
            for part in ["HTTP_PROXY", "NO_PROXY=127.0.0.1", "https://", "in clear"] {
                assert!(text.contains(part), "{part}: {text}");
            }
            assert_eq!(bearers(&setup.registry), Vec::<String>::new(), "nothing was sent");
        }
        "excepted" => {
            let response = sent.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(bearers(&setup.registry).len(), 1);
        }
        other => panic!("unknown scenario {other}"),
    }

    // ureq: the agent's default configuration reads the proxy variables too; the middleware
    // switches its proxy off for the request.
    setup.registry.clear_requests();
    let client = icr_app_ureq::Client::new(setup.app());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .middleware(icr_app_ureq::middleware::InstallationAuth::new(
            client.clone(),
            installation.clone(),
        ))
        .build()
        .into();
    assert!(
        agent.config().proxy().is_some(),
        "the agent read a proxy from the environment"
    );
    assert_eq!(agent.get(projects_url(&setup.registry)).call().unwrap().status(), 200);
    assert_eq!(bearers(&setup.registry).len(), 1);
    println!("scenario {scenario} passed");
}

// ---------------------------------------------------------------------------------------------
// 3: only the registry's own answers count

/// The registry answers `/projects` once with a 302 to `far_off`.
fn redirect_once(registry: &FakeRegistry, far_off: &Peer) {
    registry.inject_for(
        "/projects",
        Fault::Redirect {
            location: format!("{}/elsewhere", far_off.url()),
            status: 302,
        },
        1,
    );
}

#[test]
fn the_ureq_middleware_takes_only_the_registrys_answers() {
    for status_as_error in [true, false] {
        let setup = Setup::new(1);
        let far_off = far_off();
        let installation = &setup.installations[0];
        let client = icr_app_ureq::Client::new(setup.app());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(status_as_error)
            .middleware(icr_app_ureq::middleware::InstallationAuth::new(
                client.clone(),
                installation.clone(),
            ))
            .build()
            .into();
        assert_eq!(agent.get(projects_url(&setup.registry)).call().unwrap().status(), 200);
        let token = client.installation_token(installation).unwrap();
        let clock = client.with_app(|a| a.clock_offset().millis);

        redirect_once(&setup.registry, &far_off);
        let answer = agent.get(projects_url(&setup.registry)).call();
        // The registry's own answer comes back: the redirect is not followed.
        match answer {
            Ok(response) => assert_eq!(response.status(), 302, "status_as_error {status_as_error}"),
            Err(e) => panic!("status_as_error {status_as_error}: {e}"),
        }
        assert_eq!(
            client.with_app(|a| a.clock_offset().millis),
            clock,
            "status_as_error {status_as_error}: another host's Date moved the clock"
        );
        assert!(
            client.installation_token(installation).unwrap().same_as(&token),
            "status_as_error {status_as_error}: another host's 401 dropped the token"
        );
        assert_eq!(setup.registry.mint_count(installation.as_str()), 1);
        let seen = far_off.seen();
        assert!(seen.is_empty(), "{seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reqwest_middleware_takes_only_the_registrys_answers() {
    let setup = Setup::new(1);
    let far_off = far_off();
    let installation = &setup.installations[0];
    let client = icr_app_reqwest::Client::new(setup.app()).unwrap();
    // A client that follows redirects, as reqwest's default does.
    let own = icr_app_reqwest::ReqwestTransport::client_builder()
        .unwrap()
        .redirect(reqwest::redirect::Policy::limited(10))
        .no_proxy()
        .build()
        .unwrap();
    let http = with_installation_auth(own, &client, installation);
    let response = http.get(projects_url(&setup.registry)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let token = client.installation_token(installation).await.unwrap();
    let clock = client.with_app(|a| a.clock_offset().millis);

    redirect_once(&setup.registry, &far_off);
    let response = http.get(projects_url(&setup.registry)).send().await.unwrap();
    // The other host's 401 is returned as it is: not the registry refusing the token.
    assert_eq!(response.status(), 401);
    assert!(response.url().as_str().starts_with(far_off.url()), "{}", response.url());
    assert_eq!(
        client.with_app(|a| a.clock_offset().millis),
        clock,
        "another host's Date moved the clock"
    );
    assert!(
        client.installation_token(installation).await.unwrap().same_as(&token),
        "another host's 401 dropped the token"
    );
    assert_eq!(setup.registry.mint_count(installation.as_str()), 1);
    // reqwest did not carry the token across hosts.
    let seen = far_off.seen();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].to_ascii_lowercase().contains("authorization"), "{}", seen[0]);
}
