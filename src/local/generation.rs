//! One generation buffer of L1: the map and its CLOCK ring (see `snapshots` for how two of
//! them make `replace_all` atomic).
//!
//! This file holds the entry and the write protocol of a buffer (insert, replace, fill,
//! remove, sweep, drain); the read path is in `read.rs`, the public writes in `write.rs`.

use super::fences::{FillTicket, WriteFences};
use super::ring::{ClockRing, SlotId, Verdict};
use super::snapshots::Snapshots;
use super::stats::{Counter, Stats};
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::{Arc, AtomicU64, ConcurrentMap, MapOp, MapOutcome, Ordering, fence};
use crate::time::{NEVER, Ticks};
use std::time::Instant;

/// Bits of the generation tag, at the bottom of `Entry::state`.
#[cfg(not(flagcache_loom))]
pub(crate) const TAG_BITS: u32 = 20;
/// One bit under loom: two swaps bring a tag round again, so the models reach what 2^20 swaps
/// would.
#[cfg(flagcache_loom)]
pub(crate) const TAG_BITS: u32 = 1;
pub(crate) const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
/// The published bit of `Entry::state`, above the tag.
const PUBLISHED: u64 = 1 << TAG_BITS;
/// One CLOCK reference in `Entry::state`: a 2-bit counter above the published bit.
const REF: u64 = 1 << (TAG_BITS + 1);
const REFS_MASK: u64 = 0b11 << (TAG_BITS + 1);
/// The counter saturates here: a hot entry stops writing it.
const MAX_REFS: u64 = REFS_MASK;
/// Set by the first read of an entry (a new entry, a refreshed one, starts without it): what
/// refresh-ahead asks to tell hot entries from cold ones. Once set, with the counter
/// saturated, reads write nothing.
const READ: u64 = 1 << (TAG_BITS + 3);
/// The expiry fills the bits above the tag and the flags (see [`Expiry`]).
const EXPIRY_SHIFT: u32 = 24;
const _: () = assert!(TAG_BITS + 4 <= EXPIRY_SHIFT);
const FLAGS_MASK: u64 = (1 << EXPIRY_SHIFT) - 1;

/// An expiry as an entry's state word holds it: whole milliseconds of the cache's clock,
/// rounded down (an entry may expire up to a millisecond early, never late), in the 40 bits
/// above the flags (34 years of a clock's life); [`Expiry::NEVER`] for no expiry, which a
/// later expiry becomes too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Expiry(u64);

impl Expiry {
    const NEVER: Self = Self(u64::MAX >> EXPIRY_SHIFT);
    const NANOS_PER_MS: u64 = 1_000_000;

    /// The expiry of a moment of the clock, in ticks.
    pub(crate) fn at(ticks: Ticks) -> Self {
        if ticks == NEVER {
            return Self::NEVER;
        }
        Self((ticks / Self::NANOS_PER_MS).min(Self::NEVER.0))
    }

    /// The moment it stands for, in ticks ([`NEVER`] for none).
    pub(crate) fn ticks(self) -> Ticks {
        if self == Self::NEVER {
            NEVER
        } else {
            self.0 * Self::NANOS_PER_MS
        }
    }

    /// True once the clock reads `now`; never for [`Expiry::NEVER`], however late the clock.
    #[inline]
    pub(crate) fn passed_at(self, now: Ticks) -> bool {
        // A multiplication rather than a division of `now`; 40 bits of milliseconds in
        // nanoseconds stay below 2^60. The second test runs only for an expired entry.
        self.0 * Self::NANOS_PER_MS <= now && self != Self::NEVER
    }
}

/// One cached definition. A write replaces the whole value (carrying its counters over) and
/// keeps the slot. The fields a read needs come first, in this order (`repr(C)`: left to
/// itself the compiler put the definition 48 bytes into the map's node, after the counters),
/// so a hit reads the first 24 bytes of the node, key included, and the owned read's counters
/// follow.
#[repr(C)]
pub(crate) struct Entry {
    pub(crate) def: Arc<FlagDefinition>,
    /// The generation the entry was written for (`Active::tag`, `TAG_BITS` bits), whether it
    /// is published (`PUBLISHED`, false only for a fill not yet validated against its write
    /// fence), its GCLOCK counter (`REFS_MASK`: bumped by reads up to the maximum, decremented
    /// by the hand), whether it was read since written (`READ`), and its expiry (above
    /// `EXPIRY_SHIFT`: served as fresh before it). One word, so a reader checks visibility and
    /// expiry with one load, beside the definition; every change is a read-modify-write of the
    /// flags, so none overwrites another, and none changes the expiry.
    state: AtomicU64,
    /// Owned reads served from this entry (and the entries it replaced).
    hits: AtomicU64,
    /// When the entry was written, as the `Instant` owned reads hand out (converted once, at
    /// write time, rather than on every hit).
    pub(crate) cached_at: Instant,
    pub(crate) slot: SlotId,
}

