//! L2 against its floor, in one run: `RedisCache::try_get` (one hit), `try_get_many` (100
//! hits) and `try_set_many` (100 definitions), each beside the same work done with the bare
//! `redis` client on one multiplexed connection (`GET`, `MGET` of the same keys, a pipeline of
//! plain `SET key value PX ttl`). The bare client is the floor: no timeout wrapper, no JSON
//! decoding, no version-guard script, keys and values built once.
//!
//! Both talk to a private `redis-server` on a loopback port, one request at a time, so the
//! numbers are round trips plus client work; compare the ratios, not the absolute times.
//! Without a `redis-server` on the `PATH` the bench says so and measures nothing.
//!
//! Run: `cargo bench --bench redis`.

#[path = "support/l2_reads.rs"]
mod l2_reads;
#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use criterion::{Criterion, criterion_group, criterion_main};
use flagcache::{FlagDefinition, FlagId, RedisCache};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis_server::RedisServer;
use std::hint::black_box;
use std::time::Duration;
use tokio::runtime::Runtime;

/// Flags written and read by the batch operations (and the set `get` cycles through).
const FLAGS: usize = 100;
/// The TTL both contenders write with (`PX`, in milliseconds for the bare client).
const TTL: Duration = Duration::from_secs(600);

/// Everything the benches share: the server, the runtime, both clients and the flags.
struct Fixture {
    /// Drives both clients' connections; built before them and dropped after them.
    runtime: Runtime,
    /// The L2 under test, prefix `bench`.
    cache: RedisCache,
    /// The floor: one multiplexed connection of the bare client.
    bare: MultiplexedConnection,
    /// `bench.flag-000` to `bench.flag-099`.
    ids: Vec<FlagId>,
    /// A boolean definition of each id, as `try_set_many` takes them.
    flags: Vec<(FlagId, FlagDefinition)>,
    /// The keys `cache` stores `ids` under, built once: the floor does no key building.
    keys: Vec<String>,
    /// `to_json()` of each definition, encoded once for the floor's `SET`s.
    values: Vec<Vec<u8>>,
    /// Owned here so the server lives exactly as long as the clients that use it.
    _server: RedisServer,
}

impl Fixture {
    /// Starts the server and both clients and preloads the flags, so every read is a hit;
    /// `None` when there is no `redis-server`.
    fn new() -> Option<Self> {
        let server = RedisServer::start()?;
        // One worker for the connection tasks, the bench loop on the calling thread: the two
        // cores of the bench machine, as in benches/compare.rs.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ids: Vec<FlagId> = (0..FLAGS)
            .map(|i| FlagId::new(format!("bench.flag-{i:03}")))
            .collect();
        let flags: Vec<(FlagId, FlagDefinition)> = ids
            .iter()
            .map(|id| {
                let def = FlagDefinition::new_boolean(id.as_str(), "bench flag", true).unwrap();
                (id.clone(), def)
            })
            .collect();
        let values = flags.iter().map(|(_, def)| def.to_json()).collect();
        let (cache, bare) = runtime.block_on(async {
            let cache = RedisCache::builder(&server.url())
                .prefix("bench")
                .default_ttl(TTL)
                .response_timeout(Duration::from_millis(500))
                .build()
                .unwrap();
            // Connects, and loads the guard script (the first write answers NOSCRIPT), so
            // neither is in a measurement.
            cache.try_ping().await.unwrap();
            let outcome = cache.try_set_many(&flags, None).await.unwrap();
            assert_eq!(outcome.stored, FLAGS, "preload");
            let info = l2_reads::nodelay(&server.url());
            let bare = redis::Client::open(info)
                .unwrap()
                .get_multiplexed_async_connection()
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
            flags,
            keys,
            values,
            _server: server,
        })
    }

    /// Times `iters` sequential awaits of `op(i)` (see `l2_reads::time`).
    fn time<F, Fut>(&self, iters: u64, op: F) -> Duration
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = ()>,
    {
        l2_reads::time(&self.runtime, FLAGS, iters, op)
    }
}

