//! Refresh-ahead: entries read since they were written, and close to expiry, are reloaded in
//! batches (one `MGET`, then one `load_many` for what L2 lacks) before they expire, so a hot
//! flag is never missed on the read path. Cold entries are left to expire.

use super::stats::add;
use super::{Landing, TieredCache};
use crate::error::{Error, Result};
use crate::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// Flags per refresh batch (one `MGET` and at most one `load_many` each).
const BATCH: usize = 100;
/// The most flags one pass refreshes; the rest wait for the next pass.
const PASS_LIMIT: usize = 10_000;

/// The handle of a refresh task; the task stops when this is dropped or the cache is.
pub type RefreshTask = crate::task::BackgroundTask;

impl TieredCache {
    /// One refresh pass: reloads every L1 entry that was read since it was written and expires
    /// within the refresh window (the builder's `refresh_window`), in batches. Returns how many
    /// were reloaded. The refresh task calls this; tests can call it on a mock clock.
    pub async fn refresh_ahead(&self) -> usize {
        if self.refresh_window.is_zero() || (self.l2.is_none() && self.source.is_none()) {
            return 0;
        }
        let due = self.l1.refresh_candidates(self.refresh_window, PASS_LIMIT);
        let mut refreshed = 0;
        for batch in due.chunks(BATCH) {
            let tickets = batch
                .iter()
                .map(|id| (id.clone(), self.l1.begin_fill(id.as_str())))
                .collect();
            let landed = self.load_many(tickets).await;
            refreshed += landed
                .iter()
                .filter(|(_, landing)| matches!(landing, Landing::Found(_)))
                .count();
        }
        add(&self.counters.refreshes, refreshed as u64);
        refreshed
    }

    /// Starts the refresh task on the runtime the cache was built in: a refresh pass every
    /// `interval` (pick well under the refresh window, a second, say).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) for a zero `interval`, or
    /// when the cache was built outside a tokio runtime.
    pub fn start_refresh_task(self: &Arc<Self>, interval: Duration) -> Result<RefreshTask> {
        if interval.is_zero() {
            return Err(Error::invalid_config(
                "refresh interval must be more than zero",
            ));
        }
        let Some(runtime) = &self.runtime else {
            return Err(Error::invalid_config(
                "start_refresh_task needs the cache to be built inside a tokio runtime",
            ));
        };
        let weak = Arc::downgrade(self);
        let handle = runtime.spawn(run(weak, interval));
        Ok(RefreshTask::new(handle))
    }
}

/// The task holds only a `Weak`: dropping the cache ends it at its next tick.
async fn run(weak: Weak<TieredCache>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(cache) = weak.upgrade() else { return };
        cache.refresh_ahead().await;
    }
}
