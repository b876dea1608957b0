//! The axum extractor: `Verified<C>` from `Authorization: Bearer`.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::{Verified, Verifier, VerifyError};

/// The 401 answer of a request without a valid bearer token (RFC 6750 §3).
#[derive(Debug)]
pub struct Unauthorized(Option<VerifyError>);

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let challenge = match &self.0 {
            // No credentials at all: no error code (RFC 6750 §3.1).
            None => "Bearer".to_owned(),
            Some(e) => {
                let description: String = e
                    .to_string()
                    .chars()
                    .map(|c| {
                        if c == '"' || c == '\\' || !c.is_ascii() || c.is_ascii_control() {
                            '\''
                        } else {
                            c
                        }
                    })
                    .collect();
                format!("Bearer error=\"invalid_token\", error_description=\"{description}\"")
            }
        };
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}

impl<S, C> FromRequestParts<S> for Verified<C>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
    C: DeserializeOwned + Send,
{
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Verifier::from_ref(state);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or(Unauthorized(None))?;
        verifier
            .verify::<C>(token.trim())
            .await
            .map_err(|e| Unauthorized(Some(e)))
    }
}
