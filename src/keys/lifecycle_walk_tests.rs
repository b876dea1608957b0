//! Random walks through the lifecycle: for many seeds, a random sequence of
//! clock moves, ticks, rotations (forced or not), revocations and policy
//! changes, with tokens "issued" by whichever key signs at each step. After
//! every step the rules of `docs/lifecycle.md` must hold. The walks are
//! seeded (xorshift), so a failure names a reproducible seed and step.

use std::time::Duration;

use super::lifecycle_tests::{MIN, T0, make, monthly, tick};
use super::*;
use crate::clock::UnixTime;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A token issued at some step: which key signed it and when it expires;
/// whether that key was revoked since.
struct Issued {
    kid: String,
    exp: UnixTime,
    revoked: bool,
}

/// The rules that must hold after applying what is due at `now`.
fn check(ring: &Keyring, now: UnixTime, policy: &Policy, issued: &[Issued], at: &str) {
    // Rule 1: one signer per algorithm, once bootstrapped.
    for &alg in &policy.algorithms {
        let active = ring
            .keys
            .iter()
            .filter(|k| k.alg == alg && k.state_at(now) == KeyState::Active)
            .count();
        assert_eq!(active, 1, "{at}: {active} active {alg} keys");
        assert!(
            ring.signing_key(alg, now).is_some(),
            "{at}: no {alg} signer"
        );
    }
    for k in &ring.keys {
        assert!(
            k.published_at <= k.activates_at,
            "{at}: {} signs before it is published",
            k.kid
        );
    }
    // Rule 3: a key stays published while a token it signed may be valid
    // (a revoked key leaves at once, by design: rule 6).
    for t in issued {
        let valid = now.0 < t.exp.0 + policy.leeway.as_secs();
        if valid && !t.revoked {
            assert!(
                ring.published(now).any(|k| k.kid == t.kid),
                "{at}: key {} left the JWKS while a token it signed (exp {}) is valid",
                t.kid,
                t.exp
            );
        }
    }
    // Rule 8: nothing more is due.
    assert!(ring.due(now, policy).is_empty(), "{at}: due twice");
}

#[test]
fn random_walks_keep_the_lifecycle_rules() {
    let ttls = [10 * MIN, 60 * MIN, 24 * 60 * MIN];
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut policy = monthly();
        let mut now = T0;
        let mut ring = Keyring::new("access_token");
        tick(&mut ring, now, &policy);
        let mut issued: Vec<Issued> = Vec::new();
        for step in 0..60 {
            let at = format!("seed {seed} step {step}");
            match rng.below(10) {
                // Time passes: minutes to weeks.
                0..=3 => {
                    let secs = [
                        MIN,
                        30 * MIN,
                        6 * 60 * MIN,
                        3 * 24 * 60 * MIN,
                        10 * 24 * 60 * MIN,
                    ][rng.below(5) as usize];
                    now = UnixTime(now.0 + 1 + rng.below(secs));
                }
                // A rotation, forced or not; a refusal is fine, a change is
                // applied whole.
                4 | 5 => {
                    let created_before = ring.keys.len();
                    if let Ok(plan) = ring.rotate(now, &policy, rng.below(2) == 0) {
                        ring.apply(&plan, now, &policy, &mut make).unwrap();
                        // Rule 2 for the successor it scheduled.
                        for k in &ring.keys[created_before..] {
                            assert!(
                                k.activates_at.0 >= k.published_at.0 + policy.lead().as_secs(),
                                "{at}: new key {} signs before the lead",
                                k.kid
                            );
                        }
                    }
                }
                // A revocation of some key still in the keyring.
                6 => {
                    if !ring.keys.is_empty() {
                        let i = rng.below(ring.keys.len() as u64) as usize;
                        let kid = ring.keys[i].kid.clone();
                        if let Ok(plan) = ring.revoke(&kid, now, &policy) {
                            ring.apply(&plan, now, &policy, &mut make).unwrap();
                            for t in issued.iter_mut().filter(|t| t.kid == kid) {
                                t.revoked = true;
                            }
                        }
                    }
                }
                // The operator changes the token lifetime or the JWKS max-age.
                7 => {
                    policy.token_ttl = Duration::from_secs(ttls[rng.below(3) as usize]);
                    policy.max_age = Duration::from_secs([MIN, 5 * MIN][rng.below(2) as usize]);
                }
                // A token is issued by the key that signs now.
                _ => {
                    if let Some(k) = ring.signing_key(Algorithm::EdDSA, now) {
                        issued.push(Issued {
                            kid: k.kid.clone(),
                            exp: now.plus(policy.token_ttl),
                            revoked: false,
                        });
                    }
                }
            }
            tick(&mut ring, now, &policy);
            check(&ring, now, &policy, &issued, &at);
        }
    }
}
