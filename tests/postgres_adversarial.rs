//! The PostgreSQL source and its change feed against what an adversarial review tried: rows
//! replaced, re-seeded or lowered in version, rows that are not flags, a table of another shape,
//! reserved words as names, a burst beyond the feed's capacity, a loading connection gone
//! silent. Each test was seen failing before its fix.

#![allow(clippy::disallowed_types)]

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/proxy.rs"]
mod proxy;
#[path = "support/redis_server.rs"]
mod redis_server;

use flagcache::{FlagCache, FlagDefinition, FlagId, PostgresSource, TieredCache};
use postgres::{Instance, Pg};
use redis_server::RedisServer;
use std::time::{Duration, Instant};

fn def(id: &str, version: u64, enabled: bool) -> FlagDefinition {
    let mut d = FlagDefinition::new_boolean(id, "A flag", true)
        .unwrap()
        .with_version(version);
    d.enabled = enabled;
    d
}

/// The fleet's one instance, following the feed once its first resync is done.
async fn instance(redis: &RedisServer, source: &PostgresSource) -> Instance {
    let i = Instance::start(&redis.url(), source).await;
    let started = Instant::now();
    while i.cache.tiered_stats().feed_resyncs == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "no resync");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    i
}

/// Polls `cache.get(id)` for up to `secs` until `want` holds; returns the last answer.
async fn settle(
    cache: &TieredCache,
    id: &str,
    secs: u64,
    want: impl Fn(Option<(u64, bool)>) -> bool,
) -> Option<(u64, bool)> {
    let t = Instant::now();
    loop {
        let got = cache
            .get(&FlagId::new(id))
            .await
            .map(|f| (f.definition.version, f.definition.enabled));
        if want(got) || t.elapsed() > Duration::from_secs(secs) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A schema with the table installed and flag `a` at `version`, a private Redis, and one
/// instance (backplane and feed running) holding `a`.
struct Fixture {
    pg: Pg,
    _redis: RedisServer,
    source: PostgresSource,
    i: Instance,
}

impl Fixture {
    async fn with_a(name: &str, version: u64) -> Option<Self> {
        let pg = Pg::start(name).await?;
        let redis = RedisServer::start()?;
        let source = pg.source();
        source.install().await.unwrap();
        source.upsert(&def("a", version, true)).await.unwrap();
        let i = instance(&redis, &source).await;
        assert_eq!(
            settle(&i.cache, "a", 0, |_| true).await,
            Some((version, true))
        );
        Some(Self {
            pg,
            _redis: redis,
            source,
            i,
        })
    }
}

/// An admin disables `a` in plain SQL; the instance must serve it disabled within 4 s.
async fn disable_a_and_see_it(pg: &Pg, i: &Instance, table: &str) {
    pg.sql(&format!(
        "UPDATE {table} SET definition = jsonb_set(definition, '{{enabled}}', 'false') WHERE id = 'a'"
    ))
    .await;
    let got = settle(&i.cache, "a", 4, |g| g.is_some_and(|(_, on)| !on)).await;
    let s = i.cache.tiered_stats();
    assert_eq!(
        got.map(|(_, on)| on),
        Some(false),
        "feed errors {}, resyncs {}, subscriptions {}",
        s.feed_errors,
        s.feed_resyncs,
        s.feed_subscriptions
    );
}

/// DELETE + INSERT of the same id (one transaction, as a "replace" or re-seed does): the new row
/// starts at version 1, below what the caches hold, and the caches refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_row_reaches_the_cache() {
    let Some(Fixture {
        pg,
        _redis,
        source,
        i,
    }) = Fixture::with_a("advrepl", 5).await
    else {
        return;
    };
    let table = source.table().to_owned();
    let json = String::from_utf8(def("a", 1, false).to_json()).unwrap();
    pg.sql(&format!(
        "BEGIN; DELETE FROM {table} WHERE id = 'a'; \
         INSERT INTO {table} (id, definition) VALUES ('a', '{json}'); COMMIT;"
    ))
    .await;
    let got = settle(&i.cache, "a", 4, |g| g.is_some_and(|(_, e)| !e)).await;
    assert_eq!(
        got.map(|g| g.1),
        Some(false),
        "the source says enabled=false (version 1); the cache serves {got:?}"
    );
}

/// The same through a TRUNCATE and a re-seed (one transaction): Change::All, a resync, and
/// every flag's new definition is refused by the old, higher version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseed_after_truncate_reaches_the_cache() {
    let Some(Fixture {
        pg,
        _redis,
        source,
        i,
    }) = Fixture::with_a("advseed", 3).await
    else {
        return;
    };
    let table = source.table().to_owned();
    let json = String::from_utf8(def("a", 1, false).to_json()).unwrap();
    pg.sql(&format!(
        "BEGIN; TRUNCATE {table}; \
         INSERT INTO {table} (id, definition) VALUES ('a', '{json}'); COMMIT;"
    ))
    .await;
    let got = settle(&i.cache, "a", 4, |g| g.is_some_and(|(_, e)| !e)).await;
    assert_eq!(got.map(|g| g.1), Some(false), "cache serves {got:?}");
}

