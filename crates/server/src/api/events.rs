//! `/api/v1/events`: events and their payload versions.
//!
//! Input is parsed field by field into domain types (each error names its
//! field), secret values are sealed at once, and the whole spec is checked by
//! `EventSpec::validate`. Mutations that touch payload files run in a task of
//! their own, so a client that hangs up cannot cancel them halfway between
//! the database and the disk.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cronium_core::http::check_header_value;
use cronium_core::schedule::{format_interval, parse_interval};
use cronium_core::{
    EventId, EventKind, EventName, EventSpec, EventStatus, HeaderName, HttpMethod, HttpSpec,
    JobStatus, MisfirePolicy, OverlapPolicy, RunLocation, RunPolicy, Schedule, SealedHeaders,
    SealedSecrets, ServerId, Tag, Trigger, ValidationError,
};
use cronium_payload::manifest::check_env_value;
use cronium_payload::{EnvKey, Interpreter, Sha256Digest};
use cronium_store::{
    AuditEntry, Event, EventFilter, Job, NewJob, PayloadRecord, ScheduleState, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{PageBody, no_content, page, parse_time};
use crate::error::{ApiError, JsonBody, PathParams, QueryParams, parse_optional_json};
use crate::state::AppState;
use crate::tokens::{Caller, Editor, Viewer};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The fields of `POST` (all but `name` optional) and `PATCH` (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventFields {
    pub name: Option<String>,
    pub description: Option<String>,
    pub kind: Option<String>,
    pub interpreter: Option<String>,
    pub content: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    pub secret_env: Option<BTreeMap<String, String>>,
    pub schedule: Option<ScheduleFields>,
    pub status: Option<String>,
    pub run_location: Option<String>,
    pub target_servers: Option<Vec<i64>>,
    /// Servers by tag, resolved when each job starts.
    pub target_tags: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub tags: Option<Vec<String>>,
    pub overlap: Option<String>,
    pub misfire: Option<String>,
    /// `null` clears these three, so absent (`None`) and null
    /// (`Some(Value::Null)`) must differ: plain `Option` would merge them.
    #[serde(default, deserialize_with = "present")]
    pub start_at: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    pub max_executions: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    pub max_concurrent: Option<serde_json::Value>,
    pub retry_delay: Option<String>,
    /// The request of an HTTP event (`kind: "http"`, implied when given).
    pub http: Option<HttpFields>,
}

/// An HTTP event's request as sent. On `PATCH` it replaces the request
/// whole, except `secretHeaders`: absent keeps the stored ones (they are
/// write-only, so a client cannot send them back), `{}` clears them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFields {
    pub method: Option<String>,
    pub url: String,
    pub headers: Option<BTreeMap<String, String>>,
    pub secret_headers: Option<BTreeMap<String, String>>,
    pub body: Option<String>,
    pub expect_status: Option<Vec<u16>>,
}

/// A one-shot set to a time already gone would never fire: refused, rather
/// than accepted and silently never run.
pub(crate) fn not_in_the_past(schedule: Schedule) -> Result<Schedule, ApiError> {
    match schedule {
        Schedule::At { at } if at <= crate::now() => Err(ApiError::invalid(
            "schedule.at",
            format!(
                "{} is in the past; a one-shot schedule must be in the future",
                at.to_rfc3339()
            ),
        )),
        other => Ok(other),
    }
}

/// A field that was sent, null included.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// A schedule as sent: `{"type": "manual" | "cron" | "every" | "at", …}`.
/// Parsed by hand rather than by serde so each mistake is a 422 naming the
/// field (`schedule.cron`, `schedule.timezone`, …).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFields {
    #[serde(rename = "type")]
    pub kind: String,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub every: Option<String>,
    pub at: Option<String>,
}

