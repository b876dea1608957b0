//! Table-driven lifecycle tests: keyrings moved through time.

use std::time::Duration;

use super::*;
use crate::clock::UnixTime;

pub(super) const MIN: u64 = 60;
const DAY: u64 = 86_400;
/// 2026-11-29T00:00:00Z.
pub(super) const T0: UnixTime = UnixTime(1_795_910_400);
/// 2026-12-01T00:00:00Z, the first monthly boundary after T0.
pub(super) const DEC1: UnixTime = UnixTime(1_796_083_200);
/// 2027-01-01T00:00:00Z.
const JAN1: UnixTime = UnixTime(1_798_761_600);
/// 2027-02-01T00:00:00Z.
const FEB1: UnixTime = UnixTime(1_801_440_000);

fn policy(algs: &[Algorithm], ttl: Duration) -> Policy {
    Policy {
        algorithms: algs.to_vec(),
        token_ttl: ttl,
        leeway: Duration::from_secs(MIN),
        max_age: Duration::from_secs(5 * MIN),
        poll_interval: Duration::from_secs(5),
        clock_skew: Duration::ZERO,
        schedule: Schedule::parse("0 0 0 1 * *").unwrap(),
    }
}

pub(super) fn monthly() -> Policy {
    policy(&[Algorithm::EdDSA], Duration::from_secs(10 * MIN))
}

pub(super) fn make(alg: Algorithm) -> Result<NewKey, KeyError> {
    let key = SigningKey::from_pkcs8(alg, &generate(alg, 2048)?)?;
    Ok(NewKey {
        jwk: key.public_jwk().clone(),
        private: PrivateHalf::Sealed(SealedKey {
            master: "test".into(),
            nonce: String::new(),
            ciphertext: String::new(),
        }),
    })
}

/// Applies whatever is due at `now` and checks that asking again changes nothing.
pub(super) fn tick(ring: &mut Keyring, now: UnixTime, policy: &Policy) -> Plan {
    let plan = ring.due(now, policy);
    ring.apply(&plan, now, policy, &mut make).unwrap();
    assert!(
        ring.due(now, policy).is_empty(),
        "due twice at {now} changed something"
    );
    plan
}

fn states(ring: &Keyring, now: UnixTime) -> Vec<KeyState> {
    ring.keys.iter().map(|k| k.state_at(now)).collect()
}

pub(super) fn bootstrapped(now: UnixTime, policy: &Policy) -> Keyring {
    let mut ring = Keyring::new("access_token");
    tick(&mut ring, now, policy);
    ring
}

#[test]
fn bootstrap_signs_at_once_and_publishes_a_successor() {
    let p = monthly();
    let ring = bootstrapped(T0, &p);
    assert_eq!(states(&ring, T0), [KeyState::Active, KeyState::Pending]);
    let (first, next) = (&ring.keys[0], &ring.keys[1]);
    assert_eq!(first.activates_at, T0);
    assert_eq!(next.activates_at, DEC1);
    assert_eq!(
        first.retires_at,
        Some(DEC1),
        "the active key retires when its successor signs"
    );
    assert_eq!(
        ring.signing_key(Algorithm::EdDSA, T0).map(|k| &k.kid),
        Some(&first.kid)
    );
    assert_ne!(first.kid, next.kid);
}

#[test]
fn bootstrap_just_before_a_boundary_skips_to_the_next_one() {
    let p = monthly();
    let ring = bootstrapped(UnixTime(DEC1.0 - 2 * MIN), &p);
    assert_eq!(
        ring.keys[1].activates_at, JAN1,
        "a successor needs max_age of publication"
    );
}

