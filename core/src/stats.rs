//! [`Stats`]: what an [`App`](crate::App) has done, counted as it happens; with the `metrics`
//! feature, the same counters go to the [`metrics`](https://docs.rs/metrics) facade too.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Error;

/// A snapshot of an app's counters (see [`App::stats`](crate::App::stats)). Cumulative since
/// the app was built.
///
/// With the `metrics` feature each is also a `metrics` counter of the same name with an
/// `icr_app_` prefix and a `_total` suffix (`icr_app_hits_total`, `icr_app_failures_total` with a
/// `kind` label, ...), so any exporter (Prometheus included) picks them up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Tokens handed out from the process's cache without asking anyone.
    pub hits: u64,
    /// Token requests the cache could not answer at once (a fetch, or a wait for one).
    pub misses: u64,
    /// Mint requests sent to the registry (a clock-skew resend counts again).
    pub mints: u64,
    /// Of those, mints of a scope that still held a token (a refresh ahead of expiry, or after a
    /// refusal).
    pub refreshes: u64,
    /// Failed mints, by kind (`unauthorized`, `forbidden`, `not_found`, `rate_limited`,
    /// `server`, `transport`, `malformed`, `signing`, `other`).
    pub failures: BTreeMap<&'static str, u64>,
    /// Times an operation waited for a mint another operation of the process had in flight.
    pub waits: u64,
    /// Tokens read from the shared store instead of minted.
    pub shared_hits: u64,
    /// Shared store failures, after which the process minted alone for a while.
    pub shared_fallbacks: u64,
    /// Lookups of the app's installation on an organization sent to the registry
    /// (`GET /app/organizations/{id}/installation`), by a scope naming the organization or by
    /// a `Call`.
    pub lookups: u64,
    /// Organizations' installations read from the shared store instead of looked up.
    pub shared_lookups: u64,
}

/// What happened, for [`Stats::count`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Hit,
    Miss,
    Mint,
    Refresh,
    Wait,
    SharedHit,
    SharedFallback,
    Lookup,
    SharedLookup,
}

impl Stats {
    pub(crate) fn count(&mut self, counter: Counter) {
        let (field, _name) = match counter {
            Counter::Hit => (&mut self.hits, "icr_app_hits_total"),
            Counter::Miss => (&mut self.misses, "icr_app_misses_total"),
            Counter::Mint => (&mut self.mints, "icr_app_mints_total"),
            Counter::Refresh => (&mut self.refreshes, "icr_app_refreshes_total"),
            Counter::Wait => (&mut self.waits, "icr_app_waits_total"),
            Counter::SharedHit => (&mut self.shared_hits, "icr_app_shared_hits_total"),
            Counter::SharedFallback => (&mut self.shared_fallbacks, "icr_app_shared_fallbacks_total"),
            Counter::Lookup => (&mut self.lookups, "icr_app_lookups_total"),
            Counter::SharedLookup => (&mut self.shared_lookups, "icr_app_shared_lookups_total"),
        };
        *field += 1;
        #[cfg(feature = "metrics")]
        metrics::counter!(_name).increment(1);
    }

    pub(crate) fn count_failure(&mut self, error: &Error) {
        let kind = failure_kind(error);
        *self.failures.entry(kind).or_default() += 1;
        #[cfg(feature = "metrics")]
        metrics::counter!("icr_app_failures_total", "kind" => kind).increment(1);
    }
}

/// The kind a failure is counted under.
pub(crate) fn failure_kind(error: &Error) -> &'static str {
    match error {
        Error::Unauthorized { .. } => "unauthorized",
        Error::Forbidden { .. } => "forbidden",
        Error::NotFound { .. } => "not_found",
        Error::RateLimited { .. } => "rate_limited",
        Error::Server { .. } => "server",
        Error::Transport { .. } => "transport",
        Error::MalformedBody { .. } | Error::UnexpectedStatus { .. } => "malformed",
        Error::Signing(_) | Error::Key(_) => "signing",
        _ => "other",
    }
}
