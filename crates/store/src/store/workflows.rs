//! Workflows: definitions stored whole, one row per version, written once for both backends; applying the same definition again changes nothing.
//!
//! An apply reads the owner's workflow of that name locked (`FOR UPDATE` on
//! PostgreSQL, the write lock on SQLite) and decides in Rust, where the
//! definitions compare as JSON values. A new workflow is inserted with `ON
//! CONFLICT DO NOTHING`: when a concurrent apply created the name first, the
//! decision is made again against its row, as variables do.
//!
//! `workflow_events` holds the events of the current version only; its
//! foreign key to `events` has no cascade, and `delete_event` refuses while
//! a row names the event, so a stored workflow never runs a missing event.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cronium_core::{EventId, UserId, WorkflowId, WorkflowName, WorkflowSpec};

use super::{SqlStore, fetch_page, insert_audit};
use crate::db::{Backend, Conn, Lock, sql};
use crate::rows::{self, Reader, truncate};
use crate::{
    Applied, AuditEntry, Page, PageRequest, Result, StoreError, Workflow, WorkflowHook,
    WorkflowVersion,
};

/// How often one apply decides again after losing an insert race.
const INSERT_RACES: usize = 4;

/// The workflow's columns with its current version's definition.
const SELECT: &str = "SELECT w.id, w.owner_id, w.name, w.version, w.created_at, w.updated_at, \
     w.hook_key_hash, CAST(CASE WHEN w.hook_secret IS NULL THEN 0 ELSE 1 END AS BIGINT) AS hook_signed, \
     w.anchor, w.next_fire_at, v.definition FROM workflows w \
     JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.version";

