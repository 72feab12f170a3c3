//! L1 invariant 8: a hit allocates nothing, on the owned, borrowed and async paths.
//!
//! One test in its own binary: the counting allocator sees every thread of the process, so no
//! other test may run beside it.

use flagcache::{FlagCache, FlagDefinition, FlagId, LocalCache};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn hits_allocate_nothing_on_any_read_path() {
    let cache = LocalCache::builder()
        .max_size(1_000)
        .default_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let ids: Vec<FlagId> = (0..100).map(|i| FlagId::new(format!("flag-{i}"))).collect();
    for id in &ids {
        let def = FlagDefinition::new_boolean(id.as_str(), "no alloc", false).unwrap();
        cache.try_set(id, def, None).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Warm up every path once: thread-locals (stats stripe, papaya guard slots) are
    // set up on a thread's first use, which may allocate once per thread.
    for id in &ids {
        black_box(cache.get_now(id.as_str()));
        black_box(cache.get_with(id.as_str(), |d| d.version));
        black_box(rt.block_on(cache.get(id)));
    }

    let region = Region::new(GLOBAL);
    for _ in 0..10 {
        for id in &ids {
            black_box(cache.get_now(id.as_str()));
        }
    }
    let owned = region.change();
    assert_eq!(owned.allocations, 0, "owned get allocated: {owned:?}");

    let region = Region::new(GLOBAL);
    for _ in 0..10 {
        for id in &ids {
            black_box(cache.get_with(id.as_str(), |d| d.version));
        }
    }
    let borrowed = region.change();
    assert_eq!(
        borrowed.allocations, 0,
        "borrowed get allocated: {borrowed:?}"
    );

    let region = Region::new(GLOBAL);
    for _ in 0..10 {
        for id in &ids {
            black_box(rt.block_on(cache.get(id)));
        }
    }
    let through_trait = region.change();
    assert_eq!(
        through_trait.allocations, 0,
        "async trait get allocated: {through_trait:?}"
    );

    // The check itself can fail: a miss path that builds a String would be seen.
    let region = Region::new(GLOBAL);
    black_box(format!("{}", ids.len()));
    assert!(
        region.change().allocations > 0,
        "the counting allocator counts nothing"
    );

    assert_eq!(cache.stats_now().hits, 3 * 100 + 3 * 1_000);
}
