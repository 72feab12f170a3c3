//! [`TieredCache`]: L1 ([`LocalCache`]) in front of L2 (a [`FlagStore`]: Redis, or memory) in
//! front of L3 (a [`FlagSource`]), read through with one load per flag however many callers
//! miss at once.
//!
//! The handle is a cheap `Clone` over [`Inner`], which is made of components with one job
//! each: the [`Policy`](policy) (every duration and limit), the read-through state
//! ([`readthrough`]: flights, absent flags, the retry throttle, the bound on background
//! loads), the one batch load path ([`load`]), the writes ([`write`]), refresh-ahead
//! ([`refresh`]), warm-up ([`warm`]), the backplane ([`backplane`]: publishing, subscribing,
//! applying notices), and the bounded layers ([`l2`], [`l3`]). The protocols and their
//! invariants are described in `docs/architecture.md`.

mod backplane;
mod builder;
mod changes;
mod deadlines;
mod feed;
pub(crate) mod flight;
mod l2;
mod l3;
mod load;
#[cfg(feature = "metrics")]
mod metrics;
mod policy;
mod readiness;
mod readthrough;
mod refill;
mod refresh;
mod snapshot;
mod source;
mod stats;
pub(crate) mod store;
mod warm;
mod write;

pub use backplane::BackplaneTask;
pub use builder::TieredCacheBuilder;
pub use changes::{Change, ChangeFeed};
pub use feed::ChangeFeedTask;
#[cfg(feature = "metrics")]
pub use metrics::MetricsTask;
pub use readiness::{Readiness, SourceError};
pub use refresh::RefreshTask;
pub use snapshot::SnapshotTask;
pub use source::FlagSource;
pub use stats::TieredStats;
pub use store::{FlagStore, SetManyOutcome, Subscription};

use crate::cache::{CacheStats, CachedFlag, FlagCache};
use crate::error::Result;
use crate::flag::{FlagDefinition, FlagId};
use crate::local::{CleanupTask, LocalCache};
use crate::sync::Arc;
use crate::time::Ticks;
use backplane::Backplane;
use feed::Feed;
use flight::Role;
use l2::L2;
use l3::L3;
use policy::Policy;
use readiness::Health;
pub(crate) use readthrough::Landing;
use readthrough::ReadThrough;
use snapshot::{SnapshotFile, SnapshotState};
use stats::{Counters, add};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use warm::WarmUpLog;

/// A [`FlagCache`] over three layers: L1 in process, L2 shared by the fleet (a [`FlagStore`]:
/// Redis or memory; optional), L3 the source of truth (optional). Build it with
/// [`TieredCache::builder`] or [`TieredCache::new`]. A cheap `Clone` handle: clones share
/// the cache.
///
/// - Reads through: L1, then L2, then L3; what a lower layer answers fills the layers above.
/// - One load per flag: concurrent misses of a flag wait for one L2 read and at most one L3
///   load; if the caller doing the load is cancelled, a waiting one takes over. A write,
///   invalidate or backplane notice detaches the flag's load, so later readers load afresh.
/// - No resurrection: a load that started before a write, invalidate or notice of the flag
///   never installs its older definition in L1, nor writes it back to L2.
/// - Negative caching: a flag absent everywhere is answered "absent" for `negative_ttl`
///   without asking L2 or L3.
/// - Fail-safe: when the backends fail or time out, the last known definition is served for
///   up to `max_stale` after it expired, and the flag's backends are not asked again for
///   `retry_after`.
/// - [`get_now`](Self::get_now) and [`get_with`](Self::get_with) never wait: L1 only, and a
///   miss starts the load in the background (at most `max_background_loads` at once).
/// - Refresh-ahead ([`start_refresh_task`](Self::start_refresh_task)): entries read since they
///   were written are reloaded in batches before they expire; cold entries expire.
/// - Backplane ([`start_backplane`](Self::start_backplane)): writes publish notices through
///   L2; other instances drop their stale L1 copies, and revalidate L1 after the
///   subscription comes back.
#[derive(Clone)]
pub struct TieredCache {
    inner: Arc<Inner>,
}

/// The flag id `check_readiness` reads from L2: its answer does not matter, only that L2
/// answers.
const READINESS_PROBE: &str = "flagcache.readiness-probe";

