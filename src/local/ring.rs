//! The CLOCK ring: one slot per possible entry, so the entry bound holds by construction.
//!
//! Every map entry names the slot it owns ([`SlotId`]: index and epoch). A slot's phase is one
//! of `FREE`, `PENDING`, `LIVE`, `EVICTING`:
//! - an insert of a new key *claims* a slot: a never-used one while the ring fills up, else a
//!   `FREE` one the hand finds, and only when none is free a `LIVE` one whose entry's
//!   reference counter the hand has swept down to zero. It holds the slot `EVICTING`
//!   (exclusively) while it removes the old entry from the map and writes the new key, then
//!   leaves it `PENDING` under a new epoch, inserts the map entry, and *publishes* the slot
//!   (`PENDING -> LIVE`);
//! - the hand passing a `LIVE` slot asks the map about its entry: a non-zero counter is
//!   decremented and the slot spared; a zero counter (or no entry: an orphan) is evicted;
//! - `invalidate` and expiry remove the entry, then *free* the slot (`LIVE` or `PENDING` of the
//!   same epoch `-> FREE`);
//! - a write that replaces an entry keeps its slot and leaves the ring alone: the claimer
//!   publishes the slot even if its entry was replaced meanwhile, and a fill that withdraws its
//!   entry publishes the slot if a write's entry holds it by then (it frees it otherwise).
//!
//! Every transition out of `PENDING` or `LIVE` is a compare-and-swap on the epoch, and only the
//! holder of `EVICTING` (won by a CAS) moves a slot to a new epoch, after the old entry has left
//! the map. So at most one entry owns a slot, and entries never outnumber slots.
//!
//! Readers never touch the ring: an entry's reference counter and hit count live in the entry
//! itself (on the cache line the lookup has just read), and a replacing write carries them over.

use crate::flag::FlagId;
use crate::sync::{AtomicU32, AtomicUsize, Mutex, Ordering, lock, spin_hint};
use std::sync::OnceLock;

const PHASE_MASK: u32 = 0b11;
const FREE: u32 = 0;
const PENDING: u32 = 1;
const LIVE: u32 = 2;
const EVICTING: u32 = 3;
const EPOCH_SHIFT: u32 = 2;

/// Bits of a slot index in a [`SlotId`]; the builder caps capacity below `1 << INDEX_BITS`.
pub(crate) const INDEX_BITS: u32 = 26;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// Epochs wrap at 30 bits, the rest of a slot's 32-bit state word: an operation holding an
/// old id would have to stall through 2^30 claims of that one slot to act on a newer owner.
const EPOCH_MASK: u32 = u32::MAX >> EPOCH_SHIFT;

#[inline]
fn pack(phase: u32, epoch: u32) -> u32 {
    (epoch << EPOCH_SHIFT) | phase
}
#[inline]
fn phase(s: u32) -> u32 {
    s & PHASE_MASK
}
#[inline]
fn epoch(s: u32) -> u32 {
    s >> EPOCH_SHIFT
}

/// The slot an entry owns: its index and the epoch it was claimed in, packed in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotId(u64);

impl SlotId {
    fn new(index: usize, epoch: u32) -> Self {
        Self((index as u64 & INDEX_MASK) | (u64::from(epoch & EPOCH_MASK) << INDEX_BITS))
    }
    pub(crate) fn index(self) -> usize {
        (self.0 & INDEX_MASK) as usize
    }
    fn epoch(self) -> u32 {
        (self.0 >> INDEX_BITS) as u32
    }
    /// Slot 0 at its first epoch, for tests of the entry.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        Self::new(0, 1)
    }
    /// The first claim of the slot since the ring was built (epochs start at zero, and each
    /// claim moves its slot to the next).
    pub(crate) fn is_first_use(self) -> bool {
        self.epoch() == 1
    }
}

/// Slots whose keys share a lock.
const KEYS_PER_LOCK: usize = 64;

/// The slots: a 32-bit state word each, and the key of each slot's entry, for the hand and the
/// sweeper. A key is written only while its slot is `EVICTING` (held by one claimer). Keys are
/// locked in blocks: a lock of its own would cost each slot another 8 bytes (two thirds more),
/// and only claims and the hand take these locks, each for one key clone.
struct Slots {
    states: Box<[AtomicU32]>,
    keys: Box<[Mutex<[Option<FlagId>; KEYS_PER_LOCK]>]>,
}

impl Slots {
    fn key(&self, index: usize) -> Option<FlagId> {
        let block = self.keys.get(index / KEYS_PER_LOCK)?;
        lock(block)[index % KEYS_PER_LOCK].clone()
    }

