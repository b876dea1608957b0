//! Admin routes: `signer` tokens sign and verify; `admin` tokens also manage keys.

use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::JsonBody;
use super::{ApiError, AppState, Role};
use crate::config::parse_duration;
use crate::keys::token::VerifyError;
use crate::keys::{Algorithm, KeyFamily};
use crate::metrics::TokenEvent;
use crate::service::TokenError;
use crate::service::{KeyInfo, SignRequest, SignedToken, Verified};

/// Request bodies larger than this are refused with 413.
pub(crate) const MAX_BODY: usize = 64 * 1024;

pub(super) fn routes(state: AppState) -> Router<AppState> {
    let signer = Router::new()
        .route("/v1/tokens", post(sign))
        .route("/v1/verify", post(verify))
        .route("/v1/tokens/consume", post(consume))
        .route("/v1/tokens/revoke", post(revoke_token))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_signer,
        ));
    let admin = Router::new()
        .route("/v1/keys", get(list))
        .route("/v1/keys/{purpose}/rotate", post(rotate))
        .route("/v1/keys/{kid}/revoke", post(revoke))
        .route_layer(middleware::from_fn_with_state(state, require_admin));
    // Metrics need no token: scrapers reach the admin listener, the public never does.
    let open = Router::new()
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi));
    signer
        .merge(admin)
        .merge(open)
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// The API's contract (OpenAPI 3.1), as kept in the repository.
pub(crate) const OPENAPI: &str = include_str!("../../docs/openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .render(&state.service.snapshot(), state.service.now());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn authorize(state: &AppState, req: &Request, needed: Role) -> Result<(), ApiError> {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let now = state.service.now();
    if let Some(wait) = client.and_then(|ip| state.failures.blocked(ip, now)) {
        return Err(ApiError::TooManyRequests(wait));
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::keys::token::bearer_credentials);
    let Some((name, role)) = presented.and_then(|p| state.tokens.authenticate(p.trim())) else {
        state.metrics.auth_failure();
        if let Some(ip) = client {
            state.failures.record(ip, now);
        }
        // The presented token is never logged.
        tracing::warn!(client = ?client, "admin authentication failed");
        return Err(ApiError::Unauthorized);
    };
    if needed == Role::Admin && role != Role::Admin {
        tracing::warn!(token = name, "a signer token called an admin route");
        return Err(ApiError::Forbidden);
    }
    Ok(())
}

