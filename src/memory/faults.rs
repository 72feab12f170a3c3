//! The fault switches of a `MemoryStore`: outages on demand, for tests of how its users
//! behave when L2 fails, hangs or is slow.

use crate::error::{Error, ErrorKind, Result};
use crate::sync::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

pub(super) struct Faults {
    /// 1 while every call fails (the facade has no `AtomicBool`).
    failing: AtomicU64,
    /// How long every call sleeps first, in nanoseconds; 0 for no delay.
    delay_nanos: AtomicU64,
    /// True while every call waits. A watch channel rather than a flag and a `Notify`: a
    /// waiter reads the value and registers for changes in one step, so a switch-off between
    /// the two cannot be lost.
    hanging: watch::Sender<bool>,
}

impl Faults {
    pub(super) fn new() -> Self {
        Self {
            failing: AtomicU64::new(0),
            delay_nanos: AtomicU64::new(0),
            hanging: watch::channel(false).0,
        }
    }

    pub(super) fn set_failing(&self, failing: bool) {
        self.failing.store(u64::from(failing), Ordering::Relaxed);
    }

    pub(super) fn set_hanging(&self, hanging: bool) {
        // `send_replace`, not `send`: the value must change even while no call is waiting.
        self.hanging.send_replace(hanging);
    }

    pub(super) fn set_delay(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.delay_nanos.store(nanos, Ordering::Relaxed);
    }

    /// Applies the switches to one call of `op`: fails at once while failing; else sleeps
    /// the delay, waits while hanging, and fails if failing was switched on meanwhile (the
    /// outage began while the call was in flight).
    pub(super) async fn enter(&self, op: &str) -> Result<()> {
        self.check(op)?;
        let delay = self.delay_nanos.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_nanos(delay)).await;
        }
        // A statement of its own: the borrow must end before the `.await`.
        let hanging = *self.hanging.borrow();
        if hanging {
            let mut switch = self.hanging.subscribe();
            // `wait_for` checks the current value before waiting. It errs only once the
            // sender is gone, and `self` holds it.
            let _ = switch.wait_for(|hanging| !*hanging).await;
        }
        self.check(op)
    }

    fn check(&self, op: &str) -> Result<()> {
        if self.failing.load(Ordering::Relaxed) == 1 {
            Err(Error::new(
                ErrorKind::Unavailable,
                format!("MemoryStore::{op}: the store is switched to failing"),
            ))
        } else {
            Ok(())
        }
    }
}
