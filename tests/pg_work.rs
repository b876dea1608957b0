//! How much a PostgreSQL replica reads: a writer serves what it committed,
//! a notification refreshes the purpose it names, and a poll lists the
//! revoked tokens only when they changed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use signet::clock::{Clock, ManualClock, SystemClock};
use signet::keys::Keyring;
use signet::service::{KeyService, SignRequest};
use signet::storage::{KeyStore, KeyringTxn, PostgresStore, StoreError, TokenEntry, TokenList};

use crate::common::{Home, pg};
use crate::service::service;

const TWO: &str = "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n[purposes.refresh_token]\nalgorithms = [\"EdDSA\"]\n[purposes.magic_link]\nenabled = false\n[purposes.reset_password_link]\nenabled = false\n";

/// The PostgreSQL store, counting the keyrings it loads and the token
/// lists it lists.
#[derive(Debug)]
struct Counting {
    inner: PostgresStore,
    loads: Mutex<Vec<String>>,
    lists: AtomicUsize,
}

impl KeyStore for Counting {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn load(&self, purpose: &str) -> Result<Option<Keyring>, StoreError> {
        self.loads.lock().unwrap().push(purpose.to_owned());
        self.inner.load(purpose)
    }
    fn generations(&self) -> Result<Option<Vec<(String, u64)>>, StoreError> {
        self.inner.generations()
    }
    fn lock(&self, purposes: &[&str]) -> Result<Box<dyn KeyringTxn + '_>, StoreError> {
        self.inner.lock(purposes)
    }
    fn record_token(&self, list: TokenList, entry: &TokenEntry) -> Result<bool, StoreError> {
        self.inner.record_token(list, entry)
    }
    fn token_recorded(&self, list: TokenList, entry: &TokenEntry) -> Result<bool, StoreError> {
        self.inner.token_recorded(list, entry)
    }
    fn tokens_version(&self, list: TokenList) -> Result<Option<String>, StoreError> {
        self.inner.tokens_version(list)
    }
    fn tokens(&self, list: TokenList) -> Result<Vec<TokenEntry>, StoreError> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.tokens(list)
    }
    fn prune_tokens(&self, before: signet::clock::UnixTime) -> Result<usize, StoreError> {
        self.inner.prune_tokens(before)
    }
}

/// A bootstrapped service on a counting store, and another replica.
fn replicas(url: &str) -> (Home, ManualClock, Arc<Counting>, KeyService, KeyService) {
    let home = Home::new(TWO);
    let clock = ManualClock::new(SystemClock.now());
    let store = Arc::new(Counting {
        inner: PostgresStore::connect(url, "counted").unwrap(),
        loads: Mutex::default(),
        lists: AtomicUsize::new(0),
    });
    let counted = service(&home, store.clone(), &clock);
    counted.tick().unwrap();
    let other = service(
        &home,
        Arc::new(PostgresStore::connect(url, "other").unwrap()),
        &clock,
    );
    (home, clock, store, counted, other)
}

fn taken(store: &Counting) -> Vec<String> {
    std::mem::take(&mut *store.loads.lock().unwrap())
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_writer_serves_the_keyring_it_committed_without_reading_it_back() {
    let url = pg::database();
    let (_home, _clock, store, counted, _other) = replicas(&url);
    taken(&store);
    let before = counted
        .snapshot()
        .purpose("refresh_token")
        .unwrap()
        .keyring
        .generation;
    counted.rotate(Some("refresh_token"), true).unwrap();
    // One read, before the lock, to make the keys ahead (premade.rs); none after.
    assert_eq!(taken(&store), ["refresh_token"]);
    let served = counted.snapshot();
    let served = served.purpose("refresh_token").unwrap();
    assert_eq!(served.keyring.generation, before + 1);
    // What it serves is what the store holds.
    assert_eq!(
        Some(&served.keyring),
        store.inner.load("refresh_token").unwrap().as_ref()
    );
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_notified_refresh_loads_only_the_purpose_named() {
    let url = pg::database();
    let (_home, _clock, store, counted, other) = replicas(&url);
    other.rotate(None, true).unwrap();
    taken(&store);
    assert!(counted.refresh_only(Some(&["refresh_token".to_owned()])));
    assert_eq!(taken(&store), ["refresh_token"]);
    // The other purpose waits for the next poll.
    assert!(counted.refresh());
    assert_eq!(taken(&store), ["access_token"]);
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_poll_lists_the_revoked_tokens_only_when_they_changed() {
    let url = pg::database();
    let (_home, _clock, store, counted, other) = replicas(&url);
    counted.refresh();
    let lists = || store.lists.swap(0, Ordering::SeqCst);
    lists();
    for _ in 0..3 {
        counted.refresh();
    }
    assert_eq!(lists(), 0, "an idle poll lists no token");
    let token = other
        .sign(SignRequest {
            purpose: "access_token".into(),
            ..Default::default()
        })
        .unwrap()
        .token;
    other
        .revoke_token("access_token", Some(&token), None)
        .unwrap();
    assert!(counted.refresh());
    assert_eq!(lists(), 1);
    assert_eq!(counted.snapshot().revoked_tokens.len(), 1);
    counted.refresh();
    assert_eq!(lists(), 0);
}
