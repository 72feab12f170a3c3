//! What `benches/redis.rs` and `benches/cluster.rs` share: the group settings, the timing
//! loop, and the two read benches (`try_get` against the bare client's `GET`, `try_get_many`
//! against its `MGET` of the same keys), for any bare connection.

#![allow(dead_code)] // each bench uses its own part

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use flagcache::{FlagId, RedisCache};
use redis::io::tcp::TcpSettings;
use redis::{AsyncCommands, ConnectionInfo, IntoConnectionInfo};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// The bare client's connection to `url`, with `TCP_NODELAY` as src/redis/builder.rs sets
/// it, so both contenders write alike.
pub fn nodelay(url: &str) -> ConnectionInfo {
    url.into_connection_info()
        .unwrap()
        .set_tcp_settings(TcpSettings::default().set_nodelay(true))
}

/// A group of the shared shape: `elements` flags per call, the quick settings of
/// benches/compare.rs.
pub fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
    elements: usize,
) -> BenchmarkGroup<'c, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(elements as u64));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(20);
    g
}

/// Times `iters` sequential awaits of `op(i % flags)` inside `runtime` (criterion's
/// `async_tokio` feature is not enabled; `block_on` of the whole loop costs one entry).
pub fn time<F, Fut>(runtime: &Runtime, flags: usize, iters: u64, mut op: F) -> Duration
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    runtime.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            op(i as usize % flags).await;
        }
        start.elapsed()
    })
}

/// What the read benches need: the cache, the bare connection, the ids and their keys
/// (built once: the floor does no key building).
pub struct Reads<'a, C> {
    pub runtime: &'a Runtime,
    pub cache: &'a RedisCache,
    pub bare: &'a C,
    pub ids: &'a [FlagId],
    pub keys: &'a [String],
}

impl<C: AsyncCommands + Clone> Reads<'_, C> {
    /// `{prefix}/get` (one hit) and `{prefix}/get_many_{n}` (every id, all hits).
    pub fn bench(&self, c: &mut Criterion, prefix: &str) {
        let n = self.ids.len();
        let mut g = group(c, &format!("{prefix}/get"), 1);
        g.bench_function("flagcache", |b| {
            b.iter_custom(|iters| {
                time(self.runtime, n, iters, |i| async move {
                    let hit = self.cache.try_get(&self.ids[i]).await.unwrap();
                    assert!(black_box(hit).is_some());
                })
            })
        });
        g.bench_function("bare_client", |b| {
            b.iter_custom(|iters| {
                time(self.runtime, n, iters, |i| {
                    // The connection is a handle to shared sockets; a clone per call is what
                    // `&mut` methods on a shared client cost.
                    let mut conn = self.bare.clone();
                    async move {
                        let hit: Option<Vec<u8>> = conn.get(&self.keys[i]).await.unwrap();
                        assert!(black_box(hit).is_some());
                    }
                })
            })
        });
        g.finish();
        let mut g = group(c, &format!("{prefix}/get_many_{n}"), n);
        g.bench_function("flagcache", |b| {
            b.iter_custom(|iters| {
                time(self.runtime, n, iters, |_| async {
                    let hits = self.cache.try_get_many(self.ids).await.unwrap();
                    assert_eq!(black_box(hits).len(), n);
                })
            })
        });
        g.bench_function("bare_client", |b| {
            b.iter_custom(|iters| {
                time(self.runtime, n, iters, |_| {
                    let mut conn = self.bare.clone();
                    async move {
                        let hits: Vec<Option<Vec<u8>>> = conn.mget(self.keys).await.unwrap();
                        assert_eq!(black_box(hits).len(), n);
                    }
                })
            })
        });
        g.finish();
    }
}
