//! Keys inside the token: signing with the JWS algorithms' mechanisms,
//! finding and destroying their objects. Their generation is in
//! `generate.rs`.
//!
//! Mechanisms (PKCS#11 v3.0 "Current Mechanisms", RFC 7518 section 3 and RFC
//! 8037 for what JWS expects):
//! - EdDSA: `CKM_EDDSA` without parameters (pure Ed25519) over the signing
//!   input; 64 bytes.
//! - RS256: `CKM_SHA256_RSA_PKCS` over the signing input.
//! - PS256: `CKM_SHA256_RSA_PKCS_PSS` with SHA-256, MGF1-SHA-256 and a
//!   32-byte salt, as RFC 7518 section 3.5 asks.
//! - ES256: `CKM_ECDSA` over the SHA-256 digest that signet computes (not
//!   every token has `CKM_ECDSA_SHA256`; SoftHSM2 has not). PKCS#11 returns
//!   r and s as two 32-byte big-endian integers, which is exactly JWS's form.
//!
//! The store records a key's `CKA_ID` (16 random bytes, hex); its label is
//! `signet:<purpose>:<kid>`, for an operator reading `pkcs11-tool
//! --list-objects`.

use std::sync::{Arc, Mutex};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::{OpError, Token, TokenError, lock};
use crate::crypto::digest;
use crate::keys::{Algorithm, KeyFamily, PublicJwk, TokenObject};

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The label of a key's private object.
pub(super) fn label_of(purpose: &str, kid: &str) -> String {
    format!("signet:{purpose}:{kid}")
}

fn mechanism(alg: Algorithm) -> Mechanism<'static> {
    match alg {
        Algorithm::EdDSA => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
        Algorithm::RS256 => Mechanism::Sha256RsaPkcs,
        Algorithm::PS256 => Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 32.into(),
        }),
        Algorithm::ES256 => Mechanism::Ecdsa,
    }
}

/// What the token signs for `alg`: the message, or its SHA-256 for ES256.
fn to_be_signed(alg: Algorithm, message: &[u8]) -> Vec<u8> {
    match alg {
        Algorithm::ES256 => digest::digest(&digest::SHA256, message).as_ref().to_vec(),
        _ => message.to_vec(),
    }
}

/// A key whose private half is in the token: what the snapshot signs with.
pub struct TokenKey {
    token: Arc<Token>,
    alg: Algorithm,
    jwk: PublicJwk,
    object_id: Vec<u8>,
    object_hex: String,
    /// The object's handle, found once per generation of sessions.
    handle: Mutex<Option<(u64, ObjectHandle)>>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenKey(kid={}, alg={}, token={}, object={})",
            self.jwk.kid, self.alg, self.token.label, self.object_hex
        )
    }
}

impl TokenKey {
    /// The key `jwk` of `alg`, whose private half is `object` in `token`.
    pub fn new(
        token: Arc<Token>,
        alg: Algorithm,
        jwk: PublicJwk,
        object: &TokenObject,
    ) -> Result<TokenKey, TokenError> {
        let object_id = unhex(&object.object_id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| TokenError::Unusable {
                token: token.selector.to_string(),
                reason: format!(
                    "the key record of {} names object {:?}, which is not hex",
                    jwk.kid, object.object_id
                ),
            })?;
        Ok(TokenKey {
            token,
            alg,
            jwk,
            object_id,
            object_hex: object.object_id.clone(),
            handle: Mutex::new(None),
        })
    }

    /// The algorithm it signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The key's id.
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    fn missing(&self) -> TokenError {
        TokenError::Missing {
            kid: self.jwk.kid.clone(),
            object_id: self.object_hex.clone(),
            token: self.token.selector.to_string(),
        }
    }

