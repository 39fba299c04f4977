//! The pages: the shell every page shares, the dashboard, the lists, and the error page (settings are `settings.rs`). Each reads through the store methods the API uses and states its role with the API's extractors.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use cronium_core::{EventId, JobStatus, Role};
use cronium_store::{Actor, EventFilter, JobFilter, PageRequest};
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

fn page_of(limit: u32) -> PageRequest {
    PageRequest { limit, offset: 0 }
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
}

/// `GET /`: counts, each a link to the list it counts.
pub async fn dashboard(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
) -> Result<Response, PageError> {
    let events = state
        .store
        .list_events(&EventFilter::default(), page_of(1))
        .await?
        .total;
    let jobs = |status, since| JobFilter {
        status: Some(status),
        since,
        ..JobFilter::default()
    };
    let running = state
        .store
        .list_jobs(&jobs(JobStatus::Running, None), page_of(1))
        .await?
        .total;
    let day_ago = (crate::now() - TimeDelta::hours(24)).trunc_subsecs(0);
    let failed = state
        .store
        .list_jobs(&jobs(JobStatus::Failed, Some(day_ago)), page_of(1))
        .await?
        .total;
    Ok(DashboardPage {
        shell: shell.at("dashboard"),
        events,
        running,
        failed,
        since: day_ago.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
    .into_response())
}

pub struct EventRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub updated: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "events.html")]
pub struct EventsPage {
    pub shell: Shell,
    pub events: Vec<EventRow>,
    pub total: u64,
}

/// `GET /events`: the events, with a run button for editors.
pub async fn events(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
) -> Result<Response, PageError> {
    let found = state
        .store
        .list_events(&EventFilter::default(), page_of(LIST_LIMIT))
        .await?;
    let events = found
        .items
        .into_iter()
        .map(|e| EventRow {
            id: e.id.0,
            name: e.spec.name.as_str().to_string(),
            kind: e.spec.kind.to_string(),
            status: e.spec.status.to_string(),
            updated: time(e.updated_at),
        })
        .collect();
    Ok(EventsPage {
        shell: shell.at("events"),
        events,
        total: found.total,
    }
    .into_response())
}

/// `POST /events/{id}/run`: runs the event now, as the API's run does, and
/// shows its jobs.
pub async fn run_event(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    crate::api::events::run_now(&state, &caller, EventId(id), None).await?;
    Ok(see_other(&format!("/jobs?event={id}")))
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
}

/// The filters of `/jobs`, kept in the URL so a link (a dashboard counter)
/// can carry them.
#[derive(Debug, Deserialize)]
pub struct JobsQuery {
    status: Option<String>,
    event: Option<i64>,
    since: Option<String>,
}

/// `GET /jobs`: the newest jobs, filtered by status, event and start.
pub async fn jobs(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
    QueryParams(q): QueryParams<JobsQuery>,
) -> Result<Response, PageError> {
    let status = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| JobStatus::parse(s, "status"))
        .transpose()
        .map_err(ApiError::from)?;
    let since = q
        .since
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| crate::api::parse_time(s, "since"))
        .transpose()?;
    let filter = JobFilter {
        event: q.event.map(EventId),
        status,
        since,
        until: None,
    };
    let found = state.store.list_jobs(&filter, page_of(LIST_LIMIT)).await?;
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
    // A page names few events: each is read once.
    let mut names = std::collections::HashMap::new();
    for job in &found.items {
        if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(job.event_id) {
            let name = match state.store.get_event(job.event_id).await {
                Ok(event) => event.spec.name.as_str().to_string(),
                Err(_) => format!("event {}", job.event_id),
            };
            slot.insert(name);
        }
    }
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
    }
    .into_response())
}

pub struct ServerRow {
    pub id: i64,
    pub name: String,
    pub address: String,
    pub pinned: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "servers.html")]
pub struct ServersPage {
    pub shell: Shell,
    pub servers: Vec<ServerRow>,
}

/// `GET /servers`: the remote servers.
pub async fn servers(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
) -> Result<Response, PageError> {
    let servers = state
        .store
        .list_servers()
        .await?
        .into_iter()
        .map(|s| ServerRow {
            id: s.id.0,
            name: s.spec.name.to_string(),
            address: format!("{}@{}:{}", s.spec.username, s.spec.host, s.spec.port),
            pinned: s.spec.known_host.is_some(),
        })
        .collect();
    Ok(ServersPage {
        shell: shell.at("servers"),
        servers,
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
