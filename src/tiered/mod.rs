//! [`TieredCache`]: L1 ([`LocalCache`]) in front of L2 (Redis) in front of L3 (a
//! [`FlagSource`]), read through with one load per flag however many callers miss at once.
//!
//! A read that misses L1 joins the flag's flight (`flight`): its leader takes an L1 fill ticket
//! (so a write or invalidate racing with the load wins), asks L2, then L3 for what L2 lacks,
//! fills the layers above, and lands the outcome for its followers. A flag absent everywhere
//! is remembered as absent for a short time (`deadlines`); when the backends fail, the last
//! known definition is served up to `max_stale`, and the flag is not retried for a while.
//! Writes are in `write`, refresh-ahead in `refresh`, cross-instance notices in `backplane`.

mod backplane;
mod builder;
mod deadlines;
pub(crate) mod flight;
mod l2;
mod refresh;
mod source;
mod stats;
mod store;
mod write;

pub use backplane::BackplaneTask;
pub use builder::TieredCacheBuilder;
pub use refresh::RefreshTask;
pub use source::FlagSource;
pub use stats::TieredStats;
pub use store::{FlagStore, SetManyOutcome, Subscription};

use crate::cache::{CacheStats, CachedFlag, FlagCache};
use crate::error::{Error, ErrorKind, Result};
use crate::flag::{FlagDefinition, FlagId};
use crate::local::{CleanupTask, FillOutcome, FillTicket, LocalCache};
use crate::sync::Arc;
use crate::time::{Ticks, duration_to_ticks};
use deadlines::Deadlines;
use flight::{Flights, Role};
use l2::L2;
use source::DynSource;
use stats::{Counters, add};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// A [`FlagCache`] over three layers: L1 in process, L2 in Redis (optional, feature `redis`),
/// L3 the source of truth (optional). Build it with [`TieredCache::builder`] or
/// [`TieredCache::new`].
///
/// - Reads through: L1, then L2, then L3; what a lower layer answers fills the layers above.
/// - One load per flag: concurrent misses of a flag wait for one L2 read and at most one L3
///   load; if the caller doing the load is cancelled, a waiting one takes over.
/// - No resurrection: a load that started before a write or invalidate of the flag never
///   installs its older definition in L1; writes go to L2 first, then L1.
/// - Negative caching: a flag absent everywhere is answered "absent" for `negative_ttl`
///   without asking L2 or L3.
/// - Fail-safe: when the backends fail, the last known definition is served for up to
///   `max_stale` after it expired, and the flag's backends are not asked again for
///   `retry_after`.
/// - [`get_now`](Self::get_now) and [`get_with`](Self::get_with) never wait: L1 only, and a
///   miss starts the load in the background.
/// - Refresh-ahead ([`start_refresh_task`](Self::start_refresh_task)): entries read since they
///   were written are reloaded in batches before they expire; cold entries expire.
/// - Backplane ([`start_backplane`](Self::start_backplane)): writes publish notices on Redis
///   pub/sub; other instances drop their stale L1 copies, and revalidate L1 after the
///   subscription comes back.
pub struct TieredCache {
    l1: Arc<LocalCache>,
    l2: Option<L2>,
    source: Option<Box<dyn DynSource>>,
    flights: Arc<Flights<Landing>>,
    /// Flags found absent everywhere, until when.
    absent: Deadlines,
    /// Flags whose backends failed, and until when they are not asked again.
    cooldown: Deadlines,
    l1_ttl: Duration,
    l2_ttl: Duration,
    negative_ttl: Duration,
    max_stale: Duration,
    retry_after: Duration,
    /// Entries read since written that expire within this are reloaded ahead of expiry.
    refresh_window: Duration,
    /// How long an invalidate's L2 tombstone refuses older write-backs.
    tombstone_ttl: Duration,
    /// This instance's id on the backplane.
    origin: String,
    counters: Counters,
    /// The runtime the cache was built in: where `get_now` starts its background loads, even
    /// when called from a thread outside the runtime.
    runtime: Option<tokio::runtime::Handle>,
    /// Sweeps L1 and keeps its coarse clock; stops when the cache drops.
    _cleanup: Option<CleanupTask>,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("l1_len", &self.l1.len())
            .field("has_l2", &self.l2.is_some())
            .field("has_source", &self.source.is_some())
            .finish_non_exhaustive()
    }
}

