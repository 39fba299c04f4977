//! Variables and what a running attempt's script writes (output, condition, variables), written once for both backends; attempt writes are fenced in the transaction that makes them.
//!
//! A compare-and-set reads the variable's row locked (`FOR UPDATE` on
//! PostgreSQL, the write lock on SQLite) and decides in Rust, where JSON
//! values compare as values. A new variable is inserted with `ON CONFLICT DO
//! NOTHING`: when a concurrent writer inserted the same key first, the insert
//! waits for it, does nothing, and the write is decided again against the
//! row it made (READ COMMITTED sees it), so nothing aborts the transaction.
//!
//! Secret values arrive in clear and leave sealed: the caller's
//! [`VariableSealer`] seals them inside the transaction, after the
//! variable's secrecy is known. The store holds no key.

use chrono::{DateTime, Utc};
use cronium_core::{
    Expect, JobId, MAX_OUTPUT_BYTES, MAX_VARIABLE_BYTES, UserId, Variable, VariableKey,
    check_json_size,
};
use serde_json::json;

use super::jobs::{fetch_job, fetch_job_locked, parse_status};
use super::{SqlStore, insert_audit};
use crate::db::{Backend, Conn, Lock, sql};
use crate::jobs as rules;
use crate::rows::{self, Reader, truncate};
use crate::{
    Actor, AuditEntry, Fence, Result, StoreError, StoredVariable, VariableSealer, VariableWrite,
};

/// How often one write decides again after losing an insert race; each
/// loss means another writer created the key, so a second pass finds it.
const INSERT_RACES: usize = 4;

pub(super) async fn list_variables<B: Backend>(
    store: &SqlStore<B>,
    owner: UserId,
) -> Result<Vec<Variable>> {
    let mut list = sql(concat!(
        "SELECT ",
        variable_columns!(),
        " FROM variables WHERE owner_id = $1"
    ))
    .bind(owner.0)
    .fetch_all(&mut store.db.pool())
    .await?
    .iter()
    .map(|row| rows::variable(row).map(|v| v.variable))
    .collect::<Result<Vec<_>>>()?;
    // Sorted here: the two databases' collations order `_`, `.` and case
    // differently.
    list.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(list)
}

pub(super) async fn get_variable<B: Backend>(
    store: &SqlStore<B>,
    owner: UserId,
    key: &VariableKey,
) -> Result<Option<StoredVariable>> {
    let row = sql(concat!(
        "SELECT ",
        variable_columns!(),
        " FROM variables WHERE owner_id = $1 AND key = $2"
    ))
    .bind(owner.0)
    .bind(key.as_str())
    .fetch_optional(&mut store.db.pool())
    .await?;
    row.as_ref().map(rows::variable).transpose()
}

