//! `TieredCache::start_metrics_task` through a debugging recorder: the statistics arrive under
//! `flagcache_*` names with low-cardinality labels only, and L2 and source calls are timed.
//! (Its own binary: a recorder is global.)

#![cfg(feature = "metrics")]

#[path = "support/sources.rs"]
mod sources;

use flagcache::{FlagCache, FlagId, MemoryStore, TieredCache};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use sources::{Db, def};
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_reach_the_metrics_facade_with_low_cardinality_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let db = Db::new("metrics");
    for i in 0..20 {
        db.source.upsert(&def(&format!("flag-{i}"), 1)).unwrap();
    }
    let cache = TieredCache::builder()
        .l2(MemoryStore::new())
        .source(db.source.clone())
        .build()
        .unwrap();
    for i in 0..20 {
        assert!(cache.get(&FlagId::new(format!("flag-{i}"))).await.is_some());
    }
    for _ in 0..500 {
        assert!(cache.get_with("flag-3", |d| d.enabled).is_some());
    }
    assert!(cache.get(&FlagId::new("absent")).await.is_none());
    let stats = cache.tiered_stats();
    let _task = cache
        .start_metrics_task("checkout", Duration::from_millis(10))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut values = std::collections::HashMap::new();
    let mut label_values = HashSet::new();
    let mut call_samples = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        assert!(key.name().starts_with("flagcache_"), "{}", key.name());
        let labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        for (name, value) in &labels {
            assert!(
                matches!(name.as_str(), "cache" | "layer" | "outcome"),
                "label {name}"
            );
            label_values.insert(value.clone());
        }
        if key.name() == "flagcache_call_seconds" {
            if let DebugValue::Histogram(samples) = &value {
                call_samples += samples.len();
            }
        }
        values.insert((key.name().to_owned(), labels), value);
    }
    // No flag id in any label.
    assert!(
        !label_values
            .iter()
            .any(|v| v.starts_with("flag-") || v == "absent")
    );

    let counter = |name: &str, labels: &[(&str, &str)]| {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        match values.get(&(name.to_owned(), labels)) {
            Some(DebugValue::Counter(n)) => *n,
            other => panic!("{name}: {other:?}"),
        }
    };
    assert_eq!(
        counter(
            "flagcache_hits_total",
            &[("cache", "checkout"), ("layer", "l1")]
        ),
        stats.l1.hits
    );
    assert!(stats.l1.hits >= 500);
    assert_eq!(
        counter(
            "flagcache_hits_total",
            &[("cache", "checkout"), ("layer", "l3")]
        ),
        20
    );
    assert_eq!(
        counter(
            "flagcache_misses_total",
            &[("cache", "checkout"), ("layer", "tiered")]
        ),
        1
    );
    assert_eq!(
        counter("flagcache_source_calls_total", &[("cache", "checkout")]),
        stats.l3_loads
    );
    assert_eq!(
        counter("flagcache_source_errors_total", &[("cache", "checkout")]),
        0
    );
    for name in [
        "flagcache_feed_changes_total",
        "flagcache_feed_resyncs_total",
        "flagcache_l2_refills_total",
        "flagcache_snapshots_written_total",
    ] {
        assert_eq!(counter(name, &[("cache", "checkout")]), 0, "{name}");
    }
    assert_eq!(
        values.get(&(
            "flagcache_feed_following".to_owned(),
            vec![("cache".to_owned(), "checkout".to_owned())]
        )),
        Some(&DebugValue::Gauge(0.0.into()))
    );
    assert_eq!(
        values.get(&(
            "flagcache_size".to_owned(),
            vec![
                ("cache".to_owned(), "checkout".to_owned()),
                ("layer".to_owned(), "l1".to_owned())
            ]
        )),
        Some(&DebugValue::Gauge(20.0.into()))
    );
    // L2 reads and source loads of the misses, timed.
    assert!(call_samples >= 2, "{call_samples} call samples");
}
