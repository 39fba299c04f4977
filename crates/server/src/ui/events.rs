//! The event pages: the list (filtered, sorted and paged in the URL), an event's page (schedule, next fires, payload versions, recent jobs, run with input, pause, resume, delete), the create and edit form with its schedule preview, and the diff between two payload versions.
//!
//! The form is turned into the API's [`EventFields`] and saved by the same
//! functions as `POST`/`PATCH /api/v1/events`, so a page can accept nothing
//! the API would refuse, and its errors carry the API's field names, which
//! the form shows beside the field they belong to.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeZone, Utc};
use cronium_core::schedule::format_interval;
use cronium_core::{
    ActionTarget, ChannelId, EventId, EventKind, EventStatus, RunPolicy, Schedule, ServerId, Tag,
};
use cronium_store::{Event, EventFilter, EventOrder, JobFilter, PageRequest, PayloadRecord};
use serde::{Deserialize, Serialize};

use super::pages::{Pager, Shell, time};
use crate::api::events::{
    EventFields, HttpFields, NEXT_FIRES_SHOWN, ScheduleFields, create_event, delete_event,
    not_in_the_past, parse_schedule, run_now, upcoming, update_event,
};
use crate::error::{ApiError, FormBody, PageError, PathParams, QueryParams, see_other};
use crate::state::AppState;
use crate::tokens::{Editor, Viewer};

/// Events per page of the list.
const PAGE_SIZE: u32 = 50;
/// Jobs shown on an event's page.
const RECENT_JOBS: u32 = 10;

/// A schedule in a few words, as the list and the event's page show it.
fn describe(schedule: &Schedule) -> String {
    match schedule {
        Schedule::Manual => "manual".into(),
        Schedule::Cron { cron, timezone } => format!("cron {cron} ({timezone})"),
        Schedule::Every { every } => format!("every {}", format_interval(*every)),
        Schedule::At { at } => format!("once at {}", time(*at)),
    }
}

/// A fire time in the schedule's own zone (UTC for all but cron), with its
/// UTC form for the hover title.
#[derive(Debug, Serialize)]
pub struct Fire {
    pub local: String,
    pub utc: String,
}

fn fire(at: DateTime<Utc>, schedule: &Schedule) -> Fire {
    let zone = match schedule {
        Schedule::Cron { timezone, .. } => timezone.parse::<chrono_tz::Tz>().ok(),
        _ => None,
    };
    let local = match zone {
        Some(tz) => tz
            .from_utc_datetime(&at.naive_utc())
            .format("%a %Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        None => at.format("%a %Y-%m-%d %H:%M:%S UTC").to_string(),
    };
    Fire {
        local,
        utc: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

// ---------------------------------------------------------------- the list

pub struct EventRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub schedule: String,
    pub status: String,
    pub updated: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "events.html")]
pub struct EventsPage {
    pub shell: Shell,
    pub events: Vec<EventRow>,
    pub total: u64,
    pub query: ListQuery,
    pub pager: Pager,
}

/// The list's filters, order and page, all kept in the URL.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub sort: String,
    pub page: Option<u64>,
}

impl ListQuery {
    fn filter(&self) -> Result<EventFilter, ApiError> {
        let given = |s: &String| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_string);
        Ok(EventFilter {
            owner: None,
            status: given(&self.status)
                .map(|s| EventStatus::parse(&s, "status"))
                .transpose()?,
            tag: given(&self.tag)
                .map(|t| Tag::new(&t).map_err(|e| ApiError::invalid("tag", e.message)))
                .transpose()?,
            name_contains: given(&self.name),
            order: match self.sort.as_str() {
                "" | "created" => EventOrder::Id,
                "name" => EventOrder::Name,
                "updated" => EventOrder::Updated,
                other => {
                    return Err(ApiError::invalid(
                        "sort",
                        format!("unknown order {other:?} (expected created, name or updated)"),
                    ));
                }
            },
        })
    }
}

/// `GET /events`: a page of events, filtered by name, status and tag.
pub async fn list(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Response, PageError> {
    let filter = query.filter()?;
    let at = Pager::request(query.page, PAGE_SIZE);
    let found = state.store.list_events(&filter, at.1).await?;
    let pager = Pager::new(
        "/events",
        &[
            ("name", &query.name),
            ("status", &query.status),
            ("tag", &query.tag),
            ("sort", &query.sort),
        ],
        at,
        found.items.len(),
        found.total,
    );
    let events = found
        .items
        .into_iter()
        .map(|e| EventRow {
            id: e.id.0,
            name: e.spec.name.as_str().to_string(),
            kind: e.spec.kind.to_string(),
            schedule: describe(&e.spec.schedule),
            status: e.spec.status.to_string(),
            updated: time(e.updated_at),
        })
        .collect();
    Ok(EventsPage {
        shell: shell.at("events"),
        events,
        total: found.total,
        pager,
        query,
    }
    .into_response())
}

// ------------------------------------------------------------ the event page

pub struct VersionRow {
    pub version: u64,
    pub checksum: String,
    pub size: u64,
    pub created: String,
    pub active: bool,
}

pub struct RecentJob {
    pub id: i64,
    pub status: String,
    pub trigger: String,
    pub scheduled: String,
    pub exit_code: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "event.html")]
