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

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls, Statement};

use super::document::decode;
use super::pg_tls::{self, Mode, Rustls};
use super::pg_txn::{Locked, PgTxn, to_i64};
use super::{KeyStore, KeyringTxn, StoreError, TokenEntry, TokenList};
use crate::keys::Keyring;

/// The advisory lock key that serialises schema migrations.
const MIGRATION_LOCK: i64 = 0x7369_676e_6574; // "signet"
/// The schema version this signet writes.
const SCHEMA_VERSION: i32 = 2;
/// The channel replicas LISTEN on; the payload is the purpose.
pub(crate) const CHANNEL: &str = "signet_keyrings";

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

/// A connection with the statements every poll runs, prepared once (an
/// unprepared query costs the server a second round trip and transaction).
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) load: Statement,
    clock: Statement,
    generations: Statement,
    tokens: Statement,
    prune: Statement,
}

/// Connects in plain text or over TLS, as the URL's sslmode asked.
fn connect(config: &postgres::Config, tls: Option<&Rustls>) -> Result<Client, postgres::Error> {
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

impl PostgresStore {
    /// Connects to `url` (a libpq connection string or URL; a Unix socket
    /// with `host=/path`), creates or migrates the schema, and names this
    /// replica `replica` in what it writes.
    pub fn connect(url: &str, replica: &str) -> Result<PostgresStore, StoreError> {
        Self::open(url, replica, true)?.ok_or_else(|| StoreError::Database {
            action: "create the schema",
            reason: "the schema is missing after it was created".into(),
        })
    }

    /// Connects to read, creating nothing: a role without CREATE may list
    /// keys. `None` when signet's tables do not exist yet (no keyring was
    /// ever written). A schema older than this signet's is refused, naming
    /// the fix (any write command, or a server, migrates it).
    pub fn connect_read_only(
        url: &str,
        replica: &str,
    ) -> Result<Option<PostgresStore>, StoreError> {
        Self::open(url, replica, false)
    }

    fn open(
        url: &str,
        replica: &str,
        migrating: bool,
    ) -> Result<Option<PostgresStore>, StoreError> {
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
        let mut client =
            connect(&config, tls.as_ref()).map_err(|e| db_err("connect to the database", e))?;
        if migrating {
            migrate(&mut client)?;
        } else {
            let version: Option<i32> = client
                .query_one("SELECT to_regclass('signet_schema') IS NOT NULL", &[])
                .map_err(|e| db_err("read the schema", e))?
                .get::<_, bool>(0)
                .then(|| client.query_one("SELECT max(version) FROM signet_schema", &[]))
                .transpose()
                .map_err(|e| db_err("read the schema", e))?
                .and_then(|row| row.get(0));
            match version {
                None => return Ok(None),
                Some(SCHEMA_VERSION) => {}
                Some(v) => {
                    return Err(StoreError::Database {
                        action: "use the schema",
                        reason: format!(
                            "the database holds schema version {v} and this signet reads {SCHEMA_VERSION}: {}",
                            if v < SCHEMA_VERSION {
                                "start a server or run a write command once to migrate it"
                            } else {
                                "upgrade signet"
                            }
                        ),
                    });
                }
            }
        }
        drop(client);
        let conn =
            Conn::open(&config, tls.as_ref()).map_err(|e| db_err("connect to the database", e))?;
        Ok(Some(PostgresStore {
            config,
            tls,
            conn: Mutex::new(conn),
            describe,
            replica: replica.to_owned(),
        }))
    }

    /// The connection, opened again if the last one broke (a database
    /// restart): replicas catch up without a restart of their own.
    fn conn(&self) -> Result<MutexGuard<'_, Conn>, StoreError> {
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

fn migrate(client: &mut Client) -> Result<(), StoreError> {
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
            // New, or older: the batch above created what was missing
            // (version 2 added signet_tokens).
            None => {
                client.execute(
                    "INSERT INTO signet_schema (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )?;
                Ok(Ok(()))
            }
            Some(v) if v < SCHEMA_VERSION => {
                client.execute(
                    "INSERT INTO signet_schema (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )?;
                Ok(Ok(()))
            }
            Some(SCHEMA_VERSION) => Ok(Ok(())),
            Some(v) => Ok(Err(StoreError::Database {
                action: "use the schema",
                reason: format!(
                    "the database holds schema version {v}, newer than this signet's {SCHEMA_VERSION}: upgrade signet"
                ),
            })),
        }
    })();
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result.map_err(|e| db_err("create the schema", e))?
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

    fn token_recorded(&self, list: TokenList, entry: &TokenEntry) -> Result<bool, StoreError> {
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

    fn tokens(&self, list: TokenList) -> Result<Vec<TokenEntry>, StoreError> {
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

    fn prune_tokens(&self, before: crate::clock::UnixTime) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let statement = conn.prune.clone();
        let dropped = conn
            .client
            .execute(&statement, &[&to_i64(before.0)])
            .map_err(|e| db_err("prune the token lists", e))?;
        Ok(usize::try_from(dropped).unwrap_or(usize::MAX))
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
            .spawn(move || listen(config, tls, describe, on_change));
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

/// LISTENs on a connection of its own, for ever: on a notification, calls
/// `on_change`; on a broken connection, reconnects after a second.
fn listen(
    config: postgres::Config,
    tls: Option<Rustls>,
    describe: String,
    on_change: Box<dyn Fn(&str) + Send + Sync>,
) {
    let mut logged = false;
    loop {
        let attempt = connect(&config, tls.as_ref()).and_then(|mut client| {
            client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            if logged {
                tracing::info!(store = %describe, "listening for keyring changes again");
                logged = false;
            }
            let mut notifications = client.notifications();
            let mut iter = notifications.blocking_iter();
            while let Some(n) = iter.next()? {
                on_change(n.payload());
            }
            Ok(())
        });
        if let Err(e) = attempt
            && !logged
        {
            tracing::warn!(store = %describe, error = %e, "not listening for keyring changes; polling only until the database answers");
            logged = true;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
