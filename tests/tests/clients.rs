//! Both clients against the fake registry over real loopback HTTP: each scenario is written once
//! against [`Driver`] (a blocking-style facade over `icr_app_ureq::Client` and
//! `icr_app_reqwest::Client`) and run against each, as `ureq::<scenario>` and
//! `reqwest::<scenario>`. What needs real threads or tasks (many concurrent callers, a dropped
//! future, the background refresher) is in `ureq_only` and `reqwest_only`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use http::Method;
use icr_app_core::{
    AppKey, CacheConfig, CreateUserOrganization, Error, InstallationId, NewOrganization, NewUser, RetryPolicy, Signer,
    Token, TokenScope, TokenState, TransportErrorKind,
};
use icr_app_e2e::{Driver, Kind, Setup, for_both_clients, now, wait_until, within};
use icr_app_testkit::{DEMO_PRIVATE_KEY_PEM, FakeRegistry, Fault, OTHER_PRIVATE_KEY_PEM, TokenStatus};

for_both_clients!(
    happy_path_for_every_endpoint,
    pagination_follows_every_page,
    server_clock_two_hours_ahead_or_behind,
    server_errors_then_success,
    rate_limited_with_retry_after,
    dropped_connection_is_retried_or_reported,
    malformed_body_is_a_clear_error,
    near_expiry_refreshed_ahead_while_the_old_token_serves,
    failed_refresh_keeps_serving_the_valid_token,
    a_401_from_an_installation_endpoint_re_mints_once,
    redirects_are_not_followed_with_credentials,
    wrong_key_is_a_clear_401,
    plain_http_to_a_remote_host_is_refused,
    revoke_all_on_shutdown,
    revoke_all_passes_over_tokens_already_invalid,
    a_panic_while_minting_does_not_block_the_installation,
    a_huge_retry_after_is_capped_and_clear_failure_lifts_the_back_off,
    a_min_life_no_token_can_meet_is_an_error_and_mints_no_more,
    revoke_all_waits_for_a_mint_in_flight_and_revokes_its_token,
);

/// How long a call that must not wait for anything may take at most (far below the 120 s
/// `fetch_timeout` a stuck installation would wait for).
const PROMPTLY: Duration = Duration::from_secs(5);

fn scope(id: &InstallationId) -> TokenScope {
    TokenScope::Installation(id.clone())
}

/// The path a mint for `id` is sent to (for faults aimed at mints only).
fn mint_path(id: &InstallationId) -> String {
    format!("/app/installations/{}/accessTokens", id.as_str())
}

fn happy_path_for_every_endpoint(kind: Kind) {
    let s = Setup::new(3);
    let client = kind.driver(s.app());
    let id = &s.installations[0];

    let token = client.installation_token(id).unwrap();
    assert!(token.secret().expose().starts_with("crs_"));
    assert_eq!(token.access_token().installation_id.as_deref(), Some(id.as_str()));
    let again = client.installation_token(id).unwrap();
    assert!(again.same_as(&token), "served from the cache");
    assert_eq!(s.registry.mint_count(id.as_str()), 1);

    let app_token = client.app_token().unwrap();
    assert!(app_token.secret().expose().starts_with("crs_"));

    let all = client.installations().unwrap();
    assert_eq!(all.len(), 3);
    let one = client.installation(id).unwrap();
    assert_eq!(one.id, id.as_str());
    let org_id = one.organization.as_ref().unwrap().id.clone();

    let projects = client.get_json(id, "/projects?limit=10&page=0").unwrap();
    assert!(projects["projects"].is_array());
    let org = client.get_json(id, &format!("/organizations/{org_id}")).unwrap();
    assert_eq!(org["id"], org_id.as_str());

    let created = client
        .create_user_organization(&CreateUserOrganization {
            user: NewUser {
                email: "buyer@example.com".into(),
                full_name: Some("Buyer".into()),
                profile_picture: None,
            },
            organization: NewOrganization {
                full_name: "Buyer Org".into(),
                kind: "marketParticipant".into(),
                country_code: Some("IS".into()),
            },
        })
        .unwrap();
    assert!(!created.installation.id.is_empty());
    assert_eq!(client.installations().unwrap().len(), 4);

    // Every request carried the documented headers.
    for r in s.registry.requests() {
        assert_eq!(r.header("accept"), Some("application/json"), "{}", r.path);
        assert_eq!(r.header("x-icr-api-version"), Some("2023-06-16"), "{}", r.path);
        assert!(
            r.header("user-agent").unwrap().starts_with("icr-app-core/"),
            "{}",
            r.path
        );
    }

    client.revoke(token.secret()).unwrap();
    let mut request = client.request(Method::GET, "/projects", None).unwrap();
    icr_app_core::api::authorize(&mut request, token.secret()).unwrap();
    let response = client.send_raw(request).unwrap();
    assert_eq!(response.status(), 401, "a revoked token is refused");
}

