//! Key material: generating keypairs, parsing them once into the crypto
//! backend's key pairs ([`crate::crypto`]: aws-lc-rs or ring), and the raw
//! signature and verification primitives.
//!
//! The backend generates every key and performs every signature and
//! verification; in the ring build only, the `rsa` crate generates RSA keys
//! (ring cannot), and never signs.

use std::fmt;

use crate::crypto::rand::SystemRandom;
use crate::crypto::signature::{self as sig, KeyPair as _};
use zeroize::Zeroizing;

use super::jwk::{PublicJwk, PublicMembers};
use super::{Algorithm, KeyFamily};

/// Why key material could not be generated or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PKCS#8 document does not hold a valid key of the expected algorithm.
    #[error("the private key is not a valid {alg} key: {reason}")]
    InvalidPrivateKey {
        /// The algorithm the key was meant for.
        alg: Algorithm,
        /// The crypto backend's reason.
        reason: String,
    },
    /// An RSA modulus size signet does not generate.
    #[error("unsupported RSA key size {0}: use 2048, 3072 or 4096")]
    RsaBits(u32),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// A signing operation failed (the backend refuses only on RNG failure).
    #[error("signing failed")]
    Signing,
}

/// RSA modulus sizes signet generates.
pub const RSA_BITS: [u32; 3] = [2048, 3072, 4096];

/// A freshly generated private key as PKCS#8 DER, zeroized on drop.
///
/// Reach the bytes only through [`Pkcs8::expose_der`], to seal them.
pub struct Pkcs8(Zeroizing<Vec<u8>>);

impl Pkcs8 {
    /// Wraps DER bytes (e.g. just decrypted from the store).
    pub fn from_der(der: Zeroizing<Vec<u8>>) -> Self {
        Pkcs8(der)
    }

    /// The private key bytes. The name is the warning: never log or return them.
    pub fn expose_der(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Pkcs8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pkcs8(<redacted>)")
    }
}

/// Generates a new private key for `alg`. `rsa_bits` applies to RSA only.
///
/// RSA generation takes tens to hundreds of milliseconds: call it from a
/// blocking thread, never from an async task.
pub fn generate(alg: Algorithm, rsa_bits: u32) -> Result<Pkcs8, KeyError> {
    let rng = SystemRandom::new();
    let der = match alg.family() {
        KeyFamily::Ed25519 => sig::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| KeyError::Random)?
            .as_ref()
            .to_vec(),
        KeyFamily::P256 => {
            sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| KeyError::Random)?
                .as_ref()
                .to_vec()
        }
        KeyFamily::Rsa => generate_rsa(rsa_bits)?,
    };
    Ok(Pkcs8(Zeroizing::new(der)))
}

fn generate_rsa(bits: u32) -> Result<Vec<u8>, KeyError> {
    if !RSA_BITS.contains(&bits) {
        return Err(KeyError::RsaBits(bits));
    }
    crate::crypto::generate_rsa(bits).map_err(|reason| KeyError::InvalidPrivateKey {
        alg: Algorithm::RS256,
        reason,
    })
}

enum Pair {
    Ed(sig::Ed25519KeyPair),
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ec(sig::EcdsaKeyPair),
}

/// A private key parsed once into the backend's key pair: what the signing path holds.
///
/// `Debug` prints the kid and algorithm only.
pub struct SigningKey {
    alg: Algorithm,
    jwk: PublicJwk,
    pair: Pair,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey(kid={}, alg={}, <redacted>)",
            self.jwk.kid, self.alg
        )
    }
}

impl SigningKey {
    /// Parses a PKCS#8 private key for `alg` and derives its public JWK.
    pub fn from_pkcs8(alg: Algorithm, pkcs8: &Pkcs8) -> Result<SigningKey, KeyError> {
        let der = pkcs8.expose_der();
        let invalid = |e: crate::crypto::error::KeyRejected| KeyError::InvalidPrivateKey {
            alg,
            reason: e.to_string(),
        };
        let rng = SystemRandom::new();
        let (pair, members) = match alg.family() {
            KeyFamily::Ed25519 => {
                let kp = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(invalid)?;
                let x = kp.public_key().as_ref().to_vec();
                (Pair::Ed(kp), PublicMembers::Okp { x })
            }
            KeyFamily::P256 => {
                let kp =
                    crate::crypto::ecdsa_from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                        .map_err(invalid)?;
                let point = kp.public_key().as_ref();
                let members = PublicMembers::Ec {
                    x: point[1..33].to_vec(),
                    y: point[33..65].to_vec(),
                };
                (Pair::Ec(kp), members)
            }
            KeyFamily::Rsa => {
                let kp = sig::RsaKeyPair::from_pkcs8(der).map_err(invalid)?;
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key());
                let (padding, _) = alg.spec().rsa.ok_or(KeyError::Signing)?;
                (
                    Pair::Rsa(kp, padding),
                    PublicMembers::Rsa { n: c.n, e: c.e },
                )
            }
        };
        Ok(SigningKey {
            alg,
            jwk: PublicJwk::new(alg, &members),
            pair,
            rng,
        })
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The key's id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// The public half, as published.
    pub fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    /// Signs `message` (a JWS signing input) and returns the raw signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            Pair::Ed(kp) => Ok(kp.sign(message).as_ref().to_vec()),
            Pair::Ec(kp) => kp
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Signing),
            Pair::Rsa(kp, padding) => {
                let mut out = vec![0; kp.public_key().modulus_len()];
                kp.sign(*padding, &self.rng, message, &mut out)
                    .map_err(|_| KeyError::Signing)?;
                Ok(out)
            }
        }
    }
}

