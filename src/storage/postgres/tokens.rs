//! The PostgreSQL store's token lists: rows of `signet_tokens`, whose
//! primary key makes recording an entry atomic across replicas.

use super::conn::{CHANNEL, Conn, db_err};
use super::txn::to_i64;
use crate::clock::UnixTime;
use crate::storage::{StoreError, TokenEntry, TokenList};

/// Records `entry`: `Ok(false)` if it was already there.
pub(super) fn record(
    conn: &mut Conn,
    list: TokenList,
    entry: &TokenEntry,
) -> Result<bool, StoreError> {
    // The primary key makes the insert the atomic part: of two concurrent
    // records, one inserts and the other finds the row.
    let statement = conn.record.clone();
    let written = conn
        .client
        .execute(
            &statement,
            &[
                &list.as_str(),
                &entry.purpose,
                &entry.jti,
                &to_i64(entry.exp.0),
                &entry.tag,
            ],
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

/// Whether `entry` is recorded.
pub(super) fn recorded(
    conn: &mut Conn,
    list: TokenList,
    entry: &TokenEntry,
) -> Result<bool, StoreError> {
    let statement = conn.recorded.clone();
    let row = conn
        .client
        .query_opt(&statement, &[&list.as_str(), &entry.purpose, &entry.jti])
        .map_err(|e| db_err("look up a token", e))?;
    Ok(row.is_some())
}

/// Every entry of `list`.
pub(super) fn entries(conn: &mut Conn, list: TokenList) -> Result<Vec<TokenEntry>, StoreError> {
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
            exp: UnixTime(u64::try_from(r.get::<_, i64>(2)).unwrap_or(0)),
            tag: r.get(3),
        })
        .collect())
}

/// Drops the entries of both lists whose `exp` is before `before`.
pub(super) fn prune(conn: &mut Conn, before: UnixTime) -> Result<usize, StoreError> {
    let dropped = conn
        .client
        .execute(
            "DELETE FROM signet_tokens WHERE exp < $1",
            &[&to_i64(before.0)],
        )
        .map_err(|e| db_err("prune the token lists", e))?;
    Ok(usize::try_from(dropped).unwrap_or(usize::MAX))
}
