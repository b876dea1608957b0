//! The admin API's request bodies, through the real router with a signer's
//! token: signing, verification, consuming and revoking tokens. The first
//! byte picks the route, the rest is the body. Properties: nothing panics,
//! no answer is a 5xx, and every refusal is problem+json.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use libfuzzer_sys::fuzz_target;
use signet::clock::{ManualClock, UnixTime};
use signet::http::{AdminTokens, AppState, admin_router};
use signet::service::KeyService;
use signet::storage::FileStore;
use signet::storage::seal::MasterKeys;
use tower::ServiceExt;

const SIGNER: &str = "fuzz-signer-token-0123456789abcdef";
const ROUTES: [&str; 4] = ["/v1/tokens", "/v1/verify", "/v1/tokens/consume", "/v1/tokens/revoke"];

struct Server {
    runtime: tokio::runtime::Runtime,
    router: Router,
    _dir: tempfile::TempDir,
}

static SERVER: LazyLock<Server> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let now = UnixTime(1_795_910_400);
    let text = format!(
        "[store]\npath = {:?}\n[purposes.access_token]\nalgorithms = [\"EdDSA\", \"ES256\"]\n",
        dir.path().join("keys").display().to_string()
    );
    let config = signet::fuzzing::config(&text, now).expect("the configuration");
    let store = Arc::new(FileStore::open(dir.path().join("keys")).expect("the store"));
    let master = MasterKeys::parse("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").expect("master key");
    let service = KeyService::open(Arc::new(config), store, master, Arc::new(ManualClock::new(now)))
        .expect("the service");
    service.tick().expect("bootstrap");
    let tokens = AdminTokens::parse(&format!("fuzz:signer:{SIGNER}")).expect("tokens");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let router = admin_router(AppState::new(Arc::new(service), tokens));
    Server {
        runtime,
        router,
        _dir: dir,
    }
});

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let server = &*SERVER;
    let mut request = Request::post(ROUTES[usize::from(which) % ROUTES.len()])
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {SIGNER}"))
        .body(Body::from(body.to_vec()))
        .expect("a request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let response = server
        .runtime
        .block_on(server.router.clone().oneshot(request))
        .expect("infallible");
    let status = response.status();
    assert!(status.as_u16() < 500, "{status} for {:?}", String::from_utf8_lossy(body));
    if !status.is_success() {
        let kind = response.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes().to_vec());
        assert_eq!(kind.as_deref(), Some(&b"application/problem+json"[..]), "{status}");
    }
});
