//! Every error the HTTP API answers, mapped to `application/problem+json`
//! (RFC 9457) in one place. Clients get a stable `type` and a safe `detail`;
//! internal causes go to the log only.

use std::borrow::Cow;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::keys::token::VerifyError;
use crate::service::{ServiceError, SignError, TokenError};
use crate::storage::StoreError;

/// An API error.
#[derive(Debug)]
pub enum ApiError {
    /// The request is malformed or names something that does not exist in it.
    Invalid(StatusCode, String),
    /// Missing or wrong bearer token.
    Unauthorized,
    /// The token's role may not call this route.
    Forbidden,
    /// No such purpose or key.
    NotFound(String),
    /// The lifecycle rules refuse the operation.
    Refused(String),
    /// The token does not verify.
    InvalidToken(VerifyError),
    /// Not ready to sign.
    Unavailable(String),
    /// Too many failed authentications from this address; retry after the seconds given.
    TooManyRequests(u64),
    /// The request was not read and answered within `server.request_timeout`.
    Timeout,
    /// Too many signing requests are waiting; retry in a second.
    Busy,
    /// A failure on our side; the cause is logged, not sent.
    Internal(String),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: &'a str,
    title: &'a str,
    status: u16,
    detail: Cow<'a, str>,
    /// Why a token was refused ([`VerifyError::reason`]), on refusals only.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, Cow<'_, str>) {
        match self {
            ApiError::Invalid(s, d) => (
                *s,
                "urn:signet:problem:invalid-request",
                "Invalid request",
                Cow::Borrowed(d),
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "urn:signet:problem:unauthorized",
                "Unauthorized",
                Cow::Borrowed("send Authorization: Bearer <token> with a configured admin token"),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "urn:signet:problem:forbidden",
                "Forbidden",
                Cow::Borrowed(
                    "this token's role may not call this route; key management needs the admin role",
                ),
            ),
            ApiError::NotFound(d) => (
                StatusCode::NOT_FOUND,
                "urn:signet:problem:not-found",
                "Not found",
                Cow::Borrowed(d),
            ),
            ApiError::Refused(d) => (
                StatusCode::CONFLICT,
                "urn:signet:problem:refused",
                "Refused",
                Cow::Borrowed(d),
            ),
            ApiError::InvalidToken(e @ VerifyError::AlreadyUsed) => (
                StatusCode::CONFLICT,
                "urn:signet:problem:already-used",
                "Already used",
                Cow::Owned(e.to_string()),
            ),
            ApiError::InvalidToken(e @ VerifyError::RevocationsUnavailable(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "urn:signet:problem:unavailable",
                "Unavailable",
                Cow::Owned(e.to_string()),
            ),
            ApiError::InvalidToken(e) => (
                StatusCode::UNAUTHORIZED,
                "urn:signet:problem:invalid-token",
                "Invalid token",
                Cow::Owned(e.to_string()),
            ),
            ApiError::Unavailable(d) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "urn:signet:problem:unavailable",
                "Unavailable",
                Cow::Borrowed(d),
            ),
            ApiError::TooManyRequests(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "urn:signet:problem:too-many-requests",
                "Too many requests",
                Cow::Borrowed(
                    "too many failed authentications from this address; wait as Retry-After says",
                ),
            ),
            ApiError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "urn:signet:problem:busy",
                "Busy",
                Cow::Borrowed("too many signing requests are waiting; retry after a second"),
            ),
            ApiError::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                "urn:signet:problem:timeout",
                "Request timeout",
                Cow::Borrowed(
                    "the request was not received and answered within server.request_timeout",
                ),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "urn:signet:problem:internal",
                "Internal error",
                Cow::Borrowed("an internal error occurred; the server log has the cause"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        let (status, type_, title, detail) = self.parts();
        let reason = match &self {
            ApiError::InvalidToken(e) => Some(e.reason()),
            _ => None,
        };
        let body = serde_json::to_vec(&Problem {
            type_,
            title,
            status: status.as_u16(),
            detail,
            reason,
        })
        .unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            ApiError::TooManyRequests(wait) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(wait.max(1)));
            }
            ApiError::Busy => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The store (or the HSM) is away: a database connection is
            // tried again at least every 5 s.
            ApiError::Unavailable(_)
            | ApiError::InvalidToken(VerifyError::RevocationsUnavailable(_)) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        if status == StatusCode::UNAUTHORIZED {
            let value = if matches!(self, ApiError::InvalidToken(_)) {
                "Bearer error=\"invalid_token\""
            } else {
                "Bearer realm=\"signet\""
            };
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(value));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::Invalid(r.status(), r.body_text())
    }
}

impl From<SignError> for ApiError {
    fn from(e: SignError) -> Self {
        match e {
            SignError::NoSigningKey { .. }
            | SignError::KeyUnavailable { .. }
            | SignError::Token(_) => ApiError::Unavailable(e.to_string()),
            SignError::Key(e) => ApiError::Internal(e.to_string()),
            other => ApiError::Invalid(StatusCode::UNPROCESSABLE_ENTITY, other.to_string()),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid(e) => ApiError::InvalidToken(e),
            TokenError::Store(StoreError::Database { .. }) => ApiError::Unavailable(e.to_string()),
            TokenError::Store(_) => ApiError::Internal(e.to_string()),
            other => ApiError::Invalid(StatusCode::UNPROCESSABLE_ENTITY, other.to_string()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Refused(r) => ApiError::Refused(r.to_string()),
            ServiceError::UnknownKid(_) | ServiceError::UnknownPurpose(..) => {
                ApiError::NotFound(e.to_string())
            }
            ServiceError::KidInUnreadableKeyring { .. } => ApiError::Unavailable(e.to_string()),
            // The token is absent or failing: a dependency, like the database.
            #[cfg(feature = "pkcs11")]
            ServiceError::Token(_) => ApiError::Unavailable(e.to_string()),
            // The database is down or refused: a dependency, not a bug.
            ServiceError::Store(StoreError::Database { .. }) => {
                ApiError::Unavailable(e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Every error answer as problem+json: the framework's own (405 for a method
/// a route lacks, 415 for a body that is not JSON, 413 for one too large)
/// are rewritten with the same status and a detail that says what to do.
pub(crate) fn as_problem(response: Response) -> Response {
    let status = response.status();
    // The framework's answers are empty or text/plain; signet's own are
    // problem+json already, or deliberate JSON (`/readyz`).
    let from_framework = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !from_framework {
        return response;
    }
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = response
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            if allowed.is_empty() {
                "method not allowed on this route (the README's HTTP API lists each route's method)"
                    .to_owned()
            } else {
                format!("method not allowed on this route; allowed: {allowed}")
            }
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            "send the body as JSON, with Content-Type: application/json".to_owned()
        }
        StatusCode::PAYLOAD_TOO_LARGE => "the body is larger than 64 KiB".to_owned(),
        other => other
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut out = if status.is_server_error() {
        ApiError::Internal(detail).into_response()
    } else {
        ApiError::Invalid(status, detail).into_response()
    };
    *out.status_mut() = status;
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}

/// A JSON body, with rejections as problem+json.
pub(crate) type JsonBody<T> = Result<Json<T>, JsonRejection>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_answered_with_retry_after() {
        let busy = ApiError::Busy.into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let limited = ApiError::TooManyRequests(42).into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "42");
        assert_eq!(
            ApiError::Timeout.into_response().status(),
            StatusCode::REQUEST_TIMEOUT
        );
    }
}
