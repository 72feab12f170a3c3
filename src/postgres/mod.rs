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
use crate::flag::{FlagDefinition, FlagId};
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
/// The columns `id` and `version` win over the same fields of `definition`. Two triggers come
/// with it: before an `UPDATE` that changes `definition` without raising `version`, the
/// version is raised by one (the caches refuse to replace a version with itself); after every
/// `INSERT`, `UPDATE` and `DELETE`, `pg_notify` sends the row's id on the channel
/// (`flagcache_{schema}_{table}` by default), and after a `TRUNCATE` an empty payload
/// (anything may have changed). Notifications are sent when the transaction commits.
///
/// A row whose `definition` is not a valid flag makes the loads that read it fail (a clear
/// error naming the row; the caches serve what they hold), rather than answer "absent".
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
    /// The database's error (the schema does not exist, say), or a connection failure.
    pub async fn install(&self) -> Result<()> {
        // A connection of its own: the loading one prepares its statements on the table.
        let s = &self.shared;
        let client = tokio::time::timeout(s.connect_timeout, conn::connect_client(&s.config))
            .await
            .map_err(|_| conn::connect_timed_out(s.connect_timeout))??;
        client
            .batch_execute(&self.install_sql())
            .await
            .map_err(classify)
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
        conn.client
            .execute(
                &self.shared.schema.upsert(),
                &[&def.id.as_str(), &version, &json],
            )
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn conn(&self) -> Result<Arc<conn::Conn>> {
        let s = &self.shared;
        s.conn.get(&s.config, &s.schema, s.connect_timeout).await
    }
}

/// The definition in one row (`id`, document), or a clear error naming the row.
fn decode(row: &Row) -> Result<FlagDefinition> {
    let id: &str = row.get(0);
    let json: &str = row.get(1);
    FlagDefinition::from_json(json.as_bytes()).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("the row `{id}` does not hold a valid flag definition: {e}"),
        )
    })
}

impl FlagSource for PostgresSource {
    async fn load(&self, id: &FlagId) -> Result<Option<FlagDefinition>> {
        let conn = self.conn().await?;
        let row = conn
            .client
            .query_opt(&conn.select_one, &[&id.as_str()])
            .await
            .map_err(classify)?;
        row.as_ref().map(decode).transpose()
    }

    async fn load_many(&self, ids: &[FlagId]) -> Result<HashMap<FlagId, FlagDefinition>> {
        let conn = self.conn().await?;
        let ids: Vec<&str> = ids.iter().map(FlagId::as_str).collect();
        let rows = conn
            .client
            .query(&conn.select_many, &[&ids])
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| decode(row).map(|def| (def.id.clone(), def)))
            .collect()
    }

    async fn load_all(&self) -> Result<Vec<FlagDefinition>> {
        let conn = self.conn().await?;
        let rows = conn
            .client
            .query(&conn.select_all, &[])
            .await
            .map_err(classify)?;
        rows.iter().map(decode).collect()
    }

    fn has_change_feed(&self) -> bool {
        true
    }

    async fn subscribe_changes(&self) -> Result<ChangeFeed> {
        let s = &self.shared;
        feed::listen(
            &s.config,
            &s.schema.channel,
            s.feed_capacity,
            s.heartbeat,
            s.connect_timeout,
        )
        .await
    }
}
