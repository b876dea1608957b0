//! The PostgreSQL store's schema: created, and later migrated, under a
//! session advisory lock, so replicas starting together do not race. A
//! schema already at this signet's version is only checked, so the role
//! signet serves as needs no right to create or alter anything: the
//! migration can run once as the tables' owner (`signet store migrate`),
//! which also grants the serving role what it needs and no more.
//!
//! The history is append-only in the database: a trigger refuses UPDATE,
//! DELETE and TRUNCATE on `signet_keyring_history`. Only the tables' owner
//! (or a superuser) can disable or drop it, so a serving role that does not
//! own them cannot rewrite the history that refuses a rolled-back keyring.

use postgres::Client;

use super::conn::db_err;
use crate::storage::StoreError;

/// The advisory lock key that serialises schema migrations.
const MIGRATION_LOCK: i64 = 0x7369_676e_6574; // "signet"
/// The schema version this signet writes.
pub(super) const SCHEMA_VERSION: i32 = 3;
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
-- Numbers every token id as it is recorded: with the count, a poll tells
-- whether a list changed without reading it.
ALTER TABLE signet_tokens ADD COLUMN IF NOT EXISTS seq bigserial;
-- Each entry's authentication under the master keys (made by signet, which
-- ignores an entry whose tag does not verify).
ALTER TABLE signet_tokens ADD COLUMN IF NOT EXISTS tag text NOT NULL DEFAULT '';
CREATE OR REPLACE FUNCTION signet_history_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'signet_keyring_history is append-only: % refused', TG_OP
        USING HINT = 'the history lets replicas refuse a keyring put back to an older copy';
END
$$;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'signet_history_append_only'
                   AND tgrelid = 'signet_keyring_history'::regclass) THEN
        CREATE TRIGGER signet_history_append_only
            BEFORE UPDATE OR DELETE ON signet_keyring_history
            FOR EACH ROW EXECUTE FUNCTION signet_history_append_only();
        CREATE TRIGGER signet_history_no_truncate
            BEFORE TRUNCATE ON signet_keyring_history
            FOR EACH STATEMENT EXECUTE FUNCTION signet_history_append_only();
    END IF;
END
$$;
";

/// What the serving role needs: read and write the keyrings, append to the
/// history, record and prune token ids; nothing it could use to rewrite
/// the history or the schema.
const GRANTS: &str = "
GRANT SELECT ON signet_schema TO {role};
GRANT SELECT, INSERT, UPDATE ON signet_keyrings TO {role};
GRANT SELECT, INSERT ON signet_keyring_history TO {role};
GRANT SELECT, INSERT, DELETE ON signet_tokens TO {role};
GRANT USAGE ON SEQUENCE signet_tokens_seq_seq TO {role};
";

/// Creates what is missing and records this signet's version, unless the
/// schema is already at it. A database of a newer signet is refused.
pub(super) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    match current_version(client)? {
        Some(SCHEMA_VERSION) => return Ok(()),
        Some(v) if v > SCHEMA_VERSION => return Err(newer(v)),
        _ => {}
    }
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
            // (version 2 added signet_tokens, 3 the history's trigger and the
            // token ids' numbers).
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

/// Grants `role` what serving needs (run by the tables' owner).
pub(super) fn grant(client: &mut Client, role: &str) -> Result<(), StoreError> {
    let valid = !role.is_empty()
        && role.len() <= 63
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(StoreError::Database {
            action: "grant the serving role",
            reason: format!(
                "{role:?} is not a plain role name (lowercase letters, digits and _, at most 63)"
            ),
        });
    }
    client
        .batch_execute(&GRANTS.replace("{role}", role))
        .map_err(|e| db_err("grant the serving role", e))
}

/// The schema version recorded, `None` if there is no schema yet.
fn current_version(client: &mut Client) -> Result<Option<i32>, StoreError> {
    let read = |e| db_err("read the schema", e);
    let exists: bool = client
        .query_one("SELECT to_regclass('signet_schema') IS NOT NULL", &[])
        .map_err(read)?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_one("SELECT max(version) FROM signet_schema", &[])
        .map_err(read)?
        .get(0))
}

/// Whether the schema exists (false: nothing was ever written), refusing a
/// version this signet cannot read. Creates nothing.
pub(super) fn readable(client: &mut Client) -> Result<bool, StoreError> {
    match current_version(client)? {
        None => Ok(false),
        Some(SCHEMA_VERSION) => Ok(true),
        Some(v) if v > SCHEMA_VERSION => Err(newer(v)),
        Some(v) => Err(StoreError::Database {
            action: "use the schema",
            reason: format!(
                "the database holds schema version {v}, older than this signet's {SCHEMA_VERSION}: run `signet store migrate` as the tables' owner, or start a server or run a write command once"
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
