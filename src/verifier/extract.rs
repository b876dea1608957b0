//! The axum extractor: `Verified<C>` from `Authorization: Bearer`.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::{Verified, Verifier, VerifyError};

/// The answer to a request without a valid bearer token: 401 with a
/// `WWW-Authenticate` challenge (RFC 6750 §3) whose `error_description` is a
/// fixed phrase per kind of failure (the full cause goes to the log, never
/// to the client), or 503 when the keys cannot be fetched: the token may be
/// good, so the client must not throw it away.
#[derive(Debug)]
pub struct Unauthorized(Option<VerifyError>);

/// The fixed `error_description` of each failure.
fn description(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::TooLarge | VerifyError::Malformed(_) => "malformed token",
        VerifyError::DisallowedAlg(_) => "algorithm not allowed",
        VerifyError::ForbiddenHeader(_) => "forbidden header parameter",
        VerifyError::UnknownKid(_) => "unknown signing key",
        VerifyError::BadSignature => "bad signature",
        VerifyError::WrongTyp { .. } | VerifyError::WrongPurpose { .. } => "wrong token type",
        VerifyError::Expired => "token expired",
        VerifyError::NotYetValid => "token not yet valid",
        VerifyError::WrongIssuer { .. } => "wrong issuer",
        VerifyError::WrongAudience | VerifyError::UnexpectedAudience => "wrong audience",
        VerifyError::MissingClaim(_) | VerifyError::InvalidClaim(_) => "invalid claims",
        VerifyError::RevokedKey(_) => "signing key revoked",
        VerifyError::RevokedToken(_) => "token revoked",
        VerifyError::AlreadyUsed => "token already used",
        _ => "invalid token",
    }
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        if let Some(
            e @ (VerifyError::JwksUnavailable(_) | VerifyError::RevocationsUnavailable(_)),
        ) = &self.0
        {
            tracing::error!(error = %e, "cannot verify a bearer token: the signing keys or the revocations are unavailable");
            let mut r = StatusCode::SERVICE_UNAVAILABLE.into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return r;
        }
        let challenge = match &self.0 {
            // No credentials at all: no error code (RFC 6750 §3.1).
            None => HeaderValue::from_static("Bearer"),
            Some(e) => {
                tracing::debug!(error = %e, "bearer token refused");
                let value = format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    description(e)
                );
                HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Bearer"))
            }
        };
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
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
            .and_then(crate::keys::token::bearer_credentials)
            .ok_or(Unauthorized(None))?;
        verifier
            .verify::<C>(token.trim())
            .await
            .map_err(|e| Unauthorized(Some(e)))
    }
}