/// Parsed, typed changes: `None` means "not given".
#[derive(Debug, Default)]
struct Changes {
    name: Option<EventName>,
    description: Option<String>,
    kind: Option<EventKind>,
    interpreter: Option<Interpreter>,
    content: Option<String>,
    env: Option<BTreeMap<EnvKey, String>>,
    secret_env: Option<SealedSecrets>,
    schedule: Option<Schedule>,
    status: Option<EventStatus>,
    run_location: Option<RunLocation>,
    target_servers: Option<Vec<ServerId>>,
    target_tags: Option<BTreeSet<Tag>>,
    timeout: Option<Duration>,
    retries: Option<u32>,
    tags: Option<BTreeSet<Tag>>,
    overlap: Option<OverlapPolicy>,
    misfire: Option<MisfirePolicy>,
    start_at: Option<Option<DateTime<Utc>>>,
    max_executions: Option<Option<u32>>,
    max_concurrent: Option<Option<u32>>,
    retry_delay: Option<Duration>,
    http: Option<HttpChange>,
}

/// A new request; `secret_headers: None` keeps the stored secret headers.
#[derive(Debug)]
struct HttpChange {
    request: HttpSpec,
    secret_headers: Option<SealedHeaders>,
}

impl HttpChange {
    fn parse(fields: HttpFields, state: &AppState) -> Result<HttpChange, ApiError> {
        let headers = |map: BTreeMap<String, String>, field: &str| {
            map.into_iter()
                .map(|(k, v)| {
                    let name = HeaderName::new(&k, field)?;
                    check_header_value(&v)
                        .map_err(|m| ApiError::invalid(format!("{field}.{k}"), m))?;
                    Ok((name, v))
                })
                .collect::<Result<BTreeMap<_, _>, ApiError>>()
        };
        let request = HttpSpec {
            method: HttpMethod::parse(fields.method.as_deref().unwrap_or("GET"), "http.method")?,
            url: fields.url,
            headers: headers(fields.headers.unwrap_or_default(), "http.headers")?,
            secret_headers: SealedHeaders::default(),
            body: fields.body,
            expect_status: fields.expect_status.unwrap_or_default(),
        };
        // Refused where it points now (a literal address, or a name that
        // resolves to one); the executor checks again at every run.
        state
            .http_guard
            .check_url(&request.url)
            .map_err(|refused| ApiError::invalid("http.url", refused.to_string()))?;
        let secret_headers = fields
            .secret_headers
            .map(|map| headers(map, "http.secretHeaders"))
            .transpose()?
            .map(|map| state.sealer.seal_headers(&map));
        Ok(HttpChange {
            request,
            secret_headers,
        })
    }

    /// The request, keeping `current`'s secret headers unless new ones were given.
    fn spec(&self, current: Option<&HttpSpec>) -> HttpSpec {
        let secret_headers = match &self.secret_headers {
            Some(given) => given.clone(),
            None => current
                .map(|http| http.secret_headers.clone())
                .unwrap_or_default(),
        };
        HttpSpec {
            secret_headers,
            ..self.request.clone()
        }
    }
}

