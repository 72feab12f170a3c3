//! Refilling an emptied Redis: a `redis-server` without persistence is killed and restarted
//! under a fleet of 4 instances. One of them (the holder of a lease) puts the working set back
//! into L2 from the source, or from its L1 without a source; the others keep serving, and the
//! source is not stampeded (its queries are counted).

#![allow(clippy::disallowed_types)]

#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/sources.rs"]
mod sources;
#[path = "support/wait.rs"]
mod wait;

use flagcache::{BackplaneTask, FlagCache, FlagId, FlagSource, FlagStore, RedisCache, TieredCache};
use redis_server::RedisServer;
use sources::{Db, Gated, def};
use std::time::{Duration, Instant};

const FLAGS: usize = 300;
const INSTANCES: usize = 4;

struct Instance {
    cache: TieredCache,
    _backplane: BackplaneTask,
}

async fn fleet(redis: &RedisServer, source: Option<&sources::SqliteSource>) -> Vec<Instance> {
    let mut fleet = Vec::new();
    for _ in 0..INSTANCES {
        let l2 = l2(redis);
        let builder = TieredCache::builder()
            .l2(l2)
            .l1_ttl(Duration::from_secs(600))
            .l2_timeout(Duration::from_millis(300));
        let cache = match source {
            Some(s) => builder.source(s.clone()),
            None => builder,
        }
        .build()
        .unwrap();
        let backplane = cache.start_backplane().unwrap();
        wait::wait_for("the subscription", || {
            cache.tiered_stats().backplane_subscribed
        })
        .await;
        fleet.push(Instance {
            cache,
            _backplane: backplane,
        });
    }
    fleet
}

/// The fleet's L2 on `redis`.
fn l2(redis: &RedisServer) -> RedisCache {
    RedisCache::builder(&redis.url())
        .prefix("refill")
        .build()
        .unwrap()
}

fn ids() -> Vec<FlagId> {
    (0..FLAGS).map(|i| FlagId::new(format!("f{i}"))).collect()
}

/// Flags of `ids` stored in `redis` under the fleet's prefix.
async fn stored(redis: &RedisServer) -> usize {
    FlagStore::get_many(&l2(redis), &ids())
        .await
        .map_or(0, |found| found.len())
}

