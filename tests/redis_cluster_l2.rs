//! `RedisCache` on a real local Redis Cluster that the tests start (see
//! `tests/support/redis_cluster.rs`): every operation with its single-node meaning, batches
//! served by each key's own primary, `clear` and `load_all` over every primary, the version
//! guard, the backplane on sharded pub/sub, and a primary's failover.

#![cfg(feature = "redis")]
#![allow(clippy::disallowed_types)] // test code: std's atomics are the right ones

#[path = "support/redis_cluster.rs"]
mod redis_cluster;
#[path = "support/sources.rs"]
mod sources;
#[path = "support/wait.rs"]
mod wait;

use flagcache::{ErrorKind, FlagCache, FlagDefinition, FlagId, RedisCache, TieredCache};
use redis_cluster::{RedisCluster, Reply};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use wait::wait_for;

const TIMEOUT: Duration = Duration::from_millis(200);
/// How soon service must be back after a primary dies or hangs, with the harness's 1 s
/// `cluster-node-timeout` (measured: 2.3-4.5 s, the promotion of a replica included).
const SERVICE_BACK_WITHIN: Duration = Duration::from_secs(10);

fn def(id: &str, version: u64) -> FlagDefinition {
    let mut d = FlagDefinition::new_boolean(id, "A flag", true).unwrap();
    d.version = version;
    d
}

fn ids(prefix: &str, n: usize) -> Vec<FlagId> {
    (0..n)
        .map(|i| FlagId::new(format!("{prefix}.feature_{i:04}")))
        .collect()
}

/// Stores `n` flags of `id_prefix` at version 1 through `l2` and returns their ids.
async fn stored(l2: &RedisCache, id_prefix: &str, n: usize) -> Vec<FlagId> {
    let many = ids(id_prefix, n);
    let flags: Vec<_> = many
        .iter()
        .map(|id| (id.clone(), def(id.as_str(), 1)))
        .collect();
    let outcome = l2.try_set_many(&flags, None).await.unwrap();
    assert_eq!(outcome.stored, n);
    many
}

/// A cache on `cluster` holding 300 flags, replicated before the test harms a primary (a
/// failover loses what its replica had not got), and the primary of the first flag.
async fn before_a_failover(cluster: &RedisCluster, prefix: &str) -> (RedisCache, Vec<FlagId>, u16) {
    let l2 = cache(cluster, prefix);
    let many = stored(&l2, prefix, 300).await;
    cluster.wait_replicated(Duration::from_secs(10));
    assert_eq!(l2.try_get_many(&many).await.unwrap().len(), 300);
    let victim = cluster.primary_of(&l2.key_of(&many[0]));
    (l2, many, victim)
}

fn cache(cluster: &RedisCluster, prefix: &str) -> RedisCache {
    RedisCache::cluster_builder(cluster.urls())
        .prefix(prefix)
        .response_timeout(TIMEOUT)
        .build()
        .unwrap()
}

/// A cache for the tests of where keys are read during slot moves: their promise is the
/// routing, not the latency, so a busy machine (the suite runs several clusters at once on
/// two cores) must not fail them by a round trip over `TIMEOUT`.
fn routing_cache(cluster: &RedisCluster, prefix: &str) -> RedisCache {
    RedisCache::cluster_builder(cluster.urls())
        .prefix(prefix)
        .response_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// A statistic of `INFO <section>` on the node at `port` (`cmdstat_get` → its `calls=`,
/// `errorstat_MOVED` → its `count=`); 0 when absent.
fn node_stat(cluster: &RedisCluster, port: u16, section: &str, name: &str) -> u64 {
    let Reply::Bulk(Some(info)) = cluster.command(port, &["INFO", section]) else {
        panic!("INFO {section} on {port}");
    };
    let info = String::from_utf8(info).unwrap();
    let needle = format!("{name}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |rest| {
            let value = rest.split(',').next().unwrap();
            value.split('=').nth(1).unwrap().parse().unwrap()
        })
}

