//! A write to the PostgreSQL store, holding its connection and advisory
//! locks until it commits or is dropped (which rolls back).

use super::conn::{CHANNEL, ConnGuard, db_err};
use crate::keys::Keyring;
use crate::storage::document::encode;
use crate::storage::{KeyringTxn, StoreError, check_successor};

/// A purpose locked by a [`PgTxn`].
pub(super) struct Locked {
    pub(super) purpose: String,
    /// Its row's keyring; `None` if it has no row.
    pub(super) ring: Option<Keyring>,
    /// The generation its next keyring carries: above the row's, and above
    /// every generation in the history (a purpose started again continues it).
    pub(super) next: u64,
}

pub(super) struct PgTxn<'a> {
    /// The store, for messages.
    pub(super) describe: &'a str,
    /// Written as `updated_by` and `committed_by`.
    pub(super) replica: &'a str,
    /// The writer's connection, in the transaction.
    pub(super) conn: ConnGuard<'a>,
    /// Each locked purpose as of the lock.
    pub(super) current: Vec<Locked>,
    pub(super) done: bool,
}

impl Drop for PgTxn<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Also on an error inside commit: nothing half-written remains.
            let _ = self.conn.client.batch_execute("ROLLBACK");
        }
    }
}

impl KeyringTxn for PgTxn<'_> {
    fn current(&self, purpose: &str) -> Option<&Keyring> {
        self.current
            .iter()
            .find(|l| l.purpose == purpose)
            .and_then(|l| l.ring.as_ref())
    }

    fn next_generation(&self, purpose: &str) -> u64 {
        self.current
            .iter()
            .find(|l| l.purpose == purpose)
            .map_or(1, |l| l.next)
    }

    fn commit(mut self: Box<Self>, keyrings: Vec<Keyring>) -> Result<Vec<u64>, StoreError> {
        let mut generations = Vec::with_capacity(keyrings.len());
        for keyring in keyrings {
            let purpose = keyring.purpose.clone();
            let location = format!("the {purpose} row of {}", self.describe);
            let Some(locked) = self.current.iter().find(|l| l.purpose == purpose) else {
                return Err(StoreError::Corrupt {
                    location,
                    reason: "was not locked by this write (a bug in signet)".into(),
                });
            };
            let previous = locked.ring.as_ref().map(|k| k.generation);
            check_successor(&keyring, locked.next, &location)?;
            let document = encode(&keyring, &location)?;
            let generation = to_i64(keyring.generation);
            let replica = self.replica;
            // Compare-and-swap: zero rows means another writer got there first.
            let written = if let Some(previous) = previous {
                let previous = to_i64(previous);
                self.conn.client.execute(
                    "UPDATE signet_keyrings SET generation = $2, document = $3, updated_at = now(), updated_by = $4 WHERE purpose = $1 AND generation = $5",
                    &[&purpose, &generation, &document, &replica, &previous],
                )
            } else {
                self.conn.client.execute(
                    "INSERT INTO signet_keyrings (purpose, generation, document, updated_by) VALUES ($1, $2, $3, $4) ON CONFLICT (purpose) DO NOTHING",
                    &[&purpose, &generation, &document, &replica],
                )
            }
            .map_err(|e| db_err("write a keyring", e))?;
            if written != 1 {
                return Err(StoreError::Database {
                    action: "write a keyring",
                    reason: format!(
                        "the {purpose} keyring changed under the lock (generation {} expected): nothing was written; retry",
                        previous.unwrap_or(0)
                    ),
                });
            }
            self.conn.client
                .execute(
                    "INSERT INTO signet_keyring_history (purpose, generation, document, committed_by) VALUES ($1, $2, $3, $4)",
                    &[&purpose, &generation, &document, &replica],
                )
                .map_err(|e| db_err("record the keyring's history", e))?;
            self.conn
                .client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &purpose])
                .map_err(|e| db_err("notify the replicas", e))?;
            generations.push(keyring.generation);
        }
        self.conn
            .client
            .batch_execute("COMMIT")
            .map_err(|e| db_err("commit", e))?;
        self.done = true;
        Ok(generations)
    }
}

pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
