//! `TieredCache` on real parts: a private `redis-server` (L2) and a SQLite database (L3).
//! Single-flight, batches, negative caching, no resurrection, fail-safe serving, the
//! never-waiting read, warm-up.

#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "../examples/common/sqlite_source.rs"]
mod sqlite_source;

use flagcache::{
    Clock, FlagCache, FlagDefinition, FlagId, FlagSource, MockClock, RedisCache, TieredCache,
};
use redis_server::{RedisServer, Reply};
use sqlite_source::SqliteSource;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

fn def(id: &str, version: u64) -> FlagDefinition {
    let mut d = FlagDefinition::new_boolean(id, "A flag", true).unwrap();
    d.version = version;
    d
}

/// A fresh SQLite database in a directory of its own, removed when the test ends.
struct Db {
    source: SqliteSource,
    dir: PathBuf,
}

impl Db {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flagcache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let source = SqliteSource::open(&dir.join("flags.db")).unwrap();
        Self { source, dir }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn l2(server: &RedisServer, prefix: &str) -> RedisCache {
    RedisCache::builder(&server.url())
        .prefix(prefix)
        .response_timeout(Duration::from_millis(50))
        .build()
        .unwrap()
}

/// Calls of `command` the server counted (`INFO commandstats`).
fn server_calls(server: &RedisServer, command: &str) -> u64 {
    let Reply::Bulk(Some(info)) = server.command(&["INFO", "commandstats"]) else {
        panic!("INFO failed")
    };
    let needle = format!("cmdstat_{command}:calls=");
    String::from_utf8(info)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&needle)
                .map(|r| r.split(',').next().unwrap().parse().unwrap())
        })
        .unwrap_or(0)
}

/// A source whose loads wait for a permit after querying: a slow database, held in the middle
/// of a load for as long as a test needs.
#[derive(Clone)]
struct Gated {
    inner: SqliteSource,
    permits: Arc<Semaphore>,
    started: Arc<Semaphore>,
}

impl Gated {
    fn new(inner: SqliteSource) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(0)),
            started: Arc::new(Semaphore::new(0)),
        }
    }

    /// Waits until a load has queried the database and is held.
    async fn load_started(&self) {
        self.started.acquire().await.unwrap().forget();
    }

    fn release(&self, loads: usize) {
        self.permits.add_permits(loads);
    }
}

impl FlagSource for Gated {
    async fn load(&self, id: &FlagId) -> flagcache::Result<Option<FlagDefinition>> {
        let found = self.inner.load(id).await;
        self.started.add_permits(1);
        self.permits.acquire().await.unwrap().forget();
        found
    }

