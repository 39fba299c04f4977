//! The server pages: the list, one server (its pinned host key, its newest check, the events that target it), the add and edit forms, deleting after a confirmation, and "Check now"; every change goes through the API's own functions, which validate and audit it.
//!
//! Credentials are write-only here as in the API: a form never shows a
//! password, key or passphrase back, not even after an error, and on the
//! edit form an empty credential field keeps the one stored.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cronium_core::{AuthKind, ServerId, ServerSpec};
use cronium_store::{EventFilter, Server};
use serde::Deserialize;

use super::pages::{Shell, page_of, time};
use crate::api::servers::{
    ServerFields, check_server, create_server, delete_server, pinned_fingerprint, update_server,
};
use crate::error::{ApiError, FormBody, PageError, PathParams, see_other};
use crate::state::AppState;
use crate::tokens::{Admin, Viewer};

/// The most events read to find those that target a server (the store has
/// no query by server; a deployment with more events sees the first ones).
const EVENT_SCAN_LIMIT: u32 = 1000;

/// A server's newest check in words, for the list, the server's page and
/// the dashboard.
pub struct CheckSummary {
    /// `never`, `ok` or `failed`: also the CSS class that colours it.
    pub state: &'static str,
    pub at: String,
    /// The summary (system, interpreters, runner) or why it failed.
    pub message: String,
    /// The host key the check was shown.
    pub fingerprint: Option<String>,
}

impl CheckSummary {
    pub fn of(server: &Server) -> CheckSummary {
        match &server.last_check {
            None => CheckSummary {
                state: "never",
                at: String::new(),
                message: String::new(),
                fingerprint: None,
            },
            Some(check) => CheckSummary {
                state: if check.ok { "ok" } else { "failed" },
                at: time(check.at),
                message: check.message.clone(),
                fingerprint: check.fingerprint.clone(),
            },
        }
    }
}

// --- the list -------------------------------------------------------------

pub struct ServerRow {
    pub id: i64,
    pub name: String,
    pub address: String,
    pub pinned: bool,
    pub check: CheckSummary,
}

#[derive(Template, WebTemplate)]
#[template(path = "servers.html")]
pub struct ServersPage {
    pub shell: Shell,
    pub servers: Vec<ServerRow>,
}

/// `user@host:port`, as the pages write a server's address.
fn address(spec: &ServerSpec) -> String {
    format!("{}@{}:{}", spec.username, spec.host, spec.port)
}

/// `GET /servers`: the remote servers, whether their key is pinned, and
/// their newest check.
pub async fn list(
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
            address: address(&s.spec),
            pinned: s.spec.known_host.is_some(),
            check: CheckSummary::of(&s),
        })
        .collect();
    Ok(ServersPage {
        shell: shell.at("servers"),
        servers,
    }
    .into_response())
}

// --- one server -----------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "server.html")]
pub struct ServerPage {
    pub shell: Shell,
    pub id: i64,
    pub name: String,
    /// Label and value pairs: address, SSH user, authentication, cache directory…
    pub facts: Vec<(&'static str, String)>,
    /// The pinned key's fingerprint; `None` when nothing is pinned.
    pub fingerprint: Option<String>,
    /// A key is pinned but cannot be read (stored before pins were checked).
    pub pin_unreadable: bool,
    pub check: CheckSummary,
    /// The events that target this server: id and name.
    pub events: Vec<(i64, String)>,
}

/// `GET /servers/{id}`: one server, with Check now, Edit and Delete for
/// admins (who alone may change servers, as in the API).
pub async fn show(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    let server = state.store.get_server(ServerId(id)).await?;
    let spec = &server.spec;
    let fingerprint = pinned_fingerprint(spec);
    let facts = vec![
        ("Address", format!("{}:{}", spec.host, spec.port)),
        ("SSH user", spec.username.clone()),
        ("Signs in with", auth_words(spec.auth_kind).into()),
        ("Cache directory", spec.effective_cache_dir().to_string()),
        ("Tags", tag_text(&spec.tags)),
        ("Added", time(server.created_at)),
        ("Changed", time(server.updated_at)),
    ];
    Ok(ServerPage {
        shell: shell.at("servers"),
        id,
        name: spec.name.to_string(),
        facts,
        pin_unreadable: spec.known_host.is_some() && fingerprint.is_none(),
        fingerprint,
        check: CheckSummary::of(&server),
        events: events_targeting(&state, &server).await?,
    }
    .into_response())
}

fn auth_words(kind: AuthKind) -> &'static str {
    match kind {
        AuthKind::Key => "a private key",
        AuthKind::Password => "a password",
    }
}

