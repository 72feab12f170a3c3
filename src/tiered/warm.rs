//! Warm-up: the whole set from the source (or, without one, from L2) made L1's content in one
//! swap, before an instance serves.
//!
//! A load of the whole set takes a while, and writes (this instance's, and other instances'
//! notices) go on meanwhile: swapping in what was loaded would undo them, lowering versions.
//! So while a warm-up runs, every write and drop is first recorded in a log (recorded *before*
//! it reaches L1: a write not in the log reached L1 after the swap, where it stands), and after
//! the swap the log is applied again on top of the loaded set, through L1's version check.

use super::{Inner, TieredCache};
use crate::error::{Error, Result};
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::{Arc, Mutex, lock};
use std::collections::HashMap;
use std::time::Duration;

/// The most writes one warm-up records; past it, it revalidates all of L1 after the swap.
const LOG_LIMIT: usize = 100_000;

/// What a write did to a flag during a warm-up.
enum Touch {
    Set(Arc<FlagDefinition>),
    Dropped,
}

/// The writes made while a warm-up loads.
#[derive(Default)]
pub(crate) struct WarmUpLog {
    /// `Some` while a warm-up runs.
    log: Mutex<Option<Log>>,
    /// One warm-up at a time.
    running: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Log {
    touched: HashMap<FlagId, Touch>,
    /// L1 was cleared: the loaded set predates it.
    cleared: bool,
    overflowed: bool,
}

impl WarmUpLog {
    /// Records a write of `def`, if a warm-up runs; call before writing L1.
    pub(crate) fn record_set(&self, id: &FlagId, def: &Arc<FlagDefinition>) {
        self.record(id, Touch::Set(Arc::clone(def)));
    }

    /// Records a drop of `id`, if a warm-up runs; call before dropping it from L1.
    pub(crate) fn record_drop(&self, id: &str) {
        self.record(&FlagId::new(id), Touch::Dropped);
    }

    /// Records a clear of L1, if a warm-up runs; call before clearing L1.
    pub(crate) fn record_clear(&self) {
        let mut log = lock(&self.log);
        let Some(log) = log.as_mut() else { return };
        // What came before the clear is gone with it; what comes after is recorded again.
        *log = Log {
            cleared: true,
            ..Log::default()
        };
    }

    fn record(&self, id: &FlagId, touch: Touch) {
        let mut log = lock(&self.log);
        let Some(log) = log.as_mut() else { return };
        if log.touched.len() >= LOG_LIMIT && !log.touched.contains_key(id) {
            log.overflowed = true;
            return;
        }
        // Recorded before L1 checks the version: a lower write after a higher one was refused
        // there, so the higher one is what to apply again.
        if let (Some(Touch::Set(have)), Touch::Set(new)) = (log.touched.get(id), &touch) {
            if have.version > new.version {
                return;
            }
        }
        log.touched.insert(id.clone(), touch);
    }
}

/// Records writes from its start until it finishes or is dropped (a cancelled warm-up
/// records nothing more).
struct Recording<'a>(&'a WarmUpLog);

impl<'a> Recording<'a> {
    fn start(log: &'a WarmUpLog) -> Self {
        *lock(&log.log) = Some(Log::default());
        Self(log)
    }

    fn finish(self) -> Log {
        lock(&self.0.log).take().unwrap_or_default()
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        *lock(&self.0.log) = None;
    }
}

impl TieredCache {
    /// Loads every definition from the source (or, without one, from L2) and makes it L1's
    /// whole content (one [`LocalCache::replace_all`](crate::LocalCache::replace_all)); returns
    /// how many. Writes made while it loads stand: versions never go backwards. Call it at
    /// start-up, before serving.
    ///
    /// With a [snapshot file](crate::TieredCacheBuilder::snapshot_file), the backends get
    /// `warm_up_budget` (the source half of it, then L2 the rest); when neither answers, L1 is
    /// filled from the snapshot instead, served as stale until a backend confirms each flag,
    /// and this returns how many flags the snapshot gave. The warm-up then does not count as
    /// done for [`readiness`](Self::readiness) until a background task (on the runtime the
    /// cache was built in, every `retry_after`, at least a second apart) has warmed up from a
    /// backend that answers again. An unusable snapshot is a warning, and the backends' error
    /// is returned.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) with neither a source nor
    /// L2; the layer's error (or a timeout after `bulk_timeout`); L1's
    /// [`ErrorKind::CapacityExceeded`](crate::ErrorKind::CapacityExceeded) when the set is
    /// larger than L1.
    pub async fn warm_up(&self) -> Result<usize> {
        self.warm(true).await
    }

