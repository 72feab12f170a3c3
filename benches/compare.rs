//! flagcache's L1 against its peers and the floor, in one run.
//!
//! The same lookups, from pre-generated key sequences, over: flagcache `LocalCache` (owned
//! `get_now` and borrowed `get_with`), `quick_cache::sync::Cache`, `moka::sync::Cache` (with a
//! TTL, as a flag cache needs), a raw `papaya::HashMap` with the same foldhash hasher read through
//! a guard pinned per lookup (the floor: `papaya::HashMap<Arc<str>, _>` read with `pin().get`),
//! and `RwLock<HashMap>`. 10 000 flag keys in two shapes (see [`Shape`]): realistic names
//! looked up by separately allocated strings, and the short ids looked up by the stored key
//! itself; uniform, Zipf(1.0) and single-hot-key reads from precomputed sequences of 2^20
//! indexes; 1 and 2 threads; and a 90/10 read/write Zipf mix.
//!
//! Run: `cargo bench --bench compare` (add a filter such as `-- zipf` to run a part).

// The floor and the RwLock baseline are the very types the crate's facade rule bans.
#![allow(clippy::disallowed_types)]

#[path = "support/keys.rs"]
mod keys;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flagcache::{CleanupTask, FlagDefinition, FlagId, LocalCache};
use keys::{Rng, Zipf};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const FLAGS: usize = 10_000;
/// Key indexes per thread and workload, precomputed (4 MiB a sequence: larger than the caches
/// under test, so the sequence itself does not sit in L1 cache).
const SEQ_LEN: usize = 1 << 20;
const TTL: Duration = Duration::from_secs(3_600);

type Def = Arc<FlagDefinition>;
type Hasher = foldhash::fast::RandomState;

#[derive(Clone, Copy, Debug)]
enum Keys {
    Uniform,
    Zipf,
    HotKey,
}

impl Keys {
    fn name(self) -> &'static str {
        match self {
            Keys::Uniform => "uniform",
            Keys::Zipf => "zipf1.0",
            Keys::HotKey => "hot_key",
        }
    }

    /// `SEQ_LEN` key indexes for thread `t`.
    fn sequence(self, t: u64) -> Vec<u32> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1).wrapping_mul(0xff51_afd7_ed55_8ccd));
        let zipf = Zipf::new(FLAGS, 1.0);
        (0..SEQ_LEN)
            .map(|_| match self {
                Keys::Uniform => (rng.next() % FLAGS as u64) as u32,
                Keys::Zipf => zipf.sample(&mut rng) as u32,
                Keys::HotKey => 42,
            })
            .collect()
    }
}

/// How keys look and how a reader holds the name it looks up.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `team{n}.flag-{i}` (about 16 bytes), looked up by the very `FlagId` stored as the key:
    /// the shape of the first tables, kept for comparison.
    Short,
    /// `flag.service-{n}.feature_{i:05}` (27 or 28 bytes, a realistic flag name), looked up by
    /// separately allocated strings, as an evaluator holding a name from its own code or a
    /// request does.
    Realistic,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Short => "short_by_id",
            Shape::Realistic => "realistic_by_str",
        }
    }
}

struct Fixture {
    ids: Vec<FlagId>,
    /// What readers look up, per key: the stored id's own bytes (`Short`) or a copy of its own.
    names: Vec<Box<str>>,
    shape: Shape,
    defs: Vec<Def>,
    /// Runs each LocalCache's cleanup task, which keeps the coarse clock fresh, as in production.
    runtime: tokio::runtime::Runtime,
}

impl Fixture {
    fn new(shape: Shape) -> Self {
        let ids: Vec<FlagId> = (0..FLAGS)
            .map(|i| match shape {
                Shape::Short => FlagId::new(format!("team{}.flag-{i}", i % 37)),
                Shape::Realistic => FlagId::new(format!("flag.service-{}.feature_{i:05}", i % 37)),
            })
            .collect();
        let names = ids.iter().map(|id| Box::from(id.as_str())).collect();
        let defs = ids
            .iter()
            .map(|id| Arc::new(FlagDefinition::new_boolean(id.as_str(), "bench", false).unwrap()))
            .collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap();
        Self {
            ids,
            names,
            shape,
            defs,
            runtime,
        }
    }

