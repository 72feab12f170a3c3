//! L1: [`LocalCache`], an in-process, lock-free flag cache.
//!
//! Structure (see `DESIGN.md` §3): a [`SnapshotCell`] holds the current [`Generation`] (a papaya
//! map plus its CLOCK ring); `replace_all` and `clear` build a new generation off to the side and
//! swap it in with one store. Counters are striped ([`stats`]), time is a coarse clock
//! ([`crate::time`]), and slow read-through fills are fenced against writes ([`fences`]).

mod builder;
mod fences;
mod generation;
mod ring;
mod stats;
mod sweeper;

pub use builder::LocalCacheBuilder;
pub use fences::FillTicket;
pub use sweeper::CleanupTask;

use crate::cache::{CacheStats, CachedFlag, FlagCache};
use crate::error::{Error, ErrorKind, Result};
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Ordering, SnapshotCell};
use crate::time::{Clock, Ticks, duration_to_ticks};
use fences::WriteFences;
use generation::{Entry, EntryTimes, Generation, WriteResult, Writer};
use stats::{Counter, Stats};
use std::collections::HashMap;
use std::time::Duration;

/// How many ring slots one sweep step examines.
const SWEEP_STEP: usize = 1024;

/// The in-process flag cache (L1).
///
/// Reads are lock-free and allocation-free: [`get_now`](Self::get_now) clones one `Arc`,
/// [`get_with`](Self::get_with) lends the definition to a closure and, once the entry's CLOCK
/// counter is saturated, writes no shared memory except its stats stripe. Entries expire after
/// their TTL (checked on read against a coarse clock, and removed by the cleanup task), and a
/// full cache evicts by CLOCK: entries read since the hand last passed survive.
///
/// # Consistency
/// - After [`invalidate_now`](Self::invalidate_now) (or the trait's `invalidate`) returns, no read that starts later returns the
///   invalidated definition, unless a newer one was set since.
/// - Versions never go backwards: a `set` of a lower version than the cached one is refused
///   ([`try_set`](Self::try_set) says so), and a fill overtaken by a write is dropped.
/// - [`replace_all`](Self::replace_all) is atomic: a reader sees the old set or the new one.
///   Writes racing with it may land in the old set and be lost with it.
///
/// # Hit counts
/// `CachedFlag::hit_count` counts the owned reads (`get_now`, `get`, `get_many`) of an entry,
/// exactly, in one relaxed atomic per read. Borrowing reads ([`get_with`](Self::get_with)) do
/// not count, so that a hot flag read that way causes no shared writes.
pub struct LocalCache {
    current: SnapshotCell<Generation>,
    next_generation: AtomicU64,
    fences: WriteFences,
    stats: Stats,
    clock: Clock,
    capacity: usize,
    default_ttl: Duration,
    stale_grace: Duration,
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
}

/// A definition past its TTL but within the stale grace, for fail-safe serving.
#[derive(Debug, Clone)]
pub struct StaleFlag {
    /// The last known definition.
    pub flag: CachedFlag,
    /// How long ago it expired.
    pub expired_for: Duration,
}

enum Lookup<R> {
    Hit(R),
    Miss,
    Expired(ring::SlotId),
}

impl LocalCache {
    /// A cache of at most `max_size` entries whose entries live `default_ttl` unless a write
    /// says otherwise.
    ///
    /// For constant, known-good arguments: a zero `max_size` or `default_ttl` is raised to the
    /// smallest valid value (1 entry, 1 ms) with a `tracing` warning. Use
    /// [`builder`](Self::builder) to get an error instead.
    pub fn new(max_size: usize, default_ttl: Duration) -> Self {
        if max_size == 0 || default_ttl.is_zero() {
            tracing::warn!(
                max_size,
                ?default_ttl,
                "LocalCache::new: zero capacity or TTL raised to the minimum; use the builder to get an error"
            );
        }
        let built = Self::builder()
            .max_size(max_size.max(1))
            .default_ttl(default_ttl.max(Duration::from_millis(1)))
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
            current: SnapshotCell::new(Arc::new(Generation::new(
                0,
                config.max_size,
                duration_to_ticks(config.stale_grace),
            ))),
            next_generation: AtomicU64::new(1),
            fences: WriteFences::new(),
            stats: Stats::new(),
            clock: config.clock,
            capacity: config.max_size,
            default_ttl: config.default_ttl,
            stale_grace: config.stale_grace,
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
        self.with_generation(|g| g.map.len())
    }