    /// [`warm_up`](Self::warm_up); from the snapshot only if `snapshot_allowed` (a retry after
    /// a snapshot boot wants the backends).
    async fn warm(&self, snapshot_allowed: bool) -> Result<usize> {
        let inner = &self.inner;
        if inner.l3.is_none() && inner.l2.is_none() {
            return Err(Error::invalid_config(
                "warm_up needs a FlagSource (builder.source) or an L2",
            ));
        }
        let _one_at_a_time = inner.warm_log.running.lock().await;
        let recording = Recording::start(&inner.warm_log);
        let loaded = match &inner.snapshot {
            None => inner.load_everything().await,
            Some(_) => match inner.load_within_budget().await {
                Ok(defs) => Ok(defs),
                Err(e) if snapshot_allowed => {
                    drop(recording);
                    let booted = inner.boot_from_snapshot().await.ok_or(e)?;
                    self.warm_up_again_later();
                    return Ok(booted);
                }
                Err(e) => Err(e),
            },
        };
        let swapped = loaded.and_then(|defs| {
            let n = defs.len();
            inner.l1.replace_all(defs).map(|()| n)
        });
        // Taken after the swap: a write recorded later reached L1 after the swap too.
        let log = recording.finish();
        let n = swapped?;
        inner.reads.forget_all();
        if log.cleared {
            inner.l1.clear_now();
        }
        for (id, touch) in log.touched {
            match touch {
                // Refused by L1 when the loaded version is higher: right.
                Touch::Set(def) => {
                    let _ = inner.l1.try_set_arc(&id, def, Some(inner.policy.l1_ttl));
                }
                Touch::Dropped => inner.l1.invalidate_now(id.as_str()),
            }
        }
        if log.overflowed {
            inner.revalidate_all().await;
        }
        inner.health.warmed_up();
        Ok(n)
    }
}

impl TieredCache {
    /// After a snapshot boot: warms up from the backends once they answer again, so that the
    /// fresh set replaces the snapshot's in one swap and readiness reports the warm-up done.
    fn warm_up_again_later(&self) {
        let Some(runtime) = &self.inner.runtime else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let pause = self.inner.policy.retry_after.max(Duration::from_secs(1));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(pause).await;
                let Some(inner) = weak.upgrade() else { return };
                if (TieredCache { inner }).warm(false).await.is_ok() {
                    tracing::info!("warmed up from the backends after a snapshot boot");
                    return;
                }
            }
        });
    }
}

impl Inner {
    /// The whole set within `warm_up_budget`: from the source, given half of it when there is
    /// an L2 (so that a hung source leaves L2 time to answer), then from L2 for the rest.
    async fn load_within_budget(&self) -> Result<Vec<FlagDefinition>> {
        let budget = self.policy.warm_up_budget;
        let started = tokio::time::Instant::now();
        let timed_out = |what: &str, limit: Duration| {
            Error::new(
                crate::ErrorKind::Timeout,
                format!("{what} did not answer warm-up within {limit:?}"),
            )
        };
        let mut failure = Error::invalid_config("warm_up needs a FlagSource or an L2");
        if let Some(l3) = &self.l3 {
            let limit = if self.l2.is_some() {
                budget / 2
            } else {
                budget
            };
            match tokio::time::timeout(limit, l3.load_all(&self.counters)).await {
                Ok(Ok(defs)) => return Ok(defs),
                Ok(Err(e)) => failure = e,
                Err(_) => failure = timed_out("the source", limit),
            }
        }
        if let Some(l2) = &self.l2 {
            let limit = budget.saturating_sub(started.elapsed());
            match tokio::time::timeout(limit, l2.load_all()).await {
                Ok(Ok(defs)) => return Ok(defs),
                Ok(Err(e)) => failure = e,
                Err(_) => failure = timed_out("L2", limit),
            }
        }
        Err(failure)
    }

    async fn load_everything(&self) -> Result<Vec<FlagDefinition>> {
        match (&self.l3, &self.l2) {
            (Some(l3), _) => l3.load_all(&self.counters).await,
            (None, Some(l2)) => l2.load_all().await,
            (None, None) => Ok(Vec::new()),
        }
    }
}

#[cfg(all(test, not(flagcache_loom)))]
mod tests {
    use super::*;

    #[test]
    fn writes_are_recorded_only_while_a_warm_up_records() {
        let log = WarmUpLog::default();
        let id = FlagId::new("f");
        log.record_drop("f");
        assert!(
            lock(&log.log).is_none(),
            "nothing recorded outside a warm-up"
        );
        let recording = Recording::start(&log);
        log.record_drop("f");
        assert_eq!(recording.finish().touched.len(), 1);
        // The highest write wins over a later, lower (refused) one; a clear resets the log.
        let recording = Recording::start(&log);
        let at = |v: u64| {
            Arc::new(
                FlagDefinition::new_boolean("f", "F", true)
                    .unwrap()
                    .with_version(v),
            )
        };
        log.record_set(&id, &at(3));
        log.record_set(&id, &at(2));
        log.record_drop("g");
        let finished = recording.finish();
        assert!(matches!(finished.touched.get(&id), Some(Touch::Set(d)) if d.version == 3));
        let recording = Recording::start(&log);
        log.record_set(&id, &at(3));
        log.record_clear();
        log.record_set(&FlagId::new("h"), &at(1));
        let finished = recording.finish();
        assert!(finished.cleared && finished.touched.len() == 1);
        // A cancelled warm-up (its future dropped mid-load) stops recording.
        let recording = Recording::start(&log);
        drop(recording);
        log.record_set(
            &id,
            &Arc::new(FlagDefinition::new_boolean("f", "F", true).unwrap()),
        );
        assert!(lock(&log.log).is_none());
    }
}
