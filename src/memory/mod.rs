//! L2 in process: [`MemoryStore`], a [`FlagStore`] for single-process deployments and for
//! testing read-through logic without a `redis-server`.
//!
//! It keeps `RedisCache`'s semantics: one slot per flag holding a value or a tombstone, each
//! with its TTL (`table`); version-guarded writes; fills only into empty slots; a bounded
//! pub/sub backplane that drops slow subscribers (`backplane`). Fault switches (`faults`) make
//! outages on demand; counters are in `stats`.

mod backplane;
mod builder;
mod faults;
mod leases;
mod stats;
mod table;
#[cfg(all(test, not(flagcache_loom)))]
mod tests;

pub use builder::MemoryStoreBuilder;
pub use stats::MemoryStoreStats;

use crate::cache::CachedFlag;
use crate::error::{Error, Result};
use crate::flag::{FlagDefinition, FlagId};
use crate::sync::{Arc, AtomicU64, Mutex, lock};
use crate::tiered::{FlagStore, SetManyOutcome, Subscription};
use crate::time::{Clock, Ticks, duration_to_ticks};
use backplane::Subscribers;
use faults::Faults;
use leases::Leases;
use stats::{Counters, add};
use std::collections::HashMap;
use std::time::Duration;
use table::{Stored, Table};

/// A [`FlagStore`] in this process's memory: the L2 of a single process, or of several
/// [`TieredCache`](crate::TieredCache)s in one process (a fleet in a test).
///
/// A cheap handle: clones share the same flags, subscribers, switches and counters. It
/// behaves as `RedisCache` does: a TTL per flag (`Duration::MAX` for none), a version guard on
/// writes, tombstones that refuse fills, and a backplane that ends a subscription which falls
/// [`NOTICE_BUFFER`](Self::NOTICE_BUFFER) notices behind. It holds at most `max_flags` slots
/// (values and tombstones); when a write needs one more, expired slots are purged, and if none
/// was, that write fails with [`ErrorKind::CapacityExceeded`](crate::ErrorKind::CapacityExceeded).
///
/// For tests of outages, [`set_failing`](Self::set_failing), [`set_hanging`](Self::set_hanging),
/// [`set_delay`](Self::set_delay) and [`end_subscriptions`](Self::end_subscriptions) act on
/// every [`FlagStore`] call of every clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> flagcache::Result<()> {
/// use flagcache::{FlagDefinition, FlagId, FlagStore, MemoryStore};
/// use std::time::Duration;
///
/// let store = MemoryStore::new();
/// let id = FlagId::new("checkout.new-flow");
/// let def = FlagDefinition::new_boolean("checkout.new-flow", "New checkout", true)?;
/// store.set_many(&[(id.clone(), def)], Duration::from_secs(300)).await?;
/// assert!(store.clone().get_many(&[id]).await?.len() == 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    /// One lock for every slot: an L2 stand-in for one process, where contention is not the
    /// point. Never held across an `.await`.
    table: Mutex<Table>,
    subscribers: Subscribers,
    leases: Mutex<Leases>,
    faults: Faults,
    counters: Counters,
    clock: Clock,
    max_flags: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_flags", &self.shared.max_flags)
            .field("len", &lock(&self.shared.table).len())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// How many notices a subscriber may leave unread; one more ends its subscription.
    pub const NOTICE_BUFFER: usize = backplane::NOTICE_BUFFER;

    /// How many subscribers a store keeps at once; beyond, `subscribe` fails with
    /// [`ErrorKind::CapacityExceeded`](crate::ErrorKind::CapacityExceeded).
    pub const MAX_SUBSCRIBERS: usize = backplane::MAX_SUBSCRIBERS;

    /// An empty store with [`MemoryStoreBuilder`]'s defaults.
    pub fn new() -> Self {
        Self::from_parts(MemoryStoreBuilder::default())
    }

    /// A builder for every setting, validated by `build()`.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    fn from_parts(b: MemoryStoreBuilder) -> Self {
        Self {
            shared: Arc::new(Shared {
                table: Mutex::new(Table::new(b.max_flags)),
                subscribers: Subscribers::new(),
                leases: Mutex::new(Leases::default()),
                faults: Faults::new(),
                counters: Counters::default(),
                clock: b.clock,
                max_flags: b.max_flags,
            }),
        }
    }

    /// The most slots (values and tombstones) this store holds.
    pub fn max_flags(&self) -> usize {
        self.shared.max_flags
    }

    /// Counters since the store was built, with its size now.
    pub fn stats(&self) -> MemoryStoreStats {
        let mut s = self.shared.counters.snapshot();
        s.len = lock(&self.shared.table).len();
        s.subscribers = self.shared.subscribers.len();
        s
    }

    /// Fault switch, for tests: while on, every [`FlagStore`] call fails at once with
    /// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable), as when Redis is down. A
    /// call delayed or hanging when it is switched on fails when it resumes.
    pub fn set_failing(&self, failing: bool) {
        self.shared.faults.set_failing(failing);
    }

    /// Fault switch, for tests: while on, every [`FlagStore`] call waits (as on a stalled
    /// Redis) until it is switched off, then proceeds.
    pub fn set_hanging(&self, hanging: bool) {
        self.shared.faults.set_hanging(hanging);
    }

    /// Fault switch, for tests: every [`FlagStore`] call first sleeps `delay` (a slow link);
    /// zero for none.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.faults.set_delay(delay);
    }

    /// Fault switch, for tests: ends every current subscription, as a dropped pub/sub link
    /// would (each reads the notices it had buffered, then `None`). Later subscriptions are
    /// not affected.
    pub fn end_subscriptions(&self) {
        self.shared.subscribers.end_all();
    }

    /// Counts one call of an operation and applies the fault switches to it.
    async fn begin(&self, calls: &AtomicU64, op: &str) -> Result<()> {
        add(calls, 1);
        self.shared.faults.enter(op).await.inspect_err(|_| {
            add(&self.shared.counters.failures, 1);
        })
    }

    /// Checks every definition of a batch, counting the invalid ones, and shares the valid
    /// ones (copied here, outside the lock).
    fn checked(&self, flags: &[(FlagId, FlagDefinition)]) -> Vec<Result<Arc<FlagDefinition>>> {
        let checked: Vec<_> = flags
            .iter()
            .map(|(id, def)| check(id, def).map(|()| Arc::new(def.clone())))
            .collect();
        add(
            &self.shared.counters.flags_rejected,
            checked.iter().filter(|c| c.is_err()).count(),
        );
        checked
    }

    /// Ends a batch write: counts the call as failed if some write found no room, and
    /// returns the batch's first error, if any.
    fn finish<T>(&self, value: T, first_error: Option<Error>, full: bool) -> Result<T> {
        if full {
            add(&self.shared.counters.failures, 1);
        }
        first_error.map_or(Ok(value), Err)
    }

    fn cached(&self, v: &Stored) -> CachedFlag {
        let clock = &self.shared.clock;
        let mut flag = CachedFlag::new(Arc::clone(&v.def));
        flag.cached_at = clock.instant_at_or_start(v.stored_at);
        flag.expires_at = clock.instant_at(v.expires_at);
        flag
    }
}

