//! The store's semantics, bound, backplane and fault switches.

use super::*;
use crate::error::ErrorKind;
use crate::time::MockClock;

const MINUTE: Duration = Duration::from_secs(60);

fn id(name: &str) -> FlagId {
    FlagId::new(name)
}

fn def(name: &str, version: u64) -> FlagDefinition {
    FlagDefinition::new_boolean(name, "test", false)
        .unwrap()
        .with_version(version)
}

fn entry(name: &str, version: u64) -> (FlagId, FlagDefinition) {
    (id(name), def(name, version))
}

fn mocked(max_flags: usize) -> (MemoryStore, MockClock) {
    let mock = MockClock::new();
    let store = MemoryStore::builder()
        .max_flags(max_flags)
        .clock(Clock::mock(&mock))
        .build()
        .unwrap();
    (store, mock)
}

/// The version stored for `name`, if a fresh value is.
async fn version(store: &MemoryStore, name: &str) -> Option<u64> {
    let found = store.get_many(&[id(name)]).await.unwrap();
    found.get(name).map(|f| f.definition.version)
}

/// Reads `sub` to its end and returns what it read; panics if it has not ended.
async fn drain(sub: &mut Subscription) -> Vec<Vec<u8>> {
    let mut read = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
            Ok(Some(notice)) => read.push(notice),
            Ok(None) => return read,
            Err(_) => panic!("the subscription has not ended"),
        }
    }
}

#[tokio::test]
async fn the_version_guard_refuses_lower_versions_and_restores_equal_ones() {
    let store = MemoryStore::new();
    store.set_many(&[entry("a", 5)], MINUTE).await.unwrap();

    let lower = store
        .set_many(&[entry("a", 4), entry("b", 1)], MINUTE)
        .await
        .unwrap();
    assert_eq!(lower.stored, 1, "b is stored");
    assert_eq!(lower.refused, vec![id("a")]);
    assert_eq!(version(&store, "a").await, Some(5));

    let mut renamed = def("a", 5);
    renamed.name = "renamed".to_owned();
    let equal = store.set_many(&[(id("a"), renamed)], MINUTE).await.unwrap();
    assert_eq!((equal.stored, equal.refused.len()), (1, 0));
    let found = store.get_many(&[id("a")]).await.unwrap();
    assert_eq!(found["a"].definition.name, "renamed");

    let higher = store.set_many(&[entry("a", 6)], MINUTE).await.unwrap();
    assert_eq!(higher.stored, 1);
    assert_eq!(version(&store, "a").await, Some(6));
    assert_eq!(store.stats().writes_refused, 1);
}

#[tokio::test]
async fn a_tombstone_or_an_expired_value_does_not_guard_versions() {
    let (store, mock) = mocked(10);
    store
        .set_many(&[entry("a", 9), entry("b", 9)], Duration::from_secs(1))
        .await
        .unwrap();
    store.tombstone_many(&[id("a")], MINUTE).await.unwrap();
    assert_eq!(
        version(&store, "a").await,
        None,
        "a tombstone reads as absent"
    );
    mock.advance(Duration::from_secs(2));
    let outcome = store
        .set_many(&[entry("a", 1), entry("b", 1)], MINUTE)
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.refused.len()), (2, 0));
    assert_eq!(version(&store, "a").await, Some(1));
    assert_eq!(version(&store, "b").await, Some(1));
}

#[tokio::test]
async fn fill_never_replaces_a_value_or_a_live_tombstone_but_replaces_expired_slots() {
    let (store, mock) = mocked(10);
    store.set_many(&[entry("value", 1)], MINUTE).await.unwrap();
    store
        .set_many(&[entry("short", 1)], Duration::from_secs(1))
        .await
        .unwrap();
    store
        .tombstone_many(&[id("gone")], Duration::from_secs(10))
        .await
        .unwrap();

    let fills = [entry("value", 2), entry("short", 2), entry("gone", 2)];
    assert_eq!(store.fill_many(&fills, MINUTE).await.unwrap(), 0);
    assert_eq!(version(&store, "value").await, Some(1));
    assert_eq!(version(&store, "gone").await, None);

    mock.advance(Duration::from_secs(2));
    assert_eq!(
        store.fill_many(&fills, MINUTE).await.unwrap(),
        1,
        "only the expired value's slot is empty"
    );
    assert_eq!(version(&store, "short").await, Some(2));
    assert_eq!(version(&store, "gone").await, None);

    mock.advance(Duration::from_secs(10));
    assert_eq!(store.fill_many(&fills, MINUTE).await.unwrap(), 1);
    assert_eq!(version(&store, "gone").await, Some(2));
    assert_eq!(version(&store, "value").await, Some(1));
    assert_eq!(
        store.fill_many(&[entry("new", 1)], MINUTE).await.unwrap(),
        1
    );
}

