//! The reloads that notices schedule: coalesced per flag, and spread over `notice_spread`, so
//! that a fleet receiving one notice does not read L2 in the same millisecond.
//!
//! A notice that makes a flag's L1 copy obsolete expires the copy (it stays servable as
//! stale, and fills that began before are fenced) and puts the flag in this instance's pending
//! set. Until the reload lands, reads of the flag are answered with that copy, as stale, and
//! start no load. The reload task wakes at the first pending flag, waits a random part of
//! `notice_spread` (each instance its own), and reloads every pending flag in batches: one L2
//! read per batch, whatever the number of notices and readers. Reads that do not wait
//! (`get_now`, `get_with`) are answered with the stale copy meanwhile; reads that wait (`get`)
//! wait for the reload.

use super::super::deadlines::Deadlines;
use super::super::{Inner, Landing};
use crate::flag::FlagId;
use crate::sync::{Arc, Mutex, Weak, lock};
use crate::time::{Clock, Ticks, duration_to_ticks};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::Notify;

/// Flags reloaded in one batch.
const BATCH: usize = 100;
/// The longest a waiting read sleeps before it checks again whether the reload is pending.
const MAX_WAIT_STEP: Duration = Duration::from_millis(50);

/// This instance's pending reloads.
pub(crate) struct Reloads {
    pending: Mutex<HashSet<FlagId>>,
    /// The flags whose reads are answered stale meanwhile, until when at the latest.
    serving_stale: Deadlines,
    wake: Arc<Notify>,
    /// Woken after each batch of reloads landed.
    landed: Notify,
    max_pending: usize,
}

impl Reloads {
    pub(crate) fn new(max_pending: usize) -> Self {
        Self {
            pending: Mutex::new(HashSet::new()),
            serving_stale: Deadlines::new(max_pending),
            wake: Arc::new(Notify::new()),
            landed: Notify::new(),
            max_pending,
        }
    }

    /// Answers reads of `id` stale until `until` (or its reload); false when `max_pending`
    /// flags are pending already (the caller drops the flag from L1 instead). Set before L1's
    /// copy expires, so that no read finds it expired and not yet pending (and loads it).
    fn hold(&self, id: &FlagId, until: Ticks, now: Ticks) -> bool {
        {
            let pending = lock(&self.pending);
            if pending.len() >= self.max_pending && !pending.contains(id) {
                return false;
            }
        }
        self.serving_stale.set(id, until, now);
        true
    }

    /// Queues the reload of `id` (after its copy expired), and wakes the reload task.
    fn queue(&self, id: FlagId) {
        lock(&self.pending).insert(id);
        self.wake.notify_one();
    }

    /// Whether a read of `id` is to be answered stale, its reload pending.
    pub(crate) fn pending(&self, id: &str, now: Ticks) -> bool {
        self.serving_stale.active(id, now)
    }

    /// Waits while `id`'s reload is pending, at most `limit` (later notices keep it pending);
    /// true when it was pending.
    pub(crate) async fn wait(&self, id: &str, clock: &Clock, limit: Duration) -> bool {
        let mut waited = false;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Registered before the check, so a landing in between still wakes us.
            let landed = self.landed.notified();
            let mut landed = std::pin::pin!(landed);
            landed.as_mut().enable();
            if !self.pending(id, clock.now()) {
                return waited;
            }
            waited = true;
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return true;
            }
            let _ = tokio::time::timeout(MAX_WAIT_STEP.min(deadline - now), landed).await;
        }
    }

    fn take(&self) -> Vec<FlagId> {
        lock(&self.pending).drain().collect()
    }

    /// Ends the stale answers of `id`, unless a newer notice made it pending again.
    fn landed(&self, id: &FlagId) {
        if !lock(&self.pending).contains(id) {
            self.serving_stale.clear(id.as_str());
        }
    }
}

impl Inner {
    /// How long a superseded copy is answered stale at most, and a `get` waits at most: the
    /// spread and one load, should the reload task be gone.
    pub(crate) fn reload_bound(&self) -> Duration {
        self.policy.notice_spread + self.policy.l2_timeout + self.policy.source_timeout
    }

    /// What a notice of a newer version (or an invalidation) of `id` does: L1's copy expires,
    /// fenced, and a reload is scheduled; without a fresh copy (or with `max_pending`
    /// reloads pending), the flag is dropped from L1 and loaded on its next read.
    pub(crate) fn supersede(&self, id: &str) {
        self.warm_log.record_drop(id);
        let now = self.now();
        let until = now.saturating_add(duration_to_ticks(self.reload_bound()));
        let reloads = &self.backplane.reloads;
        let flag = FlagId::new(id);
        if reloads.hold(&flag, until, now) {
            if self.l1.expire_now(id) {
                reloads.queue(flag);
            } else {
                // Nothing fresh to serve meanwhile: loaded on its next read.
                reloads.serving_stale.clear(id);
            }
        } else {
            self.l1.invalidate_now(id);
        }
        self.detach(id);
    }
}

/// Reloads the pending flags, a random part of `notice_spread` after the first of them was
/// scheduled. Holds only a `Weak` while it waits.
pub(crate) async fn reload_loop(weak: Weak<Inner>) {
    let Some(wake) = weak
        .upgrade()
        .map(|i| Arc::clone(&i.backplane.reloads.wake))
    else {
        return;
    };
    let mut jitter = Jitter::new();
    loop {
        wake.notified().await;
        let Some(spread) = weak.upgrade().map(|i| i.policy.notice_spread) else {
            return;
        };
        tokio::time::sleep(jitter.within(spread)).await;
        let Some(inner) = weak.upgrade() else { return };
        let ids = inner.backplane.reloads.take();
        for batch in ids.chunks(BATCH) {
            let tickets = batch
                .iter()
                .map(|id| (id.clone(), inner.l1.begin_fill(id.as_str())))
                .collect();
            for (id, landing) in inner.load_batch(tickets).await {
                if matches!(landing, Landing::Absent) {
                    inner.l1.invalidate_now(id.as_str());
                }
                inner.backplane.reloads.landed(&id);
            }
            inner.backplane.reloads.landed.notify_waiters();
        }
    }
}

/// A small generator of random delays (xorshift), seeded apart for each instance.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Self(h.finish() | 1)
    }

    /// A delay in `[0, spread]`.
    fn within(&mut self, spread: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
        match nanos {
            0 => Duration::ZERO,
            n => Duration::from_nanos(self.0 % n.saturating_add(1)),
        }
    }
}
