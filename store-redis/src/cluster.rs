//! Redis Cluster (`redis+cluster://`, `rediss+cluster://`): the redis crate's own cluster
//! clients, blocking and async, which follow `MOVED` and `ASK`, learn the slots again after a
//! failover, and route `SCRIPT LOAD` to every primary.
//!
//! Every key a store command touches carries its scope's hash tag (see `icr_app_core`'s store
//! docs), so a script's entry and lease sit in one slot. Unlike the one-server path, replies
//! are read by the crate's own connections: a call is bounded by the timeout on connecting and
//! on each read and write (and, on the async path, by the caller's timer as a whole), but a
//! reply is not capped in size.

use std::sync::OnceLock;
#[cfg(feature = "tokio")]
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{RedisResult, TlsCertificates};

/// A cluster's seed nodes, its client (made on first use, with the store's settings), and the
/// connections kept between calls.
pub(crate) struct Cluster {
    nodes: Vec<String>,
    client: OnceLock<RedisResult<ClusterClient>>,
    pub(crate) blocking: crate::pool::Pool<ClusterConnection>,
    #[cfg(feature = "tokio")]
    nonblocking: Mutex<Option<redis::cluster_async::ClusterConnection>>,
}

impl Cluster {
    pub(crate) fn new(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            client: OnceLock::new(),
            blocking: crate::pool::Pool::default(),
            #[cfg(feature = "tokio")]
            nonblocking: Mutex::new(None),
        }
    }

    /// The same seed nodes, with nothing made yet (after a setting changed).
    pub(crate) fn fresh(&self) -> Self {
        Self::new(self.nodes.clone())
    }

    /// The cluster client: `timeout` to connect and for each read and write, few retries (the
    /// core gives the store up for a while on failure: better to fail fast than to wait), and
    /// `roots` (PEM) as the only CA for `rediss+cluster://` when given.
    pub(crate) fn client(&self, timeout: Duration, roots: Option<&[u8]>) -> RedisResult<&ClusterClient> {
        self.client
            .get_or_init(|| {
                let mut builder = ClusterClient::builder(self.nodes.iter().map(String::as_str))
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .min_retry_wait(5)
                    .max_retry_wait(50);
                if let Some(roots) = roots {
                    builder = builder.certs(TlsCertificates {
                        client_tls: None,
                        root_cert: Some(roots.to_vec()),
                    });
                }
                builder.build()
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The async connection kept, if any.
    #[cfg(feature = "tokio")]
    pub(crate) fn async_connection(&self) -> Option<redis::cluster_async::ClusterConnection> {
        self.nonblocking.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Keeps `connection` (or, with `None`, drops the one kept: the next call connects anew).
    #[cfg(feature = "tokio")]
    pub(crate) fn keep_async(&self, connection: Option<redis::cluster_async::ClusterConnection>) {
        *self.nonblocking.lock().unwrap_or_else(PoisonError::into_inner) = connection;
    }
}