/// The events whose targets include `server` (by id or by one of its
/// tags), by name.
async fn events_targeting(
    state: &AppState,
    server: &Server,
) -> Result<Vec<(i64, String)>, PageError> {
    let events = state
        .store
        .list_events(&EventFilter::default(), page_of(EVENT_SCAN_LIMIT))
        .await?;
    Ok(events
        .items
        .into_iter()
        .filter(|e| {
            e.spec.target_servers.contains(&server.id)
                || e.spec
                    .target_tags
                    .iter()
                    .any(|t| server.spec.tags.contains(t))
        })
        .map(|e| (e.id.0, e.spec.name.as_str().to_string()))
        .collect())
}

/// `POST /servers/{id}/check`: checks the server as the API's check does
/// (pinning its key on first use), then shows the server, whose page now
/// has the outcome.
pub async fn check(
    State(state): State<AppState>,
    Admin(caller): Admin,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    check_server(&state, &caller, ServerId(id)).await?;
    Ok(see_other(&format!("/servers/{id}")))
}

// --- adding and editing ---------------------------------------------------

/// What the server form sends, under the API's field names so an error's
/// field names its input. Every input is sent, empty when not filled in.
/// (No `Debug`: it holds credentials, which must never reach a log.)
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerForm {
    name: String,
    host: String,
    port: String,
    username: String,
    password: String,
    private_key: String,
    passphrase: String,
    known_host: String,
    cache_dir: String,
    /// Tags separated by spaces or commas.
    tags: String,
}

/// A server's tags as the form shows them: separated by spaces.
fn tag_text(tags: &std::collections::BTreeSet<cronium_core::Tag>) -> String {
    tags.iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The tags typed, as the API takes them.
fn typed_tags(text: &str) -> Vec<String> {
    text.split([' ', ',', '\t', '\n', '\r'])
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The inputs of the form, in order: an error on any other field is shown
/// above the form.
const FIELDS: &[&str] = &[
    "name",
    "host",
    "port",
    "username",
    "password",
    "privateKey",
    "passphrase",
    "knownHost",
    "cacheDir",
    "tags",
];

#[derive(Template, WebTemplate)]
#[template(path = "server_form.html")]
pub struct ServerFormPage {
    pub shell: Shell,
    /// `None` when adding a server; its id and name when editing one.
    pub editing: Option<(i64, String)>,
    /// What was typed (or is stored), secrets always empty.
    pub form: ServerForm,
    /// The credential kind stored, when editing (`password` or `key`).
    pub auth_kind: String,
    /// The error, and the field it is about.
    pub error: Option<ApiError>,
}

impl ServerFormPage {
    /// The error's message when it is about `field`.
    pub fn error_for(&self, field: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|e| e.field.as_deref() == Some(field))
            .map(|e| e.message.as_str())
    }

    /// The error's message when no input of the form is its field.
    pub fn general_error(&self) -> Option<String> {
        let e = self.error.as_ref()?;
        match e.field.as_deref() {
            Some(field) if FIELDS.contains(&field) => None,
            Some(field) => Some(format!("{field}: {}", e.message)),
            None => Some(e.message.clone()),
        }
    }

    /// `aria-invalid` for an input.
    pub fn invalid(&self, field: &str) -> &'static str {
        if self.error_for(field).is_some() {
            "true"
        } else {
            "false"
        }
    }

    /// The form again, with what was typed but never a secret, and the
    /// error beside its field.
    fn refused(mut self, error: ApiError) -> Response {
        self.form.forget_secrets();
        self.error = Some(error);
        (StatusCode::UNPROCESSABLE_ENTITY, self).into_response()
    }
}

