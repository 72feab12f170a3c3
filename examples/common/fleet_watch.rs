//! Timing how long a change takes to reach every instance of a fleet: a watcher thread polls
//! each instance's L1 until it no longer holds the old copy, and the rounds are reported as
//! percentiles. Shared by the `fleet_latency` and `pg_propagation` examples.

#![allow(clippy::disallowed_types)] // outside the library: std's atomics and locks

use flagcache::TieredCache;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One round's watcher. Start it while every instance holds the old copy, call
/// [`start`](Self::start) as the change is made, [`wait`](Self::wait) for it, then
/// [`finish`](Self::finish).
pub struct Watch {
    done: Arc<AtomicBool>,
    started: Arc<Mutex<Option<Instant>>>,
    thread: JoinHandle<Vec<Option<Duration>>>,
}

impl Watch {
    /// Polls every instance of `fleet` until `changed` holds for it.
    pub fn spawn(
        fleet: &Arc<Vec<TieredCache>>,
        changed: impl Fn(&TieredCache) -> bool + Send + 'static,
    ) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let started = Arc::new(Mutex::new(None::<Instant>));
        let thread = std::thread::spawn({
            let (fleet, done, started) = (Arc::clone(fleet), done.clone(), started.clone());
            move || {
                let mut seen = vec![None::<Instant>; fleet.len()];
                while seen.iter().any(Option::is_none) && !done.load(Ordering::Relaxed) {
                    for (i, c) in fleet.iter().enumerate() {
                        if seen[i].is_none() && changed(c) {
                            seen[i] = Some(Instant::now());
                        }
                    }
                    std::hint::spin_loop();
                }
                let start = started.lock().unwrap().expect("the change started");
                seen.into_iter()
                    .map(|d| d.map(|d| d.saturating_duration_since(start)))
                    .collect()
            }
        });
        Self {
            done,
            started,
            thread,
        }
    }

    /// Starts the clock: the change is being made now.
    pub fn start(&self) -> Instant {
        let now = Instant::now();
        *self.started.lock().unwrap() = Some(now);
        now
    }

    /// Waits up to 2 s for every instance to change (a lost notice shows as a missing one).
    pub async fn wait(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.thread.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Each instance's time from the start to its change, in microseconds; `None` when one
    /// did not change within the wait.
    pub fn finish(self) -> Option<Vec<u64>> {
        self.done.store(true, Ordering::Relaxed);
        let seen = self.thread.join().expect("the watcher panicked");
        seen.into_iter()
            .map(|d| d.map(|d| d.as_micros() as u64))
            .collect()
    }
}

/// The `p` percentile of sorted microseconds.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The line of figures for rounds whose slowest instance took `last` and whose instances each
/// took `each` (both sorted, `last` not empty).
pub fn summary(last: &[u64], each: &[u64], rounds: usize) -> String {
    format!(
        "every instance: p50 {:>6} us  p99 {:>6} us  max {:>6} us | each instance: p50 {:>6} us  p99 {:>6} us  ({} of {rounds} rounds)",
        percentile(last, 0.50),
        percentile(last, 0.99),
        last[last.len() - 1],
        percentile(each, 0.50),
        percentile(each, 0.99),
        last.len(),
    )
}
