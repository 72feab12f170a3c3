//! L1 micro-benchmarks: the read path (owned, borrowed, async through the trait), a miss,
//! `get_many`, `set` and `replace_all`. Run: `cargo bench --bench l1`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flagcache::{CleanupTask, FlagCache, FlagDefinition, FlagId, LocalCache};
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Waker};
use std::time::Duration;

const FLAGS: usize = 10_000;

fn make_ids(n: usize) -> Vec<FlagId> {
    (0..n)
        .map(|i| FlagId::new(format!("team{}.flag-{i}", i % 37)))
        .collect()
}

fn defs(ids: &[FlagId]) -> Vec<FlagDefinition> {
    ids.iter()
        .map(|id| FlagDefinition::new_boolean(id.as_str(), "bench flag", false).unwrap())
        .collect()
}

/// A filled cache with its cleanup task running (it keeps the coarse clock fresh, as in
/// production), on a runtime that lives as long as the bench process.
fn filled() -> (Arc<LocalCache>, CleanupTask, Vec<FlagId>) {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap()
    });
    let ids = make_ids(FLAGS);
    let cache = LocalCache::builder()
        .max_size(FLAGS * 2)
        .default_ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    cache.replace_all(defs(&ids)).unwrap();
    let cache = Arc::new(cache);
    let _entered = runtime.enter();
    let task = cache.start_cleanup_task(Duration::from_secs(1)).unwrap();
    (cache, task, ids)
}

fn reads(c: &mut Criterion) {
    let (cache, _task, ids) = filled();
    let mut g = c.benchmark_group("l1_get_hit");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("owned", |b| {
        b.iter(|| {
            i = (i + 7919) % FLAGS;
            black_box(cache.get_now(ids[i].as_str()))
        })
    });
    g.bench_function("borrowed", |b| {
        b.iter(|| {
            i = (i + 7919) % FLAGS;
            black_box(cache.get_with(ids[i].as_str(), |d| d.version))
        })
    });
    // The trait's future polled once with a no-op waker: the cost of the async path itself,
    // not of an executor's `block_on`.
    let mut cx = Context::from_waker(Waker::noop());
    g.bench_function("async_trait", |b| {
        b.iter(|| {
            i = (i + 7919) % FLAGS;
            let fut = pin!(cache.get(&ids[i]));
            black_box(fut.poll(&mut cx))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("l1_get_miss");
    g.throughput(Throughput::Elements(1));
    let absent = make_ids(FLAGS)
        .into_iter()
        .map(|id| FlagId::new(format!("{id}-absent")))
        .collect::<Vec<_>>();
    g.bench_function("miss", |b| {
        b.iter(|| {
            i = (i + 7919) % FLAGS;
            black_box(cache.get_now(absent[i].as_str()))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("l1_get_many");
    for n in [16usize, 100] {
        g.throughput(Throughput::Elements(n as u64));
        let batch: Vec<FlagId> = ids.iter().step_by(FLAGS / n).take(n).cloned().collect();
        g.bench_function(format!("{n}"), |b| {
            b.iter(|| black_box(cache.get_many_now(&batch)))
        });
    }
    g.finish();
}

fn writes(c: &mut Criterion) {
    let (cache, _task, ids) = filled();
    let all = defs(&ids);
    let mut g = c.benchmark_group("l1_write");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("set_replace", |b| {
        b.iter_batched(
            || {
                i = (i + 7919) % FLAGS;
                (ids[i].clone(), all[i].clone())
            },
            |(id, def)| cache.try_set(&id, def, None).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("l1_replace_all");
    for n in [1_000usize, 10_000] {
        g.throughput(Throughput::Elements(n as u64));
        let set = all[..n].to_vec();
        g.bench_function(format!("{n}"), |b| {
            b.iter_batched(
                || set.clone(),
                |s| cache.replace_all(s).unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, reads, writes);
criterion_main!(benches);
