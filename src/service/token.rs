//! Signing tokens for the issuer and verifying them against the published keys.

use std::time::Duration;

use crate::crypto::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{KeyService, SignFailure, Snapshot};
use crate::clock::UnixTime;
use crate::config::Config;
use crate::keys::jwk::b64;
use crate::keys::legacy::is_legacy;
use crate::keys::token::{Audience, Expectations, MAX_TOKEN_LEN, VerifyError, parse, sign_compact};
use crate::keys::{Algorithm, KeyError};

/// Claims the server sets itself (`typ` is the purpose's, in the header); a
/// request may not.
pub const RESERVED_CLAIMS: [&str; 6] = ["iss", "iat", "nbf", "exp", "jti", "typ"];

/// Integers beyond this magnitude that arrive as floats were integer literals
/// too large for 64 bits: they cannot be signed with their exact value.
const EXACT_FLOAT_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The purpose is not configured.
    #[error(transparent)]
    UnknownPurpose(#[from] crate::config::UnknownPurpose),
    /// The algorithm is not configured for the purpose.
    #[error("algorithm {alg} is not configured for {purpose}; configured: {configured}")]
    AlgNotConfigured {
        /// The purpose.
        purpose: String,
        /// The algorithm asked for.
        alg: Algorithm,
        /// What is configured.
        configured: String,
    },
    /// The request sets a claim the server sets.
    #[error("claim {0:?} is set by signet; remove it from the request")]
    ReservedClaim(String),
    /// A claim holds a number that cannot be signed with its exact value.
    #[error(
        "claim {0:?} holds an integer too large to keep exactly (beyond 64 bits); send it as a string"
    )]
    InexactNumber(String),
    /// The requested lifetime exceeds the purpose's `token_ttl`.
    #[error("ttl {ttl}s exceeds the token_ttl of {purpose} ({max}s)")]
    TtlTooLong {
        /// The purpose.
        purpose: String,
        /// Requested seconds.
        ttl: u64,
        /// Allowed seconds.
        max: u64,
    },
    /// A zero lifetime.
    #[error("ttl must be at least 1s")]
    ZeroTtl,
    /// No key signs for the purpose right now (keyring not bootstrapped).
    #[error("no active key for {purpose} ({alg}); the keyring has not been initialised yet")]
    NoSigningKey {
        /// The purpose.
        purpose: String,
        /// The algorithm.
        alg: Algorithm,
    },
    /// The key that signs now cannot be used here; signet never falls back
    /// to another key.
    #[error("the active {purpose} key {kid} cannot sign: {reason}")]
    KeyUnavailable {
        /// The purpose.
        purpose: String,
        /// The active key.
        kid: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The token would be larger than verifiers accept.
    #[error(
        "the token would be {size} bytes, more than the {max} bytes verifiers accept: send fewer or smaller claims"
    )]
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// [`MAX_TOKEN_LEN`].
        max: usize,
    },
    /// The signature itself failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The PKCS#11 token holding the active key failed or refused.
    #[error("the active key is in a PKCS#11 token that cannot sign now: {0}")]
    Token(String),
}

impl From<SignFailure> for SignError {
    fn from(e: SignFailure) -> SignError {
        match e {
            SignFailure::Key(e) => SignError::Key(e),
            #[cfg(feature = "pkcs11")]
            SignFailure::Token(e) => SignError::Token(e.to_string()),
        }
    }
}

/// What the issuer asks for.
#[derive(Debug, Clone, Default)]
pub struct SignRequest {
    /// The token purpose.
    pub purpose: String,
    /// Custom claims (`sub`, `aud`, `scope`, ...).
    pub claims: Map<String, Value>,
    /// Lifetime; the purpose's `token_ttl` when unset, never more.
    pub ttl: Option<Duration>,
    /// Algorithm; the purpose's first when unset.
    pub alg: Option<Algorithm>,
}

/// A signed token.
#[derive(Debug, Clone, Serialize)]
pub struct SignedToken {
    /// The compact JWT.
    pub token: String,
    /// The key that signed it.
    pub kid: String,
    /// Its algorithm.
    pub alg: Algorithm,
    /// Its `exp`.
    pub expires_at: u64,
}

/// A verified token.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// Its claims.
    pub claims: Map<String, Value>,
    /// The key that signed it (empty for a legacy token).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kid: String,
    /// For a token signed with an imported legacy HMAC secret: its label
    /// (never the secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_key: Option<String>,
}