/// A write's checks: the definition is a valid one of `id`.
fn check(id: &FlagId, def: &FlagDefinition) -> Result<()> {
    if def.id != *id {
        return Err(Error::invalid_flag(format!(
            "set under id `{id}` of a definition whose id is `{}`",
            def.id
        )));
    }
    def.validate()
}

/// A write's TTL: more than zero.
fn check_ttl(ttl: Duration) -> Result<()> {
    if ttl.is_zero() {
        return Err(Error::invalid_config(
            "a TTL of zero would expire the entry at once",
        ));
    }
    Ok(())
}

/// When an entry written at `now` for `ttl` expires (`NEVER` when that saturates, as
/// `Duration::MAX` does).
fn expiry(now: Ticks, ttl: Duration) -> Ticks {
    now.saturating_add(duration_to_ticks(ttl))
}

impl FlagStore for MemoryStore {
    async fn get_many(&self, ids: &[FlagId]) -> Result<HashMap<FlagId, CachedFlag>> {
        let c = &self.shared.counters;
        self.begin(&c.get_many_calls, "get_many").await?;
        add(&c.flags_read, ids.len());
        let mut table = lock(&self.shared.table);
        let now = self.shared.clock.now();
        Ok(ids
            .iter()
            .filter_map(|id| table.value(id, now).map(|v| (id.clone(), self.cached(v))))
            .collect())
    }