/// A public key parsed once for verification, as held by the verifier's key
/// cache and the server's snapshot. With aws-lc-rs it is the backend's parsed
/// key, so a verification does not decode the key again; ring has no parsed
/// public keys and decodes the bytes kept here on every verification.
///
/// A key that cannot be parsed (malformed, or not of its algorithm's family)
/// is kept as such and verifies nothing.
#[derive(Clone)]
pub struct VerifyingKey {
    alg: Algorithm,
    parsed: Parsed,
}

#[derive(Clone)]
enum Parsed {
    #[cfg(feature = "aws-lc-rs")]
    Backend(sig::ParsedPublicKey),
    #[cfg(not(feature = "aws-lc-rs"))]
    Bytes(Vec<u8>),
    #[cfg(not(feature = "aws-lc-rs"))]
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Invalid,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let valid = !matches!(self.parsed, Parsed::Invalid);
        write!(f, "VerifyingKey(alg={}, valid={valid})", self.alg)
    }
}

impl VerifyingKey {
    /// Parses the public members of a key of `alg`.
    pub fn new(alg: Algorithm, key: &PublicMembers) -> VerifyingKey {
        let bytes = match (alg.family(), key) {
            (KeyFamily::Ed25519, PublicMembers::Okp { x }) => Some(x.clone()),
            (KeyFamily::P256, PublicMembers::Ec { x, y }) => {
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                Some(point)
            }
            _ => None,
        };
        #[cfg(feature = "aws-lc-rs")]
        let spec = alg.spec();
        #[cfg(feature = "aws-lc-rs")]
        let parsed = match (bytes, key, spec.rsa) {
            (Some(bytes), _, _) => sig::ParsedPublicKey::new(spec.verify, bytes).ok(),
            (None, PublicMembers::Rsa { n, e }, Some((_, params)))
                if alg.family() == KeyFamily::Rsa =>
            {
                sig::RsaPublicKeyComponents { n, e }
                    .to_parsed_public_key(params)
                    .ok()
            }
            _ => None,
        }
        .map_or(Parsed::Invalid, Parsed::Backend);
        #[cfg(not(feature = "aws-lc-rs"))]
        let parsed = match (bytes, key) {
            (Some(bytes), _) => Parsed::Bytes(bytes),
            (None, PublicMembers::Rsa { n, e }) if alg.family() == KeyFamily::Rsa => Parsed::Rsa {
                n: n.clone(),
                e: e.clone(),
            },
            _ => Parsed::Invalid,
        };
        VerifyingKey { alg, parsed }
    }

    /// The algorithm this key verifies.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Whether `signature` is this key's over `message`. False for a bad
    /// signature, an unusable key, or an RSA key outside 2048-8192 bits;
    /// never panics.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.parsed {
            #[cfg(feature = "aws-lc-rs")]
            Parsed::Backend(key) => key.verify_sig(message, signature).is_ok(),
            #[cfg(not(feature = "aws-lc-rs"))]
            Parsed::Bytes(bytes) => sig::UnparsedPublicKey::new(self.alg.spec().verify, bytes)
                .verify(message, signature)
                .is_ok(),
            #[cfg(not(feature = "aws-lc-rs"))]
            Parsed::Rsa { n, e } => self.alg.spec().rsa.is_some_and(|(_, params)| {
                sig::RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }),
            Parsed::Invalid => false,
        }
    }
}

/// Verifies a raw signature over `message` with a public key of `alg`.
///
/// Returns false for a bad signature, a malformed key, or an RSA key outside
/// 2048-8192 bits; never panics. To verify several signatures with one key,
/// parse it once into a [`VerifyingKey`].
pub fn verify_signature(
    alg: Algorithm,
    key: &PublicMembers,
    message: &[u8],
    signature: &[u8],
) -> bool {
    VerifyingKey::new(alg, key).verify(message, signature)
}
