//! What a `RedisCache` talks to: one Redis node or a Redis Cluster, behind one connection type.
//!
//! A single node is reached through `ConnectionManager` (one multiplexed connection, re-made
//! after it breaks); a cluster through `redis`'s `cluster_async::ClusterConnection` (one
//! multiplexed connection per node, routed by slot, following `MOVED`/`ASK` and refreshing its
//! slot map after a failover). Both connect lazily, so building a cache never waits for Redis.

use crate::error::{Error, Result};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// How to make a new connection.
pub(crate) enum Target {
    Node(redis::Client, ConnectionManagerConfig),
    Cluster(ClusterClient, ClusterConfig, ClusterSeeds),
}

/// How to build a cluster client: a subscription needs one of its own (RESP3, with a sink for
/// the messages the server pushes).
pub(crate) struct ClusterSeeds {
    pub(crate) make: Box<dyn Fn() -> ClusterClientBuilder + Send + Sync>,
}

/// A connection handle: cheap to clone, every clone multiplexed on the same sockets.
#[derive(Clone)]
pub(crate) enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Target {
    /// A connection that connects on its first request.
    pub(crate) fn connect_lazily(&self) -> Result<Conn> {
        match self {
            Target::Node(client, config) => {
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .map(Conn::Node)
                    .map_err(|e| {
                        Error::invalid_config(format!("cannot set up the Redis connection: {e}"))
                            .with_source(e)
                    })
            }
            Target::Cluster(client, config, _) => Ok(Conn::Cluster(
                client.get_pending_async_connection_with_config(config.clone()),
            )),
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(..))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
