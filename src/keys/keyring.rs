//! A purpose's keyring and the pure lifecycle transitions over it.
//! "Rule N" refers to the numbered rules in `docs/lifecycle.md`.
//!
//! Nothing here reads the clock or touches storage: [`Keyring::due`] answers
//! "what must happen at `now`?" as a [`Plan`], [`Keyring::rotate`] and
//! [`Keyring::revoke`] answer an operator, and [`Keyring::apply`] carries a
//! plan out given a way to make new keys. Applying a plan and asking again
//! at the same instant yields an empty plan, so a tick that fires twice, or on
//! two replicas, changes nothing the second time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Algorithm;
use super::legacy::LegacyKey;
use super::plan::{NewKey, Plan, Refusal, Step};
use super::policy::{MAX_RETIRING, Policy};
use super::record::{KeyRecord, KeyState, KeyringMac};
use crate::clock::UnixTime;

/// All keys of one purpose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyring {
    /// The purpose these keys sign for.
    pub purpose: String,
    /// Incremented by every stored change; replicas compare it to notice changes.
    pub generation: u64,
    /// A random identity given when the keyring is first stored: a keyring
    /// moved aside and started again is another keyring, even at the same
    /// generation. Empty until stored.
    #[serde(default)]
    pub id: String,
    /// Every key not yet dropped, oldest first.
    pub keys: Vec<KeyRecord>,
    /// Imported legacy HMAC secrets, verify only, in the order they are
    /// tried (rule 15). Absent from documents that have none, so the
    /// authentication of keyrings written before them is unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legacy: Vec<LegacyKey>,
    /// The authentication of everything above, one tag per master key of the
    /// writer; set by whoever stores it. Empty: not authenticated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mac: Vec<KeyringMac>,
}

impl Keyring {
    /// An empty keyring for `purpose`.
    pub fn new(purpose: &str) -> Keyring {
        Keyring {
            purpose: purpose.to_owned(),
            generation: 0,
            id: String::new(),
            keys: Vec::new(),
            legacy: Vec::new(),
            mac: Vec::new(),
        }
    }

    /// The key with this kid.
    pub fn get(&self, kid: &str) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    fn keys_in(&self, alg: Algorithm, state: KeyState, now: UnixTime) -> Vec<&KeyRecord> {
        let mut keys: Vec<_> = self
            .keys
            .iter()
            .filter(|k| k.alg == alg && k.state_at(now) == state)
            .collect();
        keys.sort_by_key(|k| k.activates_at);
        keys
    }

    /// What must happen at `now` for the keyring to satisfy the lifecycle
    /// rules under `policy`: bootstrap, successors, retirements, extended
    /// publication, destroyed private halves and dropped keys. Empty when
    /// nothing is due, and empty again once the plan is applied (rule 8).
    pub fn due(&self, now: UnixTime, policy: &Policy) -> Plan {
        let mut steps = Vec::new();
        for &alg in &policy.algorithms {
            self.due_for(alg, now, policy, &mut steps);
        }
        for key in &self.keys {
            if policy.algorithms.contains(&key.alg) {
                continue;
            }
            // The algorithm was dropped from the configuration: stop signing,
            // stay published until its tokens are gone.
            match key.state_at(now) {
                KeyState::Active => steps.push(Step::Retire {
                    kid: key.kid.clone(),
                    at: now,
                }),
                KeyState::Pending => steps.push(Step::Remove {
                    kid: key.kid.clone(),
                }),
                _ => {}
            }
        }
        // Housekeeping looks at the keyring as the steps above leave it, so a
        // key they retire loses its private half in the same plan.
        let mut after = self.clone();
        for step in &steps {
            after.edit(step, policy);
        }
        after.housekeeping(now, policy, &mut steps);
        Plan { steps }
    }

    /// Drops keys no longer published, destroys private halves that can no
    /// longer sign, and keeps each retiring key published for the retention
    /// of the policy in force: a raised `token_ttl`, `leeway`, `max_age` or
    /// `poll_interval` extends it; a lowered one never shortens it (rule 3).
    fn housekeeping(&self, now: UnixTime, policy: &Policy, steps: &mut Vec<Step>) {
        // Rule 15: a legacy secret goes once its tokens have all expired.
        for legacy in self.legacy.iter().filter(|l| now >= l.expires_at) {
            steps.push(Step::DropLegacy {
                id: legacy.id.clone(),
            });
        }
        for key in &self.keys {
            let kid = || key.kid.clone();
            let state = key.state_at(now);
            let gone = match state {
                KeyState::Expired => true,
                KeyState::Revoked => key
                    .revoked_at
                    .is_some_and(|r| r.plus(policy.retention()) <= now),
                _ => false,
            };
            if gone {
                steps.push(Step::Remove { kid: kid() });
                continue;
            }
            if key.private.is_some() && matches!(state, KeyState::Retiring | KeyState::Revoked) {
                steps.push(Step::DestroyPrivate { kid: kid() });
            }
            if state != KeyState::Revoked
                && let Some(retires) = key.retires_at
            {
                let until = retires.plus(policy.retention());
                if key.expires_at.is_none_or(|e| e < until) {
                    steps.push(Step::Extend { kid: kid(), until });
                }
            }
        }
    }