    async fn load_all(&self) -> flagcache::Result<Vec<FlagDefinition>> {
        self.inner.load_all().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_flag_cost_one_l2_read_and_one_l3_load() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let db = Db::new("single-flight");
    db.source.upsert(&def("hot", 4)).unwrap();
    let gated = Gated::new(db.source.clone());
    let cache = Arc::new(
        TieredCache::builder()
            .redis(l2(&server, "sf"))
            .source(gated.clone())
            .build()
            .unwrap(),
    );
    let id = FlagId::new("hot");

    let readers: Vec<_> = (0..100)
        .map(|_| {
            let cache = Arc::clone(&cache);
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
    let l2_stats = stats.l2.unwrap();
    assert_eq!(
        l2_stats.hits + l2_stats.misses,
        1,
        "one L2 read: {l2_stats:?}"
    );
    assert_eq!(
        server_calls(&server, "mget"),
        1,
        "one MGET (a batch of one)"
    );
    assert_eq!(stats.coalesced_waits, 99);
    // Filled on the way back: L2 holds it, L1 serves it.
    assert!(cache.l1().get_now("hot").is_some());
    assert!(matches!(
        server.command(&["EXISTS", "sf:flag:hot"]),
        Reply::Integer(1)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_is_one_l1_pass_one_mget_and_one_load_many() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let db = Db::new("get-many");
    let ids: Vec<FlagId> = (0..100).map(|i| FlagId::new(format!("f{i:03}"))).collect();
    for id in &ids {
        db.source.upsert(&def(id.as_str(), 1)).unwrap();
    }
    let redis = l2(&server, "gm");
    // A third in L2 already, a third in L1 already, a third only in SQLite.
    let in_l2: Vec<_> = ids[..33]
        .iter()
        .map(|id| (id.clone(), def(id.as_str(), 1)))
        .collect();
    redis.try_set_many(&in_l2, None).await.unwrap();
    let cache = TieredCache::builder()
        .redis(redis)
        .source(db.source.clone())
        .build()
        .unwrap();
    for id in &ids[33..66] {
        cache.l1().try_set(id, def(id.as_str(), 1), None).unwrap();
    }
    server.command(&["CONFIG", "RESETSTAT"]);

    let got = cache.get_many(&ids).await;
    assert_eq!(got.len(), 100);
    assert_eq!(server_calls(&server, "mget"), 1);
    assert_eq!(server_calls(&server, "get"), 0);
    assert_eq!(
        server_calls(&server, "set"),
        34,
        "the write-back of what only L3 had"
    );
    assert_eq!(db.source.queries(), 1, "one load_many");
    let stats = cache.tiered_stats();
    assert_eq!((stats.l2_fills, stats.l3_fills), (33, 34));
    // Everything is in L1 now; a second batch touches nothing below it.
    let again = cache.get_many(&ids).await;
    assert_eq!(again.len(), 100);
    assert_eq!(server_calls(&server, "mget"), 1);
    assert_eq!(db.source.queries(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_flags_are_remembered_for_the_negative_ttl() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let db = Db::new("negative");
    let mock = MockClock::new();
    let cache = TieredCache::builder()
        .redis(l2(&server, "neg"))
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
    assert_eq!(cache.l2::<RedisCache>().unwrap().redis_stats().misses, 1);
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
    let cache = Arc::new(
        TieredCache::builder()
            .source(gated.clone())
            .build()
            .unwrap(),
    );
    let id = FlagId::new("f");

    let leader = {
        let (cache, id) = (Arc::clone(&cache), id.clone());
        tokio::spawn(async move { cache.get(&id).await })
    };
    gated.load_started().await;
    let follower = {
        let (cache, id) = (Arc::clone(&cache), id.clone());
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
    let Some(server) = RedisServer::start() else {
        return;
    };
    let db = Db::new("resurrection");
    db.source.upsert(&def("f", 1)).unwrap();
    db.source.upsert(&def("g", 1)).unwrap();
    let gated = Gated::new(db.source.clone());
    let cache = Arc::new(
        TieredCache::builder()
            .redis(l2(&server, "res"))
            .source(gated.clone())
            .build()
            .unwrap(),
    );

    // A newer version written while a load of version 1 is held.
    let f = FlagId::new("f");
    let reader = {
        let (cache, f) = (Arc::clone(&cache), f.clone());
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
    let stored = cache
        .l2::<RedisCache>()
        .unwrap()
        .try_get(&f)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.definition.version, 2, "L2 kept the write");
    assert_eq!(cache.get(&f).await.unwrap().definition.version, 2);

    // A delete and invalidate while a load of the old definition is held.
    let g = FlagId::new("g");
    let reader = {
        let (cache, g) = (Arc::clone(&cache), g.clone());
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
    assert!(
        cache
            .l2::<RedisCache>()
            .unwrap()
            .try_get(&g)
            .await
            .unwrap()
            .is_none(),
        "nor in L2"
    );
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
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let db = Db::new("fail-safe");
    db.source.upsert(&def("f", 3)).unwrap();
    let mock = MockClock::new();
    let cache = TieredCache::builder()
        .redis(l2(&server, "fs"))
        .source(db.source.clone())
        .clock(Clock::mock(&mock))
        .l1_ttl(Duration::from_secs(1))
        .max_stale(Duration::from_secs(10))
        .retry_after(Duration::from_secs(2))
        .build()
        .unwrap();
    let f = FlagId::new("f");
    assert_eq!(cache.get(&f).await.unwrap().definition.version, 3);

    server.kill();
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
    server.restart();
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
    let Some(server) = RedisServer::start() else {
        return;
    };
    let db = Db::new("get-now");
    db.source.upsert(&def("f", 1)).unwrap();
    let cache = Arc::new(
        TieredCache::builder()
            .redis(l2(&server, "now"))
            .source(db.source.clone())
            .build()
            .unwrap(),
    );
    let f = FlagId::new("f");
    server.pause(Duration::from_millis(500));
    for _ in 0..1000 {
        let started = Instant::now();
        assert!(cache.get_now(&f).is_none());
        assert!(
            started.elapsed() < Duration::from_millis(20),
            "get_now waited"
        );
    }
    // One background load for the whole burst: it times out on L2, then reads SQLite.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_source_warm_up_loads_from_l2() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let redis = RedisCache::builder(&server.url())
        .prefix("warm")
        .scan_batch(7) // several SCAN batches
        .build()
        .unwrap();
    let flags: Vec<_> = (0..30)
        .map(|i| {
            let id = format!("w{i}");
            (FlagId::new(&id), def(&id, i + 1))
        })
        .collect();
    redis.try_set_many(&flags, None).await.unwrap();
    server.command(&["SET", "warm:flag:junk", "not json"]);
    server.command(&["SET", "other:flag:w99", "x"]);
    let cache = TieredCache::builder().redis(redis).build().unwrap();
    assert_eq!(
        cache.warm_up().await.unwrap(),
        30,
        "the corrupt one and the other prefix left out"
    );
    for (id, d) in &flags {
        assert_eq!(
            cache.l1().get_now(id.as_str()).unwrap().definition.version,
            d.version
        );
    }
}

#[tokio::test]
async fn a_bad_redis_url_is_an_error_not_a_missing_l2() {
    let err = TieredCache::new(
        100,
        Duration::from_secs(1),
        Some("not a url"),
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(err.is_config(), "{err}");
    let err = TieredCache::builder()
        .l1_ttl(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(err.is_config(), "{err}");
    let l1_only =
        TieredCache::new(100, Duration::from_secs(1), None, Duration::from_secs(1)).unwrap();
    let id = FlagId::new("f");
    l1_only.set(&id, def("f", 1), None).await;
    assert!(l1_only.get(&id).await.is_some());
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
        Arc::new(
            TieredCache::builder()
                .source(db.source.clone())
                .build()
                .unwrap(),
        )
    };
    let f = FlagId::new("f");
    let from_plain_thread = {
        let cache = Arc::clone(&cache);
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
    let Some(server) = RedisServer::start() else {
        return;
    };
    let db = Db::new("refresh");
    for id in ["hot", "cold"] {
        db.source.upsert(&def(id, 1)).unwrap();
    }
    let mock = MockClock::new();
    let cache = TieredCache::builder()
        .redis(l2(&server, "ra"))
        .source(db.source.clone())
        .clock(Clock::mock(&mock))
        .l1_ttl(Duration::from_secs(10))
        .refresh_window(Duration::from_secs(3))
        .max_stale(Duration::ZERO)
        .build()
        .unwrap();
    let cache = Arc::new(cache);
    for id in ["hot", "cold"] {
        assert!(cache.get(&FlagId::new(id)).await.is_some());
    }
    // Another instance publishes version 2 of the hot flag to L2 halfway through.
    let other = l2(&server, "ra");

    // Five TTLs in steps of 2 s, a refresh pass each step, as the refresh task would run.
    for step in 1..=25 {
        let version = cache
            .get_with("hot", |d| d.version)
            .unwrap_or_else(|| panic!("the hot flag missed at step {step}"));
        assert!(version >= 1);
        if step == 12 {
            other
                .try_set(&FlagId::new("hot"), &def("hot", 2), None)
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
    let cache = Arc::new(
        TieredCache::builder()
            .source(db.source.clone())
            .l1_ttl(Duration::from_millis(400))
            .refresh_window(Duration::from_millis(300))
            .max_stale(Duration::ZERO)
            .build()
            .unwrap(),
    );
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

/// Two instances of one service: same Redis prefix, same source.
fn instance(server: &RedisServer, db: &Db) -> Arc<TieredCache> {
    Arc::new(
        TieredCache::builder()
            .redis(l2(server, "fleet"))
            .source(db.source.clone())
            .l1_ttl(Duration::from_secs(600))
            .build()
            .unwrap(),
    )
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_instance_reaches_the_others_l1() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let db = Db::new("backplane");
    db.source.upsert(&def("f", 1)).unwrap();
    let (a, b) = (instance(&server, &db), instance(&server, &db));
    let _tasks = (a.start_backplane().unwrap(), b.start_backplane().unwrap());
    wait_for("both subscriptions", || {
        a.tiered_stats().subscriptions == 1 && b.tiered_stats().subscriptions == 1
    })
    .await;
    let f = FlagId::new("f");
    for cache in [&a, &b] {
        assert_eq!(cache.get(&f).await.unwrap().definition.version, 1);
    }

    db.source.upsert(&def("f", 2)).unwrap();
    let written = Instant::now();
    a.try_set(&f, def("f", 2), None).await.unwrap();
    let delay = wait_for("B to drop its copy", || b.l1().get_now("f").is_none()).await;
    let since_write = written.elapsed();
    println!("write on A to B's L1: {since_write:?} ({delay:?} after set returned)");
    assert!(
        since_write < Duration::from_millis(500),
        "took {since_write:?}"
    );
    assert_eq!(
        b.get(&f).await.unwrap().definition.version,
        2,
        "B loads the new version"
    );

    // A ignores its own notice: its fresh copy stays.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(a.l1().get_now("f").unwrap().definition.version, 2);
    assert_eq!(a.tiered_stats().notices_received, 0);
    assert_eq!(a.tiered_stats().notices_sent, 1);

    a.try_invalidate(&f).await.unwrap();
    wait_for("B to drop the invalidated flag", || {
        b.l1().get_now("f").is_none()
    })
    .await;

    // Garbage on the channel is counted and ignored.
    server.command(&["PUBLISH", "fleet:flagcache:v1:events", "not a notice"]);
    wait_for("the bad notice to be counted", || {
        b.tiered_stats().notices_bad == 1
    })
    .await;
    assert_eq!(
        b.get(&f).await.unwrap().definition.version,
        2,
        "still serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscription_comes_back_and_revalidates_l1() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let db = Db::new("revalidate");
    db.source.upsert(&def("f", 1)).unwrap();
    let (a, b) = (instance(&server, &db), instance(&server, &db));
    let _task = b.start_backplane().unwrap();
    wait_for("B's subscription", || b.tiered_stats().subscriptions == 1).await;
    let f = FlagId::new("f");
    assert_eq!(b.get(&f).await.unwrap().definition.version, 1);

    // A change B cannot hear about: written to L2 directly, no notice.
    a.l2::<RedisCache>()
        .unwrap()
        .try_set(&f, &def("f", 5), None)
        .await
        .unwrap();
    assert_eq!(b.l1().get_now("f").unwrap().definition.version, 1);
    // Drop B's subscription: it subscribes again and revalidates every L1 entry.
    server.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    wait_for("B to revalidate", || {
        b.l1()
            .get_now("f")
            .is_some_and(|c| c.definition.version == 5)
    })
    .await;
    let stats = b.tiered_stats();
    assert!(
        stats.subscriptions >= 2 && stats.revalidations >= 1,
        "{stats:?}"
    );

    // Redis killed and restarted (empty): B subscribes again by itself, and notices flow.
    server.kill();
    server.restart();
    let before = stats.subscriptions;
    wait_for("B to subscribe after the restart", || {
        b.tiered_stats().subscriptions > before
    })
    .await;
    db.source.upsert(&def("f", 6)).unwrap();
    // A's first call after the restart may find its old connection broken (and re-make it).
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(e) = a.try_set(&f, def("f", 6), None).await {
        assert!(e.is_transient() && Instant::now() < deadline, "{e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for("B to drop its copy", || {
        b.l1()
            .get_now("f")
            .is_none_or(|c| c.definition.version == 6)
    })
    .await;
    assert_eq!(b.get(&f).await.unwrap().definition.version, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidate_leaves_a_tombstone_that_refuses_older_write_backs() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let db = Db::new("tombstone");
    db.source.upsert(&def("f", 1)).unwrap();
    let cache = TieredCache::builder()
        .redis(l2(&server, "tomb"))
        .source(db.source.clone())
        .tombstone_ttl(Duration::from_millis(300))
        .build()
        .unwrap();
    let f = FlagId::new("f");
    assert!(
        cache.get(&f).await.is_some(),
        "loaded, and written back to L2"
    );
    assert!(
        cache
            .l2::<RedisCache>()
            .unwrap()
            .try_get(&f)
            .await
            .unwrap()
            .is_some()
    );

    cache.try_invalidate(&f).await.unwrap();
    let Reply::Bulk(Some(stored)) = server.command(&["GET", "tomb:flag:f"]) else {
        panic!("no tombstone")
    };
    assert!(String::from_utf8_lossy(&stored).contains("invalidated"));
    // Read as absent, not as a corrupt value.
    assert!(
        cache
            .l2::<RedisCache>()
            .unwrap()
            .try_get(&f)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        cache
            .l2::<RedisCache>()
            .unwrap()
            .redis_stats()
            .decode_errors,
        0
    );

    // A load now reads L3 and fills L1, but its write-back finds the tombstone and stops.
    assert!(cache.get(&f).await.is_some());
    assert!(
        cache
            .l2::<RedisCache>()
            .unwrap()
            .try_get(&f)
            .await
            .unwrap()
            .is_none(),
        "the tombstone held"
    );

    // An explicit write replaces the tombstone.
    cache.try_set(&f, def("f", 2), None).await.unwrap();
    assert_eq!(
        cache
            .l2::<RedisCache>()
            .unwrap()
            .try_get(&f)
            .await
            .unwrap()
            .unwrap()
            .definition
            .version,
        2
    );

    // Once a tombstone expires, write-backs resume.
    cache.try_invalidate(&f).await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(cache.get(&f).await.is_some());
    assert!(
        cache
            .l2::<RedisCache>()
            .unwrap()
            .try_get(&f)
            .await
            .unwrap()
            .is_some(),
        "written back"
    );
}
