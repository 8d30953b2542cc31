//! An organization as a scope (issue 22), through both clients and both middlewares over real
//! loopback HTTP against the fake registry (and a real `redis-server` for the shared store):
//!
//! - the lookup (`installation_for_organization`) names the installation, and is remembered;
//! - the token by organization is the token by installation: one lookup, one mint;
//! - 100 concurrent callers for a cold organization (threads for ureq, tasks for reqwest): one
//!   lookup and one mint;
//! - the organization reinstalls the app mid-use: the next call succeeds as the new
//!   installation, after one new lookup (and the middlewares follow it too);
//! - an organization without the app: a `NotFound` that says the app is not installed there;
//! - two clients on one Redis (two processes, as far as the store can tell): the second finds
//!   the organization's installation there and does no lookup; after a reinstall, the client
//!   that finds it gone first writes the new one back, and the other reads it.

use std::time::Duration;

use http::Method;
use icr_app_core::{Error, InstallationId, OrganizationId, Token, TokenScope};
use icr_app_e2e::{Kind, Setup, for_both_clients, within};
use icr_app_testkit::{Fault, RedisServer};

/// Setup with `n` installations, and the organization of installation `i`.
fn organization_of(setup: &Setup, i: usize) -> OrganizationId {
    let org = setup
        .registry
        .organization_id(setup.installations[i].as_str())
        .expect("the installation's organization");
    OrganizationId::new(org).unwrap()
}

fn by_org(org: &OrganizationId) -> TokenScope {
    TokenScope::Organization(org.clone())
}

fn organization_path(org: &OrganizationId) -> String {
    format!("/organizations/{org}")
}

fn the_lookup_names_the_installation_and_is_remembered(kind: Kind) {
    let setup = Setup::new(3);
    let org = organization_of(&setup, 1);
    let client = kind.driver(setup.app());
    let installation = client.installation_for_organization(&org).unwrap();
    assert_eq!(installation.id, setup.installations[1].as_str());
    assert_eq!(
        installation.organization.as_ref().map(|o| o.id.as_str()),
        Some(org.as_str())
    );
    assert_eq!(setup.registry.lookup_count(org.as_str()), 1);
    // The token by organization needs no lookup of its own.
    let token = client.organization_token(&org).unwrap();
    assert_eq!(
        token.access_token().installation_id.as_deref(),
        Some(setup.installations[1].as_str())
    );
    assert_eq!(setup.registry.lookup_count(org.as_str()), 1);
    assert_eq!(setup.registry.mint_count(setup.installations[1].as_str()), 1);
    assert_eq!(
        client.with_app(|app| app.organization_installation(&org).cloned()),
        Some(setup.installations[1].clone())
    );
}

fn the_token_by_organization_is_the_token_by_installation(kind: Kind) {
    let setup = Setup::new(2);
    let org = organization_of(&setup, 0);
    let installation = &setup.installations[0];
    let client = kind.driver(setup.app());
    let by_organization = client.organization_token(&org).unwrap();
    let by_installation = client.installation_token(installation).unwrap();
    assert!(by_organization.same_as(&by_installation));
    let again = client.token(&by_org(&org), None).unwrap();
    assert!(again.same_as(&by_organization));
    // A request as the organization carries it, and is served.
    let organization = client.get_json_as(&by_org(&org), &organization_path(&org)).unwrap();
    assert_eq!(organization["id"], org.as_str());
    let sent = setup.registry.requests();
    let read = sent
        .iter()
        .find(|r| r.path == organization_path(&org))
        .expect("the read reached the registry");
    assert_eq!(
        read.header("authorization"),
        Some(format!("Bearer {}", by_organization.secret().expose()).as_str())
    );
    assert_eq!(setup.registry.mint_count(installation.as_str()), 1, "one mint");
    assert_eq!(setup.registry.lookup_count(org.as_str()), 1, "one lookup");
    let stats = client.stats();
    assert_eq!((stats.lookups, stats.mints), (1, 1), "{stats:?}");
    // The other way round for the other organization: the installation's token first.
    let other = organization_of(&setup, 1);
    let first = client.installation_token(&setup.installations[1]).unwrap();
    assert!(client.organization_token(&other).unwrap().same_as(&first));
    assert_eq!(setup.registry.mint_count(setup.installations[1].as_str()), 1);
}

