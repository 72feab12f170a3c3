//! `RedisCache` as the tiered cache's L2 ([`FlagStore`]): each method is the matching `try_*`
//! call, and the backplane is Redis pub/sub on `{prefix}:flagcache:v1:events`.

use super::RedisCache;
use crate::cache::CachedFlag;
use crate::error::Result;
use crate::flag::{FlagDefinition, FlagId};
use crate::tiered::{FlagStore, SetManyOutcome, Subscription, store::NextNotice};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

impl FlagStore for RedisCache {
    async fn get_many(&self, ids: &[FlagId]) -> Result<HashMap<FlagId, CachedFlag>> {
        self.try_get_many(ids).await
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

    async fn subscribe(&self) -> Result<Subscription> {
        let pubsub = self.subscribe(&self.channel()).await?;
        Ok(Subscription::from_source(Messages(
            pubsub.into_on_message(),
        )))
    }
}

/// The messages of one pub/sub connection; the subscription ends when the connection does.
struct Messages(redis::aio::PubSubStream);

impl NextNotice for Messages {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send + '_>> {
        Box::pin(async move {
            let message = self.0.next().await?;
            Some(message.get_payload_bytes().to_vec())
        })
    }
}
