//! L3: [`FlagSource`], the source of truth behind the caches.

use super::changes::ChangeFeed;
use crate::error::{Error, Result};
use crate::flag::{FlagDefinition, FlagId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

/// The source of truth (L3): usually a database. [`TieredCache`](crate::TieredCache) loads from
/// it what neither L1 nor L2 holds, and everything at warm-up.
///
/// Errors are reported with [`Error::new`](crate::Error::new) and a kind saying whether a retry
/// may help ([`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable),
/// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout)) or not
/// ([`ErrorKind::Backend`](crate::ErrorKind::Backend)). A load should be bounded in time: the
/// tiered cache waits for it on a miss (followers of the same flag wait with it).
///
/// A source may also announce its own changes ([`subscribe_changes`](Self::subscribe_changes)),
/// so that flags edited in the source, not through the cache, reach the fleet at once: see
/// [`TieredCache::start_change_feed`](crate::TieredCache::start_change_feed). Versions must
/// then grow with every change of a flag, as the caches refuse to go back or to replace a
/// version with itself on other instances.
pub trait FlagSource: Send + Sync + 'static {
    /// The definition of `id`, or `None` when the flag does not exist.
    fn load(&self, id: &FlagId) -> impl Future<Output = Result<Option<FlagDefinition>>> + Send;

    /// The definitions of those `ids` that exist, in one query where the source can. The
    /// default calls [`load`](Self::load) for each id.
    fn load_many(
        &self,
        ids: &[FlagId],
    ) -> impl Future<Output = Result<HashMap<FlagId, FlagDefinition>>> + Send {
        async move {
            let mut found = HashMap::with_capacity(ids.len());
            for id in ids {
                if let Some(def) = self.load(id).await? {
                    found.insert(id.clone(), def);
                }
            }
            Ok(found)
        }
    }

    /// Every definition, for warm-up.
    fn load_all(&self) -> impl Future<Output = Result<Vec<FlagDefinition>>> + Send;

    /// Whether [`subscribe_changes`](Self::subscribe_changes) is implemented (default: no).
    fn has_change_feed(&self) -> bool {
        false
    }

    /// Starts a feed of this source's changes: once it returns, every change committed after
    /// is announced, until the feed ends. The cache calls it again after a feed ends, and
    /// checks every flag after each call (what changed in between is not announced). The
    /// default fails: the source has no feed.
    fn subscribe_changes(&self) -> impl Future<Output = Result<ChangeFeed>> + Send {
        async { Err(Error::invalid_config("this FlagSource has no change feed")) }
    }
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// [`FlagSource`] with boxed futures, so the tiered cache can hold any source without a type
/// parameter. One allocation per load: nothing next to a database round trip.
pub(crate) trait DynSource: Send + Sync {
    fn load<'a>(&'a self, id: &'a FlagId) -> Boxed<'a, Option<FlagDefinition>>;
    fn load_many<'a>(&'a self, ids: &'a [FlagId]) -> Boxed<'a, HashMap<FlagId, FlagDefinition>>;
    fn load_all(&self) -> Boxed<'_, Vec<FlagDefinition>>;
    fn has_change_feed(&self) -> bool;
    fn subscribe_changes(&self) -> Boxed<'_, ChangeFeed>;
}

impl<S: FlagSource> DynSource for S {
    fn load<'a>(&'a self, id: &'a FlagId) -> Boxed<'a, Option<FlagDefinition>> {
        Box::pin(FlagSource::load(self, id))
    }

    fn load_many<'a>(&'a self, ids: &'a [FlagId]) -> Boxed<'a, HashMap<FlagId, FlagDefinition>> {
        Box::pin(FlagSource::load_many(self, ids))
    }

    fn load_all(&self) -> Boxed<'_, Vec<FlagDefinition>> {
        Box::pin(FlagSource::load_all(self))
    }

    fn has_change_feed(&self) -> bool {
        FlagSource::has_change_feed(self)
    }

    fn subscribe_changes(&self) -> Boxed<'_, ChangeFeed> {
        Box::pin(FlagSource::subscribe_changes(self))
    }
}
