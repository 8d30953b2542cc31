//! The blocking client's one driving loop: it performs what each operation asks (send, run a
//! store command, sleep, wait) and reports back; every decision is the core's.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use icr_app_core::{Error, Operation, Step};
use icr_app_driver::{Running, now, report_sent, run_signer, run_store};

use crate::client::Client;

impl Client {
    /// Wakes the drivers waiting for a change, if any. The count is changed only under the
    /// app's lock, and every report is made under it before this is called, so a driver that
    /// is about to wait has either been counted or polls after the report.
    fn changed(&self) {
        if self.inner.waiting.load(Ordering::Relaxed) > 0 {
            self.inner.changed.notify_all();
        }
    }

    /// Drives `op` to completion: the one loop of this client.
    pub fn drive<O: Operation>(&self, op: O) -> Result<O::Output, Error> {
        // Abandons the operation on every way out but `Done` (a panic included).
        let mut run = Running::new(op, |op: &mut O| {
            op.abandon(&mut self.lock(), now());
            self.changed();
        });
        let mut app = self.lock();
        loop {
            let seen = app.changes();
            let step = run.op().poll(&mut app, now());
            if app.changes() != seen {
                // This poll ended something others wait for (a mint that failed in it, say).
                self.changed();
            }
            match step {
                Step::Done(result) => {
                    run.done();
                    return result;
                }
                Step::Sleep { until } => {
                    drop(app);
                    std::thread::sleep(until.saturating_since(now()));
                    app = self.lock();
                }
                Step::Wait { until, .. } => {
                    let timeout = until.saturating_since(now()).max(Duration::from_millis(1));
                    self.inner.waiting.fetch_add(1, Ordering::Relaxed);
                    app = self
                        .inner
                        .changed
                        .wait_timeout(app, timeout)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
                }
                Step::Store { id, command } => {
                    drop(app);
                    let reply = run_store(self.inner.store.as_deref(), &command);
                    app = self.lock();
                    run.op().handle_store(&mut app, id, reply, now());
                    self.changed();
                }
                Step::Send { id, request } => {
                    drop(app);
                    let sent = self.inner.transport.send(request);
                    app = self.lock();
                    report_sent(run.op(), &mut app, id, sent, now());
                    self.changed();
                }
                Step::Sign { id, message } => {
                    drop(app);
                    let signature = run_signer(self.inner.signer.as_ref(), &message);
                    app = self.lock();
                    run.op().handle_signature(&mut app, id, signature, now());
                    self.changed();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use icr_app_core::{App, Error};

    use crate::Client;

    /// An App built without its key asks its driver to sign; this client has no signer, so the
    /// operation fails with a signing error that says so, instead of waiting for a signature.
    #[test]
    fn a_sign_step_without_a_signer_fails_the_operation() {
        let client = Client::new(App::builder_without_key("67890").build().unwrap());
        let error = client.app_token().unwrap_err();
        assert!(matches!(error, Error::Signing(_)), "{error:?}");
        assert!(error.to_string().contains("App::builder"), "{error}");
    }
}
