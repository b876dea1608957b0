//! The PostgreSQL store: one row per keyring, for replicas on several hosts.
//!
//! Each row holds the same document the file store writes (sealed private
//! keys included). A write is one transaction: `pg_advisory_xact_lock` on
//! each purpose (which also covers a keyring with no row yet), the rows read
//! under it, then a compare-and-swap on `generation`, a row in the
//! append-only history, a `pg_notify`, and COMMIT. A writer that dies holds
//! nothing: the server rolls its transaction back and releases its locks.
//! Readers never lock, and never wait for a writer: each role has its own
//! connection ([`Slot`]). The schema is created, and later migrated, at
//! connect under a session advisory lock, so replicas starting together do
//! not race.

mod conn;
mod listen;
mod schema;
mod tls;
mod tokens;
mod txn;

use std::fmt;
use std::sync::Arc;

use self::conn::{Slot, Target, db_err};
use self::txn::{Locked, PgTxn, to_i64};
use crate::keys::Keyring;
use crate::storage::document::decode;
use crate::storage::{KeyStore, KeyringTxn, StoreError, TokenEntry, TokenList};

/// Keyrings in a PostgreSQL database.
pub struct PostgresStore {
    target: Arc<Target>,
    /// Keyring changes: held across a change's lock wait and commit.
    writer: Slot,
    /// Polls: keyrings, generations, the clock, the token lists as a whole.
    reader: Slot,
    /// The request path's token-list entries: consume, revoke, look-ups.
    lists: Slot,
    /// Written as `updated_by` and `committed_by`.
    replica: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresStore({})", self.target.describe)
    }
}

impl PostgresStore {
    /// Connects to `url` (a libpq connection string or URL; a Unix socket
    /// with `host=/path`), creates or migrates the schema, and names this
    /// replica `replica` in what it writes.
    pub fn connect(url: &str, replica: &str) -> Result<PostgresStore, StoreError> {
        let target = Target::parse(url, replica)?;
        let mut client = target
            .connect()
            .map_err(|e| db_err("connect to the database", e))?;
        let migrated = schema::migrate(&mut client);
        conn::drop_off_runtime(Some(client));
        migrated?;
        PostgresStore::open(target, replica)
    }

    /// Creates or migrates the schema as the role of `url` (the tables'
    /// owner), and grants `serving_role`, if given, what a server needs:
    /// read and write the keyrings, append to the history, record and
    /// prune token ids; not enough to rewrite the history.
    pub fn migrate(url: &str, serving_role: Option<&str>) -> Result<(), StoreError> {
        let target = Target::parse(url, "migrate")?;
        let mut client = target
            .connect()
            .map_err(|e| db_err("connect to the database", e))?;
        let done = schema::migrate(&mut client)
            .and_then(|()| serving_role.map_or(Ok(()), |role| schema::grant(&mut client, role)));
        conn::drop_off_runtime(Some(client));
        done
    }

    /// Connects to read, creating nothing: a role without CREATE may list
    /// keys. `None` when signet's tables do not exist yet (no keyring was
    /// ever written). A schema of another version is refused, naming the
    /// fix (for an older one: any write command, or a server, migrates it).
    pub fn connect_read_only(
        url: &str,
        replica: &str,
    ) -> Result<Option<PostgresStore>, StoreError> {
        let target = Target::parse(url, replica)?;
        let mut client = target
            .connect()
            .map_err(|e| db_err("connect to the database", e))?;
        let readable = schema::readable(&mut client);
        conn::drop_off_runtime(Some(client));
        if !readable? {
            return Ok(None);
        }
        PostgresStore::open(target, replica).map(Some)
    }

    /// The store, its readers' connection opened (so a database that cannot
    /// be used is reported now); the other roles connect on first use.
    fn open(target: Target, replica: &str) -> Result<PostgresStore, StoreError> {
        let target = Arc::new(target);
        let backoff = conn::Backoff::default();
        let slot = |role| Slot::new(role, target.clone(), backoff.clone());
        let store = PostgresStore {
            writer: slot("writer"),
            reader: slot("reader"),
            lists: slot("token lists"),
            target,
            replica: replica.to_owned(),
        };
        drop(store.reader.get()?);
        Ok(store)
    }

    /// The keyring of a row read by `Conn::load`, checked like a file:
    /// its document decodes and passes the integrity checks, its generation
    /// column agrees with the document, and no later generation was ever
    /// committed (the history keeps them): a row put back to an older,
    /// authentic document, which may hold a since-revoked key, is refused,
    /// even by a process that never saw the newer one.
    fn keyring_of(&self, row: &postgres::Row, purpose: &str) -> Result<Keyring, StoreError> {
        let location = self.location(purpose);
        let ring = decode(row.get::<_, &[u8]>(1), &location, purpose)?;
        let column: i64 = row.get(0);
        if u64::try_from(column).ok() != Some(ring.generation) {
            return Err(StoreError::Corrupt {
                location,
                reason: format!(
                    "has generation {column} in its column but {} in its document (altered by hand?)",
                    ring.generation
                ),
            });
        }
        let newest: Option<i64> = row.get(2);
        if let Some(newest) = newest.filter(|n| *n > column) {
            return Err(StoreError::Corrupt {
                location,
                reason: format!(
                    "is at generation {column}, but generation {newest} was committed (signet_keyring_history): the row was put back to an older copy, which may hold a revoked key; restore generation {newest} from the history"
                ),
            });
        }
        Ok(ring)
    }

