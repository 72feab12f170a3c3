//! No `Debug`, `Display` or error message of the crate contains a Redis password: builders,
//! caches, configuration errors, connection errors and authentication errors.

#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use flagcache::{RedisCache, TieredCache};
use redis_server::RedisServer;

const SECRET: &str = "s3cret-Pa55";

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the password: {text}");
}

fn assert_error_clean(what: &str, e: &flagcache::Error) {
    assert_clean(what, &e.to_string());
    assert_clean(what, &format!("{e:?}"));
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        assert_clean(what, &s.to_string());
        source = s.source();
    }
}

#[tokio::test]
async fn builders_and_caches_do_not_show_the_password() {
    let url = format!("redis://:{SECRET}@127.0.0.1:1/0");
    let builder = RedisCache::builder(&url).prefix("p");
    assert_clean("RedisCacheBuilder", &format!("{builder:?}"));
    let cache = builder.build().unwrap();
    assert_clean("RedisCache", &format!("{cache:?}"));
    let tiered = TieredCache::builder().redis_url(&url);
    assert_clean("TieredCacheBuilder", &format!("{tiered:?}"));
    let tiered = tiered.build().unwrap();
    assert_clean("TieredCache", &format!("{tiered:?}"));
    // Nothing listens on port 1: the connection error must not carry the URL either.
    let e = cache.try_ping().await.unwrap_err();
    assert_error_clean("a connection error", &e);
}

#[tokio::test]
async fn unix_socket_urls_do_not_show_the_password() {
    for url in [
        format!("redis+unix:///tmp/redis.sock?pass={SECRET}"),
        format!("unix:///tmp/redis.sock?user=u&pass={SECRET}&db=1"),
    ] {
        let builder = RedisCache::builder(&url).prefix("p");
        assert_clean("RedisCacheBuilder", &format!("{builder:?}"));
        let cache = builder.build().unwrap();
        assert_clean("RedisCache", &format!("{cache:?}"));
    }
}

#[tokio::test]
async fn configuration_errors_do_not_show_the_password() {
    for url in [
        format!("redis://:{SECRET}@127.0.0.1:notaport"),
        format!("redis://user:{SECRET}@[::1"),
        format!("redis://:{SECRET}@127.0.0.1:6379/notadb"),
        format!("nosuchscheme://:{SECRET}@127.0.0.1"),
    ] {
        let e = RedisCache::builder(&url).build().unwrap_err();
        assert_error_clean(&format!("the error for {}", url.replace(SECRET, "***")), &e);
        let e = TieredCache::builder().redis_url(&url).build().unwrap_err();
        assert_error_clean("the tiered builder's error", &e);
    }
}

#[tokio::test]
async fn authentication_errors_do_not_show_the_password() {
    let Some(server) = RedisServer::start_with_password(Some("the-right-one")) else {
        return;
    };
    let wrong = server.url().replace("the-right-one", SECRET);
    let cache = RedisCache::builder(&wrong).build().unwrap();
    let e = cache.try_ping().await.unwrap_err();
    assert_error_clean("an authentication error", &e);
    assert!(!e.to_string().contains("the-right-one"));
}
