//! What the CLI shows on stderr while it works: the clients' `tracing` events, rendered for
//! people.
//!
//! - target `icr_app`, WARN, "retrying" (fields `attempt`, `max_attempts`, `wait_ms`, `cause`):
//!   `retrying: <cause> (attempt 1 of 4); next try in 1.5 s`, shown by default;
//! - target `icr_app`, DEBUG, "request" (fields `method`, `path`, `status`, `took_ms`):
//!   `> GET /app/installations 200 3.1 ms`, shown with `-v`;
//! - target `icr_app`, WARN, "giving up ...": not shown, as the command's error says it;
//! - the core's spans (`mint`, `call`, `send_as`, `revoke`; target `icr_app`, DEBUG), one line
//!   each when it closes, with its fields and how long it was open:
//!   `DEBUG icr_app: mint{scope=installation:… attempt=1 status=201 …} closed after 3.1 ms`,
//!   shown when `RUST_LOG` asks for them (`debug`, `trace`, `icr_app=debug`);
//! - anything else `RUST_LOG` lets through: `LEVEL target: message field=value ...`.
//!
//! The level for `icr_app` is WARN, DEBUG with `-v`. `RUST_LOG` sets it too: its level for
//! `icr_app` (`icr_app=LEVEL`, or else a bare `LEVEL`) replaces the default, and `-v` keeps it
//! at DEBUG at least. (`tracing-subscriber` ranks any target's directive above a bare level, so
//! the default `icr_app=warn` would otherwise hide what `RUST_LOG=trace` asks for.)
//!
//! No `log` logger is ever installed (and tracing-subscriber's `tracing-log` feature is off):
//! ureq's protocol crate logs raw request and response bytes, `Authorization` headers
//! included, at `log` TRACE. The HTTP crates' own `tracing` targets are forced off whatever
//! `RUST_LOG` says: their directives are dropped from it, and this layer skips their events
//! and spans as well (a span directive such as `[mint]=trace` enables events of any target).

use std::fmt::Write as _;
use std::io::Write as _;
use std::str::FromStr as _;
use std::time::Instant;

use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Registry};

/// Targets that are never shown: they may carry headers or bodies. Each is a prefix, as in
/// `tracing-subscriber`'s filters: `hyper` covers `hyper_util`, `ureq` covers `ureq_proto`,
/// `rustls` covers `rustls_pki_types`.
const FORCED_OFF: [&str; 8] = [
    "ureq",
    "rustls",
    "hyper",
    "h2",
    "reqwest",
    "tokio_rustls",
    "webpki",
    "tower_http",
];

/// Whether `target` belongs to a crate that is never shown.
fn forced_off(target: &str) -> bool {
    FORCED_OFF.iter().any(|c| target.starts_with(c))
}

