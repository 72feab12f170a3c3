//! [`PostgresSource`]: a [`FlagSource`] on a PostgreSQL table, with a change feed from
//! `LISTEN`/`NOTIFY` fired by triggers the crate installs.
//!
//! The table (`schema`), the connection that loads (`conn`: one pipelined client, no pool),
//! and the connection that listens (`feed`).

mod builder;
mod conn;
mod feed;
mod schema;

pub use builder::PostgresSourceBuilder;

use crate::error::{Error, ErrorKind, Result};
use crate::flag::{FlagDefinition, FlagId, FlagValue};
use crate::sync::Arc;
use crate::tiered::{ChangeFeed, FlagSource};
use conn::{Lazy, classify};
use schema::Schema;
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::Row;

/// A [`FlagSource`] on a PostgreSQL table, whose changes (made by any client, in plain SQL)
/// reach a fleet through [`TieredCache::start_change_feed`](crate::TieredCache::start_change_feed).
///
/// The table, created by [`install`](Self::install) (or by running
/// [`install_sql`](Self::install_sql) yourself):
///
/// ```sql
/// CREATE TABLE public.flags (
///     id text PRIMARY KEY CHECK (octet_length(id) BETWEEN 1 AND 256),
///     version bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
///     definition jsonb NOT NULL,  -- the flag's JSON (see `FlagDefinition`)
///     updated_at timestamptz NOT NULL DEFAULT now()
/// );
/// ```
///
/// The columns `id` and `version` win over the same fields of `definition`. Triggers come with
/// it: before an `INSERT` or an `UPDATE`, the version is set (see below); after every
/// `INSERT`, `UPDATE` and `DELETE`, `pg_notify` sends the row's id on the channel
/// (`flagcache_{schema}_{table}` by default), and after a `TRUNCATE` an empty payload
/// (anything may have changed). Notifications are sent when the transaction commits.
///
/// Versions come from a sequence beside the table: every inserted row, and every update that
/// changes a definition or an id or lowers a version, takes the next one (or the version
/// written, if higher). They grow across deletions and re-insertions, and a `TRUNCATE` and a
/// re-seed, as the caches' version guard needs.
///
/// A row whose `definition` is not a valid flag is logged and answered as an invalid
/// definition of its id, which the cache rejects and counts
/// ([`TieredStats::l3_rejected`](crate::TieredStats)): the copies the caches hold stand, and
/// the flag is never taken for deleted.
///
/// ```no_run
/// # async fn demo() -> flagcache::Result<()> {
/// use flagcache::{PostgresSource, TieredCache};
///
/// let source = PostgresSource::builder("postgres://app@127.0.0.1/app")
///     .schema("flags")
///     .build()?;
/// source.install().await?; // the table, if missing, and the triggers
/// let cache = TieredCache::builder()
///     .redis_url("redis://127.0.0.1:6379")
///     .source(source)
///     .build()?;
/// cache.warm_up().await?;
/// let _backplane = cache.start_backplane()?;
/// let _feed = cache.start_change_feed()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresSource {
    shared: Arc<Shared>,
}

struct Shared {
    config: tokio_postgres::Config,
    schema: Schema,
    conn: Lazy,
    connect_timeout: Duration,
    query_timeout: Duration,
    feed_capacity: usize,
    heartbeat: Duration,
}

impl std::fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No configuration here: it may carry a password.
        f.debug_struct("PostgresSource")
            .field("table", &self.shared.schema.table)
            .field("channel", &self.shared.schema.channel)
            .finish_non_exhaustive()
    }
}

impl PostgresSource {
    /// A builder for the database at `url` (a `postgres://` URL or `key=value` settings).
    pub fn builder(url: &str) -> PostgresSourceBuilder {
        PostgresSourceBuilder::new(url)
    }

    /// `schema.table`, as the queries name it.
    pub fn table(&self) -> &str {
        &self.shared.schema.table
    }

    /// The channel the triggers notify on.
    pub fn channel(&self) -> &str {
        &self.shared.schema.channel
    }

    /// The SQL [`install`](Self::install) runs: the table if it does not exist, and the
    /// triggers (replaced if they exist), in one transaction. For a migration tool of yours.
    pub fn install_sql(&self) -> String {
        self.shared.schema.install_sql()
    }