fn pagination_follows_every_page(kind: Kind) {
    let s = Setup::new(250);
    let client = kind.driver(s.app());
    let all = client.installations().unwrap();
    assert_eq!(all.len(), 250);
    let mut ids: Vec<_> = all.iter().map(|i| i.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 250);
    let pages = s
        .registry
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/app/installations?"))
        .count();
    assert_eq!(pages, 3);
    let page = client.installations_page(10, 2).unwrap();
    assert_eq!(page.installations.len(), 10);
}

fn server_clock_two_hours_ahead_or_behind(kind: Kind) {
    for offset in [7200i64, -7200] {
        let s = Setup::new(1);
        s.registry.set_clock_offset(offset);
        let client = kind.driver(s.app());
        let token = client.installation_token(&s.installations[0]).unwrap();
        let left = token.remaining(now());
        assert!(
            left > Duration::from_secs(7000) && left <= Duration::from_secs(7200),
            "{offset}: {left:?}"
        );
        assert_eq!(client.installations().unwrap().len(), 1);
        let learned = client.with_app(|a| a.clock_offset().millis);
        assert!((learned - offset * 1000).abs() <= 1000, "learned {learned} ms");
    }
}

fn server_errors_then_success(kind: Kind) {
    let s = Setup::new(1);
    let client = kind.driver(s.app());
    s.registry.inject(
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        1,
    );
    let token = client.installation_token(&s.installations[0]).unwrap();
    assert!(token.secret().expose().starts_with("crs_"));
    assert_eq!(s.registry.mint_count(s.installations[0].as_str()), 1);
}

fn rate_limited_with_retry_after(kind: Kind) {
    let s = Setup::new(1);
    let client = kind.driver(s.app());
    s.registry.inject(
        Fault::Status {
            status: 429,
            retry_after: Some(1),
        },
        1,
    );
    let started = Instant::now();
    client.installation_token(&s.installations[0]).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900), "Retry-After honoured");
}

fn dropped_connection_is_retried_or_reported(kind: Kind) {
    let s = Setup::new(1);
    let client = kind.driver(s.app());
    s.registry.inject(Fault::DropConnection, 1);
    client.installation_token(&s.installations[0]).unwrap();

    let s = Setup::new(1);
    let client = kind.driver(s.app_with_retry(RetryPolicy::never()));
    s.registry.inject(Fault::DropConnection, 1);
    let e = client.installation_token(&s.installations[0]).unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert!(e.to_string().contains("request failed"), "{e}");
}

fn malformed_body_is_a_clear_error(kind: Kind) {
    let s = Setup::new(1);
    let client = kind.driver(s.app_with_retry(RetryPolicy::never()));
    s.registry.inject(Fault::MalformedBody, 1);
    let e = client.installation_token(&s.installations[0]).unwrap_err();
    assert!(matches!(e, Error::MalformedBody { .. }), "{e:?}");
    assert!(e.to_string().contains("not the documented shape"), "{e}");
    s.registry.inject(Fault::MalformedBody, 1);
    assert!(matches!(client.installations(), Err(Error::MalformedBody { .. })));
}

/// Tokens living 6 s: the refresh falls due half-way (3 s).
fn short_lived(kind: Kind, s: &Setup) -> Driver {
    s.registry.set_token_lifetime(Duration::from_secs(6));
    kind.driver(s.app())
}

fn near_expiry_refreshed_ahead_while_the_old_token_serves(kind: Kind) {
    let s = Setup::new(1);
    let client = short_lived(kind, &s);
    let id = s.installations[0].clone();
    let old = client.installation_token(&id).unwrap();
    thread::sleep(Duration::from_millis(3200));
    // The refresh is slow; meanwhile another caller is served the old token at once.
    s.registry.inject(Fault::Delay(Duration::from_millis(800)), 1);
    let refresher = client.spawn_installation_token(&id);
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let during = client.installation_token(&id).unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
    assert!(during.same_as(&old));
    let new = refresher.join().unwrap().unwrap();
    assert!(!new.same_as(&old));
    assert!(client.installation_token(&id).unwrap().same_as(&new));
    assert_eq!(s.registry.mint_count(id.as_str()), 2);
}

