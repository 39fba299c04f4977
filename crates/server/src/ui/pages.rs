//! The pages: the shell every page shares, the dashboard (and its Cancel button), the jobs list, audit, and the error page (events are `events.rs`, servers `servers.rs`, settings `settings.rs`). Each reads through the store methods the API uses and states its role with the API's extractors.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use cronium_core::{EventId, JobId, JobStatus, Role};
use cronium_store::{Actor, EventFilter, Job, JobFilter, Page, PageRequest};
use serde::Deserialize;

use super::{SignedIn, assets};
use crate::error::{ApiError, PageError, PathParams, QueryParams, Refusal, see_other};
use crate::state::AppState;
use crate::tokens::{Admin, Editor, Viewer};

/// How many rows a list page shows (the newest).
const LIST_LIMIT: u32 = 100;

/// What the layout needs: who is signed in, the CSRF token for its forms
/// (the sign-out button's and the page's own), and where the CSS is.
#[derive(Debug, Clone)]
pub struct Shell {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    pub assets: &'static str,
    /// The nav entry to mark as the current page.
    pub section: &'static str,
}

impl Shell {
    pub fn is_admin(&self) -> bool {
        self.role.allows(Role::Admin)
    }

    pub fn can_edit(&self) -> bool {
        self.role.allows(Role::Editor)
    }

    /// `aria-current` for a nav entry: the attribute's value, or nothing.
    pub fn current(&self, section: &str) -> &'static str {
        if self.section == section {
            "page"
        } else {
            "false"
        }
    }

    pub(crate) fn at(mut self, section: &'static str) -> Shell {
        self.section = section;
        self
    }
}

impl FromRequestParts<AppState> for Shell {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Shell, Refusal> {
        let Some(SignedIn(found)) = parts.extensions.get::<SignedIn>() else {
            let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            return Err(Refusal::SignIn { next: next.into() });
        };
        Ok(Shell {
            user: found.user.name.clone(),
            role: found.user.role,
            csrf: found.session.csrf_token.clone(),
            assets: assets::build_id(),
            section: "",
        })
    }
}

/// A time as the pages show it: UTC, to the second, always the same zone.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Where a paged list is, and links to its neighbours that keep its
/// filters (`pairs`; empty values are left out of the URL).
#[derive(Debug, Clone, Default)]
pub struct Pager {
    pub previous: Option<String>,
    pub next: Option<String>,
    /// 1-based positions of the first and last row shown (0 when none).
    pub first: u64,
    pub last: u64,
    pub total: u64,
}

impl Pager {
    /// The 1-based page number asked for, as a store page of `size` rows.
    pub fn request(page: Option<u64>, size: u32) -> (u64, PageRequest) {
        let page = page.unwrap_or(1).max(1);
        let offset = (page - 1).saturating_mul(u64::from(size));
        (
            page,
            PageRequest {
                limit: size,
                offset,
            },
        )
    }

    pub fn new(
        path: &str,
        pairs: &[(&str, &str)],
        (page, request): (u64, PageRequest),
        shown: usize,
        total: u64,
    ) -> Pager {
        let link = |page: u64| {
            let mut parts: Vec<String> = pairs
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("{k}={}", super::auth::percent_encode(v)))
                .collect();
            if page > 1 {
                parts.push(format!("page={page}"));
            }
            if parts.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", parts.join("&"))
            }
        };
        let shown = shown as u64;
        Pager {
            previous: (page > 1).then(|| link(page - 1)),
            next: (request.offset + shown < total).then(|| link(page + 1)),
            first: if shown == 0 { 0 } else { request.offset + 1 },
            last: request.offset + shown,
            total,
        }
    }
}

pub(crate) fn page_of(limit: u32) -> PageRequest {
    PageRequest { limit, offset: 0 }
}

/// How many rows each of the dashboard's lists shows.
const DASHBOARD_ROWS: u32 = 10;

/// A running job on the dashboard.
pub struct RunningRow {
    pub id: i64,
    pub event_name: String,
    /// How long it has run, as `1h 02m`.
    pub elapsed: String,
    /// A cancel was asked for; its worker has yet to stop it.
    pub cancelling: bool,
}

/// A failed or timed-out job on the dashboard.
pub struct FailureRow {
    pub id: i64,
    pub event_name: String,
    pub status: String,
    pub at: String,
}

/// An event's next scheduled fire.
pub struct FireRow {
    pub event: i64,
    pub event_name: String,
    pub at: String,
    /// How soon, as `in 3h 20m` (or `due` when the scheduler is at it).
    pub when: String,
}

/// A server and its newest check.
pub struct ServerStatusRow {
    pub id: i64,
    pub name: String,
    pub check: super::servers::CheckSummary,
}

