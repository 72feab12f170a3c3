//! Many threads hammering one `LocalCache`: a mix of reads, writes, fills, invalidations and
//! snapshot swaps on a small cache over a larger key space, with short TTLs and the cleanup task
//! running, so eviction, expiry and every race between them happen all the time.
//!
//! Two phases:
//! 1. *monotonic*: each key has one writer thread (its owner), which writes and fills strictly
//!    increasing versions; any thread reads and invalidates any key. A reader must then see the
//!    versions of a key never go backwards, and an owner's writes are never refused.
//! 2. *chaos*: any thread writes and fills any key (concurrent writers of one key), and one
//!    thread swaps the whole set now and then (`replace_all`, `clear`). A read must never
//!    return a version that was not handed out.
//!
//! At quiescence the stats must match what the threads counted, the size must be within the
//! capacity, and dropping the cache must end the cleanup task.

// std atomics coordinate the test threads; clippy.toml bans them only for the crate's own code.
#![allow(clippy::disallowed_types)]

use flagcache::{ErrorKind, FillOutcome, FlagDefinition, FlagId, LocalCache};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const THREADS: usize = 8;
const CAPACITY: usize = 128;
const KEYS: usize = 500;
/// Reads go to this many keys half the time, so some entries are hot.
const HOT_KEYS: usize = 64;
/// Operations per thread and phase: about 2-4 s in a debug build on 2 cores.
const OPS_PER_PHASE: usize = 120_000;

/// xorshift64*: a small seeded generator, so a failure can be replayed with its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What a thread counted, to compare with the cache's stats at quiescence.
#[derive(Default, Debug)]
struct Counts {
    lookups: u64,
    hits: u64,
    inserts: u64,
    stale_refused: u64,
    fills_refused: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Self) {
        self.lookups += o.lookups;
        self.hits += o.hits;
        self.inserts += o.inserts;
        self.stale_refused += o.stale_refused;
        self.fills_refused += o.fills_refused;
    }
}

struct Shared {
    cache: Arc<LocalCache>,
    ids: Vec<FlagId>,
    /// The source of truth: the highest version handed out per key. A version is handed out
    /// before it is written, so the cache can never hold more than this.
    versions: Vec<AtomicU64>,
}

impl Shared {
    fn flag(&self, key: usize, version: u64) -> FlagDefinition {
        FlagDefinition::new_boolean(self.ids[key].as_str(), "stress", version % 2 == 0)
            .expect("a valid definition")
            .with_version(version)
    }

    fn ttl(rng: &mut Rng) -> Option<Duration> {
        match rng.below(4) {
            0 => None,
            _ => Some(Duration::from_millis(1 + rng.below(50) as u64)),
        }
    }

    fn check_handed_out(&self, key: usize, version: u64) {
        let max = self.versions[key].load(Ordering::SeqCst);
        assert!(
            (1..=max).contains(&version),
            "k{key}: read version {version}, but only 1..={max} were handed out"
        );
    }
}

/// One thread's reads: counts them and checks each version.
struct Reader<'a> {
    shared: &'a Shared,
    counts: Counts,
    /// Phase 1: the highest version this thread has seen per key.
    seen: Option<Vec<u64>>,
}

impl Reader<'_> {
    fn observe(&mut self, key: usize, version: Option<u64>) {
        self.counts.lookups += 1;
        let Some(v) = version else { return };
        self.counts.hits += 1;
        self.shared.check_handed_out(key, v);
        if let Some(seen) = self.seen.as_mut() {
            assert!(
                v >= seen[key],
                "k{key}: read version {v} after version {}",
                seen[key]
            );
            seen[key] = v;
        }
    }

    fn read(&mut self, rng: &mut Rng) {
        let cache = &self.shared.cache;
        let pick = |rng: &mut Rng| {
            if rng.below(2) == 0 {
                rng.below(HOT_KEYS)
            } else {
                rng.below(KEYS)
            }
        };
        match rng.below(10) {
            0..=4 => {
                let key = pick(rng);
                let v = cache
                    .get_now(self.shared.ids[key].as_str())
                    .map(|f| f.definition.version);
                self.observe(key, v);
            }
            5..=7 => {
                let key = pick(rng);
                let v = cache.get_with(self.shared.ids[key].as_str(), |d| d.version);
                self.observe(key, v);
            }
            _ => {
                // Distinct ids: of two lookups of one id, one may hit and the next miss (the
                // entry evicted in between), and the returned map cannot show which.
                let mut keys: Vec<usize> = (0..1 + rng.below(8)).map(|_| pick(rng)).collect();
                keys.sort_unstable();
                keys.dedup();
                let ids: Vec<FlagId> = keys.iter().map(|&k| self.shared.ids[k].clone()).collect();
                let got = cache.get_many_now(&ids);
                for &key in &keys {
                    let v = got.get(&self.shared.ids[key]).map(|f| f.definition.version);
                    self.observe(key, v);
                }
            }
        }
    }
}

