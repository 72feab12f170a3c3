//! [`TieredCacheBuilder`]: the layers and policies of a [`TieredCache`], checked at `build()`.

use super::TieredCache;
use super::deadlines::Deadlines;
use super::flight::Flights;
use super::l2::L2;
use super::source::{DynSource, FlagSource};
use super::stats::Counters;
use crate::error::{Error, Result};
use crate::local::LocalCache;
use crate::sync::Arc;
use crate::time::Clock;
use std::time::Duration;

/// Configures a [`TieredCache`]; see [`TieredCache::builder`].
#[must_use = "a builder does nothing until build() is called"]
pub struct TieredCacheBuilder {
    l1_size: usize,
    l1_ttl: Duration,
    redis_url: Option<String>,
    redis_prefix: String,
    l2_ttl: Duration,
    #[cfg(all(feature = "redis", not(flagcache_loom)))]
    redis: Option<crate::RedisCache>,
    source: Option<Box<dyn DynSource>>,
    negative_ttl: Duration,
    max_stale: Duration,
    retry_after: Duration,
    refresh_window: Option<Duration>,
    tombstone_ttl: Duration,
    remembered_flags: usize,
    clock: Option<Clock>,
    cleanup_interval: Duration,
}

impl std::fmt::Debug for TieredCacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCacheBuilder")
            .field("l1_size", &self.l1_size)
            .field("l1_ttl", &self.l1_ttl)
            .field("redis_prefix", &self.redis_prefix)
            .field("l2_ttl", &self.l2_ttl)
            .field("has_source", &self.source.is_some())
            .field("negative_ttl", &self.negative_ttl)
            .field("max_stale", &self.max_stale)
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

impl TieredCacheBuilder {
    pub(super) fn new() -> Self {
        Self {
            l1_size: 10_000,
            l1_ttl: Duration::from_secs(60),
            redis_url: None,
            redis_prefix: "flagcache".to_owned(),
            l2_ttl: Duration::from_secs(10 * 60),
            #[cfg(all(feature = "redis", not(flagcache_loom)))]
            redis: None,
            source: None,
            negative_ttl: Duration::from_secs(5),
            max_stale: Duration::from_secs(5 * 60),
            retry_after: Duration::from_secs(1),
            refresh_window: None,
            tombstone_ttl: Duration::from_secs(10),
            remembered_flags: 10_000,
            clock: None,
            cleanup_interval: Duration::from_secs(1),
        }
    }

    /// The most flags L1 holds (default 10 000).
    pub fn l1_size(mut self, flags: usize) -> Self {
        self.l1_size = flags;
        self
    }

    /// How long L1 keeps a definition (default 60 s).
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.l1_ttl = ttl;
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

    /// How long L2 keeps what this cache writes (default 10 minutes).
    pub fn l2_ttl(mut self, ttl: Duration) -> Self {
        self.l2_ttl = ttl;
        self
    }

    /// L2 as a `RedisCache` you built (its timeouts, limits, TLS); replaces `redis_url`.
    #[cfg(all(feature = "redis", not(flagcache_loom)))]
    pub fn redis(mut self, l2: crate::RedisCache) -> Self {
        self.redis = Some(l2);
        self
    }

    /// The source of truth (L3).
    pub fn source(mut self, source: impl FlagSource) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// How long a flag found absent in every layer is answered "absent" without asking L2
    /// or L3 again (default 5 s; zero turns negative caching off).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// How long after its expiry a definition may still be served when the backends fail
    /// (default 5 minutes; zero turns fail-safe serving off). L1 keeps expired entries this
    /// long for it.
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = max_stale;
        self
    }

    /// After the backends failed for a flag, how long its reads are served from what L1 has
    /// (stale or nothing) before they are asked again (default 1 s).
    pub fn retry_after(mut self, pause: Duration) -> Self {
        self.retry_after = pause;
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
    /// longer than the slowest load (L2 timeout plus source time). Zero is refused.
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.tombstone_ttl = ttl;
        self
    }

    /// How many flags the negative cache and the retry throttle each remember at most
    /// (default 10 000).
    pub fn remembered_flags(mut self, flags: usize) -> Self {
        self.remembered_flags = flags;
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
    /// `retry_after` or cleanup interval, a Redis URL without the `redis` feature, and
    /// whatever `RedisCacheBuilder::build` refuses (a bad
    /// URL or prefix, no tokio runtime).
    pub fn build(mut self) -> Result<TieredCache> {
        for (what, d) in [
            ("l1_ttl", self.l1_ttl),
            ("l2_ttl", self.l2_ttl),
            ("retry_after", self.retry_after),
            ("tombstone_ttl", self.tombstone_ttl),
            ("cleanup_interval", self.cleanup_interval),
        ] {
            if d.is_zero() {
                return Err(Error::invalid_config(format!("{what} is zero")));
            }
        }
        let mut l1 = LocalCache::builder()
            .max_size(self.l1_size)
            .default_ttl(self.l1_ttl)
            .stale_grace(self.max_stale);
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
        Ok(TieredCache {
            l1,
            l2,
            source: self.source,
            flights: Arc::new(Flights::new()),
            absent: Deadlines::new(self.remembered_flags),
            cooldown: Deadlines::new(self.remembered_flags),
            l1_ttl: self.l1_ttl,
            l2_ttl: self.l2_ttl,
            negative_ttl: self.negative_ttl,
            max_stale: self.max_stale,
            retry_after: self.retry_after,
            refresh_window: self.refresh_window.unwrap_or(self.l1_ttl / 4),
            tombstone_ttl: self.tombstone_ttl,
            origin: super::backplane::new_origin(),
            counters: Counters::default(),
            runtime,
            _cleanup: cleanup,
        })
    }

    #[cfg(all(feature = "redis", not(flagcache_loom)))]
    fn take_l2(&mut self) -> Result<Option<L2>> {
        if let Some(given) = self.redis.take() {
            return Ok(Some(L2(given)));
        }
        self.redis_url
            .as_deref()
            .map(|url| {
                crate::RedisCache::builder(url)
                    .prefix(&self.redis_prefix)
                    .default_ttl(self.l2_ttl)
                    .build()
                    .map(L2)
            })
            .transpose()
    }

    #[cfg(not(all(feature = "redis", not(flagcache_loom))))]
    fn take_l2(&mut self) -> Result<Option<L2>> {
        match &self.redis_url {
            Some(_) => Err(Error::invalid_config(
                "a Redis URL was given but flagcache was built without the `redis` feature",
            )),
            None => Ok(None),
        }
    }
}
