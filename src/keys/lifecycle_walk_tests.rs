//! Random walks through the lifecycle (proptest): random sequences of clock
//! moves, ticks, rotations (forced or not), revocations, policy changes and
//! legacy secrets imported, with tokens "issued" by whichever key signs at
//! each step. After every step the rules of `docs/lifecycle.md` must hold; a
//! failure is shrunk to a shortest sequence that breaks one.

use std::time::Duration;

use proptest::prelude::*;

use super::legacy::LegacyKey;
use super::lifecycle_tests::{MIN, T0, make, monthly, tick};
use super::*;
use crate::clock::UnixTime;

/// One step of a walk.
#[derive(Clone, Debug)]
enum Action {
    /// Time passes: 1 second up to the bound (minutes to weeks).
    Wait(u64),
    /// A manual rotation, forced or not; a refusal is fine.
    Rotate(bool),
    /// A revocation of the key at this index (modulo the keyring's size).
    Revoke(prop::sample::Index),
    /// The operator changes the token lifetime and the JWKS max-age.
    Policy(u64, u64),
    /// A token is issued by the key that signs now.
    Issue,
    /// A legacy secret is imported (rule 15).
    ImportLegacy,
}

fn action() -> impl Strategy<Value = Action> {
    let wait = prop::sample::select(vec![
        MIN,
        30 * MIN,
        6 * 60 * MIN,
        3 * 24 * 60 * MIN,
        10 * 24 * 60 * MIN,
    ])
    .prop_flat_map(|bound| (1..=bound).prop_map(Action::Wait));
    prop_oneof![
        4 => wait,
        2 => any::<bool>().prop_map(Action::Rotate),
        1 => any::<prop::sample::Index>().prop_map(Action::Revoke),
        1 => (
            prop::sample::select(vec![10 * MIN, 60 * MIN, 24 * 60 * MIN]),
            prop::sample::select(vec![MIN, 5 * MIN]),
        )
            .prop_map(|(ttl, max_age)| Action::Policy(ttl, max_age)),
        2 => Just(Action::Issue),
        1 => Just(Action::ImportLegacy),
    ]
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_walks_keep_the_lifecycle_rules(walk in proptest::collection::vec(action(), 1..60)) {
        let mut policy = monthly();
        let mut now = T0;
        let mut ring = Keyring::new("access_token");
        tick(&mut ring, now, &policy);
        let mut issued: Vec<Issued> = Vec::new();
        for (step, action) in walk.iter().enumerate() {
            let at = format!("step {step} ({action:?})");
            match action {
                Action::Wait(secs) => now = UnixTime(now.0 + secs),
                Action::Rotate(force) => {
                    let created_before = ring.keys.len();
                    if let Ok(plan) = ring.rotate(now, &policy, *force) {
                        ring.apply(&plan, now, &policy, &mut make).unwrap();
                        // Rule 2 for the successor it scheduled.
                        for k in &ring.keys[created_before..] {
                            prop_assert!(
                                k.activates_at.0 >= k.published_at.0 + policy.lead().as_secs(),
                                "{}: new key {} signs before the lead",
                                at,
                                k.kid
                            );
                        }
                    }
                }
                Action::Revoke(which) => {
                    if !ring.keys.is_empty() {
                        let kid = ring.keys[which.index(ring.keys.len())].kid.clone();
                        if let Ok(plan) = ring.revoke(&kid, now, &policy) {
                            ring.apply(&plan, now, &policy, &mut make).unwrap();
                            for t in issued.iter_mut().filter(|t| t.kid == kid) {
                                t.revoked = true;
                            }
                        }
                    }
                }
                Action::Policy(ttl, max_age) => {
                    policy.token_ttl = Duration::from_secs(*ttl);
                    policy.max_age = Duration::from_secs(*max_age);
                }
                Action::Issue => {
                    if let Some(k) = ring.signing_key(Algorithm::EdDSA, now) {
                        issued.push(Issued {
                            kid: k.kid.clone(),
                            exp: now.plus(policy.token_ttl),
                            revoked: false,
                        });
                    }
                }
                Action::ImportLegacy => {
                    let key = LegacyKey {
                        id: format!("SECRET_{step}"),
                        imported_at: now,
                        expires_at: now.plus(policy.token_ttl + policy.leeway),
                        revoked_at: None,
                        issuer: None,
                        secret: None,
                    };
                    let plan = ring.import_legacy(&[key], now, &policy).unwrap();
                    ring.apply(&plan, now, &policy, &mut make).unwrap();
                }
            }
            tick(&mut ring, now, &policy);
            check(&ring, now, &policy, &issued, &at);
            // Rule 15: a legacy secret is gone once its window has passed.
            prop_assert!(ring.legacy.iter().all(|l| now < l.expires_at), "{}: an expired legacy secret stayed", at);
        }
    }
}
