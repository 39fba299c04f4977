//! What the job queue decides, written once for both backends: overlap admission, retries, lease recovery, cancellation, fencing and log sequencing.
//!
//! `store/jobs.rs` loads rows inside its transaction (held as each backend's
//! locking requires), hands them to these functions, and writes back what
//! comes out; nothing here knows SQL.

use chrono::{DateTime, Utc};
use cronium_core::{EventSpec, EventStatus, JobId, JobStatus, OverlapPolicy, Trigger};

use crate::rows::truncate;
use crate::{Event, Fence, Job, JobOutcome, LogLine, PayloadRecord, StartedBy, StoreError};

/// How often one `claim_job` call looks for another candidate after a race
/// (the candidate was taken, or its event hit its limit meanwhile) before it
/// reports nothing claimable; the worker simply polls again.
pub(crate) const CLAIM_ATTEMPTS: usize = 16;

/// The values of a new `jobs` row, as `store/jobs.rs` inserts it.
#[derive(Debug)]
pub(crate) struct NewRow {
    pub event_id: i64,
    pub payload_version: Option<i64>,
    pub trigger: &'static str,
    pub status: &'static str,
    pub scheduled_at: DateTime<Utc>,
    /// `Some(scheduled_at)` for scheduled jobs: the unique key with `event_id`.
    pub fire_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub metadata: serde_json::Value,
    pub now: DateTime<Utc>,
}

/// A run to record, however it was started.
#[derive(Debug)]
pub(crate) struct Run {
    pub trigger: Trigger,
    pub scheduled_at: DateTime<Utc>,
    /// The run's input: a manual run's, or the output of the run whose
    /// action started it.
    pub input: Option<serde_json::Value>,
    /// The job whose action started this run.
    pub started_by: Option<StartedBy>,
}

impl Run {
    pub fn new(trigger: Trigger, scheduled_at: DateTime<Utc>) -> Run {
        Run {
            trigger,
            scheduled_at,
            input: None,
            started_by: None,
        }
    }
}

/// What the job pins when it is recorded: the active payload's files (so a
/// later edit of the event does not change what this run executes), the
/// manual run's input, and the job that started it.
pub(crate) fn pinned_metadata(
    payload: Option<&PayloadRecord>,
    input: Option<serde_json::Value>,
    started_by: Option<&StartedBy>,
) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if let Some(p) = payload {
        map.insert("payloadPath".into(), p.payload_path.clone().into());
        map.insert("checksumPath".into(), p.checksum_path.clone().into());
        map.insert("checksum".into(), p.checksum.clone().into());
    }
    if let Some(input) = input {
        map.insert("input".into(), input);
    }
    if let Some(by) = started_by {
        map.insert("startedBy".into(), serde_json::json!(by));
    }
    serde_json::Value::Object(map)
}

/// A run of `event` at `scheduled_at`, admitted by the event's overlap
/// policy given the event's oldest unfinished job (`active`, running ones
/// preferred): `forbid` records it as `skipped` with the reason.
pub(crate) fn run_row(
    event: &Event,
    payload: Option<&PayloadRecord>,
    run: Run,
    active: Option<(JobId, JobStatus)>,
    now: DateTime<Utc>,
) -> NewRow {
    let Run {
        trigger,
        scheduled_at,
        input,
        started_by,
    } = run;
    let scheduled_at = truncate(scheduled_at);
    let skipped = match (event.spec.policy.overlap, active) {
        (OverlapPolicy::Forbid, Some((job, status))) => Some(format!(
            "skipped: job {job} is still {status} (overlap policy forbid)"
        )),
        _ => None,
    };
    NewRow {
        event_id: event.id.0,
        payload_version: event.payload_version.and_then(|v| i64::try_from(v).ok()),
        trigger: trigger.as_str(),
        status: if skipped.is_some() {
            JobStatus::Skipped.as_str()
        } else {
            JobStatus::Queued.as_str()
        },
        scheduled_at,
        fire_at: (trigger == Trigger::Schedule).then_some(scheduled_at),
        finished_at: skipped.as_ref().map(|_| now),
        error: skipped,
        metadata: pinned_metadata(payload, input, started_by.as_ref()),
        now,
    }
}

