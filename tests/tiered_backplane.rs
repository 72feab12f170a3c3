//! The backplane between instances of one process sharing a `MemoryStore` (L2) and a real
//! SQLite source: a notice fences loads in flight, notices are bounded, and a subscription that
//! ends is made again and L1 revalidated. Over real Redis pub/sub: `tiered_redis.rs`.

#[path = "support/sources.rs"]
mod sources;
#[path = "support/wait.rs"]
mod wait;

use flagcache::{FlagCache, FlagId, FlagStore, MemoryStore, TieredCache};
use sources::{Db, Gated, def};
use std::time::Duration;
use wait::wait_for;

fn instance(l2: &MemoryStore, source: impl flagcache::FlagSource) -> TieredCache {
    TieredCache::builder()
        .l2(l2.clone())
        .source(source)
        .l1_ttl(Duration::from_secs(600))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_fences_a_load_in_flight_of_a_flag_not_in_l1() {
    let db = Db::new("backplane-fence");
    db.source.upsert(&def("f", 1)).unwrap();
    let l2 = MemoryStore::new();
    let gated = Gated::new(db.source.clone());
    let (a, b) = (
        instance(&l2, db.source.clone()),
        instance(&l2, gated.clone()),
    );
    let _task = b.start_backplane().unwrap();
    wait_for("B's subscription", || b.tiered_stats().backplane_subscribed).await;

    // B starts loading f (not in its L1): it read v1 from the database, and is slow.
    let f = FlagId::new("f");
    let early = tokio::spawn({
        let (b, f) = (b.clone(), f.clone());
        async move { b.get(&f).await }
    });
    gated.load_started().await;
    // Meanwhile A writes v2 (database, then cache) and B hears of it.
    db.source.upsert(&def("f", 2)).unwrap();
    a.try_set(&f, def("f", 2), None).await.unwrap();
    wait_for("B to receive the notice", || {
        b.tiered_stats().notices_received == 1
    })
    .await;
    gated.release(1);
    assert!(early.await.unwrap().is_some());

    assert!(
        b.l1()
            .get_now("f")
            .is_none_or(|c| c.definition.version == 2),
        "the overtaken load did not install v1"
    );
    gated.open();
    assert_eq!(b.get(&f).await.unwrap().definition.version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_over_the_size_limit_is_dropped_and_counted() {
    let db = Db::new("backplane-huge");
    let l2 = MemoryStore::new();
    let b = TieredCache::builder()
        .l2(l2.clone())
        .source(db.source.clone())
        .max_notice_bytes(64 * 1024)
        .build()
        .unwrap();
    let _task = b.start_backplane().unwrap();
    wait_for("B's subscription", || b.tiered_stats().backplane_subscribed).await;
    b.l1()
        .try_set(&FlagId::new("victim"), def("victim", 1), None)
        .unwrap();

    // A well-formed notice of 40 000 ids (about 600 KB), one of them cached here.
    let mut ids: Vec<String> = (0..40_000).map(|i| format!("flag-{i:06}")).collect();
    ids.push("victim".into());
    let huge =
        serde_json::json!({"v": 1, "origin": "elsewhere", "action": "invalidate", "ids": ids});
    l2.publish(&serde_json::to_vec(&huge).unwrap())
        .await
        .unwrap();
    wait_for("the notice to be counted", || {
        b.tiered_stats().notices_bad == 1
    })
    .await;
    assert_eq!(b.tiered_stats().notices_received, 0);
    assert!(b.l1().get_now("victim").is_some(), "not applied");

    // A notice within the limit is applied whole, however many ids it names: the victim's copy
    // is superseded (and reloaded, so a copy cached later stands where it was).
    let cached_at = b.l1().get_now("victim").unwrap().cached_at;
    let ids: Vec<String> = (0..3_000)
        .map(|i| format!("f{i}"))
        .chain(["victim".into()])
        .collect();
    let fits =
        serde_json::json!({"v": 1, "origin": "elsewhere", "action": "invalidate", "ids": ids});
    l2.publish(&serde_json::to_vec(&fits).unwrap())
        .await
        .unwrap();
    wait_for("the notice to be applied", || {
        b.l1().get_now("victim").map(|f| f.cached_at) != Some(cached_at)
    })
    .await;
    assert_eq!(b.tiered_stats().notices_received, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_subscription_is_made_again_and_l1_revalidated() {
    let db = Db::new("backplane-revalidate");
    db.source.upsert(&def("f", 1)).unwrap();
    let l2 = MemoryStore::new();
    let b = instance(&l2, db.source.clone());
    let _task = b.start_backplane().unwrap();
    wait_for("B's subscription", || b.tiered_stats().backplane_subscribed).await;
    let f = FlagId::new("f");
    assert_eq!(b.get(&f).await.unwrap().definition.version, 1);

    // A change B cannot hear of (written to L2 directly), then the link drops.
    l2.set_many(&[(f.clone(), def("f", 5))], Duration::from_secs(600))
        .await
        .unwrap();
    l2.end_subscriptions();
    wait_for("B to revalidate", || {
        b.l1()
            .get_now("f")
            .is_some_and(|c| c.definition.version == 5)
    })
    .await;
    let stats = b.tiered_stats();
    assert!(
        stats.subscriptions >= 2 && stats.revalidations >= 1,
        "{stats:?}"
    );
    wait_for("B subscribed again", || {
        b.tiered_stats().backplane_subscribed
    })
    .await;
}

/// The revalidation after a re-subscription may take long (every L1 entry through L2 and a slow
/// source); notices arriving meanwhile are applied at once, not after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_are_applied_while_a_revalidation_waits_on_the_source() {
    let db = Db::new("backplane-revalidate-slow");
    db.source.upsert(&def("f", 1)).unwrap();
    let l2 = MemoryStore::new();
    let gated = Gated::new(db.source.clone());
    let a = instance(&l2, db.source.clone());
    let b = TieredCache::builder()
        .l2(l2.clone())
        .source(gated.clone())
        .l1_ttl(Duration::from_secs(600))
        .source_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let _task = b.start_backplane().unwrap();
    wait_for("B's subscription", || b.tiered_stats().backplane_subscribed).await;
    // In B's L1 only: its revalidation must ask the (held) source.
    let f = FlagId::new("f");
    b.l1().try_set(&f, def("f", 1), None).unwrap();

    l2.end_subscriptions();
    gated.load_started().await;
    // B's revalidation now waits on the source; A writes v2 and B hears of it.
    db.source.upsert(&def("f", 2)).unwrap();
    a.try_set(&f, def("f", 2), None).await.unwrap();
    wait_for("B to drop its copy while revalidating", || {
        b.l1()
            .get_now("f")
            .is_none_or(|c| c.definition.version == 2)
    })
    .await;
    gated.open();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_drop_each_others_stale_copies_and_ignore_their_own() {
    let db = Db::new("backplane-two");
    db.source.upsert(&def("f", 1)).unwrap();
    let l2 = MemoryStore::new();
    let (a, b) = (
        instance(&l2, db.source.clone()),
        instance(&l2, db.source.clone()),
    );
    let _tasks = (a.start_backplane().unwrap(), b.start_backplane().unwrap());
    wait_for("both subscriptions", || {
        a.tiered_stats().backplane_subscribed && b.tiered_stats().backplane_subscribed
    })
    .await;
    let f = FlagId::new("f");
    for cache in [&a, &b] {
        assert_eq!(cache.get(&f).await.unwrap().definition.version, 1);
    }
    a.try_set(&f, def("f", 2), None).await.unwrap();
    wait_for("B to drop v1", || {
        b.l1().get_now("f").map(|f| f.definition.version) != Some(1)
    })
    .await;
    assert_eq!(b.get(&f).await.unwrap().definition.version, 2, "from L2");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        a.tiered_stats().notices_received,
        0,
        "its own notice ignored"
    );
    assert_eq!(a.l1().get_now("f").unwrap().definition.version, 2);
    // A notice of a version B already holds changes nothing.
    b.try_set(&f, def("f", 2), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(a.l1().get_now("f").unwrap().definition.version, 2);
}

/// `notices_received` counts a notice once L1 has applied all of it: a reader that sees the
/// count finds every id superseded, the last of hundreds too (B yields to the runtime every 64
/// ids it applies, and its reader runs on the other worker meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_is_counted_once_every_id_in_it_is_applied() {
    let db = Db::new("backplane-counted");
    let ids: Vec<FlagId> = (0..500).map(|i| FlagId::new(format!("f{i:03}"))).collect();
    for id in &ids {
        db.source.upsert(&def(id.as_str(), 1)).unwrap();
    }
    let l2 = MemoryStore::new();
    let (a, b) = (
        instance(&l2, db.source.clone()),
        instance(&l2, db.source.clone()),
    );
    let _task = b.start_backplane().unwrap();
    wait_for("the subscription", || b.tiered_stats().backplane_subscribed).await;
    assert_eq!(b.get_many_flags(&ids).await.len(), ids.len());
    let last = ids.last().unwrap();
    for id in &ids {
        db.source.upsert(&def(id.as_str(), 2)).unwrap();
    }
    // One notice of 500 ids, the last one last.
    a.invalidate_many(&ids).await;
    let started = std::time::Instant::now();
    while b.tiered_stats().notices_received == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "no notice");
        tokio::task::yield_now().await;
    }
    assert_ne!(
        b.l1().get_now(last.as_str()).map(|f| f.definition.version),
        Some(1),
        "the notice was counted before its last id was applied"
    );
}