pub struct EventPage {
    pub shell: Shell,
    pub id: i64,
    pub name: String,
    pub description: String,
    pub kind: String,
    pub status: String,
    pub paused: bool,
    pub schedule: String,
    pub facts: Vec<(&'static str, String)>,
    pub env: Vec<(String, String)>,
    pub secret_env: Vec<String>,
    pub content: String,
    pub fires: Vec<Fire>,
    pub versions: Vec<VersionRow>,
    /// The diff form's defaults: the previous version and the active one.
    pub diff_from: u64,
    pub diff_to: u64,
    pub jobs: Vec<RecentJob>,
    /// What its jobs set off (chains and notifications).
    pub actions: Vec<ActionRow>,
    /// The run form: what was typed, and why it was refused.
    pub input: String,
    pub input_error: Option<String>,
}

impl EventPage {
    async fn load(state: &AppState, shell: Shell, id: EventId) -> Result<EventPage, PageError> {
        let event = state.store.get_event(id).await?;
        let schedule_state = state.store.get_schedule_state(id).await?;
        let fires = upcoming(&event, &schedule_state, NEXT_FIRES_SHOWN)
            .into_iter()
            .map(|at| fire(at, &event.spec.schedule))
            .collect();
        let versions: Vec<VersionRow> = state
            .store
            .list_payloads(id)
            .await?
            .into_iter()
            .map(|p| VersionRow {
                version: p.event_version,
                checksum: p.checksum,
                size: p.payload_size,
                created: time(p.created_at),
                active: p.is_active,
            })
            .collect();
        let mut numbers: Vec<u64> = versions.iter().map(|v| v.version).collect();
        numbers.sort_unstable();
        let diff_to = numbers.last().copied().unwrap_or(0);
        let diff_from = numbers.iter().rev().nth(1).copied().unwrap_or(diff_to);
        let jobs = state
            .store
            .list_jobs(
                &JobFilter {
                    event: Some(id),
                    ..JobFilter::default()
                },
                PageRequest {
                    limit: RECENT_JOBS,
                    offset: 0,
                },
            )
            .await?
            .items
            .into_iter()
            .map(|j| RecentJob {
                id: j.id.0,
                status: j.status.to_string(),
                trigger: j.trigger.to_string(),
                scheduled: time(j.scheduled_at),
                exit_code: j.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            })
            .collect();
        let servers = server_names(state, &event.spec.target_servers).await?;
        let actions = action_rows(state, id).await?;
        let s = event.spec;
        let mut facts = vec![
            ("Kind", s.kind.to_string()),
            ("Runs", s.run_location.to_string()),
            ("Timeout", format_interval(s.timeout)),
            ("Retries", s.retries.to_string()),
            ("Retry delay", format_interval(s.policy.retry_delay)),
            ("Overlap", s.policy.overlap.as_str().to_string()),
            ("Misfire", s.policy.misfire.as_str().to_string()),
        ];
        if let Some(interpreter) = s.interpreter {
            facts.insert(1, ("Interpreter", interpreter.as_str().to_string()));
        }
        if !servers.is_empty() {
            facts.push(("Servers", servers.join(", ")));
        }
        if !s.target_tags.is_empty() {
            let tags: Vec<&str> = s.target_tags.iter().map(Tag::as_str).collect();
            facts.push(("Servers tagged", tags.join(", ")));
        }
        if let Some(max) = s.policy.max_concurrent {
            facts.push(("Max concurrent", max.to_string()));
        }
        if let Some(max) = s.policy.max_executions {
            facts.push(("Max executions", max.to_string()));
        }
        if !s.tags.is_empty() {
            let tags: Vec<&str> = s.tags.iter().map(Tag::as_str).collect();
            facts.push(("Tags", tags.join(", ")));
        }
        if let Some(http) = &s.http {
            facts.push(("Request", format!("{} {}", http.method.as_str(), http.url)));
        }
        facts.push(("Updated", time(event.updated_at)));
        Ok(EventPage {
            shell: shell.at("events"),
            id: id.0,
            name: s.name.as_str().to_string(),
            description: s.description,
            kind: s.kind.to_string(),
            status: s.status.to_string(),
            paused: s.status == EventStatus::Paused,
            schedule: describe(&s.schedule),
            facts,
            env: s
                .env
                .into_iter()
                .map(|(k, v)| (k.as_str().to_string(), v))
                .collect(),
            secret_env: s
                .secret_env
                .names
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            content: s.content,
            fires,
            versions,
            diff_from,
            diff_to,
            actions,
            jobs,
            input: String::new(),
            input_error: None,
        })
    }
}

/// The names of servers by id (an id, should one be gone).
/// One of an event's actions, for people: when it fires and what it does.
pub struct ActionRow {
    pub when: String,
    /// `Some((id, name))` for a chain: the event it runs.
    pub runs: Option<(i64, String)>,
    /// For a notification: the channel's name.
    pub notifies: Option<String>,
}

async fn action_rows(state: &AppState, id: EventId) -> Result<Vec<ActionRow>, PageError> {
    let actions = state.store.list_actions(id).await?;
    if actions.is_empty() {
        return Ok(Vec::new());
    }
    let targets: Vec<EventId> = actions
        .iter()
        .filter_map(|a| match a.spec.target {
            ActionTarget::RunEvent(event) => Some(event),
            ActionTarget::Notify(_) => None,
        })
        .collect();
    let events = state.store.event_names(&targets).await?;
    let channels: BTreeMap<ChannelId, String> = state
        .store
        .list_channels()
        .await?
        .into_iter()
        .map(|c| (c.id, c.spec.name.as_str().to_string()))
        .collect();
    Ok(actions
        .into_iter()
        .map(|a| {
            let when = match a.spec.after_secs {
                Some(secs) => format!(
                    "{} {}",
                    a.spec.when,
                    format_interval(std::time::Duration::from_secs(secs))
                ),
                None => a.spec.when.to_string(),
            };
            match a.spec.target {
                ActionTarget::RunEvent(event) => ActionRow {
                    when,
                    runs: Some((
                        event.0,
                        events
                            .get(&event)
                            .cloned()
                            .unwrap_or_else(|| format!("event {event}")),
                    )),
                    notifies: None,
                },
                ActionTarget::Notify(channel) => ActionRow {
                    when,
                    runs: None,
                    notifies: Some(
                        channels
                            .get(&channel)
                            .cloned()
                            .unwrap_or_else(|| format!("channel {}", channel.0)),
                    ),
                },
            }
        })
        .collect())
}

async fn server_names(state: &AppState, ids: &[ServerId]) -> Result<Vec<String>, PageError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let known: BTreeMap<ServerId, String> = state
        .store
        .list_servers()
        .await?
        .into_iter()
        .map(|s| (s.id, s.spec.name.to_string()))
        .collect();
    Ok(ids
        .iter()
        .map(|id| {
            known
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("server {}", id.0))
        })
        .collect())
}

