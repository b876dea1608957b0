//! Revocation that reaches cached verifiers, and single-use tokens, through
//! the real server and the real verifier, with time moved by a manual clock.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use signet::clock::UnixTime;
use signet::verifier::{Verifier, VerifyError};

use crate::common::Home;
use crate::common::server::{ADMIN, SIGNER, ServeProcess, TOKENS, TestServer, client};
use crate::server::T0;

const CONFIG: &str = "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\n[purposes.magic_link]\nalgorithms = [\"EdDSA\"]\n";

fn verifier(s: &TestServer) -> Verifier {
    Verifier::builder(format!("{}/.well-known/jwks.json", s.public))
        .issuer(s.public.as_str())
        .purpose("access_token")
        .clock(Arc::new(s.clock.clone()))
        .build()
        .unwrap()
}

async fn sign(s: &TestServer, purpose: &str) -> (String, String) {
    let r = s.sign(json!({"purpose": purpose})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    (
        v["token"].as_str().unwrap().to_owned(),
        v["kid"].as_str().unwrap().to_owned(),
    )
}

async fn revocations(s: &TestServer) -> Value {
    s.get("/.well-known/signet/revocations.json")
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_revoked_key_is_refused_by_a_verifier_that_cached_it_within_the_revocation_max_age() {
    let s = TestServer::start(CONFIG, T0).await;
    let v = verifier(&s);
    let (token, kid) = sign(&s, "access_token").await;
    v.verify::<Value>(&token).await.unwrap();

    let r = s
        .post(&format!("/v1/keys/{kid}/revoke"), Some(ADMIN), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    // Discovery names the document.
    let discovery: Value = s
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["signet_revocations_uri"],
        format!("{}/.well-known/signet/revocations.json", s.public)
    );
    // The document lists it at once, cached for jwks.revocations_max_age.
    let doc = s.get("/.well-known/signet/revocations.json").await;
    assert_eq!(doc.headers()["cache-control"], "public, max-age=15");
    let doc: Value = doc.json().await.unwrap();
    assert_eq!(doc["revoked_keys"][0]["kid"], kid.as_str());
    // Inside the verifier's copy of the document (15 s) the cached key still
    // verifies: that is the bound, not 5 minutes of JWKS caching.
    s.clock.advance(Duration::from_secs(14));
    v.verify::<Value>(&token).await.unwrap();
    s.clock.advance(Duration::from_secs(2));
    let err = v.verify::<Value>(&token).await.unwrap_err();
    assert!(
        matches!(&err, VerifyError::RevokedKey(k) if *k == kid),
        "{err:?}"
    );

    // Still refused while the JWKS is served stale from the cache (the
    // server gone, the JWKS past its 5-minute max-age) from the last copy
    // of the document.
    let (clock, public) = (s.clock.clone(), s.public.clone());
    s.stop().await;
    clock.advance(Duration::from_secs(400));
    let err = v.verify::<Value>(&token).await.unwrap_err();
    assert!(
        matches!(err, VerifyError::RevokedKey(_)),
        "{err:?} ({public} is down)"
    );
}

#[tokio::test]
async fn an_unreachable_revocation_document_serves_its_last_copy_until_the_stale_limit_then_fails_closed()
 {
    // Tokens that outlive the stale limit, to see the document's bound.
    let s = TestServer::start(
        "[purposes.access_token]\nalgorithms = [\"EdDSA\"]\ntoken_ttl = \"2h\"\n",
        T0,
    )
    .await;
    let v = verifier(&s);
    let (token, _) = sign(&s, "access_token").await;
    v.verify::<Value>(&token).await.unwrap();
    let clock = s.clock.clone();
    s.stop().await;
    // The document was fresh until +15 s, then usable for the stale limit
    // (1 h). The JWKS (fresh 300 s, stale 1 h more) outlives it.
    clock.set(UnixTime(T0.0 + 15 + 3599));
    v.verify::<Value>(&token).await.unwrap();
    clock.set(UnixTime(T0.0 + 15 + 3601));
    let err = v.verify::<Value>(&token).await.unwrap_err();
    assert!(
        matches!(&err, VerifyError::RevocationsUnavailable(why) if why.contains("revocations.json")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_by_the_server_at_once_and_by_verifiers_within_the_max_age() {
    let s = TestServer::start(CONFIG, T0).await;
    let v = verifier(&s);
    let (token, _) = sign(&s, "access_token").await;
    let (other, _) = sign(&s, "access_token").await;
    v.verify::<Value>(&token).await.unwrap();
    let empty = revocations(&s).await;

    // Revoked by a signer, given whole.
    let r = s
        .post(
            "/v1/tokens/revoke",
            Some(SIGNER),
            json!({"purpose": "access_token", "token": token}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let listed: Value = r.json().await.unwrap();
    let jti = listed["jti"].as_str().unwrap().to_owned();
    let r = s.verify("access_token", &json!(token)).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("revoked"));
    assert_eq!(s.verify("access_token", &json!(other)).await.status(), 200);

    s.clock.advance(Duration::from_secs(16));
    let err = v.verify::<Value>(&token).await.unwrap_err();
    assert!(
        matches!(&err, VerifyError::RevokedToken(j) if *j == jti),
        "{err:?}"
    );
    v.verify::<Value>(&other).await.unwrap();

    // A jti that is not one signet issues is refused with the reason.
    let r = s
        .post(
            "/v1/tokens/revoke",
            Some(SIGNER),
            json!({"purpose": "access_token", "jti": "../../etc"}),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("base64url"));

    // Once the token has expired (10 min, plus the leeway), its entry is
    // pruned and the document is what it was.
    s.clock.advance(Duration::from_secs(600 + 60));
    s.service.prune_tokens().unwrap();
    assert_eq!(revocations(&s).await, empty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_32_concurrent_consumes_of_one_link_exactly_one_succeeds() {
    let s = TestServer::start(CONFIG, T0).await;
    let (link, _) = sign(&s, "magic_link").await;
    let body = json!({"purpose": "magic_link", "token": link});
    // All 32 in flight at once (the server consumes on its blocking pool).
    let start = Arc::new(tokio::sync::Barrier::new(32));
    let attempts: Vec<_> = (0..32)
        .map(|_| {
            let (http, url, body, start) = (
                s.http.clone(),
                format!("{}/v1/tokens/consume", s.admin),
                body.clone(),
                start.clone(),
            );
            tokio::spawn(async move {
                start.wait().await;
                http.post(url)
                    .bearer_auth(SIGNER)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ok = 0;
    for a in attempts {
        let r = a.await.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            409 => {
                let problem: Value = r.json().await.unwrap();
                assert_eq!(problem["type"], "urn:signet:problem:already-used");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1, "exactly one consume succeeds");
    // /v1/verify refuses it too: a single-use token is used once.
    assert_eq!(s.verify("magic_link", &json!(link)).await.status(), 409);

    // Another purpose's token cannot be consumed as a magic link.
    let (access, _) = sign(&s, "access_token").await;
    let r = s
        .post(
            "/v1/tokens/consume",
            Some(SIGNER),
            json!({"purpose": "magic_link", "token": access}),
        )
        .await;
    assert_eq!(r.status(), 401);
    // A purpose that is not single-use has nothing to consume.
    let r = s
        .post(
            "/v1/tokens/consume",
            Some(SIGNER),
            json!({"purpose": "access_token", "token": access}),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("single_use"));
    let metrics = s.get_admin("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            "signet_token_events_total{purpose=\"magic_link\",event=\"replay_refused\"} 32"
        ),
        "{metrics}"
    );
}

#[test]
fn a_consumed_link_stays_consumed_across_a_restart_of_the_server() {
    let home = Home::new(CONFIG);
    let env = [
        ("SIGNET_ADMIN_TOKENS", TOKENS),
        ("SIGNET_ISSUER", "https://auth.example.test"),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = client();
    let consume = |serve: &ServeProcess, link: &str| {
        let req = http
            .post(format!("http://{}/v1/tokens/consume", serve.admin))
            .bearer_auth(SIGNER)
            .json(&json!({"purpose": "magic_link", "token": link}))
            .send();
        rt.block_on(req).unwrap().status().as_u16()
    };
    let serve = ServeProcess::start(&home, &env);
    let signed: Value = rt.block_on(async {
        http.post(format!("http://{}/v1/tokens", serve.admin))
            .bearer_auth(SIGNER)
            .json(&json!({"purpose": "magic_link"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let link = signed["token"].as_str().unwrap().to_owned();
    assert_eq!(consume(&serve, &link), 200);
    serve.stop();
    let serve = ServeProcess::start(&home, &env);
    assert_eq!(consume(&serve, &link), 409, "consumed before the restart");
    serve.stop();
}

#[tokio::test]
async fn consumed_ids_are_pruned_once_their_tokens_expire() {
    let s = TestServer::start(CONFIG, T0).await;
    let consumed_dir = s.home.keys().join("tokens/consumed/magic_link");
    let before = std::fs::read_dir(s.home.keys()).unwrap().count();
    const N: usize = 10_000;
    let service = s.service.clone();
    tokio::task::spawn_blocking(move || {
        for _ in 0..N {
            let link = service
                .sign(signet::service::SignRequest {
                    purpose: "magic_link".into(),
                    ..Default::default()
                })
                .unwrap()
                .token;
            service.consume("magic_link", &link).unwrap();
        }
    })
    .await
    .unwrap();
    assert_eq!(std::fs::read_dir(&consumed_dir).unwrap().count(), N);
    // Past exp (15 min) plus the leeway, the next check drops them all.
    s.clock.advance(Duration::from_secs(15 * 60 + 60 + 1));
    assert_eq!(s.service.prune_tokens().unwrap(), N);
    assert_eq!(std::fs::read_dir(&consumed_dir).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(s.home.keys()).unwrap().count(),
        before + 1
    );
}
