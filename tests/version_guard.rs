//! The Redis version guard and the reader agree: the guard honours a stored version only where
//! the reader would accept the stored value (a valid definition of this id, its version an
//! integer in `u64` range), and compares versions exactly over the whole `u64` range. Anything
//! the reader calls corrupt is overwritten, so no key is stuck refusing writes that no read can
//! see. A property test holds the two to the same acceptance on a real `redis-server`.

#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use flagcache::{ErrorKind, FlagDefinition, FlagId, RedisCache};
use proptest::prelude::*;
use redis_server::RedisServer;
use std::time::Duration;

fn def(id: &str, version: u64) -> FlagDefinition {
    let mut d = FlagDefinition::new_boolean(id, "A flag", true).unwrap();
    d.version = version;
    d
}

fn cache(server: &RedisServer, prefix: &str) -> RedisCache {
    RedisCache::builder(&server.url())
        .prefix(prefix)
        .response_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// A valid definition of `id` whose `"version"` member is `version_json`, as raw text.
fn stored_json(id: &str, version_json: &str) -> String {
    let json = String::from_utf8(def(id, 7).to_json()).unwrap();
    let replaced = json.replacen("\"version\":7", &format!("\"version\":{version_json}"), 1);
    assert_ne!(json, replaced, "the encoder writes \"version\":7");
    replaced
}

#[tokio::test]
async fn versions_the_reader_cannot_read_do_not_guard_the_key() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let l2 = cache(&server, "vg");
    let id = FlagId::new("f");
    for version in [
        "1e300",
        "\"9\"",
        "18446744073709551616",
        "-1",
        "5.5",
        "null",
    ] {
        server.command(&["SET", "vg:flag:f", &stored_json("f", version)]);
        assert!(
            l2.try_get(&id).await.is_err(),
            "the reader calls {version} corrupt"
        );
        l2.try_set(&id, &def("f", 1), None)
            .await
            .unwrap_or_else(|e| panic!("a stored version {version} refused the write: {e}"));
        assert_eq!(
            l2.try_get(&id).await.unwrap().unwrap().definition.version,
            1
        );
    }
    // Another flag's definition under this key, and an invalid one: overwritten too.
    server.command(&[
        "SET",
        "vg:flag:f",
        &String::from_utf8(def("g", 99).to_json()).unwrap(),
    ]);
    l2.try_set(&id, &def("f", 2), None).await.unwrap();
    let mut nameless = def("f", 99);
    nameless.name.clear();
    server.command(&[
        "SET",
        "vg:flag:f",
        &String::from_utf8(nameless.to_json()).unwrap(),
    ]);
    l2.try_set(&id, &def("f", 3), None).await.unwrap();
    assert_eq!(
        l2.try_get(&id).await.unwrap().unwrap().definition.version,
        3
    );
    // The same in a batch.
    server.command(&["SET", "vg:flag:f", &stored_json("f", "1e300")]);
    let outcome = l2
        .try_set_many(&[(id.clone(), def("f", 4))], None)
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.refused.len()), (1, 0));
}

#[tokio::test]
async fn versions_compare_exactly_over_the_whole_u64_range() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let l2 = cache(&server, "vx");
    let id = FlagId::new("f");
    let big = (1u64 << 60) + 2;
    l2.try_set(&id, &def("f", big), None).await.unwrap();
    let e = l2.try_set(&id, &def("f", big - 1), None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StaleVersion);
    assert_eq!(
        l2.try_get(&id).await.unwrap().unwrap().definition.version,
        big
    );
    l2.try_set(&id, &def("f", u64::MAX), None).await.unwrap();
    let e = l2
        .try_set(&id, &def("f", u64::MAX - 1), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StaleVersion);
    l2.try_set(&id, &def("f", u64::MAX), None).await.unwrap();
}

/// How a stored version is written.
#[derive(Debug, Clone)]
enum Stored {
    /// A valid definition of this id at this version.
    Valid(u64),
    /// The version member written as this raw JSON text.
    Raw(String),
    /// Another flag's valid definition at this version.
    OtherId(u64),
    /// A definition of this id with an empty name at this version.
    Nameless(u64),
}

fn stored_strategy() -> impl Strategy<Value = Stored> {
    let version = prop_oneof![0..10u64, any::<u64>(), (1u64 << 53)..(1u64 << 53) + 4];
    prop_oneof![
        version.clone().prop_map(Stored::Valid),
        version.clone().prop_map(Stored::OtherId),
        version.prop_map(Stored::Nameless),
        prop_oneof![
            Just("1e300".to_owned()),
            Just("\"5\"".to_owned()),
            Just("18446744073709551616".to_owned()),
            Just("99999999999999999999".to_owned()),
            Just("-3".to_owned()),
            Just("2.0".to_owned()),
            Just("1E2".to_owned()),
            Just("true".to_owned()),
            Just("{}".to_owned()),
            any::<u64>().prop_map(|v| format!("{v}.0")),
        ]
        .prop_map(Stored::Raw),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_guard_and_the_reader_accept_the_same_stored_values(
        stored in stored_strategy(),
        new_version in prop_oneof![0..10u64, any::<u64>(), (1u64 << 53)..(1u64 << 53) + 4],
    ) {
        let Some(server) = SERVER.as_ref() else { return Ok(()) };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let l2 = cache(server, "prop");
            let id = FlagId::new("f");
            let text = match &stored {
                Stored::Valid(v) => String::from_utf8(def("f", *v).to_json()).unwrap(),
                Stored::Raw(raw) => stored_json("f", raw),
                Stored::OtherId(v) => String::from_utf8(def("g", *v).to_json()).unwrap(),
                Stored::Nameless(v) => {
                    let mut d = def("f", *v);
                    d.name.clear();
                    String::from_utf8(d.to_json()).unwrap()
                }
            };
            server.command(&["SET", "prop:flag:f", &text]);
            // What the reader makes of the stored value.
            let readable = RedisCache::decode_value(&id, text.as_bytes(), 1 << 20).ok();
            let written = l2.try_set(&id, &def("f", new_version), None).await;
            match readable {
                Some(current) if current.version > new_version => {
                    prop_assert_eq!(written.unwrap_err().kind(), ErrorKind::StaleVersion);
                }
                _ => {
                    prop_assert!(written.is_ok(), "{:?} refused over {:?}", new_version, stored);
                    let now = l2.try_get(&id).await.unwrap().unwrap();
                    prop_assert_eq!(now.definition.version, new_version);
                }
            }
            Ok(())
        })?;
    }
}

/// One server for every case of the property test.
static SERVER: std::sync::LazyLock<Option<RedisServer>> =
    std::sync::LazyLock::new(RedisServer::start);
