//! The OpenFeature specification's evaluation scenarios (its Gherkin `evaluation.feature`,
//! the ones without a CEL or flagd-specific part), translated to flagcache definitions and run
//! through the SDK's client. Two translations: flagcache names variants itself (`default`,
//! `rule-N`, `rollout-N`) where the scenarios name them (`on`, `greeting`, ...), and the Rust
//! SDK returns an error where the scenarios expect the caller's default value back.

#![cfg(feature = "openfeature")]

use flagcache::{FlagDefinition, FlagId, FlagcacheProvider, LocalCache};
use open_feature::{
    EvaluationContext, EvaluationErrorCode, EvaluationReason, OpenFeature, StructValue, Value,
};
use std::sync::Arc;

fn json_def(json: serde_json::Value) -> FlagDefinition {
    FlagDefinition::from_json(json.to_string().as_bytes()).unwrap()
}

/// The scenarios' flags, behind a provider registered under `name`. Each test uses a name of
/// its own: the SDK's registry is global, and while `set_named_provider` replaces a provider
/// the name answers with the no-op provider, so a shared name failed other tests' evaluations.
async fn client(name: &str) -> open_feature::Client {
    let l1 = Arc::new(LocalCache::builder().build().unwrap());
    let defs = [
        FlagDefinition::new_boolean("boolean-flag", "boolean-flag", true).unwrap(),
        FlagDefinition::new_string("string-flag", "string-flag", "hi").unwrap(),
        FlagDefinition::new_number("integer-flag", "integer-flag", 10.0).unwrap(),
        FlagDefinition::new_number("float-flag", "float-flag", 0.5).unwrap(),
        FlagDefinition::new_json(
            "object-flag",
            "object-flag",
            serde_json::json!({"showImages": true, "title": "Check out these pics!", "imagesPerPage": 100}),
        )
        .unwrap(),
        // "INTERNAL" for the scenario's context (fn, ln, age, customer), "EXTERNAL" otherwise.
        json_def(serde_json::json!({
            "id": "context-aware", "name": "context-aware",
            "default_value": {"type": "string", "value": "EXTERNAL"},
            "rules": [{"serve": {"value": {"type": "string", "value": "INTERNAL"}},
                       "clauses": [
                           {"attribute": "fn", "op": "in", "values": ["Sulisław"]},
                           {"attribute": "ln", "op": "in", "values": ["Świętopełk"]},
                           {"attribute": "age", "op": "in", "values": [29]},
                           {"attribute": "customer", "op": "in", "values": [false]}
                       ]}]
        })),
        FlagDefinition::new_string("wrong-flag", "wrong-flag", "i'm a string").unwrap(),
    ];
    for def in defs {
        l1.try_set(&FlagId::new(def.id.as_str()), def, None)
            .unwrap();
    }
    let mut api = OpenFeature::singleton_mut().await;
    api.set_named_provider(name, FlagcacheProvider::local(l1))
        .await;
    api.create_named_client(name)
}

#[tokio::test]
async fn resolves_each_type() {
    let c = client("resolves_each_type").await;
    assert!(c.get_bool_value("boolean-flag", None, None).await.unwrap());
    assert_eq!(
        c.get_string_value("string-flag", None, None).await.unwrap(),
        "hi"
    );
    assert_eq!(
        c.get_int_value("integer-flag", None, None).await.unwrap(),
        10
    );
    assert_eq!(
        c.get_float_value("float-flag", None, None).await.unwrap(),
        0.5
    );
    let object: StructValue = c.get_struct_value("object-flag", None, None).await.unwrap();
    assert_eq!(object.fields["showImages"], Value::Bool(true));
    assert_eq!(
        object.fields["title"],
        Value::String("Check out these pics!".into())
    );
    assert_eq!(object.fields["imagesPerPage"], Value::Int(100));
}

#[tokio::test]
async fn resolves_each_type_with_details() {
    let c = client("resolves_each_type_with_details").await;
    let d = c
        .get_bool_details("boolean-flag", None, None)
        .await
        .unwrap();
    assert!(d.value);
    assert_eq!(d.reason, Some(EvaluationReason::Static));
    assert_eq!(d.variant.as_deref(), Some("default"));
    let d = c
        .get_string_details("string-flag", None, None)
        .await
        .unwrap();
    assert_eq!(
        (d.value.as_str(), d.reason),
        ("hi", Some(EvaluationReason::Static))
    );
    let d = c.get_int_details("integer-flag", None, None).await.unwrap();
    assert_eq!((d.value, d.reason), (10, Some(EvaluationReason::Static)));
    let d = c.get_float_details("float-flag", None, None).await.unwrap();
    assert_eq!((d.value, d.reason), (0.5, Some(EvaluationReason::Static)));
    let d = c
        .get_struct_details::<StructValue>("object-flag", None, None)
        .await
        .unwrap();
    assert_eq!(d.reason, Some(EvaluationReason::Static));
    assert_eq!(d.value.fields["imagesPerPage"], Value::Int(100));
}

#[tokio::test]
async fn resolves_based_on_context() {
    let c = client("resolves_based_on_context").await;
    let ctx = EvaluationContext::default()
        .with_targeting_key("")
        .with_custom_field("fn", "Sulisław")
        .with_custom_field("ln", "Świętopełk")
        .with_custom_field("age", 29)
        .with_custom_field("customer", false);
    let d = c
        .get_string_details("context-aware", Some(&ctx), None)
        .await
        .unwrap();
    assert_eq!(d.value, "INTERNAL");
    assert_eq!(d.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(d.variant.as_deref(), Some("rule-0"));
    // Another context: the default.
    let other = EvaluationContext::default().with_custom_field("fn", "Jan");
    let d = c
        .get_string_details("context-aware", Some(&other), None)
        .await
        .unwrap();
    assert_eq!(d.value, "EXTERNAL");
    assert_eq!(d.reason, Some(EvaluationReason::Default));
}

#[tokio::test]
async fn a_missing_flag_and_a_type_error_are_errors_with_their_codes() {
    let c = client("a_missing_flag_and_a_type_error_are_errors_with_their_codes").await;
    let e = c
        .get_string_value("missing-flag", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::FlagNotFound);
    let e = c.get_int_value("wrong-flag", None, None).await.unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::TypeMismatch);
}
