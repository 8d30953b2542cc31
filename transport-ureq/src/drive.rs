//! The blocking client's one driving loop: it performs what each operation asks (send, run a
//! store command, sleep, wait) and reports back; every decision is the core's.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use icr_app_core::{Error, Operation, Step, Timestamp};

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

/// Abandons the operation on every way out of [`Client::drive`] but `Done` (a panic included).
struct Running<'a, O: Operation> {
    client: &'a Client,
    op: O,
    done: bool,
}

impl<O: Operation> Drop for Running<'_, O> {
    fn drop(&mut self) {
        if !self.done {
            self.op.abandon(&mut self.client.lock(), now());
            self.client.changed();
        }
    }
}

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
        let mut run = Running {
            client: self,
            op,
            done: false,
        };
        let mut app = self.lock();
        loop {
            match run.op.poll(&mut app, now()) {
                Step::Done(result) => {
                    run.done = true;
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
                    let reply = match &self.inner.store {
                        Some(store) => store.run(&command),
                        None => Err(Error::config("shared token store", "none is attached to this client")),
                    };
                    app = self.lock();
                    run.op.handle_store(&mut app, id, reply, now());
                    self.changed();
                }
                Step::Send { id, request } => {
                    drop(app);
                    let sent = self.inner.transport.send(request);
                    app = self.lock();
                    match sent {
                        Ok(response) => run.op.handle_response(&mut app, id, response, now()),
                        Err(error) => run.op.handle_failure(&mut app, id, error, now()),
                    }
                    self.changed();
                }
            }
        }
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
