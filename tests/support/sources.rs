//! Sources of truth for the tiered tests: a real SQLite database in a directory of its own,
//! and wrappers that make it behave as a misbehaving database does (slow, hung, or answering
//! what was not asked).

#![allow(dead_code)] // each test file uses its own part
#![allow(clippy::disallowed_types)] // outside the library: std's types are the right ones

#[path = "../../examples/common/sqlite_source.rs"]
mod sqlite_source;

use flagcache::{FlagDefinition, FlagId, FlagSource};
pub use sqlite_source::SqliteSource;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A boolean flag `id` at `version`.
pub fn def(id: &str, version: u64) -> FlagDefinition {
    let mut d = FlagDefinition::new_boolean(id, "A flag", true).unwrap();
    d.version = version;
    d
}

/// A fresh SQLite database in a directory of its own, removed when the test ends.
pub struct Db {
    pub source: SqliteSource,
    pub dir: PathBuf,
}

impl Db {
    pub fn new(name: &str) -> Self {
        let dir = Self::dir(name);
        let source = SqliteSource::open(&dir.join("flags.db")).unwrap();
        Self { source, dir }
    }

    /// A database whose `flags.id` compares case-insensitively (`COLLATE NOCASE`), as some
    /// production databases do.
    pub fn case_insensitive(name: &str) -> Self {
        let dir = Self::dir(name);
        let path = dir.join("flags.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE flags (
                     id TEXT PRIMARY KEY COLLATE NOCASE,
                     version INTEGER NOT NULL,
                     definition TEXT NOT NULL
                 );",
            )
            .unwrap();
        let source = SqliteSource::open(&path).unwrap();
        Self { source, dir }
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flagcache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A source whose loads wait for a permit after querying: a slow database, held in the middle
/// of a load for as long as a test needs (forever, if never released). `load_all` is held the
/// same way when `hold_load_all` is set.
#[derive(Clone)]
pub struct Gated {
    pub inner: SqliteSource,
    permits: Arc<Semaphore>,
    started: Arc<Semaphore>,
    hold_load_all: bool,
}

impl Gated {
    pub fn new(inner: SqliteSource) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(0)),
            started: Arc::new(Semaphore::new(0)),
            hold_load_all: false,
        }
    }

    /// Holds `load_all` too.
    pub fn holding_load_all(mut self) -> Self {
        self.hold_load_all = true;
        self
    }

    /// Waits until a load has queried the database and is held.
    pub async fn load_started(&self) {
        self.started.acquire().await.unwrap().forget();
    }

    /// Loads that have queried and are (or were) held, not yet awaited by `load_started`.
    pub fn started_unclaimed(&self) -> usize {
        self.started.available_permits()
    }

    pub fn release(&self, loads: usize) {
        self.permits.add_permits(loads);
    }

    /// Lets every load through from now on.
    pub fn open(&self) {
        self.permits.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    async fn hold(&self) {
        self.started.add_permits(1);
        self.permits.acquire().await.unwrap().forget();
    }
}

impl FlagSource for Gated {
    async fn load(&self, id: &FlagId) -> flagcache::Result<Option<FlagDefinition>> {
        let found = self.inner.load(id).await;
        self.hold().await;
        found
    }

    async fn load_many(
        &self,
        ids: &[FlagId],
    ) -> flagcache::Result<HashMap<FlagId, FlagDefinition>> {
        let found = self.inner.load_many(ids).await;
        self.hold().await;
        found
    }

    async fn load_all(&self) -> flagcache::Result<Vec<FlagDefinition>> {
        let all = self.inner.load_all().await;
        if self.hold_load_all {
            self.hold().await;
        }
        all
    }
}

/// A source whose code changes each definition the database returned: what a buggy mapping
/// layer between the database and the cache does.
#[derive(Clone)]
pub struct Rewriting<F> {
    pub inner: SqliteSource,
    pub rewrite: F,
}

impl<F: Fn(FlagDefinition) -> FlagDefinition + Send + Sync + 'static> FlagSource for Rewriting<F> {
    async fn load(&self, id: &FlagId) -> flagcache::Result<Option<FlagDefinition>> {
        Ok(self.inner.load(id).await?.map(&self.rewrite))
    }

    async fn load_many(
        &self,
        ids: &[FlagId],
    ) -> flagcache::Result<HashMap<FlagId, FlagDefinition>> {
        let found = self.inner.load_many(ids).await?;
        Ok(found
            .into_iter()
            .map(|(id, d)| (id, (self.rewrite)(d)))
            .collect())
    }

    async fn load_all(&self) -> flagcache::Result<Vec<FlagDefinition>> {
        Ok(self
            .inner
            .load_all()
            .await?
            .into_iter()
            .map(&self.rewrite)
            .collect())
    }
}

/// A source with a change feed: `announce` sends a change to every feed open now, `end_feeds`
/// ends them (as a dropped database connection would). Counts the feeds started.
#[derive(Clone)]
pub struct Announcing<S = SqliteSource> {
    pub inner: S,
    feeds: Arc<std::sync::Mutex<Vec<tokio::sync::mpsc::Sender<flagcache::Change>>>>,
    pub subscriptions: Arc<std::sync::atomic::AtomicUsize>,
}

impl<S> Announcing<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            feeds: Arc::default(),
            subscriptions: Arc::default(),
        }
    }

    /// Sends `change` to every open feed; returns how many took it.
    pub fn announce(&self, change: flagcache::Change) -> usize {
        let mut feeds = self.feeds.lock().unwrap();
        feeds.retain(|f| !f.is_closed());
        feeds
            .iter()
            .filter(|f| f.try_send(change.clone()).is_ok())
            .count()
    }

    /// Announces that flags `ids` changed.
    pub fn changed(&self, ids: &[&str]) -> usize {
        self.announce(flagcache::Change::Flags(
            ids.iter().copied().map(FlagId::new).collect(),
        ))
    }

    pub fn end_feeds(&self) {
        self.feeds.lock().unwrap().clear();
    }

    pub fn open_feeds(&self) -> usize {
        let mut feeds = self.feeds.lock().unwrap();
        feeds.retain(|f| !f.is_closed());
        feeds.len()
    }
}

impl<S: FlagSource + Clone> FlagSource for Announcing<S> {
    async fn load(&self, id: &FlagId) -> flagcache::Result<Option<FlagDefinition>> {
        self.inner.load(id).await
    }

    async fn load_many(
        &self,
        ids: &[FlagId],
    ) -> flagcache::Result<HashMap<FlagId, FlagDefinition>> {
        self.inner.load_many(ids).await
    }

    async fn load_all(&self) -> flagcache::Result<Vec<FlagDefinition>> {
        self.inner.load_all().await
    }

    fn has_change_feed(&self) -> bool {
        true
    }

    async fn subscribe_changes(&self) -> flagcache::Result<flagcache::ChangeFeed> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        self.feeds.lock().unwrap().push(tx);
        self.subscriptions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(flagcache::ChangeFeed::from_channel(rx))
    }
}
