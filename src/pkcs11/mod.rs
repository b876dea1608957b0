//! Private keys inside a PKCS#11 token (an HSM, or SoftHSM2): generated
//! there, never extractable, used only through the token's signing
//! mechanisms (`[signer] kind = "pkcs11"`).
//!
//! A [`Token`] is the loaded module, the token found by label or slot, and a
//! pool of logged-in sessions: PKCS#11 forbids two threads in one session at
//! once, so concurrent signatures each take a session of their own, up to
//! `signer.sessions`. A session that fails because the token or the module
//! went away is dropped with every other session opened before that failure,
//! the module is initialised again (at most once a second), and the request
//! is tried once more in a new session: a token that comes back is used
//! again without a restart.
//!
//! A PIN the token refuses is never offered again (a token locks its PIN
//! after a few failures): signing answers the refusal until a restart with
//! the right `SIGNET_PKCS11_PIN`.
//!
//! Key generation, the public keys read back and the signing mechanisms are
//! in `pkcs11/keys.rs`, which cites the PKCS#11 v2.40 / v3 names.

mod error;
mod generate;
mod keys;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::config::{Pkcs11Config, TokenSelector};

pub use error::TokenError;
pub use keys::TokenKey;

use error::{Fault, OpError, describe, fault_of};

/// The module is initialised again at most this often.
const REINITIALISE_EVERY: Duration = Duration::from_secs(1);

struct Pool {
    idle: Vec<(u64, Session)>,
    /// Sessions open, idle or lent.
    open: usize,
    /// The slot found at the last successful open.
    slot: Option<Slot>,
}

