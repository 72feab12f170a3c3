//! The process-wide clock thread serves every driven clock at the finest resolution asked for,
//! from the moment a clock is driven. Its own test binary: the thread is shared by every cache
//! of the process, and other tests' caches would hide what this one checks.

#[path = "support/busy_runtime.rs"]
mod busy_runtime;

use flagcache::LocalCache;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_fine_clock_is_served_at_once_while_the_thread_sleeps_for_a_coarse_one() {
    // A cache with a one-second resolution, driven from a runtime of its own: the clock thread
    // then sleeps a second at a time.
    let coarse_runtime = tokio::runtime::Runtime::new().unwrap();
    let coarse = Arc::new(
        LocalCache::builder()
            .clock_resolution(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let _coarse_task = coarse_runtime
        .block_on(async { coarse.start_cleanup_task(Duration::from_secs(1)) })
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));

    // A cache with the default 5 ms resolution whose runtime is kept busy: only the clock
    // thread moves its clock, and it must not wait out the coarse cache's second first.
    let last = busy_runtime::last_served_on_a_busy_runtime(Duration::from_millis(800));
    assert!(
        last < busy_runtime::SERVED_AT_MOST,
        "served {last:?} after it was written, with a {:?} TTL",
        busy_runtime::TTL
    );
}