/// What one flight lands, for its leader and followers alike.
#[derive(Clone)]
enum Landing {
    Found(CachedFlag),
    /// The backends failed; this is the last known definition, expired less than `max_stale`
    /// ago.
    Stale(CachedFlag),
    Absent,
    Failed,
}

impl TieredCache {
    /// L1 of `l1_size` flags living `l1_ttl`, and, given a URL, L2 on that Redis (prefix
    /// `flagcache`) with entries living `l2_ttl`; no L3 (use the builder's `source`).
    ///
    /// # Errors
    /// See [`TieredCacheBuilder::build`]: a bad URL is an error, never a missing L2.
    pub fn new(
        l1_size: usize,
        l1_ttl: Duration,
        redis_url: Option<&str>,
        l2_ttl: Duration,
    ) -> Result<Self> {
        let builder = Self::builder()
            .l1_size(l1_size)
            .l1_ttl(l1_ttl)
            .l2_ttl(l2_ttl);
        match redis_url {
            Some(url) => builder.redis_url(url),
            None => builder,
        }
        .build()
    }

    /// A builder with the defaults.
    pub fn builder() -> TieredCacheBuilder {
        TieredCacheBuilder::new()
    }

    /// L1.
    pub fn l1(&self) -> &LocalCache {
        &self.l1
    }

    /// L2, when there is one.
    #[cfg(all(feature = "redis", not(flagcache_loom)))]
    pub fn l2(&self) -> Option<&crate::RedisCache> {
        self.l2.as_ref().map(L2::redis)
    }

    /// The counters of every layer.
    pub fn tiered_stats(&self) -> TieredStats {
        #[allow(unused_mut)] // without the `redis` feature there is nothing more to add
        let mut s = self.counters.snapshot(self.l1.stats_now());
        #[cfg(all(feature = "redis", not(flagcache_loom)))]
        {
            s.l2 = self.l2.as_ref().map(|l2| l2.redis().redis_stats());
        }
        s
    }

    /// The definition of `id` from L1 only, without waiting for anything. On a miss, the load
    /// through L2 and L3 starts in the background (on the tokio runtime the cache was built in;
    /// the caller may be any thread) and a later read finds it; meanwhile the last known
    /// definition is returned if it expired less than `max_stale` ago.
    pub fn get_now(self: &Arc<Self>, id: &FlagId) -> Option<CachedFlag> {
        if let Some(hit) = self.l1.get_now(id.as_str()) {
            return Some(hit);
        }
        let now = self.now();
        if self.known_absent(id.as_str(), now) {
            return None;
        }
        if !self.cooldown.active(id.as_str(), now) {
            if let Some(runtime) = &self.runtime {
                // Joined here, not in the task: a burst of misses starts one task, not one each.
                if let Role::Leader(leader) = self.flights.join(id) {
                    let this = Arc::clone(self);
                    let id = id.clone();
                    runtime.spawn(async move {
                        let landing = this.load(&id).await;
                        leader.land(landing);
                    });
                }
            }
        }
        let stale = self.stale(id);
        self.answer(match stale {
            Some(flag) => Landing::Stale(flag),
            None => Landing::Failed,
        })
    }

    /// Lends the definition of `id` to `f`, from L1 only, without cloning or waiting: the
    /// evaluator's hot path. On a miss it behaves as [`get_now`](Self::get_now) (a background
    /// load, and the last known definition if it expired less than `max_stale` ago); a miss of
    /// a flag known to be absent allocates nothing.
    pub fn get_with<R>(self: &Arc<Self>, id: &str, f: impl Fn(&FlagDefinition) -> R) -> Option<R> {
        if let Some(r) = self.l1.get_with(id, &f) {
            return Some(r);
        }
        if self.known_absent(id, self.now()) {
            return None;
        }
        self.get_now(&FlagId::new(id))
            .map(|flag| f(&flag.definition))
    }