/// 100 writes in one pipeline: `try_set_many` (encode, version-guard script per key) against
/// plain `SET key value PX ttl`, and against the bare client running the same guard script. Rewriting the same version is accepted by the guard (it
/// refuses only lower ones), so every iteration stores all 100.
fn set_many(c: &mut Criterion, f: &Fixture) {
    let ttl_ms = TTL.as_millis() as u64;
    let mut g = l2_reads::group(c, "redis/set_many_100", FLAGS);
    g.bench_function("flagcache", |b| {
        b.iter_custom(|iters| {
            f.time(iters, |_| async {
                let outcome = f.cache.try_set_many(&f.flags, None).await.unwrap();
                assert_eq!(black_box(outcome).stored, FLAGS);
            })
        })
    });
    g.bench_function("bare_client", |b| {
        b.iter_custom(|iters| {
            f.time(iters, |_| {
                let mut conn = f.bare.clone();
                async move {
                    let mut pipe = redis::Pipeline::with_capacity(FLAGS);
                    for (key, value) in f.keys.iter().zip(&f.values) {
                        pipe.cmd("SET").arg(key).arg(value).arg("PX").arg(ttl_ms);
                    }
                    let () = pipe.query_async(&mut conn).await.unwrap();
                }
            })
        })
    });
    // The same guarded write done with the bare client: what the version guard itself costs
    // the server, apart from anything flagcache does.
    let script = redis::Script::new(RedisCache::version_guard_script());
    let loaded: String = f
        .runtime
        .block_on(
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(RedisCache::version_guard_script())
                .query_async(&mut f.bare.clone()),
        )
        .unwrap();
    assert_eq!(loaded, script.get_hash());
    g.bench_function("bare_client_guarded", |b| {
        b.iter_custom(|iters| {
            f.time(iters, |_| {
                let mut conn = f.bare.clone();
                let script = &script;
                async move {
                    let mut pipe = redis::Pipeline::with_capacity(FLAGS);
                    for ((key, value), (id, def)) in f.keys.iter().zip(&f.values).zip(&f.flags) {
                        pipe.cmd("EVALSHA")
                            .arg(script.get_hash())
                            .arg(1)
                            .arg(key)
                            .arg(value)
                            .arg(def.version.to_string())
                            .arg(ttl_ms)
                            .arg(id.as_str());
                    }
                    let stored: Vec<i64> = pipe.query_async(&mut conn).await.unwrap();
                    assert_eq!(black_box(stored).len(), FLAGS);
                }
            })
        })
    });
    g.finish();
}

/// What a read bounded by the size limit would cost, with the bare client: a bounded read
/// sends at most the limit, so a huge stored value cannot cost its size per reader. One key:
/// `GET` against `GETRANGE key 0 limit`. 100 keys: `MGET` against a pipeline of 100
/// `GETRANGE`s, and against a Lua script that returns each value or a marker when it is over
/// the limit (`STRLEN` first).
fn bounded_read(c: &mut Criterion, f: &Fixture) {
    const LIMIT: usize = 256 * 1024;
    let mut g = l2_reads::group(c, "redis/bounded_read_1", 1);
    g.bench_function("get", |b| {
        b.iter_custom(|iters| {
            f.time(iters, |i| {
                let mut conn = f.bare.clone();
                async move {
                    let hit: Option<Vec<u8>> = conn.get(&f.keys[i]).await.unwrap();
                    assert!(black_box(hit).is_some());
                }
            })
        })
    });
    g.bench_function("getrange", |b| {
        b.iter_custom(|iters| {
            f.time(iters, |i| {
                let mut conn = f.bare.clone();
                async move {
                    let hit: Vec<u8> = conn.getrange(&f.keys[i], 0, LIMIT as isize).await.unwrap();
                    assert!(!black_box(hit).is_empty());
                }
            })
        })
    });
    g.finish();
    let mut g = l2_reads::group(c, "redis/bounded_read_100", FLAGS);
    g.bench_function("mget", |b| {
        b.iter_custom(|iters| {
            f.time(iters, |_| {
                let mut conn = f.bare.clone();
                async move {
                    let hits: Vec<Option<Vec<u8>>> = conn.mget(&f.keys).await.unwrap();
                    assert_eq!(black_box(hits).len(), FLAGS);
                }
            })
        })
    });
    g.bench_function("getrange_pipeline", |b| {
        b.iter_custom(|iters| {
            f.time(iters, |_| {
                let mut conn = f.bare.clone();
                async move {
                    let mut pipe = redis::Pipeline::with_capacity(FLAGS);
                    for key in &f.keys {
                        pipe.cmd("GETRANGE").arg(key).arg(0).arg(LIMIT);
                    }
                    let hits: Vec<Vec<u8>> = pipe.query_async(&mut conn).await.unwrap();
                    assert_eq!(black_box(hits).len(), FLAGS);
                }
            })
        })
    });
    let script = redis::Script::new(
        "local out = {} for i, k in ipairs(KEYS) do if redis.call('STRLEN', k) > \
         tonumber(ARGV[1]) then out[i] = 0 else out[i] = redis.call('GET', k) end end return out",
    );
    g.bench_function("bounded_script", |b| {
        b.iter_custom(|iters| {
            f.time(iters, |_| {
                let mut conn = f.bare.clone();
                let script = &script;
                async move {
                    let mut call = script.prepare_invoke();
                    for key in &f.keys {
                        call.key(key);
                    }
                    let hits: Vec<redis::Value> =
                        call.arg(LIMIT).invoke_async(&mut conn).await.unwrap();
                    assert_eq!(black_box(hits).len(), FLAGS);
                }
            })
        })
    });
    g.finish();
}

/// Runs the groups on one server, or says why it measures nothing.
fn redis(c: &mut Criterion) {
    let Some(f) = Fixture::new() else {
        eprintln!("redis bench skipped: no redis-server binary on the PATH");
        return;
    };
    l2_reads::Reads {
        runtime: &f.runtime,
        cache: &f.cache,
        bare: &f.bare,
        ids: &f.ids,
        keys: &f.keys,
    }
    .bench(c, "redis");
    set_many(c, &f);
    bounded_read(c, &f);
}

criterion_group!(benches, redis);
criterion_main!(benches);