#[test]
fn states_across_boundaries() {
    let p = monthly();
    let mut ring = bootstrapped(T0, &p);
    let retention = p.retention().as_secs();
    use KeyState::*;
    let table = [
        (UnixTime(DEC1.0 - 1), vec![Active, Pending]),
        (DEC1, vec![Retiring, Active]),
        (UnixTime(DEC1.0 + retention - 1), vec![Retiring, Active]),
        (UnixTime(DEC1.0 + retention), vec![Expired, Active]),
    ];
    for (now, expected) in &table {
        assert_eq!(&states(&ring, *now), expected, "at {now}");
    }
    // The successor was published at least the lead before it signed (rule 2).
    let next = &ring.keys[1];
    assert!(next.activates_at.since(next.published_at) >= p.lead());

    // The tick at the boundary schedules the next successor and destroys the
    // retired private half; the retired key stays published.
    tick(&mut ring, DEC1, &p);
    assert_eq!(states(&ring, DEC1), [Retiring, Active, Pending]);
    assert!(
        ring.keys[0].private.is_none(),
        "a retired key can never sign again"
    );
    assert!(ring.keys[0].is_published_at(DEC1));
    assert_eq!(ring.keys[2].activates_at, JAN1);
    assert_eq!(ring.keys[1].retires_at, Some(JAN1));

    // Once its tokens are gone, the retired key leaves.
    tick(&mut ring, UnixTime(DEC1.0 + retention), &p);
    assert_eq!(ring.keys.len(), 2);
    assert_eq!(
        states(&ring, UnixTime(DEC1.0 + retention)),
        [Active, Pending]
    );
}

#[test]
fn a_token_signed_just_before_retirement_outlives_nothing() {
    // Refresh tokens live 7 days and keys rotate monthly: a token signed one
    // second before the boundary must still find its key published at its expiry.
    let p = policy(&[Algorithm::EdDSA], Duration::from_secs(7 * DAY));
    let ring = bootstrapped(T0, &p);
    let signed_at = UnixTime(DEC1.0 - 1);
    let signer = ring
        .signing_key(Algorithm::EdDSA, signed_at)
        .unwrap()
        .kid
        .clone();
    let token_exp = signed_at.plus(p.token_ttl);
    // The last instant a verifier may accept the token, from a cache fetched
    // just before, with the key seen a poll interval late by another process.
    let last_use = token_exp
        .plus(p.leeway)
        .plus(p.max_age)
        .plus(p.poll_interval);
    let key = ring.get(&signer).unwrap();
    assert!(key.is_published_at(last_use));
    // ...and leaves one second after the last such token can be accepted.
    assert!(!key.is_published_at(UnixTime(last_use.0 + 1)));
}

#[test]
fn restart_after_downtime_computes_the_right_state() {
    let p = monthly();
    let mut ring = bootstrapped(T0, &p);
    let (k1, k2) = (ring.keys[0].kid.clone(), ring.keys[1].kid.clone());
    // Down from before December 1st until after February 1st.
    let later = UnixTime(FEB1.0 + 3 * DAY);
    assert_eq!(states(&ring, later), [KeyState::Expired, KeyState::Active]);
    let plan = tick(&mut ring, later, &p);
    assert!(plan.steps.contains(&Step::Remove { kid: k1 }));
    assert_eq!(ring.keys[0].kid, k2, "the key that took over keeps signing");
    assert_eq!(
        ring.signing_key(Algorithm::EdDSA, later)
            .map(|k| k.kid.clone()),
        Some(k2)
    );
    assert_eq!(
        ring.keys[1].activates_at,
        UnixTime(1_803_859_200),
        "2027-03-01"
    );
}

