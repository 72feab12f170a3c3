//! The writes of [`LocalCache`]: `set`, `invalidate`, `clear`, `replace_all`, read-through
//! fills, and the sweep step of the cleanup task.
//!
//! A write goes to the active buffer and validates the snapshot word afterwards, like a read:
//! one that overlapped a swap is repeated on the new buffer (its copy in the retired buffer is
//! never served, see `snapshots`). Fills are not repeated: a swap during a fill overtakes it.

use super::fences::FillTicket;
use super::generation::{Generation, Stamp, WriteResult, Writer};
use super::snapshots::Active;
use super::stats::Counter;
use super::{FillOutcome, LocalCache};
use crate::error::{Error, ErrorKind, Result};
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::{Arc, Ordering};
use crate::time::{check_l1_ttl, duration_to_ticks};
use std::time::Duration;

/// A write's checks: `def` is `id`'s, and valid (a definition the read path would call
/// corrupt is never stored).
fn check_write(id: &FlagId, def: &FlagDefinition) -> Result<()> {
    if def.id != *id {
        return Err(Error::invalid_flag(format!(
            "set under id `{id}` of a definition whose id is `{}`",
            def.id
        )));
    }
    def.validate()
}

/// How many ring slots one sweep step examines.
const SWEEP_STEP: usize = 1024;

/// How often a write is repeated when swaps keep overlapping it.
const WRITE_ATTEMPTS: usize = 8;

impl LocalCache {
    /// The stamp of an entry written now for `ttl` (the default when `None`) in snapshot `a`.
    fn stamp(&self, ttl: Option<Duration>, a: Active) -> Result<Stamp> {
        let ttl = ttl.unwrap_or(self.default_ttl);
        check_l1_ttl("the TTL", ttl)?;
        let now = self.clock.now();
        Ok(Stamp {
            cached_at: self.clock.instant_at_or_start(now),
            expires_at: now.saturating_add(duration_to_ticks(ttl)),
            tag: a.tag(),
        })
    }

    /// Runs `write` on the active buffer until it completes without a swap in between.
    fn on_active<R>(&self, mut write: impl FnMut(&Generation, Active) -> R) -> Option<R> {
        for _ in 0..WRITE_ATTEMPTS {
            let a = self.snapshots.active();
            let buffer = self.snapshots.buffer(a);
            let r = write(buffer, a);
            if self.snapshots.still(a) {
                return Some(r);
            }
        }
        None
    }

    /// Stores `def` under `id` for `ttl` (the default TTL when `None`).
    ///
    /// # Errors
    /// [`ErrorKind::StaleVersion`] when the cache holds a higher version of the flag (the
    /// write is refused and counted); [`ErrorKind::InvalidFlag`] when `id` is not `def.id` or
    /// the definition fails [`FlagDefinition::validate`]; [`ErrorKind::InvalidConfig`] for a
    /// zero `ttl`.
    pub fn try_set(&self, id: &FlagId, def: FlagDefinition, ttl: Option<Duration>) -> Result<()> {
        self.try_set_arc(id, Arc::new(def), ttl)
    }

    /// [`try_set`](Self::try_set) for a definition already in an `Arc` (no copy).
    pub fn try_set_arc(
        &self,
        id: &FlagId,
        def: Arc<FlagDefinition>,
        ttl: Option<Duration>,
    ) -> Result<()> {
        check_write(id, &def)?;
        // Stamped (and the TTL validated) before anything is announced; a repeat after a swap
        // only retags it for the new generation.
        let stamp = self.stamp(ttl, self.snapshots.active())?;
        self.write_stamped(id, def, stamp)
    }

    /// Stores `def` already expired, behind the version check: served only as stale (within
    /// the stale grace) until a fresh write or fill replaces it. What a tiered cache booting
    /// from its snapshot fills L1 with.
    pub(crate) fn set_expired_arc(&self, id: &FlagId, def: Arc<FlagDefinition>) -> Result<()> {
        check_write(id, &def)?;
        let mut stamp = self.stamp(None, self.snapshots.active())?;
        stamp.expires_at = self.clock.now();
        self.write_stamped(id, def, stamp)
    }

