//! Memory stays flat under hostile use of the tiered layer: a million distinct absent ids, and
//! writes after a cancelled warm-up. Measured as the process's resident set, so the tests run
//! one at a time (a lock), in a binary of their own, with no other test allocating beside them.

#[path = "support/sources.rs"]
mod sources;

use flagcache::{FlagCache, FlagDefinition, FlagId, MemoryStore, TieredCache};
use sources::{Db, Gated, def};
use std::time::Duration;

/// One measurement at a time: the resident set is the whole process's.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_distinct_absent_ids_keep_memory_flat() {
    let _one_at_a_time = SERIAL.lock().await;
    let l2 = MemoryStore::new();
    let cache = TieredCache::builder()
        .l2(l2)
        .remembered_flags(10_000)
        .negative_ttl(Duration::from_secs(600))
        .build()
        .unwrap();
    let batch = |k: usize| -> Vec<FlagId> {
        (0..10_000)
            .map(|i| FlagId::new(format!("typo-{k}-{i}")))
            .collect()
    };
    for k in 0..10 {
        cache.get_many(&batch(k)).await;
    }
    let before = rss_kib();
    for k in 10..100 {
        cache.get_many(&batch(k)).await;
    }
    let growth = rss_kib().saturating_sub(before);
    eprintln!("RSS growth over 900 000 more distinct absent ids: {growth} KiB");
    assert!(growth < 16 * 1024, "{growth} KiB");
    // And the negative cache still works.
    let fresh = FlagId::new("brand-new-typo");
    for _ in 0..3 {
        assert!(cache.get(&fresh).await.is_none());
    }
    assert!(cache.tiered_stats().negative_hits >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_warm_up_stops_recording_writes() {
    let _one_at_a_time = SERIAL.lock().await;
    const FLAGS: usize = 60_000;
    let body = "x".repeat(2_000);
    let make = |i: usize| -> (FlagId, FlagDefinition) {
        let id = format!("w{i:06}");
        let d = def(&id, 1).with_description(body.clone());
        (FlagId::new(&id), d)
    };
    let db = Db::new("probe-warm-cancel");
    let gated = Gated::new(db.source.clone()).holding_load_all();

    // Control: the same writes through a cache whose warm-up was never started.
    let control = TieredCache::builder()
        .source(db.source.clone())
        .l1_size(1_000)
        .build()
        .unwrap();
    let before = rss_kib();
    for chunk in (0..FLAGS).collect::<Vec<_>>().chunks(1_000) {
        let batch = chunk.iter().map(|&i| make(i)).collect();
        control.try_set_many(batch, None).await.unwrap();
    }
    control.clear().await;
    let control_growth = rss_kib().saturating_sub(before);
    drop(control);

    let cache = TieredCache::builder()
        .source(gated.clone())
        .l1_size(1_000)
        .build()
        .unwrap();
    // A warm-up cut short (a start-up deadline): its future is dropped mid-load.
    let cut = tokio::time::timeout(Duration::from_millis(50), cache.warm_up()).await;
    assert!(cut.is_err(), "cancelled");
    let before = rss_kib();
    for chunk in (0..FLAGS).collect::<Vec<_>>().chunks(1_000) {
        let batch = chunk.iter().map(|&i| make(i)).collect();
        cache.try_set_many(batch, None).await.unwrap();
    }
    cache.clear().await; // L1 holds nothing now
    let growth = rss_kib().saturating_sub(before);
    eprintln!(
        "RSS growth: control {control_growth} KiB, after a cancelled warm-up {growth} KiB \
         (L1 holds {} entries)",
        cache.l1().len()
    );
    assert!(
        growth < control_growth + 32 * 1024,
        "after a cancelled warm_up every write's definition is retained by the warm-up log \
         (up to 100 000 of them) although L1 dropped them: +{growth} KiB vs {control_growth} KiB"
    );
}
