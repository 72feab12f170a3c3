//! L2: [`FlagStore`], the layer a fleet of instances shares, between L1 and the source of truth.
//!
//! [`RedisCache`](crate::RedisCache) implements it, and so does [`MemoryStore`](crate::MemoryStore)
//! (one process, or tests). The tiered cache bounds every call with its own timeouts, so a store
//! that hangs costs a reader at most that long.

use crate::cache::CachedFlag;
use crate::error::Result;
use crate::flag::{FlagDefinition, FlagId};
use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;

/// What a version-guarded batch write did, flag by flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetManyOutcome {
    /// Definitions stored.
    pub stored: usize,
    /// The flags whose write the version guard refused (a higher version was stored), in the
    /// order they were given.
    pub refused: Vec<FlagId>,
}

/// A shared store of flag definitions (L2), as [`TieredCache`](crate::TieredCache) uses it.
///
/// Every method is one request where the store can make it one (`get_many` one `MGET`, a
/// batch write one pipeline). Errors say whether a retry may help
/// ([`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable),
/// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout)) or not. A TTL of
/// [`Duration::MAX`] means no expiry.
///
/// Besides definitions, a store carries the *backplane*: notices that one instance
/// [`publish`](Self::publish)es and every [`subscribe`](Self::subscribe)d instance receives,
/// at most once (a subscriber that misses notices must see its subscription end, so that it
/// revalidates).
pub trait FlagStore: Send + Sync + 'static {
    /// The stored definitions of those `ids` that are stored. A value that is not a valid
    /// definition of its id is left out (the store counts it); a tombstone reads as absent.
    fn get_many(
        &self,
        ids: &[FlagId],
    ) -> impl Future<Output = Result<HashMap<FlagId, CachedFlag>>> + Send;

    /// Stores each definition for `ttl` unless the store holds a higher version of its flag
    /// (an equal version is stored again); says which were refused.
    fn set_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> impl Future<Output = Result<SetManyOutcome>> + Send;

    /// Stores each definition for `ttl` only where its key holds nothing, neither a value nor
    /// a tombstone: the write-back of a read-through load, which must not replace what was
    /// written since the load found the key empty. Returns how many were stored.
    fn fill_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> impl Future<Output = Result<usize>> + Send;

    /// Replaces each id's value with a tombstone living `ttl`: read as absent, and it refuses
    /// [`fill_many`](Self::fill_many) until it expires or a write replaces it.
    fn tombstone_many(
        &self,
        ids: &[FlagId],
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Removes every definition and tombstone of this store (its own namespace only).
    fn clear(&self) -> impl Future<Output = Result<()>> + Send;

    /// Every valid definition stored (for warming an instance up without a source).
    fn load_all(&self) -> impl Future<Output = Result<Vec<FlagDefinition>>> + Send;

    /// Sends `notice` to every current subscriber of this store's namespace.
    fn publish(&self, notice: &[u8]) -> impl Future<Output = Result<()>> + Send;

    /// Subscribes to the notices of this store's namespace.
    fn subscribe(&self) -> impl Future<Output = Result<Subscription>> + Send;

    /// Takes the lease `name` for `holder` for `ttl` if nobody holds it, or renews it if
    /// `holder` does; true when `holder` holds it after the call. A lease elects one instance
    /// of a fleet for a job that one instance should do (following the source's change feed).
    /// Leases live in this store's namespace, apart from the flags: `clear` leaves them.
    ///
    /// The default grants every request: right for a store that no other instance shares.
    /// A shared store without leases makes every instance do the job (the work repeated, its
    /// outcome the same).
    fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send {
        let _ = (name, holder, ttl);
        async { Ok(true) }
    }

    /// The fleet's sentinel: a token the fleet writes after it filled the store, whose
    /// absence says the store lost its content (a restart without persistence, a flush, a
    /// failover to an empty replica), and whose change says it was refilled since. The
    /// default, for a store that cannot lose its content while the process runs, is always
    /// the same token.
    fn sentinel(&self) -> impl Future<Output = Result<Option<String>>> + Send {
        async { Ok(Some("permanent".to_owned())) }
    }

    /// Writes `token` as the fleet's sentinel unless one is there (`SET NX`); returns the
    /// sentinel the store holds after the call. The default does nothing.
    fn plant_sentinel(&self, token: &str) -> impl Future<Output = Result<String>> + Send {
        let _ = token;
        async { Ok("permanent".to_owned()) }
    }
}

