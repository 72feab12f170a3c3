//! [`TieredCacheBuilder`]: the layers and policies of a [`TieredCache`], checked at `build()`.

use super::l2::L2;
use super::l3::L3;
use super::policy::Policy;
use super::snapshot::SnapshotFile;
use super::source::FlagSource;
use super::store::FlagStore;
use super::{Inner, TieredCache};
use crate::error::{Error, Result};
use crate::local::LocalCache;
use crate::sync::Arc;
use crate::time::Clock;
use std::time::Duration;

/// Configures a [`TieredCache`]; see [`TieredCache::builder`].
#[must_use = "a builder does nothing until build() is called"]
pub struct TieredCacheBuilder {
    l1_size: usize,
    policy: Policy,
    refresh_window: Option<Duration>,
    redis_url: Option<String>,
    redis_prefix: String,
    store: Option<L2>,
    source: Option<L3>,
    clock: Option<Clock>,
    cleanup_interval: Duration,
    snapshot_path: Option<std::path::PathBuf>,
    snapshot_max_age: Duration,
    snapshot_interval: Duration,
}

impl std::fmt::Debug for TieredCacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URL here: it may carry a password.
        f.debug_struct("TieredCacheBuilder")
            .field("l1_size", &self.l1_size)
            .field("policy", &self.policy)
            .field("redis_prefix", &self.redis_prefix)
            .field(
                "has_l2",
                &(self.store.is_some() || self.redis_url.is_some()),
            )
            .field("has_source", &self.source.is_some())
            .finish_non_exhaustive()
    }
}

impl TieredCacheBuilder {
    pub(super) fn new() -> Self {
        Self {
            l1_size: 10_000,
            policy: Policy::default(),
            refresh_window: None,
            redis_url: None,
            redis_prefix: "flagcache".to_owned(),
            store: None,
            source: None,
            clock: None,
            cleanup_interval: Duration::from_secs(1),
            snapshot_path: None,
            snapshot_max_age: Duration::from_secs(7 * 24 * 3600),
            snapshot_interval: Duration::from_secs(5),
        }
    }

    /// The most flags L1 holds (default 10 000).
    pub fn l1_size(mut self, flags: usize) -> Self {
        self.l1_size = flags;
        self
    }

