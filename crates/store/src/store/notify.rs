//! Notifications and chains on either backend: channels, an event's actions (what fires them, the deliveries and chained jobs they record), and the deliveries outbox (leased by senders like jobs).

use chrono::{DateTime, Utc};
use cronium_core::{
    ActionId, ActionSpec, ActionTarget, ChannelId, ChannelSpec, DeliveryId, EventId, EventStatus,
    JobId, Trigger, When,
};
use serde_json::{Value, json};

use super::jobs::{active_payload, insert_run, write_job};
use super::{Deletion, SqlStore, delete_unless_used, event_exists, fetch_event, insert_audit};
use crate::db::{Backend, Conn, Lock, sql};
use crate::jobs::Run;
use crate::rows::{self, Reader, truncate};
use crate::{
    Action, AuditEntry, Channel, Delivery, DeliveryReason, Job, MAX_CHAIN_DEPTH, Result,
    SendResult, StartedBy, StoreError,
};

macro_rules! channel_columns {
    () => {
        "id, name, kind, url, sealed_secret, CAST(settings AS TEXT) AS settings, created_at, \
         updated_at"
    };
}

macro_rules! action_columns {
    () => {
        "id, event_id, fire_when, kind, channel_id, target_event_id, after_secs, created_at"
    };
}

/// An event's actions (`$1` the event), oldest first.
const ACTIONS_OF_EVENT: &str = concat!(
    "SELECT ",
    action_columns!(),
    " FROM event_actions WHERE event_id = $1 ORDER BY id"
);

macro_rules! delivery_columns {
    () => {
        "id, job_id, reason, action_id, channel_id, status, attempts, next_attempt_at, \
         lease_owner, last_status, last_error, delivered_at, created_at, updated_at"
    };
}

pub(super) async fn create_channel<B: Backend>(
    store: &SqlStore<B>,
    spec: ChannelSpec,
    now: DateTime<Utc>,
    audit: &AuditEntry,
) -> Result<Channel> {
    let now = truncate(now);
    let spec = spec.validate()?;
    let settings = spec
        .email
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let mut tx = store.db.begin().await?;
    let row = sql(
        "INSERT INTO channels (name, kind, url, sealed_secret, settings, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
    )
    .bind(spec.name.as_str())
    .bind(spec.kind.as_str())
    .bind(spec.url.as_str())
    .bind(spec.sealed_secret.clone())
    .bind(settings)
    .bind(now)
    .fetch_one(&mut tx)
    .await
    .map_err(|e| match rows::unique_violation(&e) {
        Some("channels.name") => rows::name_conflict("channel", spec.name.as_str()),
        _ => e.into(),
    })?;
    let id = Reader::new(&row, "channels").int("id")?;
    insert_audit(&mut tx, &rows::audit_entry(audit, Some(id))).await?;
    tx.commit().await?;
    Ok(Channel {
        id: ChannelId(id),
        spec,
        created_at: now,
        updated_at: now,
    })
}

pub(super) async fn get_channel<B: Backend>(store: &SqlStore<B>, id: ChannelId) -> Result<Channel> {
    let row = sql(concat!(
        "SELECT ",
        channel_columns!(),
        " FROM channels WHERE id = $1"
    ))
    .bind(id.0)
    .fetch_optional(&mut store.db.pool())
    .await?
    .ok_or(StoreError::NotFound { what: "channel" })?;
    rows::channel(&row)
}

