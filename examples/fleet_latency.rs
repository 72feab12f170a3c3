//! How long a write takes to reach a fleet: one writer and 8 subscribed instances, each a
//! `TieredCache` with its own L1 over one shared L2, measured on a single Redis node and on a
//! three-primary Redis Cluster (sharded pub/sub), both private servers this example starts on
//! loopback ports (and stops at exit).
//!
//! Each round, every instance holds the flag in L1; the writer's `try_set` of a new version
//! starts the clock, and a watcher thread polls the 8 L1s until each has dropped its copy. The
//! figure per round is the time until the **last** instance dropped it (per instance too).
//!
//! Run: `cargo run --release --example fleet_latency [rounds]` (default 200). Needs
//! `redis-server` and `redis-cli` on the `PATH`.

#[path = "common/fleet_watch.rs"]
mod fleet_watch;
#[path = "../tests/support/redis_cluster.rs"]
mod redis_cluster;

use flagcache::{FlagCache, FlagDefinition, FlagId, RedisCache, TieredCache};
use fleet_watch::Watch;
use redis_cluster::RedisCluster;
use redis_cluster::redis_server::RedisServer;
use std::sync::Arc;
use std::time::{Duration, Instant};

const INSTANCES: usize = 8;

fn def(version: u64) -> FlagDefinition {
    let mut d = FlagDefinition::new_boolean("checkout.new-flow", "A flag", true).unwrap();
    d.version = version;
    d
}

fn instance(l2: RedisCache) -> TieredCache {
    TieredCache::builder()
        .l2(l2)
        .l1_ttl(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// Runs `rounds` writes against a fleet whose L2s `make` builds; returns the time until the
/// last instance dropped its copy and the time of each instance's drop, in microseconds.
fn measure(
    runtime: &tokio::runtime::Runtime,
    rounds: usize,
    make: impl Fn() -> RedisCache,
) -> (Vec<u64>, Vec<u64>) {
    let _entered = runtime.enter();
    let writer = instance(make());
    let fleet: Vec<TieredCache> = (0..INSTANCES).map(|_| instance(make())).collect();
    let _tasks: Vec<_> = fleet.iter().map(|c| c.start_backplane().unwrap()).collect();
    let id = FlagId::new("checkout.new-flow");
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fleet.iter().all(|c| c.tiered_stats().backplane_subscribed) {
            assert!(Instant::now() < deadline, "the fleet did not subscribe");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let fleet = Arc::new(fleet);
    let (mut last, mut each) = (Vec::new(), Vec::new());
    for round in 1..=rounds as u64 {
        let (held, written) = (2 * round - 1, 2 * round);
        runtime.block_on(async {
            writer.try_set(&id, def(held), None).await.unwrap();
            // Every instance loads that version into its L1.
            for c in fleet.iter() {
                while c.get(&id).await.map(|f| f.definition.version) != Some(held) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        let watch = Watch::spawn(&fleet, |c| c.l1().get_now("checkout.new-flow").is_none());
        runtime.block_on(async {
            watch.start();
            writer.try_set(&id, def(written), None).await.unwrap();
            watch.wait().await;
        });
        match watch.finish() {
            Some(all) => {
                last.push(all.iter().copied().max().unwrap_or(0));
                each.extend(all);
            }
            None => eprintln!("round {round}: an instance did not drop its copy within 2 s"),
        }
    }
    (last, each)
}

fn report(name: &str, (mut last, mut each): (Vec<u64>, Vec<u64>), rounds: usize) {
    last.sort_unstable();
    each.sort_unstable();
    if last.is_empty() {
        println!("{name}: no round completed");
        return;
    }
    println!("{name:<14} {}", fleet_watch::summary(&last, &each, rounds));
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(200, |r| r.parse().expect("rounds: a number"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let Some(server) = RedisServer::start() else {
        return;
    };
    let single = measure(&runtime, rounds, || {
        let _entered = runtime.enter();
        RedisCache::builder(&server.url())
            .prefix("fleet")
            .build()
            .unwrap()
    });
    drop(server);
    let Some(cluster) = RedisCluster::start(3, 0) else {
        return;
    };
    let clustered = measure(&runtime, rounds, || {
        let _entered = runtime.enter();
        RedisCache::cluster_builder(cluster.urls())
            .prefix("fleet")
            .build()
            .unwrap()
    });
    println!(
        "one writer, {INSTANCES} subscribed instances, {rounds} writes; from the write starting to the L1 copy dropped:"
    );
    report("single node", single, rounds);
    report("cluster (3)", clustered, rounds);
}
