//! Opening the configured store, master keys and service for a command.

use std::sync::Arc;

use super::CliError;
use crate::clock::Clock;
use crate::config::Config;
use crate::service::KeyService;
use crate::storage::seal::{MasterKeys, MasterSource};
use crate::storage::{FileStore, KeyStore, PostgresStore};

/// Opens the configured store to read it, creating nothing (no `keys/`, no
/// `master.key`): `None` when it holds no keyring yet.
pub fn open_read_only(
    mut config: Config,
    env: &dyn Fn(&str) -> Option<String>,
    clock: Arc<dyn Clock>,
) -> Result<Option<KeyService>, CliError> {
    // store.state_file is the server's own (it writes it as it serves).
    config.store.state_file = None;
    if let Some(url) = &config.store.database_url {
        // Nothing is created: a read-only role may list keys.
        let master = database_master(env)?;
        let Some(store) =
            PostgresStore::connect_read_only(url, &replica_id()).map_err(database_unavailable)?
        else {
            return Ok(None);
        };
        let store: Arc<dyn KeyStore> = Arc::new(store);
        return Ok(Some(KeyService::open(
            Arc::new(config),
            store,
            master,
            clock,
        )?));
    }
    let Some(store) = FileStore::open_read_only(&config.store.path)? else {
        return Ok(None);
    };
    // With keyrings present, a missing master key is an error, never created.
    let (master, _) = MasterKeys::load(env("SIGNET_MASTER_KEYS").as_deref(), store.dir())?;
    let store: Arc<dyn KeyStore> = Arc::new(store);
    Ok(Some(KeyService::open(
        Arc::new(config),
        store,
        master,
        clock,
    )?))
}

/// Opens the configured store and master keys and builds the service.
pub fn open(
    config: Config,
    env: &dyn Fn(&str) -> Option<String>,
    clock: Arc<dyn Clock>,
) -> Result<KeyService, CliError> {
    open_as(config, env, clock, false)
}

/// [`open`], for `serve` when `server` is true: only a server reads and
/// writes `store.state_file`, its own record of the generations it served.
pub fn open_as(
    mut config: Config,
    env: &dyn Fn(&str) -> Option<String>,
    clock: Arc<dyn Clock>,
    server: bool,
) -> Result<KeyService, CliError> {
    if !server {
        config.store.state_file = None;
    }
    let master_env = env("SIGNET_MASTER_KEYS");
    let (store, master): (Arc<dyn KeyStore>, MasterKeys) = match &config.store.database_url {
        Some(url) => {
            let master = database_master(env)?;
            let store = PostgresStore::connect(url, &replica_id()).map_err(database_unavailable)?;
            (Arc::new(store), master)
        }
        None => {
            let store = FileStore::open(&config.store.path)?;
            let (master, source) = MasterKeys::load(master_env.as_deref(), store.dir())?;
            if let MasterSource::Created(path) = &source {
                tracing::warn!(
                    path = %path.display(),
                    "no SIGNET_MASTER_KEYS: created a development master key; set SIGNET_MASTER_KEYS in production"
                );
            }
            (Arc::new(store), master)
        }
    };
    Ok(KeyService::open(Arc::new(config), store, master, clock)?)
}

/// The master keys for a shared store: from `SIGNET_MASTER_KEYS` only.
/// Replicas share the database, not a directory: no development key.
fn database_master(env: &dyn Fn(&str) -> Option<String>) -> Result<MasterKeys, CliError> {
    let text = env("SIGNET_MASTER_KEYS").ok_or_else(|| {
        CliError::Usage(
            "the postgres store needs SIGNET_MASTER_KEYS (every replica the same list; no development key is created)".into(),
        )
    })?;
    Ok(MasterKeys::parse(&text)?)
}

fn database_unavailable(e: crate::storage::StoreError) -> CliError {
    CliError::Unavailable(format!(
        "{e}: check SIGNET_DATABASE_URL and that the database is up"
    ))
}

/// This process's name in the database's `updated_by`: host and pid.
pub(super) fn replica_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "signet".into());
    format!("{host}/{}", std::process::id())
}