    /// Loads every definition from the source (or, without one, from L2) and makes it L1's
    /// whole content (one [`LocalCache::replace_all`]); returns how many. Call it at start-up,
    /// before serving.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] with neither a source nor L2; the layer's error; L1's
    /// [`ErrorKind::CapacityExceeded`] when the set is larger than L1.
    pub async fn warm_up(&self) -> Result<usize> {
        let defs = match (&self.source, &self.l2) {
            (Some(source), _) => {
                add(&self.counters.l3_loads, 1);
                source.load_all().await.inspect_err(|_| {
                    add(&self.counters.l3_errors, 1);
                })?
            }
            (None, Some(l2)) => l2.load_all().await?,
            (None, None) => {
                return Err(Error::invalid_config(
                    "warm_up needs a FlagSource (builder.source) or an L2",
                ));
            }
        };
        let n = defs.len();
        self.l1.replace_all(defs)?;
        for cleared in [&self.absent, &self.cooldown] {
            cleared.clear_all();
        }
        Ok(n)
    }

    /// Reads `id` through the layers.
    pub async fn get_flag(&self, id: &FlagId) -> Option<CachedFlag> {
        if let Some(hit) = self.l1.get_now(id.as_str()) {
            return Some(hit);
        }
        let now = self.now();
        if self.known_absent(id.as_str(), now) {
            return None;
        }
        if self.cooldown.active(id.as_str(), now) {
            let stale = self.stale(id);
            return self.answer(stale.map_or(Landing::Failed, Landing::Stale));
        }
        loop {
            match self.flights.join(id) {
                Role::Leader(leader) => {
                    let landing = self.load(id).await;
                    leader.land(landing.clone());
                    return self.answer(landing);
                }
                Role::Follower(flight) => {
                    add(&self.counters.coalesced_waits, 1);
                    if let Some(landing) = flight.wait().await {
                        return self.answer(landing);
                    }
                    // The leader was cancelled: join again (one of us leads the next flight).
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Reads every id in `ids`: one L1 pass, then one L2 `MGET` and one source `load_many` for
    /// what the layers above lacked.
    pub async fn get_many_flags(&self, ids: &[FlagId]) -> HashMap<FlagId, CachedFlag> {
        let mut out = self.l1.get_many_now(ids);
        let now = self.now();
        let mut seen = HashSet::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            if out.contains_key(id) || !seen.insert(id) {
                continue;
            }
            if self.absent.active(id.as_str(), now) {
                add(&self.counters.negative_hits, 1);
            } else if self.cooldown.active(id.as_str(), now) {
                if let Some(flag) = self.stale(id) {
                    add(&self.counters.stale_serves, 1);
                    out.insert(id.clone(), flag);
                }
            } else {
                missing.push((id.clone(), self.l1.begin_fill(id.as_str())));
            }
        }
        if !missing.is_empty() {
            for (id, landing) in self.load_many(missing).await {
                let stale = matches!(landing, Landing::Stale(_));
                if let Landing::Found(flag) | Landing::Stale(flag) = landing {
                    if stale {
                        add(&self.counters.stale_serves, 1);
                    }
                    out.insert(id, flag);
                }
            }
        }
        let answered = ids.iter().filter(|id| out.contains_key(*id)).count();
        add(&self.counters.misses, (ids.len() - answered) as u64);
        out
    }

    fn now(&self) -> Ticks {
        self.l1.clock().now()
    }

    /// True (and counted as a negative-cache answer and a miss) while `id` is known absent.
    fn known_absent(&self, id: &str, now: Ticks) -> bool {
        let absent = self.absent.active(id, now);
        if absent {
            add(&self.counters.negative_hits, 1);
            add(&self.counters.misses, 1);
        }
        absent
    }

    fn forget_deadlines(&self, id: &FlagId) {
        self.absent.clear(id.as_str());
        self.cooldown.clear(id.as_str());
    }

    /// Counts a landing as the reader's answer.
    fn answer(&self, landing: Landing) -> Option<CachedFlag> {
        match landing {
            Landing::Found(flag) => Some(flag),
            Landing::Stale(flag) => {
                add(&self.counters.stale_serves, 1);
                Some(flag)
            }
            Landing::Absent | Landing::Failed => {
                add(&self.counters.misses, 1);
                None
            }
        }
    }

    /// The last known definition of `id`, if it expired less than `max_stale` ago.
    fn stale(&self, id: &FlagId) -> Option<CachedFlag> {
        self.l1
            .get_stale(id.as_str())
            .filter(|s| s.expired_for <= self.max_stale)
            .map(|s| s.flag)
    }

    /// The leader's load of one flag: L2, then L3, filling the layers above.
    async fn load(&self, id: &FlagId) -> Landing {
        let ticket = self.l1.begin_fill(id.as_str());
        // Another flight may have filled L1 between this caller's miss and its joining.
        if let Some(hit) = self.l1.get_now(id.as_str()) {
            return Landing::Found(hit);
        }
        let mut l2_failed = false;
        if let Some(l2) = &self.l2 {
            match l2.get(id).await {
                Ok(Some(flag)) => {
                    add(&self.counters.l2_fills, 1);
                    self.fill_l1(&ticket, &flag);
                    return Landing::Found(flag);
                }
                Ok(None) => {}
                // A corrupt value: the source's answer will overwrite it.
                Err(e) if e.kind() == ErrorKind::Corrupt => {}
                Err(_) => l2_failed = true,
            }
        }
        let Some(source) = &self.source else {
            return if l2_failed {
                self.fail(id)
            } else {
                self.mark_absent(id)
            };
        };
        add(&self.counters.l3_loads, 1);
        match source.load(id).await {
            Ok(Some(def)) => {
                add(&self.counters.l3_fills, 1);
                let flag = CachedFlag::new(Arc::new(def));
                // L1 first: a write or invalidate that raced with the load has fenced it, and
                // then L2 must not get the loaded definition either.
                if self.fill_l1(&ticket, &flag) && !l2_failed {
                    if let Some(l2) = &self.l2 {
                        // Only where the key is still absent: not over a write made since
                        // L2 was read, nor over an invalidate's tombstone.
                        let back = [(id.clone(), FlagDefinition::clone(&flag.definition))];
                        let _ = l2.fill_many(&back, self.l2_ttl).await;
                    }
                }
                Landing::Found(flag)
            }
            Ok(None) => self.mark_absent(id),
            Err(e) => {
                add(&self.counters.l3_errors, 1);
                tracing::warn!(error = %e, flag = %id, "flag source failed; serving stale if known");
                self.fail(id)
            }
        }
    }

    /// The batch load of [`get_many_flags`](Self::get_many_flags) and of refresh passes: one
    /// `MGET`, one `load_many` for what L2 lacked, filling the layers above. Returns what each
    /// flag landed as.
    async fn load_many(&self, missing: Vec<(FlagId, FillTicket)>) -> Vec<(FlagId, Landing)> {
        let mut landed = Vec::with_capacity(missing.len());
        let mut l2_failed = false;
        let mut rest = missing;
        if let Some(l2) = &self.l2 {
            let ids: Vec<FlagId> = rest.iter().map(|(id, _)| id.clone()).collect();
            match l2.get_many(&ids).await {
                Ok(found) => {
                    add(&self.counters.l2_fills, found.len() as u64);
                    rest.retain(|(id, ticket)| match found.get(id) {
                        Some(flag) => {
                            self.fill_l1(ticket, flag);
                            landed.push((id.clone(), Landing::Found(flag.clone())));
                            false
                        }
                        None => true,
                    });
                }
                Err(_) => l2_failed = true,
            }
        }
        if rest.is_empty() {
            return landed;
        }
        let Some(source) = &self.source else {
            for (id, _) in rest {
                let landing = if l2_failed {
                    self.fail(&id)
                } else {
                    self.mark_absent(&id)
                };
                landed.push((id, landing));
            }
            return landed;
        };
        let ids: Vec<FlagId> = rest.iter().map(|(id, _)| id.clone()).collect();
        add(&self.counters.l3_loads, 1);
        match source.load_many(&ids).await {
            Ok(mut found) => {
                add(&self.counters.l3_fills, found.len() as u64);
                let mut write_back = Vec::new();
                for (id, ticket) in rest {
                    let landing = match found.remove(&id) {
                        Some(def) => {
                            let flag = CachedFlag::new(Arc::new(def));
                            // As in `load`: only what L1 took (no write raced) goes to L2.
                            if self.fill_l1(&ticket, &flag) {
                                let def = FlagDefinition::clone(&flag.definition);
                                write_back.push((id.clone(), def));
                            }
                            Landing::Found(flag)
                        }
                        None => self.mark_absent(&id),
                    };
                    landed.push((id, landing));
                }
                if let (Some(l2), false, false) = (&self.l2, l2_failed, write_back.is_empty()) {
                    let _ = l2.fill_many(&write_back, self.l2_ttl).await;
                }
            }
            Err(e) => {
                add(&self.counters.l3_errors, 1);
                tracing::warn!(error = %e, flags = ids.len(), "flag source failed; serving stale if known");
                for (id, _) in rest {
                    let landing = self.fail(&id);
                    landed.push((id, landing));
                }
            }
        }
        landed
    }

    /// Fills L1 under `ticket`; false when the fill was dropped (and counted by L1) because a
    /// write raced with the load, or L1 holds a newer version.
    fn fill_l1(&self, ticket: &FillTicket, flag: &CachedFlag) -> bool {
        let def = Arc::clone(&flag.definition);
        let outcome = self.l1.complete_fill(ticket, def, Some(self.l1_ttl));
        matches!(outcome, FillOutcome::Installed)
    }

    fn mark_absent(&self, id: &FlagId) -> Landing {
        self.absent.set(
            id,
            self.now()
                .saturating_add(duration_to_ticks(self.negative_ttl)),
        );
        Landing::Absent
    }

    /// The backends failed for `id`: do not ask them again for `retry_after`, and serve the
    /// last known definition if it is recent enough.
    fn fail(&self, id: &FlagId) -> Landing {
        self.cooldown.set(
            id,
            self.now()
                .saturating_add(duration_to_ticks(self.retry_after)),
        );
        self.stale(id).map_or(Landing::Failed, Landing::Stale)
    }
}

fn report(op: &str, result: Result<()>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "TieredCache::{op} failed");
    }
}

impl FlagCache for TieredCache {
    async fn get(&self, flag_id: &FlagId) -> Option<CachedFlag> {
        self.get_flag(flag_id).await
    }

