//! `TieredCache` keeps its work bounded, whatever the keys and whatever the source does: the
//! negative cache and the retry throttle keep working after any number of distinct ids, loads
//! in the background have a limit, a hung source call times out, and entries that never
//! expire are never refreshed. On a real SQLite source; no L2 needed.

#[path = "support/sources.rs"]
mod sources;

use flagcache::{Clock, FlagCache, FlagId, MockClock, TieredCache};
use sources::{Db, Gated, def};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_negative_cache_keeps_working_after_more_distinct_ids_than_it_remembers() {
    let db = Db::new("bounds-negative");
    let mock = MockClock::new();
    let cache = TieredCache::builder()
        .source(db.source.clone())
        .clock(Clock::mock(&mock))
        .remembered_flags(1_000)
        .negative_ttl(Duration::from_secs(5))
        .build()
        .unwrap();
    // More distinct missing ids than the negative cache remembers.
    let typos: Vec<FlagId> = (0..3_000)
        .map(|i| FlagId::new(format!("typo-{i}")))
        .collect();
    for chunk in typos.chunks(500) {
        assert!(cache.get_many(chunk).await.is_empty());
    }
    mock.advance(Duration::from_secs(3600));

    let before = db.source.queries();
    let fresh = FlagId::new("never-created");
    for _ in 0..5 {
        assert!(cache.get(&fresh).await.is_none());
    }
    assert_eq!(
        db.source.queries() - before,
        1,
        "one load, then the negative cache answers: {:?}",
        cache.tiered_stats()
    );
    assert_eq!(cache.tiered_stats().negative_hits, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_throttle_keeps_working_after_more_distinct_failures_than_it_remembers() {
    let db = Db::new("bounds-cooldown");
    let mock = MockClock::new();
    let cache = TieredCache::builder()
        .source(db.source.clone())
        .clock(Clock::mock(&mock))
        .remembered_flags(1_000)
        .retry_after(Duration::from_secs(10))
        .build()
        .unwrap();
    db.source.break_table();
    let ids: Vec<FlagId> = (0..3_000).map(|i| FlagId::new(format!("f-{i}"))).collect();
    for chunk in ids.chunks(500) {
        assert!(cache.get_many(chunk).await.is_empty());
    }
    mock.advance(Duration::from_secs(3600));

    let before = db.source.queries();
    let id = FlagId::new("another");
    for _ in 0..5 {
        assert!(cache.get(&id).await.is_none());
    }
    assert_eq!(
        db.source.queries() - before,
        1,
        "failed once, then throttled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_loads_are_bounded_and_the_rest_are_shed() {
    let db = Db::new("bounds-background");
    let gated = Gated::new(db.source.clone());
    let cache = TieredCache::builder()
        .source(gated.clone())
        .max_background_loads(64)
        .build()
        .unwrap();
    // 20 000 distinct misses against a source that answers nothing until released.
    for i in 0..20_000 {
        assert!(
            cache
                .get_now(&FlagId::new(format!("missing-{i}")))
                .is_none()
        );
    }
    let stats = cache.tiered_stats();
    assert!(stats.background_loads <= 64, "{stats:?}");
    assert_eq!(stats.loads_shed, 20_000 - 64, "{stats:?}");
    // Give the spawned loads time to reach the source: never more than the limit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(gated.started_unclaimed() <= 64);
    gated.open();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.tiered_stats().background_loads > 0 {
        assert!(Instant::now() < deadline, "{:?}", cache.tiered_stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Room again: a new miss starts a load.
    db.source.upsert(&def("late", 1)).unwrap();
    assert!(cache.get_now(&FlagId::new("late")).is_none());
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.l1().get_now("late").is_none() {
        assert!(Instant::now() < deadline, "{:?}", cache.tiered_stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_call_that_never_returns_times_out_and_the_flag_loads_again_later() {
    let db = Db::new("bounds-hung");
    db.source.upsert(&def("hung", 3)).unwrap();
    let gated = Gated::new(db.source.clone());
    let mock = MockClock::new();
    let cache = TieredCache::builder()
        .source(gated.clone())
        .clock(Clock::mock(&mock))
        .source_timeout(Duration::from_millis(200))
        .retry_after(Duration::from_secs(1))
        .build()
        .unwrap();
    let id = FlagId::new("hung");

    // The source never answers: the read gives up after the source timeout.
    let started = Instant::now();
    let read = tokio::time::timeout(Duration::from_secs(5), cache.get(&id)).await;
    assert!(read.is_ok(), "get hung with the source");
    assert!(read.unwrap().is_none());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(cache.tiered_stats().l3_errors, 1);

    // Throttled: within retry_after the source is not asked again.
    assert!(cache.get(&id).await.is_none());
    assert_eq!(db.source.queries(), 1);

    // The flight did not stay up: once the source answers again, the flag loads.
    gated.open();
    mock.advance(Duration::from_secs(2));
    let flag = cache.get(&id).await.expect("loaded after the pause");
    assert_eq!(flag.definition.version, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_source_serves_the_stale_definition() {
    let db = Db::new("bounds-hung-stale");
    db.source.upsert(&def("known", 1)).unwrap();
    let gated = Gated::new(db.source.clone());
    let mock = MockClock::new();
    let cache = TieredCache::builder()
        .source(gated.clone())
        .clock(Clock::mock(&mock))
        .l1_ttl(Duration::from_secs(10))
        .max_stale(Duration::from_secs(60))
        .source_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let id = FlagId::new("known");
    gated.release(1);
    assert_eq!(cache.get(&id).await.unwrap().definition.version, 1);
    // Expired, and now the source hangs: the last known definition is served.
    mock.advance(Duration::from_secs(20));
    let stale = cache.get(&id).await.expect("stale within max_stale");
    assert_eq!(stale.definition.version, 1);
    assert_eq!(cache.tiered_stats().stale_serves, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_never_expire_are_never_refreshed() {
    let db = Db::new("bounds-never");
    for i in 0..10 {
        db.source.upsert(&def(&format!("f{i}"), 1)).unwrap();
    }
    let cache = TieredCache::builder()
        .source(db.source.clone())
        .l1_ttl(Duration::MAX)
        .build()
        .unwrap();
    for i in 0..10 {
        let id = FlagId::new(format!("f{i}"));
        assert!(cache.get(&id).await.is_some());
        // Read since written: a candidate, were it close to expiry.
        assert!(cache.get_with(id.as_str(), |_| ()).is_some());
    }
    let before = db.source.queries();
    for _ in 0..3 {
        assert_eq!(cache.refresh_ahead().await, 0);
    }
    assert_eq!(
        db.source.queries(),
        before,
        "no reloads of entries without expiry"
    );
}