/// `GET /events/{id}`.
pub async fn show(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    Ok(EventPage::load(&state, shell, EventId(id))
        .await?
        .into_response())
}

/// `POST /events/{id}/run`: runs the event now with the optional JSON
/// input, then shows its job; bad JSON comes back beside the input.
pub async fn run(
    State(state): State<AppState>,
    Editor(caller): Editor,
    shell: Shell,
    PathParams(id): PathParams<i64>,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    // The form's one field; a script may also post nothing at all (with
    // the CSRF token as a header).
    let typed = super::auth::form_field(&body, "input").unwrap_or_default();
    let input = match typed.trim() {
        "" => None,
        text => match serde_json::from_str(text) {
            Ok(value) => Some(value),
            Err(e) => {
                let mut page = EventPage::load(&state, shell, EventId(id)).await?;
                page.input = typed;
                page.input_error = Some(format!("not JSON: {e}"));
                return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
            }
        },
    };
    let job = run_now(&state, &caller, EventId(id), input).await?;
    Ok(see_other(&format!("/jobs/{}", job.id.0)))
}

/// `POST /events/{id}/pause` and `/resume`: the status alone changes.
async fn set_status(
    state: &AppState,
    caller: &crate::tokens::Caller,
    id: i64,
    status: EventStatus,
) -> Result<Response, PageError> {
    let fields = EventFields {
        status: Some(status.as_str().to_string()),
        ..EventFields::default()
    };
    update_event(state, caller, EventId(id), fields).await?;
    Ok(see_other(&format!("/events/{id}")))
}

pub async fn pause(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    set_status(&state, &caller, id, EventStatus::Paused).await
}

pub async fn resume(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    set_status(&state, &caller, id, EventStatus::Active).await
}

#[derive(Template, WebTemplate)]
#[template(path = "event_delete.html")]
pub struct DeletePage {
    pub shell: Shell,
    pub id: i64,
    pub name: String,
    pub versions: usize,
}

/// `GET /events/{id}/delete`: asks before deleting.
pub async fn confirm_delete(
    State(state): State<AppState>,
    _caller: Editor,
    shell: Shell,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    let event = state.store.get_event(EventId(id)).await?;
    let versions = state.store.list_payloads(event.id).await?.len();
    Ok(DeletePage {
        shell: shell.at("events"),
        id,
        name: event.spec.name.as_str().to_string(),
        versions,
    }
    .into_response())
}

/// `POST /events/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    delete_event(&state, &caller, EventId(id)).await?;
    Ok(see_other("/events"))
}

// ----------------------------------------------------------------- the diff

/// One line of a diff: `"add"`, `"del"` or `"ctx"`, the line numbers on
/// each side, the text.
pub struct DiffLine {
    pub class: &'static str,
    pub old: String,
    pub new: String,
    pub text: String,
}

/// The changed parts of one file, with three lines of context; empty when
/// the file is the same.
pub struct FileDiff {
    pub name: String,
    pub hunks: Vec<Vec<DiffLine>>,
}

