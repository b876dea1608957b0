//! Changing keyrings: scheduled ticks, manual rotation, revocation and
//! master-key re-encryption, each under the store's lock.

use super::premade::{Premade, keep_creates, random_id};
use super::token_objects::{dropped_objects, holds};
use super::{KeyInfo, KeyService, ServiceError};
use crate::clock::UnixTime;
use crate::keys::{Algorithm, Keyring, Plan, Policy, Refusal, Step};
use crate::storage::StoreError;

impl KeyService {
    /// Applies whatever the lifecycle says is due for every purpose
    /// (bootstrap, successors, destroyed private halves, dropped keys), then
    /// refreshes the snapshot. Safe to call any number of times, from any
    /// number of processes. Every purpose is ticked even if another fails;
    /// the first failure is returned.
    pub fn tick(&self) -> Result<bool, ServiceError> {
        let mut changed = false;
        let mut first_error = None;
        for purpose in self.config.purposes.keys() {
            match self.tick_purpose(purpose) {
                Ok(c) => changed |= c,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.refresh();
        first_error.map_or(Ok(changed), Err)
    }

    /// Whether a tick of `purpose` would change something, judged from the
    /// snapshot (no store access). True when the view is missing or faulted,
    /// so that a store that came back is written to and errors surface.
    pub fn is_due(&self, purpose: &str) -> bool {
        let Ok(policy) = self.policy(purpose) else {
            return false;
        };
        let snap = self.snapshot();
        snap.purposes.get(purpose).is_none_or(|view| {
            view.fault.is_some() || !view.keyring.due(self.now(), &policy).is_empty()
        })
    }

    /// [`tick`](Self::tick) for one purpose, without refreshing the snapshot.
    pub fn tick_purpose(&self, purpose: &str) -> Result<bool, ServiceError> {
        self.change(&[purpose], |_, _, _| Ok(Plan::default()))
    }

    /// Manual rotation of one purpose, or of all when `purpose` is `None`.
    /// Every purpose is checked under the lock, after what is due, before any
    /// is changed: a refusal for one changes none.
    pub fn rotate(&self, purpose: Option<&str>, force: bool) -> Result<Vec<KeyInfo>, ServiceError> {
        let purposes: Vec<&str> = match purpose {
            Some(p) => {
                self.policy(p)?;
                vec![p]
            }
            None => self.config.purposes.keys().map(String::as_str).collect(),
        };
        // The change serves what it committed: no reading it back.
        self.change(&purposes, |ring, now, policy| {
            ring.rotate(now, policy, force)
        })?;
        Ok(self.keys_of(purpose))
    }

    /// Revokes a key of any purpose. Purposes whose keyring cannot be read
    /// are skipped in the search, so one broken keyring does not block the
    /// revocation of a compromised key elsewhere.
    pub fn revoke(&self, kid: &str) -> Result<Vec<KeyInfo>, ServiceError> {
        let mut unreadable = Vec::new();
        let mut found = None;
        // A legacy secret's label: revoked in every purpose that imported it
        // (the same variable, the same secret).
        let mut legacy = Vec::new();
        for purpose in self.config.purposes.keys() {
            match self.store.load(purpose) {
                Ok(ring) if ring.as_ref().is_some_and(|r| r.get(kid).is_some()) => {
                    found = Some(purpose.clone());
                    break;
                }
                Ok(Some(ring)) if ring.legacy.iter().any(|l| l.id == kid) => {
                    legacy.push(purpose.clone());
                }
                Ok(_) => {}
                Err(e) => unreadable.push((purpose.clone(), e)),
            }
        }
        if found.is_none() && !legacy.is_empty() {
            for purpose in &legacy {
                self.change_one(purpose, |ring, now, policy| {
                    ring.revoke_legacy(kid, now, policy)
                })?;
            }
            return Ok(self.keys_of(Some(&legacy[0])));
        }
        let Some(purpose) = found else {
            if unreadable.is_empty() {
                return Err(ServiceError::UnknownKid(kid.to_owned()));
            }
            // An unreachable database is the cause to report, not a keyring
            // to repair.
            if let Some(i) = unreadable
                .iter()
                .position(|(_, e)| matches!(e, StoreError::Database { .. }))
            {
                return Err(ServiceError::Store(unreadable.swap_remove(i).1));
            }
            for (purpose, e) in &unreadable {
                self.errors_of(purpose).inc();
                tracing::error!(purpose, error = %e, "cannot read a keyring while looking for a key to revoke");
            }
            let names: Vec<_> = unreadable.into_iter().map(|(p, _)| p).collect();
            return Err(ServiceError::KidInUnreadableKeyring {
                kid: kid.to_owned(),
                unreadable: names.join(", "),
            });
        };
        let revoke = |ring: &Keyring, now, policy: &Policy| ring.revoke(kid, now, policy);
        match self.change(&[purpose.as_str()], revoke) {
            Ok(_) => {}
            // A revocation must not wait for the token that would make the
            // successor (rule 14): revoke now, without new keys; the next
            // check makes them once the token is back.
            #[cfg(feature = "pkcs11")]
            Err(ServiceError::Token(e)) => {
                tracing::warn!(purpose, kid, error = %e, "revoking without making a successor: the PKCS#11 token cannot make one now");
                self.change_with(&[purpose.as_str()], revoke, false)?;
            }
            Err(e) => return Err(e),
        }
        Ok(self.keys_of(Some(&purpose)))
    }

    /// [`change`](Self::change) of one purpose.
    pub(super) fn change_one(
        &self,
        purpose: &str,
        op: impl Fn(&Keyring, UnixTime, &Policy) -> Result<Plan, Refusal>,
    ) -> Result<bool, ServiceError> {
        self.change(&[purpose], op)
    }

    /// Under the store's lock on `purposes`: for each, applies what is due,
    /// then `op`'s plan; commits them all only if `op` accepted every one.
    /// Returns whether anything was stored. Store failures are counted.
    fn change(
        &self,
        purposes: &[&str],
        op: impl Fn(&Keyring, UnixTime, &Policy) -> Result<Plan, Refusal>,
    ) -> Result<bool, ServiceError> {
        self.change_with(purposes, op, true)
    }

    /// [`change`](Self::change); with `make_keys` false, the plans' `Create`
    /// steps are left out (a later check makes those keys).
    fn change_with(
        &self,
        purposes: &[&str],
        op: impl Fn(&Keyring, UnixTime, &Policy) -> Result<Plan, Refusal>,
        make_keys: bool,
    ) -> Result<bool, ServiceError> {
        let result = self.change_locked(purposes, op, make_keys);
        if let Err(ServiceError::Store(_)) = &result {
            for purpose in purposes {
                self.errors_of(purpose).inc();
            }
        }
        result
    }

    fn change_locked(
        &self,
        purposes: &[&str],
        op: impl Fn(&Keyring, UnixTime, &Policy) -> Result<Plan, Refusal>,
        make_keys: bool,
    ) -> Result<bool, ServiceError> {
        let policies = purposes
            .iter()
            .map(|p| self.policy(p))
            .collect::<Result<Vec<_>, _>>()?;
        let now = self.now();
        // The keys are made before the lock (`premade.rs`).
        let mut premade = if make_keys {
            self.premake(purposes, &policies, &op, now)
        } else {
            Premade::default()
        };
        let result = self.change_under_lock(purposes, policies, &op, now, make_keys, &mut premade);
        self.discard(premade);
        result
    }

    /// The plan, made again under the lock, and its commit; new keys are
    /// taken from `premade` where it has them.
    fn change_under_lock(
        &self,
        purposes: &[&str],
        policies: Vec<Policy>,
        op: &impl Fn(&Keyring, UnixTime, &Policy) -> Result<Plan, Refusal>,
        now: UnixTime,
        make_keys: bool,
        premade: &mut Premade,
    ) -> Result<bool, ServiceError> {
        let keep = |plan: Plan| keep_creates(plan, make_keys);
        let txn = self.store.lock(purposes)?;
        // Keys made in the token by this change: destroyed again if it is
        // refused before its commit (a refused rotation must not leave
        // objects behind). After a failed commit they are kept: the commit
        // may have landed (a connection lost during COMMIT), and a stored
        // key without its object could never sign.
        let mut created = Vec::new();
        let planned = (|| {
            let mut changed = Vec::new();
            let mut log = Vec::new();
            let mut dropped = Vec::new();
            for (&purpose, policy) in purposes.iter().zip(policies) {
                let rsa_bits = self.rsa_bits(purpose);
                let stored = txn.current(purpose);
                if let Some(stored) = stored {
                    self.check_stored(stored)?;
                    // Rule 16: never carry an older copy forward.
                    if let Some(served) = self.high_water.newer_than(stored) {
                        return Err(StoreError::Corrupt {
                            location: self.store.describe(),
                            reason: super::refresh::older_than_served(
                                &self.store.describe(),
                                stored,
                                served,
                            ),
                        }
                        .into());
                    }
                }
                let mut ring = stored.cloned().unwrap_or_else(|| Keyring::new(purpose));
                let mut make = |alg: Algorithm| {
                    let key = match premade.take(purpose, alg) {
                        Some(key) => key,
                        None => self.make_key(purpose, alg, rsa_bits)?,
                    };
                    if let Some(object) = key.private.token() {
                        created.push((purpose.to_owned(), key.jwk.kid.clone(), object.clone()));
                    }
                    Ok::<_, ServiceError>(key)
                };
                let due = keep(ring.due(now, &policy));
                ring.apply(&due, now, &policy, &mut make)?;
                let asked = keep(op(&ring, now, &policy)?);
                ring.apply(&asked, now, &policy, &mut make)?;
                if !(due.is_empty() && asked.is_empty()) {
                    if let Some(stored) = stored {
                        dropped.extend(dropped_objects(stored, &ring));
                    }
                    // Made and retired in this one change (a bootstrap
                    // followed by a forced rotation).
                    dropped.extend(
                        created
                            .iter()
                            .filter(|(p, kid, object)| p == purpose && !holds(&ring, kid, object))
                            .cloned(),
                    );
                    self.prepare_commit(&mut ring, txn.next_generation(purpose))?;
                    log.push((purpose, due.steps.into_iter().chain(asked.steps)));
                    changed.push(ring);
                }
            }
            Ok::<_, ServiceError>((changed, log, dropped))
        })();
        let (changed, log, dropped) = match planned {
            Ok(p) => p,
            Err(e) => {
                for (purpose, kid, object) in &created {
                    self.destroy_object(purpose, kid, object);
                }
                return Err(e);
            }
        };
        if changed.is_empty() {
            return Ok(false);
        }
        let committed = changed.clone();
        let generations = txn.commit(changed)?;
        self.install(committed);
        for ((purpose, steps), generation) in log.into_iter().zip(generations) {
            for step in steps {
                log_step(purpose, &step, generation);
            }
        }
        // The store no longer names these objects: destroy them in the
        // token now (rule 14). One that fails is destroyed by a later sweep.
        for (purpose, kid, object) in dropped {
            self.destroy_object(&purpose, &kid, &object);
        }
        Ok(true)
    }

    /// Refuses to change a stored keyring that fails authentication, or
    /// whose sealed keys this process cannot open: it would carry an altered
    /// document forward, or seal new keys under a master key the others lack.
    pub(super) fn check_stored(&self, ring: &Keyring) -> Result<(), StoreError> {
        self.master.check(ring)?;
        for key in &ring.keys {
            if let Some(sealed) = key.sealed() {
                self.master.open(&ring.purpose, &key.kid, sealed)?;
            }
        }
        for legacy in &ring.legacy {
            if let Some(sealed) = &legacy.secret {
                let id = super::legacy::seal_id(&legacy.id);
                self.master.open_bytes(&ring.purpose, &id, sealed)?;
            }
        }
        Ok(())
    }

    /// Makes `ring` the stored keyring's successor: generation `next`, the
    /// same identity (a new one for a new keyring), authenticated under the
    /// newest master key.
    pub(super) fn prepare_commit(&self, ring: &mut Keyring, next: u64) -> Result<(), ServiceError> {
        ring.generation = next;
        if ring.id.is_empty() {
            ring.id = random_id()?;
        }
        self.master.authenticate(ring)?;
        Ok(())
    }
}

fn log_step(purpose: &str, step: &Step, generation: u64) {
    match step {
        Step::Create { .. } => {}
        Step::Promote { kid, at } => tracing::info!(purpose, kid, %at, generation, "key activated"),
        Step::Retire { kid, at } => tracing::info!(purpose, kid, %at, generation, "key retires"),
        Step::Extend { kid, until } => {
            tracing::info!(purpose, kid, %until, generation, "key stays published longer under the current policy")
        }
        Step::Revoke { kid, .. } => tracing::info!(purpose, kid, generation, "key revoked"),
        Step::DestroyPrivate { kid } => {
            tracing::info!(purpose, kid, generation, "private key destroyed")
        }
        Step::Remove { kid } => {
            tracing::info!(purpose, kid, generation, "key dropped from the keyring")
        }
        Step::ImportLegacy(key) => {
            tracing::info!(purpose, legacy = key.id, expires_at = %key.expires_at, generation, "legacy HMAC secret imported (verify only)")
        }
        Step::RevokeLegacy { id, .. } => {
            tracing::info!(
                purpose,
                legacy = id,
                generation,
                "legacy HMAC secret revoked"
            )
        }
        Step::DropLegacy { id } => {
            tracing::info!(
                purpose,
                legacy = id,
                generation,
                "legacy HMAC secret dropped: its tokens have all expired"
            )
        }
    }
}