async fn require_signer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match authorize(&state, &req, Role::Signer) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match authorize(&state, &req, Role::Admin) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// A lifetime: `"5m"` or a number of seconds.
#[derive(Deserialize)]
#[serde(untagged)]
enum Ttl {
    Seconds(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignBody {
    purpose: String,
    #[serde(default)]
    claims: Map<String, Value>,
    ttl: Option<Ttl>,
    alg: Option<String>,
}

async fn sign(
    State(state): State<AppState>,
    body: JsonBody<SignBody>,
) -> Result<Json<SignedToken>, ApiError> {
    let Json(body) = body?;
    let invalid = |msg: String| ApiError::Invalid(StatusCode::UNPROCESSABLE_ENTITY, msg);
    let ttl = match body.ttl {
        None => None,
        Some(Ttl::Seconds(s)) => Some(Duration::from_secs(s)),
        Some(Ttl::Text(t)) => Some(parse_duration("ttl", &t).map_err(|e| invalid(e.to_string()))?),
    };
    let alg = body
        .alg
        .map(|a| a.parse::<Algorithm>())
        .transpose()
        .map_err(|e| invalid(format!("alg: {e}")))?;
    let purpose = body.purpose.clone();
    // RSA (a private-key operation of about half a millisecond) and every
    // call into a PKCS#11 token (blocking, perhaps a network round trip)
    // leave the async workers; the others sign in place. All wait for the gate.
    let heavy = state.service.token().is_some()
        || alg
            .or_else(|| {
                let config = state.service.config();
                config.purposes.get(&purpose).map(|p| p.algorithms[0])
            })
            .is_some_and(|a| a.family() == KeyFamily::Rsa);
    let service = state.service.clone();
    let request = SignRequest {
        purpose: body.purpose,
        claims: body.claims,
        ttl,
        alg,
    };
    let signed = state
        .signing
        .run(heavy, move || service.sign(request))
        .await??;
    state.metrics.signed(&purpose, signed.alg);
    Ok(Json(signed))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    purpose: String,
    token: String,
}

async fn verify(
    State(state): State<AppState>,
    body: JsonBody<VerifyBody>,
) -> Result<Json<Verified>, ApiError> {
    let Json(body) = body?;
    if let Err(e) = state.service.config().purpose(&body.purpose) {
        return Err(ApiError::Invalid(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.to_string(),
        ));
    }
    let single_use = state
        .service
        .config()
        .purposes
        .get(&body.purpose)
        .is_some_and(|p| p.single_use);
    // A single-use purpose's check reads the store: off the async workers.
    let result = if single_use {
        let (service, purpose, token) = (state.service.clone(), body.purpose.clone(), body.token);
        tokio::task::spawn_blocking(move || service.verify(&purpose, &token))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
    } else {
        state.service.verify(&body.purpose, &body.token)
    };
    state.metrics.verified(&body.purpose, result.is_ok());
    if let Ok(Verified {
        legacy_key: Some(label),
        ..
    }) = &result
    {
        state.metrics.legacy_verified(&body.purpose, label);
    }
    if matches!(result, Err(VerifyError::AlreadyUsed)) {
        state
            .metrics
            .token_event(&body.purpose, TokenEvent::ReplayRefused);
    }
    result.map(Json).map_err(ApiError::InvalidToken)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeTokenBody {
    purpose: String,
    token: Option<String>,
    jti: Option<String>,
}

/// Revokes one token, given whole or by `jti`: listed in the revocation
/// document until it expires. Signers may call it (they issue the tokens).
async fn revoke_token(
    State(state): State<AppState>,
    body: JsonBody<RevokeTokenBody>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let service = state.service.clone();
    let purpose = body.purpose.clone();
    let entry = tokio::task::spawn_blocking(move || {
        service.revoke_token(&body.purpose, body.token.as_deref(), body.jti.as_deref())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    state.metrics.token_event(&purpose, TokenEvent::Revoked);
    Ok(Json(serde_json::json!({
        "purpose": entry.purpose,
        "jti": entry.jti,
        "listed_until": entry.exp.0 + state.service.config().leeway.as_secs(),
    })))
}

/// Verifies a single-use token and records it as used, atomically: of two
/// concurrent consumes of one token exactly one gets 200, the other 409.
async fn consume(
    State(state): State<AppState>,
    body: JsonBody<VerifyBody>,
) -> Result<Json<Verified>, ApiError> {
    let Json(body) = body?;
    let service = state.service.clone();
    let purpose = body.purpose.clone();
    let result = tokio::task::spawn_blocking(move || service.consume(&body.purpose, &body.token))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match &result {
        Ok(_) => state.metrics.token_event(&purpose, TokenEvent::Consumed),
        Err(TokenError::Invalid(VerifyError::AlreadyUsed)) => state
            .metrics
            .token_event(&purpose, TokenEvent::ReplayRefused),
        Err(_) => {}
    }
    Ok(Json(result?))
}

async fn list(State(state): State<AppState>) -> Json<Vec<KeyInfo>> {
    Json(state.service.keys_of(None))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    force: bool,
}

async fn rotate(
    State(state): State<AppState>,
    Path(purpose): Path<String>,
    body: Option<Json<RotateBody>>,
) -> Result<Json<Vec<KeyInfo>>, ApiError> {
    let force = body.map(|Json(b)| b.force).unwrap_or_default();
    let service = state.service.clone();
    let p = purpose.clone();
    // Key generation (RSA above all) runs on the blocking pool.
    let result = tokio::task::spawn_blocking(move || service.rotate(Some(&p), force))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    state.metrics.rotation(&purpose, result.is_ok());
    Ok(Json(result?))
}

async fn revoke(
    State(state): State<AppState>,
    Path(kid): Path<String>,
) -> Result<Json<Vec<KeyInfo>>, ApiError> {
    let service = state.service.clone();
    let result = tokio::task::spawn_blocking(move || service.revoke(&kid))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(result?))
}