#[derive(Template, WebTemplate)]
#[template(path = "event_diff.html")]
pub struct DiffPage {
    pub shell: Shell,
    pub id: i64,
    pub name: String,
    pub from: u64,
    pub to: u64,
    pub versions: Vec<u64>,
    pub files: Vec<FileDiff>,
}

#[derive(Debug, Deserialize)]
pub struct DiffQuery {
    from: u64,
    to: u64,
}

/// The manifest and script of a stored payload, checked against its
/// recorded checksum before anything is read from it.
async fn payload_files(
    state: &AppState,
    row: &PayloadRecord,
) -> Result<Vec<(String, String)>, ApiError> {
    let path = state
        .payloads
        .ensure_local(&*state.store, &row.payload_path, &row.checksum)
        .await
        .map_err(ApiError::internal)?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read {}: {e}", path.display())))?;
    let digest = cronium_payload::Sha256Digest::of(&bytes).to_hex();
    if digest != row.checksum {
        return Err(ApiError::internal(format!(
            "{} has checksum {digest}, its row says {}",
            path.display(),
            row.checksum
        )));
    }
    let (manifest, script) =
        cronium_payload::read_script(&bytes[..], &cronium_payload::Limits::default())
            .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
    Ok(vec![
        ("manifest.yaml".into(), manifest.to_yaml()),
        (
            manifest.entrypoint().to_string(),
            String::from_utf8_lossy(&script).into_owned(),
        ),
    ])
}

fn diff_file(name: String, old: &str, new: &str) -> FileDiff {
    let diff = similar::TextDiff::from_lines(old, new);
    let number = |n: Option<usize>| n.map(|n| (n + 1).to_string()).unwrap_or_default();
    let hunks = diff
        .grouped_ops(3)
        .iter()
        .map(|group| {
            group
                .iter()
                .flat_map(|op| diff.iter_changes(op))
                .map(|change| DiffLine {
                    class: match change.tag() {
                        similar::ChangeTag::Insert => "add",
                        similar::ChangeTag::Delete => "del",
                        similar::ChangeTag::Equal => "ctx",
                    },
                    old: number(change.old_index()),
                    new: number(change.new_index()),
                    text: change.value().trim_end_matches('\n').to_string(),
                })
                .collect()
        })
        .collect();
    FileDiff { name, hunks }
}

/// `GET /events/{id}/diff?from=A&to=B`: what changed between two payload
/// versions, file by file.
pub async fn diff(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
    PathParams(id): PathParams<i64>,
    QueryParams(q): QueryParams<DiffQuery>,
) -> Result<Response, PageError> {
    let event = state.store.get_event(EventId(id)).await?;
    let rows = state.store.list_payloads(event.id).await?;
    let find = |version: u64, field: &str| {
        rows.iter()
            .find(|r| r.event_version == version)
            .ok_or_else(|| {
                ApiError::not_found(format!("version {version} of this event is not kept"))
                    .with_field(field)
            })
    };
    let old = payload_files(&state, find(q.from, "from")?).await?;
    let new = payload_files(&state, find(q.to, "to")?).await?;
    let mut names: Vec<String> = Vec::new();
    for (name, _) in old.iter().chain(&new) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let text = |files: &[(String, String)], name: &str| {
        files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    };
    let files = names
        .into_iter()
        .map(|name| {
            let (a, b) = (text(&old, &name), text(&new, &name));
            diff_file(name, &a, &b)
        })
        .collect();
    let mut versions: Vec<u64> = rows.iter().map(|r| r.event_version).collect();
    versions.sort_unstable();
    Ok(DiffPage {
        shell: shell.at("events"),
        id,
        name: event.spec.name.as_str().to_string(),
        from: q.from,
        to: q.to,
        versions,
        files,
    }
    .into_response())
}

// ----------------------------------------------------------------- the form

/// The form as typed: every field text, so a refused form comes back with
/// the user's input (never the secret values).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EventForm {
    pub kind: String,
    pub name: String,
    pub description: String,
    pub interpreter: String,
    pub content: String,
    /// `KEY=value`, one a line.
    pub env: String,
    /// Write-only: never rendered back.
    pub secret_env: String,
    pub clear_secret_env: bool,
    pub schedule_type: String,
    pub cron: String,
    pub timezone: String,
    pub every: String,
    pub at: String,
    pub status: String,
    pub run_location: String,
    pub servers: BTreeSet<i64>,
    /// Server tags, comma separated.
    pub server_tags: String,
    pub timeout: String,
    pub retries: String,
    pub retry_delay: String,
    pub overlap: String,
    pub misfire: String,
    pub max_concurrent: String,
    pub max_executions: String,
    /// Comma separated.
    pub tags: String,
    pub method: String,
    pub url: String,
    /// `Name: value`, one a line.
    pub headers: String,
    pub secret_headers: String,
    pub body: String,
    /// Comma separated status codes.
    pub expect_status: String,
}

/// A textarea's lines as browsers send them (CRLF), as the script keeps them (LF).
fn unix_lines(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// `KEY<sep>value` lines into a map; blank lines are skipped, the rest must
/// have the separator (the error names the line).
fn pairs(text: &str, sep: char, field: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(sep) else {
            return Err(ApiError::invalid(
                field,
                format!("line {}: expected KEY{sep}value", n + 1),
            ));
        };
        let value = if sep == ':' { value.trim() } else { value };
        map.insert(key.trim().to_string(), value.to_string());
    }
    Ok(map)
}

