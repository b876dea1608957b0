//! Reloading keyrings into the snapshot, one purpose at a time, and the
//! readiness that follows from it.

use std::sync::Arc;

use serde::Serialize;

use super::KeyService;
use super::snapshot::{PurposeKeys, Snapshot, StoreFault};
use crate::clock::UnixTime;
use crate::config::PurposeConfig;
use crate::keys::Keyring;
use crate::storage::StoreError;

/// Why a purpose cannot sign as the store says it should.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The purpose.
    pub purpose: String,
    /// What kind of problem.
    #[serde(skip)]
    pub kind: ProblemKind,
    /// Whether it makes signet unready (`/readyz` 503) or only degraded.
    #[serde(skip)]
    pub blocking: bool,
    /// A short reason, safe for unauthenticated clients.
    pub reason: String,
    /// The full cause and its fix (log and CLI only).
    #[serde(skip)]
    pub detail: String,
}

/// The kinds of [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The keyring cannot be loaded, or went backwards.
    Store,
    /// No key is active yet (the keyring was never initialised).
    NoActiveKey,
    /// The active key's private half cannot be used.
    KeyUnusable,
    /// This host's clock differs from the shared store's by more than allowed.
    Clock,
    /// The PKCS#11 token holding the active key is failing.
    Token,
}

impl KeyService {
    /// Reloads every purpose whose keyring changed in the store (another
    /// process wrote) or whose keys changed state since its view was built.
    /// A purpose that cannot be loaded keeps its last good keyring, rebuilt
    /// for the current time and marked with the fault; the failure is logged
    /// (when it starts or changes) and counted. Returns whether anything was
    /// rebuilt.
    ///
    /// Several threads refresh at once (the periodic check, cron jobs, admin
    /// requests). A view built from a load that a concurrent commit made stale
    /// can reach the swap after the view of that commit; the swap is therefore
    /// a compare-and-swap (`rcu`, [`Snapshot::merged`]) that replaces a
    /// purpose's view only if it is still the one this refresh started from,
    /// or is of a lower keyring generation: a stale refresh never undoes a
    /// revocation.
    pub fn refresh(&self) -> bool {
        self.refresh_only(None)
    }

    /// [`refresh`](Self::refresh) of the purposes in `only` (all when
    /// `None`): a change notification names its purpose, and only that
    /// keyring is looked at. The revoked-token list is looked at either way
    /// (a revocation notifies with its token's purpose).
    pub fn refresh_only(&self, only: Option<&[String]>) -> bool {
        let now = self.now();
        self.check_clock(now);
        // One cheap query for a shared store; the keyrings follow only where
        // a generation moved.
        let generations = self.store.generations().map_err(store_fault);
        // Held across IO: a full reference, not a guard.
        let current = self.snapshot.load_full();
        let mut updates = Vec::new();
        for (purpose, config) in &self.config.purposes {
            if only.is_some_and(|only| !only.contains(purpose)) {
                continue;
            }
            let base = current.purposes.get(purpose);
            let previous = base.map(Arc::as_ref);
            let stored = match &generations {
                Ok(None) => None,
                Ok(Some(list)) => Some(Ok(list
                    .iter()
                    .find(|(p, _)| p == purpose)
                    .map_or(0, |(_, g)| *g))),
                Err(fault) => Some(Err(fault.clone())),
            };
            let view = match self.reload(purpose, config, previous, stored, now) {
                Ok(None) => continue,
                Ok(Some(view)) => view,
                Err(fault) => self.faulted(purpose, config, previous, fault, now),
            };
            updates.push((base.cloned(), Arc::new(view)));
        }
        // Revoked tokens: the document changes when the list does. An
        // unreadable list keeps the last one (the keyrings' loads report an
        // unreachable store).
        let tokens = self.revoked_tokens(&current);
        if updates.is_empty() && tokens.is_none() {
            return false;
        }
        self.snapshot
            .rcu(|snap| snap.merged(&updates, tokens.as_ref()));
        self.high_water.raise(
            &self.master,
            updates
                .iter()
                .filter(|(_, view)| view.fault.is_none())
                .map(|(_, view)| &view.keyring),
        );
        true
    }

    /// Serves keyrings this process has just committed, without reading
    /// them back from the store. A view is replaced only by one of a later
    /// version (rule 11), so a concurrent refresh that read older rows
    /// cannot undo them, nor they a newer view.
    pub(super) fn install(&self, committed: Vec<Keyring>) {
        let now = self.now();
        let current = self.snapshot.load_full();
        let updates: Vec<_> = committed
            .into_iter()
            .filter_map(|ring| {
                let config = self.config.purposes.get(&ring.purpose)?;
                let base = current.purposes.get(&ring.purpose);
                let view = self.build(config, ring, now, base.map(Arc::as_ref));
                Some((base.cloned(), Arc::new(view)))
            })
            .collect();
        self.snapshot.rcu(|snap| snap.merged(&updates, None));
        self.high_water
            .raise(&self.master, updates.iter().map(|(_, view)| &view.keyring));
    }

