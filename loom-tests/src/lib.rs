//! Shared helpers of the loom models. Each model lives in `tests/`, one protocol a file.
//!
//! Build with `RUSTFLAGS="--cfg flagcache_loom"`: flagcache then routes its atomics, locks, map
//! and snapshot cell through loom. Without that cfg the models refuse to run (a loom model over
//! papaya would explore nothing).

use flagcache::{Clock, FlagDefinition, FlagId, LocalCache, MockClock};
use std::time::Duration;

/// True when flagcache was built for loom.
pub const LOOM_BUILD: bool = cfg!(flagcache_loom);

/// Runs `f` as a loom model, bounded by `LOOM_MAX_PREEMPTIONS` (default 2).
pub fn model(f: impl Fn() + Sync + Send + 'static) {
    assert!(
        LOOM_BUILD,
        "build the loom models with RUSTFLAGS=\"--cfg flagcache_loom\" (see .ci/run)"
    );
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}

/// A boolean flag of `id` at `version`.
pub fn flag(id: &str, version: u64) -> FlagDefinition {
    match FlagDefinition::new_boolean(id, "loom", false) {
        Ok(def) => def.with_version(version),
        Err(e) => panic!("test flag: {e}"),
    }
}

/// A small cache on a mock clock (loom models must not read real time).
pub fn cache(max_size: usize) -> LocalCache {
    let mock = MockClock::new();
    match LocalCache::builder()
        .max_size(max_size)
        .default_ttl(Duration::from_secs(60))
        .clock(Clock::mock(&mock))
        .build()
    {
        Ok(c) => c,
        Err(e) => panic!("test cache: {e}"),
    }
}

/// Sets `id` at `version`, ignoring a refusal of a stale version.
pub fn set(cache: &LocalCache, id: &str, version: u64) {
    let _ = cache.try_set(&FlagId::new(id), flag(id, version), None);
}

/// The bound, checked the slow way: map entries <= published slots <= capacity; and the ring
/// settled: no slot left pending, the free count exact, each entry in a live slot of its own.
pub fn assert_bound(cache: &LocalCache) {
    let fault = flagcache::__internals::ring_fault(cache);
    assert!(fault.is_none(), "ring: {}", fault.unwrap_or_default());
    let live = flagcache::__internals::live_slots(cache);
    let entries = flagcache::__internals::map_len(cache);
    assert!(
        entries <= live,
        "{entries} entries but {live} published slots"
    );
    assert!(
        live <= cache.capacity(),
        "{live} published slots above capacity"
    );
}
