//! [`Policy`]: every duration and limit of a [`TieredCache`](super::TieredCache), in one place,
//! checked once at `build()`.

use crate::error::{Error, Result};
use std::time::Duration;

/// The tiered cache's settings; see the builder's methods for what each means.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) l1_ttl: Duration,
    pub(crate) l2_ttl: Duration,
    pub(crate) negative_ttl: Duration,
    pub(crate) max_stale: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) refresh_window: Duration,
    pub(crate) tombstone_ttl: Duration,
    /// The longest a source call for a batch of flags may take.
    pub(crate) source_timeout: Duration,
    /// The longest an L2 call for a batch of flags (or a notice) may take.
    pub(crate) l2_timeout: Duration,
    /// The longest a whole-set call (`load_all`, `clear`) may take, in either layer.
    pub(crate) bulk_timeout: Duration,
    /// The longest subscribing to the backplane may take (connect and subscribe).
    pub(crate) backplane_timeout: Duration,
    /// Loads started in the background by `get_now`/`get_with`, at most, at once.
    pub(crate) max_background_loads: usize,
    /// Flags the negative cache and the retry throttle each remember, at most.
    pub(crate) remembered_flags: usize,
    /// Backplane notices larger than this are dropped unread.
    pub(crate) max_notice_bytes: usize,
    /// How long the lease of the instance following the change feed lasts unrenewed.
    pub(crate) feed_lease: Duration,
    /// The window over which the reloads that notices schedule are spread.
    pub(crate) notice_spread: Duration,
    /// With a snapshot file: how long warm-up waits for the backends before the snapshot.
    pub(crate) warm_up_budget: Duration,
    /// How often the backplane task checks that L2 still holds the fleet's sentinel.
    pub(crate) sentinel_interval: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        let l1_ttl = Duration::from_secs(60);
        Self {
            l1_ttl,
            l2_ttl: Duration::from_secs(10 * 60),
            negative_ttl: Duration::from_secs(5),
            max_stale: Duration::from_secs(5 * 60),
            retry_after: Duration::from_secs(1),
            refresh_window: l1_ttl / 4,
            tombstone_ttl: Duration::from_secs(10),
            source_timeout: Duration::from_secs(3),
            l2_timeout: Duration::from_secs(1),
            bulk_timeout: Duration::from_secs(60),
            backplane_timeout: Duration::from_secs(5),
            max_background_loads: 256,
            remembered_flags: 10_000,
            max_notice_bytes: 256 * 1024,
            feed_lease: Duration::from_secs(10),
            notice_spread: Duration::from_millis(20),
            warm_up_budget: Duration::from_secs(10),
            sentinel_interval: Duration::from_secs(5),
        }
    }
}

impl Policy {
    /// Refuses settings that cannot work.
    pub(crate) fn check(&self) -> Result<()> {
        for (what, d) in [
            ("l1_ttl", self.l1_ttl),
            ("l2_ttl", self.l2_ttl),
            ("retry_after", self.retry_after),
            ("tombstone_ttl", self.tombstone_ttl),
            ("source_timeout", self.source_timeout),
            ("l2_timeout", self.l2_timeout),
            ("bulk_timeout", self.bulk_timeout),
            ("backplane_timeout", self.backplane_timeout),
            ("feed_lease", self.feed_lease),
            ("warm_up_budget", self.warm_up_budget),
            ("sentinel_interval", self.sentinel_interval),
        ] {
            if d.is_zero() {
                return Err(Error::invalid_config(format!("{what} is zero")));
            }
        }
        crate::time::check_l1_ttl("l1_ttl", self.l1_ttl)?;
        for (what, n) in [
            ("max_background_loads", self.max_background_loads),
            ("max_notice_bytes", self.max_notice_bytes),
        ] {
            if n == 0 {
                return Err(Error::invalid_config(format!("{what} is zero")));
            }
        }
        Ok(())
    }
}