    fn find(&self, session: &Session, epoch: u64) -> Result<ObjectHandle, OpError> {
        if let Some((born, handle)) = *lock(&self.handle)
            && born == epoch
        {
            return Ok(handle);
        }
        let found = session.find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(self.object_id.clone()),
        ])?;
        match found.as_slice() {
            [handle] => {
                *lock(&self.handle) = Some((epoch, *handle));
                Ok(*handle)
            }
            [] => Err(OpError::Token(self.missing())),
            _ => Err(OpError::Token(TokenError::Unusable {
                token: self.token.selector.to_string(),
                reason: format!(
                    "{} private keys have the CKA_ID {} of key {}",
                    found.len(),
                    self.object_hex,
                    self.jwk.kid
                ),
            })),
        }
    }

    /// Whether the private object is in the token (`Err` if the token
    /// cannot be asked).
    pub fn is_present(&self) -> Result<bool, TokenError> {
        match self.token.with_session(|s, epoch| self.find(s, epoch)) {
            Ok(_) => Ok(true),
            Err(TokenError::Missing { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Signs a JWS signing input; the signature in JWS's encoding.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, TokenError> {
        let mechanism = mechanism(self.alg);
        let data = to_be_signed(self.alg, message);
        let signature = self.token.with_session(|session, epoch| {
            let handle = self.find(session, epoch)?;
            match session.sign(&mechanism, handle, &data) {
                // A handle from before the token was put back: look again.
                Err(CkError::Pkcs11(
                    RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid,
                    _,
                )) => {
                    *lock(&self.handle) = None;
                    let handle = self.find(session, epoch)?;
                    Ok(session.sign(&mechanism, handle, &data)?)
                }
                other => Ok(other?),
            }
        })?;
        let expected = match self.alg.family() {
            KeyFamily::Ed25519 | KeyFamily::P256 => Some(64),
            KeyFamily::Rsa => None,
        };
        if expected.is_some_and(|n| signature.len() != n) {
            return Err(TokenError::Unusable {
                token: self.token.selector.to_string(),
                reason: format!(
                    "a {} signature of {} bytes (JWS expects 64)",
                    self.alg,
                    signature.len()
                ),
            });
        }
        Ok(signature)
    }
}

impl Token {
    /// Destroys a key's private object (`C_DestroyObject`). `Ok(false)` if
    /// it was not there.
    pub fn destroy(&self, object: &TokenObject) -> Result<bool, TokenError> {
        let id = unhex(&object.object_id)
            .ok_or_else(|| self.unusable(format!("object id {:?} is not hex", object.object_id)))?;
        self.with_session(|session, _| {
            let found = session.find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(id.clone()),
            ])?;
            for handle in &found {
                session.destroy_object(*handle)?;
            }
            Ok(!found.is_empty())
        })
    }

    /// The private objects signet made for `purpose`, as (kid, object) pairs,
    /// read from their labels.
    pub fn objects_of(&self, purpose: &str) -> Result<Vec<(String, TokenObject)>, TokenError> {
        let prefix = label_of(purpose, "");
        self.with_session(|session, _| {
            let mut out = Vec::new();
            for handle in session.find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Token(true),
            ])? {
                let attrs =
                    session.get_attributes(handle, &[AttributeType::Label, AttributeType::Id])?;
                let (mut label, mut id) = (None, None);
                for a in attrs {
                    match a {
                        Attribute::Label(l) => label = String::from_utf8(l).ok(),
                        Attribute::Id(i) => id = Some(hex(&i)),
                        _ => {}
                    }
                }
                if let (Some(label), Some(object_id)) = (label, id)
                    && let Some(kid) = label.strip_prefix(&prefix)
                {
                    out.push((
                        kid.to_owned(),
                        TokenObject {
                            token: self.label.clone(),
                            object_id,
                        },
                    ));
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn object_ids_round_trip_through_hex_and_bad_hex_is_refused() {
        let id = [0u8, 1, 0x7f, 0xff, 0xa5];
        assert_eq!(hex(&id), "00017fffa5");
        assert_eq!(unhex("00017fffa5").unwrap(), id);
        assert_eq!(unhex("00017FFFA5").unwrap(), id);
        for bad in ["0", "zz", "0g", "é0"] {
            assert!(unhex(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn es256_signs_the_digest_and_the_others_the_message() {
        let message = b"header.claims";
        assert_eq!(to_be_signed(Algorithm::EdDSA, message), message);
        assert_eq!(to_be_signed(Algorithm::RS256, message), message);
        let d = to_be_signed(Algorithm::ES256, message);
        assert_eq!(d.len(), 32);
        assert_eq!(
            d,
            digest::digest(&digest::SHA256, message).as_ref().to_vec()
        );
    }
}
