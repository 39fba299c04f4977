//! Persistence behind one [`Store`] trait, on SQLite or PostgreSQL, each with its own migrations, and one conformance suite (`tests/conformance.rs`) that both must pass.
//!
//! One implementation serves both databases: `store.rs` and `store/jobs.rs`
//! write every statement once, over the access layer in `db.rs`; `sqlite.rs`
//! and `postgres.rs` hold only what their database does differently (the
//! `db::Backend` trait lists it). `sql.rs` holds shared SQL text, `rows.rs`
//! the row-to-domain decoding, `jobs.rs` the job queue's rules.
//!
//! The store speaks domain types (`cronium-core`) and never sees a secret in
//! clear: secret environment values and server credentials arrive sealed.
//! Every mutation writes its audit entry in the same transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cronium_core::{
    ActionId, ActionSpec, ChannelId, ChannelSpec, DeliveryId, EventId, EventSpec, EventStatus,
    JobId, JobStatus, NodeId, NodeStatus, PasswordHash, Role, RunStatus, ServerId, ServerSpec,
    SessionHash, Tag, TokenHash, TokenId, Trigger, UserId, UserName, ValidationError, Variable,
    VariableKey, WorkflowId, WorkflowName, WorkflowRunId,
};

#[macro_use]
mod sql;
mod db;
mod jobs;
pub mod postgres;
mod rows;
pub mod signals;
pub mod sqlite;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use postgres::PgStore;
pub use signals::{Signal, SignalListener};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// A uniqueness rule was broken, e.g. a duplicate event name.
    #[error("{field}: {message}")]
    Conflict { field: String, message: String },
    /// The update function refused the change.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The payload writer failed; nothing was committed.
    #[error("cannot write payload: {0}")]
    Payload(String),
    /// A worker reported on a job it no longer holds (its lease expired and
    /// the job was recovered, or it finished): the report was ignored.
    #[error("job {job} is no longer held by this worker (attempt {attempt})")]
    Fenced { job: JobId, attempt: u32 },
    /// A sender reported on a delivery it no longer holds (its lease
    /// expired and another sender took it, or it was settled): ignored.
    #[error("delivery {delivery} is no longer held by this sender")]
    DeliveryLost { delivery: DeliveryId },
    #[error("database error: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How stale a token's stored `last_used_at` may get: [`Store::use_token`]
/// writes it only when the stored value is older than this.
pub const TOKEN_USE_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// How stale a session's stored `last_seen_at` may get:
/// [`Store::use_session`] writes it only when the stored value is older
/// than this, so an idle timeout is honoured to within a minute.
pub const SESSION_SEEN_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Opens the store a database URL names: `sqlite://PATH` (created if
/// missing) or `postgres://...`. Migrations are applied before it returns.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::Backend(format!(
            "unsupported database URL {url:?} (use sqlite://PATH or postgres://...)"
        )))
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: EventId,
    pub owner: UserId,
    pub spec: EventSpec,
    /// The active payload's version; `None` for events without a payload.
    pub payload_version: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A row of `runner_payloads` (DESIGN §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadRecord {
    pub id: i64,
    pub event_id: EventId,
    pub event_version: u64,
    pub payload_path: String,
    pub checksum_path: String,
    pub payload_size: u64,
    /// SHA-256, 64 lowercase hex digits.
    pub checksum: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

/// What a [`PayloadWriter`] put on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFile {
    pub payload_path: String,
    pub checksum_path: String,
    pub payload_size: u64,
    pub checksum: String,
    /// The archive itself: the store keeps it by checksum, so that a
    /// server without the file can fetch it.
    pub bytes: Vec<u8>,
}

/// Writes a payload's files. The store calls it inside the transaction that
/// records the new version, after the version number is fixed and before the
/// commit; if the commit then fails the caller removes what was written.
pub trait PayloadWriter: Send {
    fn write(
        &mut self,
        event: EventId,
        version: u64,
        spec: &EventSpec,
        created_at: DateTime<Utc>,
    ) -> std::result::Result<PayloadFile, String>;
}

/// How an event update is computed from the current state, inside the
/// transaction (so concurrent updates never lose each other's changes).
pub type EventUpdate<'a> =
    &'a (dyn Fn(&Event) -> std::result::Result<EventSpec, ValidationError> + Send + Sync);

/// How a server update is computed from the current state, inside the
/// transaction. (A named alias, like [`EventUpdate`], keeps the closure
/// generic over the borrow: `async_trait` would otherwise tie `&Server` to
/// the call's lifetime and the store could not pass it a local row.)
pub type ServerUpdate<'a> =
    &'a (dyn Fn(&Server) -> std::result::Result<ServerSpec, ValidationError> + Send + Sync);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub role: Role,
    /// Whether a password is set (the hash itself is read only to sign in,
    /// through [`Store::credentials`]).
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: UserName,
    pub role: Role,
    /// `None`: the user cannot sign in until one is set.
    pub password_hash: Option<PasswordHash>,
}

/// What signing in checks: the user and its password hash, if it has one.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: Option<PasswordHash>,
}

/// A browser session (table `sessions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The SHA-256 of the cookie's secret; the secret is never stored.
    pub hash: SessionHash,
    pub user_id: UserId,
    /// Sent back with every state-changing form of this session.
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The absolute end, whatever the use.
    pub expires_at: DateTime<Utc>,
}

