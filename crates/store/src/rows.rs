//! Row ↔ domain conversion shared by both backends; only the way a timestamp is stored differs between them ([`StoreRow::time`]).
//!
//! Rows are parsed into validated domain types here, once. A value the domain
//! refuses is a corrupt row: a [`StoreError::Backend`] naming the table,
//! the row and the column, never a panic. Cross-field rules
//! ([`EventSpec::validate`]) are applied on the way in, not on the way out, so
//! a stored event stays readable (and fixable) if those rules tighten later.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cronium_core::{
    ActionId, ActionSpec, ActionTarget, AuthKind, ChannelId, ChannelKind, ChannelName, ChannelSpec,
    DeliveryId, EventId, EventKind, EventName, EventSpec, EventStatus, HeaderName, HttpMethod,
    HttpSpec, JobId, JobStatus, MisfirePolicy, NodeId, NodeStatus, OverlapPolicy, PasswordHash,
    Role, RunLocation, RunPolicy, RunStatus, Schedule, SealedHeaders, SealedSecrets, ServerId,
    ServerName, ServerSpec, SessionHash, Tag, TokenId, Trigger, UserId, ValidationError, Variable,
    VariableKey, When, WorkflowId, WorkflowName, WorkflowRunId, validate_cache_dir,
};
use cronium_payload::{EnvKey, Interpreter};

use crate::{
    Action, Actor, ApiToken, AuditEntry, AuditRecord, Channel, Credentials, Delivery,
    DeliveryReason, DeliveryStatus, Event, Job, LogLine, LogStream, Node, PageRequest, PayloadFile,
    PayloadRecord, RunNode, RunTrigger, ScheduleState, Server, ServerCheck, Session, StoreError,
    StoredValue, StoredVariable, User, Workflow, WorkflowRun, WorkflowVersion,
};

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Backend(format!("migration failed: {e}"))
    }
}

/// Drops what a stored timestamp cannot hold, so the value a mutation returns
/// is the one a later read returns (both backends keep microseconds).
pub(crate) fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// A row of either backend. The plain getters come from [`primitive_getters`];
/// each backend says how it stores a timestamp.
pub(crate) trait StoreRow {
    fn int(&self, column: &str) -> Result<Option<i64>, String>;
    fn text(&self, column: &str) -> Result<Option<String>, String>;
    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, String>;
    fn boolean(&self, column: &str) -> Result<Option<bool>, String>;
    fn time(&self, column: &str) -> Result<Option<DateTime<Utc>>, String>;
}

/// The [`StoreRow`] getters that are the same `try_get` on both backends.
macro_rules! primitive_getters {
    () => {
        fn int(&self, column: &str) -> std::result::Result<Option<i64>, String> {
            sqlx::Row::try_get(self, column).map_err(|e| e.to_string())
        }
        fn text(&self, column: &str) -> std::result::Result<Option<String>, String> {
            sqlx::Row::try_get(self, column).map_err(|e| e.to_string())
        }
        fn bytes(&self, column: &str) -> std::result::Result<Option<Vec<u8>>, String> {
            sqlx::Row::try_get(self, column).map_err(|e| e.to_string())
        }
        fn boolean(&self, column: &str) -> std::result::Result<Option<bool>, String> {
            sqlx::Row::try_get(self, column).map_err(|e| e.to_string())
        }
    };
}
pub(crate) use primitive_getters;

/// Reads one row's columns, naming table, row and column in every error.
pub(crate) struct Reader<'r, R> {
    row: &'r R,
    table: &'static str,
    id: Option<i64>,
}

impl<'r, R: StoreRow> Reader<'r, R> {
    pub(crate) fn new(row: &'r R, table: &'static str) -> Self {
        Reader {
            row,
            table,
            id: None,
        }
    }

    fn corrupt(&self, column: &str, why: impl std::fmt::Display) -> StoreError {
        let row = self.id.map(|id| format!(" (id {id})")).unwrap_or_default();
        StoreError::Backend(format!(
            "corrupt row in {}{row}: column {column}: {why}",
            self.table
        ))
    }

    fn required<T>(&self, column: &str, value: Result<Option<T>, String>) -> Result<T, StoreError> {
        value
            .map_err(|e| self.corrupt(column, e))?
            .ok_or_else(|| self.corrupt(column, "unexpected NULL"))
    }

    fn optional<T>(
        &self,
        column: &str,
        value: Result<Option<T>, String>,
    ) -> Result<Option<T>, StoreError> {
        value.map_err(|e| self.corrupt(column, e))
    }

    /// Reads the id column, so later errors can name the row.
    fn id(&mut self, column: &str) -> Result<i64, StoreError> {
        let id = self.int(column)?;
        self.id = Some(id);
        Ok(id)
    }