impl ServerForm {
    /// A stored server as the edit form starts: everything but credentials.
    fn of(server: &Server) -> ServerForm {
        let spec = &server.spec;
        ServerForm {
            name: spec.name.to_string(),
            host: spec.host.clone(),
            port: spec.port.to_string(),
            username: spec.username.clone(),
            known_host: spec.known_host.clone().unwrap_or_default(),
            cache_dir: spec.cache_dir.clone().unwrap_or_default(),
            tags: tag_text(&spec.tags),
            ..ServerForm::default()
        }
    }

    fn forget_secrets(&mut self) {
        self.password.clear();
        self.private_key.clear();
        self.passphrase.clear();
    }

    /// The port typed: empty is the default (22).
    fn port(&self) -> Result<u16, ApiError> {
        let text = self.port.trim();
        if text.is_empty() {
            return Ok(22);
        }
        text.parse()
            .map_err(|_| ApiError::invalid("port", "must be a number between 1 and 65535"))
    }

    /// The credentials typed, as the API takes them: an empty field is
    /// absent. Line breaks are made Unix ones (a browser sends a textarea's
    /// lines with CRLF, which a key file does not have).
    fn credentials(&self, fields: &mut ServerFields) {
        fields.password = filled(&self.password);
        fields.private_key = filled(&unix_lines(&self.private_key));
        fields.passphrase = filled(&self.passphrase);
    }

    /// Everything typed, for a new server.
    fn to_new(&self) -> Result<ServerFields, ApiError> {
        let mut fields = ServerFields {
            name: Some(self.name.trim().to_string()),
            host: Some(self.host.trim().to_string()),
            port: Some(self.port()?),
            username: Some(self.username.trim().to_string()),
            known_host: filled(unix_lines(&self.known_host).trim()),
            cache_dir: filled(self.cache_dir.trim()),
            tags: Some(typed_tags(&self.tags)),
            ..ServerFields::default()
        };
        self.credentials(&mut fields);
        Ok(fields)
    }

    /// Only what differs from `current`, so the audit entry names the
    /// fields that changed and a field left alone is not written back.
    /// An emptied pin or cache directory clears it, as `""` does in the API.
    fn to_changes(&self, current: &Server) -> Result<ServerFields, ApiError> {
        let spec = &current.spec;
        let changed = |typed: &str, stored: &str| (typed != stored).then(|| typed.to_string());
        let port = self.port()?;
        let mut fields = ServerFields {
            name: changed(self.name.trim(), spec.name.as_str()),
            host: changed(self.host.trim(), &spec.host),
            port: (port != spec.port).then_some(port),
            username: changed(self.username.trim(), &spec.username),
            known_host: changed(
                unix_lines(&self.known_host).trim(),
                spec.known_host.as_deref().unwrap_or(""),
            ),
            cache_dir: changed(
                self.cache_dir.trim(),
                spec.cache_dir.as_deref().unwrap_or(""),
            ),
            tags: (typed_tags(&self.tags).join(" ") != tag_text(&spec.tags))
                .then(|| typed_tags(&self.tags)),
            ..ServerFields::default()
        };
        self.credentials(&mut fields);
        Ok(fields)
    }
}

