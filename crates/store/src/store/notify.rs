//! Notifications on either backend: channels, an event's actions, and the deliveries outbox (written with a job's final result, leased by senders like jobs).

use chrono::{DateTime, Utc};
use cronium_core::{ActionId, ChannelId, ChannelSpec, DeliveryId, EventId, JobId, When};

use super::{Deletion, SqlStore, delete_unless_used, insert_audit};
use crate::db::{Backend, Conn, Lock, sql};
use crate::rows::{self, Reader, truncate};
use crate::{Action, AuditEntry, Channel, Delivery, Job, Result, SendResult, StoreError};

macro_rules! channel_columns {
    () => {
        "id, name, kind, url, sealed_secret, CAST(settings AS TEXT) AS settings, created_at, \
         updated_at"
    };
}

macro_rules! action_columns {
    () => {
        "id, event_id, fire_when, channel_id, created_at"
    };
}

macro_rules! delivery_columns {
    () => {
        "id, job_id, action_id, channel_id, status, attempts, next_attempt_at, lease_owner, \
         last_status, last_error, delivered_at, created_at, updated_at"
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
    when: When,
    channel: ChannelId,
    now: DateTime<Utc>,
    audit: &AuditEntry,
) -> Result<Action> {
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    // Locked like any change of the event, so it cannot vanish meanwhile.
    B::lock_event(&mut tx, event).await?;
    let exists = sql("SELECT id FROM channels WHERE id = $1")
        .bind(channel.0)
        .fetch_optional(&mut tx)
        .await?;
    if exists.is_none() {
        return Err(StoreError::NotFound { what: "channel" });
    }
    let row = sql(concat!(
        "INSERT INTO event_actions (event_id, fire_when, channel_id, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING ",
        action_columns!()
    ))
    .bind(event.0)
    .bind(when.as_str())
    .bind(channel.0)
    .bind(now)
    .fetch_one(&mut tx)
    .await
    .map_err(|e| {
        if rows::is_foreign_key_violation(&e) {
            StoreError::NotFound {
                what: "event or channel",
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
    super::of_event(
        store,
        concat!(
            "SELECT ",
            action_columns!(),
            " FROM event_actions WHERE event_id = $1 ORDER BY id"
        ),
        event,
        rows::action,
    )
    .await
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

/// The outbox: one pending delivery per action of the job's event that its
/// final result fires, written in the caller's transaction (the one that
/// records that result), so a result is never recorded without its
/// messages, nor a message without its result.
pub(super) async fn enqueue_deliveries<C: Conn>(
    conn: &mut C,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<()> {
    let actions = sql(concat!(
        "SELECT ",
        action_columns!(),
        " FROM event_actions WHERE event_id = $1 ORDER BY id"
    ))
    .bind(job.event_id.0)
    .fetch_all(conn)
    .await?
    .iter()
    .map(rows::action)
    .collect::<Result<Vec<_>>>()?;
    for action in actions.iter().filter(|a| a.when.matches(job.status)) {
        sql(
            "INSERT INTO deliveries (job_id, action_id, channel_id, status, attempts, \
             next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4, $4)",
        )
        .bind(job.id.0)
        .bind(action.id.0)
        .bind(action.channel.0)
        .bind(now)
        .execute(conn)
        .await?;
    }
    Ok(())
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
