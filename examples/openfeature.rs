//! flagcache behind the OpenFeature SDK: a `TieredCache` warmed up before it is registered
//! (so the SDK's global lock is not held across the warm-up), then flags evaluated through the
//! SDK's client, with their reasons and variants.
//!
//! Run: `cargo run --example openfeature --features openfeature`

use flagcache::{FlagDefinition, FlagId, FlagStore, FlagcacheProvider, MemoryStore, TieredCache};
use open_feature::{EvaluationContext, OpenFeature};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // L2 holds the flags (in production: Redis, with a database behind it).
    let l2 = MemoryStore::new();
    let checkout = FlagDefinition::from_json(
        br#"{"id": "checkout.new-flow", "name": "New checkout",
             "default_value": {"type": "boolean", "value": false},
             "rules": [{"serve": {"value": {"type": "boolean", "value": true}},
                        "clauses": [{"attribute": "country", "op": "in", "values": ["FR"]}]}]}"#,
    )?;
    let banner = FlagDefinition::new_string("home.banner", "Banner", "spring-sale")?;
    l2.set_many(
        &[
            (FlagId::new("checkout.new-flow"), checkout),
            (FlagId::new("home.banner"), banner),
        ],
        Duration::from_secs(600),
    )
    .await?;

    let cache = TieredCache::builder().l2(l2).build()?;
    let loaded = cache.warm_up().await?;
    OpenFeature::singleton_mut()
        .await
        .set_provider(FlagcacheProvider::warmed(cache))
        .await;
    let client = OpenFeature::singleton().await.create_client();

    let french = EvaluationContext::default()
        .with_targeting_key("user-42")
        .with_custom_field("country", "FR");
    let other = EvaluationContext::default().with_targeting_key("user-7");
    println!("{loaded} flags warmed up");
    for (who, ctx) in [("user-42 (FR)", &french), ("user-7", &other)] {
        let d = client
            .get_bool_details("checkout.new-flow", Some(ctx), None)
            .await
            .map_err(|e| format!("checkout.new-flow: {}", e.code))?;
        println!(
            "checkout.new-flow for {who}: {} (reason {:?}, variant {:?})",
            d.value, d.reason, d.variant
        );
    }
    let banner = client
        .get_string_details("home.banner", Some(&other), None)
        .await
        .map_err(|e| format!("home.banner: {}", e.code))?;
    println!(
        "home.banner: {} (reason {:?}, version {:?})",
        banner.value,
        banner.reason,
        banner.flag_metadata.values.get("version")
    );
    match client
        .get_bool_value("no.such.flag", Some(&other), None)
        .await
    {
        Err(e) => println!("no.such.flag: {}", e.code),
        Ok(v) => println!("no.such.flag: {v}?"),
    }
    Ok(())
}
