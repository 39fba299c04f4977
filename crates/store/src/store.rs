//! The one implementation of [`Store`], generic over the `Backend` (SQLite or PostgreSQL): users, tokens, events, payloads, servers and the audit log here, schedules, jobs and logs in `store/jobs.rs`.
//!
//! Every mutation runs in a write transaction (`Backend::begin`) and
//! writes its audit entry in it. A read-compute-write (`update_event`,
//! `update_server`, the job queue) first makes the row it reads stay true
//! until the commit: on SQLite the write transaction already holds the
//! database, on PostgreSQL it locks the row (`Backend::lock_event`,
//! `Backend::lock`). Uniqueness is left to the constraints (a racing
//! insert blocks on the index and then fails), never to a read-then-write
//! check.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cronium_core::{
    ActionId, ActionSpec, ChannelId, ChannelSpec, DeliveryId, EventId, EventKind, JobId,
    PasswordHash, Role, ServerId, ServerSpec, SessionHash, TokenHash, TokenId, UserId, Variable,
    VariableKey, WorkflowId, WorkflowName, WorkflowRunId, needs_new_payload,
};

use crate::db::{Backend, Conn, Lock, Sql, sql};
use crate::rows::{self, EventValues, Reader, truncate};
use crate::{
    Action, Actor, ApiToken, Applied, AuditEntry, AuditRecord, Channel, Claim, Credentials,
    Delivery, Event, EventFilter, EventUpdate, Fence, Fire, Heartbeat, Job, JobFilter, JobOutcome,
    JobRetention, LogLine, NewJob, NewSession, NewToken, NewUser, NewWorkflowRun, Node, NodeBeat,
    Page, PageRequest, PayloadRecord, PayloadWriter, Recovered, Result, RunFilter, ScheduleState,
    SendResult, Server, ServerCheck, ServerUpdate, Session, SessionUser, StartedRun, Store,
    StoreError, StoredVariable, User, VariableSealer, VariableWrite, Workflow, WorkflowHook,
    WorkflowRun, WorkflowVersion,
};

pub(crate) mod jobs;
mod notify;
mod variables;
mod workflow_runs;
mod workflows;

/// The store on one backend: [`crate::SqliteStore`] or [`crate::PgStore`].
/// Cheap to clone: it is a handle on the backend's connection pools.
#[derive(Debug, Clone)]
pub struct SqlStore<B> {
    pub(crate) db: B,
}

/// An event's columns with its target servers and tags (the table is `e`).
pub(crate) fn event_columns<B: Backend>() -> String {
    format!(
        "{}, {} AS target_servers, {} AS tags, {} AS target_tags",
        event_columns!(),
        B::json_array(
            "s.server_id",
            "s.position",
            "event_servers s WHERE s.event_id = e.id"
        ),
        B::json_array("t.tag", "t.tag", "event_tags t WHERE t.event_id = e.id"),
        B::json_array(
            "g.tag",
            "g.tag",
            "event_target_tags g WHERE g.event_id = e.id"
        ),
    )
}

/// `SELECT` of whole servers, with their tags, from `servers`, then `rest`.
fn server_select<B: Backend>(rest: &str) -> String {
    format!(
        "SELECT {}, {} AS tags FROM servers {rest}",
        server_columns!(),
        B::json_array(
            "st.tag",
            "st.tag",
            "server_tags st WHERE st.server_id = servers.id"
        ),
    )
}

