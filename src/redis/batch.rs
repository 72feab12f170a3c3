//! Batches of per-key commands, on one node or a cluster.
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
use super::shards::{self, Shards, SlotMap};
use crate::error::{Error, ErrorKind, Result};
use crate::sync::Arc;
use futures_util::future::join_all;
use redis::aio::ConnectionLike;
use redis::cluster_routing::SingleNodeRoutingInfo;
use redis::{Cmd, Pipeline, Value};

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

    /// On a cluster, the slot map, fetched with `CLUSTER SLOTS` when there is none; `None` on a
    /// single node.
    pub(crate) async fn slot_map(&self) -> Result<Option<Arc<SlotMap>>> {
        let Some(shards) = &self.shards else {
            return Ok(None);
        };
        match shards.current() {
            Some(map) => Ok(Some(map)),
            None => self.fetch_slot_map(shards).await.map(Some),
        }
    }

    /// Fetches the slot map (`CLUSTER SLOTS`) and keeps it in `shards`.
    pub(crate) async fn fetch_slot_map(&self, shards: &Shards) -> Result<Arc<SlotMap>> {
        let reply: Value = self.request(redis::cmd("CLUSTER").arg("SLOTS")).await?;
        Ok(shards.set(SlotMap::from_reply(&reply)?))
    }

    /// A key moved or a node failed: the next batch fetches the slot map again.
    pub(crate) fn stale_slot_map(&self) {
        if let Some(shards) = &self.shards {
            shards.mark_stale();
        }
    }
}

/// Sends one group (indexes into `commands`) as a pipeline to the primary of its first key.
/// When that fails (a key of the group moved, its node failed over, a slot is migrating), the
/// group is sent again one pipeline per slot, concurrently; a slot whose pipeline fails too has
/// its commands sent one by one, in turn, each routed by its own key. The flag says whether the
/// group fell back.
///
/// One by one and in turn, because of how the client follows `ASK` (a slot mid-migration): it
/// sends `ASKING` as a request of its own and then the command, so two redirected commands in
/// flight on one connection can pair the wrong way and both fail.
async fn send_group(
    conn: Conn,
    commands: &[Keyed],
    group: &[usize],
) -> redis::RedisResult<(Vec<Value>, bool)> {
    let first = shards::slot_of(&commands[group[0]].key);
    if let Some(values) = send_pipeline(&conn, commands, group, first).await {
        return Ok((values, false));
    }
    let mut by_slot: Vec<(u16, Vec<usize>)> = Vec::new();
    for &i in group {
        let slot = shards::slot_of(&commands[i].key);
        match by_slot.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, members)) => members.push(i),
            None => by_slot.push((slot, vec![i])),
        }
    }
    let conn = &conn;
    let sends = by_slot.iter().map(|(slot, members)| async move {
        match send_pipeline(conn, commands, members, *slot).await {
            Some(values) => Ok(values),
            None => {
                let mut conn = conn.clone();
                let mut values = Vec::with_capacity(members.len());
                for &i in members {
                    // Raw replies: a refusal of one command (`NOSCRIPT`, say) stays its reply.
                    values.push(conn.req_packed_command(&commands[i].cmd).await?);
                }
                Ok::<_, redis::RedisError>(values)
            }
        }
    });
    let mut replies = vec![Value::Nil; commands.len()];
    for ((_, members), values) in by_slot.iter().zip(join_all(sends).await) {
        for (&i, value) in members.iter().zip(values?) {
            replies[i] = value;
        }
    }
    Ok((
        group
            .iter()
            .map(|&i| std::mem::take(&mut replies[i]))
            .collect(),
        true,
    ))
}

/// Sends `members` (indexes into `commands`) as one pipeline to the primary of `slot`; `None`
/// when it failed or a reply says a key is served elsewhere.
async fn send_pipeline(
    conn: &Conn,
    commands: &[Keyed],
    members: &[usize],
    slot: u16,
) -> Option<Vec<Value>> {
    let Conn::Cluster(cluster) = conn else {
        unreachable!("groups are made on a cluster only");
    };
    let mut pipe = Pipeline::with_capacity(members.len());
    pipe.ignore_errors();
    for &i in members {
        pipe.add_command(commands[i].cmd.clone());
    }
    let route = SingleNodeRoutingInfo::SpecificNode(shards::primary_route(slot));
    let values = cluster
        .clone()
        .route_pipeline(pipe, 0, members.len(), route)
        .await
        .ok()?;
    (values.len() == members.len() && !values.iter().any(redirected)).then_some(values)
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
