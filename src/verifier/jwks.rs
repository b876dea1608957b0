//! Fetching and vetting a JWKS: no redirects, status 200 only, bounded body
//! and key count, and only well-formed public signing keys kept.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use serde_json::Value;

use crate::keys::{Algorithm, PublicJwk, PublicMembers, VerifyingKey};

/// A usable verification key.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) alg: Algorithm,
    /// Parsed once, when the key set is fetched.
    pub(crate) key: VerifyingKey,
}

/// What a fetch returned.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// A new key set, its ETag and its `Cache-Control: max-age`.
    Keys {
        keys: HashMap<String, Key>,
        etag: Option<String>,
        max_age: Option<Duration>,
    },
    /// 304: the cached set is still current.
    NotModified { max_age: Option<Duration> },
}

/// Limits applied to every fetch.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_body: usize,
    pub(crate) max_keys: usize,
}

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// What a conditional GET returned.
pub(crate) enum Got {
    /// 200: the body, its ETag and its `Cache-Control: max-age`.
    Body {
        body: Vec<u8>,
        etag: Option<String>,
        max_age: Option<Duration>,
    },
    /// 304: the cached copy is still current.
    NotModified { max_age: Option<Duration> },
}

/// A conditional GET of a JSON document: no redirects (the client's
/// policy), status 200 (or 304 when `etag` was sent) only, body bounded.
pub(crate) async fn get(
    http: &reqwest::Client,
    url: &str,
    etag: Option<&str>,
    limits: &Limits,
) -> Result<Got, String> {
    let mut req = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(tag) = etag {
        req = req.header(IF_NONE_MATCH, tag);
    }
    let mut resp = req.send().await.map_err(|e| format!("GET {url}: {e}"))?;
    let max_age = resp
        .headers()
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    match resp.status().as_u16() {
        200 => {}
        304 if etag.is_some() => return Ok(Got::NotModified { max_age }),
        other => return Err(format!("GET {url}: status {other}, expected 200")),
    }
    let new_etag = resp
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if resp
        .content_length()
        .is_some_and(|n| n > limits.max_body as u64)
    {
        return Err(too_big(url, limits));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
        if body.len() + chunk.len() > limits.max_body {
            return Err(too_big(url, limits));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Got::Body {
        body,
        etag: new_etag,
        max_age,
    })
}

pub(crate) async fn fetch(
    http: &reqwest::Client,
    url: &str,
    etag: Option<&str>,
    limits: &Limits,
) -> Result<Fetched, String> {
    match get(http, url, etag, limits).await? {
        Got::NotModified { max_age } => Ok(Fetched::NotModified { max_age }),
        Got::Body {
            body,
            etag,
            max_age,
        } => {
            let keys = parse_set(&body, limits.max_keys).map_err(|e| format!("GET {url}: {e}"))?;
            Ok(Fetched::Keys {
                keys,
                etag,
                max_age,
            })
        }
    }
}

fn too_big(url: &str, limits: &Limits) -> String {
    format!(
        "GET {url}: body larger than the limit of {} bytes (raise it with VerifierBuilder::max_body)",
        limits.max_body
    )
}

/// `max-age` of a Cache-Control value; `no-cache`/`no-store` count as zero.
fn max_age(value: &str) -> Option<Duration> {
    let mut out = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            out = n
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    out
}

/// Parses a JWKS, keeping only keys signet can verify with. Entries that are
/// private, symmetric, weak, algorithm-less or ambiguous are skipped with a warning.
pub(crate) fn parse_set(body: &[u8], max_keys: usize) -> Result<HashMap<String, Key>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" array")?;
    if entries.len() > max_keys {
        return Err(format!(
            "{} keys, more than the limit of {max_keys} (raise it with VerifierBuilder::max_keys)",
            entries.len()
        ));
    }
    let mut keys = HashMap::new();
    let mut duplicated = Vec::new();
    for entry in entries {
        match vet(entry) {
            Ok((kid, key)) => {
                if keys.insert(kid.clone(), key).is_some() {
                    duplicated.push(kid);
                }
            }
            Err(why) => {
                let kid = entry.get("kid").and_then(|k| k.as_str()).unwrap_or("-");
                tracing::warn!(kid, "ignoring JWKS entry: {why}");
            }
        }
    }
    for kid in duplicated {
        tracing::warn!(kid, "ignoring JWKS entries with a duplicated kid");
        keys.remove(&kid);
    }
    Ok(keys)
}

