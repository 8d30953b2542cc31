//! The `metrics` feature: the counters of `App::stats` also reach an installed `metrics`
//! recorder (as any exporter, Prometheus included, installs one), by name and `kind` label.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use icr_app_core::{App, AppKey, GetToken, InstallationId, Operation, Step, Timestamp, TokenScope};
use metrics::{Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Counters by name and labels, as an exporter keeps them.
#[derive(Default)]
struct Counters(Mutex<HashMap<String, Arc<AtomicU64>>>);

struct Handle(Arc<AtomicU64>);

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl Counters {
    fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl Recorder for &'static Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut name = key.name().to_owned();
        for label in key.labels() {
            name.push_str(&format!("{{{}={}}}", label.key(), label.value()));
        }
        let cell = self.0.lock().unwrap().entry(name).or_default().clone();
        Counter::from_arc(Arc::new(Handle(cell)))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn response(status: u16, body: serde_json::Value) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap()
}

#[test]
fn stats_reach_the_installed_recorder() {
    let counters: &'static Counters = Box::leak(Box::default());
    metrics::set_global_recorder(counters).unwrap();
    let key = AppKey::from_pem(include_str!("fixtures/keys/rsa2048-pkcs8.pem")).unwrap();
    let mut app = App::builder("app-1", key).build().unwrap();
    let now = Timestamp::from_unix_seconds(1_700_000_000);
    let scope = TokenScope::Installation(InstallationId::new("i-1").unwrap());
    // A 500 (retried after a back-off), then a token; then three hits.
    let mut op = GetToken::new(scope.clone(), None);
    let mut answers = vec![
        response(
            200,
            serde_json::json!({"token": "crs_0123456789abcdef0123456789abcdef", "createdAt": now.to_rfc3339(),
                "expiresAt": now.plus(std::time::Duration::from_secs(7200)).to_rfc3339(), "permissions": {}}),
        ),
        response(500, serde_json::json!({"statusCode": 500, "message": "boom"})),
    ];
    let mut at = now;
    let token = loop {
        match op.poll(&mut app, at) {
            Step::Send { id, .. } => op.handle_response(&mut app, id, answers.pop().unwrap(), at),
            Step::Sleep { until } => at = until,
            Step::Done(result) => break result.unwrap(),
            other => panic!("{other:?}"),
        }
    };
    for _ in 0..3 {
        let Step::Done(Ok(hit)) = GetToken::new(scope.clone(), None).poll(&mut app, at) else {
            panic!("a hit")
        };
        assert!(hit.same_as(&token));
    }
    let stats = app.stats();
    assert_eq!((stats.hits, stats.misses, stats.mints), (3, 1, 2), "{stats:?}");
    assert_eq!(stats.failures.get("server"), Some(&1));
    assert_eq!(counters.get("icr_app_hits_total"), 3);
    assert_eq!(counters.get("icr_app_misses_total"), 1);
    assert_eq!(counters.get("icr_app_mints_total"), 2);
    assert_eq!(counters.get("icr_app_failures_total{kind=server}"), 1);
}