/// The cache behind the handles.
pub(crate) struct Inner {
    policy: Policy,
    l1: Arc<LocalCache>,
    l2: Option<L2>,
    l3: Option<L3>,
    reads: ReadThrough,
    backplane: Backplane,
    feed: Feed,
    /// Where the snapshot file is, if there is one, and what was written to it.
    snapshot: Option<SnapshotFile>,
    snapshot_state: SnapshotState,
    /// The last sentinel seen in L2 (see `refill`).
    sentinel_seen: refill::SentinelSeen,
    warm_log: WarmUpLog,
    counters: Counters,
    /// What the layers recorded for [`TieredCache::readiness`].
    health: Arc<Health>,
    /// The runtime the cache was built in: where background loads and tasks run, even when
    /// the caller is a thread outside the runtime.
    runtime: Option<tokio::runtime::Handle>,
    /// Sweeps L1 and keeps its coarse clock; stops when the cache drops.
    _cleanup: Option<CleanupTask>,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("l1_len", &self.inner.l1.len())
            .field("has_l2", &self.inner.l2.is_some())
            .field("has_source", &self.inner.l3.is_some())
            .finish_non_exhaustive()
    }
}

impl Inner {
    pub(crate) fn new(
        policy: Policy,
        l1: Arc<LocalCache>,
        mut l2: Option<L2>,
        mut l3: Option<L3>,
        runtime: Option<tokio::runtime::Handle>,
        cleanup: Option<CleanupTask>,
    ) -> Self {
        let health = Arc::new(Health::default());
        if let Some(l2) = &mut l2 {
            l2.bound_by(&policy);
            l2.report_to(Arc::clone(&health));
        }
        if let Some(l3) = &mut l3 {
            l3.bound_by(&policy);
            l3.report_to(Arc::clone(&health));
        }
        Self {
            health,
            reads: ReadThrough::new(&policy),
            backplane: Backplane::new(&policy),
            feed: Feed::default(),
            snapshot: None,
            snapshot_state: SnapshotState::default(),
            sentinel_seen: refill::SentinelSeen::default(),
            warm_log: WarmUpLog::default(),
            policy,
            l1,
            l2,
            l3,
            counters: Counters::default(),
            runtime,
            _cleanup: cleanup,
        }
    }

    fn now(&self) -> Ticks {
        self.l1.clock().now()
    }

    /// L2's key prefix, when L2 is a `RedisCache`.
    fn l2_prefix(&self) -> Option<String> {
        #[cfg(all(feature = "redis", not(flagcache_loom)))]
        {
            let l2 = self
                .l2
                .as_ref()?
                .as_any()
                .downcast_ref::<crate::RedisCache>()?;
            Some(l2.prefix().to_owned())
        }
        #[cfg(not(all(feature = "redis", not(flagcache_loom))))]
        None
    }

    fn has_backends(&self) -> bool {
        self.l2.is_some() || self.l3.is_some()
    }

    /// After a miss of `id`: what L1 holds now, fresh (a fill landed since the miss) or
    /// stale.
    fn last_known(&self, id: &str) -> Landing {
        match self.l1.peek(id) {
            Some(fresh) => Landing::Found(fresh),
            None => self.stale(id).map_or(Landing::Failed, Landing::Stale),
        }
    }

    /// The last known definition of `id`, if it expired less than `max_stale` ago.
    fn stale(&self, id: &str) -> Option<CachedFlag> {
        self.l1
            .get_stale(id)
            .filter(|s| s.expired_for <= self.policy.max_stale)
            .map(|s| s.flag)
    }

    /// After an L1 miss: the answer that needs no load, if there is one. A flag known absent
    /// is `Some(Absent)`; a flag in its retry pause is its stale definition or `Failed`.
    fn settled(&self, id: &str) -> Option<Landing> {
        let now = self.now();
        if self.reads.absent.active(id, now) {
            add(&self.counters.negative_hits, 1);
            return Some(Landing::Absent);
        }
        if self.reads.cooldown.active(id, now) || !self.has_backends() {
            return Some(self.stale(id).map_or(Landing::Failed, Landing::Stale));
        }
        None
    }

    /// Counts a landing as the reader's answer.
    fn answer(&self, landing: Landing) -> Option<CachedFlag> {
        self.count(&landing);
        match landing {
            Landing::Found(flag) | Landing::Stale(flag) => Some(flag),
            Landing::Absent | Landing::Failed => None,
        }
    }

