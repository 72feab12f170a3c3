//! Batches of per-key commands and walks over every primary, on one node or a cluster.
//!
//! On one node a batch is one pipeline. On a cluster a pipeline must stay on one node (the
//! client refuses one across slots, and a multi-key command across slots is split into one
//! request per slot), so a batch goes out as one pipeline per primary, concurrently, grouped by
//! the slot map (`shards`), and the replies are merged back in order. A group that a slot move
//! or a failover broke is sent again key by key, each command then following its redirect, and
//! the map is fetched again before the next batch. The whole batch is one round trip under the
//! response timeout.

use super::RedisCache;
use super::conn::Conn;
use super::shards::{self, SlotMap};
use crate::error::{Error, ErrorKind, Result};
use crate::sync::Arc;
use futures_util::future::join_all;
use redis::aio::ConnectionLike;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, Pipeline, Value};

/// One command about one key.
pub(crate) struct Keyed {
    pub(crate) key: Vec<u8>,
    pub(crate) cmd: Cmd,
}

impl RedisCache {
    /// Sends `commands`, one pipeline per node, and returns one reply per command, in order;
    /// a command the server refused is its `Value::ServerError`.
    ///
    /// # Errors
    /// Connection errors and timeouts, for the batch as a whole.
    pub(crate) async fn per_node(&self, commands: &[Keyed]) -> Result<Vec<Value>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let Some(map) = self.slot_map().await? else {
            let mut pipe = Pipeline::with_capacity(commands.len());
            pipe.ignore_errors();
            for c in commands {
                pipe.add_command(c.cmd.clone());
            }
            return self
                .round_trip(async |conn| pipe.query_async(conn).await)
                .await;
        };
        let groups =
            shards::group_by_primary(&map, &commands.iter().map(|c| &c.key).collect::<Vec<_>>());
        let (replies, moved) = self
            .round_trip(async |conn| {
                let sends = groups
                    .iter()
                    .map(|group| send_group(conn.clone(), commands, group));
                let mut replies = vec![Value::Nil; commands.len()];
                let mut moved = false;
                for (group, sent) in groups.iter().zip(join_all(sends).await) {
                    let (values, redirected) = sent?;
                    moved |= redirected;
                    for (&i, value) in group.iter().zip(values) {
                        replies[i] = value;
                    }
                }
                Ok((replies, moved))
            })
            .await?;
        if moved {
            self.stale_slot_map();
        }
        Ok(replies)
    }

    /// A walk over the keys of this prefix on every primary (on one node, that node's), each
    /// primary reached through one slot it serves.
    ///
    /// # Errors
    /// Connection errors and timeouts (fetching a cluster's slot map).
    pub(crate) async fn scan_every_primary(&self) -> Result<KeyScan> {
        // A walk is rare and must reach every primary: it starts from a fresh map, not one
        // that predates a failover or a new node.
        self.stale_slot_map();
        let primaries: Vec<Option<u16>> = match self.slot_map().await? {
            Some(map) => map.primaries().iter().copied().map(Some).collect(),
            None => vec![None],
        };
        Ok(KeyScan {
            primaries,
            cursor: 0,
        })
    }

    /// One `SCAN` page of the keys matching this prefix's pattern, as bytes (a key name need
    /// not be UTF-8), on the primary serving slot `primary` (on a cluster): the next cursor (0
    /// at the end) and the keys.
    async fn scan_page(&self, primary: Option<u16>, cursor: u64) -> Result<(u64, Vec<Vec<u8>>)> {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(self.keys.pattern())
            .arg("COUNT")
            .arg(self.scan_batch);
        let Some(slot) = primary else {
            return self.request(&scan).await;
        };
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
            shards::primary_route(slot),
        ));
        let reply = self
            .round_trip(async |conn| match conn {
                Conn::Cluster(cluster) => cluster.route_command(scan.clone(), route).await,
                Conn::Node(_) => scan.query_async(conn).await,
            })
            .await?;
        FromRedisValue::from_redis_value(reply).map_err(|e| {
            Error::new(ErrorKind::Backend, format!("SCAN answered: {e}")).with_source(e)
        })
    }

    /// On a cluster, the slot map, fetched with `CLUSTER SLOTS` when there is none; `None` on a
    /// single node.
    async fn slot_map(&self) -> Result<Option<Arc<SlotMap>>> {
        let Some(shards) = &self.shards else {
            return Ok(None);
        };
        if let Some(map) = shards.current() {
            return Ok(Some(map));
        }
        let reply: Value = self.request(redis::cmd("CLUSTER").arg("SLOTS")).await?;
        Ok(Some(shards.set(SlotMap::from_reply(&reply)?)))
    }

    /// A key moved or a node failed: the next batch fetches the slot map again.
    pub(crate) fn stale_slot_map(&self) {
        if let Some(shards) = &self.shards {
            shards.mark_stale();
        }
    }
}

/// The state of a `SCAN MATCH {prefix}:flag:*` over every primary, one after the other.
pub(crate) struct KeyScan {
    /// The primaries still to walk (a slot of each; `None`: the single node), the current last.
    primaries: Vec<Option<u16>>,
    cursor: u64,
}

impl KeyScan {
    /// The next page of keys, as bytes (a key name need not be UTF-8); `None` once every
    /// primary is walked. `SCAN` may return a key twice.
    ///
    /// # Errors
    /// Connection errors and timeouts (pages returned before stay returned).
    pub(crate) async fn next_page(&mut self, cache: &RedisCache) -> Result<Option<Vec<Vec<u8>>>> {
        let Some(&primary) = self.primaries.last() else {
            return Ok(None);
        };
        let (next, keys) = cache.scan_page(primary, self.cursor).await?;
        self.cursor = next;
        if next == 0 {
            self.primaries.pop();
        }
        Ok(Some(keys))
    }
}

/// Sends one group (indexes into `commands`) as a pipeline to the primary of its first key.
/// When that fails (a key of the group moved, its node failed over), the group's commands are
/// sent again one by one, each routed by its own key; the flag says so.
async fn send_group(
    mut conn: Conn,
    commands: &[Keyed],
    group: &[usize],
) -> redis::RedisResult<(Vec<Value>, bool)> {
    let Conn::Cluster(cluster) = &mut conn else {
        unreachable!("groups are made on a cluster only");
    };
    let mut pipe = Pipeline::with_capacity(group.len());
    pipe.ignore_errors();
    for &i in group {
        pipe.add_command(commands[i].cmd.clone());
    }
    let first = shards::slot_of(&commands[group[0]].key);
    let route = SingleNodeRoutingInfo::SpecificNode(shards::primary_route(first));
    match cluster.route_pipeline(pipe, 0, group.len(), route).await {
        Ok(values) if values.len() == group.len() && !values.iter().any(redirected) => {
            Ok((values, false))
        }
        _ => {
            // Raw replies: a server's refusal of one command (`NOSCRIPT`, say) stays its reply.
            let sends = group.iter().map(|&i| {
                let mut conn = conn.clone();
                async move { conn.req_packed_command(&commands[i].cmd).await }
            });
            let values = join_all(sends)
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
            Ok((values, true))
        }
    }
}

/// A reply that says the key is served elsewhere.
fn redirected(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if matches!(e.code(), "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN"))
}

/// The error for a command a node refused: transient when the node cannot serve the key now
/// (a failover or a slot move under way, a node still loading), else a backend error.
pub(crate) fn refusal(e: &redis::ServerError) -> Error {
    let kind = match e.code() {
        "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "MASTERDOWN" => {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Backend,
    };
    Error::new(kind, format!("Redis refused a command: {e:?}"))
}
