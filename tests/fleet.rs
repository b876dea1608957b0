//! Three `signet serve` replicas on one PostgreSQL database, on a schedule
//! fast enough to cross real rotation boundaries in a test: a boundary every
//! 6 s, tokens living 4 s, every cache and poll 1 s. The figures the README
//! quotes for a fleet come from here (`--nocapture` prints them).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::common::server::{ADMIN, SIGNER, ServeProcess, TOKENS, client};
use crate::common::{Home, pg};

const PERIOD: u64 = 6;
const CONFIG: &str = "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\nrotate = \"*/6 * * * * *\"\ntoken_ttl = \"4s\"\n[purposes.magic_link]\nalgorithms = [\"EdDSA\"]\nrotate = \"*/6 * * * * *\"\ntoken_ttl = \"4s\"\n[purposes.refresh_token]\nenabled = false\n[purposes.reset_password_link]\nenabled = false\n";

fn fleet_env(url: &str) -> Vec<(&str, &str)> {
    vec![
        ("SIGNET_STORE_KIND", "postgres"),
        ("SIGNET_DATABASE_URL", url),
        ("SIGNET_ADMIN_TOKENS", TOKENS),
        ("SIGNET_ISSUER", "https://auth.example.test"),
        ("SIGNET_LEEWAY", "1s"),
        ("SIGNET_JWKS_MAX_AGE", "1s"),
        ("SIGNET_JWKS_REVOCATIONS_MAX_AGE", "1s"),
        ("SIGNET_STORE_POLL_INTERVAL", "1s"),
        ("SIGNET_STORE_CLOCK_SKEW", "1s"),
    ]
}

