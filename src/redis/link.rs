//! The connection of a `RedisCache`: one multiplexed connection, replaced when it goes silent.
//!
//! `ConnectionManager` reconnects when its connection fails, but a connection that stays open
//! and stops answering (a hung server behind a load balancer, a failover, a dropped NAT entry)
//! never fails: every request just times out. So after [`SILENT_LIMIT`] consecutive timeouts
//! the link is replaced by a new one, which connects on its next request; requests already
//! sent on the old one finish or time out on their own. TCP keepalive and a user timeout (set by
//! the builder) catch a dead peer the kernel can see.

use crate::error::{Error, Result};
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Consecutive timeouts after which the connection is replaced.
pub(crate) const SILENT_LIMIT: u64 = 3;

pub(crate) struct Link {
    client: redis::Client,
    config: ConnectionManagerConfig,
    conn: Mutex<ConnectionManager>,
    /// Requests that timed out since the last one answered.
    silent: AtomicU64,
}

impl Link {
    /// A link that connects on its first request.
    pub(crate) fn new(client: redis::Client, config: ConnectionManagerConfig) -> Result<Self> {
        let conn = connect_lazily(&client, &config)?;
        Ok(Self {
            client,
            config,
            conn: Mutex::new(conn),
            silent: AtomicU64::new(0),
        })
    }

    /// The connection to send a request on (a cheap handle).
    pub(crate) fn connection(&self) -> ConnectionManager {
        lock(&self.conn).clone()
    }

    /// The client, for the dedicated connections a subscription needs.
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A request was answered (even with an error): the connection is alive.
    pub(crate) fn answered(&self) {
        if self.silent.load(Ordering::Relaxed) != 0 {
            self.silent.store(0, Ordering::Relaxed);
        }
    }

    /// A request timed out; returns true when this made the connection be replaced.
    pub(crate) fn timed_out(&self) -> bool {
        if self.silent.fetch_add(1, Ordering::Relaxed) + 1 != SILENT_LIMIT {
            return false;
        }
        match connect_lazily(&self.client, &self.config) {
            Ok(fresh) => {
                *lock(&self.conn) = fresh;
                self.silent.store(0, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot replace the silent Redis connection");
                false
            }
        }
    }
}

fn connect_lazily(
    client: &redis::Client,
    config: &ConnectionManagerConfig,
) -> Result<ConnectionManager> {
    ConnectionManager::new_lazy_with_config(client.clone(), config.clone()).map_err(|e| {
        Error::invalid_config(format!("cannot set up the Redis connection: {e}")).with_source(e)
    })
}
