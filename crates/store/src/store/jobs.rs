//! Schedules, jobs and logs, written once for both backends: each read-decide-write holds its rows (the write lock on SQLite, row locks on PostgreSQL) from the read to the commit.
//!
//! That is what makes the overlap policy, the schedule's compare-and-set and
//! the per-event concurrency limit race-free. On SQLite every write
//! transaction holds the database's one write lock throughout; on PostgreSQL
//! the event is locked first ([`Backend::lock_event`]) and jobs after it
//! ([`Backend::lock`]), so several nodes can schedule and claim from one
//! database. The decisions themselves live in `crate::jobs`; how a claimer
//! picks its job is the backend's ([`Backend::claim_candidate`]).

use chrono::{DateTime, Utc};
use cronium_core::{EventId, EventSpec, JobId, JobStatus, Trigger};

use super::{
    SqlStore, event_columns, event_select, fetch_event, fetch_page, insert_audit, workflow_runs,
};
use crate::db::{Backend, Conn, Lock, sql, values_placeholders};
pub(super) use crate::jobs::schedule_changed;
use crate::jobs::{self as rules, NewRow, Run};
use crate::rows::{self, Reader, truncate};
use crate::signals::{Signal, announce};
use crate::{
    AuditEntry, Claim, Event, Fence, Fire, Heartbeat, Job, JobFilter, JobOutcome, JobRetention,
    LogLine, NewJob, Page, PageRequest, PayloadRecord, Recovered, Result, ScheduleState,
    StoreError,
};

/// Where the schedule of an event created or changed at `now` starts.
pub(super) async fn set_schedule<C: Conn>(
    conn: &mut C,
    event: EventId,
    spec: &EventSpec,
    now: DateTime<Utc>,
) -> Result<()> {
    let fired = sql("SELECT fire_count FROM schedule_state WHERE event_id = $1")
        .bind(event.0)
        .fetch_optional(conn)
        .await?
        .map(|row| Reader::new(&row, "schedule_state").int("fire_count"))
        .transpose()?;
    let (anchor, next) = rules::schedule_start(spec, rows::count(fired.unwrap_or(0)), now);
    sql(schedule_state_upsert!())
        .bind(event.0)
        .bind(anchor)
        .bind(next)
        .execute(conn)
        .await?;
    announce(conn, Signal::SchedulesChanged).await
}

