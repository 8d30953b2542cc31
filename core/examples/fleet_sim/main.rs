//! A fleet at internet scale, simulated: every process runs the real core (its own
//! [`icr_app_core::App`], its calls as [`icr_app_core::GetToken`] operations driven through
//! their steps) against a simulated registry and a simulated Redis on a simulated clock, and
//! the run prints one JSON line: how many mints, how many store commands, the peaks.
//!
//! ```text
//! cargo run --release -p icr-app-core --example fleet_sim -- --processes 10000 --installations 1000 --hours 24 --plot fleet.svg
//! ```
//!
//! The demand model: each process makes calls as a Poisson stream of `--rate` calls a second
//! (default one a minute), each for an installation drawn from a Zipf law of exponent `--zipf`
//! (default 1: the most used installation is called 1000 times as often as the 1000th). Each
//! call is a `GetToken` for that installation with the cache's default minimum life (60 s).
//! Every process starts at time 0 with an empty cache (a cold start of the whole fleet).
//!
//! The world: the registry answers a mint in 80 ms plus an exponential part of mean 70 ms with
//! a token of 2 hours; Redis answers in 200 µs plus an exponential part of mean 300 µs. The
//! failover (5 s after the fleet's refresh of its busiest installations nearest a third of the
//! run, when tokens were just put): for 3 s every command times out (after the store driver's
//! 300 ms), and the promoted replica lacks the writes of the last second before it.
//! The outage (at two thirds): for 60 s every connection is refused (the data survives).
//!
//! Everything is deterministic for a `--seed`: a small PRNG of the simulation's own, the core
//! given the simulated time, events ordered by (time, sequence number).
//!
//! A refresh window of an installation opens with a mint and lasts until any process may first
//! refresh that token (`expiresAt - max(5 min, 10 %)`, 12 minutes before it expires, brought
//! forward by the cache's spread of at most a fifth of that: 14.4 minutes before it expires,
//! 105.6 minutes after it was minted); a mint in a window already open is an extra (`extra_mints`). The fleet's target
//! is one mint per window (`mints_per_installation_per_window` 1.00; with the incidents, the mints
//! made alone while the store was away set aside). `single_process_mints` is what one process
//! making every call of the fleet would mint (an ideal single cache with the core's policy).

mod model;
mod plot;
mod sim;
mod world;

use std::process::ExitCode;
use std::time::Instant;

use model::Settings;
use sim::Sim;

/// Runs `settings` and returns the JSON report (without the wall time) and the series.
fn simulate(settings: &Settings) -> Result<(serde_json::Value, sim::Series), icr_app_core::Error> {
    let mut sim = Sim::new(settings.clone())?;
    sim.run();
    let t = &sim.tally;
    let mints = sim.registry_mints();
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { round3(a as f64 / b as f64) };
    let peak = |v: &[u32]| v.iter().copied().max().unwrap_or(0);
    // The mints made alone while the store was away (and in the pause after) set aside.
    let alone_excluded = mints.saturating_sub(t.mints_in_outage + t.mints_in_failover);
    let report = serde_json::json!({
        "seed": settings.seed,
        "processes": settings.processes,
        "installations": settings.installations,
        "hours": settings.hours,
        "rate_per_process_per_s": settings.rate,
        "zipf": settings.zipf,
        "incidents": settings.incidents,
        "calls": t.calls,
        "failed_calls": t.failed_calls,
        "mints": mints,
        "refresh_windows": t.refresh_windows,
        "mints_per_installation_per_window": ratio(mints, t.refresh_windows),
        "extra_mints": mints.saturating_sub(t.refresh_windows),
        "mints_outside_incidents_per_installation_per_window": ratio(alone_excluded, t.refresh_windows),
        "mints_in_outage": t.mints_in_outage,
        "mints_in_failover": t.mints_in_failover,
        "single_process_mints": t.single_process_mints,
        "failover_at_s": sim.failover_start_us.map(|us| us as f64 / 1e6),
        "writes_lost_in_failover": t.writes_lost_in_failover,
        "store_commands": t.store_commands,
        "store_commands_per_call": ratio(t.store_commands, t.calls),
        "store_commands_predicted": predicted_store_commands(settings, t.refresh_windows).round(),
        "store_failures": t.store_failures,
        "peak_store_commands_per_second": peak(&sim.series.store_per_s),
        "mean_store_commands_per_second": round3(t.store_commands as f64 / (settings.hours * 3600.0)),
        "registry_requests": t.registry_requests,
        "registry_requests_per_second_peak": peak(&sim.series.registry_per_s),
        "peak_mints_per_minute": peak(&sim.series.mints_per_min),
        "expired_tokens_served": t.expired_tokens_served,
        "tokens_served_under_min_life": t.under_min_life_served,
        "local_hits": t.hits,
        "local_misses": t.misses,
        "shared_hits": t.shared_hits,
        "shared_fallbacks": t.shared_fallbacks,
        "redis_keys_at_end": t.redis_keys_at_end,
    });
    Ok((report, std::mem::take(&mut sim.series)))
}

