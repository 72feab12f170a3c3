//! Booting from a snapshot: L1's definitions kept in a file (`file`), so that an instance
//! starting while L2 and the source are both down still serves the flags it last knew.
//!
//! With a snapshot file set, `warm_up` gives the backends `warm_up_budget` (the source half of
//! it when there is an L2, then L2 the rest). When neither answers, L1 is filled from the
//! snapshot (its read bounded by the budget too), each definition validated and written behind
//! the version check *already expired*: served as stale (`stale_serves`, and `STALE` through
//! OpenFeature) for up to `max_stale`, while every read asks the backends again (after
//! `retry_after`), until one of them confirms it, and a task warms up from the backends once
//! they answer. A snapshot that is missing, damaged, another prefix's or older than
//! `snapshot_max_age` is a warning: the snapshot never fails a start (`warm_up` returns the
//! backends' error, as without one).
//!
//! The snapshot task rewrites the file when L1 changed since the last write, at most once per
//! `snapshot_interval` (the debounce), and once more when it is shut down.

mod file;

use super::stats::add;
use super::{Inner, TieredCache};
use crate::error::{Error, Result};
use crate::flag::FlagDefinition;
use crate::sync::{Arc, AtomicU64, Ordering, Weak};
use std::path::PathBuf;
use std::time::Duration;

/// The handle of a snapshot task; it stops when dropped (without a last write: see
/// [`SnapshotTask::shutdown`]).
#[derive(Debug)]
#[must_use = "the snapshot task stops when its handle is dropped"]
pub struct SnapshotTask {
    task: crate::task::BackgroundTask,
    cache: Weak<Inner>,
}

impl SnapshotTask {
    /// Stops the task and writes the snapshot one last time: call it at shutdown.
    ///
    /// # Errors
    /// The write's failure.
    pub async fn shutdown(self) -> Result<usize> {
        self.task.stop();
        match self.cache.upgrade() {
            Some(inner) => inner.write_snapshot().await,
            None => Err(Error::invalid_config(
                "the cache was dropped before the snapshot task",
            )),
        }
    }

    /// Whether the task has ended (it ends when the cache is dropped).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Where the snapshot lives and what it may hold.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotFile {
    pub(crate) path: PathBuf,
    /// The namespace it belongs to: L2's prefix.
    pub(crate) prefix: String,
    pub(crate) max_age: Duration,
    pub(crate) interval: Duration,
}

/// What the snapshot did, for the stats.
#[derive(Default)]
pub(crate) struct SnapshotState {
    /// L1's change count at the last write (see `Inner::l1_changes`).
    written_at_change: AtomicU64,
    /// One write at a time.
    writing: tokio::sync::Mutex<()>,
}

impl Inner {
    /// A count that moves whenever L1's content changes (writes, fills, drops, expiries).
    fn l1_changes(&self) -> u64 {
        let s = self.l1.stats_now();
        s.inserts + s.invalidations + s.expirations + s.evictions
    }

    /// Fills L1 from the snapshot, each definition behind the version check and already
    /// expired; returns how many. Any reason not to (missing, damaged, another prefix's, too
    /// old) is logged and counted, and leaves L1 as it is.
    pub(crate) async fn boot_from_snapshot(&self) -> Option<usize> {
        let snapshot = self.snapshot.as_ref()?;
        let (path, prefix, max_age) = (
            snapshot.path.clone(),
            snapshot.prefix.clone(),
            snapshot.max_age,
        );
        // Bounded like the backends: a file system that stopped answering (a hung network
        // mount) must not hold warm-up forever.
        let limit = self.policy.warm_up_budget;
        let read = off_thread("reading the snapshot", limit, move || {
            file::read(&path, &prefix, max_age)
        })
        .await;
        let (loaded, invalid) = match read {
            Ok(read) => read,
            Err(e) => {
                add(&self.counters.snapshot_errors, 1);
                tracing::warn!(error = %e, "the backends did not answer and the snapshot cannot be used; starting empty");
                return None;
            }
        };
        add(&self.counters.snapshot_errors, invalid as u64);
        let mut booted = 0;
        for def in loaded.defs {
            let id = def.id.clone();
            if self.l1.set_expired_arc(&id, Arc::new(def)).is_ok() {
                booted += 1;
            }
        }
        add(&self.counters.snapshot_flags, booted);
        tracing::warn!(
            flags = booted,
            age_secs = loaded.age.as_secs(),
            "the backends did not answer: serving the snapshot's flags as stale until they do"
        );
        Some(booted as usize)
    }

