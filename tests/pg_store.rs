//! The store contract, run against the file store and a real PostgreSQL, and
//! replicas on one database racing across rotation boundaries.

use std::sync::Arc;
use std::time::Duration;

use signet::clock::{Clock, ManualClock, SystemClock, UnixTime};
use signet::keys::{Algorithm, KeyRecord, Keyring, SigningKey, generate};
use signet::service::KeyService;
use signet::storage::{FileStore, KeyStore, PostgresStore};

use crate::common::{Home, pg};
use crate::service::{T0, service};

fn record(now: UnixTime) -> KeyRecord {
    let key = SigningKey::from_pkcs8(Algorithm::EdDSA, &generate(Algorithm::EdDSA, 2048).unwrap())
        .unwrap();
    KeyRecord {
        kid: key.kid().to_owned(),
        alg: Algorithm::EdDSA,
        jwk: key.public_jwk().clone(),
        published_at: now,
        activates_at: now,
        retires_at: None,
        expires_at: None,
        revoked_at: None,
        private: None,
    }
}

fn ring(purpose: &str, generation: u64, keys: Vec<KeyRecord>) -> Keyring {
    Keyring {
        purpose: purpose.to_owned(),
        generation,
        id: "contract".to_owned(),
        keys,
        legacy: Vec::new(),
        mac: Vec::new(),
    }
}

/// What every store does, whatever it is built on.
fn contract(store: &dyn KeyStore) {
    assert!(store.load("access_token").unwrap().is_none());
    // The first write, at generation 1.
    let first = ring("access_token", 1, vec![record(T0)]);
    let txn = store.lock(&["access_token"]).unwrap();
    assert!(txn.current("access_token").is_none());
    txn.commit(vec![first.clone()]).unwrap();
    assert_eq!(store.load("access_token").unwrap().as_ref(), Some(&first));
    // A transaction dropped without commit changes nothing.
    let txn = store.lock(&["access_token"]).unwrap();
    assert_eq!(txn.current("access_token"), Some(&first));
    drop(txn);
    assert_eq!(store.load("access_token").unwrap().as_ref(), Some(&first));
    // A generation that is not the next one is refused, and nothing written.
    let txn = store.lock(&["access_token"]).unwrap();
    let err = txn
        .commit(vec![ring("access_token", 5, vec![])])
        .unwrap_err();
    assert!(err.to_string().contains("instead of 2"), "{err}");
    assert_eq!(store.load("access_token").unwrap().as_ref(), Some(&first));
    // A purpose that was not locked is refused.
    let txn = store.lock(&["access_token"]).unwrap();
    assert!(txn.commit(vec![ring("magic_link", 1, vec![])]).is_err());
    assert!(store.load("magic_link").unwrap().is_none());
    // Several purposes under one lock.
    let txn = store.lock(&["magic_link", "access_token"]).unwrap();
    let second = ring("access_token", 2, vec![record(T0), record(T0)]);
    let magic = ring("magic_link", 1, vec![record(T0)]);
    let generations = txn.commit(vec![second.clone(), magic.clone()]).unwrap();
    assert_eq!(generations, [2, 1]);
    assert_eq!(store.load("access_token").unwrap(), Some(second));
    assert_eq!(store.load("magic_link").unwrap(), Some(magic));
    // An empty keyring is a keyring too.
    let txn = store.lock(&["refresh_token"]).unwrap();
    txn.commit(vec![ring("refresh_token", 1, vec![])]).unwrap();
    assert!(store.load("refresh_token").unwrap().is_some());
}

