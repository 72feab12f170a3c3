//! No herd after a notice: 16 instances sharing one L2 (a `MemoryStore`, each instance's
//! calls recorded by a wrapper) receive one notice while readers hammer the flag on every
//! instance. Each instance reads L2 once for it, at a random point of `notice_spread`, and its
//! readers never find the flag missing meanwhile.

#![allow(clippy::disallowed_types)]

#[path = "support/wait.rs"]
mod wait;

use flagcache::{
    CachedFlag, FlagCache, FlagDefinition, FlagId, FlagStore, MemoryStore, SetManyOutcome,
    Subscription, TieredCache,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wait::wait_for;

const INSTANCES: usize = 16;
const SPREAD: Duration = Duration::from_millis(40);

/// A `MemoryStore` whose reads of the flag `f` are recorded with their time, and take
/// `delay` each.
#[derive(Clone)]
struct Recorded {
    store: MemoryStore,
    reads_of_f: Arc<Mutex<Vec<Instant>>>,
    delay: Duration,
}

impl FlagStore for Recorded {
    async fn get_many(&self, ids: &[FlagId]) -> flagcache::Result<HashMap<FlagId, CachedFlag>> {
        if ids.iter().any(|id| id.as_str() == "f") {
            self.reads_of_f.lock().unwrap().push(Instant::now());
        }
        tokio::time::sleep(self.delay).await;
        self.store.get_many(ids).await
    }

    async fn set_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> flagcache::Result<SetManyOutcome> {
        self.store.set_many(flags, ttl).await
    }

    async fn fill_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> flagcache::Result<usize> {
        self.store.fill_many(flags, ttl).await
    }

    async fn tombstone_many(&self, ids: &[FlagId], ttl: Duration) -> flagcache::Result<()> {
        self.store.tombstone_many(ids, ttl).await
    }

    async fn clear(&self) -> flagcache::Result<()> {
        self.store.clear().await
    }

    async fn load_all(&self) -> flagcache::Result<Vec<FlagDefinition>> {
        self.store.load_all().await
    }

    async fn publish(&self, notice: &[u8]) -> flagcache::Result<()> {
        self.store.publish(notice).await
    }

    async fn subscribe(&self) -> flagcache::Result<Subscription> {
        self.store.subscribe().await
    }
}

fn def(version: u64) -> FlagDefinition {
    FlagDefinition::new_boolean("f", "A flag", true)
        .unwrap()
        .with_version(version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notice_makes_one_l2_read_per_instance_spread_over_the_window() {
    let store = MemoryStore::new();
    let writer = TieredCache::builder().l2(store.clone()).build().unwrap();
    writer
        .try_set(&FlagId::new("f"), def(1), None)
        .await
        .unwrap();
    let mut fleet = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..INSTANCES {
        let recorded = Recorded {
            store: store.clone(),
            reads_of_f: Arc::default(),
            delay: Duration::ZERO,
        };
        let cache = TieredCache::builder()
            .l2(recorded.clone())
            .l1_ttl(Duration::from_secs(600))
            .notice_spread(SPREAD)
            .build()
            .unwrap();
        tasks.push(cache.start_backplane().unwrap());
        wait_for("the subscription", || {
            cache.tiered_stats().backplane_subscribed
        })
        .await;
        assert_eq!(
            cache
                .get(&FlagId::new("f"))
                .await
                .unwrap()
                .definition
                .version,
            1
        );
        fleet.push((cache, recorded));
    }

    // Readers on every instance, on threads of their own: the evaluators' `get_with`, and an
    // awaiting `get` on the runtime.
    let stop = Arc::new(AtomicBool::new(false));
    let missing = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = fleet
        .iter()
        .map(|(cache, _)| {
            let (cache, stop, missing) = (cache.clone(), stop.clone(), missing.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if cache.get_with("f", |d| d.version).is_none() {
                        missing.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::yield_now();
                }
            })
        })
        .collect();
    let awaiting: Vec<_> = fleet
        .iter()
        .map(|(cache, _)| {
            let (cache, stop) = (cache.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    assert!(cache.get(&FlagId::new("f")).await.is_some());
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for (_, recorded) in &fleet {
        recorded.reads_of_f.lock().unwrap().clear();
    }

    let written = Instant::now();
    writer
        .try_set(&FlagId::new("f"), def(2), None)
        .await
        .unwrap();
    for (cache, _) in &fleet {
        wait_for("v2 in every L1", || {
            cache.l1().get_now("f").map(|f| f.definition.version) == Some(2)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    for a in awaiting {
        a.await.unwrap();
    }

    let reads: Vec<Vec<Instant>> = fleet
        .iter()
        .map(|(_, r)| r.reads_of_f.lock().unwrap().clone())
        .collect();
    let per_instance: Vec<usize> = reads.iter().map(Vec::len).collect();
    let mut at: Vec<u128> = reads
        .iter()
        .flatten()
        .map(|t| t.duration_since(written).as_micros())
        .collect();
    at.sort_unstable();
    eprintln!("L2 reads of f per instance: {per_instance:?}; at (us after the write): {at:?}");
    assert!(
        per_instance.iter().all(|&n| n == 1),
        "one L2 read per instance: {per_instance:?}"
    );
    assert_eq!(
        missing.load(Ordering::Relaxed),
        0,
        "a reader found f missing"
    );
    let range = Duration::from_micros((at[at.len() - 1] - at[0]) as u64);
    assert!(
        range >= SPREAD / 4,
        "the {INSTANCES} reads span {range:?}: not spread over {SPREAD:?}"
    );
    let stale: u64 = fleet
        .iter()
        .map(|(c, _)| c.tiered_stats().stale_serves)
        .sum();
    assert!(stale > 0, "the superseded copy is served, counted as stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_notice_during_the_spread_keeps_serving_the_copy_and_one_reload_brings_the_last() {
    let store = MemoryStore::new();
    let writer = TieredCache::builder().l2(store.clone()).build().unwrap();
    let f = FlagId::new("f");
    writer.try_set(&f, def(1), None).await.unwrap();
    // A slow L2 (100 ms a read) and a long window: the second notice comes while the first
    // one's reload is pending.
    let recorded = Recorded {
        store: store.clone(),
        reads_of_f: Arc::default(),
        delay: Duration::from_millis(100),
    };
    // At most one pending reload (as many as flags remembered): the flag's own second notice
    // is still taken.
    let reader = TieredCache::builder()
        .l2(recorded.clone())
        .l1_ttl(Duration::from_secs(600))
        .notice_spread(Duration::from_millis(500))
        .remembered_flags(1)
        .build()
        .unwrap();
    let _task = reader.start_backplane().unwrap();
    wait_for("the subscription", || {
        reader.tiered_stats().backplane_subscribed
    })
    .await;
    assert_eq!(reader.get(&f).await.unwrap().definition.version, 1);
    recorded.reads_of_f.lock().unwrap().clear();

    writer.try_set(&f, def(2), None).await.unwrap();
    wait_for("the first notice", || {
        reader.tiered_stats().notices_received == 1
    })
    .await;
    assert_eq!(
        reader.get_with("f", |d| d.version),
        Some(1),
        "the copy, as stale"
    );
    writer.try_set(&f, def(3), None).await.unwrap();
    wait_for("the second notice", || {
        reader.tiered_stats().notices_received == 2
    })
    .await;
    assert_eq!(
        reader.get_with("f", |d| d.version),
        Some(1),
        "the copy is still served after a second notice"
    );
    // `get` waits for the reload, which brings the last version.
    assert_eq!(reader.get(&f).await.unwrap().definition.version, 3);
    assert_eq!(reader.get_with("f", |d| d.version), Some(3));
    let reads = recorded.reads_of_f.lock().unwrap().len();
    assert!(reads <= 2, "{reads} L2 reads for two notices");
}