/// Phase 1: this thread owns the keys `k` with `k % THREADS == thread`.
fn monotonic_phase(shared: &Shared, thread: usize, rng: &mut Rng, reader: &mut Reader<'_>) {
    let cache = &shared.cache;
    for _ in 0..OPS_PER_PHASE {
        let own = {
            let k = rng.below(KEYS) / THREADS * THREADS + thread;
            if k >= KEYS { k - THREADS } else { k }
        };
        match rng.below(100) {
            0..=59 => reader.read(rng),
            60..=79 => {
                let v = shared.versions[own].fetch_add(1, Ordering::SeqCst) + 1;
                let result = cache.try_set(&shared.ids[own], shared.flag(own, v), Shared::ttl(rng));
                assert!(
                    result.is_ok(),
                    "k{own}: the only writer's increasing version {v} was refused: {result:?}"
                );
                reader.counts.inserts += 1;
            }
            80..=94 => {
                let ticket = cache.begin_fill(shared.ids[own].as_str());
                let v = shared.versions[own].fetch_add(1, Ordering::SeqCst) + 1;
                let def = Arc::new(shared.flag(own, v));
                match cache.complete_fill(&ticket, def, Shared::ttl(rng)) {
                    FillOutcome::Installed => reader.counts.inserts += 1,
                    // An invalidate (of this key or one sharing its fence stripe) raced with it.
                    FillOutcome::Overtaken => reader.counts.fills_refused += 1,
                    other => panic!("k{own}: fill of the newest version {v}: {other:?}"),
                }
            }
            _ => {
                let key = rng.below(KEYS);
                cache.invalidate_now(shared.ids[key].as_str());
            }
        }
    }
}

/// Phase 2: any thread writes any key; thread 0 swaps the whole set now and then.
fn chaos_phase(shared: &Shared, thread: usize, rng: &mut Rng, reader: &mut Reader<'_>) {
    let cache = &shared.cache;
    for i in 0..OPS_PER_PHASE {
        let key = if rng.below(2) == 0 {
            rng.below(HOT_KEYS)
        } else {
            rng.below(KEYS)
        };
        if thread == 0 && i % 1_500 == 750 {
            swap_all(shared, rng, reader);
            continue;
        }
        match rng.below(100) {
            0..=59 => reader.read(rng),
            60..=79 => {
                let v = shared.versions[key].fetch_add(1, Ordering::SeqCst) + 1;
                match cache.try_set(&shared.ids[key], shared.flag(key, v), Shared::ttl(rng)) {
                    Ok(()) => reader.counts.inserts += 1,
                    // A concurrent writer of this key got a higher version in first.
                    Err(e) if e.kind() == ErrorKind::StaleVersion => {
                        reader.counts.stale_refused += 1;
                    }
                    Err(e) => panic!("k{key}: set of version {v}: {e}"),
                }
            }
            80..=91 => {
                let ticket = cache.begin_fill(shared.ids[key].as_str());
                // A read of the source of truth: the newest version handed out (if any).
                let v = shared.versions[key].load(Ordering::SeqCst).max(1);
                shared.versions[key].fetch_max(v, Ordering::SeqCst);
                match cache.complete_fill(&ticket, Arc::new(shared.flag(key, v)), None) {
                    FillOutcome::Installed => reader.counts.inserts += 1,
                    FillOutcome::Overtaken => reader.counts.fills_refused += 1,
                    FillOutcome::Superseded(have) => assert!(have > v, "superseded by {have}"),
                    other => panic!("k{key}: {other:?}"),
                }
            }
            _ => cache.invalidate_now(shared.ids[key].as_str()),
        }
    }
}

