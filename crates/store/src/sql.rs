//! SQL text the store's statements are built from, written once for both backends (both take `$1` placeholders).
//!
//! Macros, so the pieces join into `&'static str` literals with `concat!`.
//! Where a dialect fragment is part of the text (the event select, the name
//! search), `store.rs` joins it at run time with the backend's [`crate::db::Backend`] fragment.

macro_rules! payload_columns {
    () => {
        "id, event_id, event_version, payload_path, checksum_path, payload_size, checksum, \
         is_active, created_at"
    };
}

macro_rules! token_columns {
    () => {
        "id, user_id, name, role, created_at, last_used_at, revoked_at"
    };
}

/// With the password hash: `rows::user` only says whether there is one.
macro_rules! user_columns {
    () => {
        "id, name, role, created_at, password_hash"
    };
}

macro_rules! session_columns {
    () => {
        "id, user_id, csrf_token, created_at, last_seen_at, expires_at"
    };
}

/// An event's row: the owner (`$1`), the columns `store::bind_event` binds
/// (`$2` to `$22`), `start_at` (`$23`) and the time of the write (`$24`).
macro_rules! event_insert {
    () => {
        "INSERT INTO events (owner_id, name, name_folded, description, kind, interpreter, \
         content, env, secret_env_names, secret_env, schedule, status, run_location, \
         timeout_secs, retries, overlap, misfire, max_executions, max_concurrent, \
         retry_delay_secs, http, http_secrets, start_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $19, $20, $21, $22, $23, $24, $24) RETURNING id"
    };
}

macro_rules! event_update {
    () => {
        "UPDATE events SET name = $2, name_folded = $3, description = $4, kind = $5, \
         interpreter = $6, content = $7, env = $8, secret_env_names = $9, \
         secret_env = $10, schedule = $11, status = $12, run_location = $13, \
         timeout_secs = $14, retries = $15, overlap = $16, misfire = $17, \
         max_executions = $18, max_concurrent = $19, retry_delay_secs = $20, \
         http = $21, http_secrets = $22, start_at = $23, updated_at = $24 WHERE id = $1"
    };
}

/// An event's own columns (the table is `e`); its target servers and tags
/// are aggregated by a dialect-specific subquery (`store::event_columns`).
/// `retries` is INTEGER on PostgreSQL, read as a BIGINT like every integer.
macro_rules! event_columns {
    () => {
        "e.id, e.owner_id, e.name, e.description, e.kind, e.interpreter, e.content, \
         e.env, e.secret_env_names, e.secret_env, e.schedule, e.status, e.run_location, \
         e.timeout_secs, CAST(e.retries AS BIGINT) AS retries, e.payload_version, \
         e.created_at, e.updated_at, e.overlap, e.misfire, e.start_at, e.max_executions, \
         e.max_concurrent, e.retry_delay_secs, e.http, e.http_secrets"
    };
}

/// `port` is INTEGER on PostgreSQL, read as a BIGINT like every integer.
macro_rules! server_columns {
    () => {
        "id, name, host, CAST(port AS BIGINT) AS port, username, auth_kind, \
         sealed_credentials, known_host, cache_dir, created_at, updated_at, \
         last_check_at, last_check_ok, last_check_message, last_check_fingerprint"
    };
}

macro_rules! audit_columns {
    () => {
        "id, at, actor_token_id, actor_user_id, actor_job_id, action, target_type, target_id, \
         CAST(detail AS TEXT) AS detail"
    };
}

// --- schedules and jobs -------------------------------------------------------

/// A job's columns. `metadata` is JSONB on PostgreSQL and TEXT on SQLite;
/// the cast reads it as text on both. `output` is TEXT on both.
macro_rules! job_columns {
    () => {
        "id, event_id, payload_version, \"trigger\", status, attempt, scheduled_at, \
         run_after, lease_owner, lease_expires_at, cancel_requested, started_at, \
         finished_at, exit_code, error, CAST(metadata AS TEXT) AS metadata, output, \
         condition, created_at, updated_at"
    };
}

macro_rules! job_select {
    () => {
        concat!("SELECT ", job_columns!(), " FROM jobs ")
    };
}

macro_rules! schedule_state_columns {
    () => {
        "event_id, anchor, next_fire_at, fire_count"
    };
}

