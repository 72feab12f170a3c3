//! `FlagcacheProvider` through the OpenFeature SDK's own client: every type, reason and error,
//! the context's conversion, the metadata, and the provider's status. Each test registers its
//! provider under a name of its own (the SDK's registry is one per process).

#![cfg(feature = "openfeature")]

#[path = "support/sources.rs"]
mod sources;

use flagcache::{FlagDefinition, FlagId, FlagcacheProvider, LocalCache, MemoryStore, TieredCache};
use open_feature::provider::{FeatureProvider, ProviderStatus};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationErrorCode, EvaluationReason,
    FlagMetadataValue, OpenFeature, StructValue, Value,
};
use std::sync::Arc;
use std::time::Duration;

fn json_def(json: serde_json::Value) -> FlagDefinition {
    FlagDefinition::from_json(json.to_string().as_bytes()).unwrap()
}

/// The flags of these tests, one per case.
fn flags() -> Vec<FlagDefinition> {
    let mut number = FlagDefinition::new_number("price", "Price", 42.0).unwrap();
    number.version = 7;
    vec![
        FlagDefinition::new_boolean("static-bool", "B", true).unwrap(),
        FlagDefinition::new_string("static-string", "S", "blue").unwrap(),
        number,
        FlagDefinition::new_number("fraction", "F", 0.25).unwrap(),
        FlagDefinition::new_number("huge", "H", 1e17).unwrap(),
        FlagDefinition::new_json(
            "config",
            "C",
            serde_json::json!({"limit": 10, "name": "x", "nested": {"on": true}, "gone": null}),
        )
        .unwrap(),
        FlagDefinition::new_json("list", "L", serde_json::json!([1, 2])).unwrap(),
        json_def(serde_json::json!({
            "id": "disabled", "name": "D", "enabled": false,
            "default_value": {"type": "boolean", "value": false},
            "rules": [{"serve": {"value": {"type": "boolean", "value": true}},
                       "clauses": [{"attribute": "country", "op": "in", "values": ["FR"]}]}]
        })),
        json_def(serde_json::json!({
            "id": "targeted", "name": "T",
            "default_value": {"type": "string", "value": "off"},
            "rules": [
                {"serve": {"value": {"type": "string", "value": "plan"}},
                 "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}]},
                {"serve": {"value": {"type": "string", "value": "fr"}},
                 "clauses": [{"attribute": "country", "op": "in", "values": ["FR"]}]},
                {"serve": {"value": {"type": "string", "value": "since"}},
                 "clauses": [{"attribute": "signed_up", "op": "starts_with", "values": ["2026-"]}]},
                {"serve": {"value": {"type": "string", "value": "org"}},
                 "clauses": [{"attribute": "org", "op": "in", "values": [{"tier": "gold"}]}]}
            ]
        })),
        json_def(serde_json::json!({
            "id": "split", "name": "R",
            "default_value": {"type": "string", "value": "none"},
            "rollout": {"buckets": [
                {"value": {"type": "string", "value": "a"}, "weight": 50000},
                {"value": {"type": "string", "value": "b"}, "weight": 50000}
            ]}
        })),
    ]
}

/// A tiered cache over a real SQLite source holding `flags()`, and a provider over it
/// registered under `name`; the SDK's client for it.
async fn client(name: &str) -> (open_feature::Client, TieredCache) {
    let db = sources::Db::new(&format!("openfeature-{name}"));
    for def in flags() {
        db.source.upsert(&def).unwrap();
    }
    let cache = TieredCache::builder()
        .l2(MemoryStore::new())
        .source(db.source.clone())
        .build()
        .unwrap();
    let mut api = OpenFeature::singleton_mut().await;
    api.set_named_provider(name, FlagcacheProvider::new(cache.clone()))
        .await;
    (api.create_named_client(name), cache)
}

fn ctx(key: &str) -> EvaluationContext {
    EvaluationContext::default().with_targeting_key(key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_resolves_through_the_sdk_client() {
    let (client, _cache) = client("types").await;
    let c = ctx("user-1");
    assert!(
        client
            .get_bool_value("static-bool", Some(&c), None)
            .await
            .unwrap()
    );
    assert_eq!(
        client
            .get_string_value("static-string", Some(&c), None)
            .await
            .unwrap(),
        "blue"
    );
    assert_eq!(
        client
            .get_float_value("fraction", Some(&c), None)
            .await
            .unwrap(),
        0.25
    );
    assert_eq!(
        client.get_int_value("price", Some(&c), None).await.unwrap(),
        42
    );
    let config: StructValue = client
        .get_struct_value("config", Some(&c), None)
        .await
        .unwrap();
    assert_eq!(config.fields["limit"], Value::Int(10));
    assert_eq!(config.fields["name"], Value::String("x".into()));
    let Value::Struct(nested) = &config.fields["nested"] else {
        panic!("nested object");
    };
    assert_eq!(nested.fields["on"], Value::Bool(true));
    assert!(!config.fields.contains_key("gone"), "nulls are left out");

    // Type mismatches.
    let mismatch = |r: Result<_, open_feature::EvaluationError>| {
        assert_eq!(r.unwrap_err().code, EvaluationErrorCode::TypeMismatch);
    };
    mismatch(
        client
            .get_int_value("fraction", Some(&c), None)
            .await
            .map(|_| ()),
    );
    mismatch(
        client
            .get_int_value("huge", Some(&c), None)
            .await
            .map(|_| ()),
    );
    mismatch(
        client
            .get_bool_value("static-string", Some(&c), None)
            .await
            .map(|_| ()),
    );
    mismatch(
        client
            .get_string_value("price", Some(&c), None)
            .await
            .map(|_| ()),
    );
    mismatch(
        client
            .get_float_value("static-bool", Some(&c), None)
            .await
            .map(|_| ()),
    );
    mismatch(
        client
            .get_struct_value::<StructValue>("list", Some(&c), None)
            .await
            .map(|_| ()),
    );
    mismatch(
        client
            .get_struct_value::<StructValue>("static-bool", Some(&c), None)
            .await
            .map(|_| ()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasons_variants_and_metadata_follow_the_evaluation() {
    let (client, _cache) = client("reasons").await;
    let c = ctx("user-1");

    let d = client
        .get_bool_details("static-bool", Some(&c), None)
        .await
        .unwrap();
    assert_eq!(d.reason, Some(EvaluationReason::Static));
    assert_eq!(d.variant.as_deref(), Some("default"));

    let d = client
        .get_float_details("price", Some(&c), None)
        .await
        .unwrap();
    assert_eq!(
        d.flag_metadata.values.get("version"),
        Some(&FlagMetadataValue::Int(7))
    );

    let fr = ctx("user-2").with_custom_field("country", "FR");
    let d = client
        .get_bool_details("disabled", Some(&fr), None)
        .await
        .unwrap();
    assert!(!d.value);
    assert_eq!(d.reason, Some(EvaluationReason::Disabled));
    assert_eq!(d.variant.as_deref(), Some("default"));

    let d = client
        .get_string_details("targeted", Some(&fr), None)
        .await
        .unwrap();
    assert_eq!(d.value, "fr");
    assert_eq!(d.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(d.variant.as_deref(), Some("rule-1"));

    let nobody = ctx("user-3");
    let d = client
        .get_string_details("targeted", Some(&nobody), None)
        .await
        .unwrap();
    assert_eq!(d.value, "off");
    assert_eq!(d.reason, Some(EvaluationReason::Default));
    assert_eq!(d.variant.as_deref(), Some("default"));

    // A rollout: each key lands in one bucket, the variant names it.
    let mut seen = std::collections::HashSet::new();
    for i in 0..50 {
        let d = client
            .get_string_details("split", Some(&ctx(&format!("user-{i}"))), None)
            .await
            .unwrap();
        assert_eq!(d.reason, Some(EvaluationReason::Split));
        let expected = match d.value.as_str() {
            "a" => "rollout-0",
            "b" => "rollout-1",
            other => panic!("served {other}"),
        };
        assert_eq!(d.variant.as_deref(), Some(expected));
        seen.insert(d.value);
    }
    assert_eq!(seen.len(), 2, "both buckets served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_becomes_attributes() {
    let (client, _cache) = client("context").await;
    let targeted = |c: EvaluationContext| {
        let client = &client;
        async move {
            client
                .get_string_value("targeted", Some(&c), None)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        targeted(ctx("u").with_custom_field("plan", "pro")).await,
        "plan"
    );
    // A date-time, as RFC 3339.
    let signed_up = time::OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap();
    assert_eq!(
        targeted(ctx("u").with_custom_field("signed_up", signed_up)).await,
        "since"
    );
    // A struct, as a JSON object.
    let mut gold = StructValue::default();
    gold.add_field("tier", "gold");
    assert_eq!(
        targeted(ctx("u").with_custom_field("org", EvaluationContextFieldValue::new_struct(gold)))
            .await,
        "org"
    );
    // A struct of a type flagcache does not know is an absent attribute, not an error.
    assert_eq!(
        targeted(ctx("u").with_custom_field("org", EvaluationContextFieldValue::new_struct(3u8)))
            .await,
        "off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_not_found_and_not_ready() {
    let (client, _cache) = client("errors").await;
    let e = client
        .get_bool_value("no-such-flag", Some(&ctx("u")), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::FlagNotFound);

    // A provider never initialized is not ready; one whose warm-up cannot finish is in error.
    let db = sources::Db::new("openfeature-not-ready");
    db.source.upsert(&flags()[0]).unwrap();
    let cache = TieredCache::builder()
        .source(db.source.clone())
        .build()
        .unwrap();
    let provider = FlagcacheProvider::new(cache);
    assert_eq!(provider.status(), ProviderStatus::NotReady);
    let e = provider
        .resolve_bool_value("static-bool", &ctx("u"))
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::ProviderNotReady);

    // A source that never answers (held): the warm-up runs out of its budget, and a read out
    // of its source timeout.
    let held = sources::Gated::new(db.source.clone()).holding_load_all();
    let failing = TieredCache::builder()
        .source(held)
        .source_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut provider = FlagcacheProvider::new(failing).warm_up_budget(Duration::from_millis(200));
    provider.initialize(&EvaluationContext::default()).await;
    assert_eq!(provider.status(), ProviderStatus::Error);
    // Nothing cached and the backends fail: not ready, not "not found".
    let e = provider
        .resolve_bool_value("static-bool", &ctx("u"))
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::ProviderNotReady);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_ready_after_warm_up_and_stale_while_the_fail_safe_serves() {
    let l1 = Arc::new(
        LocalCache::builder()
            .default_ttl(Duration::from_millis(50))
            .stale_grace(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    l1.try_set(&FlagId::new("static-bool"), flags()[0].clone(), None)
        .unwrap();
    let provider = FlagcacheProvider::local(l1.clone());
    assert_eq!(provider.status(), ProviderStatus::Ready);
    let d = provider
        .resolve_bool_value("static-bool", &ctx("u"))
        .await
        .unwrap();
    assert_eq!(d.reason, Some(EvaluationReason::Static));

    // Past its TTL, within the stale grace: served, as STALE, and the status says so.
    tokio::time::sleep(Duration::from_millis(120)).await;
    let d = provider
        .resolve_bool_value("static-bool", &ctx("u"))
        .await
        .unwrap();
    assert_eq!(d.reason, Some(EvaluationReason::Other("STALE".into())));
    assert_eq!(provider.status(), ProviderStatus::STALE);
    // A fresh answer again: ready.
    l1.try_set(&FlagId::new("static-bool"), flags()[0].clone(), None)
        .unwrap();
    provider
        .resolve_bool_value("static-bool", &ctx("u"))
        .await
        .unwrap();
    assert_eq!(provider.status(), ProviderStatus::Ready);

    // Through the SDK: set_provider runs initialize, which warms the cache up.
    let (client, cache) = client("status").await;
    assert!(
        cache.l1().get_now("static-bool").is_some(),
        "warmed up before any evaluation"
    );
    assert!(
        client
            .get_bool_value("static-bool", Some(&ctx("u")), None)
            .await
            .unwrap()
    );
}

/// A provider over an L1 holding `defs`, ready at once.
fn local_provider(defs: Vec<FlagDefinition>) -> FlagcacheProvider {
    let l1 = Arc::new(LocalCache::builder().build().unwrap());
    for def in defs {
        l1.try_set(&FlagId::new(def.id.as_str()), def, None)
            .unwrap();
    }
    FlagcacheProvider::local(l1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_targeting_key_is_the_key_and_a_missing_one_places_nobody() {
    let rule_on_key = json_def(serde_json::json!({
        "id": "key-rule", "name": "K",
        "default_value": {"type": "string", "value": "off"},
        "rules": [{"serve": {"value": {"type": "string", "value": "on"}},
                   "clauses": [{"attribute": "key", "op": "in", "values": ["alice", ""]}]}]
    }));
    let p = local_provider(vec![rule_on_key, flags().pop().unwrap()]);
    // A custom field named `key` does not replace the targeting key.
    let bob = ctx("bob").with_custom_field("key", "alice");
    assert_eq!(
        p.resolve_string_value("key-rule", &bob)
            .await
            .unwrap()
            .value,
        "off"
    );
    let mut values = std::collections::HashSet::new();
    for i in 0..64 {
        let c = ctx(&format!("user-{i}")).with_custom_field("key", "shared");
        values.insert(p.resolve_string_value("split", &c).await.unwrap().value);
    }
    assert_eq!(
        values.len(),
        2,
        "distinct targeting keys spread over the buckets"
    );
    // No targeting key: not the key "", and a rollout by key cannot place the context.
    let nobody = EvaluationContext::default();
    assert_eq!(
        p.resolve_string_value("key-rule", &nobody)
            .await
            .unwrap()
            .value,
        "off"
    );
    let d = p.resolve_string_value("split", &nobody).await.unwrap();
    assert_eq!(
        (d.value.as_str(), d.reason),
        ("none", Some(EvaluationReason::Default))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_serving_a_rollout_names_each_bucket_as_a_variant() {
    let rule_split = json_def(serde_json::json!({
        "id": "rule-split", "name": "RS",
        "default_value": {"type": "string", "value": "off"},
        "rules": [{"serve": {"rollout": {"buckets": [
                        {"value": {"type": "string", "value": "a"}, "weight": 50000},
                        {"value": {"type": "string", "value": "b"}, "weight": 50000}]}},
                   "clauses": [{"attribute": "beta", "op": "in", "values": [true]}]}]
    }));
    let p = local_provider(vec![rule_split]);
    let mut by_variant =
        std::collections::HashMap::<String, std::collections::HashSet<String>>::new();
    for i in 0..64 {
        let c = ctx(&format!("user-{i}")).with_custom_field("beta", true);
        let d = p.resolve_string_value("rule-split", &c).await.unwrap();
        assert_eq!(d.reason, Some(EvaluationReason::TargetingMatch));
        by_variant
            .entry(d.variant.unwrap())
            .or_default()
            .insert(d.value);
    }
    assert_eq!(by_variant.len(), 2, "{by_variant:?}");
    assert!(
        by_variant.values().all(|values| values.len() == 1),
        "{by_variant:?}"
    );
    assert!(
        by_variant.contains_key("rule-0/rollout-0") && by_variant.contains_key("rule-0/rollout-1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integers_are_exact_and_date_times_are_utc() {
    // 2^53 + 1 is stored as JSON but reads back as 2^53: not an exact integer.
    let big = FlagDefinition::from_json(
        br#"{"id":"big","name":"B","default_value":{"type":"number","value":9007199254740993}}"#,
    )
    .unwrap();
    let since = json_def(serde_json::json!({
        "id": "since", "name": "S",
        "default_value": {"type": "string", "value": "old"},
        "rules": [{"serve": {"value": {"type": "string", "value": "new"}},
                   "clauses": [{"attribute": "at", "op": "starts_with", "values": ["2026-"]}]}]
    }));
    let p = local_provider(vec![big, since]);
    let e = p.resolve_int_value("big", &ctx("u")).await.unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::TypeMismatch);
    // 2025-12-31T23:30:00Z, seen from +02:00 (2026-01-01T01:30+02:00): one instant, one answer.
    let instant = time::OffsetDateTime::from_unix_timestamp(1_767_223_800).unwrap();
    let east = instant.to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
    for at in [instant, east] {
        let c = ctx("u").with_custom_field("at", at);
        assert_eq!(
            p.resolve_string_value("since", &c).await.unwrap().value,
            "old"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_whose_warm_up_failed_becomes_ready_when_the_backends_answer() {
    let db = sources::Db::new("openfeature-recovers");
    db.source.upsert(&flags()[0]).unwrap();
    let gated = sources::Gated::new(db.source.clone()).holding_load_all();
    let cache = TieredCache::builder()
        .source(gated.clone())
        .source_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut p = FlagcacheProvider::new(cache).warm_up_budget(Duration::from_millis(150));
    p.initialize(&EvaluationContext::default()).await;
    assert_eq!(p.status(), ProviderStatus::Error);
    // The source answers again: a fresh answer makes the provider ready.
    gated.open();
    let d = p
        .resolve_bool_value("static-bool", &ctx("u"))
        .await
        .unwrap();
    assert_eq!(d.reason, Some(EvaluationReason::Static));
    assert_eq!(p.status(), ProviderStatus::Ready);
}

/// A source that always fails, as a database that is down.
struct Down;

impl flagcache::FlagSource for Down {
    async fn load(&self, _: &FlagId) -> flagcache::Result<Option<FlagDefinition>> {
        Err(flagcache::Error::new(
            flagcache::ErrorKind::Unavailable,
            "down",
        ))
    }

    async fn load_all(&self) -> flagcache::Result<Vec<FlagDefinition>> {
        Err(flagcache::Error::new(
            flagcache::ErrorKind::Unavailable,
            "down",
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_booted_from_a_snapshot_resolve_as_stale() {
    let dir = std::env::temp_dir().join(format!("flagcache-of-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let snapshot = dir.join("flags.snapshot");
    let writer = TieredCache::builder()
        .snapshot_file(&snapshot)
        .build()
        .unwrap();
    writer
        .try_set(&FlagId::new("static-bool"), flags()[0].clone(), None)
        .await
        .unwrap();
    writer.save_snapshot().await.unwrap();
    // Started with the source down and no L2: the snapshot is all there is.
    let cache = TieredCache::builder()
        .source(Down)
        .snapshot_file(&snapshot)
        .warm_up_budget(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut provider = FlagcacheProvider::new(cache);
    provider.initialize(&EvaluationContext::default()).await;
    let d = provider
        .resolve_bool_value("static-bool", &ctx("u"))
        .await
        .unwrap();
    assert!(d.value);
    assert_eq!(d.reason, Some(EvaluationReason::Other("STALE".into())));
    std::fs::remove_dir_all(dir).unwrap();
}