/// The token lists every store keeps: `open` opens another handle on the
/// same store (another process, for what it shares).
fn token_contract(open: &(dyn Fn() -> Box<dyn KeyStore> + Sync)) {
    use signet::storage::{TokenEntry, TokenList};
    let store = open();
    let entry = |jti: &str, exp: u64| TokenEntry {
        purpose: "magic_link".into(),
        jti: jti.into(),
        exp: UnixTime(exp),
        tag: "m:t".into(),
    };
    let used = entry("AAAAAAAAAAAAAAAAAAAAAA", T0.0 + 900);
    assert!(!store.token_recorded(TokenList::Consumed, &used).unwrap());
    // Eight handles record one entry at once: exactly one records it.
    let first: Vec<bool> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let (store, used) = (open(), used.clone());
                s.spawn(move || store.record_token(TokenList::Consumed, &used).unwrap())
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(first.iter().filter(|f| **f).count(), 1, "{first:?}");
    assert!(store.token_recorded(TokenList::Consumed, &used).unwrap());
    assert!(!store.record_token(TokenList::Consumed, &used).unwrap());
    // The lists are apart: consumed is not revoked.
    assert!(!store.token_recorded(TokenList::Revoked, &used).unwrap());
    let revoked = entry("BBBBBBBBBBBBBBBBBBBBBB", T0.0 + 60);
    assert!(store.record_token(TokenList::Revoked, &revoked).unwrap());
    assert_eq!(
        store.tokens(TokenList::Revoked).unwrap(),
        std::slice::from_ref(&revoked)
    );
    assert_eq!(
        store.tokens(TokenList::Consumed).unwrap(),
        std::slice::from_ref(&used)
    );
    // Pruning drops what expired before the instant, in both lists.
    assert_eq!(store.prune_tokens(UnixTime(T0.0 + 61)).unwrap(), 1);
    assert!(store.tokens(TokenList::Revoked).unwrap().is_empty());
    assert_eq!(store.prune_tokens(UnixTime(T0.0 + 901)).unwrap(), 1);
    assert!(store.tokens(TokenList::Consumed).unwrap().is_empty());
    assert!(!open().token_recorded(TokenList::Consumed, &used).unwrap());
}

