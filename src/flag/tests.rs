//! Unit tests of the flag model.

use super::*;
use crate::error::ErrorKind;
use proptest::prelude::*;
use serde_json::json;
use std::collections::HashMap;
use std::hash::BuildHasher;

fn err_msg<T: fmt::Debug>(r: Result<T>) -> String {
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidFlag);
    e.to_string()
}

fn boolean() -> FlagDefinition {
    FlagDefinition::new_boolean("f", "F", false).unwrap()
}

fn half_half() -> Rollout {
    Rollout::new([
        WeightedValue::new(true, 50_000),
        WeightedValue::new(false, 50_000),
    ])
}

proptest! {
    /// The byte table accepts exactly the documented characters: an id of allowed characters
    /// around any one character is valid exactly when that character is allowed.
    #[test]
    fn an_id_is_valid_exactly_when_every_character_is_allowed(
        (head, c, tail) in ("[a-zA-Z0-9._-]{0,20}", any::<char>(), "[a-zA-Z0-9._-]{0,20}"),
    ) {
        let id = format!("{head}{c}{tail}");
        let documented = !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        prop_assert_eq!(FlagId::parse(&id).is_ok(), documented);
    }
}

#[test]
fn id_validation() {
    assert!(err_msg(FlagId::parse("")).contains("flag id is empty"));
    assert!(err_msg(FlagId::parse("a".repeat(257))).contains("257 bytes long; at most 256"));
    assert_eq!(FlagId::parse("a".repeat(256)).unwrap().as_str().len(), 256);
    let msg = err_msg(FlagId::parse("a b"));
    assert!(
        msg.contains("flag id `a b` contains ' ' at byte 1; allowed: ASCII letters"),
        "{msg}"
    );
    assert!(err_msg(FlagId::parse("caf\u{e9}")).contains("'\u{e9}' at byte 3"));
    assert!(err_msg(FlagId::parse("a\nb")).contains("`a\\nb`"));
    assert_eq!(
        FlagId::parse("checkout.new-flow_2").unwrap(),
        "checkout.new-flow_2"
    );
    // `new` never fails: any string is a valid cache key.
    assert_eq!(FlagId::new("not valid!").as_str(), "not valid!");
    assert_eq!(FlagId::new(""), FlagId::from(String::new()));
}

#[test]
fn id_behaves_like_str() {
    let id = FlagId::from("abc");
    let s = std::collections::hash_map::RandomState::new();
    assert_eq!(s.hash_one(&id), s.hash_one("abc"));
    let mut map = HashMap::new();
    map.insert(id.clone(), 1);
    assert_eq!(map.get("abc"), Some(&1));
    assert!(FlagId::new("a") < FlagId::new("b"));
    assert_eq!(format!("{id} {id:?}"), "abc \"abc\"");
    assert_eq!(AsRef::<str>::as_ref(&id), "abc");
    assert_eq!(serde_json::to_string(&id).unwrap(), "\"abc\"");
    assert_eq!(serde_json::from_str::<FlagId>("\"abc\"").unwrap(), id);
    assert_eq!(serde_json::from_str::<FlagId>("\"a\\u0062c\"").unwrap(), id);
    assert!(serde_json::from_str::<FlagId>("7").is_err());
    // Formats that hand strings over as bytes.
    use serde::Deserialize;
    use serde::de::value::{BytesDeserializer, Error};
    assert_eq!(
        FlagId::deserialize(BytesDeserializer::<Error>::new(b"abc")).unwrap(),
        id
    );
    assert!(FlagId::deserialize(BytesDeserializer::<Error>::new(b"a\xffc")).is_err());
}

/// A cache holds each key in its map, its ring and the definition: one word each.
#[test]
fn an_id_is_one_word() {
    assert_eq!(std::mem::size_of::<FlagId>(), std::mem::size_of::<usize>());
    assert_eq!(
        std::mem::size_of::<Option<FlagId>>(),
        std::mem::size_of::<usize>()
    );
}