fn failed_refresh_keeps_serving_the_valid_token(kind: Kind) {
    let s = Setup::new(1);
    let client = short_lived(kind, &s);
    let id = s.installations[0].clone();
    let old = client.installation_token(&id).unwrap();
    thread::sleep(Duration::from_millis(3200));
    s.registry.inject(
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        100,
    );
    let served = client.installation_token(&id).unwrap();
    assert!(served.same_as(&old), "still valid, so still served");
    s.registry.clear_faults();
}

fn a_401_from_an_installation_endpoint_re_mints_once(kind: Kind) {
    let s = Setup::new(1);
    let client = kind.driver(s.app());
    let id = s.installations[0].clone();
    client.installation_token(&id).unwrap();
    s.registry.revoke_all_tokens();
    let projects = client.get_json(&id, "/projects").unwrap();
    assert!(projects["projects"].is_array());
    assert_eq!(s.registry.mint_count(id.as_str()), 2);
}

fn redirects_are_not_followed_with_credentials(kind: Kind) {
    let s = Setup::new(1);
    let other = FakeRegistry::start();
    let client = kind.driver(s.app());
    let id = s.installations[0].clone();
    client.installation_token(&id).unwrap();
    s.registry.inject(
        Fault::Redirect {
            location: format!("{}/projects", other.base_url()),
            status: 307,
        },
        1,
    );
    let request = client.request(Method::GET, "/projects", None).unwrap();
    let response = client.send_as_installation(&id, request).unwrap();
    assert_eq!(response.status(), 307);
    assert!(other.requests().is_empty(), "nothing reached the other host");
}

fn wrong_key_is_a_clear_401(kind: Kind) {
    let s = Setup::new(1);
    let app = s
        .builder_with_signer(AppKey::from_pem(OTHER_PRIVATE_KEY_PEM).unwrap())
        .build()
        .unwrap();
    let e = kind.driver(app).installation_token(&s.installations[0]).unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("private key") && text.contains("app id"), "{text}");
}

fn plain_http_to_a_remote_host_is_refused(kind: Kind) {
    let s = Setup::new(1);
    let app = s
        .builder()
        .base_url("http://registry.invalid")
        .retry(RetryPolicy::never())
        .build()
        .unwrap();
    let e = kind.driver(app).installation_token(&s.installations[0]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Transport {
                kind: TransportErrorKind::Refused,
                ..
            }
        ),
        "{e:?}"
    );
}

/// A client with a token cached for each of `s`'s installations, and those tokens.
fn client_with_every_token(kind: Kind, s: &Setup) -> (Driver, Vec<Token>) {
    let client = kind.driver(s.app_with(CacheConfig::default()));
    let tokens = s
        .installations
        .iter()
        .map(|id| client.installation_token(id).unwrap())
        .collect();
    (client, tokens)
}

fn revoke_all_on_shutdown(kind: Kind) {
    let s = Setup::new(3);
    let (client, tokens) = client_with_every_token(kind, &s);
    assert_eq!(client.with_app(|a| a.cached_scopes()), 3);
    assert_eq!(client.revoke_all().unwrap(), 3);
    assert_eq!(client.with_app(|a| a.cached_scopes()), 0, "the cache is empty");
    for t in &tokens {
        assert_eq!(s.registry.token_status(t.secret().expose()), TokenStatus::Revoked);
    }
}

/// A token the registry already refuses (its installation was reinstalled, so it was revoked
/// there) is dropped by `revoke_all` without failing it, and is not counted.
fn revoke_all_passes_over_tokens_already_invalid(kind: Kind) {
    let s = Setup::new(3);
    let (client, tokens) = client_with_every_token(kind, &s);
    s.registry.reinstall(s.installations[0].as_str()).unwrap();
    assert_eq!(
        s.registry.token_status(tokens[0].secret().expose()),
        TokenStatus::Revoked
    );
    assert_eq!(client.revoke_all().unwrap(), 2, "the two tokens still valid");
    assert_eq!(client.with_app(|a| a.cached_scopes()), 0, "the cache is empty");
    for t in &tokens[1..] {
        assert_eq!(s.registry.token_status(t.secret().expose()), TokenStatus::Revoked);
    }
}