    pub(crate) fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.required(column, self.row.int(column))
    }

    pub(crate) fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.optional(column, self.row.int(column))
    }

    pub(crate) fn text(&self, column: &str) -> Result<String, StoreError> {
        self.required(column, self.row.text(column))
    }

    pub(crate) fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.optional(column, self.row.text(column))
    }

    fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        self.required(column, self.row.bytes(column))
    }

    pub(crate) fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.optional(column, self.row.bytes(column))
    }

    pub(crate) fn boolean(&self, column: &str) -> Result<bool, StoreError> {
        self.required(column, self.row.boolean(column))
    }

    fn opt_bool(&self, column: &str) -> Result<Option<bool>, StoreError> {
        self.optional(column, self.row.boolean(column))
    }

    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        self.required(column, self.row.time(column))
    }

    pub(crate) fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.optional(column, self.row.time(column))
    }

    fn parse<T, E: std::fmt::Display>(
        &self,
        column: &str,
        f: impl FnOnce(String) -> Result<T, E>,
    ) -> Result<T, StoreError> {
        f(self.text(column)?).map_err(|e| self.corrupt(column, e))
    }

    fn unsigned(&self, column: &str) -> Result<u64, StoreError> {
        let n = self.int(column)?;
        u64::try_from(n).map_err(|_| self.corrupt(column, format!("negative value {n}")))
    }

    fn opt_unsigned(&self, column: &str) -> Result<Option<u64>, StoreError> {
        self.opt_int(column)?
            .map(|n| {
                u64::try_from(n).map_err(|_| self.corrupt(column, format!("negative value {n}")))
            })
            .transpose()
    }

    fn json<T: serde::de::DeserializeOwned>(&self, column: &str) -> Result<T, StoreError> {
        self.parse(column, |text| serde_json::from_str::<T>(&text))
    }
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn field_error(e: ValidationError) -> String {
    e.message
}

