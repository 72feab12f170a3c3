//! Per-flag deadlines: "absent until" (negative caching) and "do not retry until" (the
//! fail-safe's throttle). Bounded: when full, new flags are not remembered (their lookups still
//! go through single-flight, so they cannot stampede).

use crate::flag::FlagId;
use crate::sync::{ConcurrentMap, MapOp};
use crate::time::Ticks;

pub(crate) struct Deadlines {
    map: ConcurrentMap<Ticks>,
    capacity: usize,
}

impl Deadlines {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: ConcurrentMap::with_capacity(capacity.min(1024)),
            capacity,
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

    /// Sets `id`'s deadline to `until`, if there is room.
    pub(crate) fn set(&self, id: &FlagId, until: Ticks, _now: Ticks) {
        // `len` may lag concurrent inserts: the bound holds to within the concurrent callers.
        if self.capacity > 0 && self.map.len() < self.capacity {
            self.map
                .compute(id.clone(), |_| MapOp::<_, ()>::Insert(until));
        }
    }

    /// Drops `id`'s deadline.
    pub(crate) fn clear(&self, id: &str) {
        self.map.remove_if(id, |_| true, |_| ());
    }

    /// Drops every deadline.
    pub(crate) fn clear_all(&self) {
        let mut ids = Vec::new();
        self.map.for_each(|id, _| ids.push(id.clone()));
        for id in &ids {
            self.clear(id.as_str());
        }
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
    fn a_full_map_remembers_no_new_flags() {
        let d = Deadlines::new(2);
        for id in ["a", "b", "c"] {
            d.set(&FlagId::new(id), 10, 0);
        }
        assert!(d.active("a", 0));
        assert!(!d.active("c", 0));
        d.clear_all();
        assert!(!d.active("a", 0));
    }
}