    /// The name a reader looks key `k` up by.
    #[inline]
    fn lookup(&self, k: usize) -> &str {
        match self.shape {
            Shape::Short => self.ids[k].as_str(),
            Shape::Realistic => &self.names[k],
        }
    }
}

/// One contender: a read and a write over the shared fixture.
trait Contender: Sync {
    const NAME: &'static str;
    fn build(f: &Fixture) -> Self;
    fn read(&self, name: &str) -> u64;
    fn write(&self, id: &FlagId, def: &Def);
}

/// A LocalCache with its cleanup task running.
struct Running {
    cache: Arc<LocalCache>,
    _task: CleanupTask,
}
struct FlagcacheOwned(Running);
struct FlagcacheBorrowed(Running);
struct QuickCache(quick_cache::sync::Cache<FlagId, Def>);
struct Moka(moka::sync::Cache<FlagId, Def>);
struct PapayaFloor(papaya::HashMap<Arc<str>, Def, Hasher>);
struct RwLockMap(RwLock<HashMap<FlagId, Def, Hasher>>);

fn local_cache(f: &Fixture) -> Running {
    let cache = LocalCache::builder()
        .max_size(FLAGS * 2)
        .default_ttl(TTL)
        .build()
        .unwrap();
    for (id, def) in f.ids.iter().zip(&f.defs) {
        cache.try_set_arc(id, Arc::clone(def), None).unwrap();
    }
    let cache = Arc::new(cache);
    let _entered = f.runtime.enter();
    let task = cache.start_cleanup_task(Duration::from_secs(1)).unwrap();
    Running { cache, _task: task }
}

impl Contender for FlagcacheOwned {
    const NAME: &'static str = "flagcache_owned";
    fn build(f: &Fixture) -> Self {
        Self(local_cache(f))
    }
    #[inline]
    fn read(&self, name: &str) -> u64 {
        self.0
            .cache
            .get_now(name)
            .map_or(0, |c| c.definition.version)
    }
    fn write(&self, id: &FlagId, def: &Def) {
        self.0.cache.try_set_arc(id, Arc::clone(def), None).unwrap();
    }
}

impl Contender for FlagcacheBorrowed {
    const NAME: &'static str = "flagcache_borrowed";
    fn build(f: &Fixture) -> Self {
        Self(local_cache(f))
    }
    #[inline]
    fn read(&self, name: &str) -> u64 {
        self.0.cache.get_with(name, |d| d.version).unwrap_or(0)
    }
    fn write(&self, id: &FlagId, def: &Def) {
        self.0.cache.try_set_arc(id, Arc::clone(def), None).unwrap();
    }
}

impl Contender for QuickCache {
    const NAME: &'static str = "quick_cache";
    fn build(f: &Fixture) -> Self {
        let c = quick_cache::sync::Cache::new(FLAGS * 2);
        for (id, def) in f.ids.iter().zip(&f.defs) {
            c.insert(id.clone(), Arc::clone(def));
        }
        Self(c)
    }
    #[inline]
    fn read(&self, name: &str) -> u64 {
        self.0.get(name).map_or(0, |d| d.version)
    }
    fn write(&self, id: &FlagId, def: &Def) {
        self.0.insert(id.clone(), Arc::clone(def));
    }
}

impl Contender for Moka {
    const NAME: &'static str = "moka";
    fn build(f: &Fixture) -> Self {
        let c = moka::sync::Cache::builder()
            .max_capacity((FLAGS * 2) as u64)
            .time_to_live(TTL)
            .build();
        for (id, def) in f.ids.iter().zip(&f.defs) {
            c.insert(id.clone(), Arc::clone(def));
        }
        c.run_pending_tasks();
        Self(c)
    }
    #[inline]
    fn read(&self, name: &str) -> u64 {
        self.0.get(name).map_or(0, |d| d.version)
    }
    fn write(&self, id: &FlagId, def: &Def) {
        self.0.insert(id.clone(), Arc::clone(def));
    }
}

