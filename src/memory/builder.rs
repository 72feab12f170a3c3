//! [`MemoryStoreBuilder`]: the settings of a `MemoryStore`, validated at `build()`.

use super::MemoryStore;
use crate::error::{Error, Result};
use crate::time::Clock;

/// Builds a [`MemoryStore`]. Defaults: at most 1 000 000 flags, the system clock.
#[derive(Clone, Debug)]
#[must_use]
pub struct MemoryStoreBuilder {
    pub(super) max_flags: usize,
    pub(super) clock: Clock,
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        Self {
            max_flags: 1_000_000,
            clock: Clock::system(),
        }
    }
}

impl MemoryStoreBuilder {
    /// The most slots the store holds, values and tombstones together (at least 1). A write
    /// that needs one more fails with
    /// [`ErrorKind::CapacityExceeded`](crate::ErrorKind::CapacityExceeded) once the expired
    /// slots are purged.
    pub fn max_flags(mut self, max_flags: usize) -> Self {
        self.max_flags = max_flags;
        self
    }

    /// The clock that decides expiry: [`Clock::system`] (the default) or [`Clock::mock`] for
    /// tests.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the settings and builds the store.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) for a zero `max_flags`.
    pub fn build(self) -> Result<MemoryStore> {
        if self.max_flags == 0 {
            return Err(Error::invalid_config("max_flags must be at least 1"));
        }
        Ok(MemoryStore::from_parts(self))
    }
}
