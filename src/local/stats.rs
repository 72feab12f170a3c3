//! Striped counters for L1.
//!
//! Hits and misses are counted on every lookup, so they live in cache-padded stripes, one per
//! thread: a thread owns its stripe exclusively (see `sync::owned_stripe`) and counts with a
//! plain load and store, no atomic read-modify-write and no shared line. (One shared
//! `fetch_add` per hit costs 3-4x at two threads on a 2-core machine; even an uncontended one
//! costs about as much as the rest of a hit.) Threads beyond the owned stripes share one more
//! stripe with `fetch_add`. Inserts are counted on the stripes too: with one shared counter, a
//! 10 % write mix on two threads spent a tenth of its write time waiting for that line. The
//! rare counters (evictions, expirations) share one unpadded block. Sums are exact at
//! quiescence: a stripe has one writer at a time, or only atomic adds.

use crate::cache::CacheStats;
use crate::sync::{AtomicU64, CachePadded, OWNED_STRIPES, Ordering, owned_stripe};

#[derive(Default)]
struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
}

/// Adds `n` to a counter that only the calling thread writes.
#[inline]
fn add_owned(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Counters of one `LocalCache`, across all its generations.
pub(crate) struct Stats {
    /// `OWNED_STRIPES` stripes owned by one thread each.
    owned: Box<[CachePadded<Stripe>]>,
    /// The stripe of threads without one of their own.
    shared: CachePadded<Stripe>,
    evictions: AtomicU64,
    expirations: AtomicU64,
    invalidations: AtomicU64,
    stale_writes_refused: AtomicU64,
    fills_refused: AtomicU64,
}

/// The rare counters, named for `Stats::add`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Evictions,
    Expirations,
    Invalidations,
    StaleWritesRefused,
    FillsRefused,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Self {
            owned: (0..OWNED_STRIPES)
                .map(|_| CachePadded::new(Stripe::default()))
                .collect(),
            shared: CachePadded::new(Stripe::default()),
            evictions: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            stale_writes_refused: AtomicU64::new(0),
            fills_refused: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn hit(&self) {
        self.hits_and_misses(1, 0);
    }

    #[inline]
    pub(crate) fn miss(&self) {
        self.hits_and_misses(0, 1);
    }

    /// Counts `hits` hits and `misses` misses (a `get_many` counts its batch at once).
    #[inline]
    pub(crate) fn hits_and_misses(&self, hits: u64, misses: u64) {
        match owned_stripe().and_then(|i| self.owned.get(i)) {
            Some(s) => {
                if hits > 0 {
                    add_owned(&s.hits, hits);
                }
                if misses > 0 {
                    add_owned(&s.misses, misses);
                }
            }
            None => {
                if hits > 0 {
                    self.shared.hits.fetch_add(hits, Ordering::Relaxed);
                }
                if misses > 0 {
                    self.shared.misses.fetch_add(misses, Ordering::Relaxed);
                }
            }
        }
    }

    /// Counts `n` stored writes.
    #[inline]
    pub(crate) fn inserted(&self, n: u64) {
        match owned_stripe().and_then(|i| self.owned.get(i)) {
            Some(s) => add_owned(&s.inserts, n),
            None => {
                self.shared.inserts.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let c = match counter {
            Counter::Evictions => &self.evictions,
            Counter::Expirations => &self.expirations,
            Counter::Invalidations => &self.invalidations,
            Counter::StaleWritesRefused => &self.stale_writes_refused,
            Counter::FillsRefused => &self.fills_refused,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot; `size` and `capacity` are filled in by the cache.
    pub(crate) fn snapshot(&self) -> CacheStats {
        let stripes = self.owned.iter().chain(std::iter::once(&self.shared));
        let (hits, misses, inserts) = stripes.fold((0u64, 0u64, 0u64), |(h, m, i), s| {
            (
                h.wrapping_add(s.hits.load(Ordering::Relaxed)),
                m.wrapping_add(s.misses.load(Ordering::Relaxed)),
                i.wrapping_add(s.inserts.load(Ordering::Relaxed)),
            )
        });
        CacheStats {
            hits,
            misses,
            hit_rate: CacheStats::ratio(hits, misses),
            evictions: self.evictions.load(Ordering::Relaxed),
            inserts,
            expirations: self.expirations.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            stale_writes_refused: self.stale_writes_refused.load(Ordering::Relaxed),
            fills_refused: self.fills_refused.load(Ordering::Relaxed),
            ..CacheStats::default()
        }
    }
}

#[cfg(all(test, not(flagcache_loom)))]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_across_threads() {
        let stats = Stats::new();
        // More threads than owned stripes, twice over: leases are reused, and some threads
        // count on the shared stripe.
        std::thread::scope(|s| {
            for _ in 0..(OWNED_STRIPES * 2) {
                s.spawn(|| {
                    for i in 0..10_000 {
                        if i % 3 == 0 {
                            stats.miss()
                        } else {
                            stats.hit()
                        }
                        if i % 5 == 0 {
                            stats.inserted(1)
                        }
                    }
                });
            }
        });
        let snap = stats.snapshot();
        let threads = (OWNED_STRIPES * 2) as u64;
        assert_eq!(snap.hits + snap.misses, threads * 10_000);
        assert_eq!(snap.misses, threads * 3_334);
        assert_eq!(snap.inserts, threads * 2_000);
    }
}
