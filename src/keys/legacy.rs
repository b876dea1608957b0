//! Legacy HMAC secrets: the `.env` secrets an application signed its tokens
//! with before it moved to signet, imported for verification only
//! (`signet keys import-hmac`). They are never published and never sign;
//! each is dropped once every token it could have signed has expired
//! (`docs/lifecycle.md` rule 15).
//!
//! Such a token has an `HS256`, `HS384` or `HS512` header and no `kid`: the
//! application tried its current secret, then the previous one. So does
//! [`LegacyToken::verify`], in the import order, each comparison in
//! constant time (the backend's `hmac::verify`), and only then refuses.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::keyring::Keyring;
use super::plan::{Plan, Refusal, Step};
use super::policy::Policy;
use super::record::SealedKey;
use super::token::{
    Audience, Expectations, MAX_TOKEN_LEN, Segments, VerifyError, check_claims, json_object,
    malformed, segments,
};
use crate::clock::UnixTime;
use crate::crypto::hmac;

/// One imported secret of a purpose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyKey {
    /// Its label: the variable it was read from (`ACCESS_TOKEN_SECRET_1`).
    pub id: String,
    /// When it was imported.
    pub imported_at: UnixTime,
    /// When the last token it could have signed expires; it is dropped then.
    pub expires_at: UnixTime,
    /// When an operator revoked it.
    #[serde(default)]
    pub revoked_at: Option<UnixTime>,
    /// The `iss` its tokens must carry, if they carried one.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The secret, sealed like a private key. A revoked secret keeps it
    /// until `expires_at`, to name the reason its tokens are refused (stores
    /// written before that have `None` here).
    #[serde(default)]
    pub secret: Option<SealedKey>,
}

impl LegacyKey {
    /// `active`, `revoked` or `expired` at `now`, for `keys list`.
    pub fn state_at(&self, now: UnixTime) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if now < self.expires_at {
            "verify-only"
        } else {
            "expired"
        }
    }
}

impl Keyring {
    /// Imports legacy secrets (already sealed), tried after those already
    /// there. Refused if a label is already used.
    pub fn import_legacy(
        &self,
        keys: &[LegacyKey],
        now: UnixTime,
        policy: &Policy,
    ) -> Result<Plan, Refusal> {
        for (i, key) in keys.iter().enumerate() {
            if self.legacy.iter().any(|l| l.id == key.id)
                || keys[..i].iter().any(|k| k.id == key.id)
            {
                return Err(Refusal::LegacyExists {
                    purpose: self.purpose.clone(),
                    id: key.id.clone(),
                });
            }
        }
        let steps = keys.iter().cloned().map(Step::ImportLegacy).collect();
        Ok(self.then_due(steps, now, policy))
    }

    /// Revokes the legacy secret labelled `id`.
    pub fn revoke_legacy(&self, id: &str, now: UnixTime, policy: &Policy) -> Result<Plan, Refusal> {
        let key = self
            .legacy
            .iter()
            .find(|l| l.id == id)
            .ok_or_else(|| Refusal::UnknownKid {
                kid: id.to_owned(),
                purpose: self.purpose.clone(),
            })?;
        if key.revoked_at.is_some() {
            return Err(Refusal::AlreadyRevoked(id.to_owned()));
        }
        let steps = vec![Step::RevokeLegacy {
            id: id.to_owned(),
            at: now,
        }];
        Ok(self.then_due(steps, now, policy))
    }
}

/// The HMAC algorithms a legacy token may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HmacAlg {
    /// HMAC-SHA-256.
    HS256,
    /// HMAC-SHA-384.
    HS384,
    /// HMAC-SHA-512.
    HS512,
}

impl HmacAlg {
    fn parse(name: &str) -> Option<HmacAlg> {
        match name {
            "HS256" => Some(HmacAlg::HS256),
            "HS384" => Some(HmacAlg::HS384),
            "HS512" => Some(HmacAlg::HS512),
            _ => None,
        }
    }

    fn backend(self) -> hmac::Algorithm {
        match self {
            HmacAlg::HS256 => hmac::HMAC_SHA256,
            HmacAlg::HS384 => hmac::HMAC_SHA384,
            HmacAlg::HS512 => hmac::HMAC_SHA512,
        }
    }
}

