//! The clock ticker: one thread for the process that keeps every driven coarse clock fresh
//! every clock resolution, whatever the async runtime is doing.
//!
//! A coarse clock read by the hit path (one atomic load) is only as fresh as whoever stores to
//! it. Driven from the cleanup task alone, a busy `current_thread` runtime that never ran the
//! task let an entry with a 100 ms TTL be served a second later. An OS thread is scheduled by
//! the kernel, not by the runtime, so the bound holds with no cost on the hit path. The thread
//! starts with the first driven clock and ends when none is left.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
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
    loop {
        let period = {
            let mut reg = registry();
            reg.clocks
                .retain(|c| c.upgrade().is_some_and(|clock| clock.tick()));
            let period = reg
                .clocks
                .iter()
                .filter_map(Weak::upgrade)
                .map(|clock| clock.resolution())
                .min();
            match period {
                Some(period) => period.min(MAX_PERIOD),
                None => {
                    // Nothing left to drive: the next `register` starts a new thread.
                    reg.running = false;
                    return;
                }
            }
        };
        std::thread::sleep(period);
    }
}
