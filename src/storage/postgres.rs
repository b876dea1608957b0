//! The PostgreSQL store: one row per keyring, for replicas on several hosts.
//!
//! Each row holds the same document the file store writes (sealed private
//! keys included). A write is one transaction: `pg_advisory_xact_lock` on
//! each purpose (which also covers a keyring with no row yet), the rows read
//! under it, then a compare-and-swap on `generation`, a row in the
//! append-only history, a `pg_notify`, and COMMIT. A writer that dies holds
//! nothing: the server rolls its transaction back and releases its locks.
//! Readers never lock. The schema is created, and later migrated, at
//! connect under a session advisory lock, so replicas starting together do
//! not race.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use postgres::{Client, NoTls, Statement};

use super::document::decode;
use super::pg_tls::{self, Mode, Rustls};
use super::pg_txn::{Locked, PgTxn, to_i64};
use super::{KeyStore, KeyringTxn, StoreError, TokenEntry, TokenList};
use super::{pg_listen, pg_schema};
use crate::keys::Keyring;

/// The channel replicas LISTEN on; the payload is the purpose.
pub(crate) const CHANNEL: &str = "signet_keyrings";

/// A connection with the statements every poll runs, prepared once (an
/// unprepared query costs the server a second round trip and transaction).
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) load: Statement,
    clock: Statement,
    generations: Statement,
    pub(super) tokens: Statement,
    pub(super) prune: Statement,
}

/// Connects in plain text or over TLS, as the URL's sslmode asked.
pub(super) fn connect(
    config: &postgres::Config,
    tls: Option<&Rustls>,
) -> Result<Client, postgres::Error> {
    match tls {
        Some(tls) => config.connect(tls.clone()),
        None => config.connect(NoTls),
    }
}

impl Conn {
    fn open(config: &postgres::Config, tls: Option<&Rustls>) -> Result<Conn, postgres::Error> {
        let mut client = connect(config, tls)?;
        // The row, and the newest generation its history has seen.
        let load = client.prepare(
            "SELECT k.generation, k.document, (SELECT max(h.generation) FROM signet_keyring_history h WHERE h.purpose = k.purpose) FROM signet_keyrings k WHERE k.purpose = $1",
        )?;
        let clock =
            client.prepare("SELECT floor(extract(epoch FROM clock_timestamp()))::bigint")?;
        let generations = client.prepare("SELECT purpose, generation FROM signet_keyrings")?;
        let tokens = client.prepare(
            "SELECT purpose, jti, exp FROM signet_tokens WHERE list = $1 ORDER BY purpose, jti",
        )?;
        let prune = client.prepare("DELETE FROM signet_tokens WHERE exp < $1")?;
        Ok(Conn {
            client,
            load,
            clock,
            generations,
            tokens,
            prune,
        })
    }
}

/// Keyrings in a PostgreSQL database.
pub struct PostgresStore {
    config: postgres::Config,
    tls: Option<Rustls>,
    conn: Mutex<Conn>,
    /// Where it connects, for messages: never the password.
    describe: String,
    /// Written as `updated_by` and `committed_by`.
    pub(super) replica: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresStore({})", self.describe)
    }
}

pub(super) fn db_err(action: &'static str, e: postgres::Error) -> StoreError {
    // The client's own message is terse ("error performing TLS handshake"):
    // the cause follows it.
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    StoreError::Database { action, reason }
}

/// Where and how to connect, parsed from the URL once.
struct Target {
    config: postgres::Config,
    tls: Option<Rustls>,
    describe: String,
}

impl Target {
    /// Parses `url` and opens a first connection, for the schema.
    fn connect(url: &str, replica: &str) -> Result<(Target, Client), StoreError> {
        let (url, mode) = pg_tls::split(url)?;
        let tls = match mode {
            Mode::Plain => None,
            _ => Some(Rustls(Arc::new(pg_tls::client_config(&mode)?))),
        };
        let mut config: postgres::Config =
            url.parse()
                .map_err(|e: postgres::Error| StoreError::Database {
                    action: "parse SIGNET_DATABASE_URL",
                    reason: e.to_string(),
                })?;
        // Names the replica in pg_stat_activity, unless the URL does.
        if config.get_application_name().is_none() {
            config.application_name(&format!("signet {replica}"));
        }
        let describe = format!(
            "{}{}",
            describe(&config),
            match mode {
                Mode::Plain => "",
                Mode::Require => " (TLS, certificate unchecked)",
                Mode::VerifyFull(_) => " (TLS, verified)",
            }
        );
        let client =
            connect(&config, tls.as_ref()).map_err(|e| db_err("connect to the database", e))?;
        Ok((
            Target {
                config,
                tls,
                describe,
            },
            client,
        ))
    }