/// Whether `token` is a legacy token: its header's `alg` is HS256, HS384 or
/// HS512 and it has no `kid`. Anything else (including a malformed token)
/// takes the normal path, which refuses HMAC outright.
pub fn is_legacy(token: &str) -> bool {
    token.len() <= MAX_TOKEN_LEN
        && token
            .split('.')
            .next()
            .and_then(json_object)
            .is_some_and(|h| {
                !h.contains_key("kid")
                    && h.get("alg")
                        .and_then(Value::as_str)
                        .is_some_and(|a| HmacAlg::parse(a).is_some())
            })
}

/// A legacy token whose shape passed, not yet verified.
#[derive(Debug)]
pub struct LegacyToken<'t> {
    signing_input: &'t str,
    signature: Vec<u8>,
    alg: HmacAlg,
    claims: Map<String, Value>,
}

/// Parses a legacy token (see [`is_legacy`]); `crit` and `jku`-style header
/// parameters are refused as on the normal path.
pub fn parse_legacy(token: &str) -> Result<LegacyToken<'_>, VerifyError> {
    let Segments {
        signing_input,
        header,
        claims,
        signature,
    } = segments(token)?;
    let name = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let alg = HmacAlg::parse(name).ok_or_else(|| VerifyError::DisallowedAlg(name.to_owned()))?;
    if let Some(p) = ["crit", "jku", "jwk", "x5u", "x5c", "kid"]
        .iter()
        .find(|p| header.contains_key(**p))
    {
        return Err(VerifyError::ForbiddenHeader((*p).to_owned()));
    }
    let claims =
        json_object(claims).ok_or_else(|| malformed("claims are not a base64url JSON object"))?;
    Ok(LegacyToken {
        signing_input,
        signature,
        alg,
        claims,
    })
}

/// A legacy key with its secret opened, as the snapshot holds it: live, or
/// revoked within its window.
pub struct OpenLegacyKey {
    /// Its label.
    pub id: String,
    /// The `iss` its tokens must carry, if any.
    pub issuer: Option<String>,
    /// When it stops verifying.
    pub expires_at: UnixTime,
    /// Whether it was revoked: a token it signs is then refused as such.
    pub revoked: bool,
    /// The secret's bytes, zeroized on drop.
    pub secret: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for OpenLegacyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenLegacyKey(id={}, <secret>)", self.id)
    }
}

