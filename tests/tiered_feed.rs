//! The source's change feed, followed once per fleet: instances of one process sharing a
//! `MemoryStore` (L2, its leases and its backplane) and a real SQLite source that announces its
//! changes. Over PostgreSQL's `LISTEN`/`NOTIFY` and Redis: `postgres_source.rs`.

#![allow(clippy::disallowed_types)]

#[path = "support/sources.rs"]
mod sources;
#[path = "support/wait.rs"]
mod wait;

use flagcache::{
    BackplaneTask, Change, ChangeFeedTask, ErrorKind, FlagCache, FlagId, FlagSource, FlagStore,
    MemoryStore, TieredCache,
};
use sources::{Announcing, Db, Rewriting, def};
use std::time::Duration;
use wait::wait_for;

fn instance<S: FlagSource + Clone>(
    l2: Option<&MemoryStore>,
    source: &Announcing<S>,
) -> TieredCache {
    let builder = TieredCache::builder()
        .source(source.clone())
        .l1_ttl(Duration::from_secs(600))
        .feed_lease(Duration::from_millis(300));
    match l2 {
        Some(l2) => builder.l2(l2.clone()),
        None => builder,
    }
    .build()
    .unwrap()
}

/// An instance with its backplane and change feed running.
struct Running {
    cache: TieredCache,
    _backplane: Option<BackplaneTask>,
    feed: ChangeFeedTask,
}

/// An instance on `l2` with its backplane subscribed (and no feed of its own).
async fn subscribed<S: FlagSource + Clone>(
    l2: &MemoryStore,
    source: &Announcing<S>,
) -> (TieredCache, BackplaneTask) {
    let cache = instance(Some(l2), source);
    let backplane = cache.start_backplane().unwrap();
    wait_for("the subscription", || {
        cache.tiered_stats().backplane_subscribed
    })
    .await;
    (cache, backplane)
}

async fn start<S: FlagSource + Clone>(l2: Option<&MemoryStore>, source: &Announcing<S>) -> Running {
    let (cache, backplane) = match l2 {
        Some(l2) => {
            let (cache, backplane) = subscribed(l2, source).await;
            (cache, Some(backplane))
        }
        None => (instance(None, source), None),
    };
    let feed = cache.start_change_feed().unwrap();
    Running {
        cache,
        _backplane: backplane,
        feed,
    }
}

fn version(cache: &TieredCache, id: &str) -> Option<u64> {
    cache.l1().get_now(id).map(|f| f.definition.version)
}

