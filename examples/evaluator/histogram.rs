//! A fixed-size log-linear latency histogram: recording is an index computation and an add,
//! never an allocation, so it can sit on the hot path.
//!
//! Values below 16 ns get a bucket each; above, every power of two is split into 16 linear
//! sub-buckets, so a reported percentile is within 1/16 (6.25 %) of the true value.

use std::time::Duration;

const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// 16 exact buckets, then 16 per power of two from 2^4 to 2^63.
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

/// Counts of nanosecond latencies.
#[derive(Clone)]
pub struct Histogram {
    counts: [u64; BUCKETS],
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: [0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    /// Records one latency.
    #[inline]
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index(ns)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest latency recorded, exactly.
    pub fn max_ns(&self) -> u64 {
        self.max
    }

    /// The latency at or below which a fraction `q` of the samples lie, as the upper edge of
    /// its bucket (never below the truth, at most 6.25 % above it); 0 when empty.
    pub fn percentile_ns(&self, q: f64) -> u64 {
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total.max(1));
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank && c > 0 {
                return upper_edge(i).min(self.max);
            }
        }
        0
    }
}

/// The bucket of `ns`.
#[inline]
fn index(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let msb = 63 - ns.leading_zeros(); // >= SUB_BITS
    let shift = msb - SUB_BITS;
    let mantissa = (ns >> shift) as usize - SUB; // 0..SUB
    SUB + shift as usize * SUB + mantissa
}

/// The largest value that lands in bucket `i`.
fn upper_edge(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = ((i - SUB) / SUB) as u32;
    let mantissa = ((i - SUB) % SUB + SUB) as u64;
    let lower = mantissa << shift;
    lower + ((1u64 << shift) - 1)
}