/// A fire the misfire policy did not run: recorded, never run.
pub(crate) fn missed_row(
    event: &Event,
    payload: Option<&PayloadRecord>,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> NewRow {
    let at = truncate(at);
    NewRow {
        event_id: event.id.0,
        payload_version: event.payload_version.and_then(|v| i64::try_from(v).ok()),
        trigger: Trigger::Schedule.as_str(),
        status: JobStatus::Missed.as_str(),
        scheduled_at: at,
        fire_at: Some(at),
        finished_at: Some(now),
        error: Some(format!(
            "missed: no scheduler ran this fire in time (misfire policy {})",
            event.spec.policy.misfire
        )),
        metadata: pinned_metadata(payload, None, None),
        now,
    }
}

/// Whether a new run replaces the earlier ones (overlap `replace`): queued
/// jobs are cancelled with this reason, running ones asked to stop.
pub(crate) fn replaces(event: &Event, new: &Job) -> Option<String> {
    (event.spec.policy.overlap == OverlapPolicy::Replace && new.status == JobStatus::Queued)
        .then(|| format!("replaced by job {}", new.id))
}

/// A scheduled run recorded twice through `enqueue_job`.
pub(crate) fn fire_conflict(at: DateTime<Utc>) -> StoreError {
    StoreError::Conflict {
        field: "scheduledAt".into(),
        message: format!(
            "a run for the fire time {} is already recorded",
            at.to_rfc3339()
        ),
    }
}

/// Where a schedule stands when it is (re)set at `now`: the anchor and the
/// next fire, which is none unless the event is active and the schedule has
/// fires left after the `fired` it already made.
pub(crate) fn schedule_start(
    spec: &EventSpec,
    fired: u64,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
    let (anchor, next) = spec.schedule.start(&spec.policy, now);
    let exhausted = spec
        .policy
        .max_executions
        .is_some_and(|max| fired >= u64::from(max));
    let next = if spec.status == EventStatus::Active && !exhausted {
        next.map(truncate)
    } else {
        None
    };
    (truncate(anchor), next)
}

/// Whether an update moved the schedule: then it restarts from the update's
/// time (a resumed event does not owe the fires of its pause).
pub(crate) fn schedule_changed(before: &EventSpec, after: &EventSpec) -> bool {
    before.schedule != after.schedule
        || before.policy.start_at != after.policy.start_at
        || before.policy.max_executions != after.policy.max_executions
        || before.status != after.status
}

/// `now + lease`, refused when it does not fit a timestamp.
pub(crate) fn lease_until(
    now: DateTime<Utc>,
    lease: std::time::Duration,
) -> Result<DateTime<Utc>, StoreError> {
    chrono::TimeDelta::from_std(lease)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .map(truncate)
        .ok_or_else(|| cronium_core::ValidationError::new("lease", "too long").into())
}

/// Refuses a report from a worker that no longer holds the job.
pub(crate) fn check_fence(fence: &Fence, job: &Job) -> Result<(), StoreError> {
    check_fence_of(fence, job.status, job.lease_owner.as_deref(), job.attempt)
}

/// [`check_fence`] on the three columns that decide it, for a statement
/// that reads them beside something else.
pub(crate) fn check_fence_of(
    fence: &Fence,
    status: JobStatus,
    lease_owner: Option<&str>,
    attempt: u32,
) -> Result<(), StoreError> {
    let holds = status == JobStatus::Running
        && lease_owner == Some(fence.owner.as_str())
        && attempt == fence.attempt;
    if holds {
        Ok(())
    } else {
        Err(StoreError::Fenced {
            job: fence.job,
            attempt: fence.attempt,
        })
    }
}

/// Ends the attempt `job` is on. A retryable failure with retries left (the
/// first run is attempt 1, so `retries = 2` allows attempts 1 to 3) and no
/// cancellation asked goes back to the queue for `retry_at`, keeping this
/// attempt's error and exit code for the record; anything else is final.
pub(crate) fn finish(
    job: &mut Job,
    outcome: JobOutcome,
    retries: u32,
    retry_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if !outcome.status.is_terminal()
        || matches!(outcome.status, JobStatus::Missed | JobStatus::Skipped)
    {
        return Err(cronium_core::ValidationError::new(
            "status",
            format!("{} is not how a run ends", outcome.status),
        )
        .into());
    }
    if !outcome.metadata.is_null() && !outcome.metadata.is_object() {
        return Err(cronium_core::ValidationError::new("metadata", "must be a JSON object").into());
    }
    merge_metadata(&mut job.metadata, outcome.metadata);
    job.exit_code = outcome.exit_code;
    job.error = outcome.error;
    job.lease_expires_at = None;
    job.updated_at = now;
    if outcome.status.is_retryable() && job.attempt <= retries && !job.cancel_requested {
        requeue(job, retry_at);
    } else {
        job.status = outcome.status;
        job.finished_at = Some(now);
    }
    Ok(())
}

/// Recovers a running job whose lease expired before `now`: its worker is
/// gone. The attempt is raised either way, so that worker is fenced out;
/// returns whether the job was queued again.
pub(crate) fn recover(
    job: &mut Job,
    retries: u32,
    retry_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    let owner = job.lease_owner.as_deref().unwrap_or("(unknown)");
    let expired = job
        .lease_expires_at
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "an unknown time".into());
    let reason = format!(
        "the worker {owner} stopped reporting (lease expired at {expired}): \
         it crashed or lost the database"
    );
    end_attempt(job, reason, retries, retry_at, now)
}

