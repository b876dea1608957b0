//! The key service: keyrings from the store, the lifecycle core, the master
//! keys and a clock, behind one value that the CLI, the HTTP API and the
//! scheduler share.
//!
//! Reads never lock: requests load the current [`Snapshot`] from an
//! `ArcSwap`; a change builds new per-purpose views and swaps in a snapshot
//! holding them (see [`refresh`](KeyService::refresh) for why a stale view
//! never wins: `docs/lifecycle.md` rule 11). Each purpose is loaded, built
//! and changed on its own: one purpose's broken keyring leaves the others
//! working (rule 10).

mod change;
mod high_water;
mod legacy;
mod master;
mod premade;
mod refresh;
mod revoked_list;
mod signer;
mod snapshot;
mod token;
mod token_objects;
mod tokens;

use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

pub use legacy::{LegacyInfo, LegacySecret};
pub use refresh::{Problem, ProblemKind};
pub use signer::{KeySigner, SignFailure, TokenRef};
pub use snapshot::{PurposeKeys, Rendered, Signer, Snapshot, StoreFault, VerifyKey};
pub use token::{RESERVED_CLAIMS, SignError, SignRequest, SignedToken, Verified};
pub use tokens::TokenError;

use crate::clock::{Clock, UnixTime};
use crate::config::{Config, UnknownPurpose};
use crate::keys::{Algorithm, KeyError, Policy, Refusal};
use crate::storage::seal::MasterKeys;
use crate::storage::{KeyStore, StoreError};

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The store failed or holds something unreadable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The lifecycle rules refuse the operation.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Key generation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The PKCS#11 token failed or refused.
    #[cfg(feature = "pkcs11")]
    #[error(transparent)]
    Token(#[from] crate::pkcs11::TokenError),
    /// A legacy secret's window would end before tokens it signed expire.
    #[error(
        "a window of {window}s is shorter than {purpose}'s token_ttl plus leeway ({minimum}s): tokens signed with the secret could outlive it; give at least that, or leave the window out"
    )]
    LegacyWindow {
        /// The purpose.
        purpose: String,
        /// The window asked for, in seconds.
        window: u64,
        /// token_ttl + leeway, in seconds.
        minimum: u64,
    },
    /// The purpose is not configured.
    #[error(transparent)]
    UnknownPurpose(#[from] UnknownPurpose),
    /// No keyring holds this kid.
    #[error("no such key: {0:?} is in no keyring; `signet keys list` shows the kids")]
    UnknownKid(String),
    /// No readable keyring holds this kid, and some keyrings cannot be read.
    #[error(
        "no key {kid:?} in the keyrings that can be read; the keyring of {unreadable} cannot be read, so it may be there: repair it (`signet keys list` says what is wrong) and retry"
    )]
    KidInUnreadableKeyring {
        /// The kid asked for.
        kid: String,
        /// The purposes whose keyring failed to load, comma-separated.
        unreadable: String,
    },
}

/// A key's metadata, as `keys list --json` and `GET /v1/keys` show it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// Purpose.
    pub purpose: String,
    /// Algorithm.
    pub alg: Algorithm,
    /// State now.
    pub state: crate::keys::KeyState,
    /// When it was created and published.
    pub created_at: String,
    /// When it signs (signed) from.
    pub activates_at: String,
    /// When it stops (stopped) signing.
    pub retires_at: Option<String>,
    /// When it leaves the JWKS.
    pub expires_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// Where its private half is: `store`, `token <label>`, or none once
    /// destroyed.
    pub private: Option<String>,
}

