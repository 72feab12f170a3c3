//! The read path of [`LocalCache`]: owned, borrowed, batch and stale reads.
//!
//! A read loads the active snapshot word, looks the id up in that buffer, and validates the
//! word before it trusts the answer (see `snapshots`); a read that overlapped a swap is retried.
//! The user's closure in [`LocalCache::get_with`] runs once, after validation.

use super::generation::{Entry, Generation};
use super::ring::SlotId;
use super::snapshots::Active;
use super::stats::Counter;
use super::{LocalCache, StaleFlag};
use crate::cache::CachedFlag;
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::{Arc, MapGuard};
use crate::time::Ticks;
use std::collections::HashMap;
use std::time::Duration;

/// How often a read retries when swaps keep overlapping it (two would already be rare).
#[cfg(not(flagcache_loom))]
const READ_ATTEMPTS: usize = 8;
// One under loom, so the models reach what comes after the optimistic attempts.
#[cfg(flagcache_loom)]
const READ_ATTEMPTS: usize = 1;

enum Lookup<'g> {
    Hit(&'g Entry),
    Miss,
    /// Found past its TTL in the buffer of this snapshot.
    Expired(SlotId, Active),
    /// A swap overlapped the lookup: try again on the new snapshot.
    Retry,
}

impl LocalCache {
    /// Looks `id` up in `buffer`, the buffer of snapshot `a`, pinned by `guard`. A hit is a
    /// fresh entry of that snapshot, found after the snapshot was validated.
    // Always: left out of line, its three-word result costs a tenth of a hit.
    #[inline(always)]
    fn lookup<'g>(
        &self,
        buffer: &Generation,
        guard: &'g MapGuard<'_, Entry>,
        a: Active,
        id: &str,
        now: Ticks,
    ) -> Lookup<'g> {
        let found = buffer.map.get(id, guard).map(|e| (e, e.state()));
        match found {
            Some((e, state)) if state.is_hot_in(a.tag()) && self.snapshots.still(a) => {
                if state.expiry().passed_at(now) {
                    Lookup::Expired(e.slot, a)
                } else {
                    Lookup::Hit(e)
                }
            }
            Some((e, state)) if state.visible_in(a.tag()) && self.snapshots.still(a) => {
                if state.expiry().passed_at(now) {
                    Lookup::Expired(e.slot, a)
                } else {
                    e.touch(state);
                    Lookup::Hit(e)
                }
            }
            // A miss may come from a buffer a swap is emptying: validate it too.
            _ if !self.snapshots.still(a) => Lookup::Retry,
            _ => Lookup::Miss,
        }
    }

    /// Runs one lookup against the current snapshot, retrying across swaps; counts the outcome
    /// and removes an entry found past its grace. `hit` runs once, on a hit only.
    #[inline]
    fn read_one<R>(&self, id: &str, hit: impl FnOnce(&Entry) -> R) -> Option<R> {
        let now = self.clock.now();
        let a = self.snapshots.active();
        let buffer = self.snapshots.buffer(a);
        let guard = buffer.map.guard();
        match self.lookup(buffer, &guard, a, id, now) {
            Lookup::Hit(e) => {
                self.stats.hit();
                Some(hit(e))
            }
            Lookup::Expired(slot, a) => {
                drop(guard);
                self.expire(a, id, slot, now);
                self.stats.miss();
                None
            }
            Lookup::Miss => {
                self.stats.miss();
                None
            }
            Lookup::Retry => {
                drop(guard);
                self.read_retrying(id, now, hit)
            }
        }
    }

    /// [`read_one`](Self::read_one) after a swap overlapped its first lookup.
    #[cold]
    fn read_retrying<R>(&self, id: &str, now: Ticks, hit: impl FnOnce(&Entry) -> R) -> Option<R> {
        let mut hit = Some(hit);
        let mut attempt = || {
            let a = self.snapshots.active();
            let buffer = self.snapshots.buffer(a);
            let guard = buffer.map.guard();
            match self.lookup(buffer, &guard, a, id, now) {
                Lookup::Hit(e) => Some(hit.take().map(|f| f(e))),
                Lookup::Miss => Some(None),
                Lookup::Expired(slot, a) => {
                    drop(guard);
                    self.expire(a, id, slot, now);
                    Some(None)
                }
                Lookup::Retry => None,
            }
        };
        let found = match (0..READ_ATTEMPTS).find_map(|_| attempt()) {
            Some(found) => found,
            // Swaps kept overlapping: one more attempt with swaps held off cannot be overlapped.
            None => self.snapshots.without_swaps(&mut attempt).flatten(),
        };
        match found {
            Some(r) => {
                self.stats.hit();
                Some(r)
            }
            None => {
                self.stats.miss();
                None
            }
        }
    }

    /// Removes an entry a read found expired, from the buffer it was found in (lazy expiry).
    fn expire(&self, a: Active, id: &str, slot: SlotId, now: Ticks) {
        if self.snapshots.buffer(a).remove_expired(id, slot, now) {
            self.stats.add(Counter::Expirations, 1);
        }
    }

    /// The owned answer for an entry: one `Arc` clone and one relaxed add; the times are
    /// computed from ticks, so no clock is read here.
    #[inline]
    fn cached_flag(&self, e: &Entry) -> CachedFlag {
        CachedFlag {
            definition: Arc::clone(&e.def),
            cached_at: e.cached_at,
            expires_at: self.clock.instant_at(e.expiry().ticks()),
            hit_count: e.record_hit(),
        }
    }

    /// The cached definition of `id`, now: no await, no I/O, no lock, no allocation (one
    /// `Arc` clone). Expired entries are misses.
    #[inline]
    pub fn get_now(&self, id: &str) -> Option<CachedFlag> {
        self.read_one(id, |e| self.cached_flag(e))
    }

    /// Lends the cached definition of `id` to `f` without cloning anything: the hottest read.
    ///
    /// `f` runs inside the map's read guard; keep it short and do not call back into the cache
    /// from it.
    #[inline]
    pub fn get_with<R>(&self, id: &str, f: impl FnOnce(&FlagDefinition) -> R) -> Option<R> {
        self.read_one(id, |e| f(&e.def))
    }

    /// The cached definitions of those `ids` that are cached, all from one snapshot.
    ///
    /// Each id is one lookup in the stats, duplicates included. A batch long enough for swaps
    /// to overlap every optimistic attempt is read once more with swaps held off, so it is
    /// always whole.
    pub fn get_many_now(&self, ids: &[FlagId]) -> HashMap<FlagId, CachedFlag> {
        let now = self.clock.now();
        let read = (0..READ_ATTEMPTS)
            .find_map(|_| self.read_batch(ids, now))
            // Swaps kept overlapping: hold them off for one more attempt, which then cannot
            // be overlapped. Rare, and bounded by one swap's length.
            .or_else(|| self.snapshots.without_swaps(|| self.read_batch(ids, now)));
        let (out, hits) = read.unwrap_or_default();
        self.stats
            .hits_and_misses(hits, (ids.len() as u64).saturating_sub(hits));
        out
    }

    /// One attempt at a whole batch from the current snapshot, with its hit count (duplicates
    /// included); `None` when a swap overlapped it.
    fn read_batch(&self, ids: &[FlagId], now: Ticks) -> Option<(HashMap<FlagId, CachedFlag>, u64)> {
        let mut out = HashMap::with_capacity(ids.len());
        let mut hits = 0;
        let a = self.snapshots.active();
        let buffer = self.snapshots.buffer(a);
        let mut expired = Vec::new();
        let guard = buffer.map.guard();
        for id in ids {
            match self.lookup(buffer, &guard, a, id.as_str(), now) {
                Lookup::Hit(e) => {
                    hits += 1;
                    out.insert(id.clone(), self.cached_flag(e));
                }
                Lookup::Miss => {}
                Lookup::Expired(slot, _) => expired.push((id, slot)),
                Lookup::Retry => return None,
            }
        }
        drop(guard);
        for (id, slot) in expired {
            self.expire(a, id.as_str(), slot, now);
        }
        Some((out, hits))
    }

    /// The fresh definition of `id`, for the tiered cache's own checks: not counted as a hit
    /// or miss, and no CLOCK touch.
    pub(crate) fn peek(&self, id: &str) -> Option<CachedFlag> {
        let now = self.clock.now();
        let a = self.snapshots.active();
        let buffer = self.snapshots.buffer(a);
        let found = buffer.map.read(id, |e| {
            let state = e.state();
            let fresh = state.visible_in(a.tag()) && !state.expiry().passed_at(now);
            fresh.then(|| self.cached_flag(e))
        });
        found.flatten().filter(|_| self.snapshots.still(a))
    }

    /// A definition past its TTL but still within the stale grace (see the builder's
    /// `stale_grace`), for serving when every backend fails. Not counted as a hit or miss.
    pub fn get_stale(&self, id: &str) -> Option<StaleFlag> {
        let now = self.clock.now();
        let a = self.snapshots.active();
        let buffer = self.snapshots.buffer(a);
        let found = buffer.map.read(id, |e| {
            let state = e.state();
            let expiry = state.expiry();
            let stale =
                state.visible_in(a.tag()) && expiry.passed_at(now) && now < buffer.evict_at(expiry);
            stale.then(|| StaleFlag {
                flag: self.cached_flag(e),
                expired_for: Duration::from_nanos(now.saturating_sub(expiry.ticks())),
            })
        });
        // A stale answer is a last resort; one that raced a swap is simply not given.
        found.flatten().filter(|_| self.snapshots.still(a))
    }
}
