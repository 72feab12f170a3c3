//! The backplane on a Redis Cluster: sharded pub/sub (`SSUBSCRIBE`, `SPUBLISH`, Redis 7+).
//!
//! Plain pub/sub on a cluster floods every message to every node; a sharded channel lives on
//! the shard of its slot only. Each subscription is a cluster connection of its own, on RESP3
//! (which carries the server's pushes on the same connection), its messages handed over
//! through a bounded queue. The client would re-subscribe by itself after a disconnection or a
//! slot move, silently; notices sent meanwhile would be lost unseen. So a disconnection, an
//! `SUNSUBSCRIBE` from the server (the slot moved), a full queue or a failed health check ends
//! the subscription instead: the subscriber subscribes again and revalidates L1.
//!
//! The health check asks the subscription's node, by address, on the very connection that
//! carries the subscription, which primary serves the channel now: no answer (a hung node) or
//! another primary (a failover, a slot move) ends the subscription. (Routed by slot, a check
//! would follow the subscription client's own map, which after a failover can name another
//! node than the one the subscription went to, and find a healthy one instead.)

use super::RedisCache;
use super::conn::ClusterSeeds;
use super::shards::{self, SlotMap};
use crate::error::Result;
use crate::sync::{Arc, AtomicU64, Ordering};
use crate::tiered::store::NextNotice;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;

/// Pushes waiting for the subscriber; beyond it the subscription ends (and L1 is revalidated)
/// rather than the queue growing or a notice being dropped unseen.
const QUEUE: usize = 1024;

impl RedisCache {
    /// A cluster connection of its own, sharded-subscribed to `channel`. Not bounded by the
    /// response timeout (see `subscribe`); the caller bounds it.
    pub(crate) async fn subscribe_sharded(
        &self,
        seeds: &ClusterSeeds,
        channel: &str,
    ) -> Result<ShardedMessages> {
        let (sender, pushes) = mpsc::channel(QUEUE);
        let overflowed = Arc::new(AtomicU64::new(0));
        let full = Arc::clone(&overflowed);
        let sink = move |push: PushInfo| {
            sender.try_send(push).map_err(|_| {
                full.store(1, Ordering::Relaxed);
            })
        };
        let subscribe = async {
            let client = (seeds.make)()
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(sink)
                .build()?;
            let mut conn = client.get_async_connection().await?;
            conn.ssubscribe(channel).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        let mut conn = subscribe.await.map_err(|e| self.classify(e))?;
        let slot = shards::slot_of(channel.as_bytes());
        let any = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
        let home = shard_of(&mut conn, slot, any)
            .await
            .map_err(|e| self.classify(e))?;
        let every = self.health_check_interval();
        Ok(ShardedMessages {
            conn,
            pushes,
            overflowed,
            slot,
            home,
            every,
            next_check: tokio::time::Instant::now() + every,
        })
    }
}

/// The messages of one sharded subscription, health-checked: after `every` without a message,
/// the subscription's node must answer within `every` that it still serves the channel.
pub(crate) struct ShardedMessages {
    conn: ClusterConnection,
    pushes: mpsc::Receiver<PushInfo>,
    overflowed: Arc<AtomicU64>,
    /// The channel's slot.
    slot: u16,
    /// The primary that served the channel's slot when the subscription was made.
    home: (String, u16),
    every: Duration,
    next_check: tokio::time::Instant,
}

impl ShardedMessages {
    /// True while the subscription's node answers, and names itself the channel's primary.
    async fn healthy(&mut self) -> bool {
        let (host, port) = self.home.clone();
        let home = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
        let check = async {
            // Asked of the subscription's node itself: a hung one does not answer, a demoted
            // one names its successor.
            let now = shard_of(&mut self.conn, self.slot, home).await?;
            if now != self.home {
                tracing::warn!(
                    from = ?self.home,
                    to = ?now,
                    "backplane channel moved to another shard; subscribing there"
                );
                return Ok(false);
            }
            Ok::<_, redis::RedisError>(true)
        };
        match tokio::time::timeout(self.every, check).await {
            Ok(Ok(healthy)) => healthy,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "backplane subscription failed its health check");
                false
            }
            Err(_) => {
                tracing::warn!("backplane subscription did not answer its health check");
                false
            }
        }
    }

    /// What one push means for the subscription: a notice, nothing, or its end.
    fn read(&self, push: PushInfo) -> Step {
        match push.kind {
            PushKind::SMessage => match push.data.into_iter().nth(1) {
                Some(Value::BulkString(payload)) => Step::Notice(payload),
                _ => Step::Skip,
            },
            PushKind::SSubscribe => Step::Skip,
            kind => {
                tracing::warn!(?kind, "backplane sharded subscription interrupted");
                Step::End
            }
        }
    }
}

/// The address of the primary serving `slot`, as the node `via` routes to answers now.
async fn shard_of(
    conn: &mut ClusterConnection,
    slot: u16,
    via: RoutingInfo,
) -> redis::RedisResult<(String, u16)> {
    let slots = conn
        .route_command(redis::cmd("CLUSTER").arg("SLOTS").clone(), via)
        .await?;
    let unknown = || {
        redis::RedisError::from((
            redis::ErrorKind::Client,
            "CLUSTER SLOTS names no primary for the backplane channel",
        ))
    };
    let map = SlotMap::from_reply(&slots).map_err(|_| unknown())?;
    let (host, port) = map.address_of(slot).ok_or_else(unknown)?;
    Ok((host.to_owned(), port))
}

enum Step {
    Notice(Vec<u8>),
    Skip,
    End,
}

impl NextNotice for ShardedMessages {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send + '_>> {
        Box::pin(async move {
            loop {
                tokio::select! {
                    push = self.pushes.recv() => {
                        if self.overflowed.load(Ordering::Relaxed) == 1 {
                            tracing::warn!("backplane fell behind its sharded subscription");
                            return None;
                        }
                        self.next_check = tokio::time::Instant::now() + self.every;
                        match self.read(push?) {
                            Step::Notice(payload) => return Some(payload),
                            Step::Skip => {}
                            Step::End => return None,
                        }
                    }
                    () = tokio::time::sleep_until(self.next_check) => {
                        if !self.healthy().await {
                            return None;
                        }
                        self.next_check = tokio::time::Instant::now() + self.every;
                    }
                }
            }
        })
    }
}