#[test]
fn constructors() {
    let b = boolean();
    assert_eq!(
        (b.version, b.enabled, b.default_value.as_bool()),
        (1, true, Some(false))
    );
    assert!(b.rules.is_empty() && b.rollout.is_none() && b.description.is_empty());
    let s = FlagDefinition::new_string("s", "S", "blue").unwrap();
    assert_eq!(
        (s.default_value.kind(), s.default_value.as_str()),
        (FlagKind::String, Some("blue"))
    );
    let n = FlagDefinition::new_number("n", "N", 0.5).unwrap();
    assert_eq!(
        (n.default_value.kind(), n.default_value.as_f64()),
        (FlagKind::Number, Some(0.5))
    );
    let j = FlagDefinition::new_json("j", "J", json!({"a": [1]})).unwrap();
    assert_eq!(j.default_value.as_json(), Some(&json!({"a": [1]})));
    assert_eq!(j.default_value.as_bool(), None);
    assert!(err_msg(FlagDefinition::new_boolean("a b", "x", true)).contains("flag id `a b`"));
    assert!(
        err_msg(FlagDefinition::new_number("n", "N", f64::NAN)).contains("default_value is NaN")
    );
    let full = boolean()
        .with_version(9)
        .with_description("d")
        .with_enabled(false)
        .with_tags(["x", "y"])
        .with_rule(TargetingRule::new("r", Serve::Value(true.into())))
        .with_rollout(half_half());
    assert_eq!(
        (
            full.version,
            full.enabled,
            full.tags.len(),
            full.rules.len()
        ),
        (9, false, 2, 1)
    );
    full.validate().unwrap();
}

#[test]
fn each_validation_failure() {
    let cases: Vec<(FlagDefinition, &str)> = vec![
        (
            FlagDefinition {
                id: FlagId::new("x y"),
                ..boolean()
            },
            "flag id `x y` contains ' '",
        ),
        (
            FlagDefinition {
                name: String::new(),
                ..boolean()
            },
            "flag `f`: name is empty",
        ),
        (
            FlagDefinition {
                name: "n".repeat(257),
                ..boolean()
            },
            "name is 257 bytes long",
        ),
        (
            boolean().with_rule(TargetingRule::new("r", Serve::Value("on".into()))),
            "rules[0] (`r`): serve.value is a string but default_value is a boolean",
        ),
        (
            FlagDefinition::new_number("n", "N", 1.0)
                .unwrap()
                .with_rule(TargetingRule::new("r", Serve::Value(f64::INFINITY.into()))),
            "serve.value is inf; numbers must be finite",
        ),
        (
            boolean().with_rollout(Rollout::new([WeightedValue::new(1.0, 100_000)])),
            "rollout: buckets[0].value is a number but default_value is a boolean",
        ),
        (
            FlagDefinition::new_number("n", "N", 1.0)
                .unwrap()
                .with_rollout(Rollout::new([WeightedValue::new(f64::NAN, 100_000)])),
            "buckets[0].value is NaN",
        ),
        (
            boolean().with_rollout(Rollout::new([])),
            "rollout: no buckets",
        ),
        (
            boolean().with_rollout(Rollout::new([WeightedValue::new(true, 99_999)])),
            "weights sum to 99999; must be exactly 100000",
        ),
        (
            boolean().with_rollout(Rollout::new([
                WeightedValue::new(true, u32::MAX),
                WeightedValue::new(true, u32::MAX),
            ])),
            "weights sum to 8589934590",
        ),
        (
            boolean().with_rollout(Rollout::new(vec![WeightedValue::new(true, 100); 1_001])),
            "1001 buckets; at most 1000",
        ),
        (
            boolean().with_rollout(half_half().with_bucket_by("")),
            "bucket_by is empty",
        ),
        (
            FlagDefinition {
                rules: vec![TargetingRule::new("r", Serve::Value(true.into())); 1_001],
                ..boolean()
            },
            "1001 rules; at most 1000",
        ),
        (
            boolean().with_rule(TargetingRule {
                clauses: vec![Clause::new("a", Operator::In, [1]); 101],
                ..TargetingRule::new("r", Serve::Value(true.into()))
            }),
            "rules[0] (`r`): 101 clauses; at most 100",
        ),
        (
            boolean().with_rule(
                TargetingRule::new("r", Serve::Value(true.into())).with_clause(Clause::new(
                    "",
                    Operator::In,
                    ["x"],
                )),
            ),
            "clauses[0]: attribute is empty",
        ),
        (
            boolean().with_rule(
                TargetingRule::new("r", Serve::Value(true.into())).with_clause(Clause::new(
                    "a",
                    Operator::StartsWith,
                    [json!("x"), json!(5)],
                )),
            ),
            "values[1] is 5; operator starts_with needs a string",
        ),
        (
            boolean().with_rule(
                TargetingRule::new("r", Serve::Value(true.into())).with_clause(Clause::new(
                    "a",
                    Operator::LessThan,
                    ["5"],
                )),
            ),
            "operator less_than needs a number",
        ),
        (
            boolean().with_rule(
                TargetingRule::new("r", Serve::Value(true.into())).with_clause(Clause::new(
                    "a",
                    Operator::SemVerAtLeast,
                    ["1.2-beta"],
                )),
            ),
            "operator semver_at_least needs a dotted numeric version",
        ),
        (
            boolean().with_rule(TargetingRule::new(
                "r",
                Serve::Rollout(Rollout::new([WeightedValue::new("a", 100_000)])),
            )),
            "rules[0] (`r`): serve.rollout: buckets[0].value is a string",
        ),
    ];
    for (def, want) in cases {
        let msg = err_msg(def.validate());
        assert!(msg.contains(want), "{msg:?} should contain {want:?}");
    }
    // At the limits is fine.
    let ok = boolean().with_rule(TargetingRule {
        clauses: vec![Clause::new("a", Operator::SemVerAtLeast, ["1.2.10"]); 100],
        ..TargetingRule::new("r", Serve::Value(true.into()))
    });
    ok.validate().unwrap();
    FlagDefinition {
        rules: vec![TargetingRule::new("r", Serve::Value(true.into())); 1_000],
        ..boolean()
    }
    .validate()
    .unwrap();
}