/// An admin lowers a version without touching the definition (no raise: the definition did not
/// change); the next edit is raised only above the lowered one, and the caches refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowered_version_then_edit_reaches_the_cache() {
    let Some(Fixture {
        pg,
        _redis,
        source,
        i,
    }) = Fixture::with_a("advlow", 5).await
    else {
        return;
    };
    let table = source.table().to_owned();
    pg.sql(&format!("UPDATE {table} SET version = 1 WHERE id = 'a'"))
        .await;
    pg.sql(&format!(
        "UPDATE {table} SET definition = jsonb_set(definition, '{{enabled}}', 'false') WHERE id = 'a'"
    ))
    .await;
    let got = settle(&i.cache, "a", 4, |g| g.is_some_and(|(_, e)| !e)).await;
    assert_eq!(got.map(|g| g.1), Some(false), "cache serves {got:?}");
}

/// One row that is not a valid flag (an admin's typo, or an id the crate does not accept):
/// changes to every *other* flag must still reach the fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_row_does_not_stop_the_feed_for_the_others() {
    let Some(Fixture {
        pg,
        _redis,
        source,
        i,
    }) = Fixture::with_a("advbad", 1).await
    else {
        return;
    };
    let table = source.table().to_owned();
    // An id PostgreSQL's CHECK accepts but FlagId does not (a space); its document is fine.
    let json = String::from_utf8(def("x", 1, true).to_json()).unwrap();
    pg.sql(&format!(
        "INSERT INTO {table} (id, definition) VALUES ('new flag', '{json}')"
    ))
    .await;
    // A feed restart (a failover, a heartbeat, a TRUNCATE elsewhere...) forces a resync.
    for pid in pg.flagcache_backends(true).await {
        pg.terminate(pid).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    disable_a_and_see_it(&pg, &i, &table).await;
}

/// Same, the bad row being a definition that does not decode, inserted while the feed runs
/// (its own notification is the first change the feed cannot apply).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_corrupt_definition_does_not_stop_the_feed() {
    let Some(Fixture {
        pg,
        _redis,
        source,
        i,
    }) = Fixture::with_a("advcorr", 1).await
    else {
        return;
    };
    let table = source.table().to_owned();
    pg.sql(&format!(
        "INSERT INTO {table} (id, definition) VALUES ('bad', '{{\"name\": 5}}')"
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    disable_a_and_see_it(&pg, &i, &table).await;
}

/// A renamed id: the old one goes, the new one arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_id_leaves_and_the_new_one_arrives() {
    let Some(Fixture {
        pg,
        _redis,
        source,
        i,
    }) = Fixture::with_a("advren", 2).await
    else {
        return;
    };
    assert_eq!(settle(&i.cache, "b", 0, |_| true).await, None);
    let table = source.table().to_owned();
    pg.sql(&format!("UPDATE {table} SET id = 'b' WHERE id = 'a'"))
        .await;
    let got_a = settle(&i.cache, "a", 4, |g| g.is_none()).await;
    let got_b = settle(&i.cache, "b", 4, |g| g.is_some()).await;
    assert_eq!((got_a, got_b.map(|(_, on)| on)), (None, Some(true)));
}

/// `install()` on an existing table of another shape (a `flags` table the application already
/// had): refused, and nothing is attached to the table, whose writes go on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_refuses_a_table_of_another_shape_and_leaves_it_working() {
    let Some(pg) = Pg::start("advforeign").await else {
        return;
    };
    let source = pg.source();
    let table = source.table().to_owned();
    pg.sql(&format!(
        "CREATE TABLE {table} (id integer PRIMARY KEY, enabled boolean); \
         INSERT INTO {table} VALUES (1, true);"
    ))
    .await;
    let installed = source.install().await;
    let update = pg
        .admin
        .batch_execute(&format!("UPDATE {table} SET enabled = false WHERE id = 1"))
        .await;
    let insert = pg
        .admin
        .batch_execute(&format!("INSERT INTO {table} VALUES (2, true)"))
        .await;
    let e = installed.unwrap_err();
    assert_eq!(e.kind(), flagcache::ErrorKind::InvalidConfig, "{e}");
    assert!(e.to_string().contains("definition jsonb"), "{e}");
    assert!(
        update.is_ok() && insert.is_ok(),
        "UPDATE = {update:?}, INSERT = {insert:?}"
    );
}

