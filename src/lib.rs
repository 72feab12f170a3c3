//! # flagcache
//!
//! A lock-free, multi-layer cache for feature-flag definitions, for evaluators that ask "what
//! is flag X right now?" millions of times a second per core.
//!
//! | Layer | Type | What |
//! |---|---|---|
//! | L1 | [`LocalCache`] | in-process `papaya` map, CLOCK eviction, per-entry TTL, snapshot swaps |
//! | L2 | [`FlagStore`]: `RedisCache` (feature `redis`), [`MemoryStore`] | shared by a fleet: bounded latency, batches, version guard, backplane |
//! | L3 | [`FlagSource`]: yours, or `PostgresSource` (feature `postgres`) | the database, the source of truth, and its change feed |
//! | all | [`TieredCache`] | read-through, single-flight, refresh-ahead, fail-safe, backplane, the source's change feed followed once per fleet, a snapshot to boot from, an emptied L2 refilled |
//!
//! ## Quick example
//! ```
//! use flagcache::{EvalContext, FlagDefinition, FlagId, LocalCache};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), flagcache::Error> {
//! let cache = LocalCache::builder()
//!     .max_size(10_000)
//!     .default_ttl(Duration::from_secs(60))
//!     .build()?;
//!
//! // A boolean flag whose default value is `false`.
//! let def = FlagDefinition::new_boolean("checkout.new-flow", "New checkout", false)?;
//! cache.try_set(&FlagId::new("checkout.new-flow"), def, None)?;
//!
//! // The hot path: no lock, no allocation, no await.
//! let user = EvalContext::new("user-42");
//! let on = cache.get_with("checkout.new-flow", |def| def.evaluate(&user).value.as_bool());
//! assert_eq!(on, Some(Some(false)));
//! # Ok(())
//! # }
//! ```
//!
//! ## Cargo features
//! | Feature | Default | What |
//! |---|---|---|
//! | `redis` | yes | the Redis layer (L2); off, the crate compiles no Redis client |
//! | `redis-tls` | no | `rediss://` URLs for the Redis layer (rustls) |
//! | `postgres` | no | `PostgresSource`: a source on a PostgreSQL table, with a change feed from `LISTEN`/`NOTIFY` |
//! | `metrics` | no | `TieredCache::start_metrics_task`: the statistics through the `metrics` facade |
//! | `openfeature` | no | `FlagcacheProvider`, an OpenFeature provider |
//!
//! ## Consistency model
//! - **Reads** see a write once the write has returned; an `invalidate` that returned is never
//!   undone by a read-through fill that started before it (write fences, see [`LocalCache`]).
//! - **Versions** never go backwards in the cache: a write or fill of a lower version than the
//!   cached one is refused and counted.
//! - **Snapshots**: [`LocalCache::replace_all`] swaps the whole set atomically; a
//!   [`LocalCache::get_many_now`] answers from one snapshot.
//! - **Expiry**: an entry is not served past its TTL by more than about two clock ticks (5 ms
//!   each by default while the cleanup task runs, ticked by a thread of the crate whatever the
//!   runtime is doing; exact without the task).
//! - **Stats** are exact once concurrent operations have finished.
//!
//! ## Performance
//! A hit does no locking, no allocation and no system call. [`LocalCache::get_with`] lends the
//! definition without an `Arc` clone and, once the entry's CLOCK counter is saturated, writes
//! only its thread's stats stripe. See `BENCHMARKS.md` for measurements against `quick_cache`,
//! `moka` and a raw `papaya` map.

#![deny(missing_docs)]
// `clippy.toml` bans std atomics, locks and papaya outside `sync.rs`. The facade
// re-exports std's types, which the lint cannot tell from direct uses, so it is enforced in the
// loom build (where the facade's types are loom's): `.ci/run` runs clippy there.
#![cfg_attr(not(flagcache_loom), allow(clippy::disallowed_types))]
#![cfg_attr(flagcache_loom, deny(clippy::disallowed_types))]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cache;
mod error;
mod evaluate;
mod flag;
mod local;
mod memory;
#[cfg(all(feature = "openfeature", not(flagcache_loom)))]
mod openfeature;
#[cfg(all(feature = "postgres", not(flagcache_loom)))]
mod postgres;
#[cfg(all(feature = "redis", not(flagcache_loom)))]
mod redis;
mod sync;
mod task;
#[cfg(not(flagcache_loom))]
mod ticker;
mod tiered;
mod time;

pub use cache::{CacheStats, CachedFlag, FlagCache};
pub use error::{Error, ErrorKind, Result};
pub use evaluate::*;
pub use flag::*;
pub use local::{CleanupTask, FillOutcome, FillTicket, LocalCache, LocalCacheBuilder, StaleFlag};
pub use memory::{MemoryStore, MemoryStoreBuilder, MemoryStoreStats};
#[cfg(all(feature = "openfeature", not(flagcache_loom)))]
pub use openfeature::FlagcacheProvider;
#[cfg(all(feature = "postgres", not(flagcache_loom)))]
pub use postgres::{PostgresSource, PostgresSourceBuilder};
#[cfg(all(feature = "redis", not(flagcache_loom)))]
pub use redis::{RedisCache, RedisCacheBuilder, RedisStats};
pub use task::BackgroundTask;
#[cfg(feature = "metrics")]
pub use tiered::MetricsTask;
pub use tiered::{
    BackplaneTask, Change, ChangeFeed, ChangeFeedTask, FlagSource, FlagStore, Readiness,
    RefreshTask, SetManyOutcome, SnapshotTask, SourceError, Subscription, TieredCache,
    TieredCacheBuilder, TieredStats,
};
pub use time::{Clock, MockClock};

