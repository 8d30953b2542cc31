//! `stats()` on both clients, and the same counters through the `metrics` facade (feature
//! `metrics`): a recorder installed as an application would, over real loopback HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use icr_app_e2e::Setup;
use icr_app_testkit::Fault;
use metrics::{Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Counters by name and labels, as any exporter would keep them.
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

static COUNTERS: std::sync::OnceLock<&'static Counters> = std::sync::OnceLock::new();

fn counters() -> &'static Counters {
    COUNTERS.get_or_init(|| {
        let counters: &'static Counters = Box::leak(Box::default());
        metrics::set_global_recorder(counters).expect("the only recorder of this test binary");
        counters
    })
}

#[test]
fn blocking_client_counts_hits_misses_mints_and_failures_in_stats_and_metrics() {
    let counters = counters();
    let setup = Setup::new(2);
    let client = icr_app_ureq::Client::new(setup.app());
    let (one, two) = (&setup.installations[0], &setup.installations[1]);
    let first = client.installation_token(one).unwrap();
    for _ in 0..3 {
        assert!(client.installation_token(one).unwrap().same_as(&first));
    }
    // A 500 then a success: one failure of kind `server`, then the retry mints.
    setup.registry.inject(
        Fault::Status {
            status: 500,
            retry_after: None,
        },
        1,
    );
    client.installation_token(two).unwrap();
    let stats = client.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.mints, stats.refreshes),
        (3, 2, 3, 0),
        "{stats:?}"
    );
    assert_eq!(stats.failures.get("server"), Some(&1), "{stats:?}");
    assert_eq!((stats.shared_hits, stats.shared_fallbacks), (0, 0));
    // The same counts through the facade (other tests of this binary add theirs: at least).
    assert!(counters.get("icr_app_hits_total") >= 3);
    assert!(counters.get("icr_app_mints_total") >= 3);
    assert!(counters.get("icr_app_failures_total{kind=server}") >= 1);
}

#[tokio::test]
async fn async_client_counts_too() {
    let _ = counters();
    let setup = Setup::new(1);
    let client = icr_app_reqwest::Client::new(setup.app()).unwrap();
    let id = &setup.installations[0];
    client.installation_token(id).await.unwrap();
    client.installation_token(id).await.unwrap();
    let stats = client.stats();
    assert_eq!((stats.hits, stats.misses, stats.mints), (1, 1, 1), "{stats:?}");
}
