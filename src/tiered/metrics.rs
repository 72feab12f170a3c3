//! The tiered cache's statistics through the `metrics` facade (feature `metrics`).
//!
//! A background task samples [`TieredStats`] every interval and publishes it: the counters as
//! absolute values, the sizes as gauges. The hit path is not touched (its counters are the
//! striped ones it already keeps). The latency of each L2 and source call is a histogram
//! recorded where the call is bounded (`l2::bounded`), on the miss path only. Names are
//! `flagcache_*`; labels are `cache` (the name given to the task), `layer` and `outcome`,
//! never a flag id.

use super::{Inner, TieredCache, TieredStats};
use crate::error::{Error, Result};
use crate::sync::Weak;
use metrics::{counter, gauge};
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// The handle of a metrics task; it stops when this is dropped or the cache is.
pub type MetricsTask = crate::task::BackgroundTask;

impl TieredCache {
    /// Publishes this cache's statistics through the `metrics` facade every `interval`, with
    /// the label `cache = name`:
    ///
    /// | metric | kind | labels |
    /// |---|---|---|
    /// | `flagcache_hits_total` | counter | `layer`: `l1`, `l2` (flags L2 answered after an L1 miss), `l3` (the source) |
    /// | `flagcache_misses_total` | counter | `layer`: `l1`, `tiered` (reads no layer answered) |
    /// | `flagcache_evictions_total`, `flagcache_expirations_total` | counter | `layer`: `l1` |
    /// | `flagcache_stale_serves_total`, `flagcache_coalesced_waits_total`, `flagcache_negative_hits_total`, `flagcache_loads_shed_total`, `flagcache_refreshes_total` | counter | |
    /// | `flagcache_source_calls_total`, `flagcache_source_errors_total` (failed or timed out), `flagcache_source_rejected_total` (definitions refused: misfiled or invalid) | counter | |
    /// | `flagcache_notices_total` | counter | `outcome`: `sent`, `failed`, `received`, `bad` |
    /// | `flagcache_feed_changes_total`, `flagcache_feed_resyncs_total`, `flagcache_feed_errors_total`, `flagcache_l2_refills_total`, `flagcache_snapshots_written_total`, `flagcache_snapshot_errors_total` | counter | |
    /// | `flagcache_feed_following` (0 or 1) | gauge | |
    /// | `flagcache_size`, `flagcache_capacity` | gauge | `layer`: `l1` |
    /// | `flagcache_background_loads`, `flagcache_backplane_subscribed` (0 or 1) | gauge | |
    /// | `flagcache_call_seconds` | histogram | `layer`: `l2`, `l3`; `outcome`: `ok` or the error's kind (recorded by every cache in the process, without `cache`) |
    ///
    /// Give each cache of a process its own `name`: two tasks publishing under one name
    /// overwrite each other's absolute values.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) for a zero `interval`, or
    /// when the cache was built outside a tokio runtime.
    pub fn start_metrics_task(&self, name: &str, interval: Duration) -> Result<MetricsTask> {
        if interval.is_zero() {
            return Err(Error::invalid_config(
                "metrics interval must be more than zero",
            ));
        }
        let Some(runtime) = &self.inner.runtime else {
            return Err(Error::invalid_config(
                "start_metrics_task needs the cache to be built inside a tokio runtime",
            ));
        };
        let weak = crate::sync::Arc::downgrade(&self.inner);
        let handle = runtime.spawn(run(weak, name.to_owned(), interval));
        Ok(MetricsTask::new(handle))
    }
}

/// The task holds only a `Weak`: dropping the cache ends it at its next tick.
async fn run(weak: Weak<Inner>, name: String, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let stats = TieredCache { inner }.tiered_stats();
        publish(&name, &stats);
    }
}

/// Publishes one sample of `s` under `cache = name`.
fn publish(name: &str, s: &TieredStats) {
    let cache = name.to_owned();
    let layered = |metric: &'static str, layer: &'static str, value: u64| {
        counter!(metric, "cache" => cache.clone(), "layer" => layer).absolute(value);
    };
    layered("flagcache_hits_total", "l1", s.l1.hits);
    layered("flagcache_hits_total", "l2", s.l2_fills);
    layered("flagcache_hits_total", "l3", s.l3_fills);
    layered("flagcache_misses_total", "l1", s.l1.misses);
    layered("flagcache_misses_total", "tiered", s.misses);
    layered("flagcache_evictions_total", "l1", s.l1.evictions);
    layered("flagcache_expirations_total", "l1", s.l1.expirations);
    for (metric, value) in [
        ("flagcache_stale_serves_total", s.stale_serves),
        ("flagcache_coalesced_waits_total", s.coalesced_waits),
        ("flagcache_negative_hits_total", s.negative_hits),
        ("flagcache_loads_shed_total", s.loads_shed),
        ("flagcache_refreshes_total", s.refreshes),
    ] {
        counter!(metric, "cache" => cache.clone()).absolute(value);
    }
    let outcome = |metric: &'static str, outcome: &'static str, value: u64| {
        counter!(metric, "cache" => cache.clone(), "outcome" => outcome).absolute(value);
    };
    // Each its own counter, so each only grows: a call is counted when it starts, and "ok"
    // as calls minus errors went down while a call that failed was in flight.
    for (metric, value) in [
        ("flagcache_source_calls_total", s.l3_loads),
        ("flagcache_source_errors_total", s.l3_errors),
        ("flagcache_source_rejected_total", s.l3_rejected),
        ("flagcache_feed_changes_total", s.feed_changes),
        ("flagcache_feed_resyncs_total", s.feed_resyncs),
        ("flagcache_feed_errors_total", s.feed_errors),
        ("flagcache_l2_refills_total", s.l2_refills),
        ("flagcache_snapshots_written_total", s.snapshots_written),
        ("flagcache_snapshot_errors_total", s.snapshot_errors),
    ] {
        counter!(metric, "cache" => cache.clone()).absolute(value);
    }
    outcome("flagcache_notices_total", "sent", s.notices_sent);
    outcome("flagcache_notices_total", "failed", s.notices_failed);
    outcome("flagcache_notices_total", "received", s.notices_received);
    outcome("flagcache_notices_total", "bad", s.notices_bad);
    gauge!("flagcache_size", "cache" => cache.clone(), "layer" => "l1").set(s.l1.size as f64);
    gauge!("flagcache_capacity", "cache" => cache.clone(), "layer" => "l1")
        .set(s.l1.capacity as f64);
    gauge!("flagcache_background_loads", "cache" => cache.clone()).set(s.background_loads as f64);
    gauge!("flagcache_feed_following", "cache" => cache.clone()).set(if s.feed_following {
        1.0
    } else {
        0.0
    });
    gauge!("flagcache_backplane_subscribed", "cache" => cache).set(if s.backplane_subscribed {
        1.0
    } else {
        0.0
    });
}

/// Records one bounded L2 or source call's duration.
pub(crate) fn record_call(layer: &'static str, outcome: &str, seconds: f64) {
    metrics::histogram!(
        "flagcache_call_seconds",
        "layer" => layer,
        "outcome" => outcome.to_owned()
    )
    .record(seconds);
}
