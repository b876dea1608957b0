//! Keys inside the token: generation with the attributes that keep them in
//! (PKCS#11 v2.40 section 4.9: `CKA_SENSITIVE` true, `CKA_EXTRACTABLE`
//! false), the public key read back to make the JWK and its RFC 7638 kid,
//! signing with the JWS algorithms' mechanisms, and destruction.
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
use crate::crypto::rand::{SecureRandom, SystemRandom};
use crate::keys::{Algorithm, KeyFamily, PublicJwk, PublicMembers, TokenObject, VerifyingKey};

/// DER of the named curve P-256 (OID 1.2.840.10045.3.1.7), for `CKA_EC_PARAMS`.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of id-Ed25519 (OID 1.3.101.112, RFC 8410), for `CKA_EC_PARAMS`.
const ED25519_PARAMS: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// Signed once by every new key and verified against the public key read
/// back, before the key is recorded.
const SELF_TEST: &[u8] = b"signet: a new key in the token signs what its public key verifies";

fn hex(bytes: &[u8]) -> String {
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
fn label_of(purpose: &str, kid: &str) -> String {
    format!("signet:{purpose}:{kid}")
}

/// The bytes of `CKA_EC_POINT`: a DER OCTET STRING around the point (as the
/// standard says), or the bare point (as some tokens return it).
fn ec_point(value: &[u8], len: usize) -> Option<&[u8]> {
    match value {
        [0x04, l, rest @ ..] if usize::from(*l) == len && rest.len() == len => Some(rest),
        bare if bare.len() == len => Some(bare),
        _ => None,
    }
}

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
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

    /// The token holding it.
    pub fn token(&self) -> &Token {
        &self.token
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
    /// Generates a key pair for `alg` inside the token: the private half a
    /// token object that is sensitive, not extractable and signs; the public
    /// half a session object, read back to make the JWK, then destroyed.
    /// The new key signs once and its signature is verified before it is
    /// returned. Returns the public JWK and the object to record.
    pub fn generate(
        self: &Arc<Self>,
        purpose: &str,
        alg: Algorithm,
        rsa_bits: u32,
    ) -> Result<(PublicJwk, TokenObject), TokenError> {
        let mut id = [0u8; 16];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| self.unusable("the system random number generator failed".into()))?;
        let (gen_mechanism, mut public) = match alg.family() {
            KeyFamily::Ed25519 => (
                Mechanism::EccEdwardsKeyPairGen,
                vec![Attribute::EcParams(ED25519_PARAMS.to_vec())],
            ),
            KeyFamily::P256 => (
                Mechanism::EccKeyPairGen,
                vec![Attribute::EcParams(P256_PARAMS.to_vec())],
            ),
            KeyFamily::Rsa => (
                Mechanism::RsaPkcsKeyPairGen,
                vec![
                    Attribute::ModulusBits(u64::from(rsa_bits).into()),
                    Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                ],
            ),
        };
        public.extend([Attribute::Token(false), Attribute::Verify(true)]);
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label_of(purpose, "new").into_bytes()),
        ];
        let made = self.with_session(|session, _| {
            let (public_handle, private_handle) =
                session.generate_key_pair(&gen_mechanism, &public, &private)?;
            let read = self.read_public(session, alg, public_handle);
            // The public object was a session object: gone with the session
            // anyway, destroyed now so the pool's sessions do not gather them.
            let _ = session.destroy_object(public_handle);
            let members = match read.and_then(|m| {
                self.check_private(session, private_handle)?;
                Ok(m)
            }) {
                Ok(m) => m,
                Err(e) => {
                    let _ = session.destroy_object(private_handle);
                    return Err(e);
                }
            };
            let jwk = PublicJwk::new(alg, &members);
            let label = Attribute::Label(label_of(purpose, &jwk.kid).into_bytes());
            if let Err(e) = session.update_attributes(private_handle, &[label]) {
                let _ = session.destroy_object(private_handle);
                return Err(e.into());
            }
            Ok((jwk, members))
        })?;
        let (jwk, members) = made;
        let object = TokenObject {
            token: self.label.clone(),
            object_id: hex(&id),
        };
        let key = TokenKey::new(Arc::clone(self), alg, jwk.clone(), &object)?;
        let signed = key.sign(SELF_TEST);
        if !signed
            .as_ref()
            .is_ok_and(|s| VerifyingKey::new(alg, &members).verify(SELF_TEST, s))
        {
            let _ = self.destroy(&object);
            return Err(signed.err().unwrap_or_else(|| {
                self.unusable(format!(
                    "a new {alg} key's signature does not verify with the public key it reported"
                ))
            }));
        }
        Ok((jwk, object))
    }

    fn unusable(&self, reason: String) -> TokenError {
        TokenError::Unusable {
            token: self.selector.to_string(),
            reason,
        }
    }

    fn read_public(
        &self,
        session: &Session,
        alg: Algorithm,
        handle: ObjectHandle,
    ) -> Result<PublicMembers, OpError> {
        let bad = |what: &str| OpError::Token(self.unusable(format!("{alg} public key: {what}")));
        match alg.family() {
            KeyFamily::Ed25519 | KeyFamily::P256 => {
                let attrs = session.get_attributes(handle, &[AttributeType::EcPoint])?;
                let Some(Attribute::EcPoint(value)) = attrs.into_iter().next() else {
                    return Err(bad("no CKA_EC_POINT"));
                };
                if alg.family() == KeyFamily::Ed25519 {
                    let x =
                        ec_point(&value, 32).ok_or_else(|| bad("CKA_EC_POINT is not 32 bytes"))?;
                    return Ok(PublicMembers::Okp { x: x.to_vec() });
                }
                match ec_point(&value, 65) {
                    Some([0x04, xy @ ..]) => Ok(PublicMembers::Ec {
                        x: xy[..32].to_vec(),
                        y: xy[32..].to_vec(),
                    }),
                    _ => Err(bad("CKA_EC_POINT is not an uncompressed P-256 point")),
                }
            }
            KeyFamily::Rsa => {
                let attrs = session.get_attributes(
                    handle,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )?;
                let (mut n, mut e) = (None, None);
                for a in attrs {
                    match a {
                        Attribute::Modulus(v) => n = Some(strip_zeros(&v)),
                        Attribute::PublicExponent(v) => e = Some(strip_zeros(&v)),
                        _ => {}
                    }
                }
                match (n, e) {
                    (Some(n), Some(e)) if !n.is_empty() && !e.is_empty() => {
                        Ok(PublicMembers::Rsa { n, e })
                    }
                    _ => Err(bad("no modulus or exponent")),
                }
            }
        }
    }

    /// Refuses a private key the token would let out after all.
    fn check_private(&self, session: &Session, handle: ObjectHandle) -> Result<(), OpError> {
        let attrs = session.get_attributes(
            handle,
            &[AttributeType::Sensitive, AttributeType::Extractable],
        )?;
        let sealed_in = attrs
            .iter()
            .any(|a| matches!(a, Attribute::Sensitive(true)))
            && attrs
                .iter()
                .any(|a| matches!(a, Attribute::Extractable(false)));
        if sealed_in {
            Ok(())
        } else {
            Err(OpError::Token(self.unusable(
                "it made a private key that is not sensitive and non-extractable".into(),
            )))
        }
    }

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
    fn an_ec_point_is_read_wrapped_in_der_or_bare_and_nothing_else() {
        let point: Vec<u8> = (0..32).collect();
        let mut der = vec![0x04, 32];
        der.extend(&point);
        assert_eq!(ec_point(&der, 32).unwrap(), &point[..]);
        assert_eq!(ec_point(&point, 32).unwrap(), &point[..]);
        // A wrong length in the wrapper, or a point of another size.
        der[1] = 31;
        assert!(ec_point(&der, 32).is_none());
        assert!(ec_point(&point[..31], 32).is_none());
        assert!(ec_point(&[], 32).is_none());
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
        assert_eq!(strip_zeros(&[0, 0, 1, 0]), vec![1, 0]);
    }
}