#[derive(Template, WebTemplate)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    pub shell: Shell,
    pub events: u64,
    pub running: u64,
    pub failed: u64,
    /// The start of the last 24 hours, as the failed jobs' link filters it.
    pub since: String,
    pub running_jobs: Vec<RunningRow>,
    pub failures: Vec<FailureRow>,
    pub fires: Vec<FireRow>,
    pub servers: Vec<ServerStatusRow>,
}

/// `GET /`: counts, each a link to the list it counts; what runs now (with
/// a Cancel button for editors), the last day's failures, the next day's
/// fires and the servers' newest checks.
pub async fn dashboard(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
) -> Result<Response, PageError> {
    let now = crate::now();
    let events = state
        .store
        .list_events(&EventFilter::default(), page_of(1))
        .await?
        .total;
    let day_ago = (now - TimeDelta::hours(24)).trunc_subsecs(0);
    let running = jobs_with(&state, JobStatus::Running, None, 2 * DASHBOARD_ROWS).await?;
    let failed = jobs_with(&state, JobStatus::Failed, Some(day_ago), DASHBOARD_ROWS).await?;
    let timed_out = jobs_with(&state, JobStatus::TimedOut, Some(day_ago), DASHBOARD_ROWS).await?;
    let failed_count = failed.total;
    let mut failures = failed.items;
    failures.extend(timed_out.items);
    failures.sort_by_key(|j| std::cmp::Reverse(ended_at(j)));
    failures.truncate(DASHBOARD_ROWS as usize);
    let shown: Vec<&Job> = running.items.iter().chain(&failures).collect();
    let names = event_names(&state, &shown).await?;
    let name_of = |job: &Job| names.get(&job.event_id).cloned().unwrap_or_default();
    let running_jobs = running
        .items
        .iter()
        .map(|j| RunningRow {
            id: j.id.0,
            event_name: name_of(j),
            elapsed: j
                .started_at
                .map(|t| span(now - t))
                .unwrap_or_else(|| "starting".into()),
            cancelling: j.cancel_requested,
        })
        .collect();
    let failures = failures
        .iter()
        .map(|j| FailureRow {
            id: j.id.0,
            event_name: name_of(j),
            status: j.status.to_string(),
            at: time(ended_at(j)),
        })
        .collect();
    Ok(DashboardPage {
        shell: shell.at("dashboard"),
        events,
        running: running.total,
        failed: failed_count,
        since: day_ago.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        running_jobs,
        failures,
        fires: next_fires(&state, now).await?,
        servers: server_statuses(&state).await?,
    }
    .into_response())
}

/// The newest `limit` jobs with `status` (scheduled since `since`), and how
/// many there are in all.
async fn jobs_with(
    state: &AppState,
    status: JobStatus,
    since: Option<DateTime<Utc>>,
    limit: u32,
) -> Result<Page<Job>, PageError> {
    let filter = JobFilter {
        status: Some(status),
        since,
        ..JobFilter::default()
    };
    Ok(state.store.list_jobs(&filter, page_of(limit)).await?)
}

/// When a job ended, or was due if it never ran.
fn ended_at(job: &Job) -> DateTime<Utc> {
    job.finished_at.unwrap_or(job.scheduled_at)
}

/// The events due to fire within the next 24 hours, soonest first: the
/// scheduler's own list of due schedules, asked a day ahead.
async fn next_fires(state: &AppState, now: DateTime<Utc>) -> Result<Vec<FireRow>, PageError> {
    let horizon = now + TimeDelta::hours(24);
    let due = state.store.due_schedules(horizon, DASHBOARD_ROWS).await?;
    Ok(due
        .into_iter()
        .filter_map(|(event, schedule)| {
            let at = schedule.next_fire_at?;
            Some(FireRow {
                event: event.id.0,
                event_name: event.spec.name.as_str().to_string(),
                at: time(at),
                when: if at > now {
                    format!("in {}", span(at - now))
                } else {
                    "due".into()
                },
            })
        })
        .collect())
}

async fn server_statuses(state: &AppState) -> Result<Vec<ServerStatusRow>, PageError> {
    Ok(state
        .store
        .list_servers()
        .await?
        .into_iter()
        .map(|s| ServerStatusRow {
            id: s.id.0,
            name: s.spec.name.to_string(),
            check: super::servers::CheckSummary::of(&s),
        })
        .collect())
}

