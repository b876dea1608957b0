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
fn a_postgres_backed_server_stops_cleanly_on_sigterm_every_time() {
    let Some(url) = pg::database() else { return };
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

/// Whether a session of `application_name` 'signet …' waits for an advisory lock.
fn replica_waits_for_the_lock(admin: &mut postgres::Client) -> bool {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'signet %' AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
        > 0
}

#[test]
fn requests_that_touch_the_store_answer_while_a_keyring_change_waits_for_the_lock() {
    let Some(url) = pg::database() else { return };
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
