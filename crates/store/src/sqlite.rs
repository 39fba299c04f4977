//! The SQLite backend: one file in WAL mode, writers serialized by `BEGIN IMMEDIATE`.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, which takes SQLite's
//! single write lock up front: a deferred transaction that reads and then
//! writes can fail with `SQLITE_BUSY` instead of waiting, and the lock is also
//! what makes `update_event`'s read-compute-write atomic. Timestamps are
//! INTEGER microseconds since the epoch.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cronium_core::{
    EventId, EventKind, JobId, ServerId, ServerSpec, TokenHash, TokenId, UserId, needs_new_payload,
};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::rows::{self, EventValues, StoreRow, truncate};
use crate::{
    ApiToken, AuditEntry, AuditRecord, Claim, Event, EventFilter, EventUpdate, Fence, Fire,
    Heartbeat, Job, JobFilter, JobOutcome, JobRetention, LogLine, NewJob, NewToken, Page,
    PageRequest, PayloadRecord, PayloadWriter, Recovered, Result, ScheduleState, Server,
    ServerUpdate, Store, StoreError, User,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for SQLite's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

impl StoreRow for SqliteRow {
    rows::primitive_getters!();

    fn time(&self, column: &str) -> std::result::Result<Option<DateTime<Utc>>, String> {
        let micros: Option<i64> = self.try_get(column).map_err(|e| e.to_string())?;
        micros
            .map(|m| {
                DateTime::from_timestamp_micros(m).ok_or_else(|| format!("{m} is out of range"))
            })
            .transpose()
    }
}

/// An event's columns (the table is `e`).
macro_rules! event_columns {
    () => {
        concat!(
            "e.id, e.owner_id, e.name, e.description, e.kind, e.interpreter, e.content, \
         e.env, e.secret_env_names, e.secret_env, e.schedule, e.status, e.run_location, \
         e.timeout_secs, e.retries, e.payload_version, e.created_at, e.updated_at, ",
            policy_columns!(),
            ", \
         (SELECT json_group_array(s.server_id ORDER BY s.position) FROM event_servers s \
          WHERE s.event_id = e.id) AS target_servers, \
         (SELECT json_group_array(t.tag ORDER BY t.tag) FROM event_tags t \
          WHERE t.event_id = e.id) AS tags"
        )
    };
}

macro_rules! event_select {
    () => {
        concat!("SELECT ", event_columns!(), " FROM events e ")
    };
}

macro_rules! event_filter {
    () => {
        "WHERE ($1 IS NULL OR e.owner_id = $1) \
         AND ($2 IS NULL OR e.status = $2) \
         AND ($3 IS NULL OR EXISTS (SELECT 1 FROM event_tags t WHERE t.event_id = e.id AND t.tag = $3)) \
         AND ($4 IS NULL OR instr(e.name_folded, $4) > 0) "
    };
}

macro_rules! server_columns {
    () => {
        "id, name, host, port, username, auth_kind, sealed_credentials, known_host, \
         cache_dir, created_at, updated_at"
    };
}
// After the macros above, which it uses.
mod jobs;

/// The SQLite store. Cheap to clone: it is a handle on a connection pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Writes: one connection, so this process's writers queue here in
    /// order instead of colliding on SQLite's lock, where the losers would
    /// sleep in the busy handler (milliseconds each) and throughput with
    /// them. Other processes (a second server on the same file) still wait
    /// in the busy handler.
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens `sqlite://PATH` (the file is created if missing; its directory
    /// must exist) or `sqlite::memory:`, and applies the migrations.
    pub async fn connect(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("invalid SQLite URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL never corrupts the database; a power cut may
            // lose the last commits, which the payload sweep tolerates.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let (pool, writer) = if url.contains(":memory:") {
            // An in-memory database lives as long as a connection to it: keep
            // exactly one, forever, for reads and writes alike.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
                .map_err(|e| StoreError::Backend(format!("cannot open {url}: {e}")))?;
            (pool.clone(), pool)
        } else {
            let open = |max| {
                SqlitePoolOptions::new()
                    .max_connections(max)
                    .connect_with(options.clone())
            };
            let pool = open(8)
                .await
                .map_err(|e| StoreError::Backend(format!("cannot open {url}: {e}")))?;
            let writer = open(1)
                .await
                .map_err(|e| StoreError::Backend(format!("cannot open {url}: {e}")))?;
            (pool, writer)
        };
        MIGRATOR.run(&pool).await?;
        let store = SqliteStore { pool, writer };
        // Events created before schedules were kept get one, starting now.
        // This is the one place the store reads the clock: no caller knows
        // those events exist.
        jobs::backfill_schedules(&store, Utc::now()).await?;
        Ok(store)
    }

    /// The pool, for code that needs SQL the trait does not offer (tests, jobs).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

async fn insert_audit(conn: &mut SqliteConnection, entry: &AuditEntry) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_token_id, action, target_type, target_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(micros(entry.at))
    .bind(entry.actor.map(|t| t.0))
    .bind(entry.action.clone())
    .bind(entry.target_type.clone())
    .bind(entry.target_id)
    .bind(rows::detail_text(entry))
    .execute(conn)
    .await?;
    Ok(())
}

async fn fetch_event(conn: &mut SqliteConnection, id: EventId) -> Result<Option<Event>> {
    let row = sqlx::query(concat!(event_select!(), "WHERE e.id = $1"))
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(rows::event).transpose()
}

fn event_write_error(e: sqlx::Error, v: &EventValues) -> StoreError {
    match rows::unique_violation(&e) {
        Some("events.name") => rows::name_conflict("event", &v.name),
        _ if rows::is_foreign_key_violation(&e) => StoreError::NotFound { what: "user" },
        _ => e.into(),
    }
}

/// Replaces an event's target servers and tags with `v`'s.
async fn write_links(conn: &mut SqliteConnection, id: i64, v: &EventValues) -> Result<()> {
    sqlx::query("DELETE FROM event_servers WHERE event_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM event_tags WHERE event_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for (position, server) in v.target_servers.iter().enumerate() {
        sqlx::query(
            "INSERT INTO event_servers (event_id, server_id, position) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(*server)
        .bind(position as i64)
        .execute(&mut *conn)
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
        sqlx::query("INSERT INTO event_tags (event_id, tag) VALUES ($1, $2)")
            .bind(id)
            .bind(tag.clone())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Asks the writer for `version`'s files and records them as the only active
/// payload of the event.
async fn make_payload(
    conn: &mut SqliteConnection,
    event: &Event,
    version: u64,
    writer: &mut dyn PayloadWriter,
) -> Result<PayloadRecord> {
    let file = writer
        .write(event.id, version, &event.spec, event.updated_at)
        .map_err(StoreError::Payload)?;
    let size = rows::check_payload_file(&file)?;
    sqlx::query("UPDATE runner_payloads SET is_active = 0 WHERE event_id = $1 AND is_active = 1")
        .bind(event.id.0)
        .execute(&mut *conn)
        .await?;
    let row = sqlx::query(concat!(
        "INSERT INTO runner_payloads (event_id, event_version, payload_path, checksum_path, \
         payload_size, checksum, is_active, created_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7) \
         RETURNING ",
        payload_columns!()
    ))
    .bind(event.id.0)
    .bind(version as i64)
    .bind(file.payload_path.clone())
    .bind(file.checksum_path.clone())
    .bind(size)
    .bind(file.checksum.clone())
    .bind(micros(event.updated_at))
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("UPDATE events SET payload_version = $2, last_payload_version = $2 WHERE id = $1")
        .bind(event.id.0)
        .bind(version as i64)
        .execute(&mut *conn)
        .await?;
    rows::payload(&row)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn ensure_admin(&self, now: DateTime<Utc>) -> Result<User> {
        let now = truncate(now);
        let mut tx = self.write().await?;
        let select_admin = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE role = 'admin' ORDER BY id LIMIT 1"
        );
        if let Some(row) = sqlx::query(select_admin).fetch_optional(&mut *tx).await? {
            tx.commit().await?;
            return rows::user(&row);
        }
        let inserted = sqlx::query(concat!(
            "INSERT INTO users (name, role, created_at) VALUES ('admin', 'admin', $1) \
             ON CONFLICT (name) DO NOTHING RETURNING ",
            user_columns!()
        ))
        .bind(micros(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = inserted else {
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
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "user" })?;
        rows::user(&row)
    }

    async fn create_token(
        &self,
        new: NewToken,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<ApiToken> {
        let now = truncate(now);
        let mut tx = self.write().await?;
        let row = sqlx::query(concat!(
            "INSERT INTO api_tokens (user_id, name, role, hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING ",
            token_columns!()
        ))
        .bind(new.user_id.0)
        .bind(new.name.clone())
        .bind(new.role.as_str())
        .bind(new.hash.0.to_vec())
        .bind(micros(now))
        .fetch_one(&mut *tx)
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
        let row = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL"
        ))
        .bind(hash.0.to_vec())
        .fetch_optional(&self.pool)
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
        let updated = sqlx::query(concat!(
            "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1 AND revoked_at IS NULL \
             AND (last_used_at IS NULL OR last_used_at < $3) RETURNING ",
            token_columns!()
        ))
        .bind(token.id.0)
        .bind(micros(now))
        .bind(micros(threshold))
        .fetch_optional(&self.writer)
        .await?;
        if let Some(row) = updated {
            return rows::token(&row).map(Some);
        }
        // Another request recorded a use in between, or the token was
        // revoked in between: read again, so a revocation is honoured.
        let row = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens WHERE id = $1 AND revoked_at IS NULL"
        ))
        .bind(token.id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::token).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM api_tokens ORDER BY id"
        ))
        .fetch_all(&self.pool)
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
        let mut tx = self.write().await?;
        // A second revocation keeps the first time: that is when access ended.
        let row = sqlx::query(concat!(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING ",
            token_columns!()
        ))
        .bind(id.0)
        .bind(micros(truncate(now)))
        .fetch_optional(&mut *tx)
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
        let mut tx = self.write().await?;
        let id: i64 = bind_event!(sqlx::query_scalar(event_insert!()).bind(owner.0), v)
            .bind(v.start_at.map(micros))
            .bind(micros(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| event_write_error(e, &v))?;
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
        let mut conn = self.pool.acquire().await?;
        fetch_event(&mut conn, id)
            .await?
            .ok_or(StoreError::NotFound { what: "event" })
    }

    async fn find_event_by_name(&self, owner: UserId, name: &str) -> Result<Option<Event>> {
        let row = sqlx::query(concat!(
            event_select!(),
            "WHERE e.owner_id = $1 AND e.name = $2"
        ))
        .bind(owner.0)
        .bind(name.trim().to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::event).transpose()
    }

    async fn list_events(&self, filter: &EventFilter, page: PageRequest) -> Result<Page<Event>> {
        let (limit, offset) = rows::page_bounds(page);
        let owner = filter.owner.map(|o| o.0);
        let status = filter.status.map(|s| s.as_str());
        let tag = filter.tag.as_ref().map(|t| t.as_str().to_string());
        let needle = filter.name_contains.as_deref().map(rows::name_needle);
        let total: i64 =
            sqlx::query_scalar(concat!("SELECT COUNT(*) FROM events e ", event_filter!()))
                .bind(owner)
                .bind(status)
                .bind(tag.clone())
                .bind(needle.clone())
                .fetch_one(&self.pool)
                .await?;
        let items = sqlx::query(concat!(
            event_select!(),
            event_filter!(),
            "ORDER BY e.id LIMIT $5 OFFSET $6"
        ))
        .bind(owner)
        .bind(status)
        .bind(tag)
        .bind(needle)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rows::event)
        .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            total: rows::count(total),
        })
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
        // BEGIN IMMEDIATE holds the write lock from the read below to the
        // commit, so no other update can interleave.
        let mut tx = self.write().await?;
        let current = fetch_event(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound { what: "event" })?;
        let (spec, v) = rows::event_values(update(&current)?)?;
        bind_event!(sqlx::query(event_update!()).bind(id.0), v)
            .bind(v.start_at.map(micros))
            .bind(micros(now))
            .execute(&mut *tx)
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
            let last: i64 =
                sqlx::query_scalar("SELECT last_payload_version FROM events WHERE id = $1")
                    .bind(id.0)
                    .fetch_one(&mut *tx)
                    .await?;
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
        let mut tx = self.write().await?;
        let payloads = sqlx::query(concat!(
            "SELECT ",
            payload_columns!(),
            " FROM runner_payloads WHERE event_id = $1 ORDER BY event_version DESC"
        ))
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(rows::payload)
        .collect::<Result<Vec<_>>>()?;
        let deleted = sqlx::query("DELETE FROM events WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "event" });
        }
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(id.0))).await?;
        tx.commit().await?;
        Ok(payloads)
    }

    async fn list_payloads(&self, event: EventId) -> Result<Vec<PayloadRecord>> {
        let payloads = sqlx::query(concat!(
            "SELECT ",
            payload_columns!(),
            " FROM runner_payloads WHERE event_id = $1 ORDER BY event_version DESC"
        ))
        .bind(event.0)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rows::payload)
        .collect::<Result<Vec<_>>>()?;
        if payloads.is_empty() {
            event_exists(&self.pool, event).await?;
        }
        Ok(payloads)
    }

    async fn get_payload(&self, event: EventId, version: u64) -> Result<PayloadRecord> {
        let row = sqlx::query(concat!(
            "SELECT ",
            payload_columns!(),
            " FROM runner_payloads WHERE event_id = $1 AND event_version = $2"
        ))
        .bind(event.0)
        .bind(i64::try_from(version).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
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
        let mut tx = self.write().await?;
        event_exists(&mut *tx, event).await?;
        let mut pruned = sqlx::query(concat!(
            "DELETE FROM runner_payloads WHERE event_id = $1 AND is_active = 0 \
             AND event_version NOT IN (SELECT event_version FROM runner_payloads \
             WHERE event_id = $1 ORDER BY event_version DESC LIMIT $2) RETURNING ",
            payload_columns!()
        ))
        .bind(event.0)
        .bind(i64::try_from(keep).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(rows::payload)
        .collect::<Result<Vec<_>>>()?;
        pruned.sort_by_key(|p| std::cmp::Reverse(p.event_version));
        if !pruned.is_empty() {
            insert_audit(&mut tx, &rows::prune_audit(audit, event, &pruned)).await?;
        }
        tx.commit().await?;
        Ok(pruned)
    }

    async fn all_payloads(&self) -> Result<Vec<PayloadRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            payload_columns!(),
            " FROM runner_payloads ORDER BY event_id, event_version"
        ))
        .fetch_all(&self.pool)
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
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO servers (name, host, port, username, auth_kind, sealed_credentials, \
             known_host, cache_dir, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
        )
        .bind(spec.name.as_str().to_string())
        .bind(spec.host.clone())
        .bind(i64::from(spec.port))
        .bind(spec.username.clone())
        .bind(spec.auth_kind.as_str())
        .bind(spec.sealed_credentials.clone())
        .bind(spec.known_host.clone())
        .bind(spec.cache_dir.clone())
        .bind(micros(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| server_write_error(e, &spec))?;
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(id))).await?;
        tx.commit().await?;
        Ok(Server {
            id: ServerId(id),
            spec,
            created_at: now,
            updated_at: now,
        })
    }

    async fn get_server(&self, id: ServerId) -> Result<Server> {
        let mut conn = self.pool.acquire().await?;
        fetch_server(&mut conn, id)
            .await?
            .ok_or(StoreError::NotFound { what: "server" })
    }

    async fn find_server_by_name(&self, name: &str) -> Result<Option<Server>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            server_columns!(),
            " FROM servers WHERE name = $1"
        ))
        .bind(name.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::server).transpose()
    }

    async fn list_servers(&self) -> Result<Vec<Server>> {
        sqlx::query(concat!(
            "SELECT ",
            server_columns!(),
            " FROM servers ORDER BY name"
        ))
        .fetch_all(&self.pool)
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
        let mut tx = self.write().await?;
        let current = fetch_server(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound { what: "server" })?;
        let spec = update(&current)?.validate()?;
        sqlx::query(
            "UPDATE servers SET name = $2, host = $3, port = $4, username = $5, auth_kind = $6, \
             sealed_credentials = $7, known_host = $8, cache_dir = $9, updated_at = $10 \
             WHERE id = $1",
        )
        .bind(id.0)
        .bind(spec.name.as_str().to_string())
        .bind(spec.host.clone())
        .bind(i64::from(spec.port))
        .bind(spec.username.clone())
        .bind(spec.auth_kind.as_str())
        .bind(spec.sealed_credentials.clone())
        .bind(spec.known_host.clone())
        .bind(spec.cache_dir.clone())
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(|e| server_write_error(e, &spec))?;
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(id.0))).await?;
        tx.commit().await?;
        Ok(Server {
            spec,
            updated_at: now,
            ..current
        })
    }

    async fn delete_server(&self, id: ServerId, audit: &AuditEntry) -> Result<()> {
        let mut tx = self.write().await?;
        let deleted = sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await;
        let deleted = match deleted {
            Err(e) if rows::is_foreign_key_violation(&e) => {
                // The RESTRICT foreign key refused; count the events for the message.
                let events: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM event_servers WHERE server_id = $1")
                        .bind(id.0)
                        .fetch_one(&mut *tx)
                        .await?;
                return Err(rows::server_in_use(events));
            }
            other => other?,
        };
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "server" });
        }
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(id.0))).await?;
        tx.commit().await?;
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
        lease: Duration,
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

    async fn list_audit(&self, page: PageRequest) -> Result<Page<AuditRecord>> {
        let (limit, offset) = rows::page_bounds(page);
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        let items = sqlx::query(
            "SELECT id, at, actor_token_id, action, target_type, target_id, detail \
             FROM audit_log ORDER BY id DESC LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(rows::audit)
        .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            total: rows::count(total),
        })
    }
}

async fn event_exists<'e, E>(conn: E, id: EventId) -> Result<()>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    sqlx::query_scalar::<_, i64>("SELECT id FROM events WHERE id = $1")
        .bind(id.0)
        .fetch_optional(conn)
        .await?
        .map(drop)
        .ok_or(StoreError::NotFound { what: "event" })
}

async fn fetch_server(conn: &mut SqliteConnection, id: ServerId) -> Result<Option<Server>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        server_columns!(),
        " FROM servers WHERE id = $1"
    ))
    .bind(id.0)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(rows::server).transpose()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `sqlite::memory:` is one database for the store's whole life, not
    /// one per pooled connection, and it outlives idle periods.
    #[tokio::test]
    async fn an_in_memory_store_is_one_database() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let admin = store.ensure_admin(Utc::now()).await.unwrap();
        let (a, b) = tokio::join!(store.get_user(admin.id), store.get_user(admin.id));
        assert_eq!((a.unwrap(), b.unwrap()), (admin.clone(), admin));
    }
}
