//! Three `signet serve` processes on one PostgreSQL database.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::server::{ADMIN, SIGNER, ServeProcess, TOKENS, client};
use crate::common::{Home, pg};
use crate::server::kids;

const CONFIG: &str = "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n";

/// What every replica of one database is started with, and `extra`.
fn replica_env<'a>(url: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("SIGNET_STORE_KIND", "postgres"),
        ("SIGNET_DATABASE_URL", url),
        ("SIGNET_ADMIN_TOKENS", TOKENS),
        // Every replica names the same issuer (required with a shared store).
        ("SIGNET_ISSUER", "https://auth.example.test"),
    ];
    env.extend_from_slice(extra);
    env
}

/// The access_token JWKS of the replica at `public`.
async fn jwks_at(http: &reqwest::Client, public: std::net::SocketAddr) -> Value {
    let url = format!("http://{public}/.well-known/jwks/access_token.json");
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// Signs an access token at the replica whose admin listener is `admin`.
async fn sign_at(http: &reqwest::Client, admin: std::net::SocketAddr) -> reqwest::Response {
    http.post(format!("http://{admin}/v1/tokens"))
        .bearer_auth(SIGNER)
        .json(&json!({"purpose": "access_token"}))
        .send()
        .await
        .unwrap()
}

/// Revokes `kid` at the replica whose admin listener is `admin`.
async fn revoke_at(
    http: &reqwest::Client,
    admin: std::net::SocketAddr,
    kid: &str,
) -> reqwest::Response {
    http.post(format!("http://{admin}/v1/keys/{kid}/revoke"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
}

/// Waits (up to `limit`) until the replica at `public` no longer publishes
/// `kid`; returns how long it took.
async fn gone_from(
    http: &reqwest::Client,
    public: std::net::SocketAddr,
    kid: &str,
    limit: Duration,
) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    tokio::time::timeout(limit, async {
        while kids(&jwks_at(http, public).await).iter().any(|k| k == kid) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

#[test]
#[ignore = "needs PostgreSQL and the interop clients (jose, PyJWT, jwcrypto): run tests/setup.sh, then cargo test -- --include-ignored"]
fn three_replicas_share_keys_and_a_revocation_reaches_every_jwks_at_once() {
    let url = pg::database();
    // Each replica has its own directory: they share the database only.
    let homes: Vec<Home> = (0..3).map(|_| Home::new(CONFIG)).collect();
    // Polling every 30 s: what reaches the others within the test comes
    // through NOTIFY.
    let env = replica_env(&url, &[("SIGNET_STORE_POLL_INTERVAL", "30s")]);
    let replicas: Vec<ServeProcess> = homes.iter().map(|h| ServeProcess::start(h, &env)).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let for_jose = rt.block_on(async {
        let http = client();
        let admin = |i: usize, path: &str| format!("http://{}{path}", replicas[i].admin);
        // POST /v1/tokens at replica `i`.
        let sign = |i: usize, body: Value| {
            let (http, url) = (http.clone(), admin(i, "/v1/tokens"));
            async move {
                let r = http.post(url).bearer_auth(SIGNER).json(&body).send().await;
                r.unwrap().json::<Value>().await.unwrap()
            }
        };
        let jwks = |i: usize| jwks_at(&http, replicas[i].public);
        // Started together, they bootstrapped one keyring: the same JWKS.
        let first = jwks(0).await;
        assert_eq!(kids(&first).len(), 2);
        for i in 1..3 {
            assert_eq!(kids(&jwks(i).await), kids(&first));
        }
        // A token signed by any replica verifies at every other.
        for signer in 0..3 {
            let signed = sign(
                signer,
                json!({"purpose": "access_token", "claims": {"sub": "u"}}),
            )
            .await;
            for verifier in 0..3 {
                let r = http
                    .post(admin(verifier, "/v1/verify"))
                    .bearer_auth(SIGNER)
                    .json(&json!({"purpose": "access_token", "token": signed["token"]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    r.status(),
                    200,
                    "signed at {signer}, verified at {verifier}"
                );
            }
        }
        // A revocation at one replica leaves every JWKS within a second.
        let active = sign(0, json!({"purpose": "access_token"})).await;
        let kid = active["kid"].as_str().unwrap().to_owned();
        let started = tokio::time::Instant::now();
        let r = http
            .post(admin(1, &format!("/v1/keys/{kid}/revoke")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        for i in 0..3 {
            let gone = tokio::time::timeout(Duration::from_secs(1), async {
                while kids(&jwks(i).await).contains(&kid) {
                    tokio::task::yield_now().await;
                }
            })
            .await;
            assert!(
                gone.is_ok(),
                "replica {i} still publishes the revoked key after 1 s"
            );
        }
        eprintln!(
            "replicas: a revocation reached all three JWKS in {} ms",
            started.elapsed().as_millis()
        );
        // A token revoked at one replica is refused by every other's
        // /v1/verify within a second (NOTIFY; they poll every 30 s).
        let doomed = sign(0, json!({"purpose": "access_token"})).await;
        let r = http
            .post(admin(2, "/v1/tokens/revoke"))
            .bearer_auth(SIGNER)
            .json(&json!({"purpose": "access_token", "token": doomed["token"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        for i in 0..3 {
            let refused = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    let r = http
                        .post(admin(i, "/v1/verify"))
                        .bearer_auth(SIGNER)
                        .json(&json!({"purpose": "access_token", "token": doomed["token"]}))
                        .send()
                        .await
                        .unwrap();
                    if r.status() == 401 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            })
            .await;
            assert!(
                refused.is_ok(),
                "replica {i} still accepts the revoked token after 1 s"
            );
        }
        // A token from the first replica, for third-party verifiers at the others.
        let signed = sign(
            0,
            json!({"purpose": "access_token", "claims": {"sub": "u", "aud": "api"}}),
        )
        .await;
        signed["token"].as_str().unwrap().to_owned()
    });
    // jose, PyJWT and jwcrypto accept it from every replica's JWKS.
    for client in crate::interop::clients() {
        for r in &replicas {
            let jwks = format!("http://{}/.well-known/jwks/access_token.json", r.public);
            let source = [
                "--jwks",
                jwks.as_str(),
                "--typ",
                "at+jwt",
                "--issuer",
                "https://auth.example.test",
            ];
            crate::interop::run(&client, &source, "access_token", &for_jose)
                .unwrap_or_else(|e| panic!("{} refused at {}: {e}", client.name, r.public));
        }
    }
    for r in replicas {
        r.stop();
    }
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn an_installation_moves_its_keyrings_to_the_database_as_they_are() {
    use signet::clock::{Clock, ManualClock, SystemClock};
    use signet::service::SignRequest;
    use signet::storage::{KeyStore, PostgresStore};
    let url = pg::database();
    let home = Home::new(CONFIG);
    let token = home.ok(&["token", "sign", "--purpose", "access_token"]);
    let header = token.split('.').next().unwrap();
    let header: Value =
        serde_json::from_slice(&signet::keys::jwk::b64_decode(header).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap().to_owned();
    let keys = home.keys().display().to_string();
    let copy = |force: bool| {
        let mut args = vec!["store", "copy", "--from", keys.as_str(), "--to", "database"];
        if force {
            args.push("--force");
        }
        home.cmd(&args)
            .env("SIGNET_DATABASE_URL", &url)
            .output()
            .unwrap()
    };
    let out = copy(false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("copied access_token"));

    // A replica on the database signs with the key the file store had active.
    let store = PostgresStore::connect(&url, "check").unwrap();
    assert_eq!(store.load("access_token").unwrap().unwrap().generation, 1);
    let clock = ManualClock::new(SystemClock.now());
    let svc = crate::service::service(&home, std::sync::Arc::new(store), &clock);
    let signed = svc
        .sign(SignRequest {
            purpose: "access_token".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(signed.kid, kid);

    // Never over keyrings already there, unless told to.
    let out = copy(false);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already holds") && err.contains("--force"),
        "{err}"
    );
    assert!(copy(true).status.success());
    let store = PostgresStore::connect(&url, "check").unwrap();
    assert_eq!(store.load("access_token").unwrap().unwrap().generation, 2);
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_replica_killed_inside_its_commit_leaves_the_old_row_and_no_lock() {
    let url = pg::database();
    let homes: Vec<Home> = (0..2).map(|_| Home::new(CONFIG)).collect();
    let env = replica_env(&url, &[("SIGNET_STORE_POLL_INTERVAL", "30s")]);
    let a = ServeProcess::start(&homes[0], &env);
    let b = ServeProcess::start(&homes[1], &env);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = client();
    let kid = rt.block_on(async {
        let r = sign_at(&http, a.admin).await.json::<Value>().await.unwrap();
        r["kid"].as_str().unwrap().to_owned()
    });
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let row = |db: &mut postgres::Client| -> (i64, Vec<u8>) {
        let r = db
            .query_one(
                "SELECT generation, document FROM signet_keyrings WHERE purpose = 'access_token'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let before = row(&mut db);

    // Hold the history table against writes (reads go on): a's revocation
    // updates the row, then waits for its history row, inside its
    // transaction, before COMMIT.
    db.batch_execute("BEGIN; LOCK TABLE signet_keyring_history IN SHARE MODE")
        .unwrap();
    let revoking = {
        let (http, admin, kid) = (http.clone(), a.admin, kid.clone());
        rt.spawn(async move {
            http.post(format!("http://{admin}/v1/keys/{kid}/revoke"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    let ours = format!("signet %/{}", a.child.id());
    let mut watcher = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let waiting = |w: &mut postgres::Client, event: &str| -> i64 {
        w.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1 AND wait_event_type = $2 AND query LIKE 'INSERT INTO signet_keyring_history%'",
            &[&ours, &event],
        )
        .unwrap()
        .get(0)
    };
    poll_until("a reaches its history insert", || {
        waiting(&mut watcher, "Lock") == 1
    });
    // Killed there: the row update is done, the COMMIT never comes.
    a.kill();
    db.batch_execute("ROLLBACK").unwrap();
    let gone = |w: &mut postgres::Client| -> i64 {
        w.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
            &[&ours],
        )
        .unwrap()
        .get(0)
    };
    poll_until("a's sessions end with it", || gone(&mut watcher) == 0);
    let answer = rt.block_on(revoking).unwrap();
    assert!(answer.is_err(), "a died before answering: {answer:?}");

    // The old row, whole; no history row for the lost generation; no lock held.
    assert_eq!(
        row(&mut db),
        before,
        "the row is the old one, byte for byte"
    );
    let last: i64 = db
        .query_one(
            "SELECT max(generation) FROM signet_keyring_history WHERE purpose = 'access_token'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(last, before.0);
    let locks: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(locks, 0, "the dead replica's advisory lock is released");

    // b writes at once (its lock_timeout is 10 s; it does not wait for it).
    rt.block_on(async {
        let started = tokio::time::Instant::now();
        let r = revoke_at(&http, b.admin, &kid).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!kids(&jwks_at(&http, b.public).await).contains(&kid));
    });
    assert_eq!(row(&mut db).0, before.0 + 1);
    b.stop();
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_database_outage_under_load_stops_writes_only_and_polling_catches_up() {
    let url = pg::database();
    let homes: Vec<Home> = (0..2).map(|_| Home::new(CONFIG)).collect();
    // No LISTEN: every change below reaches the other replica by polling.
    let env = replica_env(
        &url,
        &[
            ("SIGNET_STORE_POLL_INTERVAL", "1s"),
            ("SIGNET_STORE_LISTEN", "false"),
        ],
    );
    let replicas = [
        ServeProcess::start(&homes[0], &env),
        ServeProcess::start(&homes[1], &env),
    ];
    let (a, b) = (&replicas[0], &replicas[1]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Load on both replicas for the whole test: JWKS and signing.
    let load: Vec<_> = replicas
        .iter()
        .map(|r| {
            let (http, stop, public, admin) = (http.clone(), stop.clone(), r.public, r.admin);
            rt.spawn(async move {
                let (mut served, mut failed) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let jwks = http
                        .get(format!("http://{public}/.well-known/jwks.json"))
                        .send()
                        .await
                        .unwrap()
                        .status();
                    let signed = sign_at(&http, admin).await.status();
                    for status in [jwks, signed] {
                        if status == 200 {
                            served += 1;
                        } else {
                            failed.push(status);
                        }
                    }
                }
                (served, failed)
            })
        })
        .collect();
    let kid = rt.block_on(async {
        let r = sign_at(&http, a.admin).await.json::<Value>().await.unwrap();
        r["kid"].as_str().unwrap().to_owned()
    });

    pg::set_up(&url, false);
    rt.block_on(async {
        // Within a poll, a says so, and stays ready.
        let degraded = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let r = http
                    .get(format!("http://{}/readyz", a.public))
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body: Value = r.json().await.unwrap();
                if body["status"] == "degraded" {
                    assert_eq!(status, 200);
                    return body;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("a never reported the outage");
        assert!(body_mentions(&degraded, "unreachable"), "{degraded}");
        // Writes answer 503 with the cause.
        let r = revoke_at(&http, a.admin, &kid).await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("database"), "{body}");
    });

    pg::set_up(&url, true);
    rt.block_on(async {
        // Writes resume without a restart (the first may still meet the
        // connection the outage cut).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = revoke_at(&http, a.admin, &kid).await;
            let status = r.status();
            if status == 200 {
                break;
            }
            let body = r.text().await.unwrap();
            assert_eq!(status, 503, "a write while the database returns: {body}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "writes did not resume"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Polling alone carries the revocation to b: within a poll, plus
        // the poll that finds its connection cut and opens another.
        let took = gone_from(&http, b.public, &kid, Duration::from_secs(5)).await;
        let took = took.expect("b still publishes the revoked key 5 s later (poll_interval 1 s)");
        eprintln!(
            "replicas: polling only (1 s), a revocation reached the other replica in {} ms",
            took.as_millis()
        );
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        let (served, failed) = rt.block_on(task).unwrap();
        assert!(served > 0);
        assert!(
            failed.is_empty(),
            "JWKS and signing must go on through the outage: {failed:?}"
        );
    }
    for r in replicas {
        r.stop();
    }
}

/// Polls `done` every 5 ms, for at most 10 s, waiting on another process.
fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("still waiting after 10 s until {what}");
}

fn body_mentions(v: &Value, needle: &str) -> bool {
    v.to_string().contains(needle)
}
