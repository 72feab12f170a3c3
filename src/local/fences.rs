//! Write fences: what keeps a slow read-through fill from resurrecting an older definition.
//!
//! A fill (an L2/L3 read-through or a refresh) takes a [`FillTicket`] before it starts its I/O,
//! which records the fence counter of the flag's stripe. Every write to a flag (`set`,
//! `invalidate`) advances that counter *before* it touches the map. When the fill comes back it
//! may install only if the counter has not moved: otherwise a write happened while it was out,
//! and its value may be older than that write.
//!
//! The check and the install must not be separable by a write. For a key that is present, the
//! check runs inside the map's atomic `compute`, and a write removes or replaces that same entry,
//! so one of them sees the other. For an absent key an `invalidate` has no entry to collide with,
//! so the fill inserts its entry unpublished (invisible to readers), issues a `SeqCst` fence, and
//! re-reads the counter; the writer advances the counter, fences, then removes the key. Of two
//! such "store; fence; load" sequences at least one load sees the other's store: either the
//! fill sees the advance and withdraws its entry, or the writer sees and removes the entry.
//! Modelled twice: `loom-tests/tests/fill_vs_invalidate.rs` runs the whole protocol over the
//! facade's lock-based map (its logic: the check inside `compute`, unpublished entries,
//! withdrawal), and `loom-tests/tests/fence_pair.rs` runs these fences against a one-key model
//! of papaya (release insert, plain-load removal of an absent key), where removing either fence
//! lets loom find the interleaving in which both sides miss each other.
//!
//! Stripes are shared by hash, so a write to one flag can refuse a concurrent fill of another
//! flag of the same stripe: a spurious miss, never a wrong answer.

use crate::sync::{AtomicU64, Ordering, fence};
use std::hash::BuildHasher;

#[cfg(not(flagcache_loom))]
const STRIPES: usize = 1024;
// Few stripes under loom: every atomic is a modelled object.
#[cfg(flagcache_loom)]
const STRIPES: usize = 4;

/// Proof that a fill started at a certain point; hand it back to `LocalCache::complete_fill`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillTicket {
    pub(crate) generation: u64,
    pub(crate) stripe: usize,
    pub(crate) fence: u64,
}

pub(crate) struct WriteFences {
    counters: Box<[AtomicU64]>,
    hasher: foldhash::fast::FixedState,
}

impl WriteFences {
    pub(crate) fn new() -> Self {
        Self {
            counters: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x5eed_f1a9),
        }
    }

    pub(crate) fn stripe_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % STRIPES
    }

    /// The stripe's counter now (`SeqCst`: it is one side of the fence pairs above).
    pub(crate) fn read(&self, stripe: usize) -> u64 {
        self.counters
            .get(stripe)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    /// Announces a write to `key`: every fill of its stripe that started before is refused.
    /// Followed by a `SeqCst` fence, so the caller's next map access is ordered after it.
    pub(crate) fn advance(&self, key: &str) {
        if let Some(c) = self.counters.get(self.stripe_of(key)) {
            c.fetch_add(1, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
    }

    /// True while no write to the ticket's stripe has been announced since the ticket.
    pub(crate) fn unchanged_since(&self, ticket: &FillTicket) -> bool {
        self.read(ticket.stripe) == ticket.fence
    }
}
