//! Idle connections kept between calls, both paths alike.
//!
//! A call takes an idle connection (or opens one), uses it alone, without any lock held, and
//! hands it back only if everything went well: a connection that failed in any way is dropped
//! (a reply may be half read), and an I/O failure empties the pool (the others are most likely
//! broken too). So one connection never carries more than one call's command at a time, and
//! concurrent callers never wait on each other's I/O.

use std::sync::{Mutex, PoisonError};

/// Idle connections kept at most; more are closed when handed back.
const MAX_IDLE: usize = 8;

/// The idle connections of one path.
pub(crate) struct Pool<C> {
    idle: Mutex<Vec<C>>,
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
        }
    }
}

impl<C> Pool<C> {
    /// An idle connection, the most recently used.
    pub(crate) fn take(&self) -> Option<C> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    /// Keeps `connection` for the next call (or closes it when enough are kept).
    pub(crate) fn give(&self, connection: C) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(connection);
        }
    }

    /// Closes every idle connection (outside the lock).
    pub(crate) fn clear(&self) {
        let dropped = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        drop(dropped);
    }
}
