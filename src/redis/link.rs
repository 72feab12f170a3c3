//! The connection of a `RedisCache`: one multiplexed connection, replaced when it goes silent.
//!
//! `ConnectionManager` reconnects when its connection fails, but a connection that stays open
//! and stops answering (a hung server behind a load balancer, a failover, a dropped NAT entry)
//! never fails: every request just times out. So after [`SILENT_LIMIT`] consecutive timeouts
//! the link is replaced by a new one, which connects on its next request; requests already
//! sent on the old one finish or time out on their own. TCP keepalive and a user timeout (set by
//! the builder) catch a dead peer the kernel can see.
//!
//! Each connection has a generation, and a request reports its outcome against the generation
//! it was sent on: a burst that timed out together on a silent connection replaces it once,
//! and its late timeouts say nothing of the new one.

use crate::error::{Error, Result};
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Consecutive timeouts after which the connection is replaced.
pub(crate) const SILENT_LIMIT: u64 = 3;

pub(crate) struct Link {
    client: redis::Client,
    config: ConnectionManagerConfig,
    current: Mutex<Current>,
    /// A copy of `current.silent` that lets an answered request skip the lock while nothing
    /// timed out (the common case). Only a hint: decisions are made under the lock.
    any_silent: AtomicU64,
}

struct Current {
    conn: ConnectionManager,
    generation: u64,
    /// Requests on this connection that timed out since the last one answered.
    silent: u64,
}

/// A connection handle and the generation it belongs to.
pub(crate) struct Leased {
    pub(crate) conn: ConnectionManager,
    pub(crate) generation: u64,
}

impl Link {
    /// A link that connects on its first request.
    pub(crate) fn new(client: redis::Client, config: ConnectionManagerConfig) -> Result<Self> {
        let conn = connect_lazily(&client, &config)?;
        Ok(Self {
            client,
            config,
            current: Mutex::new(Current {
                conn,
                generation: 0,
                silent: 0,
            }),
            any_silent: AtomicU64::new(0),
        })
    }

    /// The connection to send a request on (a cheap handle), with its generation.
    pub(crate) fn lease(&self) -> Leased {
        let current = lock(&self.current);
        Leased {
            conn: current.conn.clone(),
            generation: current.generation,
        }
    }

    /// The client, for the dedicated connections a subscription needs.
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A request sent on `generation` was answered (even with an error): that connection is
    /// alive.
    pub(crate) fn answered(&self, generation: u64) {
        if self.any_silent.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut current = lock(&self.current);
        if current.generation == generation {
            current.silent = 0;
            self.any_silent.store(0, Ordering::Relaxed);
        }
    }

    /// A request sent on `generation` timed out; returns true when this made the connection be
    /// replaced. Timeouts of a connection already replaced count for nothing.
    pub(crate) fn timed_out(&self, generation: u64) -> bool {
        let mut current = lock(&self.current);
        if current.generation != generation {
            return false;
        }
        current.silent += 1;
        self.any_silent.store(current.silent, Ordering::Relaxed);
        if current.silent < SILENT_LIMIT {
            return false;
        }
        match connect_lazily(&self.client, &self.config) {
            Ok(fresh) => {
                current.conn = fresh;
                current.generation += 1;
                current.silent = 0;
                self.any_silent.store(0, Ordering::Relaxed);
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