    /// Rule 1 for one algorithm: one active key and one pending successor,
    /// the active key retiring exactly when the successor activates.
    fn due_for(&self, alg: Algorithm, now: UnixTime, policy: &Policy, steps: &mut Vec<Step>) {
        let active = self.keys_in(alg, KeyState::Active, now);
        let mut pending = self.keys_in(alg, KeyState::Pending, now);
        // More than one active key cannot come from these transitions; if a
        // hand-edited keyring has them, the newest signs and the rest retire.
        if active.len() > 1 {
            for old in &active[..active.len() - 1] {
                steps.push(Step::Retire {
                    kid: old.kid.clone(),
                    at: now,
                });
            }
        }
        let current = match active.last() {
            Some(k) => Some((k.kid.clone(), k.activates_at, k.retires_at)),
            None if !pending.is_empty() => {
                // The active key is gone (revoked) and a successor exists: it signs now.
                let next = pending.remove(0);
                steps.push(Step::Promote {
                    kid: next.kid.clone(),
                    at: now,
                });
                Some((next.kid.clone(), now, None))
            }
            None => None,
        };
        for extra in pending.iter().skip(1) {
            steps.push(Step::Remove {
                kid: extra.kid.clone(),
            });
        }
        match (current, pending.first()) {
            (None, _) => {
                // Bootstrap: nothing signs yet, so no verifier holds a stale
                // JWKS; the first key signs at once and its successor is made with it.
                let at = policy.successor_activation(now, now);
                steps.push(Step::Create {
                    alg,
                    activates_at: now,
                    retires_at: Some(at),
                });
                steps.push(Step::Create {
                    alg,
                    activates_at: at,
                    retires_at: None,
                });
            }
            (Some((kid, activated, _)), None) => {
                let at = policy.successor_activation(now, activated);
                steps.push(Step::Create {
                    alg,
                    activates_at: at,
                    retires_at: None,
                });
                steps.push(Step::Retire { kid, at });
            }
            (Some((kid, _, retires)), Some(next)) => {
                if retires != Some(next.activates_at) {
                    steps.push(Step::Retire {
                        kid,
                        at: next.activates_at,
                    });
                }
            }
        }
    }

    /// A manual rotation at `now`: every pending key of the policy's
    /// algorithms signs now, the active keys retire, and new successors are
    /// scheduled. Refused while a pending key is younger than the lead,
    /// unless `force` (rule 2), and always when an algorithm already has
    /// [`MAX_RETIRING`] retiring keys (rule 9). Call on a keyring with nothing
    /// [`due`](Self::due), under the store's lock, so the checks hold for
    /// the keyring that is committed.
    pub fn rotate(&self, now: UnixTime, policy: &Policy, force: bool) -> Result<Plan, Refusal> {
        let mut steps = Vec::new();
        for &alg in &policy.algorithms {
            let (active, pending) = (
                self.keys_in(alg, KeyState::Active, now),
                self.keys_in(alg, KeyState::Pending, now),
            );
            let Some(next) = pending.first() else {
                continue;
            };
            let ready = next.published_at.plus(policy.lead());
            if ready > now && !force {
                return Err(Refusal::PendingTooYoung {
                    purpose: self.purpose.clone(),
                    kid: next.kid.clone(),
                    age: now.since(next.published_at).as_secs(),
                    lead: policy.lead().as_secs(),
                    ready,
                });
            }
            let retiring = self.keys_in(alg, KeyState::Retiring, now);
            if retiring.len() + active.len() > MAX_RETIRING {
                return Err(Refusal::TooManyRetiring {
                    purpose: self.purpose.clone(),
                    alg,
                    retiring: retiring.len(),
                    cap: MAX_RETIRING,
                    oldest_expires: retiring
                        .iter()
                        .filter_map(|k| k.expires_at)
                        .min()
                        .unwrap_or(now),
                });
            }
            for old in active {
                steps.push(Step::Retire {
                    kid: old.kid.clone(),
                    at: now,
                });
            }
            steps.push(Step::Promote {
                kid: next.kid.clone(),
                at: now,
            });
        }
        Ok(self.then_due(steps, now, policy))
    }

    /// Revokes `kid` at `now`: it leaves the JWKS at once and for good, its
    /// private half is destroyed, and if it was signing, its successor signs
    /// now and a new successor is scheduled (rule 6).
    pub fn revoke(&self, kid: &str, now: UnixTime, policy: &Policy) -> Result<Plan, Refusal> {
        let key = self.get(kid).ok_or_else(|| Refusal::UnknownKid {
            kid: kid.to_owned(),
            purpose: self.purpose.clone(),
        })?;
        if key.revoked_at.is_some() {
            return Err(Refusal::AlreadyRevoked(kid.to_owned()));
        }
        let steps = vec![Step::Revoke {
            kid: kid.to_owned(),
            at: now,
        }];
        Ok(self.then_due(steps, now, policy))
    }