pub(crate) fn event<R>(row: &R) -> Result<Event, StoreError>
where
    R: StoreRow,
{
    let mut r = Reader::new(row, "events");
    let id = r.id("id")?;
    let kind = r.parse("kind", |t| {
        EventKind::parse(&t, "kind").map_err(field_error)
    })?;
    let interpreter = match r.opt_text("interpreter")? {
        None => None,
        Some(name) => Some(
            Interpreter::parse(&name)
                .ok_or_else(|| r.corrupt("interpreter", format!("unknown interpreter {name:?}")))?,
        ),
    };
    let env = r
        .json::<BTreeMap<String, String>>("env")?
        .into_iter()
        .map(|(k, v)| Ok((EnvKey::new(&k).map_err(|e| r.corrupt("env", e))?, v)))
        .collect::<Result<BTreeMap<_, _>, StoreError>>()?;
    let secret_names = r
        .json::<Vec<String>>("secret_env_names")?
        .iter()
        .map(|k| EnvKey::new(k).map_err(|e| r.corrupt("secret_env_names", e)))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let schedule = r
        .json::<Schedule>("schedule")?
        .validate()
        .map_err(|e| r.corrupt("schedule", e))?;
    let timeout = r.unsigned("timeout_secs")?;
    let retries = r.unsigned("retries")?;
    let target_servers = r
        .json::<Vec<i64>>("target_servers")?
        .into_iter()
        .map(ServerId)
        .collect();
    let tags = tag_set(&r, "tags")?;
    let target_tags = tag_set(&r, "target_tags")?;
    let spec = EventSpec {
        name: r.parse("name", |t| EventName::new(&t).map_err(field_error))?,
        description: r.text("description")?,
        kind,
        interpreter,
        content: r.text("content")?,
        env,
        secret_env: SealedSecrets {
            names: secret_names,
            sealed: r.bytes("secret_env")?,
        },
        schedule,
        status: r.parse("status", |t| {
            EventStatus::parse(&t, "status").map_err(field_error)
        })?,
        run_location: r.parse("run_location", |t| {
            RunLocation::parse(&t, "runLocation").map_err(field_error)
        })?,
        target_servers,
        target_tags,
        timeout: Duration::from_secs(timeout),
        retries: u32::try_from(retries).map_err(|_| r.corrupt("retries", "out of range"))?,
        tags,
        policy: run_policy(&r)?,
        http: http_spec(&r)?,
    };
    Ok(Event {
        id: EventId(id),
        owner: UserId(r.int("owner_id")?),
        spec,
        payload_version: r.opt_unsigned("payload_version")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// The `http` column of an HTTP event: the request without its secret values.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HttpColumn {
    method: HttpMethod,
    url: String,
    headers: BTreeMap<HeaderName, String>,
    body: Option<String>,
    expect_status: Vec<u16>,
    secret_header_names: BTreeSet<HeaderName>,
}

/// An HTTP event's request, checked as a whole like on the way in (a row
/// changed behind the store's back must not send a malformed request).
fn http_spec<R: StoreRow>(r: &Reader<'_, R>) -> Result<Option<HttpSpec>, StoreError> {
    let Some(text) = r.opt_text("http")? else {
        return Ok(None);
    };
    let column: HttpColumn = serde_json::from_str(&text).map_err(|e| r.corrupt("http", e))?;
    let spec = HttpSpec {
        method: column.method,
        url: column.url,
        headers: column.headers,
        secret_headers: SealedHeaders {
            names: column.secret_header_names,
            sealed: r.opt_bytes("http_secrets")?.unwrap_or_default(),
        },
        body: column.body,
        expect_status: column.expect_status,
    };
    spec.validate().map(Some).map_err(|e| r.corrupt("http", e))
}

fn http_values(spec: Option<&HttpSpec>) -> Result<(Option<String>, Option<Vec<u8>>), StoreError> {
    let Some(http) = spec else {
        return Ok((None, None));
    };
    let column = HttpColumn {
        method: http.method,
        url: http.url.clone(),
        headers: http.headers.clone(),
        body: http.body.clone(),
        expect_status: http.expect_status.clone(),
        secret_header_names: http.secret_headers.names.clone(),
    };
    let text = serde_json::to_string(&column).map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok((Some(text), Some(http.secret_headers.sealed.clone())))
}

/// The event's run policy, each column checked on its own (the cross-field
/// rules of [`RunPolicy::validate`] apply on the way in only).
fn run_policy<R: StoreRow>(r: &Reader<'_, R>) -> Result<RunPolicy, StoreError> {
    let positive = |column: &str| -> Result<Option<u32>, StoreError> {
        r.opt_int(column)?
            .map(|n| match u32::try_from(n) {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(r.corrupt(column, format!("{n} is not a positive count"))),
            })
            .transpose()
    };
    let retry_delay = r.int("retry_delay_secs")?;
    Ok(RunPolicy {
        overlap: r.parse("overlap", |t| {
            OverlapPolicy::parse(&t, "overlap").map_err(field_error)
        })?,
        misfire: r.parse("misfire", |t| {
            MisfirePolicy::parse(&t, "misfire").map_err(field_error)
        })?,
        start_at: r.opt_time("start_at")?,
        max_executions: positive("max_executions")?,
        max_concurrent: positive("max_concurrent")?,
        retry_delay: match u64::try_from(retry_delay) {
            Ok(secs) if secs > 0 => Duration::from_secs(secs),
            _ => {
                return Err(r.corrupt("retry_delay_secs", format!("{retry_delay} is not positive")));
            }
        },
    })
}

pub(crate) fn job<R>(row: &R) -> Result<Job, StoreError>
where
    R: StoreRow,
{
    let mut r = Reader::new(row, "jobs");
    let id = r.id("id")?;
    let attempt = r.int("attempt")?;
    let exit_code = r
        .opt_int("exit_code")?
        .map(|c| {
            i32::try_from(c).map_err(|_| r.corrupt("exit_code", format!("{c} is out of range")))
        })
        .transpose()?;
    let metadata: serde_json::Value = r.json("metadata")?;
    if !metadata.is_object() {
        return Err(r.corrupt("metadata", "not a JSON object"));
    }
    let output = r
        .opt_text("output")?
        .map(|text| serde_json::from_str(&text).map_err(|e| r.corrupt("output", e)))
        .transpose()?;
    Ok(Job {
        id: JobId(id),
        event_id: EventId(r.int("event_id")?),
        payload_version: r.opt_unsigned("payload_version")?,
        trigger: r.parse("trigger", |t| {
            Trigger::parse(&t, "trigger").map_err(field_error)
        })?,
        status: r.parse("status", |t| {
            JobStatus::parse(&t, "status").map_err(field_error)
        })?,
        attempt: match u32::try_from(attempt) {
            Ok(a) if a >= 1 => a,
            _ => return Err(r.corrupt("attempt", format!("{attempt} is not an attempt number"))),
        },
        scheduled_at: r.time("scheduled_at")?,
        run_after: r.time("run_after")?,
        lease_owner: r.opt_text("lease_owner")?,
        lease_expires_at: r.opt_time("lease_expires_at")?,
        cancel_requested: r.boolean("cancel_requested")?,
        started_at: r.opt_time("started_at")?,
        finished_at: r.opt_time("finished_at")?,
        exit_code,
        error: r.opt_text("error")?,
        metadata,
        output,
        condition: r.boolean("condition")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// A variable, with its stored value (in clear or sealed) beside it.
pub(crate) fn variable<R>(row: &R) -> Result<StoredVariable, StoreError>
where
    R: StoreRow,
{
    let mut r = Reader::new(row, "variables");
    r.id("id")?;
    let secret = r.boolean("secret")?;
    let stored = if secret {
        StoredValue::Sealed(r.bytes("sealed")?)
    } else {
        StoredValue::Plain(r.json("value_json")?)
    };
    Ok(StoredVariable {
        variable: Variable {
            owner: UserId(r.int("owner_id")?),
            key: r.parse("key", |t| VariableKey::new(&t).map_err(field_error))?,
            value: match &stored {
                StoredValue::Plain(value) => Some(value.clone()),
                StoredValue::Sealed(_) => None,
            },
            secret,
            version: r.unsigned("version")?,
            created_at: r.time("created_at")?,
            updated_at: r.time("updated_at")?,
            updated_by_job: r.opt_int("updated_by_job")?.map(JobId),
        },
        stored,
    })
}

/// A workflow with its current definition (`workflow` columns and `definition`).
pub(crate) fn workflow<R>(row: &R) -> Result<Workflow, StoreError>
where
    R: StoreRow,
{
    let mut r = Reader::new(row, "workflows");
    let id = r.id("id")?;
    Ok(Workflow {
        id: WorkflowId(id),
        owner: UserId(r.int("owner_id")?),
        name: r.parse("name", |t| WorkflowName::new(&t).map_err(field_error))?,
        version: r.unsigned("version")?,
        definition: r.json("definition")?,
        hook: r.opt_text("hook_key_hash")?.is_some(),
        hook_signed: r.int("hook_signed")? != 0,
        next_fire_at: r.opt_time("next_fire_at")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// What an apply needs of the current row: id, version, created_at.
pub(crate) fn workflow_head<R>(row: &R) -> Result<(WorkflowId, u64, DateTime<Utc>), StoreError>
where
    R: StoreRow,
{
    let mut r = Reader::new(row, "workflows");
    let id = r.id("id")?;
    Ok((
        WorkflowId(id),
        r.unsigned("version")?,
        r.time("created_at")?,
    ))
}

pub(crate) fn workflow_version<R>(row: &R) -> Result<WorkflowVersion, StoreError>
where
    R: StoreRow,
{
    let mut r = Reader::new(row, "workflow_versions");
    let id = r.id("workflow_id")?;
    Ok(WorkflowVersion {
        workflow: WorkflowId(id),
        version: r.unsigned("version")?,
        definition: r.json("definition")?,
        created_at: r.time("created_at")?,
    })
}

pub(crate) fn node<R>(row: &R) -> Result<Node, StoreError>
where
    R: StoreRow,
{
    let r = Reader::new(row, "nodes");
    Ok(Node {
        id: r.text("id")?,
        address: r.text("address")?,
        version: r.text("version")?,
        started_at: r.time("started_at")?,
        heartbeat_at: r.time("heartbeat_at")?,
        clock_offset_ms: r.int("clock_offset_ms")?,
        running_jobs: r.unsigned("running_jobs")?,
    })
}

/// A run without its nodes (which `run_node` reads).
pub(crate) fn workflow_run<R>(row: &R) -> Result<WorkflowRun, StoreError>
where
    R: StoreRow,
{
    let mut r = Reader::new(row, "workflow_runs");
    let id = r.id("id")?;
    let pass = r.int("pass")?;
    Ok(WorkflowRun {
        id: WorkflowRunId(id),
        workflow: WorkflowId(r.int("workflow_id")?),
        workflow_name: r.text("workflow_name")?,
        version: r.unsigned("version")?,
        status: r.parse("status", |t| {
            RunStatus::parse(&t, "status").map_err(field_error)
        })?,
        trigger: r.parse("trigger", |t| match t.as_str() {
            "manual" => Ok(RunTrigger::Manual),
            "schedule" => Ok(RunTrigger::Schedule),
            "webhook" => Ok(RunTrigger::Webhook),
            other => Err(format!("unknown trigger {other:?}")),
        })?,
        fire_at: r.opt_time("fire_at")?,
        idempotency_key: r.opt_text("idempotency_key")?,
        input: r
            .opt_text("input")?
            .map(|text| serde_json::from_str(&text).map_err(|e| r.corrupt("input", e)))
            .transpose()?,
        pass: u32::try_from(pass)
            .map_err(|_| r.corrupt("pass", format!("{pass} is out of range")))?,
        cancel_requested: r.boolean("cancel_requested")?,
        error: r.opt_text("error")?,
        created_at: r.time("created_at")?,
        started_at: r.opt_time("started_at")?,
        finished_at: r.opt_time("finished_at")?,
        updated_at: r.time("updated_at")?,
        nodes: Vec::new(),
    })
}

/// A node of a run, with its job's status and condition (joined).
pub(crate) fn run_node<R>(row: &R) -> Result<RunNode, StoreError>
where
    R: StoreRow,
{
    let r = Reader::new(row, "workflow_run_nodes");
    let pass = r.int("pass")?;
    let job = match r.opt_int("job_id")? {
        Some(id) => r
            .opt_text("job_status")?
            .map(|t| JobStatus::parse(&t, "status").map_err(|e| r.corrupt("job_status", e.message)))
            .transpose()?
            .map(|status| (JobId(id), status)),
        None => None,
    };
    Ok(RunNode {
        node: r.parse("node", |t| NodeId::new(&t).map_err(field_error))?,
        event: EventId(r.int("event_id")?),
        payload_version: r.opt_unsigned("payload_version")?,
        status: r.parse("status", |t| {
            NodeStatus::parse(&t, "status").map_err(field_error)
        })?,
        job,
        condition: job.is_some() && r.opt_bool("condition")?.unwrap_or(false),
        reason: r
            .opt_text("reason")?
            .or(if job.is_some_and(|(_, s)| s.is_terminal()) {
                r.opt_text("job_error")?
            } else {
                None
            }),
        pass: u32::try_from(pass)
            .map_err(|_| r.corrupt("pass", format!("{pass} is out of range")))?,
        started_at: r.opt_time("started_at")?,
        finished_at: r.opt_time("finished_at")?,
    })
}

pub(crate) fn log_line<R>(row: &R) -> Result<LogLine, StoreError>
where
    R: StoreRow,
{
    let r = Reader::new(row, "job_logs");
    Ok(LogLine {
        seq: r.unsigned("seq")?,
        stream: r.parse("stream", |t| {
            [LogStream::Stdout, LogStream::Stderr, LogStream::System]
                .into_iter()
                .find(|s| stream_name(*s) == t)
                .ok_or_else(|| format!("unknown stream {t:?}"))
        })?,
        at: r.time("at")?,
        data: r.bytes("data")?,
        server: r.opt_text("server")?,
    })
}

/// A log stream's name in the `stream` column.
pub(crate) fn stream_name(stream: LogStream) -> &'static str {
    match stream {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
        LogStream::System => "system",
    }
}

pub(crate) fn schedule_state<R>(row: &R) -> Result<ScheduleState, StoreError>
where
    R: StoreRow,
{
    let r = Reader::new(row, "schedule_state");
    Ok(ScheduleState {
        event_id: EventId(r.int("event_id")?),
        anchor: r.time("anchor")?,
        next_fire_at: r.opt_time("next_fire_at")?,
        fire_count: r.unsigned("fire_count")?,
    })
}

pub(crate) fn payload<R>(row: &R) -> Result<PayloadRecord, StoreError>
where
    R: StoreRow,
{
    let mut r = Reader::new(row, "runner_payloads");
    let id = r.id("id")?;
    let checksum = r.parse("checksum", |c| {
        if is_sha256_hex(&c) {
            Ok(c)
        } else {
            Err(format!("{c:?} is not 64 lowercase hex digits"))
        }
    })?;
    Ok(PayloadRecord {
        id,
        event_id: EventId(r.int("event_id")?),
        event_version: r.unsigned("event_version")?,
        payload_path: r.text("payload_path")?,
        checksum_path: r.text("checksum_path")?,
        payload_size: r.unsigned("payload_size")?,
        checksum,
        is_active: r.boolean("is_active")?,
        created_at: r.time("created_at")?,
    })
}

pub(crate) fn user<R>(row: &R) -> Result<User, StoreError>
where
    R: StoreRow,
{
    Ok(credentials(row)?.user)
}

/// A user row with its password hash (`user_columns!` reads it).
pub(crate) fn credentials<R>(row: &R) -> Result<Credentials, StoreError>
where
    R: StoreRow,
{
    let mut r = Reader::new(row, "users");
    let id = r.id("id")?;
    let password_hash = match r.opt_text("password_hash")? {
        Some(text) => Some(r.parse("password_hash", |_| {
            PasswordHash::new(text).map_err(field_error)
        })?),
        None => None,
    };
    Ok(Credentials {
        user: User {
            id: UserId(id),
            name: r.text("name")?,
            role: r.parse("role", |t| Role::parse(&t).map_err(field_error))?,
            has_password: password_hash.is_some(),
            created_at: r.time("created_at")?,
        },
        password_hash,
    })
}

pub(crate) fn session<R>(row: &R) -> Result<Session, StoreError>
where
    R: StoreRow,
{
    let r = Reader::new(row, "sessions");
    let id = r.bytes("id")?;
    let hash: [u8; 32] = id.try_into().map_err(|_| r.corrupt("id", "not 32 bytes"))?;
    Ok(Session {
        hash: SessionHash(hash),
        user_id: UserId(r.int("user_id")?),
        csrf_token: r.text("csrf_token")?,
        created_at: r.time("created_at")?,
        last_seen_at: r.time("last_seen_at")?,
        expires_at: r.time("expires_at")?,
    })
}

pub(crate) fn token<R>(row: &R) -> Result<ApiToken, StoreError>
where
    R: StoreRow,
{
    let mut r = Reader::new(row, "api_tokens");
    let id = r.id("id")?;
    Ok(ApiToken {
        id: TokenId(id),
        user_id: UserId(r.int("user_id")?),
        name: r.text("name")?,
        role: r.parse("role", |t| Role::parse(&t).map_err(field_error))?,
        created_at: r.time("created_at")?,
        last_used_at: r.opt_time("last_used_at")?,
        revoked_at: r.opt_time("revoked_at")?,
    })
}

/// A JSON array of tags (aggregated by `Backend::json_array`), each checked.
fn tag_set<R: StoreRow>(r: &Reader<'_, R>, column: &str) -> Result<BTreeSet<Tag>, StoreError> {
    r.json::<Vec<String>>(column)?
        .iter()
        .map(|t| Tag::new(t).map_err(|e| r.corrupt(column, e.message)))
        .collect()
}

pub(crate) fn server<R>(row: &R) -> Result<Server, StoreError>
where
    R: StoreRow,
{
    let mut r = Reader::new(row, "servers");
    let id = r.id("id")?;
    let port = r.int("port")?;
    let spec = ServerSpec {
        name: r.parse("name", |t| ServerName::new(&t).map_err(field_error))?,
        host: r.text("host")?,
        port: u16::try_from(port)
            .map_err(|_| r.corrupt("port", format!("{port} is not a port")))?,
        username: r.text("username")?,
        auth_kind: r.parse("auth_kind", |t| AuthKind::parse(&t).map_err(field_error))?,
        sealed_credentials: r.bytes("sealed_credentials")?,
        known_host: r.opt_text("known_host")?,
        // Checked on read as well: the value reaches shell commands on the
        // host, so a row changed behind the store's back must not get there.
        cache_dir: r
            .opt_text("cache_dir")?
            .map(|dir| {
                validate_cache_dir(&dir)
                    .map(|()| dir)
                    .map_err(|e| r.corrupt("cache_dir", e.message))
            })
            .transpose()?,
        tags: tag_set(&r, "tags")?,
    };
    let last_check = match r.opt_time("last_check_at")? {
        None => None,
        Some(at) => Some(ServerCheck {
            at,
            ok: r.boolean("last_check_ok")?,
            message: r.opt_text("last_check_message")?.unwrap_or_default(),
            fingerprint: r.opt_text("last_check_fingerprint")?,
        }),
    };
    Ok(Server {
        id: ServerId(id),
        spec,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        last_check,
    })
}

pub(crate) fn channel<R: StoreRow>(row: &R) -> Result<Channel, StoreError> {
    let mut r = Reader::new(row, "channels");
    let id = r.id("id")?;
    let spec = ChannelSpec {
        name: r.parse("name", |t| ChannelName::new(&t).map_err(field_error))?,
        kind: r.parse("kind", |t| {
            ChannelKind::parse(&t, "kind").map_err(field_error)
        })?,
        url: r.text("url")?,
        sealed_secret: r.bytes("sealed_secret")?,
        email: r
            .opt_text("settings")?
            .map(|text| serde_json::from_str(&text).map_err(|e| r.corrupt("settings", e)))
            .transpose()?,
    };
    Ok(Channel {
        id: ChannelId(id),
        spec: spec.validate().map_err(|e| r.corrupt("url", e))?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

pub(crate) fn action<R: StoreRow>(row: &R) -> Result<Action, StoreError> {
    let mut r = Reader::new(row, "event_actions");
    let id = r.id("id")?;
    let when = r.parse("fire_when", |t| {
        When::parse(&t, "when").map_err(field_error)
    })?;
    let target = match r.text("kind")?.as_str() {
        "notify" => ActionTarget::Notify(ChannelId(r.int("channel_id")?)),
        "run_event" => ActionTarget::RunEvent(EventId(r.int("target_event_id")?)),
        other => return Err(r.corrupt("kind", format!("unknown action kind {other:?}"))),
    };
    let after_secs = r
        .opt_int("after_secs")?
        .map(|s| u64::try_from(s).map_err(|_| r.corrupt("after_secs", "out of range")))
        .transpose()?;
    let spec =
        ActionSpec::new(when, after_secs, target).map_err(|e| r.corrupt("fire_when", e.message))?;
    Ok(Action {
        id: ActionId(id),
        event_id: EventId(r.int("event_id")?),
        spec,
        created_at: r.time("created_at")?,
    })
}

pub(crate) fn delivery<R: StoreRow>(row: &R) -> Result<Delivery, StoreError> {
    let mut r = Reader::new(row, "deliveries");
    let id = r.id("id")?;
    let status = r.parse("status", |t| match t.as_str() {
        "pending" => Ok(DeliveryStatus::Pending),
        "delivered" => Ok(DeliveryStatus::Delivered),
        "failed" => Ok(DeliveryStatus::Failed),
        other => Err(format!("unknown delivery status {other:?}")),
    })?;
    let reason = r.parse("reason", |t| match t.as_str() {
        "end" => Ok(DeliveryReason::End),
        "start" => Ok(DeliveryReason::Start),
        "duration_exceeded" => Ok(DeliveryReason::DurationExceeded),
        other => Err(format!("unknown delivery reason {other:?}")),
    })?;
    let attempts = r.unsigned("attempts")?;
    let last_status = r
        .opt_int("last_status")?
        .map(|s| {
            u16::try_from(s)
                .map_err(|_| r.corrupt("last_status", format!("{s} is not an HTTP status")))
        })
        .transpose()?;
    Ok(Delivery {
        id: DeliveryId(id),
        job_id: JobId(r.int("job_id")?),
        reason,
        channel_id: ChannelId(r.int("channel_id")?),
        action_id: r.opt_int("action_id")?.map(ActionId),
        status,
        attempts: u32::try_from(attempts).map_err(|_| r.corrupt("attempts", "out of range"))?,
        next_attempt_at: r.time("next_attempt_at")?,
        last_status,
        last_error: r.opt_text("last_error")?,
        delivered_at: r.opt_time("delivered_at")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

pub(crate) fn audit<R>(row: &R) -> Result<AuditRecord, StoreError>
where
    R: StoreRow,
{
    let mut r = Reader::new(row, "audit_log");
    let id = r.id("id")?;
    Ok(AuditRecord {
        id,
        entry: AuditEntry {
            at: r.time("at")?,
            actor: match (
                r.opt_int("actor_token_id")?,
                r.opt_int("actor_user_id")?,
                r.opt_int("actor_job_id")?,
            ) {
                (Some(token), _, _) => Some(Actor::Token(TokenId(token))),
                (None, Some(user), _) => Some(Actor::User(UserId(user))),
                (None, None, Some(job)) => Some(Actor::Job(JobId(job))),
                (None, None, None) => None,
            },
            action: r.text("action")?,
            target_type: r.text("target_type")?,
            target_id: r.opt_int("target_id")?,
            detail: r.json("detail")?,
        },
    })
}

/// An event spec flattened into the values its columns hold.
pub(crate) struct EventValues {
    pub name: String,
    pub name_folded: String,
    pub description: String,
    pub kind: &'static str,
    pub interpreter: Option<&'static str>,
    pub content: String,
    pub env: String,
    pub secret_env_names: String,
    pub secret_env: Vec<u8>,
    pub schedule: String,
    pub status: &'static str,
    pub run_location: &'static str,
    pub timeout_secs: i64,
    pub retries: i64,
    pub target_servers: Vec<i64>,
    pub tags: Vec<String>,
    pub target_tags: Vec<String>,
    pub overlap: &'static str,
    pub misfire: &'static str,
    pub start_at: Option<DateTime<Utc>>,
    pub max_executions: Option<i64>,
    pub max_concurrent: Option<i64>,
    pub retry_delay_secs: i64,
    pub http: Option<String>,
    pub http_secrets: Option<Vec<u8>>,
}

/// Validates `spec` as a whole (the store never holds an invalid event, whoever
/// built the spec) and flattens it for binding.
pub(crate) fn event_values(spec: EventSpec) -> Result<(EventSpec, EventValues), StoreError> {
    let mut spec = spec.validate()?;
    // The columns hold whole seconds; refuse rather than round silently.
    if spec.timeout.subsec_nanos() != 0 {
        return Err(ValidationError::new("timeout", "must be a whole number of seconds").into());
    }
    if spec.policy.retry_delay.subsec_nanos() != 0 {
        return Err(ValidationError::new("retryDelay", "must be a whole number of seconds").into());
    }
    // Stored with microseconds, like every time: what is returned is what a
    // later read gives.
    spec.policy.start_at = spec.policy.start_at.map(truncate);
    let json = |v: serde_json::Result<String>| v.map_err(|e| StoreError::Backend(e.to_string()));
    let env: BTreeMap<&str, &str> = spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let secret_names: Vec<&str> = spec.secret_env.names.iter().map(EnvKey::as_str).collect();
    let (http, http_secrets) = http_values(spec.http.as_ref())?;
    let values = EventValues {
        name: spec.name.as_str().to_string(),
        name_folded: spec.name.as_str().to_lowercase(),
        description: spec.description.clone(),
        kind: spec.kind.as_str(),
        interpreter: spec.interpreter.map(Interpreter::as_str),
        content: spec.content.clone(),
        env: json(serde_json::to_string(&env))?,
        secret_env_names: json(serde_json::to_string(&secret_names))?,
        secret_env: spec.secret_env.sealed.clone(),
        schedule: json(serde_json::to_string(&spec.schedule))?,
        status: spec.status.as_str(),
        run_location: spec.run_location.as_str(),
        timeout_secs: i64::try_from(spec.timeout.as_secs())
            .map_err(|_| ValidationError::new("timeout", "too long"))?,
        retries: i64::from(spec.retries),
        target_servers: spec.target_servers.iter().map(|s| s.0).collect(),
        tags: spec.tags.iter().map(|t| t.as_str().to_string()).collect(),
        target_tags: spec
            .target_tags
            .iter()
            .map(|t| t.as_str().to_string())
            .collect(),
        overlap: spec.policy.overlap.as_str(),
        misfire: spec.policy.misfire.as_str(),
        start_at: spec.policy.start_at,
        max_executions: spec.policy.max_executions.map(i64::from),
        max_concurrent: spec.policy.max_concurrent.map(i64::from),
        retry_delay_secs: i64::try_from(spec.policy.retry_delay.as_secs())
            .map_err(|_| ValidationError::new("retryDelay", "too long"))?,
        http,
        http_secrets,
    };
    Ok((spec, values))
}

/// The needle for a case-insensitive name search, folded like `name_folded`.
pub(crate) fn name_needle(text: &str) -> String {
    text.to_lowercase()
}

/// `limit` and `offset` as SQL integers, the limit capped at the maximum.
pub(crate) fn page_bounds(page: PageRequest) -> (i64, i64) {
    let limit = page.limit.min(PageRequest::MAX_LIMIT);
    (
        i64::from(limit),
        i64::try_from(page.offset).unwrap_or(i64::MAX),
    )
}

pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The audit entry as it is written: its time truncated like every stored
/// timestamp, and the new object's id filled in when the caller could not know it.
pub(crate) fn audit_entry(entry: &AuditEntry, created_id: Option<i64>) -> AuditEntry {
    let mut entry = entry.clone();
    entry.at = truncate(entry.at);
    if entry.target_id.is_none() {
        entry.target_id = created_id;
    }
    entry
}

/// Adds the new payload version to an update's audit detail, since the caller
/// cannot know it in advance.
pub(crate) fn with_payload_version(mut entry: AuditEntry, version: Option<u64>) -> AuditEntry {
    if let Some(v) = version {
        match &mut entry.detail {
            serde_json::Value::Object(map) => {
                map.insert("payloadVersion".into(), v.into());
            }
            serde_json::Value::Null => {
                entry.detail = serde_json::json!({ "payloadVersion": v });
            }
            _ => {}
        }
    }
    entry
}

/// The caller's entry for a prune, with the versions it removed added to the
/// detail (like [`with_payload_version`], the caller cannot know them).
pub(crate) fn prune_audit(
    entry: &AuditEntry,
    event: EventId,
    pruned: &[PayloadRecord],
) -> AuditEntry {
    let mut entry = audit_entry(entry, Some(event.0));
    let versions: Vec<u64> = pruned.iter().map(|p| p.event_version).collect();
    match &mut entry.detail {
        serde_json::Value::Object(map) => {
            map.insert("versions".into(), versions.into());
        }
        serde_json::Value::Null => entry.detail = serde_json::json!({ "versions": versions }),
        _ => {}
    }
    entry
}

/// The stored `last_used_at` below which [`crate::Store::use_token`] records
/// a new use: anything at or after it is recent enough to leave alone.
pub(crate) fn token_use_threshold(now: DateTime<Utc>) -> DateTime<Utc> {
    truncate(now) - crate::TOKEN_USE_RESOLUTION
}

/// Whether a token's stored use is older than `threshold` (or missing), so
/// this use must be recorded: the same test as the conditional UPDATE's.
/// The oldest `last_seen_at` a session in use may keep: an older one is
/// brought up to `now`.
pub(crate) fn session_seen_threshold(now: DateTime<Utc>) -> DateTime<Utc> {
    truncate(now) - crate::SESSION_SEEN_RESOLUTION
}

pub(crate) fn token_use_is_stale(token: &ApiToken, threshold: DateTime<Utc>) -> bool {
    token.last_used_at.is_none_or(|at| at < threshold)
}

/// The version after everything ever recorded for an event: the high-water
/// mark survives pruning, and the active version is counted in case a row
/// predates the mark.
pub(crate) fn next_version(last_recorded: i64, active: Option<u64>) -> u64 {
    u64::try_from(last_recorded)
        .unwrap_or(0)
        .max(active.unwrap_or(0))
        + 1
}

/// What a writer reported, checked before it becomes a row: a bad checksum
/// here would otherwise only show up when a runner refuses the payload.
pub(crate) fn check_payload_file(file: &PayloadFile) -> Result<i64, StoreError> {
    if !is_sha256_hex(&file.checksum) {
        return Err(StoreError::Payload(format!(
            "the writer returned a malformed checksum {:?}",
            file.checksum
        )));
    }
    if file.payload_path.is_empty() || file.checksum_path.is_empty() {
        return Err(StoreError::Payload(
            "the writer returned an empty path".into(),
        ));
    }
    i64::try_from(file.payload_size).map_err(|_| {
        StoreError::Payload(format!(
            "payload size {} is out of range",
            file.payload_size
        ))
    })
}

pub(crate) fn name_conflict(what: &str, name: &str) -> StoreError {
    StoreError::Conflict {
        field: "name".into(),
        message: format!("{what} {name:?} already exists"),
    }
}

pub(crate) fn unknown_server(id: i64) -> StoreError {
    ValidationError::new("targetServers", format!("no server with id {id}")).into()
}

pub(crate) fn last_admin() -> StoreError {
    StoreError::Conflict {
        field: "name".into(),
        message: "this is the last admin; make another user admin first, or no one could manage the server".into(),
    }
}

pub(crate) fn user_owns_events(events: i64) -> StoreError {
    StoreError::Conflict {
        field: "name".into(),
        message: format!(
            "the user owns {events} event{}; delete them first",
            if events == 1 { "" } else { "s" }
        ),
    }
}

pub(crate) fn server_in_use(events: i64) -> StoreError {
    StoreError::Conflict {
        field: "targetServers".into(),
        message: format!(
            "the server is a target of {events} event{}; remove it from them first",
            if events == 1 { "" } else { "s" }
        ),
    }
}

/// Which unique rule a violation broke, from the constraint name (PostgreSQL)
/// or the message listing the columns (SQLite, which names no constraint).
pub(crate) fn unique_violation(e: &sqlx::Error) -> Option<&'static str> {
    let db = e.as_database_error()?;
    if !db.is_unique_violation() {
        return None;
    }
    let said = format!("{} {}", db.constraint().unwrap_or(""), db.message());
    [
        (
            "events_owner_name_unique",
            "events.owner_id, events.name",
            "events.name",
        ),
        ("servers_name_unique", "servers.name", "servers.name"),
        ("channels_name_unique", "channels.name", "channels.name"),
        (
            "api_tokens_hash_unique",
            "api_tokens.hash",
            "api_tokens.hash",
        ),
        ("users_name_key", "users.name", "users.name"),
    ]
    .into_iter()
    .find(|(pg, lite, _)| said.contains(pg) || said.contains(lite))
    .map(|(_, _, which)| which)
}

/// SQLite reports `ON DELETE RESTRICT` as a trigger constraint (extended code
/// 1811), which sqlx does not classify, with the same message as other
/// foreign-key failures.
pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|db| {
        db.is_foreign_key_violation() || db.message().contains("FOREIGN KEY constraint failed")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_continue_above_everything_recorded() {
        assert_eq!(next_version(0, None), 1);
        assert_eq!(next_version(6, Some(6)), 7);
        // Pruned rows are gone but the high-water mark remembers them.
        assert_eq!(next_version(9, Some(4)), 10);
        // A row older than the mark column still counts.
        assert_eq!(next_version(0, Some(3)), 4);
    }

    #[test]
    fn the_new_version_joins_the_callers_detail() {
        let entry = |detail| AuditEntry {
            at: Utc::now(),
            actor: None,
            action: "event.update".into(),
            target_type: "event".into(),
            target_id: None,
            detail,
        };
        let with = |d| with_payload_version(entry(d), Some(2)).detail;
        assert_eq!(
            with(serde_json::json!({ "name": "x" })),
            serde_json::json!({ "name": "x", "payloadVersion": 2 })
        );
        assert_eq!(
            with(serde_json::Value::Null),
            serde_json::json!({ "payloadVersion": 2 })
        );
        assert_eq!(
            with(serde_json::json!([1])),
            serde_json::json!([1]),
            "left alone"
        );
        let none = with_payload_version(entry(serde_json::json!({})), None);
        assert_eq!(none.detail, serde_json::json!({}));
    }
}