    /// How long L1 keeps a definition (1 ms at least; default 60 s; [`Duration::MAX`] for no
    /// expiry).
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.policy.l1_ttl = ttl;
        self
    }

    /// L2 on the Redis at `url`, with `RedisCache`'s default connection settings (needs the
    /// `redis` feature; without it `build` fails rather than run without L2).
    pub fn redis_url(mut self, url: &str) -> Self {
        self.redis_url = Some(url.to_owned());
        self
    }

    /// The L2 key prefix when L2 is given by URL (default `flagcache`).
    pub fn redis_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.redis_prefix);
        self
    }

    /// L2 as a `RedisCache` you built (its timeouts, limits, TLS); the same as
    /// [`l2`](Self::l2).
    #[cfg(all(feature = "redis", not(flagcache_loom)))]
    pub fn redis(self, l2: crate::RedisCache) -> Self {
        self.l2(l2)
    }

    /// L2: any [`FlagStore`], such as a `RedisCache` or a [`MemoryStore`](crate::MemoryStore);
    /// replaces `redis_url`.
    pub fn l2(mut self, store: impl FlagStore) -> Self {
        self.store = Some(L2::new(store));
        self
    }

    /// How long L2 keeps what this cache writes (default 10 minutes).
    pub fn l2_ttl(mut self, ttl: Duration) -> Self {
        self.policy.l2_ttl = ttl;
        self
    }

    /// The source of truth (L3).
    pub fn source(mut self, source: impl FlagSource) -> Self {
        self.source = Some(L3::new(source));
        self
    }

    /// How long a flag found absent in every layer is answered "absent" without asking L2
    /// or L3 again (default 5 s; zero turns negative caching off).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.policy.negative_ttl = ttl;
        self
    }

    /// How long after its expiry a definition may still be served when the backends fail
    /// (default 5 minutes; zero turns fail-safe serving off). L1 keeps expired entries this
    /// long for it.
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.policy.max_stale = max_stale;
        self
    }

    /// After the backends failed for a flag, how long its reads are served from what L1 has
    /// (stale or nothing) before they are asked again (default 1 s).
    pub fn retry_after(mut self, pause: Duration) -> Self {
        self.policy.retry_after = pause;
        self
    }

    /// How long before expiry the refresh task reloads an entry that was read since it was
    /// written (default a quarter of `l1_ttl`; zero turns refresh-ahead off). See
    /// [`TieredCache::start_refresh_task`].
    pub fn refresh_window(mut self, window: Duration) -> Self {
        self.refresh_window = Some(window);
        self
    }

    /// How long an invalidated flag's L2 key holds a tombstone (default 10 s): read as absent,
    /// it refuses the L2 write-back of any load that began before the invalidate. Make it
    /// longer than the slowest load (`l2_timeout` plus `source_timeout`). Zero is refused.
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.policy.tombstone_ttl = ttl;
        self
    }

    /// The longest one source call for a batch of flags may take (default 3 s). A call that
    /// takes longer is abandoned and counted as a failure: the flag is not asked again for
    /// `retry_after`, and its last known definition is served meanwhile.
    pub fn source_timeout(mut self, timeout: Duration) -> Self {
        self.policy.source_timeout = timeout;
        self
    }

    /// The longest one L2 call for a batch of flags, or a backplane notice, may take (default
    /// 1 s; `RedisCache` bounds each request by its own, shorter, response timeout too).
    pub fn l2_timeout(mut self, timeout: Duration) -> Self {
        self.policy.l2_timeout = timeout;
        self
    }

    /// The longest a whole-set call may take: `load_all` of the source or L2 at warm-up, and
    /// L2's `clear` (default 60 s).
    pub fn bulk_timeout(mut self, timeout: Duration) -> Self {
        self.policy.bulk_timeout = timeout;
        self
    }

    /// The longest connecting and subscribing to the backplane may take (default 5 s): a link
    /// with a long round trip still subscribes.
    pub fn backplane_timeout(mut self, timeout: Duration) -> Self {
        self.policy.backplane_timeout = timeout;
        self
    }

    /// How many loads `get_now`/`get_with` may have running in the background at once
    /// (default 256). A miss beyond it starts no load: it answers what L1 has (a stale
    /// definition or nothing) and is counted in [`TieredStats::loads_shed`](crate::TieredStats).
    pub fn max_background_loads(mut self, loads: usize) -> Self {
        self.policy.max_background_loads = loads;
        self
    }

    /// How many flags the negative cache and the retry throttle each remember at most
    /// (default 10 000); past it they forget the expired, then the oldest.
    pub fn remembered_flags(mut self, flags: usize) -> Self {
        self.policy.remembered_flags = flags;
        self
    }

    /// Backplane notices larger than this are dropped unread and counted (default 256 KiB;
    /// this crate's notices are at most about 140 KiB).
    pub fn max_notice_bytes(mut self, bytes: usize) -> Self {
        self.policy.max_notice_bytes = bytes;
        self
    }

    /// The window over which an instance spreads the reloads that backplane notices schedule
    /// (default 20 ms; zero reloads at once). A notice of a newer version does not drop L1's
    /// copy: the copy is served as stale (counted in `stale_serves`) until one reload, at a
    /// random point of this window, brings the new version, so that a fleet receiving one
    /// notice spreads its L2 reads instead of sending them all in the same millisecond, and
    /// readers never find the flag missing meanwhile.
    pub fn notice_spread(mut self, window: Duration) -> Self {
        self.policy.notice_spread = window;
        self
    }

    /// How often the backplane task checks that L2 still holds the fleet's sentinel key
    /// (default 5 s; also when its subscription is made). When it is gone (Redis restarted
    /// empty, or was flushed), one instance refills L2 from the source (or its L1) while the
    /// others keep serving, and wait for it before revalidating their L1 through L2.
    pub fn sentinel_interval(mut self, interval: Duration) -> Self {
        self.policy.sentinel_interval = interval;
        self
    }

    /// How long the instance following the change feed keeps the role without renewing its
    /// L2 lease (default 10 s; renewed every third of it): how long the fleet goes without a
    /// follower after that instance dies. See
    /// [`TieredCache::start_change_feed`](crate::TieredCache::start_change_feed).
    pub fn feed_lease(mut self, lease: Duration) -> Self {
        self.policy.feed_lease = lease;
        self
    }

    /// A snapshot file, so that an instance starting while L2 and the source are both down
    /// serves the flags it last knew: [`warm_up`](TieredCache::warm_up) gives the backends
    /// `warm_up_budget`, then fills L1 from this file, each definition served as stale (for
    /// up to `max_stale`) until a backend confirms it. A missing, damaged or too old file, or
    /// another prefix's, is a warning, never a failed start. The file is kept up to date by
    /// [`TieredCache::start_snapshot_task`] (and [`TieredCache::save_snapshot`]): written
    /// atomically, mode 0600, holding the L2 prefix it belongs to.
    pub fn snapshot_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.snapshot_path = Some(path.into());
        self
    }

    /// A snapshot older than this is ignored at start (default 7 days).
    pub fn snapshot_max_age(mut self, age: Duration) -> Self {
        self.snapshot_max_age = age;
        self
    }

    /// The snapshot task rewrites the file at most this often, when L1 changed (default 5 s).
    pub fn snapshot_interval(mut self, interval: Duration) -> Self {
        self.snapshot_interval = interval;
        self
    }

    /// With a snapshot file: how long `warm_up` waits for the backends before it falls back
    /// to the snapshot (default 10 s): the source gets half of it when there is an L2, and L2
    /// the rest; reading the snapshot then gets as long again.
    pub fn warm_up_budget(mut self, budget: Duration) -> Self {
        self.policy.warm_up_budget = budget;
        self
    }

    /// The clock L1 and the policies read (a [`MockClock`](crate::MockClock) in tests).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How often the background task sweeps L1 (default 1 s). It runs when the cache is built
    /// inside a tokio runtime, and stops when the cache is dropped. Built outside a runtime,
    /// the cache has no background work: `get_now` then loads nothing on a miss.
    pub fn cleanup_interval(mut self, interval: Duration) -> Self {
        self.cleanup_interval = interval;
        self
    }

    /// Checks the settings and builds the cache.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) for a zero size, TTL,
    /// timeout, limit or cleanup interval, a Redis URL without the `redis` feature, and
    /// whatever `RedisCacheBuilder::build` refuses (a bad URL or prefix, no tokio runtime).
    pub fn build(mut self) -> Result<TieredCache> {
        let mut policy = self.policy.clone();
        policy.refresh_window = self.refresh_window.unwrap_or(policy.l1_ttl / 4);
        policy.check()?;
        if self.cleanup_interval.is_zero() {
            return Err(Error::invalid_config("cleanup_interval is zero"));
        }
        if self.snapshot_interval.is_zero() || self.snapshot_max_age.is_zero() {
            return Err(Error::invalid_config(
                "snapshot_interval and snapshot_max_age must be above zero",
            ));
        }
        let mut l1 = LocalCache::builder()
            .max_size(self.l1_size)
            .default_ttl(policy.l1_ttl)
            .stale_grace(policy.max_stale);
        if let Some(clock) = self.clock.take() {
            l1 = l1.clock(clock);
        }
        let l1 = Arc::new(l1.build()?);
        let l2 = self.take_l2()?;
        let runtime = tokio::runtime::Handle::try_current().ok();
        let cleanup = match runtime {
            Some(_) => Some(l1.start_cleanup_task(self.cleanup_interval)?),
            None => None,
        };
        let mut inner = Inner::new(policy, l1, l2, self.source, runtime, cleanup);
        inner.snapshot = self.snapshot_path.take().map(|path| SnapshotFile {
            path,
            prefix: inner
                .l2_prefix()
                .unwrap_or_else(|| self.redis_prefix.clone()),
            max_age: self.snapshot_max_age,
            interval: self.snapshot_interval,
        });
        Ok(TieredCache {
            inner: Arc::new(inner),
        })
    }

    #[cfg(all(feature = "redis", not(flagcache_loom)))]
    fn take_l2(&mut self) -> Result<Option<L2>> {
        if let Some(given) = self.store.take() {
            return Ok(Some(given));
        }
        self.redis_url
            .as_deref()
            .map(|url| {
                crate::RedisCache::builder(url)
                    .prefix(&self.redis_prefix)
                    .default_ttl(self.policy.l2_ttl)
                    .build()
                    .map(L2::new)
            })
            .transpose()
    }

    #[cfg(not(all(feature = "redis", not(flagcache_loom))))]
    fn take_l2(&mut self) -> Result<Option<L2>> {
        match &self.redis_url {
            Some(_) => Err(Error::invalid_config(
                "a Redis URL was given but flagcache was built without the `redis` feature",
            )),
            None => Ok(self.store.take()),
        }
    }
}
