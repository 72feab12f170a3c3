//! Refresh-ahead: entries read since they were written, and close to expiry, are reloaded in
//! batches through the one load path before they expire, so a hot flag is never missed on the
//! read path. Cold entries are left to expire; entries that never expire are never due.

use super::TieredCache;
use super::readthrough::Landing;
use super::stats::add;
use crate::error::{Error, Result};
use crate::sync::Weak;
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// Flags per refresh batch (one L2 read and at most one source call each).
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
        let inner = &self.inner;
        if inner.policy.refresh_window.is_zero() || !inner.has_backends() {
            return 0;
        }
        let due = inner
            .l1
            .refresh_candidates(inner.policy.refresh_window, PASS_LIMIT);
        let mut refreshed = 0;
        for batch in due.chunks(BATCH) {
            let tickets = batch
                .iter()
                .map(|id| (id.clone(), inner.l1.begin_fill(id.as_str())))
                .collect();
            let landed = inner.load_batch(tickets).await;
            refreshed += landed
                .iter()
                .filter(|(_, landing)| matches!(landing, Landing::Found(_)))
                .count();
        }
        add(&inner.counters.refreshes, refreshed as u64);
        refreshed
    }

    /// Starts the refresh task on the runtime the cache was built in: a refresh pass every
    /// `interval` (pick well under the refresh window, a second, say).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) for a zero `interval`, or
    /// when the cache was built outside a tokio runtime.
    pub fn start_refresh_task(&self, interval: Duration) -> Result<RefreshTask> {
        if interval.is_zero() {
            return Err(Error::invalid_config(
                "refresh interval must be more than zero",
            ));
        }
        let Some(runtime) = &self.inner.runtime else {
            return Err(Error::invalid_config(
                "start_refresh_task needs the cache to be built inside a tokio runtime",
            ));
        };
        let weak = crate::sync::Arc::downgrade(&self.inner);
        let handle = runtime.spawn(run(weak, interval));
        Ok(RefreshTask::new(handle))
    }
}

/// The task holds only a `Weak`: dropping the cache ends it at its next tick.
async fn run(weak: Weak<super::Inner>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        TieredCache { inner }.refresh_ahead().await;
    }
}