fn wall() -> f64 {
    #[allow(clippy::disallowed_methods)] // the replicas' cron runs on the wall clock
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Sleeps until `offset` seconds past the next boundary.
async fn after_next_boundary(offset: f64) {
    let now = wall();
    let next = ((now / PERIOD as f64).floor() + 1.0) * PERIOD as f64;
    tokio::time::sleep(Duration::from_secs_f64(next + offset - now)).await;
}

async fn post(
    http: &reqwest::Client,
    at: std::net::SocketAddr,
    path: &str,
    token: &str,
    body: Value,
) -> reqwest::Response {
    http.post(format!("http://{at}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn jwks(http: &reqwest::Client, r: &ServeProcess) -> Vec<u8> {
    http.get(format!("http://{}/.well-known/jwks.json", r.public))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// Every kid the keyring of `purpose` held, by generation, from the
/// history, and when each kid activates.
fn history(url: &str, purpose: &str) -> (Vec<BTreeSet<String>>, BTreeMap<String, u64>) {
    let mut db = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let rows = db
        .query(
            "SELECT document FROM signet_keyring_history WHERE purpose = $1 ORDER BY generation",
            &[&purpose],
        )
        .unwrap();
    let mut activations = BTreeMap::new();
    let kids = rows
        .iter()
        .map(|r| {
            let doc: Value = serde_json::from_slice(r.get::<_, &[u8]>(0)).unwrap();
            doc["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| {
                    let kid = k["kid"].as_str().unwrap().to_owned();
                    activations.insert(kid.clone(), k["activates_at"].as_u64().unwrap());
                    kid
                })
                .collect()
        })
        .collect();
    (kids, activations)
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn three_replicas_rotate_once_per_boundary_agree_and_consume_once() {
    let url = pg::database();
    let homes: Vec<Home> = (0..3).map(|_| Home::new(CONFIG)).collect();
    let env = fleet_env(&url);
    let mut replicas: Vec<ServeProcess> =
        homes.iter().map(|h| ServeProcess::start(h, &env)).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = client();
    // Boundary 1 passes as scheduled (the bootstrap's successor may
    // activate at the boundary after, if the next one is nearer than the lead).
    rt.block_on(after_next_boundary(2.0));
    rt.block_on(after_next_boundary(2.0));
    // Boundary 2: another session holds access_token's lock across it, so
    // every replica's change waits inside it; one of them is killed there
    // (SIGKILL) and started again.
    let mut holder = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    rt.block_on(after_next_boundary(-1.0));
    holder
        .batch_execute(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('signet keyring access_token', 0))",
        )
        .unwrap();
    let mut watcher = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let since = Instant::now();
    while pg::waiting_for_keyring_lock(&mut watcher, "access_token") < 3 {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "the replicas never waited for the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    replicas.remove(2).kill();
    holder.batch_execute("COMMIT").unwrap();
    replicas.push(ServeProcess::start(&homes[2], &env));
    rt.block_on(async {
        // Boundary 3, then every replica serves the same bytes within
        // poll_interval + 1 s.
        after_next_boundary(0.0).await;
        let boundary = Instant::now();
        loop {
            let bodies = [
                jwks(&http, &replicas[0]).await,
                jwks(&http, &replicas[1]).await,
                jwks(&http, &replicas[2]).await,
            ];
            if bodies[0] == bodies[1] && bodies[1] == bodies[2] {
                break;
            }
            assert!(
                boundary.elapsed() < Duration::from_secs(2),
                "the replicas disagree 2 s after a boundary"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "fleet: 3 replicas served identical JWKS bytes {} ms after a boundary",
            boundary.elapsed().as_millis()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    });

    // Exactly one successor per boundary: every key but the bootstrap's
    // first activates at a boundary of its own, the boundaries follow each
    // other with no gap up to the pending key's, and at least three were
    // crossed.
    let (generations, activations) = history(&url, "access_token");
    let mut at: Vec<u64> = activations.values().copied().collect();
    at.sort_unstable();
    let scheduled: Vec<u64> = at.iter().copied().filter(|t| t % PERIOD == 0).collect();
    assert!(
        at.len() - scheduled.len() <= 1,
        "more than the bootstrap key off the schedule: {at:?}"
    );
    for pair in scheduled.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            PERIOD,
            "two successors for one boundary, or none for one: {at:?}"
        );
    }
    let crossed = scheduled.iter().filter(|t| (**t as f64) < wall()).count();
    assert!(crossed >= 3, "boundaries crossed: {at:?}");
    for pair in generations.windows(2) {
        assert!(
            pair[1].difference(&pair[0]).count() <= 1,
            "one change made two keys: {generations:?}"
        );
    }

    rt.block_on(async {
        // A revocation on one replica is refused by the others within poll_interval.
        let signed: Value = post(
            &http,
            replicas[1].admin,
            "/v1/tokens",
            SIGNER,
            json!({"purpose": "access_token"}),
        )
        .await
        .json()
        .await
        .unwrap();
        let token = signed["token"].as_str().unwrap().to_owned();
        let revoked = post(
            &http,
            replicas[0].admin,
            "/v1/tokens/revoke",
            SIGNER,
            json!({"purpose": "access_token", "token": token}),
        )
        .await;
        assert_eq!(revoked.status(), 200);
        let since = Instant::now();
        for r in &replicas[1..] {
            while post(
                &http,
                r.admin,
                "/v1/verify",
                SIGNER,
                json!({"purpose": "access_token", "token": token}),
            )
            .await
            .status()
                == 200
            {
                assert!(
                    since.elapsed() < Duration::from_secs(1),
                    "a revoked token verified a poll_interval later"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        eprintln!(
            "fleet: a token revoked on one replica was refused by the other two after {} ms",
            since.elapsed().as_millis()
        );

        // 32 concurrent consumes of one magic link, over the three replicas.
        let link: Value = post(
            &http,
            replicas[0].admin,
            "/v1/tokens",
            SIGNER,
            json!({"purpose": "magic_link"}),
        )
        .await
        .json()
        .await
        .unwrap();
        let link = link["token"].as_str().unwrap().to_owned();
        let admins: Vec<_> = replicas.iter().map(|r| r.admin).collect();
        let racers: Vec<_> = (0..32)
            .map(|i| {
                let (http, link, at) = (http.clone(), link.clone(), admins[i % 3]);
                tokio::spawn(async move {
                    post(
                        &http,
                        at,
                        "/v1/tokens/consume",
                        SIGNER,
                        json!({"purpose": "magic_link", "token": link}),
                    )
                    .await
                    .status()
                    .as_u16()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for r in racers {
            statuses.push(r.await.unwrap());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 409).count(),
            31,
            "{statuses:?}"
        );
    });
    for r in replicas {
        r.stop();
    }
}

/// A small deterministic generator for the kill instants.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn a_crash_loop_under_rotations_and_signing_loses_no_key_an_unexpired_token_needs() {
    let url = pg::database();
    let homes: Vec<Home> = (0..3).map(|_| Home::new(CONFIG)).collect();
    let env = fleet_env(&url);
    let mut replicas: Vec<ServeProcess> =
        homes.iter().map(|h| ServeProcess::start(h, &env)).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = client();
    let mut seed = 0x5167_6e65_7421_u64;
    let (mut tokens, mut kills) = (Vec::new(), 0);
    while kills < 50 {
        let victim = (next(&mut seed) % 3) as usize;
        let delay = Duration::from_millis(next(&mut seed) % 150);
        let survivors: Vec<_> = (0..3)
            .filter(|i| *i != victim)
            .map(|i| replicas[i].admin)
            .collect();
        let target = replicas[victim].admin;
        rt.block_on(async {
            // Forced rotations and signatures on the replica about to die
            // and on the others, until the kill.
            let work = async {
                loop {
                    for at in [target, survivors[0], survivors[1]] {
                        let _ = http
                            .post(format!("http://{at}/v1/keys/access_token/rotate"))
                            .bearer_auth(ADMIN)
                            .json(&json!({"force": true}))
                            .send()
                            .await;
                        if let Ok(r) = http
                            .post(format!("http://{at}/v1/tokens"))
                            .bearer_auth(SIGNER)
                            .json(&json!({"purpose": "access_token"}))
                            .send()
                            .await
                            && r.status() == 200
                            && let Ok(body) = r.json::<Value>().await
                        {
                            tokens.push((
                                body["token"].as_str().unwrap_or_default().to_owned(),
                                body["expires_at"].as_u64().unwrap_or(0),
                            ));
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(delay, work).await;
        });
        replicas.remove(victim).kill();
        kills += 1;
        replicas.insert(victim, ServeProcess::start(&homes[victim], &env));
    }
    // Every replica is ready, and every token not yet expired verifies at
    // each of them: no key it needs was lost.
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = wall() as u64;
        let live: Vec<_> = tokens.iter().filter(|(_, exp)| *exp > now + 1).collect();
        for r in &replicas {
            let ready: Value = http.get(format!("http://{}/readyz", r.public)).send().await.unwrap().json().await.unwrap();
            assert_eq!(ready["status"], "ready", "{ready}");
            for (token, _) in &live {
                let verified = post(&http, r.admin, "/v1/verify", SIGNER, json!({"purpose": "access_token", "token": token})).await;
                assert_eq!(verified.status(), 200, "a live token no longer verifies");
            }
        }
        eprintln!(
            "fleet: {kills} SIGKILLs during forced rotations and signing; {} tokens signed, the {} still live verify on all 3 replicas",
            tokens.len(),
            live.len()
        );
        assert!(!live.is_empty(), "no token was live at the end: the check checked nothing");
    });
    let listed = homes[0]
        .cmd(&["keys", "list"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    for r in replicas {
        r.stop();
    }
}

/// Sends `n` requests from 32 concurrent clients spread over `admins`,
/// each body made by `body(i)`; returns requests per second, all asserted 200.
async fn rate(
    http: &reqwest::Client,
    admins: &[std::net::SocketAddr],
    path: &'static str,
    n: usize,
    body: impl Fn(usize) -> Value,
) -> f64 {
    let bodies: Vec<Value> = (0..n).map(&body).collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let clients: Vec<_> = (0..32)
        .map(|c| {
            let (http, queue, at) = (http.clone(), queue.clone(), admins[c % admins.len()]);
            tokio::spawn(async move {
                loop {
                    let Some(body) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    // A full signing queue answers 503 Busy with Retry-After
                    // (other tests share the cores): a client retries.
                    let mut status = post(&http, at, path, SIGNER, body.clone()).await.status();
                    while status == 503 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        status = post(&http, at, path, SIGNER, body.clone()).await.status();
                    }
                    assert_eq!(status, 200, "{path}");
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Signing and consuming throughput of three replicas on PostgreSQL, next
/// to one server on the file store, from 32 concurrent clients on this
/// machine. Printed, not asserted: a test measures the build it runs in
/// (the README's figures are from `cargo test --release`).
#[test]
#[ignore = "needs PostgreSQL: run tests/setup.sh, then cargo test -- --include-ignored"]
fn fleet_throughput_of_signing_and_consuming_next_to_the_file_store() {
    let url = pg::database();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = client();
    let measure = |admins: &[std::net::SocketAddr]| {
        rt.block_on(async {
            let signed = rate(
                &http,
                admins,
                "/v1/tokens",
                2000,
                |_| json!({"purpose": "magic_link"}),
            )
            .await;
            // Tokens to consume, signed first.
            let mut links = Vec::new();
            for i in 0..1000 {
                let r: Value = post(
                    &http,
                    admins[i % admins.len()],
                    "/v1/tokens",
                    SIGNER,
                    json!({"purpose": "magic_link"}),
                )
                .await
                .json()
                .await
                .unwrap();
                links.push(r["token"].as_str().unwrap().to_owned());
            }
            let consumed = rate(
                &http,
                admins,
                "/v1/tokens/consume",
                1000,
                |i| json!({"purpose": "magic_link", "token": links[i]}),
            )
            .await;
            (signed, consumed)
        })
    };
    let homes: Vec<Home> = (0..3).map(|_| Home::new(CONFIG)).collect();
    let env = fleet_env(&url);
    let replicas: Vec<ServeProcess> = homes.iter().map(|h| ServeProcess::start(h, &env)).collect();
    let admins: Vec<_> = replicas.iter().map(|r| r.admin).collect();
    let (pg_sign, pg_consume) = measure(&admins);
    for r in replicas {
        r.stop();
    }
    let home = Home::new(CONFIG);
    let file_env: Vec<(&str, &str)> = env
        .iter()
        .copied()
        .filter(|(k, _)| {
            !k.starts_with("SIGNET_STORE_KIND") && !k.starts_with("SIGNET_DATABASE_URL")
        })
        .collect();
    let single = ServeProcess::start(&home, &file_env);
    let (file_sign, file_consume) = measure(&[single.admin]);
    single.stop();
    eprintln!(
        "fleet: EdDSA signing {pg_sign:.0}/s over 3 PostgreSQL replicas, {file_sign:.0}/s on one file-store server; consuming {pg_consume:.0}/s and {file_consume:.0}/s"
    );
}