fn reset_stats(cluster: &RedisCluster) {
    for port in cluster.primaries() {
        cluster.command(port, &["CONFIG", "RESETSTAT"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_keeps_its_meaning_on_a_cluster() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let l2 = cache(&cluster, "app");
    l2.try_ping().await.unwrap();

    // get / set / invalidate of one key.
    let one = FlagId::new("checkout.new-flow");
    assert!(l2.try_get(&one).await.unwrap().is_none());
    l2.try_set(&one, &def("checkout.new-flow", 1), None)
        .await
        .unwrap();
    assert_eq!(
        l2.try_get(&one).await.unwrap().unwrap().definition.version,
        1
    );
    // The version guard holds on a cluster.
    let refused = l2.try_set(&one, &def("checkout.new-flow", 0), None).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::StaleVersion);
    l2.try_invalidate(&one).await.unwrap();
    assert!(l2.try_get(&one).await.unwrap().is_none());

    // set_many and get_many of 1 000 ids spread over every primary.
    let many = ids("svc", 1000);
    let by_primary = many.iter().fold(HashMap::<u16, u64>::new(), |mut m, id| {
        *m.entry(cluster.primary_of(&l2.key_of(id))).or_default() += 1;
        m
    });
    assert_eq!(by_primary.len(), 3, "the ids cover every primary");
    let flags: Vec<(FlagId, FlagDefinition)> = many
        .iter()
        .map(|id| (id.clone(), def(id.as_str(), 2)))
        .collect();
    let outcome = l2.try_set_many(&flags, None).await.unwrap();
    assert_eq!(outcome.stored, 1000);
    assert!(outcome.refused.is_empty());
    // A lower version of some is refused, one by one, behind the guard.
    let lower: Vec<(FlagId, FlagDefinition)> = many[..10]
        .iter()
        .map(|id| (id.clone(), def(id.as_str(), 1)))
        .collect();
    let outcome = l2.try_set_many(&lower, None).await.unwrap();
    assert_eq!(outcome.refused.len(), 10);

    reset_stats(&cluster);
    let round_trips = l2.redis_stats().round_trips;
    let found = l2.try_get_many(&many).await.unwrap();
    assert_eq!(found.len(), 1000);
    assert!(found.values().all(|f| f.definition.version == 2));
    // Each key was read from its own primary, without a redirect, in one batch.
    for (&port, &owned) in &by_primary {
        assert_eq!(
            node_stat(&cluster, port, "commandstats", "cmdstat_get"),
            owned
        );
        assert_eq!(
            node_stat(&cluster, port, "errorstats", "errorstat_MOVED"),
            0
        );
    }
    assert_eq!(l2.redis_stats().round_trips - round_trips, 1);

    // A corrupt value is a counted miss; the rest of the batch is served.
    let corrupt_key = l2.key_of(&many[0]);
    cluster.command(
        cluster.primary_of(&corrupt_key),
        &["SET", &corrupt_key, "{oops"],
    );
    let decode_errors = l2.redis_stats().decode_errors;
    assert_eq!(l2.try_get_many(&many).await.unwrap().len(), 999);
    assert_eq!(l2.redis_stats().decode_errors, decode_errors + 1);
    // A write replaces the corrupt value whatever its version.
    l2.try_set(&many[0], &def(many[0].as_str(), 1), None)
        .await
        .unwrap();

    // load_all reads every primary.
    let all = l2.try_load_all().await.unwrap();
    assert_eq!(all.len(), 1000);

    // invalidate_many of ids on every primary.
    l2.try_invalidate_many(&many[..100]).await.unwrap();
    assert_eq!(l2.try_get_many(&many).await.unwrap().len(), 900);

    // clear of one prefix reaches every primary and leaves the other prefixes alone.
    let other = cache(&cluster, "other");
    let nested = cache(&cluster, "app:flag:x");
    let theirs = ids("theirs", 300);
    for l2 in [&other, &nested] {
        let flags: Vec<_> = theirs
            .iter()
            .map(|id| (id.clone(), def(id.as_str(), 1)))
            .collect();
        l2.try_set_many(&flags, None).await.unwrap();
    }
    assert_eq!(l2.try_clear().await.unwrap(), 900);
    assert!(l2.try_get_many(&many).await.unwrap().is_empty());
    assert_eq!(other.try_get_many(&theirs).await.unwrap().len(), 300);
    assert_eq!(nested.try_get_many(&theirs).await.unwrap().len(), 300);

    // The trait, as a user holds it.
    let f = FlagId::new("trait.flag");
    FlagCache::set(&l2, &f, def("trait.flag", 3), None).await;
    assert!(FlagCache::get(&l2, &f).await.is_some());
    FlagCache::set_many(&l2, vec![(f.clone(), def("trait.flag", 4))], None).await;
    assert_eq!(
        FlagCache::get_many(&l2, std::slice::from_ref(&f)).await[&f]
            .definition
            .version,
        4
    );
    FlagCache::invalidate_many(&l2, std::slice::from_ref(&f)).await;
    assert!(FlagCache::get(&l2, &f).await.is_none());
    FlagCache::set(&l2, &f, def("trait.flag", 5), None).await;
    FlagCache::invalidate(&l2, &f).await;
    assert!(FlagCache::get(&l2, &f).await.is_none());
    FlagCache::set(&l2, &f, def("trait.flag", 6), None).await;
    FlagCache::clear(&l2).await;
    assert!(FlagCache::get(&l2, &f).await.is_none());
    assert!(FlagCache::stats(&l2).await.hits > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backplane_carries_notices_between_instances_on_sharded_pub_sub() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let db = sources::Db::new("cluster-backplane");
    db.source.upsert(&sources::def("f", 1)).unwrap();
    let instance = || {
        TieredCache::builder()
            .l2(cache(&cluster, "fleet"))
            .source(db.source.clone())
            .l1_ttl(Duration::from_secs(600))
            .build()
            .unwrap()
    };
    let (a, b) = (instance(), instance());
    let _task = b.start_backplane().unwrap();
    wait_for("B's subscription", || b.tiered_stats().backplane_subscribed).await;

    let f = FlagId::new("f");
    assert_eq!(b.get(&f).await.unwrap().definition.version, 1);
    db.source.upsert(&sources::def("f", 2)).unwrap();
    a.try_set(&f, sources::def("f", 2), None).await.unwrap();
    wait_for("B to drop its copy", || {
        b.l1()
            .get_now("f")
            .is_none_or(|c| c.definition.version == 2)
    })
    .await;
    assert_eq!(b.tiered_stats().notices_received, 1);
    assert_eq!(b.get(&f).await.unwrap().definition.version, 2);

    // The notice went over the channel's shard only: sharded pub/sub.
    let channel = "{fleet}:flagcache:v1:events";
    let shard = cluster.primary_of(channel);
    let Reply::Array(Some(counts)) = cluster.command(shard, &["PUBSUB", "SHARDNUMSUB", channel])
    else {
        panic!("PUBSUB SHARDNUMSUB");
    };
    assert_eq!(counts[1], Reply::Integer(1), "B is subscribed on the shard");

    // A change B cannot hear about (written to L2 directly, no notice), then B's subscription
    // dropped: it subscribes again and revalidates L1.
    let unheard = |version| {
        let l2 = a.l2::<RedisCache>().unwrap();
        async move {
            l2.try_set(&FlagId::new("f"), &sources::def("f", version), None)
                .await
        }
    };
    unheard(3).await.unwrap();
    cluster.command(shard, &["CLIENT", "KILL", "TYPE", "pubsub"]);
    wait_for("B to revalidate after a dropped subscription", || {
        b.l1()
            .get_now("f")
            .is_some_and(|c| c.definition.version == 3)
    })
    .await;
    assert!(b.tiered_stats().revalidations >= 1);

    // The channel's slot moved to another primary: the server ends the sharded subscription,
    // and B subscribes again (on the new shard) and revalidates.
    wait_for("B's subscription", || b.tiered_stats().backplane_subscribed).await;
    let subscriptions = b.tiered_stats().subscriptions;
    unheard(4).await.unwrap();
    let target = *cluster.primaries().iter().find(|&&p| p != shard).unwrap();
    cluster.move_empty_slot(channel, target);
    wait_for("B to revalidate after the slot moved", || {
        b.l1()
            .get_now("f")
            .is_some_and(|c| c.definition.version == 4)
    })
    .await;
    assert!(b.tiered_stats().subscriptions > subscriptions);
    wait_for("B's subscription", || b.tiered_stats().backplane_subscribed).await;
    db.source.upsert(&sources::def("f", 5)).unwrap();
    a.try_set(&f, sources::def("f", 5), None).await.unwrap();
    wait_for("B to hear of a write on the new shard", || {
        b.l1()
            .get_now("f")
            .is_none_or(|c| c.definition.version == 5)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_costs_calls_at_most_their_timeout_and_service_comes_back() {
    let Some(mut cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    let (l2, many, victim) = before_a_failover(&cluster, "failover").await;
    cluster.kill(victim);
    let killed = Instant::now();
    let back = until_served(&l2, &many, "the primary died").await;
    eprintln!("failover: reads and writes served again after {back:?}");
    assert!(
        back >= Duration::from_millis(500),
        "the write was taken before a replica could be promoted: the kill did not take"
    );
    assert!(killed.elapsed() < SERVICE_BACK_WITHIN);
}

/// Reads all of `many` and writes the first of them, again and again, until both succeed;
/// asserts that no round of calls takes longer than the timeouts allow. Returns how long it
/// took.
async fn until_served(l2: &RedisCache, many: &[FlagId], what: &str) -> Duration {
    let since = Instant::now();
    let bound = (TIMEOUT + Duration::from_millis(300)) * 3;
    let mut version = 2;
    loop {
        let started = Instant::now();
        let read = l2.try_get_many(many).await;
        let single = l2.try_get(&many[0]).await;
        let write = l2
            .try_set(&many[0], &def(many[0].as_str(), version), None)
            .await;
        assert!(
            started.elapsed() <= bound,
            "three calls took {:?} after {what}",
            started.elapsed()
        );
        let read_all = matches!(&read, Ok(found) if found.len() == many.len());
        if read_all && matches!(single, Ok(Some(_))) && write.is_ok() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < SERVICE_BACK_WITHIN,
            "service not back {SERVICE_BACK_WITHIN:?} after {what}: {:?} / {single:?} / {write:?}",
            read.map(|found| found.len())
        );
        version += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_gone_silent_costs_calls_their_timeout_until_its_replica_takes_over() {
    let Some(cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    let (l2, many, victim) = before_a_failover(&cluster, "silent").await;
    // The primary stops answering with its connections open (SIGSTOP): no error reaches the
    // client, only silence, until the cluster fails it over (cluster-node-timeout 1 s).
    cluster.pause(victim);
    let back = until_served(&l2, &many, "the primary went silent").await;
    eprintln!("silent primary: service back after {back:?}");
    assert!(
        l2.redis_stats().timeouts > 0,
        "the silence was seen as timeouts"
    );
    cluster.resume(victim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_primary_is_left_behind_even_while_other_nodes_answer() {
    let Some(cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    let (l2, many, victim) = before_a_failover(&cluster, "hung").await;
    let healthy = many
        .iter()
        .find(|id| cluster.primary_of(&l2.key_of(id)) != victim)
        .unwrap();

    // Every call to the silent primary times out, and between two of them another node
    // answers: the connection as a whole is not silent, its view of the cluster is stale.
    cluster.pause(victim);
    let paused = Instant::now();
    let back = loop {
        let started = Instant::now();
        let on_victim = l2.try_get(&many[0]).await;
        // Answered, or refused while the cluster is down (until the replica is promoted).
        let other = l2.try_get(healthy).await;
        assert!(
            matches!(&other, Ok(Some(_))) || other.is_err_and(|e| e.is_transient()),
            "a healthy node's key"
        );
        assert!(started.elapsed() <= (TIMEOUT + Duration::from_millis(300)) * 2);
        if matches!(on_victim, Ok(Some(_))) {
            break paused.elapsed();
        }
        assert!(
            paused.elapsed() < SERVICE_BACK_WITHIN,
            "the silent primary's keys never came back while other nodes answered: {on_victim:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("silent primary among answering ones: served again after {back:?}");
    cluster.resume(victim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_whose_slot_map_went_stale_recovers_even_when_its_batches_time_out() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let writer = RedisCache::cluster_builder(cluster.urls())
        .prefix("big")
        .response_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Tight for 5 000 ids: a batch that falls back key by key does not fit.
    let reader = RedisCache::cluster_builder(cluster.urls())
        .prefix("big")
        .response_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let many = ids("b", 5000);
    reader.try_get_many(&many[..10]).await.unwrap(); // the reader's map, soon stale
    let key = reader.key_of(&many[0]);
    let source = cluster.primary_of(&key);
    let target = *cluster.primaries().iter().find(|&&p| p != source).unwrap();
    cluster.move_empty_slot(&key, target);
    let flags: Vec<_> = many
        .iter()
        .map(|id| (id.clone(), def(id.as_str(), 1)))
        .collect();
    writer.try_set_many(&flags, None).await.unwrap();

    let mut whole = 0;
    for _ in 0..10 {
        if matches!(reader.try_get_many(&many).await, Ok(found) if found.len() == 5000) {
            whole += 1;
        }
    }
    assert!(
        whole >= 5,
        "only {whole} of 10 batches read whole after the slot move"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backplane_checks_the_node_that_holds_its_subscription_after_a_failover() {
    let Some(mut cluster) = RedisCluster::start(3, 1) else {
        return;
    };
    let db = sources::Db::new("cluster-backplane-health");
    let b = TieredCache::builder()
        .l2(cache(&cluster, "fleet"))
        .source(db.source.clone())
        .build()
        .unwrap();
    let _task = b.start_backplane().unwrap();
    wait_for("B's subscription", || b.tiered_stats().backplane_subscribed).await;
    let channel = "{fleet}:flagcache:v1:events";

    // The channel's shard fails over, and its old primary comes back as a replica.
    let old = cluster.primary_of(channel);
    let before = b.tiered_stats().subscriptions;
    cluster.kill(old);
    // B subscribes again at once, while the dead primary may still be in the cluster's map.
    wait_for("B to subscribe again", || {
        let s = b.tiered_stats();
        s.subscriptions > before && s.backplane_subscribed
    })
    .await;
    cluster.wait_ok(Duration::from_secs(20));
    cluster.restart(old);
    cluster.wait_ok(Duration::from_secs(20));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Now the new shard primary hangs: B's health check must notice.
    let new = cluster.primary_of(channel);
    let subscribed = b.tiered_stats().subscriptions;
    cluster.pause(new);
    let paused = Instant::now();
    while b.tiered_stats().backplane_subscribed && b.tiered_stats().subscriptions <= subscribed {
        assert!(
            paused.elapsed() < Duration::from_secs(10),
            "B's health check never noticed the node holding its subscription hang"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.resume(new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_a_slot_mid_migration_are_read_where_they_are() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    // A hash-tagged prefix: every key in one slot, half of them moved to another primary.
    let l2 = routing_cache(&cluster, "{mig}");
    let many = stored(&l2, "m", 200).await;
    let source = cluster.primary_of(&l2.key_of(&many[0]));
    let target = *cluster.primaries().iter().find(|&&p| p != source).unwrap();
    assert_eq!(cluster.half_migrate(&l2.key_of(&many[0]), target, 100), 100);

    let mut whole = 0;
    for _ in 0..20 {
        if matches!(l2.try_get_many(&many).await, Ok(found) if found.len() == 200) {
            whole += 1;
        }
    }
    assert_eq!(whole, 20, "batch reads of a slot mid-migration");
    for id in &many {
        assert!(l2.try_get(id).await.unwrap().is_some(), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_all_never_calls_a_walk_whole_that_a_moving_slot_spoiled() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    // (`clear` walks the same way.) Every key in one slot, which a thread moves from primary
    // to primary, 100 keys at a time:
    // a walk may meet the slot's keys on two primaries, or miss those that moved behind it.
    let l2 = routing_cache(&cluster, "{lm}");
    let many = stored(&l2, "lm", 3000).await;
    let Reply::Integer(slot) = cluster.command(
        cluster.primaries()[0],
        &["CLUSTER", "KEYSLOT", &l2.key_of(&many[0])],
    ) else {
        panic!("CLUSTER KEYSLOT");
    };
    let primaries = cluster.primaries();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mover = std::thread::spawn({
        let (primaries, done) = (primaries.clone(), done.clone());
        let mut owner = cluster.primary_of(&l2.key_of(&many[0]));
        move || {
            let mut rounds = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let next = primaries[(primaries.iter().position(|&p| p == owner).unwrap() + 1) % 3];
                redis_cluster::move_slot_with_keys(
                    &primaries,
                    slot,
                    owner,
                    next,
                    100,
                    Duration::from_millis(2),
                );
                owner = next;
                rounds += 1;
                // A pause between moves, as a resharding tool makes between slots: walks that
                // fall in one come through whole.
                std::thread::sleep(Duration::from_millis(300));
            }
            rounds
        }
    });
    let (mut whole, mut refused) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        match l2.try_load_all().await {
            Ok(all) => {
                assert_eq!(all.len(), 3000, "load_all called a partial walk whole");
                whole += 1;
            }
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                refused += 1;
            }
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = mover.join().unwrap();
    eprintln!("slot moved {rounds} times; load_all whole {whole}, refused {refused}");
    assert!(rounds >= 2, "the slot moved during the reads");
    assert!(whole > 0, "no load_all came through the moves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_and_a_single_node_are_not_taken_for_each_other() {
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let Some(node) = redis_cluster::redis_server::RedisServer::start() else {
        return;
    };
    // A cluster has one database: a URL asking for another is a bad configuration.
    let with_db = format!("{}/3", cluster.urls()[0]);
    let refused = RedisCache::cluster_builder([with_db]).build().unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::InvalidConfig, "{refused}");

    // The cluster builder pointed at a plain node, and the node builder at a cluster node:
    // the ping says so, instead of half the operations failing later.
    let on_node = RedisCache::cluster_builder([node.url()]).build().unwrap();
    let e = on_node.try_ping().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
    assert!(e.to_string().contains("not part of a Redis Cluster"), "{e}");
    let on_cluster = RedisCache::builder(&cluster.urls()[0]).build().unwrap();
    let e = on_cluster.try_ping().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
    assert!(e.to_string().contains("cluster_builder"), "{e}");
    // Each where it belongs answers.
    cache(&cluster, "ok").try_ping().await.unwrap();
    RedisCache::builder(&node.url())
        .build()
        .unwrap()
        .try_ping()
        .await
        .unwrap();
}