/// Replaces a server's tags with `spec`'s.
async fn write_server_tags<C: Conn>(conn: &mut C, id: i64, spec: &ServerSpec) -> Result<()> {
    sql("DELETE FROM server_tags WHERE server_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    for tag in &spec.tags {
        sql("INSERT INTO server_tags (server_id, tag) VALUES ($1, $2)")
            .bind(id)
            .bind(tag.as_str())
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// `SELECT` of whole events from `events e`, then `rest` (a WHERE clause...).
pub(crate) fn event_select<B: Backend>(rest: &str) -> Sql {
    sql(format!(
        "SELECT {} FROM events e {rest}",
        event_columns::<B>()
    ))
}

/// The optional filters of an event listing (`$1` to `$4`, NULL: any).
/// The admins' ids, their rows locked until the transaction ends: a check
/// that one admin remains holds until the commit.
async fn locked_admins<B: Backend, C: Conn>(conn: &mut C) -> Result<Vec<i64>> {
    sql(B::lock(
        "SELECT id FROM users WHERE role = 'admin' ORDER BY id",
        Lock::Update,
    ))
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| Reader::new(row, "users").int("id"))
    .collect()
}

fn event_filter<B: Backend>() -> String {
    format!(
        "WHERE ($1 IS NULL OR e.owner_id = $1) \
         AND ($2 IS NULL OR e.status = $2) \
         AND ($3 IS NULL OR EXISTS (SELECT 1 FROM event_tags t WHERE t.event_id = e.id AND t.tag = $3)) \
         AND ($4 IS NULL OR {}) ",
        B::contains("e.name_folded", "$4")
    )
}

pub(crate) async fn insert_audit<C: Conn>(conn: &mut C, entry: &AuditEntry) -> Result<()> {
    sql(
        "INSERT INTO audit_log (at, actor_token_id, actor_user_id, actor_job_id, action, \
         target_type, target_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entry.at)
    .bind(match entry.actor {
        Some(Actor::Token(id)) => Some(id.0),
        _ => None,
    })
    .bind(match entry.actor {
        Some(Actor::User(id)) => Some(id.0),
        _ => None,
    })
    .bind(match entry.actor {
        Some(Actor::Job(id)) => Some(id.0),
        _ => None,
    })
    .bind(entry.action.as_str())
    .bind(entry.target_type.as_str())
    .bind(entry.target_id)
    .bind(entry.detail.clone())
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn fetch_event<B: Backend, C: Conn>(
    conn: &mut C,
    id: EventId,
) -> Result<Option<Event>> {
    let row = event_select::<B>("WHERE e.id = $1")
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(rows::event).transpose()
}

/// An event's rows (`$1` the event), decoded; an unknown event is
/// `NotFound` rather than an empty list (asked only when there are none).
pub(crate) async fn of_event<B: Backend, T>(
    store: &SqlStore<B>,
    select: &'static str,
    event: EventId,
    decode: fn(&<<B::Db as sqlx::Database>::Connection as Conn>::Row) -> Result<T>,
) -> Result<Vec<T>> {
    let items = sql(select)
        .bind(event.0)
        .fetch_all(&mut store.db.pool())
        .await?
        .iter()
        .map(decode)
        .collect::<Result<Vec<_>>>()?;
    if items.is_empty() {
        event_exists::<B, _>(&mut store.db.pool(), event, None).await?;
    }
    Ok(items)
}

/// A row that a `RESTRICT` foreign key keeps while other rows use it.
pub(crate) struct Deletion {
    /// What it is, for `NotFound`.
    pub(crate) what: &'static str,
    /// Deletes it (`$1` its id).
    pub(crate) delete: &'static str,
    /// Counts the rows using it (`$1` its id), as `n`.
    pub(crate) users: &'static str,
    /// The refusal, given how many rows use it.
    pub(crate) in_use: fn(i64) -> StoreError,
}

/// Deletes a row and audits it, or says how many rows still use it.
pub(crate) async fn delete_unless_used<B: Backend>(
    store: &SqlStore<B>,
    d: Deletion,
    id: i64,
    audit: &AuditEntry,
) -> Result<()> {
    let mut tx = store.db.begin().await?;
    let deleted = match sql(d.delete).bind(id).execute(&mut tx).await {
        Err(e) if rows::is_foreign_key_violation(&e) => {
            // The RESTRICT foreign key refused. On PostgreSQL the error
            // aborted the transaction: count the users outside it.
            tx.rollback().await?;
            let row = sql(d.users)
                .bind(id)
                .fetch_one(&mut store.db.pool())
                .await?;
            return Err((d.in_use)(Reader::new(&row, d.what).int("n")?));
        }
        other => other?,
    };
    if deleted == 0 {
        return Err(StoreError::NotFound { what: d.what });
    }
    insert_audit(&mut tx, &rows::audit_entry(audit, Some(id))).await?;
    tx.commit().await?;
    Ok(())
}

/// Fails `NotFound` unless the event exists; with `lock`, its row stays as
/// read until the transaction ends.
pub(crate) async fn event_exists<B: Backend, C: Conn>(
    conn: &mut C,
    id: EventId,
    lock: Option<Lock>,
) -> Result<()> {
    const SELECT: &str = "SELECT id FROM events WHERE id = $1";
    let text = match lock {
        Some(lock) => B::lock(SELECT, lock),
        None => SELECT.into(),
    };
    sql(text)
        .bind(id.0)
        .fetch_optional(conn)
        .await?
        .map(drop)
        .ok_or(StoreError::NotFound { what: "event" })
}

/// One page of a listing: `count` counts every match (as `n`), `items` reads
/// the page (the same filter, with `LIMIT` and `OFFSET`).
pub(crate) async fn fetch_page<C: Conn, T>(
    conn: &mut C,
    count: Sql,
    items: Sql,
    decode: impl Fn(&C::Row) -> Result<T>,
) -> Result<Page<T>> {
    let row = count.fetch_one(conn).await?;
    let total = Reader::new(&row, "count").int("n")?;
    let items = items
        .fetch_all(conn)
        .await?
        .iter()
        .map(decode)
        .collect::<Result<Vec<_>>>()?;
    Ok(Page {
        items,
        total: rows::count(total),
    })
}

/// Binds the event columns in the order of `event_insert!`, from `$2` to `$22`.
fn bind_event(query: Sql, v: &EventValues) -> Sql {
    query
        .bind(v.name.as_str())
        .bind(v.name_folded.as_str())
        .bind(v.description.as_str())
        .bind(v.kind)
        .bind(v.interpreter)
        .bind(v.content.as_str())
        .bind(v.env.as_str())
        .bind(v.secret_env_names.as_str())
        .bind(v.secret_env.clone())
        .bind(v.schedule.as_str())
        .bind(v.status)
        .bind(v.run_location)
        .bind(v.timeout_secs)
        .bind(v.retries)
        .bind(v.overlap)
        .bind(v.misfire)
        .bind(v.max_executions)
        .bind(v.max_concurrent)
        .bind(v.retry_delay_secs)
        .bind(v.http.clone())
        .bind(v.http_secrets.clone())
}

fn event_write_error(e: sqlx::Error, v: &EventValues) -> StoreError {
    match rows::unique_violation(&e) {
        Some("events.name") => rows::name_conflict("event", &v.name),
        _ if rows::is_foreign_key_violation(&e) => StoreError::NotFound { what: "user" },
        _ => e.into(),
    }
}

/// Replaces an event's target servers and tags with `v`'s.
async fn write_links<C: Conn>(conn: &mut C, id: i64, v: &EventValues) -> Result<()> {
    sql("DELETE FROM event_servers WHERE event_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    sql("DELETE FROM event_tags WHERE event_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    sql("DELETE FROM event_target_tags WHERE event_id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    for (position, server) in v.target_servers.iter().enumerate() {
        sql("INSERT INTO event_servers (event_id, server_id, position) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(*server)
            .bind(position as i64)
            .execute(conn)
            .await
            .map_err(|e| {
                if rows::is_foreign_key_violation(&e) {
                    rows::unknown_server(*server)
                } else {
                    e.into()
                }
            })?;
    }
    for tag in &v.tags {
        sql("INSERT INTO event_tags (event_id, tag) VALUES ($1, $2)")
            .bind(id)
            .bind(tag.as_str())
            .execute(conn)
            .await?;
    }
    for tag in &v.target_tags {
        sql("INSERT INTO event_target_tags (event_id, tag) VALUES ($1, $2)")
            .bind(id)
            .bind(tag.as_str())
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Asks the writer for `version`'s files and records them as the only active
/// payload of the event.
async fn make_payload<C: Conn>(
    conn: &mut C,
    event: &Event,
    version: u64,
    writer: &mut dyn PayloadWriter,
) -> Result<PayloadRecord> {
    let file = writer
        .write(event.id, version, &event.spec, event.updated_at)
        .map_err(StoreError::Payload)?;
    let size = rows::check_payload_file(&file)?;
    sql("UPDATE runner_payloads SET is_active = FALSE WHERE event_id = $1 AND is_active")
        .bind(event.id.0)
        .execute(conn)
        .await?;
    let row = sql(concat!(
        "INSERT INTO runner_payloads (event_id, event_version, payload_path, checksum_path, \
         payload_size, checksum, is_active, created_at) VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7) \
         RETURNING ",
        payload_columns!()
    ))
    .bind(event.id.0)
    .bind(version as i64)
    .bind(file.payload_path.as_str())
    .bind(file.checksum_path.as_str())
    .bind(size)
    .bind(file.checksum.as_str())
    .bind(event.updated_at)
    .fetch_one(conn)
    .await?;
    insert_blob(conn, &file.checksum, &file.bytes, event.updated_at).await?;
    sql("UPDATE events SET payload_version = $2, last_payload_version = $2 WHERE id = $1")
        .bind(event.id.0)
        .bind(version as i64)
        .execute(conn)
        .await?;
    rows::payload(&row)
}

/// Stores a payload's bytes under their checksum, unless they are stored
/// already (another version, or event, with the same bytes); says whether
/// they were new.
async fn insert_blob<C: Conn>(
    conn: &mut C,
    checksum: &str,
    bytes: &[u8],
    at: DateTime<Utc>,
) -> Result<bool> {
    let inserted = sql(
        "INSERT INTO payload_blobs (checksum, bytes, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (checksum) DO NOTHING",
    )
    .bind(checksum.to_string())
    .bind(bytes.to_vec())
    .bind(truncate(at))
    .execute(conn)
    .await?;
    Ok(inserted == 1)
}

/// Deletes the payload bytes no payload row references any more.
async fn drop_unused_blobs<C: Conn>(conn: &mut C) -> Result<()> {
    sql("DELETE FROM payload_blobs WHERE NOT EXISTS \
         (SELECT 1 FROM runner_payloads p WHERE p.checksum = payload_blobs.checksum)")
    .execute(conn)
    .await?;
    Ok(())
}

async fn fetch_server<B: Backend, C: Conn>(
    conn: &mut C,
    id: ServerId,
    lock: Option<Lock>,
) -> Result<Option<Server>> {
    // The row is locked on its own: PostgreSQL locks the rows of a query's
    // own FROM, and the tags are read by a subquery beside it.
    if let Some(lock) = lock {
        let locked = sql(B::lock("SELECT id FROM servers WHERE id = $1", lock))
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await?;
        if locked.is_none() {
            return Ok(None);
        }
    }
    let row = sql(server_select::<B>("WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(rows::server).transpose()
}

/// Binds a server's columns (name to cache_dir) to the next eight placeholders.
fn bind_server(query: Sql, spec: &ServerSpec) -> Sql {
    query
        .bind(spec.name.as_str())
        .bind(spec.host.as_str())
        .bind(i64::from(spec.port))
        .bind(spec.username.as_str())
        .bind(spec.auth_kind.as_str())
        .bind(spec.sealed_credentials.clone())
        .bind(spec.known_host.clone())
        .bind(spec.cache_dir.clone())
}

fn server_write_error(e: sqlx::Error, spec: &ServerSpec) -> StoreError {
    match rows::unique_violation(&e) {
        Some("servers.name") => rows::name_conflict("server", spec.name.as_str()),
        _ => e.into(),
    }
}

fn token_write_error(e: sqlx::Error) -> StoreError {
    match rows::unique_violation(&e) {
        Some("api_tokens.hash") => StoreError::Conflict {
            field: "token".into(),
            message: "a token with this secret already exists".into(),
        },
        _ if rows::is_foreign_key_violation(&e) => StoreError::NotFound { what: "user" },
        _ => e.into(),
    }
}

#[async_trait]
impl<B: Backend> Store for SqlStore<B> {
    fn backend(&self) -> &'static str {
        B::NAME
    }

    async fn ping(&self) -> Result<()> {
        sql("SELECT 1").execute(&mut self.db.pool()).await?;
        Ok(())
    }

    fn signal_listener(&self) -> Option<Box<dyn crate::SignalListener>> {
        self.db.listener()
    }

    async fn try_lease(&self, name: &str, owner: &str, ttl: std::time::Duration) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let clock = truncate(B::clock(&mut tx).await?);
        let until = crate::jobs::lease_until(clock, ttl)?;
        // Taken when free, expired, or already this owner's: the row only
        // changes under the conflict's WHERE.
        let taken = sql(
            "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET owner = $2, expires_at = $3 \
             WHERE leases.owner = $2 OR leases.expires_at <= $4",
        )
        .bind(name.to_string())
        .bind(owner.to_string())
        .bind(until)
        .bind(clock)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(taken == 1)
    }

    async fn node_heartbeat(&self, beat: &NodeBeat) -> Result<DateTime<Utc>> {
        let mut tx = self.db.begin().await?;
        let clock = truncate(B::clock(&mut tx).await?);
        let offset = (beat.local_now - clock).num_milliseconds();
        sql(
            "INSERT INTO nodes (id, address, version, started_at, heartbeat_at, clock_offset_ms, \
             running_jobs) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET \
             address = $2, heartbeat_at = $5, clock_offset_ms = $6, running_jobs = $7",
        )
        .bind(beat.id.clone())
        .bind(beat.address.clone())
        .bind(beat.version.clone())
        .bind(truncate(beat.started_at))
        .bind(clock)
        .bind(offset)
        .bind(i64::try_from(beat.running_jobs).unwrap_or(i64::MAX))
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(clock)
    }

    async fn list_nodes(&self) -> Result<(Vec<Node>, DateTime<Utc>)> {
        let mut tx = self.db.begin().await?;
        let clock = B::clock(&mut tx).await?;
        let nodes = sql(
            "SELECT id, address, version, started_at, heartbeat_at, clock_offset_ms, running_jobs \
             FROM nodes ORDER BY started_at DESC, id",
        )
        .fetch_all(&mut tx)
        .await?
        .iter()
        .map(rows::node)
        .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok((nodes, clock))
    }

    async fn master_key_canary(&self, sealed: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>> {
        let mut tx = self.db.begin().await?;
        // The first server to open the database records its canary; a
        // concurrent first start loses the insert and reads the winner's.
        sql(
            "INSERT INTO master_key_canary (id, sealed, created_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(sealed.to_vec())
        .bind(truncate(now))
        .execute(&mut tx)
        .await?;
        let row = sql("SELECT sealed FROM master_key_canary WHERE id = 1")
            .fetch_one(&mut tx)
            .await?;
        let recorded = Reader::new(&row, "master_key_canary")
            .opt_bytes("sealed")?
            .unwrap_or_default();
        tx.commit().await?;
        Ok(recorded)
    }

    async fn ensure_admin(&self, now: DateTime<Utc>) -> Result<User> {
        let now = truncate(now);
        let mut tx = self.db.begin().await?;
        let select_admin = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE role = 'admin' ORDER BY id LIMIT 1"
        );
        if let Some(row) = sql(select_admin).fetch_optional(&mut tx).await? {
            tx.commit().await?;
            return rows::user(&row);
        }
        let inserted = sql(concat!(
            "INSERT INTO users (name, role, created_at) VALUES ('admin', 'admin', $1) \
             ON CONFLICT (name) DO NOTHING RETURNING ",
            user_columns!()
        ))
        .bind(now)
        .fetch_optional(&mut tx)
        .await?;
        let Some(row) = inserted else {
            // Another node inserted it first (PostgreSQL; SQLite's write lock
            // rules that out); the insert waited for that commit, so a new
            // statement sees the row.
            if let Some(row) = sql(select_admin).fetch_optional(&mut tx).await? {
                tx.commit().await?;
                return rows::user(&row);
            }
            return Err(StoreError::Conflict {
                field: "name".into(),
                message: "a user named admin exists but is not an admin".into(),
            });
        };
        let user = rows::user(&row)?;
        insert_audit(
            &mut tx,
            &AuditEntry {
                at: now,
                actor: None,
                action: "user.create".into(),
                target_type: "user".into(),
                target_id: Some(user.id.0),
                detail: serde_json::json!({ "name": user.name, "role": user.role.as_str() }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        let row = sql(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&mut self.db.pool())
        .await?
        .ok_or(StoreError::NotFound { what: "user" })?;
        rows::user(&row)
    }

    async fn create_user(
        &self,
        new: NewUser,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<User> {
        let mut tx = self.db.begin().await?;
        let row = sql(concat!(
            "INSERT INTO users (name, role, created_at, password_hash) VALUES ($1, $2, $3, $4) \
             RETURNING ",
            user_columns!()
        ))
        .bind(new.name.as_str())
        .bind(new.role.as_str())
        .bind(truncate(now))
        .bind(new.password_hash.as_ref().map(PasswordHash::as_str))
        .fetch_one(&mut tx)
        .await
        .map_err(|e| match rows::unique_violation(&e) {
            Some("users.name") => rows::name_conflict("user", new.name.as_str()),
            _ => e.into(),
        })?;
        let user = rows::user(&row)?;
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(user.id.0))).await?;
        tx.commit().await?;
        Ok(user)
    }

    async fn find_user(&self, name: &str) -> Result<Option<User>> {
        Ok(self.credentials(name).await?.map(|c| c.user))
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        sql(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY id"
        ))
        .fetch_all(&mut self.db.pool())
        .await?
        .iter()
        .map(rows::user)
        .collect()
    }

    async fn credentials(&self, name: &str) -> Result<Option<Credentials>> {
        let row = sql(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&mut self.db.pool())
        .await?;
        row.as_ref().map(rows::credentials).transpose()
    }

    async fn set_password(
        &self,
        user: UserId,
        hash: PasswordHash,
        audit: &AuditEntry,
    ) -> Result<User> {
        let mut tx = self.db.begin().await?;
        let row = sql(concat!(
            "UPDATE users SET password_hash = $2 WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(user.0)
        .bind(hash.as_str())
        .fetch_optional(&mut tx)
        .await?
        .ok_or(StoreError::NotFound { what: "user" })?;
        // Whoever knew the old password is signed out everywhere.
        let ended = sql("DELETE FROM sessions WHERE user_id = $1")
            .bind(user.0)
            .execute(&mut tx)
            .await?;
        let mut entry = rows::audit_entry(audit, Some(user.0));
        if let serde_json::Value::Object(map) = &mut entry.detail {
            map.insert("sessionsEnded".into(), ended.into());
        }
        insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        rows::user(&row)
    }

    async fn remove_user(&self, user: UserId, audit: &AuditEntry) -> Result<User> {
        let mut tx = self.db.begin().await?;
        // Every admin row stays as read until the commit, so two removals
        // of the last two admins cannot both see the other one remaining.
        let admins = locked_admins::<B, _>(&mut tx).await?;
        let row = sql(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(user.0)
        .fetch_optional(&mut tx)
        .await?
        .ok_or(StoreError::NotFound { what: "user" })?;
        let found = rows::user(&row)?;
        if admins == [user.0] {
            return Err(rows::last_admin());
        }
        let owned = sql("SELECT COUNT(*) AS n FROM events WHERE owner_id = $1")
            .bind(user.0)
            .fetch_one(&mut tx)
            .await?;
        let owned = Reader::new(&owned, "events").int("n")?;
        if owned > 0 {
            return Err(rows::user_owns_events(owned));
        }
        // Tokens and sessions go with it (ON DELETE CASCADE).
        sql("DELETE FROM users WHERE id = $1")
            .bind(user.0)
            .execute(&mut tx)
            .await?;
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(user.0))).await?;
        tx.commit().await?;
        Ok(found)
    }

    async fn set_role(
        &self,
        user: UserId,
        role: Role,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<User> {
        let mut tx = self.db.begin().await?;
        // Locked as in `remove_user`: two demotions of the last two admins
        // cannot both see the other one remaining.
        let admins = locked_admins::<B, _>(&mut tx).await?;
        if admins == [user.0] && role != Role::Admin {
            return Err(rows::last_admin());
        }
        let row = sql(concat!(
            "UPDATE users SET role = $2 WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(user.0)
        .bind(role.as_str())
        .fetch_optional(&mut tx)
        .await?
        .ok_or(StoreError::NotFound { what: "user" })?;
        let above: &[&str] = match role {
            Role::Viewer => &["editor", "admin"],
            Role::Editor => &["admin"],
            Role::Admin => &[],
        };
        let mut revoked = 0;
        for stronger in above {
            revoked += sql("UPDATE api_tokens SET revoked_at = $3 \
                 WHERE user_id = $1 AND role = $2 AND revoked_at IS NULL")
            .bind(user.0)
            .bind(*stronger)
            .bind(truncate(now))
            .execute(&mut tx)
            .await?;
        }
        let mut entry = rows::audit_entry(audit, Some(user.0));
        if let serde_json::Value::Object(map) = &mut entry.detail {
            map.insert("tokensRevoked".into(), revoked.into());
        }
        insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        rows::user(&row)
    }

    async fn create_session(
        &self,
        new: NewSession,
        now: DateTime<Utc>,
        idle: chrono::TimeDelta,
        audit: &AuditEntry,
    ) -> Result<Session> {
        let now = truncate(now);
        let mut tx = self.db.begin().await?;
        sql("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
            .bind(now)
            .bind(now - idle)
            .execute(&mut tx)
            .await?;
        let row = sql(concat!(
            "INSERT INTO sessions (id, user_id, csrf_token, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $4, $5) RETURNING ",
            session_columns!()
        ))
        .bind(new.hash.0.to_vec())
        .bind(new.user_id.0)
        .bind(new.csrf_token)
        .bind(now)
        .bind(truncate(new.expires_at))
        .fetch_one(&mut tx)
        .await
        .map_err(|e| {
            if rows::is_foreign_key_violation(&e) {
                StoreError::NotFound { what: "user" }
            } else {
                e.into()
            }
        })?;
        let session = rows::session(&row)?;
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(new.user_id.0))).await?;
        tx.commit().await?;
        Ok(session)
    }

    async fn use_session(
        &self,
        hash: &SessionHash,
        now: DateTime<Utc>,
        idle: chrono::TimeDelta,
    ) -> Result<Option<SessionUser>> {
        let now = truncate(now);
        let select = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = $1"
        );
        let Some(row) = sql(select)
            .bind(hash.0.to_vec())
            .fetch_optional(&mut self.db.pool())
            .await?
        else {
            return Ok(None);
        };
        let mut session = rows::session(&row)?;
        if !session.is_live(now, idle) {
            sql("DELETE FROM sessions WHERE id = $1")
                .bind(hash.0.to_vec())
                .execute(&mut self.db.writer())
                .await?;
            return Ok(None);
        }
        let threshold = rows::session_seen_threshold(now);
        if session.last_seen_at < threshold {
            // Conditional, as for tokens: of concurrent requests one writes,
            // and a clock behind never moves the time backwards.
            let updated = sql(concat!(
                "UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $3 \
                 RETURNING ",
                session_columns!()
            ))
            .bind(hash.0.to_vec())
            .bind(now)
            .bind(threshold)
            .fetch_optional(&mut self.db.writer())
            .await?;
            match updated {
                Some(row) => session = rows::session(&row)?,
                // Another request recorded the use, or the session was
                // deleted (signed out) in between: read again.
                None => match sql(select)
                    .bind(hash.0.to_vec())
                    .fetch_optional(&mut self.db.pool())
                    .await?
                {
                    Some(row) => session = rows::session(&row)?,
                    None => return Ok(None),
                },
            }
        }
        let row = sql(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(session.user_id.0)
        .fetch_optional(&mut self.db.pool())
        .await?;
        // The user was removed in between (its sessions went with it).
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SessionUser {
            session,
            user: rows::user(&row)?,
        }))
    }

    async fn delete_session(&self, hash: &SessionHash, audit: &AuditEntry) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let row = sql("DELETE FROM sessions WHERE id = $1 RETURNING user_id")
            .bind(hash.0.to_vec())
            .fetch_optional(&mut tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let user = Reader::new(&row, "sessions").int("user_id")?;
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(user))).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_sessions(&self, user: UserId) -> Result<Vec<Session>> {
        sql(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE user_id = $1 ORDER BY created_at"
        ))
        .bind(user.0)
        .fetch_all(&mut self.db.pool())
        .await?
        .iter()
        .map(rows::session)
        .collect()
    }

    async fn create_token(
        &self,
        new: NewToken,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<ApiToken> {
        let now = truncate(now);
        let mut tx = self.db.begin().await?;
        let row = sql(concat!(
            "INSERT INTO api_tokens (user_id, name, role, hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING ",
            token_columns!()
        ))
        .bind(new.user_id.0)
        .bind(new.name)
        .bind(new.role.as_str())
        .bind(new.hash.0.to_vec())
        .bind(now)
        .fetch_one(&mut tx)
        .await
        .map_err(token_write_error)?;
        let token = rows::token(&row)?;
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(token.id.0))).await?;
        tx.commit().await?;
        Ok(token)
    }

    async fn use_token(&self, hash: &TokenHash, now: DateTime<Utc>) -> Result<Option<ApiToken>> {
        let now = truncate(now);
        // A read first: most requests find a use recorded less than a
        // minute ago and write nothing.
        let row = sql(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL"
        ))
        .bind(hash.0.to_vec())
        .fetch_optional(&mut self.db.pool())
        .await?;
        let Some(token) = row.as_ref().map(rows::token).transpose()? else {
            return Ok(None);
        };
        let threshold = rows::token_use_threshold(now);
        if !rows::token_use_is_stale(&token, threshold) {
            return Ok(Some(token));
        }
        // Conditional, so of concurrent requests only one writes, and a
        // node whose clock is behind never moves the time backwards.
        let updated = sql(concat!(
            "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1 AND revoked_at IS NULL \
             AND (last_used_at IS NULL OR last_used_at < $3) RETURNING ",
            token_columns!()
        ))
        .bind(token.id.0)
        .bind(now)
        .bind(threshold)
        .fetch_optional(&mut self.db.writer())
        .await?;
        if let Some(row) = updated {
            return rows::token(&row).map(Some);
        }
        // Another request recorded a use in between, or the token was
        // revoked in between: read again, so a revocation is honoured.
        let row = sql(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens WHERE id = $1 AND revoked_at IS NULL"
        ))
        .bind(token.id.0)
        .fetch_optional(&mut self.db.pool())
        .await?;
        row.as_ref().map(rows::token).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        sql(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens ORDER BY id"
        ))
        .fetch_all(&mut self.db.pool())
        .await?
        .iter()
        .map(rows::token)
        .collect()
    }

    async fn revoke_token(
        &self,
        id: TokenId,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<ApiToken> {
        let mut tx = self.db.begin().await?;
        // A second revocation keeps the first time: that is when access ended.
        let row = sql(concat!(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING ",
            token_columns!()
        ))
        .bind(id.0)
        .bind(truncate(now))
        .fetch_optional(&mut tx)
        .await?
        .ok_or(StoreError::NotFound { what: "token" })?;
        let token = rows::token(&row)?;
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(id.0))).await?;
        tx.commit().await?;
        Ok(token)
    }

    async fn create_event(
        &self,
        owner: UserId,
        spec: cronium_core::EventSpec,
        writer: &mut dyn PayloadWriter,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Event> {
        let now = truncate(now);
        let (spec, v) = rows::event_values(spec)?;
        let mut tx = self.db.begin().await?;
        let row = bind_event(sql(event_insert!()).bind(owner.0), &v)
            .bind(v.start_at)
            .bind(now)
            .fetch_one(&mut tx)
            .await
            .map_err(|e| event_write_error(e, &v))?;
        let id = Reader::new(&row, "events").int("id")?;
        write_links(&mut tx, id, &v).await?;
        jobs::set_schedule(&mut tx, EventId(id), &spec, now).await?;
        let mut event = Event {
            id: EventId(id),
            owner,
            spec,
            payload_version: None,
            created_at: now,
            updated_at: now,
        };
        if event.spec.kind == EventKind::Script {
            let payload = make_payload(&mut tx, &event, 1, writer).await?;
            event.payload_version = Some(payload.event_version);
        }
        let entry =
            rows::with_payload_version(rows::audit_entry(audit, Some(id)), event.payload_version);
        insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(event)
    }

    async fn get_event(&self, id: EventId) -> Result<Event> {
        fetch_event::<B, _>(&mut self.db.pool(), id)
            .await?
            .ok_or(StoreError::NotFound { what: "event" })
    }

    async fn event_names(&self, ids: &[EventId]) -> Result<HashMap<EventId, String>> {
        let mut unique: Vec<i64> = ids.iter().map(|id| id.0).collect();
        unique.sort_unstable();
        unique.dedup();
        let mut names = HashMap::with_capacity(unique.len());
        // Chunked only so a caller with more ids than a statement can bind
        // still gets an answer; a page of jobs is one chunk.
        for chunk in unique.chunks(B::MAX_BINDS) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let query = chunk.iter().fold(
                sql(format!(
                    "SELECT id, name FROM events WHERE id IN ({})",
                    placeholders.join(", ")
                )),
                |query, id| query.bind(*id),
            );
            for row in query.fetch_all(&mut self.db.pool()).await? {
                let row = Reader::new(&row, "events");
                names.insert(EventId(row.int("id")?), row.text("name")?);
            }
        }
        Ok(names)
    }

    async fn find_event_by_name(&self, owner: UserId, name: &str) -> Result<Option<Event>> {
        let row = event_select::<B>("WHERE e.owner_id = $1 AND e.name = $2")
            .bind(owner.0)
            .bind(name.trim())
            .fetch_optional(&mut self.db.pool())
            .await?;
        row.as_ref().map(rows::event).transpose()
    }

    async fn list_events(&self, filter: &EventFilter, page: PageRequest) -> Result<Page<Event>> {
        let (limit, offset) = rows::page_bounds(page);
        let owner = filter.owner.map(|o| o.0);
        let status = filter.status.map(|s| s.as_str());
        let tag = filter.tag.as_ref().map(|t| t.as_str().to_string());
        let needle = filter.name_contains.as_deref().map(rows::name_needle);
        let filters = event_filter::<B>();
        let filtered = |text: String| {
            sql(text)
                .bind(owner)
                .bind(status)
                .bind(tag.clone())
                .bind(needle.clone())
        };
        fetch_page(
            &mut self.db.pool(),
            filtered(format!("SELECT COUNT(*) AS n FROM events e {filters}")),
            filtered(format!(
                "SELECT {} FROM events e {filters}{} LIMIT $5 OFFSET $6",
                event_columns::<B>(),
                filter.order.sql()
            ))
            .bind(limit)
            .bind(offset),
            rows::event,
        )
        .await
    }

    async fn update_event(
        &self,
        id: EventId,
        update: EventUpdate<'_>,
        writer: &mut dyn PayloadWriter,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(Event, Option<PayloadRecord>)> {
        let now = truncate(now);
        let mut tx = self.db.begin().await?;
        // The write lock (SQLite's BEGIN IMMEDIATE) or the event's row lock
        // (PostgreSQL) is held from the read below to the commit, so no other
        // update can interleave; the read sees the last holder's commit.
        B::lock_event(&mut tx, id).await?;
        let current = fetch_event::<B, _>(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound { what: "event" })?;
        let (spec, v) = rows::event_values(update(&current)?)?;
        bind_event(sql(event_update!()).bind(id.0), &v)
            .bind(v.start_at)
            .bind(now)
            .execute(&mut tx)
            .await
            .map_err(|e| event_write_error(e, &v))?;
        write_links(&mut tx, id.0, &v).await?;
        if jobs::schedule_changed(&current.spec, &spec) {
            jobs::set_schedule(&mut tx, id, &spec, now).await?;
        }
        let new_payload = needs_new_payload(&current.spec, &spec);
        let mut event = Event {
            spec,
            updated_at: now,
            ..current
        };
        let payload = if new_payload {
            let row = sql("SELECT last_payload_version FROM events WHERE id = $1")
                .bind(id.0)
                .fetch_one(&mut tx)
                .await?;
            let last = Reader::new(&row, "events").int("last_payload_version")?;
            let version = rows::next_version(last, event.payload_version);
            let payload = make_payload(&mut tx, &event, version, writer).await?;
            event.payload_version = Some(version);
            Some(payload)
        } else {
            None
        };
        let entry = rows::with_payload_version(
            rows::audit_entry(audit, Some(id.0)),
            payload.as_ref().map(|p| p.event_version),
        );
        insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok((event, payload))
    }

    async fn delete_event(&self, id: EventId, audit: &AuditEntry) -> Result<Vec<PayloadRecord>> {
        let mut tx = self.db.begin().await?;
        // Locked, so no update adds a payload between the listing and the delete.
        B::lock_event(&mut tx, id).await?;
        let payloads = sql(concat!(
            "SELECT ",
            payload_columns!(),
            " FROM runner_payloads WHERE event_id = $1 ORDER BY event_version DESC"
        ))
        .bind(id.0)
        .fetch_all(&mut tx)
        .await?
        .iter()
        .map(rows::payload)
        .collect::<Result<Vec<_>>>()?;
        let runners = sql("SELECT DISTINCT event_id FROM event_actions \
             WHERE target_event_id = $1 AND event_id <> $1 ORDER BY event_id")
        .bind(id.0)
        .fetch_all(&mut tx)
        .await?
        .iter()
        .map(|row| Reader::new(row, "event_actions").int("event_id"))
        .collect::<Result<Vec<_>>>()?;
        let workflows = workflows::workflows_using(&mut tx, id).await?;
        if !workflows.is_empty() {
            let list = workflows
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>();
            return Err(StoreError::Conflict {
                field: "event".into(),
                message: format!(
                    "workflow(s) {} run this event; change or delete them first",
                    list.join(", ")
                ),
            });
        }
        if !runners.is_empty() {
            let list = runners.iter().map(i64::to_string).collect::<Vec<_>>();
            return Err(StoreError::Conflict {
                field: "event".into(),
                message: format!(
                    "event(s) {} run this event from an action; remove those actions first",
                    list.join(", ")
                ),
            });
        }
        let deleted = sql("DELETE FROM events WHERE id = $1")
            .bind(id.0)
            .execute(&mut tx)
            .await
            .map_err(|e| {
                // A workflow applied since the check above now runs it.
                if rows::is_foreign_key_violation(&e) {
                    StoreError::Conflict {
                        field: "event".into(),
                        message: "a workflow runs this event; change or delete it first".into(),
                    }
                } else {
                    e.into()
                }
            })?;
        if deleted == 0 {
            return Err(StoreError::NotFound { what: "event" });
        }
        drop_unused_blobs(&mut tx).await?;
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(id.0))).await?;
        tx.commit().await?;
        Ok(payloads)
    }

    async fn list_payloads(&self, event: EventId) -> Result<Vec<PayloadRecord>> {
        of_event(
            self,
            concat!(
                "SELECT ",
                payload_columns!(),
                " FROM runner_payloads WHERE event_id = $1 ORDER BY event_version DESC"
            ),
            event,
            rows::payload,
        )
        .await
    }

    async fn get_payload(&self, event: EventId, version: u64) -> Result<PayloadRecord> {
        let row = sql(concat!(
            "SELECT ",
            payload_columns!(),
            " FROM runner_payloads WHERE event_id = $1 AND event_version = $2"
        ))
        .bind(event.0)
        .bind(i64::try_from(version).unwrap_or(i64::MAX))
        .fetch_optional(&mut self.db.pool())
        .await?
        .ok_or(StoreError::NotFound { what: "payload" })?;
        rows::payload(&row)
    }

    async fn prune_payloads(
        &self,
        event: EventId,
        keep: usize,
        audit: &AuditEntry,
    ) -> Result<Vec<PayloadRecord>> {
        let mut tx = self.db.begin().await?;
        // Locked (PostgreSQL), so no update makes a version active meanwhile.
        event_exists::<B, _>(&mut tx, event, Some(Lock::Exclusive)).await?;
        let mut pruned = sql(concat!(
            "DELETE FROM runner_payloads WHERE event_id = $1 AND NOT is_active \
             AND event_version NOT IN (SELECT event_version FROM runner_payloads \
             WHERE event_id = $1 ORDER BY event_version DESC LIMIT $2) RETURNING ",
            payload_columns!()
        ))
        .bind(event.0)
        .bind(i64::try_from(keep).unwrap_or(i64::MAX))
        .fetch_all(&mut tx)
        .await?
        .iter()
        .map(rows::payload)
        .collect::<Result<Vec<_>>>()?;
        pruned.sort_by_key(|p| std::cmp::Reverse(p.event_version));
        if !pruned.is_empty() {
            insert_audit(&mut tx, &rows::prune_audit(audit, event, &pruned)).await?;
            drop_unused_blobs(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(pruned)
    }

    async fn payload_blob(&self, checksum: &str) -> Result<Option<Vec<u8>>> {
        let row = sql("SELECT bytes FROM payload_blobs WHERE checksum = $1")
            .bind(checksum.to_string())
            .fetch_optional(&mut self.db.pool())
            .await?;
        row.map(|row| Reader::new(&row, "payload_blobs").opt_bytes("bytes"))
            .transpose()
            .map(Option::flatten)
    }

    async fn put_payload_blob(
        &self,
        checksum: &str,
        bytes: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        insert_blob(&mut self.db.writer(), checksum, bytes, now).await
    }

    async fn payloads_without_blob(&self) -> Result<Vec<PayloadRecord>> {
        sql(concat!(
            "SELECT ",
            payload_columns!(),
            " FROM runner_payloads p WHERE NOT EXISTS \
             (SELECT 1 FROM payload_blobs b WHERE b.checksum = p.checksum) ORDER BY id"
        ))
        .fetch_all(&mut self.db.pool())
        .await?
        .iter()
        .map(rows::payload)
        .collect()
    }

    async fn all_payloads(&self) -> Result<Vec<PayloadRecord>> {
        sql(concat!(
            "SELECT ",
            payload_columns!(),
            " FROM runner_payloads ORDER BY event_id, event_version"
        ))
        .fetch_all(&mut self.db.pool())
        .await?
        .iter()
        .map(rows::payload)
        .collect()
    }

    async fn create_server(
        &self,
        spec: ServerSpec,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Server> {
        let now = truncate(now);
        let spec = spec.validate()?;
        let mut tx = self.db.begin().await?;
        let row = bind_server(
            sql(
                "INSERT INTO servers (name, host, port, username, auth_kind, sealed_credentials, \
                 known_host, cache_dir, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
            ),
            &spec,
        )
        .bind(now)
        .fetch_one(&mut tx)
        .await
        .map_err(|e| server_write_error(e, &spec))?;
        let id = Reader::new(&row, "servers").int("id")?;
        write_server_tags(&mut tx, id, &spec).await?;
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(id))).await?;
        tx.commit().await?;
        Ok(Server {
            id: ServerId(id),
            spec,
            created_at: now,
            updated_at: now,
            last_check: None,
        })
    }

    async fn get_server(&self, id: ServerId) -> Result<Server> {
        fetch_server::<B, _>(&mut self.db.pool(), id, None)
            .await?
            .ok_or(StoreError::NotFound { what: "server" })
    }

    async fn find_server_by_name(&self, name: &str) -> Result<Option<Server>> {
        let row = sql(server_select::<B>("WHERE name = $1"))
            .bind(name)
            .fetch_optional(&mut self.db.pool())
            .await?;
        row.as_ref().map(rows::server).transpose()
    }

    async fn list_servers(&self) -> Result<Vec<Server>> {
        sql(server_select::<B>("ORDER BY name"))
            .fetch_all(&mut self.db.pool())
            .await?
            .iter()
            .map(rows::server)
            .collect()
    }

    async fn update_server(
        &self,
        id: ServerId,
        update: ServerUpdate<'_>,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Server> {
        let now = truncate(now);
        let mut tx = self.db.begin().await?;
        let current = fetch_server::<B, _>(&mut tx, id, Some(Lock::Update))
            .await?
            .ok_or(StoreError::NotFound { what: "server" })?;
        let spec = update(&current)?.validate()?;
        bind_server(
            sql(
                "UPDATE servers SET name = $2, host = $3, port = $4, username = $5, \
                 auth_kind = $6, sealed_credentials = $7, known_host = $8, cache_dir = $9, \
                 updated_at = $10 WHERE id = $1",
            )
            .bind(id.0),
            &spec,
        )
        .bind(now)
        .execute(&mut tx)
        .await
        .map_err(|e| server_write_error(e, &spec))?;
        write_server_tags(&mut tx, id.0, &spec).await?;
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(id.0))).await?;
        tx.commit().await?;
        Ok(Server {
            spec,
            updated_at: now,
            ..current
        })
    }

    async fn delete_server(&self, id: ServerId, audit: &AuditEntry) -> Result<()> {
        delete_unless_used(
            self,
            Deletion {
                what: "server",
                delete: "DELETE FROM servers WHERE id = $1",
                users: "SELECT COUNT(*) AS n FROM event_servers WHERE server_id = $1",
                in_use: rows::server_in_use,
            },
            id.0,
            audit,
        )
        .await
    }

    async fn record_server_check(&self, id: ServerId, check: &ServerCheck) -> Result<()> {
        let done = sql(
            "UPDATE servers SET last_check_at = $2, last_check_ok = $3, last_check_message = $4, \
             last_check_fingerprint = $5 WHERE id = $1",
        )
        .bind(id.0)
        .bind(truncate(check.at))
        .bind(check.ok)
        .bind(check.message.as_str())
        .bind(check.fingerprint.clone())
        .execute(&mut self.db.pool())
        .await?;
        if done == 0 {
            return Err(StoreError::NotFound { what: "server" });
        }
        Ok(())
    }

    async fn get_schedule_state(&self, event: EventId) -> Result<ScheduleState> {
        jobs::get_schedule_state(self, event).await
    }

    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Event, ScheduleState)>> {
        jobs::due_schedules(self, now, limit).await
    }

    async fn record_fires(
        &self,
        event: EventId,
        expected: DateTime<Utc>,
        fires: &[Fire],
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>> {
        jobs::record_fires(self, event, expected, fires, next, now).await
    }

    async fn enqueue_job(&self, new: NewJob, now: DateTime<Utc>) -> Result<Job> {
        jobs::enqueue_job(self, new, now).await
    }

    async fn claim_job(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<Claim>> {
        jobs::claim_job(self, owner, now, lease).await
    }

    async fn heartbeat(&self, fence: &Fence, until: DateTime<Utc>) -> Result<Heartbeat> {
        jobs::heartbeat(self, fence, until).await
    }

    async fn finish_job(
        &self,
        fence: &Fence,
        outcome: JobOutcome,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Job> {
        jobs::finish_job(self, fence, outcome, retry_at, now).await
    }

    async fn recover_expired_leases(
        &self,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
    ) -> Result<Vec<Recovered>> {
        jobs::recover_expired_leases(self, now, retry_at).await
    }

    async fn hand_back_job(
        &self,
        fence: &Fence,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Recovered> {
        jobs::hand_back_job(self, fence, retry_at, now).await
    }

    async fn cancel_job(&self, id: JobId, now: DateTime<Utc>, audit: &AuditEntry) -> Result<Job> {
        jobs::cancel_job(self, id, now, audit).await
    }

    async fn get_job(&self, id: JobId) -> Result<Job> {
        jobs::get_job(self, id).await
    }

    async fn list_jobs(&self, filter: &JobFilter, page: PageRequest) -> Result<Page<Job>> {
        jobs::list_jobs(self, filter, page).await
    }

    async fn append_logs(&self, fence: &Fence, lines: &[LogLine]) -> Result<()> {
        jobs::append_logs(self, fence, lines).await
    }

    async fn job_logs(&self, job: JobId, after_seq: u64, limit: u32) -> Result<Vec<LogLine>> {
        jobs::job_logs(self, job, after_seq, limit).await
    }

    async fn last_log_seq(&self, job: JobId) -> Result<u64> {
        jobs::last_log_seq(self, job).await
    }

    async fn prune_jobs(&self, retention: JobRetention) -> Result<u64> {
        jobs::prune_jobs(self, retention).await
    }

    async fn create_channel(
        &self,
        spec: ChannelSpec,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Channel> {
        notify::create_channel(self, spec, now, audit).await
    }

    async fn get_channel(&self, id: ChannelId) -> Result<Channel> {
        notify::get_channel(self, id).await
    }

    async fn find_channel_by_name(&self, name: &str) -> Result<Option<Channel>> {
        notify::find_channel_by_name(self, name).await
    }

    async fn list_channels(&self) -> Result<Vec<Channel>> {
        notify::list_channels(self).await
    }

    async fn delete_channel(&self, id: ChannelId, audit: &AuditEntry) -> Result<()> {
        notify::delete_channel(self, id, audit).await
    }

    async fn add_action(
        &self,
        event: EventId,
        spec: ActionSpec,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Action> {
        notify::add_action(self, event, spec, now, audit).await
    }

    async fn list_actions(&self, event: EventId) -> Result<Vec<Action>> {
        notify::list_actions(self, event).await
    }

    async fn remove_action(&self, event: EventId, id: ActionId, audit: &AuditEntry) -> Result<()> {
        notify::remove_action(self, event, id, audit).await
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        notify::claim_deliveries(self, owner, now, lease, limit).await
    }

    async fn finish_delivery(
        &self,
        id: DeliveryId,
        owner: &str,
        result: SendResult,
        now: DateTime<Utc>,
    ) -> Result<Delivery> {
        notify::finish_delivery(self, id, owner, result, now).await
    }

    async fn job_deliveries(&self, job: JobId) -> Result<Vec<Delivery>> {
        notify::job_deliveries(self, job).await
    }

    async fn enqueue_overdue(&self, now: DateTime<Utc>) -> Result<usize> {
        notify::enqueue_overdue(self, now).await
    }

    async fn list_variables(&self, owner: UserId) -> Result<Vec<Variable>> {
        variables::list_variables(self, owner).await
    }

    async fn get_variable(
        &self,
        owner: UserId,
        key: &VariableKey,
    ) -> Result<Option<StoredVariable>> {
        variables::get_variable(self, owner, key).await
    }

    async fn set_variable(
        &self,
        owner: UserId,
        key: &VariableKey,
        write: VariableWrite,
        sealer: &dyn VariableSealer,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Variable> {
        variables::set_variable(self, owner, key, write, sealer, now, audit).await
    }

    async fn delete_variable(
        &self,
        owner: UserId,
        key: &VariableKey,
        audit: &AuditEntry,
    ) -> Result<bool> {
        variables::delete_variable(self, owner, key, audit).await
    }

    async fn attempt_set_output(
        &self,
        fence: &Fence,
        output: Option<serde_json::Value>,
    ) -> Result<()> {
        variables::attempt_set_output(self, fence, output).await
    }

    async fn attempt_set_condition(&self, fence: &Fence, condition: bool) -> Result<()> {
        variables::attempt_set_condition(self, fence, condition).await
    }

    async fn attempt_get_variable(
        &self,
        fence: &Fence,
        key: &VariableKey,
    ) -> Result<Option<StoredVariable>> {
        variables::attempt_get_variable(self, fence, key).await
    }

    async fn attempt_set_variable(
        &self,
        fence: &Fence,
        key: &VariableKey,
        write: VariableWrite,
        sealer: &dyn VariableSealer,
        now: DateTime<Utc>,
    ) -> Result<Variable> {
        variables::attempt_set_variable(self, fence, key, write, sealer, now).await
    }

    async fn attempt_delete_variable(
        &self,
        fence: &Fence,
        key: &VariableKey,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        variables::attempt_delete_variable(self, fence, key, now).await
    }

    async fn apply_workflow(
        &self,
        owner: UserId,
        name: &WorkflowName,
        definition: &serde_json::Value,
        events: &[EventId],
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(Workflow, Applied)> {
        workflows::apply_workflow(self, owner, name, definition, events, now, audit).await
    }

    async fn list_workflows(&self, page: PageRequest) -> Result<Page<Workflow>> {
        workflows::list_workflows(self, page).await
    }

    async fn get_workflow(&self, id: WorkflowId) -> Result<Option<Workflow>> {
        workflows::get_workflow(self, id).await
    }

    async fn find_workflow_by_name(
        &self,
        owner: UserId,
        name: &WorkflowName,
    ) -> Result<Option<Workflow>> {
        workflows::find_workflow_by_name(self, owner, name).await
    }

    async fn workflow_version(
        &self,
        id: WorkflowId,
        version: u64,
    ) -> Result<Option<WorkflowVersion>> {
        workflows::workflow_version(self, id, version).await
    }

    async fn delete_workflow(&self, id: WorkflowId, audit: &AuditEntry) -> Result<bool> {
        workflows::delete_workflow(self, id, audit).await
    }

    async fn set_workflow_hook(
        &self,
        id: WorkflowId,
        hook: Option<WorkflowHook>,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        workflows::set_workflow_hook(self, id, hook, audit).await
    }

    async fn find_workflow_by_hook(
        &self,
        key_hash: &str,
    ) -> Result<Option<(Workflow, Option<Vec<u8>>)>> {
        workflows::find_workflow_by_hook(self, key_hash).await
    }

    async fn due_workflows(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Workflow, DateTime<Utc>)>> {
        workflows::due_workflows(self, now, limit).await
    }

    async fn set_workflow_next_fire(
        &self,
        id: WorkflowId,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        workflows::set_workflow_next_fire(self, id, expected, next).await
    }

    async fn start_workflow_run(
        &self,
        new: NewWorkflowRun,
        now: DateTime<Utc>,
        audit: Option<&AuditEntry>,
    ) -> Result<StartedRun> {
        workflow_runs::start_workflow_run(self, new, now, audit).await
    }

    async fn get_workflow_run(&self, id: WorkflowRunId) -> Result<WorkflowRun> {
        workflow_runs::get_workflow_run(self, id).await
    }

    async fn list_workflow_runs(
        &self,
        filter: &RunFilter,
        page: PageRequest,
    ) -> Result<Page<WorkflowRun>> {
        workflow_runs::list_workflow_runs(self, filter, page).await
    }

    async fn cancel_workflow_run(
        &self,
        id: WorkflowRunId,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(WorkflowRun, Vec<JobId>)> {
        workflow_runs::cancel_workflow_run(self, id, now, audit).await
    }

    async fn retry_workflow_run(
        &self,
        id: WorkflowRunId,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<WorkflowRun> {
        workflow_runs::retry_workflow_run(self, id, now, audit).await
    }

    async fn reconcile_workflow_runs(&self, now: DateTime<Utc>) -> Result<usize> {
        workflow_runs::reconcile(self, now).await
    }

    async fn prune_workflow_runs(
        &self,
        older_than: DateTime<Utc>,
        keep_per_workflow: u32,
    ) -> Result<u64> {
        workflow_runs::prune_workflow_runs(self, older_than, keep_per_workflow).await
    }

    async fn list_audit(&self, page: PageRequest) -> Result<Page<AuditRecord>> {
        let (limit, offset) = rows::page_bounds(page);
        fetch_page(
            &mut self.db.pool(),
            sql("SELECT COUNT(*) AS n FROM audit_log"),
            sql(concat!(
                "SELECT ",
                audit_columns!(),
                " FROM audit_log ORDER BY id DESC LIMIT $1 OFFSET $2"
            ))
            .bind(limit)
            .bind(offset),
            rows::audit,
        )
        .await
    }
}