/// Notices from a [`FlagStore`], in the order the store delivers them.
pub struct Subscription {
    source: Box<dyn NextNotice>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

/// What a [`Subscription`] reads from.
pub(crate) trait NextNotice: Send {
    /// The next notice, or `None` once the subscription has ended (notices may have been lost).
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send + '_>>;
}

impl NextNotice for mpsc::Receiver<Vec<u8>> {
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send + '_>> {
        Box::pin(self.recv())
    }
}

impl Subscription {
    /// A subscription fed through a channel: the store sends each notice; dropping every
    /// sender ends the subscription.
    pub fn from_channel(notices: mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            source: Box::new(notices),
        }
    }

    #[cfg_attr(not(all(feature = "redis", not(flagcache_loom))), allow(dead_code))]
    pub(crate) fn from_source(source: impl NextNotice + 'static) -> Self {
        Self {
            source: Box::new(source),
        }
    }

    /// The next notice, or `None` once the subscription has ended: the store lost the link,
    /// and notices may have been lost with it.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.source.next().await
    }
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// [`FlagStore`] with boxed futures, so the tiered cache holds any store without a type
/// parameter. One allocation per call: nothing next to a round trip.
pub(crate) trait DynStore: Send + Sync {
    fn get_many<'a>(&'a self, ids: &'a [FlagId]) -> Boxed<'a, HashMap<FlagId, CachedFlag>>;
    fn set_many<'a>(
        &'a self,
        flags: &'a [(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> Boxed<'a, SetManyOutcome>;
    fn fill_many<'a>(
        &'a self,
        flags: &'a [(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> Boxed<'a, usize>;
    fn tombstone_many<'a>(&'a self, ids: &'a [FlagId], ttl: Duration) -> Boxed<'a, ()>;
    fn clear(&self) -> Boxed<'_, ()>;
    fn load_all(&self) -> Boxed<'_, Vec<FlagDefinition>>;
    fn publish<'a>(&'a self, notice: &'a [u8]) -> Boxed<'a, ()>;
    fn subscribe(&self) -> Boxed<'_, Subscription>;
    fn lease<'a>(&'a self, name: &'a str, holder: &'a str, ttl: Duration) -> Boxed<'a, bool>;
    fn sentinel(&self) -> Boxed<'_, Option<String>>;
    fn plant_sentinel<'a>(&'a self, token: &'a str) -> Boxed<'a, String>;
    /// The store itself, for [`TieredCache::l2`](crate::TieredCache::l2).
    fn as_any(&self) -> &dyn Any;
}

impl<S: FlagStore> DynStore for S {
    fn get_many<'a>(&'a self, ids: &'a [FlagId]) -> Boxed<'a, HashMap<FlagId, CachedFlag>> {
        Box::pin(FlagStore::get_many(self, ids))
    }

    fn set_many<'a>(
        &'a self,
        flags: &'a [(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> Boxed<'a, SetManyOutcome> {
        Box::pin(FlagStore::set_many(self, flags, ttl))
    }

    fn fill_many<'a>(
        &'a self,
        flags: &'a [(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> Boxed<'a, usize> {
        Box::pin(FlagStore::fill_many(self, flags, ttl))
    }

    fn tombstone_many<'a>(&'a self, ids: &'a [FlagId], ttl: Duration) -> Boxed<'a, ()> {
        Box::pin(FlagStore::tombstone_many(self, ids, ttl))
    }

    fn clear(&self) -> Boxed<'_, ()> {
        Box::pin(FlagStore::clear(self))
    }

    fn load_all(&self) -> Boxed<'_, Vec<FlagDefinition>> {
        Box::pin(FlagStore::load_all(self))
    }

    fn publish<'a>(&'a self, notice: &'a [u8]) -> Boxed<'a, ()> {
        Box::pin(FlagStore::publish(self, notice))
    }

    fn subscribe(&self) -> Boxed<'_, Subscription> {
        Box::pin(FlagStore::subscribe(self))
    }

    fn lease<'a>(&'a self, name: &'a str, holder: &'a str, ttl: Duration) -> Boxed<'a, bool> {
        Box::pin(FlagStore::lease(self, name, holder, ttl))
    }

    fn sentinel(&self) -> Boxed<'_, Option<String>> {
        Box::pin(FlagStore::sentinel(self))
    }

    fn plant_sentinel<'a>(&'a self, token: &'a str) -> Boxed<'a, String> {
        Box::pin(FlagStore::plant_sentinel(self, token))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
