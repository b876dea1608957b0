//! RFC test vectors, reproduced offline.

use jsonwebtoken::{DecodingKey, Validation};
use signet::keys::jwk::b64_decode;
use signet::keys::token::sign_compact;
use signet::keys::{Algorithm, Pkcs8, PublicMembers, SigningKey, verify_signature};
use zeroize::Zeroizing;

/// RFC 8037 A.1 private key (seed) and A.4 signature.
const ED_SEED: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const ED_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

/// RFC 7515 A.2: RS256.
const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const RSA_JWS: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

fn split(jws: &str) -> (&str, Vec<u8>) {
    let dot = jws.rfind('.').unwrap();
    (&jws[..dot], b64_decode(&jws[dot + 1..]).unwrap())
}

#[test]
fn rfc8037_a4_ed25519_signature_reproduced_byte_for_byte() {
    // PKCS#8 v1 wrapping of the raw seed (RFC 8410 §7).
    let mut der = hex_prefix();
    der.extend_from_slice(&b64_decode(ED_SEED).unwrap());
    let key =
        SigningKey::from_pkcs8(Algorithm::EdDSA, &Pkcs8::from_der(Zeroizing::new(der))).unwrap();
    assert_eq!(key.public_jwk().x.as_deref(), Some(ED_X));
    assert_eq!(
        key.kid(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
        "RFC 8037 A.3"
    );
    let token = sign_compact(
        |m| key.sign(m),
        "eyJhbGciOiJFZERTQSJ9",
        b"Example of Ed25519 signing",
    )
    .unwrap();
    assert_eq!(token, ED_JWS);
}

fn hex_prefix() -> Vec<u8> {
    vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ]
}

#[test]
fn rfc7515_a2_rs256_example_verifies() {
    let key = PublicMembers::Rsa {
        n: b64_decode(RSA_N).unwrap(),
        e: b64_decode("AQAB").unwrap(),
    };
    let (input, sig) = split(RSA_JWS);
    assert!(verify_signature(
        Algorithm::RS256,
        &key,
        input.as_bytes(),
        &sig
    ));
    assert!(
        !verify_signature(Algorithm::PS256, &key, input.as_bytes(), &sig),
        "PKCS#1 v1.5 is not PSS"
    );
    let mut tampered = input.to_owned();
    tampered.replace_range(25..26, "A");
    assert!(!verify_signature(
        Algorithm::RS256,
        &key,
        tampered.as_bytes(),
        &sig
    ));

    // The same through jsonwebtoken with signet's ring provider.
    crate::common::jwt_provider::install();
    let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<serde_json::Value>(
        RSA_JWS,
        &DecodingKey::from_rsa_components(RSA_N, "AQAB").unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(data.claims["iss"], "joe");
    assert!(
        jsonwebtoken::decode::<serde_json::Value>(
            ED_JWS,
            &DecodingKey::from_rsa_components(RSA_N, "AQAB").unwrap(),
            &validation
        )
        .is_err()
    );
}

/// RFC 7515 A.1 (HS256) and A.3 (ES256).
const HS_JWS: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const ES_JWS: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
const ES_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const ES_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

#[test]
fn rfc7515_a1_hs256_is_refused() {
    use signet::keys::token::{VerifyError, parse};
    assert_eq!(
        parse(HS_JWS).unwrap_err(),
        VerifyError::DisallowedAlg("HS256".into())
    );
}

#[tokio::test]
async fn rfc7515_a3_es256_verifies_with_its_own_key_and_is_refused_by_signet() {
    use signet::clock::{Clock, SystemClock};
    use signet::keys::token::VerifyError;
    use signet::verifier::Verifier;

    // ring reproduces the RFC's ES256 verification...
    let key = PublicMembers::Ec {
        x: b64_decode(ES_X).unwrap(),
        y: b64_decode(ES_Y).unwrap(),
    };
    let (input, sig) = split(ES_JWS);
    assert!(verify_signature(
        Algorithm::ES256,
        &key,
        input.as_bytes(),
        &sig
    ));
    // ...but signet's JWKS does not hold that key: the server and the verifier refuse it.
    let s = crate::common::server::TestServer::start(
        "[purposes.access_token]\nalgorithms = [\"ES256\"]\n",
        SystemClock.now(),
    )
    .await;
    let r = s
        .post(
            "/v1/verify",
            Some(crate::common::server::SIGNER),
            serde_json::json!({"purpose": "access_token", "token": ES_JWS}),
        )
        .await;
    assert_eq!(r.status(), 401);
    let v = Verifier::builder(format!("{}/.well-known/jwks.json", s.public))
        .purpose("access_token")
        .build()
        .unwrap();
    let with_kid = {
        // Even with a kid, the key is not in the set.
        let header =
            signet::keys::jwk::b64(br#"{"alg":"ES256","kid":"rfc7515-a3","typ":"at+jwt"}"#);
        let rest = ES_JWS.split_once('.').unwrap().1;
        format!("{header}.{rest}")
    };
    assert!(matches!(
        v.verify::<serde_json::Value>(ES_JWS).await,
        Err(VerifyError::Malformed(_))
    ));
    assert!(matches!(
        v.verify::<serde_json::Value>(&with_kid).await,
        Err(VerifyError::UnknownKid(_))
    ));
    s.stop().await;
}

#[tokio::test]
async fn the_published_jwks_is_a_valid_rfc7517_set() {
    use signet::clock::{Clock, SystemClock};
    let s = crate::common::server::TestServer::start(
        "[purposes.access_token]\nalgorithms = [\"EdDSA\", \"RS256\", \"PS256\", \"ES256\"]\n",
        SystemClock.now(),
    )
    .await;
    let jwks: serde_json::Value = s.get("/.well-known/jwks.json").await.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(
        keys.len(),
        14,
        "8 access_token keys and 2 for each other purpose"
    );
    let mut kids = std::collections::HashSet::new();
    crate::common::jwt_provider::install();
    for k in keys {
        let obj = k.as_object().unwrap();
        assert!(
            kids.insert(k["kid"].as_str().unwrap().to_owned()),
            "duplicate kid"
        );
        assert_eq!(k["use"], "sig");
        assert!(obj.contains_key("alg") && obj.contains_key("kty"));
        for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
            assert!(!obj.contains_key(private), "{private} published");
        }
        let allowed: &[&str] = match k["kty"].as_str().unwrap() {
            "RSA" => &["kty", "use", "alg", "kid", "n", "e"],
            "EC" => &["kty", "use", "alg", "kid", "crv", "x", "y"],
            "OKP" => &["kty", "use", "alg", "kid", "crv", "x"],
            other => panic!("kty {other}"),
        };
        assert!(obj.keys().all(|m| allowed.contains(&m.as_str())), "{k}");
        // The set parses as RFC 7517 JWKs with an independent implementation.
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.clone()).unwrap();
        assert_eq!(
            jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                .unwrap(),
            k["kid"].as_str().unwrap()
        );
    }
    s.stop().await;
}
