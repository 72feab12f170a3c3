//! What refresh-ahead asks of L1: the entries that were read since they were written and
//! expire soon (cold entries, not read since written, are left to expire). And what the
//! tiered cache's whole-L1 passes ask: every id, every last known definition.

use super::LocalCache;
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::Arc;
use crate::time::duration_to_ticks;
use std::time::Duration;

impl LocalCache {
    /// Up to `limit` ids of current entries that were read since they were written and expire
    /// within `window` (or have expired and are kept for the stale grace). Entries that never
    /// expire are never due, however long the window.
    pub(crate) fn refresh_candidates(&self, window: Duration, limit: usize) -> Vec<FlagId> {
        let horizon = self.clock.now().saturating_add(duration_to_ticks(window));
        let a = self.snapshots.active();
        let buffer = self.snapshots.buffer(a);
        let mut ids = Vec::new();
        buffer.map.for_each(|id, e| {
            if ids.len() < limit
                && e.expiry().passed_at(horizon)
                && e.was_read()
                && e.state().visible_in(a.tag())
            {
                ids.push(id.clone());
            }
        });
        ids
    }

    /// The ids of every entry of the current snapshot.
    #[cfg_attr(not(all(feature = "redis", not(flagcache_loom))), allow(dead_code))]
    pub(crate) fn ids(&self) -> Vec<FlagId> {
        let a = self.snapshots.active();
        let buffer = self.snapshots.buffer(a);
        let mut ids = Vec::with_capacity(buffer.map.len());
        buffer.map.for_each(|id, e| {
            if e.state().visible_in(a.tag()) {
                ids.push(id.clone());
            }
        });
        ids
    }

    /// The last known definition of every flag: fresh, or expired within the stale grace.
    pub(crate) fn last_known_all(&self) -> Vec<Arc<FlagDefinition>> {
        self.ids()
            .iter()
            .filter_map(|id| {
                let flag = self
                    .peek(id.as_str())
                    .or_else(|| self.get_stale(id.as_str()).map(|s| s.flag))?;
                Some(flag.definition)
            })
            .collect()
    }
}

#[cfg(all(test, not(flagcache_loom)))]
mod tests {
    use crate::{Clock, FlagDefinition, FlagId, LocalCache, MockClock};
    use std::time::Duration;

    #[test]
    fn only_entries_read_since_written_and_close_to_expiry_are_candidates() {
        let mock = MockClock::new();
        let cache = LocalCache::builder()
            .default_ttl(Duration::from_secs(10))
            .clock(Clock::mock(&mock))
            .build()
            .unwrap();
        for id in ["hot", "cold", "later"] {
            let def = FlagDefinition::new_boolean(id, "F", true).unwrap();
            let ttl = (id == "later").then_some(Duration::from_secs(60));
            cache.try_set(&FlagId::new(id), def, ttl).unwrap();
        }
        assert!(cache.get_with("hot", |_| ()).is_some());
        assert!(cache.get_with("later", |_| ()).is_some());
        let window = Duration::from_secs(3);
        assert!(
            cache.refresh_candidates(window, 10).is_empty(),
            "nothing expires soon yet"
        );

        mock.advance(Duration::from_secs(8));
        let ids = cache.refresh_candidates(window, 10);
        assert_eq!(ids, [FlagId::new("hot")], "read, and within the window");

        // A refresh writes a new entry: it is not a candidate until it is read again.
        let def = FlagDefinition::new_boolean("hot", "F", true).unwrap();
        cache.try_set(&FlagId::new("hot"), def, None).unwrap();
        mock.advance(Duration::from_secs(8));
        assert!(cache.refresh_candidates(window, 10).is_empty());
        assert!(cache.get_with("hot", |_| ()).is_some());
        assert_eq!(cache.refresh_candidates(window, 10).len(), 1);
        assert_eq!(
            cache.refresh_candidates(window, 0).len(),
            0,
            "the limit holds"
        );
    }
}
