//! `RedisCache` as the tiered cache's L2 ([`FlagStore`]): each method is the matching `try_*`
//! call, and the backplane is Redis pub/sub on `{prefix}:flagcache:v1:events` (sharded pub/sub
//! on a cluster: `sharded`).

use super::RedisCache;
use super::conn::Target;
use crate::cache::CachedFlag;
use crate::error::{ErrorKind, Result};
use crate::flag::{FlagDefinition, FlagId};
use crate::tiered::{FlagStore, SetManyOutcome, Subscription, store::NextNotice};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

impl FlagStore for RedisCache {
    async fn get_many(&self, ids: &[FlagId]) -> Result<HashMap<FlagId, CachedFlag>> {
        match ids {
            // A single read is bounded by the size limit (`GETRANGE`); a corrupt value is left
            // out, as `MGET` leaves it out of a batch.
            [id] => match self.try_get(id).await {
                Ok(found) => Ok(found
                    .map(|f| HashMap::from([(id.clone(), f)]))
                    .unwrap_or_default()),
                Err(e) if e.kind() == ErrorKind::Corrupt => Ok(HashMap::new()),
                Err(e) => Err(e),
            },
            _ => self.try_get_many(ids).await,
        }
    }

    async fn set_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> Result<SetManyOutcome> {
        self.try_set_many(flags, Some(ttl)).await
    }

    async fn fill_many(&self, flags: &[(FlagId, FlagDefinition)], ttl: Duration) -> Result<usize> {
        self.try_fill_many(flags, ttl).await
    }

    async fn tombstone_many(&self, ids: &[FlagId], ttl: Duration) -> Result<()> {
        self.try_tombstone_many(ids, ttl).await
    }

    async fn clear(&self) -> Result<()> {
        self.try_clear().await.map(|_| ())
    }

    async fn load_all(&self) -> Result<Vec<FlagDefinition>> {
        self.try_load_all().await
    }

    async fn publish(&self, notice: &[u8]) -> Result<()> {
        self.publish(&self.channel(), notice).await.map(|_| ())
    }

    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.try_lease(name, holder, ttl).await
    }

    async fn sentinel(&self) -> Result<Option<String>> {
        self.request(redis::cmd("GET").arg(self.sentinel_key()))
            .await
    }

    async fn plant_sentinel(&self, token: &str) -> Result<String> {
        let key = self.sentinel_key();
        self.request::<Option<String>>(redis::cmd("SET").arg(&key).arg(token).arg("NX"))
            .await?;
        let held: Option<String> = self.request(redis::cmd("GET").arg(&key)).await?;
        Ok(held.unwrap_or_else(|| token.to_owned()))
    }

    async fn subscribe(&self) -> Result<Subscription> {
        if let Target::Cluster(_, _, seeds) = self.link.target() {
            let messages = self.subscribe_sharded(seeds, &self.channel()).await?;
            return Ok(Subscription::from_source(messages));
        }
        let (sink, stream) = self.subscribe(&self.channel()).await?.split();
        let every = self.health_check_interval();
        Ok(Subscription::from_source(Messages {
            sink,
            stream,
            every,
            next_check: tokio::time::Instant::now() + every,
        }))
    }
}

/// The messages of one pub/sub connection, health-checked: a connection that stays open but
/// stops answering would otherwise keep the subscriber "subscribed" to nothing. After `every`
/// without a message, a `PING` goes out on the subscription; no answer within `every` ends the
/// subscription (as a dropped connection does), so the subscriber subscribes again on a new
/// connection and revalidates.
struct Messages {
    sink: redis::aio::PubSubSink,
    stream: redis::aio::PubSubStream,
    every: Duration,
    next_check: tokio::time::Instant,
}

impl NextNotice for Messages {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send + '_>> {
        Box::pin(async move {
            loop {
                tokio::select! {
                    message = self.stream.next() => {
                        self.next_check = tokio::time::Instant::now() + self.every;
                        return Some(message?.get_payload_bytes().to_vec());
                    }
                    () = tokio::time::sleep_until(self.next_check) => {
                        let ping = self.sink.ping::<redis::Value>();
                        match tokio::time::timeout(self.every, ping).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "backplane subscription failed its health check");
                                return None;
                            }
                            Err(_) => {
                                tracing::warn!("backplane subscription did not answer its health check");
                                return None;
                            }
                        }
                        self.next_check = tokio::time::Instant::now() + self.every;
                    }
                }
            }
        })
    }
}
