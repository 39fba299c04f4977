//! `/api/v1/servers`: remote hosts. Credentials are write-only: sealed on arrival, never returned.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cronium_core::{AuthKind, ServerId, ServerName, ServerSpec, Tag, ValidationError};
use cronium_engine::secrets::Credentials;
use cronium_engine::servers::open_server;
use cronium_ssh::{CheckReport, HostKey, HostKeyPin, Timeouts};
use cronium_store::{AuditEntry, Server, ServerCheck, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::no_content;
use crate::error::{ApiError, JsonBody, PathParams, QueryParams};
use crate::state::AppState;
use crate::tokens::{Admin, Caller, Viewer};

/// Longest private key, passphrase or password accepted.
const MAX_SECRET_CHARS: usize = 16 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerFields {
    pub name: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub private_key: Option<String>,
    pub passphrase: Option<String>,
    pub password: Option<String>,
    /// A `known_hosts` line; `""` clears it.
    pub known_host: Option<String>,
    /// The runner cache directory on the host; `""` resets it to the default.
    pub cache_dir: Option<String>,
    /// Replaces the server's tags.
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerView {
    pub id: i64,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub auth_kind: &'static str,
    pub known_host: Option<String>,
    /// The pinned key's `SHA256:` fingerprint, as `ssh-keygen -lf` prints it.
    pub host_key_fingerprint: Option<String>,
    /// The runner cache directory in effect (the default when none is set),
    /// so what is shown is where the files are; relative to the SSH user's
    /// home unless absolute.
    pub cache_dir: String,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The newest check's outcome; `null` until the server is first checked.
    pub last_check: Option<LastCheckView>,
}

/// A server's newest check, as the server's view shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastCheckView {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub message: String,
    pub fingerprint: Option<String>,
}

/// The pinned key's `SHA256:` fingerprint, as `ssh-keygen -lf` prints it.
/// `None` without a pin, and for a pin stored before pins were validated
/// that does not parse (`check` says what is wrong with it).
pub(crate) fn pinned_fingerprint(spec: &ServerSpec) -> Option<String> {
    spec.known_host
        .as_deref()
        .and_then(|line| HostKeyPin::parse(line).ok())
        .map(|pin| pin.fingerprint())
}

impl From<Server> for ServerView {
    fn from(s: Server) -> ServerView {
        let host_key_fingerprint = pinned_fingerprint(&s.spec);
        let cache_dir = s.spec.effective_cache_dir().to_string();
        ServerView {
            id: s.id.0,
            name: s.spec.name.as_str().to_string(),
            host: s.spec.host,
            port: s.spec.port,
            username: s.spec.username,
            auth_kind: s.spec.auth_kind.as_str(),
            known_host: s.spec.known_host,
            host_key_fingerprint,
            cache_dir,
            tags: s.spec.tags.iter().map(|t| t.as_str().to_string()).collect(),
            created_at: s.created_at,
            updated_at: s.updated_at,
            last_check: s.last_check.map(|c| LastCheckView {
                at: c.at,
                ok: c.ok,
                message: c.message,
                fingerprint: c.fingerprint,
            }),
        }
    }
}

/// The credentials given, if any: exactly one of `privateKey` or `password`,
/// and `passphrase` only with a key.
fn credentials(fields: &ServerFields) -> Result<Option<Credentials>, ApiError> {
    let too_long = |field: &str, v: &str| {
        // Characters, as the document's maxLength counts them.
        (v.chars().count() > MAX_SECRET_CHARS).then(|| {
            ApiError::invalid(
                field,
                format!("must be at most {MAX_SECRET_CHARS} characters"),
            )
        })
    };
    for (field, value) in [
        ("privateKey", &fields.private_key),
        ("passphrase", &fields.passphrase),
        ("password", &fields.password),
    ] {
        if let Some(err) = value.as_deref().and_then(|v| too_long(field, v)) {
            return Err(err);
        }
    }
    match (&fields.private_key, &fields.password) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "password",
            "give either privateKey or password, not both",
        )),
        (Some(key), None) => {
            if !key.contains("PRIVATE KEY-----") {
                return Err(ApiError::invalid(
                    "privateKey",
                    "expected a PEM or OpenSSH private key (-----BEGIN … PRIVATE KEY-----)",
                ));
            }
            Ok(Some(Credentials::Key {
                private_key: key.clone(),
                passphrase: fields.passphrase.clone().filter(|p| !p.is_empty()),
            }))
        }
        (None, Some(password)) => {
            if fields.passphrase.is_some() {
                return Err(ApiError::invalid(
                    "passphrase",
                    "only goes with a privateKey",
                ));
            }
            if password.is_empty() {
                return Err(ApiError::invalid("password", "must not be empty"));
            }
            Ok(Some(Credentials::Password {
                password: password.clone(),
            }))
        }
        (None, None) if fields.passphrase.is_some() => Err(ApiError::invalid(
            "passphrase",
            "only goes with a privateKey (send the key again with its passphrase)",
        )),
        (None, None) => Ok(None),
    }
}

