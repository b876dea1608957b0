//! Lifecycle tests for changes beyond the schedule: a policy changed between
//! ticks, hand-edited keyrings, and the cap on manual rotations.

use std::time::Duration;

use super::lifecycle_tests::{DEC1, MIN, T0, bootstrapped, make, monthly, tick};
use super::*;
use crate::clock::UnixTime;

const HOUR: u64 = 3_600;

/// The key that signs just before `DEC1`, the `expires_at` it gets when it
/// retires there under `before`, and under `after` once a tick has run with it.
fn expiry_across_a_policy_change(before: &Policy, after: &Policy) -> (UnixTime, UnixTime) {
    let mut ring = bootstrapped(T0, before);
    tick(&mut ring, DEC1, before);
    let old = ring.keys[0].clone();
    assert_eq!(old.state_at(DEC1), KeyState::Retiring);
    let was = old.expires_at.unwrap();
    assert_eq!(was, DEC1.plus(before.retention()));
    // The new policy takes effect (a restart) while the old key still retires.
    tick(&mut ring, UnixTime(DEC1.0 + 5 * MIN), after);
    (was, ring.get(&old.kid).unwrap().expires_at.unwrap())
}

#[test]
fn raising_ttl_leeway_max_age_or_poll_interval_keeps_retiring_keys_published_longer() {
    let base = monthly();
    type Raise = fn(&mut Policy);
    let raised: [(&str, Raise); 4] = [
        ("token_ttl", |p| {
            p.token_ttl = Duration::from_secs(30 * 86_400)
        }),
        ("leeway", |p| p.leeway = Duration::from_secs(2 * HOUR)),
        ("max_age", |p| p.max_age = Duration::from_secs(HOUR)),
        ("poll_interval", |p| {
            p.poll_interval = Duration::from_secs(HOUR)
        }),
    ];
    for (name, raise) in raised {
        let mut after = base.clone();
        raise(&mut after);
        let (was, now) = expiry_across_a_policy_change(&base, &after);
        assert_eq!(
            now,
            DEC1.plus(after.retention()),
            "{name}: a token signed just before the boundary under the new policy keeps its key"
        );
        assert!(now > was, "{name}");
        // A token signed one second before retirement under the raised
        // setting is still accepted by a verifier whose cache is max_age old
        // and whose process polled late: the key must still be published.
        let signed = UnixTime(DEC1.0 - 1);
        let last_use =
            signed.plus(after.token_ttl + after.leeway + after.max_age + after.poll_interval);
        assert!(now >= last_use, "{name}: key gone before its last token");
    }
}

#[test]
fn lowering_a_setting_never_shortens_a_retiring_key() {
    let long = policy_with_ttl(Duration::from_secs(7 * 86_400));
    let short = policy_with_ttl(Duration::from_secs(10 * MIN));
    let (was, now) = expiry_across_a_policy_change(&long, &short);
    assert_eq!(
        now, was,
        "tokens signed under the longer ttl still need the key"
    );
}

fn policy_with_ttl(ttl: Duration) -> Policy {
    Policy {
        token_ttl: ttl,
        ..monthly()
    }
}

#[test]
fn a_hand_edited_keyring_with_two_active_keys_is_repaired_by_one_plan() {
    let p = monthly();
    let mut ring = bootstrapped(T0, &p);
    // Make the pending key active too, as a careless hand edit would.
    ring.keys[1].activates_at = T0;
    let now = UnixTime(T0.0 + MIN);
    let (older, newer) = (ring.keys[0].kid.clone(), ring.keys[1].kid.clone());
    // `tick` also checks that nothing is due once the plan is applied.
    tick(&mut ring, now, &p);
    let old = ring.get(&older).unwrap();
    assert_eq!(old.state_at(now), KeyState::Retiring);
    assert!(
        old.private.is_none(),
        "a key retired by the plan loses its private half in the same plan"
    );
    assert_eq!(
        ring.signing_key(Algorithm::EdDSA, now)
            .map(|k| k.kid.clone()),
        Some(newer)
    );
}

#[test]
fn signing_key_is_the_newest_active_key_even_without_its_private_half() {
    let p = monthly();
    let mut ring = bootstrapped(T0, &p);
    ring.keys[0].private = None;
    // No fallback: the active key is still the one that should sign.
    assert_eq!(
        ring.signing_key(Algorithm::EdDSA, T0).map(|k| &k.kid),
        Some(&ring.keys[0].kid)
    );
}

#[test]
fn a_successor_is_published_max_age_plus_poll_interval_before_it_signs() {
    let p = monthly();
    // Further from the boundary than max_age, nearer than max_age + poll_interval.
    let now = UnixTime(DEC1.0 - p.max_age.as_secs() - 2);
    let ring = bootstrapped(now, &p);
    assert!(
        ring.keys[1].activates_at > DEC1,
        "a process polling the store late would sign with a key verifiers lack"
    );
}

#[test]
fn manual_rotations_stop_at_the_cap_and_revocation_still_works() {
    let p = monthly();
    let mut ring = bootstrapped(T0, &p);
    let mut now = T0;
    for i in 0..MAX_RETIRING {
        now = UnixTime(now.0 + MIN);
        let plan = ring.rotate(now, &p, true).unwrap();
        ring.apply(&plan, now, &p, &mut make).unwrap();
        let retiring = ring
            .keys
            .iter()
            .filter(|k| k.state_at(now) == KeyState::Retiring)
            .count();
        assert_eq!(retiring, i + 1);
    }
    now = UnixTime(now.0 + MIN);
    let oldest = ring
        .keys
        .iter()
        .filter_map(|k| {
            k.expires_at
                .filter(|_| k.state_at(now) == KeyState::Retiring)
        })
        .min()
        .unwrap();
    match ring.rotate(now, &p, true) {
        Err(Refusal::TooManyRetiring {
            retiring,
            cap,
            oldest_expires,
            alg,
            ..
        }) => {
            assert_eq!((retiring, cap, alg), (MAX_RETIRING, 8, Algorithm::EdDSA));
            assert_eq!(oldest_expires, oldest);
        }
        other => panic!("expected the cap, got {other:?}"),
    }
    // A compromised key can still be withdrawn at the cap.
    let active = ring.signing_key(Algorithm::EdDSA, now).unwrap().kid.clone();
    let plan = ring.revoke(&active, now, &p).unwrap();
    ring.apply(&plan, now, &p, &mut make).unwrap();
    assert_eq!(ring.get(&active).unwrap().state_at(now), KeyState::Revoked);
    // Once the oldest retiring key has expired, rotation is possible again.
    let later = oldest;
    tick(&mut ring, later, &p);
    assert!(ring.rotate(later, &p, true).is_ok());
}
