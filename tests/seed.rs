//! The three tests of the original specification, as written there, against `LocalCache` in
//! place of `InMemoryCache`.

use flagcache::{FlagCache, FlagDefinition, FlagId, LocalCache};
use std::time::Duration;

#[tokio::test]
async fn test_inmemory_cache() {
    let cache = LocalCache::new(100, Duration::from_secs(60));

    let flag = FlagDefinition::new_boolean("test", "Test", false).unwrap();
    let flag_id = FlagId::new("test");

    cache.set(&flag_id, flag.clone(), None).await;

    let cached = cache.get(&flag_id).await;
    assert!(cached.is_some());
    assert_eq!(cached.unwrap().definition.id, flag.id);
}

#[tokio::test]
async fn test_cache_expiration() {
    let cache = LocalCache::new(100, Duration::from_millis(50));
    let flag = FlagDefinition::new_boolean("test", "Test", false).unwrap();
    let flag_id = FlagId::new("test");

    cache
        .set(&flag_id, flag, Some(Duration::from_millis(50)))
        .await;

    // Should exist immediately
    assert!(cache.get(&flag_id).await.is_some());

    // Wait for expiration
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Should be expired
    assert!(cache.get(&flag_id).await.is_none());
}

#[tokio::test]
async fn test_cache_stats() {
    let cache = LocalCache::new(100, Duration::from_secs(60));
    let flag = FlagDefinition::new_boolean("test", "Test", false).unwrap();
    let flag_id = FlagId::new("test");

    cache.set(&flag_id, flag, None).await;

    // Cache hit
    cache.get(&flag_id).await;
    cache.get(&flag_id).await;

    // Cache miss
    cache.get(&FlagId::new("nonexistent")).await;

    let stats = cache.stats().await;
    assert_eq!(stats.hits, 2);
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.size, 1);
}
