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
    ///
    /// The first poll happens before the loop's future exists: a cache hit costs a lock and a
    /// lookup, and the loop (whose state holds an HTTP exchange) is boxed only when needed.
    pub async fn drive<O: Operation>(&self, op: O) -> Result<O::Output, Error> {
        let mut run = Running {
            client: self,
            op,
            done: false,
        };
        match self.poll(&mut run) {
            (Step::Done(result), _) => {
                run.done = true;
                result
            }
            first => Box::pin(self.run(run, first)).await,
        }
    }

    /// Polls under the lock; for a `Wait`, also the change counter read under that lock, so a
    /// change reported after this poll is never missed.
    fn poll<O: Operation>(&self, run: &mut Running<'_, O>) -> (Step<O::Output>, Option<u64>) {
        let mut app = self.lock();
        let step = run.op.poll(&mut app, now());
        let seen = matches!(step, Step::Wait { .. }).then(|| *self.inner.changed.borrow());
        (step, seen)
    }

    async fn run<O: Operation>(
        &self,
        mut run: Running<'_, O>,
        mut next: (Step<O::Output>, Option<u64>),
    ) -> Result<O::Output, Error> {
        loop {
            match next {
                (Step::Done(result), _) => {
                    run.done = true;
                    return result;
                }
                (Step::Sleep { until }, _) => tokio::time::sleep(until.saturating_since(now())).await,
                (Step::Wait { until }, seen) => {
                    let mut changed = self.inner.changed.subscribe();
                    if Some(*changed.borrow_and_update()) == seen {
                        let timeout = until.saturating_since(now()).max(Duration::from_millis(1));
                        let _ = tokio::time::timeout(timeout, changed.changed()).await;
                    }
                }
                (Step::Send { id, request }, _) => {
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
            next = self.poll(&mut run);
        }
    }
}