impl Session {
    /// Whether the session still counts at `now`: before its absolute end,
    /// and used within `idle` (the stored use is at most
    /// [`SESSION_SEEN_RESOLUTION`] old while the session is in use).
    pub fn is_live(&self, now: DateTime<Utc>, idle: chrono::TimeDelta) -> bool {
        now < self.expires_at && now < self.last_seen_at + idle
    }
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub hash: SessionHash,
    pub user_id: UserId,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// A live session and its user, as every signed-in page request needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub session: Session,
    pub user: User,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: TokenId,
    pub user_id: UserId,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub user_id: UserId,
    pub name: String,
    pub role: Role,
    pub hash: TokenHash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub id: ServerId,
    pub spec: ServerSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The newest check's outcome; `None` until the server is first checked.
    pub last_check: Option<ServerCheck>,
}

/// What the newest check of a server found, kept on its row so pages can
/// show it without connecting (see [`Store::record_server_check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCheck {
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// A one-line summary when it passed (system, interpreters, runner), or
    /// why it failed.
    pub message: String,
    /// The host key the check was shown (`SHA256:…`), if it got that far.
    pub fingerprint: Option<String>,
}

/// Who acted, as the audit log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A request authenticated by this API token.
    Token(TokenId),
    /// A user signed in to the web UI.
    User(UserId),
    /// A job's script, through a runtime helper (e.g. `cronium var set`).
    Job(JobId),
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Token(id) => write!(f, "token {}", id.0),
            Actor::User(id) => write!(f, "user {}", id.0),
            Actor::Job(id) => write!(f, "job {}", id.0),
        }
    }
}

/// One line of the audit log: who did what to which object, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// Who acted; `None` for the system itself (start-up, the scheduler, a
    /// command run on the server's host such as `cronium user passwd`).
    pub actor: Option<Actor>,
    /// e.g. `event.create`, `token.revoke`.
    pub action: String,
    /// e.g. `event`, `server`, `token`.
    pub target_type: String,
    pub target_id: Option<i64>,
    /// Extra facts, never secrets.
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub entry: AuditEntry,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub owner: Option<UserId>,
    pub status: Option<EventStatus>,
    pub tag: Option<Tag>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
    pub order: EventOrder,
}

/// The order of a list of events; every order ends on the id, so pages
/// never overlap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EventOrder {
    /// Oldest first.
    #[default]
    Id,
    /// By name, ignoring case.
    Name,
    /// Most recently updated first.
    Updated,
}

impl EventOrder {
    /// The `ORDER BY` clause: fixed text, never built from input.
    pub(crate) fn sql(self) -> &'static str {
        match self {
            EventOrder::Id => "ORDER BY e.id",
            EventOrder::Name => "ORDER BY e.name_folded, e.id",
            EventOrder::Updated => "ORDER BY e.updated_at DESC, e.id DESC",
        }
    }
}

/// Offset pagination, applied in SQL (`LIMIT`/`OFFSET`), newest ids last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub offset: u64,
}

impl PageRequest {
    pub const MAX_LIMIT: u32 = 500;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many match the filter in all.
    pub total: u64,
}

/// Where an event's schedule stands (table `schedule_state`): the store
/// keeps it in step with the event (recomputed in `create_event` and
/// `update_event` whenever the schedule, the policy's start or the status
/// changes, from that moment on), and the scheduler advances it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleState {
    pub event_id: EventId,
    /// `every` schedules count from here (the policy's `startAt`, or the
    /// time the schedule was set).
    pub anchor: DateTime<Utc>,
    /// `None` when the schedule will not fire again (manual, a past one-shot,
    /// max executions reached, or the event is not active).
    pub next_fire_at: Option<DateTime<Utc>>,
    /// Fires that were due to run so far (missed ones do not count).
    pub fire_count: u64,
}

/// One fire time the scheduler records, straight from a
/// [`cronium_core::schedule::FirePlan`] (`run: false` is recorded as `missed`).
pub use cronium_core::schedule::PlannedFire as Fire;

/// A stored job (DESIGN §3.5).
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub event_id: EventId,
    /// The payload the job runs, fixed when it was queued.
    pub payload_version: Option<u64>,
    pub trigger: Trigger,
    pub status: JobStatus,
    /// From 1; a retry (or a recovered lease) raises it, which fences out
    /// whatever the previous attempt's worker still reports.
    pub attempt: u32,
    /// The fire time for scheduled jobs, the request time for manual ones.
    pub scheduled_at: DateTime<Utc>,
    /// Not claimed before this (later than `scheduled_at` for retries).
    pub run_after: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Someone asked to cancel the running job; its worker learns on its
    /// next heartbeat and stops the runner.
    pub cancel_requested: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// `payloadPath`, `checksumPath`, `checksum` of the payload (set when
    /// queued), the manual run's `input`, and what the runner reported
    /// (`signal`, `durationMs`).
    pub metadata: serde_json::Value,
    /// This attempt's output, set by its script ([`Store::attempt_set_output`]);
    /// the claim of the next attempt clears it.
    pub output: Option<serde_json::Value>,
    /// This attempt's condition, false unless its script set it
    /// ([`Store::attempt_set_condition`]); cleared like `output`.
    pub condition: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A run to record: the overlap policy decides whether it is `queued` or
/// `skipped` (and, for `replace`, cancels the runs before it).
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub event_id: EventId,
    pub trigger: Trigger,
    pub scheduled_at: DateTime<Utc>,
    /// Manual runs may carry JSON input (kept in `metadata.input`).
    pub input: Option<serde_json::Value>,
}

/// How a running job ended, as its worker saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// `succeeded`, `failed`, `timed_out` or `cancelled` (or `partial`).
    pub status: JobStatus,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// Merged into the job's metadata (e.g. `signal`, `durationMs`).
    pub metadata: serde_json::Value,
}

