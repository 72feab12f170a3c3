//! A [`FlagSource`] on a real SQLite database: the source of truth (L3) of the examples and of
//! the tiered tests. One table, `flags(id TEXT PRIMARY KEY, version INTEGER, definition TEXT)`,
//! holding each definition's JSON; queries run on tokio's blocking pool.

#![allow(dead_code)] // the example and each test use their own part
#![allow(clippy::disallowed_types)] // outside the library: std's locks are the right ones

use flagcache::{Error, ErrorKind, FlagDefinition, FlagId, FlagSource};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A SQLite database of flag definitions. Clones share the connection and the query count.
#[derive(Clone)]
pub struct SqliteSource {
    conn: Arc<Mutex<Connection>>,
    queries: Arc<AtomicU64>,
}

impl SqliteSource {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS flags (
                 id TEXT PRIMARY KEY,
                 version INTEGER NOT NULL,
                 definition TEXT NOT NULL
             );",
        )?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            queries: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Writes `def` (the writer's side: what an admin UI or a deploy would do).
    pub fn upsert(&self, def: &FlagDefinition) -> rusqlite::Result<()> {
        let json = String::from_utf8(def.to_json()).expect("definitions encode to UTF-8 JSON");
        self.lock().execute(
            "INSERT INTO flags (id, version, definition) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET version = excluded.version, definition = excluded.definition",
            params![def.id.as_str(), def.version as i64, json],
        )?;
        Ok(())
    }

    /// Deletes `id`'s row.
    pub fn delete(&self, id: &str) -> rusqlite::Result<()> {
        self.lock()
            .execute("DELETE FROM flags WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// How many rows the table holds.
    pub fn len(&self) -> rusqlite::Result<usize> {
        self.lock()
            .query_row("SELECT COUNT(*) FROM flags", [], |row| row.get::<_, i64>(0))
            .map(|n| n as usize)
    }

    /// Queries served through [`FlagSource`] so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Renames the table away, so every load fails with SQLite's own error (for fault tests).
    pub fn break_table(&self) {
        self.lock()
            .execute_batch("ALTER TABLE flags RENAME TO flags_away")
            .expect("rename the table");
    }

    /// Undoes [`break_table`](Self::break_table).
    pub fn repair_table(&self) {
        self.lock()
            .execute_batch("ALTER TABLE flags_away RENAME TO flags")
            .expect("rename the table back");
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `query` on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> flagcache::Result<T> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::clone(&self.conn);
        let joined = tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            query(&conn)
        })
        .await;
        match joined {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                Err(Error::new(ErrorKind::Backend, format!("SQLite: {e}")).with_source(e))
            }
            Err(e) => Err(Error::new(
                ErrorKind::Unavailable,
                format!("SQLite task: {e}"),
            )),
        }
    }
}

/// Decodes a row's definition; a bad row is the source's error, not a panic.
fn decode(json: &str) -> flagcache::Result<FlagDefinition> {
    FlagDefinition::from_json(json.as_bytes()).map_err(|e| {
        Error::new(ErrorKind::Backend, format!("bad row in flags: {e}")).with_source(e)
    })
}

impl FlagSource for SqliteSource {
    async fn load(&self, id: &FlagId) -> flagcache::Result<Option<FlagDefinition>> {
        let id = id.as_str().to_owned();
        let json = self
            .run(move |conn| {
                conn.query_row(
                    "SELECT definition FROM flags WHERE id = ?1",
                    params![id],
                    |row| row.get::<_, String>(0),
                )
                .optional()
            })
            .await?;
        json.as_deref().map(decode).transpose()
    }

    async fn load_many(
        &self,
        ids: &[FlagId],
    ) -> flagcache::Result<HashMap<FlagId, FlagDefinition>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = ids.iter().map(|id| id.as_str().to_owned()).collect();
        let rows = self
            .run(move |conn| {
                let marks = vec!["?"; ids.len()].join(",");
                let mut stmt = conn.prepare(&format!(
                    "SELECT definition FROM flags WHERE id IN ({marks})"
                ))?;
                let rows =
                    stmt.query_map(params_from_iter(ids.iter()), |row| row.get::<_, String>(0))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()
            })
            .await?;
        rows.iter()
            .map(|json| decode(json).map(|def| (def.id.clone(), def)))
            .collect()
    }

    async fn load_all(&self) -> flagcache::Result<Vec<FlagDefinition>> {
        let rows = self
            .run(|conn| {
                let mut stmt = conn.prepare("SELECT definition FROM flags")?;
                let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()
            })
            .await?;
        rows.iter().map(|json| decode(json)).collect()
    }
}