/// Internals for the fuzz targets and loom models; not part of the API.
#[cfg(any(fuzzing, flagcache_loom))]
#[doc(hidden)]
pub mod __internals {
    use crate::LocalCache;

    /// One bounded sweep step, as the cleanup task runs it; returns the entries expired.
    pub fn sweep_step(cache: &LocalCache) -> u64 {
        cache.sweep_step().0
    }

    /// The published ring slots (each owned by at most one live entry).
    pub fn live_slots(cache: &LocalCache) -> usize {
        cache.live_slots()
    }

    /// What a backplane notice does to L1's copy of `id` while its reload is pending: expires
    /// it (kept for stale serving) and fences the fills that began before.
    pub fn expire_now(cache: &LocalCache, id: &str) -> bool {
        cache.expire_now(id)
    }

    /// The first broken ring invariant at quiescence, if any (see `LocalCache::ring_fault`).
    pub fn ring_fault(cache: &LocalCache) -> Option<String> {
        cache.ring_fault()
    }

    /// The entries in the map, published or not.
    pub fn map_len(cache: &LocalCache) -> usize {
        cache.map_len()
    }

    /// A cache's write fences on their own, for the loom model of the fence pair that keeps an
    /// absent-key fill from outliving an invalidate (`loom-tests/tests/fence_pair.rs`).
    pub struct Fences(crate::local::WriteFences);

    impl Default for Fences {
        fn default() -> Self {
            Self(crate::local::WriteFences::new())
        }
    }

    impl Fences {
        /// What a fill records before its I/O.
        pub fn ticket(&self, key: &str) -> crate::FillTicket {
            let stripe = self.0.stripe_of(key);
            crate::FillTicket {
                generation: 0,
                stripe,
                fence: self.0.read(stripe),
            }
        }

        /// A write's announcement (with its `SeqCst` fence), as `set` and `invalidate` make it.
        pub fn advance(&self, key: &str) {
            self.0.advance(key);
        }

        /// The fill's check: no write announced since the ticket.
        pub fn unchanged_since(&self, ticket: &crate::FillTicket) -> bool {
            self.0.unchanged_since(ticket)
        }
    }

    /// A system clock's coarse mode held by one driver (a running cleanup task), for the loom
    /// model of drivers coming and going (`loom-tests/tests/clock_drivers.rs`).
    pub struct ClockDriver(#[allow(dead_code)] crate::time::ClockDriver);

    /// Drives `clock`, as a cleanup task does while it runs.
    pub fn drive(clock: &crate::Clock) -> ClockDriver {
        ClockDriver(clock.drive(std::time::Duration::from_millis(5)))
    }

    /// One refresh, as the clock thread gives.
    pub fn tick(clock: &crate::Clock) {
        clock.tick();
    }

    /// True while readers of `clock` read its coarse tick; false while they read the system
    /// clock (no driver).
    pub fn is_coarse(clock: &crate::Clock) -> bool {
        clock.is_coarse()
    }

    /// The tiered cache's single-flight table, landing `u64`s, for the loom model of joining,
    /// landing and abandoning (`loom-tests/tests/single_flight.rs`).
    pub struct SingleFlight(crate::sync::Arc<crate::tiered::flight::Flights<u64>>);

    /// What joining made the caller: a leader (land with [`Joined::land`], or drop to
    /// abandon) or a follower (poll [`Joined::outcome`]).
    pub struct Joined(Role);

    enum Role {
        Leader(crate::tiered::flight::Leader<u64>),
        Follower(crate::sync::Arc<crate::tiered::flight::Flight<u64>>),
    }

    impl Default for SingleFlight {
        fn default() -> Self {
            Self(crate::sync::Arc::new(crate::tiered::flight::Flights::new()))
        }
    }

    impl SingleFlight {
        /// Leads or follows the flight of `id`.
        pub fn join(&self, id: &str) -> Joined {
            Joined(match self.0.join(&crate::FlagId::new(id)) {
                crate::tiered::flight::Role::Leader(l) => Role::Leader(l),
                crate::tiered::flight::Role::Follower(f) => Role::Follower(f),
            })
        }

        /// Takes `id`'s flight out of the table, as a write or invalidate does.
        pub fn detach(&self, id: &str) {
            self.0.detach(id);
        }

        /// Flights in the air.
        pub fn in_air(&self) -> usize {
            self.0.in_air()
        }
    }

    impl Joined {
        /// True for a leader.
        pub fn is_leader(&self) -> bool {
            matches!(self.0, Role::Leader(_))
        }

        /// Lands a led flight with `value`; false (and nothing done) for a follower.
        pub fn land(self, value: u64) -> bool {
            match self.0 {
                Role::Leader(l) => {
                    l.land(value);
                    true
                }
                Role::Follower(_) => false,
            }
        }

        /// A follower's view: `Some(Some(v))` landed, `Some(None)` abandoned, `None` in the air
        /// (and always `None` for a leader).
        pub fn outcome(&self) -> Option<Option<u64>> {
            match &self.0 {
                Role::Follower(f) => f.outcome(),
                Role::Leader(_) => None,
            }
        }
    }
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