/// The worker that holds a job: its lease owner name and the attempt it
/// runs. Every report a worker makes carries it; a report whose fence no
/// longer matches the row is refused with [`StoreError::Fenced`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub job: JobId,
    pub owner: String,
    pub attempt: u32,
}

/// A claimed job with what its worker needs to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub job: Job,
    pub event: Event,
    pub fence: Fence,
    /// The claim recorded deliveries (the job started, and its event's
    /// actions say so): the delivery worker need not wait for its poll.
    pub owes_deliveries: bool,
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The job should stop: it was cancelled (or replaced).
    pub cancel_requested: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub event: Option<EventId>,
    pub status: Option<JobStatus>,
    /// `scheduled_at` at or after this.
    pub since: Option<DateTime<Utc>>,
    /// `scheduled_at` before this.
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Cronium's own lines: attempt started, truncation marker, errors.
    System,
}

/// One captured line (or a final piece without a newline), binary-safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// From 1, increasing without gaps within a job, across attempts.
    pub seq: u64,
    pub stream: LogStream,
    pub at: DateTime<Utc>,
    pub data: Vec<u8>,
    /// The server the line came from, by its name when it was written (a
    /// later rename leaves the log as it was); `None` for local jobs and for
    /// the job's own system lines.
    pub server: Option<String>,
}

/// What [`Store::recover_expired_leases`] did to one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    pub job: Job,
    /// `true`: queued again for another attempt; `false`: failed for good.
    pub retried: bool,
}

/// How much job history to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRetention {
    /// Finished jobs older than this (by `finished_at`, or `created_at` for
    /// missed and skipped ones) are deleted with their logs.
    pub older_than: DateTime<Utc>,
    /// The newest this many finished jobs of each event are kept regardless.
    pub keep_per_event: u32,
}

/// A stored notification channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: ChannelId,
    pub spec: ChannelSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One of an event's actions: when it fires, and what it does (notify a
/// channel or run an event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub id: ActionId,
    pub event_id: EventId,
    pub spec: ActionSpec,
    pub created_at: DateTime<Utc>,
}

/// How deep a chain of `run_event` actions goes: a job started by a
/// schedule or by hand is at depth 0, the job its action starts at 1, and
/// so on. A job at this depth starts nothing, and records why, so a chain
/// that loops (A → B → A) stops.
pub const MAX_CHAIN_DEPTH: u32 = 10;

/// What a job started by an action knows of the job that started it (kept
/// in its metadata as `startedBy`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedBy {
    pub job: JobId,
    pub event: EventId,
    pub action: ActionId,
    pub status: JobStatus,
    pub exit_code: Option<i32>,
    /// This job's depth in the chain: 1 for a job that a job started by a
    /// schedule or by hand started ([`MAX_CHAIN_DEPTH`]).
    pub depth: u32,
}

impl StartedBy {
    /// What started `job`, if an action did.
    pub fn of(job: &Job) -> Option<StartedBy> {
        serde_json::from_value(job.metadata.get("startedBy")?.clone()).ok()
    }

    /// `job`'s depth in its chain.
    pub fn depth_of(job: &Job) -> u32 {
        StartedBy::of(job).map_or(0, |s| s.depth)
    }
}

/// What a delivery reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryReason {
    /// The job's final result.
    End,
    /// The job started running.
    Start,
    /// The job has been running longer than its action's threshold.
    DurationExceeded,
}

impl DeliveryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryReason::End => "end",
            DeliveryReason::Start => "start",
            DeliveryReason::DurationExceeded => "duration_exceeded",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Not sent yet, or to be tried again at `next_attempt_at`.
    Pending,
    Delivered,
    /// Given up: the last error says why.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One message to one channel about one job (its start, its running long,
/// or its final result), recorded in the transaction that recorded what it
/// reports (an outbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub job_id: JobId,
    pub reason: DeliveryReason,
    pub channel_id: ChannelId,
    /// `None` once the action that caused it was removed.
    pub action_id: Option<ActionId>,
    pub status: DeliveryStatus,
    /// Sends tried so far.
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Delivery {
    /// The message's id, the same on every try, so a receiver can drop a
    /// repeat (Standard Webhooks' `webhook-id`).
    pub fn webhook_id(&self) -> String {
        format!("msg_cronium_{}", self.id)
    }
}

/// How one send of a delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    Delivered {
        status: u16,
    },
    /// Try again at `at` (a timeout, 429 or 5xx).
    Retry {
        at: DateTime<Utc>,
        status: Option<u16>,
        error: String,
    },
    /// Give up (a refused address, a 4xx, or too many tries).
    GiveUp {
        status: Option<u16>,
        error: String,
    },
}

/// A stored workflow with its current version's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub id: WorkflowId,
    pub owner: UserId,
    pub name: WorkflowName,
    /// The current version, from 1.
    pub version: u64,
    /// The current version's definition: the canonical JSON of a
    /// [`cronium_core::WorkflowSpec`], as the caller gave it.
    pub definition: serde_json::Value,
    /// Whether it has a webhook key (its trigger is `webhook`).
    pub hook: bool,
    /// Whether a signing secret is kept with the key (`signed: true`).
    pub hook_signed: bool,
    /// The next fire of its `cron` or `every` trigger.
    pub next_fire_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// When the current version was made.
    pub updated_at: DateTime<Utc>,
}

/// What [`Store::apply_workflow`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new workflow, at version 1.
    Created,
    /// A new version; `from` was the current one.
    Updated { from: u64 },
    /// The definition equals the current one: no new version, no audit entry.
    Unchanged,
}

