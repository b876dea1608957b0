//! The key service under concurrency and partial failure, with a manual
//! clock and a real file store (wrapped where a test must pause a load).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use signet::clock::{Clock, ManualClock, UnixTime};
use signet::config::{Config, Sources};
use signet::keys::{Keyring, Refusal};
use signet::service::{KeyService, ServiceError, SignRequest};
use signet::storage::seal::MasterKeys;
use signet::storage::{FileStore, KeyStore, KeyringTxn, StoreError};

use crate::common::{Home, MASTER};

/// 2026-11-29T00:00:00Z.
pub(crate) const T0: UnixTime = UnixTime(1_795_910_400);

/// A file store whose next `load` of one purpose, once armed, reads the
/// keyring, says so, and returns it only when told to go on.
#[derive(Debug)]
struct PausingStore {
    inner: FileStore,
    armed: AtomicBool,
    purpose: &'static str,
    loaded: Mutex<Option<mpsc::Sender<()>>>,
    go: Mutex<Option<mpsc::Receiver<()>>>,
}

impl PausingStore {
    fn arm(&self) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (loaded_tx, loaded_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel();
        *self.loaded.lock().unwrap() = Some(loaded_tx);
        *self.go.lock().unwrap() = Some(go_rx);
        self.armed.store(true, Ordering::SeqCst);
        (loaded_rx, go_tx)
    }
}

impl KeyStore for PausingStore {
    crate::delegate_token_lists!(inner);

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn load(&self, purpose: &str) -> Result<Option<Keyring>, StoreError> {
        let ring = self.inner.load(purpose)?;
        if purpose == self.purpose && self.armed.swap(false, Ordering::SeqCst) {
            let loaded = self.loaded.lock().unwrap().take().unwrap();
            let go = self.go.lock().unwrap().take().unwrap();
            loaded.send(()).unwrap();
            go.recv().unwrap();
        }
        Ok(ring)
    }

    fn lock(&self, purposes: &[&str]) -> Result<Box<dyn KeyringTxn + '_>, StoreError> {
        self.inner.lock(purposes)
    }
}

pub(crate) fn config(home: &Home, now: UnixTime) -> Arc<Config> {
    let env = |_: &str| None;
    Arc::new(
        Config::load(
            &Sources {
                file: Some(&home.config()),
                env: &env,
            },
            now,
        )
        .unwrap(),
    )
}

pub(crate) fn service(home: &Home, store: Arc<dyn KeyStore>, clock: &ManualClock) -> KeyService {
    KeyService::open(
        config(home, clock.now()),
        store,
        MasterKeys::parse(MASTER).unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap()
}

fn sign(service: &KeyService, purpose: &str) -> String {
    service
        .sign(SignRequest {
            purpose: purpose.into(),
            ..Default::default()
        })
        .unwrap()
        .kid
}

const ED: &str = "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n";

#[test]
fn a_refresh_that_loaded_before_a_revocation_cannot_undo_it() {
    let home = Home::new(ED);
    let clock = ManualClock::new(T0);
    let store = Arc::new(PausingStore {
        inner: FileStore::open(home.keys()).unwrap(),
        armed: AtomicBool::new(false),
        purpose: "access_token",
        loaded: Mutex::new(None),
        go: Mutex::new(None),
    });
    let ours = Arc::new(service(&home, store.clone(), &clock));
    ours.tick().unwrap();
    // Another process rotates: our snapshot is one generation behind.
    clock.advance(Duration::from_secs(60));
    let other = service(
        &home,
        Arc::new(FileStore::open(home.keys()).unwrap()),
        &clock,
    );
    other.rotate(Some("access_token"), true).unwrap();
    let compromised = sign(&other, "access_token");
    assert_ne!(sign(&ours, "access_token"), compromised);

    // The periodic refresh reads the rotated keyring (generation N) and stalls.
    let (loaded, go) = store.arm();
    let periodic = {
        let ours = ours.clone();
        std::thread::spawn(move || ours.refresh())
    };
    loaded.recv().unwrap();
    // Meanwhile an operator revokes the newly active key: commit N+1, and the
    // revocation's own refresh stores the view of N+1 before answering.
    ours.revoke(&compromised).unwrap();
    assert_ne!(sign(&ours, "access_token"), compromised);
    // The stalled refresh now finishes with its view of generation N.
    go.send(()).unwrap();
    periodic.join().unwrap();

    assert_ne!(
        sign(&ours, "access_token"),
        compromised,
        "a revoked key signs again"
    );
    let snap = ours.snapshot();
    let view = &snap.purposes["access_token"];
    assert!(!view.verify.contains_key(&compromised));
    let jwks = String::from_utf8(snap.jwks.body.to_vec()).unwrap();
    assert!(!jwks.contains(&compromised), "republished after revocation");
}

#[test]
fn rotating_every_purpose_is_checked_under_the_lock_after_what_is_due() {
    // refresh_token rotates daily, access_token monthly.
    let home = Home::new(
        "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n[purposes.refresh_token]\ntoken_ttl = \"1h\"\nrotate = \"0 0 0 * * *\"\n",
    );
    let clock = ManualClock::new(T0);
    let store: Arc<dyn KeyStore> = Arc::new(FileStore::open(home.keys()).unwrap());
    let svc = service(&home, store.clone(), &clock);
    svc.tick().unwrap();
    // Past refresh_token's first daily boundary, with no tick since: its
    // stored keyring has no pending key, and what is due creates one now.
    clock.advance(Duration::from_secs(86_400 + 1));
    let before: Vec<_> = ["access_token", "refresh_token"]
        .map(|p| store.load(p).unwrap().unwrap())
        .into();
    match svc.rotate(None, false) {
        Err(ServiceError::Refused(Refusal::PendingTooYoung { purpose, .. })) => {
            assert_eq!(purpose, "refresh_token")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let after: Vec<_> = ["access_token", "refresh_token"]
        .map(|p| store.load(p).unwrap().unwrap())
        .into();
    assert_eq!(
        after, before,
        "a refused rotation of every purpose changed one"
    );
}