/// Store error counts by purpose, as `signet_store_errors_total{purpose}`.
pub type StoreErrors = Family<Vec<(&'static str, String)>, Counter>;

/// Token-list entries the store holds, or held, that signet does not take
/// as they are, by purpose and reason (`unauthenticated`: written without
/// the master key, ignored; `deleted`: gone before their tokens expired,
/// still refused), as `signet_token_entries_ignored{purpose,reason}`.
pub type IgnoredEntries = Family<Vec<(&'static str, String)>, Gauge>;

/// Keyrings, store, master keys and clock.
#[derive(Debug)]
pub struct KeyService {
    config: Arc<Config>,
    store: Arc<dyn KeyStore>,
    master: MasterKeys,
    /// The PKCS#11 token of `[signer]`, if configured.
    token: Option<TokenRef>,
    clock: Arc<dyn Clock>,
    snapshot: ArcSwap<Snapshot>,
    store_errors: StoreErrors,
    /// Seconds the shared store's clock is ahead of this process's, as of
    /// the last refresh (`i64::MIN`: unknown or not a shared store).
    clock_offset: std::sync::atomic::AtomicI64,
    /// Numbers each read of the revoked-token list (see `Snapshot::revoked_read`).
    token_reads: std::sync::atomic::AtomicU64,
    /// When token ids were last pruned (seconds; 0: never).
    last_prune: std::sync::atomic::AtomicU64,
    /// The newest generation of each keyring served (rule 16).
    high_water: high_water::HighWater,
    /// Token-list entries not taken as they are.
    ignored_entries: IgnoredEntries,
    /// The store's version of the revoked-token list as last listed
    /// (`None`: the store has none, or not listed yet).
    revoked_version: std::sync::Mutex<Option<String>>,
}

impl KeyService {
    /// Loads every configured purpose's keyring and builds the first snapshot.
    /// A purpose whose keyring cannot be loaded starts empty and faulted (see
    /// [`problems`](Self::problems)); the others are served. Writes nothing:
    /// call [`tick`](Self::tick) to bootstrap or catch up.
    pub fn open(
        config: Arc<Config>,
        store: Arc<dyn KeyStore>,
        master: MasterKeys,
        clock: Arc<dyn Clock>,
    ) -> Result<KeyService, ServiceError> {
        let token = open_token(&config)?;
        let high_water = high_water::HighWater::open(config.store.state_file.as_deref(), &master)?;
        let service = KeyService {
            high_water,
            revoked_version: std::sync::Mutex::new(None),
            ignored_entries: IgnoredEntries::default(),
            config,
            store,
            master,
            token,
            clock,
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            store_errors: StoreErrors::default(),
            clock_offset: std::sync::atomic::AtomicI64::new(i64::MIN),
            token_reads: std::sync::atomic::AtomicU64::new(0),
            last_prune: std::sync::atomic::AtomicU64::new(0),
        };
        for purpose in service.config.purposes.keys() {
            // Every purpose's counter exists from the start, at zero.
            service.errors_of(purpose);
        }
        service.refresh();
        Ok(service)
    }

    /// The PKCS#11 token of `[signer]`, if one is configured.
    pub fn token(&self) -> Option<&TokenRef> {
        self.token.as_ref()
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current instant, from the injected clock.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The current snapshot. The guard is cheap (no reference count on the
    /// fast path); hold it only for the duration of a request.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// Where the keyrings are, for messages: never a password.
    pub fn describe_store(&self) -> String {
        self.store.describe()
    }

    /// Calls `on_change` whenever another process changes a keyring, if the
    /// store can tell (PostgreSQL's NOTIFY); a hint to refresh at once.
    pub fn watch(&self, on_change: Box<dyn Fn(&str) + Send + Sync>) {
        self.store.watch(on_change);
    }

    /// Store failures by purpose, for the metrics registry.
    pub fn store_errors(&self) -> &StoreErrors {
        &self.store_errors
    }

    /// Token-list entries not taken as they are, for the metrics registry.
    pub fn ignored_entries(&self) -> &IgnoredEntries {
        &self.ignored_entries
    }

    fn errors_of(&self, purpose: &str) -> Counter {
        self.store_errors
            .get_or_create(&vec![("purpose", purpose.to_owned())])
            .clone()
    }

    fn policy(&self, purpose: &str) -> Result<Policy, ServiceError> {
        Ok(self.config.policy(purpose)?)
    }

    /// Metadata of every key (of one purpose, if given), as of now.
    pub fn keys_of(&self, purpose: Option<&str>) -> Vec<KeyInfo> {
        let now = self.now();
        let snap = self.snapshot();
        let t = |t: UnixTime| t.to_string();
        snap.purposes
            .values()
            .filter(|p| purpose.is_none_or(|want| p.keyring.purpose == want))
            .flat_map(|p| p.keyring.keys.iter().map(move |k| (p, k)))
            .map(|(p, k)| KeyInfo {
                kid: k.kid.clone(),
                purpose: p.keyring.purpose.clone(),
                alg: k.alg,
                state: k.state_at(now),
                created_at: t(k.published_at),
                activates_at: t(k.activates_at),
                retires_at: k.retires_at.map(t),
                expires_at: k.expires_at.map(t),
                revoked_at: k.revoked_at.map(t),
                private: k.private.as_ref().map(crate::keys::PrivateHalf::location),
            })
            .collect()
    }
}

/// Loads the PKCS#11 module of `[signer]`, if configured. Finds and logs in
/// to the token lazily: one absent at start is looked for at each use.
#[cfg(feature = "pkcs11")]
fn open_token(config: &Config) -> Result<Option<TokenRef>, ServiceError> {
    match &config.signer.pkcs11 {
        Some(p) => Ok(Some(Arc::new(crate::pkcs11::Token::open(p)?))),
        None => Ok(None),
    }
}

#[cfg(not(feature = "pkcs11"))]
fn open_token(_: &Config) -> Result<Option<TokenRef>, ServiceError> {
    Ok(None)
}
