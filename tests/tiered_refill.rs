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

use flagcache::{BackplaneTask, FlagId, FlagStore, RedisCache, TieredCache};
use redis_server::RedisServer;
use sources::{Db, def};
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
        let l2 = RedisCache::builder(&redis.url())
            .prefix("refill")
            .build()
            .unwrap();
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

fn ids() -> Vec<FlagId> {
    (0..FLAGS).map(|i| FlagId::new(format!("f{i}"))).collect()
}

/// Flags of `ids` stored in `redis` under the fleet's prefix.
async fn stored(redis: &RedisServer) -> usize {
    let l2 = RedisCache::builder(&redis.url())
        .prefix("refill")
        .build()
        .unwrap();
    FlagStore::get_many(&l2, &ids())
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
