//! JWTs in compact serialisation: signing with a pre-parsed key and strict,
//! pure verification (`now` is a parameter).
//!
//! Verification is split so that key lookup can sit in between:
//! [`parse`] checks the shape and header before any key is touched, the caller
//! finds the key by kid, and [`Parsed::verify`] checks the signature and claims.

use std::time::Duration;

use serde_json::{Map, Value};

use super::jwk::{b64, b64_decode};
use super::{Algorithm, VerifyingKey};
use crate::clock::UnixTime;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest accepted `kid`.
pub const MAX_KID_LEN: usize = 128;
/// Header parameters that point at keys or change processing; never accepted
/// (RFC 8725 §3.10: keys come from the configured JWKS only).
const FORBIDDEN_HEADERS: [&str; 6] = ["jku", "x5u", "jwk", "x5c", "crit", "b64"];

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Over [`MAX_TOKEN_LEN`] bytes.
    #[error("token is larger than {MAX_TOKEN_LEN} bytes")]
    TooLarge,
    /// Not three canonical base64url parts holding a JSON header and claims.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` is `none`, HMAC, unknown, or not the key's own algorithm.
    #[error("disallowed algorithm {0:?}")]
    DisallowedAlg(String),
    /// The header carries a parameter signet never accepts.
    #[error("forbidden header parameter {0:?}")]
    ForbiddenHeader(String),
    /// No published key has this kid.
    #[error("unknown key id {0:?}")]
    UnknownKid(String),
    /// The signature does not verify with the key.
    #[error("bad signature")]
    BadSignature,
    /// `typ` is not the purpose's: a token of another purpose.
    #[error("wrong purpose: the token's type (typ) is {found:?}, this purpose's is {expected:?}")]
    WrongTyp {
        /// The purpose's typ.
        expected: String,
        /// The token's typ.
        found: String,
    },
    /// `exp` is past (with leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (with leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The kid belongs to another purpose's keys.
    #[error(
        "wrong purpose: key {kid:?} signs {found} tokens, not {expected}: verify it as {found}"
    )]
    WrongPurpose {
        /// The token's kid.
        kid: String,
        /// The purpose the token was verified as.
        expected: String,
        /// The purpose whose key signed it.
        found: String,
    },
    /// `iss` is not the expected issuer.
    #[error("wrong issuer: the token names {found:?}, {expected:?} is expected ({expected_from})")]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
        /// The token's `iss`.
        found: String,
        /// Where the expected issuer came from, to tell which of two
        /// configurations to change.
        expected_from: String,
    },
    /// `aud` does not contain the expected audience.
    #[error("wrong audience")]
    WrongAudience,
    /// The token names an audience, and none is expected: it was meant for
    /// another service.
    #[error(
        "the token has an audience (aud) but this verifier expects none: configure the audience it must name"
    )]
    UnexpectedAudience,
    /// A required claim is absent.
    #[error("missing claim {0:?}")]
    MissingClaim(&'static str),
    /// A registered claim has the wrong JSON type.
    #[error("claim {0:?} has the wrong type")]
    InvalidClaim(&'static str),
    /// The key set could not be fetched and no usable cached copy remains.
    #[error("JWKS unavailable: {0}")]
    JwksUnavailable(String),
    /// The signing key (its kid, or a legacy secret's label) was revoked.
    #[error("revoked key: signing key {0:?} was revoked, and so is every token it signed")]
    RevokedKey(String),
    /// The token itself (its jti) was revoked.
    #[error("revoked token: token {0:?} was revoked")]
    RevokedToken(String),
    /// A single-use token was already consumed.
    #[error("consumed: this single-use token was used before")]
    AlreadyUsed,
    /// Whether the token was revoked (or used) cannot be told: the
    /// revocation document could not be fetched and no usable copy remains,
    /// or the store cannot be read. Refused rather than risked.
    #[error("revocation state unavailable: {0}")]
    RevocationsUnavailable(String),
}

impl VerifyError {
    /// The refusal's stable name, as `/v1/verify` answers it (`reason`),
    /// `signet token verify` prints it and a service may log or count it:
    /// `malformed`, `disallowed_alg`, `forbidden_header`, `unknown_kid`,
    /// `bad_signature`, `wrong_purpose`, `expired`, `not_yet_valid`,
    /// `wrong_issuer`, `wrong_audience`, `invalid_claims`, `revoked_key`,
    /// `revoked_token`, `consumed`, `jwks_unavailable` or
    /// `revocations_unavailable`.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::TooLarge | VerifyError::Malformed(_) => "malformed",
            VerifyError::DisallowedAlg(_) => "disallowed_alg",
            VerifyError::ForbiddenHeader(_) => "forbidden_header",
            VerifyError::UnknownKid(_) => "unknown_kid",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::WrongTyp { .. } | VerifyError::WrongPurpose { .. } => "wrong_purpose",
            VerifyError::Expired => "expired",
            VerifyError::NotYetValid => "not_yet_valid",
            VerifyError::WrongIssuer { .. } => "wrong_issuer",
            VerifyError::WrongAudience | VerifyError::UnexpectedAudience => "wrong_audience",
            VerifyError::MissingClaim(_) | VerifyError::InvalidClaim(_) => "invalid_claims",
            VerifyError::RevokedKey(_) => "revoked_key",
            VerifyError::RevokedToken(_) => "revoked_token",
            VerifyError::AlreadyUsed => "consumed",
            VerifyError::JwksUnavailable(_) => "jwks_unavailable",
            VerifyError::RevocationsUnavailable(_) => "revocations_unavailable",
        }
    }
}

