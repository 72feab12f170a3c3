//! L1: [`LocalCache`], an in-process, lock-free flag cache.
//!
//! Structure (see `docs/architecture.md`): two generation buffers ([`snapshots`]), each a papaya map
//! plus its CLOCK ring ([`generation`], [`ring`]); `replace_all` and `clear` fill the idle
//! buffer and publish it with one store. Counters are striped ([`stats`]), time is a coarse
//! clock ([`crate::time`]), and slow read-through fills are fenced against writes ([`fences`]).
//! The read path is in [`read`], the writes in [`write`], the background task in [`sweeper`].

mod builder;
mod fences;
mod generation;
mod read;
mod refresh;
mod ring;
mod snapshots;
mod stats;
mod sweeper;
mod write;

pub use builder::LocalCacheBuilder;
pub use fences::FillTicket;
pub use sweeper::CleanupTask;

use crate::cache::{CacheStats, CachedFlag, FlagCache};
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::AtomicUsize;
use crate::time::{Clock, duration_to_ticks};
pub(crate) use fences::WriteFences;
use snapshots::Snapshots;
use stats::Stats;
use std::collections::HashMap;
use std::time::Duration;

/// The in-process flag cache (L1).
///
/// Reads are lock-free and allocation-free: [`get_now`](Self::get_now) clones one `Arc`,
/// [`get_with`](Self::get_with) lends the definition to a closure and, once the entry's CLOCK
/// counter is saturated, writes no shared memory at all (its stats stripe is its thread's
/// own). Entries expire after their TTL (checked on read against a coarse clock, and removed
/// by the cleanup task), and a full cache evicts by CLOCK: entries read since the hand last
/// passed survive.
///
/// An entry keeps its expiry in whole milliseconds of the cache's clock, rounded down: it may
/// stop being fresh up to a millisecond before its TTL ends, never after (beyond the clock's
/// resolution). An expiry more than 34 years after the clock started means no expiry.
///
/// # Consistency
/// - After [`invalidate_now`](Self::invalidate_now) (or the trait's `invalidate`) returns, no
///   read that starts later returns the invalidated definition, unless a newer one was set
///   since.
/// - Versions never go backwards: a `set` of a lower version than the cached one is refused
///   ([`try_set`](Self::try_set) says so), and a fill overtaken by a write is dropped.
/// - [`replace_all`](Self::replace_all) is atomic: a reader, and a whole
///   [`get_many_now`](Self::get_many_now), sees the old set or the new one. A write racing
///   with it lands before it (and is replaced) or after it.
///
/// # Memory
/// An entry that a write replaces, or that an invalidate, expiry or eviction removes, goes to
/// the map's collector, which frees the entries a thread removed in batches of 1 024, once no
/// reader holds them: each thread that writes may keep up to 1 023 old entries, and the
/// definitions only they hold, alive until its batch fills (per buffer of the two a swap
/// alternates between; a thread that exits leaves its batch to the next thread that takes its
/// collector slot, or to the cache's drop). [`replace_all`](Self::replace_all) and
/// [`clear`](Self::clear_now) hand over at once the old set they remove themselves.
///
/// # Hit counts
/// `CachedFlag::hit_count` counts the owned reads (`get_now`, `get`, `get_many`) of an entry:
/// exactly from one thread; under concurrent owned reads of the same entry increments can be
/// lost (a plain load and store per read, not a locked add), so it is then a lower bound.
/// Borrowing reads ([`get_with`](Self::get_with)) do not count, so that a hot flag read that
/// way causes no shared writes.
pub struct LocalCache {
    snapshots: Snapshots,
    fences: WriteFences,
    stats: Stats,
    clock: Clock,
    capacity: usize,
    default_ttl: Duration,
    clock_resolution: Duration,
    sweep_cursor: AtomicUsize,
}

/// What [`LocalCache::complete_fill`] did with a fetched definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FillOutcome {
    /// The definition is cached.
    Installed,
    /// The cache already holds this newer version; the fill was dropped.
    Superseded(u64),
    /// A write to the flag (or a snapshot swap) happened during the fill; it was dropped so it
    /// cannot resurrect an older definition.
    Overtaken,
    /// The definition fails [`FlagDefinition::validate`](crate::FlagDefinition::validate), or
    /// is another flag's than the ticket's; nothing was cached.
    Invalid,
}

/// A definition past its TTL but within the stale grace, for fail-safe serving.
#[derive(Debug, Clone)]
pub struct StaleFlag {
    /// The last known definition.
    pub flag: CachedFlag,
    /// How long ago it expired.
    pub expired_for: Duration,
}

