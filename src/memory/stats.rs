//! Counters of a `MemoryStore`.
//!
//! Plain relaxed `fetch_add`s: every call also takes the store's lock, which costs more.

use crate::sync::{AtomicU64, Ordering};
use serde::{Deserialize, Serialize};

/// What a [`MemoryStore`](crate::MemoryStore) counted since it was built, across all its
/// clones. Sums are exact once concurrent calls have finished.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemoryStoreStats {
    /// Calls of `get_many`.
    pub get_many_calls: u64,
    /// Calls of `set_many`.
    pub set_many_calls: u64,
    /// Calls of `fill_many`.
    pub fill_many_calls: u64,
    /// Calls of `tombstone_many`.
    pub tombstone_calls: u64,
    /// Calls of `clear`.
    pub clear_calls: u64,
    /// Calls of `load_all`.
    pub load_all_calls: u64,
    /// Calls of `publish`.
    pub publishes: u64,
    /// Calls of `subscribe`.
    pub subscribes: u64,
    /// Calls to `lease` (taken, renewed or refused).
    pub lease_calls: u64,
    /// Ids asked for by `get_many` (found or not).
    pub flags_read: u64,
    /// Definitions stored by `set_many` and `fill_many`.
    pub flags_stored: u64,
    /// Writes of `set_many` refused by the version guard (a higher version was stored).
    pub writes_refused: u64,
    /// Definitions refused by `set_many` or skipped by `fill_many` because they are not a
    /// valid definition of the id they were given for.
    pub flags_rejected: u64,
    /// Calls that failed because of a fault switch or because the store was full.
    pub failures: u64,
    /// Subscribers dropped by `publish` because they had fallen a full buffer behind.
    pub subscribers_dropped: u64,
    /// Slots held now (values and tombstones, including expired ones not yet purged); at most
    /// `max_flags`.
    pub len: usize,
    /// Subscribers now.
    pub subscribers: usize,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) get_many_calls: AtomicU64,
    pub(super) set_many_calls: AtomicU64,
    pub(super) fill_many_calls: AtomicU64,
    pub(super) tombstone_calls: AtomicU64,
    pub(super) clear_calls: AtomicU64,
    pub(super) load_all_calls: AtomicU64,
    pub(super) publishes: AtomicU64,
    pub(super) subscribes: AtomicU64,
    pub(super) lease_calls: AtomicU64,
    pub(super) flags_read: AtomicU64,
    pub(super) flags_stored: AtomicU64,
    pub(super) writes_refused: AtomicU64,
    pub(super) flags_rejected: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) subscribers_dropped: AtomicU64,
}

/// Adds `n` to one counter.
pub(super) fn add(counter: &AtomicU64, n: usize) {
    if n > 0 {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Counters {
    /// The counters now; the caller fills in `len` and `subscribers`.
    pub(super) fn snapshot(&self) -> MemoryStoreStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MemoryStoreStats {
            get_many_calls: get(&self.get_many_calls),
            set_many_calls: get(&self.set_many_calls),
            fill_many_calls: get(&self.fill_many_calls),
            tombstone_calls: get(&self.tombstone_calls),
            clear_calls: get(&self.clear_calls),
            load_all_calls: get(&self.load_all_calls),
            publishes: get(&self.publishes),
            subscribes: get(&self.subscribes),
            lease_calls: get(&self.lease_calls),
            flags_read: get(&self.flags_read),
            flags_stored: get(&self.flags_stored),
            writes_refused: get(&self.writes_refused),
            flags_rejected: get(&self.flags_rejected),
            failures: get(&self.failures),
            subscribers_dropped: get(&self.subscribers_dropped),
            len: 0,
            subscribers: 0,
        }
    }
}
