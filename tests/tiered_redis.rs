//! `TieredCache` over a real Redis: what only Redis shows. Batches as one `MGET`, the
//! backplane over real pub/sub (a killed subscription, a restarted server, a slow link through
//! a delay proxy), tombstones as stored keys, the version guard refusing batch writes, warm-up
//! by `SCAN`, bad URLs. Read-through logic is tested on a `MemoryStore` in `tiered.rs`.

#![cfg(feature = "redis")]

#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/sources.rs"]
mod sources;
#[path = "support/wait.rs"]
mod wait;

use flagcache::{FlagCache, FlagId, RedisCache, TieredCache};
use proxy::Proxy;
use redis_server::{RedisServer, Reply};
use sources::{Db, def};
use std::time::{Duration, Instant};
use wait::wait_for;

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
    // L1 keeps whole milliseconds: the tiered builder names its own setting.
    let err = TieredCache::builder()
        .l1_ttl(Duration::from_micros(500))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("l1_ttl"), "{err}");
    let l1_only =
        TieredCache::new(100, Duration::from_secs(1), None, Duration::from_secs(1)).unwrap();
    let id = FlagId::new("f");
    l1_only.set(&id, def("f", 1), None).await;
    assert!(l1_only.get(&id).await.is_some());
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

/// Two instances of one service: same Redis prefix, same source.
/// The version L2 (Redis) holds for `id`, read directly.
async fn in_l2(cache: &TieredCache, id: &FlagId) -> Option<u64> {
    let l2 = cache.l2::<RedisCache>().unwrap();
    let found = l2.try_get(id).await.unwrap();
    found.map(|f| f.definition.version)
}

