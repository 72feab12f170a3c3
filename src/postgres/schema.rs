//! The table a [`PostgresSource`](super::PostgresSource) reads, the sequence and triggers that
//! keep its versions growing and announce its changes, and the checks on their names.
//!
//! Names are lower-case ASCII letters, digits and `_`, starting with a letter or `_`, and
//! always written quoted: no name can change a statement's meaning, and reserved words are
//! names like any other.

use crate::error::{Error, Result};
use crate::flag::MAX_ID_LEN;

/// PostgreSQL's longest identifier, in bytes.
const MAX_IDENT: usize = 63;

/// The names of one flags table and of what the crate installs beside it.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    /// `"schema"."table"`, quoted.
    pub(crate) table: String,
    schema: String,
    table_name: String,
    /// The `NOTIFY` channel, unquoted (as `pg_notify` takes it).
    pub(crate) channel: String,
}

impl Schema {
    /// Checks the names: `schema`, `table` and the channel (see the module), and the names of
    /// what is installed beside the table (`{table}_flagcache_version`, …) short enough.
    pub(crate) fn new(schema: &str, table: &str, channel: Option<&str>) -> Result<Self> {
        check_ident("schema", schema)?;
        check_ident("table", table)?;
        let channel = channel.map_or_else(|| format!("flagcache_{schema}_{table}"), str::to_owned);
        check_ident("channel", &channel)?;
        check_ident("sequence", &format!("{table}_flagcache_versions"))?;
        Ok(Self {
            table: format!("\"{schema}\".\"{table}\""),
            schema: schema.to_owned(),
            table_name: table.to_owned(),
            channel,
        })
    }

    /// `"schema"."{table}_{what}"`: an object installed beside the table.
    fn beside(&self, what: &str) -> String {
        format!("\"{}\".\"{}_{what}\"", self.schema, self.table_name)
    }

    /// `LISTEN` on the channel.
    pub(crate) fn listen(&self) -> String {
        format!("LISTEN \"{}\"", self.channel)
    }

    /// The SQL that creates the table (if it does not exist; one that exists must have the
    /// columns, or nothing is installed), the version sequence (if it does not exist, then
    /// moved past every stored version) and the triggers (replaced): one transaction.
    ///
    /// Versions: every inserted row, and every update that changes the definition or the id or
    /// lowers the version, takes the sequence's next value, or the version written if that is
    /// higher (and the sequence follows it). So versions grow across updates, deletions and
    /// re-insertions, and a `TRUNCATE` and a re-seed, as the caches' version guard needs.
    pub(crate) fn install_sql(&self) -> String {
        let Self {
            table,
            schema,
            table_name,
            channel,
        } = self;
        let sequence = self.beside("flagcache_versions");
        let version_fn = self.beside("flagcache_version");
        let notify_fn = self.beside("flagcache_notify");
        format!(
            r"BEGIN;
CREATE TABLE IF NOT EXISTS {table} (
    id text PRIMARY KEY CHECK (octet_length(id) BETWEEN 1 AND {MAX_ID_LEN}),
    version bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
    definition jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
DO $check$
BEGIN
    IF (SELECT count(*) FROM information_schema.columns
        WHERE table_schema = '{schema}' AND table_name = '{table_name}'
          AND (column_name, data_type) IN (('id', 'text'), ('version', 'bigint'),
               ('definition', 'jsonb'), ('updated_at', 'timestamp with time zone'))) <> 4
    THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_table_definition', MESSAGE =
            '{schema}.{table_name} exists without the columns flagcache needs: '
            'id text, version bigint, definition jsonb, updated_at timestamptz';
    END IF;
END $check$;
CREATE SEQUENCE IF NOT EXISTS {sequence} MINVALUE 1;
SELECT setval('{sequence}', max, true) FROM (SELECT max(version) FROM {table}) AS m
    WHERE max IS NOT NULL AND max > (SELECT last_value FROM {sequence});
CREATE OR REPLACE FUNCTION {version_fn}() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.definition IS NOT DISTINCT FROM OLD.definition
       AND NEW.id = OLD.id AND NEW.version >= OLD.version THEN
        RETURN NEW;
    END IF;
    next := nextval('{sequence}');
    IF NEW.version > next THEN
        PERFORM setval('{sequence}', NEW.version);
        next := NEW.version;
    END IF;
    NEW.version := next;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION {notify_fn}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('{channel}', '');
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('{channel}', OLD.id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.id <> OLD.id) THEN
        PERFORM pg_notify('{channel}', NEW.id);
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS flagcache_version ON {table};
CREATE TRIGGER flagcache_version BEFORE INSERT OR UPDATE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {version_fn}();
DROP TRIGGER IF EXISTS flagcache_notify ON {table};
CREATE TRIGGER flagcache_notify AFTER INSERT OR UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {notify_fn}();
DROP TRIGGER IF EXISTS flagcache_notify_truncate ON {table};
CREATE TRIGGER flagcache_notify_truncate AFTER TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {notify_fn}();
COMMIT;"
        )
    }

    /// One flag: `$1` its id. The columns `id` and `version` win over the document's own.
    pub(crate) fn select_one(&self) -> String {
        format!("{} WHERE id = $1", self.select())
    }

    /// Several flags: `$1` their ids, as a `text[]`.
    pub(crate) fn select_many(&self) -> String {
        format!("{} WHERE id = ANY($1)", self.select())
    }

    /// Every flag.
    pub(crate) fn select_all(&self) -> String {
        self.select()
    }

    fn select(&self) -> String {
        format!(
            "SELECT id, (definition || jsonb_build_object('id', id, 'version', version))::text \
             FROM {}",
            self.table
        )
    }

    /// Inserts or replaces one flag: `$1` the id, `$2` the version, `$3` the document.
    pub(crate) fn upsert(&self) -> String {
        format!(
            "INSERT INTO {} (id, version, definition) VALUES ($1, $2, $3::text::jsonb) \
             ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, \
             definition = EXCLUDED.definition",
            self.table
        )
    }
}

/// `what` may be written into SQL as it is: see the module.
fn check_ident(what: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_well = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !starts_well || !rest_well {
        return Err(Error::invalid_config(format!(
            "the PostgreSQL {what} name {name:?} must be lower-case ASCII letters, digits and \
             `_`, starting with a letter or `_`"
        )));
    }
    if name.len() > MAX_IDENT {
        return Err(Error::invalid_config(format!(
            "the PostgreSQL {what} name {name:?} is {} bytes long; the limit is {MAX_IDENT}",
            name.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_not_be_written_into_sql_as_they_are_are_refused() {
        for (schema, table) in [
            ("", "flags"),
            ("Public", "flags"),
            ("public", "flags; DROP TABLE x"),
            ("public", "fl\"ags"),
            ("public", "1flags"),
            ("public", "flägs"),
            ("public", &"t".repeat(50)),
        ] {
            assert!(
                Schema::new(schema, table, None).is_err(),
                "{schema}.{table}"
            );
        }
        assert!(Schema::new("public", "flags", Some("it's")).is_err());
        let s = Schema::new("app_1", "flags", None).unwrap();
        assert_eq!(s.table, "\"app_1\".\"flags\"");
        assert_eq!(s.channel, "flagcache_app_1_flags");
        assert_eq!(s.listen(), "LISTEN \"flagcache_app_1_flags\"");
    }
}
