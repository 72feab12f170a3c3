//! Time for the cache: a coarse clock the read path can afford, and a mock clock for tests.
//!
//! Time is kept as [`Ticks`]: nanoseconds since the clock's own start. The read path compares an
//! entry's expiry with [`Clock::now`], which is one atomic load while a background task keeps
//! the coarse tick fresh (see `LocalCache::start_cleanup_task`). With no task running it falls
//! back to `Instant::now()`, which on Linux is a vDSO read, not a system call.

use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex, Ordering, lock};
use std::time::{Duration, Instant};

/// Nanoseconds since a clock's start. `Ticks::MAX` means "never".
pub(crate) type Ticks = u64;

/// The finest clock resolution a cache accepts: finer would keep the clock thread (and the
/// cleanup task) spinning.
pub(crate) const MIN_RESOLUTION: Duration = Duration::from_millis(1);

/// The shortest TTL L1 accepts: it keeps expiries in whole milliseconds, rounded down, so a
/// shorter one would be born expired.
pub(crate) const MIN_TTL: Duration = Duration::from_millis(1);

/// Refuses an L1 TTL under [`MIN_TTL`], naming the setting (`what`) it came from.
pub(crate) fn check_l1_ttl(what: &str, ttl: Duration) -> crate::error::Result<()> {
    if ttl < MIN_TTL {
        return Err(crate::error::Error::invalid_config(format!(
            "{what} {ttl:?} is under {MIN_TTL:?}: L1 keeps expiries in whole milliseconds, so \
             the entry would expire at once"
        )));
    }
    Ok(())
}

/// The tick value that means "never expires".
pub(crate) const NEVER: Ticks = Ticks::MAX;

/// Converts a duration to ticks, saturating (a TTL of `Duration::MAX` never expires).
pub(crate) fn duration_to_ticks(d: Duration) -> Ticks {
    u64::try_from(d.as_nanos()).unwrap_or(NEVER)
}

/// The time source of a cache: the system's monotonic clock, or a [`MockClock`].
#[derive(Clone, Debug)]
pub struct Clock {
    /// The clock's zero, kept here (not behind the `Arc`) so turning ticks into an `Instant`
    /// reads no other line.
    start: Instant,
    inner: ClockInner,
}

#[derive(Clone, Debug)]
enum ClockInner {
    System(Arc<CoarseClock>),
    Mock(MockClock),
}

#[derive(Debug)]
struct CoarseClock {
    start: Instant,
    /// The last time a driver stored, or 0 while no driver runs (then readers read the system
    /// clock): one load tells the hot path both.
    coarse: AtomicU64,
    /// How many background tasks keep `coarse` fresh.
    drivers: AtomicUsize,
    /// How often the clock thread refreshes `coarse` while it is driven (nanoseconds).
    resolution_ns: AtomicU64,
    /// Held while a driver starts or stops, so "the last driver stopped: 0" and "a driver
    /// started: a tick" cannot interleave into a driven clock at 0 (readers would read the
    /// system clock for good) or 0 overwritten by a start that came first. Rare: a cleanup task
    /// starting or ending.
    transitions: Mutex<()>,
}

impl CoarseClock {
    /// Refreshes `coarse` unless no driver runs (0 stays 0: a refresh racing the last driver's
    /// exit must not leave readers on a tick nobody moves).
    fn refresh(&self) {
        let now = elapsed_ticks(self.start).max(1);
        let _ = self
            .coarse
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                (current != 0).then(|| current.max(now))
            });
    }
}

#[cfg(not(flagcache_loom))]
impl crate::ticker::Tick for CoarseClock {
    fn tick(&self) -> bool {
        self.refresh();
        self.drivers.load(Ordering::Relaxed) > 0
    }