/// Who writes: a request (audited with the caller's entry) or a script.
enum Writer<'a> {
    Owner(UserId, &'a AuditEntry),
    Attempt(&'a Fence),
}

pub(super) async fn set_variable<B: Backend>(
    store: &SqlStore<B>,
    owner: UserId,
    key: &VariableKey,
    write: VariableWrite,
    sealer: &dyn VariableSealer,
    now: DateTime<Utc>,
    audit: &AuditEntry,
) -> Result<Variable> {
    write_variable(store, Writer::Owner(owner, audit), key, write, sealer, now).await
}

pub(super) async fn attempt_set_variable<B: Backend>(
    store: &SqlStore<B>,
    fence: &Fence,
    key: &VariableKey,
    write: VariableWrite,
    sealer: &dyn VariableSealer,
    now: DateTime<Utc>,
) -> Result<Variable> {
    write_variable(store, Writer::Attempt(fence), key, write, sealer, now).await
}

async fn write_variable<B: Backend>(
    store: &SqlStore<B>,
    writer: Writer<'_>,
    key: &VariableKey,
    write: VariableWrite,
    sealer: &dyn VariableSealer,
    now: DateTime<Utc>,
) -> Result<Variable> {
    check_json_size(&write.value, MAX_VARIABLE_BYTES, "value")?;
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    let (owner, job) = match writer {
        Writer::Owner(owner, _) => (owner, None),
        Writer::Attempt(fence) => (fenced_owner::<B, _>(&mut tx, fence).await?, Some(fence.job)),
    };
    for _ in 0..INSERT_RACES {
        let current = sql(B::lock(
            concat!(
                "SELECT ",
                variable_columns!(),
                " FROM variables WHERE owner_id = $1 AND key = $2"
            ),
            Lock::Update,
        ))
        .bind(owner.0)
        .bind(key.as_str())
        .fetch_optional(&mut tx)
        .await?
        .as_ref()
        .map(rows::variable)
        .transpose()?;
        let holds = match (&write.expect, &current) {
            (Expect::Any, _) => true,
            (Expect::Absent, current) => current.is_none(),
            (Expect::Value(_), None) => false,
            // Only a comparison with a value needs the current one in clear.
            (Expect::Value(_), Some(current)) => write.expect.holds(Some(&current.open(sealer)?)),
        };
        if !holds {
            return Err(unmet(key, &write.expect, current.is_some()));
        }
        let secret = write
            .secret
            .unwrap_or_else(|| current.as_ref().is_some_and(|c| c.variable.secret));
        let (plain, sealed) = if secret {
            (None, Some(sealer.seal(&write.value)))
        } else {
            (Some(write.value.to_string()), None)
        };
        // A new key may lose the race to a concurrent creator: no row.
        let text = match &current {
            Some(_) => concat!(
                "UPDATE variables SET value_json = $3, sealed = $4, secret = $5, \
                 version = version + 1, updated_at = $6, updated_by_job = $7 \
                 WHERE owner_id = $1 AND key = $2 RETURNING ",
                variable_columns!()
            ),
            None => concat!(
                "INSERT INTO variables (owner_id, key, value_json, sealed, secret, version, \
                 created_at, updated_at, updated_by_job) VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $7) \
                 ON CONFLICT (owner_id, key) DO NOTHING RETURNING ",
                variable_columns!()
            ),
        };
        let row = sql(text)
            .bind(owner.0)
            .bind(key.as_str())
            .bind(plain)
            .bind(sealed)
            .bind(secret)
            .bind(now)
            .bind(job.map(|j| j.0))
            .fetch_optional(&mut tx)
            .await
            .map_err(|e| {
                if rows::is_foreign_key_violation(&e) {
                    StoreError::NotFound { what: "user" }
                } else {
                    e.into()
                }
            })?;
        // No row: a concurrent writer created the key first; decide again.
        let Some(row) = row else { continue };
        let id = Reader::new(&row, "variables").int("id")?;
        let written = rows::variable(&row)?.variable;
        let entry = match writer {
            Writer::Owner(_, audit) => rows::audit_entry(audit, Some(id)),
            Writer::Attempt(fence) => script_audit(fence.job, "variable.set", id, &written, now),
        };
        insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        return Ok(written);
    }
    Err(StoreError::Backend(format!(
        "variable {key}: lost {INSERT_RACES} insert races in a row"
    )))
}

/// Why a compare-and-set was refused.
fn unmet(key: &VariableKey, expect: &Expect, exists: bool) -> StoreError {
    let message = match (expect, exists) {
        (Expect::Absent, _) => format!("variable {key} already exists"),
        (_, false) => format!("variable {key} does not exist"),
        _ => format!("variable {key} does not hold the expected value"),
    };
    StoreError::Conflict {
        field: "expect".into(),
        message,
    }
}

/// The audit entry of a script's write: the job acts, the key is named,
/// the value never is.
fn script_audit(
    job: JobId,
    action: &str,
    id: i64,
    variable: &Variable,
    now: DateTime<Utc>,
) -> AuditEntry {
    AuditEntry {
        at: now,
        actor: Some(Actor::Job(job)),
        action: action.into(),
        target_type: "variable".into(),
        target_id: Some(id),
        detail: json!({
            "key": variable.key.as_str(),
            "owner": variable.owner.0,
            "secret": variable.secret,
        }),
    }
}

pub(super) async fn delete_variable<B: Backend>(
    store: &SqlStore<B>,
    owner: UserId,
    key: &VariableKey,
    audit: &AuditEntry,
) -> Result<bool> {
    let mut tx = store.db.begin().await?;
    let Some((id, _)) = delete_row(&mut tx, owner, key).await? else {
        tx.rollback().await?;
        return Ok(false);
    };
    insert_audit(&mut tx, &rows::audit_entry(audit, Some(id))).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn attempt_delete_variable<B: Backend>(
    store: &SqlStore<B>,
    fence: &Fence,
    key: &VariableKey,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut tx = store.db.begin().await?;
    let owner = fenced_owner::<B, _>(&mut tx, fence).await?;
    let Some((id, deleted)) = delete_row(&mut tx, owner, key).await? else {
        tx.rollback().await?;
        return Ok(false);
    };
    let entry = script_audit(fence.job, "variable.delete", id, &deleted, truncate(now));
    insert_audit(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(true)
}

async fn delete_row<C: Conn>(
    conn: &mut C,
    owner: UserId,
    key: &VariableKey,
) -> Result<Option<(i64, Variable)>> {
    let row = sql(concat!(
        "DELETE FROM variables WHERE owner_id = $1 AND key = $2 RETURNING ",
        variable_columns!()
    ))
    .bind(owner.0)
    .bind(key.as_str())
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let id = Reader::new(&row, "variables").int("id")?;
    Ok(Some((id, rows::variable(&row)?.variable)))
}

/// The owner of the job's event, once the job is known to run under
/// `fence`; its row stays shared-locked (PostgreSQL) until the transaction
/// ends, so lease recovery cannot take the job from under the write.
async fn fenced_owner<B: Backend, C: Conn>(conn: &mut C, fence: &Fence) -> Result<UserId> {
    let job = fetch_job_locked::<B, _>(conn, fence.job, Lock::Share).await?;
    rules::check_fence(fence, &job)?;
    let row = sql("SELECT owner_id FROM events WHERE id = $1")
        .bind(job.event_id.0)
        .fetch_one(conn)
        .await?;
    Ok(UserId(Reader::new(&row, "events").int("owner_id")?))
}

pub(super) async fn attempt_get_variable<B: Backend>(
    store: &SqlStore<B>,
    fence: &Fence,
    key: &VariableKey,
) -> Result<Option<StoredVariable>> {
    // One statement, so the fence and the value are read in one snapshot.
    let row = sql(
        "SELECT j.status AS job_status, j.lease_owner AS job_lease_owner, \
         j.attempt AS job_attempt, v.id, v.owner_id, v.key, v.value_json, v.sealed, v.secret, \
         v.version, v.created_at, v.updated_at, v.updated_by_job \
         FROM jobs j JOIN events e ON e.id = j.event_id \
         LEFT JOIN variables v ON v.owner_id = e.owner_id AND v.key = $2 WHERE j.id = $1",
    )
    .bind(fence.job.0)
    .bind(key.as_str())
    .fetch_optional(&mut store.db.pool())
    .await?
    .ok_or(StoreError::NotFound { what: "job" })?;
    let r = Reader::new(&row, "jobs");
    let attempt = u32::try_from(r.int("job_attempt")?).unwrap_or(0);
    rules::check_fence_of(
        fence,
        parse_status(&r.text("job_status")?)?,
        r.opt_text("job_lease_owner")?.as_deref(),
        attempt,
    )?;
    if r.opt_int("id")?.is_none() {
        return Ok(None);
    }
    rows::variable(&row).map(Some)
}

/// Writes a column of the attempt `fence` holds (`$1` the job, `$2` the
/// lease owner, `$3` the attempt, `$4` the value); `Fenced` when the job is
/// no longer that attempt's.
async fn attempt_update<B: Backend>(
    store: &SqlStore<B>,
    fence: &Fence,
    set: &'static str,
    value: crate::db::Arg,
) -> Result<()> {
    let updated = sql(set)
        .bind(fence.job.0)
        .bind(fence.owner.as_str())
        .bind(i64::from(fence.attempt))
        .bind(value)
        .execute(&mut store.db.writer())
        .await?;
    if updated == 0 {
        // Tell a vanished job from one another attempt holds.
        let job = fetch_job(&mut store.db.pool(), fence.job).await?;
        rules::check_fence(fence, &job)?;
        return Err(StoreError::Fenced {
            job: fence.job,
            attempt: fence.attempt,
        });
    }
    Ok(())
}

pub(super) async fn attempt_set_output<B: Backend>(
    store: &SqlStore<B>,
    fence: &Fence,
    output: Option<serde_json::Value>,
) -> Result<()> {
    if let Some(output) = &output {
        check_json_size(output, MAX_OUTPUT_BYTES, "output")?;
    }
    attempt_update(
        store,
        fence,
        "UPDATE jobs SET output = $4 WHERE id = $1 AND status = 'running' \
         AND lease_owner = $2 AND attempt = $3",
        output.map(|v| v.to_string()).into(),
    )
    .await
}

pub(super) async fn attempt_set_condition<B: Backend>(
    store: &SqlStore<B>,
    fence: &Fence,
    condition: bool,
) -> Result<()> {
    attempt_update(
        store,
        fence,
        "UPDATE jobs SET condition = $4 WHERE id = $1 AND status = 'running' \
         AND lease_owner = $2 AND attempt = $3",
        condition.into(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_was_expected() {
        let key = VariableKey::new("k").unwrap();
        let msg = |e: StoreError| match e {
            StoreError::Conflict { field, message } => {
                assert_eq!(field, "expect");
                message
            }
            other => panic!("{other:?}"),
        };
        assert!(msg(unmet(&key, &Expect::Absent, true)).contains("already exists"));
        assert!(msg(unmet(&key, &Expect::Value(json!(1)), false)).contains("does not exist"));
        assert!(msg(unmet(&key, &Expect::Value(json!(1)), true)).contains("expected value"));
    }
}