#[test]
fn the_file_store_keeps_the_store_contract() {
    let home = Home::new("");
    contract(&FileStore::open(home.keys()).unwrap());
    token_contract(&|| Box::new(FileStore::open(home.keys()).unwrap()));
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn the_postgres_store_keeps_the_store_contract() {
    let url = pg::database();
    let store = PostgresStore::connect(&url, "contract").unwrap();
    contract(&store);
    token_contract(&|| Box::new(PostgresStore::connect(&url, "tokens").unwrap()));
    // Every committed generation is in the history, by this replica.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let rows = db
        .query(
            "SELECT purpose, generation, committed_by FROM signet_keyring_history ORDER BY purpose, generation",
            &[],
        )
        .unwrap();
    let history: Vec<(String, i64, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        history,
        [
            ("access_token".to_owned(), 1, "contract".to_owned()),
            ("access_token".to_owned(), 2, "contract".to_owned()),
            ("magic_link".to_owned(), 1, "contract".to_owned()),
            ("refresh_token".to_owned(), 1, "contract".to_owned()),
        ]
    );
    // A document altered in the database is refused like a corrupt file.
    db.execute(
        "UPDATE signet_keyrings SET document = $1 WHERE purpose = 'magic_link'",
        &[&b"{ not a keyring".as_slice()],
    )
    .unwrap();
    let err = store.load("magic_link").unwrap_err();
    assert!(err.to_string().contains("the magic_link row"), "{err}");
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_second_writer_waits_for_the_lock_and_sees_the_first_ones_write() {
    let url = pg::database();
    let a = PostgresStore::connect(&url, "a").unwrap();
    let b = Arc::new(PostgresStore::connect(&url, "b").unwrap());
    let txn = a.lock(&["access_token"]).unwrap();
    let waiter = {
        let b = b.clone();
        std::thread::spawn(move || {
            let txn = b.lock(&["access_token"]).unwrap();
            let seen = txn.current("access_token").map(|k| k.generation);
            let next = seen.unwrap_or(0) + 1;
            txn.commit(vec![ring("access_token", next, vec![])])
                .unwrap();
            seen
        })
    };
    // Wait until the database shows b waiting for the advisory lock.
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    loop {
        if pg::waiting_for_keyring_lock(&mut db, "access_token") == 1 {
            break;
        }
        std::thread::yield_now();
    }
    txn.commit(vec![ring("access_token", 1, vec![])]).unwrap();
    assert_eq!(
        waiter.join().unwrap(),
        Some(1),
        "b read under the lock, after a's commit"
    );
    assert_eq!(b.load("access_token").unwrap().unwrap().generation, 2);
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn replicas_racing_across_boundaries_rotate_exactly_once_per_boundary() {
    let url = pg::database();
    let home = Home::new(
        "poll_interval = \"5s\"\n[jwks]\nmax_age = \"5s\"\n[purposes.access_token]\nalgorithms = [\"EdDSA\", \"ES256\"]\ntoken_ttl = \"10s\"\nrotate = \"0 * * * * *\"\n[purposes.refresh_token]\nenabled = false\n[purposes.magic_link]\nenabled = false\n[purposes.reset_password_link]\nenabled = false\n",
    );
    let clock = ManualClock::new(T0);
    let replicas: Vec<Arc<KeyService>> = (0..3)
        .map(|i| {
            let store = PostgresStore::connect(&url, &format!("replica-{i}")).unwrap();
            Arc::new(service(&home, Arc::new(store), &clock))
        })
        .collect();
    const BOUNDARIES: u64 = 5;
    for step in 0..=BOUNDARIES {
        // Each boundary is crossed by every replica at once, twice over.
        clock.set(UnixTime(T0.0 + 60 * step + 30));
        let threads: Vec<_> = replicas
            .iter()
            .flat_map(|r| [r.clone(), r.clone()])
            .map(|r| std::thread::spawn(move || r.tick().unwrap()))
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let generations: Vec<i64> = db
        .query(
            "SELECT generation FROM signet_keyring_history WHERE purpose = 'access_token' ORDER BY generation",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i64> = (1..=generations.len() as i64).collect();
    assert_eq!(generations, expected, "generations without gaps");
    // Every key ever created, across the whole history.
    let mut kids = std::collections::BTreeMap::<String, Algorithm>::new();
    for row in db
        .query(
            "SELECT document FROM signet_keyring_history WHERE purpose = 'access_token'",
            &[],
        )
        .unwrap()
    {
        let doc: serde_json::Value = serde_json::from_slice(row.get::<_, &[u8]>(0)).unwrap();
        for key in doc["keys"].as_array().unwrap() {
            let alg = key["alg"].as_str().unwrap().parse().unwrap();
            kids.insert(key["kid"].as_str().unwrap().to_owned(), alg);
        }
    }
    for alg in [Algorithm::EdDSA, Algorithm::ES256] {
        let made = kids.values().filter(|a| **a == alg).count() as u64;
        assert_eq!(
            made,
            2 + BOUNDARIES,
            "{alg}: a key and its successor at bootstrap, then one successor per boundary"
        );
    }
    // Every replica publishes the same bytes.
    for r in &replicas {
        r.refresh();
    }
    let first = replicas[0].snapshot().jwks.body.clone();
    for r in &replicas[1..] {
        assert_eq!(r.snapshot().jwks.body, first);
    }
}

/// The PostgreSQL store, counting the keyrings it loads.
#[derive(Debug)]
struct CountingLoads {
    inner: PostgresStore,
    loads: std::sync::Mutex<Vec<String>>,
}

impl KeyStore for CountingLoads {
    crate::delegate_token_lists!(inner);

    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn load(&self, purpose: &str) -> Result<Option<Keyring>, signet::storage::StoreError> {
        self.loads.lock().unwrap().push(purpose.to_owned());
        self.inner.load(purpose)
    }
    fn generations(&self) -> Result<Option<Vec<(String, u64)>>, signet::storage::StoreError> {
        self.inner.generations()
    }
    fn lock(
        &self,
        purposes: &[&str],
    ) -> Result<Box<dyn signet::storage::KeyringTxn + '_>, signet::storage::StoreError> {
        self.inner.lock(purposes)
    }
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_poll_loads_only_the_keyrings_whose_generation_moved() {
    let url = pg::database();
    let home = Home::new(
        "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n[purposes.refresh_token]\nalgorithms = [\"EdDSA\"]\n[purposes.magic_link]\nenabled = false\n[purposes.reset_password_link]\nenabled = false\n",
    );
    let clock = ManualClock::new(SystemClock.now());
    let store = Arc::new(CountingLoads {
        inner: PostgresStore::connect(&url, "polled").unwrap(),
        loads: Default::default(),
    });
    let polled = service(&home, store.clone(), &clock);
    polled.tick().unwrap();
    let writer = service(
        &home,
        Arc::new(PostgresStore::connect(&url, "writer").unwrap()),
        &clock,
    );
    let loads = || std::mem::take(&mut *store.loads.lock().unwrap());
    loads();
    // Nothing changed: a poll reads the generations and no keyring.
    assert!(!polled.refresh());
    assert_eq!(loads(), Vec::<String>::new());
    // Another replica rotates refresh_token: only that keyring is loaded.
    writer.rotate(Some("refresh_token"), true).unwrap();
    assert!(polled.refresh());
    assert_eq!(loads(), ["refresh_token"]);
    let served = polled.snapshot();
    let served = served.purpose("refresh_token").unwrap();
    assert_eq!(served.keyring.generation, 2);
    // Time alone moves a key (the successor activates): the view is rebuilt
    // from the keyring held, with no load.
    let lead = served
        .keyring
        .keys
        .iter()
        .map(|k| k.activates_at.0)
        .max()
        .unwrap();
    clock.set(UnixTime(lead + 1));
    assert!(polled.refresh());
    assert_eq!(loads(), Vec::<String>::new());
    let now_signing = polled
        .snapshot()
        .purpose("refresh_token")
        .unwrap()
        .keyring
        .signing_key(Algorithm::EdDSA, clock.now())
        .map(|k| k.kid.clone());
    assert_eq!(
        now_signing,
        served
            .keyring
            .keys
            .iter()
            .max_by_key(|k| k.activates_at)
            .map(|k| k.kid.clone())
    );
}

/// A bootstrapped access_token service on the database of `url`, its clock
/// on time with the database's.
fn on_time_replica(url: &str) -> (Home, ManualClock, KeyService) {
    let home = Home::new("[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n");
    let clock = ManualClock::new(SystemClock.now());
    let svc = service(
        &home,
        Arc::new(PostgresStore::connect(url, "r").unwrap()),
        &clock,
    );
    svc.tick().unwrap();
    (home, clock, svc)
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_database_outage_degrades_the_replica_and_it_recovers_alone() {
    use signet::service::{ProblemKind, ServiceError, SignRequest};
    use signet::storage::StoreError;
    let url = pg::database();
    // On time with the database, so only the outage shows.
    let (_home, _clock, svc) = on_time_replica(&url);
    let sign = || {
        svc.sign(SignRequest {
            purpose: "access_token".into(),
            ..Default::default()
        })
    };
    let kid = sign().unwrap().kid;

    // The database goes away: the replica serves what it holds, degraded but ready.
    pg::set_up(&url, false);
    svc.refresh();
    let problems = svc.problems();
    assert!(!problems.is_empty());
    for p in &problems {
        assert_eq!(p.kind, ProblemKind::Store);
        assert!(
            !p.blocking,
            "{p:?}: a database outage must not take replicas out"
        );
        assert!(p.detail.contains("database"), "{p:?}");
    }
    assert_eq!(
        sign().unwrap().kid,
        kid,
        "signing goes on from the snapshot"
    );

    // Writes fail with the cause (the HTTP API answers 503).
    match svc.rotate(Some("access_token"), true) {
        Err(ServiceError::Store(StoreError::Database { .. })) => {}
        other => panic!("expected a database error, got {other:?}"),
    }
    // It comes back: the connection is opened again, no restart needed,
    // once the reconnection backoff (at most 5 s) has passed.
    pg::set_up(&url, true);
    let back = tokio::time::Instant::now();
    while {
        svc.refresh();
        !svc.problems().is_empty()
    } {
        assert!(
            back.elapsed() < Duration::from_secs(6),
            "{:?}",
            svc.problems()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    svc.rotate(Some("access_token"), true).unwrap();
    assert_ne!(sign().unwrap().kid, kid);
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_replica_whose_clock_is_off_the_databases_says_so_and_stays_ready() {
    use signet::service::ProblemKind;
    let url = pg::database();
    let (_home, clock, svc) = on_time_replica(&url);
    assert!(svc.problems().is_empty(), "{:?}", svc.problems());
    // Ten seconds ahead: more than the default margin of 2 s.
    clock.set(UnixTime(SystemClock.now().0 + 10));
    svc.refresh();
    let problems = svc.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, ProblemKind::Clock);
    assert!(!problems[0].blocking);
    assert!(
        problems[0].detail.contains("store.clock_skew"),
        "{problems:?}"
    );
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_writer_cut_off_inside_its_transaction_leaves_the_old_row_and_no_lock() {
    let url = pg::database();
    let store = PostgresStore::connect(&url, "survivor").unwrap();
    let first = ring("access_token", 1, vec![record(T0)]);
    store
        .lock(&["access_token"])
        .unwrap()
        .commit(vec![first.clone()])
        .unwrap();
    // Another writer takes the purpose's lock and changes the row, then dies
    // before COMMIT (its connection is cut, as a SIGKILL would).
    let mut dying = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    dying
        .batch_execute(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('signet keyring ' || 'access_token', 0)); \
             UPDATE signet_keyrings SET generation = 2, document = 'half written' WHERE purpose = 'access_token'",
        )
        .unwrap();
    let pid: i32 = dying
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    // The old row, whole; and the lock is free for the next writer.
    assert_eq!(store.load("access_token").unwrap(), Some(first));
    let txn = store.lock(&["access_token"]).unwrap();
    txn.commit(vec![ring("access_token", 2, vec![record(T0)])])
        .unwrap();
    assert_eq!(store.load("access_token").unwrap().unwrap().generation, 2);
    drop(dying);
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn tls_to_the_database_is_verified_when_asked_and_refused_when_it_cannot_be() {
    let (url, cert) = pg::tls_database();
    let cert = cert.display().to_string();
    // verify-full against the server's own certificate: connected, and works.
    let store = PostgresStore::connect(
        &format!("{url} sslmode=verify-full sslrootcert={cert}"),
        "tls",
    )
    .unwrap();
    assert!(
        store.describe().contains("TLS, verified"),
        "{}",
        store.describe()
    );
    contract(&store);
    // The same server against the system's roots: refused, naming the certificate.
    let err = PostgresStore::connect(&format!("{url} sslmode=verify-full"), "tls")
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // require: encrypted, the certificate not checked (as libpq does).
    let store = PostgresStore::connect(&format!("{url} sslmode=require"), "tls").unwrap();
    assert!(store.describe().contains("certificate unchecked"));
    assert!(store.load("access_token").unwrap().is_some());
    // The server really sees TLS.
    let mut db = postgres::Client::connect(&pg_admin(&url), postgres::NoTls).unwrap();
    let encrypted: i64 = db
        .query_one("SELECT count(*) FROM pg_stat_ssl WHERE ssl", &[])
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "no TLS connection seen by the server");
}

/// The Unix-socket URL of the same database as a TCP `url`.
fn pg_admin(url: &str) -> String {
    let db = url.rsplit("dbname=").next().unwrap();
    let socket = format!("/tmp/signet-pg-{}", std::process::id());
    let port = url
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("port="))
        .unwrap();
    format!("host={socket} port={port} user=postgres dbname={db}")
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_row_put_back_to_an_older_copy_is_refused_and_a_purpose_started_again_continues_its_history() {
    use signet::service::{ProblemKind, SignRequest};
    let url = pg::database();
    let (home, clock, svc) = on_time_replica(&url);
    let sign = |svc: &KeyService| {
        svc.sign(SignRequest {
            purpose: "access_token".into(),
            ..Default::default()
        })
    };
    let revoked = sign(&svc).unwrap().kid;
    svc.revoke(&revoked).unwrap();
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    // Someone with write access to the table puts back generation 1: an
    // authentic document, in which the revoked key still signs.
    db.execute(
        "UPDATE signet_keyrings SET (generation, document) = (SELECT generation, document FROM signet_keyring_history WHERE purpose = 'access_token' AND generation = 1) WHERE purpose = 'access_token'",
        &[],
    )
    .unwrap();
    // A replica starting now never saw generation 2, and still refuses it.
    let fresh = service(
        &home,
        Arc::new(PostgresStore::connect(&url, "fresh").unwrap()),
        &clock,
    );
    let problems = fresh.problems();
    let store = problems
        .iter()
        .find(|p| p.kind == ProblemKind::Store)
        .unwrap_or_else(|| panic!("{problems:?}"));
    assert!(store.blocking);
    assert!(
        store.detail.contains("generation 2 was committed")
            && store.detail.contains("signet_keyring_history"),
        "{}",
        store.detail
    );
    assert!(
        sign(&fresh).is_err(),
        "nothing signs from a rolled-back row"
    );
    let err = fresh.rotate(Some("access_token"), true).unwrap_err();
    assert!(
        err.to_string().contains("put back to an older copy"),
        "{err}"
    );
    // The replica that saw generation 2 keeps serving it.
    svc.refresh();
    assert_ne!(sign(&svc).unwrap().kid, revoked);

    // A generation column that disagrees with the document is refused too.
    db.execute(
        "UPDATE signet_keyrings SET generation = 7 WHERE purpose = 'access_token'",
        &[],
    )
    .unwrap();
    let err = fresh.rotate(Some("access_token"), true).unwrap_err();
    assert!(err.to_string().contains("in its column"), "{err}");

    // Started again (row removed): a new keyring, whose generations continue
    // the history instead of colliding with it.
    db.execute(
        "DELETE FROM signet_keyrings WHERE purpose = 'access_token'",
        &[],
    )
    .unwrap();
    fresh.tick().unwrap();
    let row = db
        .query_one(
            "SELECT generation FROM signet_keyrings WHERE purpose = 'access_token'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    assert!(fresh.problems().is_empty(), "{:?}", fresh.problems());
    assert!(sign(&fresh).is_ok());
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_role_that_may_only_read_lists_the_keys_and_creates_nothing() {
    let url = pg::database();
    let db = url.rsplit("dbname=").next().unwrap().to_owned();
    let reader = format!("reader_{db}");
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE ROLE {reader} LOGIN"))
        .unwrap();
    let reader_url = url.replace("user=postgres", &format!("user={reader}"));
    let home = Home::new("[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n");
    let list = || {
        let out = home
            .cmd(&["keys", "list", "--json"])
            .env("SIGNET_STORE_KIND", "postgres")
            .env("SIGNET_DATABASE_URL", &reader_url)
            .env("SIGNET_ISSUER", "https://auth.example.test")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "keys list as {reader}: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    // Nothing written yet: nothing to list, and no table created (the role
    // may not create any: PostgreSQL 15 revokes CREATE on public).
    list();
    let created: bool = admin
        .query_one("SELECT to_regclass('signet_keyrings') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!created, "a read-only command created the schema");
    // A writer bootstraps; the reader may only SELECT.
    let (_home, _clock, _svc) = on_time_replica(&url);
    admin
        .batch_execute(&format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}"
        ))
        .unwrap();
    let keys: serde_json::Value = serde_json::from_str(&list()).unwrap();
    assert_eq!(
        keys.as_array().unwrap().len(),
        8,
        "four purposes, two keys each: {keys}"
    );
}
