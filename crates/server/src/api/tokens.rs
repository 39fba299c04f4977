//! `/api/v1/tokens`: API tokens. The secret is shown once, in the answer to `POST`; only its hash is stored.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cronium_core::{Role, TokenId};
use cronium_store::{ApiToken, AuditEntry, NewToken};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::no_content;
use crate::error::{ApiError, JsonBody, PathParams};
use crate::state::AppState;
use crate::tokens::{Admin, Caller, TokenSecret};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenFields {
    pub name: Option<String>,
    pub role: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    pub role: &'static str,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> TokenView {
        TokenView {
            id: t.id.0,
            name: t.name,
            role: t.role.as_str(),
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// The answer to `POST`: the only time the secret is ever shown.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    pub id: i64,
    pub name: String,
    pub role: &'static str,
    pub token: String,
    pub created_at: DateTime<Utc>,
}

fn audit(
    caller: &Caller,
    action: &str,
    target: Option<TokenId>,
    detail: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        at: crate::now(),
        actor: Some(caller.actor()),
        action: action.into(),
        target_type: "token".into(),
        target_id: target.map(|id| id.0),
        detail,
    }
}

fn token_name(name: Option<&str>) -> Result<String, ApiError> {
    let name = name.map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::invalid("name", "required"));
    }
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "must be at most 100 characters, without control characters",
        ));
    }
    Ok(name.to_string())
}

/// Makes a token for the caller from a name and a role as given (the API's
/// JSON or a page's form): its record and its secret, shown once.
pub(crate) async fn issue(
    state: &AppState,
    caller: &Caller,
    name: Option<&str>,
    role: Option<&str>,
) -> Result<(ApiToken, TokenSecret), ApiError> {
    let name = token_name(name)?;
    let role = Role::parse(
        role.filter(|r| !r.is_empty())
            .ok_or_else(|| ApiError::invalid("role", "required (admin, editor or viewer)"))?,
    )?;
    let secret = TokenSecret::generate();
    let entry = audit(
        caller,
        "token.create",
        None,
        json!({ "name": name, "role": role.as_str() }),
    );
    let token = state
        .store
        .create_token(
            NewToken {
                user_id: caller.user,
                name,
                role,
                hash: secret.hash(),
            },
            crate::now(),
            &entry,
        )
        .await?;
    Ok((token, secret))
}

/// Revokes a token, audited as the caller's.
pub(crate) async fn withdraw(
    state: &AppState,
    caller: &Caller,
    id: TokenId,
) -> Result<(), ApiError> {
    let entry = audit(caller, "token.revoke", Some(id), json!({}));
    state.store.revoke_token(id, crate::now(), &entry).await?;
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(fields): JsonBody<TokenFields>,
) -> Result<Response, ApiError> {
    let (token, secret) = issue(
        &state,
        &caller,
        fields.name.as_deref(),
        fields.role.as_deref(),
    )
    .await?;
    let body = CreatedToken {
        id: token.id.0,
        name: token.name,
        role: token.role.as_str(),
        token: secret.as_str().to_string(),
        created_at: token.created_at,
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Admin,
) -> Result<axum::Json<Vec<TokenView>>, ApiError> {
    let tokens = state.store.list_tokens().await?;
    Ok(axum::Json(
        tokens.into_iter().map(TokenView::from).collect(),
    ))
}

pub async fn revoke(
    State(state): State<AppState>,
    Admin(caller): Admin,
    PathParams(id): PathParams<i64>,
) -> Result<Response, ApiError> {
    withdraw(&state, &caller, TokenId(id)).await?;
    Ok(no_content())
}