/// A length of time in the two largest units: `2d 03h`, `1h 02m`, `3m 05s`, `12s`.
pub(crate) fn span(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d {hours:02}h")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m {seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

/// The names of the jobs' events, in one query for the whole page; an
/// event that is gone shows as `event N`.
async fn event_names(
    state: &AppState,
    jobs: &[&Job],
) -> Result<HashMap<EventId, String>, PageError> {
    let ids: Vec<EventId> = jobs.iter().map(|job| job.event_id).collect();
    let mut names = state.store.event_names(&ids).await?;
    for id in ids {
        names.entry(id).or_insert_with(|| format!("event {id}"));
    }
    Ok(names)
}

/// `POST /jobs/{id}/cancel`: cancels the job as the API's cancel does, and
/// goes back to the dashboard, where its Cancel button is.
pub async fn cancel_job(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    crate::api::jobs::cancel_job(&state, &caller, JobId(id)).await?;
    Ok(see_other("/"))
}

pub struct JobRow {
    pub id: i64,
    pub event: i64,
    /// The event's name (its id, should it be gone).
    pub event_name: String,
    pub status: String,
    pub trigger: String,
    pub scheduled: String,
    pub finished: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "jobs.html")]
pub struct JobsPage {
    pub shell: Shell,
    pub jobs: Vec<JobRow>,
    pub total: u64,
    /// The filter in words, when there is one.
    pub filter: String,
    pub query: JobsQuery,
    pub pager: Pager,
}

/// The filters of `/jobs` and its page, kept in the URL so a link (a
/// dashboard counter) can carry them.
#[derive(Debug, Default, Deserialize)]
pub struct JobsQuery {
    #[serde(default)]
    pub status: String,
    pub event: Option<i64>,
    #[serde(default)]
    pub since: String,
    pub page: Option<u64>,
}

/// `GET /jobs`: the newest jobs, filtered by status, event and start.
pub async fn jobs(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
    QueryParams(q): QueryParams<JobsQuery>,
) -> Result<Response, PageError> {
    let status = Some(q.status.trim())
        .filter(|s| !s.is_empty())
        .map(|s| JobStatus::parse(s, "status"))
        .transpose()
        .map_err(ApiError::from)?;
    let since = Some(q.since.trim())
        .filter(|s| !s.is_empty())
        .map(|s| crate::api::parse_time(s, "since"))
        .transpose()?;
    let filter = JobFilter {
        event: q.event.map(EventId),
        status,
        since,
        until: None,
    };
    let at = Pager::request(q.page, LIST_LIMIT);
    let found = state.store.list_jobs(&filter, at.1).await?;
    let event = q.event.map(|e| e.to_string()).unwrap_or_default();
    let pager = Pager::new(
        "/jobs",
        &[
            ("status", &q.status),
            ("event", &event),
            ("since", &q.since),
        ],
        at,
        found.items.len(),
        found.total,
    );
    let mut words = Vec::new();
    if let Some(status) = status {
        words.push(format!("status {status}"));
    }
    if let Some(event) = q.event {
        words.push(format!("event {event}"));
    }
    if let Some(since) = since {
        words.push(format!("since {}", time(since)));
    }
    let shown: Vec<&Job> = found.items.iter().collect();
    let names = event_names(&state, &shown).await?;
    let jobs = found
        .items
        .into_iter()
        .map(|j| JobRow {
            id: j.id.0,
            event: j.event_id.0,
            event_name: names.get(&j.event_id).cloned().unwrap_or_default(),
            status: j.status.to_string(),
            trigger: j.trigger.to_string(),
            scheduled: time(j.scheduled_at),
            finished: j.finished_at.map(time).unwrap_or_default(),
        })
        .collect();
    Ok(JobsPage {
        shell: shell.at("jobs"),
        jobs,
        total: found.total,
        filter: words.join(", "),
        query: q,
        pager,
    }
    .into_response())
}

pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub shell: Shell,
    pub entries: Vec<AuditRow>,
    pub total: u64,
}

/// `GET /audit`: the newest audit entries (admins only, as in the API).
pub async fn audit(
    State(state): State<AppState>,
    _caller: Admin,
    shell: Shell,
) -> Result<Response, PageError> {
    let found = state.store.list_audit(page_of(LIST_LIMIT)).await?;
    let entries = found
        .items
        .into_iter()
        .map(|r| AuditRow {
            at: time(r.entry.at),
            actor: match r.entry.actor {
                Some(Actor::Token(id)) => format!("token {}", id.0),
                Some(Actor::User(id)) => format!("user {}", id.0),
                Some(Actor::Job(id)) => format!("job {}", id.0),
                None => "system".into(),
            },
            action: r.entry.action,
            target: match r.entry.target_id {
                Some(id) => format!("{} {id}", r.entry.target_type),
                None => r.entry.target_type,
            },
        })
        .collect();
    Ok(AuditPage {
        shell: shell.at("audit"),
        entries,
        total: found.total,
    }
    .into_response())
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub assets: &'static str,
    pub status: u16,
    pub reason: &'a str,
    pub message: &'a str,
}

/// An error as a page (the UI's layer adds its headers).
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        assets: assets::build_id(),
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    match page.render() {
        Ok(html) => (
            status,
            [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(_) => (status, message.to_string()).into_response(),
    }
}