impl Contender for PapayaFloor {
    const NAME: &'static str = "papaya_floor";
    fn build(f: &Fixture) -> Self {
        let m = papaya::HashMap::with_hasher(Hasher::default());
        for (id, def) in f.ids.iter().zip(&f.defs) {
            m.pin().insert(Arc::from(id.as_str()), Arc::clone(def));
        }
        Self(m)
    }
    #[inline]
    fn read(&self, name: &str) -> u64 {
        self.0.pin().get(name).map_or(0, |d| d.version)
    }
    fn write(&self, id: &FlagId, def: &Def) {
        self.0.pin().insert(Arc::from(id.as_str()), Arc::clone(def));
    }
}

impl Contender for RwLockMap {
    const NAME: &'static str = "rwlock_hashmap";
    fn build(f: &Fixture) -> Self {
        let mut m = HashMap::with_capacity_and_hasher(FLAGS * 2, Hasher::default());
        for (id, def) in f.ids.iter().zip(&f.defs) {
            m.insert(id.clone(), Arc::clone(def));
        }
        Self(RwLock::new(m))
    }
    #[inline]
    fn read(&self, name: &str) -> u64 {
        self.0.read().unwrap().get(name).map_or(0, |d| d.version)
    }
    fn write(&self, id: &FlagId, def: &Def) {
        self.0.write().unwrap().insert(id.clone(), Arc::clone(def));
    }
}

/// Runs `iters` operations on each of `threads` threads; returns the wall time.
/// `write_every`: 0 for reads only, 10 for the 90/10 mix.
fn run<C: Contender>(
    c: &C,
    f: &Fixture,
    seqs: &[Vec<u32>],
    iters: u64,
    write_every: usize,
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for seq in seqs {
            s.spawn(move || {
                let mut sum = 0u64;
                for i in 0..iters as usize {
                    let k = seq[i % SEQ_LEN] as usize;
                    if write_every != 0 && i % write_every == write_every - 1 {
                        c.write(&f.ids[k], &f.defs[k]);
                    } else {
                        sum = sum.wrapping_add(c.read(f.lookup(k)));
                    }
                }
                black_box(sum);
            });
        }
    });
    start.elapsed()
}

fn bench_one<C: Contender>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    f: &Fixture,
    seqs: &[Vec<u32>],
    write_every: usize,
) {
    let c = C::build(f);
    g.bench_function(C::NAME, |b| {
        b.iter_custom(|iters| run(&c, f, seqs, iters, write_every))
    });
}

fn group(c: &mut Criterion, f: &Fixture, name: &str, keys: Keys, threads: u64, write_every: usize) {
    let seqs: Vec<Vec<u32>> = (0..threads).map(|t| keys.sequence(t)).collect();
    let shape = f.shape.name();
    let mut g = c.benchmark_group(format!("{name}/{shape}/{}/{threads}t", keys.name()));
    g.throughput(Throughput::Elements(threads));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(20);
    bench_one::<PapayaFloor>(&mut g, f, &seqs, write_every);
    bench_one::<FlagcacheBorrowed>(&mut g, f, &seqs, write_every);
    bench_one::<FlagcacheOwned>(&mut g, f, &seqs, write_every);
    bench_one::<QuickCache>(&mut g, f, &seqs, write_every);
    bench_one::<Moka>(&mut g, f, &seqs, write_every);
    bench_one::<RwLockMap>(&mut g, f, &seqs, write_every);
    g.finish();
}

fn compare(c: &mut Criterion) {
    for shape in [Shape::Realistic, Shape::Short] {
        let f = Fixture::new(shape);
        for threads in [1, 2] {
            for keys in [Keys::Uniform, Keys::Zipf, Keys::HotKey] {
                group(c, &f, "read", keys, threads, 0);
            }
            group(c, &f, "mix90_10", Keys::Zipf, threads, 10);
        }
    }
}

criterion_group!(benches, compare);
criterion_main!(benches);
