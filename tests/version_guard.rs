//! The Redis version guard and the reader agree: the guard honours a stored version only where
//! the reader would accept the stored value (a valid definition of this id, its version an
//! integer in `u64` range) or a newer build might (a definition this build cannot decode whose
//! id and version it can read), and compares versions exactly over the whole `u64` range.
//! Anything else is overwritten, so no key is stuck refusing writes that no read can see. A property test holds the two to the same acceptance on a real `redis-server`.

#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

use flagcache::{
    Clause, ErrorKind, FlagDefinition, FlagId, FlagValue, Operator, RedisCache, Serve,
    TargetingRule,
};
use proptest::prelude::*;
use redis_server::{RedisServer, Reply};
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

/// The guard reads the stored version as the reader does, even where the JSON spells it in a
/// way only a full decoder sees through.
#[tokio::test]
async fn a_stored_version_guards_the_key_however_the_json_spells_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let l2 = cache(&server, "vs");
    let id = FlagId::new("f");
    // The member's name with an escape: `"vers\u0069on"` is `"version"` to every decoder.
    let escaped = stored_json("f", "10").replacen("\"version\"", "\"vers\\u0069on\"", 1);
    assert_eq!(
        RedisCache::decode_value(&id, escaped.as_bytes(), 1 << 20)
            .unwrap()
            .version,
        10
    );
    server.command(&["SET", "vs:flag:f", &escaped]);
    let e = l2.try_set(&id, &def("f", 5), None).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::StaleVersion,
        "an escaped name hid version 10"
    );
    assert_eq!(
        l2.try_get(&id).await.unwrap().unwrap().definition.version,
        10
    );

    // A nested `"version"` member before the definition's own, equal to it as a double but not
    // exactly (above 2^53).
    let own = (1u64 << 60) + 1;
    let nested = FlagDefinition::new_json("f", "A flag", serde_json::json!({ "version": own - 1 }))
        .unwrap()
        .with_version(own);
    server.command(&[
        "SET",
        "vs:flag:f",
        &String::from_utf8(nested.to_json()).unwrap(),
    ]);
    let e = l2.try_set(&id, &def("f", own - 1), None).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::StaleVersion,
        "the nested member was taken for the version"
    );
    assert_eq!(
        l2.try_get(&id).await.unwrap().unwrap().definition.version,
        own
    );
}

/// A definition this build cannot decode but whose id and version it can read (a newer build's
/// rule operator, say) keeps its version: an older write does not replace it.
#[tokio::test]
async fn a_newer_builds_definition_keeps_its_version() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let l2 = cache(&server, "vn");
    let id = FlagId::new("f");
    let newer = newer_schema("f", 10);
    assert!(RedisCache::decode_value(&id, newer.as_bytes(), 1 << 20).is_err());
    server.command(&["SET", "vn:flag:f", &newer]);
    let e = l2.try_set(&id, &def("f", 5), None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StaleVersion);
    let outcome = l2
        .try_set_many(&[(id.clone(), def("f", 6))], None)
        .await
        .unwrap();
    assert_eq!((outcome.stored, outcome.refused), (0, vec![id.clone()]));
    assert!(
        matches!(server.command(&["GET", "vn:flag:f"]), Reply::Bulk(Some(b)) if b == newer.as_bytes()),
        "the newer definition was replaced"
    );
    // A higher version replaces it as usual.
    l2.try_set(&id, &def("f", 11), None).await.unwrap();
    assert_eq!(
        l2.try_get(&id).await.unwrap().unwrap().definition.version,
        11
    );
}

/// A definition of `id` at `version` with a rule operator this build does not know.
fn newer_schema(id: &str, version: u64) -> String {
    let rule = TargetingRule::new("r", Serve::Value(FlagValue::Boolean(false)))
        .with_clause(Clause::new("plan", Operator::In, ["pro"]));
    let json = String::from_utf8(def(id, version).with_rule(rule).to_json()).unwrap();
    let newer = json.replacen("\"op\":\"in\"", "\"op\":\"matches_cel\"", 1);
    assert_ne!(json, newer, "the encoder writes \"op\":\"in\"");
    newer
}

/// The reader reads a definition with no `"version"` member as version 1 (its default): so
/// does the guard, and a version-0 write does not take L2 back.
#[tokio::test]
async fn a_definition_without_a_version_member_holds_version_one() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let l2 = cache(&server, "p3");
    let id = FlagId::new("f");
    let stored =
        String::from_utf8(def("f", 7).to_json())
            .unwrap()
            .replacen(",\"version\":7", "", 1);
    assert_eq!(
        RedisCache::decode_value(&id, stored.as_bytes(), 1 << 20)
            .unwrap()
            .version,
        1,
        "the reader honours it as version 1"
    );
    server.command(&["SET", "p3:flag:f", &stored]);
    let written = l2.try_set(&id, &def("f", 0), None).await;
    let now = l2.try_get(&id).await.unwrap().unwrap().definition.version;
    assert!(
        matches!(&written, Err(e) if e.kind() == ErrorKind::StaleVersion) && now == 1,
        "version 0 replaced the stored version 1: write {written:?}, L2 now at version {now}"
    );
}

