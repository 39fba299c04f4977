//! Schedules and jobs on SQLite: every write runs under `BEGIN IMMEDIATE`, so each read-decide-write below holds the database's one write lock throughout.
//!
//! That lock is what makes the overlap policy, the schedule's compare-and-set
//! and the per-event concurrency limit race-free here; the decisions
//! themselves live in `crate::jobs`, shared with PostgreSQL.

use chrono::{DateTime, Utc};
use cronium_core::{EventId, EventSpec, JobId, JobStatus, Trigger};
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Sqlite};

pub(super) use crate::jobs::schedule_changed;
use crate::jobs::{self as rules, NewRow};
use crate::rows::{self, truncate};
use crate::{
    AuditEntry, Claim, Event, Fence, Fire, Heartbeat, Job, JobFilter, JobOutcome, JobRetention,
    LogLine, NewJob, Page, PageRequest, PayloadRecord, Recovered, Result, ScheduleState,
    StoreError,
};

use super::{SqliteStore, fetch_event, insert_audit, micros};

macro_rules! job_select {
    () => {
        concat!("SELECT ", job_columns!("metadata"), " FROM jobs ")
    };
}

macro_rules! job_filter {
    () => {
        "WHERE ($1 IS NULL OR event_id = $1) AND ($2 IS NULL OR status = $2) \
         AND ($3 IS NULL OR scheduled_at >= $3) AND ($4 IS NULL OR scheduled_at < $4) "
    };
}

