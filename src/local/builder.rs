//! [`LocalCacheBuilder`]: every setting of an L1 cache, validated at `build()`.

use super::LocalCache;
use crate::error::{Error, Result};
use crate::time::Clock;
use std::time::Duration;

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) max_size: usize,
    pub(crate) default_ttl: Duration,
    pub(crate) stale_grace: Duration,
    pub(crate) clock: Clock,
    pub(crate) clock_resolution: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_size: 10_000,
            default_ttl: Duration::from_secs(60),
            stale_grace: Duration::ZERO,
            clock: Clock::system(),
            clock_resolution: Duration::from_millis(5),
        }
    }
}

/// Builds a [`LocalCache`]. Defaults: 10 000 entries, a 60 s TTL, no stale grace, the system
/// clock read every 5 ms by the cleanup task.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct LocalCacheBuilder {
    config: Config,
}

impl LocalCacheBuilder {
    /// The largest `max_size` accepted: the CLOCK ring is allocated up front (12 bytes a
    /// slot), so an absurd capacity is a configuration error rather than an out-of-memory abort.
    pub const MAX_CAPACITY: usize = 1 << 26;

    /// The most entries the cache holds (1 to [`MAX_CAPACITY`](Self::MAX_CAPACITY)).
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.config.max_size = max_size;
        self
    }

    /// The TTL of writes that name none (1 ms at least; `Duration::MAX` for no expiry).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = ttl;
        self
    }

    /// How long an expired entry is kept for [`LocalCache::get_stale`] (fail-safe serving)
    /// before it is removed. Zero (the default) removes entries as they expire.
    pub fn stale_grace(mut self, grace: Duration) -> Self {
        self.config.stale_grace = grace;
        self
    }

    /// The clock to read: [`Clock::system`] (the default) or [`Clock::mock`] for tests.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.config.clock = clock;
        self
    }

    /// How often the coarse clock is refreshed while the cleanup task runs (at least 1 ms; 5 ms
    /// by default). An entry may be served up to this long past its TTL while the task runs.
    pub fn clock_resolution(mut self, resolution: Duration) -> Self {
        self.config.clock_resolution = resolution;
        self
    }

    /// Validates the settings and builds the cache.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) for a zero or too large
    /// `max_size`, a `default_ttl` or a `clock_resolution` under 1 ms.
    pub fn build(self) -> Result<LocalCache> {
        let c = &self.config;
        if c.max_size == 0 {
            return Err(Error::invalid_config("max_size must be at least 1"));
        }
        if c.max_size > Self::MAX_CAPACITY {
            return Err(Error::invalid_config(format!(
                "max_size {} is above the limit of {}",
                c.max_size,
                Self::MAX_CAPACITY
            )));
        }
        crate::time::check_l1_ttl("default_ttl", c.default_ttl)?;
        if c.clock_resolution < crate::time::MIN_RESOLUTION {
            return Err(Error::invalid_config(format!(
                "clock_resolution {:?} is below the minimum of {:?}",
                c.clock_resolution,
                crate::time::MIN_RESOLUTION
            )));
        }
        Ok(LocalCache::from_parts(self.config))
    }
}
