//! [`PostgresSourceBuilder`]: the settings of a [`PostgresSource`], checked at `build()`.

use super::conn::Lazy;
use super::schema::Schema;
use super::{PostgresSource, Shared};
use crate::error::{Error, Result};
use crate::sync::Arc;
use std::time::Duration;

/// Configures a [`PostgresSource`]; see [`PostgresSource::builder`].
#[must_use = "a builder does nothing until build() is called"]
pub struct PostgresSourceBuilder {
    url: String,
    schema: String,
    table: String,
    channel: Option<String>,
    connect_timeout: Duration,
    query_timeout: Duration,
    feed_capacity: usize,
    heartbeat: Duration,
}

impl std::fmt::Debug for PostgresSourceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URL here: it may carry a password.
        f.debug_struct("PostgresSourceBuilder")
            .field("schema", &self.schema)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl PostgresSourceBuilder {
    pub(super) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            schema: "public".to_owned(),
            table: "flags".to_owned(),
            channel: None,
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(30),
            feed_capacity: 10_000,
            heartbeat: Duration::from_secs(5),
        }
    }

    /// The schema of the table (default `public`): lower-case ASCII letters, digits and `_`.
    pub fn schema(mut self, schema: &str) -> Self {
        schema.clone_into(&mut self.schema);
        self
    }

    /// The table's name (default `flags`), named as the schema is.
    pub fn table(mut self, table: &str) -> Self {
        table.clone_into(&mut self.table);
        self
    }

    /// The channel the triggers notify on (default `flagcache_{schema}_{table}`), named as the
    /// schema is.
    pub fn channel(mut self, channel: &str) -> Self {
        self.channel = Some(channel.to_owned());
        self
    }

    /// The longest connecting (and listening) may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest one query may take (default 30 s; the cache bounds its calls by its own,
    /// shorter, timeouts too). A query that takes longer, or that its caller abandons, retires
    /// its connection: the next query connects again (a silent link would hang them all).
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// How many announced changes the feed holds unread at most (default 10 000); one more
    /// ends the feed, which the cache then follows again, resyncing.
    pub fn feed_capacity(mut self, changes: usize) -> Self {
        self.feed_capacity = changes;
        self
    }

    /// How often the listening connection is checked with `SELECT 1` (default 5 s); an answer
    /// that takes longer ends the feed (a silent link would otherwise hold it open, carrying
    /// nothing).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// Checks the settings and builds the source. It connects on first use.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`](crate::ErrorKind::InvalidConfig) for a URL that does not
    /// parse, a name that is not a plain lower-case identifier (see
    /// [`schema`](Self::schema)), or a zero timeout, capacity or heartbeat.
    pub fn build(self) -> Result<PostgresSource> {
        let mut config: tokio_postgres::Config = self.url.parse().map_err(|e| {
            Error::invalid_config(format!("the PostgreSQL URL does not parse: {e}"))
        })?;
        let schema = Schema::new(&self.schema, &self.table, self.channel.as_deref())?;
        for (what, zero) in [
            ("connect_timeout", self.connect_timeout.is_zero()),
            ("query_timeout", self.query_timeout.is_zero()),
            ("feed_capacity", self.feed_capacity == 0),
            ("heartbeat", self.heartbeat.is_zero()),
        ] {
            if zero {
                return Err(Error::invalid_config(format!("{what} is zero")));
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("flagcache");
        }
        config.connect_timeout(self.connect_timeout);
        Ok(PostgresSource {
            shared: Arc::new(Shared {
                config,
                schema,
                conn: Lazy::new(),
                connect_timeout: self.connect_timeout,
                query_timeout: self.query_timeout,
                feed_capacity: self.feed_capacity,
                heartbeat: self.heartbeat,
            }),
        })
    }
}