/// Gives every event without a schedule state (created before the store
/// kept them) a schedule that starts at `now`.
pub(crate) async fn backfill_schedules<B: Backend>(
    store: &SqlStore<B>,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tx = store.db.begin().await?;
    let missing = event_select::<B>(
        "WHERE NOT EXISTS (SELECT 1 FROM schedule_state st WHERE st.event_id = e.id)",
    )
    .fetch_all(&mut tx)
    .await?
    .iter()
    .map(rows::event)
    .collect::<Result<Vec<_>>>()?;
    for event in missing {
        let (anchor, next) = rules::schedule_start(&event.spec, 0, truncate(now));
        sql(schedule_state_insert_missing!())
            .bind(event.id.0)
            .bind(anchor)
            .bind(next)
            .execute(&mut tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn get_schedule_state<B: Backend>(
    store: &SqlStore<B>,
    event: EventId,
) -> Result<ScheduleState> {
    let row = sql(concat!(
        "SELECT ",
        schedule_state_columns!(),
        " FROM schedule_state WHERE event_id = $1"
    ))
    .bind(event.0)
    .fetch_optional(&mut store.db.pool())
    .await?
    .ok_or(StoreError::NotFound { what: "event" })?;
    rows::schedule_state(&row)
}

pub(super) async fn due_schedules<B: Backend>(
    store: &SqlStore<B>,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<(Event, ScheduleState)>> {
    sql(format!(
        "SELECT {}, st.event_id, st.anchor, st.next_fire_at, st.fire_count \
         FROM events e JOIN schedule_state st ON st.event_id = e.id \
         WHERE e.status = 'active' AND st.next_fire_at <= $1 \
         ORDER BY st.next_fire_at, e.id LIMIT $2",
        event_columns::<B>()
    ))
    .bind(truncate(now))
    .bind(i64::from(limit))
    .fetch_all(&mut store.db.pool())
    .await?
    .iter()
    .map(|row| Ok((rows::event(row)?, rows::schedule_state(row)?)))
    .collect()
}

pub(super) async fn record_fires<B: Backend>(
    store: &SqlStore<B>,
    event: EventId,
    expected: DateTime<Utc>,
    fires: &[Fire],
    next: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Vec<Job>> {
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    // Every scheduler recording this event queues here; the holder's commit
    // is what the next one's compare-and-set reads.
    B::lock_event(&mut tx, event).await?;
    let Some(state) = sql("SELECT next_fire_at FROM schedule_state WHERE event_id = $1")
        .bind(event.0)
        .fetch_optional(&mut tx)
        .await?
    else {
        return Err(StoreError::NotFound { what: "event" });
    };
    let next_fire = Reader::new(&state, "schedule_state").opt_time("next_fire_at")?;
    if next_fire != Some(truncate(expected)) {
        // Another scheduler recorded this step first (or the schedule moved).
        return Ok(Vec::new());
    }
    let current = fetch_event::<B, _>(&mut tx, event)
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
                Run::new(Trigger::Schedule, fire.at),
                now,
            )
            .await?;
            ran += i64::from(job.is_some());
            job
        } else {
            let row = rules::missed_row(&current, payload.as_ref(), fire.at, now);
            insert_job(&mut tx, row).await?
        };
        jobs.extend(job);
    }
    sql(
        "UPDATE schedule_state SET next_fire_at = $2, fire_count = fire_count + $3 \
         WHERE event_id = $1",
    )
    .bind(event.0)
    .bind(next.map(truncate))
    .bind(ran)
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(jobs)
}

pub(super) async fn enqueue_job<B: Backend>(
    store: &SqlStore<B>,
    new: NewJob,
    now: DateTime<Utc>,
) -> Result<Job> {
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    // Held until the commit, so the overlap policy sees every earlier run.
    B::lock_event(&mut tx, new.event_id).await?;
    let event = fetch_event::<B, _>(&mut tx, new.event_id)
        .await?
        .ok_or(StoreError::NotFound { what: "event" })?;
    let payload = active_payload(&mut tx, event.id).await?;
    let run = Run {
        input: new.input,
        ..Run::new(new.trigger, new.scheduled_at)
    };
    let job = insert_run(&mut tx, &event, payload.as_ref(), run, now)
        .await?
        .ok_or_else(|| rules::fire_conflict(new.scheduled_at))?;
    tx.commit().await?;
    Ok(job)
}

pub(super) async fn active_payload<C: Conn>(
    conn: &mut C,
    event: EventId,
) -> Result<Option<PayloadRecord>> {
    let row = sql(active_payload_select!())
        .bind(event.0)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(rows::payload).transpose()
}

/// Records one run under the event's overlap policy; `None` when its fire
/// was already recorded.
pub(super) async fn insert_run<C: Conn>(
    conn: &mut C,
    event: &Event,
    payload: Option<&PayloadRecord>,
    run: Run,
    now: DateTime<Utc>,
) -> Result<Option<Job>> {
    let active = sql(active_job_select!())
        .bind(event.id.0)
        .fetch_optional(conn)
        .await?
        .map(|row| {
            let r = Reader::new(&row, "jobs");
            Ok::<_, StoreError>((JobId(r.int("id")?), parse_status(&r.text("status")?)?))
        })
        .transpose()?;
    let row = rules::run_row(event, payload, run, active, now);
    let Some(job) = insert_job(conn, row).await? else {
        return Ok(None);
    };
    if let Some(reason) = rules::replaces(event, &job) {
        let replaced = sql(concat!(replace_queued!(), " RETURNING id"))
            .bind(event.id.0)
            .bind(job.id.0)
            .bind(reason)
            .bind(now)
            .fetch_all(conn)
            .await?;
        for row in &replaced {
            let id = JobId(Reader::new(row, "jobs").int("id")?);
            announce(conn, Signal::JobEnded(id)).await?;
        }
        sql(replace_running!())
            .bind(event.id.0)
            .bind(job.id.0)
            .bind(now)
            .execute(conn)
            .await?;
    }
    Ok(Some(job))
}

pub(super) fn parse_status(text: &str) -> Result<JobStatus> {
    JobStatus::parse(text, "status").map_err(|e| {
        StoreError::Backend(format!("corrupt row in jobs: column status: {}", e.message))
    })
}

pub(super) async fn insert_job<C: Conn>(conn: &mut C, row: NewRow) -> Result<Option<Job>> {
    let inserted = sql(concat!(
        "INSERT INTO jobs (event_id, payload_version, \"trigger\", status, attempt, scheduled_at, \
         fire_at, run_after, cancel_requested, finished_at, error, metadata, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, 1, $5, $6, $5, FALSE, $7, $8, $9, $10, $10) \
         ON CONFLICT (event_id, fire_at) DO NOTHING RETURNING ",
        job_columns!()
    ))
    .bind(row.event_id)
    .bind(row.payload_version)
    .bind(row.trigger)
    .bind(row.status)
    .bind(row.scheduled_at)
    .bind(row.fire_at)
    .bind(row.finished_at)
    .bind(row.error)
    .bind(row.metadata)
    .bind(row.now)
    .fetch_optional(conn)
    .await?;
    let job = inserted.as_ref().map(rows::job).transpose()?;
    if let Some(job) = &job {
        announce_status(conn, job).await?;
    }
    Ok(job)
}

/// Tells other servers what a job's new status means for them: a queued job
/// is for their workers to claim, an ended one for its log's followers.
/// Every insert and write-back of a job passes here, so no path that queues
/// or ends a job (a retry, a recovered lease, a workflow's next node, a
/// chained action) goes unannounced.
async fn announce_status<C: Conn>(conn: &mut C, job: &Job) -> Result<()> {
    if job.status == JobStatus::Queued {
        announce(conn, Signal::JobsQueued).await
    } else if job.status.is_terminal() {
        announce(conn, Signal::JobEnded(job.id)).await
    } else {
        Ok(())
    }
}

/// Writes back every column a job's life changes.
pub(super) async fn write_job<C: Conn>(conn: &mut C, job: &Job) -> Result<Job> {
    let row = sql(concat!(
        "UPDATE jobs SET status = $2, attempt = $3, run_after = $4, lease_owner = $5, \
         lease_expires_at = $6, cancel_requested = $7, started_at = $8, finished_at = $9, \
         exit_code = $10, error = $11, metadata = $12, updated_at = $13 WHERE id = $1 RETURNING ",
        job_columns!()
    ))
    .bind(job.id.0)
    .bind(job.status.as_str())
    .bind(i64::from(job.attempt))
    .bind(job.run_after)
    .bind(job.lease_owner.clone())
    .bind(job.lease_expires_at)
    .bind(job.cancel_requested)
    .bind(job.started_at)
    .bind(job.finished_at)
    .bind(job.exit_code)
    .bind(job.error.clone())
    .bind(job.metadata.clone())
    .bind(job.updated_at)
    .fetch_one(conn)
    .await?;
    let job = rows::job(&row)?;
    announce_status(conn, &job).await?;
    Ok(job)
}

pub(super) async fn fetch_job<C: Conn>(conn: &mut C, id: JobId) -> Result<Job> {
    let row = sql(concat!(job_select!(), "WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound { what: "job" })?;
    rows::job(&row)
}

/// A job read in a write transaction, locked as `lock` says until it ends.
pub(super) async fn fetch_job_locked<B: Backend, C: Conn>(
    conn: &mut C,
    id: JobId,
    lock: Lock,
) -> Result<Job> {
    let row = sql(B::lock(concat!(job_select!(), "WHERE id = $1"), lock))
        .bind(id.0)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound { what: "job" })?;
    rows::job(&row)
}

async fn event_retries<C: Conn>(conn: &mut C, event: EventId) -> Result<u32> {
    // INTEGER on PostgreSQL; read as a BIGINT like every integer.
    let row = sql("SELECT CAST(retries AS BIGINT) AS retries FROM events WHERE id = $1")
        .bind(event.0)
        .fetch_one(conn)
        .await?;
    let retries = Reader::new(&row, "events").int("retries")?;
    u32::try_from(retries).map_err(|_| {
        StoreError::Backend(format!(
            "corrupt row in events (id {event}): column retries: {retries} is out of range"
        ))
    })
}

pub(super) async fn claim_job<B: Backend>(
    store: &SqlStore<B>,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
) -> Result<Option<Claim>> {
    let now = truncate(now);
    let until = rules::lease_until(now, lease)?;
    let Some((mut tx, id)) = store.db.claim_candidate(now).await? else {
        return Ok(None);
    };
    let row = sql(concat!(claim_update!(), " RETURNING ", job_columns!()))
        .bind(id)
        .bind(owner)
        .bind(until)
        .bind(now)
        .fetch_one(&mut tx)
        .await?;
    let job = rows::job(&row)?;
    let event = fetch_event::<B, _>(&mut tx, job.event_id)
        .await?
        .ok_or(StoreError::NotFound { what: "event" })?;
    // A job starts once: its first attempt's claim is its start.
    let owes_deliveries =
        job.attempt == 1 && super::notify::enqueue_start_deliveries(&mut tx, &job, now).await? > 0;
    tx.commit().await?;
    let fence = Fence {
        job: job.id,
        owner: owner.to_string(),
        attempt: job.attempt,
    };
    Ok(Some(Claim {
        job,
        event,
        fence,
        owes_deliveries,
    }))
}

pub(super) async fn heartbeat<B: Backend>(
    store: &SqlStore<B>,
    fence: &Fence,
    until: DateTime<Utc>,
) -> Result<Heartbeat> {
    let row = sql(heartbeat_update!())
        .bind(fence.job.0)
        .bind(truncate(until))
        .bind(fence.owner.as_str())
        .bind(i64::from(fence.attempt))
        .fetch_optional(&mut store.db.writer())
        .await?;
    match row {
        Some(row) => Ok(Heartbeat {
            cancel_requested: Reader::new(&row, "jobs").boolean("cancel_requested")?,
        }),
        None => {
            // Tell a vanished job from one another attempt holds.
            let job = fetch_job(&mut store.db.pool(), fence.job).await?;
            rules::check_fence(fence, &job)?;
            Err(StoreError::Fenced {
                job: fence.job,
                attempt: fence.attempt,
            })
        }
    }
}

pub(super) async fn finish_job<B: Backend>(
    store: &SqlStore<B>,
    fence: &Fence,
    outcome: JobOutcome,
    retry_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Job> {
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    // A workflow node's run first, then the event before the job, the order
    // claiming takes them in: an action of the job may start another run of
    // this same event, which locks it; another node of the run ending now
    // waits on the run, holding nothing this one needs.
    let run = workflow_runs::run_of_job(&mut tx, fence.job).await?;
    if let Some(run) = run {
        workflow_runs::lock_run::<B, _>(&mut tx, run).await?;
    }
    let event = fetch_job(&mut tx, fence.job).await?.event_id;
    B::lock_event(&mut tx, event).await?;
    let mut job = fetch_job_locked::<B, _>(&mut tx, fence.job, Lock::Update).await?;
    rules::check_fence(fence, &job)?;
    let retries = event_retries(&mut tx, job.event_id).await?;
    rules::finish(&mut job, outcome, retries, retry_at, now)?;
    let mut job = write_job(&mut tx, &job).await?;
    if job.status != JobStatus::Queued {
        job = super::notify::fire_end_actions::<B, _>(&mut tx, job, now).await?;
        if let Some(run) = run {
            // Node done and next nodes queued, in one commit.
            workflow_runs::advance::<B, _>(&mut tx, run, now).await?;
        }
    }
    tx.commit().await?;
    Ok(job)
}

pub(super) async fn recover_expired_leases<B: Backend>(
    store: &SqlStore<B>,
    now: DateTime<Utc>,
    retry_at: DateTime<Utc>,
) -> Result<Vec<Recovered>> {
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    // A job another recoverer holds is being recovered: passed over, not waited for.
    let expired = sql(B::lock(
        concat!(
            job_select!(),
            "WHERE status = 'running' AND lease_expires_at < $1 ORDER BY id"
        ),
        Lock::UpdateSkipLocked,
    ))
    .bind(now)
    .fetch_all(&mut tx)
    .await?
    .iter()
    .map(rows::job)
    .collect::<Result<Vec<_>>>()?;
    let mut recovered = Vec::with_capacity(expired.len());
    for mut job in expired {
        let retries = event_retries(&mut tx, job.event_id).await?;
        let retried = rules::recover(&mut job, retries, retry_at, now);
        let mut job = write_job(&mut tx, &job).await?;
        if !retried {
            job = super::notify::fire_end_actions::<B, _>(&mut tx, job, now).await?;
        }
        recovered.push(Recovered { job, retried });
    }
    tx.commit().await?;
    Ok(recovered)
}

pub(super) async fn hand_back_job<B: Backend>(
    store: &SqlStore<B>,
    fence: &Fence,
    retry_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Recovered> {
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    let mut job = fetch_job_locked::<B, _>(&mut tx, fence.job, Lock::Update).await?;
    rules::check_fence(fence, &job)?;
    let retries = event_retries(&mut tx, job.event_id).await?;
    let retried = rules::hand_back(&mut job, retries, retry_at, now);
    let mut job = write_job(&mut tx, &job).await?;
    if !retried {
        job = super::notify::fire_end_actions::<B, _>(&mut tx, job, now).await?;
    }
    tx.commit().await?;
    Ok(Recovered { job, retried })
}

pub(super) async fn cancel_job<B: Backend>(
    store: &SqlStore<B>,
    id: JobId,
    now: DateTime<Utc>,
    audit: &AuditEntry,
) -> Result<Job> {
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    let run = workflow_runs::run_of_job(&mut tx, id).await?;
    if let Some(run) = run {
        workflow_runs::lock_run::<B, _>(&mut tx, run).await?;
    }
    let mut job = fetch_job_locked::<B, _>(&mut tx, id, Lock::Update).await?;
    rules::cancel(&mut job, now)?;
    let job = write_job(&mut tx, &job).await?;
    if let Some(run) = run
        && job.status.is_terminal()
    {
        workflow_runs::advance::<B, _>(&mut tx, run, now).await?;
    }
    insert_audit(&mut tx, &rows::audit_entry(audit, Some(id.0))).await?;
    tx.commit().await?;
    Ok(job)
}

pub(super) async fn get_job<B: Backend>(store: &SqlStore<B>, id: JobId) -> Result<Job> {
    fetch_job(&mut store.db.pool(), id).await
}

pub(super) async fn list_jobs<B: Backend>(
    store: &SqlStore<B>,
    filter: &JobFilter,
    page: PageRequest,
) -> Result<Page<Job>> {
    let (limit, offset) = rows::page_bounds(page);
    let event = filter.event.map(|e| e.0);
    let status = filter.status.map(JobStatus::as_str);
    let since = filter.since.map(truncate);
    let until = filter.until.map(truncate);
    // Only the filters given, as plain predicates: `($1 IS NULL OR …)`
    // made both databases read every job to count an unfiltered list, where
    // a bare `COUNT(*)` is counted from an index, and kept them from using
    // `jobs_event` for one event's jobs.
    let mut clauses = Vec::new();
    for (given, clause) in [
        (event.is_some(), "event_id ="),
        (status.is_some(), "status ="),
        (since.is_some(), "scheduled_at >="),
        (until.is_some(), "scheduled_at <"),
    ] {
        if given {
            clauses.push(format!("{clause} ${}", clauses.len() + 1));
        }
    }
    let filters = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {} ", clauses.join(" AND "))
    };
    let filtered = |text: String| {
        let mut query = sql(text);
        if let Some(event) = event {
            query = query.bind(event);
        }
        if let Some(status) = status {
            query = query.bind(status);
        }
        if let Some(since) = since {
            query = query.bind(since);
        }
        if let Some(until) = until {
            query = query.bind(until);
        }
        query
    };
    let n = clauses.len();
    fetch_page(
        &mut store.db.pool(),
        filtered(format!("SELECT COUNT(*) AS n FROM jobs {filters}")),
        filtered(format!(
            "{}{filters}ORDER BY id DESC LIMIT ${} OFFSET ${}",
            job_select!(),
            n + 1,
            n + 2
        ))
        .bind(limit)
        .bind(offset),
        rows::job,
    )
    .await
}

/// Most lines one INSERT carries; each binds [`LOG_LINE_VALUES`] values,
/// which must stay within every backend's [`Backend::MAX_BINDS`].
const LOG_LINES_PER_INSERT: usize = 1000;
const LOG_LINE_VALUES: usize = 6;

pub(super) async fn append_logs<B: Backend>(
    store: &SqlStore<B>,
    fence: &Fence,
    lines: &[LogLine],
) -> Result<()> {
    const { assert!(LOG_LINES_PER_INSERT * LOG_LINE_VALUES <= B::MAX_BINDS) };
    let mut tx = store.db.begin().await?;
    // A shared lock (PostgreSQL): recovery cannot take the job from under
    // these lines.
    let job = fetch_job_locked::<B, _>(&mut tx, fence.job, Lock::Share).await?;
    rules::check_fence(fence, &job)?;
    let row = sql("SELECT COALESCE(MAX(seq), 0) AS last FROM job_logs WHERE job_id = $1")
        .bind(fence.job.0)
        .fetch_one(&mut tx)
        .await?;
    let last = Reader::new(&row, "job_logs").int("last")?;
    rules::check_log_seq(rows::count(last), lines)?;
    for chunk in lines.chunks(LOG_LINES_PER_INSERT) {
        let mut insert = sql(format!(
            "INSERT INTO job_logs (job_id, seq, stream, at, data, server) VALUES {}",
            values_placeholders(chunk.len(), LOG_LINE_VALUES)
        ));
        for line in chunk {
            insert = insert
                .bind(fence.job.0)
                .bind(i64::try_from(line.seq).unwrap_or(i64::MAX))
                .bind(rows::stream_name(line.stream))
                .bind(truncate(line.at))
                .bind(line.data.clone())
                .bind(line.server.clone());
        }
        insert
            .execute(&mut tx)
            .await
            .map_err(rules::log_write_error)?;
    }
    if let Some(newest) = lines.last() {
        let signal = Signal::LogStored {
            job: fence.job,
            seq: newest.seq,
        };
        announce(&mut tx, signal).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn job_logs<B: Backend>(
    store: &SqlStore<B>,
    job: JobId,
    after_seq: u64,
    limit: u32,
) -> Result<Vec<LogLine>> {
    let lines = sql(log_select!())
        .bind(job.0)
        .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&mut store.db.pool())
        .await?
        .iter()
        .map(rows::log_line)
        .collect::<Result<Vec<_>>>()?;
    if lines.is_empty() {
        get_job(store, job).await?;
    }
    Ok(lines)
}

pub(super) async fn last_log_seq<B: Backend>(store: &SqlStore<B>, job: JobId) -> Result<u64> {
    let row = sql("SELECT COALESCE(MAX(seq), 0) AS last FROM job_logs WHERE job_id = $1")
        .bind(job.0)
        .fetch_one(&mut store.db.pool())
        .await?;
    let last = Reader::new(&row, "job_logs").int("last")?;
    if last == 0 {
        get_job(store, job).await?;
    }
    Ok(rows::count(last))
}

pub(super) async fn prune_jobs<B: Backend>(
    store: &SqlStore<B>,
    retention: JobRetention,
) -> Result<u64> {
    let mut tx = store.db.begin().await?;
    let deleted = sql(prune_jobs_delete!())
        .bind(truncate(retention.older_than))
        .bind(i64::from(retention.keep_per_event))
        .execute(&mut tx)
        .await?;
    tx.commit().await?;
    Ok(deleted)
}
