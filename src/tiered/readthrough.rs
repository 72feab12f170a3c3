//! The read-through state: what a miss consults before it loads, and what keeps loads
//! bounded. The flights (one load per flag at a time), the flags known absent (negative
//! caching), the flags whose backends just failed (the retry throttle), and the count of
//! loads running in the background.

use super::deadlines::Deadlines;
use super::flight::Flights;
use super::policy::Policy;
use crate::cache::CachedFlag;
use crate::sync::{Arc, AtomicUsize, Ordering};

/// What one load lands, for its leader and followers alike.
#[derive(Clone)]
pub(crate) enum Landing {
    Found(CachedFlag),
    /// The backends failed; this is the last known definition, expired less than `max_stale`
    /// ago.
    Stale(CachedFlag),
    Absent,
    Failed,
}

pub(crate) struct ReadThrough {
    pub(crate) flights: Arc<Flights<Landing>>,
    /// Flags found absent everywhere, until when.
    pub(crate) absent: Deadlines,
    /// Flags whose backends failed, and until when they are not asked again.
    pub(crate) cooldown: Deadlines,
    background: Arc<AtomicUsize>,
    max_background: usize,
}

/// A place among the background loads; given back when dropped.
pub(crate) struct BackgroundPermit(Arc<AtomicUsize>);

impl Drop for BackgroundPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ReadThrough {
    pub(crate) fn new(policy: &Policy) -> Self {
        Self {
            flights: Arc::new(Flights::new()),
            absent: Deadlines::new(policy.remembered_flags),
            cooldown: Deadlines::new(policy.remembered_flags),
            background: Arc::new(AtomicUsize::new(0)),
            max_background: policy.max_background_loads,
        }
    }

    /// A place for one more background load, unless `max_background_loads` are running.
    pub(crate) fn background_permit(&self) -> Option<BackgroundPermit> {
        let taken = self
            .background
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_background).then_some(n + 1)
            });
        taken
            .is_ok()
            .then(|| BackgroundPermit(Arc::clone(&self.background)))
    }

    /// Loads running in the background now.
    pub(crate) fn background_loads(&self) -> usize {
        self.background.load(Ordering::Acquire)
    }

    /// Forgets what a write makes obsolete: the flag's deadlines.
    pub(crate) fn forget(&self, id: &str) {
        self.absent.clear(id);
        self.cooldown.clear(id);
    }

    pub(crate) fn forget_all(&self) {
        self.absent.clear_all();
        self.cooldown.clear_all();
    }
}
