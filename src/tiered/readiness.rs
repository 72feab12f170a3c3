//! [`Readiness`]: what a readiness probe asks of a [`TieredCache`](super::TieredCache).

use crate::error::Error;
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use std::time::SystemTime;

/// A tiered cache's health, as a readiness probe reads it: see
/// [`TieredCache::readiness`](super::TieredCache::readiness).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Readiness {
    /// A [`warm_up`](super::TieredCache::warm_up) has completed.
    pub warmed_up: bool,
    /// Whether the last L2 call reached L2 (it answered, even with an error of its own);
    /// `None` without an L2, or before the first call.
    pub l2_reachable: Option<bool>,
    /// The backplane's subscription is up (false without a backplane task).
    pub backplane_subscribed: bool,
    /// The source's last failure (an error, a timeout or a panic), if any since the cache
    /// was built; a later success does not clear it (compare its time with yours).
    pub last_source_error: Option<SourceError>,
}

impl Readiness {
    /// Warmed up, and L2 (if any) not known unreachable: the cache serves what it should.
    /// The backplane and the source are left to the caller's policy (the fail-safe serves
    /// through a source outage).
    pub fn is_ready(&self) -> bool {
        self.warmed_up && self.l2_reachable != Some(false)
    }
}

/// A failure of the source, and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// The error, as text.
    pub message: String,
    /// When the call failed.
    pub at: SystemTime,
}

const UNKNOWN: u64 = 0;
const REACHED: u64 = 1;
const UNREACHABLE: u64 = 2;

/// What the layers record for [`Readiness`].
#[derive(Default)]
pub(crate) struct Health {
    warmed_up: AtomicU64,
    l2: AtomicU64,
    source_error: Mutex<Option<SourceError>>,
}

impl Health {
    pub(crate) fn warmed_up(&self) {
        self.warmed_up.store(1, Ordering::Relaxed);
    }

    /// An L2 call ended: reached unless it failed to reach L2 (a transient error).
    pub(crate) fn l2_call<T>(&self, result: &crate::error::Result<T>) {
        let state = match result {
            Err(e) if e.is_transient() => UNREACHABLE,
            _ => REACHED,
        };
        self.l2.store(state, Ordering::Relaxed);
    }

    /// True when the last L2 call reached L2.
    pub(crate) fn l2_reached(&self) -> bool {
        self.l2.load(Ordering::Relaxed) == REACHED
    }

    pub(crate) fn source_failed(&self, e: &Error) {
        *lock(&self.source_error) = Some(SourceError {
            message: e.to_string(),
            at: SystemTime::now(),
        });
    }

    pub(crate) fn readiness(&self, has_l2: bool, backplane_subscribed: bool) -> Readiness {
        let l2 = match self.l2.load(Ordering::Relaxed) {
            _ if !has_l2 => None,
            UNKNOWN => None,
            state => Some(state == REACHED),
        };
        Readiness {
            warmed_up: self.warmed_up.load(Ordering::Relaxed) == 1,
            l2_reachable: l2,
            backplane_subscribed,
            last_source_error: lock(&self.source_error).clone(),
        }
    }
}