    /// The store, on a connection with its statements prepared.
    fn into_store(self, replica: &str) -> Result<PostgresStore, StoreError> {
        let conn = Conn::open(&self.config, self.tls.as_ref())
            .map_err(|e| db_err("connect to the database", e))?;
        Ok(PostgresStore {
            config: self.config,
            tls: self.tls,
            conn: Mutex::new(conn),
            describe: self.describe,
            replica: replica.to_owned(),
        })
    }
}

impl PostgresStore {
    /// Connects to `url` (a libpq connection string or URL; a Unix socket
    /// with `host=/path`), creates or migrates the schema, and names this
    /// replica `replica` in what it writes.
    pub fn connect(url: &str, replica: &str) -> Result<PostgresStore, StoreError> {
        let (target, mut client) = Target::connect(url, replica)?;
        pg_schema::migrate(&mut client)?;
        target.into_store(replica)
    }

    /// Connects to read, creating nothing: a role without CREATE may list
    /// keys. `None` when signet's tables do not exist yet (no keyring was
    /// ever written). A schema of another version is refused, naming the
    /// fix (for an older one: any write command, or a server, migrates it).
    pub fn connect_read_only(
        url: &str,
        replica: &str,
    ) -> Result<Option<PostgresStore>, StoreError> {
        let (target, mut client) = Target::connect(url, replica)?;
        if !pg_schema::readable(&mut client)? {
            return Ok(None);
        }
        target.into_store(replica).map(Some)
    }

    /// The connection, opened again if the last one broke (a database
    /// restart): replicas catch up without a restart of their own.
    pub(super) fn conn(&self) -> Result<MutexGuard<'_, Conn>, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if conn.client.is_closed() {
            *conn = Conn::open(&self.config, self.tls.as_ref())
                .map_err(|e| db_err("reconnect to the database", e))?;
            tracing::info!(store = %self.describe, "reconnected to the database");
        }
        Ok(conn)
    }

    /// The keyring of a row read by [`Conn::load`], checked like a file:
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

    pub(super) fn location(&self, purpose: &str) -> String {
        format!("the {purpose} row of {}", self.describe)
    }
}

/// host, port and database: enough to find it, nothing secret.
fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("postgres");
    format!("PostgreSQL store {db} at {host}:{port}")
}

impl KeyStore for PostgresStore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn load(&self, purpose: &str) -> Result<Option<Keyring>, StoreError> {
        let mut conn = self.conn()?;
        let statement = conn.load.clone();
        let row = conn
            .client
            .query_opt(&statement, &[&purpose])
            .map_err(|e| db_err("read a keyring", e))?;
        row.map(|r| self.keyring_of(&r, purpose)).transpose()
    }

    fn generations(&self) -> Result<Option<Vec<(String, u64)>>, StoreError> {
        let mut conn = self.conn()?;
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
        self.record(list, entry)
    }

    fn token_recorded(&self, list: TokenList, entry: &TokenEntry) -> Result<bool, StoreError> {
        self.recorded(list, entry)
    }

    fn tokens(&self, list: TokenList) -> Result<Vec<TokenEntry>, StoreError> {
        self.entries(list)
    }

    fn prune_tokens(&self, before: crate::clock::UnixTime) -> Result<usize, StoreError> {
        self.prune(before)
    }

    fn clock_offset(&self, now: crate::clock::UnixTime) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn()?;
        let statement = conn.clock.clone();
        let db: i64 = conn
            .client
            .query_one(&statement, &[])
            .map_err(|e| db_err("read the database's clock", e))?
            .get(0);
        Ok(Some(db - to_i64(now.0)))
    }

    fn watch(&self, on_change: Box<dyn Fn(&str) + Send + Sync>) {
        let (config, tls, describe) =
            (self.config.clone(), self.tls.clone(), self.describe.clone());
        let spawned = std::thread::Builder::new()
            .name("signet-listen".into())
            .spawn(move || pg_listen::listen(config, tls, describe, on_change));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start listening for keyring changes; polling only");
        }
    }

    fn lock(&self, purposes: &[&str]) -> Result<Box<dyn KeyringTxn + '_>, StoreError> {
        let mut conn = self.conn()?;
        conn.client
            .batch_execute(
                "BEGIN; SET LOCAL lock_timeout = '10s'; SET LOCAL idle_in_transaction_session_timeout = '60s'",
            )
            .map_err(|e| db_err("begin a transaction", e))?;
        let mut txn = PgTxn {
            store: self,
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