fn instance(server: &RedisServer, db: &Db) -> TieredCache {
    TieredCache::builder()
        .redis(l2(server, "fleet"))
        .source(db.source.clone())
        .l1_ttl(Duration::from_secs(600))
        .build()
        .unwrap()
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
    let delay = wait_for("B to drop its copy", || {
        b.l1().get_now("f").map(|f| f.definition.version) != Some(1)
    })
    .await;
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

    // Cache-aside: the database changes, then A invalidates. B supersedes its copy and reloads
    // it (through L2's tombstone to the source) within `notice_spread`.
    db.source.upsert(&def("f", 3)).unwrap();
    a.try_invalidate(&f).await.unwrap();
    wait_for("B to serve the version after the invalidate", || {
        b.get_with("f", |d| d.version) == Some(3)
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
        3,
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
    assert!(in_l2(&cache, &f).await.is_some());

    cache.try_invalidate(&f).await.unwrap();
    let Reply::Bulk(Some(stored)) = server.command(&["GET", "tomb:flag:f"]) else {
        panic!("no tombstone")
    };
    assert!(String::from_utf8_lossy(&stored).contains("invalidated"));
    // Read as absent, not as a corrupt value.
    assert!(in_l2(&cache, &f).await.is_none());
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
    assert!(in_l2(&cache, &f).await.is_none(), "the tombstone held");

    // An explicit write replaces the tombstone.
    cache.try_set(&f, def("f", 2), None).await.unwrap();
    assert_eq!(in_l2(&cache, &f).await.unwrap(), 2);

    // Once a tombstone expires, write-backs resume.
    cache.try_invalidate(&f).await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(cache.get(&f).await.is_some());
    assert!(in_l2(&cache, &f).await.is_some(), "written back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backplane_subscribes_over_a_link_of_50_ms_round_trip() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let proxy = Proxy::start(([127, 0, 0, 1], server.port()).into());
    proxy.set_delay(Duration::from_millis(25));
    // B reaches Redis through the slow link, with the default 50 ms response timeout: its
    // requests time out, but the backplane has a timeout of its own.
    let b = TieredCache::builder()
        .redis(
            RedisCache::builder(&proxy.url())
                .prefix("slow")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let a = TieredCache::builder()
        .redis(l2(&server, "slow"))
        .build()
        .unwrap();
    let f = FlagId::new("f");
    b.l1().try_set(&f, def("f", 1), None).unwrap();
    let _task = b.start_backplane().unwrap();
    wait_for("B to subscribe through the slow link", || {
        b.tiered_stats().backplane_subscribed
    })
    .await;
    a.try_set(&f, def("f", 2), None).await.unwrap();
    wait_for("B to drop its copy", || b.l1().get_now("f").is_none()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whether_the_backplane_is_subscribed_is_in_the_stats() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let proxy = Proxy::start(([127, 0, 0, 1], server.port()).into());
    proxy.silence_all(true);
    let cache = TieredCache::builder()
        .redis(
            RedisCache::builder(&proxy.url())
                .prefix("gauge")
                .build()
                .unwrap(),
        )
        .backplane_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let _task = cache.start_backplane().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !cache.tiered_stats().backplane_subscribed,
        "nothing answers"
    );
    assert_eq!(cache.tiered_stats().subscriptions, 0);
    proxy.resume();
    wait_for("the subscription once the link answers", || {
        cache.tiered_stats().backplane_subscribed
    })
    .await;
    proxy.kill_connections();
    wait_for("the gauge to drop with the link", || {
        !cache.tiered_stats().backplane_subscribed || cache.tiered_stats().subscriptions >= 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_many_reports_what_the_version_guard_refused_and_neither_caches_nor_announces_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let db = Db::new("set-many-refused");
    let (a, b) = (instance(&server, &db), instance(&server, &db));
    let _task = b.start_backplane().unwrap();
    wait_for("B's subscription", || b.tiered_stats().backplane_subscribed).await;
    // Redis holds v5 of `x` (another writer); B holds v3 of `x` in L1.
    let x = FlagId::new("x");
    a.l2::<RedisCache>()
        .unwrap()
        .try_set(&x, &def("x", 5), None)
        .await
        .unwrap();
    a.l1().try_set(&x, def("x", 3), None).unwrap();
    b.l1().try_set(&x, def("x", 3), None).unwrap();

    let outcome = a
        .try_set_many(
            vec![(x.clone(), def("x", 4)), (FlagId::new("y"), def("y", 1))],
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome.refused, vec![x.clone()]);
    assert_eq!(outcome.stored, 1);
    assert!(
        a.l1().get_now("x").is_none(),
        "A's stale copy dropped, v4 not cached"
    );
    assert_eq!(
        a.get(&x).await.unwrap().definition.version,
        5,
        "reads the newer one"
    );
    assert_eq!(a.l1().get_now("y").unwrap().definition.version, 1);
    // The notice names y only: B keeps x (it did not change), and drops nothing for it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.l1().get_now("x").unwrap().definition.version, 3);
    assert_eq!(a.tiered_stats().notices_sent, 1);

    // try_set reports a refusal as StaleVersion.
    let e = a.try_set(&x, def("x", 2), None).await.unwrap_err();
    assert!(e.is_stale_version(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_gone_silent_is_noticed_and_made_again() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let proxy = Proxy::start(([127, 0, 0, 1], server.port()).into());
    let b = TieredCache::builder()
        .redis(
            RedisCache::builder(&proxy.url())
                .prefix("quiet")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let a = TieredCache::builder()
        .redis(l2(&server, "quiet"))
        .build()
        .unwrap();
    let _task = b.start_backplane().unwrap();
    wait_for("B's subscription", || b.tiered_stats().backplane_subscribed).await;
    // B's pub/sub link goes silent without closing: notices stop arriving.
    proxy.silence();
    let f = FlagId::new("f");
    b.l1().try_set(&f, def("f", 1), None).unwrap();
    // The subscriber's health check notices, and it subscribes again over a new connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.tiered_stats().subscriptions < 2 {
        assert!(Instant::now() < deadline, "{:?}", b.tiered_stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for("B subscribed again", || {
        b.tiered_stats().backplane_subscribed
    })
    .await;
    a.try_set(&f, def("f", 2), None).await.unwrap();
    wait_for("B to drop its copy", || b.l1().get_now("f").is_none()).await;
}

/// The backplane task (its reload and maintenance tasks, its pub/sub connection) ends once
/// the cache is dropped, even when no notice comes to wake it: its sentinel check sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backplane_task_ends_with_its_cache_on_a_quiet_redis_subscription() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let cache = TieredCache::builder()
        .l2(RedisCache::builder(&redis.url())
            .prefix("lifetime")
            .build()
            .unwrap())
        .sentinel_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let task = cache.start_backplane().unwrap();
    wait_for("the subscription", || {
        cache.tiered_stats().backplane_subscribed
    })
    .await;
    let subscribers =
        |r: &RedisServer| match r.command(&["PUBSUB", "NUMSUB", "lifetime:flagcache:v1:events"]) {
            Reply::Array(Some(items)) => match items.get(1) {
                Some(Reply::Integer(n)) => *n,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
    assert_eq!(subscribers(&redis), 1);
    drop(cache);
    wait_for("the task's end", || task.is_finished()).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while subscribers(&redis) != 0 {
        assert!(
            Instant::now() < deadline,
            "the subscription outlived its cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