/// Values that are plainly broken (not a newer schema: missing required members, a duplicate
/// member, invalid UTF-8, a wrong type) but carry a readable `id` and `version` do not hold
/// their version: were they kept, every read would call them corrupt and every lower write
/// would be refused for as long as the key lives (forever without a TTL).
#[tokio::test]
async fn a_broken_value_with_a_readable_id_and_version_does_not_hold_the_key() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let l2 = cache(&server, "p3");
    let id = FlagId::new("f");
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "id and version only, u64::MAX",
            br#"{"id":"f","version":18446744073709551615}"#.to_vec(),
        ),
        (
            "duplicate name member",
            br#"{"id":"f","name":"a","name":"b","default_value":{"type":"boolean","value":true},"version":99}"#.to_vec(),
        ),
        (
            "invalid UTF-8 in name",
            b"{\"id\":\"f\",\"name\":\"\xff\xfe\",\"default_value\":{\"type\":\"boolean\",\"value\":true},\"version\":99}".to_vec(),
        ),
        (
            "enabled is a string",
            br#"{"id":"f","name":"a","enabled":"yes","default_value":{"type":"boolean","value":true},"version":99}"#.to_vec(),
        ),
    ];
    let mut wedged = Vec::new();
    for (what, bytes) in &cases {
        server.command_bytes(&[b"SET", b"p3:flag:f", bytes]);
        let read = l2.try_get(&id).await;
        let written = l2.try_set(&id, &def("f", 5), None).await;
        let kept =
            matches!(server.command(&["GET", "p3:flag:f"]), Reply::Bulk(Some(b)) if &b == bytes);
        if read.is_err() && written.is_err() && kept {
            wedged.push(format!(
                "{what}: read {:?}, write {:?}",
                read.err().map(|e| e.kind()),
                written.err().map(|e| e.kind())
            ));
        }
    }
    assert!(
        wedged.is_empty(),
        "keys stuck: unreadable and refusing writes:\n{}",
        wedged.join("\n")
    );
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
    /// A newer build's definition of this id at this version (see [`newer_schema`]).
    Newer(u64),
}

fn stored_strategy() -> impl Strategy<Value = Stored> {
    let version = prop_oneof![0..10u64, any::<u64>(), (1u64 << 53)..(1u64 << 53) + 4];
    prop_oneof![
        version.clone().prop_map(Stored::Valid),
        version.clone().prop_map(Stored::OtherId),
        version.clone().prop_map(Stored::Nameless),
        version.prop_map(Stored::Newer),
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

/// The guard and the reader agree on every stored value, over one server the test owns (a
/// server in a `static` is never dropped, and outlived the test binary).
#[test]
fn the_guard_and_the_reader_accept_the_same_stored_values() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = ProptestConfig {
        cases: 200,
        // Failures are kept in (and replayed from) `version_guard.proptest-regressions`.
        source_file: Some(file!()),
        ..ProptestConfig::default()
    };
    let new_version = prop_oneof![0..10u64, any::<u64>(), (1u64 << 53)..(1u64 << 53) + 4];
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(
        &(stored_strategy(), new_version),
        |(stored, new_version)| {
            let server = &server;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
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
                    Stored::Newer(v) => newer_schema("f", *v),
                };
                server.command(&["SET", "prop:flag:f", &text]);
                // The stored version the reader would honour: a definition it accepts, or a newer
                // build's.
                let honoured = match &stored {
                    Stored::Newer(v) => Some(*v),
                    _ => RedisCache::decode_value(&id, text.as_bytes(), 1 << 20)
                        .ok()
                        .map(|d| d.version),
                };
                let written = l2.try_set(&id, &def("f", new_version), None).await;
                match honoured {
                    Some(current) if current > new_version => {
                        prop_assert_eq!(written.unwrap_err().kind(), ErrorKind::StaleVersion);
                    }
                    _ => {
                        prop_assert!(
                            written.is_ok(),
                            "{:?} refused over {:?}",
                            new_version,
                            stored
                        );
                        let now = l2.try_get(&id).await.unwrap().unwrap();
                        prop_assert_eq!(now.definition.version, new_version);
                    }
                }
                Ok(())
            })
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