/// `Some` unless empty.
fn filled(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

fn unix_lines(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// Whether `fields` would change anything.
fn changes_anything(f: &ServerFields) -> bool {
    f.name.is_some()
        || f.host.is_some()
        || f.port.is_some()
        || f.username.is_some()
        || f.password.is_some()
        || f.private_key.is_some()
        || f.passphrase.is_some()
        || f.known_host.is_some()
        || f.cache_dir.is_some()
}

/// `GET /servers/new`: the empty form.
pub async fn new_form(_caller: Admin, shell: Shell) -> Response {
    ServerFormPage {
        shell: shell.at("servers"),
        editing: None,
        form: ServerForm {
            port: "22".into(),
            ..ServerForm::default()
        },
        auth_kind: String::new(),
        error: None,
    }
    .into_response()
}

/// `POST /servers/new`: adds the server as `POST /api/v1/servers` does and
/// shows it; a refused field comes back beside its input.
pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    shell: Shell,
    FormBody(form): FormBody<ServerForm>,
) -> Result<Response, PageError> {
    let made = match form.to_new() {
        Ok(fields) => create_server(&state, &caller, &fields).await,
        Err(e) => Err(e),
    };
    let page = ServerFormPage {
        shell: shell.at("servers"),
        editing: None,
        form,
        auth_kind: String::new(),
        error: None,
    };
    match made {
        Ok(server) => Ok(see_other(&format!("/servers/{}", server.id.0))),
        Err(e) if e.field.is_some() => Ok(page.refused(e)),
        Err(e) => Err(e.into()),
    }
}

/// `GET /servers/{id}/edit`: the form with the server's settings, never its
/// credentials.
pub async fn edit_form(
    State(state): State<AppState>,
    _caller: Admin,
    shell: Shell,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    let server = state.store.get_server(ServerId(id)).await?;
    Ok(edit_page(shell, &server, ServerForm::of(&server)).into_response())
}

fn edit_page(shell: Shell, server: &Server, form: ServerForm) -> ServerFormPage {
    ServerFormPage {
        shell: shell.at("servers"),
        editing: Some((server.id.0, server.spec.name.to_string())),
        form,
        auth_kind: server.spec.auth_kind.as_str().to_string(),
        error: None,
    }
}

/// `POST /servers/{id}/edit`: changes what differs from the stored server,
/// as `PATCH /api/v1/servers/{id}` does; empty credentials keep the stored
/// ones.
pub async fn update(
    State(state): State<AppState>,
    Admin(caller): Admin,
    shell: Shell,
    PathParams(id): PathParams<i64>,
    FormBody(form): FormBody<ServerForm>,
) -> Result<Response, PageError> {
    let id = ServerId(id);
    let current = state.store.get_server(id).await?;
    let saved = match form.to_changes(&current) {
        Ok(fields) if !changes_anything(&fields) => Ok(()),
        Ok(fields) => update_server(&state, &caller, id, &fields).await.map(drop),
        Err(e) => Err(e),
    };
    match saved {
        Ok(()) => Ok(see_other(&format!("/servers/{}", id.0))),
        Err(e) if e.field.is_some() => Ok(edit_page(shell, &current, form).refused(e)),
        Err(e) => Err(e.into()),
    }
}

// --- deleting -------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "server_delete.html")]
pub struct DeletePage {
    pub shell: Shell,
    pub id: i64,
    pub name: String,
    /// Why the server could not be deleted (an event still targets it).
    pub error: Option<String>,
}

/// `GET /servers/{id}/delete`: asks to confirm (a page: the CSP allows no
/// script to ask in).
pub async fn confirm_delete(
    State(state): State<AppState>,
    _caller: Admin,
    shell: Shell,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    let server = state.store.get_server(ServerId(id)).await?;
    Ok(DeletePage {
        shell: shell.at("servers"),
        id,
        name: server.spec.name.to_string(),
        error: None,
    }
    .into_response())
}

/// `POST /servers/{id}/delete`: removes the server as the API's delete does
/// and shows the list; a server an event still targets stays, and the
/// confirmation page says why.
pub async fn delete(
    State(state): State<AppState>,
    Admin(caller): Admin,
    shell: Shell,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    let server = state.store.get_server(ServerId(id)).await?;
    match delete_server(&state, &caller, server.id).await {
        Ok(()) => Ok(see_other("/servers")),
        Err(e) if e.field.is_some() => {
            let status = e.code.status();
            let page = DeletePage {
                shell: shell.at("servers"),
                id,
                name: server.spec.name.to_string(),
                error: Some(e.message),
            };
            Ok((status, page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}