/// What a verified token must satisfy.
#[derive(Clone, Debug)]
pub struct Expectations<'a> {
    /// Required header `typ`, if any.
    pub typ: Option<&'a str>,
    /// Required `iss`, if any.
    pub issuer: Option<&'a str>,
    /// What `aud` must be.
    pub audience: Audience<'a>,
    /// Tolerated clock skew for `exp` and `nbf`.
    pub leeway: Duration,
    /// The instant to check against.
    pub now: UnixTime,
}

/// What a verifier expects of `aud`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience<'a> {
    /// `aud` must be absent: a token meant for some service is refused
    /// where no audience is configured (as jose and jsonwebtoken do).
    None,
    /// `aud` must be, or contain, this value.
    Required(&'a str),
    /// `aud` is not looked at: the issuer checking its own tokens.
    Unchecked,
}

/// A token whose shape and header passed, not yet verified.
#[derive(Debug)]
pub struct Parsed<'t> {
    signing_input: &'t str,
    signature: Vec<u8>,
    /// The header `alg`, already known to be one signet accepts.
    pub alg: Algorithm,
    /// The header `kid`.
    pub kid: String,
    typ: Option<String>,
    claims: Map<String, Value>,
}

/// A compact JWS split into its parts, its size, header and signature
/// checked: what both token parsers ([`parse`], and the legacy one) start from.
pub(super) struct Segments<'t> {
    /// The first two segments, as received.
    pub(super) signing_input: &'t str,
    /// The decoded header.
    pub(super) header: Map<String, Value>,
    /// The claims segment, still encoded.
    pub(super) claims: &'t str,
    /// The decoded signature.
    pub(super) signature: Vec<u8>,
}

pub(super) fn malformed(what: &str) -> VerifyError {
    VerifyError::Malformed(what.to_owned())
}

/// Splits `token` (at most [`MAX_TOKEN_LEN`]) into its three parts.
pub(super) fn segments(token: &str) -> Result<Segments<'_>, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected three dot-separated parts"));
    };
    Ok(Segments {
        signing_input: &token[..h.len() + 1 + c.len()],
        header: json_object(h).ok_or_else(|| malformed("header is not base64url JSON object"))?,
        claims: c,
        signature: b64_decode(s).ok_or_else(|| malformed("signature is not base64url"))?,
    })
}

/// Checks a token's size, encoding and header. No key is consulted.
pub fn parse(token: &str) -> Result<Parsed<'_>, VerifyError> {
    let Segments {
        signing_input,
        header,
        claims: c,
        signature,
    } = segments(token)?;
    let alg_name = match header.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        _ => return Err(malformed("header has no alg")),
    };
    let alg: Algorithm = alg_name
        .parse()
        .map_err(|_| VerifyError::DisallowedAlg(alg_name.to_owned()))?;
    if let Some(p) = FORBIDDEN_HEADERS.iter().find(|p| header.contains_key(**p)) {
        return Err(VerifyError::ForbiddenHeader((*p).to_owned()));
    }
    let kid = match header.get("kid") {
        Some(Value::String(k)) if valid_kid(k) => k.clone(),
        Some(_) => return Err(malformed("kid is not a short base64url string")),
        None => return Err(malformed("header has no kid")),
    };
    let typ = match header.get("typ") {
        Some(Value::String(t)) => Some(t.clone()),
        None => None,
        Some(_) => return Err(malformed("typ is not a string")),
    };
    let claims =
        json_object(c).ok_or_else(|| malformed("claims are not a base64url JSON object"))?;
    Ok(Parsed {
        signing_input,
        signature,
        alg,
        kid,
        typ,
        claims,
    })
}

impl Parsed<'_> {
    /// The JWS signing input: the token's first two segments, as received.
    pub fn signing_input(&self) -> &str {
        self.signing_input
    }

    /// Verifies the signature with `key` (of its own algorithm) and then the
    /// claims; returns the claims.
    pub fn verify(
        self,
        key: &VerifyingKey,
        expect: &Expectations<'_>,
    ) -> Result<Map<String, Value>, VerifyError> {
        if self.alg != key.alg() {
            return Err(VerifyError::DisallowedAlg(self.alg.to_string()));
        }
        if !key.verify(self.signing_input.as_bytes(), &self.signature) {
            return Err(VerifyError::BadSignature);
        }
        if let Some(expected) = expect.typ {
            let found = self.typ.as_deref().unwrap_or("");
            if !same_typ(expected, found) {
                return Err(VerifyError::WrongTyp {
                    expected: expected.to_owned(),
                    found: found.to_owned(),
                });
            }
        }
        check_claims(&self.claims, expect)?;
        Ok(self.claims)
    }
}