/// Sets where a schedule starts, keeping the fires counted so far.
macro_rules! schedule_state_upsert {
    () => {
        "INSERT INTO schedule_state (event_id, anchor, next_fire_at, fire_count) \
         VALUES ($1, $2, $3, 0) ON CONFLICT (event_id) DO UPDATE \
         SET anchor = excluded.anchor, next_fire_at = excluded.next_fire_at"
    };
}

/// Gives an event a schedule state unless it has one.
macro_rules! schedule_state_insert_missing {
    () => {
        "INSERT INTO schedule_state (event_id, anchor, next_fire_at, fire_count) \
         VALUES ($1, $2, $3, 0) ON CONFLICT (event_id) DO NOTHING"
    };
}

macro_rules! active_payload_select {
    () => {
        concat!(
            "SELECT ",
            payload_columns!(),
            " FROM runner_payloads WHERE event_id = $1 AND is_active"
        )
    };
}

/// The unfinished job an overlap policy weighs a new run against: a running
/// one if any, else the oldest queued.
macro_rules! active_job_select {
    () => {
        "SELECT id, status FROM jobs WHERE event_id = $1 AND status IN ('queued', 'running') \
         ORDER BY CASE status WHEN 'running' THEN 0 ELSE 1 END, id LIMIT 1"
    };
}

/// How many runs of event `e` may run at once: the SQL twin of
/// `RunPolicy::concurrency_limit` (NULL: no limit).
macro_rules! concurrency_limit {
    () => {
        "(CASE e.overlap WHEN 'allow' THEN e.max_concurrent ELSE 1 END)"
    };
}

/// Queued jobs `j` (of events `e`) whose time has come (`$1`) and whose
/// event is below its concurrency limit.
macro_rules! claimable {
    () => {
        concat!(
            "FROM jobs j JOIN events e ON e.id = j.event_id \
             WHERE j.status = 'queued' AND j.run_after <= $1 AND (",
            concurrency_limit!(),
            " IS NULL OR (SELECT COUNT(*) FROM jobs r WHERE r.event_id = j.event_id \
             AND r.status = 'running') < ",
            concurrency_limit!(),
            ") "
        )
    };
}

/// Marks a claimed job running (`$1` the job). The attempt starts with no
/// output and its condition false (a retry does not inherit the last one's).
macro_rules! claim_update {
    () => {
        "UPDATE jobs SET status = 'running', lease_owner = $2, lease_expires_at = $3, \
         started_at = $4, updated_at = $4, output = NULL, condition = FALSE \
         WHERE id = $1 AND status = 'queued'"
    };
}

macro_rules! variable_columns {
    () => {
        "id, owner_id, key, value_json, sealed, secret, version, created_at, updated_at, \
         updated_by_job"
    };
}

/// Extends a lease, only for the worker that holds it.
macro_rules! heartbeat_update {
    () => {
        "UPDATE jobs SET lease_expires_at = $2 WHERE id = $1 AND status = 'running' \
         AND lease_owner = $3 AND attempt = $4 RETURNING cancel_requested"
    };
}

/// Cancels the queued runs a `replace` run supersedes (`$2` the new job).
macro_rules! replace_queued {
    () => {
        "UPDATE jobs SET status = 'cancelled', error = $3, finished_at = $4, updated_at = $4 \
         WHERE event_id = $1 AND status = 'queued' AND id <> $2"
    };
}

/// Asks the running runs a `replace` run supersedes to stop.
macro_rules! replace_running {
    () => {
        "UPDATE jobs SET cancel_requested = TRUE, updated_at = $3 \
         WHERE event_id = $1 AND status = 'running' AND id <> $2 AND NOT cancel_requested"
    };
}

macro_rules! log_select {
    () => {
        "SELECT seq, stream, at, data, server FROM job_logs WHERE job_id = $1 AND seq > $2 \
         ORDER BY seq LIMIT $3"
    };
}

/// Finished jobs ended before `$1`, except each event's newest `$2` finished
/// ones; their logs go with them (foreign key cascade).
macro_rules! prune_jobs_delete {
    () => {
        "DELETE FROM jobs WHERE id IN (SELECT id FROM (\
         SELECT id, COALESCE(finished_at, created_at) AS ended, \
         ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY id DESC) AS nth \
         FROM jobs WHERE status NOT IN ('queued', 'running')) AS finished \
         WHERE nth > $2 AND ended < $1)"
    };
}