#[tokio::test]
async fn entries_expire_at_their_ttl_and_a_max_ttl_never_does() {
    let (store, mock) = mocked(10);
    store
        .set_many(&[entry("max", 1)], Duration::MAX)
        .await
        .unwrap();
    store
        .set_many(&[entry("huge", 1)], Duration::from_secs(u64::MAX))
        .await
        .unwrap();
    store
        .set_many(&[entry("second", 1)], Duration::from_secs(1))
        .await
        .unwrap();

    let found = store
        .get_many(&[id("max"), id("huge"), id("second")])
        .await
        .unwrap();
    assert_eq!(found["max"].expires_at, None);
    assert_eq!(found["huge"].expires_at, None, "a saturating TTL is none");
    assert_eq!(
        found["second"].expires_at,
        Some(mock.now() + Duration::from_secs(1))
    );
    assert_eq!(found["second"].cached_at, mock.now());
    assert_eq!(found["second"].hit_count, 0);

    mock.advance(Duration::from_millis(999));
    assert_eq!(version(&store, "second").await, Some(1));
    mock.advance(Duration::from_millis(1));
    assert_eq!(version(&store, "second").await, None, "expired at its TTL");

    mock.advance(Duration::from_secs(100 * 365 * 24 * 3600));
    assert_eq!(version(&store, "max").await, Some(1));
    assert_eq!(version(&store, "huge").await, Some(1));
}

#[tokio::test]
async fn a_zero_ttl_is_a_config_error_and_stores_nothing() {
    let store = MemoryStore::new();
    let zero = Duration::ZERO;
    let e = store.set_many(&[entry("a", 1)], zero).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    let e = store.fill_many(&[entry("a", 1)], zero).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    let e = store.tombstone_many(&[id("a")], zero).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    assert_eq!(store.stats().len, 0);
}

#[tokio::test]
async fn invalid_definitions_are_refused_and_the_rest_of_the_batch_is_stored() {
    let store = MemoryStore::new();
    let mut nameless = def("nameless", 1);
    nameless.name = String::new();
    let batch = [
        entry("ok1", 1),
        (id("other"), def("mismatch", 1)),
        (id("nameless"), nameless),
        entry("ok2", 1),
    ];

    let e = store.set_many(&batch, MINUTE).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidFlag);
    assert!(e.to_string().contains("`other`"), "the first error: {e}");
    let all = store.load_all().await.unwrap();
    let ids: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["ok1", "ok2"]);

    store.clear().await.unwrap();
    assert_eq!(
        store.fill_many(&batch, MINUTE).await.unwrap(),
        2,
        "a fill skips the invalid ones"
    );
    assert_eq!(store.load_all().await.unwrap().len(), 2);
    assert_eq!(store.stats().flags_rejected, 4);
}

