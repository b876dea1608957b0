//! A [`jsonwebtoken::crypto::CryptoProvider`] on signet's crypto backend, for
//! the tests, which use the jsonwebtoken crate as a third-party verifier
//! next to signet.
//!
//! Only the algorithms signet issues are provided; HMAC and every other
//! algorithm are refused with `InvalidAlgorithm`.

#![allow(dead_code, unreachable_pub)] // not every test module uses every item

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::{DecodingKey, DecodingKeyKind, EncodingKey};
use zeroize::Zeroizing;

use signet::keys::{Algorithm, KeyFamily, Pkcs8, PublicMembers, SigningKey, verify_signature};

/// jsonwebtoken's name for a signet algorithm.
pub fn to_jwt(alg: Algorithm) -> jsonwebtoken::Algorithm {
    alg.as_str()
        .parse()
        .unwrap_or(jsonwebtoken::Algorithm::HS256)
}

/// signet's algorithm for a jsonwebtoken one, if signet supports it.
fn from_jwt(alg: jsonwebtoken::Algorithm) -> Option<Algorithm> {
    Algorithm::ALL.into_iter().find(|a| to_jwt(*a) == alg)
}

/// signet's provider: its crypto backend for every signature and verification.
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_from_private,
        rsa_pub_components_from_public_key: |_| Err(ErrorKind::InvalidRsaKey(String::new()).into()),
        ec_pub_components_from_private_key: ec_from_private,
        ed_pub_components_from_private_key: ed_from_private,
        compute_digest,
    },
};

/// Installs [`RING_PROVIDER`] as jsonwebtoken's process default, unless one is
/// installed already. Idempotent.
pub fn install() {
    // An Err only means a provider is already installed, which is fine.
    let _ = RING_PROVIDER.install_default();
}

fn supported(alg: &jsonwebtoken::Algorithm) -> Result<Algorithm, Error> {
    from_jwt(*alg).ok_or_else(|| ErrorKind::InvalidAlgorithm.into())
}

struct RingSigner(SigningKey);

impl signature::Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        self.0.sign(msg).map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> jsonwebtoken::Algorithm {
        to_jwt(self.0.alg())
    }
}

fn new_signer(
    alg: &jsonwebtoken::Algorithm,
    key: &EncodingKey,
) -> Result<Box<dyn JwtSigner>, Error> {
    let alg = supported(alg)?;
    let pkcs8 = Pkcs8::from_der(Zeroizing::new(key.as_bytes().to_vec()));
    let key = SigningKey::from_pkcs8(alg, &pkcs8)
        .map_err(|_| Error::from(ErrorKind::InvalidKeyFormat))?;
    Ok(Box::new(RingSigner(key)))
}

struct RingVerifier(Algorithm, PublicMembers);

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        if verify_signature(self.0, &self.1, msg, signature) {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> jsonwebtoken::Algorithm {
        to_jwt(self.0)
    }
}

fn new_verifier(
    alg: &jsonwebtoken::Algorithm,
    key: &DecodingKey,
) -> Result<Box<dyn JwtVerifier>, Error> {
    let alg = supported(alg)?;
    let invalid = || Error::from(ErrorKind::InvalidKeyFormat);
    let members = match (alg.family(), key.kind()) {
        (KeyFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => PublicMembers::Rsa {
            n: n.clone(),
            e: e.clone(),
        },
        (KeyFamily::Ed25519, DecodingKeyKind::SecretOrDer(x)) if x.len() == 32 => {
            PublicMembers::Okp { x: x.clone() }
        }
        (KeyFamily::P256, DecodingKeyKind::SecretOrDer(p)) if p.len() == 65 && p[0] == 4 => {
            PublicMembers::Ec {
                x: p[1..33].to_vec(),
                y: p[33..].to_vec(),
            }
        }
        _ => return Err(invalid()),
    };
    Ok(Box::new(RingVerifier(alg, members)))
}

fn public_of(alg: Algorithm, der: &[u8]) -> Result<PublicMembers, Error> {
    let pkcs8 = Pkcs8::from_der(Zeroizing::new(der.to_vec()));
    let key = SigningKey::from_pkcs8(alg, &pkcs8)
        .map_err(|_| Error::from(ErrorKind::InvalidKeyFormat))?;
    key.public_jwk()
        .members()
        .ok_or_else(|| ErrorKind::InvalidKeyFormat.into())
}

fn rsa_from_private(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    match public_of(Algorithm::RS256, der)? {
        PublicMembers::Rsa { n, e } => Ok((n, e)),
        _ => Err(ErrorKind::InvalidKeyFormat.into()),
    }
}

fn ec_from_private(
    der: &[u8],
    alg: jsonwebtoken::Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>), Error> {
    match (alg, public_of(Algorithm::ES256, der)?) {
        (jsonwebtoken::Algorithm::ES256, PublicMembers::Ec { x, y }) => {
            Ok((EllipticCurve::P256, x, y))
        }
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn ed_from_private(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>, Error> {
    match (curve, public_of(Algorithm::EdDSA, der)?) {
        (EllipticCurve::Ed25519, PublicMembers::Okp { x }) => Ok(x),
        _ => Err(ErrorKind::InvalidKeyFormat.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>, Error> {
    use ring::digest;
    let alg = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(digest::digest(alg, data).as_ref().to_vec())
}
