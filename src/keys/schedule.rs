//! Rotation schedules: six-field cron expressions evaluated in UTC.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use crate::clock::UnixTime;

/// A rotation schedule: `sec min hour day-of-month month day-of-week`, in UTC.
#[derive(Clone)]
pub struct Schedule {
    source: String,
    cron: Cron,
}

/// A cron expression that cannot be used as a rotation schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid rotate schedule {expr:?}: {reason} (expected six fields: sec min hour day-of-month month day-of-week, e.g. \"0 0 0 1 * *\" for monthly)"
)]
pub struct ScheduleError {
    /// The expression as written.
    pub expr: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Schedule {
    /// Parses a six-field cron expression.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let err = |reason: String| ScheduleError {
            expr: expr.to_owned(),
            reason,
        };
        if expr.split_whitespace().count() != 6 {
            return Err(err(format!("{} fields", expr.split_whitespace().count())));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            // Day-of-month and day-of-week must both match, as in tokio-cron-scheduler,
            // so the lifecycle core and the scheduler agree on every boundary.
            .dom_and_dow(true)
            .build()
            .parse(expr)
            .map_err(|e| err(e.to_string()))?;
        Ok(Schedule {
            source: expr.to_owned(),
            cron,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first boundary at or after `t`, if the schedule ever fires again.
    pub fn next_at_or_after(&self, t: UnixTime) -> Option<UnixTime> {
        let start: DateTime<Utc> = DateTime::from_timestamp(i64::try_from(t.0).ok()?, 0)?;
        let next = self.cron.find_next_occurrence(&start, true).ok()?;
        u64::try_from(next.timestamp()).ok().map(UnixTime)
    }

    /// The shortest gap between consecutive boundaries among the next
    /// `samples` boundaries after `from`: the rotation period the lifecycle
    /// rules must fit in.
    pub fn shortest_period(&self, from: UnixTime, samples: usize) -> Option<Duration> {
        let mut prev = self.next_at_or_after(from)?;
        let mut shortest: Option<Duration> = None;
        for _ in 0..samples {
            let next = self.next_at_or_after(UnixTime(prev.0 + 1))?;
            let gap = next.since(prev);
            shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
            prev = next;
        }
        shortest
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monthly_boundaries_and_period() {
        let s = Schedule::parse("0 0 0 1 * *").unwrap();
        // 2026-11-29T00:00:00Z -> 2026-12-01T00:00:00Z
        assert_eq!(
            s.next_at_or_after(UnixTime(1_795_910_400)),
            Some(UnixTime(1_796_083_200))
        );
        // A boundary is its own next boundary (inclusive).
        assert_eq!(
            s.next_at_or_after(UnixTime(1_796_083_200)),
            Some(UnixTime(1_796_083_200))
        );
        let p = s.shortest_period(UnixTime(1_795_910_400), 24).unwrap();
        assert_eq!(
            p,
            Duration::from_secs(28 * 86_400),
            "February is the shortest month"
        );
    }

    #[test]
    fn malformed_expressions_name_the_problem() {
        for bad in ["", "0 0 1 * *", "0 0 0 32 * *", "every month"] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.to_string().contains("six fields"), "{e}");
        }
    }
}
