//! What the CLI shows on stderr while it works: the clients' `tracing` events, rendered for
//! people.
//!
//! - target `icr_app`, WARN, "retrying" (fields `attempt`, `max_attempts`, `wait_ms`, `cause`):
//!   `retrying: <cause> (attempt 1 of 4); next try in 1.5 s`, shown by default;
//! - target `icr_app`, DEBUG, "request" (fields `method`, `path`, `status`, `took_ms`):
//!   `> GET /app/installations 200 3.1 ms`, shown with `-v`;
//! - target `icr_app`, WARN, "giving up ...": not shown, as the command's error says it;
//! - anything else `RUST_LOG` lets through: `LEVEL target: message field=value ...`.
//!
//! No `log` logger is ever installed (and tracing-subscriber's `tracing-log` feature is off):
//! ureq's protocol crate logs raw request and response bytes, `Authorization` headers
//! included, at `log` TRACE. The HTTP crates' own `tracing` targets are forced off whatever
//! `RUST_LOG` says.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::{EnvFilter, Registry};

/// Targets that are never shown: they may carry headers or bodies.
const FORCED_OFF: [&str; 6] = ["ureq", "ureq_proto", "rustls", "hyper", "h2", "reqwest"];

/// Installs the stderr subscriber: `icr_app=warn` (retries shown), `icr_app=debug` with `-v`;
/// `RUST_LOG`'s directives are added on top, then the HTTP crates are forced off. With `json`,
/// each line is a JSON object (`{"retrying": {...}}`, `{"request": {...}}`, `{"log": {...}}`),
/// so that stderr stays JSON lines around the `{"error": {...}}` object.
pub(crate) fn init(verbose: bool, json: bool) {
    let directives = directives(verbose, std::env::var("RUST_LOG").ok().as_deref());
    let filter = EnvFilter::builder().parse_lossy(directives);
    let subscriber = Registry::default().with(filter).with(Stderr { json });
    // Not `try_init`, which would also install a `log` bridge when that feature is on.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The filter directives: the default, `RUST_LOG`'s (less any for a forced-off crate), then
/// the forced-off crates.
fn directives(verbose: bool, rust_log: Option<&str>) -> String {
    let mut out = vec![if verbose { "icr_app=debug" } else { "icr_app=warn" }.to_owned()];
    for d in rust_log.unwrap_or_default().split(',').map(str::trim) {
        let target = d.split(['[', '=']).next().unwrap_or_default();
        let forced = FORCED_OFF
            .iter()
            .any(|c| target == *c || target.strip_prefix(c).is_some_and(|rest| rest.starts_with("::")));
        if !d.is_empty() && !forced {
            out.push(d.to_owned());
        }
    }
    out.extend(FORCED_OFF.iter().map(|c| format!("{c}=off")));
    out.join(",")
}

/// Writes each event as one line on stderr.
struct Stderr {
    json: bool,
}

impl<S: Subscriber> Layer<S> for Stderr {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let line = match (meta.target(), fields.message.as_str(), self.json) {
            // The command's own error says the same, last.
            ("icr_app", message, _) if message.starts_with("giving up") => return,
            ("icr_app", "retrying" | "request", true) => {
                json!({ fields.message.as_str(): Value::Object(fields.others.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()) })
                    .to_string()
            }
            (target, _, true) => json!({ "log": {
                "level": meta.level().as_str(),
                "target": target,
                "message": fields.message,
                "fields": Value::Object(fields.others.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
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

    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = as_text(&value);
        } else {
            self.others.push((field.name(), value));
        }
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
            Some("trace,ureq_proto=trace,ureq::unversioned=trace,hyper_util=debug"),
        );
        assert_eq!(
            d,
            "icr_app=warn,trace,hyper_util=debug,ureq=off,ureq_proto=off,rustls=off,hyper=off,h2=off,reqwest=off"
        );
        assert!(directives(true, None).starts_with("icr_app=debug,ureq=off"));
    }

    #[test]
    fn waits_read_naturally() {
        assert_eq!(wait_text(1500), "1.5 s");
        assert_eq!(wait_text(250), "250 ms");
    }
}
