//! What the core's own work on a cold mint costs, hot and between real round trips.
//!
//! `loopback`'s `share` measures a mint through a client against a bare POST. This splits out
//! the core's part: the mint driven through the core alone (`GetToken` polled to its `Send`, the
//! registry's answer reported, polled to `Done`, the token dropped again with `invalidate`),
//! answered from a response the registry gave once (its `Date` set to now each time), so no
//! I/O is in it. It is timed
//!
//! - in a loop of its own (`hot`: everything it touches stays in the caches), and
//! - right after each of a series of bare `reqwest` POSTs to the fake registry (`cold`: what it
//!   costs after a real round trip, as in a client), with the bare POSTs alone interleaved in
//!   rounds against the POSTs followed by the core's work (the ratio is what the core's work
//!   adds to a loopback mint).
//!
//! ```text
//! cargo bench -p icr-app-e2e --bench mint_cost
//! ```

use std::time::{Duration, Instant, SystemTime};

use icr_app_core::{App, AppKey, GetToken, InstallationId, Operation, Step, Timestamp, TokenScope};
use icr_app_e2e::{interleave, median};
use icr_app_testkit::FakeRegistry;

/// The core's work on one mint, its parts timed: to the `Send`, the answer reported, to `Done`
/// and the token dropped.
fn core_mint(app: &mut App, scope: &TokenScope, answer: &http::Response<Vec<u8>>) -> [Duration; 3] {
    let now = Timestamp::from_system_time(SystemTime::now());
    let started = Instant::now();
    let mut op = GetToken::new(scope.clone(), None);
    let Step::Send { id, request } = op.poll(app, now) else {
        panic!("a cold mint starts with a send")
    };
    drop(request);
    let sent = Instant::now();
    let mut response = http::Response::new(answer.body().clone());
    *response.status_mut() = answer.status();
    *response.headers_mut() = answer.headers().clone();
    let date = http::HeaderValue::from_str(&now.to_http_date()).expect("an HTTP date");
    response.headers_mut().insert(http::header::DATE, date);
    let built = Instant::now();
    op.handle_response(app, id, response, now);
    let answered = Instant::now();
    let Step::Done(Ok(token)) = op.poll(app, now) else {
        panic!("the mint is done")
    };
    app.invalidate(scope, token.secret().expose());
    let done = Instant::now();
    [sent - started, answered - built, done - answered]
}

fn main() {
    // `cargo test --benches` runs this once, unoptimised, without `--bench`: a few rounds then.
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, batch, hot_n) = if full { (200, 25, 20_000) } else { (2, 2, 10) };
    let demo = FakeRegistry::demo();
    let registry = &demo.registry;
    registry.set_token_lifetime(Duration::from_secs(7200));
    let id = InstallationId::new(demo.installation_ids[0].clone()).expect("an installation id");
    let scope = TokenScope::Installation(id.clone());
    let key = || AppKey::from_pem(demo.private_key_pem).expect("the demo key");
    let mut app = App::builder(demo.app_id.clone(), key())
        .base_url(registry.base_url())
        .build()
        .expect("an app");
    let jwt = app.jwt(Timestamp::from_system_time(SystemTime::now())).expect("a JWT");
    let bearer = format!("Bearer {}", jwt.token().expose());
    let url = format!("{}/app/installations/{id}/accessTokens", registry.base_url());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let client = icr_app_reqwest::ReqwestTransport::client_builder()
        .expect("a client builder")
        .build()
        .expect("a client");
    let bare = || {
        rt.block_on(async {
            let response = client
                .post(&url)
                .header("authorization", &bearer)
                .header("accept", "application/json")
                .header("x-icr-api-version", "2023-06-16")
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("a response");
            let (status, headers) = (response.status(), response.headers().clone());
            let body = response.bytes().await.expect("a body").to_vec();
            let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert!(v["token"].is_string());
            let mut answer = http::Response::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            answer
        })
    };
    let answer = bare();

    // Hot: the core's work in a loop of its own.
    for _ in 0..100.min(hot_n) {
        core_mint(&mut app, &scope, &answer);
    }
    let hot: Vec<f64> = (0..hot_n)
        .map(|_| {
            core_mint(&mut app, &scope, &answer)
                .iter()
                .sum::<Duration>()
                .as_secs_f64()
                * 1e6
        })
        .collect();

    // Cold: right after a round trip; and the round trips alone, interleaved in rounds.
    let mut parts: [Vec<f64>; 3] = Default::default();
    let with_core = || {
        bare();
        for (part, d) in parts.iter_mut().zip(core_mint(&mut app, &scope, &answer)) {
            part.push(d.as_secs_f64() * 1e6);
        }
    };
    let ratios = interleave(rounds, batch, with_core, || {
        bare();
    })
    .iter()
    .map(|round| round[2])
    .collect();
    let cold: Vec<f64> = (0..parts[0].len()).map(|i| parts.iter().map(|p| p[i]).sum()).collect();
    let [to_send, answered, done] = parts.map(median);
    println!(
        "mint_cost/hot: the core's work on a mint {:.2} µs (median of {hot_n})",
        median(hot)
    );
    println!(
        "mint_cost/cold: {:.2} µs after a round trip (median; to the send {to_send:.2}, the answer {answered:.2}, to done and dropped {done:.2})",
        median(cold)
    );
    println!(
        "mint_cost/ratio: bare POSTs followed by the core's work against bare POSTs alone, median of {rounds} interleaved rounds of {batch}: {:.3}",
        median(ratios)
    );
}
