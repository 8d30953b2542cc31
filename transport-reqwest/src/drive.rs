//! The async client's one driving loop: it performs what each operation asks (send, sleep,
//! wait) and reports back; every decision is the core's.

use std::time::{Duration, SystemTime};

use icr_app_core::{Error, Operation, Step, Timestamp};

use crate::client::Client;

pub(crate) fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Abandons the operation on every way out of [`Client::drive`] (a no-op once it is done): an
/// error, a panic, or the future being dropped at an `.await`.
struct Running<'a, O: Operation> {
    client: &'a Client,
    op: O,
    done: bool,
}

impl<O: Operation> Drop for Running<'_, O> {
    fn drop(&mut self) {
        if !self.done {
            self.op.abandon(&mut self.client.lock(), now());
            self.client.inner.changed.send_modify(|g| *g += 1);
        }
    }
}

impl Client {
    /// Drives `op` to completion: the one loop of this client.
    pub async fn drive<O: Operation>(&self, op: O) -> Result<O::Output, Error> {
        let mut run = Running {
            client: self,
            op,
            done: false,
        };
        loop {
            let (step, seen) = {
                let mut app = self.lock();
                let step = run.op.poll(&mut app, now());
                // Read under the lock: a change reported after this poll is never missed.
                let seen = matches!(step, Step::Wait { .. }).then(|| *self.inner.changed.borrow());
                (step, seen)
            };
            match step {
                Step::Done(result) => {
                    run.done = true;
                    return result;
                }
                Step::Sleep { until } => tokio::time::sleep(until.saturating_since(now())).await,
                Step::Wait { until } => {
                    let mut changed = self.inner.changed.subscribe();
                    if Some(*changed.borrow_and_update()) == seen {
                        let timeout = until.saturating_since(now()).max(Duration::from_millis(1));
                        let _ = tokio::time::timeout(timeout, changed.changed()).await;
                    }
                }
                Step::Send { id, request } => {
                    let sent = self.inner.transport.send(request).await;
                    {
                        let mut app = self.lock();
                        match sent {
                            Ok(response) => run.op.handle_response(&mut app, id, response, now()),
                            Err(error) => run.op.handle_failure(&mut app, id, error, now()),
                        }
                    }
                    self.inner.changed.send_modify(|g| *g += 1);
                }
            }
        }
    }
}