    /// A new view of `purpose` if its keyring changed or a key changed state
    /// since `previous` was built; `None` if `previous` still holds.
    /// `stored` is the keyring's generation in the store, when the store
    /// lists them: the keyring is loaded only if it differs from the one
    /// served (or the last load failed).
    fn reload(
        &self,
        purpose: &str,
        config: &PurposeConfig,
        previous: Option<&PurposeKeys>,
        stored: Option<Result<u64, StoreFault>>,
        now: UnixTime,
    ) -> Result<Option<PurposeKeys>, StoreFault> {
        let stored = stored.transpose()?;
        let fresh = |prev: &PurposeKeys| prev.valid_until.is_none_or(|t| now < t);
        if let Some(prev) = previous
            && prev.fault.is_none()
            && stored == Some(prev.keyring.generation)
        {
            if fresh(prev) {
                return Ok(None);
            }
            // Unchanged in the store; only time moved a key to its next state.
            log_transitions(&prev.keyring, prev.built_at, now);
            return Ok(Some(self.build(
                config,
                prev.keyring.clone(),
                now,
                previous,
            )));
        }
        let loaded = self.store.load(purpose).map_err(store_fault)?;
        let ring = match loaded {
            Some(ring) => {
                self.master.check(&ring).map_err(|e| StoreFault {
                    summary: "the keyring fails authentication",
                    detail: e.to_string(),
                    blocks_readiness: true,
                })?;
                ring
            }
            None => Keyring::new(purpose),
        };
        if let Some(served) = self.high_water.newer_than(&ring) {
            return Err(StoreFault {
                blocks_readiness: true,
                summary: "the store's keyring is older than the one served",
                detail: older_than_served(&self.store.describe(), &ring, served),
            });
        }
        if let Some(prev) = previous {
            // Another identity is another keyring (moved aside, started
            // again): it replaces the one served whatever its generation.
            if ring.id == prev.keyring.id && ring.generation < prev.keyring.generation {
                return Err(StoreFault {
                    blocks_readiness: true,
                    summary: "the store's keyring is older than the one served",
                    detail: format!(
                        "the {purpose} keyring in the {} is at generation {}, older than generation {} served here (restored from a backup?): signet keeps serving the newer one; restart it to serve the restored keyring",
                        self.store.describe(),
                        ring.generation,
                        prev.keyring.generation
                    ),
                });
            }
            if ring.id == prev.keyring.id
                && ring.generation == prev.keyring.generation
                && prev.fault.is_none()
                && fresh(prev)
            {
                return Ok(None);
            }
            log_transitions(&ring, prev.built_at, now);
        }
        Ok(Some(self.build(config, ring, now, previous)))
    }

    /// The last good view of `purpose`, rebuilt for `now` and marked with
    /// `fault`, which is counted, and logged when it starts or changes.
    fn faulted(
        &self,
        purpose: &str,
        config: &PurposeConfig,
        previous: Option<&PurposeKeys>,
        fault: StoreFault,
        now: UnixTime,
    ) -> PurposeKeys {
        self.errors_of(purpose).inc();
        if previous.and_then(|p| p.fault.as_ref()) != Some(&fault) {
            tracing::error!(purpose, error = %fault.detail, "cannot reload the keyring; serving the last good one");
        }
        let mut view = match previous {
            Some(prev) => self.build(config, prev.keyring.clone(), now, Some(prev)),
            None => PurposeKeys::empty(purpose, now),
        };
        view.fault = Some(fault);
        view
    }

    /// Compares this process's clock with the shared store's; warns when
    /// they differ by more than `store.clock_skew` (the lead and retention
    /// only allow that much).
    fn check_clock(&self, now: UnixTime) {
        use std::sync::atomic::Ordering;
        let Ok(Some(offset)) = self.store.clock_offset(now) else {
            return;
        };
        let allowed = i64::try_from(self.config.store.clock_skew.as_secs()).unwrap_or(i64::MAX);
        let previous = self.clock_offset.swap(offset, Ordering::Relaxed);
        let off = |o: i64| o != i64::MIN && o.abs() > allowed;
        if off(offset) && !off(previous) {
            tracing::warn!(
                offset,
                allowed,
                "this host's clock differs from the database's by more than store.clock_skew; synchronise it (NTP)"
            );
        }
    }

    /// Builds a purpose's view; counts and logs each signing key that could
    /// not be decrypted and was not already failing.
    fn build(
        &self,
        config: &PurposeConfig,
        ring: Keyring,
        now: UnixTime,
        previous: Option<&PurposeKeys>,
    ) -> PurposeKeys {
        let view = PurposeKeys::build(
            &self.master,
            self.token.as_ref(),
            config,
            ring,
            now,
            previous,
        );
        for (kid, signer) in &view.signers {
            if let Err(reason) = signer
                && previous.is_none_or(|p| p.signers.get(kid).is_none_or(|s| s.is_ok()))
            {
                self.errors_of(&view.keyring.purpose).inc();
                tracing::error!(purpose = view.keyring.purpose, kid, error = %reason, "a key that signs now or next cannot be used to sign");
            }
        }
        view
    }

