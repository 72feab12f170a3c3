//! The background task of L1: keeps the coarse clock fresh and sweeps expired entries.
//!
//! The task holds only a `Weak` to the cache and upgrades it for one bounded step at a time
//! (never across an `.await`), so dropping the cache ends the task at its next tick; dropping
//! the returned [`CleanupTask`] aborts it at once.

use super::LocalCache;
use crate::error::{Error, Result};
use crate::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// The handle of a cleanup task; the task stops when this is dropped or the cache is.
pub type CleanupTask = crate::task::BackgroundTask;

impl LocalCache {
    /// Starts the background task on the current tokio runtime: it sweeps expired entries every
    /// `interval`, in bounded steps, and puts the cache's clock in coarse mode, refreshed every
    /// `clock_resolution` by the crate's clock thread (so expiry holds even while the runtime
    /// is too busy to run the task).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) for a zero `interval` or
    /// when called outside a tokio runtime.
    pub fn start_cleanup_task(self: &Arc<Self>, interval: Duration) -> Result<CleanupTask> {
        if interval.is_zero() {
            return Err(Error::invalid_config(
                "cleanup interval must be more than zero",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::invalid_config("start_cleanup_task needs a tokio runtime").with_source(e)
        })?;
        let weak = Arc::downgrade(self);
        let period = self.clock_resolution.min(interval);
        // Registered before the task runs, released when its future is dropped (end or abort).
        let driver = self.clock.drive(self.clock_resolution);
        let handle = runtime.spawn(async move {
            let _driver = driver;
            run(weak, period, interval).await;
        });
        Ok(CleanupTask::new(handle))
    }
}

async fn run(weak: Weak<LocalCache>, period: Duration, interval: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // An interval past what `Instant` can hold (`Duration::MAX`: never sweep) keeps the
    // clock ticking and sweeps never.
    let after = |interval| Instant::now().checked_add(interval);
    let mut next_sweep = after(interval);
    loop {
        ticker.tick().await;
        let Some(cache) = weak.upgrade() else { return };
        cache.clock.tick();
        if next_sweep.is_none_or(|at| Instant::now() < at) {
            continue;
        }
        next_sweep = after(interval);
        drop(cache);
        // One pass over the ring, a bounded step at a time, yielding between steps.
        loop {
            let Some(cache) = weak.upgrade() else { return };
            let (_, pass_done) = cache.sweep_step();
            drop(cache);
            if pass_done {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}
