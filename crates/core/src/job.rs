//! Jobs: the durable record of one run of an event, the states it moves
//! through (DESIGN §3.5), and the per-event policies that decide what happens
//! when runs overlap, fail or are missed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Most runs `catch_up` starts for the fires missed during one downtime;
/// older misses are recorded as `missed`.
pub const CATCH_UP_LIMIT: usize = 100;
/// A fire more than this late counts as missed and the misfire policy
/// decides; anything less late is simply run, late.
pub const MISFIRE_GRACE: Duration = Duration::from_secs(60);
/// The longest wait between two retries, however many failed before.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// The shortest and longest base retry delay an event may set.
pub const RETRY_DELAY_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(86_400);

/// Where a job is in its life. `queued → running → succeeded | failed |
/// timed_out | cancelled`; a retry goes back to `queued` with the attempt
/// raised. `missed` (a fire the misfire policy did not run) and `skipped`
/// (a fire the overlap policy refused) are recorded but never ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    /// Some target servers succeeded and some did not (remote fleets).
    Partial,
    Missed,
    Skipped,
}

impl JobStatus {
    /// Whether the job is over: nothing will change it any more.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }

    /// Whether a failure with this status may be retried.
    pub fn is_retryable(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::TimedOut)
    }
}

/// What started a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A fire time of the event's schedule.
    Schedule,
    /// `POST /events/{id}/run` (the CLI and the UI use it too).
    Manual,
    /// A `run_event` action of another job's event, when that job ended.
    Action,
    /// A node of a workflow run (which the job's metadata names).
    Workflow,
}

/// What a new run does while an earlier run of the same event is queued or
/// running. Enforced by the store inside the transaction that records the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Run alongside (up to the event's `maxConcurrent`, if set).
    Allow,
    /// Record the new run as `skipped`.
    #[default]
    Forbid,
    /// Queue the new run; it starts when the earlier one is done.
    Queue,
    /// Cancel the earlier run, then run the new one.
    Replace,
}

/// What happens to fire times that passed while no scheduler was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MisfirePolicy {
    /// Record every missed fire as `missed`; run none of them.
    Skip,
    /// Run the latest missed fire once; record the others as `missed`.
    #[default]
    RunOnce,
    /// Run every missed fire (the newest [`CATCH_UP_LIMIT`]); record older ones as `missed`.
    CatchUp,
}

str_enum!(JobStatus {
    Queued = "queued",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    TimedOut = "timed_out",
    Cancelled = "cancelled",
    Partial = "partial",
    Missed = "missed",
    Skipped = "skipped",
});
str_enum!(Trigger { Schedule = "schedule", Manual = "manual", Action = "action", Workflow = "workflow" });
str_enum!(OverlapPolicy { Allow = "allow", Forbid = "forbid", Queue = "queue", Replace = "replace" });
str_enum!(MisfirePolicy { Skip = "skip", RunOnce = "run_once", CatchUp = "catch_up" });

/// How an event's runs are governed: overlap, misfires, limits and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPolicy {
    pub overlap: OverlapPolicy,
    pub misfire: MisfirePolicy,
    /// No fire before this instant; also the anchor of `every` schedules.
    pub start_at: Option<DateTime<Utc>>,
    /// The schedule stops after this many fires (manual runs do not count).
    pub max_executions: Option<u32>,
    /// With overlap `allow`: at most this many runs at once (none: unlimited).
    pub max_concurrent: Option<u32>,
    /// The first retry waits about this long; each further one twice as long.
    pub retry_delay: Duration,
}

impl Default for RunPolicy {
    fn default() -> Self {
        RunPolicy {
            overlap: OverlapPolicy::default(),
            misfire: MisfirePolicy::default(),
            start_at: None,
            max_executions: None,
            max_concurrent: None,
            retry_delay: Duration::from_secs(10),
        }
    }
}