    /// What keeps each purpose from signing as the store says it should: a
    /// keyring that cannot be loaded, no active key for a configured
    /// algorithm, or an active key whose private half cannot be used. Empty
    /// when signet is ready.
    pub fn problems(&self) -> Vec<Problem> {
        let now = self.now();
        let snap = self.snapshot();
        let mut out = Vec::new();
        let offset = self.clock_offset.load(std::sync::atomic::Ordering::Relaxed);
        let allowed = i64::try_from(self.config.store.clock_skew.as_secs()).unwrap_or(i64::MAX);
        if offset != i64::MIN && offset.abs() > allowed {
            out.push(Problem {
                purpose: "*".into(),
                kind: ProblemKind::Clock,
                blocking: false,
                reason: "this host's clock differs from the database's".into(),
                detail: format!(
                    "this host's clock is {offset}s off the database's, more than store.clock_skew ({allowed}s): keys may activate early or late here; synchronise the clock"
                ),
            });
        }
        for (purpose, config) in &self.config.purposes {
            let problem = |kind, reason: String, detail: String| Problem {
                purpose: purpose.clone(),
                kind,
                blocking: true,
                reason,
                detail,
            };
            let Some(view) = snap.purposes.get(purpose) else {
                out.push(problem(
                    ProblemKind::NoActiveKey,
                    "not loaded".into(),
                    "not loaded yet".into(),
                ));
                continue;
            };
            if let Some(fault) = &view.fault {
                out.push(Problem {
                    blocking: fault.blocks_readiness,
                    ..problem(
                        ProblemKind::Store,
                        fault.summary.into(),
                        fault.detail.clone(),
                    )
                });
            }
            for &alg in &config.algorithms {
                match view.keyring.signing_key(alg, now) {
                    None => out.push(problem(
                        ProblemKind::NoActiveKey,
                        format!("no active {alg} key"),
                        format!("the {purpose} keyring has no active {alg} key yet; signet creates one at its next check"),
                    )),
                    Some(key) => match view.signers.get(&key.kid) {
                        Some(Err(reason)) => out.push(problem(
                            ProblemKind::KeyUnusable,
                            format!("the active {alg} key {} cannot sign", key.kid),
                            reason.clone(),
                        )),
                        // Degraded, not unready: the JWKS is served, and every
                        // replica shares the token, so taking them all out of
                        // the load balancer would not make one sign.
                        Some(Ok(signer)) if signer.key.in_token() => {
                            if let Some(failure) = self.token.as_ref().and_then(token_failure) {
                                out.push(Problem {
                                    blocking: false,
                                    ..problem(
                                        ProblemKind::Token,
                                        format!("the PKCS#11 token holding the active {alg} key is failing"),
                                        failure,
                                    )
                                });
                            }
                        }
                        _ => {}
                    },
                }
            }
        }
        out
    }
}

#[cfg(feature = "pkcs11")]
fn token_failure(token: &super::TokenRef) -> Option<String> {
    token.failing()
}

#[cfg(not(feature = "pkcs11"))]
fn token_failure(token: &super::TokenRef) -> Option<String> {
    match *token {}
}

/// Why a keyring older than one served is refused (rule 16).
pub(super) fn older_than_served(store: &str, ring: &Keyring, served: u64) -> String {
    format!(
        "the {} keyring in the {store} is at generation {}, older than generation {served} this replica served (put back to an earlier copy, which may hold a key revoked since): signet refuses it; restore generation {served}, or, if the rollback is intended, move the keyring aside to start a new one",
        ring.purpose, ring.generation
    )
}

/// How a store error shows in a purpose's view: an unreachable database
/// leaves replicas serving what they hold (degraded, still ready); anything
/// else makes the purpose unready.
fn store_fault(e: StoreError) -> StoreFault {
    match e {
        StoreError::Database { .. } => StoreFault {
            summary: "the store is unreachable; serving the keys held",
            detail: e.to_string(),
            blocks_readiness: false,
        },
        _ => StoreFault {
            summary: "the keyring cannot be read",
            detail: e.to_string(),
            blocks_readiness: true,
        },
    }
}

impl Snapshot {
    /// The view of `purpose`, if configured.
    pub fn purpose(&self, purpose: &str) -> Option<&PurposeKeys> {
        self.purposes.get(purpose).map(Arc::as_ref)
    }
}

/// Logs the scheduled transitions (no store write marks them) that fell in `(since, now]`.
fn log_transitions(ring: &Keyring, since: UnixTime, now: UnixTime) {
    let passed = |t: Option<UnixTime>| t.is_some_and(|t| since < t && t <= now);
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
