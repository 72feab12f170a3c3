//! One generation of L1: the map and its CLOCK ring, swapped whole by `replace_all` and `clear`.
//!
//! This file holds the write protocol of a generation (insert, replace, fill, remove); the
//! read path and the public API are in `local/mod.rs`.

use super::fences::{FillTicket, WriteFences};
use super::ring::{ClockRing, SlotId};
use super::stats::{Counter, Stats};
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::{Arc, ConcurrentMap, MapOp, MapOutcome, Ordering, fence};
use crate::time::Ticks;

/// One cached definition. Immutable once in the map: a write replaces the whole value and keeps
/// the slot, whose atomics (counter, hits) live in the ring.
pub(crate) struct Entry {
    pub(crate) def: Arc<FlagDefinition>,
    pub(crate) cached_at: Ticks,
    /// Served as fresh before this.
    pub(crate) expires_at: Ticks,
    /// Kept (for stale serving) until this; removed by reads and the sweeper after it.
    pub(crate) evict_at: Ticks,
    pub(crate) slot: SlotId,
}

/// The times of a new entry.
#[derive(Clone, Copy)]
pub(crate) struct EntryTimes {
    pub(crate) cached_at: Ticks,
    pub(crate) expires_at: Ticks,
    pub(crate) evict_at: Ticks,
}

impl EntryTimes {
    fn entry(self, def: Arc<FlagDefinition>, slot: SlotId) -> Entry {
        Entry {
            def,
            cached_at: self.cached_at,
            expires_at: self.expires_at,
            evict_at: self.evict_at,
            slot,
        }
    }
}

/// Who is writing: an explicit `set`, or a fill holding a ticket.
#[derive(Clone, Copy)]
pub(crate) enum Writer<'a> {
    Set,
    Fill(&'a FillTicket, &'a WriteFences),
}

impl Writer<'_> {
    /// False for a fill that a write has overtaken since its ticket.
    fn may_install(&self) -> bool {
        match self {
            Writer::Set => true,
            Writer::Fill(ticket, fences) => fences.unchanged_since(ticket),
        }
    }
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteResult {
    Stored,
    /// The cache holds this higher version.
    Stale(u64),
    /// A fill overtaken by a write to its stripe.
    Overtaken,
    /// No slot could be claimed (every slot stayed busy): as if evicted at once.
    Dropped,
}

enum Present {
    Absent,
    Stale(u64),
    Overtaken,
}

/// How often a write retries after losing the race for an absent key to another insert.
const WRITE_ATTEMPTS: usize = 8;

pub(crate) struct Generation {
    pub(crate) id: u64,
    pub(crate) map: ConcurrentMap<Entry>,
    pub(crate) ring: ClockRing,
}

impl Generation {
    pub(crate) fn new(id: u64, capacity: usize) -> Self {
        Self {
            id,
            // Pre-size for typical flag sets; the map grows on its own beyond this.
            map: ConcurrentMap::with_capacity(capacity.min(1 << 16)),
            ring: ClockRing::new(capacity),
        }
    }

