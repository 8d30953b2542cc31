//! `icr_app.Stats`: a snapshot of an App's counters (the core's `Stats`, as Rust clients give it).

use std::collections::BTreeMap;

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// What an App has done since it was made (in this process: a forked child starts from zero),
/// counted by the core: the same counters as the Rust clients' `stats()`. Taken with
/// `App.stats()` or `client.stats()`; a snapshot, not updated afterwards.
///
/// `hits`: tokens handed out from the process's cache; `misses`: token requests the cache could
/// not answer at once; `mints`: mint requests sent to the registry; `refreshes`: those of a
/// scope that still held a token (ahead of expiry, or after a refusal); `failures`: failed mints
/// by kind (`unauthorized`, `forbidden`, `not_found`, `rate_limited`, `server`, `transport`,
/// `malformed`, `signing`, `other`); `waits`: times a caller waited for a mint already in flight
/// in this process; `shared_hits`: tokens read from the shared store (`redis_url`) instead of
/// minted; `shared_fallbacks`: shared store failures, after which the process minted alone for
/// a while; `lookups`: lookups of the app's installation on an organization sent to the
/// registry (`ByOrganization`, `installation_for_organization`); `shared_lookups`: those read
/// from the shared store instead. `as_dict()` gives them all as a `dict` (for JSON or a metrics exporter).
#[pyclass(module = "icr_app", frozen, eq)]
#[derive(PartialEq, Eq)]
pub struct Stats {
    /// Tokens handed out from the process's cache without asking anyone.
    #[pyo3(get)]
    hits: u64,
    /// Token requests the cache could not answer at once.
    #[pyo3(get)]
    misses: u64,
    /// Mint requests sent to the registry.
    #[pyo3(get)]
    mints: u64,
    /// Mints of a scope that still held a token.
    #[pyo3(get)]
    refreshes: u64,
    failures: BTreeMap<String, u64>,
    /// Times a caller waited for a mint in flight in this process.
    #[pyo3(get)]
    waits: u64,
    /// Tokens read from the shared store instead of minted.
    #[pyo3(get)]
    shared_hits: u64,
    /// Shared store failures (the process then minted alone for a while).
    #[pyo3(get)]
    shared_fallbacks: u64,
    /// Lookups of the app's installation on an organization sent to the registry.
    #[pyo3(get)]
    lookups: u64,
    /// Organizations' installations read from the shared store instead of looked up.
    #[pyo3(get)]
    shared_lookups: u64,
}

impl From<icr_app_core::Stats> for Stats {
    fn from(s: icr_app_core::Stats) -> Self {
        Self {
            hits: s.hits,
            misses: s.misses,
            mints: s.mints,
            refreshes: s.refreshes,
            failures: s.failures.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            waits: s.waits,
            shared_hits: s.shared_hits,
            shared_fallbacks: s.shared_fallbacks,
            lookups: s.lookups,
            shared_lookups: s.shared_lookups,
        }
    }
}

#[pymethods]
impl Stats {
    /// Failed mints by kind (a new `dict` each time).
    #[getter]
    fn failures<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (kind, n) in &self.failures {
            dict.set_item(kind, n)?;
        }
        Ok(dict)
    }

    /// Every counter as a `dict`: `hits`, `misses`, `mints`, `refreshes`, `failures` (a `dict`
    /// by kind), `waits`, `shared_hits`, `shared_fallbacks`, `lookups`, `shared_lookups`.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("hits", self.hits)?;
        dict.set_item("misses", self.misses)?;
        dict.set_item("mints", self.mints)?;
        dict.set_item("refreshes", self.refreshes)?;
        dict.set_item("failures", self.failures(py)?)?;
        dict.set_item("waits", self.waits)?;
        dict.set_item("shared_hits", self.shared_hits)?;
        dict.set_item("shared_fallbacks", self.shared_fallbacks)?;
        dict.set_item("lookups", self.lookups)?;
        dict.set_item("shared_lookups", self.shared_lookups)?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        let failures: Vec<String> = self.failures.iter().map(|(kind, n)| format!("'{kind}': {n}")).collect();
        format!(
            "Stats(hits={}, misses={}, mints={}, refreshes={}, failures={{{}}}, waits={}, shared_hits={}, shared_fallbacks={}, lookups={}, shared_lookups={})",
            self.hits,
            self.misses,
            self.mints,
            self.refreshes,
            failures.join(", "),
            self.waits,
            self.shared_hits,
            self.shared_fallbacks,
            self.lookups,
            self.shared_lookups
        )
    }
}