    /// A write of `def` with `stamp`: announced (fence), then written to the active buffer.
    fn write_stamped(&self, id: &FlagId, def: Arc<FlagDefinition>, stamp: Stamp) -> Result<()> {
        // Announce the write before touching the map, so fills that started earlier are dropped.
        self.fences.advance(id.as_str());
        let written = self.on_active(|buffer, a| {
            let stamp = Stamp {
                tag: a.tag(),
                ..stamp
            };
            buffer.write(&def.id, &def, stamp, Writer::Set, &self.stats)
        });
        match written.unwrap_or(WriteResult::Dropped) {
            WriteResult::Stored | WriteResult::Dropped => {
                self.stats.inserted(1);
                Ok(())
            }
            WriteResult::Stale(cached) => {
                self.stats.add(Counter::StaleWritesRefused, 1);
                Err(Error::new(
                    ErrorKind::StaleVersion,
                    format!("flag `{id}`: the cache holds version {cached}, newer than the write"),
                ))
            }
            // A `set` is never fenced against itself.
            WriteResult::Overtaken => Ok(()),
        }
    }

    /// Stores several definitions; returns the first error after attempting all of them.
    pub fn try_set_many(
        &self,
        flags: Vec<(FlagId, FlagDefinition)>,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let mut first_error = None;
        for (id, def) in flags {
            if let Err(e) = self.try_set(&id, def, ttl) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Drops `id`. After this returns, no read that starts later returns the dropped definition,
    /// and no fill that started earlier can bring it back.
    pub fn invalidate_now(&self, id: &str) {
        self.fences.advance(id);
        let mut removed = false;
        self.on_active(|buffer, _| removed |= buffer.remove(id));
        if removed {
            self.stats.add(Counter::Invalidations, 1);
        }
    }

    /// Makes `id`'s entry expire now, keeping it for stale serving within the stale grace, and
    /// fences the fills that began before, as a write does. True when a copy is left to serve
    /// as stale: the fresh one, now expired, or one that had already expired (a second
    /// notice while the first one's reload is pending; then it only fences). False when there
    /// was none (then it only fences, as [`invalidate_now`](Self::invalidate_now)). What
    /// another instance's notice does to L1 while the reload it schedules is pending.
    pub(crate) fn expire_now(&self, id: &str) -> bool {
        let Some(current) = self.peek(id) else {
            if self.get_stale(id).is_some() {
                self.fences.advance(id);
                return true;
            }
            self.invalidate_now(id);
            return false;
        };
        self.fences.advance(id);
        let expires_at = self.clock.now();
        let written = self.on_active(|buffer, a| {
            let stamp = Stamp {
                cached_at: current.cached_at,
                expires_at,
                tag: a.tag(),
            };
            let def = &current.definition;
            buffer.write(&def.id, def, stamp, Writer::Set, &self.stats)
        });
        // A newer version written in between is fresh: nothing to serve stale, nor to reload.
        matches!(written, Some(WriteResult::Stored))
    }

    /// Drops every id in `ids`.
    pub fn invalidate_many_now(&self, ids: &[FlagId]) {
        for id in ids {
            self.invalidate_now(id.as_str());
        }
    }

    /// Drops everything, in one atomic step (a swap to an empty set).
    pub fn clear_now(&self) {
        let old = self.snapshots.swap(|_, _| {});
        self.stats.add(Counter::Invalidations, old as u64);
    }

    /// Replaces the whole cached set with `defs` in one atomic step: a reader sees the old set or
    /// the new one, never a mix. Each entry gets the default TTL. For duplicate ids the highest
    /// version wins.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidFlag`] when a definition fails [`FlagDefinition::validate`];
    /// [`ErrorKind::CapacityExceeded`] when `defs` holds more distinct flags than the capacity.
    /// The current set then stays as it was.
    pub fn replace_all(&self, defs: impl IntoIterator<Item = FlagDefinition>) -> Result<()> {
        // Each definition goes into the `Arc` the cache keeps at once: the only temporary copy
        // of the set is this list of pointers. Sorted by id (highest version first), so
        // duplicates are neighbours and a swap inserts in the same order every time (loom
        // models need that).
        let mut latest = Vec::new();
        for def in defs {
            def.validate()?;
            latest.push(Arc::new(def));
        }
        latest.sort_unstable_by(|a, b| a.id.cmp(&b.id).then(b.version.cmp(&a.version)));
        latest.dedup_by(|later, kept| later.id == kept.id);
        if latest.len() > self.capacity {
            return Err(Error::new(
                ErrorKind::CapacityExceeded,
                format!(
                    "replace_all of {} flags into a cache of capacity {}; the current set is kept",
                    latest.len(),
                    self.capacity
                ),
            ));
        }
        let mut stored = 0;
        self.snapshots.swap(|buffer, next| {
            let Ok(stamp) = self.stamp(None, next) else {
                return;
            };
            for def in latest {
                // An empty buffer with room for every flag: nothing is evicted.
                let written = buffer.write(&def.id, &def, stamp, Writer::Set, &self.stats);
                stored += u64::from(written == WriteResult::Stored);
            }
        });
        self.stats.inserted(stored);
        Ok(())
    }

    /// Starts a read-through fill of `id`: take the ticket *before* fetching from L2 or L3.
    pub fn begin_fill(&self, id: &str) -> FillTicket {
        let stripe = self.fences.stripe_of(id);
        FillTicket {
            generation: self.snapshots.active().number(),
            stripe,
            fence: self.fences.read(stripe),
        }
    }

    /// True while no write to the ticket's flag (of its fence stripe), and no snapshot swap,
    /// happened since the ticket was taken: what [`complete_fill`](Self::complete_fill) checks.
    /// For a read-through that records something else it learned (such as "absent").
    pub fn ticket_is_current(&self, ticket: &FillTicket) -> bool {
        self.snapshots.active().number() == ticket.generation && self.fences.unchanged_since(ticket)
    }

    /// Installs a definition fetched under `ticket`, unless it fails
    /// [`FlagDefinition::validate`] or is not of the ticket's flag (both
    /// [`FillOutcome::Invalid`]), a write to the flag or a snapshot swap happened since the
    /// ticket, or the cache already holds a newer version.
    pub fn complete_fill(
        &self,
        ticket: &FillTicket,
        def: Arc<FlagDefinition>,
        ttl: Option<Duration>,
    ) -> FillOutcome {
        // Another flag's definition would be checked against the wrong fence stripe: a write
        // to it since the ticket could go unseen.
        if def.validate().is_err() || self.fences.stripe_of(def.id.as_str()) != ticket.stripe {
            return FillOutcome::Invalid;
        }
        let a = self.snapshots.active();
        let buffer = self.snapshots.buffer(a);
        let written = match self.stamp(ttl, a) {
            Ok(stamp) if a.number() == ticket.generation => {
                let writer = Writer::Fill(ticket, &self.fences, &self.snapshots);
                let r = buffer.write(&def.id, &def, stamp, writer, &self.stats);
                // Installed into a buffer a swap has since retired: it will never be served.
                if self.snapshots.still(a) {
                    r
                } else {
                    WriteResult::Overtaken
                }
            }
            _ => WriteResult::Overtaken,
        };
        match written {
            WriteResult::Stored | WriteResult::Dropped => {
                self.stats.inserted(1);
                FillOutcome::Installed
            }
            WriteResult::Stale(v) => FillOutcome::Superseded(v),
            WriteResult::Overtaken => {
                self.stats.add(Counter::FillsRefused, 1);
                FillOutcome::Overtaken
            }
        }
    }

    /// Examines the next `SWEEP_STEP` slots of the active buffer's ring for expired entries;
    /// returns the number removed and whether the step finished a pass over the ring.
    pub(crate) fn sweep_step(&self) -> (u64, bool) {
        let now = self.clock.now();
        let a = self.snapshots.active();
        let buffer = self.snapshots.buffer(a);
        let n = buffer.ring.capacity();
        let start = self.sweep_cursor.fetch_add(SWEEP_STEP, Ordering::Relaxed) % n;
        let expired = buffer.sweep(start, SWEEP_STEP, now, a.tag());
        if expired > 0 {
            self.stats.add(Counter::Expirations, expired);
        }
        (expired, start + SWEEP_STEP >= n)
    }
}
