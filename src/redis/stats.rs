//! Client-side counters of a `RedisCache`.
//!
//! Plain relaxed `fetch_add`s: every one of them sits next to a network round trip, which
//! costs a thousand times more.

use crate::sync::{AtomicU64, Ordering};
use serde::{Deserialize, Serialize};

/// What a [`RedisCache`](crate::RedisCache) counted since it was built. Sums are exact once
/// concurrent calls have finished.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RedisStats {
    /// Lookups that found a valid definition.
    pub hits: u64,
    /// Lookups that found nothing usable: absent, corrupt, or failed.
    pub misses: u64,
    /// Calls that failed with a connection or server error (timeouts not included).
    pub errors: u64,
    /// Calls that did not finish within the response timeout.
    pub timeouts: u64,
    /// Stored values that were not a valid definition of their flag (counted as misses too).
    pub decode_errors: u64,
    /// Requests sent to the server and answered or timed out: one per command or pipeline.
    pub round_trips: u64,
    /// Definitions stored.
    pub writes: u64,
    /// Writes refused by the version guard because a higher version was stored.
    pub stale_writes_refused: u64,
    /// Keys removed by `invalidate`, `invalidate_many` and `clear`.
    pub keys_removed: u64,
    /// Times the connection was replaced after it stopped answering (consecutive timeouts).
    pub reconnects: u64,
    /// Bytes of stored values received (what reads cost in memory).
    pub value_bytes: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) round_trips: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) stale_writes_refused: AtomicU64,
    pub(crate) keys_removed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) value_bytes: AtomicU64,
}

/// Adds `n` to one counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Counters {
    pub(crate) fn snapshot(&self) -> RedisStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RedisStats {
            hits: get(&self.hits),
            misses: get(&self.misses),
            errors: get(&self.errors),
            timeouts: get(&self.timeouts),
            decode_errors: get(&self.decode_errors),
            round_trips: get(&self.round_trips),
            writes: get(&self.writes),
            stale_writes_refused: get(&self.stale_writes_refused),
            keys_removed: get(&self.keys_removed),
            reconnects: get(&self.reconnects),
            value_bytes: get(&self.value_bytes),
        }
    }
}
