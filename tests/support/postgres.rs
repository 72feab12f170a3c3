//! A schema of its own on the PostgreSQL at `FLAGCACHE_POSTGRES_URL` (by default the local one:
//! `host=127.0.0.1 port=5432 user=postgres dbname=test`), dropped when the test ends. Without
//! a reachable server the test is skipped and `start` returns `None`; with
//! `FLAGCACHE_REQUIRE_POSTGRES=1` (set by `.ci/run`) it panics instead.

#![allow(dead_code)] // each test file uses its own part
#![allow(clippy::disallowed_types)] // outside the library: std's types are the right ones

use flagcache::{BackplaneTask, ChangeFeedTask, PostgresSource, RedisCache, TieredCache};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const DEFAULT_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// A schema made for one test.
pub struct Pg {
    pub url: String,
    pub schema: String,
    /// A plain client, as an admin tool is: its writes do not go through any cache.
    pub admin: tokio_postgres::Client,
}

/// Says the test is skipped because of `why`, or fails it when `FLAGCACHE_REQUIRE_POSTGRES=1`.
pub fn skip_or_fail(why: &str) {
    assert!(
        std::env::var("FLAGCACHE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
        "FLAGCACHE_REQUIRE_POSTGRES=1 but {why}"
    );
    eprintln!("skipped: {why} (set FLAGCACHE_REQUIRE_POSTGRES=1 to fail instead)");
}

impl Pg {
    /// A fresh schema `flagcache_{name}_{pid}_{n}`, or `None` (skipped) without a server.
    pub async fn start(name: &str) -> Option<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let url = std::env::var("FLAGCACHE_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        let admin = match tokio::time::timeout(Duration::from_secs(5), connect(&url)).await {
            Ok(Ok(admin)) => admin,
            Ok(Err(e)) => {
                skip_or_fail(&format!("PostgreSQL at {url} is not reachable: {e}"));
                return None;
            }
            Err(_) => {
                skip_or_fail(&format!("PostgreSQL at {url} did not answer within 5 s"));
                return None;
            }
        };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let schema = format!("flagcache_{name}_{}_{n}", std::process::id());
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
            ))
            .await
            .unwrap();
        Some(Self { url, schema, admin })
    }

    /// The application name of this test's sources: its schema's, so that a test ends only
    /// its own connections.
    pub fn application(&self) -> &str {
        &self.schema
    }

    /// The URL with this test's application name.
    pub fn source_url(&self) -> String {
        if self.url.contains("://") {
            let join = if self.url.contains('?') { '&' } else { '?' };
            format!("{}{join}application_name={}", self.url, self.schema)
        } else {
            format!("{} application_name={}", self.url, self.schema)
        }
    }

    /// A source on this schema's `flags` table.
    pub fn source(&self) -> PostgresSource {
        PostgresSource::builder(&self.source_url())
            .schema(&self.schema)
            .heartbeat(Duration::from_millis(500))
            .build()
            .unwrap()
    }

    /// Runs `sql` as the admin tool.
    pub async fn sql(&self, sql: &str) {
        self.admin.batch_execute(sql).await.unwrap();
    }

    /// The backends of this test's sources: of the change feed (the application name with
    /// `-feed`) or of the loads, by pid.
    pub async fn flagcache_backends(&self, feed: bool) -> Vec<i32> {
        let name = if feed {
            format!("{}-feed", self.application())
        } else {
            self.application().to_owned()
        };
        let rows = self
            .admin
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE application_name = $1 AND datname = current_database()",
                &[&name],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Ends the backend `pid`, as a failover or an administrator does.
    pub async fn terminate(&self, pid: i32) {
        self.admin
            .query("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
    }
}

/// An instance of a fleet: L2 and backplane on the Redis at a URL, L3 a table, the change
/// feed started (whether it follows is the fleet's choice).
pub struct Instance {
    pub cache: TieredCache,
    _backplane: BackplaneTask,
    _feed: ChangeFeedTask,
}

impl Instance {
    /// Starts an instance over `redis_url` and `source`, once its backplane is subscribed.
    pub async fn start(redis_url: &str, source: &PostgresSource) -> Self {
        let cache = TieredCache::builder()
            .l2(RedisCache::builder(redis_url).prefix("pg").build().unwrap())
            .source(source.clone())
            .l1_ttl(Duration::from_secs(600))
            .feed_lease(Duration::from_secs(1))
            .build()
            .unwrap();
        let backplane = cache.start_backplane().unwrap();
        let started = std::time::Instant::now();
        while !cache.tiered_stats().backplane_subscribed {
            assert!(started.elapsed() < Duration::from_secs(5), "not subscribed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let feed = cache.start_change_feed().unwrap();
        Self {
            cache,
            _backplane: backplane,
            _feed: feed,
        }
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

impl Drop for Pg {
    /// Drops the schema on a connection of its own (the test's runtime may be gone).
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = connect(&url).await?;
                admin
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the schema {}", self.schema);
        }
    }
}