    fn set_key(&self, index: usize, key: &FlagId) {
        if let Some(block) = self.keys.get(index / KEYS_PER_LOCK) {
            lock(block)[index % KEYS_PER_LOCK] = Some(key.clone());
        }
    }
}

/// What the hand should do with a published slot, as its entry says.
pub(crate) enum Verdict {
    /// The entry was read since the hand last passed (its counter is now decremented).
    Spare,
    /// The entry's counter is zero, or the slot has no entry: take the slot.
    Evict,
}

pub(crate) struct ClockRing {
    /// Allocated at the first claim: a buffer that is never filled costs nothing.
    slots: OnceLock<Slots>,
    capacity: usize,
    hand: AtomicUsize,
    /// The next never-used slot: while the ring fills up, a claim takes it without a search.
    fresh: AtomicUsize,
    /// How many slots are `FREE` (never used, or given back by an invalidate or expiry). While
    /// some are, the hand looks for one (for up to one sweep) rather than evict.
    free: AtomicUsize,
}

impl ClockRing {
    /// A ring of `capacity` free slots (1 to `1 << INDEX_BITS`, checked by the builder).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: OnceLock::new(),
            capacity: capacity.clamp(1, 1 << INDEX_BITS),
            hand: AtomicUsize::new(0),
            fresh: AtomicUsize::new(0),
            free: AtomicUsize::new(capacity.clamp(1, 1 << INDEX_BITS)),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The slots, allocating them on first use.
    fn slots(&self) -> &Slots {
        self.slots.get_or_init(|| Slots {
            states: (0..self.capacity)
                .map(|_| AtomicU32::new(pack(FREE, 0)))
                .collect(),
            keys: (0..self.capacity.div_ceil(KEYS_PER_LOCK))
                .map(|_| Mutex::new(std::array::from_fn(|_| None)))
                .collect(),
        })
    }

    /// The state word of slot `index`, if the slots exist.
    #[inline]
    fn slot(&self, index: usize) -> Option<&AtomicU32> {
        self.slots.get().and_then(|slots| slots.states.get(index))
    }

    /// Claims a slot for a new entry of `key`: a free one, or the first published one whose
    /// entry `inspect` condemns; `evict` must then remove that entry from the map (returning
    /// whether it was still there). The slot is returned `PENDING` under a fresh epoch, with
    /// whether an entry was evicted. `None` when no slot could be had within the search (every
    /// slot held by other inserts in flight on a tiny ring).
    pub(crate) fn claim(
        &self,
        key: &FlagId,
        mut inspect: impl FnMut(&FlagId, SlotId) -> Verdict,
        mut evict: impl FnMut(&FlagId, SlotId) -> bool,
    ) -> Option<(SlotId, bool)> {
        let slots = self.slots();
        let n = slots.states.len();
        if self.fresh.load(Ordering::Relaxed) < n {
            let index = self.fresh.fetch_add(1, Ordering::Relaxed);
            if let Some(claimed) = slots
                .states
                .get(index)
                .and_then(|slot| self.take(slots, slot, index, None, key, &mut evict))
            {
                return Some(claimed);
            }
        }
        // Four sweeps bring every counter to zero; the rest is room for concurrent claimers.
        let budget = n.saturating_mul(8).saturating_add(64);
        for step in 0..budget {
            let index = self.hand.fetch_add(1, Ordering::Relaxed) % n;
            let Some(slot) = slots.states.get(index) else {
                continue;
            };
            let s = slot.load(Ordering::Acquire);
            let id = SlotId::new(index, epoch(s));
            let victim = match phase(s) {
                FREE => None,
                // Free slots exist: find one (within a sweep) rather than evict.
                LIVE if step < n && self.free.load(Ordering::Relaxed) > 0 => continue,
                LIVE => {
                    let Some(owner) = slots.key(index) else {
                        continue;
                    };
                    match inspect(&owner, id) {
                        Verdict::Spare => continue,
                        Verdict::Evict => Some(owner),
                    }
                }
                _ => {
                    spin_hint();
                    continue;
                }
            };
            if let Some(claimed) = self.take(slots, slot, index, Some((s, victim)), key, &mut evict)
            {
                return Some(claimed);
            }
        }
        None
    }