    async fn get_many(&self, flag_ids: &[FlagId]) -> HashMap<FlagId, CachedFlag> {
        self.get_many_flags(flag_ids).await
    }

    async fn set(&self, flag_id: &FlagId, flag: FlagDefinition, ttl: Option<Duration>) {
        report("set", self.try_set(flag_id, flag, ttl).await);
    }

    async fn set_many(&self, flags: Vec<(FlagId, FlagDefinition)>, ttl: Option<Duration>) {
        report("set_many", self.try_set_many(flags, ttl).await);
    }

    async fn invalidate(&self, flag_id: &FlagId) {
        report("invalidate", self.try_invalidate(flag_id).await);
    }

    async fn invalidate_many(&self, flag_ids: &[FlagId]) {
        report("invalidate_many", self.try_invalidate_many(flag_ids).await);
    }

    async fn clear(&self) {
        report("clear", self.try_clear().await);
    }

    /// Reads answered by any layer are hits (L1 hits, L2 and L3 fills, stale serves); reads no
    /// layer answered are misses; the rest is L1's. Per-layer counters:
    /// [`TieredCache::tiered_stats`].
    async fn stats(&self) -> CacheStats {
        let s = self.tiered_stats();
        let hits = s.l1.hits + s.l2_fills + s.l3_fills + s.stale_serves;
        CacheStats {
            hits,
            misses: s.misses,
            hit_rate: CacheStats::ratio(hits, s.misses),
            ..s.l1
        }
    }
}