/// A PKCS#11 token and its pool of logged-in sessions. See the module docs.
pub struct Token {
    ctx: Pkcs11,
    module: String,
    selector: TokenSelector,
    /// The token's label, for the key records and `keys list`.
    label: String,
    pin: crate::config::Pin,
    size: usize,
    pool: Mutex<Pool>,
    freed: Condvar,
    /// Bumped when the sessions are found dead: older ones are not reused,
    /// and object handles found in them are looked up again.
    epoch: AtomicU64,
    pin_refused: Mutex<Option<String>>,
    /// Held shared by every call into the module, exclusively to
    /// re-initialise it (PKCS#11 forbids `C_Finalize` during other calls).
    gate: RwLock<()>,
    reinitialised: Mutex<Option<tokio::time::Instant>>,
    /// The last failure, until a call succeeds (for `/readyz`).
    failing: Mutex<Option<String>>,
    healthy: AtomicBool,
    /// Failed operations (`signet_pkcs11_errors_total`).
    errors: Counter,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Token(module={}, token={}, sessions={})",
            self.module, self.selector, self.size
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Token {
    /// Loads and initialises the module. Finds no slot yet: a token that is
    /// absent at start is looked for again at each use.
    pub fn open(config: &Pkcs11Config) -> Result<Token, TokenError> {
        let module = config.module.display().to_string();
        let failed = |reason: String| TokenError::Module {
            module: module.clone(),
            reason,
        };
        let ctx = Pkcs11::new(&config.module).map_err(|e| failed(e.to_string()))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(failed(describe(&e))),
        }
        let label = match &config.token {
            TokenSelector::Label(l) => l.clone(),
            TokenSelector::Slot(s) => format!("slot {s}"),
        };
        Ok(Token {
            ctx,
            module,
            selector: config.token.clone(),
            label,
            pin: config.pin.clone(),
            size: config.sessions,
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 0,
                slot: None,
            }),
            freed: Condvar::new(),
            epoch: AtomicU64::new(0),
            pin_refused: Mutex::new(None),
            gate: RwLock::new(()),
            reinitialised: Mutex::new(None),
            failing: Mutex::new(None),
            healthy: AtomicBool::new(true),
            errors: Counter::default(),
        })
    }

    /// The token's label as recorded in key records (or `slot N`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The last failure, while no call has succeeded since.
    pub fn failing(&self) -> Option<String> {
        if self.healthy.load(Ordering::Relaxed) {
            return None;
        }
        lock(&self.failing).clone()
    }

    /// Failed operations since start, for `signet_pkcs11_errors_total`.
    pub fn errors(&self) -> &Counter {
        &self.errors
    }

    /// Sessions open now (idle or in use).
    pub fn sessions_open(&self) -> usize {
        lock(&self.pool).open
    }

    fn err_call(&self, e: &CkError) -> TokenError {
        TokenError::Call {
            token: self.selector.to_string(),
            call: describe(e),
        }
    }

    fn find_slot(&self) -> Result<Slot, TokenError> {
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| self.err_call(&e))?;
        let found = match &self.selector {
            TokenSelector::Slot(id) => slots.into_iter().find(|s| s.id() == *id),
            TokenSelector::Label(label) => slots.into_iter().find(|s| {
                self.ctx
                    .get_token_info(*s)
                    .is_ok_and(|info| info.label().trim_end() == label)
            }),
        };
        found.ok_or_else(|| TokenError::NoToken {
            token: self.selector.to_string(),
            module: self.module.clone(),
        })
    }

    /// Opens a session on the token and logs the user in (login state is
    /// shared by the application's sessions: "already logged in" is fine).
    fn open_session(&self, slot: Option<Slot>) -> Result<(Slot, Session), TokenError> {
        if let Some(reason) = lock(&self.pin_refused).clone() {
            return Err(TokenError::Pin {
                token: self.selector.to_string(),
                reason,
            });
        }
        let slot = match slot {
            Some(s) => s,
            None => self.find_slot()?,
        };
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| self.err_call(&e))?;
        let pin = AuthPin::from(self.pin.expose().to_owned());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok((slot, session)),
            Err(
                e @ CkError::Pkcs11(
                    RvError::PinIncorrect
                    | RvError::PinLocked
                    | RvError::PinExpired
                    | RvError::PinInvalid
                    | RvError::PinLenRange,
                    _,
                ),
            ) => {
                let reason = describe(&e);
                *lock(&self.pin_refused) = Some(reason.clone());
                Err(TokenError::Pin {
                    token: self.selector.to_string(),
                    reason,
                })
            }
            Err(e) => Err(self.err_call(&e)),
        }
    }

    /// A session from the pool, or a new one while fewer than `sessions` are
    /// open; else waits for one to be returned.
    fn take(&self) -> Result<(u64, Session), TokenError> {
        let mut pool = lock(&self.pool);
        loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            while let Some((born, session)) = pool.idle.pop() {
                if born == epoch {
                    return Ok((born, session));
                }
                pool.open -= 1;
            }
            if pool.open < self.size {
                pool.open += 1;
                let slot = pool.slot;
                drop(pool);
                return match self.open_session(slot) {
                    Ok((slot, session)) => {
                        lock(&self.pool).slot = Some(slot);
                        Ok((epoch, session))
                    }
                    Err(e) => {
                        let mut pool = lock(&self.pool);
                        pool.open -= 1;
                        // The slot may have changed (a token put back elsewhere).
                        pool.slot = None;
                        drop(pool);
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            pool = self
                .freed
                .wait(pool)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn give_back(&self, born: u64, session: Session) {
        let mut pool = lock(&self.pool);
        if born == self.epoch.load(Ordering::Acquire) {
            pool.idle.push((born, session));
        } else {
            pool.open -= 1;
            drop(session);
        }
        drop(pool);
        self.freed.notify_one();
    }

    /// Every session opened so far is dead (the token or module went away).
    fn discard_all(&self, session: Session) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut pool = lock(&self.pool);
        pool.open -= 1;
        pool.slot = None;
        let dead = std::mem::take(&mut pool.idle);
        pool.open -= dead.len();
        drop(pool);
        // Closing a dead session fails harmlessly; the handles are gone either way.
        drop(dead);
        drop(session);
        self.freed.notify_all();
    }

    fn record(&self, result: &Result<(), &TokenError>) {
        match result {
            Ok(()) => self.healthy.store(true, Ordering::Relaxed),
            Err(e) => {
                self.errors.inc();
                *lock(&self.failing) = Some(e.to_string());
                self.healthy.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Runs `op` in a pooled session. A failure that says the token went
    /// away (dead sessions, no token, or the key's object not found) is
    /// retried once after the module is initialised again, at most once a
    /// second: a module keeps a token it lost as lost until it is
    /// re-initialised (SoftHSM2 does), so this is what lets a token that
    /// came back serve the very request that finds it back.
    pub(crate) fn with_session<T>(
        &self,
        op: impl Fn(&Session, u64) -> Result<T, OpError>,
    ) -> Result<T, TokenError> {
        let mut retried = false;
        let result = loop {
            let (result, gone) = self.attempt(&op);
            match result {
                Err(e) if gone && !retried && self.may_reinitialise() => {
                    tracing::warn!(error = %e, "the PKCS#11 token looks gone: initialising the module again");
                    self.reinitialise();
                    retried = true;
                }
                other => break other,
            }
        };
        self.record(&result.as_ref().map(|_| ()));
        result
    }

    /// One try of `op`; also says whether the failure looks like the token
    /// or module went away.
    fn attempt<T>(
        &self,
        op: &impl Fn(&Session, u64) -> Result<T, OpError>,
    ) -> (Result<T, TokenError>, bool) {
        let _calls = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        let (born, session) = match self.take() {
            Ok(s) => s,
            Err(e) => {
                let gone = matches!(e, TokenError::NoToken { .. } | TokenError::Call { .. });
                return (Err(e), gone);
            }
        };
        match op(&session, born) {
            Ok(v) => {
                self.give_back(born, session);
                (Ok(v), false)
            }
            Err(OpError::Pkcs11(e)) => match fault_of(&e) {
                Fault::Sessions => {
                    self.discard_all(session);
                    (Err(self.err_call(&e)), true)
                }
                Fault::Call => {
                    self.give_back(born, session);
                    (Err(self.err_call(&e)), false)
                }
            },
            Err(OpError::Token(e)) => {
                self.give_back(born, session);
                let gone = matches!(e, TokenError::Missing { .. });
                (Err(e), gone)
            }
        }
    }

    fn may_reinitialise(&self) -> bool {
        let now = tokio::time::Instant::now();
        let mut last = lock(&self.reinitialised);
        if last.is_some_and(|t| now.duration_since(t) < REINITIALISE_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// `C_Finalize` then `C_Initialize`, with no call in flight (the gate)
    /// and every session dropped first.
    fn reinitialise(&self) {
        let _alone = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut pool = lock(&self.pool);
        let idle = std::mem::take(&mut pool.idle);
        pool.open -= idle.len();
        pool.slot = None;
        drop(pool);
        drop(idle);
        if let Err(e) = self.ctx.clone().finalize() {
            tracing::warn!(error = %describe(&e), "C_Finalize failed; initialising anyway");
        }
        match self
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                tracing::error!(error = %describe(&e), "C_Initialize failed; retried at the next use")
            }
        }
    }

    /// Opens a session and logs in now, so that a wrong PIN or an absent
    /// token is reported at start rather than at the first signature.
    pub fn check(&self) -> Result<(), TokenError> {
        self.with_session(|_, _| Ok(()))
    }
}
