//! The PostgreSQL store's schema: created, and later migrated, at connect
//! under a session advisory lock, so replicas starting together do not race;
//! read-only commands only check it.

use postgres::Client;

use super::conn::db_err;
use crate::storage::StoreError;

/// The advisory lock key that serialises schema migrations.
const MIGRATION_LOCK: i64 = 0x7369_676e_6574; // "signet"
/// The schema version this signet writes.
pub(super) const SCHEMA_VERSION: i32 = 2;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS signet_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS signet_keyrings (
    purpose    text PRIMARY KEY,
    generation bigint NOT NULL,
    document   bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);
CREATE TABLE IF NOT EXISTS signet_tokens (
    list    text NOT NULL,
    purpose text NOT NULL,
    jti     text NOT NULL,
    exp     bigint NOT NULL,
    PRIMARY KEY (list, purpose, jti)
);
CREATE TABLE IF NOT EXISTS signet_keyring_history (
    purpose      text NOT NULL,
    generation   bigint NOT NULL,
    document     bytea NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    committed_by text NOT NULL,
    PRIMARY KEY (purpose, generation)
);
";

/// Creates what is missing and records this signet's version. A database
/// of a newer signet is refused.
pub(super) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| db_err("lock the schema", e))?;
    let result = (|| {
        // "already exists, skipping" notices would reach the log on every start.
        client.batch_execute("SET client_min_messages = warning")?;
        client.batch_execute(SCHEMA)?;
        let version: Option<i32> = client
            .query_opt("SELECT max(version) FROM signet_schema", &[])?
            .and_then(|row| row.get(0));
        match version {
            Some(SCHEMA_VERSION) => {}
            Some(v) if v > SCHEMA_VERSION => return Ok(Err(newer(v))),
            // New, or older: the batch above created what was missing
            // (version 2 added signet_tokens).
            _ => {
                client.execute(
                    "INSERT INTO signet_schema (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )?;
            }
        }
        Ok(Ok(()))
    })();
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result.map_err(|e| db_err("create the schema", e))?
}

/// Whether the schema exists (false: nothing was ever written), refusing a
/// version this signet cannot read. Creates nothing.
pub(super) fn readable(client: &mut Client) -> Result<bool, StoreError> {
    let read = |e| db_err("read the schema", e);
    let exists: bool = client
        .query_one("SELECT to_regclass('signet_schema') IS NOT NULL", &[])
        .map_err(read)?
        .get(0);
    if !exists {
        return Ok(false);
    }
    let version: Option<i32> = client
        .query_one("SELECT max(version) FROM signet_schema", &[])
        .map_err(read)?
        .get(0);
    match version {
        None => Ok(false),
        Some(SCHEMA_VERSION) => Ok(true),
        Some(v) if v > SCHEMA_VERSION => Err(newer(v)),
        Some(v) => Err(StoreError::Database {
            action: "use the schema",
            reason: format!(
                "the database holds schema version {v}, older than this signet's {SCHEMA_VERSION}: start a server or run a write command once to migrate it"
            ),
        }),
    }
}

fn newer(v: i32) -> StoreError {
    StoreError::Database {
        action: "use the schema",
        reason: format!(
            "the database holds schema version {v}, newer than this signet's {SCHEMA_VERSION}: upgrade signet"
        ),
    }
}