    fn resolution(&self) -> Duration {
        Duration::from_nanos(self.resolution_ns.load(Ordering::Relaxed).max(1))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The system's monotonic clock, read coarsely while a background task drives it.
    pub fn system() -> Self {
        let start = Instant::now();
        Self {
            start,
            inner: ClockInner::System(Arc::new(CoarseClock {
                start,
                coarse: AtomicU64::new(0),
                drivers: AtomicUsize::new(0),
                // Until a driver asks for one.
                resolution_ns: AtomicU64::new(u64::MAX),
                transitions: Mutex::new(()),
            })),
        }
    }

    /// A clock that only moves when the given [`MockClock`] is advanced.
    pub fn mock(mock: &MockClock) -> Self {
        Self {
            start: mock.start,
            inner: ClockInner::Mock(mock.clone()),
        }
    }

    /// Now, in ticks.
    #[inline]
    pub(crate) fn now(&self) -> Ticks {
        match &self.inner {
            ClockInner::System(c) => match c.coarse.load(Ordering::Relaxed) {
                0 => elapsed_ticks(c.start),
                coarse => coarse,
            },
            ClockInner::Mock(m) => m.ticks.load(Ordering::Acquire),
        }
    }

    /// Refreshes the coarse tick while it is driven; the background task calls it too.
    pub(crate) fn tick(&self) {
        if let ClockInner::System(c) = &self.inner {
            c.refresh();
        }
    }

    /// Puts the clock in coarse mode until the returned guard drops: the clock thread
    /// refreshes it every `resolution` (the finest any driver asked for), independently of the
    /// async runtime.
    pub(crate) fn drive(&self, resolution: Duration) -> ClockDriver {
        if let ClockInner::System(c) = &self.inner {
            c.resolution_ns
                .fetch_min(duration_to_ticks(resolution).max(1), Ordering::Relaxed);
            {
                let _transition = lock(&c.transitions);
                c.drivers.fetch_add(1, Ordering::Relaxed);
                c.coarse
                    .fetch_max(elapsed_ticks(c.start).max(1), Ordering::Relaxed);
            }
            #[cfg(not(flagcache_loom))]
            {
                let clock: Arc<dyn crate::ticker::Tick> = c.clone();
                crate::ticker::register(&clock);
            }
        }
        ClockDriver {
            clock: self.clone(),
        }
    }

    /// True while readers read the coarse tick (a system clock with a driver).
    #[cfg(any(fuzzing, flagcache_loom))]
    pub(crate) fn is_coarse(&self) -> bool {
        matches!(&self.inner, ClockInner::System(c) if c.coarse.load(Ordering::Relaxed) != 0)
    }

    /// The `Instant` a tick value stands for; `None` for [`NEVER`] (or past what `Instant`
    /// can represent).
    #[inline]
    pub(crate) fn instant_at(&self, ticks: Ticks) -> Option<Instant> {
        if ticks == NEVER {
            return None;
        }
        self.start.checked_add(Duration::from_nanos(ticks))
    }

    /// [`instant_at`](Self::instant_at) for a tick known to be a past moment.
    #[inline]
    pub(crate) fn instant_at_or_start(&self, ticks: Ticks) -> Instant {
        self.instant_at(ticks).unwrap_or(self.start)
    }
}

fn elapsed_ticks(start: Instant) -> Ticks {
    duration_to_ticks(start.elapsed())
}

/// Keeps a [`Clock`] in coarse mode while alive.
#[derive(Debug)]
pub(crate) struct ClockDriver {
    clock: Clock,
}

impl Drop for ClockDriver {
    fn drop(&mut self) {
        if let ClockInner::System(c) = &self.clock.inner {
            let _transition = lock(&c.transitions);
            if c.drivers.fetch_sub(1, Ordering::Relaxed) == 1 {
                // The last driver: hand readers back to the system clock.
                c.coarse.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// A manually advanced clock for deterministic tests of TTL and refresh behaviour.
///
/// Clones share one time. Give it to a cache with `LocalCache::builder().clock(Clock::mock(&m))`
/// and move time with [`MockClock::advance`] instead of sleeping.
#[derive(Clone, Debug)]
pub struct MockClock {
    start: Instant,
    ticks: Arc<AtomicU64>,
}

impl Default for MockClock {
    fn default() -> Self {
        Self::new()
    }
}

impl MockClock {
    /// A mock clock standing at its start.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            ticks: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = duration_to_ticks(by);
        let _ = self
            .ticks
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(by))
            });
    }

    /// How far this clock has been advanced since it was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.ticks.load(Ordering::Acquire))
    }

    /// The `Instant` this clock stands at (its start plus [`elapsed`](Self::elapsed)).
    pub fn now(&self) -> Instant {
        self.start + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_clock_moves_only_when_advanced() {
        let mock = MockClock::new();
        let clock = Clock::mock(&mock);
        assert_eq!(clock.now(), 0);
        mock.advance(Duration::from_millis(5));
        assert_eq!(clock.now(), 5_000_000);
        assert_eq!(mock.elapsed(), Duration::from_millis(5));
    }

    #[test]
    fn the_clock_thread_keeps_a_driven_clock_fresh_until_the_driver_drops() {
        let clock = Clock::system();
        let driver = clock.drive(Duration::from_millis(5));
        // Nobody calls `tick` here: the clock thread moves the coarse time on its own, and it
        // never lags the real time by much more than its resolution.
        let start = Instant::now();
        let first = clock.now();
        std::thread::sleep(Duration::from_millis(60));
        let moved = clock.now() - first;
        assert!(moved >= 30_000_000, "moved only {moved} ns in 60 ms");
        for _ in 0..20 {
            let real = duration_to_ticks(start.elapsed()) + first;
            let lag = real.saturating_sub(clock.now());
            assert!(lag < 50_000_000, "lagging {lag} ns");
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(driver);
        let direct = clock.now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            clock.now() > direct,
            "without a driver the clock reads the system time"
        );
    }

    #[test]
    fn never_has_no_instant_and_huge_durations_saturate() {
        let clock = Clock::system();
        assert_eq!(clock.instant_at(NEVER), None);
        assert_eq!(duration_to_ticks(Duration::MAX), NEVER);
        assert!(clock.instant_at(1_000).is_some());
    }
}
