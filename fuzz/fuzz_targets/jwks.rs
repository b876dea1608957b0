//! The verifier's parsing and vetting of a JWKS from the network.
//! Properties: nothing panics; an accepted document has at most the limit
//! of entries; every key kept has a kid of 1 to 128 characters, one of the
//! four algorithms, and public members that parse for that algorithm.
#![no_main]

use libfuzzer_sys::fuzz_target;

const MAX_KEYS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let Ok(keys) = signet::fuzzing::jwks(data, MAX_KEYS) else {
        return;
    };
    assert!(keys.len() <= MAX_KEYS);
    let doc: serde_json::Value = serde_json::from_slice(data).expect("accepted, so JSON");
    for key in &keys {
        assert!(!key.kid.is_empty() && key.kid.len() <= 128, "kid {:?}", key.kid);
        // From an entry with its kid and alg (another entry with the same
        // kid may have been malformed and skipped), with no private member.
        let from = doc["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter(|e| e["kid"] == key.kid.as_str() && e["alg"].as_str() == Some(key.alg.as_str()))
            .collect::<Vec<_>>();
        assert!(!from.is_empty(), "kept {} ({}) from no entry", key.kid, key.alg);
        assert!(
            from.iter().any(|e| ["d", "p", "q", "dp", "dq", "qi", "k"].iter().all(|m| e.get(m).is_none())),
            "a key was kept from an entry with a private member"
        );
    }
});
