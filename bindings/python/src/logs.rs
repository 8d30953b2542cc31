//! The core's log records (target `icr_app`, e.g. a mint being retried) reach Python's
//! `logging.getLogger("icr_app")`.
//!
//! The core logs through `tracing`; with tracing's `log` feature and no tracing subscriber, its
//! events become `log` records, which this module's logger buffers per thread. They are handed to
//! Python by [`flush`] once the core's mutex is released, so that the mutex is never held while
//! Python code (a logging handler) runs.

use std::cell::RefCell;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

struct Record {
    level: u8,
    message: String,
}

thread_local! {
    static BUFFER: RefCell<Vec<Record>> = const { RefCell::new(Vec::new()) };
}

struct Buffering;

impl log::Log for Buffering {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("icr_app")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Python's levels: DEBUG 10, INFO 20, WARNING 30, ERROR 40.
        let level = match record.level() {
            log::Level::Error => 40,
            log::Level::Warn => 30,
            log::Level::Info => 20,
            log::Level::Debug | log::Level::Trace => 10,
        };
        let message = record.args().to_string();
        BUFFER.with(|b| b.borrow_mut().push(Record { level, message }));
    }

    fn flush(&self) {}
}

/// Installs the buffering logger (once; another `log` logger already installed in the process
/// wins, and then the core's records go there).
pub(crate) fn install() {
    if log::set_logger(&Buffering).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}

/// Drops what this thread buffered (the child of a fork starts clean).
pub(crate) fn clear() {
    BUFFER.with(|b| b.borrow_mut().clear());
}

static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Hands this thread's buffered records to `logging.getLogger("icr_app")`. Call with the core's
/// mutex released.
pub(crate) fn flush(py: Python<'_>) {
    let records = BUFFER.with(|b| {
        let mut b = b.borrow_mut();
        if b.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut *b))
        }
    });
    let Some(records) = records else { return };
    let logger = LOGGER.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("logging")?.call_method1("getLogger", ("icr_app",))?.unbind())
    });
    let Ok(logger) = logger else { return };
    for record in records {
        // A failing handler must not turn a token into an exception.
        let _ = logger.call_method1(py, "log", (record.level, "%s", record.message));
    }
}
