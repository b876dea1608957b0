//! Connections to PostgreSQL: where to connect (parsed from the URL once),
//! and one connection per role, opened on first use and again, with
//! backoff, after it broke (a database restart, a failover, a cut network).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use postgres::{Client, NoTls, Statement};
use tokio::time::Instant;

use super::tls::{self, Mode, Rustls};
use crate::storage::StoreError;

/// The channel replicas LISTEN on; the payload is the purpose.
pub(super) const CHANNEL: &str = "signet_keyrings";

/// How long a connection attempt may take when the URL sets no
/// `connect_timeout`: an unreachable host fails, it does not hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait after a failed connection attempt; it doubles up to
/// [`MAX_BACKOFF`]. Meanwhile callers are answered at once.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A database error, with its causes (the client's own message is terse:
/// "error performing TLS handshake").
pub(super) fn db_err(action: &'static str, e: postgres::Error) -> StoreError {
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    StoreError::Database { action, reason }
}

/// Where and how to connect.
#[derive(Clone)]
pub(super) struct Target {
    config: postgres::Config,
    tls: Option<Rustls>,
    /// host, port, database and TLS mode, for messages: never the password.
    pub(super) describe: String,
}

impl Target {
    /// Parses `url` (a libpq connection string or URL), naming `replica` in
    /// `pg_stat_activity` unless the URL names the application.
    pub(super) fn parse(url: &str, replica: &str) -> Result<Target, StoreError> {
        let (url, mode) = tls::split(url)?;
        let tls = match mode {
            Mode::Plain => None,
            _ => Some(Rustls(Arc::new(tls::client_config(&mode)?))),
        };
        let mut config: postgres::Config =
            url.parse()
                .map_err(|e: postgres::Error| StoreError::Database {
                    action: "parse SIGNET_DATABASE_URL",
                    reason: e.to_string(),
                })?;
        if config.get_application_name().is_none() {
            config.application_name(&format!("signet {replica}"));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
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
        Ok(Target {
            config,
            tls,
            describe,
        })
    }

    /// A new connection, in plain text or over TLS as the URL's sslmode asked.
    pub(super) fn connect(&self) -> Result<Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        }
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

/// A connection with the statements its callers run, prepared once (an
/// unprepared query costs the server a second round trip).
pub(super) struct Conn {
    pub(super) client: Client,
    /// A keyring row, and the newest generation its history has seen.
    pub(super) load: Statement,
    pub(super) clock: Statement,
    pub(super) generations: Statement,
    pub(super) tokens: Statement,
    pub(super) tokens_version: Statement,
    pub(super) record: Statement,
    pub(super) recorded: Statement,
}

impl Conn {
    fn open(target: &Target) -> Result<Conn, postgres::Error> {
        let mut client = target.connect()?;
        let load = client.prepare(
            "SELECT k.generation, k.document, (SELECT max(h.generation) FROM signet_keyring_history h WHERE h.purpose = k.purpose) FROM signet_keyrings k WHERE k.purpose = $1",
        )?;
        let clock =
            client.prepare("SELECT floor(extract(epoch FROM clock_timestamp()))::bigint")?;
        let generations = client.prepare("SELECT purpose, generation FROM signet_keyrings")?;
        let tokens = client.prepare(
            "SELECT purpose, jti, exp, tag FROM signet_tokens WHERE list = $1 ORDER BY purpose, jti",
        )?;
        let tokens_version = client.prepare(
            "SELECT count(*)::text || ':' || coalesce(max(seq), 0)::text FROM signet_tokens WHERE list = $1",
        )?;
        let record = client.prepare(
            "INSERT INTO signet_tokens (list, purpose, jti, exp, tag) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )?;
        let recorded = client
            .prepare("SELECT 1 FROM signet_tokens WHERE list = $1 AND purpose = $2 AND jti = $3")?;
        Ok(Conn {
            client,
            load,
            clock,
            generations,
            tokens,
            tokens_version,
            record,
            recorded,
        })
    }
}

/// The connection of one role; `opened`: whether one was ever opened.
struct Held {
    conn: Option<Conn>,
    opened: bool,
}

/// When the next connection attempt may be made, and the wait after it:
/// shared by a store's roles, so the first to reach the database again
/// lets the others through at once.
pub(super) type Backoff = Arc<Mutex<Option<(Instant, Duration)>>>;

/// One role's connection. A role's statements run one at a time, and no
/// role waits behind another's: a keyring change holding the writer's
/// connection across its lock wait and key generation leaves the readers'
/// and the token lists' connections free.
pub(super) struct Slot {
    /// What the connection is for, in messages ("writer", "reader", ...).
    role: &'static str,
    target: Arc<Target>,
    held: Mutex<Held>,
    backoff: Backoff,
}

/// A role's connection, held until dropped.
pub(super) struct ConnGuard<'a>(MutexGuard<'a, Held>);

impl std::ops::Deref for ConnGuard<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        // `Slot::get` hands out a guard only with a connection in it.
        self.0.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for ConnGuard<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.0.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Slot {
    /// A slot with no connection yet: the first use opens it.
    pub(super) fn new(role: &'static str, target: Arc<Target>, backoff: Backoff) -> Slot {
        Slot {
            role,
            target,
            held: Mutex::new(Held {
                conn: None,
                opened: false,
            }),
            backoff,
        }
    }

    /// The role's connection, opened if there is none or the last one
    /// broke. After a failed attempt the next waits a backoff (250 ms,
    /// doubling to 5 s); meanwhile callers get the error at once instead of
    /// each waiting for a connection timeout.
    pub(super) fn get(&self) -> Result<ConnGuard<'_>, StoreError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.conn.as_ref().is_some_and(|c| !c.client.is_closed()) {
            return Ok(ConnGuard(held));
        }
        let reconnect = held.opened;
        let retry = *self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, _)) = retry
            && Instant::now() < at
        {
            return Err(StoreError::Database {
                action: "connect to the database",
                reason: format!(
                    "{} is unreachable; retrying in {} ms",
                    self.target.describe,
                    at.saturating_duration_since(Instant::now()).as_millis()
                ),
            });
        }
        // The broken connection is dropped on a thread of its own.
        drop_off_runtime(held.conn.take());
        match Conn::open(&self.target) {
            Ok(conn) => {
                if reconnect {
                    tracing::info!(store = %self.target.describe, role = self.role, "reconnected to the database");
                }
                held.conn = Some(conn);
                held.opened = true;
                *self.backoff.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(ConnGuard(held))
            }
            Err(e) => {
                let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
                let wait = backoff.map_or(FIRST_BACKOFF, |(_, w)| (w * 2).min(MAX_BACKOFF));
                *backoff = Some((Instant::now() + wait, wait));
                Err(db_err(
                    if reconnect {
                        "reconnect to the database"
                    } else {
                        "connect to the database"
                    },
                    e,
                ))
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let held = self.held.get_mut().unwrap_or_else(|e| e.into_inner());
        drop_off_runtime(held.conn.take());
    }
}

/// Drops a connection where that is allowed. The blocking client closes
/// its connection by running its own runtime, which panics on a thread
/// that drives an async runtime ("Cannot start a runtime from within a
/// runtime"): a store dropped by the last task holding it at shutdown.
/// There the connection is closed on a plain thread, waited for.
pub(super) fn drop_off_runtime<T: Send + 'static>(value: Option<T>) {
    let Some(value) = value else { return };
    if tokio::runtime::Handle::try_current().is_err() {
        drop(value);
        return;
    }
    // Held outside the closure too, so a thread that cannot be started
    // leaves the value here to leak rather than to drop.
    let cell = Arc::new(Mutex::new(Some(value)));
    let moved = cell.clone();
    let spawned = std::thread::Builder::new()
        .name("signet-pg-close".into())
        .spawn(move || drop(moved.lock().unwrap_or_else(|e| e.into_inner()).take()));
    match spawned {
        Ok(thread) => {
            let _ = thread.join();
        }
        // No thread to close it on: leak it (the server closes the
        // connection when this process exits) rather than panic.
        Err(e) => {
            tracing::warn!(error = %e, "cannot close a database connection cleanly");
            std::mem::forget(cell.lock().unwrap_or_else(|e| e.into_inner()).take());
        }
    }
}
