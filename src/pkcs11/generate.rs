//! Generating keys inside the token, with the attributes that keep them in
//! (PKCS#11 v2.40 section 4.9: `CKA_SENSITIVE` true, `CKA_EXTRACTABLE`
//! false), and reading the public key back to make the JWK and its RFC 7638
//! kid.

use std::sync::Arc;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;

use super::keys::{TokenKey, hex, label_of};
use super::{OpError, Token, TokenError};
use crate::crypto::rand::{SecureRandom, SystemRandom};
use crate::keys::{Algorithm, KeyFamily, PublicJwk, PublicMembers, TokenObject, VerifyingKey};

/// DER of the named curve P-256 (OID 1.2.840.10045.3.1.7), for `CKA_EC_PARAMS`.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of id-Ed25519 (OID 1.3.101.112, RFC 8410), for `CKA_EC_PARAMS`.
const ED25519_PARAMS: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// Signed once by every new key and verified against the public key read
/// back, before the key is recorded.
const SELF_TEST: &[u8] = b"signet: a new key in the token signs what its public key verifies";

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

    pub(super) fn unusable(&self, reason: String) -> TokenError {
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

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
    fn leading_zero_bytes_are_not_part_of_a_modulus() {
        assert_eq!(strip_zeros(&[0, 0, 1, 0]), vec![1, 0]);
    }
}
