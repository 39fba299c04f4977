//! `/api/v1/servers`: remote hosts. Credentials are write-only: sealed on arrival, never returned.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cronium_core::{AuthKind, ServerId, ServerName, ServerSpec, ValidationError};
use cronium_store::{AuditEntry, Server};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::no_content;
use crate::error::{ApiError, JsonBody, PathParams};
use crate::secrets::Credentials;
use crate::state::AppState;
use crate::tokens::{Admin, Caller, Viewer};

/// Largest private key or password accepted.
const MAX_SECRET_BYTES: usize = 16 * 1024;

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
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Server> for ServerView {
    fn from(s: Server) -> ServerView {
        ServerView {
            id: s.id.0,
            name: s.spec.name.as_str().to_string(),
            host: s.spec.host,
            port: s.spec.port,
            username: s.spec.username,
            auth_kind: s.spec.auth_kind.as_str(),
            known_host: s.spec.known_host,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// The credentials given, if any: exactly one of `privateKey` or `password`,
/// and `passphrase` only with a key.
fn credentials(fields: &ServerFields) -> Result<Option<Credentials>, ApiError> {
    let too_long = |field: &str, v: &str| {
        (v.len() > MAX_SECRET_BYTES)
            .then(|| ApiError::invalid(field, format!("must be at most {MAX_SECRET_BYTES} bytes")))
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
        actor: Some(caller.token),
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
    let name = ServerName::new(
        fields
            .name
            .as_deref()
            .ok_or_else(|| ApiError::invalid("name", "required"))?,
    )?;
    let credentials = credentials(&fields)?
        .ok_or_else(|| ApiError::invalid("privateKey", "a privateKey or a password is required"))?;
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
        known_host: fields.known_host.clone().filter(|k| !k.is_empty()),
    }
    .validate()?;
    let entry = audit(
        &caller,
        "server.create",
        None,
        json!({ "name": spec.name.as_str(), "host": spec.host, "authKind": spec.auth_kind.as_str() }),
    );
    let server = state
        .store
        .create_server(spec, crate::now(), &entry)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(ServerView::from(server))).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Viewer,
) -> Result<axum::Json<Vec<ServerView>>, ApiError> {
    let servers = state.store.list_servers().await?;
    Ok(axum::Json(
        servers.into_iter().map(ServerView::from).collect(),
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
    let id = ServerId(id);
    let name = fields.name.as_deref().map(ServerName::new).transpose()?;
    let sealed = credentials(&fields)?.map(|c| (auth_kind(&c), state.sealer.seal_credentials(&c)));
    let entry = audit(
        &caller,
        "server.update",
        Some(id),
        json!({ "fields": field_names(&fields) }),
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
        if let Some((kind, blob)) = &sealed {
            spec.auth_kind = *kind;
            spec.sealed_credentials = blob.clone();
        }
        if let Some(known) = &fields.known_host {
            spec.known_host = Some(known.clone()).filter(|k| !k.is_empty());
        }
        spec.validate()
    };
    let server = state
        .store
        .update_server(id, &apply, crate::now(), &entry)
        .await?;
    Ok(axum::Json(server.into()))
}

pub async fn delete(
    State(state): State<AppState>,
    Admin(caller): Admin,
    PathParams(id): PathParams<i64>,
) -> Result<Response, ApiError> {
    let id = ServerId(id);
    let entry = audit(&caller, "server.delete", Some(id), json!({}));
    state.store.delete_server(id, &entry).await?;
    Ok(no_content())
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
