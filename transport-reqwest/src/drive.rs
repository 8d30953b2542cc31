//! The async client's one driving loop: it performs what each operation asks (send, run a
//! store command, sleep, wait) and reports back; every decision is the core's.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use icr_app_core::{App, Error, Operation, Step, Timestamp};
use tokio::sync::watch;

use crate::client::Client;

/// The wall clock, in milliseconds. On Linux it is read at the kernel tick's resolution
/// (`CLOCK_REALTIME_COARSE`, 1 to 4 ms): about 5 ns instead of 25 to 45 ns for the precise
/// clock on the guests measured, which is a third of a cached hit, and plenty for tokens that
/// live for minutes and `Date` headers that count whole seconds. Elsewhere, `SystemTime::now`.
pub(crate) fn now() -> Timestamp {
    #[cfg(target_os = "linux")]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        Timestamp::from_unix_millis(t.tv_sec.saturating_mul(1000).saturating_add(t.tv_nsec / 1_000_000))
    }
    #[cfg(not(target_os = "linux"))]
    Timestamp::from_system_time(std::time::SystemTime::now())
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
            self.client.announce();
        }
    }
}

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
        let mut run = Running {
            client: self,
            op,
            done: false,
        };
        match self.poll(&mut run) {
            (Step::Done(result), _) => {
                run.done = true;
                Driven(Inner::Ready(Some(result)))
            }
            first => Driven(Inner::Looping(Box::pin(self.run(run, first)))),
        }
    }

    /// Polls under the lock; for a `Wait`, also a subscription to changes taken under that
    /// lock, so a change reported after this poll is never missed.
    fn poll<O: Operation>(&self, run: &mut Running<'_, O>) -> Polled<O::Output> {
        self.poll_locked(&mut self.lock(), run)
    }

    fn poll_locked<O: Operation>(&self, app: &mut App, run: &mut Running<'_, O>) -> Polled<O::Output> {
        let step = run.op.poll(app, now());
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
        mut run: Running<'_, O>,
        mut next: Polled<O::Output>,
    ) -> Result<O::Output, Error> {
        loop {
            match next {
                (Step::Done(result), _) => {
                    run.done = true;
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
                    let reply = match &self.inner.store {
                        Some(store) => store.run(&command).await,
                        None => Err(Error::config("shared token store", "none is attached to this client")),
                    };
                    next = {
                        let mut app = self.lock();
                        run.op.handle_store(&mut app, id, reply, now());
                        self.poll_locked(&mut app, &mut run)
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
                        match sent {
                            Ok(response) => run.op.handle_response(&mut app, id, response, now()),
                            Err(error) => run.op.handle_failure(&mut app, id, error, now()),
                        }
                        self.poll_locked(&mut app, &mut run)
                    };
                    self.announce();
                    continue;
                }
            }
            next = self.poll(&mut run);
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
    use std::time::SystemTime;

    use icr_app_core::Timestamp;

    /// The coarse clock is the wall clock as of its last tick: never ahead of the precise one,
    /// and behind it by a tick at most (a generous bound here, for a loaded machine).
    #[test]
    fn now_is_the_wall_clock() {
        let precise = || Timestamp::from_system_time(SystemTime::now()).unix_millis();
        let (before, now, after) = (precise(), super::now().unix_millis(), precise());
        assert!(now <= after, "{now} is ahead of {after}");
        assert!(now >= before - 100, "{now} lags {before} by more than 100 ms");
    }
}