#[test]
fn manual_rotation_is_refused_until_the_pending_key_is_old_enough() {
    let p = monthly();
    let ring = bootstrapped(T0, &p);
    let young = UnixTime(T0.0 + 4 * MIN);
    match ring.rotate(young, &p, false) {
        Err(Refusal::PendingTooYoung { age, ready, .. }) => {
            assert_eq!(age, 4 * MIN);
            assert_eq!(ready, T0.plus(p.max_age + p.poll_interval));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Forced: the pending key signs now anyway.
    let mut forced = ring.clone();
    let plan = forced.rotate(young, &p, true).unwrap();
    forced.apply(&plan, young, &p, &mut make).unwrap();
    assert_eq!(
        forced.signing_key(Algorithm::EdDSA, young).unwrap().kid,
        ring.keys[1].kid
    );

    // Old enough: allowed without force.
    let later = UnixTime(T0.0 + DAY);
    let mut rotated = ring.clone();
    let plan = rotated.rotate(later, &p, false).unwrap();
    rotated.apply(&plan, later, &p, &mut make).unwrap();
    use KeyState::*;
    assert_eq!(states(&rotated, later), [Retiring, Active, Pending]);
    assert!(rotated.keys[0].private.is_none());
    assert_eq!(rotated.keys[2].activates_at, DEC1);
    assert_eq!(rotated.keys[1].retires_at, Some(DEC1));
    assert!(rotated.due(later, &p).is_empty());
}

#[test]
fn revoking_the_active_key_promotes_its_successor_at_once() {
    let p = monthly();
    let mut ring = bootstrapped(T0, &p);
    let (k1, k2) = (ring.keys[0].kid.clone(), ring.keys[1].kid.clone());
    let now = UnixTime(T0.0 + 2 * MIN);
    let plan = ring.revoke(&k1, now, &p).unwrap();
    ring.apply(&plan, now, &p, &mut make).unwrap();
    assert!(ring.due(now, &p).is_empty());
    let revoked = ring.get(&k1).unwrap();
    assert_eq!(revoked.state_at(now), KeyState::Revoked);
    assert!(!revoked.is_published_at(now));
    assert!(revoked.private.is_none());
    assert_eq!(ring.signing_key(Algorithm::EdDSA, now).unwrap().kid, k2);
    let pending: Vec<_> = ring
        .keys
        .iter()
        .filter(|k| k.state_at(now) == KeyState::Pending)
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].activates_at, DEC1);
    // Never published again, at any later instant.
    for t in [DEC1, JAN1, FEB1] {
        assert!(!ring.get(&k1).is_some_and(|k| k.is_published_at(t)));
    }
    assert_eq!(
        ring.revoke(&k1, now, &p),
        Err(Refusal::AlreadyRevoked(k1.clone()))
    );
    assert!(matches!(
        ring.revoke("nope", now, &p),
        Err(Refusal::UnknownKid { .. })
    ));
}

#[test]
fn revoking_the_pending_key_schedules_a_new_one() {
    let p = monthly();
    let mut ring = bootstrapped(T0, &p);
    let (k1, k2) = (ring.keys[0].kid.clone(), ring.keys[1].kid.clone());
    let now = UnixTime(DEC1.0 - MIN);
    let plan = ring.revoke(&k2, now, &p).unwrap();
    ring.apply(&plan, now, &p, &mut make).unwrap();
    // The new successor cannot sign on December 1st: it needs max_age of publication.
    let next = ring.keys.last().unwrap();
    assert_eq!(next.activates_at, JAN1);
    assert_eq!(ring.get(&k1).unwrap().retires_at, Some(JAN1));
    assert_eq!(ring.signing_key(Algorithm::EdDSA, DEC1).unwrap().kid, k1);
}

#[test]
fn every_algorithm_gets_its_own_pair_and_dropped_ones_retire() {
    let both = policy(
        &[Algorithm::ES256, Algorithm::EdDSA],
        Duration::from_secs(10 * MIN),
    );
    let mut ring = bootstrapped(T0, &both);
    assert_eq!(ring.keys.len(), 4);
    for alg in [Algorithm::ES256, Algorithm::EdDSA] {
        assert!(ring.signing_key(alg, T0).is_some());
    }
    let only_ed = monthly();
    let now = UnixTime(T0.0 + DAY);
    tick(&mut ring, now, &only_ed);
    assert!(ring.signing_key(Algorithm::ES256, now).is_none());
    let es: Vec<_> = ring
        .keys
        .iter()
        .filter(|k| k.alg == Algorithm::ES256)
        .collect();
    assert_eq!(es.len(), 1, "the ES256 pending key is dropped");
    assert_eq!(
        es[0].state_at(now),
        KeyState::Retiring,
        "the ES256 active key retires, still published"
    );
}