/// Kills and restarts `redis` (empty: no persistence), then waits for every instance to be
/// subscribed again and for L2 to hold every flag once more; returns how long that took.
async fn restart_empty(redis: &mut RedisServer, fleet: &[Instance]) -> Duration {
    let subscriptions: Vec<u64> = fleet
        .iter()
        .map(|i| i.cache.tiered_stats().subscriptions)
        .collect();
    redis.kill();
    redis.restart();
    assert_eq!(stored(redis).await, 0, "restarted empty");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(15);
    for (i, before) in fleet.iter().zip(subscriptions) {
        while i.cache.tiered_stats().subscriptions == before {
            assert!(
                Instant::now() < deadline,
                "an instance did not subscribe again"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    while stored(redis).await < FLAGS {
        assert!(
            Instant::now() < deadline,
            "L2 holds {} of {FLAGS} flags",
            stored(redis).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_redis_is_refilled_from_the_source_by_one_instance() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let db = Db::new("refill-source");
    for i in 0..FLAGS {
        db.source.upsert(&def(&format!("f{i}"), 1)).unwrap();
    }
    let fleet = fleet(&redis, Some(&db.source)).await;
    for i in &fleet {
        assert_eq!(i.cache.warm_up().await.unwrap(), FLAGS);
        assert_eq!(i.cache.get_many_flags(&ids()).await.len(), FLAGS);
    }
    let queries = db.source.queries();
    let refills = |fleet: &[Instance]| -> u64 {
        fleet
            .iter()
            .map(|i| i.cache.tiered_stats().l2_refills)
            .sum()
    };
    // The first instance found a new Redis without a sentinel, and filled it.
    let before = refills(&fleet);
    assert_eq!(before, 1);
    let took = restart_empty(&mut redis, &fleet).await;
    // Every L1 revalidated after its subscription came back, through the refilled L2.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = db.source.queries() - queries;
    let refilled = refills(&fleet) - before;
    eprintln!("L2 refilled in {took:?}; source queries meanwhile: {asked}; refills: {refilled}");
    assert_eq!(refilled, 1, "one instance refilled L2");
    assert!(
        asked <= 2,
        "{asked} source queries: the fleet stampeded the database"
    );
    for i in &fleet {
        assert_eq!(
            i.cache.get_with("f7", |d| d.version),
            Some(1),
            "still serving"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_source_an_emptied_redis_is_refilled_from_l1() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let fleet = fleet(&redis, None).await;
    let defs: Vec<_> = ids()
        .into_iter()
        .map(|id| {
            let d = def(id.as_str(), 1);
            (id, d)
        })
        .collect();
    fleet[0].cache.try_set_many(defs, None).await.unwrap();
    restart_empty(&mut redis, &fleet).await;
    let refills: u64 = fleet
        .iter()
        .map(|i| i.cache.tiered_stats().l2_refills)
        .sum();
    assert_eq!(refills, 1);
}

/// An instance of the fleet without a source, its sentinel checked every `sentinel`.
fn sourceless(redis: &RedisServer, sentinel: Duration) -> TieredCache {
    TieredCache::builder()
        .l2(l2(redis))
        .l1_ttl(Duration::from_secs(600))
        .l2_timeout(Duration::from_millis(300))
        .bulk_timeout(Duration::from_millis(800))
        .sentinel_interval(sentinel)
        .build()
        .unwrap()
}

async fn l2_version(redis: &RedisServer, id: &str) -> Option<u64> {
    let id = FlagId::new(id);
    let found = FlagStore::get_many(&l2(redis), std::slice::from_ref(&id))
        .await
        .unwrap();
    found.get(&id).map(|f| f.definition.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_source_the_highest_version_an_instance_held_is_what_l2_gets_back() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let b = sourceless(&redis, Duration::from_millis(300));
    let _b_backplane = b.start_backplane().unwrap();
    wait::wait_for("B's subscription", || b.tiered_stats().backplane_subscribed).await;
    let f = FlagId::new("f");
    b.try_set(&f, def("f", 1), None).await.unwrap();
    // A read v1 and is not subscribed: it misses B's v2.
    let a = sourceless(&redis, Duration::from_millis(300));
    assert_eq!(
        flagcache::FlagCache::get(&a, &f)
            .await
            .unwrap()
            .definition
            .version,
        1
    );
    b.try_set(&f, def("f", 2), None).await.unwrap();
    // Redis loses its content; A, subscribing now, puts its L1 back first.
    redis.command(&["FLUSHALL"]);
    let _a_backplane = a.start_backplane().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while l2_version(&redis, "f").await != Some(2) {
        assert!(
            Instant::now() < deadline,
            "L2 holds {:?}, not the fleet's v2",
            l2_version(&redis, "f").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_source_an_l2_that_cannot_be_refilled_is_not_used_to_revalidate() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let a = sourceless(&redis, Duration::from_secs(5));
    let _backplane = a.start_backplane().unwrap();
    wait::wait_for("the subscription", || a.tiered_stats().backplane_subscribed).await;
    for i in 0..20 {
        let id = format!("g{i}");
        a.try_set(&FlagId::new(&id), def(&id, 1), None)
            .await
            .unwrap();
    }
    // Redis comes back empty and refuses writes for a while (as a node just failed over to,
    // waiting for its replica), longer than the refill tries.
    let subscriptions = a.tiered_stats().subscriptions;
    redis.kill();
    redis.restart();
    redis.command(&["CONFIG", "SET", "min-replicas-to-write", "1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.tiered_stats().subscriptions == subscriptions {
        assert!(Instant::now() < deadline, "not subscribed again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    redis.command(&["CONFIG", "SET", "min-replicas-to-write", "0"]);
    let kept = (0..20)
        .filter(|i| a.get_with(&format!("g{i}"), |d| d.version).is_some())
        .count();
    assert_eq!(kept, 20, "L1 dropped what an empty L2 lacked");
}

/// An instance whose deletions leave tombstones for 300 ms.
fn short_tombstones(redis: &RedisServer, source: impl FlagSource) -> TieredCache {
    TieredCache::builder()
        .l2(l2(redis))
        .source(source)
        .tombstone_ttl(Duration::from_millis(300))
        .bulk_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A refill's `SET NX` fill is refused by a deletion's tombstone only while it lives: a
/// deletion made while the refill read the source, whose tombstone expired before the fill,
/// must not be undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refill_does_not_put_back_a_flag_deleted_while_it_read_the_source() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let db = Db::new("refill-deleted");
    db.source.upsert(&def("x", 1)).unwrap();
    db.source.upsert(&def("y", 1)).unwrap();
    // A fresh Redis has no sentinel: A's backplane maintenance refills L2 from load_all, which
    // reads x v1 and is held.
    let gated = Gated::new(db.source.clone()).holding_load_all();
    let a = short_tombstones(&redis, gated.clone());
    let _backplane = a.start_backplane().unwrap();
    gated.load_started().await;
    // Meanwhile x is deleted in the source and through another instance (what the feed
    // follower does: try_invalidate -> tombstone).
    db.source.delete("x").unwrap();
    let b = short_tombstones(&redis, db.source.clone());
    b.try_invalidate(&FlagId::new("x")).await.unwrap();
    assert_eq!(l2_version(&redis, "x").await, None);
    // The refill is slow (a large set, a slow database): longer than tombstone_ttl.
    tokio::time::sleep(Duration::from_millis(600)).await;
    gated.open();
    wait::wait_for("the refill", || a.tiered_stats().l2_refills == 1).await;
    // A fresh instance reads x: the source deleted it, and so must L2 have.
    let c = short_tombstones(&redis, db.source.clone());
    let got = c.get(&FlagId::new("x")).await.map(|f| f.definition.version);
    assert_eq!(
        l2_version(&redis, "x").await,
        None,
        "refill put a deleted flag back into L2"
    );
    assert_eq!(
        got, None,
        "a fresh instance serves a flag the source deleted"
    );
}
