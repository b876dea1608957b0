//! The key service: keyrings from the store, the lifecycle core, the master
//! keys and a clock, behind one value that the CLI, the HTTP API and the
//! scheduler share.
//!
//! Reads never lock: requests load the current [`Snapshot`] from an
//! `ArcSwap`; a change builds a new snapshot and swaps it in whole.

mod snapshot;
mod token;

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;

pub use snapshot::{PurposeKeys, Rendered, Signer, Snapshot, VerifyKey};
pub use token::{RESERVED_CLAIMS, SignError, SignRequest, SignedToken, Verified};

use crate::clock::{Clock, UnixTime};
use crate::config::Config;
use crate::keys::{
    Algorithm, KeyError, Keyring, NewKey, Plan, Policy, Refusal, SigningKey, Step, generate,
};
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
    /// The purpose is not configured.
    #[error("unknown purpose {0:?}: configured purposes are {1}")]
    UnknownPurpose(String, String),
    /// No keyring holds this kid.
    #[error("no key {0:?} in any keyring: `signet keys list` shows the kids")]
    UnknownKid(String),
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
}

/// Keyrings, store, master keys and clock.
#[derive(Debug)]
pub struct KeyService {
    config: Arc<Config>,
    store: Arc<dyn KeyStore>,
    master: MasterKeys,
    clock: Arc<dyn Clock>,
    snapshot: ArcSwap<Snapshot>,
}

