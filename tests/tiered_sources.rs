//! `TieredCache` does not trust its source of truth: a definition filed under another id (a
//! case-insensitive database answering `Checkout` with `checkout`'s row) or one that fails
//! validation is counted and never cached, served or written back. Real SQLite databases; a
//! `MemoryStore` as L2 to see what would be written back.

#[path = "support/sources.rs"]
mod sources;

use flagcache::{FlagCache, FlagId, FlagStore, MemoryStore, TieredCache};
use sources::{Db, Rewriting, def};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_insensitive_database_does_not_file_one_flag_under_another() {
    let db = Db::case_insensitive("sources-nocase");
    db.source.upsert(&def("checkout", 7)).unwrap();
    let l2 = MemoryStore::new();
    let cache = TieredCache::builder()
        .l2(l2.clone())
        .source(db.source.clone())
        .build()
        .unwrap();

    // One flag: `load("Checkout")` answers checkout's row.
    let wrong = FlagId::new("Checkout");
    assert!(cache.get(&wrong).await.is_none());
    // A batch: `load_many` answers it keyed by its own id, which was not asked.
    let batch = [FlagId::new("CHECKOUT"), FlagId::new("Checkout2")];
    assert!(cache.get_many(&batch).await.is_empty());

    let stats = cache.tiered_stats();
    assert_eq!(stats.l3_rejected, 2, "{stats:?}");
    assert_eq!(stats.l3_fills, 0);
    assert!(cache.l1().get_now("Checkout").is_none());
    assert!(cache.l1().get_now("CHECKOUT").is_none());
    assert!(
        l2.get_many(&[wrong.clone(), batch[0].clone()])
            .await
            .unwrap()
            .is_empty(),
        "nothing written back"
    );
    // The right id still loads.
    let right = cache.get(&FlagId::new("checkout")).await.unwrap();
    assert_eq!(right.definition.version, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_definitions_from_the_source_are_counted_and_never_cached() {
    let db = Db::new("sources-invalid");
    db.source.upsert(&def("nameless", 1)).unwrap();
    db.source.upsert(&def("nan", 1)).unwrap();
    db.source.upsert(&def("fine", 1)).unwrap();
    // A mapping layer that breaks two rows the way user code can (fields set directly).
    let source = Rewriting {
        inner: db.source.clone(),
        rewrite: |mut d: flagcache::FlagDefinition| {
            match d.id.as_str() {
                "nameless" => d.name.clear(),
                "nan" => d.default_value = flagcache::FlagValue::Number(f64::NAN),
                _ => {}
            }
            d
        },
    };
    let l2 = MemoryStore::new();
    let cache = TieredCache::builder()
        .l2(l2.clone())
        .source(source)
        .build()
        .unwrap();
    let ids = ["nameless", "nan", "fine"].map(FlagId::new);
    assert!(cache.get(&ids[0]).await.is_none());
    let got = cache.get_many(&ids[1..]).await;
    assert_eq!(got.len(), 1);
    assert!(got.contains_key(&ids[2]));
    assert_eq!(cache.tiered_stats().l3_rejected, 2);
    assert!(cache.l1().get_now("nameless").is_none());
    assert!(cache.l1().get_now("nan").is_none());
    let in_l2 = l2.get_many(&ids).await.unwrap();
    assert_eq!(in_l2.len(), 1, "only the valid one was written back");

    // Warm-up leaves them out and loads the rest.
    assert_eq!(cache.warm_up().await.unwrap(), 1);
}
