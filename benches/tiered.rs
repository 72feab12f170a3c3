//! `TieredCache` against its parts, in one run:
//!
//! - `tiered/l1_hit`: a hit through `TieredCache::get_with` / `get_now` against the same read
//!   on a `LocalCache` alone (the target: at most 10 % overhead), 10 000 flags, one thread;
//! - `tiered/l2_miss`: a read that misses L1 and is answered by L2 (the fill included) against
//!   a bare `redis` client `GET` of the same key (the floor), on a private `redis-server`.
//!
//! Run: `cargo bench --bench tiered`. Without a `redis-server` on the `PATH` the miss group
//! says so and is skipped.

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flagcache::{Clock, FlagDefinition, FlagId, LocalCache, MockClock, RedisCache, TieredCache};
use redis_server::RedisServer;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FLAGS: usize = 10_000;

fn defs() -> Vec<FlagDefinition> {
    (0..FLAGS)
        .map(|i| {
            FlagDefinition::new_boolean(&format!("team{}.flag-{i}", i % 37), "bench", true).unwrap()
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// L1 hits: the tiered cache's never-waiting reads against `LocalCache`'s, same flags, same
/// order, both with their background task keeping the coarse clock.
fn l1_hit(c: &mut Criterion) {
    let runtime = runtime();
    let _entered = runtime.enter();
    let defs = defs();
    let ids: Vec<FlagId> = defs.iter().map(|d| d.id.clone()).collect();
    let local = Arc::new(
        LocalCache::builder()
            .max_size(FLAGS * 2)
            .default_ttl(Duration::from_secs(3600))
            .build()
            .unwrap(),
    );
    local.replace_all(defs.clone()).unwrap();
    let _cleanup = local.start_cleanup_task(Duration::from_secs(1)).unwrap();
    let tiered = TieredCache::builder()
        .l1_size(FLAGS * 2)
        .l1_ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    tiered.l1().replace_all(defs).unwrap();

    let mut g = c.benchmark_group("tiered/l1_hit");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(20);
    let mut i = 0usize;
    g.bench_function("local_get_with", |b| {
        b.iter(|| {
            i = (i + 7919) % FLAGS;
            black_box(local.get_with(ids[i].as_str(), |d| d.version))
        })
    });
    g.bench_function("tiered_get_with", |b| {
        b.iter(|| {
            i = (i + 7919) % FLAGS;
            black_box(tiered.get_with(ids[i].as_str(), |d| d.version))
        })
    });
    g.bench_function("local_get_now", |b| {
        b.iter(|| {
            i = (i + 7919) % FLAGS;
            black_box(local.get_now(ids[i].as_str()))
        })
    });
    g.bench_function("tiered_get_now", |b| {
        b.iter(|| {
            i = (i + 7919) % FLAGS;
            black_box(tiered.get_now(&ids[i]))
        })
    });
    g.finish();
}

/// L1 misses answered by L2: every read finds its L1 entry expired (a mock clock moved past
/// the TTL, no stale serving) and loads it from L2 through single-flight, filling L1; the
/// floor is the bare client's `GET` of the same key.
fn l2_miss(c: &mut Criterion) {
    let Some(server) = RedisServer::start() else {
        eprintln!("tiered/l2_miss skipped: no redis-server binary on the PATH");
        return;
    };
    let runtime = runtime();
    let mock = MockClock::new();
    let ttl = Duration::from_secs(60);
    let defs: Vec<FlagDefinition> = defs().into_iter().take(100).collect();
    let ids: Vec<FlagId> = defs.iter().map(|d| d.id.clone()).collect();
    let (tiered, mut bare, keys) = runtime.block_on(async {
        let l2 = RedisCache::builder(&server.url())
            .prefix("bench")
            .response_timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let flags: Vec<_> = defs.iter().map(|d| (d.id.clone(), d.clone())).collect();
        l2.try_set_many(&flags, None).await.unwrap();
        let keys: Vec<String> = ids.iter().map(|id| l2.key_of(id)).collect();
        let tiered = TieredCache::builder()
            .redis(l2)
            .clock(Clock::mock(&mock))
            .l1_ttl(ttl)
            .max_stale(Duration::ZERO)
            .build()
            .unwrap();
        let bare = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        (tiered, bare, keys)
    });

    let mut g = c.benchmark_group("tiered/l2_miss");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(20);
    g.bench_function("tiered_get", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    // Past every entry's TTL: this read misses L1 and goes to L2.
                    mock.advance(ttl);
                    let got = flagcache::FlagCache::get(&tiered, &ids[i % ids.len()]).await;
                    assert!(black_box(got).is_some());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("bare_client_get", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    let got: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(&keys[i % keys.len()])
                        .query_async(&mut bare)
                        .await
                        .unwrap();
                    assert!(black_box(got).is_some());
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    drop(server);
}

criterion_group!(benches, l1_hit, l2_miss);
criterion_main!(benches);
