//! The connection a [`PostgresSource`](super::PostgresSource) loads on: one `tokio-postgres`
//! client, which pipelines concurrent queries on one connection (so concurrent loads need no
//! pool), made on first use, with its statements prepared once.
//!
//! It is made again after it closes, and after one of its queries timed out or was abandoned
//! by its caller (the cache's own timeout): a connection that went silent (a failover behind
//! an address, a dropped NAT entry) stays open, and would hang every later query.

use super::schema::Schema;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::{Arc, AtomicU64, Ordering};
use std::future::Future;
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls, Statement};

/// A connected client and its prepared statements.
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) select_one: Statement,
    pub(crate) select_many: Statement,
    pub(crate) select_all: Statement,
    /// 1 once a query timed out or was abandoned: the connection is not used again.
    suspect: AtomicU64,
}

impl Conn {
    /// Runs `query` on this connection for at most `timeout`. A query that times out, or
    /// whose caller drops it before it answers, makes the connection suspect.
    pub(crate) async fn run<T>(
        &self,
        timeout: Duration,
        query: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        let mut pending = Pending {
            suspect: &self.suspect,
            answered: false,
        };
        let answered = tokio::time::timeout(timeout, query).await;
        pending.answered = true;
        match answered {
            Ok(answer) => answer.map_err(classify),
            Err(_) => {
                self.suspect.store(1, Ordering::Relaxed);
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("a PostgreSQL query took over {timeout:?}"),
                ))
            }
        }
    }

    fn usable(&self) -> bool {
        !self.client.is_closed() && self.suspect.load(Ordering::Relaxed) == 0
    }
}

/// Marks its connection suspect when dropped before its query answered (or timed out): the
/// query's caller abandoned it.
struct Pending<'a> {
    suspect: &'a AtomicU64,
    answered: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.suspect.store(1, Ordering::Relaxed);
        }
    }
}

/// The client, made lazily; one caller connects while the others wait for it.
pub(crate) struct Lazy {
    current: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

impl Lazy {
    pub(crate) fn new() -> Self {
        Self {
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The open connection, or a new one (within `timeout`) when there is none or it closed.
    pub(crate) async fn get(
        &self,
        config: &Config,
        schema: &Schema,
        timeout: Duration,
    ) -> Result<Arc<Conn>> {
        let mut current = self.current.lock().await;
        if let Some(conn) = current.as_ref().filter(|c| c.usable()) {
            return Ok(Arc::clone(conn));
        }
        *current = None;
        let conn = tokio::time::timeout(timeout, connect(config, schema))
            .await
            .map_err(|_| connect_timed_out(timeout))??;
        let conn = Arc::new(conn);
        *current = Some(Arc::clone(&conn));
        Ok(conn)
    }
}

async fn connect(config: &Config, schema: &Schema) -> Result<Conn> {
    let client = connect_client(config).await?;
    let prepare = |sql: String| {
        let client = &client;
        async move { client.prepare(&sql).await.map_err(classify) }
    };
    let select_one = prepare(schema.select_one()).await?;
    let select_many = prepare(schema.select_many()).await?;
    let select_all = prepare(schema.select_all()).await?;
    Ok(Conn {
        client,
        select_one,
        select_many,
        select_all,
        suspect: AtomicU64::new(0),
    })
}

/// A client whose connection runs on a task of its own until it closes.
pub(crate) async fn connect_client(config: &Config) -> Result<Client> {
    let (client, connection) = config.connect(NoTls).await.map_err(classify)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// Connecting took longer than `timeout`.
pub(crate) fn connect_timed_out(timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("connecting to PostgreSQL took over {timeout:?}"),
    )
}

/// A `tokio-postgres` error as this crate's: what a retry may mend is
/// [`ErrorKind::Unavailable`] (a lost or refused connection; the server's SQLSTATE classes
/// `08` connection exception, `53` insufficient resources, `57` operator intervention such as
/// `pg_terminate_backend` or a shutdown, and `40` transaction rollback), except a statement
/// timeout (`57014`), which is [`ErrorKind::Timeout`]; the server's other
/// refusals (a missing table, a permission, a bad password) are [`ErrorKind::Backend`].
pub(crate) fn classify(e: tokio_postgres::Error) -> Error {
    let (kind, message) = match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let transient = ["08", "53", "57", "40"]
                .iter()
                .any(|class| code.starts_with(class));
            let kind = if code == "57014" {
                // query_canceled: a statement timeout
                ErrorKind::Timeout
            } else if transient {
                ErrorKind::Unavailable
            } else {
                ErrorKind::Backend
            };
            (kind, format!("PostgreSQL: {}", db.message()))
        }
        None => (ErrorKind::Unavailable, format!("PostgreSQL: {e}")),
    };
    Error::new(kind, message).with_source(e)
}