impl LocalCache {
    /// A cache of at most `max_size` entries whose entries live `default_ttl` unless a write
    /// says otherwise.
    ///
    /// For constant, known-good arguments: a zero `max_size` or a `default_ttl` under 1 ms is
    /// raised to the smallest valid value (1 entry, 1 ms) with a `tracing` warning. Use
    /// [`builder`](Self::builder) to get an error instead.
    pub fn new(max_size: usize, default_ttl: Duration) -> Self {
        if max_size == 0 || default_ttl < crate::time::MIN_TTL {
            tracing::warn!(
                max_size,
                ?default_ttl,
                "LocalCache::new: zero capacity or TTL raised to the minimum; use the builder to get an error"
            );
        }
        let built = Self::builder()
            .max_size(max_size.max(1))
            .default_ttl(default_ttl.max(crate::time::MIN_TTL))
            .build();
        match built {
            Ok(cache) => cache,
            // Unreachable with the clamped arguments; keep a working cache rather than panic.
            Err(_) => Self::from_parts(builder::Config::default()),
        }
    }

    /// A builder for every setting, validated by `build()`.
    pub fn builder() -> LocalCacheBuilder {
        LocalCacheBuilder::default()
    }

    fn from_parts(config: builder::Config) -> Self {
        Self {
            snapshots: Snapshots::new(config.max_size, duration_to_ticks(config.stale_grace)),
            fences: WriteFences::new(),
            stats: Stats::new(),
            clock: config.clock,
            capacity: config.max_size,
            default_ttl: config.default_ttl,
            clock_resolution: config.clock_resolution,
            sweep_cursor: AtomicUsize::new(0),
        }
    }

    /// The most entries this cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The TTL of writes that do not name one.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    /// Live entries now (approximate while writes are in flight).
    pub fn len(&self) -> usize {
        let active = self.snapshots.active();
        self.snapshots.buffer(active).map.len()
    }

    /// True when no entry is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The clock this cache reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Counters since the cache was built.
    pub fn stats_now(&self) -> CacheStats {
        let mut s = self.stats.snapshot();
        s.size = self.len();
        s.capacity = self.capacity;
        s
    }

    /// Entries whose slot is published, counted the slow way (tests and model checks).
    #[cfg(any(test, fuzzing, flagcache_loom))]
    pub(crate) fn live_slots(&self) -> usize {
        let active = self.snapshots.active();
        self.snapshots.buffer(active).ring.live_count()
    }

    /// The first broken ring invariant of the current buffer at quiescence, if any (tests and
    /// model checks): a slot left `PENDING`, a free count that disagrees with the `FREE` slots,
    /// an entry whose slot is not `LIVE` under its epoch with its key (a slot names one key, so
    /// no two entries pass that in one slot).
    #[cfg(any(test, fuzzing, flagcache_loom))]
    pub(crate) fn ring_fault(&self) -> Option<String> {
        let buffer = self.snapshots.buffer(self.snapshots.active());
        let mut fault = buffer.ring.unsettled();
        buffer.map.for_each(|key, e| {
            if fault.is_none() && !buffer.ring.is_live_for(e.slot, key) {
                fault = Some(format!("`{key}` owns {:?}, not LIVE for it", e.slot));
            }
        });
        fault
    }

    /// The ids in the current buffer's map, published or not (tests and model checks).
    #[cfg(any(test, fuzzing, flagcache_loom))]
    pub(crate) fn map_len(&self) -> usize {
        let active = self.snapshots.active();
        let mut n = 0;
        self.snapshots.buffer(active).map.for_each(|_, _| n += 1);
        n
    }
}

impl std::fmt::Debug for LocalCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .field("default_ttl", &self.default_ttl)
            .finish_non_exhaustive()
    }
}

fn report(op: &str, result: crate::Result<()>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "LocalCache::{op} refused");
    }
}

impl FlagCache for LocalCache {
    async fn get(&self, flag_id: &FlagId) -> Option<CachedFlag> {
        self.get_now(flag_id.as_str())
    }

    async fn get_many(&self, flag_ids: &[FlagId]) -> HashMap<FlagId, CachedFlag> {
        self.get_many_now(flag_ids)
    }

    async fn set(&self, flag_id: &FlagId, flag: FlagDefinition, ttl: Option<Duration>) {
        report("set", self.try_set(flag_id, flag, ttl));
    }

    async fn set_many(&self, flags: Vec<(FlagId, FlagDefinition)>, ttl: Option<Duration>) {
        report("set_many", self.try_set_many(flags, ttl));
    }

    async fn invalidate(&self, flag_id: &FlagId) {
        self.invalidate_now(flag_id.as_str());
    }

    async fn invalidate_many(&self, flag_ids: &[FlagId]) {
        self.invalidate_many_now(flag_ids);
    }

    async fn clear(&self) {
        self.clear_now();
    }

    async fn stats(&self) -> CacheStats {
        self.stats_now()
    }
}

#[cfg(all(test, not(flagcache_loom)))]
mod tests;