/// Where the schedule of an event created or changed at `now` starts.
pub(super) async fn set_schedule(
    conn: &mut SqliteConnection,
    event: EventId,
    spec: &EventSpec,
    now: DateTime<Utc>,
) -> Result<()> {
    let fired: Option<i64> =
        sqlx::query_scalar("SELECT fire_count FROM schedule_state WHERE event_id = $1")
            .bind(event.0)
            .fetch_optional(&mut *conn)
            .await?;
    let (anchor, next) = rules::schedule_start(spec, rows::count(fired.unwrap_or(0)), now);
    sqlx::query(schedule_state_upsert!())
        .bind(event.0)
        .bind(micros(anchor))
        .bind(next.map(micros))
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives every event without a schedule state (created before the store
/// kept them) a schedule that starts at `now`.
pub(super) async fn backfill_schedules(store: &SqliteStore, now: DateTime<Utc>) -> Result<()> {
    let mut tx = store.write().await?;
    let missing = sqlx::query(concat!(
        event_select!(),
        "WHERE NOT EXISTS (SELECT 1 FROM schedule_state st WHERE st.event_id = e.id)"
    ))
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(rows::event)
    .collect::<Result<Vec<_>>>()?;
    for event in missing {
        let (anchor, next) = rules::schedule_start(&event.spec, 0, truncate(now));
        sqlx::query(schedule_state_insert_missing!())
            .bind(event.id.0)
            .bind(micros(anchor))
            .bind(next.map(micros))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn get_schedule_state(
    store: &SqliteStore,
    event: EventId,
) -> Result<ScheduleState> {
    let row = sqlx::query(concat!(
        "SELECT ",
        schedule_state_columns!(),
        " FROM schedule_state WHERE event_id = $1"
    ))
    .bind(event.0)
    .fetch_optional(&store.pool)
    .await?
    .ok_or(StoreError::NotFound { what: "event" })?;
    rows::schedule_state(&row)
}

pub(super) async fn due_schedules(
    store: &SqliteStore,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<(Event, ScheduleState)>> {
    sqlx::query(concat!(
        "SELECT ",
        event_columns!(),
        ", st.event_id, st.anchor, st.next_fire_at, st.fire_count \
         FROM events e JOIN schedule_state st ON st.event_id = e.id \
         WHERE e.status = 'active' AND st.next_fire_at <= $1 \
         ORDER BY st.next_fire_at, e.id LIMIT $2"
    ))
    .bind(micros(truncate(now)))
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await?
    .iter()
    .map(|row| Ok((rows::event(row)?, rows::schedule_state(row)?)))
    .collect()
}

pub(super) async fn record_fires(
    store: &SqliteStore,
    event: EventId,
    expected: DateTime<Utc>,
    fires: &[Fire],
    next: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Vec<Job>> {
    let now = truncate(now);
    let mut tx = store.write().await?;
    let next_fire: Option<Option<i64>> =
        sqlx::query_scalar("SELECT next_fire_at FROM schedule_state WHERE event_id = $1")
            .bind(event.0)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(next_fire) = next_fire else {
        return Err(StoreError::NotFound { what: "event" });
    };
    if next_fire != Some(micros(truncate(expected))) {
        // Another scheduler recorded this step first (or the schedule moved).
        return Ok(Vec::new());
    }
    let current = fetch_event(&mut tx, event)
        .await?
        .ok_or(StoreError::NotFound { what: "event" })?;
    let payload = active_payload(&mut tx, event).await?;
    let mut jobs = Vec::with_capacity(fires.len());
    let mut ran = 0i64;
    for fire in fires {
        let job = if fire.run {
            let job = insert_run(
                &mut tx,
                &current,
                payload.as_ref(),
                Trigger::Schedule,
                fire.at,
                None,
                now,
            )
            .await?;
            ran += i64::from(job.is_some());
            job
        } else {
            let row = rules::missed_row(&current, payload.as_ref(), fire.at, now);
            insert_job(&mut tx, &row).await?
        };
        jobs.extend(job);
    }
    sqlx::query(
        "UPDATE schedule_state SET next_fire_at = $2, fire_count = fire_count + $3 \
         WHERE event_id = $1",
    )
    .bind(event.0)
    .bind(next.map(|t| micros(truncate(t))))
    .bind(ran)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(jobs)
}

pub(super) async fn enqueue_job(
    store: &SqliteStore,
    new: NewJob,
    now: DateTime<Utc>,
) -> Result<Job> {
    let now = truncate(now);
    let mut tx = store.write().await?;
    let event = fetch_event(&mut tx, new.event_id)
        .await?
        .ok_or(StoreError::NotFound { what: "event" })?;
    let payload = active_payload(&mut tx, event.id).await?;
    let job = insert_run(
        &mut tx,
        &event,
        payload.as_ref(),
        new.trigger,
        new.scheduled_at,
        new.input,
        now,
    )
    .await?
    .ok_or_else(|| rules::fire_conflict(new.scheduled_at))?;
    tx.commit().await?;
    Ok(job)
}

async fn active_payload(
    conn: &mut SqliteConnection,
    event: EventId,
) -> Result<Option<PayloadRecord>> {
    let row = sqlx::query(active_payload_select!())
        .bind(event.0)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(rows::payload).transpose()
}

/// Records one run under the event's overlap policy; `None` when its fire
/// was already recorded.
async fn insert_run(
    conn: &mut SqliteConnection,
    event: &Event,
    payload: Option<&PayloadRecord>,
    trigger: Trigger,
    scheduled_at: DateTime<Utc>,
    input: Option<serde_json::Value>,
    now: DateTime<Utc>,
) -> Result<Option<Job>> {
    let active: Option<(i64, String)> = sqlx::query_as(active_job_select!())
        .bind(event.id.0)
        .fetch_optional(&mut *conn)
        .await?;
    let active = active
        .map(|(id, status)| Ok::<_, StoreError>((JobId(id), parse_status(&status)?)))
        .transpose()?;
    let row = rules::run_row(event, payload, trigger, scheduled_at, input, active, now);
    let Some(job) = insert_job(&mut *conn, &row).await? else {
        return Ok(None);
    };
    if let Some(reason) = rules::replaces(event, &job) {
        sqlx::query(replace_queued!())
            .bind(event.id.0)
            .bind(job.id.0)
            .bind(reason)
            .bind(micros(now))
            .execute(&mut *conn)
            .await?;
        sqlx::query(replace_running!())
            .bind(event.id.0)
            .bind(job.id.0)
            .bind(micros(now))
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some(job))
}

fn parse_status(text: &str) -> Result<JobStatus> {
    JobStatus::parse(text, "status").map_err(|e| {
        StoreError::Backend(format!("corrupt row in jobs: column status: {}", e.message))
    })
}

async fn insert_job(conn: &mut SqliteConnection, row: &NewRow) -> Result<Option<Job>> {
    let inserted = sqlx::query(concat!(
        "INSERT INTO jobs (event_id, payload_version, \"trigger\", status, attempt, scheduled_at, \
         fire_at, run_after, cancel_requested, finished_at, error, metadata, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, 1, $5, $6, $5, FALSE, $7, $8, $9, $10, $10) \
         ON CONFLICT (event_id, fire_at) DO NOTHING RETURNING ",
        job_columns!("metadata")
    ))
    .bind(row.event_id)
    .bind(row.payload_version)
    .bind(row.trigger)
    .bind(row.status)
    .bind(micros(row.scheduled_at))
    .bind(row.fire_at.map(micros))
    .bind(row.finished_at.map(micros))
    .bind(row.error.clone())
    .bind(row.metadata.clone())
    .bind(micros(row.now))
    .fetch_optional(conn)
    .await?;
    inserted.as_ref().map(rows::job).transpose()
}

/// Writes back every column a job's life changes.
async fn write_job(conn: &mut SqliteConnection, job: &Job) -> Result<Job> {
    let row = sqlx::query(concat!(
        "UPDATE jobs SET status = $2, attempt = $3, run_after = $4, lease_owner = $5, \
         lease_expires_at = $6, cancel_requested = $7, started_at = $8, finished_at = $9, \
         exit_code = $10, error = $11, metadata = $12, updated_at = $13 WHERE id = $1 RETURNING ",
        job_columns!("metadata")
    ))
    .bind(job.id.0)
    .bind(job.status.as_str())
    .bind(i64::from(job.attempt))
    .bind(micros(job.run_after))
    .bind(job.lease_owner.clone())
    .bind(job.lease_expires_at.map(micros))
    .bind(job.cancel_requested)
    .bind(job.started_at.map(micros))
    .bind(job.finished_at.map(micros))
    .bind(job.exit_code)
    .bind(job.error.clone())
    .bind(job.metadata.to_string())
    .bind(micros(job.updated_at))
    .fetch_one(conn)
    .await?;
    rows::job(&row)
}

async fn fetch_job(conn: &mut SqliteConnection, id: JobId) -> Result<Job> {
    let row = sqlx::query(concat!(job_select!(), "WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound { what: "job" })?;
    rows::job(&row)
}

async fn event_retries(conn: &mut SqliteConnection, event: EventId) -> Result<u32> {
    let retries: i64 = sqlx::query_scalar("SELECT retries FROM events WHERE id = $1")
        .bind(event.0)
        .fetch_one(conn)
        .await?;
    u32::try_from(retries).map_err(|_| {
        StoreError::Backend(format!(
            "corrupt row in events (id {event}): column retries: {retries} is out of range"
        ))
    })
}

pub(super) async fn claim_job(
    store: &SqliteStore,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
) -> Result<Option<Claim>> {
    let now = truncate(now);
    let until = rules::lease_until(now, lease)?;
    let mut tx = store.write().await?;
    // Under the write lock the count of running jobs cannot change between
    // this choice and the update below.
    let candidate: Option<i64> = sqlx::query_scalar(concat!(
        "SELECT j.id ",
        claimable!(),
        "ORDER BY j.run_after, j.id LIMIT 1"
    ))
    .bind(micros(now))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = candidate else {
        return Ok(None);
    };
    let row = sqlx::query(concat!(
        claim_update!(),
        " RETURNING ",
        job_columns!("metadata")
    ))
    .bind(id)
    .bind(owner.to_string())
    .bind(micros(until))
    .bind(micros(now))
    .fetch_one(&mut *tx)
    .await?;
    let job = rows::job(&row)?;
    let event = fetch_event(&mut tx, job.event_id)
        .await?
        .ok_or(StoreError::NotFound { what: "event" })?;
    tx.commit().await?;
    let fence = Fence {
        job: job.id,
        owner: owner.to_string(),
        attempt: job.attempt,
    };
    Ok(Some(Claim { job, event, fence }))
}

pub(super) async fn heartbeat(
    store: &SqliteStore,
    fence: &Fence,
    until: DateTime<Utc>,
) -> Result<Heartbeat> {
    let cancel: Option<bool> = sqlx::query_scalar(heartbeat_update!())
        .bind(fence.job.0)
        .bind(micros(truncate(until)))
        .bind(fence.owner.clone())
        .bind(i64::from(fence.attempt))
        .fetch_optional(&store.writer)
        .await?;
    match cancel {
        Some(cancel_requested) => Ok(Heartbeat { cancel_requested }),
        None => {
            // Tell a vanished job from one another attempt holds.
            let mut conn = store.pool.acquire().await?;
            let job = fetch_job(&mut conn, fence.job).await?;
            rules::check_fence(fence, &job)?;
            Err(StoreError::Fenced {
                job: fence.job,
                attempt: fence.attempt,
            })
        }
    }
}

pub(super) async fn finish_job(
    store: &SqliteStore,
    fence: &Fence,
    outcome: JobOutcome,
    retry_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Job> {
    let now = truncate(now);
    let mut tx = store.write().await?;
    let mut job = fetch_job(&mut tx, fence.job).await?;
    rules::check_fence(fence, &job)?;
    let retries = event_retries(&mut tx, job.event_id).await?;
    rules::finish(&mut job, outcome, retries, retry_at, now)?;
    let job = write_job(&mut tx, &job).await?;
    tx.commit().await?;
    Ok(job)
}

pub(super) async fn recover_expired_leases(
    store: &SqliteStore,
    now: DateTime<Utc>,
    retry_at: DateTime<Utc>,
) -> Result<Vec<Recovered>> {
    let now = truncate(now);
    let mut tx = store.write().await?;
    let expired = sqlx::query(concat!(
        job_select!(),
        "WHERE status = 'running' AND lease_expires_at < $1 ORDER BY id"
    ))
    .bind(micros(now))
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(rows::job)
    .collect::<Result<Vec<_>>>()?;
    let mut recovered = Vec::with_capacity(expired.len());
    for mut job in expired {
        let retries = event_retries(&mut tx, job.event_id).await?;
        let retried = rules::recover(&mut job, retries, retry_at, now);
        let job = write_job(&mut tx, &job).await?;
        recovered.push(Recovered { job, retried });
    }
    tx.commit().await?;
    Ok(recovered)
}

pub(super) async fn cancel_job(
    store: &SqliteStore,
    id: JobId,
    now: DateTime<Utc>,
    audit: &AuditEntry,
) -> Result<Job> {
    let now = truncate(now);
    let mut tx = store.write().await?;
    let mut job = fetch_job(&mut tx, id).await?;
    rules::cancel(&mut job, now)?;
    let job = write_job(&mut tx, &job).await?;
    insert_audit(&mut tx, &rows::audit_entry(audit, Some(id.0))).await?;
    tx.commit().await?;
    Ok(job)
}

pub(super) async fn get_job(store: &SqliteStore, id: JobId) -> Result<Job> {
    let mut conn = store.pool.acquire().await?;
    fetch_job(&mut conn, id).await
}

pub(super) async fn list_jobs(
    store: &SqliteStore,
    filter: &JobFilter,
    page: PageRequest,
) -> Result<Page<Job>> {
    let (limit, offset) = rows::page_bounds(page);
    let event = filter.event.map(|e| e.0);
    let status = filter.status.map(JobStatus::as_str);
    let since = filter.since.map(|t| micros(truncate(t)));
    let until = filter.until.map(|t| micros(truncate(t)));
    let total: i64 = sqlx::query_scalar(concat!("SELECT COUNT(*) FROM jobs ", job_filter!()))
        .bind(event)
        .bind(status)
        .bind(since)
        .bind(until)
        .fetch_one(&store.pool)
        .await?;
    let items = sqlx::query(concat!(
        job_select!(),
        job_filter!(),
        "ORDER BY id DESC LIMIT $5 OFFSET $6"
    ))
    .bind(event)
    .bind(status)
    .bind(since)
    .bind(until)
    .bind(limit)
    .bind(offset)
    .fetch_all(&store.pool)
    .await?
    .iter()
    .map(rows::job)
    .collect::<Result<Vec<_>>>()?;
    Ok(Page {
        items,
        total: rows::count(total),
    })
}

/// Most lines one INSERT carries (SQLite allows 32766 bound values).
const LOG_LINES_PER_INSERT: usize = 1000;

pub(super) async fn append_logs(
    store: &SqliteStore,
    fence: &Fence,
    lines: &[LogLine],
) -> Result<()> {
    let mut tx = store.write().await?;
    let job = fetch_job(&mut tx, fence.job).await?;
    rules::check_fence(fence, &job)?;
    let last: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM job_logs WHERE job_id = $1")
            .bind(fence.job.0)
            .fetch_one(&mut *tx)
            .await?;
    rules::check_log_seq(rows::count(last), lines)?;
    for chunk in lines.chunks(LOG_LINES_PER_INSERT) {
        let mut insert: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO job_logs (job_id, seq, stream, at, data, server) ");
        insert.push_values(chunk, |mut values, line| {
            values
                .push_bind(fence.job.0)
                .push_bind(i64::try_from(line.seq).unwrap_or(i64::MAX))
                .push_bind(rows::stream_name(line.stream))
                .push_bind(micros(truncate(line.at)))
                .push_bind(line.data.clone())
                .push_bind(line.server.clone());
        });
        insert
            .build()
            .execute(&mut *tx)
            .await
            .map_err(rules::log_write_error)?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn job_logs(
    store: &SqliteStore,
    job: JobId,
    after_seq: u64,
    limit: u32,
) -> Result<Vec<LogLine>> {
    let lines = sqlx::query(log_select!())
        .bind(job.0)
        .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&store.pool)
        .await?
        .iter()
        .map(rows::log_line)
        .collect::<Result<Vec<_>>>()?;
    if lines.is_empty() {
        get_job(store, job).await?;
    }
    Ok(lines)
}

pub(super) async fn last_log_seq(store: &SqliteStore, job: JobId) -> Result<u64> {
    let last: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM job_logs WHERE job_id = $1")
            .bind(job.0)
            .fetch_one(&store.pool)
            .await?;
    if last == 0 {
        get_job(store, job).await?;
    }
    Ok(rows::count(last))
}

pub(super) async fn prune_jobs(store: &SqliteStore, retention: JobRetention) -> Result<u64> {
    let mut tx = store.write().await?;
    let deleted = sqlx::query(prune_jobs_delete!())
        .bind(micros(truncate(retention.older_than)))
        .bind(i64::from(retention.keep_per_event))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(deleted.rows_affected())
}
