//! Unit tests of token parsing, verification and `typ` comparison.

use super::*;
use crate::keys::SigningKey;
use crate::keys::{Pkcs8, generate};

fn key() -> SigningKey {
    let pkcs8: Pkcs8 = generate(Algorithm::EdDSA, 2048).unwrap();
    SigningKey::from_pkcs8(Algorithm::EdDSA, &pkcs8).unwrap()
}

fn expect(now: UnixTime) -> Expectations<'static> {
    Expectations {
        typ: Some("at+jwt"),
        issuer: Some("https://issuer.example"),
        audience: Audience::Unchecked,
        leeway: Duration::from_secs(60),
        now,
    }
}

/// RFC 7515 §4.1.9: `typ` compares case-insensitively, and a media type
/// may carry the `application/` prefix or not.
#[test]
fn typ_compares_as_a_media_type() {
    for (expected, found, same) in [
        ("at+jwt", "at+jwt", true),
        ("at+jwt", "AT+JWT", true),
        ("at+jwt", "application/at+jwt", true),
        ("application/at+jwt", "Application/At+Jwt", true),
        ("application/at+jwt", "at+jwt", true),
        ("at+jwt", "jwt", false),
        ("at+jwt", "application/jwt", false),
        ("at+jwt", "applicatio", false),
        ("at+jwt", "", false),
        ("at+jwt", "applicatioñ/at+jwt", false),
        ("at+jwt", "at+jwt ", false),
    ] {
        assert_eq!(same_typ(expected, found), same, "{expected:?} vs {found:?}");
    }
}

/// Every single-character change to a valid token is refused, and nothing panics.
#[test]
fn no_single_character_mutation_verifies() {
    let k = key();
    let now = UnixTime(1_800_000_000);
    let header = encode_header(Algorithm::EdDSA, k.kid(), "at+jwt");
    let claims =
        serde_json::json!({"iss": "https://issuer.example", "sub": "u", "exp": now.0 + 60});
    let token = sign_compact(|m| k.sign(m), &header, claims.to_string().as_bytes()).unwrap();
    let members = VerifyingKey::new(Algorithm::EdDSA, &k.public_jwk().members().unwrap());
    let check = |t: &str| parse(t).and_then(|p| p.verify(&members, &expect(now)));
    assert!(check(&token).is_ok());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let mut bytes = token.clone().into_bytes();
        let at = (next() % bytes.len() as u64) as usize;
        let c = alphabet[(next() % alphabet.len() as u64) as usize];
        if bytes[at] == c {
            continue;
        }
        bytes[at] = c;
        let mutated = String::from_utf8(bytes).unwrap();
        assert!(
            check(&mutated).is_err(),
            "mutation at {at} to {:?} verified",
            c as char
        );
    }
}

#[test]
fn the_bearer_scheme_is_matched_in_any_case_and_nothing_else_is_taken() {
    for value in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR  abc "] {
        assert_eq!(bearer_credentials(value), Some("abc"), "{value:?}");
    }
    for value in [
        "Basic abc",
        "Bearerabc",
        "Bearer",
        "Bearer   ",
        "",
        "Bear abc",
        "Bé abc",
    ] {
        assert_eq!(bearer_credentials(value), None, "{value:?}");
    }
}