/// What a server reports of itself at each heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeBeat {
    /// Its lease owner name.
    pub id: String,
    /// Where it listens.
    pub address: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    /// Its own clock when it sent the heartbeat.
    pub local_now: DateTime<Utc>,
    pub running_jobs: u64,
}

/// A server that uses the database, as it last reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    pub address: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    /// The database's clock at its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Its clock minus the database's, at that heartbeat.
    pub clock_offset_ms: i64,
    pub running_jobs: u64,
}

/// A workflow's webhook key, as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowHook {
    /// SHA-256 of the key, lowercase hex: the key itself is never stored.
    pub key_hash: String,
    /// The signing secret, sealed, for a `signed` webhook.
    pub sealed_secret: Option<Vec<u8>>,
}

/// One version of a workflow's definition, as it was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowVersion {
    pub workflow: WorkflowId,
    pub version: u64,
    pub definition: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// What started a workflow run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunTrigger {
    /// By hand: the API, the CLI or the UI.
    Manual,
    /// A fire time of the workflow's cron or every trigger.
    Schedule,
    /// `POST /hooks/workflows/{key}`.
    Webhook,
}

impl RunTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Manual => "manual",
            RunTrigger::Schedule => "schedule",
            RunTrigger::Webhook => "webhook",
        }
    }
}

/// A run to start: the workflow's version and each node's event, as the
/// caller resolved them ([`cronium_core::ResolvedWorkflow`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewWorkflowRun {
    pub workflow: WorkflowId,
    pub version: u64,
    /// Every node in the definition's order, with the event it runs.
    pub nodes: Vec<(NodeId, EventId)>,
    pub trigger: RunTrigger,
    pub input: Option<serde_json::Value>,
    /// A schedule's fire time: recorded once per workflow.
    pub fire_at: Option<DateTime<Utc>>,
    /// A webhook delivery's idempotency key: one run per key.
    pub idempotency_key: Option<String>,
}

/// One run of a workflow, with its nodes (empty in lists).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRun {
    pub id: WorkflowRunId,
    pub workflow: WorkflowId,
    pub workflow_name: String,
    /// The definition's version the run pinned when it was recorded.
    pub version: u64,
    pub status: RunStatus,
    pub trigger: RunTrigger,
    pub fire_at: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    pub input: Option<serde_json::Value>,
    /// From 1; each retry of the failed part raises it.
    pub pass: u32,
    pub cancel_requested: bool,
    /// Why it failed, was skipped or was cancelled.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub nodes: Vec<RunNode>,
}

/// One node of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunNode {
    pub node: NodeId,
    pub event: EventId,
    /// The event's payload version pinned when the run started.
    pub payload_version: Option<u64>,
    pub status: NodeStatus,
    /// The job of its latest pass, with that job's status (`None` before
    /// it ran, or once its job was pruned).
    pub job: Option<(JobId, JobStatus)>,
    /// The condition its job's script set (false until it succeeded).
    pub condition: bool,
    /// Why it was skipped, cancelled or failed without its job saying.
    pub reason: Option<String>,
    /// The pass that last decided it.
    pub pass: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Which runs [`Store::list_workflow_runs`] returns (all when empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub workflow: Option<WorkflowId>,
    pub status: Option<RunStatus>,
    pub since: Option<DateTime<Utc>>,
}

/// A run [`Store::start_workflow_run`] recorded, or the one its
/// idempotency key or fire time already had.
#[derive(Debug, Clone, PartialEq)]
pub struct StartedRun {
    pub run: WorkflowRun,
    /// `false`: the key (or fire time) was already used; nothing started.
    pub created: bool,
    /// Running jobs of the runs it replaced (overlap `replace`), asked to
    /// stop: this node may stop its own at once.
    pub stop: Vec<JobId>,
}

/// A variable's value as stored: in clear, or sealed (a secret variable).
#[derive(Debug, Clone, PartialEq)]
pub enum StoredValue {
    Plain(serde_json::Value),
    /// Sealed by a [`VariableSealer`]; the store cannot read it.
    Sealed(Vec<u8>),
}

/// A variable with its stored value, for a caller that may open it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVariable {
    /// The variable; its `value` is `None` when it is secret.
    pub variable: Variable,
    pub stored: StoredValue,
}

impl StoredVariable {
    /// The value in clear, opening a sealed one with `sealer`.
    pub fn open(&self, sealer: &dyn VariableSealer) -> Result<serde_json::Value> {
        match &self.stored {
            StoredValue::Plain(value) => Ok(value.clone()),
            StoredValue::Sealed(sealed) => sealer.open(sealed).map_err(|e| {
                StoreError::Backend(format!(
                    "cannot open secret variable {}: {e}",
                    self.variable.key
                ))
            }),
        }
    }
}

/// Seals and opens secret variable values for the store, which holds no
/// key: the server passes its sealer in, and the store calls it inside the
/// write's transaction, so whether a value is sealed follows the variable's
/// secrecy as it is at that moment (a write that keeps the secrecy of a
/// variable made secret meanwhile is still sealed), and a compare-and-set
/// on a secret variable compares opened values.
pub trait VariableSealer: Send + Sync {
    fn seal(&self, value: &serde_json::Value) -> Vec<u8>;
    fn open(&self, sealed: &[u8]) -> std::result::Result<serde_json::Value, String>;
}

