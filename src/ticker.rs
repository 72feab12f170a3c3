//! The clock ticker: one thread for the process that keeps every driven coarse clock fresh
//! every clock resolution, whatever the async runtime is doing.
//!
//! A coarse clock read by the hit path (one atomic load) is only as fresh as whoever stores to
//! it. Driven from the cleanup task alone, a busy `current_thread` runtime that never ran the
//! task let an entry with a 100 ms TTL be served a second later. An OS thread is scheduled by
//! the kernel, not by the runtime, so the bound holds with no cost on the hit path. The thread
//! starts with the first driven clock and ends when none is left; a clock registered while it
//! sleeps wakes it, so a fine clock never waits out the sleep of a coarse one.

use crate::time::MIN_RESOLUTION;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// A clock the ticker keeps fresh.
pub(crate) trait Tick: Send + Sync {
    /// Refreshes the clock; false once it is no longer driven (the ticker then forgets it).
    fn tick(&self) -> bool;

    /// How often it wants a tick.
    fn resolution(&self) -> Duration;
}

/// The longest sleep between ticks, whatever the clocks ask for.
const MAX_PERIOD: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Registry {
    clocks: Vec<Weak<dyn Tick>>,
    running: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    clocks: Vec::new(),
    running: false,
});

/// Wakes the thread when a clock is registered.
static REGISTERED: Condvar = Condvar::new();

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps `clock` ticked until its `tick` says it is no longer driven (or it is dropped).
/// False when the thread could not be started (the caller's own ticks are then all there is).
pub(crate) fn register(clock: &Arc<dyn Tick>) -> bool {
    let mut reg = registry();
    let weak = Arc::downgrade(clock);
    if !reg.clocks.iter().any(|c| Weak::ptr_eq(c, &weak)) {
        reg.clocks.push(weak);
    }
    if reg.running {
        // It may be asleep for a coarser clock: it recomputes its period now.
        REGISTERED.notify_one();
        return true;
    }
    let started = std::thread::Builder::new()
        .name("flagcache-clock".into())
        .spawn(run);
    reg.running = started.is_ok();
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start the clock thread; the cleanup task ticks the clock");
    }
    reg.running
}

fn run() {
    let mut reg = registry();
    loop {
        reg.clocks
            .retain(|c| c.upgrade().is_some_and(|clock| clock.tick()));
        let period = reg
            .clocks
            .iter()
            .filter_map(Weak::upgrade)
            .map(|clock| clock.resolution())
            .min();
        let Some(period) = period else {
            // Nothing left to drive: the next `register` starts a new thread.
            reg.running = false;
            return;
        };
        // Woken early by a registration (or spuriously), the loop ticks every clock once more
        // and sleeps for the new finest period: an extra tick is harmless.
        reg = REGISTERED
            .wait_timeout(reg, period.clamp(MIN_RESOLUTION, MAX_PERIOD))
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}