    /// Stores `def` under `key`, unless the map holds a higher version or (for a fill) a write
    /// overtook the fill.
    pub(crate) fn write(
        &self,
        key: &FlagId,
        def: Arc<FlagDefinition>,
        times: EntryTimes,
        writer: Writer<'_>,
        stats: &Stats,
    ) -> WriteResult {
        let version = def.version;
        for _ in 0..WRITE_ATTEMPTS {
            // Replace in place: the entry keeps its slot, so its counter and hits survive.
            let mut kept = None;
            let replaced = self.map.compute(key.clone(), |current| match current {
                None => MapOp::Abort(Present::Absent),
                Some(e) if e.def.version > version => MapOp::Abort(Present::Stale(e.def.version)),
                Some(_) if !writer.may_install() => MapOp::Abort(Present::Overtaken),
                Some(e) => {
                    kept = Some(e.slot);
                    MapOp::Insert(times.entry(Arc::clone(&def), e.slot))
                }
            });
            match replaced {
                MapOutcome::Aborted(Present::Absent) => {}
                MapOutcome::Aborted(Present::Stale(v)) => return WriteResult::Stale(v),
                MapOutcome::Aborted(Present::Overtaken) => return WriteResult::Overtaken,
                MapOutcome::Inserted | MapOutcome::Updated => {
                    // If we replaced an entry still pending (a fill in flight), our value must
                    // be visible when we return: publish its slot ourselves.
                    if let Some(slot) = kept {
                        self.ring.publish(slot);
                    }
                    return WriteResult::Stored;
                }
            }

            // A new key: claim a slot first (evicting if need be), so the bound holds.
            let Some((slot, evicted)) = self.ring.claim(key, |victim| {
                self.map
                    .remove_if(victim.key.as_str(), |e| e.slot == victim.slot, |_| ())
                    .is_some()
            }) else {
                stats.add(Counter::Evictions, 1);
                return WriteResult::Dropped;
            };
            if evicted {
                stats.add(Counter::Evictions, 1);
            }
            let inserted = self.map.compute(key.clone(), |current| match current {
                None => MapOp::Insert(times.entry(Arc::clone(&def), slot)),
                Some(_) => MapOp::Abort(()),
            });
            if !matches!(inserted, MapOutcome::Inserted) {
                // Another insert of this key won; go round and replace its value.
                self.ring.release(slot);
                continue;
            }
            if let Writer::Fill(ticket, fences) = writer {
                // The entry is in the map but unpublished (readers skip it). Pairs with the
                // fence in `WriteFences::advance`: see `fences.rs`.
                fence(Ordering::SeqCst);
                if !fences.unchanged_since(ticket) {
                    let withdrawn = self
                        .map
                        .remove_if(
                            key.as_str(),
                            |e| e.slot == slot && Arc::ptr_eq(&e.def, &def),
                            |_| (),
                        )
                        .is_some();
                    if withdrawn {
                        self.ring.release(slot);
                        return WriteResult::Overtaken;
                    }
                    // Our entry is gone: replaced by a write (which owns and published the slot
                    // now) or removed by an invalidate (then the slot is free or ours to free).
                    let replaced = self
                        .map
                        .read(key.as_str(), |e| e.slot == slot)
                        .unwrap_or(false);
                    if !replaced {
                        self.ring.release(slot);
                    }
                    return WriteResult::Overtaken;
                }
            }
            self.ring.publish(slot);
            return WriteResult::Stored;
        }
        WriteResult::Dropped
    }

    /// Removes `key`; returns whether an entry was there.
    pub(crate) fn remove(&self, key: &str) -> bool {
        match self.map.remove_if(key, |_| true, |e| e.slot) {
            Some(slot) => {
                self.ring.free(slot);
                true
            }
            None => false,
        }
    }

    /// Removes `key` if its entry is still the one in `slot` and is past `evict_at` at `now`.
    pub(crate) fn remove_expired(&self, key: &str, slot: SlotId, now: Ticks) -> bool {
        match self
            .map
            .remove_if(key, |e| e.slot == slot && e.evict_at <= now, |e| e.slot)
        {
            Some(slot) => {
                self.ring.free(slot);
                true
            }
            None => false,
        }
    }

    /// Checks `count` ring slots from `start`: removes expired entries and frees slots whose
    /// entry left the map without them (see `ClockRing::free`). Returns the expirations.
    pub(crate) fn sweep(&self, start: usize, count: usize, now: Ticks) -> u64 {
        let mut expired = 0;
        self.ring.live_slots(start, count, |slot, key| {
            match self.map.read(key.as_str(), |e| (e.slot, e.evict_at)) {
                Some((owner, evict_at)) if owner == slot => {
                    if evict_at <= now && self.remove_expired(key.as_str(), slot, now) {
                        expired += 1;
                    }
                }
                // Published but ownerless: reclaim it now rather than wait for the hand.
                _ => self.ring.free(slot),
            }
        });
        expired
    }
}
