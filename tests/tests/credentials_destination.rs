//! Where credentials may go, for both clients, over real loopback HTTP:
//!
//! - a request to a loopback registry never goes through a proxy, whether the proxy is set on
//!   the HTTP client itself or in the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`);
//! - a token is added only to requests for the configured registry (scheme, host, port, base
//!   path), unless the request carries the `OtherHost` opt-in; and only the registry's `Date`
//!   teaches the clock.

use std::process::Command;
use std::time::Duration;

use http::Method;
use icr_app_core::api::OtherHost;
use icr_app_core::{Error, InstallationId};
use icr_app_e2e::{Peer, Setup, assert_registry_request_authorised, assert_registry_request_authorised_async};
use icr_app_testkit::FakeRegistry;

/// A loopback peer (another host) answering every request with `status` and a `Date` a day in
/// the future.
fn peer(status: u16) -> Peer {
    Peer::start(status, Some(Duration::from_secs(86_400)))
}

fn assert_never_reached(proxy: &Peer) {
    let seen = proxy.seen();
    assert!(seen.is_empty(), "the proxy was used: {seen:?}");
}

#[test]
fn loopback_requests_bypass_a_proxy_set_on_the_ureq_agent() {
    let setup = Setup::new(1);
    let proxy = peer(502);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(Some(ureq::Proxy::new(proxy.url()).unwrap()))
        .build()
        .into();
    let client = icr_app_ureq::Client::with_transport(setup.app(), icr_app_ureq::UreqTransport::with_agent(agent));
    let token = client.installation_token(&setup.installations[0]).unwrap();
    assert!(setup.registry.token_is_valid(token.secret().expose()));
    let _: serde_json::Value = client
        .get_json(&setup.installations[0], "/projects?limit=1&page=0")
        .unwrap();
    client.revoke_all().unwrap();
    assert_never_reached(&proxy);
}

#[tokio::test]
async fn loopback_requests_bypass_a_proxy_set_on_the_reqwest_client() {
    let setup = Setup::new(1);
    let proxy = peer(502);
    let http = icr_app_reqwest::ReqwestTransport::client_builder()
        .unwrap()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .build()
        .unwrap();
    let client =
        icr_app_reqwest::Client::with_transport(setup.app(), icr_app_reqwest::ReqwestTransport::with_client(http));
    let token = client.installation_token(&setup.installations[0]).await.unwrap();
    assert!(setup.registry.token_is_valid(token.secret().expose()));
    let _: serde_json::Value = client
        .get_json(&setup.installations[0], "/projects?limit=1&page=0")
        .await
        .unwrap();
    client.revoke_all().await.unwrap();
    assert_never_reached(&proxy);
}

/// Both examples, as processes with every proxy variable pointing at a trap: the token is
/// minted straight from the loopback registry, and the trap sees nothing.
#[test]
fn loopback_requests_bypass_proxies_from_the_environment() {
    let demo = FakeRegistry::demo();
    let proxy = peer(502);
    let key = std::env::temp_dir().join(format!("icr-e2e-proxy-key-{}.pem", std::process::id()));
    std::fs::write(&key, demo.private_key_pem).unwrap();
    for (package, example) in [
        ("icr-app-ureq", "ureq_installation_token"),
        ("icr-app-reqwest", "reqwest_installation_token"),
    ] {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["run", "-q", "-p", package, "--example", example, "--"])
            .args(["--installation", &demo.installation_ids[0]])
            .env("ICR_BASE_URL", demo.registry.base_url())
            .env("ICR_APP_ID", &demo.app_id)
            .env("ICR_PRIVATE_KEY", &key)
            .envs(
                [
                    "HTTP_PROXY",
                    "HTTPS_PROXY",
                    "ALL_PROXY",
                    "http_proxy",
                    "https_proxy",
                    "all_proxy",
                ]
                .map(|v| (v, proxy.url())),
            )
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(demo.registry.token_is_valid(v["token"].as_str().unwrap()), "{example}");
    }
    let _ = std::fs::remove_file(&key);
    assert_never_reached(&proxy);
}

fn other_host_request(url: &str) -> http::Request<Vec<u8>> {
    http::Request::builder()
        .method(Method::GET)
        .uri(format!("{url}/organizations/x"))
        .body(Vec::new())
        .unwrap()
}

fn assert_refused_for_other_host(result: Result<http::Response<Vec<u8>>, Error>, other: &Peer) {
    let e = result.unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert!(
        e.to_string().contains("OtherHost"),
        "the message says how to opt in: {e}"
    );
    assert!(
        other.seen().is_empty(),
        "the other host was reached: {:?}",
        other.seen()
    );
}

fn assert_sent_with_token_and_clock_kept(other: &Peer, offset_before: i64, offset_after: i64) {
    let seen = other.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].to_ascii_lowercase().contains("authorization: bearer crs_"),
        "{}",
        seen[0]
    );
    assert_eq!(offset_before, offset_after, "a foreign Date moved the registry clock");
}

#[test]
fn the_blocking_client_authorises_only_the_registry_unless_told() {
    let setup = Setup::new(1);
    let other = peer(200);
    let client = icr_app_ureq::Client::new(setup.app());
    let installation: &InstallationId = &setup.installations[0];
    assert_refused_for_other_host(
        client.send_as_installation(installation, other_host_request(other.url())),
        &other,
    );
    assert_refused_for_other_host(client.send_as_app(other_host_request(other.url())), &other);
    // Same host, other port: not the registry either.
    let mut sibling = other_host_request(&setup.registry.base_url());
    *sibling.uri_mut() = sibling
        .uri()
        .to_string()
        .replace(&setup.registry.addr().port().to_string(), "1")
        .parse()
        .unwrap();
    assert!(matches!(
        client.send_as_installation(installation, sibling),
        Err(Error::Config { .. })
    ));

    let before = client.with_app(|a| a.clock_offset().millis);
    let mut allowed = other_host_request(other.url());
    allowed.extensions_mut().insert(OtherHost);
    let response = client.send_as_installation(installation, allowed).unwrap();
    assert_eq!(response.status(), 200);
    assert_sent_with_token_and_clock_kept(&other, before, client.with_app(|a| a.clock_offset().millis));
    // The registry's own requests still work.
    assert_registry_request_authorised(&client, installation);
}

#[tokio::test]
async fn the_async_client_authorises_only_the_registry_unless_told() {
    let setup = Setup::new(1);
    let other = peer(200);
    let client = icr_app_reqwest::Client::new(setup.app()).unwrap();
    let installation: &InstallationId = &setup.installations[0];
    assert_refused_for_other_host(
        client
            .send_as_installation(installation, other_host_request(other.url()))
            .await,
        &other,
    );
    assert_refused_for_other_host(client.send_as_app(other_host_request(other.url())).await, &other);

    let before = client.with_app(|a| a.clock_offset().millis);
    let mut allowed = other_host_request(other.url());
    allowed.extensions_mut().insert(OtherHost);
    let response = client.send_as_installation(installation, allowed).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_sent_with_token_and_clock_kept(&other, before, client.with_app(|a| a.clock_offset().millis));
    assert_registry_request_authorised_async(&client, installation).await;
}
