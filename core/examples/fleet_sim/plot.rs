//! The run as a picture: store commands per second and mints per minute over the simulated
//! time, with the failover and the outage marked. Hand-written SVG.

use std::fmt::Write;

use crate::model::Settings;
use crate::sim::Series;

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const PANEL: f64 = 220.0;
const GAP: f64 = 70.0;
const TOP: f64 = 80.0;

/// The SVG document.
pub fn svg(settings: &Settings, series: &Series, summary: &str) -> String {
    let minutes = series.mints_per_min.len().max(1);
    // Per minute: the busiest, the mean and the quietest second of store commands.
    let minute = |f: fn(&[u32]) -> f64| -> Vec<f64> { series.store_per_s.chunks(60).map(f).collect() };
    let peak = minute(|c| f64::from(c.iter().copied().max().unwrap_or(0)));
    let mean = minute(|c| c.iter().map(|&n| f64::from(n)).sum::<f64>() / c.len() as f64);
    let least = minute(|c| f64::from(c.iter().copied().min().unwrap_or(0)));
    let mints: Vec<f64> = series.mints_per_min.iter().map(|&n| f64::from(n)).collect();
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">fleet_sim: {} processes, {} installations, {} h, seed {}</text>"#,
        settings.processes, settings.installations, settings.hours, settings.seed
    );
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="38" fill="#555">{}</text>"##,
        escape(summary)
    );
    let top2 = TOP + PANEL + GAP;
    panel(
        &mut out,
        settings,
        TOP,
        minutes,
        "Redis commands per second (each minute: its busiest second, its mean, its quietest second)",
        Scale::Linear,
        &[
            (&peak, "#1f77b4", "busiest second"),
            (&mean, "#6baed6", "mean"),
            (&least, "#2ca02c", "quietest second"),
        ],
    );
    panel(
        &mut out,
        settings,
        top2,
        minutes,
        "mints per minute (registry), log scale",
        Scale::Log,
        &[(&mints, "#d62728", "mints")],
    );
    let _ = writeln!(out, "</svg>");
    out
}

/// How a panel's y axis goes.
#[derive(Clone, Copy, PartialEq)]
enum Scale {
    Linear,
    /// Logarithmic in 1 + the value (so 0 sits at the bottom).
    Log,
}

fn panel(
    out: &mut String,
    s: &Settings,
    top: f64,
    minutes: usize,
    title: &str,
    scale: Scale,
    lines: &[(&Vec<f64>, &str, &str)],
) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let max = lines
        .iter()
        .flat_map(|(v, ..)| v.iter().copied())
        .fold(1.0_f64, f64::max);
    let ymax = match scale {
        Scale::Linear => nice(max),
        Scale::Log => 10f64.powf(max.log10().ceil().max(1.0)),
    };
    let x = |minute: f64| LEFT + plot_w * minute / minutes as f64;
    let y = |v: f64| match scale {
        Scale::Linear => top + PANEL - PANEL * v / ymax,
        Scale::Log => top + PANEL - PANEL * (1.0 + v.max(0.0)).log10() / (1.0 + ymax).log10(),
    };
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
        top - 8.0,
        escape(title)
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888"/>"##
    );
    // The incidents, at least 3 px wide so that a few seconds show on a day.
    if s.incidents {
        for (at, len, label) in [
            (s.failover_at_s, s.failover_s, "failover"),
            (s.outage_at_s, s.outage_s, "outage"),
        ] {
            let x0 = x(at / 60.0);
            let w = (x(at / 60.0 + len / 60.0) - x0).max(3.0);
            let _ = writeln!(
                out,
                r##"<rect x="{x0:.1}" y="{top}" width="{w:.1}" height="{PANEL}" fill="#ff7f0e" fill-opacity="0.35"/><text x="{:.1}" y="{:.1}" fill="#c05000">{label}</text>"##,
                x0 + w + 3.0,
                top + 14.0
            );
        }
    }
    // Grid: y at quarters (at powers of ten on a log scale), x every hour (labelled every 2 h
    // on a day or longer).
    let ticks: Vec<f64> = match scale {
        Scale::Linear => (0..=4).map(|q| ymax * f64::from(q) / 4.0).collect(),
        Scale::Log => std::iter::once(0.0)
            .chain((0..=ymax.log10() as i32).map(|e| 10f64.powi(e)))
            .collect(),
    };
    for v in ticks {
        let yy = y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0,
            v
        );
    }
    let hours = (minutes as f64 / 60.0).ceil() as usize;
    let step = if hours >= 12 { 2 } else { 1 };
    for h in (0..=hours).step_by(step) {
        let xx = x(h as f64 * 60.0);
        if xx > LEFT + plot_w + 0.5 {
            break;
        }
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{top}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{h} h</text>"##,
            top + PANEL,
            top + PANEL + 16.0
        );
    }
    for (k, (values, color, label)) in lines.iter().enumerate() {
        let mut points = String::new();
        for (i, v) in values.iter().enumerate() {
            let _ = write!(points, "{:.1},{:.1} ", x(i as f64 + 0.5), y(*v));
        }
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1" points="{}"/>"#,
            points.trim_end()
        );
        let lx = LEFT + plot_w - 160.0;
        let ly = top + 16.0 + 16.0 * k as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" x2="{}" y1="{}" y2="{}" stroke="{color}" stroke-width="2"/><text x="{}" y="{ly}">{label}</text>"#,
            lx + 20.0,
            ly - 4.0,
            ly - 4.0,
            lx + 26.0
        );
    }
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v`.
fn nice(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
