//! `PostgresSource` on a real PostgreSQL (a schema of its own per test) and, for the fleet, a
//! real `redis-server` as L2 and backplane: loads, the triggers, and the change feed through
//! plain SQL, a killed connection and a truncated table.

#![allow(clippy::disallowed_types)]

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/redis_server.rs"]
mod redis_server;
#[path = "support/wait.rs"]
mod wait;

use flagcache::{
    ErrorKind, FlagCache, FlagDefinition, FlagId, FlagSource, PostgresSource, TieredCache,
};
use postgres::{Instance, Pg};
use redis_server::RedisServer;
use std::time::Duration;
use wait::wait_for;

fn def(id: &str, version: u64) -> FlagDefinition {
    FlagDefinition::new_boolean(id, "A flag", true)
        .unwrap()
        .with_version(version)
}

fn ids(ids: &[&str]) -> Vec<FlagId> {
    ids.iter().copied().map(FlagId::new).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_read_the_table_and_the_triggers_keep_versions_growing() {
    let Some(pg) = Pg::start("loads").await else {
        return;
    };
    let source = pg.source();
    source.install().await.unwrap();
    source.install().await.unwrap(); // idempotent
    source.upsert(&def("a", 3)).await.unwrap();
    source.upsert(&def("b", 1)).await.unwrap();

    assert_eq!(
        source
            .load(&FlagId::new("a"))
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );
    assert!(source.load(&FlagId::new("none")).await.unwrap().is_none());
    let many = source.load_many(&ids(&["a", "b", "none"])).await.unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(source.load_all().await.unwrap().len(), 2);

    // An edit in plain SQL that leaves the version as it is: the trigger gives it the
    // sequence's next value (b's insert took 4).
    let table = source.table().to_owned();
    pg.sql(&format!(
        "UPDATE {table} SET definition = jsonb_set(definition, '{{enabled}}', 'false') WHERE id = 'a'"
    ))
    .await;
    let a = source.load(&FlagId::new("a")).await.unwrap().unwrap();
    assert_eq!((a.version, a.enabled), (5, false));
    // The columns win over the document's own id and version.
    pg.sql(&format!(
        "UPDATE {table} SET definition = definition || '{{\"id\": \"other\", \"version\": 99}}' WHERE id = 'b'"
    ))
    .await;
    let b = source.load(&FlagId::new("b")).await.unwrap().unwrap();
    assert_eq!((b.id.as_str(), b.version), ("b", 6));

    // A row that is not a flag: answered as an invalid definition of its id (which the cache
    // rejects), never as "absent", and the other rows still load.
    pg.sql(&format!(
        "INSERT INTO {table} (id, definition) VALUES ('bad', '{{\"name\": 5}}')"
    ))
    .await;
    let bad = source.load(&FlagId::new("bad")).await.unwrap().unwrap();
    assert_eq!(bad.validate().unwrap_err().kind(), ErrorKind::InvalidFlag);
    let many = source.load_many(&ids(&["a", "bad"])).await.unwrap();
    assert!(many[&FlagId::new("a")].validate().is_ok());
    assert!(many[&FlagId::new("bad")].validate().is_err());
    assert_eq!(source.load_all().await.unwrap().len(), 3);
    let cache = TieredCache::builder()
        .source(source.clone())
        .build()
        .unwrap();
    assert!(cache.get(&FlagId::new("bad")).await.is_none());
    assert!(cache.get(&FlagId::new("a")).await.is_some());
    assert_eq!(cache.tiered_stats().l3_rejected, 1);
}

#[tokio::test]
async fn bad_settings_fail_at_build() {
    for (schema, table) in [("Public", "flags"), ("public", "flags;--"), ("", "flags")] {
        let e = PostgresSource::builder(postgres::DEFAULT_URL)
            .schema(schema)
            .table(table)
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{schema}.{table}");
    }
    let e = PostgresSource::builder("postgres://[nonsense")
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    let e = PostgresSource::builder(postgres::DEFAULT_URL)
        .heartbeat(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConfig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_is_killed_is_made_again() {
    let Some(pg) = Pg::start("reconnect").await else {
        return;
    };
    let source = pg.source();
    source.install().await.unwrap();
    source.upsert(&def("a", 1)).await.unwrap();
    for pid in pg.flagcache_backends(false).await {
        pg.terminate(pid).await;
    }
    // The first load may find the connection dead (Unavailable); a later one reconnects.
    let mut loaded = None;
    for _ in 0..50 {
        match source.load(&FlagId::new("a")).await {
            Ok(found) => {
                loaded = found;
                break;
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(loaded.unwrap().version, 1);
}

async fn fleet(redis: &RedisServer, source: &PostgresSource, n: usize) -> Vec<Instance> {
    let mut fleet = Vec::new();
    for _ in 0..n {
        fleet.push(Instance::start(&redis.url(), source).await);
    }
    wait_for("one follower", || {
        fleet
            .iter()
            .filter(|i| i.cache.tiered_stats().feed_following)
            .count()
            == 1
    })
    .await;
    fleet
}

fn version(cache: &TieredCache, id: &str) -> Option<u64> {
    cache.l1().get_now(id).map(|f| f.definition.version)
}

/// Waits for every instance's L1 to drop `old` of `id`, then reads it through the layers: the
/// source's version (or nothing, when the source has none).
async fn wait_version(fleet: &[Instance], source: &PostgresSource, id: &str, old: u64) {
    let want = source
        .load(&FlagId::new(id))
        .await
        .unwrap()
        .map(|d| d.version);
    for i in fleet {
        wait_for(&format!("{id} v{old} gone from every L1"), || {
            version(&i.cache, id) != Some(old)
        })
        .await;
        let got = i
            .cache
            .get(&FlagId::new(id))
            .await
            .map(|f| f.definition.version);
        assert_eq!(got, want, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sql_reaches_every_instance_and_a_killed_feed_is_followed_again() {
    let Some(pg) = Pg::start("feed").await else {
        return;
    };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let source = pg.source();
    source.install().await.unwrap();
    source.upsert(&def("a", 1)).await.unwrap();
    source.upsert(&def("b", 1)).await.unwrap();
    let fleet = fleet(&redis, &source, 3).await;
    let table = source.table().to_owned();
    for i in &fleet {
        for id in ["a", "b"] {
            assert_eq!(
                i.cache
                    .get(&FlagId::new(id))
                    .await
                    .unwrap()
                    .definition
                    .version,
                source
                    .load(&FlagId::new(id))
                    .await
                    .unwrap()
                    .unwrap()
                    .version
            );
        }
    }

    // An admin edits in plain SQL: the trigger raises the version and notifies on commit.
    pg.sql(&format!(
        "UPDATE {table} SET definition = jsonb_set(definition, '{{enabled}}', 'false') WHERE id = 'a'"
    ))
    .await;
    wait_version(&fleet, &source, "a", 1).await;
    for i in &fleet {
        assert!(
            !i.cache
                .get(&FlagId::new("a"))
                .await
                .unwrap()
                .definition
                .enabled
        );
    }

    // The feed's connection is killed; a change lands before it is back: the follower
    // listens again, resyncs, and the change arrives.
    let listening = pg.flagcache_backends(true).await;
    assert_eq!(listening.len(), 1, "one LISTEN for the fleet");
    let subscriptions: u64 = fleet
        .iter()
        .map(|i| i.cache.tiered_stats().feed_subscriptions)
        .sum();
    pg.terminate(listening[0]).await;
    pg.sql(&format!("DELETE FROM {table} WHERE id = 'b'")).await;
    wait_version(&fleet, &source, "b", 2).await;
    wait_for("the feed followed again", || {
        fleet
            .iter()
            .map(|i| i.cache.tiered_stats().feed_subscriptions)
            .sum::<u64>()
            > subscriptions
    })
    .await;

    // A TRUNCATE: anything may have changed; every flag is checked.
    pg.sql(&format!("TRUNCATE {table}")).await;
    wait_version(&fleet, &source, "a", 3).await;
}
