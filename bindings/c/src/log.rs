//! The log sink of a blocking client: a `tracing` subscriber of the clients' own events (target
//! `icr_app`), made current on the calling thread only around the calls of a client given a
//! sink (`tracing::dispatcher::with_default`), so no global logger is installed, and clients
//! with different sinks (or none) do not see each other's records.
//!
//! Only the `icr_app` targets are let through: the HTTP crates' own events may carry headers.
//! The clients' events never hold a key, a token, a JWT or a header.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::options::{CLog, icr_log_level};

/// Hands each `icr_app` event at DEBUG and above to the caller's sink as one line.
pub(crate) struct SinkSubscriber(pub(crate) CLog);

fn wanted(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    (target == "icr_app" || target.starts_with("icr_app::") || target.starts_with("icr_app_"))
        && *metadata.level() <= Level::DEBUG
}

impl Subscriber for SinkSubscriber {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if wanted(metadata) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // Spans are not shown (their events are), but entering them costs nothing.
        wanted(metadata)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        if !wanted(metadata) {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        let level = match *metadata.level() {
            Level::ERROR => icr_log_level::Error,
            Level::WARN => icr_log_level::Warn,
            Level::INFO => icr_log_level::Info,
            Level::DEBUG => icr_log_level::Debug,
            _ => icr_log_level::Trace,
        };
        self.0.emit(level, &(line.message + &line.fields));
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event as one line: its message, then ` name=value` for each field.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}
