//! Counters of a `TieredCache`, per layer.

use crate::cache::CacheStats;
use crate::sync::{AtomicU64, Ordering};
use serde::{Deserialize, Serialize};

/// What a [`TieredCache`](crate::TieredCache) counted, layer by layer. Sums are exact once
/// concurrent calls have finished.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TieredStats {
    /// L1's own counters (its hits are the reads that waited for nothing).
    pub l1: CacheStats,
    /// L2's client-side counters, when there is an L2.
    #[cfg(all(feature = "redis", not(flagcache_loom)))]
    pub l2: Option<crate::RedisStats>,
    /// Flags answered by L2 after an L1 miss.
    pub l2_fills: u64,
    /// Calls to the source (`load` or `load_many`).
    pub l3_loads: u64,
    /// Flags answered by the source after L1 and L2 missed.
    pub l3_fills: u64,
    /// Source calls that failed or timed out.
    pub l3_errors: u64,
    /// Definitions the source answered that were rejected: filed under an id not asked, or
    /// invalid (never cached nor written back).
    pub l3_rejected: u64,
    /// Reads that waited for another caller's load of the same flag instead of loading.
    pub coalesced_waits: u64,
    /// Reads answered "absent" by the negative cache, without asking L2 or L3.
    pub negative_hits: u64,
    /// Reads answered with an expired definition because the backends failed (within
    /// `max_stale`).
    pub stale_serves: u64,
    /// Reads no layer could answer.
    pub misses: u64,
    /// Misses of `get_now`/`get_with` that started no background load because
    /// `max_background_loads` were running.
    pub loads_shed: u64,
    /// Background loads running now.
    pub background_loads: u64,
    /// Entries reloaded ahead of their expiry by refresh passes.
    pub refreshes: u64,
    /// Backplane notices this instance published.
    pub notices_sent: u64,
    /// Backplane notices that could not be published (the write stood).
    pub notices_failed: u64,
    /// Other instances' notices applied to L1.
    pub notices_received: u64,
    /// Messages on the channel that were not valid notices (ignored).
    pub notices_bad: u64,
    /// Times the backplane subscription was made (the first time, and after each drop).
    pub subscriptions: u64,
    /// Times every L1 entry was revalidated (after the subscription came back).
    pub revalidations: u64,
    /// True while the backplane is subscribed.
    pub backplane_subscribed: bool,
    /// Times this instance started following the source's change feed.
    pub feed_subscriptions: u64,
    /// Flags announced by the change feed and written through (or invalidated) by this
    /// instance.
    pub feed_changes: u64,
    /// Times this instance compared the whole source with the caches (each time it started
    /// following the feed, and when the feed announced that anything may have changed).
    pub feed_resyncs: u64,
    /// Times following the feed failed (the lease, the feed, the source or L2), and was
    /// tried again.
    pub feed_errors: u64,
    /// True while this instance follows the change feed.
    pub feed_following: bool,
    /// Times this instance put flags back into an emptied L2 (its sentinel gone): the
    /// source's whole set for the fleet, or without a source its own L1.
    pub l2_refills: u64,
    /// Flags L1 was filled with from the snapshot at start, the backends not answering.
    pub snapshot_flags: u64,
    /// Snapshots written.
    pub snapshots_written: u64,
    /// Snapshots that could not be written or read (missing, damaged, another prefix's, too
    /// old), and invalid definitions left out of one.
    pub snapshot_errors: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) l2_fills: AtomicU64,
    pub(crate) l3_loads: AtomicU64,
    pub(crate) l3_fills: AtomicU64,
    pub(crate) l3_errors: AtomicU64,
    pub(crate) l3_rejected: AtomicU64,
    pub(crate) coalesced_waits: AtomicU64,
    pub(crate) negative_hits: AtomicU64,
    pub(crate) stale_serves: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) loads_shed: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) notices_sent: AtomicU64,
    pub(crate) notices_failed: AtomicU64,
    pub(crate) notices_received: AtomicU64,
    pub(crate) notices_bad: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
    pub(crate) revalidations: AtomicU64,
    pub(crate) feed_subscriptions: AtomicU64,
    pub(crate) feed_changes: AtomicU64,
    pub(crate) feed_resyncs: AtomicU64,
    pub(crate) feed_errors: AtomicU64,
    pub(crate) l2_refills: AtomicU64,
    pub(crate) snapshot_flags: AtomicU64,
    pub(crate) snapshots_written: AtomicU64,
    pub(crate) snapshot_errors: AtomicU64,
}

/// Adds `n` to one counter (these sit beside network calls or misses, never on an L1 hit).
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Counters {
    pub(crate) fn snapshot(&self, l1: CacheStats) -> TieredStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TieredStats {
            l1,
            #[cfg(all(feature = "redis", not(flagcache_loom)))]
            l2: None,
            l2_fills: get(&self.l2_fills),
            l3_loads: get(&self.l3_loads),
            l3_fills: get(&self.l3_fills),
            l3_errors: get(&self.l3_errors),
            l3_rejected: get(&self.l3_rejected),
            coalesced_waits: get(&self.coalesced_waits),
            negative_hits: get(&self.negative_hits),
            stale_serves: get(&self.stale_serves),
            misses: get(&self.misses),
            loads_shed: get(&self.loads_shed),
            background_loads: 0,
            refreshes: get(&self.refreshes),
            notices_sent: get(&self.notices_sent),
            notices_failed: get(&self.notices_failed),
            notices_received: get(&self.notices_received),
            notices_bad: get(&self.notices_bad),
            subscriptions: get(&self.subscriptions),
            revalidations: get(&self.revalidations),
            backplane_subscribed: false,
            feed_subscriptions: get(&self.feed_subscriptions),
            feed_changes: get(&self.feed_changes),
            feed_resyncs: get(&self.feed_resyncs),
            feed_errors: get(&self.feed_errors),
            feed_following: false,
            l2_refills: get(&self.l2_refills),
            snapshot_flags: get(&self.snapshot_flags),
            snapshots_written: get(&self.snapshots_written),
            snapshot_errors: get(&self.snapshot_errors),
        }
    }
}