pub(super) async fn find_channel_by_name<B: Backend>(
    store: &SqlStore<B>,
    name: &str,
) -> Result<Option<Channel>> {
    let row = sql(concat!(
        "SELECT ",
        channel_columns!(),
        " FROM channels WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(&mut store.db.pool())
    .await?;
    row.as_ref().map(rows::channel).transpose()
}

pub(super) async fn list_channels<B: Backend>(store: &SqlStore<B>) -> Result<Vec<Channel>> {
    sql(concat!(
        "SELECT ",
        channel_columns!(),
        " FROM channels ORDER BY name"
    ))
    .fetch_all(&mut store.db.pool())
    .await?
    .iter()
    .map(rows::channel)
    .collect()
}

pub(super) async fn delete_channel<B: Backend>(
    store: &SqlStore<B>,
    id: ChannelId,
    audit: &AuditEntry,
) -> Result<()> {
    let in_use = |actions: i64| StoreError::Conflict {
        field: "channel".into(),
        message: format!("{actions} action(s) of events notify this channel; remove them first"),
    };
    delete_unless_used(
        store,
        Deletion {
            what: "channel",
            delete: "DELETE FROM channels WHERE id = $1",
            users: "SELECT COUNT(*) AS n FROM event_actions WHERE channel_id = $1",
            in_use,
        },
        id.0,
        audit,
    )
    .await
}

pub(super) async fn add_action<B: Backend>(
    store: &SqlStore<B>,
    event: EventId,
    spec: ActionSpec,
    now: DateTime<Utc>,
    audit: &AuditEntry,
) -> Result<Action> {
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    // Locked like any change of the event, so it cannot vanish meanwhile;
    // a target event is locked too, so it cannot be deleted meanwhile.
    B::lock_event(&mut tx, event).await?;
    let (channel, target) = match spec.target {
        ActionTarget::Notify(channel) => {
            let exists = sql("SELECT id FROM channels WHERE id = $1")
                .bind(channel.0)
                .fetch_optional(&mut tx)
                .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound { what: "channel" });
            }
            (Some(channel.0), None)
        }
        ActionTarget::RunEvent(target) => {
            event_exists::<B, _>(&mut tx, target, Some(Lock::Share))
                .await
                .map_err(|e| match e {
                    StoreError::NotFound { .. } => StoreError::NotFound {
                        what: "target event",
                    },
                    e => e,
                })?;
            (None, Some(target.0))
        }
    };
    let row = sql(concat!(
        "INSERT INTO event_actions (event_id, fire_when, kind, channel_id, target_event_id, \
         after_secs, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
        action_columns!()
    ))
    .bind(event.0)
    .bind(spec.when.as_str())
    .bind(spec.target.kind())
    .bind(channel)
    .bind(target)
    .bind(spec.after_secs.map(|s| s as i64))
    .bind(now)
    .fetch_one(&mut tx)
    .await
    .map_err(|e| {
        if rows::is_foreign_key_violation(&e) {
            StoreError::NotFound {
                what: "event, channel or target event",
            }
        } else {
            e.into()
        }
    })?;
    let action = rows::action(&row)?;
    insert_audit(&mut tx, &rows::audit_entry(audit, Some(event.0))).await?;
    tx.commit().await?;
    Ok(action)
}

pub(super) async fn list_actions<B: Backend>(
    store: &SqlStore<B>,
    event: EventId,
) -> Result<Vec<Action>> {
    super::of_event(store, ACTIONS_OF_EVENT, event, rows::action).await
}

pub(super) async fn remove_action<B: Backend>(
    store: &SqlStore<B>,
    event: EventId,
    id: ActionId,
    audit: &AuditEntry,
) -> Result<()> {
    let mut tx = store.db.begin().await?;
    let deleted = sql("DELETE FROM event_actions WHERE id = $1 AND event_id = $2")
        .bind(id.0)
        .bind(event.0)
        .execute(&mut tx)
        .await?;
    if deleted == 0 {
        return Err(StoreError::NotFound { what: "action" });
    }
    insert_audit(&mut tx, &rows::audit_entry(audit, Some(event.0))).await?;
    tx.commit().await?;
    Ok(())
}

/// An event's actions, oldest first, read in the caller's transaction.
async fn actions_of<C: Conn>(conn: &mut C, event: EventId) -> Result<Vec<Action>> {
    sql(ACTIONS_OF_EVENT)
        .bind(event.0)
        .fetch_all(conn)
        .await?
        .iter()
        .map(rows::action)
        .collect()
}

/// Records one pending delivery; a second one for the same job and action
/// is not recorded (`false`), so a sweep that runs twice sends once.
async fn insert_delivery<C: Conn>(
    conn: &mut C,
    job: JobId,
    action: ActionId,
    channel: ChannelId,
    reason: DeliveryReason,
    now: DateTime<Utc>,
) -> Result<bool> {
    let inserted = sql(
        "INSERT INTO deliveries (job_id, reason, action_id, channel_id, status, attempts, \
         next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5) ON CONFLICT DO NOTHING",
    )
    .bind(job.0)
    .bind(reason.as_str())
    .bind(action.0)
    .bind(channel.0)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(inserted > 0)
}