#[tokio::test]
async fn a_full_store_purges_expired_slots_then_refuses_new_ones() {
    let (store, mock) = mocked(2);
    assert_eq!(
        MemoryStore::builder()
            .max_flags(0)
            .build()
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidConfig
    );
    store
        .set_many(&[entry("short", 1)], Duration::from_secs(1))
        .await
        .unwrap();
    store.set_many(&[entry("long", 1)], MINUTE).await.unwrap();

    let e = store.set_many(&[entry("c", 1)], MINUTE).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CapacityExceeded);
    let e = store.tombstone_many(&[id("c")], MINUTE).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CapacityExceeded);
    let e = store.fill_many(&[entry("c", 1)], MINUTE).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CapacityExceeded);

    mock.advance(Duration::from_secs(2));
    store.set_many(&[entry("c", 1)], MINUTE).await.unwrap();
    assert_eq!(version(&store, "c").await, Some(1));
    assert_eq!(store.stats().len, 2, "the expired slot was purged");

    // Full of live slots: the new flag fails, the others of its batch proceed.
    let e = store
        .set_many(&[entry("d", 1), entry("long", 2)], MINUTE)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CapacityExceeded);
    assert_eq!(version(&store, "long").await, Some(2));
    assert_eq!(version(&store, "d").await, None);
    store.tombstone_many(&[id("c")], MINUTE).await.unwrap();

    let stats = store.stats();
    assert_eq!((stats.len, stats.failures), (2, 4));
}

#[tokio::test]
async fn clones_share_data_and_load_all_is_sorted_fresh_values() {
    let (store, mock) = mocked(10);
    let other = store.clone();
    store
        .set_many(&[entry("c", 1), entry("a", 1)], MINUTE)
        .await
        .unwrap();
    other
        .set_many(&[entry("b", 1)], Duration::from_secs(1))
        .await
        .unwrap();
    other.tombstone_many(&[id("d")], MINUTE).await.unwrap();
    let names = |defs: Vec<FlagDefinition>| -> Vec<String> {
        defs.into_iter().map(|d| d.id.as_str().to_owned()).collect()
    };
    assert_eq!(names(other.load_all().await.unwrap()), ["a", "b", "c"]);
    mock.advance(Duration::from_secs(1));
    assert_eq!(names(store.load_all().await.unwrap()), ["a", "c"]);

    other.clear().await.unwrap();
    assert!(store.load_all().await.unwrap().is_empty());
    assert_eq!(store.stats().len, 0);
    assert_eq!(store.stats().clear_calls, 1);
}

#[tokio::test]
async fn publish_reaches_every_subscriber() {
    let store = MemoryStore::new();
    let mut first = store.subscribe().await.unwrap();
    let mut second = store.clone().subscribe().await.unwrap();
    store.publish(b"one").await.unwrap();
    store.publish(b"two").await.unwrap();
    for sub in [&mut first, &mut second] {
        assert_eq!(sub.next().await.as_deref(), Some(&b"one"[..]));
        assert_eq!(sub.next().await.as_deref(), Some(&b"two"[..]));
    }
    let stats = store.stats();
    assert_eq!(
        (stats.publishes, stats.subscribes, stats.subscribers),
        (2, 2, 2)
    );
}

#[tokio::test]
async fn a_subscriber_a_full_buffer_behind_is_dropped() {
    let store = MemoryStore::new();
    let mut slow = store.subscribe().await.unwrap();
    let mut fast = store.subscribe().await.unwrap();
    for i in 0..MemoryStore::NOTICE_BUFFER {
        store.publish(&i.to_le_bytes()).await.unwrap();
    }
    for _ in 0..MemoryStore::NOTICE_BUFFER {
        assert!(fast.next().await.is_some());
    }
    store.publish(b"one too many").await.unwrap();

    assert_eq!(fast.next().await.as_deref(), Some(&b"one too many"[..]));
    let drained = drain(&mut slow).await;
    assert_eq!(drained.len(), MemoryStore::NOTICE_BUFFER, "then it ended");
    assert_eq!(drained[0], 0usize.to_le_bytes());
    let stats = store.stats();
    assert_eq!((stats.subscribers_dropped, stats.subscribers), (1, 1));
}

#[tokio::test]
async fn end_subscriptions_ends_the_current_ones_only() {
    let store = MemoryStore::new();
    let mut a = store.subscribe().await.unwrap();
    let mut b = store.subscribe().await.unwrap();
    store.publish(b"before").await.unwrap();
    store.end_subscriptions();
    assert_eq!(drain(&mut a).await, [b"before"]);
    assert_eq!(drain(&mut b).await, [b"before"]);

    let mut again = store.subscribe().await.unwrap();
    store.publish(b"after").await.unwrap();
    assert_eq!(again.next().await.as_deref(), Some(&b"after"[..]));
}