/// `knownHost` as given: `None` if absent, `Some(None)` to clear, else a
/// line that pins a key (a `known_hosts` line, a public key or a `SHA256:`
/// fingerprint).
fn known_host(fields: &ServerFields) -> Result<Option<Option<String>>, ApiError> {
    let Some(text) = fields.known_host.as_deref() else {
        return Ok(None);
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(Some(None));
    }
    HostKeyPin::parse(text).map_err(|e| ApiError::invalid("knownHost", e.to_string()))?;
    Ok(Some(Some(text.to_string())))
}

/// `cacheDir` as given: `None` if absent, `Some(None)` to reset to the
/// default, else a directory (checked with the rest of the spec).
fn cache_dir(fields: &ServerFields) -> Option<Option<String>> {
    let text = fields.cache_dir.as_deref()?;
    Some((!text.is_empty()).then(|| text.to_string()))
}

/// `tags` as given: `None` if absent, else the whole new set.
fn tags(fields: &ServerFields) -> Result<Option<BTreeSet<Tag>>, ApiError> {
    let Some(tags) = &fields.tags else {
        return Ok(None);
    };
    Ok(Some(
        tags.iter().map(|t| Tag::new(t)).collect::<Result<_, _>>()?,
    ))
}

fn auth_kind(c: &Credentials) -> AuthKind {
    match c {
        Credentials::Key { .. } => AuthKind::Key,
        Credentials::Password { .. } => AuthKind::Password,
    }
}

fn audit(
    caller: &Caller,
    action: &str,
    target: Option<ServerId>,
    detail: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        at: crate::now(),
        actor: Some(caller.actor()),
        action: action.into(),
        target_type: "server".into(),
        target_id: target.map(|id| id.0),
        detail,
    }
}

/// Changes that name fields but never values of credentials.
fn field_names(f: &ServerFields) -> Vec<&'static str> {
    [
        ("name", f.name.is_some()),
        ("host", f.host.is_some()),
        ("port", f.port.is_some()),
        ("username", f.username.is_some()),
        (
            "credentials",
            f.private_key.is_some() || f.password.is_some(),
        ),
        ("knownHost", f.known_host.is_some()),
        ("cacheDir", f.cache_dir.is_some()),
        ("tags", f.tags.is_some()),
    ]
    .iter()
    .filter(|(_, g)| *g)
    .map(|(n, _)| *n)
    .collect()
}

pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(fields): JsonBody<ServerFields>,
) -> Result<Response, ApiError> {
    let server = create_server(&state, &caller, &fields).await?;
    Ok((StatusCode::CREATED, axum::Json(ServerView::from(server))).into_response())
}