/// What a job's final result sets off, recorded in the caller's
/// transaction (the one that records that result), so a result is never
/// recorded without them, nor they without it: a pending delivery for each
/// `notify` action it fires (the outbox), and a job for each `run_event`
/// one. Returns the job with what its chain actions did in its metadata
/// (`chained`: the jobs started, or why one was not).
pub(super) async fn fire_end_actions<B: Backend, C: Conn>(
    conn: &mut C,
    mut job: Job,
    now: DateTime<Utc>,
) -> Result<Job> {
    let mut chained = Vec::new();
    for action in actions_of(conn, job.event_id).await? {
        if !action.spec.when.matches(job.status, job.condition) {
            continue;
        }
        match action.spec.target {
            ActionTarget::Notify(channel) => {
                insert_delivery(conn, job.id, action.id, channel, DeliveryReason::End, now).await?;
            }
            ActionTarget::RunEvent(target) => {
                chained.push(start_chained::<B, C>(conn, &job, action.id, target, now).await?);
            }
        }
    }
    if !chained.is_empty() {
        if let Value::Object(map) = &mut job.metadata {
            map.insert("chained".into(), Value::Array(chained));
        }
        job = write_job(conn, &job).await?;
    }
    Ok(job)
}

/// Starts `target` for `job`'s action, under the target's overlap policy,
/// or says why not: what `chained` records.
async fn start_chained<B: Backend, C: Conn>(
    conn: &mut C,
    job: &Job,
    action: ActionId,
    target: EventId,
    now: DateTime<Utc>,
) -> Result<Value> {
    let not_started = |why: String| json!({ "action": action, "event": target, "notStarted": why });
    let depth = StartedBy::depth_of(job) + 1;
    if depth > MAX_CHAIN_DEPTH {
        return Ok(not_started(format!(
            "chain depth limit reached: this job is {} actions deep (the limit is \
             {MAX_CHAIN_DEPTH}), so a chain that loops stops here",
            depth - 1
        )));
    }
    // Held until the commit, so the overlap policy sees every earlier run.
    event_exists::<B, _>(conn, target, Some(Lock::Exclusive)).await?;
    let Some(event) = fetch_event::<B, _>(conn, target).await? else {
        return Ok(not_started(format!("event {target} no longer exists")));
    };
    if !matches!(event.spec.status, EventStatus::Active | EventStatus::Paused) {
        return Ok(not_started(format!(
            "event {} is {}; only active or paused events run",
            event.spec.name, event.spec.status
        )));
    }
    let payload = active_payload(conn, target).await?;
    let run = Run {
        started_by: Some(StartedBy {
            job: job.id,
            event: job.event_id,
            action,
            status: job.status,
            exit_code: job.exit_code,
            depth,
        }),
        // Data between events: this run's output is the next one's input.
        input: job.output.clone(),
        ..Run::new(Trigger::Action, now)
    };
    let started = insert_run(conn, &event, payload.as_ref(), run, now)
        .await?
        .ok_or_else(|| StoreError::Backend("a chained run conflicted with a fire time".into()))?;
    Ok(json!({
        "action": action,
        "event": target,
        "job": started.id,
        "status": started.status,
    }))
}

/// The deliveries a job's start owes (its event's `start` actions),
/// recorded in the caller's transaction (the claim of its first attempt).
pub(super) async fn enqueue_start_deliveries<C: Conn>(
    conn: &mut C,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut recorded = 0;
    for action in actions_of(conn, job.event_id).await? {
        if let (When::Start, ActionTarget::Notify(channel)) = (action.spec.when, action.spec.target)
        {
            let reason = DeliveryReason::Start;
            recorded +=
                usize::from(insert_delivery(conn, job.id, action.id, channel, reason, now).await?);
        }
    }
    Ok(recorded)
}

pub(super) async fn enqueue_overdue<B: Backend>(
    store: &SqlStore<B>,
    now: DateTime<Utc>,
) -> Result<usize> {
    let now = truncate(now);
    // Read first, outside a write transaction: this runs on every tick of
    // the delivery worker, and there is rarely anything to record.
    let candidates = sql(
        "SELECT j.id AS job_id, j.started_at, a.id AS action_id, a.channel_id, a.after_secs \
         FROM jobs j JOIN event_actions a ON a.event_id = j.event_id \
         WHERE j.status = 'running' AND a.fire_when = 'duration_exceeded' \
         AND a.kind = 'notify' AND NOT EXISTS (SELECT 1 FROM deliveries d \
         WHERE d.job_id = j.id AND d.action_id = a.id)",
    )
    .fetch_all(&mut store.db.pool())
    .await?;
    let mut due = Vec::new();
    for row in &candidates {
        let r = Reader::new(row, "jobs");
        let (Some(started), Some(after)) = (r.opt_time("started_at")?, r.opt_int("after_secs")?)
        else {
            continue;
        };
        if started + chrono::TimeDelta::seconds(after) <= now {
            due.push((
                JobId(r.int("job_id")?),
                ActionId(r.int("action_id")?),
                ChannelId(r.int("channel_id")?),
            ));
        }
    }
    if due.is_empty() {
        return Ok(0);
    }
    let mut tx = store.db.begin().await?;
    let mut recorded = 0;
    for (job, action, channel) in due {
        // Still running: one that ended meanwhile owes no such message.
        let running = sql("SELECT id FROM jobs WHERE id = $1 AND status = 'running'")
            .bind(job.0)
            .fetch_optional(&mut tx)
            .await?;
        if running.is_some() {
            let reason = DeliveryReason::DurationExceeded;
            recorded +=
                usize::from(insert_delivery(&mut tx, job, action, channel, reason, now).await?);
        }
    }
    tx.commit().await?;
    Ok(recorded)
}