    /// Creates the table if it does not exist, and (re)creates its triggers.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] when the table exists without the columns (nothing is
    /// installed then); the database's error (the schema does not exist, say), or a
    /// connection failure.
    pub async fn install(&self) -> Result<()> {
        // A connection of its own: the loading one prepares its statements on the table.
        let s = &self.shared;
        let client = tokio::time::timeout(s.connect_timeout, conn::connect_client(&s.config))
            .await
            .map_err(|_| conn::connect_timed_out(s.connect_timeout))??;
        client
            .batch_execute(&self.install_sql())
            .await
            .map_err(|e| {
                let shape = e.as_db_error().is_some_and(|db| {
                    db.code() == &tokio_postgres::error::SqlState::INVALID_TABLE_DEFINITION
                });
                match shape {
                    true => Error::invalid_config(format!(
                        "PostgreSQL: {}",
                        e.as_db_error().map_or("", |db| db.message())
                    )),
                    false => classify(e),
                }
            })
    }

    /// Inserts `def`, or replaces the stored definition of its id (at `def.version`, raised
    /// by the trigger if that is not above the stored one). For tools and tests: an
    /// application may write the table any way it likes.
    ///
    /// # Errors
    /// An invalid definition, a version over `i64::MAX`, or the database's error.
    pub async fn upsert(&self, def: &FlagDefinition) -> Result<()> {
        def.validate()?;
        let version = i64::try_from(def.version).map_err(|_| {
            Error::invalid_flag(format!("version {} does not fit a bigint", def.version))
        })?;
        let json = serde_json::to_string(def)
            .map_err(|e| Error::new(ErrorKind::Backend, format!("encoding {}: {e}", def.id)))?;
        let conn = self.conn().await?;
        let sql = self.shared.schema.upsert();
        let id = def.id.as_str();
        let timeout = self.shared.query_timeout;
        conn.run(timeout, conn.client.execute(&sql, &[&id, &version, &json]))
            .await?;
        Ok(())
    }

    async fn conn(&self) -> Result<Arc<conn::Conn>> {
        let s = &self.shared;
        s.conn.get(&s.config, &s.schema, s.connect_timeout).await
    }
}

/// The definition in one row (`id`, the document with the columns merged in). A row that is
/// not a valid definition of its id is logged and answered as an invalid definition of it (one
/// without a name), which the cache rejects and counts: the row exists, so its flag is not
/// taken for deleted, and the copies the caches hold stand.
fn decode(row: &Row) -> FlagDefinition {
    let id: Option<&str> = row.try_get(0).ok();
    let json: Option<&str> = row.try_get(1).ok();
    let decoded = json.map(|json| FlagDefinition::from_json(json.as_bytes()));
    match decoded {
        Some(Ok(def)) => def,
        Some(Err(e)) => {
            tracing::warn!(flag = id.unwrap_or_default(), error = %e, "a row of the flags table is not a valid flag definition");
            unreadable(id.unwrap_or_default())
        }
        None => {
            tracing::warn!(
                "the flags table's columns are not the expected text values (see PostgresSource)"
            );
            unreadable(id.unwrap_or_default())
        }
    }
}

/// An invalid definition of `id`: what a row that is not a flag is answered as.
fn unreadable(id: &str) -> FlagDefinition {
    FlagDefinition {
        id: FlagId::new(id),
        name: String::new(),
        description: String::new(),
        enabled: false,
        default_value: FlagValue::Boolean(false),
        rules: Vec::new(),
        rollout: None,
        tags: Vec::new(),
        version: 1,
    }
}

impl FlagSource for PostgresSource {
    async fn load(&self, id: &FlagId) -> Result<Option<FlagDefinition>> {
        let conn = self.conn().await?;
        let id = id.as_str();
        let timeout = self.shared.query_timeout;
        let row = conn
            .run(timeout, conn.client.query_opt(&conn.select_one, &[&id]))
            .await?;
        Ok(row.as_ref().map(decode))
    }

    async fn load_many(&self, ids: &[FlagId]) -> Result<HashMap<FlagId, FlagDefinition>> {
        let conn = self.conn().await?;
        let ids: Vec<&str> = ids.iter().map(FlagId::as_str).collect();
        let timeout = self.shared.query_timeout;
        let rows = conn
            .run(timeout, conn.client.query(&conn.select_many, &[&ids]))
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let def = decode(row);
                (def.id.clone(), def)
            })
            .collect())
    }

    async fn load_all(&self) -> Result<Vec<FlagDefinition>> {
        let conn = self.conn().await?;
        let query = conn.client.query(&conn.select_all, &[]);
        let rows = conn.run(self.shared.query_timeout, query).await?;
        Ok(rows.iter().map(decode).collect())
    }

    fn has_change_feed(&self) -> bool {
        true
    }

    async fn subscribe_changes(&self) -> Result<ChangeFeed> {
        let s = &self.shared;
        feed::listen(
            &s.config,
            &s.schema.listen(),
            s.feed_capacity,
            s.heartbeat,
            s.connect_timeout,
        )
        .await
    }
}