/// The demo key, except that the first signature panics.
struct PanicsOnce {
    key: AppKey,
    armed: AtomicBool,
}

impl PanicsOnce {
    fn new() -> Self {
        Self {
            key: AppKey::from_pem(DEMO_PRIVATE_KEY_PEM).unwrap(),
            armed: AtomicBool::new(true),
        }
    }
}

impl Signer for PanicsOnce {
    fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("the signer panics on purpose (test)");
        }
        self.key.sign_rs256(message)
    }
}

/// A panic while the mint is being made (in the signer, with the scope marked as minting) must
/// release the installation at once: the next call mints, rather than waiting 120 s
/// (`fetch_timeout`) for a mint that will never be answered.
fn a_panic_while_minting_does_not_block_the_installation(kind: Kind) {
    let s = Setup::new(1);
    let client = kind.driver(s.builder_with_signer(PanicsOnce::new()).build().unwrap());
    let id = s.installations[0].clone();

    let panic = client
        .installation_token_catching_panic(&id)
        .expect_err("the signer's panic reaches the caller");
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or(panic.downcast_ref::<String>().map(String::as_str));
    assert_eq!(message, Some("the signer panics on purpose (test)"));
    let state = client.token_state(&scope(&id));
    assert!(
        !matches!(state, TokenState::Fetching | TokenState::Refreshing(_)),
        "no mint is left in flight: {state:?}"
    );

    let again = client.clone();
    let token = within(PROMPTLY, "the call after the panic", move || {
        again.installation_token(&id)
    })
    .unwrap();
    assert!(s.registry.token_is_valid(token.secret().expose()));
    assert_eq!(s.registry.mint_count(s.installations[0].as_str()), 1);
}

/// A 429 with `Retry-After: 10000000` (115 days) holds the installation back no longer than
/// `CacheConfig::max_retry_after`, and `App::clear_failure` lifts the back-off at once.
fn a_huge_retry_after_is_capped_and_clear_failure_lifts_the_back_off(kind: Kind) {
    let s = Setup::new(3);
    let huge = Fault::Status {
        status: 429,
        retry_after: Some(10_000_000),
    };
    let capped = CacheConfig {
        max_retry_after: Duration::from_secs(1),
        ..Setup::fast_cache()
    };

    // Without retries the failure is returned, and the installation backs off for the cap.
    let id = s.installations[0].clone();
    let client = kind.driver(
        s.builder()
            .cache(capped.clone())
            .retry(RetryPolicy::never())
            .build()
            .unwrap(),
    );
    s.registry.inject_for(&mint_path(&id), huge.clone(), 1);
    let before = now();
    let e = client.installation_token(&id).unwrap_err();
    assert!(matches!(e, Error::RateLimited { .. }), "{e:?}");
    let TokenState::Failed { retry_at, .. } = client.token_state(&scope(&id)) else {
        panic!("a failed mint is recorded: {:?}", client.token_state(&scope(&id)))
    };
    let back_off = retry_at.saturating_since(before);
    assert!(
        back_off <= Duration::from_secs(2),
        "Retry-After capped at 1 s: backs off {back_off:?}"
    );
    thread::sleep(retry_at.saturating_since(now()) + Duration::from_millis(20));
    let again = client.clone();
    let id_again = id.clone();
    within(PROMPTLY, "the call after the capped back-off", move || {
        again.installation_token(&id_again)
    })
    .unwrap();
    assert_eq!(s.registry.mint_count(id.as_str()), 1);

    // With retries, one call rides out the capped wait (a 10 s retry budget could never cover
    // 115 days) and mints.
    let id = s.installations[1].clone();
    let client = kind.driver(s.builder().cache(capped).build().unwrap());
    s.registry.inject_for(&mint_path(&id), huge.clone(), 1);
    let (again, id_again) = (client.clone(), id.clone());
    within(PROMPTLY, "a call through a capped Retry-After", move || {
        again.installation_token(&id_again)
    })
    .unwrap();
    assert_eq!(s.registry.mint_count(id.as_str()), 1);

    // With the default cap (5 minutes) the installation stays backed off, without a request,
    // until `clear_failure`; then the next call mints at once.
    let id = s.installations[2].clone();
    let client = kind.driver(s.app_with_retry(RetryPolicy::never()));
    s.registry.inject_for(&mint_path(&id), huge, 1);
    assert!(matches!(client.installation_token(&id), Err(Error::RateLimited { .. })));
    let mints_sent = || {
        s.registry
            .requests()
            .iter()
            .filter(|r| r.path == mint_path(&id))
            .count()
    };
    assert_eq!(mints_sent(), 1);
    assert!(matches!(client.installation_token(&id), Err(Error::RateLimited { .. })));
    assert_eq!(mints_sent(), 1, "backing off: no request");
    assert!(client.with_app(|a| a.clear_failure(&scope(&id))));
    assert!(
        !client.with_app(|a| a.clear_failure(&scope(&id))),
        "nothing left to clear"
    );
    let (again, id_again) = (client.clone(), id.clone());
    within(PROMPTLY, "the call after clear_failure", move || {
        again.installation_token(&id_again)
    })
    .unwrap();
    assert_eq!(mints_sent(), 2);
    assert_eq!(s.registry.mint_count(id.as_str()), 1);
}