    /// Counts a landing answered to a reader: a stale serve, or a miss.
    fn count(&self, landing: &Landing) {
        match landing {
            Landing::Found(_) => {}
            Landing::Stale(_) => add(&self.counters.stale_serves, 1),
            Landing::Absent | Landing::Failed => add(&self.counters.misses, 1),
        }
    }

    /// After an L1 miss of `id`, never waiting: starts its load in the background (unless
    /// one is running, or `max_background_loads` are) and answers what L1 has meanwhile.
    fn miss_now(self: &Arc<Self>, id: &str) -> Landing {
        if let Some(settled) = self.settled(id) {
            return settled;
        }
        // A notice superseded the copy, and its reload is pending: the copy meanwhile.
        if self.backplane.reloads.pending(id, self.now()) {
            let known = self.last_known(id);
            if !matches!(known, Landing::Failed) {
                return known;
            }
        }
        if let Some(runtime) = &self.runtime {
            let id = FlagId::new(id);
            // Joined here, not in the task: a burst of misses starts one task.
            if let Role::Leader(leader) = self.reads.flights.join(&id) {
                match self.reads.background_permit() {
                    Some(permit) => {
                        let this = Arc::clone(self);
                        runtime.spawn(async move {
                            let landing = this.load_one(&id).await;
                            leader.land(landing);
                            drop(permit);
                        });
                    }
                    // Dropping the leader abandons the flight: nobody waits on a background one.
                    None => add(&self.counters.loads_shed, 1),
                }
            }
        }
        self.last_known(id)
    }