impl RunPolicy {
    pub fn validate(self) -> Result<RunPolicy, ValidationError> {
        if self.max_executions == Some(0) {
            return Err(ValidationError::new("maxExecutions", "must be at least 1"));
        }
        if self.max_concurrent == Some(0) {
            return Err(ValidationError::new("maxConcurrent", "must be at least 1"));
        }
        if self.max_concurrent.is_some() && self.overlap != OverlapPolicy::Allow {
            return Err(ValidationError::new(
                "maxConcurrent",
                "only applies with overlap \"allow\" (the other policies run one at a time)",
            ));
        }
        if !RETRY_DELAY_RANGE.contains(&self.retry_delay) {
            return Err(ValidationError::new(
                "retryDelay",
                "must be between 1s and 1d",
            ));
        }
        Ok(self)
    }

    /// How many runs of the event may be `running` at once (`None`: no limit).
    pub fn concurrency_limit(&self) -> Option<u32> {
        match self.overlap {
            OverlapPolicy::Allow => self.max_concurrent,
            OverlapPolicy::Forbid | OverlapPolicy::Queue | OverlapPolicy::Replace => Some(1),
        }
    }
}

/// How long to wait before retry number `attempt` (the attempt that failed,
/// from 1): `base · 2^(attempt-1)`, capped at [`MAX_RETRY_DELAY`], then
/// scaled by `jitter` in `[0, 1)` into its upper half, so retries of many
/// jobs that failed together spread out instead of stampeding.
pub fn retry_delay(base: Duration, attempt: u32, jitter: f64) -> Duration {
    let doubled = base
        .checked_mul(1u32 << attempt.saturating_sub(1).min(20))
        .unwrap_or(MAX_RETRY_DELAY)
        .min(MAX_RETRY_DELAY);
    doubled.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_within_jitter_and_caps() {
        let base = Duration::from_secs(10);
        let table = [
            (1, 10),
            (2, 20),
            (3, 40),
            (4, 80),
            (9, 2560),
            (10, 3600),
            (40, 3600),
        ];
        for (attempt, full) in table {
            let full = Duration::from_secs(full);
            assert_eq!(
                retry_delay(base, attempt, 0.0),
                full / 2,
                "attempt {attempt} low"
            );
            assert_eq!(
                retry_delay(base, attempt, 1.0),
                full,
                "attempt {attempt} high"
            );
            let mid = retry_delay(base, attempt, 0.5);
            assert!(mid > full / 2 && mid < full, "attempt {attempt}: {mid:?}");
        }
    }

    #[test]
    fn statuses_round_trip_and_know_when_they_are_over() {
        for status in [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::TimedOut,
            JobStatus::Cancelled,
            JobStatus::Partial,
            JobStatus::Missed,
            JobStatus::Skipped,
        ] {
            assert_eq!(JobStatus::parse(status.as_str(), "status"), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(
                status.is_terminal(),
                !matches!(status, JobStatus::Queued | JobStatus::Running)
            );
        }
        assert_eq!(
            JobStatus::parse("done", "status").unwrap_err().field,
            "status"
        );
    }

    #[test]
    fn policies_are_checked_as_a_whole() {
        let ok = RunPolicy::default().validate().unwrap();
        assert_eq!(ok.concurrency_limit(), Some(1));
        let allow = RunPolicy {
            overlap: OverlapPolicy::Allow,
            max_concurrent: Some(3),
            ..RunPolicy::default()
        };
        assert_eq!(
            allow.clone().validate().unwrap().concurrency_limit(),
            Some(3)
        );
        type Mutate = fn(&mut RunPolicy);
        let table: [(Mutate, &str); 4] = [
            (|p| p.max_executions = Some(0), "maxExecutions"),
            (|p| p.max_concurrent = Some(0), "maxConcurrent"),
            (|p| p.max_concurrent = Some(2), "maxConcurrent"),
            (|p| p.retry_delay = Duration::ZERO, "retryDelay"),
        ];
        for (mutate, field) in table {
            let mut policy = RunPolicy::default();
            mutate(&mut policy);
            assert_eq!(policy.validate().unwrap_err().field, field);
        }
    }
}