/// Asking for more life than the registry's tokens have is an error that says so, and asking
/// again does not mint again.
fn a_min_life_no_token_can_meet_is_an_error_and_mints_no_more(kind: Kind) {
    let s = Setup::new(1);
    s.registry.set_token_lifetime(Duration::from_secs(30));
    let client = kind.driver(s.app());
    let id = s.installations[0].clone();
    let too_long = Some(Duration::from_secs(120));
    let check = |e: Error| {
        assert!(matches!(e, Error::Config { .. }), "{e:?}");
        let text = e.to_string();
        // The registry's 30 s, as measured on arrival (29 s and some milliseconds, or 30 s).
        assert!(
            text.contains("120 s") && (text.contains("live 30 s") || text.contains("live 29 s")),
            "the error names the minimum asked for and the tokens' lifetime: {text}"
        );
    };
    check(client.token(&scope(&id), too_long).unwrap_err());
    assert_eq!(s.registry.mint_count(id.as_str()), 1);
    for _ in 0..5 {
        check(client.token(&scope(&id), too_long).unwrap_err());
    }
    assert_eq!(s.registry.mint_count(id.as_str()), 1, "asking again mints no more");
    // A minimum the token meets is served from the cache.
    let token = client.token(&scope(&id), Some(Duration::from_secs(10))).unwrap();
    assert!(s.registry.token_is_valid(token.secret().expose()));
    assert_eq!(s.registry.mint_count(id.as_str()), 1);
}

/// `revoke_all` during a mint waits for it and revokes the token it lands, rather than leaving
/// a live token behind.
fn revoke_all_waits_for_a_mint_in_flight_and_revokes_its_token(kind: Kind) {
    let s = Setup::new(1);
    let client = kind.driver(s.app());
    let id = s.installations[0].clone();
    s.registry
        .inject_for(&mint_path(&id), Fault::Delay(Duration::from_millis(1500)), 1);
    let minting = client.spawn_installation_token(&id);
    wait_until(PROMPTLY, "the mint is in flight", || {
        matches!(client.token_state(&scope(&id)), TokenState::Fetching)
    });
    let again = client.clone();
    let revoked = within(Duration::from_secs(10), "revoke_all", move || again.revoke_all()).unwrap();
    assert!(revoked >= 1, "revoked {revoked}");
    let token = minting.join().unwrap().unwrap();
    assert_eq!(s.registry.mint_count(id.as_str()), 1);
    assert_eq!(s.registry.token_status(token.secret().expose()), TokenStatus::Revoked);
    assert_eq!(client.with_app(|a| a.cached_scopes()), 0);
}

/// Real threads.
mod ureq_only {
    use super::PROMPTLY;
    use icr_app_e2e::within;
    use std::sync::{Arc, Barrier};
    use std::thread;
    use std::time::Duration;

    use icr_app_e2e::Setup;
    use icr_app_testkit::Fault;
    use icr_app_ureq::Client;

    #[test]
    fn concurrent_threads_mint_once_per_installation() {
        let s = Setup::new(8);
        let client = Client::new(s.app());
        s.registry.inject(Fault::Delay(Duration::from_millis(200)), 8);
        let barrier = Arc::new(Barrier::new(64));
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let (client, barrier) = (client.clone(), barrier.clone());
                let id = s.installations[i % 8].clone();
                thread::spawn(move || {
                    barrier.wait();
                    client.installation_token(&id).unwrap()
                })
            })
            .collect();
        // The threads that wait for another's mint are woken by it, not by their wait's
        // deadline (the fetch timeout, 120 s): a missed wake-up would show here.
        within(PROMPTLY, "64 threads on 8 cold installations", move || {
            for h in handles {
                h.join().unwrap();
            }
        });
        for id in &s.installations {
            assert_eq!(s.registry.mint_count(id.as_str()), 1, "{id}");
        }
    }
}