    /// After an L1 miss of `id`: joins (or leads) its load and waits for it.
    async fn miss(&self, id: &FlagId) -> Landing {
        if let Some(settled) = self.settled(id.as_str()) {
            return settled;
        }
        // A notice superseded the copy: its reload, pending, brings the new version.
        let reloads = &self.backplane.reloads;
        if reloads
            .wait(id.as_str(), self.l1.clock(), self.reload_bound())
            .await
        {
            if let Some(hit) = self.l1.peek(id.as_str()) {
                return Landing::Found(hit);
            }
        }
        loop {
            match self.reads.flights.join(id) {
                Role::Leader(leader) => {
                    let landing = self.load_one(id).await;
                    leader.land(landing.clone());
                    return landing;
                }
                Role::Follower(flight) => {
                    add(&self.counters.coalesced_waits, 1);
                    if let Some(landing) = flight.wait().await {
                        return landing;
                    }
                    // The leader was cancelled: join again (one of us leads the next flight).
                    tokio::task::yield_now().await;
                }
            }
        }
    }
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
        &self.inner.l1
    }

    /// L2, when there is one and it is an `S` (`cache.l2::<RedisCache>()`).
    pub fn l2<S: FlagStore>(&self) -> Option<&S> {
        self.inner.l2.as_ref()?.as_any().downcast_ref::<S>()
    }

    /// The counters of every layer.
    pub fn tiered_stats(&self) -> TieredStats {
        let inner = &self.inner;
        #[allow(unused_mut)] // without the `redis` feature there is nothing more to add
        let mut s = inner.counters.snapshot(inner.l1.stats_now());
        s.background_loads = inner.reads.background_loads() as u64;
        s.backplane_subscribed = inner.backplane.is_subscribed();
        s.feed_following = inner.feed.is_following();
        #[cfg(all(feature = "redis", not(flagcache_loom)))]
        {
            s.l2 = self
                .l2::<crate::RedisCache>()
                .map(crate::RedisCache::redis_stats);
        }
        s
    }

    /// What a readiness probe needs: whether a warm-up completed, whether L2 was reachable at
    /// the last call, whether the backplane is subscribed, and the source's last failure.
    /// Reading it costs a few loads and one uncontended lock.
    ///
    /// ```no_run
    /// # async fn probe(cache: flagcache::TieredCache) {
    /// let r = cache.readiness();
    /// let status = if r.is_ready() { 200 } else { 503 };
    /// if let Some(e) = &r.last_source_error {
    ///     eprintln!("source failed at {:?}: {}", e.at, e.message);
    /// }
    /// # let _ = status;
    /// # }
    /// ```
    pub fn readiness(&self) -> Readiness {
        let inner = &self.inner;
        inner
            .health
            .readiness(inner.l2.is_some(), inner.backplane.is_subscribed())
    }

    /// [`readiness`](Self::readiness), after asking L2 again when its last call did not reach
    /// it (one read of a probe key, within `l2_timeout`). For a readiness probe: an instance
    /// taken out of rotation gets no traffic, so no miss would ever tell it that L2 is back.
    pub async fn check_readiness(&self) -> Readiness {
        let inner = &self.inner;
        if let Some(l2) = &inner.l2 {
            if !inner.health.l2_reached() {
                let _ = l2.get_many(&[FlagId::new(READINESS_PROBE)]).await;
            }
        }
        self.readiness()
    }

    /// The definition of `id` from L1 only, without waiting for anything. On a miss, the load
    /// through L2 and L3 starts in the background (on the tokio runtime the cache was built in;
    /// the caller may be any thread) and a later read finds it; meanwhile the last known
    /// definition is returned if it expired less than `max_stale` ago.
    pub fn get_now(&self, id: &FlagId) -> Option<CachedFlag> {
        if let Some(hit) = self.inner.l1.get_now(id.as_str()) {
            return Some(hit);
        }
        let landing = self.inner.miss_now(id.as_str());
        self.inner.answer(landing)
    }

    /// Lends the definition of `id` to `f`, from L1 only, without cloning or waiting: the
    /// evaluator's hot path. On a miss it behaves as [`get_now`](Self::get_now) (a background
    /// load, and the last known definition if it expired less than `max_stale` ago); a miss of
    /// a flag known to be absent allocates nothing.
    pub fn get_with<R>(&self, id: &str, f: impl FnOnce(&FlagDefinition) -> R) -> Option<R> {
        let mut f = Some(f);
        // `f` is taken only on a hit, so it is still here on a miss.
        if let Some(r) = self.inner.l1.get_with(id, |def| f.take().map(|f| f(def))) {
            return r;
        }
        let landing = self.inner.miss_now(id);
        let flag = self.inner.answer(landing)?;
        f.map(|f| f(&flag.definition))
    }

    /// Reads `id` through the layers.
    pub async fn get_flag(&self, id: &FlagId) -> Option<CachedFlag> {
        if let Some(hit) = self.inner.l1.get_now(id.as_str()) {
            return Some(hit);
        }
        let landing = self.inner.miss(id).await;
        self.inner.answer(landing)
    }

    /// Reads `id` through the layers, telling a fresh answer from one the fail-safe served and
    /// an absent flag from backends that failed (for the OpenFeature provider's reasons).
    #[cfg_attr(not(feature = "openfeature"), allow(dead_code))]
    pub(crate) async fn resolve(&self, id: &FlagId) -> Landing {
        if let Some(hit) = self.inner.l1.get_now(id.as_str()) {
            return Landing::Found(hit);
        }
        let landing = self.inner.miss(id).await;
        // Counted as `get_flag` counts it.
        self.inner.count(&landing);
        landing
    }

    /// Reads every id in `ids`: one L1 pass, then one L2 read and one source `load_many` for
    /// what the layers above lacked.
    pub async fn get_many_flags(&self, ids: &[FlagId]) -> HashMap<FlagId, CachedFlag> {
        let inner = &self.inner;
        let mut out = inner.l1.get_many_now(ids);
        let mut seen = HashSet::with_capacity(ids.len());
        let mut batch = Vec::new();
        for id in ids {
            if out.contains_key(id) || !seen.insert(id) {
                continue;
            }
            match inner.settled(id.as_str()) {
                Some(Landing::Stale(flag)) => {
                    add(&inner.counters.stale_serves, 1);
                    out.insert(id.clone(), flag);
                }
                Some(_) => {}
                None => batch.push((id.clone(), inner.l1.begin_fill(id.as_str()))),
            }
        }
        if !batch.is_empty() {
            for (id, landing) in inner.load_batch(batch).await {
                let stale = matches!(landing, Landing::Stale(_));
                if let Landing::Found(flag) | Landing::Stale(flag) = landing {
                    if stale {
                        add(&inner.counters.stale_serves, 1);
                    }
                    out.insert(id, flag);
                }
            }
        }
        let answered = ids.iter().filter(|id| out.contains_key(*id)).count();
        add(&inner.counters.misses, (ids.len() - answered) as u64);
        out
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
        report("set_many", self.try_set_many(flags, ttl).await.map(|_| ()));
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