pub(super) fn check_claims(
    claims: &Map<String, Value>,
    expect: &Expectations<'_>,
) -> Result<(), VerifyError> {
    let leeway = expect.leeway.as_secs_f64();
    let now = expect.now.0 as f64;
    let exp = numeric(claims, "exp")?.ok_or(VerifyError::MissingClaim("exp"))?;
    if now >= exp + leeway {
        return Err(VerifyError::Expired);
    }
    if numeric(claims, "nbf")?.is_some_and(|nbf| now + leeway < nbf) {
        return Err(VerifyError::NotYetValid);
    }
    numeric(claims, "iat")?;
    if let Some(issuer) = expect.issuer {
        match claims.get("iss") {
            None => return Err(VerifyError::MissingClaim("iss")),
            Some(Value::String(iss)) if iss == issuer => {}
            Some(Value::String(found)) => {
                return Err(VerifyError::WrongIssuer {
                    expected: issuer.to_owned(),
                    found: found.clone(),
                    expected_from: "the verifier's configured issuer".to_owned(),
                });
            }
            Some(_) => return Err(VerifyError::InvalidClaim("iss")),
        }
    }
    let audience = match expect.audience {
        Audience::Unchecked => return Ok(()),
        Audience::None if claims.contains_key("aud") => {
            return Err(VerifyError::UnexpectedAudience);
        }
        Audience::None => return Ok(()),
        Audience::Required(a) => a,
    };
    {
        let ok = match claims.get("aud") {
            None => return Err(VerifyError::MissingClaim("aud")),
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(list)) => {
                if !list.iter().all(Value::is_string) {
                    return Err(VerifyError::InvalidClaim("aud"));
                }
                list.iter().any(|a| a.as_str() == Some(audience))
            }
            Some(_) => return Err(VerifyError::InvalidClaim("aud")),
        };
        if !ok {
            return Err(VerifyError::WrongAudience);
        }
    }
    Ok(())
}

/// A NumericDate claim: absent, or a JSON number. Strings are refused, not ignored.
fn numeric(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(VerifyError::InvalidClaim(name)),
        Some(_) => Err(VerifyError::InvalidClaim(name)),
    }
}

/// The credentials of an `Authorization: Bearer <token>` value, trimmed; the
/// scheme name is matched case-insensitively (RFC 9110 §11.1), so `Bearer`,
/// `bearer` and `BEARER` alike. `None` for another scheme or no token.
pub fn bearer_credentials(value: &str) -> Option<&str> {
    const SCHEME: &str = "bearer";
    let (scheme, rest) = (value.get(..SCHEME.len())?, &value[SCHEME.len()..]);
    if !scheme.eq_ignore_ascii_case(SCHEME) || !rest.starts_with(' ') {
        return None;
    }
    Some(rest.trim()).filter(|t| !t.is_empty())
}

/// `typ` values compare case-insensitively, with or without `application/` (RFC 7515 §4.1.9).
fn same_typ(expected: &str, found: &str) -> bool {
    // On every verification: compared in place, no allocation.
    fn strip(t: &str) -> &str {
        const PREFIX: &str = "application/";
        match t.get(..PREFIX.len()) {
            Some(p) if p.eq_ignore_ascii_case(PREFIX) => &t[PREFIX.len()..],
            _ => t,
        }
    }
    strip(expected).eq_ignore_ascii_case(strip(found))
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) fn json_object(part: &str) -> Option<Map<String, Value>> {
    match serde_json::from_slice(&b64_decode(part)?).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The base64url JWS header `{"alg","kid","typ"}` of a key, rendered once per key.
pub fn encode_header(alg: Algorithm, kid: &str, typ: &str) -> String {
    let header = serde_json::json!({ "alg": alg.as_str(), "kid": kid, "typ": typ });
    b64(header.to_string().as_bytes())
}

/// Signs `claims` (a JSON object's bytes) under a pre-rendered header;
/// `sign` makes the raw signature of the signing input (e.g.
/// [`SigningKey::sign`](super::SigningKey::sign)).
pub fn sign_compact<E>(
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    header_b64: &str,
    claims_json: &[u8],
) -> Result<String, E> {
    let claims_len = claims_json.len().div_ceil(3) * 4;
    let mut token = String::with_capacity(header_b64.len() + claims_len + 2 + 350);
    token.push_str(header_b64);
    token.push('.');
    base64::Engine::encode_string(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        claims_json,
        &mut token,
    );
    let signature = sign(token.as_bytes())?;
    token.push('.');
    base64::Engine::encode_string(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        signature,
        &mut token,
    );
    Ok(token)
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
