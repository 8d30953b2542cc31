//! The background refresher of the async client.

use icr_app_core::Refresher;

use crate::client::Client;

impl Client {
    /// Starts a task (on the current tokio runtime) that renews cached tokens ahead of expiry
    /// (the core's [`Refresher`]), so callers are served from the cache and never wait for a
    /// refresh. It stops when the returned handle is dropped.
    pub fn spawn_refresher(&self) -> RefresherHandle {
        self.lock().set_background_refresh(true);
        let client = self.clone();
        let task = tokio::spawn(async move {
            let _ = client.drive(Refresher::new()).await;
        });
        RefresherHandle {
            task,
            client: self.clone(),
        }
    }
}

/// Stops the background refresher when dropped (or with [`stop`](Self::stop)).
#[derive(Debug)]
pub struct RefresherHandle {
    task: tokio::task::JoinHandle<()>,
    client: Client,
}

impl RefresherHandle {
    /// Stops the refresher; callers go back to refreshing inline.
    pub fn stop(self) {}
}

impl Drop for RefresherHandle {
    fn drop(&mut self) {
        self.task.abort();
        self.client.lock().set_background_refresh(false);
    }
}
