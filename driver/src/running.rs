//! [`Running`]: the guard that abandons an operation on every way out of a driver's loop.

/// An operation being driven, abandoned on every way out of the driver's loop but `Done`: an
/// error of the driver's own, a panic, or (in an async driver) the future being dropped at an
/// `.await`. Then the core releases at once what the operation holds (a scope's mint, a lease),
/// so the operations waiting on it go on.
///
/// `abandon` is the driver's part, run from `Drop` unless [`done`](Self::done) was called: lock
/// the app, call [`Operation::abandon`](icr_app_core::Operation::abandon) with the time, and wake
/// the operations waiting for a change.
///
/// ```
/// use std::sync::Mutex;
///
/// use icr_app_core::{App, AppKey, Error, Operation, RevokeAll, Step};
/// use icr_app_driver::{Running, now};
///
/// fn drive<O: Operation>(app: &Mutex<App>, op: O) -> Result<O::Output, Error> {
///     let mut run = Running::new(op, |op: &mut O| op.abandon(&mut app.lock().unwrap(), now()));
///     loop {
///         let step = run.op().poll(&mut app.lock().unwrap(), now());
///         match step {
///             Step::Done(result) => {
///                 run.done();
///                 return result;
///             }
///             // Send, Store, Sleep, Wait: perform it and report back (see the core's docs).
///             // Returning early here, or panicking, abandons the operation.
///             _ => return Err(Error::config("this example", "it only drives operations that need no I/O")),
///         }
///     }
/// }
/// # let key = AppKey::from_pem(icr_app_testkit::DEMO_PRIVATE_KEY_PEM)?;
/// let app = Mutex::new(App::builder("67890", key).build()?);
/// assert_eq!(drive(&app, RevokeAll::new())?, 0); // nothing cached, nothing to revoke
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping it abandons the operation at once"]
pub struct Running<O, A: FnOnce(&mut O)> {
    op: O,
    /// `None` once the operation is done.
    abandon: Option<A>,
}

impl<O, A: FnOnce(&mut O)> Running<O, A> {
    /// Guards `op`: `abandon` runs on it when the guard is dropped before [`done`](Self::done).
    pub fn new(op: O, abandon: A) -> Self {
        Self {
            op,
            abandon: Some(abandon),
        }
    }

    /// The operation, to poll and to report to.
    pub fn op(&mut self) -> &mut O {
        &mut self.op
    }

    /// The operation returned `Done`: there is nothing left to abandon.
    pub fn done(&mut self) {
        self.abandon = None;
    }
}

impl<O, A: FnOnce(&mut O)> Drop for Running<O, A> {
    fn drop(&mut self) {
        if let Some(abandon) = self.abandon.take() {
            abandon(&mut self.op);
        }
    }
}

impl<O: std::fmt::Debug, A: FnOnce(&mut O)> std::fmt::Debug for Running<O, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("op", &self.op)
            .field("done", &self.abandon.is_none())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::Running;

    #[test]
    fn abandons_on_every_way_out_but_done() {
        let abandoned = Cell::new(0);
        drop(Running::new((), |_: &mut ()| abandoned.set(abandoned.get() + 1)));
        assert_eq!(abandoned.get(), 1);

        let mut run = Running::new((), |_: &mut ()| abandoned.set(abandoned.get() + 1));
        run.done();
        drop(run);
        assert_eq!(abandoned.get(), 1);

        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _run = Running::new((), |_: &mut ()| abandoned.set(abandoned.get() + 1));
            panic!("the driver failed");
        }));
        assert!(panicked.is_err());
        assert_eq!(abandoned.get(), 2);
    }
}