impl EventForm {
    /// The form's fields from the posted pairs (`server` repeats, one per
    /// checked server).
    fn from_pairs(pairs: Vec<(String, String)>) -> EventForm {
        let mut form = EventForm::default();
        for (key, value) in pairs {
            let slot = match key.as_str() {
                "kind" => &mut form.kind,
                "name" => &mut form.name,
                "description" => &mut form.description,
                "interpreter" => &mut form.interpreter,
                "content" => &mut form.content,
                "env" => &mut form.env,
                "secretEnv" => &mut form.secret_env,
                "schedule.type" => &mut form.schedule_type,
                "schedule.cron" => &mut form.cron,
                "schedule.timezone" => &mut form.timezone,
                "schedule.every" => &mut form.every,
                "schedule.at" => &mut form.at,
                "status" => &mut form.status,
                "runLocation" => &mut form.run_location,
                "serverTags" => &mut form.server_tags,
                "timeout" => &mut form.timeout,
                "retries" => &mut form.retries,
                "retryDelay" => &mut form.retry_delay,
                "overlap" => &mut form.overlap,
                "misfire" => &mut form.misfire,
                "maxConcurrent" => &mut form.max_concurrent,
                "maxExecutions" => &mut form.max_executions,
                "tags" => &mut form.tags,
                "http.method" => &mut form.method,
                "http.url" => &mut form.url,
                "http.headers" => &mut form.headers,
                "http.secretHeaders" => &mut form.secret_headers,
                "http.body" => &mut form.body,
                "http.expectStatus" => &mut form.expect_status,
                "clearSecretEnv" => {
                    form.clear_secret_env = true;
                    continue;
                }
                "server" => {
                    if let Ok(id) = value.parse() {
                        form.servers.insert(id);
                    }
                    continue;
                }
                _ => continue,
            };
            *slot = unix_lines(&value);
        }
        form
    }

    /// A new event's form: a bash script run by hand, the API's defaults.
    fn blank(kind: EventKind) -> EventForm {
        let policy = RunPolicy::default();
        EventForm {
            kind: kind.as_str().into(),
            interpreter: "bash".into(),
            schedule_type: "manual".into(),
            timezone: "UTC".into(),
            status: "active".into(),
            run_location: "local".into(),
            timeout: "1h".into(),
            retries: "0".into(),
            retry_delay: format_interval(policy.retry_delay),
            overlap: policy.overlap.as_str().into(),
            misfire: policy.misfire.as_str().into(),
            method: "GET".into(),
            ..EventForm::default()
        }
    }

