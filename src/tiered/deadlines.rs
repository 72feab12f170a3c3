//! Per-flag deadlines: "absent until" (negative caching) and "do not retry until" (the
//! fail-safe's throttle).
//!
//! Bounded, and working after any number of distinct ids: when a new deadline finds the map
//! full, one caller purges it (the passed deadlines first, then the soonest to pass, down to
//! half the capacity), so a purge's O(capacity) scan is paid once per capacity/2 inserts.
//! Forgetting a deadline early only costs a load that single-flight still coalesces.

use crate::flag::FlagId;
use crate::sync::{AtomicUsize, ConcurrentMap, MapOp, Ordering};
use crate::time::Ticks;

pub(crate) struct Deadlines {
    map: ConcurrentMap<Ticks>,
    capacity: usize,
    /// 1 while a caller purges; the others do not wait for it.
    purging: AtomicUsize,
}

impl Deadlines {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: ConcurrentMap::with_capacity(capacity.min(1024)),
            capacity,
            purging: AtomicUsize::new(0),
        }
    }

    /// True while `id`'s deadline is after `now`; a passed deadline is removed.
    pub(crate) fn active(&self, id: &str, now: Ticks) -> bool {
        match self.map.read(id, |&until| until) {
            None => false,
            Some(until) if now < until => true,
            Some(_) => {
                self.map.remove_if(id, |&until| now >= until, |_| ());
                false
            }
        }
    }

    /// Sets `id`'s deadline to `until`, purging the map first if it is full.
    pub(crate) fn set(&self, id: &FlagId, until: Ticks, now: Ticks) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity {
            self.purge(now);
        }
        // `len` may lag concurrent inserts (and a purge running elsewhere): the bound holds to
        // within the concurrent callers.
        if self.map.len() < self.capacity {
            self.map
                .compute(id.clone(), |_| MapOp::<_, ()>::Insert(until));
        }
    }

    /// Drops the passed deadlines, then the soonest to pass until half the capacity is left.
    /// One caller at a time; a caller that finds a purge running skips it.
    fn purge(&self, now: Ticks) {
        if self
            .purging
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let mut live = Vec::with_capacity(self.capacity);
        self.map
            .for_each(|id, &until| live.push((until, id.clone())));
        live.retain(|(until, id)| {
            let passed = *until <= now;
            if passed {
                self.map.remove_if(id.as_str(), |&u| u <= now, |_| ());
            }
            !passed
        });
        let keep = self.capacity / 2;
        if live.len() > keep {
            let drop = live.len() - keep;
            live.select_nth_unstable(drop - 1);
            for (until, id) in &live[..drop] {
                // Only if unchanged since the scan: a deadline set again since is newer.
                self.map.remove_if(id.as_str(), |u| u == until, |_| ());
            }
        }
        self.purging.store(0, Ordering::Release);
    }

    /// Drops `id`'s deadline.
    pub(crate) fn clear(&self, id: &str) {
        self.map.remove_if(id, |_| true, |_| ());
    }

    /// Drops every deadline.
    pub(crate) fn clear_all(&self) {
        self.map.clear();
    }

    #[cfg(all(test, not(flagcache_loom)))]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(all(test, not(flagcache_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_holds_until_it_passes() {
        let d = Deadlines::new(10);
        let id = FlagId::new("typo");
        assert!(!d.active(id.as_str(), 0));
        d.set(&id, 100, 0);
        assert!(d.active(id.as_str(), 99));
        assert!(!d.active(id.as_str(), 100));
        assert!(!d.active(id.as_str(), 50), "a passed deadline is gone");
        d.set(&id, 100, 0);
        d.clear(id.as_str());
        assert!(!d.active(id.as_str(), 0));
    }

    #[test]
    fn a_full_map_forgets_passed_deadlines_first() {
        let d = Deadlines::new(4);
        for (id, until) in [("a", 10), ("b", 10), ("c", 50), ("d", 60)] {
            d.set(&FlagId::new(id), until, 0);
        }
        // At 20, a and b have passed: the purge drops them and keeps c and d.
        d.set(&FlagId::new("e"), 100, 20);
        assert!(d.active("c", 20) && d.active("d", 20) && d.active("e", 20));
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn a_full_map_of_live_deadlines_forgets_the_soonest() {
        let d = Deadlines::new(4);
        for (id, until) in [("a", 10), ("b", 20), ("c", 30), ("d", 40)] {
            d.set(&FlagId::new(id), until, 0);
        }
        d.set(&FlagId::new("e"), 50, 0);
        assert!(!d.active("a", 0) && !d.active("b", 0), "the soonest went");
        assert!(d.active("c", 0) && d.active("d", 0) && d.active("e", 0));
    }

    #[test]
    fn a_million_distinct_ids_stay_bounded_and_the_newest_is_remembered() {
        let d = Deadlines::new(10_000);
        for i in 0..1_000_000u64 {
            d.set(&FlagId::new(format!("id-{i}")), 1_000 + i, i / 100);
            assert!(d.len() <= 10_000);
        }
        assert!(d.active("id-999999", 10_000));
    }
}