fn vet(entry: &Value) -> Result<(String, Key), String> {
    let obj = entry.as_object().ok_or("not an object")?;
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
        return Err(format!("it carries the private member {m:?}"));
    }
    if obj.get("use").is_some_and(|u| u != "sig") {
        return Err("its use is not \"sig\"".into());
    }
    let alg_name = obj
        .get("alg")
        .and_then(Value::as_str)
        .ok_or("it has no alg")?;
    let alg: Algorithm = alg_name
        .parse()
        .map_err(|_| format!("alg {alg_name:?} is not accepted"))?;
    let jwk: PublicJwk =
        serde_json::from_value(entry.clone()).map_err(|e| format!("malformed: {e}"))?;
    if jwk.kty != alg.family().kty() {
        return Err(format!("kty {} does not fit alg {alg}", jwk.kty));
    }
    if jwk.kid.is_empty() || jwk.kid.len() > crate::keys::token::MAX_KID_LEN {
        return Err("bad kid".into());
    }
    let members = jwk.members().ok_or("its public members are malformed")?;
    if let PublicMembers::Okp { x } = &members
        && crate::keys::jwk::is_small_order_ed25519(x)
    {
        return Err(
            "its Ed25519 point has small order: a fixed signature would verify anything".into(),
        );
    }
    if let PublicMembers::Rsa { n, .. } = &members {
        // Leading zero bytes are not part of the modulus; an empty or zero
        // modulus has no bits at all.
        let significant = n.iter().position(|b| *b != 0).map_or(&[][..], |i| &n[i..]);
        let bits = significant.first().map_or(0, |b| {
            (significant.len() - 1) * 8 + (8 - b.leading_zeros() as usize)
        });
        if bits < 2048 {
            return Err(format!("RSA modulus of {bits} bits, under 2048"));
        }
    }
    let key = VerifyingKey::new(alg, &members);
    Ok((jwk.kid, Key { alg, key }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
    }

    #[test]
    fn unusable_entries_are_skipped() {
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let ok = serde_json::json!({"kty":"OKP","crv":"Ed25519","x":x,"alg":"EdDSA","kid":"good","use":"sig"});
        let set = serde_json::json!({"keys": [
            ok,
            {"kty":"OKP","crv":"Ed25519","x":x,"alg":"EdDSA","kid":"private","d":x},
            {"kty":"oct","k":"c2VjcmV0","alg":"HS256","kid":"oct"},
            {"kty":"OKP","crv":"Ed25519","x":x,"kid":"no-alg"},
            {"kty":"RSA","n":"AQAB","e":"AQAB","alg":"RS256","kid":"weak"},
            {"kty":"RSA","n":"","e":"AQAB","alg":"RS256","kid":"empty-n"},
            {"kty":"RSA","n":"AAAA","e":"AQAB","alg":"RS256","kid":"zero-n"},
            {"kty":"OKP","crv":"Ed25519","x":x,"alg":"EdDSA","kid":"twice"},
            {"kty":"OKP","crv":"Ed25519","x":x,"alg":"EdDSA","kid":"twice"},
            {"kty":"OKP","crv":"Ed25519","x":x,"alg":"EdDSA","kid":"enc","use":"enc"},
            // The identity, and a point of order 8 with the sign bit set.
            {"kty":"OKP","crv":"Ed25519","x":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","alg":"EdDSA","kid":"identity"},
            {"kty":"OKP","crv":"Ed25519","x":"xxdqcD1N2E-6PAt2DRBnDyogU_osOczGTsf9d5KsA_o","alg":"EdDSA","kid":"order8"},
        ]});
        let keys = parse_set(set.to_string().as_bytes(), 100).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["good"]);
        assert!(
            parse_set(set.to_string().as_bytes(), 3).is_err(),
            "key count capped"
        );
    }
}
