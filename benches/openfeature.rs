//! What an evaluation through OpenFeature costs, and which part of it is flagcache's: one
//! targeted boolean flag (a rule on `country`), a hit in L1, evaluated
//! - directly: `TieredCache::get_with` + `FlagDefinition::evaluate` (no clone, no allocation);
//! - through the provider alone: `FlagcacheProvider::resolve_bool_value` (the context
//!   converted, the flag id allocated, the definition's `Arc` cloned, the details built);
//! - through the SDK's client: `Client::get_bool_value` (the SDK's global lock, context
//!   merging, hooks, then the provider).
//!
//! The provider and the client are async, so their timings include one `block_on` of the
//! current-thread runtime, timed alone as `block_on_floor`.
//!
//! Run: `cargo bench --bench openfeature --features openfeature`.

use criterion::{Criterion, criterion_group, criterion_main};
use flagcache::{EvalContext, FlagDefinition, FlagId, FlagcacheProvider, TieredCache};
use open_feature::provider::FeatureProvider;
use open_feature::{EvaluationContext, OpenFeature};
use std::hint::black_box;
use std::time::Duration;

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let def = FlagDefinition::from_json(
        br#"{"id": "checkout.new-flow", "name": "New checkout",
             "default_value": {"type": "boolean", "value": false},
             "rules": [{"serve": {"value": {"type": "boolean", "value": true}},
                        "clauses": [{"attribute": "country", "op": "in", "values": ["FR"]}]}]}"#,
    )
    .unwrap();
    let (cache, provider, client) = runtime.block_on(async {
        let cache = TieredCache::builder()
            .l1_ttl(Duration::from_secs(3600))
            .build()
            .unwrap();
        cache
            .l1()
            .try_set(&FlagId::new("checkout.new-flow"), def, None)
            .unwrap();
        let provider = FlagcacheProvider::warmed(cache.clone());
        OpenFeature::singleton_mut()
            .await
            .set_provider(FlagcacheProvider::warmed(cache.clone()))
            .await;
        let client = OpenFeature::singleton().await.create_client();
        (cache, provider, client)
    });
    let ours = EvalContext::new("user-42").with_attribute("country", "FR");
    let sdk = EvaluationContext::default()
        .with_targeting_key("user-42")
        .with_custom_field("country", "FR");

    let mut g = c.benchmark_group("openfeature/evaluate");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.bench_function("get_with_evaluate", |b| {
        b.iter(|| {
            let on = cache.get_with("checkout.new-flow", |d| {
                matches!(d.evaluate(&ours).value, flagcache::FlagValue::Boolean(true))
            });
            assert_eq!(black_box(on), Some(true));
        })
    });
    // What `block_on` of a ready future costs: part of the two timings below, not of theirs.
    g.bench_function("block_on_floor", |b| {
        b.iter(|| black_box(runtime.block_on(async { black_box(1) })))
    });
    g.bench_function("provider", |b| {
        b.iter(|| {
            let d = runtime
                .block_on(provider.resolve_bool_value("checkout.new-flow", &sdk))
                .unwrap();
            assert!(black_box(d.value));
        })
    });
    g.bench_function("sdk_client", |b| {
        b.iter(|| {
            let on = runtime
                .block_on(client.get_bool_value("checkout.new-flow", Some(&sdk), None))
                .unwrap();
            assert!(black_box(on));
        })
    });
    g.finish();
}

criterion_group!(openfeature, benches);
criterion_main!(openfeature);
