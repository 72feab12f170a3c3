//! The process-wide clock thread serves every driven clock at the finest resolution asked for,
//! from the moment a clock is driven. Its own test binary: the thread is shared by every cache
//! of the process, and other tests' caches would hide what this one checks.

use flagcache::{FlagDefinition, FlagId, LocalCache};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let cache = Arc::new(
            LocalCache::builder()
                .default_ttl(Duration::from_millis(100))
                .build()
                .unwrap(),
        );
        let _task = cache.start_cleanup_task(Duration::from_secs(1)).unwrap();
        tokio::task::yield_now().await; // the task ticks once
        let id = FlagId::new("brief");
        let def = FlagDefinition::new_boolean("brief", "Brief", true).unwrap();
        cache.try_set(&id, def, None).unwrap();
        let written = Instant::now();
        let mut last_served = None;
        while written.elapsed() < Duration::from_millis(800) {
            if cache.get_now("brief").is_some() {
                last_served = Some(written.elapsed());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let last = last_served.expect("served while fresh");
        assert!(
            last < Duration::from_millis(100 + 2 * 5 + 40),
            "served {last:?} after it was written, with a 100 ms TTL"
        );
    });
}
