//! The tiered layer used as a hostile user would: races of writes, invalidates, clears and
//! notices with loads in flight (including the negative cache and the retry throttle they
//! record), warm-up against concurrent writes, odd batches, panicking sources, cancellation
//! storms and a million distinct ids. Each test was a failing probe of an adversarial review
//! before its fix. Real SQLite (L3), `MemoryStore` (L2); every loop bounded in count and time.

#![allow(clippy::disallowed_types)]

#[path = "support/sources.rs"]
mod sources;

use flagcache::{
    CachedFlag, Clock, FlagCache, FlagDefinition, FlagId, FlagSource, FlagStore, MemoryStore,
    MockClock, SetManyOutcome, Subscription, TieredCache,
};
use sources::{Db, Gated, def};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            eprintln!("gave up waiting for {what}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

fn instance(l2: &MemoryStore, source: impl FlagSource) -> TieredCache {
    TieredCache::builder()
        .l2(l2.clone())
        .source(source)
        .l1_ttl(Duration::from_secs(600))
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. A load begun before an invalidate (or a notice) records nothing it learned after it: no
//    negative-cache or retry deadline, so a read that starts after the invalidate loads afresh.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_begun_before_invalidate_does_not_negative_cache_the_flag() {
    let db = Db::new("probe-neg-poison");
    let gated = Gated::new(db.source.clone());
    let cache = TieredCache::builder()
        .source(gated.clone())
        .negative_ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    let f = FlagId::new("f");

    // A reader's load found no row for f and is slow to come back.
    let early = tokio::spawn({
        let (cache, f) = (cache.clone(), f.clone());
        async move { cache.get(&f).await }
    });
    gated.load_started().await;
    // Cache-aside: the flag is created in the database, then invalidated.
    db.source.upsert(&def("f", 1)).unwrap();
    cache.invalidate(&f).await;
    gated.release(1);
    assert!(
        early.await.unwrap().is_none(),
        "the early read may say absent"
    );

    // A read that starts after invalidate returned must load afresh.
    gated.open();
    let late = tokio::time::timeout(Duration::from_secs(5), cache.get(&f))
        .await
        .unwrap();
    assert_eq!(
        late.map(|c| c.definition.version),
        Some(1),
        "a read after invalidate returned got the negative answer of a load begun before it: {:?}",
        cache.tiered_stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_begun_before_invalidate_does_not_throttle_the_flag() {
    let db = Db::new("probe-cooldown-poison");
    db.source.upsert(&def("f", 1)).unwrap();
    let gated = Gated::new(db.source.clone());
    let cache = TieredCache::builder()
        .source(gated.clone())
        .source_timeout(Duration::from_millis(300))
        .retry_after(Duration::from_secs(30))
        .build()
        .unwrap();
    let f = FlagId::new("f");

    // A reader's load hangs in the source (it will time out).
    let early = tokio::spawn({
        let (cache, f) = (cache.clone(), f.clone());
        async move { cache.get(&f).await }
    });
    gated.load_started().await;
    // The operator fixes the row and invalidates; then the early load times out.
    db.source.upsert(&def("f", 2)).unwrap();
    cache.invalidate(&f).await;
    assert!(early.await.unwrap().is_none());

    gated.open();
    let before = db.source.queries();
    let late = tokio::time::timeout(Duration::from_secs(5), cache.get(&f))
        .await
        .unwrap();
    assert_eq!(
        late.map(|c| c.definition.version),
        Some(2),
        "a read after invalidate returned was throttled by a load begun before it \
         (source asked {} times): {:?}",
        db.source.queries() - before,
        cache.tiered_stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_notice_during_an_absent_load_leaves_no_negative_answer() {
    let db = Db::new("probe-notice-neg");
    let l2 = MemoryStore::new();
    let gated = Gated::new(db.source.clone());
    let a = instance(&l2, db.source.clone());
    let b = TieredCache::builder()
        .l2(l2.clone())
        .source(gated.clone())
        .negative_ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    let _task = b.start_backplane().unwrap();
    assert!(
        wait_for("subscription", Duration::from_secs(5), || b
            .tiered_stats()
            .backplane_subscribed)
        .await
    );
    let f = FlagId::new("f");
    // B loads f, which exists nowhere yet; the database answered "no row" and is slow.
    let early = tokio::spawn({
        let (b, f) = (b.clone(), f.clone());
        async move { b.get(&f).await }
    });
    gated.load_started().await;
    // A creates f (database, then cache): L2 holds v1, B is told.
    db.source.upsert(&def("f", 1)).unwrap();
    a.try_set(&f, def("f", 1), None).await.unwrap();
    assert!(
        wait_for("notice", Duration::from_secs(5), || b
            .tiered_stats()
            .notices_received
            == 1)
        .await
    );
    gated.release(1);
    let _ = early.await.unwrap();
    gated.open();

    // B heard of v1 before this read started; L2 has v1.
    let late = b.get(&f).await;
    assert_eq!(
        late.map(|c| c.definition.version),
        Some(1),
        "after a Set notice, B answers 'absent' from a negative entry written by the \
         overtaken load: {:?}",
        b.tiered_stats()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. try_set_many: an id given twice is written once at its highest version; one invalid
//    definition does not silence the notices of the stored ones.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_many_with_a_repeated_id_keeps_and_announces_the_highest() {
    let db = Db::new("probe-dup");
    db.source.upsert(&def("f", 1)).unwrap();
    let l2 = MemoryStore::new();
    let (a, b) = (
        instance(&l2, db.source.clone()),
        instance(&l2, db.source.clone()),
    );
    let _task = b.start_backplane().unwrap();
    assert!(
        wait_for("subscription", Duration::from_secs(5), || b
            .tiered_stats()
            .backplane_subscribed)
        .await
    );
    let f = FlagId::new("f");
    assert_eq!(b.get(&f).await.unwrap().definition.version, 1);

    // One batch carrying v3 and then (a retry, a merge) v2 of the same flag.
    db.source.upsert(&def("f", 3)).unwrap();
    let outcome = a
        .try_set_many(
            vec![(f.clone(), def("f", 3)), (f.clone(), def("f", 2))],
            None,
        )
        .await
        .unwrap();
    let in_l2 = l2.get_many(std::slice::from_ref(&f)).await.unwrap();
    let l2_version = in_l2.get(&f).map(|c| c.definition.version);
    eprintln!(
        "outcome {outcome:?}; L2 holds {l2_version:?}; A's L1 {:?}",
        a.l1().get_now("f").map(|c| c.definition.version)
    );
    assert_eq!(l2_version, Some(3));
    // v3 was stored: B must hear of it and drop v1.
    let heard = wait_for("B to drop v1", Duration::from_secs(2), || {
        b.l1()
            .get_now("f")
            .is_none_or(|c| c.definition.version == 3)
    })
    .await;
    assert!(
        heard && outcome.stored >= 1,
        "v3 reached L2 but was reported {outcome:?} and never announced: B still serves v{:?}",
        b.l1().get_now("f").map(|c| c.definition.version)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_many_with_one_invalid_definition_announces_the_stored_ones() {
    let db = Db::new("probe-invalid-batch");
    db.source.upsert(&def("g", 1)).unwrap();
    let l2 = MemoryStore::new();
    let (a, b) = (
        instance(&l2, db.source.clone()),
        instance(&l2, db.source.clone()),
    );
    let _task = b.start_backplane().unwrap();
    assert!(
        wait_for("subscription", Duration::from_secs(5), || b
            .tiered_stats()
            .backplane_subscribed)
        .await
    );
    let g = FlagId::new("g");
    assert_eq!(b.get(&g).await.unwrap().definition.version, 1);

    let mut bad = def("bad", 1);
    bad.name = String::new(); // fails validation
    db.source.upsert(&def("g", 2)).unwrap();
    let result = a
        .try_set_many(
            vec![(g.clone(), def("g", 2)), (FlagId::new("bad"), bad)],
            None,
        )
        .await;
    assert!(result.is_err(), "the invalid one is an error: {result:?}");
    let l2_version = l2
        .get_many(std::slice::from_ref(&g))
        .await
        .unwrap()
        .get(&g)
        .map(|c| c.definition.version);
    assert_eq!(l2_version, Some(2), "g v2 was stored in L2");
    assert_eq!(a.l1().get_now("g").unwrap().definition.version, 2);
    let heard = wait_for("B to drop v1", Duration::from_secs(2), || {
        b.l1()
            .get_now("g")
            .is_none_or(|c| c.definition.version == 2)
    })
    .await;
    assert!(
        heard,
        "g v2 is in L2 and A's L1 but was never announced; B serves v{:?} for its whole TTL: {:?}",
        b.l1().get_now("g").map(|c| c.definition.version),
        a.tiered_stats()
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Warm-up: the log keeps the highest write, records clears, and a cancelled warm-up stops
//    recording.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_replays_the_highest_write_not_the_last() {
    let db = Db::new("probe-warm-lower");
    db.source.upsert(&def("f", 1)).unwrap();
    let gated = Gated::new(db.source.clone()).holding_load_all();
    let cache = TieredCache::builder()
        .source(gated.clone())
        .build()
        .unwrap();
    let f = FlagId::new("f");
    let warm = tokio::spawn({
        let cache = cache.clone();
        async move { cache.warm_up().await }
    });
    gated.load_started().await;
    // While warm-up loads: v3 is accepted, then a late v2 is refused.
    cache.try_set(&f, def("f", 3), None).await.unwrap();
    let refused = cache.try_set(&f, def("f", 2), None).await;
    assert!(refused.is_err(), "v2 < v3 is refused: {refused:?}");
    assert_eq!(cache.l1().get_now("f").unwrap().definition.version, 3);
    gated.release(1);
    warm.await.unwrap().unwrap();

    assert_eq!(
        cache.l1().get_now("f").unwrap().definition.version,
        3,
        "warm-up lowered f from the acknowledged v3 to the refused v2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_during_warm_up_is_not_undone_by_the_swap() {
    let db = Db::new("probe-warm-clear");
    db.source.upsert(&def("f", 1)).unwrap();
    let gated = Gated::new(db.source.clone()).holding_load_all();
    let cache = TieredCache::builder()
        .source(gated.clone())
        .build()
        .unwrap();
    let f = FlagId::new("f");
    let warm = tokio::spawn({
        let cache = cache.clone();
        async move { cache.warm_up().await }
    });
    gated.load_started().await; // warm-up read f v1
    db.source.upsert(&def("f", 2)).unwrap();
    cache.clear().await; // cache-aside for everything
    // (an invalidate of f here would be logged and replayed; a clear is not)
    gated.release(1);
    warm.await.unwrap().unwrap();
    gated.open();

    let read = cache.get(&f).await.unwrap();
    assert_eq!(
        read.definition.version, 2,
        "a read after clear() returned got v1, loaded by the warm-up begun before the clear"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Backplane: notices are split by bytes and leave out ids no flag can have; the subscribed
//    gauge falls with its task.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidate_naming_an_impossible_id_still_reaches_every_instance() {
    let db = Db::new("probe-notice-size");
    db.source.upsert(&def("f", 1)).unwrap();
    let l2 = MemoryStore::new();
    let (a, b) = (
        instance(&l2, db.source.clone()),
        instance(&l2, db.source.clone()),
    );
    let _task = b.start_backplane().unwrap();
    assert!(
        wait_for("subscription", Duration::from_secs(5), || b
            .tiered_stats()
            .backplane_subscribed)
        .await
    );
    let f = FlagId::new("f");
    assert_eq!(b.get(&f).await.unwrap().definition.version, 1);

    // Cache-aside for f, batched with an id taken from a request (FlagId::new takes any
    // string): default settings, A's own notice.
    db.source.upsert(&def("f", 2)).unwrap();
    let junk = FlagId::new("j".repeat(300 * 1024));
    a.invalidate_many(&[f.clone(), junk]).await;
    assert!(a.tiered_stats().notices_sent >= 1);
    let _ = wait_for("B to see the notice", Duration::from_secs(2), || {
        let s = b.tiered_stats();
        s.notices_received + s.notices_bad >= 1
    })
    .await;
    let s = b.tiered_stats();
    let seen = b.get(&f).await.unwrap().definition.version;
    assert_eq!(
        seen, 2,
        "A's invalidate of f returned but B dropped the notice (notices_bad {}, no \
         revalidation) and serves v{seen} for its whole L1 TTL",
        s.notices_bad
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backplane_subscribed_falls_when_the_task_is_stopped() {
    let l2 = MemoryStore::new();
    let cache = TieredCache::builder().l2(l2.clone()).build().unwrap();
    let task = cache.start_backplane().unwrap();
    assert!(
        wait_for("subscription", Duration::from_secs(5), || cache
            .tiered_stats()
            .backplane_subscribed)
        .await
    );
    task.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !cache.tiered_stats().backplane_subscribed,
        "the backplane task is gone (and MemoryStore has {} live subscriber(s)) but \
         TieredStats::backplane_subscribed still says true",
        {
            // publishing drops closed senders
            l2.publish(b"{}").await.unwrap();
            l2.stats().subscribers
        }
    );
}

// ---------------------------------------------------------------------------------------------
// 5. A panicking source is a failure like any other: stale serving and the retry throttle.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Panicking {
    calls: Arc<AtomicU64>,
}

impl FlagSource for Panicking {
    async fn load(&self, _id: &FlagId) -> flagcache::Result<Option<FlagDefinition>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        panic!("hostile source");
    }
    async fn load_all(&self) -> flagcache::Result<Vec<FlagDefinition>> {
        panic!("hostile source");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_source_fails_over_to_stale() {
    let mock = MockClock::new();
    let source = Panicking::default();
    let cache = TieredCache::builder()
        .source(source.clone())
        .clock(Clock::mock(&mock))
        .l1_ttl(Duration::from_secs(10))
        .max_stale(Duration::from_secs(600))
        .build()
        .unwrap();
    let f = FlagId::new("f");
    cache.l1().try_set(&f, def("f", 1), None).unwrap();
    mock.advance(Duration::from_secs(20)); // expired, well within max_stale

    let read = tokio::spawn({
        let (cache, f) = (cache.clone(), f.clone());
        async move { cache.get(&f).await }
    })
    .await;
    let background_before = cache.tiered_stats().background_loads;
    // get_now: each miss starts another panicking load; none is throttled.
    for _ in 0..20 {
        let _ = cache.get_now(&f);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = wait_for("background loads to end", Duration::from_secs(2), || {
        cache.tiered_stats().background_loads == 0
    })
    .await;
    let calls = source.calls.load(Ordering::Relaxed);
    eprintln!(
        "get: {:?}; source calls {calls}; background_loads {background_before} -> {}; {:?}",
        read.as_ref()
            .map(|r| r.as_ref().map(|c| c.definition.version)),
        cache.tiered_stats().background_loads,
        cache.tiered_stats()
    );
    assert_eq!(cache.tiered_stats().background_loads, 0, "permits leaked");
    assert!(
        matches!(&read, Ok(Some(c)) if c.definition.version == 1),
        "get panicked instead of serving the stale v1 (fail-safe)"
    );
    assert!(
        calls <= 2,
        "the panicking source was called {calls} times: a panic is not throttled by retry_after"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. An L2 answering under another id: rejected, and not counted as a fill.
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Lying {
    inner: MemoryStore,
}

impl FlagStore for Lying {
    async fn get_many(&self, ids: &[FlagId]) -> flagcache::Result<HashMap<FlagId, CachedFlag>> {
        Ok(ids
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    CachedFlag::new(Arc::new(def("someone-else", 9))),
                )
            })
            .collect())
    }
    async fn set_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> flagcache::Result<SetManyOutcome> {
        self.inner.set_many(flags, ttl).await
    }
    async fn fill_many(
        &self,
        flags: &[(FlagId, FlagDefinition)],
        ttl: Duration,
    ) -> flagcache::Result<usize> {
        self.inner.fill_many(flags, ttl).await
    }
    async fn tombstone_many(&self, ids: &[FlagId], ttl: Duration) -> flagcache::Result<()> {
        self.inner.tombstone_many(ids, ttl).await
    }
    async fn clear(&self) -> flagcache::Result<()> {
        self.inner.clear().await
    }
    async fn load_all(&self) -> flagcache::Result<Vec<FlagDefinition>> {
        self.inner.load_all().await
    }
    async fn publish(&self, notice: &[u8]) -> flagcache::Result<()> {
        self.inner.publish(notice).await
    }
    async fn subscribe(&self) -> flagcache::Result<Subscription> {
        self.inner.subscribe().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l2_answers_under_another_id_are_not_counted_as_fills() {
    let db = Db::new("probe-lying-l2");
    db.source.upsert(&def("f", 1)).unwrap();
    let cache = TieredCache::builder()
        .l2(Lying {
            inner: MemoryStore::new(),
        })
        .source(db.source.clone())
        .build()
        .unwrap();
    let got = cache.get(&FlagId::new("f")).await.unwrap();
    assert_eq!(
        got.definition.id.as_str(),
        "f",
        "the wrong answer is not served"
    );
    let s = cache.tiered_stats();
    assert_eq!(
        (s.l2_fills, s.l3_fills),
        (0, 1),
        "L2's answer was rejected and L3 filled, yet l2_fills counts it: {s:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// What held up (kept as regression probes).
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancellation_storm_leaves_no_stuck_flight_nor_permit() {
    let db = Db::new("probe-cancel-storm");
    for i in 0..20 {
        db.source.upsert(&def(&format!("f{i}"), 1)).unwrap();
    }
    let l2 = MemoryStore::new();
    l2.set_delay(Duration::from_micros(700));
    let cache = TieredCache::builder()
        .l2(l2.clone())
        .source(db.source.clone())
        .l1_ttl(Duration::from_millis(20))
        .max_background_loads(8)
        .build()
        .unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while started.elapsed() < Duration::from_secs(3) {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let id = FlagId::new(format!("f{}", (i >> 33) % 20));
                let cut = Duration::from_micros((i >> 20) % 1500);
                match (i >> 40) % 6 {
                    0 => drop(tokio::time::timeout(cut, cache.get(&id)).await),
                    1 => drop(tokio::time::timeout(cut, cache.get_many(&[id.clone(), id])).await),
                    2 => drop(tokio::time::timeout(cut, cache.invalidate(&id)).await),
                    3 => drop(
                        tokio::time::timeout(
                            cut,
                            cache.try_set_many(vec![(id.clone(), def(id.as_str(), 1))], None),
                        )
                        .await,
                    ),
                    4 => drop(tokio::time::timeout(cut, cache.warm_up()).await),
                    _ => drop(cache.get_now(&id)),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    l2.set_delay(Duration::ZERO);
    assert!(
        wait_for(
            "background loads to drain",
            Duration::from_secs(5),
            || cache.tiered_stats().background_loads == 0
        )
        .await,
        "{:?}",
        cache.tiered_stats()
    );
    for i in 0..20 {
        let got = tokio::time::timeout(
            Duration::from_secs(2),
            cache.get(&FlagId::new(format!("f{i}"))),
        )
        .await
        .expect("no stuck flight");
        assert!(got.is_some());
    }
}

// ---------------------------------------------------------------------------------------------
// 7. A load in flight when `clear` runs writes nothing back after it: its L1 fill is overtaken
//    (the clear is a snapshot swap), and its write-back is checked again just before it is
//    sent. A write-back already on the wire can still land after a clear (no ids to
//    tombstone): see `docs/decisions.md`.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_in_flight_during_clear_writes_nothing_back_after_it() {
    let db = Db::new("probe-clear-writeback");
    db.source.upsert(&def("f", 1)).unwrap();
    let l2 = MemoryStore::new();
    let gated = Gated::new(db.source.clone());
    let cache = TieredCache::builder()
        .l2(l2.clone())
        .source(gated.clone())
        .build()
        .unwrap();
    let f = FlagId::new("f");
    // A read has loaded v1 from the database and is slow to come back.
    let early = tokio::spawn({
        let (cache, f) = (cache.clone(), f.clone());
        async move { cache.get(&f).await }
    });
    gated.load_started().await;
    // The operator updates the database and clears the caches.
    db.source.upsert(&def("f", 2)).unwrap();
    cache.clear().await;
    gated.release(1);
    let _ = early.await.unwrap();
    gated.open();
    let in_l2 = l2.get_many(std::slice::from_ref(&f)).await.unwrap();
    assert!(in_l2.is_empty(), "nothing written back after the clear");
    assert_eq!(cache.get(&f).await.unwrap().definition.version, 2);
}

// ---------------------------------------------------------------------------------------------
// 8. An answer filed under an id not asked makes the unanswered ids of the batch failures, not
//    "absent" (as a single load of such an id is).
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misfiled_batch_answer_does_not_negative_cache_the_asked_id() {
    let db = Db::case_insensitive("probe-nocase");
    db.source.upsert(&def("checkout", 7)).unwrap();
    let cache = TieredCache::builder()
        .source(db.source.clone())
        .negative_ttl(Duration::from_secs(60))
        .retry_after(Duration::from_secs(1))
        .build()
        .unwrap();
    let asked = FlagId::new("CHECKOUT");
    assert!(
        cache
            .get_many(&[asked.clone(), FlagId::new("other")])
            .await
            .is_empty()
    );
    let s1 = cache.tiered_stats();
    assert!(cache.get(&asked).await.is_none());
    let s2 = cache.tiered_stats();
    assert_eq!(
        s2.negative_hits - s1.negative_hits,
        0,
        "the source answered for CHECKOUT (misfiled: l3_rejected {}), which the architecture \
         says is a failure of that flag; it was negative-cached as absent for negative_ttl instead",
        s1.l3_rejected
    );
}
