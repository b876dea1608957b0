//! Hostile tokens against the verifier: each refused for the right reason.

use serde_json::{Value, json};
use signet::clock::ManualClock;
use signet::keys::jwk::b64;
use signet::keys::{Algorithm, SigningKey};
use signet::verifier::VerifyError;

use crate::common::jwks_server::{JwksServer, key, mint, std_b64};
use crate::verifier::{Claims, ISS, T0, claims, header, verifier};

/// Adds the group order L to an Ed25519 signature's S (little-endian).
fn s_plus_l(sig: &[u8]) -> Vec<u8> {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = sig.to_vec();
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(out[32 + i]) + u16::from(L[i]) + carry;
        out[32 + i] = v as u8;
        carry = v >> 8;
    }
    out
}

#[tokio::test]
async fn hostile_tokens_are_refused_for_the_right_reason() {
    let (ed, es, rs, magic) = (
        key(Algorithm::EdDSA),
        key(Algorithm::ES256),
        key(Algorithm::RS256),
        key(Algorithm::EdDSA),
    );
    let server = JwksServer::start(&[&ed, &es, &rs, &magic]).await;
    let clock = ManualClock::new(T0);
    let v = verifier(&server.url, &clock);
    let c = claims(T0);
    let good = mint(&ed, &header(&ed, "at+jwt"), &c);
    v.verify::<Claims>(&good).await.unwrap();
    let (h_b64, c_b64) = {
        let mut parts = good.split('.');
        (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
        )
    };
    let unsigned = |h: Value| format!("{}.{}.", b64(h.to_string().as_bytes()), c_b64);
    let hmac = |key: &[u8], h: Value| {
        let input = format!("{}.{}", b64(h.to_string().as_bytes()), c_b64);
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            input.as_bytes(),
        );
        format!("{input}.{}", b64(tag.as_ref()))
    };
    let with = |k: &SigningKey, extra: Value, claims: &Value| {
        let mut h = header(k, "at+jwt");
        h.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        mint(k, &h, claims)
    };
    // The RSA key's public bytes, as an attacker would use them for HS256.
    let (n, e) = match rs.public_jwk().members().unwrap() {
        signet::keys::PublicMembers::Rsa { n, e } => (n, e),
        _ => unreachable!(),
    };
    use rsa::pkcs8::EncodePublicKey;
    let der = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&n),
        rsa::BigUint::from_bytes_be(&e),
    )
    .unwrap()
    .to_public_key_der()
    .unwrap()
    .as_bytes()
    .to_vec();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        std_b64(&der)
    );
    let hs = |kid: &str| json!({"alg": "HS256", "kid": kid, "typ": "at+jwt"});

    let es_zero = format!(
        "{}.{}.{}",
        b64(header(&es, "at+jwt").to_string().as_bytes()),
        c_b64,
        b64(&[0u8; 64])
    );
    let ed_sig = signet::keys::jwk::b64_decode(good.rsplit('.').next().unwrap()).unwrap();
    let ed_malleated = format!("{h_b64}.{c_b64}.{}", b64(&s_plus_l(&ed_sig)));
    let last = good.chars().last().unwrap();
    let stray_bits = format!("{}{}", &good[..good.len() - 1], char::from(last as u8 + 1));

    use VerifyError::*;
    type Expect = fn(&VerifyError) -> bool;
    let cases: Vec<(&str, String, Expect)> = vec![
        (
            "alg none",
            unsigned(json!({"alg": "none", "kid": ed.kid(), "typ": "at+jwt"})),
            |e| matches!(e, DisallowedAlg(_)),
        ),
        (
            "alg None",
            unsigned(json!({"alg": "None", "kid": ed.kid(), "typ": "at+jwt"})),
            |e| matches!(e, DisallowedAlg(_)),
        ),
        (
            "alg NONE",
            unsigned(json!({"alg": "NONE", "kid": ed.kid(), "typ": "at+jwt"})),
            |e| matches!(e, DisallowedAlg(_)),
        ),
        (
            "alg nOnE",
            unsigned(json!({"alg": "nOnE", "kid": ed.kid(), "typ": "at+jwt"})),
            |e| matches!(e, DisallowedAlg(_)),
        ),
        ("HS256 with PEM", hmac(pem.as_bytes(), hs(rs.kid())), |e| {
            matches!(e, DisallowedAlg(_))
        }),
        ("HS256 with DER", hmac(&der, hs(rs.kid())), |e| {
            matches!(e, DisallowedAlg(_))
        }),
        ("HS256 with n", hmac(&n, hs(rs.kid())), |e| {
            matches!(e, DisallowedAlg(_))
        }),
        (
            "ES256 header on an EdDSA key",
            mint(
                &ed,
                &json!({"alg": "ES256", "kid": ed.kid(), "typ": "at+jwt"}),
                &c,
            ),
            |e| matches!(e, DisallowedAlg(_)),
        ),
        (
            "embedded jwk",
            with(&ed, json!({"jwk": ed.public_jwk()}), &c),
            |e| matches!(e, ForbiddenHeader(h) if h == "jwk"),
        ),
        (
            "jku",
            with(&ed, json!({"jku": "https://evil.example/jwks"}), &c),
            |e| matches!(e, ForbiddenHeader(h) if h == "jku"),
        ),
        (
            "x5u",
            with(&ed, json!({"x5u": "https://evil.example/cert"}), &c),
            |e| matches!(e, ForbiddenHeader(h) if h == "x5u"),
        ),
        (
            "crit",
            with(&ed, json!({"crit": ["exp"]}), &c),
            |e| matches!(e, ForbiddenHeader(h) if h == "crit"),
        ),
        (
            "kid path",
            mint(
                &ed,
                &json!({"alg": "EdDSA", "kid": "../../dev/null", "typ": "at+jwt"}),
                &c,
            ),
            |e| matches!(e, Malformed(_)),
        ),
        (
            "129-character kid",
            mint(
                &ed,
                &json!({"alg": "EdDSA", "kid": "a".repeat(129), "typ": "at+jwt"}),
                &c,
            ),
            |e| matches!(e, Malformed(m) if m.contains("kid")),
        ),
        (
            "128-character kid, the longest accepted, unknown",
            mint(
                &ed,
                &json!({"alg": "EdDSA", "kid": "a".repeat(128), "typ": "at+jwt"}),
                &c,
            ),
            |e| matches!(e, UnknownKid(k) if k.len() == 128),
        ),
        (
            "10 KB kid",
            mint(
                &ed,
                &json!({"alg": "EdDSA", "kid": "a".repeat(10_000), "typ": "at+jwt"}),
                &c,
            ),
            |e| matches!(e, TooLarge),
        ),
        (
            "magic link as access token",
            mint(&magic, &header(&magic, "magic-link+jwt"), &c),
            |e| matches!(e, WrongTyp { .. }),
        ),
        (
            "exp as a string",
            mint(
                &ed,
                &header(&ed, "at+jwt"),
                &json!({"iss": ISS, "aud": "api", "exp": "9999999999"}),
            ),
            |e| matches!(e, InvalidClaim("exp")),
        ),
        (
            "no aud",
            mint(
                &ed,
                &header(&ed, "at+jwt"),
                &json!({"iss": ISS, "exp": T0.0 + 600}),
            ),
            |e| matches!(e, MissingClaim("aud")),
        ),
        (
            "wrong aud",
            mint(
                &ed,
                &header(&ed, "at+jwt"),
                &json!({"iss": ISS, "aud": ["other"], "exp": T0.0 + 600}),
            ),
            |e| matches!(e, WrongAudience),
        ),
        (
            "wrong iss",
            mint(
                &ed,
                &header(&ed, "at+jwt"),
                &json!({"iss": "https://evil.example", "aud": "api", "exp": T0.0 + 600}),
            ),
            |e| matches!(e, WrongIssuer { .. }),
        ),
        (
            "no exp",
            mint(
                &ed,
                &header(&ed, "at+jwt"),
                &json!({"iss": ISS, "aud": "api"}),
            ),
            |e| matches!(e, MissingClaim("exp")),
        ),
        ("ES256 zero signature", es_zero, |e| {
            matches!(e, BadSignature)
        }),
        ("Ed25519 S + L", ed_malleated, |e| matches!(e, BadSignature)),
        (
            "1 MB token",
            format!("{good}{}", "A".repeat(1 << 20)),
            |e| matches!(e, TooLarge),
        ),
        ("padding", format!("{good}=="), |e| {
            matches!(e, Malformed(_))
        }),
        ("non-zero padding bits", stray_bits, |e| {
            matches!(e, Malformed(_))
        }),
        ("four parts", format!("{good}.x"), |e| {
            matches!(e, Malformed(_))
        }),
        (
            "expired",
            mint(
                &ed,
                &header(&ed, "at+jwt"),
                &json!({"iss": ISS, "aud": "api", "exp": T0.0 - 61}),
            ),
            |e| matches!(e, Expired),
        ),
        (
            "not yet valid",
            mint(
                &ed,
                &header(&ed, "at+jwt"),
                &json!({"iss": ISS, "aud": "api", "nbf": T0.0 + 61, "exp": T0.0 + 600}),
            ),
            |e| matches!(e, NotYetValid),
        ),
    ];
    for (name, token, expected) in cases {
        match v.verify::<Claims>(&token).await {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => assert!(expected(&e), "{name}: refused for the wrong reason: {e:?}"),
        }
    }
    // Within leeway, both edges are accepted.
    v.verify::<Claims>(&mint(
        &ed,
        &header(&ed, "at+jwt"),
        &json!({"iss": ISS, "aud": "api", "exp": T0.0 - 59}),
    ))
    .await
    .unwrap();
    assert_eq!(
        server.requests(),
        1,
        "no hostile token caused a JWKS request"
    );
}
