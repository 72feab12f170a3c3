//! The cache contract every layer implements: [`FlagCache`], [`CachedFlag`], [`CacheStats`].

use crate::flag::{FlagDefinition, FlagId};
use crate::sync::Arc;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

/// An asynchronous flag cache: one layer, or several composed.
///
/// Methods never return errors: a failing backend is a miss, counted in [`CacheStats`] and
/// reported through `tracing`. The implementing types offer `try_*` methods for callers who
/// want the error.
///
/// The futures are plain `impl Future` (no boxing), so a hit through this trait allocates
/// nothing. The price is that the trait is not object-safe: write `impl FlagCache` or a generic
/// `C: FlagCache` rather than `dyn FlagCache`.
pub trait FlagCache: Send + Sync {
    /// The cached definition of `flag_id`, or `None` when no layer has it.
    fn get(&self, flag_id: &FlagId) -> impl Future<Output = Option<CachedFlag>> + Send;

    /// The cached definitions of those `flag_ids` that some layer has.
    fn get_many(
        &self,
        flag_ids: &[FlagId],
    ) -> impl Future<Output = HashMap<FlagId, CachedFlag>> + Send;

    /// Stores `flag` under `flag_id` for `ttl` (the cache's default when `None`).
    ///
    /// A definition with a lower `version` than the cached one is refused and counted.
    fn set(
        &self,
        flag_id: &FlagId,
        flag: FlagDefinition,
        ttl: Option<Duration>,
    ) -> impl Future<Output = ()> + Send;

    /// Stores several definitions, each as [`set`](Self::set) would.
    fn set_many(
        &self,
        flags: Vec<(FlagId, FlagDefinition)>,
        ttl: Option<Duration>,
    ) -> impl Future<Output = ()> + Send;

    /// Drops `flag_id`. A later `get` does not return the dropped definition.
    fn invalidate(&self, flag_id: &FlagId) -> impl Future<Output = ()> + Send;

    /// Drops every id in `flag_ids`.
    fn invalidate_many(&self, flag_ids: &[FlagId]) -> impl Future<Output = ()> + Send;

    /// Drops everything this cache holds.
    fn clear(&self) -> impl Future<Output = ()> + Send;

    /// Counters since the cache was built.
    fn stats(&self) -> impl Future<Output = CacheStats> + Send;
}

/// A definition as a cache returned it, with its cache metadata.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CachedFlag {
    /// The definition, shared with the cache (cloning a `CachedFlag` does not copy it).
    pub definition: Arc<FlagDefinition>,
    /// When this layer stored the definition.
    pub cached_at: Instant,
    /// When the entry expires; `None` for an entry without expiry.
    pub expires_at: Option<Instant>,
    /// How many owned reads of this entry the cache has served, this one included (see
    /// `LocalCache` for exactly what is counted).
    pub hit_count: u64,
}

impl CachedFlag {
    /// A `CachedFlag` for a definition fetched just now, without expiry or hits.
    pub fn new(definition: Arc<FlagDefinition>) -> Self {
        Self {
            definition,
            cached_at: Instant::now(),
            expires_at: None,
            hit_count: 0,
        }
    }

    /// True when `expires_at` has passed by the system clock.
    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|e| Instant::now() > e)
    }
}

/// Counters of a cache. Sums are exact once concurrent operations have finished.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups the cache could not answer (absent or expired).
    pub misses: u64,
    /// Live entries now.
    pub size: usize,
    /// Entries removed to make room.
    pub evictions: u64,
    /// `hits / (hits + misses)`, or 0 before the first lookup.
    pub hit_rate: f64,
    /// Writes that stored a definition (new or replaced).
    pub inserts: u64,
    /// Entries removed because their TTL passed.
    pub expirations: u64,
    /// Entries removed by `invalidate`, `invalidate_many` or `clear`.
    pub invalidations: u64,
    /// Writes refused because the cache held a higher version.
    pub stale_writes_refused: u64,
    /// Read-through fills dropped because a write to the same flag raced with them.
    pub fills_refused: u64,
    /// The most entries the cache holds.
    pub capacity: usize,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 when nothing was looked up.
    pub fn ratio(hits: u64, misses: u64) -> f64 {
        let total = hits.saturating_add(misses);
        if total == 0 {
            0.0
        } else {
            hits as f64 / total as f64
        }
    }
}