    /// Writes L1's definitions (fresh and stale) as the snapshot; returns how many.
    async fn write_snapshot(&self) -> Result<usize> {
        let Some(snapshot) = &self.snapshot else {
            return Err(Error::invalid_config(
                "no snapshot file was set (snapshot_file)",
            ));
        };
        let _one = self.snapshot_state.writing.lock().await;
        let changes = self.l1_changes();
        let defs = self.l1.last_known_all();
        let (path, prefix) = (snapshot.path.clone(), snapshot.prefix.clone());
        let n = defs.len();
        // Bounded, as every whole-set call: a disk that stopped answering fails the write
        // (its thread ends on its own), and does not hold the next one forever.
        let written = off_thread(
            "writing the snapshot",
            self.policy.bulk_timeout,
            move || {
                let refs: Vec<&FlagDefinition> = defs.iter().map(|d| &**d).collect();
                file::write(&path, &prefix, &refs)
            },
        )
        .await;
        match written {
            Ok(_) => {
                self.snapshot_state
                    .written_at_change
                    .store(changes, Ordering::Relaxed);
                add(&self.counters.snapshots_written, 1);
                Ok(n)
            }
            Err(e) => {
                add(&self.counters.snapshot_errors, 1);
                Err(e)
            }
        }
    }

    /// Whether L1 changed since the last snapshot.
    fn snapshot_due(&self) -> bool {
        self.l1_changes()
            != self
                .snapshot_state
                .written_at_change
                .load(Ordering::Relaxed)
    }
}

impl TieredCache {
    /// Writes L1's definitions to the snapshot file now (atomically); returns how many.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) without a snapshot file;
    /// the file system's error.
    pub async fn save_snapshot(&self) -> Result<usize> {
        self.inner.write_snapshot().await
    }

    /// Keeps the snapshot file up to date on the runtime the cache was built in: rewritten
    /// when L1 changed, at most once per `snapshot_interval`. Call
    /// [`SnapshotTask::shutdown`] at shutdown for a last write.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) without a snapshot file,
    /// or when the cache was built outside a tokio runtime.
    pub fn start_snapshot_task(&self) -> Result<SnapshotTask> {
        let Some(snapshot) = &self.inner.snapshot else {
            return Err(Error::invalid_config(
                "no snapshot file was set (snapshot_file)",
            ));
        };
        let Some(runtime) = &self.inner.runtime else {
            return Err(Error::invalid_config(
                "start_snapshot_task needs the cache to be built inside a tokio runtime",
            ));
        };
        let handle = runtime.spawn(snapshot_loop(
            Arc::downgrade(&self.inner),
            snapshot.interval,
        ));
        Ok(SnapshotTask {
            task: crate::task::BackgroundTask::new(handle),
            cache: Arc::downgrade(&self.inner),
        })
    }
}

/// Runs the file I/O `work` on the blocking pool for at most `limit`; running out is a
/// [`Timeout`](crate::ErrorKind::Timeout) (the thread finishes on its own), a panic a
/// [`Backend`](crate::ErrorKind::Backend) error.
async fn off_thread<T: Send + 'static>(
    what: &str,
    limit: Duration,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => Err(Error::new(
            crate::ErrorKind::Backend,
            format!("{what}: {e}"),
        )),
        Err(_) => Err(Error::new(
            crate::ErrorKind::Timeout,
            format!("{what} took over {limit:?}"),
        )),
    }
}

/// Every `interval`, writes the snapshot if L1 changed since the last write. Holds only a
/// `Weak` between writes.
async fn snapshot_loop(weak: Weak<Inner>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.snapshot_due() {
            if let Err(e) = inner.write_snapshot().await {
                tracing::warn!(error = %e, "cannot write the snapshot; trying again later");
            }
        }
    }
}