    /// Runs `f` on the current generation. The cell always holds one (see
    /// `SnapshotCell::with`); the default result stands in for the impossible empty cell.
    #[inline]
    fn with_generation<R: Default>(&self, f: impl FnOnce(&Generation) -> R) -> R {
        self.current.with(f).unwrap_or_default()
    }

    /// True when no entry is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The clock this cache reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    #[inline]
    fn lookup<R>(
        &self,
        generation: &Generation,
        id: &str,
        now: Ticks,
        hit: impl FnOnce(&Entry) -> R,
    ) -> Lookup<R> {
        let found = generation.map.read(id, |e| {
            if !e.is_published() {
                Lookup::Miss
            } else if e.expires_at <= now {
                Lookup::Expired(e.slot)
            } else {
                e.touch();
                Lookup::Hit(hit(e))
            }
        });
        found.unwrap_or(Lookup::Miss)
    }

    /// Counts the outcome of one lookup and removes an entry found past its grace.
    #[inline]
    fn settle<R>(
        &self,
        generation: &Generation,
        id: &str,
        now: Ticks,
        found: Lookup<R>,
    ) -> Option<R> {
        match found {
            Lookup::Hit(r) => {
                self.stats.hit();
                Some(r)
            }
            Lookup::Miss => {
                self.stats.miss();
                None
            }
            Lookup::Expired(slot) => {
                self.stats.miss();
                if generation.remove_expired(id, slot, now) {
                    self.stats.add(Counter::Expirations, 1);
                }
                None
            }
        }
    }

    /// The owned answer for an entry: one `Arc` clone and one relaxed add; the times are
    /// computed from ticks, so no clock is read here.
    #[inline]
    fn cached_flag(&self, e: &Entry) -> CachedFlag {
        CachedFlag {
            definition: Arc::clone(&e.def),
            cached_at: self.clock.instant_at_or_start(e.cached_at),
            expires_at: self.clock.instant_at(e.expires_at),
            hit_count: e.record_hit(),
        }
    }

    /// The cached definition of `id`, now: no await, no I/O, no lock, no allocation (one
    /// `Arc` clone). Expired entries are misses.
    #[inline]
    pub fn get_now(&self, id: &str) -> Option<CachedFlag> {
        let now = self.clock.now();
        self.with_generation(|generation| {
            let found = self.lookup(generation, id, now, |e| self.cached_flag(e));
            self.settle(generation, id, now, found)
        })
    }

    /// Lends the cached definition of `id` to `f` without cloning anything: the hottest read.
    ///
    /// `f` runs inside the map's read guard; keep it short and do not call back into the cache
    /// from it.
    #[inline]
    pub fn get_with<R>(&self, id: &str, f: impl FnOnce(&FlagDefinition) -> R) -> Option<R> {
        let now = self.clock.now();
        self.with_generation(|generation| {
            let found = self.lookup(generation, id, now, |e| f(&e.def));
            self.settle(generation, id, now, found)
        })
    }

    /// The cached definitions of those `ids` that are cached, all from one snapshot.
    pub fn get_many_now(&self, ids: &[FlagId]) -> HashMap<FlagId, CachedFlag> {
        self.with_generation(|generation| self.get_many_in(generation, ids))
    }

    fn get_many_in(&self, generation: &Generation, ids: &[FlagId]) -> HashMap<FlagId, CachedFlag> {
        let now = self.clock.now();
        let mut out = HashMap::with_capacity(ids.len());
        let (mut hits, mut misses) = (0, 0);
        for id in ids {
            match self.lookup(generation, id.as_str(), now, |e| self.cached_flag(e)) {
                Lookup::Hit(flag) => {
                    hits += 1;
                    out.insert(id.clone(), flag);
                }
                Lookup::Miss => misses += 1,
                Lookup::Expired(slot) => {
                    misses += 1;
                    if generation.remove_expired(id.as_str(), slot, now) {
                        self.stats.add(Counter::Expirations, 1);
                    }
                }
            }
        }
        self.stats.hits_and_misses(hits, misses);
        out
    }