pub(super) async fn claim_deliveries<B: Backend>(
    store: &SqlStore<B>,
    owner: &str,
    now: DateTime<Utc>,
    lease: std::time::Duration,
    limit: u32,
) -> Result<Vec<Delivery>> {
    let now = truncate(now);
    let until =
        truncate(now + chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX));
    let mut tx = store.db.begin().await?;
    // Rows another sender is claiming right now are passed over, not waited for.
    let due = sql(B::lock(
        "SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
         AND (lease_expires_at IS NULL OR lease_expires_at < $1) \
         ORDER BY next_attempt_at, id LIMIT $2",
        Lock::UpdateSkipLocked,
    ))
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(&mut tx)
    .await?;
    let mut claimed = Vec::with_capacity(due.len());
    for row in &due {
        let id = Reader::new(row, "deliveries").int("id")?;
        let row = sql(concat!(
            "UPDATE deliveries SET lease_owner = $2, lease_expires_at = $3, updated_at = $4 \
             WHERE id = $1 RETURNING ",
            delivery_columns!()
        ))
        .bind(id)
        .bind(owner)
        .bind(until)
        .bind(now)
        .fetch_one(&mut tx)
        .await?;
        claimed.push(rows::delivery(&row)?);
    }
    tx.commit().await?;
    Ok(claimed)
}

pub(super) async fn finish_delivery<B: Backend>(
    store: &SqlStore<B>,
    id: DeliveryId,
    owner: &str,
    result: SendResult,
    now: DateTime<Utc>,
) -> Result<Delivery> {
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    let row = sql(B::lock(
        concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries WHERE id = $1"
        ),
        Lock::Update,
    ))
    .bind(id.0)
    .fetch_optional(&mut tx)
    .await?
    .ok_or(StoreError::NotFound { what: "delivery" })?;
    let current = rows::delivery(&row)?;
    let held = Reader::new(&row, "deliveries").opt_text("lease_owner")?;
    if held.as_deref() != Some(owner) || current.status != crate::DeliveryStatus::Pending {
        return Err(StoreError::DeliveryLost { delivery: id });
    }
    let (status, next, last_status, last_error, delivered_at) = match result {
        SendResult::Delivered { status } => ("delivered", now, Some(status), None, Some(now)),
        SendResult::Retry { at, status, error } => {
            ("pending", truncate(at), status, Some(error), None)
        }
        SendResult::GiveUp { status, error } => ("failed", now, status, Some(error), None),
    };
    let row = sql(concat!(
        "UPDATE deliveries SET status = $2, attempts = attempts + 1, next_attempt_at = $3, \
         lease_owner = NULL, lease_expires_at = NULL, last_status = $4, last_error = $5, \
         delivered_at = $6, updated_at = $7 WHERE id = $1 RETURNING ",
        delivery_columns!()
    ))
    .bind(id.0)
    .bind(status)
    .bind(next)
    .bind(last_status.map(i64::from))
    .bind(last_error)
    .bind(delivered_at)
    .bind(now)
    .fetch_one(&mut tx)
    .await?;
    let delivery = rows::delivery(&row)?;
    tx.commit().await?;
    Ok(delivery)
}

pub(super) async fn job_deliveries<B: Backend>(
    store: &SqlStore<B>,
    job: JobId,
) -> Result<Vec<Delivery>> {
    sql(concat!(
        "SELECT ",
        delivery_columns!(),
        " FROM deliveries WHERE job_id = $1 ORDER BY id"
    ))
    .bind(job.0)
    .fetch_all(&mut store.db.pool())
    .await?
    .iter()
    .map(rows::delivery)
    .collect()
}
