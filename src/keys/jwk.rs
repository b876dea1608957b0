//! Public JWKs (RFC 7517) and their RFC 7638 thumbprints.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::Algorithm;

/// base64url without padding (RFC 7515 §2), the JOSE encoding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding, refusing padding and non-canonical
/// trailing bits (RFC 7515 §2, RFC 4648 §3.5).
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    // The default engine of `URL_SAFE_NO_PAD` already rejects `=` and
    // non-zero trailing bits.
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// A public JSON Web Key as signet publishes it: `kty`, `use`, `alg`, `kid` and
/// the public members of its key type, nothing else.
///
/// There is no field for `d`, `p`, `q`, `dp`, `dq` or `qi`: a private member
/// cannot be serialised from this type, and is ignored when parsing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    /// Key type: `OKP`, `RSA` or `EC`.
    pub kty: String,
    /// Always `"sig"`.
    #[serde(rename = "use")]
    pub use_: String,
    /// The one algorithm this key signs with.
    pub alg: String,
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// Curve, for `OKP` and `EC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Public point (`OKP`) or x coordinate (`EC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// y coordinate (`EC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Modulus (`RSA`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// Public exponent (`RSA`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

/// The public members of a key, as raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicMembers {
    /// Ed25519 public point.
    Okp {
        /// 32-byte public key.
        x: Vec<u8>,
    },
    /// RSA modulus and exponent, big-endian, no leading zeros.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// P-256 affine coordinates, 32 bytes each.
    Ec {
        /// x coordinate.
        x: Vec<u8>,
        /// y coordinate.
        y: Vec<u8>,
    },
}

impl PublicJwk {
    /// Builds the published JWK of a key, computing its kid.
    pub fn new(alg: Algorithm, members: &PublicMembers) -> PublicJwk {
        let family = alg.family();
        let mut jwk = PublicJwk {
            kty: family.kty().to_owned(),
            use_: "sig".to_owned(),
            alg: alg.as_str().to_owned(),
            kid: String::new(),
            crv: family.crv().map(str::to_owned),
            x: None,
            y: None,
            n: None,
            e: None,
        };
        match members {
            PublicMembers::Okp { x } => jwk.x = Some(b64(x)),
            PublicMembers::Rsa { n, e } => {
                jwk.n = Some(b64(n));
                jwk.e = Some(b64(e));
            }
            PublicMembers::Ec { x, y } => {
                jwk.x = Some(b64(x));
                jwk.y = Some(b64(y));
            }
        }
        jwk.kid = thumbprint(&jwk).unwrap_or_default();
        jwk
    }

    /// The raw public members, if the JWK is well-formed for its `kty`.
    pub fn members(&self) -> Option<PublicMembers> {
        let get = |v: &Option<String>| v.as_deref().and_then(b64_decode);
        match self.kty.as_str() {
            "OKP" if self.crv.as_deref() == Some("Ed25519") => {
                let x = get(&self.x)?;
                (x.len() == 32).then_some(PublicMembers::Okp { x })
            }
            "RSA" => Some(PublicMembers::Rsa {
                n: get(&self.n)?,
                e: get(&self.e)?,
            }),
            "EC" if self.crv.as_deref() == Some("P-256") => {
                let (x, y) = (get(&self.x)?, get(&self.y)?);
                (x.len() == 32 && y.len() == 32).then_some(PublicMembers::Ec { x, y })
            }
            _ => None,
        }
    }
}

/// The encodings of the Ed25519 points of small order (the eight torsion
/// points, and the non-canonical encodings of some of them), compared with
/// the x-sign bit (the top bit of the last byte) cleared.
const ED25519_SMALL_ORDER: [[u8; 32]; 7] = {
    let mut table = [[0u8; 32]; 7];
    // y = 0 (order 4).
    // y = 1: the identity (order 1).
    table[1][0] = 1;
    // y = p - 1 (order 2), y = p (non-canonical 0), y = p + 1 (non-canonical 1).
    let mut i = 1;
    while i < 31 {
        table[4][i] = 0xff;
        table[5][i] = 0xff;
        table[6][i] = 0xff;
        i += 1;
    }
    table[4][0] = 0xec;
    table[5][0] = 0xed;
    table[6][0] = 0xee;
    table[4][31] = 0x7f;
    table[5][31] = 0x7f;
    table[6][31] = 0x7f;
    // The two y of the points of order 8.
    table[2] = [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ];
    table[3] = [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ];
    table
};

/// Whether `x` encodes an Ed25519 point of small order. With such a public
/// key one fixed signature verifies many messages (RFC 8032 leaves the check
/// to the application), so a verifier must never use one.
pub fn is_small_order_ed25519(x: &[u8]) -> bool {
    let Ok(x) = <&[u8; 32]>::try_from(x) else {
        return false;
    };
    let mut cleared = *x;
    cleared[31] &= 0x7f;
    ED25519_SMALL_ORDER.contains(&cleared)
}

/// The RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key.
///
/// The hash input is the JSON object of the key type's required members in
/// lexicographic order with no whitespace (RFC 7638 §3.2). Returns `None` when
/// a required member is missing or the key type is unknown.
pub fn thumbprint(jwk: &PublicJwk) -> Option<String> {
    let s = |v: &Option<String>| v.as_deref().map(|s| serde_json::Value::from(s).to_string());
    let canonical = match jwk.kty.as_str() {
        "OKP" => format!(
            r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
            s(&jwk.crv)?,
            s(&jwk.x)?
        ),
        "RSA" => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, s(&jwk.e)?, s(&jwk.n)?),
        "EC" => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            s(&jwk.crv)?,
            s(&jwk.x)?,
            s(&jwk.y)?
        ),
        _ => return None,
    };
    Some(b64(crate::crypto::digest::digest(
        &crate::crypto::digest::SHA256,
        canonical.as_bytes(),
    )
    .as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(kty: &str) -> PublicJwk {
        PublicJwk {
            kty: kty.into(),
            use_: "sig".into(),
            alg: String::new(),
            kid: String::new(),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
        }
    }

    /// RFC 7638 §3.1.
    #[test]
    fn rfc7638_rsa_thumbprint() {
        let mut k = jwk("RSA");
        k.n = Some(
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B\
             JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F\
             DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4\
             vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
                .into(),
        );
        k.e = Some("AQAB".into());
        assert_eq!(
            thumbprint(&k).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    /// RFC 8037 A.3.
    #[test]
    fn rfc8037_okp_thumbprint() {
        let mut k = jwk("OKP");
        k.crv = Some("Ed25519".into());
        k.x = Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into());
        assert_eq!(
            thumbprint(&k).as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
    }

    #[test]
    fn base64url_refuses_padding_and_stray_bits() {
        assert_eq!(b64_decode("Zg").as_deref(), Some(&b"f"[..]));
        assert!(b64_decode("Zg==").is_none());
        assert!(b64_decode("Zh").is_none(), "non-zero trailing bits");
        assert!(b64_decode("Z+8").is_none(), "standard alphabet");
    }
}
