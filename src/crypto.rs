//! The crypto backend, chosen at build time: aws-lc-rs (the `aws-lc-rs`
//! feature, the default) or ring (the `ring` feature, for builds that cannot
//! compile C). The two crates share one API shape; the rest of signet reaches
//! either only through this module, and the few places where they differ are
//! the functions below.

#[cfg(feature = "aws-lc-rs")]
pub(crate) use ::aws_lc_rs as backend;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
pub(crate) use ::ring as backend;

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!(
    "signet needs a crypto backend: enable the `aws-lc-rs` feature (the default) or `ring`"
);

pub(crate) use backend::{digest, error, rand, signature};
// Sealing and authentication at rest: the server's only.
#[cfg(feature = "server")]
pub(crate) use backend::{aead, hkdf, hmac};

/// The backend this build signs and verifies with: `aws-lc-rs` or `ring`.
pub const BACKEND: &str = if cfg!(feature = "aws-lc-rs") {
    "aws-lc-rs"
} else {
    "ring"
};

/// Parses a PKCS#8 P-256 private key (ring also asks for a random source).
pub(crate) fn ecdsa_from_pkcs8(
    alg: &'static signature::EcdsaSigningAlgorithm,
    der: &[u8],
) -> Result<signature::EcdsaKeyPair, error::KeyRejected> {
    #[cfg(feature = "aws-lc-rs")]
    return signature::EcdsaKeyPair::from_pkcs8(alg, der);
    #[cfg(not(feature = "aws-lc-rs"))]
    return signature::EcdsaKeyPair::from_pkcs8(alg, der, &rand::SystemRandom::new());
}

/// A new RSA private key of `bits` as PKCS#8 DER: aws-lc-rs generates it
/// itself; ring cannot, so the `rsa` crate does (it only generates: its
/// private-key operations are not constant-time, RUSTSEC-2023-0071, and ring
/// signs).
#[cfg(feature = "aws-lc-rs")]
pub(crate) fn generate_rsa(bits: u32) -> Result<Vec<u8>, String> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        other => return Err(format!("unsupported RSA key size {other}")),
    };
    let pair = KeyPair::generate(size).map_err(|e| e.to_string())?;
    let der = pair.as_der().map_err(|e| e.to_string())?;
    Ok(der.as_ref().to_vec())
}

/// A new RSA private key of `bits` as PKCS#8 DER (see the aws-lc-rs build).
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
pub(crate) fn generate_rsa(bits: u32) -> Result<Vec<u8>, String> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits as usize)
        .map_err(|e| e.to_string())?;
    let doc = key.to_pkcs8_der().map_err(|e| e.to_string())?;
    Ok(doc.as_bytes().to_vec())
}

/// rustls on this backend, for the verifier's and the database's TLS.
#[cfg(any(feature = "verifier", feature = "server"))]
pub(crate) fn tls_provider() -> rustls::crypto::CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc-rs"))]
    return rustls::crypto::ring::default_provider();
}