/// A write of a variable.
#[derive(Debug, Clone, PartialEq)]
pub struct VariableWrite {
    /// In clear; sealed with the caller's sealer if the variable is secret.
    /// At most [`cronium_core::MAX_VARIABLE_BYTES`] as compact JSON.
    pub value: serde_json::Value,
    /// `None` keeps the variable's secrecy (a new variable is not secret).
    pub secret: Option<bool>,
    /// Compare-and-set: refused with `Conflict { field: "expect" }` when the
    /// current value does not meet it.
    pub expect: cronium_core::Expect,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// `"sqlite"` or `"postgres"`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Runs a trivial query, so a health check learns whether the database
    /// answers right now (not merely whether it did at start-up).
    async fn ping(&self) -> Result<()>;

    /// A listener for the [`Signal`]s every server sharing this database
    /// announces as it changes jobs, logs and schedules (PostgreSQL
    /// `LISTEN`); `None` on SQLite, where this server is the only one. Not
    /// yet connected: call [`SignalListener::connect`].
    fn signal_listener(&self) -> Option<Box<dyn SignalListener>>;

    // --- users and tokens ---------------------------------------------------

    /// Takes or renews the lease `name` for `owner` until `ttl` from now by
    /// the database's clock: `true` when `owner` holds it now (it was free,
    /// expired, or already `owner`'s), `false` when another owner does.
    async fn try_lease(&self, name: &str, owner: &str, ttl: std::time::Duration) -> Result<bool>;
    /// Records a server's heartbeat, stamped with the database's clock
    /// (which every server shares), and returns that clock's time.
    async fn node_heartbeat(&self, beat: &NodeBeat) -> Result<DateTime<Utc>>;
    /// Every server that has heartbeated, newest start first, with the
    /// database's clock now (to judge which are alive).
    async fn list_nodes(&self) -> Result<(Vec<Node>, DateTime<Utc>)>;
    /// The master key's canary: records `sealed` (a fixed text sealed with
    /// this server's key) unless one is recorded, and returns the recorded
    /// one, for the caller to check that its key opens it.
    async fn master_key_canary(&self, sealed: &[u8], now: DateTime<Utc>) -> Result<Vec<u8>>;
    /// Returns the first admin user, creating `admin` if there is none.
    async fn ensure_admin(&self, now: DateTime<Utc>) -> Result<User>;
    async fn get_user(&self, id: UserId) -> Result<User>;
    /// A new user; a taken name is `Conflict { field: "name" }`.
    async fn create_user(
        &self,
        new: NewUser,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<User>;
    async fn find_user(&self, name: &str) -> Result<Option<User>>;
    async fn list_users(&self) -> Result<Vec<User>>;
    /// The user and its password hash, to sign in; `None`: no such user.
    async fn credentials(&self, name: &str) -> Result<Option<Credentials>>;
    /// Sets a user's password hash and ends all its sessions (whoever had
    /// the old password is signed out), in one transaction.
    async fn set_password(
        &self,
        user: UserId,
        hash: PasswordHash,
        audit: &AuditEntry,
    ) -> Result<User>;
    /// Removes a user with its tokens and sessions. Refused with a
    /// `Conflict` when it is the last admin (no one could manage the
    /// server) or still owns events.
    async fn remove_user(&self, user: UserId, audit: &AuditEntry) -> Result<User>;
    /// Changes a user's role. Taking it from the last admin is refused with
    /// a `Conflict`, as removing that user is. The user's unrevoked tokens
    /// with a role above the new one are revoked at `now` in the same
    /// transaction (a token's role is its own, and must not outlive its
    /// owner's); sessions take the new role at their next request.
    async fn set_role(
        &self,
        user: UserId,
        role: Role,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<User>;

    // --- browser sessions -----------------------------------------------------

    /// Records a new session (and deletes sessions that ended before `now`,
    /// anyone's, so the table does not grow with abandoned ones). Audited.
    async fn create_session(
        &self,
        new: NewSession,
        now: DateTime<Utc>,
        idle: chrono::TimeDelta,
        audit: &AuditEntry,
    ) -> Result<Session>;
    /// The live session with this hash and its user, recording the use at
    /// most once per [`SESSION_SEEN_RESOLUTION`]; `None` if there is none or
    /// it ended ([`Session::is_live`]; an ended one is deleted).
    async fn use_session(
        &self,
        hash: &SessionHash,
        now: DateTime<Utc>,
        idle: chrono::TimeDelta,
    ) -> Result<Option<SessionUser>>;
    /// Ends a session (signing out); `false` if there was none. Audited
    /// when there was one.
    async fn delete_session(&self, hash: &SessionHash, audit: &AuditEntry) -> Result<bool>;
    /// A user's sessions, oldest first.
    async fn list_sessions(&self, user: UserId) -> Result<Vec<Session>>;
    async fn create_token(
        &self,
        new: NewToken,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<ApiToken>;
    /// The live (not revoked) token with this hash, and records its use in
    /// `last_used_at` at most once per [`TOKEN_USE_RESOLUTION`]: every
    /// authenticated request calls this, and a write per request would make
    /// every read of the API a database write. The returned `last_used_at` is
    /// what is stored, so it may be up to that long behind `now`.
    async fn use_token(&self, hash: &TokenHash, now: DateTime<Utc>) -> Result<Option<ApiToken>>;
    async fn list_tokens(&self) -> Result<Vec<ApiToken>>;
    async fn revoke_token(
        &self,
        id: TokenId,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<ApiToken>;

    // --- events and their payloads --------------------------------------------

    /// Inserts the event; for a script event, calls `writer` for version 1
    /// and records that payload as active, all in one transaction.
    /// A duplicate name for the same owner is a `Conflict` on `name`.
    async fn create_event(
        &self,
        owner: UserId,
        spec: EventSpec,
        writer: &mut dyn PayloadWriter,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Event>;
    async fn get_event(&self, id: EventId) -> Result<Event>;
    /// The names of the events among `ids` that exist, in one query: what a
    /// list of jobs shows beside each job. Ids repeat freely; an unknown id
    /// is left out rather than an error.
    async fn event_names(
        &self,
        ids: &[EventId],
    ) -> Result<std::collections::HashMap<EventId, String>>;
    async fn find_event_by_name(&self, owner: UserId, name: &str) -> Result<Option<Event>>;
    async fn list_events(&self, filter: &EventFilter, page: PageRequest) -> Result<Page<Event>>;
    /// Locks the event, computes the new spec with `update`, and when
    /// [`cronium_core::needs_new_payload`] says so, calls `writer` for the
    /// next version (one above the highest ever recorded for the event), makes
    /// it the only active payload and sets `payload_version`; one transaction.
    /// Returns the event and the new payload, if one was made.
    async fn update_event(
        &self,
        id: EventId,
        update: EventUpdate<'_>,
        writer: &mut dyn PayloadWriter,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(Event, Option<PayloadRecord>)>;
    /// Deletes the event and its payload rows; returns those rows so the
    /// caller can remove the files.
    async fn delete_event(&self, id: EventId, audit: &AuditEntry) -> Result<Vec<PayloadRecord>>;
    /// Payloads of one event, newest version first.
    async fn list_payloads(&self, event: EventId) -> Result<Vec<PayloadRecord>>;
    async fn get_payload(&self, event: EventId, version: u64) -> Result<PayloadRecord>;
    /// Deletes all but the newest `keep` versions of an event (the active
    /// one is always kept); returns the deleted rows. When anything was
    /// deleted, `audit` is written in the same transaction with the deleted
    /// versions added to its detail (`"versions": [...]`), which the caller
    /// cannot know in advance; nothing deleted, nothing audited. The time of
    /// the prune is the audit entry's `at`: the store never reads the clock.
    async fn prune_payloads(
        &self,
        event: EventId,
        keep: usize,
        audit: &AuditEntry,
    ) -> Result<Vec<PayloadRecord>>;
    /// Every payload row, for the start-up sweep of the payload directory.
    async fn all_payloads(&self) -> Result<Vec<PayloadRecord>>;
    /// A payload's bytes by checksum; `None` when no payload has it.
    async fn payload_blob(&self, checksum: &str) -> Result<Option<Vec<u8>>>;
    /// Stores a payload's bytes under their checksum unless they are there
    /// (for payloads recorded before the store kept bytes); whether it did.
    async fn put_payload_blob(
        &self,
        checksum: &str,
        bytes: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// The checksums of payload rows whose bytes the store does not keep.
    async fn payloads_without_blob(&self) -> Result<Vec<PayloadRecord>>;

    // --- servers ----------------------------------------------------------------

    /// A duplicate name is a `Conflict` on `name`.
    async fn create_server(
        &self,
        spec: ServerSpec,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Server>;
    async fn get_server(&self, id: ServerId) -> Result<Server>;
    async fn find_server_by_name(&self, name: &str) -> Result<Option<Server>>;
    async fn list_servers(&self) -> Result<Vec<Server>>;
    async fn update_server(
        &self,
        id: ServerId,
        update: ServerUpdate<'_>,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Server>;
    /// Refused with a `Conflict` on `targetServers` while an event targets it.
    async fn delete_server(&self, id: ServerId, audit: &AuditEntry) -> Result<()>;
    /// Replaces the server's last check with `check`. Neither audited nor a
    /// change of the server (`updated_at` stays): a check only looks.
    async fn record_server_check(&self, id: ServerId, check: &ServerCheck) -> Result<()>;

    // --- schedules and jobs ---------------------------------------------------

    async fn get_schedule_state(&self, event: EventId) -> Result<ScheduleState>;
    /// Active events whose `next_fire_at` is at or before `now`, soonest
    /// first, at most `limit`.
    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Event, ScheduleState)>>;
    /// Records one scheduler step for an event, atomically: only if its
    /// `next_fire_at` is still `expected` (else another scheduler got there
    /// first and this returns an empty list, recording nothing), inserts a
    /// job per fire (`missed` when `run` is false; otherwise as
    /// [`Store::enqueue_job`] does, overlap policy included), sets
    /// `next_fire_at` to `next` and adds the run fires to `fire_count`.
    /// A fire already recorded for the same (event, time) is not recorded
    /// again: that unique key is what makes double-firing impossible.
    async fn record_fires(
        &self,
        event: EventId,
        expected: DateTime<Utc>,
        fires: &[Fire],
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>>;
    /// Records a run, applying the event's overlap policy in the same
    /// transaction: `forbid` with a queued or running job records it as
    /// `skipped` (with the reason in `error`); `replace` cancels queued jobs
    /// and asks running ones to cancel. The job pins the active payload.
    async fn enqueue_job(&self, new: NewJob, now: DateTime<Utc>) -> Result<Job>;
    /// Claims the oldest queued job whose `run_after` has come and whose
    /// event is below its concurrency limit: `running`, leased to `owner`
    /// until `now + lease`. `None` when nothing is claimable.
    async fn claim_job(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
    ) -> Result<Option<Claim>>;
    /// Extends the lease to `until`; says whether the job should stop.
    async fn heartbeat(&self, fence: &Fence, until: DateTime<Utc>) -> Result<Heartbeat>;
    /// Ends the attempt. A `failed` or `timed_out` outcome with retries left
    /// (attempt ≤ the event's `retries`) goes back to `queued` with the
    /// attempt raised and `run_after = retry_at`; anything else is final.
    async fn finish_job(
        &self,
        fence: &Fence,
        outcome: JobOutcome,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Job>;
    /// Running jobs whose lease expired before `now` (their worker died):
    /// retried at `retry_at` if the event allows another attempt, otherwise
    /// `failed` with the reason. The attempt is raised either way, so the
    /// lost worker can no longer report.
    async fn recover_expired_leases(
        &self,
        now: DateTime<Utc>,
        retry_at: DateTime<Utc>,
    ) -> Result<Vec<Recovered>>;
    /// Gives back the running attempt `fence` holds before it ended (its
    /// server is shutting down): retried at `retry_at` if the event allows
    /// another attempt, otherwise `failed`, the reason saying so. As with a
    /// recovered lease, the attempt is raised and the worker fenced out.
    async fn hand_back_job(
        &self,
        fence: &Fence,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Recovered>;
    /// A queued job becomes `cancelled` at once; a running one gets
    /// `cancel_requested` (its worker ends it). A finished job is a
    /// `Conflict` on `status`.
    async fn cancel_job(&self, id: JobId, now: DateTime<Utc>, audit: &AuditEntry) -> Result<Job>;
    async fn get_job(&self, id: JobId) -> Result<Job>;
    /// Newest first.
    async fn list_jobs(&self, filter: &JobFilter, page: PageRequest) -> Result<Page<Job>>;
    /// Appends lines for the attempt `fence` holds (refused with `Fenced`
    /// otherwise). Their `seq` must continue the job's log.
    async fn append_logs(&self, fence: &Fence, lines: &[LogLine]) -> Result<()>;
    /// Lines with `seq` above `after_seq`, in order, at most `limit`.
    async fn job_logs(&self, job: JobId, after_seq: u64, limit: u32) -> Result<Vec<LogLine>>;
    /// The highest `seq` of a job's log (0 when empty).
    async fn last_log_seq(&self, job: JobId) -> Result<u64>;
    /// Deletes finished jobs (and their logs) by [`JobRetention`]; returns how many.
    async fn prune_jobs(&self, retention: JobRetention) -> Result<u64>;

    // --- notifications ----------------------------------------------------------

    /// A duplicate name is a `Conflict` on `name`.
    async fn create_channel(
        &self,
        spec: ChannelSpec,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Channel>;
    async fn get_channel(&self, id: ChannelId) -> Result<Channel>;
    async fn find_channel_by_name(&self, name: &str) -> Result<Option<Channel>>;
    /// By name.
    async fn list_channels(&self) -> Result<Vec<Channel>>;
    /// Refused with a `Conflict` on `channel` while an action uses it; its
    /// delivery history goes with it.
    async fn delete_channel(&self, id: ChannelId, audit: &AuditEntry) -> Result<()>;
    /// A missing event, channel or target event is `NotFound`.
    async fn add_action(
        &self,
        event: EventId,
        spec: ActionSpec,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Action>;
    /// Oldest first.
    async fn list_actions(&self, event: EventId) -> Result<Vec<Action>>;
    async fn remove_action(&self, event: EventId, id: ActionId, audit: &AuditEntry) -> Result<()>;
    /// Leases up to `limit` pending deliveries that are due (`next_attempt_at`
    /// at or before `now`) and not leased by a live sender, oldest first.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
    /// Records a send of a delivery `owner` holds (refused with `Fenced`
    /// otherwise): the try is counted and the lease released.
    async fn finish_delivery(
        &self,
        id: DeliveryId,
        owner: &str,
        result: SendResult,
        now: DateTime<Utc>,
    ) -> Result<Delivery>;
    /// A job's deliveries, oldest first.
    async fn job_deliveries(&self, job: JobId) -> Result<Vec<Delivery>>;
    /// Records a delivery for each `duration_exceeded` action whose running
    /// job's attempt started more than its threshold before `now`, once per
    /// job and action; returns how many it recorded.
    async fn enqueue_overdue(&self, now: DateTime<Utc>) -> Result<usize>;

    // --- variables ------------------------------------------------------------------

    /// An owner's variables by key; secret ones without their value.
    async fn list_variables(&self, owner: UserId) -> Result<Vec<Variable>>;
    /// One variable with its stored value; `None` if there is none.
    async fn get_variable(
        &self,
        owner: UserId,
        key: &VariableKey,
    ) -> Result<Option<StoredVariable>>;
    /// Creates or replaces a variable (its version raised by one, from 1),
    /// under the write's expectation, with `audit` written in the same
    /// transaction (its `target_id` filled with the variable's id). A value
    /// over the size limit is `Invalid` on `value`; an unmet expectation is
    /// `Conflict { field: "expect" }`. A new variable has version 1.
    async fn set_variable(
        &self,
        owner: UserId,
        key: &VariableKey,
        write: VariableWrite,
        sealer: &dyn VariableSealer,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<Variable>;
    /// Deletes a variable; `false` if there was none (then nothing is
    /// audited).
    async fn delete_variable(
        &self,
        owner: UserId,
        key: &VariableKey,
        audit: &AuditEntry,
    ) -> Result<bool>;

    // --- workflows -----------------------------------------------------------------

    /// Stores `definition` (a validated spec's canonical JSON) as the
    /// owner's workflow `name`: a new workflow at version 1, a new version
    /// when it differs from the current one (compared as JSON values), or
    /// nothing at all when it does not. `events` are the events the nodes
    /// run (resolved by the caller); while a workflow's current version uses
    /// an event, that event cannot be deleted. An event deleted meanwhile is
    /// `NotFound { what: "event" }`. A change is audited with `audit` (its
    /// `target_id` filled with the workflow's id).
    async fn apply_workflow(
        &self,
        owner: UserId,
        name: &WorkflowName,
        definition: &serde_json::Value,
        events: &[EventId],
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(Workflow, Applied)>;
    /// Every workflow, by id.
    async fn list_workflows(&self, page: PageRequest) -> Result<Page<Workflow>>;
    async fn get_workflow(&self, id: WorkflowId) -> Result<Option<Workflow>>;
    async fn find_workflow_by_name(
        &self,
        owner: UserId,
        name: &WorkflowName,
    ) -> Result<Option<Workflow>>;
    /// One version of a workflow's definition; `None` if there is no such version.
    async fn workflow_version(
        &self,
        id: WorkflowId,
        version: u64,
    ) -> Result<Option<WorkflowVersion>>;
    /// Deletes the workflow and all its versions; `false` if there was none
    /// (then nothing is audited).
    async fn delete_workflow(&self, id: WorkflowId, audit: &AuditEntry) -> Result<bool>;
    /// Sets the workflow's webhook key (by its hash) and sealed signing
    /// secret, replacing any; `None` removes them. Audited when given.
    async fn set_workflow_hook(
        &self,
        id: WorkflowId,
        hook: Option<WorkflowHook>,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
    /// The workflow whose webhook key hashes to `key_hash`, with its sealed
    /// signing secret.
    async fn find_workflow_by_hook(
        &self,
        key_hash: &str,
    ) -> Result<Option<(Workflow, Option<Vec<u8>>)>>;
    /// Workflows whose `cron` or `every` trigger is due at `now`, soonest
    /// first, with the anchor their schedule counts from.
    async fn due_workflows(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(Workflow, DateTime<Utc>)>>;
    /// Moves the workflow's next fire from `expected` to `next`; `false`
    /// when another scheduler moved it first (or it was applied anew).
    async fn set_workflow_next_fire(
        &self,
        id: WorkflowId,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool>;

    // --- workflow runs ------------------------------------------------------------------
    /// Records a run, pinning its version and every node's event payload,
    /// under the workflow's overlap policy: `running` with its first nodes'
    /// jobs queued in the same transaction, `queued` behind an active run
    /// (overlap `queue`), `skipped` (`forbid`); `replace` cancels the active
    /// runs first. A used idempotency key or fire time answers with the run
    /// it started (`created: false`). `audit` is written when given.
    async fn start_workflow_run(
        &self,
        new: NewWorkflowRun,
        now: DateTime<Utc>,
        audit: Option<&AuditEntry>,
    ) -> Result<StartedRun>;
    async fn get_workflow_run(&self, id: WorkflowRunId) -> Result<WorkflowRun>;
    /// Newest first, without their nodes.
    async fn list_workflow_runs(
        &self,
        filter: &RunFilter,
        page: PageRequest,
    ) -> Result<Page<WorkflowRun>>;
    /// Cancels a queued or running run: pending nodes never start, queued
    /// jobs are cancelled, running ones asked to stop (returned, so this
    /// node can stop its own at once). Conflict once the run has ended.
    async fn cancel_workflow_run(
        &self,
        id: WorkflowRunId,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<(WorkflowRun, Vec<JobId>)>;
    /// A new pass of a failed or cancelled run: every node that did not
    /// succeed is decided again, and runs if its edges say so; succeeded
    /// nodes keep their jobs and outputs. Conflict unless the run ended so.
    async fn retry_workflow_run(
        &self,
        id: WorkflowRunId,
        now: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<WorkflowRun>;
    /// Brings every running run up to date with its nodes' jobs (a node
    /// whose job ended or vanished without the run hearing of it) and
    /// returns how many changed. Finishing a job advances its run in the
    /// same transaction; this repairs what that could not see.
    async fn reconcile_workflow_runs(&self, now: DateTime<Utc>) -> Result<usize>;
    /// Deletes ended runs that ended before `older_than`, keeping the newest
    /// `keep_per_workflow` ended runs of each workflow (as jobs are pruned).
    async fn prune_workflow_runs(
        &self,
        older_than: DateTime<Utc>,
        keep_per_workflow: u32,
    ) -> Result<u64>;

    // --- what a running attempt's script does (runtime helpers) -------------------
    //
    // Each checks, in the transaction that does the work, that the job is
    // running under `fence` (else `Fenced`); variables are those of the
    // job's event's owner. Writes of variables are audited with the job as
    // the actor, the key and never the value.

    /// Sets (or with `None` clears) the attempt's output; over
    /// [`cronium_core::MAX_OUTPUT_BYTES`] is `Invalid` on `output`.
    async fn attempt_set_output(
        &self,
        fence: &Fence,
        output: Option<serde_json::Value>,
    ) -> Result<()>;
    async fn attempt_set_condition(&self, fence: &Fence, condition: bool) -> Result<()>;
    async fn attempt_get_variable(
        &self,
        fence: &Fence,
        key: &VariableKey,
    ) -> Result<Option<StoredVariable>>;
    /// As [`Store::set_variable`], with `updated_by_job` set to the job.
    async fn attempt_set_variable(
        &self,
        fence: &Fence,
        key: &VariableKey,
        write: VariableWrite,
        sealer: &dyn VariableSealer,
        now: DateTime<Utc>,
    ) -> Result<Variable>;
    /// `false` if there was no such variable.
    async fn attempt_delete_variable(
        &self,
        fence: &Fence,
        key: &VariableKey,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    // --- audit --------------------------------------------------------------------

    /// Newest first.
    async fn list_audit(&self, page: PageRequest) -> Result<Page<AuditRecord>>;
}
