//! A JWKS server on 127.0.0.1:0 whose key set the test controls and which
//! counts its requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};
use signet::keys::jwk::b64;
use signet::keys::{Algorithm, PublicJwk, SigningKey, generate};
use tokio::sync::oneshot;

#[derive(Default)]
pub struct Shared {
    pub body: Mutex<String>,
    pub requests: AtomicUsize,
    pub not_modified: AtomicUsize,
    /// Artificial latency, to make concurrent callers overlap.
    pub delay: Mutex<Duration>,
    /// The revocation document served (none revoked unless a test says).
    pub revocations: Mutex<String>,
    pub revocation_requests: AtomicUsize,
}

pub struct JwksServer {
    pub url: String,
    pub shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn etag(body: &str) -> String {
    format!(
        "\"{}\"",
        b64(&ring::digest::digest(&ring::digest::SHA256, body.as_bytes()).as_ref()[..12])
    )
}

async fn serve(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let delay = *s.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let body = s.body.lock().unwrap().clone();
    let tag = etag(&body);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(tag.as_str())
    {
        s.not_modified.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CACHE_CONTROL, "public, max-age=300".to_owned()),
            (header::ETAG, tag),
        ],
        body,
    )
        .into_response()
}

/// signet's revocation document, as the test set it, cached for 15 s.
async fn serve_revocations(State(s): State<Arc<Shared>>) -> Response {
    s.revocation_requests.fetch_add(1, Ordering::SeqCst);
    let body = s.revocations.lock().unwrap().clone();
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CACHE_CONTROL, "public, max-age=15".to_owned()),
            (header::ETAG, etag(&body)),
        ],
        body,
    )
        .into_response()
}

impl JwksServer {
    pub async fn start(keys: &[&SigningKey]) -> JwksServer {
        let shared = Arc::new(Shared::default());
        let server = JwksServer {
            url: String::new(),
            shared: shared.clone(),
            stop: None,
            task: None,
        };
        server.set_keys(keys);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        *shared.revocations.lock().unwrap() =
            json!({"revoked_keys": [], "revoked_tokens": []}).to_string();
        let app = Router::new()
            .route("/jwks", get(serve))
            .route(signet::verifier::REVOCATIONS_PATH, get(serve_revocations))
            .with_state(shared);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        JwksServer {
            url,
            stop: Some(tx),
            task: Some(task),
            ..server
        }
    }

    pub fn set_keys(&self, keys: &[&SigningKey]) {
        let jwks: Vec<&PublicJwk> = keys.iter().map(|k| k.public_jwk()).collect();
        *self.shared.body.lock().unwrap() = json!({ "keys": jwks }).to_string();
    }

    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Stops listening: later connections are refused.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

pub fn key(alg: Algorithm) -> SigningKey {
    SigningKey::from_pkcs8(alg, &generate(alg, 2048).unwrap()).unwrap()
}

/// A compact JWS with exactly this header and these claims.
pub fn mint(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&sig))
}

pub fn std_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