    fn location(&self, purpose: &str) -> String {
        format!("the {purpose} row of {}", self.target.describe)
    }
}

impl KeyStore for PostgresStore {
    fn describe(&self) -> String {
        self.target.describe.clone()
    }

    fn load(&self, purpose: &str) -> Result<Option<Keyring>, StoreError> {
        let mut conn = self.reader.get()?;
        let statement = conn.load.clone();
        let row = conn
            .client
            .query_opt(&statement, &[&purpose])
            .map_err(|e| db_err("read a keyring", e))?;
        row.map(|r| self.keyring_of(&r, purpose)).transpose()
    }

    fn generations(&self) -> Result<Option<Vec<(String, u64)>>, StoreError> {
        let mut conn = self.reader.get()?;
        let statement = conn.generations.clone();
        let rows = conn
            .client
            .query(&statement, &[])
            .map_err(|e| db_err("read the keyrings' generations", e))?;
        Ok(Some(
            rows.iter()
                .map(|r| {
                    let generation: i64 = r.get(1);
                    (r.get(0), u64::try_from(generation).unwrap_or(0))
                })
                .collect(),
        ))
    }

    fn record_token(&self, list: TokenList, entry: &TokenEntry) -> Result<bool, StoreError> {
        tokens::record(&mut *self.lists.get()?, list, entry)
    }

    fn token_recorded(&self, list: TokenList, entry: &TokenEntry) -> Result<bool, StoreError> {
        tokens::recorded(&mut *self.lists.get()?, list, entry)
    }

    fn tokens_version(&self, list: TokenList) -> Result<Option<String>, StoreError> {
        let mut conn = self.reader.get()?;
        let statement = conn.tokens_version.clone();
        let row = conn
            .client
            .query_one(&statement, &[&list.as_str()])
            .map_err(|e| db_err("read the token lists' version", e))?;
        Ok(Some(row.get(0)))
    }

    fn tokens(&self, list: TokenList) -> Result<Vec<TokenEntry>, StoreError> {
        tokens::entries(&mut *self.reader.get()?, list)
    }

    fn prune_tokens(&self, before: crate::clock::UnixTime) -> Result<usize, StoreError> {
        tokens::prune(&mut *self.reader.get()?, before)
    }

    fn clock_offset(&self, now: crate::clock::UnixTime) -> Result<Option<i64>, StoreError> {
        let mut conn = self.reader.get()?;
        let statement = conn.clock.clone();
        let db: i64 = conn
            .client
            .query_one(&statement, &[])
            .map_err(|e| db_err("read the database's clock", e))?
            .get(0);
        Ok(Some(db - to_i64(now.0)))
    }

    fn watch(&self, on_change: Box<dyn Fn(&str) + Send + Sync>) {
        let target = self.target.clone();
        let spawned = std::thread::Builder::new()
            .name("signet-listen".into())
            .spawn(move || listen::listen(&target, on_change));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start listening for keyring changes; polling only");
        }
    }

    fn lock(&self, purposes: &[&str]) -> Result<Box<dyn KeyringTxn + '_>, StoreError> {
        let mut conn = self.writer.get()?;
        conn.client
            .batch_execute(
                "BEGIN; SET LOCAL lock_timeout = '10s'; SET LOCAL idle_in_transaction_session_timeout = '60s'",
            )
            .map_err(|e| db_err("begin a transaction", e))?;
        let mut txn = PgTxn {
            describe: &self.target.describe,
            replica: &self.replica,
            conn,
            current: Vec::new(),
            done: false,
        };
        // A fixed order, so two writers locking several purposes cannot deadlock.
        let mut sorted: Vec<&str> = purposes.to_vec();
        sorted.sort_unstable();
        for purpose in sorted {
            txn.conn
                .client
                .execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended('signet keyring ' || $1, 0))",
                    &[&purpose],
                )
                .map_err(|e| db_err("lock a keyring", e))?;
            let statement = txn.conn.load.clone();
            let row = txn
                .conn
                .client
                .query_opt(&statement, &[&purpose])
                .map_err(|e| db_err("read a keyring", e))?;
            let ring = row.map(|r| self.keyring_of(&r, purpose)).transpose()?;
            let next = match &ring {
                Some(ring) => ring.generation + 1,
                // No row: a first keyring, or one started again after its row
                // was removed; generations continue the history.
                None => {
                    let newest: Option<i64> = txn
                        .conn
                        .client
                        .query_one(
                            "SELECT max(generation) FROM signet_keyring_history WHERE purpose = $1",
                            &[&purpose],
                        )
                        .map_err(|e| db_err("read a keyring's history", e))?
                        .get(0);
                    newest.map_or(0, |n| u64::try_from(n).unwrap_or(0)) + 1
                }
            };
            txn.current.push(Locked {
                purpose: purpose.to_owned(),
                ring,
                next,
            });
        }
        Ok(Box::new(txn))
    }
}