impl LegacyToken<'_> {
    /// Tries `keys` in order (each in constant time), then checks the claims
    /// of the first that verifies: `exp` (required) and `nbf` with `leeway`,
    /// and `iss` if that key's import named one. Returns the key's label and
    /// the claims.
    pub fn verify<'k>(
        self,
        keys: impl IntoIterator<Item = &'k OpenLegacyKey>,
        leeway: std::time::Duration,
        now: UnixTime,
    ) -> Result<(&'k str, Map<String, Value>), VerifyError> {
        let input = self.signing_input.as_bytes();
        let key = keys
            .into_iter()
            .filter(|k| now < k.expires_at)
            .find(|k| {
                let mac = hmac::Key::new(self.alg.backend(), &k.secret);
                hmac::verify(&mac, input, &self.signature).is_ok()
            })
            .ok_or(VerifyError::BadSignature)?;
        if key.revoked {
            return Err(VerifyError::RevokedKey(key.id.clone()));
        }
        let expect = Expectations {
            typ: None,
            issuer: key.issuer.as_deref(),
            audience: Audience::Unchecked,
            leeway,
            now,
        };
        check_claims(&self.claims, &expect).map_err(|e| match e {
            VerifyError::WrongIssuer {
                expected, found, ..
            } => VerifyError::WrongIssuer {
                expected,
                found,
                expected_from: format!("the issuer legacy secret {} was imported with", key.id),
            },
            other => other,
        })?;
        Ok((&key.id, self.claims))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use std::time::Duration;

    use super::*;
    use crate::keys::jwk::b64;

    fn hs(alg: &str, header: Value, claims: Value, secret: &[u8]) -> String {
        let mut header = header;
        header["alg"] = Value::from(alg);
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let which = HmacAlg::parse(alg).unwrap().backend();
        let tag = hmac::sign(&hmac::Key::new(which, secret), input.as_bytes());
        format!("{input}.{}", b64(tag.as_ref()))
    }

    fn key(id: &str, secret: &[u8]) -> OpenLegacyKey {
        OpenLegacyKey {
            id: id.into(),
            revoked: false,
            issuer: None,
            expires_at: UnixTime(2_000),
            secret: zeroize::Zeroizing::new(secret.to_vec()),
        }
    }

    const LEEWAY: Duration = Duration::from_secs(60);

    #[test]
    fn the_current_secret_then_the_previous_one_and_only_those() {
        let keys = [key("SECRET_1", b"current"), key("SECRET_0", b"previous")];
        let claims = serde_json::json!({"sub": "u", "exp": 1_500});
        for alg in ["HS256", "HS384", "HS512"] {
            for (secret, id) in [(&b"current"[..], "SECRET_1"), (b"previous", "SECRET_0")] {
                let token = hs(
                    alg,
                    serde_json::json!({"typ": "JWT"}),
                    claims.clone(),
                    secret,
                );
                assert!(is_legacy(&token));
                let (matched, got) = parse_legacy(&token)
                    .unwrap()
                    .verify(&keys, LEEWAY, UnixTime(1_000))
                    .unwrap();
                assert_eq!((matched, got["sub"].as_str()), (id, Some("u")), "{alg}");
            }
            let token = hs(alg, serde_json::json!({}), claims.clone(), b"another");
            let e = parse_legacy(&token)
                .unwrap()
                .verify(&keys, LEEWAY, UnixTime(1_000));
            assert!(matches!(e, Err(VerifyError::BadSignature)), "{alg}: {e:?}");
        }
    }

    #[test]
    fn legacy_tokens_are_as_strict_as_the_others_on_time_issuer_and_headers() {
        let mut k = key("S", b"s");
        let ok = |k: &OpenLegacyKey, claims: Value, now: u64| {
            let token = hs("HS256", serde_json::json!({}), claims, b"s");
            parse_legacy(&token)
                .unwrap()
                .verify([k], LEEWAY, UnixTime(now))
                .map(|_| ())
        };
        assert!(matches!(
            ok(&k, serde_json::json!({"sub": "u"}), 1_000),
            Err(VerifyError::MissingClaim("exp"))
        ));
        assert!(matches!(
            ok(&k, serde_json::json!({"exp": 900}), 1_000),
            Err(VerifyError::Expired)
        ));
        assert!(
            ok(&k, serde_json::json!({"exp": 950}), 1_000).is_ok(),
            "within the leeway"
        );
        // Past the key's own window, nothing verifies.
        assert!(matches!(
            ok(&k, serde_json::json!({"exp": 9_000}), 2_000),
            Err(VerifyError::BadSignature)
        ));
        k.issuer = Some("https://app.example".into());
        assert!(matches!(
            ok(&k, serde_json::json!({"exp": 1_500}), 1_000),
            Err(VerifyError::MissingClaim("iss"))
        ));
        assert!(
            ok(
                &k,
                serde_json::json!({"exp": 1_500, "iss": "https://app.example"}),
                1_000
            )
            .is_ok()
        );

        let with_kid = hs(
            "HS256",
            serde_json::json!({"kid": "x"}),
            serde_json::json!({"exp": 1_500}),
            b"s",
        );
        assert!(
            !is_legacy(&with_kid),
            "a token with a kid is not a legacy token"
        );
        let crit = hs(
            "HS256",
            serde_json::json!({"crit": ["b64"]}),
            serde_json::json!({"exp": 1_500}),
            b"s",
        );
        assert!(matches!(
            parse_legacy(&crit),
            Err(VerifyError::ForbiddenHeader(_))
        ));
        for not_legacy in ["", "a.b", "e30.e30.", "eyJhbGciOiJub25lIn0.e30."] {
            assert!(!is_legacy(not_legacy), "{not_legacy:?}");
        }
    }
}