    /// A definition past its TTL but still within the stale grace (see the builder's
    /// `stale_grace`), for serving when every backend fails. Not counted as a hit or miss.
    pub fn get_stale(&self, id: &str) -> Option<StaleFlag> {
        let now = self.clock.now();
        self.with_generation(|generation| {
            generation
                .map
                .read(id, |e| {
                    let stale = e.is_published()
                        && e.expires_at <= now
                        && now < generation.evict_at(e.expires_at);
                    stale.then(|| StaleFlag {
                        flag: self.cached_flag(e),
                        expired_for: Duration::from_nanos(now - e.expires_at),
                    })
                })
                .flatten()
        })
    }

    fn times(&self, ttl: Option<Duration>) -> Result<EntryTimes> {
        let ttl = ttl.unwrap_or(self.default_ttl);
        if ttl.is_zero() {
            return Err(Error::invalid_config(
                "a TTL of zero would expire the entry at once",
            ));
        }
        let cached_at = self.clock.now();
        let expires_at = cached_at.saturating_add(duration_to_ticks(ttl));
        Ok(EntryTimes {
            cached_at,
            expires_at,
        })
    }

    /// Stores `def` under `id` for `ttl` (the default TTL when `None`).
    ///
    /// # Errors
    /// [`ErrorKind::StaleVersion`] when the cache holds a higher version of the flag (the
    /// write is refused and counted); [`ErrorKind::InvalidFlag`] when `id` is not `def.id`;
    /// [`ErrorKind::InvalidConfig`] for a zero `ttl`.
    pub fn try_set(&self, id: &FlagId, def: FlagDefinition, ttl: Option<Duration>) -> Result<()> {
        self.try_set_arc(id, Arc::new(def), ttl)
    }

    /// [`try_set`](Self::try_set) for a definition already in an `Arc` (no copy).
    pub fn try_set_arc(
        &self,
        id: &FlagId,
        def: Arc<FlagDefinition>,
        ttl: Option<Duration>,
    ) -> Result<()> {
        if def.id != *id {
            return Err(Error::invalid_flag(format!(
                "set under id `{id}` of a definition whose id is `{}`",
                def.id
            )));
        }
        let times = self.times(ttl)?;
        // Announce the write before touching the map, so fills that started earlier are dropped.
        self.fences.advance(id.as_str());
        let written = self
            .current
            .with(|g| g.write(id, def, times, Writer::Set, &self.stats));
        match written.unwrap_or(WriteResult::Dropped) {
            WriteResult::Stored | WriteResult::Dropped => {
                self.stats.add(Counter::Inserts, 1);
                Ok(())
            }
            WriteResult::Stale(cached) => {
                self.stats.add(Counter::StaleWritesRefused, 1);
                Err(Error::new(
                    ErrorKind::StaleVersion,
                    format!("flag `{id}`: the cache holds version {cached}, newer than the write"),
                ))
            }
            // A `set` is never fenced against itself.
            WriteResult::Overtaken => Ok(()),
        }
    }

