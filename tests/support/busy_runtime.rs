//! Expiry on a busy runtime: a cache whose cleanup task never gets to run.

use flagcache::{FlagDefinition, FlagId, LocalCache};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The TTL of the entry [`last_served_on_a_busy_runtime`] watches.
pub const TTL: Duration = Duration::from_millis(100);

/// The longest an entry with [`TTL`] may be served after it was written: two clock
/// resolutions (5 ms each) past it, and room for a slow machine.
pub const SERVED_AT_MOST: Duration = Duration::from_millis(100 + 2 * 5 + 40);

/// Starts a cache's cleanup task on a `current_thread` runtime, writes an entry with [`TTL`],
/// then keeps the runtime's only thread busy (no await) reading it for `watch`: the task never
/// runs. Returns how long after the write the entry was last served.
pub fn last_served_on_a_busy_runtime(watch: Duration) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let cache = Arc::new(LocalCache::builder().default_ttl(TTL).build().unwrap());
        let _task = cache.start_cleanup_task(Duration::from_secs(1)).unwrap();
        tokio::task::yield_now().await; // the task ticks once
        let def = FlagDefinition::new_boolean("brief", "Brief", true).unwrap();
        cache.try_set(&FlagId::new("brief"), def, None).unwrap();
        let written = Instant::now();
        let mut last_served = None;
        while written.elapsed() < watch {
            if cache.get_now("brief").is_some() {
                last_served = Some(written.elapsed());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        last_served.expect("served while fresh")
    })
}