fn a_hundred_concurrent_callers_for_a_cold_organization_cause_one_lookup_and_one_mint(kind: Kind) {
    let setup = Setup::new(1);
    let org = organization_of(&setup, 0);
    let installation = setup.installations[0].as_str();
    // The lookup and the mint are slow, so every caller asks while they are in flight.
    setup
        .registry
        .inject_for("/app/organizations/", Fault::Delay(Duration::from_millis(300)), 1);
    setup
        .registry
        .inject_for("/app/installations/", Fault::Delay(Duration::from_millis(300)), 1);
    let client = kind.driver(setup.app());
    let tokens: Vec<Token> = within(Duration::from_secs(60), "100 callers", move || {
        let pending: Vec<_> = (0..100).map(|_| client.spawn_token(&by_org(&org))).collect();
        pending.into_iter().map(|p| p.join().unwrap().unwrap()).collect()
    });
    assert!(tokens.iter().all(|t| t.same_as(&tokens[0])));
    let org = setup.registry.organization_id(installation).unwrap();
    assert_eq!(setup.registry.lookup_count(&org), 1, "one lookup");
    assert_eq!(setup.registry.mint_count(installation), 1, "one mint");
}

fn a_reinstall_mid_use_is_followed_with_one_new_lookup(kind: Kind) {
    let setup = Setup::new(1);
    let org = organization_of(&setup, 0);
    let old = setup.installations[0].clone();
    let client = kind.driver(setup.app());
    let before = client.get_json_as(&by_org(&org), &organization_path(&org)).unwrap();
    assert_eq!(before["id"], org.as_str());
    let old_token = client.organization_token(&org).unwrap();

    let new = InstallationId::new(setup.registry.reinstall(old.as_str()).unwrap()).unwrap();
    // The next call succeeds, as the new installation.
    let request = client.request(Method::GET, &organization_path(&org), None).unwrap();
    let response = client.send_as_organization(&org, request).unwrap();
    assert_eq!(response.status(), 200, "{}", String::from_utf8_lossy(response.body()));
    let token = client.organization_token(&org).unwrap();
    assert!(!token.same_as(&old_token));
    assert_eq!(token.access_token().installation_id.as_deref(), Some(new.as_str()));
    assert!(client.installation_token(&new).unwrap().same_as(&token));
    assert_eq!(setup.registry.lookup_count(org.as_str()), 2, "one new lookup");
    assert_eq!(setup.registry.mint_count(new.as_str()), 1);
    // The refused token, then one mint for the old installation (404), then the new one.
    let statuses: Vec<(String, u16)> = setup
        .registry
        .requests()
        .iter()
        .skip_while(|r| r.path != organization_path(&org))
        .skip(1)
        .map(|r| (r.path.clone(), r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (organization_path(&org), 401),
            (format!("/app/installations/{old}/accessTokens"), 404),
            (format!("/app/organizations/{org}/installation"), 200),
            (format!("/app/installations/{new}/accessTokens"), 200),
            (organization_path(&org), 200),
        ]
    );
    assert_eq!(
        client.with_app(|app| app.organization_installation(&org).cloned()),
        Some(new)
    );
}

fn an_organization_without_the_app_is_a_clear_error(kind: Kind) {
    let setup = Setup::new(1);
    let client = kind.driver(setup.app());
    let org = OrganizationId::new("6c1f0d3a-0000-4000-8000-00000000dead").unwrap();
    let request = client.request(Method::GET, &organization_path(&org), None).unwrap();
    let errors = [
        client.installation_for_organization(&org).unwrap_err(),
        client.organization_token(&org).unwrap_err(),
        client.send_as_organization(&org, request).unwrap_err(),
        client.get_json_as(&by_org(&org), &organization_path(&org)).unwrap_err(),
    ];
    for error in errors {
        assert!(
            matches!(&error, Error::NotFound { organization: Some(o), .. } if *o == org),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!("the app is not installed on organization {org}")),
            "{message}"
        );
        assert_eq!(error.status(), Some(404));
    }
    assert_eq!(
        setup.registry.lookup_count(org.as_str()),
        4,
        "each call asked (a 404 is not remembered)"
    );
    assert_eq!(client.stats().mints, 0);
}

fn the_lookup_is_shared_through_redis(kind: Kind) {
    let setup = Setup::new(1);
    let redis = RedisServer::start();
    let org = organization_of(&setup, 0);
    let old = setup.installations[0].as_str();
    let a = kind.driver_with_store(setup.app(), &redis.url());
    let b = kind.driver_with_store(setup.app(), &redis.url());
    let token = a.organization_token(&org).unwrap();
    assert!(b.organization_token(&org).unwrap().same_as(&token));
    assert_eq!(
        (
            setup.registry.lookup_count(org.as_str()),
            setup.registry.mint_count(old)
        ),
        (1, 1)
    );
    let stats = b.stats();
    assert_eq!(
        (stats.lookups, stats.shared_lookups, stats.mints, stats.shared_hits),
        (0, 1, 0, 1),
        "b found the installation and its token in Redis: {stats:?}"
    );

    // A reinstall: b finds it gone first, looks the organization up again, writes it back.
    let new = setup.registry.reinstall(old).unwrap();
    let read = b.get_json_as(&by_org(&org), &organization_path(&org)).unwrap();
    assert_eq!(read["id"], org.as_str());
    assert_eq!(setup.registry.lookup_count(org.as_str()), 2);
    // a still remembers the old installation: refused, its mint 404, then the new one from Redis.
    let read = a.get_json_as(&by_org(&org), &organization_path(&org)).unwrap();
    assert_eq!(read["id"], org.as_str());
    assert_eq!(
        setup.registry.lookup_count(org.as_str()),
        2,
        "a read the new installation from Redis"
    );
    assert_eq!(setup.registry.mint_count(&new), 1, "and its token");
    let stats = a.stats();
    assert_eq!((stats.lookups, stats.shared_lookups), (1, 1), "{stats:?}");
    assert_eq!(
        a.with_app(|app| app.organization_installation(&org).map(|i| i.as_str().to_owned())),
        Some(new)
    );
}

