//! `TieredCache` never serves what its consistency model says it never serves: a read that
//! starts after an invalidate (or a write) returned never receives the dropped definition, and
//! versions never go backwards, warm-up included. On a real SQLite source; L2 is a shared
//! `MemoryStore` where a test needs one.

#[path = "support/sources.rs"]
mod sources;

use flagcache::{FlagCache, FlagId, TieredCache};
use sources::{Db, Gated, def};
use std::time::Duration;

/// A `get` of `id` on a task of its own.
fn spawn_get(
    cache: &TieredCache,
    id: &FlagId,
) -> tokio::task::JoinHandle<Option<flagcache::CachedFlag>> {
    let (cache, id) = (cache.clone(), id.clone());
    tokio::spawn(async move { cache.get(&id).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_invalidate_returned_never_joins_a_load_begun_before() {
    let db = Db::new("consistency-cache-aside");
    db.source.upsert(&def("f", 1)).unwrap();
    let gated = Gated::new(db.source.clone());
    let cache = TieredCache::builder()
        .source(gated.clone())
        .build()
        .unwrap();
    let id = FlagId::new("f");

    // A reader's load has read v1 from the database and is slow to come back.
    let early = spawn_get(&cache, &id);
    gated.load_started().await;

    // Cache-aside: update the database, invalidate, then read.
    db.source.upsert(&def("f", 2)).unwrap();
    cache.invalidate(&id).await;
    let late = spawn_get(&cache, &id);
    // The late reader loads afresh (it does not wait on the early load).
    tokio::time::timeout(Duration::from_secs(5), gated.load_started())
        .await
        .expect("the late read started a load of its own");
    gated.release(2);

    assert_eq!(late.await.unwrap().unwrap().definition.version, 2);
    // The early reader began before the invalidate: either answer is allowed for it.
    assert!(early.await.unwrap().is_some());
    assert_eq!(
        cache.l1().get_now("f").unwrap().definition.version,
        2,
        "L1 holds what the late load read, never the overtaken one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_a_write_returned_never_joins_a_load_begun_before() {
    let db = Db::new("consistency-write");
    db.source.upsert(&def("f", 1)).unwrap();
    let gated = Gated::new(db.source.clone());
    let cache = TieredCache::builder()
        .source(gated.clone())
        .build()
        .unwrap();
    let id = FlagId::new("f");
    let early = spawn_get(&cache, &id);
    gated.load_started().await;
    cache.try_set(&id, def("f", 5), None).await.unwrap();
    // Served from L1 at once; and a miss after an L1 drop would load afresh, not join.
    assert_eq!(cache.get(&id).await.unwrap().definition.version, 5);
    cache.l1().invalidate_now("f");
    db.source.upsert(&def("f", 5)).unwrap();
    let late = spawn_get(&cache, &id);
    tokio::time::timeout(Duration::from_secs(5), gated.load_started())
        .await
        .expect("a fresh load");
    gated.release(2);
    assert_eq!(late.await.unwrap().unwrap().definition.version, 5);
    assert!(early.await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_never_lowers_a_version_written_while_it_loaded() {
    let db = Db::new("consistency-warm-up");
    db.source.upsert(&def("f", 4)).unwrap();
    db.source.upsert(&def("g", 1)).unwrap();
    let gated = Gated::new(db.source.clone()).holding_load_all();
    let cache = TieredCache::builder()
        .source(gated.clone())
        .build()
        .unwrap();

    let warming = tokio::spawn({
        let cache = cache.clone();
        async move { cache.warm_up().await }
    });
    // load_all has read f at v4 and g; meanwhile f is written at v5, g is invalidated, and a
    // new flag is created.
    gated.load_started().await;
    cache
        .try_set(&FlagId::new("f"), def("f", 5), None)
        .await
        .unwrap();
    cache.invalidate(&FlagId::new("g")).await;
    cache
        .try_set(&FlagId::new("new"), def("new", 1), None)
        .await
        .unwrap();
    gated.release(1);
    assert_eq!(warming.await.unwrap().unwrap(), 2);

    let l1 = cache.l1();
    assert_eq!(
        l1.get_now("f").unwrap().definition.version,
        5,
        "not v4 again"
    );
    assert!(l1.get_now("g").is_none(), "the invalidate stands");
    assert!(
        l1.get_now("new").is_some(),
        "the write during warm-up stands"
    );
}
