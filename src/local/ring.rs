//! The CLOCK ring: one slot per possible entry, so the entry bound holds by construction.
//!
//! Every map entry names the slot it owns (`SlotId`: index and epoch). A slot's phase is one of
//! `FREE`, `PENDING`, `LIVE`, `EVICTING`:
//! - an insert of a new key *claims* a slot: a `FREE` one, or a `LIVE` one whose reference
//!   counter has swept down to zero. It holds the slot `EVICTING` (exclusively) while it removes
//!   the old entry from the map and writes the new key, then leaves it `PENDING` under a new
//!   epoch, inserts the map entry, and *publishes* it (`PENDING -> LIVE`);
//! - a read of a `LIVE` slot of the right epoch bumps its small saturating counter (GCLOCK),
//!   and stops writing once the counter is at its maximum; any other phase reads as a miss,
//!   which hides entries being evicted and fills not yet validated (see `fences`);
//! - the hand passing a `LIVE` slot with a non-zero counter decrements it;
//! - `invalidate` and expiry remove the entry, then *free* the slot (`LIVE` or `PENDING` of the
//!   same epoch `-> FREE`);
//! - a write that replaces a `PENDING` entry in the map publishes the slot itself, so its value
//!   is visible when it returns.
//!
//! Every transition out of `PENDING` or `LIVE` is a compare-and-swap on the epoch, and only the
//! holder of `EVICTING` (won by a CAS) moves a slot to a new epoch, after the old entry has left
//! the map. So at most one entry owns a slot, and entries never outnumber slots.
//!
//! The per-slot atomics live here, not in the map's values, so replacing a value keeps them.

use crate::flag::FlagId;
use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering, lock, spin_hint};

const REFS_BITS: u32 = 2;
const REFS_MASK: u64 = (1 << REFS_BITS) - 1;
/// The counter saturates here: a hot entry stops writing its slot.
pub(crate) const MAX_REFS: u64 = REFS_MASK;
const PHASE_SHIFT: u32 = REFS_BITS;
const PHASE_MASK: u64 = 0b11 << PHASE_SHIFT;
const FREE: u64 = 0;
const PENDING: u64 = 1 << PHASE_SHIFT;
const LIVE: u64 = 2 << PHASE_SHIFT;
const EVICTING: u64 = 3 << PHASE_SHIFT;
const EPOCH_SHIFT: u32 = PHASE_SHIFT + 2;

#[inline]
fn pack(phase: u64, epoch: u64, refs: u64) -> u64 {
    (epoch << EPOCH_SHIFT) | phase | refs
}
#[inline]
fn phase(s: u64) -> u64 {
    s & PHASE_MASK
}
#[inline]
fn epoch(s: u64) -> u64 {
    s >> EPOCH_SHIFT
}
#[inline]
fn refs(s: u64) -> u64 {
    s & REFS_MASK
}

/// The slot an entry owns: its index and the epoch it was claimed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotId {
    pub(crate) index: usize,
    pub(crate) epoch: u64,
}

struct Slot {
    state: AtomicU64,
    /// Owned reads of the slot's entry; reset when the slot is claimed.
    hits: AtomicU64,
    /// The key of the slot's entry, for the hand and the sweeper. Written only while the slot is
    /// `EVICTING` (held by one claimer); the read path never touches it.
    key: Mutex<Option<FlagId>>,
}

/// What the hand found to evict while claiming a slot.
pub(crate) struct Victim {
    pub(crate) slot: SlotId,
    pub(crate) key: FlagId,
}

pub(crate) struct ClockRing {
    slots: Box<[Slot]>,
    hand: AtomicUsize,
}

impl ClockRing {
    /// A ring of `capacity` free slots (`capacity` > 0, checked by the builder).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: (0..capacity.max(1))
                .map(|_| Slot {
                    state: AtomicU64::new(pack(FREE, 0, 0)),
                    hits: AtomicU64::new(0),
                    key: Mutex::new(None),
                })
                .collect(),
            hand: AtomicUsize::new(0),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn slot(&self, index: usize) -> Option<&Slot> {
        self.slots.get(index)
    }

