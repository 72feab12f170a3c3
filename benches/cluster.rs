//! L2 on a Redis Cluster against its floor, in one run: `RedisCache::try_get` (one hit) and
//! `try_get_many` (100 hits spread over every primary), each beside the same read done with
//! the bare `redis` cluster client (`GET`, and `MGET` of the same keys, which the client splits
//! by slot). The bare client is the floor: no timeout wrapper, no JSON decoding, keys built
//! once.
//!
//! Both talk to a private three-primary cluster on loopback ports (started with the tests'
//! harness), one request at a time; compare the ratios, not the absolute times. Without
//! `redis-server` and `redis-cli` on the `PATH` the bench says so and measures nothing.
//!
//! Run: `cargo bench --bench cluster`.

#[path = "support/l2_reads.rs"]
mod l2_reads;
#[path = "../tests/support/redis_cluster.rs"]
mod redis_cluster;

use criterion::{Criterion, criterion_group, criterion_main};
use flagcache::{FlagDefinition, FlagId, RedisCache};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis_cluster::RedisCluster;
use std::time::Duration;
use tokio::runtime::Runtime;

/// Flags read by `get_many` (and the set `get` cycles through).
const FLAGS: usize = 100;

struct Fixture {
    runtime: Runtime,
    cache: RedisCache,
    bare: ClusterConnection,
    ids: Vec<FlagId>,
    keys: Vec<String>,
    _cluster: RedisCluster,
}

impl Fixture {
    fn new() -> Option<Self> {
        let cluster = RedisCluster::start(3, 0)?;
        // One thread for the bench loop and the connections' tasks alike: on a multi-thread
        // runtime each round trip also pays for waking a parked worker, or not, which made
        // either contender 17 µs or 80 µs a call from one run to the next.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ids: Vec<FlagId> = (0..FLAGS)
            .map(|i| FlagId::new(format!("flag.service-{}.feature_{i:05}", i % 37)))
            .collect();
        let flags: Vec<(FlagId, FlagDefinition)> = ids
            .iter()
            .map(|id| {
                let def = FlagDefinition::new_boolean(id.as_str(), "bench flag", true).unwrap();
                (id.clone(), def)
            })
            .collect();
        let (cache, bare) = runtime.block_on(async {
            let cache = RedisCache::cluster_builder(cluster.urls())
                .prefix("bench")
                .response_timeout(Duration::from_millis(500))
                .build()
                .unwrap();
            cache.try_ping().await.unwrap();
            let outcome = cache.try_set_many(&flags, None).await.unwrap();
            assert_eq!(outcome.stored, FLAGS, "preload");
            // A first batch read fetches the slot map: not part of a measurement.
            assert_eq!(cache.try_get_many(&ids).await.unwrap().len(), FLAGS);
            let seeds: Vec<_> = cluster
                .urls()
                .iter()
                .map(|u| l2_reads::nodelay(u))
                .collect();
            let bare = ClusterClientBuilder::new(seeds)
                .build()
                .unwrap()
                .get_async_connection()
                .await
                .unwrap();
            (cache, bare)
        });
        let keys = ids.iter().map(|id| cache.key_of(id)).collect();
        Some(Self {
            runtime,
            cache,
            bare,
            ids,
            keys,
            _cluster: cluster,
        })
    }
}

fn benches(c: &mut Criterion) {
    let Some(f) = Fixture::new() else {
        eprintln!("cluster bench: no redis-server/redis-cli on the PATH; nothing measured");
        return;
    };
    l2_reads::Reads {
        runtime: &f.runtime,
        cache: &f.cache,
        bare: &f.bare,
        ids: &f.ids,
        keys: &f.keys,
    }
    .bench(c, "cluster");
}

criterion_group!(cluster, benches);
criterion_main!(cluster);
