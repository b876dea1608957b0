//! Public routes: no authentication, no secrets.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::{ApiError, AppState};
use crate::config::Config;
use crate::service::Rendered;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
/// The JWKS of the purposes third parties verify; discovery's `jwks_uri`.
/// Purpose names have no `-`, so it cannot shadow a purpose's JWKS.
pub(crate) const THIRD_PARTY_JWKS: &str = "/.well-known/jwks/third-party.json";
use crate::verifier::REVOCATIONS_PATH as REVOCATIONS;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route(THIRD_PARTY_JWKS, get(third_party_jwks))
        .route("/.well-known/jwks/{purpose}", get(jwks_of))
        .route(REVOCATIONS, get(revocations))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
}

/// The OIDC discovery document (config-determined, rendered once). Its
/// `jwks_uri` holds only the purposes third parties verify, so a generic
/// verifier following it refuses every other purpose's token by kid;
/// `signet_purposes` names each purpose's own JWKS and `typ`.
pub(super) fn discovery_document(config: &Config) -> Vec<u8> {
    let mut algs: Vec<&str> = config
        .purposes
        .values()
        .filter(|p| p.discovery)
        .flat_map(|p| p.algorithms.iter().map(|a| a.as_str()))
        .collect();
    algs.sort_unstable();
    algs.dedup();
    let purposes: serde_json::Map<String, serde_json::Value> = config
        .purposes
        .iter()
        .map(|(name, p)| {
            let algorithms: Vec<&str> = p.algorithms.iter().map(|a| a.as_str()).collect();
            (name.clone(), json!({ "jwks_uri": format!("{}/.well-known/jwks/{name}.json", config.issuer), "typ": p.typ, "algorithms": algorithms, "discovery": p.discovery }))
        })
        .collect();
    let doc = json!({
        "issuer": config.issuer,
        "jwks_uri": format!("{}{THIRD_PARTY_JWKS}", config.issuer),
        "id_token_signing_alg_values_supported": algs,
        "signet_purposes": purposes,
        "signet_revocations_uri": format!("{}{REVOCATIONS}", config.issuer),
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// Serves a pre-rendered JWKS: no serialisation, no lock, 304 on a matching ETag.
fn serve(state: &AppState, rendered: &Rendered, headers: &HeaderMap) -> Response {
    serve_with(rendered, headers, &state.cache_control)
}

/// Serves a pre-rendered document with `cache_control`.
fn serve_with(rendered: &Rendered, headers: &HeaderMap, cache_control: &HeaderValue) -> Response {
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == &rendered.etag[..]);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        axum::body::Body::from(rendered.body.clone()).into_response()
    };
    let h = response.headers_mut();
    if !fresh {
        h.insert(header::CONTENT_TYPE, JSON);
    }
    h.insert(header::CACHE_CONTROL, cache_control.clone());
    // Shares the rendered bytes: no copy; base64url in quotes always validates.
    if let Ok(etag) = HeaderValue::from_maybe_shared(rendered.etag.clone()) {
        h.insert(header::ETAG, etag);
    }
    response
}

async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snap = state.service.snapshot();
    serve(&state, &snap.jwks, &headers)
}

/// Revoked keys and tokens, cached for `jwks.revocations_max_age`.
async fn revocations(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snap = state.service.snapshot();
    serve_with(
        &snap.revocations,
        &headers,
        &state.revocations_cache_control,
    )
}

async fn third_party_jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let snap = state.service.snapshot();
    serve(&state, &snap.third_party, &headers)
}

async fn jwks_of(
    State(state): State<AppState>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let snap = state.service.snapshot();
    match file
        .strip_suffix(".json")
        .and_then(|p| snap.purposes.get(p))
    {
        Some(keys) => serve(&state, &keys.jwks, &headers),
        None => ApiError::NotFound(format!(
            "no purpose {file:?}: use /.well-known/jwks/<purpose>.json, where <purpose> is one of {}",
            snap.purposes.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
        .into_response(),
    }
}

async fn discovery(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, JSON)], state.discovery.clone()).into_response()
}

/// Ready when every purpose can sign as the store says it should; otherwise
/// 503 with the purposes and short reasons (the details go to the log).
async fn ready(State(state): State<AppState>) -> Response {
    let problems = state.service.problems();
    let (status, body) = if problems.is_empty() {
        (StatusCode::OK, json!({ "status": "ready" }))
    } else if problems.iter().any(|p| p.blocking) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unavailable", "problems": problems }),
        )
    } else {
        // Serving from what it holds (the store is unreachable): still ready.
        (
            StatusCode::OK,
            json!({ "status": "degraded", "problems": problems }),
        )
    };
    (status, [(header::CONTENT_TYPE, JSON)], body.to_string()).into_response()
}