    async fn set_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> Result<SetManyOutcome> {
        let c = &self.shared.counters;
        self.begin(&c.set_many_calls, "set_many").await?;
        check_ttl(ttl)?;
        let checked = self.checked(flags);
        let mut outcome = SetManyOutcome::default();
        let mut first_error = None;
        let mut full = false;
        {
            let mut table = lock(&self.shared.table);
            let now = self.shared.clock.now();
            let expires_at = expiry(now, ttl);
            for ((id, _), def) in flags.iter().zip(checked) {
                let written = def.and_then(|def| {
                    let value = Stored {
                        def,
                        stored_at: now,
                        expires_at,
                    };
                    table.set(id, value, now).inspect_err(|_| full = true)
                });
                match written {
                    Ok(true) => outcome.stored += 1,
                    Ok(false) => outcome.refused.push(id.clone()),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        add(&c.flags_stored, outcome.stored);
        add(&c.writes_refused, outcome.refused.len());
        self.finish(outcome, first_error, full)
    }

    async fn fill_many(&self, flags: &[(FlagId, FlagDefinition)], ttl: Duration) -> Result<usize> {
        let c = &self.shared.counters;
        self.begin(&c.fill_many_calls, "fill_many").await?;
        check_ttl(ttl)?;
        let checked = self.checked(flags);
        let mut stored = 0;
        let mut first_error = None;
        {
            let mut table = lock(&self.shared.table);
            let now = self.shared.clock.now();
            let expires_at = expiry(now, ttl);
            // An invalid definition is skipped, as `RedisCache` skips one it cannot encode:
            // a fill is a best-effort write-back.
            for ((id, _), def) in flags.iter().zip(checked) {
                let Ok(def) = def else { continue };
                let value = Stored {
                    def,
                    stored_at: now,
                    expires_at,
                };
                match table.fill(id, value, now) {
                    Ok(true) => stored += 1,
                    Ok(false) => {}
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        add(&c.flags_stored, stored);
        let full = first_error.is_some();
        self.finish(stored, first_error, full)
    }

    async fn tombstone_many(&self, ids: &[FlagId], ttl: Duration) -> Result<()> {
        let c = &self.shared.counters;
        self.begin(&c.tombstone_calls, "tombstone_many").await?;
        check_ttl(ttl)?;
        let mut first_error = None;
        {
            let mut table = lock(&self.shared.table);
            let now = self.shared.clock.now();
            let expires_at = expiry(now, ttl);
            for id in ids {
                if let Err(e) = table.tombstone(id, expires_at, now) {
                    first_error.get_or_insert(e);
                }
            }
        }
        let full = first_error.is_some();
        self.finish((), first_error, full)
    }

    async fn clear(&self) -> Result<()> {
        self.begin(&self.shared.counters.clear_calls, "clear")
            .await?;
        let old = lock(&self.shared.table).take_all();
        // Dropped here, after the lock: a million definitions take a while to free.
        drop(old);
        Ok(())
    }

    async fn load_all(&self) -> Result<Vec<FlagDefinition>> {
        self.begin(&self.shared.counters.load_all_calls, "load_all")
            .await?;
        let mut defs = {
            let table = lock(&self.shared.table);
            table.values(self.shared.clock.now())
        };
        // Sorted and copied outside the lock.
        defs.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Ok(defs.iter().map(|d| FlagDefinition::clone(d)).collect())
    }

    async fn publish(&self, notice: &[u8]) -> Result<()> {
        let c = &self.shared.counters;
        self.begin(&c.publishes, "publish").await?;
        add(
            &c.subscribers_dropped,
            self.shared.subscribers.publish(notice),
        );
        Ok(())
    }

    async fn subscribe(&self) -> Result<Subscription> {
        let c = &self.shared.counters;
        self.begin(&c.subscribes, "subscribe").await?;
        self.shared
            .subscribers
            .subscribe()
            .inspect_err(|_| add(&c.failures, 1))
    }

    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let c = &self.shared.counters;
        self.begin(&c.lease_calls, "lease").await?;
        check_ttl(ttl)?;
        let now = self.shared.clock.now();
        lock(&self.shared.leases).take(name, holder, now, expiry(now, ttl))
    }
}