pub(super) async fn apply_workflow<B: Backend>(
    store: &SqlStore<B>,
    owner: UserId,
    name: &WorkflowName,
    definition: &serde_json::Value,
    events: &[EventId],
    now: DateTime<Utc>,
    audit: &AuditEntry,
) -> Result<(Workflow, Applied)> {
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    for _ in 0..INSERT_RACES {
        let current = sql(B::lock(
            "SELECT id, version, created_at FROM workflows WHERE owner_id = $1 AND name = $2",
            Lock::Update,
        ))
        .bind(owner.0)
        .bind(name.as_str())
        .fetch_optional(&mut tx)
        .await?;
        let (id, version, created_at, applied) = match current {
            Some(row) => {
                let (id, version, created_at) = rows::workflow_head(&row)?;
                let stored = fetch_definition(&mut tx, id, version).await?;
                if let Some(stored) = stored
                    && &stored.definition == definition
                {
                    let workflow = fetch_workflow(&mut tx, id).await?;
                    tx.rollback().await?;
                    let workflow = workflow.ok_or(StoreError::NotFound { what: "workflow" })?;
                    return Ok((workflow, Applied::Unchanged));
                }
                sql("UPDATE workflows SET version = $2, updated_at = $3 WHERE id = $1")
                    .bind(id.0)
                    .bind(as_int(version + 1))
                    .bind(now)
                    .execute(&mut tx)
                    .await?;
                (
                    id,
                    version + 1,
                    created_at,
                    Applied::Updated { from: version },
                )
            }
            None => {
                let row = sql(
                    "INSERT INTO workflows (owner_id, name, version, created_at, updated_at) \
                     VALUES ($1, $2, 1, $3, $3) ON CONFLICT (owner_id, name) DO NOTHING \
                     RETURNING id",
                )
                .bind(owner.0)
                .bind(name.as_str())
                .bind(now)
                .fetch_optional(&mut tx)
                .await
                .map_err(|e| {
                    if rows::is_foreign_key_violation(&e) {
                        StoreError::NotFound { what: "user" }
                    } else {
                        e.into()
                    }
                })?;
                // No row: a concurrent apply created the name first; decide again.
                let Some(row) = row else { continue };
                let id = WorkflowId(Reader::new(&row, "workflows").int("id")?);
                (id, 1, now, Applied::Created)
            }
        };
        sql(
            "INSERT INTO workflow_versions (workflow_id, version, definition, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id.0)
        .bind(as_int(version))
        .bind(definition.to_string())
        .bind(now)
        .execute(&mut tx)
        .await?;
        sql("DELETE FROM workflow_events WHERE workflow_id = $1")
            .bind(id.0)
            .execute(&mut tx)
            .await?;
        for event in events.iter().collect::<BTreeSet<_>>() {
            sql("INSERT INTO workflow_events (workflow_id, event_id) VALUES ($1, $2)")
                .bind(id.0)
                .bind(event.0)
                .execute(&mut tx)
                .await
                .map_err(|e| {
                    if rows::is_foreign_key_violation(&e) {
                        StoreError::NotFound { what: "event" }
                    } else {
                        e.into()
                    }
                })?;
        }
        // A new version's trigger schedule starts now; a run already
        // recorded for a fire time is not recorded again.
        let next = WorkflowSpec::from_json_value(definition.clone())
            .ok()
            .and_then(|spec| spec.trigger().schedule())
            .and_then(|schedule| schedule.next_fire(now, now));
        sql("UPDATE workflows SET anchor = $2, next_fire_at = $3 WHERE id = $1")
            .bind(id.0)
            .bind(now)
            .bind(next.map(truncate))
            .execute(&mut tx)
            .await?;
        crate::signals::announce(&mut tx, crate::signals::Signal::SchedulesChanged).await?;
        let mut entry = rows::audit_entry(audit, Some(id.0));
        if let serde_json::Value::Object(detail) = &mut entry.detail {
            detail.insert("version".into(), version.into());
        }
        insert_audit(&mut tx, &entry).await?;
        let workflow = fetch_workflow(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound { what: "workflow" })?;
        tx.commit().await?;
        debug_assert_eq!(workflow.created_at, created_at);
        return Ok((workflow, applied));
    }
    Err(StoreError::Backend(format!(
        "workflow {name}: lost {INSERT_RACES} insert races in a row"
    )))
}

fn as_int(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

async fn fetch_workflow<C: Conn>(conn: &mut C, id: WorkflowId) -> Result<Option<Workflow>> {
    let row = sql(format!("{SELECT} WHERE w.id = $1"))
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(rows::workflow).transpose()
}

async fn fetch_definition<C: Conn>(
    conn: &mut C,
    id: WorkflowId,
    version: u64,
) -> Result<Option<WorkflowVersion>> {
    let row = sql(
        "SELECT workflow_id, version, definition, created_at FROM workflow_versions \
         WHERE workflow_id = $1 AND version = $2",
    )
    .bind(id.0)
    .bind(as_int(version))
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(rows::workflow_version).transpose()
}

pub(super) async fn list_workflows<B: Backend>(
    store: &SqlStore<B>,
    page: PageRequest,
) -> Result<Page<Workflow>> {
    let (limit, offset) = rows::page_bounds(page);
    fetch_page(
        &mut store.db.pool(),
        sql("SELECT COUNT(*) AS n FROM workflows"),
        sql(format!("{SELECT} ORDER BY w.id LIMIT $1 OFFSET $2"))
            .bind(limit)
            .bind(offset),
        rows::workflow,
    )
    .await
}

pub(super) async fn get_workflow<B: Backend>(
    store: &SqlStore<B>,
    id: WorkflowId,
) -> Result<Option<Workflow>> {
    fetch_workflow(&mut store.db.pool(), id).await
}

pub(super) async fn find_workflow_by_name<B: Backend>(
    store: &SqlStore<B>,
    owner: UserId,
    name: &WorkflowName,
) -> Result<Option<Workflow>> {
    let row = sql(format!("{SELECT} WHERE w.owner_id = $1 AND w.name = $2"))
        .bind(owner.0)
        .bind(name.as_str())
        .fetch_optional(&mut store.db.pool())
        .await?;
    row.as_ref().map(rows::workflow).transpose()
}

pub(super) async fn workflow_version<B: Backend>(
    store: &SqlStore<B>,
    id: WorkflowId,
    version: u64,
) -> Result<Option<WorkflowVersion>> {
    fetch_definition(&mut store.db.pool(), id, version).await
}

pub(super) async fn delete_workflow<B: Backend>(
    store: &SqlStore<B>,
    id: WorkflowId,
    audit: &AuditEntry,
) -> Result<bool> {
    let mut tx = store.db.begin().await?;
    let deleted = sql("DELETE FROM workflows WHERE id = $1")
        .bind(id.0)
        .execute(&mut tx)
        .await?;
    if deleted == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    insert_audit(&mut tx, &rows::audit_entry(audit, Some(id.0))).await?;
    tx.commit().await?;
    Ok(true)
}

/// The workflows whose current version runs `event`, by name, for a refusal
/// to delete it.
pub(super) async fn workflows_using<C: Conn>(conn: &mut C, event: EventId) -> Result<Vec<String>> {
    sql(
        "SELECT w.name FROM workflow_events we JOIN workflows w ON w.id = we.workflow_id \
         WHERE we.event_id = $1 ORDER BY w.name",
    )
    .bind(event.0)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| Reader::new(row, "workflows").text("name"))
    .collect()
}

pub(super) async fn set_workflow_hook<B: Backend>(
    store: &SqlStore<B>,
    id: WorkflowId,
    hook: Option<WorkflowHook>,
    audit: Option<&AuditEntry>,
) -> Result<()> {
    let mut tx = store.db.begin().await?;
    let (hash, secret) = match hook {
        Some(h) => (Some(h.key_hash), h.sealed_secret),
        None => (None, None),
    };
    let changed = sql("UPDATE workflows SET hook_key_hash = $2, hook_secret = $3 WHERE id = $1")
        .bind(id.0)
        .bind(hash)
        .bind(secret)
        .execute(&mut tx)
        .await?;
    if changed == 0 {
        return Err(StoreError::NotFound { what: "workflow" });
    }
    if let Some(audit) = audit {
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(id.0))).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn find_workflow_by_hook<B: Backend>(
    store: &SqlStore<B>,
    key_hash: &str,
) -> Result<Option<(Workflow, Option<Vec<u8>>)>> {
    let row = sql(format!("{SELECT} WHERE w.hook_key_hash = $1"))
        .bind(key_hash.to_string())
        .fetch_optional(&mut store.db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let workflow = rows::workflow(&row)?;
    let secret = sql("SELECT hook_secret FROM workflows WHERE id = $1")
        .bind(workflow.id.0)
        .fetch_one(&mut store.db.pool())
        .await?;
    let secret = Reader::new(&secret, "workflows").opt_bytes("hook_secret")?;
    Ok(Some((workflow, secret)))
}

pub(super) async fn due_workflows<B: Backend>(
    store: &SqlStore<B>,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<(Workflow, DateTime<Utc>)>> {
    sql(format!(
        "{SELECT} WHERE w.next_fire_at <= $1 ORDER BY w.next_fire_at, w.id LIMIT $2"
    ))
    .bind(truncate(now))
    .bind(i64::from(limit))
    .fetch_all(&mut store.db.pool())
    .await?
    .iter()
    .map(|row| {
        let workflow = rows::workflow(row)?;
        let anchor = Reader::new(row, "workflows").opt_time("anchor")?;
        Ok((
            workflow.clone(),
            anchor.or(workflow.next_fire_at).unwrap_or(now),
        ))
    })
    .collect()
}

pub(super) async fn set_workflow_next_fire<B: Backend>(
    store: &SqlStore<B>,
    id: WorkflowId,
    expected: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
) -> Result<bool> {
    let moved = sql("UPDATE workflows SET next_fire_at = $3 WHERE id = $1 AND next_fire_at = $2")
        .bind(id.0)
        .bind(truncate(expected))
        .bind(next.map(truncate))
        .execute(&mut store.db.writer())
        .await?;
    Ok(moved == 1)
}