fn followers(fleet: &[Running]) -> usize {
    fleet
        .iter()
        .filter(|r| r.cache.tiered_stats().feed_following)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_follows_and_a_change_in_the_source_reaches_every_l1() {
    let db = Db::new("feed-fleet");
    db.source.upsert(&def("f", 1)).unwrap();
    let source = Announcing::new(db.source.clone());
    let l2 = MemoryStore::new();
    let mut fleet = Vec::new();
    for _ in 0..3 {
        fleet.push(start(Some(&l2), &source).await);
    }
    wait_for("a follower", || followers(&fleet) == 1).await;
    let f = FlagId::new("f");
    for r in &fleet {
        assert_eq!(r.cache.get(&f).await.unwrap().definition.version, 1);
    }
    assert_eq!(source.open_feeds(), 1, "one feed for the fleet");

    // An admin tool edits the flag in the database, not through a cache.
    db.source.upsert(&def("f", 2)).unwrap();
    let writes = l2.stats().set_many_calls;
    assert_eq!(source.changed(&["f"]), 1);
    for r in &fleet {
        wait_for("v1 gone from every L1", || {
            version(&r.cache, "f") != Some(1)
        })
        .await;
        assert_eq!(r.cache.get(&f).await.unwrap().definition.version, 2);
    }
    assert_eq!(
        l2.stats().set_many_calls - writes,
        1,
        "written to L2 once for the fleet"
    );
    let stored = l2.get_many(std::slice::from_ref(&f)).await.unwrap();
    assert_eq!(stored[&f].definition.version, 2);

    // Deleted in the database: gone from L2 and every L1.
    db.source.delete("f").unwrap();
    source.changed(&["f"]);
    for r in &fleet {
        wait_for("f gone from every L1", || version(&r.cache, "f").is_none()).await;
        assert!(r.cache.get(&f).await.is_none());
    }
    assert!(
        l2.get_many(std::slice::from_ref(&f))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        fleet
            .iter()
            .map(|r| r.cache.tiered_stats().feed_changes)
            .sum::<u64>(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_feed_first_mends_what_changed_before_it() {
    let db = Db::new("feed-resync");
    for id in ["kept", "edited", "deleted", "uncached"] {
        db.source.upsert(&def(id, 1)).unwrap();
    }
    let source = Announcing::new(db.source.clone());
    let l2 = MemoryStore::new();
    let (reader, _backplane) = subscribed(&l2, &source).await;
    for id in ["kept", "edited", "deleted"] {
        reader.get(&FlagId::new(id)).await.unwrap();
    }
    // Changed while no feed was followed: nobody announced them.
    db.source.upsert(&def("edited", 2)).unwrap();
    db.source.delete("deleted").unwrap();
    db.source.upsert(&def("uncached", 2)).unwrap();

    let follower = start(Some(&l2), &source).await;
    wait_for("the resync", || {
        follower.cache.tiered_stats().feed_resyncs == 1
    })
    .await;
    wait_for("v1 of `edited` gone from the reader", || {
        version(&reader, "edited") != Some(1)
    })
    .await;
    let edited = reader.get(&FlagId::new("edited")).await.unwrap();
    assert_eq!(edited.definition.version, 2);
    wait_for("`deleted` gone from the reader", || {
        version(&reader, "deleted").is_none()
    })
    .await;
    assert_eq!(version(&reader, "kept"), Some(1));
    let ids: Vec<FlagId> = ["kept", "edited", "deleted", "uncached"]
        .iter()
        .copied()
        .map(FlagId::new)
        .collect();
    let stored = l2.get_many(&ids).await.unwrap();
    assert_eq!(stored[&ids[1]].definition.version, 2);
    assert!(!stored.contains_key(&ids[2]));
    assert!(
        !stored.contains_key(&ids[3]),
        "a flag cached nowhere is left for reads to load"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_keeps_what_the_source_answers_invalid() {
    let db = Db::new("feed-invalid");
    db.source.upsert(&def("good", 1)).unwrap();
    db.source.upsert(&def("broken", 1)).unwrap();
    let l2 = MemoryStore::new();
    let reader = instance(Some(&l2), &Announcing::new(db.source.clone()));
    for id in ["good", "broken"] {
        reader.get(&FlagId::new(id)).await.unwrap();
    }
    // The source's code now answers an invalid definition of `broken` (an empty name): not a
    // deletion. The cached copies stand.
    let source = Announcing::new(Rewriting {
        inner: db.source.clone(),
        rewrite: |mut d: flagcache::FlagDefinition| {
            if d.id.as_str() == "broken" {
                d.name.clear();
            }
            d
        },
    });
    let follower = start(Some(&l2), &source).await;
    wait_for("the resync", || {
        follower.cache.tiered_stats().feed_resyncs == 1
    })
    .await;
    let broken = FlagId::new("broken");
    assert!(reader.l1().get_now("broken").is_some(), "dropped from L1");
    assert!(
        l2.get_many(std::slice::from_ref(&broken))
            .await
            .unwrap()
            .contains_key(&broken),
        "invalidated in L2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_that_ends_is_followed_again_and_what_it_missed_is_mended() {
    let db = Db::new("feed-ends");
    db.source.upsert(&def("f", 1)).unwrap();
    let source = Announcing::new(db.source.clone());
    let l2 = MemoryStore::new();
    let running = start(Some(&l2), &source).await;
    let cache = &running.cache;
    wait_for("the first feed", || cache.tiered_stats().feed_resyncs == 1).await;
    cache.get(&FlagId::new("f")).await.unwrap();

    // The database connection drops; a change lands before the feed is back.
    source.end_feeds();
    db.source.upsert(&def("f", 2)).unwrap();
    wait_for("the second feed", || {
        cache.tiered_stats().feed_subscriptions == 2
    })
    .await;
    wait_for("v2 after the resync", || version(cache, "f") == Some(2)).await;
    wait_for("the second resync counted", || {
        cache.tiered_stats().feed_resyncs >= 2
    })
    .await;

    // `All` from the source: a resync.
    db.source.upsert(&def("f", 3)).unwrap();
    source.announce(Change::All);
    wait_for("v3 after the announced resync", || {
        version(cache, "f") == Some(3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_follower_stops_another_instance_takes_over() {
    let db = Db::new("feed-takeover");
    db.source.upsert(&def("f", 1)).unwrap();
    let source = Announcing::new(db.source.clone());
    let l2 = MemoryStore::new();
    let mut fleet = vec![
        start(Some(&l2), &source).await,
        start(Some(&l2), &source).await,
    ];
    wait_for("a follower", || followers(&fleet) == 1).await;
    let leader = fleet
        .iter()
        .position(|r| r.cache.tiered_stats().feed_following)
        .unwrap();
    let stopped = fleet.remove(leader);
    stopped.feed.stop();
    // The other takes the lease once it runs out (300 ms), and follows a feed of its own.
    wait_for("the other instance following", || followers(&fleet) == 1).await;
    let other = &fleet[0].cache;
    other.get(&FlagId::new("f")).await.unwrap();
    db.source.upsert(&def("f", 2)).unwrap();
    wait_for("the new follower's feed", || source.open_feeds() == 1).await;
    source.changed(&["f"]);
    wait_for("v2 through the new follower", || {
        version(other, "f") == Some(2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_without_l2_follows_for_itself_and_an_unreachable_l2_elects_nobody() {
    let db = Db::new("feed-alone");
    db.source.upsert(&def("f", 1)).unwrap();
    let source = Announcing::new(db.source.clone());
    let alone = start(None, &source).await;
    alone.cache.get(&FlagId::new("f")).await.unwrap();
    wait_for("following", || alone.cache.tiered_stats().feed_following).await;
    db.source.upsert(&def("f", 2)).unwrap();
    source.changed(&["f"]);
    wait_for("v2", || version(&alone.cache, "f") == Some(2)).await;
    drop(alone);

    // With L2 down, no lease can be taken: nobody follows (nobody could tell the fleet), and
    // following starts once L2 is back.
    let l2 = MemoryStore::new();
    l2.set_failing(true);
    let cache = instance(Some(&l2), &source);
    let _feed = cache.start_change_feed().unwrap();
    wait_for("failed attempts", || cache.tiered_stats().feed_errors >= 2).await;
    assert!(!cache.tiered_stats().feed_following);
    l2.set_failing(false);
    wait_for("following once L2 is back", || {
        cache.tiered_stats().feed_following
    })
    .await;
}

#[tokio::test]
async fn the_feed_needs_a_source_that_has_one() {
    let no_source = TieredCache::builder().build().unwrap();
    let e = no_source.start_change_feed().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    let db = Db::new("feed-none");
    let without_feed = TieredCache::builder()
        .source(db.source.clone())
        .build()
        .unwrap();
    let e = without_feed.start_change_feed().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    assert!(e.to_string().contains("no change feed"), "{e}");
    // One feed task per cache; another may start once it stopped.
    let source = Announcing::new(db.source.clone());
    let cache = instance(None, &source);
    let task = cache.start_change_feed().unwrap();
    let e = cache.start_change_feed().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    task.stop();
    wait_for("the task's end", || cache.start_change_feed().is_ok()).await;
    let e = TieredCache::builder()
        .feed_lease(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_mends_other_instances_l1_when_l2_no_longer_holds_the_flag() {
    let db = Db::new("feed-resync-l1");
    db.source.upsert(&def("f", 1)).unwrap();
    let source = Announcing::new(db.source.clone());
    let l2 = MemoryStore::new();
    let (reader, _backplane) = subscribed(&l2, &source).await;
    reader.get(&FlagId::new("f")).await.unwrap();
    // L2's copy goes (its TTL ran out, or Redis evicted it); the reader's L1 keeps v1; the
    // flag changes while no feed is followed.
    FlagStore::clear(&l2).await.unwrap();
    db.source.upsert(&def("f", 2)).unwrap();
    let follower = start(Some(&l2), &source).await;
    wait_for("the resync", || {
        follower.cache.tiered_stats().feed_resyncs == 1
    })
    .await;
    wait_for("v1 gone from the reader", || {
        version(&reader, "f") != Some(1)
    })
    .await;
    assert_eq!(
        reader
            .get(&FlagId::new("f"))
            .await
            .unwrap()
            .definition
            .version,
        2
    );
}

/// A source whose feed this instance cannot start (its network, its credentials).
#[derive(Clone)]
struct Unreachable<S>(S);

impl<S: FlagSource + Clone> FlagSource for Unreachable<S> {
    async fn load(&self, id: &FlagId) -> flagcache::Result<Option<flagcache::FlagDefinition>> {
        self.0.load(id).await
    }

    async fn load_all(&self) -> flagcache::Result<Vec<flagcache::FlagDefinition>> {
        self.0.load_all().await
    }

    fn has_change_feed(&self) -> bool {
        true
    }

    async fn subscribe_changes(&self) -> flagcache::Result<flagcache::ChangeFeed> {
        Err(flagcache::Error::new(
            ErrorKind::Unavailable,
            "LISTEN: connection refused",
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_cannot_follow_lets_another_take_the_lease() {
    let db = Db::new("feed-stuck-lease");
    db.source.upsert(&def("f", 1)).unwrap();
    let l2 = MemoryStore::new();
    // Longer than the longest pause between two attempts to follow (2 s): renewed on every
    // attempt, the lease would never lapse.
    let lease = Duration::from_millis(2500);
    let stuck = TieredCache::builder()
        .l2(l2.clone())
        .source(Unreachable(db.source.clone()))
        .feed_lease(lease)
        .build()
        .unwrap();
    let _stuck_feed = stuck.start_change_feed().unwrap();
    wait_for("a failed attempt", || stuck.tiered_stats().feed_errors >= 1).await;
    let healthy = start(Some(&l2), &Announcing::new(db.source.clone())).await;
    let deadline = std::time::Instant::now() + 4 * lease;
    while !healthy.cache.tiered_stats().feed_following {
        assert!(
            std::time::Instant::now() < deadline,
            "nobody follows: the instance that cannot failed {} times and kept the lease",
            stuck.tiered_stats().feed_errors
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_task_ends_with_its_cache() {
    let db = Db::new("feed-weak");
    db.source.upsert(&def("f", 1)).unwrap();
    let source = Announcing::new(db.source.clone());
    let l2 = MemoryStore::new();
    let cache = instance(Some(&l2), &source);
    let feed = cache.start_change_feed().unwrap();
    wait_for("the resync", || cache.tiered_stats().feed_resyncs >= 1).await;
    assert_eq!(source.open_feeds(), 1);
    drop(cache);
    wait_for("the task's end", || feed.is_finished()).await;
    wait_for("the feed closed", || source.open_feeds() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_created_while_a_resync_reads_the_source_is_not_taken_for_deleted() {
    let db = Db::new("feed-resync-created");
    db.source.upsert(&def("old", 1)).unwrap();
    let l2 = MemoryStore::new();
    let (reader, _backplane) = subscribed(&l2, &Announcing::new(db.source.clone())).await;
    // The follower's resync reads the source, and is held there.
    let gated = sources::Gated::new(db.source.clone()).holding_load_all();
    let follower = instance(Some(&l2), &Announcing::new(gated.clone()));
    let _feed = follower.start_change_feed().unwrap();
    gated.load_started().await;
    // Meanwhile a flag is created, and a read puts it into L2 and the reader's L1.
    db.source.upsert(&def("new", 1)).unwrap();
    assert!(reader.get(&FlagId::new("new")).await.is_some());
    gated.open();
    wait_for("the resync", || follower.tiered_stats().feed_resyncs == 1).await;
    let new = FlagId::new("new");
    assert!(
        l2.get_many(std::slice::from_ref(&new))
            .await
            .unwrap()
            .contains_key(&new),
        "invalidated in L2 as if deleted"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        reader.l1().get_now("new").is_some(),
        "dropped from the reader's L1 as if deleted"
    );
}