#[tokio::test]
async fn subscribers_are_bounded_and_closed_ones_free_their_place() {
    let store = MemoryStore::new();
    let mut subs = Vec::new();
    for _ in 0..MemoryStore::MAX_SUBSCRIBERS {
        subs.push(store.subscribe().await.unwrap());
    }
    let e = store.subscribe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CapacityExceeded);
    drop(subs.pop());
    assert!(store.subscribe().await.is_ok());
    assert_eq!(store.stats().failures, 1);
}

#[tokio::test]
async fn failing_fails_every_call_until_switched_off() {
    let store = MemoryStore::new();
    store.set_many(&[entry("a", 1)], MINUTE).await.unwrap();
    store.set_failing(true);
    let unavailable = |e: Error| assert_eq!(e.kind(), ErrorKind::Unavailable);
    unavailable(store.get_many(&[id("a")]).await.unwrap_err());
    unavailable(store.set_many(&[entry("a", 2)], MINUTE).await.unwrap_err());
    unavailable(store.fill_many(&[entry("b", 1)], MINUTE).await.unwrap_err());
    unavailable(store.tombstone_many(&[id("a")], MINUTE).await.unwrap_err());
    unavailable(store.clear().await.unwrap_err());
    unavailable(store.load_all().await.unwrap_err());
    unavailable(store.publish(b"x").await.unwrap_err());
    unavailable(store.subscribe().await.unwrap_err());
    assert_eq!(store.stats().failures, 8);

    store.set_failing(false);
    assert_eq!(version(&store, "a").await, Some(1), "nothing was written");
    let stats = store.stats();
    assert_eq!((stats.get_many_calls, stats.set_many_calls), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_store_holds_calls_until_switched_off() {
    let store = MemoryStore::new();
    store.set_many(&[entry("a", 1)], MINUTE).await.unwrap();
    store.set_hanging(true);
    let held = tokio::time::timeout(Duration::from_secs(5), store.get_many(&[id("a")])).await;
    assert!(held.is_err(), "the call must still be waiting");

    let pending = tokio::spawn({
        let store = store.clone();
        async move { store.get_many(&[id("a")]).await }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!pending.is_finished());
    store.set_hanging(false);
    let found = pending.await.unwrap().unwrap();
    assert_eq!(found["a"].definition.version, 1);
    assert_eq!(version(&store, "a").await, Some(1), "new calls pass too");
}

#[tokio::test(start_paused = true)]
async fn a_call_resumed_after_failing_was_switched_on_fails() {
    let store = MemoryStore::new();
    store.set_hanging(true);
    let pending = tokio::spawn({
        let store = store.clone();
        async move { store.load_all().await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    store.set_failing(true);
    store.set_hanging(false);
    let e = pending.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
}

#[tokio::test(start_paused = true)]
async fn a_delay_slows_every_call() {
    let store = MemoryStore::new();
    store.set_delay(Duration::from_millis(250));
    let start = tokio::time::Instant::now();
    store.set_many(&[entry("a", 1)], MINUTE).await.unwrap();
    store.publish(b"x").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(500));

    store.set_delay(Duration::ZERO);
    let start = tokio::time::Instant::now();
    assert_eq!(version(&store, "a").await, Some(1));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn stats_count_calls_and_flags() {
    let store = MemoryStore::new();
    store.get_many(&[id("a"), id("b"), id("c")]).await.unwrap();
    store.set_many(&[entry("a", 1)], MINUTE).await.unwrap();
    store
        .fill_many(&[entry("a", 1), entry("b", 1)], MINUTE)
        .await
        .unwrap();
    store.tombstone_many(&[id("c")], MINUTE).await.unwrap();
    store.load_all().await.unwrap();
    let stats = store.stats();
    let expected = MemoryStoreStats {
        get_many_calls: 1,
        set_many_calls: 1,
        fill_many_calls: 1,
        tombstone_calls: 1,
        load_all_calls: 1,
        flags_read: 3,
        flags_stored: 2,
        len: 3,
        ..MemoryStoreStats::default()
    };
    assert_eq!(stats, expected);
}
