//! `stats()` on both clients, over real loopback HTTP. (The same counters through the `metrics`
//! facade: `core/tests/metrics.rs`, run with the core's `metrics` feature; kept out of this
//! crate so that its benchmarks measure the hit path without it.)

use icr_app_e2e::Setup;
use icr_app_testkit::Fault;

#[test]
fn blocking_client_counts_hits_misses_mints_and_failures() {
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
}

#[tokio::test]
async fn async_client_counts_too() {
    let setup = Setup::new(1);
    let client = icr_app_reqwest::Client::new(setup.app()).unwrap();
    let id = &setup.installations[0];
    client.installation_token(id).await.unwrap();
    client.installation_token(id).await.unwrap();
    let stats = client.stats();
    assert_eq!((stats.hits, stats.misses, stats.mints), (1, 1, 1), "{stats:?}");
}