impl KeyService {
    /// Signs a token with the key that signs now ([`Keyring::signing_key`](crate::keys::Keyring::signing_key)):
    /// sets `iss`, `iat`, `exp` and `jti`, and the purpose's `typ`.
    pub fn sign(&self, req: SignRequest) -> Result<SignedToken, SignError> {
        let config = self.config();
        let purpose = config.purpose(&req.purpose)?;
        let alg = req.alg.unwrap_or(purpose.algorithms[0]);
        if !purpose.algorithms.contains(&alg) {
            return Err(SignError::AlgNotConfigured {
                purpose: req.purpose,
                alg,
                configured: purpose
                    .algorithms
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if let Some(c) = RESERVED_CLAIMS
            .iter()
            .find(|c| req.claims.contains_key(**c))
        {
            return Err(SignError::ReservedClaim((*c).to_owned()));
        }
        if let Some((name, _)) = req.claims.iter().find(|(_, v)| inexact(v)) {
            return Err(SignError::InexactNumber(name.clone()));
        }
        let ttl = req.ttl.unwrap_or(purpose.token_ttl);
        if ttl > purpose.token_ttl {
            return Err(SignError::TtlTooLong {
                purpose: req.purpose,
                ttl: ttl.as_secs(),
                max: purpose.token_ttl.as_secs(),
            });
        }
        if ttl.as_secs() == 0 {
            return Err(SignError::ZeroTtl);
        }
        let now = self.now();
        let snap = self.snapshot();
        let view = snap.purposes.get(&req.purpose);
        let no_key = || SignError::NoSigningKey {
            purpose: req.purpose.clone(),
            alg,
        };
        let record = view
            .and_then(|v| v.keyring.signing_key(alg, now))
            .ok_or_else(no_key)?;
        let signer = match view.and_then(|v| v.signers.get(&record.kid)) {
            Some(Ok(signer)) => signer,
            Some(Err(reason)) => {
                return Err(SignError::KeyUnavailable {
                    purpose: req.purpose,
                    kid: record.kid.clone(),
                    reason: reason.clone(),
                });
            }
            None => return Err(no_key()),
        };
        let exp = now.plus(ttl);
        // Issued `leeway` in the past, and no `nbf`: a verifier whose clock
        // runs behind signet's by up to the leeway accepts a fresh token even
        // with zero tolerance (some check that `iat` is not in the future).
        let iat = UnixTime(now.0.saturating_sub(config.leeway.as_secs()));
        let mut claims = req.claims;
        claims.insert("iss".into(), Value::from(config.issuer.as_str()));
        claims.insert("iat".into(), Value::from(iat.0));
        claims.insert("exp".into(), Value::from(exp.0));
        claims.insert("jti".into(), Value::from(new_jti()?));
        let body = serde_json::to_vec(&claims).map_err(|_| KeyError::Signing)?;
        let token = sign_compact(|m| signer.key.sign(m), &signer.header_b64, &body)?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(SignError::TooLarge {
                size: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        Ok(SignedToken {
            token,
            kid: signer.key.kid().to_owned(),
            alg,
            expires_at: exp.0,
        })
    }

    /// Verifies a token of `purpose` against that purpose's published keys at now.
    pub fn verify(&self, purpose: &str, token: &str) -> Result<Verified, VerifyError> {
        let now = self.now();
        let config = self.config();
        let purpose_config = config.purposes.get(purpose);
        let typ = purpose_config.map(|p| p.typ.as_str());
        let single_use = purpose_config.is_some_and(|p| p.single_use);
        let snap = self.snapshot();
        // A token without kid, signed with HMAC: the purpose's imported
        // legacy secrets, if it has live ones; otherwise refused below.
        // (The cheap test first: most purposes have none, and then the
        // header is not decoded twice.)
        if snap
            .purposes
            .get(purpose)
            .is_some_and(|p| !p.legacy.is_empty())
            && is_legacy(token)
        {
            return self.verify_legacy(&snap, purpose, single_use, token);
        }
        let parsed = parse(token)?;
        let key = snap
            .purposes
            .get(purpose)
            .and_then(|p| p.verify.get(&parsed.kid))
            .filter(|k| k.expires_at.is_none_or(|e| now < e))
            .ok_or_else(|| unpublished_kid(&snap, purpose, &parsed.kid))?;
        let kid = parsed.kid.clone();
        let expect = Expectations {
            typ,
            issuer: Some(&config.issuer),
            // The issuer checks its own tokens, whatever service they name.
            audience: Audience::Unchecked,
            leeway: config.leeway,
            now,
        };
        let claims = parsed
            .verify(&key.key, &expect)
            .map_err(|e| with_issuer_source(e, config))?;
        self.check_token_lists(&snap, single_use, purpose, &claims)?;
        Ok(Verified {
            claims,
            kid,
            legacy_key: None,
        })
    }
}

/// Why a kid that `purpose` does not publish is refused: its key was
/// revoked, it is another purpose's key, or signet does not know it (never
/// made, or dropped once every token it signed had expired).
fn unpublished_kid(snap: &Snapshot, purpose: &str, kid: &str) -> VerifyError {
    if let Some(p) = snap.purposes.get(purpose)
        && p.keyring
            .keys
            .iter()
            .any(|k| k.kid == kid && k.revoked_at.is_some())
    {
        return VerifyError::RevokedKey(kid.to_owned());
    }
    match snap
        .purposes
        .iter()
        .find(|(name, p)| name.as_str() != purpose && p.keyring.keys.iter().any(|k| k.kid == kid))
    {
        Some((other, _)) => VerifyError::WrongPurpose {
            kid: kid.to_owned(),
            expected: purpose.to_owned(),
            found: other.clone(),
        },
        None => VerifyError::UnknownKid(kid.to_owned()),
    }
}

/// Names where this server's issuer came from in a wrong-issuer refusal: a
/// token signed under another configuration (a `signet token sign` without
/// the server's `--public-addr`, say) then says which setting differs.
pub(super) fn with_issuer_source(e: VerifyError, config: &Config) -> VerifyError {
    match e {
        VerifyError::WrongIssuer {
            expected, found, ..
        } => VerifyError::WrongIssuer {
            expected,
            found,
            expected_from: format!(
                "this server's issuer, from {}; every signet command and replica must use one issuer: set issuer (or SIGNET_ISSUER)",
                config.issuer_origin()
            ),
        },
        other => other,
    }
}

/// Whether `v` holds a number parsed from an integer literal beyond 64 bits
/// (serde_json keeps every integer within 64 bits exactly, and turns larger
/// ones into floats, which would change their value).
fn inexact(v: &Value) -> bool {
    match v {
        Value::Number(n) => n
            .as_f64()
            .is_some_and(|f| n.is_f64() && f.fract() == 0.0 && f.abs() > EXACT_FLOAT_LIMIT),
        Value::Array(items) => items.iter().any(inexact),
        Value::Object(map) => map.values().any(inexact),
        _ => false,
    }
}

fn new_jti() -> Result<String, KeyError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Random)?;
    Ok(b64(&bytes))
}