    /// True when `id` is the slot's current, published owner; then counts a reference.
    /// Once the counter is saturated this is a single load.
    #[inline]
    pub(crate) fn visit(&self, id: SlotId) -> bool {
        let Some(slot) = self.slot(id.index) else {
            return false;
        };
        let s = slot.state.load(Ordering::Acquire);
        if phase(s) != LIVE || epoch(s) != id.epoch {
            return false;
        }
        if refs(s) < MAX_REFS {
            // One attempt: a lost race means another reader bumped it, which is as good.
            let _ =
                slot.state
                    .compare_exchange_weak(s, s + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
        true
    }

    /// Counts an owned read and returns the total for the entry.
    #[inline]
    pub(crate) fn record_hit(&self, id: SlotId) -> u64 {
        self.slot(id.index).map_or(0, |s| {
            s.hits.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
        })
    }

    /// Claims a slot for a new entry of `key`: a free one, or the first one the hand finds with a
    /// zero counter, whose entry `evict` must remove from the map (returning whether it was still
    /// there). The slot is returned `PENDING` under a fresh epoch, with whether an entry was
    /// evicted. `None` when no slot could be had within the search (every slot held by other
    /// inserts in flight on a tiny ring).
    pub(crate) fn claim(
        &self,
        key: &FlagId,
        mut evict: impl FnMut(Victim) -> bool,
    ) -> Option<(SlotId, bool)> {
        let n = self.slots.len();
        // Four sweeps bring every counter to zero; the rest is room for concurrent claimers.
        let budget = n.saturating_mul(8).saturating_add(64);
        for _ in 0..budget {
            let index = self.hand.fetch_add(1, Ordering::Relaxed) % n;
            let Some(slot) = self.slot(index) else {
                continue;
            };
            let s = slot.state.load(Ordering::Acquire);
            let ours = match phase(s) {
                FREE => self.hold(slot, s),
                LIVE if refs(s) == 0 => self.hold(slot, s),
                LIVE => {
                    let _ =
                        slot.state
                            .compare_exchange(s, s - 1, Ordering::Relaxed, Ordering::Relaxed);
                    false
                }
                _ => false,
            };
            if !ours {
                spin_hint();
                continue;
            }
            let mut key_slot = lock(&slot.key);
            let old_key = key_slot.replace(key.clone());
            drop(key_slot);
            let evicted = phase(s) == LIVE
                && old_key.is_some_and(|k| {
                    evict(Victim {
                        slot: SlotId {
                            index,
                            epoch: epoch(s),
                        },
                        key: k,
                    })
                });
            let new_epoch = epoch(s).wrapping_add(1) & (u64::MAX >> EPOCH_SHIFT);
            slot.hits.store(0, Ordering::Relaxed);
            slot.state
                .store(pack(PENDING, new_epoch, 0), Ordering::Release);
            return Some((
                SlotId {
                    index,
                    epoch: new_epoch,
                },
                evicted,
            ));
        }
        None
    }

    /// Takes a slot exclusively (`-> EVICTING`) if it is still in state `s`.
    fn hold(&self, slot: &Slot, s: u64) -> bool {
        slot.state
            .compare_exchange(
                s,
                pack(EVICTING, epoch(s), 0),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Makes a pending slot `LIVE`: its entry is in the map and may be read. A no-op if the
    /// slot has moved on (published by a replacing write, or freed by an invalidate).
    pub(crate) fn publish(&self, id: SlotId) {
        self.transition(id, PENDING, LIVE);
    }

    /// Returns a pending slot whose entry never made it into the map (or was withdrawn).
    pub(crate) fn release(&self, id: SlotId) {
        self.transition(id, PENDING, FREE);
    }

    fn transition(&self, id: SlotId, from: u64, to: u64) {
        if let Some(slot) = self.slot(id.index) {
            let _ = slot.state.compare_exchange(
                pack(from, id.epoch, 0),
                pack(to, id.epoch, 0),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// Frees the slot of an entry that was removed from the map, if the slot is still that
    /// entry's (`LIVE` or `PENDING` under its epoch). An `EVICTING` slot belongs to a claimer,
    /// who is removing the same entry.
    pub(crate) fn free(&self, id: SlotId) {
        let Some(slot) = self.slot(id.index) else {
            return;
        };
        let mut s = slot.state.load(Ordering::Relaxed);
        while matches!(phase(s), LIVE | PENDING) && epoch(s) == id.epoch {
            match slot.state.compare_exchange_weak(
                s,
                pack(FREE, id.epoch, 0),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => s = now,
            }
        }
    }

    /// The published slots among `count` slots from `start` (wrapping), with their keys.
    pub(crate) fn live_slots(&self, start: usize, count: usize, mut f: impl FnMut(SlotId, FlagId)) {
        let n = self.slots.len();
        for i in 0..count.min(n) {
            let index = (start + i) % n;
            let Some(slot) = self.slot(index) else {
                continue;
            };
            let s = slot.state.load(Ordering::Acquire);
            if phase(s) != LIVE {
                continue;
            }
            let key = lock(&slot.key).clone();
            if let Some(key) = key {
                f(
                    SlotId {
                        index,
                        epoch: epoch(s),
                    },
                    key,
                );
            }
        }
    }

    /// The number of `LIVE` slots (for tests and debugging; O(capacity)).
    #[cfg(any(test, fuzzing, flagcache_loom))]
    pub(crate) fn live_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| phase(s.state.load(Ordering::Acquire)) == LIVE)
            .count()
    }
}

#[cfg(all(test, not(flagcache_loom)))]
mod tests {
    use super::*;

    fn key(s: &str) -> FlagId {
        FlagId::new(s)
    }

    #[test]
    fn a_claimed_slot_is_invisible_until_published() {
        let ring = ClockRing::new(2);
        let (id, evicted) = ring.claim(&key("a"), |_| unreachable!()).unwrap();
        assert!(!evicted);
        assert!(!ring.visit(id), "pending slots read as misses");
        ring.publish(id);
        assert!(ring.visit(id));
        assert_eq!(ring.live_count(), 1);
    }

    #[test]
    fn the_hand_spares_referenced_slots_and_evicts_the_rest() {
        let ring = ClockRing::new(2);
        let (a, _) = ring.claim(&key("a"), |_| unreachable!()).unwrap();
        ring.publish(a);
        let (b, _) = ring.claim(&key("b"), |_| unreachable!()).unwrap();
        ring.publish(b);
        assert!(ring.visit(a));
        let mut victims = Vec::new();
        let (c, evicted) = ring
            .claim(&key("c"), |v| {
                victims.push(v.key.as_str().to_owned());
                true
            })
            .unwrap();
        assert!(evicted);
        assert_eq!(victims, ["b"]);
        assert_eq!(c.index, b.index);
        assert_ne!(c.epoch, b.epoch, "a reused slot gets a new epoch");
        assert!(!ring.visit(b), "the old owner's id no longer matches");
    }

    #[test]
    fn the_counter_saturates() {
        let ring = ClockRing::new(1);
        let (a, _) = ring.claim(&key("a"), |_| unreachable!()).unwrap();
        ring.publish(a);
        for _ in 0..10 {
            assert!(ring.visit(a));
        }
        let s = ring.slots[0].state.load(Ordering::Relaxed);
        assert_eq!(refs(s), MAX_REFS);
    }

    #[test]
    fn free_and_release_only_act_on_their_own_epoch() {
        let ring = ClockRing::new(1);
        let (a, _) = ring.claim(&key("a"), |_| unreachable!()).unwrap();
        ring.publish(a);
        ring.free(SlotId {
            index: 0,
            epoch: a.epoch + 1,
        });
        assert_eq!(ring.live_count(), 1, "a stale id must not free the slot");
        ring.free(a);
        assert_eq!(ring.live_count(), 0);
        let (b, evicted) = ring.claim(&key("b"), |_| unreachable!()).unwrap();
        assert!(!evicted, "a freed slot is reused without eviction");
        ring.release(a);
        ring.publish(b);
        assert!(ring.visit(b));
    }
}
