//! `signet store copy`: moving keyrings between the file store and
//! PostgreSQL, as an installation moves to replicas; `signet store
//! migrate`: the PostgreSQL schema, made by its owner.

use super::stdout::out;
use std::sync::Arc;

use super::{CliError, StoreCommand, replica_id};
use crate::config::Config;
use crate::storage::seal::MasterKeys;
use crate::storage::{FileStore, KeyStore, PostgresStore};

/// `database` (SIGNET_DATABASE_URL) or a keys directory.
fn open_store(
    place: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn KeyStore>, CliError> {
    if place == "database" {
        let url = env("SIGNET_DATABASE_URL").ok_or_else(|| {
            CliError::Usage("`database` means SIGNET_DATABASE_URL, which is not set".into())
        })?;
        let store = PostgresStore::connect(&url, &replica_id())
            .map_err(|e| CliError::Unavailable(e.to_string()))?;
        Ok(Arc::new(store))
    } else {
        Ok(Arc::new(FileStore::open(place)?))
    }
}

/// `signet store migrate [--grant ROLE]`.
fn migrate(grant: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<(), CliError> {
    let url = env("SIGNET_DATABASE_URL").ok_or_else(|| {
        CliError::Usage("store migrate needs SIGNET_DATABASE_URL, as the tables' owner".into())
    })?;
    PostgresStore::migrate(&url, grant)?;
    match grant {
        Some(role) => out!("schema ready; {role} may serve"),
        None => out!("schema ready"),
    }
    Ok(())
}

pub(super) fn run(
    cmd: StoreCommand,
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), CliError> {
    let (from, to, force) = match cmd {
        StoreCommand::Copy { from, to, force } => (from, to, force),
        StoreCommand::Migrate { grant } => return migrate(grant.as_deref(), env),
    };
    if from == to {
        return Err(CliError::Usage(
            "--from and --to name the same store".into(),
        ));
    }
    let master = MasterKeys::parse(&env("SIGNET_MASTER_KEYS").ok_or_else(|| {
        CliError::Usage(
            "store copy needs SIGNET_MASTER_KEYS: it checks each keyring before copying it".into(),
        )
    })?)?;
    let (source, dest) = (open_store(&from, env)?, open_store(&to, env)?);
    let mut copied = Vec::new();
    for purpose in config.purposes.keys() {
        let Some(mut ring) = source.load(purpose)? else {
            continue;
        };
        // Only an authentic keyring is copied; sealed keys stay sealed.
        master.check(&ring)?;
        let txn = dest.lock(&[purpose])?;
        if let Some(existing) = txn.current(purpose)
            && !force
        {
            let so_far = if copied.is_empty() {
                "none".to_owned()
            } else {
                copied.join(", ")
            };
            return Err(CliError::Refused(format!(
                "{} already holds a {purpose} keyring (generation {}): copied so far: {so_far}; pass --force to overwrite it",
                dest.describe(),
                existing.generation,
            )));
        }
        // The destination's next generation, authenticated again (the tag
        // covers it); identity, keys and timestamps as they are.
        ring.generation = txn.next_generation(purpose);
        master.authenticate(&mut ring)?;
        txn.commit(vec![ring])?;
        copied.push(purpose.clone());
    }
    if copied.is_empty() {
        out!("{} holds no keyring: nothing to copy", source.describe());
    } else {
        out!(
            "copied {} from {} to {}",
            copied.join(", "),
            source.describe(),
            dest.describe()
        );
    }
    Ok(())
}