impl Changes {
    fn parse(fields: EventFields, state: &AppState) -> Result<Changes, ApiError> {
        let env_map = |map: BTreeMap<String, String>, field: &str| {
            map.into_iter()
                .map(|(k, v)| {
                    let key = EnvKey::new(&k).map_err(|m| ApiError::invalid(field, m))?;
                    check_env_value(&v)
                        .map_err(|m| ApiError::invalid(format!("{field}.{k}"), m))?;
                    Ok((key, v))
                })
                .collect::<Result<BTreeMap<_, _>, ApiError>>()
        };
        Ok(Changes {
            name: fields.name.as_deref().map(EventName::new).transpose()?,
            description: fields.description,
            kind: fields
                .kind
                .as_deref()
                .map(|k| EventKind::parse(k, "kind"))
                .transpose()?,
            interpreter: fields
                .interpreter
                .as_deref()
                .map(|name| {
                    Interpreter::parse(name).ok_or_else(|| {
                        ApiError::invalid(
                            "interpreter",
                            format!("unknown interpreter {name:?} (expected bash, python or node)"),
                        )
                    })
                })
                .transpose()?,
            content: fields.content,
            env: fields.env.map(|m| env_map(m, "env")).transpose()?,
            secret_env: fields
                .secret_env
                .map(|m| env_map(m, "secretEnv"))
                .transpose()?
                .map(|m| state.sealer.seal_env(&m)),
            schedule: fields
                .schedule
                .map(parse_schedule)
                .transpose()?
                .map(not_in_the_past)
                .transpose()?,
            status: fields
                .status
                .as_deref()
                .map(|s| EventStatus::parse(s, "status"))
                .transpose()?,
            run_location: fields
                .run_location
                .as_deref()
                .map(|s| RunLocation::parse(s, "runLocation"))
                .transpose()?,
            target_servers: fields
                .target_servers
                .map(|ids| ids.into_iter().map(ServerId).collect()),
            target_tags: fields
                .target_tags
                .map(|tags| {
                    tags.iter()
                        .map(|t| {
                            Tag::new(t).map_err(|e| ValidationError::new("targetTags", e.message))
                        })
                        .collect::<Result<_, _>>()
                })
                .transpose()?,
            timeout: fields
                .timeout
                .as_deref()
                .map(|t| parse_interval(t).map_err(|m| ApiError::invalid("timeout", m)))
                .transpose()?,
            retries: fields.retries,
            tags: fields
                .tags
                .map(|tags| tags.iter().map(|t| Tag::new(t)).collect::<Result<_, _>>())
                .transpose()?,
            overlap: fields
                .overlap
                .as_deref()
                .map(|s| OverlapPolicy::parse(s, "overlap"))
                .transpose()?,
            misfire: fields
                .misfire
                .as_deref()
                .map(|s| MisfirePolicy::parse(s, "misfire"))
                .transpose()?,
            start_at: fields
                .start_at
                .map(|v| {
                    nullable(
                        v,
                        "startAt",
                        |v| v.as_str().and_then(|t| parse_time(t, "startAt").ok()),
                        "an RFC 3339 time",
                    )
                })
                .transpose()?,
            max_executions: fields
                .max_executions
                .map(|v| nullable(v, "maxExecutions", count, "a whole number"))
                .transpose()?,
            max_concurrent: fields
                .max_concurrent
                .map(|v| nullable(v, "maxConcurrent", count, "a whole number"))
                .transpose()?,
            retry_delay: fields
                .retry_delay
                .as_deref()
                .map(|t| parse_interval(t).map_err(|m| ApiError::invalid("retryDelay", m)))
                .transpose()?,
            http: fields
                .http
                .map(|h| HttpChange::parse(h, state))
                .transpose()?,
        })
    }

    /// A new event from these fields and the defaults.
    fn into_spec(self) -> Result<EventSpec, ApiError> {
        let mut policy = RunPolicy::default();
        self.apply_policy(&mut policy);
        let name = self
            .name
            .ok_or_else(|| ApiError::invalid("name", "required"))?;
        let target_servers = self.target_servers.unwrap_or_default();
        let target_tags = self.target_tags.unwrap_or_default();
        let untargeted = target_servers.is_empty() && target_tags.is_empty();
        let run_location = self.run_location.unwrap_or(if untargeted {
            RunLocation::Local
        } else {
            RunLocation::Remote
        });
        let spec = EventSpec {
            name,
            description: self.description.unwrap_or_default(),
            kind: self.kind.unwrap_or(match self.http {
                Some(_) => EventKind::Http,
                None => EventKind::Script,
            }),
            interpreter: self.interpreter,
            content: self.content.unwrap_or_default(),
            env: self.env.unwrap_or_default(),
            secret_env: self.secret_env.unwrap_or_default(),
            schedule: self.schedule.unwrap_or(Schedule::Manual),
            status: self.status.unwrap_or(EventStatus::Active),
            run_location,
            target_servers,
            target_tags,
            timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
            retries: self.retries.unwrap_or(0),
            tags: self.tags.unwrap_or_default(),
            policy,
            http: self.http.as_ref().map(|h| h.spec(None)),
        };
        // Well-formed maps that clash: a 409, as PATCH answers a clash
        // with the stored secrets.
        spec.env_clash()
            .map_err(|v| ApiError::conflict(v.field, v.message))?;
        Ok(spec.validate()?)
    }