/// A running job its worker gives back before the end (its server is
/// shutting down): like a recovery, but at once and saying so.
pub(crate) fn hand_back(
    job: &mut Job,
    retries: u32,
    retry_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    let owner = job.lease_owner.as_deref().unwrap_or("(unknown)");
    let reason = format!("the server {owner} shut down before the job finished and handed it back");
    end_attempt(job, reason, retries, retry_at, now)
}

/// Ends a running attempt that did not report its own end: queued again if
/// the event allows another attempt, otherwise failed with `reason`.
fn end_attempt(
    job: &mut Job,
    reason: String,
    retries: u32,
    retry_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    job.error = Some(reason);
    job.lease_expires_at = None;
    job.updated_at = now;
    let retried = job.attempt <= retries && !job.cancel_requested;
    if retried {
        requeue(job, retry_at);
    } else {
        job.attempt += 1;
        job.status = JobStatus::Failed;
        job.finished_at = Some(now);
    }
    retried
}

fn requeue(job: &mut Job, retry_at: DateTime<Utc>) {
    job.status = JobStatus::Queued;
    job.attempt += 1;
    job.run_after = truncate(retry_at);
    job.lease_owner = None;
    job.lease_expires_at = None;
    job.finished_at = None;
}

/// A queued job is cancelled at once; a running one is asked to stop (its
/// worker learns on its next heartbeat and ends it); a finished one cannot be.
pub(crate) fn cancel(job: &mut Job, now: DateTime<Utc>) -> Result<(), StoreError> {
    match job.status {
        JobStatus::Queued => {
            job.status = JobStatus::Cancelled;
            job.error = Some("cancelled".into());
            job.finished_at = Some(now);
        }
        JobStatus::Running => job.cancel_requested = true,
        done => {
            return Err(StoreError::Conflict {
                field: "status".into(),
                message: format!("job {} is already {done}", job.id),
            });
        }
    }
    job.updated_at = now;
    Ok(())
}

