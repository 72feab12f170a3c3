//! Striped counters for L1.
//!
//! Hits and misses are counted on every lookup, so they live in cache-padded stripes picked by
//! thread: two threads never write the same line unless there are more threads than stripes.
//! One shared `fetch_add` per hit costs 3-4x at two threads on a 2-core machine. The rare
//! counters (writes, evictions) share one unpadded block. Sums are exact at quiescence: every
//! increment is an atomic add, only the line it lands on varies.

use crate::cache::CacheStats;
use crate::sync::{AtomicU64, CachePadded, Ordering, thread_index};

#[derive(Default)]
struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Counters of one `LocalCache`, across all its generations.
pub(crate) struct Stats {
    stripes: Box<[CachePadded<Stripe>]>,
    mask: usize,
    inserts: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    invalidations: AtomicU64,
    stale_writes_refused: AtomicU64,
    fills_refused: AtomicU64,
}

/// The rare counters, named for `Stats::add`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Inserts,
    Evictions,
    Expirations,
    Invalidations,
    StaleWritesRefused,
    FillsRefused,
}

impl Stats {
    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, usize::from);
        // Twice the cores, so that threads beyond one per core still rarely share a stripe.
        let n = (cores * 2).next_power_of_two();
        Self {
            stripes: (0..n)
                .map(|_| CachePadded::new(Stripe::default()))
                .collect(),
            mask: n - 1,
            inserts: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            stale_writes_refused: AtomicU64::new(0),
            fills_refused: AtomicU64::new(0),
        }
    }

    #[inline]
    fn stripe(&self) -> &Stripe {
        // `mask` is `len - 1` of a power-of-two length, so the index is always in bounds.
        &self.stripes[thread_index() & self.mask]
    }

    #[inline]
    pub(crate) fn hit(&self) {
        self.stripe().hits.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn miss(&self) {
        self.stripe().misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` hits and `m` misses at once (one `get_many`).
    pub(crate) fn hits_and_misses(&self, hits: u64, misses: u64) {
        let s = self.stripe();
        if hits > 0 {
            s.hits.fetch_add(hits, Ordering::Relaxed);
        }
        if misses > 0 {
            s.misses.fetch_add(misses, Ordering::Relaxed);
        }
    }

    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let c = match counter {
            Counter::Inserts => &self.inserts,
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
        let (hits, misses) = self.stripes.iter().fold((0u64, 0u64), |(h, m), s| {
            (
                h.wrapping_add(s.hits.load(Ordering::Relaxed)),
                m.wrapping_add(s.misses.load(Ordering::Relaxed)),
            )
        });
        CacheStats {
            hits,
            misses,
            hit_rate: CacheStats::ratio(hits, misses),
            evictions: self.evictions.load(Ordering::Relaxed),
            inserts: self.inserts.load(Ordering::Relaxed),
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
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..10_000 {
                        if i % 3 == 0 {
                            stats.miss()
                        } else {
                            stats.hit()
                        }
                    }
                });
            }
        });
        let snap = stats.snapshot();
        assert_eq!(snap.hits + snap.misses, 80_000);
        assert_eq!(snap.misses, 8 * 3_334);
    }
}