/// Reserved words as the schema's, the table's and the channel's names: every statement quotes
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_words_are_names_like_any_other() {
    let Some(pg) = Pg::start("advchan").await else {
        return;
    };
    pg.sql("DROP SCHEMA IF EXISTS \"order\" CASCADE; CREATE SCHEMA \"order\"")
        .await;
    let source = PostgresSource::builder(&pg.source_url())
        .schema("order")
        .table("table")
        .channel("select")
        .build()
        .unwrap();
    source.install().await.unwrap();
    let mut feed = flagcache::FlagSource::subscribe_changes(&source)
        .await
        .unwrap();
    source.upsert(&def("a", 1, true)).await.unwrap();
    let change = tokio::time::timeout(Duration::from_secs(5), feed.next()).await;
    let loaded = flagcache::FlagSource::load(&source, &FlagId::new("a")).await;
    pg.sql("DROP SCHEMA \"order\" CASCADE").await;
    assert_eq!(
        change.unwrap(),
        Some(flagcache::Change::Flags(vec![FlagId::new("a")]))
    );
    assert!(loaded.unwrap().is_some());
}

/// A burst of 5 000 changes (one UPDATE of every row), over the feed's capacity of 1 000: the
/// feed ends and the resync mends; then 900 changes, under the capacity, are each applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_feeds_capacity_is_mended_by_a_resync() {
    let Some(pg) = Pg::start("advburst").await else {
        return;
    };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let source = PostgresSource::builder(&pg.source_url())
        .schema(&pg.schema)
        .heartbeat(Duration::from_millis(500))
        .feed_capacity(1000)
        .build()
        .unwrap();
    source.install().await.unwrap();
    let table = source.table().to_owned();
    let json = String::from_utf8(def("x", 1, true).to_json()).unwrap();
    pg.sql(&format!(
        "INSERT INTO {table} (id, definition) SELECT 'f' || g, '{json}' FROM generate_series(1, 5000) g"
    ))
    .await;
    let i = instance(&redis, &source).await;
    i.cache.warm_up().await.unwrap();
    pg.sql(&format!(
        "UPDATE {table} SET definition = jsonb_set(definition, '{{enabled}}', 'false')"
    ))
    .await;
    let got = settle(&i.cache, "f4999", 30, |g| g.is_some_and(|(_, on)| !on)).await;
    assert_eq!(got.map(|(_, on)| on), Some(false));
    // The feed overflowed, ended, and was followed again, resync included.
    let t = Instant::now();
    while i.cache.tiered_stats().feed_resyncs < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{:?}",
            i.cache.tiered_stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = i.cache.tiered_stats().feed_changes;
    pg.sql(&format!(
        "UPDATE {table} SET definition = jsonb_set(definition, '{{enabled}}', 'true') \
         WHERE id IN (SELECT 'f' || g FROM generate_series(1, 900) g)"
    ))
    .await;
    let t = Instant::now();
    while i.cache.tiered_stats().feed_changes < before + 900
        && t.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(i.cache.tiered_stats().feed_changes - before, 900);
    let got = settle(&i.cache, "f900", 5, |g| g.is_some_and(|(_, on)| on)).await;
    assert_eq!(got.map(|(_, on)| on), Some(true));
}

/// The loading connection goes silent (a failover behind a VIP, a dropped NAT entry, a paused
/// primary): new connections work, the old one never answers. The feed has a heartbeat for
/// this; the loading connection is kept as long as it is not *closed*, so every load hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_loading_connection_is_replaced() {
    let Some(pg) = Pg::start("advsilent").await else {
        return;
    };
    let proxy = proxy::Proxy::start("127.0.0.1:5432".parse().unwrap());
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=test application_name={}",
        proxy.addr().port(),
        pg.schema
    );
    let source = PostgresSource::builder(&url)
        .schema(&pg.schema)
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    source.install().await.unwrap();
    source.upsert(&def("a", 1, true)).await.unwrap();
    proxy.silence();
    let t = Instant::now();
    let mut answered = None;
    while t.elapsed() < Duration::from_secs(8) {
        match tokio::time::timeout(
            Duration::from_secs(1),
            flagcache::FlagSource::load(&source, &FlagId::new("a")),
        )
        .await
        {
            Ok(Ok(found)) => {
                answered = Some(found.map(|d| d.version));
                break;
            }
            Ok(Err(e)) => eprintln!("load error: {e}"),
            Err(_) => eprintln!("load hung for 1 s"),
        }
    }
    assert_eq!(
        answered,
        Some(Some(1)),
        "no load answered within 8 s; connections made: {}",
        proxy.connections_accepted()
    );
}