for_both_clients!(
    the_lookup_names_the_installation_and_is_remembered,
    the_token_by_organization_is_the_token_by_installation,
    a_hundred_concurrent_callers_for_a_cold_organization_cause_one_lookup_and_one_mint,
    a_reinstall_mid_use_is_followed_with_one_new_lookup,
    an_organization_without_the_app_is_a_clear_error,
    the_lookup_is_shared_through_redis,
);

// ---------------------------------------------------------------------------------------------
// the middlewares

#[test]
fn the_ureq_middleware_follows_a_reinstall() {
    use icr_app_ureq::middleware::{OrganizationAuth, retry_if_refused};
    let setup = Setup::new(1);
    let org = organization_of(&setup, 0);
    let client = icr_app_ureq::Client::new(setup.app());
    let agent: ::ureq::Agent = ::ureq::Agent::config_builder()
        .middleware(OrganizationAuth::new(client.clone(), org.clone()))
        .build()
        .into();
    let url = format!("{}{}", setup.registry.base_url(), organization_path(&org));
    let read = |agent: &::ureq::Agent| -> serde_json::Value {
        let body = retry_if_refused(|| agent.get(&url).header("x-icr-api-version", "2023-06-16").call())
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    };
    assert_eq!(read(&agent)["id"], org.as_str());
    let new = setup.registry.reinstall(setup.installations[0].as_str()).unwrap();
    assert_eq!(read(&agent)["id"], org.as_str());
    assert_eq!(setup.registry.lookup_count(org.as_str()), 2);
    assert_eq!(setup.registry.mint_count(&new), 1);
    // A request naming the organization in its extensions, through the app's agent.
    let agent: ::ureq::Agent = ::ureq::Agent::config_builder()
        .http_status_as_error(false)
        .middleware(icr_app_ureq::middleware::AppAuth::new(client.clone()))
        .build()
        .into();
    let mut request = http::Request::builder()
        .uri(&url)
        .header("x-icr-api-version", "2023-06-16")
        .body(())
        .unwrap();
    request.extensions_mut().insert(by_org(&org));
    assert_eq!(agent.run(request).unwrap().status(), 200);
    assert_eq!(setup.registry.lookup_count(org.as_str()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reqwest_middleware_follows_a_reinstall() {
    use icr_app_reqwest::middleware::{OrganizationAuth, reqwest_middleware};
    let setup = Setup::new(1);
    let org = organization_of(&setup, 0);
    let client = icr_app_reqwest::Client::new(setup.app()).unwrap();
    let own = icr_app_reqwest::ReqwestTransport::client_builder()
        .unwrap()
        .build()
        .unwrap();
    let http = reqwest_middleware::ClientBuilder::new(own)
        .with(OrganizationAuth::new(client.clone(), org.clone()))
        .build();
    let url = format!("{}{}", setup.registry.base_url(), organization_path(&org));
    let read = || async {
        let response = http
            .get(&url)
            .header("x-icr-api-version", "2023-06-16")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        serde_json::from_slice::<serde_json::Value>(&response.bytes().await.unwrap()).unwrap()
    };
    assert_eq!(read().await["id"], org.as_str());
    let new = setup.registry.reinstall(setup.installations[0].as_str()).unwrap();
    // The middleware sends the request once more, as the new installation.
    assert_eq!(read().await["id"], org.as_str());
    assert_eq!(setup.registry.lookup_count(org.as_str()), 2);
    assert_eq!(setup.registry.mint_count(&new), 1);
    // A request naming the organization in its extensions, through the app's middleware.
    let own = icr_app_reqwest::ReqwestTransport::client_builder()
        .unwrap()
        .build()
        .unwrap();
    let as_app = reqwest_middleware::ClientBuilder::new(own)
        .with(icr_app_reqwest::middleware::AppAuth::new(client.clone()))
        .build();
    let response = as_app
        .get(&url)
        .header("x-icr-api-version", "2023-06-16")
        .with_extension(by_org(&org))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(setup.registry.lookup_count(org.as_str()), 2);
}
