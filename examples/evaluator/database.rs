//! The evaluator's source of truth: a SQLite file (the default), or PostgreSQL at
//! `POSTGRES_URL` (with the `postgres` feature), in a schema of its own, whose changes reach
//! the cache through its change feed.

use flagcache::{FlagDefinition, FlagId, FlagSource};
use std::collections::HashMap;

use super::sqlite_source::SqliteSource;

/// The schema the evaluator's PostgreSQL table lives in.
#[cfg(feature = "postgres")]
pub const PG_SCHEMA: &str = "flagcache_evaluator";

#[derive(Clone)]
pub enum Database {
    Sqlite(SqliteSource),
    #[cfg(feature = "postgres")]
    Postgres {
        source: flagcache::PostgresSource,
        /// A plain client, as an admin tool is: its changes go through no cache.
        admin: std::sync::Arc<tokio_postgres::Client>,
    },
}

impl Database {
    /// PostgreSQL at `url`: the schema and table (with its triggers) made if missing, and the
    /// demo flags written when it is empty.
    #[cfg(feature = "postgres")]
    pub async fn postgres(
        url: &str,
        demo: impl FnOnce() -> Vec<FlagDefinition>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let (admin, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        admin
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}"))
            .await?;
        let source = flagcache::PostgresSource::builder(url)
            .schema(PG_SCHEMA)
            .build()?;
        source.install().await?;
        if source.load_all().await?.is_empty() {
            let defs = demo();
            for def in &defs {
                source.upsert(def).await?;
            }
            println!("created {} with {} demo flags", source.table(), defs.len());
        }
        Ok(Self::Postgres {
            source,
            admin: std::sync::Arc::new(admin),
        })
    }

    /// What to print for L3.
    pub fn label(&self) -> String {
        match self {
            Self::Sqlite(_) => "SQLite".to_owned(),
            #[cfg(feature = "postgres")]
            Self::Postgres { source, .. } => format!("PostgreSQL {}", source.table()),
        }
    }

    /// The admin's change of `id`: `enabled` flipped and the version raised, in the database
    /// only. Returns the new definition.
    pub async fn change(&self, id: &FlagId) -> Option<FlagDefinition> {
        match self {
            Self::Sqlite(source) => {
                let mut def = source.load(id).await.ok()??;
                def.version += 1;
                def.enabled = !def.enabled;
                source.upsert(&def).ok()?;
                Some(def)
            }
            // Plain SQL, as an admin tool writes it: the trigger raises the version.
            #[cfg(feature = "postgres")]
            Self::Postgres { source, admin } => {
                let sql = format!(
                    "UPDATE {} SET definition = jsonb_set(definition, '{{enabled}}', \
                     to_jsonb(NOT coalesce((definition->>'enabled')::boolean, true))) \
                     WHERE id = $1 \
                     RETURNING (definition || jsonb_build_object('id', id, 'version', version))::text",
                    source.table()
                );
                let row = admin.query_opt(&sql, &[&id.as_str()]).await.ok()??;
                FlagDefinition::from_json(row.get::<_, &str>(0).as_bytes()).ok()
            }
        }
    }
}

impl FlagSource for Database {
    async fn load(&self, id: &FlagId) -> flagcache::Result<Option<FlagDefinition>> {
        match self {
            Self::Sqlite(s) => s.load(id).await,
            #[cfg(feature = "postgres")]
            Self::Postgres { source, .. } => source.load(id).await,
        }
    }

    async fn load_many(
        &self,
        ids: &[FlagId],
    ) -> flagcache::Result<HashMap<FlagId, FlagDefinition>> {
        match self {
            Self::Sqlite(s) => s.load_many(ids).await,
            #[cfg(feature = "postgres")]
            Self::Postgres { source, .. } => source.load_many(ids).await,
        }
    }

    async fn load_all(&self) -> flagcache::Result<Vec<FlagDefinition>> {
        match self {
            Self::Sqlite(s) => s.load_all().await,
            #[cfg(feature = "postgres")]
            Self::Postgres { source, .. } => source.load_all().await,
        }
    }

    fn has_change_feed(&self) -> bool {
        match self {
            Self::Sqlite(_) => false,
            #[cfg(feature = "postgres")]
            Self::Postgres { .. } => true,
        }
    }

    async fn subscribe_changes(&self) -> flagcache::Result<flagcache::ChangeFeed> {
        match self {
            Self::Sqlite(s) => s.subscribe_changes().await,
            #[cfg(feature = "postgres")]
            Self::Postgres { source, .. } => source.subscribe_changes().await,
        }
    }
}