/// The store commands the formula of BENCHMARKS.md predicts: each process reads the entry once
/// per refresh window in which it calls for the installation (a local miss: `1 - e^(-λ p_i w)`
/// for a window of `w` seconds), and the one process that mints in a window adds three (take
/// the lease, read again, put the token and release the lease).
fn predicted_store_commands(s: &Settings, windows: u64) -> f64 {
    let zipf = model::Zipf::new(s.installations, s.zipf);
    let r = model::refresh_after().as_secs_f64();
    let t = s.hours * 3600.0;
    let full = (t / r).floor();
    let last = t - full * r;
    let reads: f64 = (0..s.installations as usize)
        .map(|i| {
            let rate = s.rate * zipf.p(i);
            full * (1.0 - (-rate * r).exp()) + (1.0 - (-rate * last).exp())
        })
        .sum();
    f64::from(s.processes) * reads + 3.0 * windows as f64
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", model::USAGE);
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::from_args(args) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let (mut report, series) = match simulate(&settings) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    report["wall_time_s"] = serde_json::json!(round3(started.elapsed().as_secs_f64()));
    if let Some(path) = &settings.plot {
        let mut settings = settings.clone();
        settings.failover_at_s = report["failover_at_s"].as_f64().unwrap_or(settings.failover_at_s);
        let summary = format!(
            "{} mints for {} refresh windows: {} per installation per window ({} besides the {} made alone in the incidents); peak {} Redis commands/s; {} expired tokens served",
            report["mints"],
            report["refresh_windows"],
            report["mints_per_installation_per_window"],
            report["mints_outside_incidents_per_installation_per_window"],
            report["mints_in_outage"].as_u64().unwrap_or(0) + report["mints_in_failover"].as_u64().unwrap_or(0),
            report["peak_store_commands_per_second"],
            report["expired_tokens_served"]
        );
        if let Err(e) = std::fs::write(path, plot::svg(&settings, &series, &summary)) {
            eprintln!(
                "error: could not write the plot to {path}: {e}; check that its directory exists and is writable"
            );
            return ExitCode::FAILURE;
        }
    }
    println!("{report}");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64, incidents: bool) -> Settings {
        let mut settings = Settings::new(40, 20, 6.0, seed);
        settings.rate = 1.0 / 20.0;
        settings.incidents = incidents;
        settings
    }

    fn n(report: &serde_json::Value, field: &str) -> u64 {
        report[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no {field} in {report}"))
    }

    /// A small fleet, a few hours, without incidents: one mint per installation per refresh
    /// window, no expired token, every call served, and the same seed gives the same figures.
    #[test]
    fn a_small_fleet_mints_once_per_window_and_serves_no_expired_token() {
        let settings = small(3, false);
        let (one, series) = simulate(&settings).unwrap();
        assert_eq!(n(&one, "expired_tokens_served"), 0, "{one}");
        assert_eq!(n(&one, "tokens_served_under_min_life"), 0, "{one}");
        assert_eq!(n(&one, "failed_calls"), 0, "{one}");
        assert_eq!(n(&one, "extra_mints"), 0, "{one}");
        assert_eq!(one["mints_per_installation_per_window"], 1.0, "{one}");
        assert!(n(&one, "refresh_windows") >= 20 * 3, "{one}");
        let (two, _) = simulate(&settings).unwrap();
        assert_eq!(one, two);
        let svg = plot::svg(&settings, &series, "test");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }

    /// With the failover (a second of writes lost) and a minute of outage: still no expired
    /// token and no failed call; beyond one mint a window, the mints made alone while the store
    /// was away, and a few for what the failover lost (a token put then, or a window that began
    /// with a mint made alone, which the store never saw).
    #[test]
    fn incidents_cost_the_mints_made_alone_meanwhile() {
        let settings = small(7, true);
        let (report, _) = simulate(&settings).unwrap();
        assert_eq!(n(&report, "expired_tokens_served"), 0, "{report}");
        assert_eq!(n(&report, "failed_calls"), 0, "{report}");
        assert!(report["failover_at_s"].is_number(), "{report}");
        assert!(n(&report, "store_failures") > 0, "{report}");
        assert!(n(&report, "mints_in_outage") > 0, "{report}");
        let outside = report["mints_outside_incidents_per_installation_per_window"]
            .as_f64()
            .unwrap();
        assert!((1.0..=1.1).contains(&outside), "{report}");
        assert_eq!(simulate(&settings).unwrap().0, report);
    }

    #[test]
    fn bad_arguments_are_named() {
        let err = |args: &[&str]| {
            Settings::from_args(args.iter().map(|s| s.to_string()))
                .unwrap_err()
                .to_string()
        };
        assert!(err(&["--processes", "0"]).contains("--processes takes a number"));
        assert!(err(&["--hours"]).contains("--hours needs a value"));
        assert!(err(&["--seed", "-1"]).contains("--seed takes a whole number"));
        assert!(err(&["--frobnicate"]).contains("unknown argument `--frobnicate`"));
    }
}
