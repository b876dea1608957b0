//! A PostgreSQL-backed `signet serve` as a fleet runs it: stopped, cut off
//! from its database, and serving requests while a keyring change waits.

use std::time::Duration;

use tokio::time::Instant;

use serde_json::{Value, json};

use crate::common::server::{ADMIN, SIGNER, ServeProcess, TOKENS, client};
use crate::common::{Home, pg};

/// magic_link is single use (by default): its verify and consume read and
/// write the consumed list.
const CONFIG: &str = "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n[purposes.magic_link]\nalgorithms = [\"EdDSA\"]\n";

pub fn replica_env(url: &str) -> Vec<(&str, &str)> {
    vec![
        ("SIGNET_STORE_KIND", "postgres"),
        ("SIGNET_DATABASE_URL", url),
        ("SIGNET_ADMIN_TOKENS", TOKENS),
        ("SIGNET_ISSUER", "https://auth.example.test"),
    ]
}

async fn post(
    http: &reqwest::Client,
    serve: &ServeProcess,
    path: &str,
    token: &str,
    body: Value,
) -> reqwest::Response {
    http.post(format!("http://{}{path}", serve.admin))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn sign(http: &reqwest::Client, serve: &ServeProcess, purpose: &str) -> String {
    let signed = post(
        http,
        serve,
        "/v1/tokens",
        SIGNER,
        json!({"purpose": purpose}),
    )
    .await;
    assert_eq!(signed.status(), 200);
    let body: Value = signed.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

fn no_panic(log: &[String]) {
    assert!(
        !log.iter()
            .any(|l| l.contains("panicked") || l.contains("Cannot start a runtime")),
        "the server panicked: {}",
        log.join("\n")
    );
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_postgres_backed_server_stops_cleanly_on_sigterm_every_time() {
    let url = pg::database();
    let home = Home::new(CONFIG);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = client();
    for round in 0..5 {
        let serve = ServeProcess::start(&home, &replica_env(&url));
        // The store is used (a sign, a consume) before the stop.
        let token = rt.block_on(sign(&http, &serve, "magic_link"));
        let consumed = rt.block_on(post(
            &http,
            &serve,
            "/v1/tokens/consume",
            SIGNER,
            json!({"purpose": "magic_link", "token": token}),
        ));
        assert_eq!(consumed.status(), 200, "round {round}");
        let stopping = Instant::now();
        // Asserts exit status 0.
        let log = serve.stop();
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "round {round}: the stop took {:?}, past the drain time",
            stopping.elapsed()
        );
        no_panic(&log);
        assert!(
            log.iter().any(|l| l.contains("shutting down")),
            "round {round}: no shutdown in the log: {}",
            log.join("\n")
        );
    }
}

/// Whether the replica waits for magic_link's keyring lock.
fn replica_waits_for_the_lock(db: &mut postgres::Client) -> bool {
    pg::waiting_for_keyring_lock(db, "magic_link") > 0
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn requests_that_touch_the_store_answer_while_a_keyring_change_waits_for_the_lock() {
    let url = pg::database();
    let home = Home::new(CONFIG);
    let serve = ServeProcess::start(&home, &replica_env(&url));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = client();
    let magic = rt.block_on(sign(&http, &serve, "magic_link"));
    let other = rt.block_on(sign(&http, &serve, "magic_link"));
    let access = rt.block_on(sign(&http, &serve, "access_token"));

    // Another session holds magic_link's keyring lock, as a replica in the
    // middle of a slow change (an RSA-4096 or HSM key) would.
    let mut holder = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    holder
        .batch_execute(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('signet keyring magic_link', 0))",
        )
        .unwrap();
    let created = |serve: &ServeProcess| {
        serve
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("\"key created\"") && l.contains("\"magic_link\""))
            .count()
    };
    let created_before = created(&serve);
    // This replica's forced rotation of magic_link waits for it.
    let rotation = {
        let http = http.clone();
        let admin = serve.admin;
        rt.spawn(async move {
            http.post(format!("http://{admin}/v1/keys/magic_link/rotate"))
                .bearer_auth(ADMIN)
                .json(&json!({"force": true}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let mut watcher = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let waiting = Instant::now();
    while !replica_waits_for_the_lock(&mut watcher) {
        assert!(
            waiting.elapsed() < Duration::from_secs(5),
            "the rotation never waited for the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // The new key was made before the lock was asked for.
    assert_eq!(
        created(&serve),
        created_before + 1,
        "the successor is made before the change waits for the lock"
    );

    // Meanwhile the store's other users on that replica are not held up.
    let timed = |path: &'static str, body: Value| {
        let started = Instant::now();
        let status = rt
            .block_on(post(&http, &serve, path, SIGNER, body))
            .status();
        (status, started.elapsed())
    };
    let (status, took) = timed(
        "/v1/verify",
        json!({"purpose": "magic_link", "token": other}),
    );
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_millis(100),
        "single-use verify took {took:?}"
    );
    let (status, took) = timed(
        "/v1/tokens/consume",
        json!({"purpose": "magic_link", "token": magic}),
    );
    assert_eq!(status, 200);
    assert!(took < Duration::from_millis(100), "consume took {took:?}");
    let (status, took) = timed(
        "/v1/tokens/revoke",
        json!({"purpose": "access_token", "token": access}),
    );
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_millis(100),
        "token revocation took {took:?}"
    );
    assert!(
        replica_waits_for_the_lock(&mut watcher),
        "the rotation stopped waiting before the requests were timed"
    );

    // The lock is released: the rotation goes through.
    holder.batch_execute("COMMIT").unwrap();
    assert_eq!(rt.block_on(rotation).unwrap(), 200);
    no_panic(&serve.stop());
}

async fn get(http: &reqwest::Client, at: std::net::SocketAddr, path: &str) -> reqwest::Response {
    http.get(format!("http://{at}{path}")).send().await.unwrap()
}

/// The body and ETag of a public document.
async fn document(http: &reqwest::Client, serve: &ServeProcess, path: &str) -> (Vec<u8>, String) {
    let r = get(http, serve.public, path).await;
    assert_eq!(r.status(), 200, "{path}");
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.bytes().await.unwrap().to_vec(), etag)
}

/// A write that needs the store answers 503 problem+json with Retry-After.
fn unavailable(r: &reqwest::Response, what: &str) {
    assert_eq!(r.status(), 503, "{what}");
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    assert!(r.headers().contains_key("retry-after"), "{what}");
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_replica_serves_through_a_database_outage_and_catches_up_after_a_restart() {
    let own = pg::OwnCluster::start();
    let url = own.database("outage");
    let homes = [Home::new(CONFIG), Home::new(CONFIG)];
    let mut env = replica_env(&url);
    env.push(("SIGNET_STORE_POLL_INTERVAL", "1s"));
    let a = ServeProcess::start(&homes[0], &env);
    let b = ServeProcess::start(&homes[1], &env);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = client();
    rt.block_on(async {
        let jwks = document(&http, &a, "/.well-known/jwks.json").await;
        let discovery = document(&http, &a, "/.well-known/openid-configuration").await;
        let access = sign(&http, &a, "access_token").await;
        let magic = sign(&http, &a, "magic_link").await;

        own.stop();
        let outage = Instant::now();
        let mut rounds = 0;
        while outage.elapsed() < Duration::from_secs(20) {
            // Served from memory: the same bytes and ETag.
            assert_eq!(document(&http, &a, "/.well-known/jwks.json").await, jwks);
            assert_eq!(
                document(&http, &a, "/.well-known/openid-configuration").await,
                discovery
            );
            let verified = post(
                &http,
                &a,
                "/v1/verify",
                SIGNER,
                json!({"purpose": "access_token", "token": access}),
            )
            .await;
            assert_eq!(verified.status(), 200);
            let signed = post(
                &http,
                &a,
                "/v1/tokens",
                SIGNER,
                json!({"purpose": "access_token"}),
            )
            .await;
            assert_eq!(signed.status(), 200, "signing goes on from memory");
            // What must write answers 503 at once, saying when to retry.
            let asked = Instant::now();
            let consumed = post(
                &http,
                &a,
                "/v1/tokens/consume",
                SIGNER,
                json!({"purpose": "magic_link", "token": magic}),
            )
            .await;
            unavailable(&consumed, "consume");
            let revoked = post(
                &http,
                &a,
                "/v1/tokens/revoke",
                SIGNER,
                json!({"purpose": "access_token", "token": access}),
            )
            .await;
            unavailable(&revoked, "token revocation");
            assert!(
                asked.elapsed() < Duration::from_secs(6),
                "refusals waited {:?}",
                asked.elapsed()
            );
            let ready = get(&http, a.public, "/readyz").await;
            assert_eq!(
                ready.status(),
                200,
                "an outage leaves replicas in the load balancer"
            );
            let body: Value = ready.json().await.unwrap();
            // Reported from the first poll after the stop (1 s).
            if outage.elapsed() > Duration::from_secs(3) {
                assert_eq!(body["status"], "degraded", "{body}");
            }
            rounds += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(rounds >= 10);

        // The database comes back: both replicas reconnect by themselves.
        own.start_again();
        for r in [&a, &b] {
            let back = Instant::now();
            loop {
                let body: Value = get(&http, r.public, "/readyz").await.json().await.unwrap();
                if body["status"] == "ready" {
                    break;
                }
                assert!(back.elapsed() < Duration::from_secs(15), "{body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let consumed = post(
            &http,
            &a,
            "/v1/tokens/consume",
            SIGNER,
            json!({"purpose": "magic_link", "token": magic}),
        )
        .await;
        assert_eq!(consumed.status(), 200);
        // A rotation on b after the restart reaches a within poll_interval
        // (LISTEN reconnected, or the next poll).
        let rotated = post(
            &http,
            &b,
            "/v1/keys/access_token/rotate",
            ADMIN,
            json!({"force": true}),
        )
        .await;
        assert_eq!(rotated.status(), 200);
        let wanted = document(&http, &b, "/.well-known/jwks.json").await.0;
        let changed = Instant::now();
        while document(&http, &a, "/.well-known/jwks.json").await.0 != wanted {
            assert!(
                changed.elapsed() < Duration::from_secs(2),
                "the rotation did not reach the other replica within poll_interval + 1 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "pg_fleet: after the restart a rotation reached the other replica in {} ms",
            changed.elapsed().as_millis()
        );
    });
    no_panic(&a.stop());
    no_panic(&b.stop());
}