/// Top-level keys of `extra` overwrite the job's own.
pub(crate) fn merge_metadata(metadata: &mut serde_json::Value, extra: serde_json::Value) {
    let serde_json::Value::Object(extra) = extra else {
        return;
    };
    if !metadata.is_object() {
        *metadata = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(map) = metadata {
        map.extend(extra);
    }
}

/// New lines must continue the log exactly: from `last + 1`, without gaps.
/// A duplicate or a gap means the worker lost track of what it sent.
pub(crate) fn check_log_seq(last: u64, lines: &[LogLine]) -> Result<(), StoreError> {
    for (i, line) in lines.iter().enumerate() {
        let expected = last + 1 + i as u64;
        if line.seq != expected {
            return Err(StoreError::Conflict {
                field: "seq".into(),
                message: format!(
                    "log line seq {} does not continue the log (expected {expected})",
                    line.seq
                ),
            });
        }
    }
    Ok(())
}

/// A log line whose seq another append took meanwhile: the same answer as
/// the sequence check gives.
pub(crate) fn log_write_error(e: sqlx::Error) -> StoreError {
    if e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
    {
        StoreError::Conflict {
            field: "seq".into(),
            message: "a log line with this seq is already stored".into(),
        }
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogStream;
    use chrono::TimeZone;
    use serde_json::json;

    fn running(attempt: u32) -> Job {
        let t = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        Job {
            id: JobId(7),
            event_id: cronium_core::EventId(1),
            payload_version: Some(1),
            trigger: Trigger::Manual,
            status: JobStatus::Running,
            attempt,
            scheduled_at: t,
            run_after: t,
            lease_owner: Some("node-a".into()),
            lease_expires_at: Some(t + chrono::Duration::seconds(30)),
            cancel_requested: false,
            started_at: Some(t),
            finished_at: None,
            exit_code: None,
            error: None,
            metadata: json!({ "payloadPath": "p", "signal": null }),
            output: None,
            condition: false,
            created_at: t,
            updated_at: t,
        }
    }

    fn failed(code: i32) -> JobOutcome {
        JobOutcome {
            status: JobStatus::Failed,
            exit_code: Some(code),
            error: Some(format!("exit {code}")),
            metadata: json!({ "durationMs": 5, "signal": "TERM" }),
        }
    }

    #[test]
    fn failures_retry_while_attempts_remain_then_end() {
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(20);
        let mut job = running(2);
        finish(&mut job, failed(3), 2, later, now).unwrap();
        assert_eq!(
            (
                job.status,
                job.attempt,
                job.run_after,
                job.lease_owner.clone()
            ),
            (JobStatus::Queued, 3, truncate(later), None)
        );
        assert_eq!(
            (job.exit_code, job.error.as_deref()),
            (Some(3), Some("exit 3"))
        );
        assert_eq!(
            job.metadata,
            json!({ "payloadPath": "p", "signal": "TERM", "durationMs": 5 })
        );

        let mut last = running(3);
        finish(&mut last, failed(1), 2, later, now).unwrap();
        assert_eq!((last.status, last.attempt), (JobStatus::Failed, 3));
        assert_eq!(last.finished_at, Some(now));
        assert_eq!(last.lease_owner.as_deref(), Some("node-a"), "who ran it");
    }

    #[test]
    fn a_cancelled_job_is_not_retried_and_odd_outcomes_are_refused() {
        let now = Utc::now();
        let mut job = running(1);
        job.cancel_requested = true;
        finish(&mut job, failed(143), 5, now, now).unwrap();
        assert_eq!(job.status, JobStatus::Failed);

        for status in [JobStatus::Queued, JobStatus::Skipped, JobStatus::Missed] {
            let outcome = JobOutcome {
                status,
                ..failed(0)
            };
            let err = finish(&mut running(1), outcome, 0, now, now).unwrap_err();
            assert!(matches!(err, StoreError::Invalid(ref e) if e.field == "status"));
        }
    }

    #[test]
    fn recovery_names_the_lost_worker_and_fences_it_out() {
        let now = Utc::now();
        let mut job = running(1);
        assert!(recover(&mut job, 1, now, now));
        assert_eq!((job.status, job.attempt), (JobStatus::Queued, 2));
        let mut job = running(2);
        job.lease_owner = Some("node-b".into());
        assert!(!recover(&mut job, 1, now, now));
        assert_eq!((job.status, job.attempt), (JobStatus::Failed, 3));
        let error = job.error.unwrap();
        assert!(
            error.contains("node-b") && error.contains("lease expired at 2026-11-01T12:00:30"),
            "{error}"
        );
    }

    #[test]
    fn log_lines_must_continue_without_gaps() {
        let line = |seq| LogLine {
            seq,
            stream: LogStream::Stdout,
            at: Utc::now(),
            data: b"x\n".to_vec(),
            server: None,
        };
        assert!(check_log_seq(0, &[line(1), line(2)]).is_ok());
        assert!(check_log_seq(2, &[]).is_ok());
        for (last, lines) in [
            (0, vec![line(2)]),
            (2, vec![line(2)]),
            (0, vec![line(1), line(3)]),
        ] {
            let err = check_log_seq(last, &lines).unwrap_err();
            assert!(matches!(err, StoreError::Conflict { ref field, .. } if field == "seq"));
        }
    }
}