    /// `steps` followed by whatever is due once they are done.
    pub(super) fn then_due(&self, mut steps: Vec<Step>, now: UnixTime, policy: &Policy) -> Plan {
        let mut after = self.clone();
        for step in &steps {
            after.edit(step, policy);
        }
        steps.extend(after.due(now, policy).steps);
        Plan { steps }
    }

    /// Carries out `plan` at `now`. `make` generates and seals a key for an
    /// algorithm; it is called once per `Create` step. On error the keyring
    /// may be half-changed: callers apply plans to a copy and store it whole.
    pub fn apply<E>(
        &mut self,
        plan: &Plan,
        now: UnixTime,
        policy: &Policy,
        make: &mut dyn FnMut(Algorithm) -> Result<NewKey, E>,
    ) -> Result<(), E> {
        for step in &plan.steps {
            match step {
                Step::Create {
                    alg,
                    activates_at,
                    retires_at,
                } => {
                    let new = make(*alg)?;
                    self.keys.push(KeyRecord {
                        kid: new.jwk.kid.clone(),
                        alg: *alg,
                        jwk: new.jwk,
                        published_at: now,
                        activates_at: *activates_at,
                        retires_at: *retires_at,
                        expires_at: retires_at.map(|r| r.plus(policy.retention())),
                        revoked_at: None,
                        private: Some(new.private),
                    });
                }
                other => self.edit(other, policy),
            }
        }
        Ok(())
    }

    /// Applies a step that needs no new key material.
    fn edit(&mut self, step: &Step, policy: &Policy) {
        let find = |keys: &mut Vec<KeyRecord>, kid: &str| keys.iter().position(|k| k.kid == kid);
        match step {
            Step::Promote { kid, at } => {
                if let Some(i) = find(&mut self.keys, kid) {
                    self.keys[i].activates_at = *at;
                    self.keys[i].retires_at = None;
                    self.keys[i].expires_at = None;
                }
            }
            Step::Retire { kid, at } => {
                if let Some(i) = find(&mut self.keys, kid) {
                    let key = &mut self.keys[i];
                    // The retention a key has earned never shrinks (rule 3;
                    // found by the random walks in lifecycle_walk_tests):
                    // tokens it signed under a longer token_ttl (or leeway,
                    // max_age) than today's are still out there, also when
                    // it retires early (a manual rotation).
                    let earned = match (key.retires_at, key.expires_at) {
                        (Some(r), Some(e)) => Duration::from_secs(e.0.saturating_sub(r.0)),
                        _ => Duration::ZERO,
                    };
                    key.retires_at = Some(*at);
                    key.expires_at = Some(at.plus(policy.retention().max(earned)));
                }
            }
            Step::Extend { kid, until } => {
                if let Some(i) = find(&mut self.keys, kid) {
                    let e = &mut self.keys[i].expires_at;
                    *e = Some(e.map_or(*until, |e| e.max(*until)));
                }
            }
            Step::Revoke { kid, at } => {
                if let Some(i) = find(&mut self.keys, kid) {
                    self.keys[i].revoked_at = Some(*at);
                    self.keys[i].private = None;
                }
            }
            Step::DestroyPrivate { kid } => {
                if let Some(i) = find(&mut self.keys, kid) {
                    self.keys[i].private = None;
                }
            }
            Step::Remove { kid } => self.keys.retain(|k| &k.kid != kid),
            Step::ImportLegacy(key) => self.legacy.push(key.clone()),
            Step::RevokeLegacy { id, at } => {
                for l in self.legacy.iter_mut().filter(|l| &l.id == id) {
                    // The sealed secret stays until its window ends (then
                    // `DropLegacy`), only so that a token it signed is
                    // refused as a revoked key rather than a bad signature.
                    l.revoked_at = Some(*at);
                }
            }
            Step::DropLegacy { id } => self.legacy.retain(|l| &l.id != id),
            Step::Create { .. } => {}
        }
    }

    /// The key that signs for `alg` at `now`: the newest active key of that
    /// algorithm (rule 1). The one definition, used by the snapshot that
    /// signs and by the lifecycle alike; a key whose private half is gone or
    /// cannot be opened is still the one that should sign, and signing then
    /// fails rather than falling back to another key.
    pub fn signing_key(&self, alg: Algorithm, now: UnixTime) -> Option<&KeyRecord> {
        self.keys
            .iter()
            .filter(|k| k.alg == alg && k.state_at(now) == KeyState::Active)
            .max_by_key(|k| k.activates_at)
    }

    /// The keys published at `now`, oldest first.
    pub fn published(&self, now: UnixTime) -> impl Iterator<Item = &KeyRecord> {
        self.keys.iter().filter(move |k| k.is_published_at(now))
    }
}