fn rich() -> FlagDefinition {
    FlagDefinition::new_json(
        "pricing.tiers",
        "Prix \u{1F4B8} \u{65e5}\u{672c}",
        json!({"a": [1, 2.5, null, {"b": "c"}]}),
    )
    .unwrap()
    .with_version(u64::MAX)
    .with_description("d\u{e9}j\u{e0} \"quoted\"\n")
    .with_tags(["t\u{1}", ""])
    .with_rule(
        TargetingRule::new(
            "beta",
            Serve::Value(FlagValue::Json(json!([0.1, 1e300, u64::MAX, i64::MIN]))),
        )
        .with_clause(Clause::new("email", Operator::EndsWith, ["@x.io"]).negated())
        .with_clause(Clause::new(
            "n",
            Operator::In,
            [json!(1), json!(-0.5), json!({"k": [true]})],
        )),
    )
    .with_rollout(
        Rollout::new([
            WeightedValue::new(FlagValue::Json(json!(f64::MAX)), 1),
            WeightedValue::new(FlagValue::Json(json!(5e-324)), 99_999),
        ])
        .with_salt("s")
        .with_bucket_by("org"),
    )
}

#[test]
fn json_round_trip_hand_written() {
    let numbers = [
        0.1,
        1e300,
        -1e-300,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        -0.0,
        123_456_789.0,
    ];
    let mut defs = vec![
        rich(),
        boolean(),
        boolean().with_enabled(false).with_version(0),
    ];
    for n in numbers {
        defs.push(
            FlagDefinition::new_number("n", "N", n)
                .unwrap()
                .with_rollout(Rollout::new([WeightedValue::new(n, 100_000)])),
        );
    }
    for def in defs {
        let bytes = def.to_json();
        assert_eq!(
            FlagDefinition::from_json(&bytes).unwrap(),
            def,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn json_shape_and_minimal_input() {
    let v: serde_json::Value = serde_json::from_slice(&boolean().to_json()).unwrap();
    assert_eq!(
        v["default_value"],
        json!({"type": "boolean", "value": false})
    );
    let def = FlagDefinition::from_json(
        br#"{"id":"m","name":"M","default_value":{"type":"string","value":"x"},"future_field":1}"#,
    )
    .unwrap();
    assert_eq!(def, FlagDefinition::new_string("m", "M", "x").unwrap());
    let rule = r#"{"id":"m","name":"M","default_value":{"type":"boolean","value":false},
        "rules":[{"serve":{"value":{"type":"boolean","value":true}},
                  "clauses":[{"attribute":"v","op":"semver_at_least","values":["2.0"]}]}],
        "rollout":{"buckets":[{"value":{"type":"boolean","value":true},"weight":100000}]}}"#;
    let def = FlagDefinition::from_json(rule.as_bytes()).unwrap();
    assert_eq!(def.rules[0].clauses[0].op, Operator::SemVerAtLeast);
    assert_eq!(def.rollout.unwrap().bucket_by, "key");
}

#[test]
fn from_json_rejects_bad_input() {
    let bad: &[&[u8]] = &[
        b"",
        b"\xff\xfe\x00garbage",
        b"null",
        b"[]",
        b"{}",
        br#"{"id":"m","name":"M","default_value":true}"#,
        br#"{"id":"m","name":"M","default_value":{"type":"boolean","value":"yes"}}"#,
        br#"{"id":"m","name":"M","default_value":{"type":"color","value":1}}"#,
        br#"{"id":"m","name":"M","default_value":{"type":"number","value":1e400}}"#,
        br#"{"id":"m","name":"M","default_value":{"type":"number","value":null}}"#,
        br#"{"id":"m","name":"M","version":18446744073709551616,"default_value":{"type":"boolean","value":true}}"#,
        br#"{"id":"m","name":"M","version":-1,"default_value":{"type":"boolean","value":true}}"#,
        br#"{"id":7,"name":"M","default_value":{"type":"boolean","value":true}}"#,
        br#"{"id":"m","name":"M","default_value":{"type":"boolean","value":true},"rollout":{"buckets":[{"value":{"type":"boolean","value":true},"weight":4294967296}]}}"#,
        br#"{"id":"m","name":"M","default_value":{"type":"boolean","value":true},"rules":[{"serve":{"value":{"type":"boolean","value":true}},"clauses":[{"attribute":"a","op":"matches_regex","values":["."]}]}]}"#,
        br#"{"id":"m m","name":"M","default_value":{"type":"boolean","value":true}}"#,
        br#"{"id":"m","name":"M","default_value":{"type":"boolean","value":true}} trailing"#,
    ];
    for input in bad {
        assert!(
            FlagDefinition::from_json(input).is_err(),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    let deep = format!(
        r#"{{"id":"m","name":"M","default_value":{{"type":"json","value":{}}}}}"#,
        "[".repeat(100_000)
    );
    assert!(err_msg(FlagDefinition::from_json(deep.as_bytes())).contains("cannot decode"));
    let msg = err_msg(FlagDefinition::from_json(bad[6]));
    assert!(msg.contains("expected a boolean"), "{msg}");
    assert!(std::error::Error::source(&FlagDefinition::from_json(b"{").unwrap_err()).is_some());
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".*".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".*", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn flag_value(kind: u8) -> BoxedStrategy<FlagValue> {
    match kind {
        0 => any::<bool>().prop_map(FlagValue::Boolean).boxed(),
        1 => ".*".prop_map(FlagValue::String).boxed(),
        2 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(FlagValue::Number)
            .boxed(),
        _ => json_value().prop_map(FlagValue::Json).boxed(),
    }
}

fn definition() -> impl Strategy<Value = FlagDefinition> {
    (0u8..4).prop_flat_map(|kind| {
        let rollout = (
            prop::collection::vec((flag_value(kind), 0u32..=100_000), 1..4),
            ".*",
            "[a-z]{1,5}",
        )
            .prop_map(|(mut buckets, salt, by)| {
                let mut left = Rollout::TOTAL_WEIGHT;
                for (_, w) in buckets.iter_mut() {
                    *w = (*w).min(left);
                    left -= *w;
                }
                if let Some(last) = buckets.last_mut() {
                    last.1 += left;
                }
                Rollout::new(buckets.into_iter().map(|(v, w)| WeightedValue::new(v, w)))
                    .with_salt(salt)
                    .with_bucket_by(by)
            });
        let clause = (
            "[a-z]{1,8}",
            prop::collection::vec(json_value(), 0..3),
            any::<bool>(),
        )
            .prop_map(|(a, vals, neg)| Clause {
                attribute: a,
                op: Operator::In,
                values: vals,
                negate: neg,
            });
        let rule = (".*", prop::collection::vec(clause, 0..3), flag_value(kind)).prop_map(
            |(id, clauses, v)| TargetingRule {
                id,
                clauses,
                serve: Serve::Value(v),
            },
        );
        (
            "[a-zA-Z0-9._-]{1,40}",
            "\\PC{1,20}",
            ".*",
            any::<bool>(),
            flag_value(kind),
            prop::collection::vec(rule, 0..3),
            prop::option::of(rollout),
            prop::collection::vec(".*", 0..3),
            any::<u64>(),
        )
            .prop_map(
                |(id, name, description, enabled, default_value, rules, rollout, tags, version)| {
                    FlagDefinition {
                        id: FlagId::new(id),
                        name,
                        description,
                        enabled,
                        default_value,
                        rules,
                        rollout,
                        tags,
                        version,
                    }
                },
            )
    })
}

proptest! {
    // No regression files: they would land in the source tree.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    // Needs serde_json's `float_roundtrip` feature: without it, serde_json parses some
    // floats (such as 2.017351698988807e285) one ULP off.
    #[test]
    fn json_round_trip(def in definition()) {
        def.validate().unwrap();
        prop_assert_eq!(FlagDefinition::from_json(&def.to_json()).unwrap(), def);
    }

    #[test]
    fn from_json_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = FlagDefinition::from_json(&bytes);
    }
}