    /// Takes `slot` (the state of `slots`' `index`) for `key` if it is still as seen (`seen`: its
    /// state and the entry to evict; `None`: expected free): holds it `EVICTING`, evicts, writes
    /// the key, leaves it `PENDING`.
    fn take(
        &self,
        slots: &Slots,
        slot: &AtomicU32,
        index: usize,
        seen: Option<(u32, Option<FlagId>)>,
        key: &FlagId,
        evict: &mut impl FnMut(&FlagId, SlotId) -> bool,
    ) -> Option<(SlotId, bool)> {
        let (s, victim) = match seen {
            Some(seen) => seen,
            None => (slot.load(Ordering::Acquire), None),
        };
        if victim.is_none() && phase(s) != FREE {
            return None;
        }
        slot.compare_exchange(
            s,
            pack(EVICTING, epoch(s)),
            Ordering::Acquire,
            Ordering::Relaxed,
        )
        .ok()?;
        if phase(s) == FREE {
            self.free.fetch_sub(1, Ordering::Relaxed);
        }
        let evicted = victim.is_some_and(|owner| evict(&owner, SlotId::new(index, epoch(s))));
        slots.set_key(index, key);
        let new_epoch = epoch(s).wrapping_add(1) & EPOCH_MASK;
        slot.store(pack(PENDING, new_epoch), Ordering::Release);
        Some((SlotId::new(index, new_epoch), evicted))
    }

    /// Makes a pending slot `LIVE`: its entry is in the map. A no-op if the slot has moved on
    /// (freed by an invalidate meanwhile).
    pub(crate) fn publish(&self, id: SlotId) {
        self.transition(id, PENDING, LIVE);
    }

