//! `TieredCache::readiness()`, what a readiness probe reads: warmed up, L2 reachable, the
//! source's last failure. (The tracing spans are in `tracing_spans.rs`, a binary of their
//! own: the subscriber is global.)

#[path = "support/sources.rs"]
mod sources;
#[path = "support/wait.rs"]
mod wait;

use flagcache::{FlagCache, FlagId, MemoryStore, TieredCache};
use sources::{Db, Gated, def};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_warm_up_l2_and_the_source() {
    let db = Db::new("readiness");
    db.source.upsert(&def("f", 1)).unwrap();
    let gated = Gated::new(db.source.clone());
    gated.open();
    let l2 = MemoryStore::new();
    let cache = TieredCache::builder()
        .l2(l2.clone())
        .source(gated.clone())
        .source_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let r = cache.readiness();
    assert!(
        !r.warmed_up && r.l2_reachable.is_none() && !r.is_ready(),
        "{r:?}"
    );
    assert!(r.last_source_error.is_none());

    cache.warm_up().await.unwrap();
    assert!(cache.readiness().is_ready());

    // L2 fails: a miss's L2 read says it is unreachable, and the cache is not ready.
    l2.set_failing(true);
    let _ = cache.get(&FlagId::new("absent-1")).await;
    let r = cache.readiness();
    assert_eq!(r.l2_reachable, Some(false), "{r:?}");
    assert!(!r.is_ready());
    l2.set_failing(false);
    let _ = cache.get(&FlagId::new("absent-2")).await;
    assert_eq!(cache.readiness().l2_reachable, Some(true));
    assert!(cache.readiness().is_ready());

    // The source hangs: its timeout is recorded, with when.
    let gated_closed = Gated::new(db.source.clone());
    let hanging = TieredCache::builder()
        .source(gated_closed)
        .source_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let before = std::time::SystemTime::now();
    let _ = hanging.get(&FlagId::new("f")).await;
    let e = hanging.readiness().last_source_error.expect("recorded");
    assert!(e.message.contains("took over"), "{e:?}");
    assert!(e.at >= before);
    assert_eq!(hanging.readiness().l2_reachable, None, "no L2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_sees_l2_back_without_waiting_for_a_miss() {
    let l2 = MemoryStore::new();
    let cache = TieredCache::builder().l2(l2.clone()).build().unwrap();
    cache.warm_up().await.unwrap();
    l2.set_failing(true);
    let _ = cache.get(&FlagId::new("absent")).await;
    assert!(
        !cache.check_readiness().await.is_ready(),
        "L2 still failing"
    );
    l2.set_failing(false);
    // No traffic meanwhile (an instance out of rotation): the probe itself asks L2.
    let r = cache.check_readiness().await;
    assert_eq!(r.l2_reachable, Some(true), "{r:?}");
    assert!(r.is_ready());
}
