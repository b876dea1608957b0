//! The HTTP API: a public router (JWKS, discovery, health) and an admin
//! router (signing and key management with bearer tokens; metrics, which
//! show admin activity, without).
//!
//! Both are plain values built from an [`AppState`], so tests drive them with
//! `tower::ServiceExt::oneshot` or serve them on `127.0.0.1:0`.

mod admin;
pub mod auth;
mod error;
mod gate;
mod public;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;

pub use auth::{AdminTokens, AuthFailures, Role};
pub use error::ApiError;
pub use gate::SignGate;

use crate::metrics::Metrics;
use crate::service::KeyService;

/// What every handler reads. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// The shared parts of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// Keyrings, signing and verification.
    pub service: Arc<KeyService>,
    /// Admin API tokens.
    pub tokens: AdminTokens,
    /// Prometheus metrics (shared with the scheduler).
    pub metrics: Arc<Metrics>,
    /// Failed admin authentications by client address.
    pub failures: AuthFailures,
    /// Bounds concurrent signing.
    pub signing: SignGate,
    discovery: Bytes,
    cache_control: HeaderValue,
    revocations_cache_control: HeaderValue,
}

impl AppState {
    /// Builds the state; renders the discovery document once.
    pub fn new(service: Arc<KeyService>, tokens: AdminTokens) -> AppState {
        let config = service.config();
        let metrics = Metrics::new(
            config,
            service.store_errors().clone(),
            service.ignored_entries().clone(),
        );
        #[cfg(feature = "pkcs11")]
        let metrics = match service.token() {
            Some(token) => metrics.with_token(token),
            None => metrics,
        };
        let metrics = Arc::new(metrics);
        let discovery = Bytes::from(public::discovery_document(config));
        let cache_control = HeaderValue::from_str(&format!(
            "public, max-age={}",
            config.jwks.max_age.as_secs()
        ))
        .unwrap_or(HeaderValue::from_static("public, max-age=300"));
        let revocations_cache_control = HeaderValue::from_str(&format!(
            "public, max-age={}",
            config.jwks.revocations_max_age.as_secs()
        ))
        .unwrap_or(HeaderValue::from_static("public, max-age=15"));
        let signing = SignGate::new(
            config.server.limits.signing_concurrency,
            config.server.limits.signing_queue,
        );
        AppState(Arc::new(Inner {
            service,
            tokens,
            metrics,
            failures: AuthFailures::default(),
            signing,
            discovery,
            cache_control,
            revocations_cache_control,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The public router: JWKS, per-purpose JWKS, discovery and health.
pub fn public_router(state: AppState) -> Router {
    public::routes()
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found_public)
        .with_state(state)
}

/// The admin router: signing, verification, key management and metrics.
pub fn admin_router(state: AppState) -> Router {
    admin::routes(state.clone())
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found_admin)
        .with_state(state)
}

/// A route of the other listener names where it is served (the admin API
/// is never on the public port; the JWKS is not on the admin one).
async fn not_found_public(State(state): State<AppState>, uri: Uri) -> ApiError {
    let admin_route =
        uri.path().starts_with("/v1/") || matches!(uri.path(), "/metrics" | "/openapi.json");
    not_found(
        &state,
        admin_route.then_some(("admin", state.service.config().server.admin_addr)),
    )
}

async fn not_found_admin(State(state): State<AppState>, uri: Uri) -> ApiError {
    let public_route =
        uri.path().starts_with("/.well-known/") || matches!(uri.path(), "/healthz" | "/readyz");
    not_found(
        &state,
        public_route.then_some(("public", state.service.config().server.public_addr)),
    )
}

fn not_found(state: &AppState, other: Option<(&str, std::net::SocketAddr)>) -> ApiError {
    state.metrics.request(None, 404);
    ApiError::NotFound(match other {
        Some((name, addr)) => format!(
            "no such route on this listener: it is served by the {name} listener (server.{name}_addr, {addr})"
        ),
        None => "no such route".into(),
    })
}

/// Counts and logs (at debug) each request once. Never logs headers.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = req.method().clone();
    let started = tokio::time::Instant::now();
    let response = error::as_problem(next.run(req).await);
    let status = response.status().as_u16();
    state.metrics.request(route.as_deref(), status);
    tracing::debug!(%method, route = route.as_deref().unwrap_or("-"), status, elapsed_us = started.elapsed().as_micros() as u64, "request");
    response
}