impl KeyService {
    /// Loads every configured purpose's keyring and builds the first snapshot.
    /// Writes nothing: call [`tick`](Self::tick) to bootstrap or catch up.
    pub fn open(
        config: Arc<Config>,
        store: Arc<dyn KeyStore>,
        master: MasterKeys,
        clock: Arc<dyn Clock>,
    ) -> Result<KeyService, ServiceError> {
        let keyrings = load_all(&config, store.as_ref())?;
        let snapshot = Snapshot::build(&config, &master, keyrings, clock.now(), None)?;
        Ok(KeyService {
            config,
            store,
            master,
            clock,
            snapshot: ArcSwap::from_pointee(snapshot),
        })
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

    fn policy(&self, purpose: &str) -> Result<Policy, ServiceError> {
        self.config.policy(purpose).ok_or_else(|| {
            ServiceError::UnknownPurpose(
                purpose.to_owned(),
                self.config
                    .purposes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
    }

    /// Applies whatever the lifecycle says is due for every purpose
    /// (bootstrap, successors, destroyed private halves, dropped keys), then
    /// refreshes the snapshot. Safe to call any number of times, from any
    /// number of processes.
    pub fn tick(&self) -> Result<bool, ServiceError> {
        let mut changed = false;
        for purpose in self.config.purposes.keys() {
            changed |= self.tick_purpose(purpose)?;
        }
        self.refresh()?;
        Ok(changed)
    }

    /// [`tick`](Self::tick) for one purpose, without refreshing the snapshot.
    pub fn tick_purpose(&self, purpose: &str) -> Result<bool, ServiceError> {
        self.change(purpose, |_, _, _| Ok(Plan::default()))
    }

    /// Rebuilds the snapshot if the store changed (another process wrote) or
    /// a key changed state since it was built. Returns whether it rebuilt.
    pub fn refresh(&self) -> Result<bool, ServiceError> {
        let now = self.now();
        // Held across IO: a full reference, not a guard.
        let current = self.snapshot.load_full();
        let keyrings = load_all(&self.config, self.store.as_ref())?;
        let same = keyrings.len() == current.purposes.len()
            && keyrings.iter().all(|k| {
                current
                    .purposes
                    .get(&k.purpose)
                    .is_some_and(|p| p.keyring.generation == k.generation)
            });
        if same && current.valid_until.is_none_or(|t| now < t) {
            return Ok(false);
        }
        log_transitions(&keyrings, current.built_at, now);
        let next = Snapshot::build(&self.config, &self.master, keyrings, now, Some(&current))?;
        self.snapshot.store(Arc::new(next));
        Ok(true)
    }

    /// Manual rotation of one purpose, or of all when `purpose` is `None`.
    pub fn rotate(&self, purpose: Option<&str>, force: bool) -> Result<Vec<KeyInfo>, ServiceError> {
        let purposes: Vec<String> = match purpose {
            Some(p) => {
                self.policy(p)?;
                vec![p.to_owned()]
            }
            None => self.config.purposes.keys().cloned().collect(),
        };
        if !force {
            // Refuse before changing anything, rather than after rotating some purposes.
            let now = self.now();
            for p in &purposes {
                if let Some(ring) = self.store.load(p)? {
                    ring.rotate(now, &self.policy(p)?, false)?;
                }
            }
        }
        for p in &purposes {
            self.change(p, |ring, now, policy| ring.rotate(now, policy, force))?;
        }
        self.refresh()?;
        Ok(self.keys_of(purpose))
    }

    /// Revokes a key of any purpose.
    pub fn revoke(&self, kid: &str) -> Result<Vec<KeyInfo>, ServiceError> {
        let mut found = None;
        for purpose in self.config.purposes.keys() {
            if self
                .store
                .load(purpose)?
                .is_some_and(|r| r.get(kid).is_some())
            {
                found = Some(purpose.clone());
            }
        }
        let purpose = found.ok_or_else(|| ServiceError::UnknownKid(kid.to_owned()))?;
        self.change(&purpose, |ring, now, policy| ring.revoke(kid, now, policy))?;
        self.refresh()?;
        Ok(self.keys_of(Some(&purpose)))
    }

    /// Re-seals every private key under the newest master key. Returns how
    /// many keys were re-encrypted.
    pub fn reencrypt(&self) -> Result<usize, ServiceError> {
        let mut count = 0;
        for purpose in self.config.purposes.keys() {
            let txn = self.store.lock(purpose)?;
            let Some(mut ring) = txn.current().cloned() else {
                continue;
            };
            let mut changed = 0;
            for key in &mut ring.keys {
                if let Some(sealed) = key
                    .private
                    .as_ref()
                    .filter(|s| s.master != self.master.current_id())
                {
                    let pkcs8 = self.master.open(purpose, &key.kid, sealed)?;
                    key.private = Some(self.master.seal(purpose, &key.kid, &pkcs8)?);
                    changed += 1;
                }
            }
            if changed > 0 {
                txn.commit(ring)?;
                count += changed;
            }
        }
        self.refresh()?;
        Ok(count)
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
            })
            .collect()
    }

    /// Under the purpose's store lock: applies what is due, then `op`'s plan,
    /// and commits once. Returns whether anything was stored.
    fn change(
        &self,
        purpose: &str,
        op: impl FnOnce(&Keyring, UnixTime, &Policy) -> Result<Plan, Refusal>,
    ) -> Result<bool, ServiceError> {
        let policy = self.policy(purpose)?;
        let rsa_bits = self
            .config
            .purposes
            .get(purpose)
            .map_or(2048, |p| p.rsa_bits);
        let now = self.now();
        let txn = self.store.lock(purpose)?;
        let mut ring = txn
            .current()
            .cloned()
            .unwrap_or_else(|| Keyring::new(purpose));
        let mut make = |alg: Algorithm| self.make_key(purpose, alg, rsa_bits);
        let due = ring.due(now, &policy);
        ring.apply(&due, now, &policy, &mut make)?;
        let asked = op(&ring, now, &policy)?;
        ring.apply(&asked, now, &policy, &mut make)?;
        if due.is_empty() && asked.is_empty() {
            return Ok(false);
        }
        let generation = txn.commit(ring)?;
        for step in due.steps.iter().chain(&asked.steps) {
            log_step(purpose, step, generation);
        }
        Ok(true)
    }

    fn make_key(
        &self,
        purpose: &str,
        alg: Algorithm,
        rsa_bits: u32,
    ) -> Result<NewKey, ServiceError> {
        let pkcs8 = generate(alg, rsa_bits)?;
        let key = SigningKey::from_pkcs8(alg, &pkcs8)?;
        let sealed = self.master.seal(purpose, key.kid(), &pkcs8)?;
        tracing::info!(purpose, kid = key.kid(), %alg, "key created");
        Ok(NewKey {
            jwk: key.public_jwk().clone(),
            sealed,
        })
    }
}

fn log_step(purpose: &str, step: &Step, generation: u64) {
    match step {
        Step::Create { .. } => {}
        Step::Promote { kid, at } => tracing::info!(purpose, kid, %at, generation, "key activated"),
        Step::Retire { kid, at } => tracing::info!(purpose, kid, %at, generation, "key retires"),
        Step::Revoke { kid, .. } => tracing::info!(purpose, kid, generation, "key revoked"),
        Step::DestroyPrivate { kid } => {
            tracing::info!(purpose, kid, generation, "private key destroyed")
        }
        Step::Remove { kid } => {
            tracing::info!(purpose, kid, generation, "key dropped from the keyring")
        }
    }
}

/// Logs the scheduled transitions (no store write marks them) that fell in `(since, now]`.
fn log_transitions(keyrings: &[Keyring], since: UnixTime, now: UnixTime) {
    let passed = |t: Option<UnixTime>| t.is_some_and(|t| since < t && t <= now);
    for ring in keyrings {
        let purpose = ring.purpose.as_str();
        for k in &ring.keys {
            let kid = k.kid.as_str();
            if passed(Some(k.activates_at)) && k.published_at < k.activates_at {
                tracing::info!(purpose, kid, "key activated");
            }
            if passed(k.retires_at) {
                tracing::info!(purpose, kid, "key retired");
            }
            if passed(k.expires_at) {
                tracing::info!(purpose, kid, "key expired");
            }
        }
    }
}

fn load_all(config: &Config, store: &dyn KeyStore) -> Result<Vec<Keyring>, StoreError> {
    let mut out = Vec::new();
    for purpose in config.purposes.keys() {
        out.push(
            store
                .load(purpose)?
                .unwrap_or_else(|| Keyring::new(purpose)),
        );
    }
    Ok(out)
}