    /// `current` with these changes applied, checked as a whole.
    fn apply(&self, current: &EventSpec) -> Result<EventSpec, ValidationError> {
        let mut spec = current.clone();
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(value) = &self.$field {
                    spec.$field = value.clone();
                }
            )*};
        }
        set!(
            name,
            description,
            kind,
            content,
            env,
            secret_env,
            schedule,
            status,
            timeout,
            retries,
            tags
        );
        if let Some(interpreter) = self.interpreter {
            spec.interpreter = Some(interpreter);
        }
        if let Some(servers) = &self.target_servers {
            spec.target_servers = servers.clone();
        }
        if let Some(tags) = &self.target_tags {
            spec.target_tags = tags.clone();
        }
        // Giving servers or tags without a location implies where it runs.
        if (self.target_servers.is_some() || self.target_tags.is_some())
            && self.run_location.is_none()
        {
            spec.run_location = if spec.target_servers.is_empty() && spec.target_tags.is_empty() {
                RunLocation::Local
            } else {
                RunLocation::Remote
            };
        }
        if let Some(location) = self.run_location {
            spec.run_location = location;
        }
        if let Some(http) = &self.http {
            spec.http = Some(http.spec(current.http.as_ref()));
            spec.kind = self.kind.unwrap_or(EventKind::Http);
        }
        // A script event's payload history and an HTTP event's request do
        // not turn into each other.
        if spec.kind != current.kind {
            return Err(ValidationError::new(
                "kind",
                format!(
                    "a {} event cannot become a {} event; create a new event",
                    current.kind, spec.kind
                ),
            ));
        }
        self.apply_policy(&mut spec.policy);
        spec.validate()
    }

    fn apply_policy(&self, policy: &mut RunPolicy) {
        if let Some(overlap) = self.overlap {
            policy.overlap = overlap;
        }
        if let Some(misfire) = self.misfire {
            policy.misfire = misfire;
        }
        if let Some(start_at) = self.start_at {
            policy.start_at = start_at;
        }
        if let Some(max) = self.max_executions {
            policy.max_executions = max;
        }
        if let Some(max) = self.max_concurrent {
            policy.max_concurrent = max;
        }
        if let Some(delay) = self.retry_delay {
            policy.retry_delay = delay;
        }
    }

    /// The API names of the fields given, for the audit log (never values).
    fn field_names(&self) -> Vec<&'static str> {
        let given = [
            ("name", self.name.is_some()),
            ("description", self.description.is_some()),
            ("kind", self.kind.is_some()),
            ("interpreter", self.interpreter.is_some()),
            ("content", self.content.is_some()),
            ("env", self.env.is_some()),
            ("secretEnv", self.secret_env.is_some()),
            ("schedule", self.schedule.is_some()),
            ("status", self.status.is_some()),
            ("runLocation", self.run_location.is_some()),
            ("targetServers", self.target_servers.is_some()),
            ("targetTags", self.target_tags.is_some()),
            ("timeout", self.timeout.is_some()),
            ("retries", self.retries.is_some()),
            ("tags", self.tags.is_some()),
            ("overlap", self.overlap.is_some()),
            ("misfire", self.misfire.is_some()),
            ("startAt", self.start_at.is_some()),
            ("maxExecutions", self.max_executions.is_some()),
            ("maxConcurrent", self.max_concurrent.is_some()),
            ("retryDelay", self.retry_delay.is_some()),
            ("http", self.http.is_some()),
        ];
        given.iter().filter(|(_, g)| *g).map(|(n, _)| *n).collect()
    }
}

/// A field where `null` means "clear it": `Some(None)` for null, else the
/// value `parse` makes of it (`what` names the expected form in the error).
fn nullable<T>(
    value: serde_json::Value,
    field: &str,
    parse: impl Fn(&serde_json::Value) -> Option<T>,
    what: &str,
) -> Result<Option<T>, ApiError> {
    if value.is_null() {
        return Ok(None);
    }
    parse(&value)
        .map(Some)
        .ok_or_else(|| ApiError::invalid(field, format!("expected {what} or null, got {value}")))
}

fn count(value: &serde_json::Value) -> Option<u32> {
    value.as_u64().and_then(|n| u32::try_from(n).ok())
}

