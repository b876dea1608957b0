//! The PostgreSQL store's token lists: rows of `signet_tokens`, whose
//! primary key makes recording an entry atomic across replicas.

use super::pg_txn::to_i64;
use super::postgres::{CHANNEL, PostgresStore, db_err};
use super::{StoreError, TokenEntry, TokenList};

impl PostgresStore {
    pub(super) fn record(&self, list: TokenList, entry: &TokenEntry) -> Result<bool, StoreError> {
        // The primary key makes the insert the atomic part: of two
        // concurrent records, one inserts and the other finds the row.
        let mut conn = self.conn()?;
        let written = conn
            .client
            .execute(
                "INSERT INTO signet_tokens (list, purpose, jti, exp) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&list.as_str(), &entry.purpose, &entry.jti, &to_i64(entry.exp.0)],
            )
            .map_err(|e| db_err("record a token", e))?;
        if written == 1 && list == TokenList::Revoked {
            // The other replicas refresh their revocation document at once
            // (polling stays the truth).
            conn.client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &entry.purpose])
                .map_err(|e| db_err("notify the replicas", e))?;
        }
        Ok(written == 1)
    }

    pub(super) fn recorded(&self, list: TokenList, entry: &TokenEntry) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        let row = conn
            .client
            .query_opt(
                "SELECT 1 FROM signet_tokens WHERE list = $1 AND purpose = $2 AND jti = $3",
                &[&list.as_str(), &entry.purpose, &entry.jti],
            )
            .map_err(|e| db_err("look up a token", e))?;
        Ok(row.is_some())
    }

    pub(super) fn entries(&self, list: TokenList) -> Result<Vec<TokenEntry>, StoreError> {
        let mut conn = self.conn()?;
        let statement = conn.tokens.clone();
        let rows = conn
            .client
            .query(&statement, &[&list.as_str()])
            .map_err(|e| db_err("read the token lists", e))?;
        Ok(rows
            .iter()
            .map(|r| TokenEntry {
                purpose: r.get(0),
                jti: r.get(1),
                exp: crate::clock::UnixTime(u64::try_from(r.get::<_, i64>(2)).unwrap_or(0)),
            })
            .collect())
    }

    pub(super) fn prune(&self, before: crate::clock::UnixTime) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let statement = conn.prune.clone();
        let dropped = conn
            .client
            .execute(&statement, &[&to_i64(before.0)])
            .map_err(|e| db_err("prune the token lists", e))?;
        Ok(usize::try_from(dropped).unwrap_or(usize::MAX))
    }
}