/// A `replace_all` within the capacity, one above it (refused), or a `clear`.
fn swap_all(shared: &Shared, rng: &mut Rng, reader: &mut Reader<'_>) {
    let cache = &shared.cache;
    match rng.below(4) {
        0 => cache.clear_now(),
        1 => {
            let defs: Vec<FlagDefinition> = (0..=CAPACITY)
                .map(|k| shared.flag(k, shared.versions[k].load(Ordering::SeqCst).max(1)))
                .collect();
            let err = cache.replace_all(defs).expect_err("over capacity");
            assert_eq!(err.kind(), ErrorKind::CapacityExceeded);
        }
        _ => {
            let mut keys: Vec<usize> = (0..CAPACITY / 2).map(|_| rng.below(KEYS)).collect();
            keys.sort_unstable();
            keys.dedup();
            let defs: Vec<FlagDefinition> = keys
                .iter()
                .map(|&k| {
                    let v = shared.versions[k].load(Ordering::SeqCst).max(1);
                    shared.versions[k].fetch_max(v, Ordering::SeqCst);
                    shared.flag(k, v)
                })
                .collect();
            cache.replace_all(defs).expect("within capacity");
            reader.counts.inserts += keys.len() as u64;
        }
    }
}

#[test]
fn eight_threads_keep_versions_monotonic_stats_exact_and_size_bounded() {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let cache = Arc::new(
        LocalCache::builder()
            .max_size(CAPACITY)
            .default_ttl(Duration::from_millis(20))
            .build()
            .expect("a valid configuration"),
    );
    let task = {
        let _enter = runtime.enter();
        cache
            .start_cleanup_task(Duration::from_millis(10))
            .expect("inside a runtime")
    };
    let shared = Shared {
        cache,
        ids: (0..KEYS)
            .map(|k| FlagId::new(format!("stress.k{k}")))
            .collect(),
        versions: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
    };
    let barrier = Barrier::new(THREADS);

    let mut total = Counts::default();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (shared, barrier) = (&shared, &barrier);
                s.spawn(move || {
                    let mut rng = Rng::new(0x5eed + thread as u64);
                    let mut reader = Reader {
                        shared,
                        counts: Counts::default(),
                        seen: Some(vec![0; KEYS]),
                    };
                    let phase1 = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        monotonic_phase(shared, thread, &mut rng, &mut reader);
                    }));
                    // Wait even after a failure, so the other threads are not left blocked.
                    barrier.wait();
                    if let Err(panic) = phase1 {
                        std::panic::resume_unwind(panic);
                    }
                    reader.seen = None;
                    chaos_phase(shared, thread, &mut rng, &mut reader);
                    reader.counts
                })
            })
            .collect();
        for h in handles {
            total += h.join().expect("a stress thread panicked");
        }
    });

    let stats = shared.cache.stats_now();
    assert!(
        stats.size <= CAPACITY && shared.cache.len() <= CAPACITY,
        "size {} above capacity {CAPACITY}",
        stats.size
    );
    assert_eq!(
        stats.hits + stats.misses,
        total.lookups,
        "hits + misses must equal the lookups made"
    );
    assert_eq!(stats.hits, total.hits, "hits");
    assert_eq!(stats.inserts, total.inserts, "inserts");
    assert_eq!(
        stats.stale_writes_refused, total.stale_refused,
        "stale writes refused"
    );
    assert_eq!(stats.fills_refused, total.fills_refused, "fills refused");
    assert!(stats.evictions > 0 && stats.expirations > 0, "{stats:?}");

    // Dropping the cache ends the cleanup task (it holds only a `Weak`) and frees the cache.
    let weak = Arc::downgrade(&shared.cache);
    drop(shared);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(task.is_finished() && weak.upgrade().is_none()) {
        assert!(
            Instant::now() < deadline,
            "the cleanup task outlived its cache"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "stress: {} lookups, {stats:?}, {:.1?}",
        total.lookups,
        started.elapsed()
    );
}
