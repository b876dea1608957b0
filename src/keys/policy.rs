//! A purpose's lifecycle policy: the settings the rules in
//! `docs/lifecycle.md` are computed from.

use std::time::Duration;

use super::Algorithm;
use super::schedule::Schedule;
use crate::clock::UnixTime;

/// At most this many retiring keys per algorithm: a configuration whose
/// scheduled rotation would keep more is refused at load (rule 4), and a
/// manual rotation that would exceed it is refused (rule 9).
pub const MAX_RETIRING: usize = 8;

/// The lifecycle settings of one purpose.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Algorithms that must each have an active and a pending key; the first signs by default.
    pub algorithms: Vec<Algorithm>,
    /// Longest lifetime of a token of this purpose.
    pub token_ttl: Duration,
    /// Clock skew verifiers tolerate on `exp`.
    pub leeway: Duration,
    /// How long verifiers may cache the JWKS (`Cache-Control: max-age`).
    pub max_age: Duration,
    /// How long another process sharing the store may take to see a write.
    pub poll_interval: Duration,
    /// How far the clocks of processes sharing the store may differ (zero
    /// for one host's file store).
    pub clock_skew: Duration,
    /// When successors take over.
    pub schedule: Schedule,
}

impl Policy {
    /// How long a key is published before it may sign: every verifier's cache
    /// and every process sharing the store has it by then (rule 2).
    pub fn lead(&self) -> Duration {
        self.max_age + self.poll_interval + self.clock_skew
    }

    /// How long a key stays published after it stops signing: every token it
    /// signed, including those signed by a process that has not yet seen the
    /// change, has expired, with leeway, in every verifier's cache (rule 3).
    pub fn retention(&self) -> Duration {
        self.token_ttl + self.leeway + self.max_age + self.poll_interval + self.clock_skew
    }

    /// The activation instant of a successor created at `now` for a key that
    /// activated at `current`: the first boundary at least the lead away
    /// (rule 2) and strictly after `current`.
    pub(super) fn successor_activation(&self, now: UnixTime, current: UnixTime) -> UnixTime {
        let earliest = now.plus(self.lead()).max(UnixTime(current.0 + 1));
        self.schedule.next_at_or_after(earliest).unwrap_or(earliest)
    }
}