impl Entry {
    /// The state word, loaded once for a read's visibility check and its CLOCK touch.
    #[inline]
    pub(crate) fn state(&self) -> State {
        State(self.state.load(Ordering::Acquire))
    }

    /// The generation tag the entry was written for.
    #[inline]
    pub(crate) fn tag(&self) -> u32 {
        (self.state.load(Ordering::Relaxed) & TAG_MASK) as u32
    }

    /// When the entry stops being served as fresh.
    pub(crate) fn expiry(&self) -> Expiry {
        self.state().expiry()
    }

    fn publish(&self) {
        self.state.fetch_or(PUBLISHED, Ordering::Release);
    }

    /// False only for the entry a fill inserted and has not validated yet; every other write
    /// stores a published entry.
    fn is_published(&self) -> bool {
        self.state.load(Ordering::Relaxed) & PUBLISHED != 0
    }

    /// Counts a reference for CLOCK, given the state the reader loaded; no write once the
    /// counter is saturated.
    #[inline]
    pub(crate) fn touch(&self, seen: State) {
        let s = seen.0;
        // A hot entry: saturated and read. One test, the common case of a read.
        if s & (REFS_MASK | READ) == REFS_MASK | READ {
            return;
        }
        let bump = if s & REFS_MASK < MAX_REFS { REF } else { 0 };
        let touched = (s | READ) + bump;
        if touched != s {
            // One attempt: losing the race to another reader's touch is as good.
            let _ =
                self.state
                    .compare_exchange_weak(s, touched, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// True once a read touched the entry since it was written.
    pub(crate) fn was_read(&self) -> bool {
        self.state.load(Ordering::Relaxed) & READ != 0
    }

    /// Counts an owned read; returns the entry's total.
    ///
    /// A plain load and store, not an atomic add: exact for one thread, while concurrent owned
    /// reads of one entry can overwrite each other's increments (the count is then a lower
    /// bound). An atomic add here costs a locked instruction on every owned hit, on a line that
    /// every reader of a hot flag shares.
    #[inline]
    pub(crate) fn record_hit(&self) -> u64 {
        let n = self.hits.load(Ordering::Relaxed).wrapping_add(1);
        self.hits.store(n, Ordering::Relaxed);
        n
    }

    /// The hand's question: spare (and decrement) a referenced entry, evict the others.
    fn age(&self) -> Verdict {
        let s = self.state.load(Ordering::Relaxed);
        if s & REFS_MASK == 0 {
            Verdict::Evict
        } else {
            // A lost race (a reader's bump) leaves the counter higher: the entry was read.
            let _ = self
                .state
                .compare_exchange(s, s - REF, Ordering::Relaxed, Ordering::Relaxed);
            Verdict::Spare
        }
    }

    /// The counters a replacing entry carries over: the CLOCK references and the hit count.
    fn carried(&self) -> (u64, u64) {
        (
            self.state.load(Ordering::Relaxed) & REFS_MASK,
            self.hits.load(Ordering::Relaxed),
        )
    }
}

/// An entry's state word as one read loaded it.
#[derive(Clone, Copy)]
pub(crate) struct State(u64);

impl State {
    /// True when readers of generation `tag` may see the entry.
    #[inline]
    pub(crate) fn visible_in(self, tag: u32) -> bool {
        self.0 & (TAG_MASK | PUBLISHED) == u64::from(tag) | PUBLISHED
    }

    /// True when readers of generation `tag` may see the entry and a read has nothing to write
    /// (its counter saturated, its read bit set): one comparison for a hot entry's hit.
    #[inline]
    pub(crate) fn is_hot_in(self, tag: u32) -> bool {
        self.0 & FLAGS_MASK == u64::from(tag) | PUBLISHED | MAX_REFS | READ
    }

    /// The entry's expiry.
    #[inline]
    pub(crate) fn expiry(self) -> Expiry {
        Expiry(self.0 >> EXPIRY_SHIFT)
    }
}

/// What a new entry is stamped with: its times and its generation's tag.
#[derive(Clone, Copy)]
pub(crate) struct Stamp {
    pub(crate) cached_at: Instant,
    pub(crate) expires_at: Ticks,
    pub(crate) tag: u32,
}

impl Stamp {
    fn entry(
        self,
        def: Arc<FlagDefinition>,
        slot: SlotId,
        published: bool,
        (refs, hits): (u64, u64),
    ) -> Entry {
        let published = if published { PUBLISHED } else { 0 };
        let expiry = Expiry::at(self.expires_at).0 << EXPIRY_SHIFT;
        Entry {
            def,
            state: AtomicU64::new(u64::from(self.tag) | published | refs | expiry),
            hits: AtomicU64::new(hits),
            cached_at: self.cached_at,
            slot,
        }
    }
}

/// Who is writing: an explicit `set`, or a fill holding a ticket.
#[derive(Clone, Copy)]
pub(crate) enum Writer<'a> {
    Set,
    Fill(&'a FillTicket, &'a WriteFences, &'a Snapshots),
}

impl Writer<'_> {
    /// False for a fill that a write or a swap has overtaken since its ticket. The swap is
    /// checked by its full generation number: the tag an entry carries wraps (`TAG_BITS`), so a
    /// fill stalled through that many swaps would otherwise write an entry that passes for
    /// current into a set that deleted its flag.
    fn may_install(&self) -> bool {
        match self {
            Writer::Set => true,
            Writer::Fill(ticket, fences, snapshots) => {
                fences.unchanged_since(ticket) && snapshots.active().number() == ticket.generation
            }
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

/// Entries the first buffer's table is sized for at build time: typical flag sets never
/// resize it.
const PRESIZED: usize = 1 << 16;

/// True when the `n`th slot the ring hands out is one at which the map grows its table itself
/// (see `Generation::write`): at each `7 << k` from 896 on. papaya gives `n` entries `4n / 3`
/// slots, rounded up to a power of two, so a table of `8 << k` slots grows there (not at three
/// quarters, as papaya's own `reserve` would: a set of 100 000 would take a table twice the
/// size it needs). Below the presized table's size this only frees what the thread retired.
fn grows_table_at(n: usize) -> bool {
    n >= 7 << 7 && n >> n.trailing_zeros() == 7
}

pub(crate) struct Generation {
    pub(crate) map: ConcurrentMap<Entry>,
    pub(crate) ring: ClockRing,
    /// How long past its expiry an entry is kept for stale reads.
    pub(crate) grace: Ticks,
}

impl Generation {
    /// A buffer for `capacity` entries; `presize` allocates the map's table now (the first
    /// buffer) rather than as entries arrive (the second, which may never be used).
    pub(crate) fn new(capacity: usize, grace: Ticks, presize: bool) -> Self {
        Self {
            map: ConcurrentMap::with_capacity(if presize { capacity.min(PRESIZED) } else { 0 }),
            ring: ClockRing::new(capacity),
            grace,
        }
    }

    /// When an entry of `expiry` leaves the map.
    #[inline]
    pub(crate) fn evict_at(&self, expiry: Expiry) -> Ticks {
        expiry.ticks().saturating_add(self.grace)
    }

    /// Stores `def` under `key`, unless the map holds a higher version or (for a fill) a write
    /// overtook the fill.
    pub(crate) fn write(
        &self,
        key: &FlagId,
        def: &Arc<FlagDefinition>,
        stamp: Stamp,
        writer: Writer<'_>,
        stats: &Stats,
    ) -> WriteResult {
        let version = def.version;
        for _ in 0..WRITE_ATTEMPTS {
            // Replace in place: the entry keeps its slot, and its counters carry over. The ring
            // is not touched: the slot's claimer publishes it (see `withdraw` for the one
            // claimer that gives up).
            let replaced = self.map.compute(key.clone(), |current| match current {
                None => MapOp::Abort(Present::Absent),
                // An entry of another generation (a delayed writer's) is garbage: overwrite it.
                Some(e) if e.tag() == stamp.tag && e.def.version > version => {
                    MapOp::Abort(Present::Stale(e.def.version))
                }
                Some(_) if !writer.may_install() => MapOp::Abort(Present::Overtaken),
                Some(e) => {
                    let carried = e.carried();
                    MapOp::Insert(stamp.entry(Arc::clone(def), e.slot, true, carried))
                }
            });
            match replaced {
                MapOutcome::Aborted(Present::Absent) => {}
                MapOutcome::Aborted(Present::Stale(v)) => return WriteResult::Stale(v),
                MapOutcome::Aborted(Present::Overtaken) => return WriteResult::Overtaken,
                MapOutcome::Inserted | MapOutcome::Updated => return WriteResult::Stored,
            }

            // A new key: claim a slot first (evicting if need be), so the bound holds.
            let Some((slot, evicted)) = self.ring.claim(
                key,
                |owner, slot| {
                    self.map
                        .read(owner.as_str(), |e| {
                            if e.slot == slot {
                                e.age()
                            } else {
                                Verdict::Evict
                            }
                        })
                        .unwrap_or(Verdict::Evict)
                },
                |owner, slot| {
                    self.map
                        .remove_if(owner.as_str(), |e| e.slot == slot, |_| ())
                        .is_some()
                },
            ) else {
                stats.add(Counter::Evictions, 1);
                return WriteResult::Dropped;
            };
            if evicted {
                stats.add(Counter::Evictions, 1);
            }
            // A fill's entry starts unpublished, until it is validated below.
            let is_fill = matches!(writer, Writer::Fill(..));
            let inserted = self.map.compute(key.clone(), |current| match current {
                None => MapOp::Insert(stamp.entry(Arc::clone(def), slot, !is_fill, (0, 0))),
                Some(_) => MapOp::Abort(()),
            });
            if !matches!(inserted, MapOutcome::Inserted) {
                // Another insert of this key won; go round and replace its value.
                self.ring.release(slot);
                continue;
            }
            if matches!(writer, Writer::Fill(..)) {
                // Pairs with the fences in `WriteFences::advance` (see `fences.rs`) and after a
                // swap's store of the snapshot word.
                fence(Ordering::SeqCst);
                if !writer.may_install() {
                    return self.withdraw(key, slot, def);
                }
                self.map.read(key.as_str(), |e| {
                    if e.slot == slot && Arc::ptr_eq(&e.def, def) {
                        e.publish();
                    }
                });
            }
            self.ring.publish(slot);
            if slot.is_first_use() && grows_table_at(slot.index() + 1) {
                // The ring hands out never-used slots in index order while it fills, so the map
                // holds about `index + 1` entries: grow its table now, on this thread, which then
                // frees the table it outgrew at once. Left to papaya, the resize would come when
                // a write's probe sequence runs over its limit, and the old table would wait in
                // that thread's retirement batch, which a set written once never fills (as much
                // memory again as the table in use). The margin of an eighth covers inserts of
                // other threads that claimed their slots before this one but are not in the map
                // yet.
                self.map.reserve(slot.index() / 8);
            }
            return WriteResult::Stored;
        }
        WriteResult::Dropped
    }

    /// Takes back the unpublished entry of an overtaken fill, and its slot.
    fn withdraw(&self, key: &FlagId, slot: SlotId, def: &Arc<FlagDefinition>) -> WriteResult {
        // Our entry is the unpublished one in our slot: a write that replaced it may have
        // stored the very same definition (an in-memory L2 hands fills the `Arc` a set wrote),
        // but its entry is published.
        let withdrawn = self
            .map
            .remove_if(
                key.as_str(),
                |e| e.slot == slot && Arc::ptr_eq(&e.def, def) && !e.is_published(),
                |_| (),
            )
            .is_some();
        // If the entry is gone but the key's entry still owns our slot, a write replaced it: the
        // slot now holds that write's entry, and we publish it as its claimer (replacing writes
        // leave the ring alone). Otherwise the slot is ours to give back.
        let replaced = !withdrawn
            && self
                .map
                .read(key.as_str(), |e| e.slot == slot)
                .unwrap_or(false);
        if replaced {
            self.ring.publish(slot);
        } else {
            self.ring.release(slot);
        }
        WriteResult::Overtaken
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

    /// Removes `key` if its entry is still the one in `slot` and is past its stale grace at
    /// `now`.
    pub(crate) fn remove_expired(&self, key: &str, slot: SlotId, now: Ticks) -> bool {
        let removed = self.map.remove_if(
            key,
            |e| e.slot == slot && self.evict_at(e.expiry()) <= now,
            |e| e.slot,
        );
        match removed {
            Some(slot) => {
                self.ring.free(slot);
                true
            }
            None => false,
        }
    }

    /// Checks `count` ring slots from `start`: removes expired entries and entries of another
    /// generation than `tag`, and frees slots whose entry left the map without them (see
    /// `ClockRing::free`). Returns the expirations.
    pub(crate) fn sweep(&self, start: usize, count: usize, now: Ticks, tag: u32) -> u64 {
        let mut expired = 0;
        self.ring.live_slots(start, count, |slot, key| {
            match self
                .map
                .read(key.as_str(), |e| (e.slot, e.expiry(), e.tag()))
            {
                Some((owner, _, entry_tag)) if owner == slot && entry_tag != tag => {
                    self.remove_slot(key.as_str(), slot);
                }
                Some((owner, expiry, _)) if owner == slot => {
                    if self.evict_at(expiry) <= now && self.remove_expired(key.as_str(), slot, now)
                    {
                        expired += 1;
                    }
                }
                // Published but ownerless: reclaim it now rather than wait for the hand.
                _ => self.ring.free(slot),
            }
        });
        expired
    }

    /// Removes `key` if its entry still owns `slot`, and frees the slot.
    fn remove_slot(&self, key: &str, slot: SlotId) {
        if self
            .map
            .remove_if(key, |e| e.slot == slot, |_| ())
            .is_some()
        {
            self.ring.free(slot);
        }
    }

    /// Removes every entry (the buffer is being retired, or reused by a swap).
    pub(crate) fn drain(&self) {
        let mut owned = Vec::with_capacity(self.map.len());
        self.map
            .for_each(|key, e| owned.push((key.clone(), e.slot)));
        if owned.is_empty() {
            return;
        }
        for (key, slot) in owned {
            self.remove_slot(key.as_str(), slot);
        }
        self.map.release_removed();
    }
}

#[cfg(all(test, not(flagcache_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Ticks = 1_000_000;
    /// The last moment the word can hold (34 years after the clock's start).
    const LAST: Ticks = Expiry::NEVER.0 * MS - 1;

    proptest! {
        /// Served fresh until at most a millisecond before the moment asked for, never after it.
        #[test]
        fn an_expiry_passes_within_the_millisecond_before_its_moment(
            at in 0..LAST,
            now in 0..LAST,
        ) {
            let expiry = Expiry::at(at);
            if now >= at {
                prop_assert!(expiry.passed_at(now));
            }
            if now.saturating_add(MS) <= at {
                prop_assert!(!expiry.passed_at(now));
            }
            prop_assert!(expiry.ticks() <= at && at - expiry.ticks() < MS);
        }

        /// The flags of the state word read the same whatever the expiry beside them.
        #[test]
        fn the_expiry_leaves_the_flags_alone(
            at in 0..LAST,
            tag in 0..(1u32 << TAG_BITS),
            published: bool,
            refs in 0..4u64,
            read: bool,
        ) {
            let stamp = Stamp { cached_at: Instant::now(), expires_at: at, tag };
            let e = stamp.entry(
                Arc::new(FlagDefinition::new_boolean("f", "d", false).unwrap()),
                SlotId::for_tests(),
                published,
                (refs * REF, 0),
            );
            // A touch is one weak attempt, which may fail spuriously: until one lands.
            while read && !e.was_read() {
                e.touch(e.state());
            }
            let state = e.state();
            prop_assert_eq!(state.expiry(), Expiry::at(at));
            prop_assert_eq!(e.tag(), tag);
            prop_assert_eq!(state.visible_in(tag), published);
            prop_assert!(!state.visible_in((tag + 1) & TAG_MASK as u32));
            let hot = published && read && (refs == 3 || refs == 2);
            prop_assert_eq!(state.is_hot_in(tag), hot);
        }
    }

    #[test]
    fn no_expiry_and_expiries_beyond_the_word_never_pass() {
        assert_eq!(Expiry::at(NEVER).ticks(), NEVER);
        let far = Expiry::at(LAST + 1);
        assert_eq!(
            far,
            Expiry::NEVER,
            "beyond 40 bits of milliseconds means never"
        );
        assert!(!far.passed_at(LAST));
        assert!(
            !Expiry::NEVER.passed_at(Ticks::MAX),
            "however late the clock"
        );
        assert!(Expiry::at(LAST).passed_at(LAST));
    }
}