    /// Stores several definitions; returns the first error after attempting all of them.
    pub fn try_set_many(
        &self,
        flags: Vec<(FlagId, FlagDefinition)>,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let mut first_error = None;
        for (id, def) in flags {
            if let Err(e) = self.try_set(&id, def, ttl) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Drops `id`. After this returns, no read that starts later returns the dropped definition,
    /// and no fill that started earlier can bring it back.
    pub fn invalidate_now(&self, id: &str) {
        self.fences.advance(id);
        if self.with_generation(|g| g.remove(id)) {
            self.stats.add(Counter::Invalidations, 1);
        }
    }

    /// Drops every id in `ids`.
    pub fn invalidate_many_now(&self, ids: &[FlagId]) {
        for id in ids {
            self.invalidate_now(id.as_str());
        }
    }

    /// Drops everything: swaps in an empty generation.
    pub fn clear_now(&self) {
        let old = self.swap_generation(self.empty_generation());
        self.stats.add(Counter::Invalidations, old as u64);
    }

    fn empty_generation(&self) -> Generation {
        Generation::new(0, self.capacity, duration_to_ticks(self.stale_grace))
    }

    fn swap_generation(&self, mut next: Generation) -> usize {
        next.id = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let old_len = self.len();
        self.current.store(Arc::new(next));
        old_len
    }

    /// Replaces the whole cached set with `defs` in one atomic step: a reader sees the old set or
    /// the new one, never a mix. Each entry gets the default TTL. For duplicate ids the highest
    /// version wins.
    ///
    /// # Errors
    /// [`ErrorKind::CapacityExceeded`] when `defs` holds more distinct flags than the capacity;
    /// the current set then stays as it was.
    pub fn replace_all(&self, defs: impl IntoIterator<Item = FlagDefinition>) -> Result<()> {
        let mut latest: HashMap<FlagId, FlagDefinition> = HashMap::new();
        for def in defs {
            match latest.get(&def.id) {
                Some(have) if have.version >= def.version => {}
                _ => {
                    latest.insert(def.id.clone(), def);
                }
            }
        }
        if latest.len() > self.capacity {
            return Err(Error::new(
                ErrorKind::CapacityExceeded,
                format!(
                    "replace_all of {} flags into a cache of capacity {}; the current set is kept",
                    latest.len(),
                    self.capacity
                ),
            ));
        }
        let times = self.times(None)?;
        let next = self.empty_generation();
        for (id, def) in latest {
            // A fresh ring with room for every flag: no eviction, no contention.
            let _ = next.write(&id, Arc::new(def), times, Writer::Set, &self.stats);
        }
        let count = next.map.len() as u64;
        self.swap_generation(next);
        self.stats.add(Counter::Inserts, count);
        Ok(())
    }

    /// Starts a read-through fill of `id`: take the ticket *before* fetching from L2 or L3.
    pub fn begin_fill(&self, id: &str) -> FillTicket {
        let stripe = self.fences.stripe_of(id);
        FillTicket {
            // No generation has id `u64::MAX`: a ticket that can never install.
            generation: self.current.with(|g| g.id).unwrap_or(u64::MAX),
            stripe,
            fence: self.fences.read(stripe),
        }
    }

    /// Installs a definition fetched under `ticket`, unless a write to the flag or a snapshot
    /// swap happened since the ticket, or the cache already holds a newer version.
    pub fn complete_fill(
        &self,
        ticket: &FillTicket,
        def: Arc<FlagDefinition>,
        ttl: Option<Duration>,
    ) -> FillOutcome {
        let Ok(times) = self.times(ttl) else {
            self.stats.add(Counter::FillsRefused, 1);
            return FillOutcome::Overtaken;
        };
        let id = def.id.clone();
        let written = self.current.with(|generation| {
            if generation.id != ticket.generation {
                return WriteResult::Overtaken;
            }
            let writer = Writer::Fill(ticket, &self.fences);
            generation.write(&id, def, times, writer, &self.stats)
        });
        match written.unwrap_or(WriteResult::Overtaken) {
            WriteResult::Stored | WriteResult::Dropped => {
                self.stats.add(Counter::Inserts, 1);
                FillOutcome::Installed
            }
            WriteResult::Stale(v) => FillOutcome::Superseded(v),
            WriteResult::Overtaken => {
                self.stats.add(Counter::FillsRefused, 1);
                FillOutcome::Overtaken
            }
        }
    }

    /// Counters since the cache was built.
    pub fn stats_now(&self) -> CacheStats {
        let mut s = self.stats.snapshot();
        s.size = self.len();
        s.capacity = self.capacity;
        s
    }

    /// Examines the next `SWEEP_STEP` slots of the ring for expired entries; returns the number
    /// removed and whether the step finished a pass over the ring.
    pub(crate) fn sweep_step(&self) -> (u64, bool) {
        let now = self.clock.now();
        let (expired, pass_done) = self.with_generation(|generation| {
            let n = generation.ring.capacity();
            let start = self.sweep_cursor.fetch_add(SWEEP_STEP, Ordering::Relaxed) % n;
            (
                generation.sweep(start, SWEEP_STEP, now),
                start + SWEEP_STEP >= n,
            )
        });
        if expired > 0 {
            self.stats.add(Counter::Expirations, expired);
        }
        (expired, pass_done)
    }

    /// Entries whose slot is published, counted the slow way (tests and model checks).
    #[cfg(any(test, fuzzing, flagcache_loom))]
    pub(crate) fn live_slots(&self) -> usize {
        self.with_generation(|g| g.ring.live_count())
    }

    /// The ids in the map now, published or not (tests and model checks).
    #[cfg(any(test, fuzzing, flagcache_loom))]
    pub(crate) fn map_len(&self) -> usize {
        self.with_generation(|g| {
            let mut n = 0;
            g.map.for_each(|_, _| n += 1);
            n
        })
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

fn report(op: &str, result: Result<()>) {
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
mod tests {
    //! Operation sequences against a model (proptest), with the internal invariants checked
    //! after every step.
    use super::*;
    use crate::time::MockClock;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Set(u8, u64, Option<u16>),
        Get(u8),
        Invalidate(u8),
        Fill(u8, u64),
        FillOvertakenBySet(u8, u64, u64),
        Advance(u16),
        Clear,
        ReplaceAll(Vec<(u8, u64)>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..12u8, 1..6u64, proptest::option::of(1..3_000u16)).prop_map(|(k, v, t)| Op::Set(k, v, t)),
            4 => (0..12u8).prop_map(Op::Get),
            2 => (0..12u8).prop_map(Op::Invalidate),
            2 => (0..12u8, 1..6u64).prop_map(|(k, v)| Op::Fill(k, v)),
            1 => (0..12u8, 1..6u64, 1..6u64).prop_map(|(k, a, b)| Op::FillOvertakenBySet(k, a, b)),
            2 => (0..2_000u16).prop_map(Op::Advance),
            1 => Just(Op::Clear),
            1 => proptest::collection::vec((0..12u8, 1..6u64), 0..8).prop_map(Op::ReplaceAll),
        ]
    }

    fn key(k: u8) -> FlagId {
        FlagId::new(format!("k{k}"))
    }

    fn def(k: u8, version: u64) -> FlagDefinition {
        match FlagDefinition::new_boolean(key(k).as_str(), "model", false) {
            Ok(d) => d.with_version(version),
            Err(e) => panic!("{e}"),
        }
    }

    /// The model: what is in the map (expired or not), as (version, expires_at in ms).
    #[derive(Default)]
    struct Model {
        entries: HashMap<u8, (u64, u64)>,
        now_ms: u64,
    }

    const TTL_MS: u64 = 1_000;

    fn check_internals(cache: &LocalCache) {
        let live = cache.live_slots();
        let entries = cache.map_len();
        assert!(
            entries <= live,
            "{entries} entries but {live} published slots"
        );
        assert!(live <= cache.capacity());
    }

    fn run(ops: Vec<Op>, capacity: usize) {
        let mock = MockClock::new();
        let cache = match LocalCache::builder()
            .max_size(capacity)
            .default_ttl(Duration::from_millis(TTL_MS))
            .clock(Clock::mock(&mock))
            .build()
        {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let exact = capacity >= 12;
        let mut m = Model::default();
        for op in ops {
            match op {
                Op::Set(k, v, ttl) => {
                    let ttl_ms = ttl.map_or(TTL_MS, u64::from);
                    let result = cache.try_set(
                        &key(k),
                        def(k, v),
                        ttl.map(|t| Duration::from_millis(t.into())),
                    );
                    let refused = m.entries.get(&k).is_some_and(|(have, _)| *have > v);
                    if exact {
                        assert_eq!(result.is_err(), refused, "set k{k} v{v}");
                    }
                    // With eviction the cache may have forgotten a higher version: follow it.
                    if result.is_ok() {
                        m.entries.insert(k, (v, m.now_ms + ttl_ms));
                    }
                }
                Op::Get(k) => {
                    let got = cache.get_now(key(k).as_str()).map(|f| f.definition.version);
                    let want = match m.entries.get(&k) {
                        Some(&(v, exp)) if m.now_ms < exp => Some(v),
                        Some(_) => {
                            m.entries.remove(&k);
                            None
                        }
                        None => None,
                    };
                    if exact {
                        assert_eq!(got, want, "get k{k}");
                    } else if let Some(v) = got {
                        // Evictions may lose entries, never invent or regress them.
                        assert_eq!(Some(v), want, "get k{k} returned what the model lacks");
                    }
                }
                Op::Invalidate(k) => {
                    cache.invalidate_now(key(k).as_str());
                    m.entries.remove(&k);
                    assert!(cache.get_now(key(k).as_str()).is_none());
                }
                Op::Fill(k, v) => {
                    let ticket = cache.begin_fill(key(k).as_str());
                    let outcome = cache.complete_fill(&ticket, Arc::new(def(k, v)), None);
                    let superseded = m.entries.get(&k).is_some_and(|(have, _)| *have > v);
                    if exact {
                        assert_eq!(
                            outcome == FillOutcome::Installed,
                            !superseded,
                            "fill k{k} v{v}"
                        );
                    }
                    if outcome == FillOutcome::Installed {
                        m.entries.insert(k, (v, m.now_ms + TTL_MS));
                    }
                }
                Op::FillOvertakenBySet(k, fill_v, set_v) => {
                    let ticket = cache.begin_fill(key(k).as_str());
                    let set_ok = cache.try_set(&key(k), def(k, set_v), None).is_ok();
                    let outcome = cache.complete_fill(&ticket, Arc::new(def(k, fill_v)), None);
                    assert_ne!(
                        outcome,
                        FillOutcome::Installed,
                        "an overtaken fill installed"
                    );
                    if set_ok {
                        m.entries.insert(k, (set_v, m.now_ms + TTL_MS));
                    }
                }
                Op::Advance(ms) => {
                    mock.advance(Duration::from_millis(ms.into()));
                    m.now_ms += u64::from(ms);
                }
                Op::Clear => {
                    cache.clear_now();
                    m.entries.clear();
                    assert_eq!(cache.len(), 0);
                }
                Op::ReplaceAll(set) => {
                    let mut next: HashMap<u8, u64> = HashMap::new();
                    for &(k, v) in &set {
                        let e = next.entry(k).or_insert(v);
                        *e = (*e).max(v);
                    }
                    let result = cache.replace_all(set.iter().map(|&(k, v)| def(k, v)));
                    if next.len() > capacity {
                        assert!(result.is_err());
                    } else {
                        assert!(result.is_ok());
                        m.entries = next
                            .into_iter()
                            .map(|(k, v)| (k, (v, m.now_ms + TTL_MS)))
                            .collect();
                    }
                }
            }
            check_internals(&cache);
            if exact {
                let stats = cache.stats_now();
                assert_eq!(stats.size, m.entries.len(), "size");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn matches_the_model_without_eviction(ops in proptest::collection::vec(op(), 1..60)) {
            run(ops, 16);
        }

        #[test]
        fn keeps_its_invariants_under_eviction(ops in proptest::collection::vec(op(), 1..80)) {
            run(ops, 3);
        }
    }

    #[test]
    fn sweep_step_removes_expired_entries_and_counts_them() {
        let mock = MockClock::new();
        let cache = LocalCache::builder()
            .max_size(3_000)
            .default_ttl(Duration::from_secs(1))
            .clock(Clock::mock(&mock))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        for k in 0..2_500u32 {
            let id = FlagId::new(format!("f{k}"));
            let d = FlagDefinition::new_boolean(id.as_str(), "x", true)
                .unwrap_or_else(|e| panic!("{e}"));
            cache
                .try_set(&id, d, None)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        mock.advance(Duration::from_secs(2));
        let mut passes = 0;
        let mut removed = 0;
        while passes < 2 {
            let (n, done) = cache.sweep_step();
            removed += n;
            if done {
                passes += 1;
            }
        }
        assert_eq!(removed, 2_500);
        assert_eq!(cache.stats_now().expirations, 2_500);
        assert_eq!(cache.len(), 0);
        check_internals(&cache);
    }
}