    /// Returns a pending slot whose entry never made it into the map (or was withdrawn).
    pub(crate) fn release(&self, id: SlotId) {
        if self.transition(id, PENDING, FREE) {
            self.free.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn transition(&self, id: SlotId, from: u32, to: u32) -> bool {
        self.slot(id.index()).is_some_and(|slot| {
            slot.compare_exchange(
                pack(from, id.epoch()),
                pack(to, id.epoch()),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        })
    }

    /// Frees the slot of an entry that was removed from the map, if the slot is still that
    /// entry's (`LIVE` or `PENDING` under its epoch). An `EVICTING` slot belongs to a claimer,
    /// who is removing the same entry.
    pub(crate) fn free(&self, id: SlotId) {
        let Some(slot) = self.slot(id.index()) else {
            return;
        };
        for from in [LIVE, PENDING] {
            let freed = slot.compare_exchange(
                pack(from, id.epoch()),
                pack(FREE, id.epoch()),
                Ordering::Release,
                Ordering::Relaxed,
            );
            if freed.is_ok() {
                self.free.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }

    /// The published slots among `count` slots from `start` (wrapping), with their keys.
    pub(crate) fn live_slots(&self, start: usize, count: usize, mut f: impl FnMut(SlotId, FlagId)) {
        let Some(slots) = self.slots.get() else {
            return;
        };
        let n = self.capacity;
        for i in 0..count.min(n) {
            let index = (start + i) % n;
            let Some(slot) = slots.states.get(index) else {
                continue;
            };
            let s = slot.load(Ordering::Acquire);
            if phase(s) != LIVE {
                continue;
            }
            if let Some(key) = slots.key(index) {
                f(SlotId::new(index, epoch(s)), key);
            }
        }
    }

    /// What is wrong with the ring at quiescence, if anything (tests and model checks): a slot
    /// left `PENDING` or `EVICTING`, or a free count that disagrees with the `FREE` slots.
    #[cfg(any(test, fuzzing, flagcache_loom))]
    pub(crate) fn unsettled(&self) -> Option<String> {
        let counted = self.free.load(Ordering::Acquire);
        let (free, held) = self.slots.get().map_or((self.capacity, 0), |slots| {
            slots.states.iter().fold((0, 0), |(free, held), s| {
                match phase(s.load(Ordering::Acquire)) {
                    FREE => (free + 1, held),
                    LIVE => (free, held),
                    _ => (free, held + 1),
                }
            })
        });
        if held > 0 {
            Some(format!("{held} slots left PENDING or EVICTING"))
        } else if free != counted {
            Some(format!("{free} FREE slots, counted {counted}"))
        } else {
            None
        }
    }

    /// True when slot `id` is `LIVE` under its epoch and names `key` (tests and model checks).
    #[cfg(any(test, fuzzing, flagcache_loom))]
    pub(crate) fn is_live_for(&self, id: SlotId, key: &FlagId) -> bool {
        self.slots.get().is_some_and(|slots| {
            slots
                .states
                .get(id.index())
                .is_some_and(|slot| slot.load(Ordering::Acquire) == pack(LIVE, id.epoch()))
                && slots.key(id.index()).as_ref() == Some(key)
        })
    }

    /// The number of `LIVE` slots (for tests and model checks; O(capacity)).
    #[cfg(any(test, fuzzing, flagcache_loom))]
    pub(crate) fn live_count(&self) -> usize {
        self.slots.get().map_or(0, |slots| {
            slots
                .states
                .iter()
                .filter(|s| phase(s.load(Ordering::Acquire)) == LIVE)
                .count()
        })
    }
}

#[cfg(all(test, not(flagcache_loom)))]
mod tests {
    use super::*;

    fn key(s: &str) -> FlagId {
        FlagId::new(s)
    }

    fn never(_: &FlagId, _: SlotId) -> Verdict {
        unreachable!("nothing to inspect")
    }

    fn no_evict(_: &FlagId, _: SlotId) -> bool {
        unreachable!("nothing to evict")
    }

    #[test]
    fn a_claimed_slot_is_pending_until_published() {
        let ring = ClockRing::new(2);
        let (id, evicted) = ring.claim(&key("a"), never, no_evict).unwrap();
        assert!(!evicted);
        assert_eq!(ring.live_count(), 0, "pending slots are not live");
        ring.publish(id);
        assert_eq!(ring.live_count(), 1);
    }

    #[test]
    fn the_hand_spares_what_inspect_spares_and_evicts_the_rest() {
        let ring = ClockRing::new(2);
        let (a, _) = ring.claim(&key("a"), never, no_evict).unwrap();
        ring.publish(a);
        let (b, _) = ring.claim(&key("b"), never, no_evict).unwrap();
        ring.publish(b);
        let mut evicted_keys = Vec::new();
        let (c, evicted) = ring
            .claim(
                &key("c"),
                |k, _| {
                    if k.as_str() == "a" {
                        Verdict::Spare
                    } else {
                        Verdict::Evict
                    }
                },
                |k, _| {
                    evicted_keys.push(k.as_str().to_owned());
                    true
                },
            )
            .unwrap();
        assert!(evicted);
        assert_eq!(evicted_keys, ["b"]);
        assert_eq!(c.index(), b.index());
        assert_ne!(c.epoch(), b.epoch(), "a reused slot gets a new epoch");
    }

    #[test]
    fn free_and_release_only_act_on_their_own_epoch() {
        let ring = ClockRing::new(1);
        let (a, _) = ring.claim(&key("a"), never, no_evict).unwrap();
        ring.publish(a);
        ring.free(SlotId::new(0, a.epoch() + 1));
        assert_eq!(ring.live_count(), 1, "a stale id must not free the slot");
        ring.free(a);
        assert_eq!(ring.live_count(), 0);
        let (b, evicted) = ring.claim(&key("b"), never, no_evict).unwrap();
        assert!(!evicted, "a freed slot is reused without eviction");
        ring.release(a);
        ring.publish(b);
        assert_eq!(
            ring.live_count(),
            1,
            "a stale release must not touch the new owner"
        );
    }

    #[test]
    fn an_epoch_wraps_to_zero_within_the_state_word() {
        let ring = ClockRing::new(1);
        let (a, _) = ring.claim(&key("a"), never, no_evict).unwrap();
        ring.publish(a);
        // Where 2^30 claims of the slot would have brought it.
        ring.slots().states[0].store(pack(LIVE, EPOCH_MASK), Ordering::Relaxed);
        let last = SlotId::new(0, EPOCH_MASK);
        ring.free(last);
        assert_eq!(ring.live_count(), 0);
        let (b, _) = ring.claim(&key("b"), never, no_evict).unwrap();
        assert_eq!(b.epoch(), 0, "the epoch wraps");
        ring.publish(b);
        assert!(ring.is_live_for(b, &key("b")));
        ring.free(last);
        assert!(
            ring.is_live_for(b, &key("b")),
            "an id of the last epoch must not free the wrapped one"
        );
        assert!(ring.unsettled().is_none());
    }

    #[test]
    fn slot_ids_round_trip_index_and_epoch() {
        let id = SlotId::new((1 << INDEX_BITS) - 1, EPOCH_MASK);
        assert_eq!(id.index(), (1 << INDEX_BITS) - 1);
        assert_eq!(id.epoch(), EPOCH_MASK);
        assert_eq!(SlotId::new(3, EPOCH_MASK + 1).epoch(), 0, "epochs wrap");
    }
}
