//! Where keyrings live: the [`KeyStore`] trait, chosen once in `main`, and
//! its implementations. Also the master keys that seal private keys at rest.
//!
//! A store only moves keyrings; private keys arrive already sealed
//! ([`seal`]), so no store ever sees plaintext key material.

pub(crate) mod document;
pub(crate) mod durable;
mod file;
mod postgres;
pub mod seal;
pub(crate) mod small_file;
mod token_list;

use std::fmt;
use std::path::PathBuf;

pub use file::{CrashPoint, FileStore};
pub use postgres::PostgresStore;
pub use token_list::{TokenEntry, TokenList, valid_jti};

use crate::keys::{Keyring, thumbprint};

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What signet was doing.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A keyring is unreadable or fails its integrity checks. Nothing was overwritten.
    #[error(
        "{location} {reason}: signet left it untouched; restore it from a backup, or move it aside to start a new keyring for this purpose"
    )]
    Corrupt {
        /// Where the keyring was read from (the file store: its path).
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A private key cannot be decrypted with the configured master keys.
    #[error("cannot decrypt key {kid} of {purpose}: {reason}")]
    Decrypt {
        /// The key's purpose.
        purpose: String,
        /// The key.
        kid: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A keyring's authentication is missing or does not verify. Nothing was overwritten.
    #[error(
        "the {purpose} keyring fails authentication: {reason}. signet left it untouched; restore it from a backup"
    )]
    Unauthenticated {
        /// The keyring's purpose.
        purpose: String,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// The database failed or refused.
    #[error("database: cannot {action}: {reason}")]
    Database {
        /// What signet was doing.
        action: &'static str,
        /// The cause.
        reason: String,
    },
    /// The master key configuration is unusable.
    #[error("master key: {0}")]
    MasterKey(String),
}

/// Storage of keyrings, one per purpose.
///
/// Readers call [`load`](KeyStore::load). Writers call [`lock`](KeyStore::lock)
/// with every purpose they will change, which serialises them across
/// processes (the file store: one lock file; PostgreSQL: an advisory lock
/// per purpose),
/// reads those keyrings under the lock, and [`commit`](KeyringTxn::commit)s
/// the new ones, each atomically. Checks made between the two hold for what is
/// committed. Dropping the transaction without committing changes nothing.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// Where the keyrings are, for messages (`file store at keys/`).
    fn describe(&self) -> String;

    /// The current keyring of a purpose, or `None` if it was never written.
    fn load(&self, purpose: &str) -> Result<Option<Keyring>, StoreError>;

    /// Takes the write lock of `purposes` and reads their keyrings under it.
    fn lock(&self, purposes: &[&str]) -> Result<Box<dyn KeyringTxn + '_>, StoreError>;

    /// The generation of every stored keyring (a purpose never written is
    /// absent), if this store can list them more cheaply than loading each:
    /// a poll then loads only the keyrings whose generation moved. `None`:
    /// load every keyring on each poll (the file store, whose reads are local
    /// and which also notices a keyring file replaced by hand).
    fn generations(&self) -> Result<Option<Vec<(String, u64)>>, StoreError> {
        Ok(None)
    }

    /// Starts calling `on_change` with a purpose whenever another process
    /// commits a change to it, if this store can tell (a hint that cuts
    /// latency; polling stays the truth). Returns at once. Stores that cannot
    /// tell do nothing.
    fn watch(&self, on_change: Box<dyn Fn(&str) + Send + Sync>) {
        let _ = on_change;
    }

    /// Records a token id in `list`, atomically and durably, shared by every
    /// process on the store: `Ok(false)` if it was already recorded (of two
    /// concurrent records of one entry, exactly one gets `true`).
    fn record_token(&self, list: TokenList, entry: &TokenEntry) -> Result<bool, StoreError>;

    /// Whether the entry is recorded in `list`.
    fn token_recorded(&self, list: TokenList, entry: &TokenEntry) -> Result<bool, StoreError>;

    /// A value that changes whenever `list` does, if this store can tell
    /// more cheaply than listing it: a poll then lists it only when it
    /// moved. `None`: list it on each poll (the file store's are local).
    fn tokens_version(&self, list: TokenList) -> Result<Option<String>, StoreError> {
        let _ = list;
        Ok(None)
    }

    /// Every entry of `list`.
    fn tokens(&self, list: TokenList) -> Result<Vec<TokenEntry>, StoreError>;

    /// Drops every entry (of both lists) whose `exp` is before `before`;
    /// returns how many.
    fn prune_tokens(&self, before: crate::clock::UnixTime) -> Result<usize, StoreError>;

    /// Seconds by which the store's clock is ahead of `now` (this process's),
    /// for a store shared by hosts; `None` for one host's store.
    fn clock_offset(&self, now: crate::clock::UnixTime) -> Result<Option<i64>, StoreError> {
        let _ = now;
        Ok(None)
    }
}

/// A write in progress on some purposes' keyrings, holding their lock.
pub trait KeyringTxn {
    /// A locked purpose's keyring as of the lock (`None`: never written, or not locked).
    fn current(&self, purpose: &str) -> Option<&Keyring>;

    /// The generation a locked purpose's next keyring must carry: one above
    /// the current one. A store with a history continues it when a purpose
    /// starts again (its keyring removed), so generations never repeat.
    fn next_generation(&self, purpose: &str) -> u64 {
        self.current(purpose).map_or(0, |k| k.generation) + 1
    }

    /// Stores each keyring (of a locked purpose) atomically, then releases
    /// the lock. Each keyring's generation must be one above the one read
    /// under the lock (a compare-and-swap). Returns the stored generations.
    fn commit(self: Box<Self>, keyrings: Vec<Keyring>) -> Result<Vec<u64>, StoreError>;
}

/// The compare-and-swap check of both stores' commits: a keyring written
/// under a lock must carry `expected`, the generation after the one read
/// under that lock (its authentication covers the generation).
pub(crate) fn check_successor(
    keyring: &Keyring,
    expected: u64,
    location: &str,
) -> Result<(), StoreError> {
    if keyring.generation == expected {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        location: location.to_owned(),
        reason: format!(
            "would be written at generation {} instead of {expected} (a bug in signet)",
            keyring.generation
        ),
    })
}

/// Integrity checks every store runs on a keyring it reads: it belongs to the
/// purpose, and every kid is the thumbprint of its public key.
pub(crate) fn check_keyring(ring: &Keyring, purpose: &str) -> Result<(), String> {
    if ring.purpose != purpose {
        return Err(format!(
            "holds the keyring of {:?}, not {purpose:?}",
            ring.purpose
        ));
    }
    for key in &ring.keys {
        if thumbprint(&key.jwk).as_deref() != Some(key.kid.as_str()) || key.jwk.kid != key.kid {
            return Err(format!(
                "has key {} whose public key does not match its kid (altered by hand?)",
                key.kid
            ));
        }
        if key.jwk.alg != key.alg.as_str() {
            return Err(format!(
                "has key {} whose JWK alg differs from its alg",
                key.kid
            ));
        }
    }
    Ok(())
}