/// Adds a server from `fields`, audited as `caller`: what `POST /servers`
/// and the web UI's form both do. A bad field is a 422 naming it.
pub(crate) async fn create_server(
    state: &AppState,
    caller: &Caller,
    fields: &ServerFields,
) -> Result<Server, ApiError> {
    let name = ServerName::new(
        fields
            .name
            .as_deref()
            .ok_or_else(|| ApiError::invalid("name", "required"))?,
    )?;
    let credentials = credentials(fields)?
        .ok_or_else(|| ApiError::invalid("privateKey", "a privateKey or a password is required"))?;
    let known_host = known_host(fields)?.flatten();
    let spec = ServerSpec {
        name,
        host: fields
            .host
            .clone()
            .ok_or_else(|| ApiError::invalid("host", "required"))?,
        port: fields.port.unwrap_or(22),
        username: fields
            .username
            .clone()
            .ok_or_else(|| ApiError::invalid("username", "required"))?,
        auth_kind: auth_kind(&credentials),
        sealed_credentials: state.sealer.seal_credentials(&credentials),
        known_host,
        cache_dir: cache_dir(fields).flatten(),
        tags: tags(fields)?.unwrap_or_default(),
    }
    .validate()?;
    let entry = audit(
        caller,
        "server.create",
        None,
        json!({ "name": spec.name.as_str(), "host": spec.host, "authKind": spec.auth_kind.as_str() }),
    );
    Ok(state
        .store
        .create_server(spec, crate::now(), &entry)
        .await?)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only servers with this tag.
    pub tag: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Viewer,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<axum::Json<Vec<ServerView>>, ApiError> {
    let tag = query.tag.as_deref().map(Tag::new).transpose()?;
    let servers = state.store.list_servers().await?;
    Ok(axum::Json(
        servers
            .into_iter()
            .filter(|s| tag.as_ref().is_none_or(|t| s.spec.tags.contains(t)))
            .map(ServerView::from)
            .collect(),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams(id): PathParams<i64>,
) -> Result<axum::Json<ServerView>, ApiError> {
    Ok(axum::Json(
        state.store.get_server(ServerId(id)).await?.into(),
    ))
}

pub async fn update(
    State(state): State<AppState>,
    Admin(caller): Admin,
    PathParams(id): PathParams<i64>,
    JsonBody(fields): JsonBody<ServerFields>,
) -> Result<axum::Json<ServerView>, ApiError> {
    let server = update_server(&state, &caller, ServerId(id), &fields).await?;
    Ok(axum::Json(server.into()))
}

/// Changes the fields given (an absent one stays as it is), audited as
/// `caller` with the names of the fields: `PATCH /servers/{id}` and the web
/// UI's edit form.
pub(crate) async fn update_server(
    state: &AppState,
    caller: &Caller,
    id: ServerId,
    fields: &ServerFields,
) -> Result<Server, ApiError> {
    let name = fields.name.as_deref().map(ServerName::new).transpose()?;
    let known_host = known_host(fields)?;
    let cache_dir = cache_dir(fields);
    let tags = tags(fields)?;
    let given = credentials(fields)?;
    let entry = audit(
        caller,
        "server.update",
        Some(id),
        json!({ "fields": field_names(fields) }),
    );
    let apply = |current: &Server| -> Result<ServerSpec, ValidationError> {
        let mut spec = current.spec.clone();
        if let Some(name) = &name {
            spec.name = name.clone();
        }
        if let Some(host) = &fields.host {
            spec.host = host.clone();
        }
        if let Some(port) = fields.port {
            spec.port = port;
        }
        if let Some(username) = &fields.username {
            spec.username = username.clone();
        }
        if let Some(credentials) = &given {
            // The same secret again keeps the sealed blob (sealing twice
            // never gives the same bytes), so a PATCH that repeats what is
            // there is seen to change nothing.
            let same = state
                .sealer
                .open_credentials(&spec.sealed_credentials)
                .is_ok_and(|current| current == *credentials);
            if !same {
                spec.auth_kind = auth_kind(credentials);
                spec.sealed_credentials = state.sealer.seal_credentials(credentials);
            }
        }
        if let Some(known) = &known_host {
            spec.known_host = known.clone();
        }
        if let Some(dir) = &cache_dir {
            spec.cache_dir = dir.clone();
        }
        if let Some(tags) = &tags {
            spec.tags = tags.clone();
        }
        spec.validate()
    };
    // A change to nothing is not written: no new `updatedAt`, no audit
    // entry, so re-running an import leaves no trace. (Checked before the
    // write; should the server change in between, the write below happens
    // as usual.)
    let current = state.store.get_server(id).await?;
    if apply(&current)? == current.spec {
        return Ok(current);
    }
    Ok(state
        .store
        .update_server(id, &apply, crate::now(), &entry)
        .await?)
}

pub async fn delete(
    State(state): State<AppState>,
    Admin(caller): Admin,
    PathParams(id): PathParams<i64>,
) -> Result<Response, ApiError> {
    delete_server(&state, &caller, ServerId(id)).await?;
    Ok(no_content())
}

/// Removes a server no event targets, audited as `caller`.
pub(crate) async fn delete_server(
    state: &AppState,
    caller: &Caller,
    id: ServerId,
) -> Result<(), ApiError> {
    let entry = audit(caller, "server.delete", Some(id), json!({}));
    Ok(state.store.delete_server(id, &entry).await?)
}

/// What `POST /servers/{id}/check` answers. Says how far the check got even
/// when it failed; never holds a credential.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckView {
    pub id: i64,
    pub server: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub ok: bool,
    pub reachable: bool,
    pub authenticated: bool,
    pub host_key: Option<HostKeyView>,
    /// A key is pinned for this server after the check.
    pub pinned: bool,
    /// This check pinned the key it saw (trust on first use).
    pub newly_pinned: bool,
    pub os: Option<String>,
    pub arch: Option<String>,
    /// `os arch`, as `uname -sm` prints it.
    pub system: Option<String>,
    pub interpreters: Vec<InterpreterView>,
    pub runner: Option<RunnerView>,
    pub error: Option<CheckError>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostKeyView {
    pub algorithm: String,
    pub fingerprint: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterpreterView {
    pub name: String,
    pub version: Option<String>,
    pub version_line: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerView {
    pub version: Option<String>,
    pub raw: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckError {
    /// `connect`, `host key`, `auth`, `channel`, `command` or `known_hosts`.
    pub phase: String,
    pub message: String,
}

impl CheckView {
    fn new(server: &Server, report: &CheckReport) -> CheckView {
        let spec = &server.spec;
        CheckView {
            id: server.id.0,
            server: spec.name.as_str().to_string(),
            host: spec.host.clone(),
            port: spec.port,
            username: spec.username.clone(),
            ok: report.ok(),
            reachable: report.reachable,
            authenticated: report.authenticated,
            host_key: report.host_key.as_ref().map(|key| HostKeyView {
                algorithm: key.algorithm(),
                fingerprint: key.fingerprint(),
            }),
            pinned: spec.known_host.is_some(),
            newly_pinned: false,
            os: report.os.clone(),
            arch: report.arch.clone(),
            system: report.system(),
            interpreters: report
                .interpreters
                .iter()
                .map(|i| InterpreterView {
                    name: i.name.clone(),
                    version: i.version.clone(),
                    version_line: i.version_line.clone(),
                })
                .collect(),
            runner: report.runner.as_ref().map(|r| RunnerView {
                version: r.version.clone(),
                raw: r.raw.clone(),
            }),
            error: report.error.as_ref().map(|e| CheckError {
                phase: e.phase().to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// What is kept of this check on the server's row: the error with its
    /// phase, or a one-line summary (system, interpreters, runner).
    fn outcome(&self) -> ServerCheck {
        let message = match &self.error {
            Some(e) => format!("{}: {}", e.phase, e.message),
            None => self.summary(),
        };
        ServerCheck {
            at: crate::now(),
            ok: self.ok,
            message: shorten(message, MAX_CHECK_MESSAGE),
            fingerprint: self.host_key.as_ref().map(|k| k.fingerprint.clone()),
        }
    }

    /// `Linux x86_64; bash 5.2.15, python3 3.11.2, node missing; runner 0.3.0`.
    fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(system) = &self.system {
            parts.push(system.clone());
        }
        if !self.interpreters.is_empty() {
            let found: Vec<String> = self
                .interpreters
                .iter()
                .map(|i| format!("{} {}", i.name, i.version.as_deref().unwrap_or("missing")))
                .collect();
            parts.push(found.join(", "));
        }
        parts.push(match &self.runner {
            Some(r) => format!("runner {}", r.version.as_deref().unwrap_or(&r.raw)),
            None => "runner not deployed yet".into(),
        });
        parts.join("; ")
    }

    fn fail(&mut self, phase: &str, message: String) {
        self.ok = false;
        self.error = Some(CheckError {
            phase: phase.to_string(),
            message,
        });
    }
}

/// Why a trusted-on-first-use key was not pinned after all: the record
/// changed while the check ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotPinned {
    /// Another check (or an admin) pinned a key meanwhile.
    PinnedMeanwhile,
    /// The record now points elsewhere, so the key seen is not its key.
    MovedMeanwhile,
}

/// Connects to the server and reports on it. Admin only: a server without
/// a pin gets the key this check saw pinned (trust on first use), once the
/// handshake and authentication both succeeded.
pub async fn check(
    State(state): State<AppState>,
    Admin(caller): Admin,
    PathParams(id): PathParams<i64>,
) -> Result<axum::Json<CheckView>, ApiError> {
    check_server(&state, &caller, ServerId(id))
        .await
        .map(axum::Json)
}

/// Checks a server, pinning its key on first use (as `caller`), and records
/// the outcome on the server's row: `POST /servers/{id}/check` and the web
/// UI's "Check now".
pub(crate) async fn check_server(
    state: &AppState,
    caller: &Caller,
    id: ServerId,
) -> Result<CheckView, ApiError> {
    // Spawned so that a client hanging up cannot stop the check between
    // trusting a key and recording it.
    tokio::spawn(run_check(state.clone(), *caller, id))
        .await
        .map_err(ApiError::internal)?
}

async fn run_check(state: AppState, caller: Caller, id: ServerId) -> Result<CheckView, ApiError> {
    let view = inspect(&state, &caller, id).await?;
    record(&state, id, &view).await?;
    Ok(view)
}

/// Keeps the check's outcome on the server's row for the pages. A server
/// deleted while it was checked has nowhere to keep it: the answer still
/// says what the check found.
async fn record(state: &AppState, id: ServerId, view: &CheckView) -> Result<(), ApiError> {
    match state.store.record_server_check(id, &view.outcome()).await {
        Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The check itself: connect, verify or pin the host key, look around.
async fn inspect(state: &AppState, caller: &Caller, id: ServerId) -> Result<CheckView, ApiError> {
    let server = state.store.get_server(id).await?;
    // A pin stored before pins were validated: say so instead of failing
    // the request, since the check cannot run until the pin is fixed.
    if let Some(Err(e)) = server.spec.known_host.as_deref().map(HostKeyPin::parse) {
        let mut view = CheckView::new(
            &server,
            &CheckReport::new(cronium_ssh::Target::new(
                server.spec.host.clone(),
                server.spec.port,
                server.spec.username.clone(),
            )),
        );
        view.fail(
            e.phase(),
            format!(
                "the pinned host key of server {} cannot be read ({e}); set knownHost again",
                server.spec.name
            ),
        );
        return Ok(view);
    }
    let remote = open_server(&server, &state.sealer).map_err(ApiError::internal)?;
    let report = cronium_ssh::check(
        &remote.target,
        &remote.credentials,
        &remote.policy(),
        Timeouts::default(),
        &remote.cache.runner(),
    )
    .await;
    drop(remote);
    let mut view = CheckView::new(&server, &report);
    let seen = report
        .host_key
        .as_ref()
        .filter(|_| report.newly_pinned && report.authenticated);
    if let Some(key) = seen {
        pin(state, caller, &server, key, &mut view).await?;
    }
    match &view.error {
        None => tracing::info!(server = %server.spec.name, "server check passed"),
        Some(e) => tracing::info!(
            server = %server.spec.name,
            phase = %e.phase,
            error = %e.message,
            "server check failed"
        ),
    }
    Ok(view)
}

/// Records `key` as the server's pin unless the record changed meanwhile.
async fn pin(
    state: &AppState,
    caller: &Caller,
    checked: &Server,
    key: &HostKey,
    view: &mut CheckView,
) -> Result<(), ApiError> {
    let (host, port) = (&checked.spec.host, checked.spec.port);
    let line = key.known_hosts_line(host, port);
    let entry = audit(
        caller,
        "server.pin",
        Some(checked.id),
        json!({
            "fingerprint": key.fingerprint(),
            "algorithm": key.algorithm(),
            "trustOnFirstUse": true,
        }),
    );
    let not_pinned = OnceLock::new();
    // Decided in the store's transaction, on the row as it is then: another
    // check may have pinned a key, or an admin may have changed the address.
    let apply = |current: &Server| -> Result<ServerSpec, ValidationError> {
        let refuse = |why: NotPinned| {
            let _ = not_pinned.set(why);
            Err(ValidationError::new(
                "knownHost",
                "the server changed while it was checked",
            ))
        };
        if current.spec.known_host.is_some() {
            return refuse(NotPinned::PinnedMeanwhile);
        }
        if current.spec.host != *host || current.spec.port != port {
            return refuse(NotPinned::MovedMeanwhile);
        }
        let mut spec = current.spec.clone();
        spec.known_host = Some(line.clone());
        spec.validate()
    };
    let result = state
        .store
        .update_server(checked.id, &apply, crate::now(), &entry)
        .await;
    match (result, not_pinned.get()) {
        (Ok(_), _) => {
            view.pinned = true;
            view.newly_pinned = true;
            tracing::info!(
                server = %checked.spec.name,
                fingerprint = %key.fingerprint(),
                "host key pinned on first use"
            );
        }
        (Err(StoreError::Invalid(_)), Some(NotPinned::PinnedMeanwhile)) => {
            let current = state.store.get_server(checked.id).await?;
            view.pinned = true;
            let pinned = current
                .spec
                .known_host
                .as_deref()
                .and_then(|line| HostKeyPin::parse(line).ok());
            if !pinned.as_ref().is_some_and(|pin| pin.matches(key)) {
                let pinned = pinned.map_or_else(|| "an unreadable key".into(), |p| p.fingerprint());
                view.fail(
                    "host key",
                    format!(
                        "host key of {}: while this check ran, {pinned} was pinned for server {}, \
                         but this check was shown {}; check the server again",
                        address(host, port),
                        checked.spec.name,
                        key.fingerprint()
                    ),
                );
            }
        }
        (Err(StoreError::Invalid(_)), Some(NotPinned::MovedMeanwhile)) => {
            view.fail(
                "host key",
                format!(
                    "the key {} of {} was not pinned: server {} was changed to another address \
                     while it was checked; check it again",
                    key.fingerprint(),
                    address(host, port),
                    checked.spec.name
                ),
            );
        }
        (Err(e), _) => return Err(e.into()),
    }
    Ok(())
}

/// The longest check message kept on a server's row.
const MAX_CHECK_MESSAGE: usize = 1000;

/// `text` cut to at most `max` bytes (at a character boundary), with `…`.
fn shorten(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// `host:port` as the SSH client's errors write it.
fn address(host: &str, port: u16) -> String {
    cronium_ssh::Target::new(host, port, "").address()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_credential() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n";
        let f = |k: Option<&str>, pp: Option<&str>, pw: Option<&str>| ServerFields {
            private_key: k.map(Into::into),
            passphrase: pp.map(Into::into),
            password: pw.map(Into::into),
            ..ServerFields::default()
        };
        assert!(matches!(
            credentials(&f(Some(key), None, None)),
            Ok(Some(Credentials::Key { .. }))
        ));
        assert!(matches!(
            credentials(&f(None, None, Some("pw"))),
            Ok(Some(Credentials::Password { .. }))
        ));
        assert!(matches!(credentials(&f(None, None, None)), Ok(None)));
        let table = [
            (f(Some(key), None, Some("pw")), "password"),
            (f(None, Some("pp"), Some("pw")), "passphrase"),
            (f(None, Some("pp"), None), "passphrase"),
            (f(Some("not a key"), None, None), "privateKey"),
            (f(None, None, Some("")), "password"),
        ];
        for (fields, field) in table {
            assert_eq!(
                credentials(&fields).unwrap_err().field.as_deref(),
                Some(field)
            );
        }
    }
}
