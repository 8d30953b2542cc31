//! The async client's one driving loop: it performs what each operation asks (send, run a
//! store command, sleep, wait) and reports back; every decision is the core's.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use icr_app_core::{App, Error, Operation, Step};
use icr_app_driver::{Running, now, report_sent, run_async_signer, run_async_store};
use tokio::sync::watch;

use crate::client::Client;

impl Client {
    /// Drives `op` to completion: the one loop of this client.
    ///
    /// The operation is polled once right away, so a cache hit is answered by a ready future
    /// (a lock and a lookup); the loop, whose state holds an HTTP exchange, is boxed and runs
    /// when the returned future is awaited. Dropping that future abandons the operation.
    pub fn drive<'a, O>(&'a self, op: O) -> Driven<'a, O::Output>
    where
        O: Operation + Send + 'a,
        O::Output: Send,
    {
        // Abandons the operation on every way out but `Done`: an error, a panic, or the future
        // being dropped at an `.await`.
        let mut run = Running::new(op, |op: &mut O| {
            op.abandon(&mut self.lock(), now());
            self.announce();
        });
        match self.poll(run.op()) {
            (Step::Done(result), _) => {
                run.done();
                Driven(Inner::Ready(Some(result)))
            }
            first => Driven(Inner::Looping(Box::pin(self.run(run, first)))),
        }
    }

    /// Polls under the lock; for a `Wait`, also a subscription to changes taken under that
    /// lock, so a change reported after this poll is never missed.
    fn poll<O: Operation>(&self, op: &mut O) -> Polled<O::Output> {
        self.poll_locked(&mut self.lock(), op)
    }

    fn poll_locked<O: Operation>(&self, app: &mut App, op: &mut O) -> Polled<O::Output> {
        let seen = app.changes();
        let step = op.poll(app, now());
        if app.changes() != seen {
            // This poll ended something others wait for (a mint that failed in it, say).
            self.announce();
        }
        let changes = matches!(step, Step::Wait { .. }).then(|| self.inner.changed.subscribe());
        (step, changes)
    }

    /// Tells the waiting operations that an operation reported back or was abandoned, after the
    /// app's lock is released. With no one subscribed nobody is told: a waiter subscribes under
    /// the lock it polled under, so it either polled after this change (and saw it) or is
    /// counted here.
    pub(crate) fn announce(&self) {
        if self.inner.changed.receiver_count() > 0 {
            self.inner.changed.send_modify(|g| *g += 1);
        }
    }

    async fn run<O: Operation>(
        &self,
        mut run: Running<O, impl FnOnce(&mut O)>,
        mut next: Polled<O::Output>,
    ) -> Result<O::Output, Error> {
        loop {
            match next {
                (Step::Done(result), _) => {
                    run.done();
                    return result;
                }
                (Step::Sleep { until }, _) => tokio::time::sleep(until.saturating_since(now())).await,
                (Step::Wait { until, .. }, changes) => {
                    if let Some(mut changes) = changes {
                        let timeout = until.saturating_since(now()).max(Duration::from_millis(1));
                        let _ = tokio::time::timeout(timeout, changes.changed()).await;
                    }
                }
                (Step::Store { id, command }, _) => {
                    let reply = run_async_store(self.inner.store.as_deref(), &command).await;
                    next = {
                        let mut app = self.lock();
                        run.op().handle_store(&mut app, id, reply, now());
                        self.poll_locked(&mut app, run.op())
                    };
                    self.announce();
                    continue;
                }
                (Step::Send { id, request }, _) => {
                    let sent = self.inner.transport.send(request).await;
                    // Reported and polled again under one lock, as the blocking client does: no
                    // other operation runs between an answer and what it leads to.
                    next = {
                        let mut app = self.lock();
                        report_sent(run.op(), &mut app, id, sent, now());
                        self.poll_locked(&mut app, run.op())
                    };
                    self.announce();
                    continue;
                }
                (Step::Sign { id, message }, _) => {
                    let signature = run_async_signer(self.inner.signer.as_ref(), &message).await;
                    next = {
                        let mut app = self.lock();
                        run.op().handle_signature(&mut app, id, signature, now());
                        self.poll_locked(&mut app, run.op())
                    };
                    self.announce();
                    continue;
                }
            }
            next = self.poll(run.op());
        }
    }
}

/// A step, and for a `Wait` the subscription to changes taken with it.
type Polled<T> = (Step<T>, Option<watch::Receiver<u64>>);

/// The future of [`Client::drive`]: ready at once on a cache hit, else the driving loop.
#[must_use = "futures do nothing unless awaited; dropping it abandons the operation"]
pub struct Driven<'a, T>(Inner<'a, T>);

enum Inner<'a, T> {
    Ready(Option<Result<T, Error>>),
    Looping(Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>),
}

impl<T> Driven<'_, T> {
    pub(crate) fn ready(value: T) -> Self {
        Driven(Inner::Ready(Some(Ok(value))))
    }
}

// Nothing in it is pinned structurally: the loop is behind its own `Pin<Box<..>>`, and the ready
// result is moved out, never pinned.
impl<T> Unpin for Driven<'_, T> {}

impl<T> Future for Driven<'_, T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Inner::Ready(result) => match result.take() {
                Some(result) => Poll::Ready(result),
                None => Poll::Ready(Err(Error::transport(
                    icr_app_core::TransportErrorKind::Other,
                    "the operation's future was polled after it completed",
                ))),
            },
            Inner::Looping(looping) => looping.as_mut().poll(cx),
        }
    }
}

impl<T> std::fmt::Debug for Driven<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Inner::Ready(_) => "Driven(ready)",
            Inner::Looping(_) => "Driven(looping)",
        })
    }
}

#[cfg(test)]
mod tests {
    use icr_app_core::{App, Error};

    use crate::Client;

    /// An App built without its key asks its driver to sign; this client has no signer, so the
    /// operation fails with a signing error that says so, instead of waiting for a signature.
    #[tokio::test(flavor = "current_thread")]
    async fn a_sign_step_without_a_signer_fails_the_operation() {
        let client = Client::new(App::builder_without_key("67890").build().unwrap()).unwrap();
        let error = client.app_token().await.unwrap_err();
        assert!(matches!(error, Error::Signing(_)), "{error:?}");
        assert!(error.to_string().contains("App::builder"), "{error}");
    }
}