    /// The form of a stored event (secret values stay empty: write-only).
    fn of(event: &Event) -> EventForm {
        let s = &event.spec;
        let (schedule_type, cron, timezone, every, at) = match &s.schedule {
            Schedule::Manual => (
                "manual",
                "",
                "UTC".to_string(),
                String::new(),
                String::new(),
            ),
            Schedule::Cron { cron, timezone } => (
                "cron",
                cron.as_str(),
                timezone.clone(),
                String::new(),
                String::new(),
            ),
            Schedule::Every { every } => (
                "every",
                "",
                "UTC".to_string(),
                format_interval(*every),
                String::new(),
            ),
            Schedule::At { at } => (
                "at",
                "",
                "UTC".to_string(),
                String::new(),
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        };
        let lines = |map: Vec<(String, String)>, sep: &str| {
            map.into_iter()
                .map(|(k, v)| format!("{k}{sep}{v}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let count = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_default();
        let http = s.http.as_ref();
        EventForm {
            kind: s.kind.as_str().into(),
            name: s.name.as_str().into(),
            description: s.description.clone(),
            interpreter: s.interpreter.map(|i| i.as_str()).unwrap_or("bash").into(),
            content: s.content.clone(),
            env: lines(
                s.env
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                    .collect(),
                "=",
            ),
            schedule_type: schedule_type.into(),
            cron: cron.into(),
            timezone,
            every,
            at,
            status: s.status.as_str().into(),
            run_location: s.run_location.as_str().into(),
            servers: s.target_servers.iter().map(|id| id.0).collect(),
            server_tags: s
                .target_tags
                .iter()
                .map(Tag::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            timeout: format_interval(s.timeout),
            retries: s.retries.to_string(),
            retry_delay: format_interval(s.policy.retry_delay),
            overlap: s.policy.overlap.as_str().into(),
            misfire: s.policy.misfire.as_str().into(),
            max_concurrent: count(s.policy.max_concurrent),
            max_executions: count(s.policy.max_executions),
            tags: s
                .tags
                .iter()
                .map(Tag::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            method: http.map_or("GET", |h| h.method.as_str()).into(),
            url: http.map(|h| h.url.clone()).unwrap_or_default(),
            headers: http
                .map(|h| {
                    lines(
                        h.headers
                            .iter()
                            .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                            .collect(),
                        ": ",
                    )
                })
                .unwrap_or_default(),
            body: http.and_then(|h| h.body.clone()).unwrap_or_default(),
            expect_status: http
                .map(|h| {
                    h.expect_status
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
            ..EventForm::default()
        }
    }

    fn is_http(&self) -> bool {
        self.kind == "http"
    }

    fn schedule_fields(&self) -> ScheduleFields {
        let given = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        ScheduleFields {
            kind: self.schedule_type.clone(),
            cron: given(&self.cron),
            timezone: given(&self.timezone),
            every: given(&self.every),
            at: given(&self.at),
        }
    }

    /// The API's fields for what differs from `current` (everything, for a
    /// new event), so an edit records only what changed.
    fn fields(&self, current: Option<&EventForm>) -> Result<EventFields, ApiError> {
        let changed = |pick: fn(&EventForm) -> &str| {
            let mine = pick(self).trim();
            match current {
                Some(current) if pick(current).trim() == mine => None,
                _ => Some(mine.to_string()),
            }
        };
        let number =
            |text: Option<String>, field: &str| -> Result<Option<serde_json::Value>, ApiError> {
                match text {
                    None => Ok(None),
                    Some(t) if t.is_empty() => Ok(Some(serde_json::Value::Null)),
                    Some(t) => t.parse::<u32>().map(|n| Some(n.into())).map_err(|_| {
                        ApiError::invalid(field, format!("{t:?} is not a whole number"))
                    }),
                }
            };
        let mut fields = EventFields {
            name: changed(|f| &f.name),
            description: changed(|f| &f.description),
            status: changed(|f| &f.status),
            run_location: changed(|f| &f.run_location),
            timeout: changed(|f| &f.timeout),
            retry_delay: changed(|f| &f.retry_delay),
            overlap: changed(|f| &f.overlap),
            misfire: changed(|f| &f.misfire),
            max_concurrent: number(changed(|f| &f.max_concurrent), "maxConcurrent")?,
            max_executions: number(changed(|f| &f.max_executions), "maxExecutions")?,
            retries: changed(|f| &f.retries)
                .map(|t| {
                    t.parse::<u32>().map_err(|_| {
                        ApiError::invalid("retries", format!("{t:?} is not a whole number"))
                    })
                })
                .transpose()?,
            ..EventFields::default()
        };
        let split = |text: &str| -> BTreeSet<String> {
            text.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        };
        let tags = |f: &EventForm| split(&f.tags);
        if current.is_none_or(|c| tags(c) != tags(self)) {
            fields.tags = Some(tags(self).into_iter().collect());
        }
        let server_tags = |f: &EventForm| split(&f.server_tags);
        if current.is_none_or(|c| server_tags(c) != server_tags(self)) {
            fields.target_tags = Some(server_tags(self).into_iter().collect());
        }
        if current.is_none_or(|c| c.servers != self.servers) {
            fields.target_servers = Some(self.servers.iter().copied().collect());
        }
        let schedule_same = current.is_some_and(|c| {
            let (a, b) = (c.schedule_fields(), self.schedule_fields());
            a.kind == b.kind
                && a.cron == b.cron
                && a.timezone == b.timezone
                && a.every == b.every
                && a.at == b.at
        });
        if !schedule_same {
            fields.schedule = Some(self.schedule_fields());
        }
        if self.is_http() {
            fields.kind = current.is_none().then(|| "http".to_string());
            let secret_headers = match self.secret_headers.trim() {
                "" => None,
                text => Some(pairs(text, ':', "http.secretHeaders")?),
            };
            let request_changed = current.is_none_or(|c| {
                (
                    &c.method,
                    c.url.trim(),
                    c.headers.trim(),
                    &c.body,
                    c.expect_status.trim(),
                ) != (
                    &self.method,
                    self.url.trim(),
                    self.headers.trim(),
                    &self.body,
                    self.expect_status.trim(),
                )
            });
            if request_changed || secret_headers.is_some() {
                let expect_status = self
                    .expect_status
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse::<u16>().map_err(|_| {
                            ApiError::invalid(
                                "http.expectStatus",
                                format!("{s:?} is not a status code"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                fields.http = Some(HttpFields {
                    method: Some(self.method.clone()),
                    url: self.url.trim().to_string(),
                    headers: Some(pairs(&self.headers, ':', "http.headers")?),
                    secret_headers,
                    body: Some(self.body.clone()).filter(|b| !b.is_empty()),
                    expect_status: Some(expect_status),
                });
            }
        } else {
            fields.kind = current.is_none().then(|| "script".to_string());
            fields.interpreter = changed(|f| &f.interpreter);
            // The script is kept exactly as typed (but for line ends).
            if current.is_none_or(|c| c.content != self.content) {
                fields.content = Some(self.content.clone());
            }
            let env = pairs(&self.env, '=', "env")?;
            if current.is_none_or(|c| pairs(&c.env, '=', "env").ok().as_ref() != Some(&env)) {
                fields.env = Some(env);
            }
            if self.clear_secret_env {
                fields.secret_env = Some(BTreeMap::new());
            } else if !self.secret_env.trim().is_empty() {
                fields.secret_env = Some(pairs(&self.secret_env, '=', "secretEnv")?);
            }
        }
        Ok(fields)
    }
}

pub struct ServerChoice {
    pub id: i64,
    pub name: String,
    pub checked: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "event_form.html")]
pub struct FormPage {
    pub shell: Shell,
    /// `None` for a new event.
    pub id: Option<i64>,
    pub form: EventForm,
    pub servers: Vec<ServerChoice>,
    /// Secret names already set (shown, never their values).
    pub secret_names: Vec<String>,
    pub fires: Vec<Fire>,
    pub preview_error: Option<String>,
    /// The refusal: its field (the API's name) and message.
    pub error: Option<(String, String)>,
}

impl FormPage {
    async fn new(
        state: &AppState,
        shell: Shell,
        id: Option<i64>,
        form: EventForm,
        secret_names: Vec<String>,
    ) -> Result<FormPage, PageError> {
        let servers = state
            .store
            .list_servers()
            .await?
            .into_iter()
            .map(|s| ServerChoice {
                id: s.id.0,
                checked: form.servers.contains(&s.id.0),
                name: s.spec.name.to_string(),
            })
            .collect();
        let (fires, preview_error) = match preview_of(form.schedule_fields()) {
            Ok(fires) => (fires, None),
            Err(e) => (Vec::new(), Some(e.message)),
        };
        Ok(FormPage {
            shell: shell.at("events"),
            id,
            form,
            servers,
            secret_names,
            fires,
            preview_error,
            error: None,
        })
    }

    /// The message for `field` (and its sub-fields: `env.PATH` belongs to `env`).
    pub fn error_for(&self, field: &str) -> Option<&str> {
        let (at, message) = self.error.as_ref()?;
        let belongs = at == field
            || at
                .strip_prefix(field)
                .is_some_and(|rest| rest.starts_with('.'));
        belongs.then_some(message.as_str())
    }

    /// The error, for the summary above the form (it is also shown beside
    /// its field, when the form has that field).
    pub fn summary(&self) -> Option<&str> {
        self.error.as_ref().map(|(_, message)| message.as_str())
    }

    pub fn has_server(&self) -> bool {
        !self.servers.is_empty()
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct NewQuery {
    #[serde(default)]
    kind: String,
}

/// `GET /events/new` (`?kind=http` for an HTTP request).
pub async fn new_form(
    State(state): State<AppState>,
    _caller: Editor,
    shell: Shell,
    QueryParams(q): QueryParams<NewQuery>,
) -> Result<Response, PageError> {
    let kind = if q.kind == "http" {
        EventKind::Http
    } else {
        EventKind::Script
    };
    let page = FormPage::new(&state, shell, None, EventForm::blank(kind), Vec::new()).await?;
    Ok(page.into_response())
}

/// A refused form, again, with the input and the error beside its field.
async fn refused(
    state: &AppState,
    shell: Shell,
    id: Option<i64>,
    mut form: EventForm,
    secret_names: Vec<String>,
    error: ApiError,
) -> Result<Response, PageError> {
    if error.field.is_none() && error.code != crate::error::ErrorCode::ValidationFailed {
        return Err(error.into());
    }
    // Write-only: typed secrets are not sent back to the browser.
    form.secret_env.clear();
    form.secret_headers.clear();
    let mut page = FormPage::new(state, shell, id, form, secret_names).await?;
    let status = error.code.status();
    page.error = Some((error.field.unwrap_or_default(), error.message));
    Ok((status, page).into_response())
}

/// `POST /events`: creates the event, then shows it.
pub async fn create(
    State(state): State<AppState>,
    Editor(caller): Editor,
    shell: Shell,
    FormBody(pairs): FormBody<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = EventForm::from_pairs(pairs);
    let saved = match form.fields(None) {
        Ok(fields) => create_event(&state, &caller, fields).await,
        Err(e) => Err(e),
    };
    match saved {
        Ok(event) => Ok(see_other(&format!("/events/{}", event.id.0))),
        Err(e) => refused(&state, shell, None, form, Vec::new(), e).await,
    }
}

/// `GET /events/{id}/edit`.
pub async fn edit_form(
    State(state): State<AppState>,
    _caller: Editor,
    shell: Shell,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    let event = state.store.get_event(EventId(id)).await?;
    let page = FormPage::new(
        &state,
        shell,
        Some(id),
        EventForm::of(&event),
        secret_names(&event),
    )
    .await?;
    Ok(page.into_response())
}

fn secret_names(event: &Event) -> Vec<String> {
    let s = &event.spec;
    let env = s.secret_env.names.iter().map(|k| k.as_str().to_string());
    let headers = s.http.iter().flat_map(|h| {
        h.secret_headers
            .names
            .iter()
            .map(|k| k.as_str().to_string())
    });
    env.chain(headers).collect()
}

/// `POST /events/{id}`: saves what changed, then shows the event.
pub async fn update(
    State(state): State<AppState>,
    Editor(caller): Editor,
    shell: Shell,
    PathParams(id): PathParams<i64>,
    FormBody(pairs): FormBody<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let event = state.store.get_event(EventId(id)).await?;
    let current = EventForm::of(&event);
    let mut form = EventForm::from_pairs(pairs);
    // The kind is the stored one, whatever was posted.
    form.kind = current.kind.clone();
    let saved = match form.fields(Some(&current)) {
        Ok(fields) => update_event(&state, &caller, EventId(id), fields).await,
        Err(e) => Err(e),
    };
    match saved {
        Ok(_) => Ok(see_other(&format!("/events/{id}"))),
        Err(e) => refused(&state, shell, Some(id), form, secret_names(&event), e).await,
    }
}

// -------------------------------------------------------------- the preview

/// The next fire times of a schedule saved now, or why it would be refused.
fn preview_of(fields: ScheduleFields) -> Result<Vec<Fire>, ApiError> {
    let schedule = not_in_the_past(parse_schedule(fields)?)?;
    let (anchor, mut next) = schedule.start(&RunPolicy::default(), crate::now());
    let mut fires = Vec::new();
    while let Some(at) = next {
        if fires.len() == NEXT_FIRES_SHOWN {
            break;
        }
        fires.push(fire(at, &schedule));
        next = schedule.next_fire(anchor, at);
    }
    Ok(fires)
}

#[derive(Debug, Deserialize)]
pub struct PreviewQuery {
    #[serde(rename = "type", default)]
    kind: String,
    cron: Option<String>,
    timezone: Option<String>,
    every: Option<String>,
    at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Preview {
    fires: Vec<Fire>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `GET /events/preview?type=cron&cron=…&timezone=…`: the next five fire
/// times, for the form's live preview (`static/event-form.js`).
pub async fn preview(_caller: Viewer, QueryParams(q): QueryParams<PreviewQuery>) -> Response {
    let given = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let fields = ScheduleFields {
        kind: q.kind,
        cron: given(q.cron),
        timezone: given(q.timezone),
        every: given(q.every),
        at: given(q.at),
    };
    let preview = match preview_of(fields) {
        Ok(fires) => Preview { fires, error: None },
        Err(e) => Preview {
            fires: Vec::new(),
            error: Some(e.message),
        },
    };
    Json(preview).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posted_pairs_fill_the_form_with_unix_line_ends_and_every_checked_server() {
        let posted = [
            ("name", "nightly"),
            ("content", "echo one\r\necho two\r\n"),
            ("server", "3"),
            ("server", "7"),
            ("server", "not-a-number"),
            ("clearSecretEnv", "on"),
            ("csrf", "ignored"),
        ];
        let form = EventForm::from_pairs(
            posted
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        assert_eq!(form.name, "nightly");
        assert_eq!(form.content, "echo one\necho two\n");
        assert_eq!(form.servers, BTreeSet::from([3, 7]));
        assert!(form.clear_secret_env);
    }

    #[test]
    fn env_lines_need_an_equals_sign_and_the_error_names_the_line() {
        assert_eq!(
            pairs("A=1\n\nB=two=2\n", '=', "env").unwrap(),
            BTreeMap::from([("A".into(), "1".into()), ("B".into(), "two=2".into())])
        );
        let refused = pairs("A=1\nnope\n", '=', "env").unwrap_err();
        assert_eq!(refused.field.as_deref(), Some("env"));
        assert_eq!(refused.message, "line 2: expected KEY=value");
    }

    #[test]
    fn an_unchanged_form_sends_no_field_and_a_changed_one_only_its_own() {
        let mut current = EventForm::blank(EventKind::Script);
        current.name = "n".into();
        current.env = "A=1\nB=2".into();
        let same = current.fields(Some(&current)).unwrap();
        assert!(same.name.is_none() && same.env.is_none() && same.schedule.is_none());
        assert!(same.content.is_none() && same.tags.is_none() && same.target_servers.is_none());

        let mut edited = current.clone();
        edited.env = "B=2\n\nA=1\n".into(); // the same map, otherwise typed
        edited.content = "echo hi\n".into();
        let fields = edited.fields(Some(&current)).unwrap();
        assert!(fields.env.is_none());
        assert_eq!(fields.content.as_deref(), Some("echo hi\n"));
        assert!(fields.name.is_none());
    }

    #[test]
    fn the_diff_marks_added_removed_and_context_lines_with_both_numbers() {
        let diff = diff_file("s".into(), "a\nb\nc\n", "a\nB\nc\nd\n");
        let rows: Vec<(&str, String, String, String)> = diff.hunks[0]
            .iter()
            .map(|l| (l.class, l.old.clone(), l.new.clone(), l.text.clone()))
            .collect();
        let row = |c, o: &str, n: &str, t: &str| (c, o.to_string(), n.to_string(), t.to_string());
        assert_eq!(
            rows,
            [
                row("ctx", "1", "1", "a"),
                row("del", "2", "", "b"),
                row("add", "", "2", "B"),
                row("ctx", "3", "3", "c"),
                row("add", "", "4", "d"),
            ]
        );
        assert!(diff_file("s".into(), "same\n", "same\n").hunks.is_empty());
    }
}