/// Tasks, dropped futures and the background refresher.
mod reqwest_only {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use icr_app_core::TokenState;
    use icr_app_e2e::Setup;
    use icr_app_reqwest::Client;
    use icr_app_testkit::Fault;
    use tokio::sync::Barrier;

    use super::{PROMPTLY, mint_path, scope};

    fn client(s: &Setup) -> Client {
        Client::new(s.app()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_tasks_mint_once_per_installation() {
        let s = Setup::new(8);
        let client = client(&s);
        s.registry.inject(Fault::Delay(Duration::from_millis(200)), 8);
        let barrier = Arc::new(Barrier::new(256));
        let tasks: Vec<_> = (0..256)
            .map(|i| {
                let (client, barrier) = (client.clone(), barrier.clone());
                let id = s.installations[i % 8].clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    client.installation_token(&id).await.unwrap()
                })
            })
            .collect();
        // The tasks that wait for another's mint are woken by it, not by their wait's deadline
        // (the fetch timeout, 120 s): a missed wake-up would show here.
        tokio::time::timeout(PROMPTLY, async {
            for t in tasks {
                t.await.unwrap();
            }
        })
        .await
        .expect("256 tasks on 8 cold installations are served promptly");
        for id in &s.installations {
            assert_eq!(s.registry.mint_count(id.as_str()), 1, "{id}");
        }
    }

    #[tokio::test]
    async fn background_refresher_renews_ahead_of_expiry() {
        let s = Setup::new(1);
        s.registry.set_token_lifetime(Duration::from_secs(6));
        let client = client(&s);
        let id = s.installations[0].clone();
        let _refresher = client.spawn_refresher();
        let old = client.installation_token(&id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3600)).await;
        assert_eq!(s.registry.mint_count(id.as_str()), 2, "renewed without a caller asking");
        let started = Instant::now();
        let now = client.installation_token(&id).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(50));
        assert!(!now.same_as(&old));
    }

    /// A caller that gives up on a slow mint (its future dropped at an `.await`) releases the
    /// installation at once: the next call mints rather than waiting 120 s (`fetch_timeout`)
    /// for an answer nobody will read.
    #[tokio::test]
    async fn a_dropped_caller_does_not_leave_the_installation_stuck() {
        let s = Setup::new(1);
        let client = client(&s);
        let id = s.installations[0].clone();
        s.registry
            .inject_for(&mint_path(&id), Fault::Delay(Duration::from_secs(3)), 1);
        let slow = tokio::time::timeout(Duration::from_millis(200), client.installation_token(&id)).await;
        assert!(slow.is_err(), "timed out");
        let state = client.with_app(|a| a.token_state(&scope(&id), icr_app_e2e::now()));
        assert!(
            !matches!(state, TokenState::Fetching | TokenState::Refreshing(_)),
            "no mint is left in flight: {state:?}"
        );
        let token = tokio::time::timeout(PROMPTLY, client.installation_token(&id))
            .await
            .expect("a new mint starts at once")
            .unwrap();
        assert!(s.registry.token_is_valid(token.secret().expose()));
    }

    /// A task waiting for another's mint is woken when that caller gives up, and mints itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_is_woken_when_the_minting_caller_gives_up() {
        let s = Setup::new(1);
        let client = client(&s);
        let id = s.installations[0].clone();
        s.registry
            .inject_for(&mint_path(&id), Fault::Delay(Duration::from_secs(3)), 1);
        let first = tokio::spawn({
            let (client, id) = (client.clone(), id.clone());
            async move { tokio::time::timeout(Duration::from_millis(300), client.installation_token(&id)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waiter = tokio::spawn({
            let (client, id) = (client.clone(), id.clone());
            async move { client.installation_token(&id).await }
        });
        assert!(first.await.unwrap().is_err(), "the first caller gave up");
        let token = tokio::time::timeout(PROMPTLY, waiter)
            .await
            .expect("the waiter is woken and mints")
            .unwrap()
            .unwrap();
        assert!(s.registry.token_is_valid(token.secret().expose()));
    }
}
