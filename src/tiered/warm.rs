//! Warm-up: the whole set from the source (or, without one, from L2) made L1's content in one
//! swap, before an instance serves.

use super::TieredCache;
use crate::error::{Error, Result};

impl TieredCache {
    /// Loads every definition from the source (or, without one, from L2) and makes it L1's
    /// whole content (one [`LocalCache::replace_all`](crate::LocalCache::replace_all)); returns
    /// how many. Call it at start-up, before serving.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) with neither a source nor
    /// L2; the layer's error (or a timeout after `bulk_timeout`); L1's
    /// [`ErrorKind::CapacityExceeded`](crate::ErrorKind::CapacityExceeded) when the set is
    /// larger than L1.
    pub async fn warm_up(&self) -> Result<usize> {
        let inner = &self.inner;
        let defs = match (&inner.l3, &inner.l2) {
            (Some(l3), _) => l3.load_all(&inner.counters).await?,
            (None, Some(l2)) => l2.load_all().await?,
            (None, None) => {
                return Err(Error::invalid_config(
                    "warm_up needs a FlagSource (builder.source) or an L2",
                ));
            }
        };
        let n = defs.len();
        inner.l1.replace_all(defs)?;
        inner.reads.forget_all();
        Ok(n)
    }
}