pub(crate) fn parse_schedule(fields: ScheduleFields) -> Result<Schedule, ApiError> {
    let required = |field: &str| ApiError::invalid(field, "required for this schedule type");
    match fields.kind.as_str() {
        "manual" => Ok(Schedule::Manual),
        "cron" => {
            let cron = fields.cron.ok_or_else(|| required("schedule.cron"))?;
            let timezone = fields.timezone.as_deref().unwrap_or("UTC");
            Ok(Schedule::cron(&cron, timezone)?)
        }
        "every" => {
            let every = fields.every.ok_or_else(|| required("schedule.every"))?;
            Ok(Schedule::every(&every)?)
        }
        "at" => {
            let at = fields.at.ok_or_else(|| required("schedule.at"))?;
            Ok(Schedule::At {
                at: parse_time(&at, "schedule.at")?,
            })
        }
        other => Err(ApiError::invalid(
            "schedule.type",
            format!("unknown schedule type {other:?} (expected manual, cron, every or at)"),
        )),
    }
}

/// Target servers must exist when named (the store also refuses to delete a
/// server an event targets).
async fn check_servers(state: &AppState, servers: &[ServerId]) -> Result<(), ApiError> {
    for id in servers {
        match state.store.get_server(*id).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                // Well-formed, but no such server now: the state refuses it.
                return Err(ApiError::conflict(
                    "targetServers",
                    format!("no server with id {id}"),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub kind: &'static str,
    pub interpreter: Option<&'static str>,
    pub content: String,
    pub env: BTreeMap<String, String>,
    /// Names only: secret values never leave the server.
    pub secret_env_keys: Vec<String>,
    pub schedule: Schedule,
    pub status: &'static str,
    pub run_location: &'static str,
    pub target_servers: Vec<i64>,
    pub target_tags: Vec<String>,
    pub timeout: String,
    pub retries: u32,
    pub tags: Vec<String>,
    pub overlap: OverlapPolicy,
    pub misfire: MisfirePolicy,
    pub start_at: Option<DateTime<Utc>>,
    pub max_executions: Option<u32>,
    pub max_concurrent: Option<u32>,
    pub retry_delay: String,
    pub payload_version: Option<u64>,
    /// The request of an HTTP event (secret header names only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpView>,
    /// The next few fire times (only on `GET /events/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_fires: Option<Vec<DateTime<Utc>>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Event> for EventView {
    fn from(e: Event) -> EventView {
        let s = e.spec;
        EventView {
            id: e.id.0,
            name: s.name.as_str().to_string(),
            description: s.description,
            kind: s.kind.as_str(),
            interpreter: s.interpreter.map(Interpreter::as_str),
            content: s.content,
            env: s
                .env
                .into_iter()
                .map(|(k, v)| (k.as_str().to_string(), v))
                .collect(),
            secret_env_keys: s
                .secret_env
                .names
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            schedule: s.schedule,
            status: s.status.as_str(),
            run_location: s.run_location.as_str(),
            target_servers: s.target_servers.iter().map(|id| id.0).collect(),
            target_tags: s
                .target_tags
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
            timeout: format_interval(s.timeout),
            retries: s.retries,
            tags: s.tags.iter().map(|t| t.as_str().to_string()).collect(),
            overlap: s.policy.overlap,
            misfire: s.policy.misfire,
            start_at: s.policy.start_at,
            max_executions: s.policy.max_executions,
            max_concurrent: s.policy.max_concurrent,
            retry_delay: format_interval(s.policy.retry_delay),
            payload_version: e.payload_version,
            http: s.http.map(HttpView::from),
            next_fires: None,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpView {
    pub method: &'static str,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// Names only: secret values never leave the server.
    pub secret_header_names: Vec<String>,
    pub body: Option<String>,
    pub expect_status: Vec<u16>,
}

impl From<HttpSpec> for HttpView {
    fn from(h: HttpSpec) -> HttpView {
        HttpView {
            method: h.method.as_str(),
            url: h.url,
            headers: h
                .headers
                .into_iter()
                .map(|(k, v)| (k.as_str().to_string(), v))
                .collect(),
            secret_header_names: h
                .secret_headers
                .names
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            body: h.body,
            expect_status: h.expect_status,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadView {
    pub version: u64,
    pub checksum: String,
    pub size: u64,
    pub is_active: bool,
    pub payload_path: String,
    pub created_at: DateTime<Utc>,
}

impl From<PayloadRecord> for PayloadView {
    fn from(p: PayloadRecord) -> PayloadView {
        PayloadView {
            version: p.event_version,
            checksum: p.checksum,
            size: p.payload_size,
            is_active: p.is_active,
            payload_path: p.payload_path,
            created_at: p.created_at,
        }
    }
}

fn audit(
    caller: &Caller,
    action: &str,
    target: Option<EventId>,
    detail: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        at: crate::now(),
        actor: Some(caller.actor()),
        action: action.into(),
        target_type: "event".into(),
        target_id: target.map(|id| id.0),
        detail,
    }
}

/// Runs a payload-touching mutation to its end even if the client hangs up,
/// one at a time per process (see `Shared::payload_lock`), then wakes the
/// scheduler.
async fn detached<T, F>(state: &AppState, work: impl FnOnce(AppState) -> F) -> Result<T, ApiError>
where
    F: Future<Output = Result<T, ApiError>> + Send + 'static,
    T: Send + 'static,
{
    let future = work(state.clone());
    let state = state.clone();
    tokio::spawn(async move {
        let _guard = state.payload_lock.lock().await;
        let result = future.await;
        // Every such mutation may change a schedule.
        state.schedules_changed.notify_one();
        result
    })
    .await
    .map_err(ApiError::internal)?
}

pub async fn create(
    State(state): State<AppState>,
    Editor(caller): Editor,
    JsonBody(fields): JsonBody<EventFields>,
) -> Result<Response, ApiError> {
    let event = create_event(&state, &caller, fields).await?;
    Ok((StatusCode::CREATED, axum::Json(EventView::from(event))).into_response())
}

/// Creates an event from its fields, as `POST /events` and the UI's form do.
pub(crate) async fn create_event(
    state: &AppState,
    caller: &Caller,
    fields: EventFields,
) -> Result<Event, ApiError> {
    let spec = Changes::parse(fields, state)?.into_spec()?;
    check_servers(state, &spec.target_servers).await?;
    let entry = audit(
        caller,
        "event.create",
        None,
        json!({ "name": spec.name.as_str(), "kind": spec.kind.as_str() }),
    );
    let caller = *caller;
    detached(state, move |state| async move {
        let mut writer = state.payloads.writer();
        let now = crate::now();
        match state
            .store
            .create_event(caller.user, spec, &mut writer, now, &entry)
            .await
        {
            Ok(event) => {
                writer.commit();
                Ok(event)
            }
            Err(e) => {
                writer.discard();
                Err(e.into())
            }
        }
    })
    .await
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    tag: Option<String>,
    name: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Viewer,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<axum::Json<PageBody<EventView>>, ApiError> {
    let page = page(q.limit.as_deref(), q.offset.as_deref())?;
    let filter = EventFilter {
        owner: None,
        status: q
            .status
            .as_deref()
            .map(|s| EventStatus::parse(s, "status"))
            .transpose()?,
        tag: q
            .tag
            .as_deref()
            .map(|t| Tag::new(t).map_err(|e| ApiError::invalid("tag", e.message)))
            .transpose()?,
        name_contains: q.name.filter(|n| !n.is_empty()),
        ..EventFilter::default()
    };
    let found = state.store.list_events(&filter, page).await?;
    Ok(axum::Json(PageBody {
        items: found.items.into_iter().map(EventView::from).collect(),
        total: found.total,
        limit: page.limit,
        offset: page.offset,
    }))
}

pub async fn show(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams(id): PathParams<i64>,
) -> Result<axum::Json<EventView>, ApiError> {
    let event = state.store.get_event(EventId(id)).await?;
    let schedule = state.store.get_schedule_state(event.id).await?;
    let next_fires = upcoming(&event, &schedule, NEXT_FIRES_SHOWN);
    let mut view = EventView::from(event);
    view.next_fires = Some(next_fires);
    Ok(axum::Json(view))
}

/// How many fire times `GET /events/{id}` lists.
pub(crate) const NEXT_FIRES_SHOWN: usize = 5;

/// The next `n` fire times from the stored schedule state, within the
/// event's `maxExecutions`.
pub(crate) fn upcoming(event: &Event, state: &ScheduleState, n: usize) -> Vec<DateTime<Utc>> {
    let policy = &event.spec.policy;
    let left = policy.max_executions.map_or(n as u64, |max| {
        u64::from(max).saturating_sub(state.fire_count)
    });
    let mut fires = Vec::new();
    let mut next = state.next_fire_at;
    while let Some(at) = next {
        if fires.len() >= n || fires.len() as u64 >= left {
            break;
        }
        fires.push(at);
        next = event.spec.schedule.next_fire(state.anchor, at);
    }
    fires
}

/// The body of `POST /events/{id}/run`: optional input for the script.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFields {
    pub input: Option<serde_json::Value>,
}

/// Runs the event now, as a job of its own (the overlap policy applies).
/// `201` with the job; `409` when the policy refused it (the refusal is
/// recorded as a `skipped` job) or the event cannot run.
pub async fn run(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The body is optional: no body, no input.
    let fields: RunFields = parse_optional_json(&body)?;
    let job = run_now(&state, &caller, EventId(id), fields.input).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(super::jobs::JobView::from(job)),
    )
        .into_response())
}

pub async fn update(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
    JsonBody(fields): JsonBody<EventFields>,
) -> Result<axum::Json<EventView>, ApiError> {
    let event = update_event(&state, &caller, EventId(id), fields).await?;
    Ok(axum::Json(event.into()))
}

/// Applies the fields given to an event, as `PATCH /events/{id}` and the
/// UI's form do: a new payload version when the script changed, old
/// versions pruned.
pub(crate) async fn update_event(
    state: &AppState,
    caller: &Caller,
    id: EventId,
    fields: EventFields,
) -> Result<Event, ApiError> {
    let changes = Changes::parse(fields, state)?;
    if changes.field_names().is_empty() {
        // Nothing to change: no new `updatedAt`, no audit entry.
        return Ok(state.store.get_event(id).await?);
    }
    if let Some(servers) = &changes.target_servers {
        check_servers(state, servers).await?;
    }
    let entry = audit(
        caller,
        "event.update",
        Some(id),
        json!({ "fields": changes.field_names() }),
    );
    let caller = *caller;
    detached(state, move |state| async move {
        let mut writer = state.payloads.writer();
        let now = crate::now();
        let apply = |current: &Event| changes.apply(&current.spec);
        let (event, payload) = match state
            .store
            .update_event(id, &apply, &mut writer, now, &entry)
            .await
        {
            Ok(done) => {
                writer.commit();
                done
            }
            Err(e) => {
                writer.discard();
                return Err(match e {
                    // The change itself was well-formed (checked above); it
                    // is the event it would make that breaks a rule, and
                    // the same change fits another event: a 409, as the
                    // document says of PATCH.
                    StoreError::Invalid(v) => ApiError::conflict(v.field, v.message),
                    other => other.into(),
                });
            }
        };
        if payload.is_some() {
            // The update stands even if pruning fails: old versions are then
            // pruned after the next one. The caller's update caused the
            // prune, so its token is the actor.
            let prune = audit(
                &caller,
                "payload.prune",
                Some(id),
                json!({ "keep": state.retention }),
            );
            match state
                .store
                .prune_payloads(id, state.retention, &prune)
                .await
            {
                Ok(pruned) => state.payloads.remove_files(&pruned),
                Err(e) => tracing::warn!(event = id.0, error = %e, "cannot prune old payloads"),
            }
        }
        Ok(event)
    })
    .await
}

pub async fn delete(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
) -> Result<Response, ApiError> {
    delete_event(&state, &caller, EventId(id)).await?;
    Ok(no_content())
}

/// Deletes an event with its payload files, for the API and the UI.
pub(crate) async fn delete_event(
    state: &AppState,
    caller: &Caller,
    id: EventId,
) -> Result<(), ApiError> {
    let entry = audit(caller, "event.delete", Some(id), json!({}));
    detached(state, move |state| async move {
        let rows = state.store.delete_event(id, &entry).await?;
        state.payloads.remove_files(&rows);
        state.payloads.remove_event_dir(id);
        Ok(())
    })
    .await
}

pub async fn payloads(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams(id): PathParams<i64>,
) -> Result<axum::Json<Vec<PayloadView>>, ApiError> {
    let id = EventId(id);
    // Unknown events are 404, not an empty list.
    state.store.get_event(id).await?;
    let rows = state.store.list_payloads(id).await?;
    Ok(axum::Json(
        rows.into_iter().map(PayloadView::from).collect(),
    ))
}

pub async fn download(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams((id, version)): PathParams<(i64, u64)>,
) -> Result<Response, ApiError> {
    let row = state.store.get_payload(EventId(id), version).await?;
    let path = state
        .payloads
        .ensure_local(&*state.store, &row.payload_path, &row.checksum)
        .await
        .map_err(ApiError::internal)?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read {}: {e}", path.display())))?;
    // Never serve a file that is not what the row says it is.
    let digest = Sha256Digest::of(&bytes).to_hex();
    if digest != row.checksum {
        return Err(ApiError::internal(format!(
            "{} has checksum {digest}, its row says {}",
            path.display(),
            row.checksum
        )));
    }
    let file_name = format!("event-{id}-v{version}.tar.gz");
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::HeaderName::from_static("x-checksum-sha256"), digest),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Runs an event now, as a job of its own (the overlap policy applies), for
/// the API and the web UI alike: a `Conflict` when the policy refused it
/// (recorded as a `skipped` job) or the event cannot run.
pub(crate) async fn run_now(
    state: &AppState,
    caller: &Caller,
    id: EventId,
    input: Option<serde_json::Value>,
) -> Result<Job, ApiError> {
    // The script reads its input through a helper call, whose answer has
    // the same bound as an output (which becomes the next run's input).
    if let Some(input) = &input {
        cronium_core::check_json_size(input, cronium_core::MAX_OUTPUT_BYTES, "input")?;
    }
    let event = state.store.get_event(id).await?;
    match event.spec.status {
        EventStatus::Active | EventStatus::Paused => {}
        other => {
            return Err(ApiError::conflict(
                "status",
                format!("the event is {other}; only active or paused events run"),
            ));
        }
    }
    let now = crate::now();
    let job = state
        .store
        .enqueue_job(
            NewJob {
                event_id: event.id,
                trigger: Trigger::Manual,
                scheduled_at: now,
                input,
            },
            now,
        )
        .await?;
    tracing::info!(event = id.0, job = job.id.0, actor = %caller.actor(), status = %job.status, "manual run");
    if job.status == JobStatus::Skipped {
        return Err(ApiError::conflict(
            "overlap",
            job.error
                .unwrap_or_else(|| "skipped by the overlap policy".into()),
        ));
    }
    if event.spec.policy.overlap == OverlapPolicy::Replace {
        // The store asked the earlier runs to stop; those on this node stop now.
        state.running.cancel_event(event.id);
    }
    state.jobs_queued.notify_one();
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_name_their_fields() {
        let s = |kind: &str,
                 cron: Option<&str>,
                 tz: Option<&str>,
                 every: Option<&str>,
                 at: Option<&str>| {
            parse_schedule(ScheduleFields {
                kind: kind.into(),
                cron: cron.map(Into::into),
                timezone: tz.map(Into::into),
                every: every.map(Into::into),
                at: at.map(Into::into),
            })
        };
        assert_eq!(
            s("manual", None, None, None, None).unwrap(),
            Schedule::Manual
        );
        assert!(s("cron", Some("0 3 * * *"), Some("Europe/Berlin"), None, None).is_ok());
        assert!(
            s("cron", Some("0 3 * * *"), None, None, None).is_ok(),
            "UTC by default"
        );
        assert!(s("at", None, None, None, Some("2026-12-01T10:00:00+01:00")).is_ok());
        let table = [
            (s("cron", Some("nope"), None, None, None), "schedule.cron"),
            (s("cron", None, None, None, None), "schedule.cron"),
            (
                s("cron", Some("0 3 * * *"), Some("Mars/Base"), None, None),
                "schedule.timezone",
            ),
            (
                s("every", None, None, Some("5 weeks"), None),
                "schedule.every",
            ),
            (s("at", None, None, None, Some("tomorrow")), "schedule.at"),
            (s("hourly", None, None, None, None), "schedule.type"),
        ];
        for (result, field) in table {
            assert_eq!(result.unwrap_err().field.as_deref(), Some(field));
        }
    }
}