/// Installs the stderr subscriber (see the module docs for what it shows). With `json`, each
/// line is a JSON object (`{"retrying": {...}}`, `{"request": {...}}`, `{"span": {...}}`,
/// `{"log": {...}}`), so that stderr stays JSON lines around the `{"error": {...}}` object.
pub(crate) fn init(verbose: bool, json: bool) {
    let directives = directives(verbose, std::env::var("RUST_LOG").ok().as_deref());
    let filter = EnvFilter::builder().parse_lossy(directives);
    let subscriber = Registry::default().with(filter).with(Stderr { json });
    // Not `try_init`, which would also install a `log` bridge when that feature is on.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The filter directives: `RUST_LOG`'s (less any for a forced-off crate, and less its plain
/// `icr_app=LEVEL`), then `icr_app` at its level, then the forced-off crates.
fn directives(verbose: bool, rust_log: Option<&str>) -> String {
    let mut out = Vec::new();
    let (mut bare, mut ours) = (None, None);
    for d in rust_log.unwrap_or_default().split(',').map(str::trim) {
        let target = d.split(['[', '=']).next().unwrap_or_default();
        if d.is_empty() || forced_off(target) {
            continue;
        }
        match d.split_once('=') {
            Some(("icr_app", level)) if LevelFilter::from_str(level).is_ok() => {
                ours = LevelFilter::from_str(level).ok();
                continue;
            }
            None if d == "icr_app" => {
                ours = Some(LevelFilter::TRACE);
                continue;
            }
            None => bare = LevelFilter::from_str(d).ok().or(bare),
            Some(_) => {}
        }
        out.push(d.to_owned());
    }
    let default = if verbose { LevelFilter::DEBUG } else { LevelFilter::WARN };
    let mut level = ours.or(bare).unwrap_or(default);
    if verbose {
        level = level.max(LevelFilter::DEBUG);
    }
    out.push(format!("icr_app={}", level.to_string().to_ascii_lowercase()));
    out.extend(FORCED_OFF.iter().map(|c| format!("{c}=off")));
    out.join(",")
}

/// What a span holds until it closes: its fields, and when it opened.
struct SpanData {
    fields: Fields,
    opened: Instant,
}

/// Writes each event as one line on stderr.
struct Stderr {
    json: bool,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Stderr {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if forced_off(attrs.metadata().target()) {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanData {
                fields,
                opened: Instant::now(),
            });
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(data) = span.extensions_mut().get_mut::<SpanData>()
        {
            values.record(&mut data.fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(data) = span.extensions_mut().remove::<SpanData>() else {
            return;
        };
        let meta = span.metadata();
        let took_ms = data.opened.elapsed().as_secs_f64() * 1000.0;
        let line = if self.json {
            json!({ "span": {
                "level": meta.level().as_str(),
                "target": meta.target(),
                "name": meta.name(),
                "fields": data.fields.into_json(),
                "took_ms": (took_ms * 10.0).round() / 10.0,
            }})
            .to_string()
        } else {
            let fields = data
                .fields
                .others
                .iter()
                .map(|(name, value)| match as_text(value) {
                    // `scope=installation 5e0c…` would read as two fields.
                    text if text.contains(char::is_whitespace) => format!("{name}={text:?}"),
                    text => format!("{name}={text}"),
                })
                .collect::<Vec<_>>()
                .join(" ");
            format!(
                "{} {}: {}{{{fields}}} closed after {took_ms:.1} ms",
                meta.level(),
                meta.target(),
                meta.name()
            )
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if forced_off(meta.target()) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = std::mem::take(&mut fields.message);
        let line = match (meta.target(), message.as_str(), self.json) {
            // The command's own error says the same, last.
            ("icr_app", message, _) if message.starts_with("giving up") => return,
            ("icr_app", "retrying" | "request", true) => json!({ message: fields.into_json() }).to_string(),
            (target, message, true) => json!({ "log": {
                "level": meta.level().as_str(),
                "target": target,
                "message": message,
                "fields": fields.into_json(),
            }})
            .to_string(),
            ("icr_app", "retrying", false) => format!(
                "retrying: {} (attempt {} of {}); next try in {}",
                fields.text("cause").unwrap_or_else(|| "a failure".into()),
                fields.text("attempt").unwrap_or_else(|| "?".into()),
                fields.text("max_attempts").unwrap_or_else(|| "?".into()),
                fields
                    .get("wait_ms")
                    .and_then(Value::as_u64)
                    .map_or_else(|| "a moment".to_owned(), wait_text),
            ),
            ("icr_app", "request", false) => {
                let status = match fields.get("status").and_then(Value::as_u64) {
                    None | Some(0) => "no response".to_owned(),
                    Some(s) => s.to_string(),
                };
                let took = fields
                    .get("took_ms")
                    .and_then(Value::as_f64)
                    .map_or_else(String::new, |t| format!(" {t:.1} ms"));
                format!(
                    "> {} {} {status}{took}",
                    fields.text("method").unwrap_or_else(|| "?".into()),
                    fields.text("path").unwrap_or_else(|| "?".into())
                )
            }
            (target, message, false) => {
                let mut line = format!("{} {target}: {message}", meta.level());
                for (name, value) in &fields.others {
                    let _ = write!(line, " {name}={}", as_text(value));
                }
                line
            }
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// `1.5 s`, or `250 ms` under a second.
fn wait_text(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// A field's value as text: a string as it is, anything else as JSON.
fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An event's message and its other fields.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, Value)>,
}

impl Fields {
    fn get(&self, name: &str) -> Option<&Value> {
        self.others.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(as_text)
    }

    /// Sets a field; a span's field recorded again replaces the value it had.
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = as_text(&value);
        } else if let Some(slot) = self.others.iter_mut().find(|(n, _)| *n == field.name()) {
            slot.1 = value;
        } else {
            self.others.push((field.name(), value));
        }
    }

    /// The fields other than the message, as one JSON object.
    fn into_json(self) -> Value {
        Value::Object(self.others.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_cannot_turn_the_http_crates_on() {
        let d = directives(
            false,
            Some("trace,ureq_proto=trace,ureq::unversioned=trace,hyper_util=debug,rustls_pki_types=trace,tokio=debug"),
        );
        assert_eq!(
            d,
            "trace,tokio=debug,icr_app=trace,ureq=off,rustls=off,hyper=off,h2=off,reqwest=off,tokio_rustls=off,webpki=off,tower_http=off"
        );
        for target in ["ureq_proto", "hyper_util::client", "rustls", "h2::codec"] {
            assert!(forced_off(target), "{target}");
        }
        assert!(!forced_off("icr_app") && !forced_off("tokio"));
    }

    #[test]
    fn rust_log_sets_the_level_of_icr_app_and_v_keeps_it_at_debug_at_least() {
        let level = |verbose: bool, rust_log: Option<&str>| {
            let d = directives(verbose, rust_log);
            let ours: Vec<&str> = d.split(',').filter(|d| d.starts_with("icr_app")).collect();
            ours.join(",")
        };
        assert_eq!(level(false, None), "icr_app=warn");
        assert_eq!(level(true, None), "icr_app=debug");
        // A bare level applies to icr_app as to every other target.
        assert_eq!(level(false, Some("trace")), "icr_app=trace");
        assert_eq!(level(false, Some("debug")), "icr_app=debug");
        assert_eq!(level(false, Some("error")), "icr_app=error");
        assert_eq!(level(true, Some("info")), "icr_app=debug");
        assert_eq!(level(true, Some("trace")), "icr_app=trace");
        // icr_app's own directive outranks a bare level, wherever it stands.
        assert_eq!(level(false, Some("icr_app=info")), "icr_app=info");
        assert_eq!(level(false, Some("icr_app=info,trace")), "icr_app=info");
        assert_eq!(level(false, Some("icr_app")), "icr_app=trace");
        // Narrower directives are kept as they are.
        assert_eq!(
            level(false, Some("icr_app[mint]=trace")),
            "icr_app[mint]=trace,icr_app=warn"
        );
    }

    #[test]
    fn waits_read_naturally() {
        assert_eq!(wait_text(1500), "1.5 s");
        assert_eq!(wait_text(250), "250 ms");
    }
}
