//! `TieredCache`'s read-through logic on real parts: a real SQLite database (L3) and the
//! crate's `MemoryStore` as L2, with its switches to fail, hang or end subscriptions. Runs with
//! or without a `redis-server`. Single-flight, batches, negative caching, no resurrection,
//! fail-safe serving, the never-waiting read, warm-up, refresh-ahead, and the backplane
//! between two instances of one process. What only Redis shows is in `tiered_redis.rs`.

#[path = "support/sources.rs"]
mod sources;

use flagcache::{Clock, FlagCache, FlagId, FlagStore, MemoryStore, MockClock, TieredCache};
use sources::{Db, Gated, def};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What `store` holds for `id` now.
async fn stored(store: &MemoryStore, id: &FlagId) -> Option<u64> {
    let found = store.get_many(std::slice::from_ref(id)).await.unwrap();
    found.get(id).map(|f| f.definition.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_flag_cost_one_l2_read_and_one_l3_load() {
    let l2 = MemoryStore::new();
    let db = Db::new("single-flight");
    db.source.upsert(&def("hot", 4)).unwrap();
    let gated = Gated::new(db.source.clone());
    let cache = TieredCache::builder()
        .l2(l2.clone())
        .source(gated.clone())
        .build()
        .unwrap();
    let id = FlagId::new("hot");

    let readers: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            let id = id.clone();
            tokio::spawn(async move { cache.get(&id).await })
        })
        .collect();
    // Hold the one load until every reader has joined it.
    gated.load_started().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.tiered_stats().coalesced_waits < 99 {
        assert!(Instant::now() < deadline, "{:?}", cache.tiered_stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gated.release(100);
    for reader in readers {
        assert_eq!(reader.await.unwrap().unwrap().definition.version, 4);
    }
    let stats = cache.tiered_stats();
    assert_eq!(db.source.queries(), 1, "one L3 load");
    assert_eq!(stats.l3_loads, 1);
    let l2_stats = l2.stats();
    assert_eq!(
        (l2_stats.get_many_calls, l2_stats.flags_read),
        (1, 1),
        "one L2 read: {l2_stats:?}"
    );
    assert_eq!(stats.coalesced_waits, 99);
    // Filled on the way back: L2 holds it, L1 serves it.
    assert!(cache.l1().get_now("hot").is_some());
    assert_eq!(stored(&l2, &id).await, Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_flags_are_remembered_for_the_negative_ttl() {
    let l2 = MemoryStore::new();
    let db = Db::new("negative");
    let mock = MockClock::new();
    let cache = TieredCache::builder()
        .l2(l2.clone())
        .source(db.source.clone())
        .clock(Clock::mock(&mock))
        .negative_ttl(Duration::from_secs(5))
        .build()
        .unwrap();
    let typo = FlagId::new("chekout.new-flow");
    for _ in 0..10 {
        assert!(cache.get(&typo).await.is_none());
    }
    assert_eq!(
        db.source.queries(),
        1,
        "one load, then the negative cache answers"
    );
    assert_eq!(cache.tiered_stats().negative_hits, 9);
    assert_eq!(l2.stats().get_many_calls, 1, "L2 asked once too");
    // In a batch too.
    assert!(cache.get_many(std::slice::from_ref(&typo)).await.is_empty());
    assert_eq!(db.source.queries(), 1);

    mock.advance(Duration::from_secs(6));
    db.source.upsert(&def("chekout.new-flow", 1)).unwrap();
    assert!(
        cache.get(&typo).await.is_some(),
        "asked again after the negative TTL"
    );
    assert_eq!(db.source.queries(), 2);

    // A write of an absent flag makes it present at once.
    let other = FlagId::new("later");
    assert!(cache.get(&other).await.is_none());
    cache.set(&other, def("later", 1), None).await;
    assert!(cache.get(&other).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_does_not_strand_its_followers() {
    let db = Db::new("cancel");
    db.source.upsert(&def("f", 1)).unwrap();
    let gated = Gated::new(db.source.clone());
    let cache = TieredCache::builder()
        .source(gated.clone())
        .build()
        .unwrap();
    let id = FlagId::new("f");

    let leader = {
        let (cache, id) = (cache.clone(), id.clone());
        tokio::spawn(async move { cache.get(&id).await })
    };
    gated.load_started().await;
    let follower = {
        let (cache, id) = (cache.clone(), id.clone());
        tokio::spawn(async move { cache.get(&id).await })
    };
    while cache.tiered_stats().coalesced_waits < 1 {
        tokio::task::yield_now().await;
    }
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    // The follower leads a new load; let it through.
    gated.load_started().await;
    gated.release(1);
    let got = tokio::time::timeout(Duration::from_secs(5), follower).await;
    assert_eq!(
        got.expect("the follower was stranded")
            .unwrap()
            .unwrap()
            .definition
            .version,
        1
    );
    assert_eq!(
        db.source.queries(),
        2,
        "the abandoned load and the follower's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_overtaken_by_a_write_or_invalidate_installs_nothing() {
    let l2 = MemoryStore::new();
    let db = Db::new("resurrection");
    db.source.upsert(&def("f", 1)).unwrap();
    db.source.upsert(&def("g", 1)).unwrap();
    let gated = Gated::new(db.source.clone());
    let cache = TieredCache::builder()
        .l2(l2.clone())
        .source(gated.clone())
        .build()
        .unwrap();

    // A newer version written while a load of version 1 is held.
    let f = FlagId::new("f");
    let reader = {
        let (cache, f) = (cache.clone(), f.clone());
        tokio::spawn(async move { cache.get(&f).await })
    };
    gated.load_started().await;
    db.source.upsert(&def("f", 2)).unwrap();
    cache.try_set(&f, def("f", 2), None).await.unwrap();
    gated.release(1);
    assert_eq!(
        reader.await.unwrap().unwrap().definition.version,
        1,
        "what the source said"
    );
    assert_eq!(
        cache.l1().get_now("f").unwrap().definition.version,
        2,
        "L1 kept the write"
    );
    assert_eq!(stored(&l2, &f).await, Some(2), "L2 kept the write");
    assert_eq!(cache.get(&f).await.unwrap().definition.version, 2);

    // A delete and invalidate while a load of the old definition is held.
    let g = FlagId::new("g");
    let reader = {
        let (cache, g) = (cache.clone(), g.clone());
        tokio::spawn(async move { cache.get(&g).await })
    };
    gated.load_started().await;
    db.source.delete("g").unwrap();
    cache.try_invalidate(&g).await.unwrap();
    gated.release(1);
    assert!(
        reader.await.unwrap().is_some(),
        "the load saw it before the delete"
    );
    assert!(cache.l1().get_now("g").is_none(), "not resurrected in L1");
    assert_eq!(stored(&l2, &g).await, None, "nor in L2");
    gated.release(1);
    assert!(cache.get(&g).await.is_none(), "gone for good");
    // g's fill was refused by the invalidate's fence; f's found the newer version in L1
    // (superseded, not a refusal).
    assert_eq!(
        cache.l1().stats_now().fills_refused,
        1,
        "{:?}",
        cache.l1().stats_now()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_backends_serve_stale_within_max_stale_and_nothing_after() {
    let l2 = MemoryStore::new();
    let db = Db::new("fail-safe");
    db.source.upsert(&def("f", 3)).unwrap();
    let mock = MockClock::new();
    let cache = TieredCache::builder()
        .l2(l2.clone())
        .source(db.source.clone())
        .clock(Clock::mock(&mock))
        .l1_ttl(Duration::from_secs(1))
        .max_stale(Duration::from_secs(10))
        .retry_after(Duration::from_secs(2))
        .build()
        .unwrap();
    let f = FlagId::new("f");
    assert_eq!(cache.get(&f).await.unwrap().definition.version, 3);

    l2.set_failing(true);
    db.source.break_table();
    mock.advance(Duration::from_secs(2)); // expired in L1 a second ago
    let started = Instant::now();
    let stale = cache
        .get(&f)
        .await
        .expect("stale served while the backends fail");
    assert_eq!(stale.definition.version, 3);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "bounded by the L2 timeout"
    );
    let stats = cache.tiered_stats();
    assert_eq!((stats.stale_serves, stats.l3_errors), (1, 1));

    // Throttled: within retry_after, reads are answered from L1 without asking the backends.
    let queries = db.source.queries();
    for _ in 0..5 {
        assert!(cache.get(&f).await.is_some());
    }
    assert_eq!(db.source.queries(), queries, "no retry within retry_after");
    assert_eq!(cache.tiered_stats().stale_serves, 6);

    // Past max_stale (expired 11 s ago): nothing.
    mock.advance(Duration::from_secs(10));
    assert!(cache.get(&f).await.is_none());
    assert!(cache.get_many(std::slice::from_ref(&f)).await.is_empty());

    // The backends come back: served fresh again.
    l2.set_failing(false);
    db.source.repair_table();
    mock.advance(Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(flag) = cache.get(&f).await {
            assert_eq!(flag.definition.version, 3);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {:?}",
            cache.tiered_stats()
        );
        mock.advance(Duration::from_secs(3));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_now_never_waits_and_fills_in_the_background() {
    let l2 = MemoryStore::new();
    let db = Db::new("get-now");
    db.source.upsert(&def("f", 1)).unwrap();
    let cache = TieredCache::builder()
        .l2(l2.clone())
        .source(db.source.clone())
        .l2_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let f = FlagId::new("f");
    l2.set_hanging(true);
    for _ in 0..1000 {
        let started = Instant::now();
        assert!(cache.get_now(&f).is_none());
        assert!(
            started.elapsed() < Duration::from_millis(20),
            "get_now waited"
        );
    }
    // One background load for the whole burst: it times out on the hung L2, then reads SQLite.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.get_now(&f).is_none() {
        assert!(
            Instant::now() < deadline,
            "the background fill never landed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        db.source.queries(),
        1,
        "one background load for 1000 misses"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_loads_the_whole_set_into_l1() {
    let db = Db::new("warm-up");
    let flags: HashMap<String, u64> = (0..50).map(|i| (format!("w{i}"), i as u64 + 1)).collect();
    for (id, version) in &flags {
        db.source.upsert(&def(id, *version)).unwrap();
    }
    let cache = TieredCache::builder()
        .source(db.source.clone())
        .build()
        .unwrap();
    assert_eq!(cache.warm_up().await.unwrap(), 50);
    let queries = db.source.queries();
    for (id, version) in &flags {
        let got = cache.get(&FlagId::new(id)).await.unwrap();
        assert_eq!(got.definition.version, *version);
    }
    assert_eq!(db.source.queries(), queries, "every read served by L1");

    let without = TieredCache::builder().build().unwrap();
    assert!(without.warm_up().await.unwrap_err().is_config());
}

#[test]
fn get_now_from_a_thread_outside_the_runtime_still_loads_in_the_background() {
    // Evaluators are often plain OS threads: the cache remembers the runtime it was built in.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let db = Db::new("outside-runtime");
    db.source.upsert(&def("f", 1)).unwrap();
    let cache = {
        let _entered = runtime.enter();
        TieredCache::builder()
            .source(db.source.clone())
            .build()
            .unwrap()
    };
    let f = FlagId::new("f");
    let from_plain_thread = {
        let cache = cache.clone();
        std::thread::spawn(move || {
            assert!(tokio::runtime::Handle::try_current().is_err());
            assert!(cache.get_now(&f).is_none(), "a miss at first");
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(version) = cache.get_with("f", |d| d.version) {
                    return version;
                }
                assert!(
                    Instant::now() < deadline,
                    "the background load never landed"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    assert_eq!(from_plain_thread.join().unwrap(), 1);
    assert_eq!(db.source.queries(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_ahead_keeps_a_hot_flag_fresh_across_ttls_and_lets_cold_ones_expire() {
    let l2 = MemoryStore::new();
    let db = Db::new("refresh");
    for id in ["hot", "cold"] {
        db.source.upsert(&def(id, 1)).unwrap();
    }
    let mock = MockClock::new();
    let cache = TieredCache::builder()
        .l2(l2.clone())
        .source(db.source.clone())
        .clock(Clock::mock(&mock))
        .l1_ttl(Duration::from_secs(10))
        .refresh_window(Duration::from_secs(3))
        .max_stale(Duration::ZERO)
        .build()
        .unwrap();
    for id in ["hot", "cold"] {
        assert!(cache.get(&FlagId::new(id)).await.is_some());
    }
    // Another instance publishes version 2 of the hot flag to L2 halfway through.
    let other = l2.clone();

    // Five TTLs in steps of 2 s, a refresh pass each step, as the refresh task would run.
    for step in 1..=25 {
        let version = cache
            .get_with("hot", |d| d.version)
            .unwrap_or_else(|| panic!("the hot flag missed at step {step}"));
        assert!(version >= 1);
        if step == 12 {
            let hot = [(FlagId::new("hot"), def("hot", 2))];
            other
                .set_many(&hot, Duration::from_secs(600))
                .await
                .unwrap();
        }
        mock.advance(Duration::from_secs(2));
        cache.refresh_ahead().await;
    }
    let stats = cache.tiered_stats();
    assert_eq!(stats.stale_serves, 0, "never served stale: {stats:?}");
    assert_eq!(stats.misses, 0, "never missed: {stats:?}");
    // Written at 0 s with a 10 s TTL and a 3 s window, seen every 2 s: refreshed at 8 s, 16 s,
    // 24 s, ... (six times in 50 s).
    assert_eq!(stats.refreshes, 6, "{stats:?}");
    assert_eq!(db.source.queries(), 2, "refreshes came from L2: {stats:?}");
    assert_eq!(
        cache.get_with("hot", |d| d.version),
        Some(2),
        "the change arrived by refresh"
    );
    // Never read after its load: left to expire.
    assert!(cache.l1().get_now("cold").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_task_runs_and_stops_with_the_cache() {
    let db = Db::new("refresh-task");
    db.source.upsert(&def("f", 1)).unwrap();
    let cache = TieredCache::builder()
        .source(db.source.clone())
        .l1_ttl(Duration::from_millis(400))
        .refresh_window(Duration::from_millis(300))
        .max_stale(Duration::ZERO)
        .build()
        .unwrap();
    let task = cache.start_refresh_task(Duration::from_millis(50)).unwrap();
    assert!(cache.get(&FlagId::new("f")).await.is_some());
    for _ in 0..30 {
        assert!(
            cache.get_with("f", |_| ()).is_some(),
            "refreshed before it expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cache.tiered_stats().refreshes >= 2);
    assert!(cache.start_refresh_task(Duration::ZERO).is_err());
    drop(cache);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(task.is_finished(), "the task ends once the cache is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_l2_costs_reads_and_writes_at_most_the_l2_timeout() {
    let l2 = MemoryStore::new();
    let db = Db::new("hanging-l2");
    db.source.upsert(&def("f", 1)).unwrap();
    let cache = TieredCache::builder()
        .l2(l2.clone())
        .source(db.source.clone())
        .l2_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    l2.set_hanging(true);
    let f = FlagId::new("f");
    let started = Instant::now();
    // The read gives up on L2 and asks the source; the write fails with a timeout, L1 written.
    assert_eq!(cache.get(&f).await.unwrap().definition.version, 1);
    let e = cache.try_set(&f, def("f", 2), None).await.unwrap_err();
    assert_eq!(e.kind(), flagcache::ErrorKind::Timeout, "{e}");
    assert_eq!(cache.l1().get_now("f").unwrap().definition.version, 2);
    assert!(cache.try_invalidate(&f).await.is_err());
    assert!(
        cache.l1().get_now("f").is_none(),
        "L1 invalidated all the same"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Back: served through L2 again.
    l2.set_hanging(false);
    cache.try_set(&f, def("f", 3), None).await.unwrap();
    assert_eq!(stored(&l2, &f).await, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_get_with_counts_one_miss_per_layer() {
    let db = Db::new("probe-once");
    let cache = TieredCache::builder()
        .source(db.source.clone())
        .build()
        .unwrap();
    assert_eq!(cache.get_with("absent", |d| d.version), None);
    // Let the background load finish: it must not probe L1 again as a counted read.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.tiered_stats().background_loads > 0 || db.source.queries() == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = cache.tiered_stats();
    assert_eq!((stats.l1.misses, stats.l1.hits), (1, 0), "{stats:?}");
    assert_eq!(stats.misses, 1);
    // And a known-absent flag: again one each.
    assert_eq!(cache.get_with("absent", |d| d.version), None);
    let stats = cache.tiered_stats();
    assert_eq!(
        (stats.l1.misses, stats.misses, stats.negative_hits),
        (2, 2, 1)
    );
}
