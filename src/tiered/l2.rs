//! The tiered cache's view of L2: `RedisCache` when the `redis` feature is on, and a type with
//! no values otherwise, so the read-through code has no `cfg` of its own.

use crate::cache::CachedFlag;
use crate::error::Result;
use crate::flag::{FlagDefinition, FlagId};
use std::collections::HashMap;
use std::time::Duration;

#[cfg(all(feature = "redis", not(flagcache_loom)))]
pub(crate) use with_redis::L2;
#[cfg(not(all(feature = "redis", not(flagcache_loom))))]
pub(crate) use without_redis::L2;

#[cfg(all(feature = "redis", not(flagcache_loom)))]
mod with_redis {
    use super::*;
    use crate::RedisCache;

    /// L2 is a `RedisCache`.
    pub(crate) struct L2(pub(crate) RedisCache);

    impl L2 {
        pub(crate) async fn get(&self, id: &FlagId) -> Result<Option<CachedFlag>> {
            self.0.try_get(id).await
        }

        pub(crate) async fn get_many(&self, ids: &[FlagId]) -> Result<HashMap<FlagId, CachedFlag>> {
            self.0.try_get_many(ids).await
        }

        pub(crate) async fn set(
            &self,
            id: &FlagId,
            def: &FlagDefinition,
            ttl: Duration,
        ) -> Result<()> {
            self.0.try_set(id, def, Some(ttl)).await
        }

        pub(crate) async fn set_many(
            &self,
            flags: &[(FlagId, FlagDefinition)],
            ttl: Duration,
        ) -> Result<()> {
            self.0.try_set_many(flags, Some(ttl)).await.map(|_| ())
        }

        pub(crate) async fn fill_many(
            &self,
            flags: &[(FlagId, FlagDefinition)],
            ttl: Duration,
        ) -> Result<usize> {
            self.0.try_fill_many(flags, ttl).await
        }

        pub(crate) async fn tombstone_many(&self, ids: &[FlagId], ttl: Duration) -> Result<()> {
            self.0.try_tombstone_many(ids, ttl).await
        }

        pub(crate) async fn clear(&self) -> Result<()> {
            self.0.try_clear().await.map(|_| ())
        }

        pub(crate) fn redis(&self) -> &RedisCache {
            &self.0
        }

        pub(crate) fn prefix(&self) -> &str {
            self.0.prefix()
        }

        pub(crate) async fn load_all(&self) -> Result<Vec<FlagDefinition>> {
            self.0.try_load_all().await
        }

        pub(crate) async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64> {
            self.0.publish(channel, payload).await
        }
    }
}

#[cfg(not(all(feature = "redis", not(flagcache_loom))))]
mod without_redis {
    use super::*;

    /// Without the `redis` feature there is no L2: this type has no values.
    pub(crate) enum L2 {}

    impl L2 {
        pub(crate) async fn get(&self, _: &FlagId) -> Result<Option<CachedFlag>> {
            match *self {}
        }

        pub(crate) async fn get_many(&self, _: &[FlagId]) -> Result<HashMap<FlagId, CachedFlag>> {
            match *self {}
        }

        pub(crate) async fn set(&self, _: &FlagId, _: &FlagDefinition, _: Duration) -> Result<()> {
            match *self {}
        }

        pub(crate) async fn set_many(
            &self,
            _: &[(FlagId, FlagDefinition)],
            _: Duration,
        ) -> Result<()> {
            match *self {}
        }

        pub(crate) async fn fill_many(
            &self,
            _: &[(FlagId, FlagDefinition)],
            _: Duration,
        ) -> Result<usize> {
            match *self {}
        }

        pub(crate) async fn tombstone_many(&self, _: &[FlagId], _: Duration) -> Result<()> {
            match *self {}
        }

        pub(crate) async fn clear(&self) -> Result<()> {
            match *self {}
        }

        pub(crate) fn prefix(&self) -> &str {
            match *self {}
        }

        pub(crate) async fn load_all(&self) -> Result<Vec<FlagDefinition>> {
            match *self {}
        }

        pub(crate) async fn publish(&self, _: &str, _: &[u8]) -> Result<u64> {
            match *self {}
        }
    }
}
