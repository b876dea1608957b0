//! The signature algorithms signet issues, as one table.
//!
//! Every per-algorithm fact (JWK key type, curve, ring's verification
//! algorithm, RSA padding) lives in [`Algorithm::spec`]; the rest of the code
//! is one path that reads this table.

use std::fmt;
use std::str::FromStr;

use crate::crypto::signature as sig;
use serde::{Deserialize, Serialize};

/// A JWS signature algorithm (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Algorithm {
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    PS256,
    /// ECDSA with P-256 and SHA-256.
    ES256,
}

/// The key family an algorithm's keys belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFamily {
    /// Ed25519 keys: JWK `kty` OKP, `crv` Ed25519.
    Ed25519,
    /// RSA keys: JWK `kty` RSA.
    Rsa,
    /// P-256 keys: JWK `kty` EC, `crv` P-256.
    P256,
}

/// Everything signet needs to know about one algorithm.
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) family: KeyFamily,
    /// ring's verification algorithm; RSA accepts 2048-8192-bit moduli.
    pub(crate) verify: &'static dyn sig::VerificationAlgorithm,
    /// ring's RSA padding for signing and parameters for verifying (RSA only).
    pub(crate) rsa: Option<(&'static dyn sig::RsaEncoding, &'static sig::RsaParameters)>,
}

static EDDSA: Spec = Spec {
    name: "EdDSA",
    family: KeyFamily::Ed25519,
    verify: &sig::ED25519,
    rsa: None,
};

static RS256: Spec = Spec {
    name: "RS256",
    family: KeyFamily::Rsa,
    verify: &sig::RSA_PKCS1_2048_8192_SHA256,
    rsa: Some((&sig::RSA_PKCS1_SHA256, &sig::RSA_PKCS1_2048_8192_SHA256)),
};

static PS256: Spec = Spec {
    name: "PS256",
    family: KeyFamily::Rsa,
    verify: &sig::RSA_PSS_2048_8192_SHA256,
    rsa: Some((&sig::RSA_PSS_SHA256, &sig::RSA_PSS_2048_8192_SHA256)),
};

static ES256: Spec = Spec {
    name: "ES256",
    family: KeyFamily::P256,
    verify: &sig::ECDSA_P256_SHA256_FIXED,
    rsa: None,
};

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::EdDSA,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
    ];

    pub(crate) fn spec(self) -> &'static Spec {
        match self {
            Algorithm::EdDSA => &EDDSA,
            Algorithm::RS256 => &RS256,
            Algorithm::PS256 => &PS256,
            Algorithm::ES256 => &ES256,
        }
    }

    /// The JWA name (`"EdDSA"`, `"RS256"`, ...).
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// The key family of this algorithm.
    pub fn family(self) -> KeyFamily {
        self.spec().family
    }
}

impl KeyFamily {
    /// The JWK `kty` of this family.
    pub fn kty(self) -> &'static str {
        match self {
            KeyFamily::Ed25519 => "OKP",
            KeyFamily::Rsa => "RSA",
            KeyFamily::P256 => "EC",
        }
    }

    /// The JWK `crv`, for curve keys.
    pub fn crv(self) -> Option<&'static str> {
        match self {
            KeyFamily::Ed25519 => Some("Ed25519"),
            KeyFamily::Rsa => None,
            KeyFamily::P256 => Some("P-256"),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An algorithm name signet does not issue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported algorithm {0:?}: use one of EdDSA, RS256, PS256, ES256")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Exact, case-sensitive JWA names only: `none`, `HS256` and friends are refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
        }
        for bad in ["none", "None", "HS256", "rs256", "ES384", ""] {
            assert!(bad.parse::<Algorithm>().is_err(), "{bad} accepted");
        }
    }
}
