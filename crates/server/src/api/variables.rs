//! `/api/v1/variables`: the caller's own variables, which their events' scripts share. Secret values are write-only: sealed on arrival, never returned; every write is audited with the key, never the value.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cronium_core::{Expect, MAX_VARIABLE_BYTES, Variable, VariableKey, check_json_size};
use cronium_store::{AuditEntry, VariableWrite};
use serde::Serialize;
use serde_json::json;

use super::no_content;
use crate::error::{ApiError, ExactJsonBody, PathParams};
use crate::state::AppState;
use crate::tokens::{Caller, Editor, Viewer};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VariableView {
    pub key: String,
    /// `null` for a secret variable (and for a plain one holding `null`:
    /// `secret` tells them apart).
    pub value: serde_json::Value,
    pub secret: bool,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The job whose script wrote it last; `null` when written through the API.
    pub updated_by_job: Option<i64>,
}

impl From<Variable> for VariableView {
    fn from(v: Variable) -> VariableView {
        VariableView {
            key: v.key.as_str().to_string(),
            // A secret variable's value never leaves the store in clear.
            value: if v.secret {
                serde_json::Value::Null
            } else {
                v.value.unwrap_or(serde_json::Value::Null)
            },
            secret: v.secret,
            version: v.version,
            created_at: v.created_at,
            updated_at: v.updated_at,
            updated_by_job: v.updated_by_job.map(|j| j.0),
        }
    }
}

/// A `PUT` body, parsed: `value` (required, any JSON), `secret` (omitted:
/// keep the variable's secrecy; a new one is plain), `expect` (the value the
/// variable must hold now, `null` included) or `expectAbsent: true`.
fn parse_put(
    mut body: serde_json::Map<String, serde_json::Value>,
) -> Result<VariableWrite, ApiError> {
    if let Some(unknown) = body
        .keys()
        .find(|k| !["value", "secret", "expect", "expectAbsent"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "{unknown}: unknown field `{unknown}`, expected one of `value`, `secret`, \
                 `expect`, `expectAbsent`"
        ))
        .with_field(unknown.clone()));
    }
    let flag = |body: &serde_json::Map<String, serde_json::Value>, name: &str| match body.get(name)
    {
        None => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name}: invalid type: {}, expected a boolean",
            kind(other)
        ))
        .with_field(name)),
    };
    let secret = flag(&body, "secret")?;
    let absent = flag(&body, "expectAbsent")?.unwrap_or(false);
    let value = body
        .remove("value")
        .ok_or_else(|| ApiError::bad_request("value: missing field `value`").with_field("value"))?;
    check_json_size(&value, MAX_VARIABLE_BYTES, "value")?;
    let expect = match (body.remove("expect"), absent) {
        (Some(_), true) => {
            return Err(ApiError::invalid(
                "expectAbsent",
                "give either expect (a value) or expectAbsent, not both",
            ));
        }
        (Some(v), false) => Expect::Value(v),
        (None, true) => Expect::Absent,
        (None, false) => Expect::Any,
    };
    Ok(VariableWrite {
        value,
        secret,
        expect,
    })
}

/// JSON's name for a value's type, for error messages.
fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// The audit entry of a change to variable `key`: its key, never its value.
pub(crate) fn audit(
    caller: &Caller,
    action: &str,
    key: &VariableKey,
    secret: Option<bool>,
) -> AuditEntry {
    let mut detail = json!({ "key": key.as_str() });
    if let Some(secret) = secret {
        detail["secret"] = secret.into();
    }
    AuditEntry {
        at: crate::now(),
        actor: Some(caller.actor()),
        action: action.into(),
        target_type: "variable".into(),
        target_id: None,
        detail,
    }
}

fn not_found(key: &VariableKey) -> ApiError {
    ApiError::not_found(format!("variable {key} not found"))
}

pub async fn list(
    State(state): State<AppState>,
    Viewer(caller): Viewer,
) -> Result<axum::Json<Vec<VariableView>>, ApiError> {
    let list = state.store.list_variables(caller.user).await?;
    Ok(axum::Json(
        list.into_iter().map(VariableView::from).collect(),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    Viewer(caller): Viewer,
    PathParams(key): PathParams<String>,
) -> Result<axum::Json<VariableView>, ApiError> {
    let key = VariableKey::new(&key)?;
    let found = state.store.get_variable(caller.user, &key).await?;
    let found = found.ok_or_else(|| not_found(&key))?;
    Ok(axum::Json(found.variable.into()))
}

/// Creates (201) or replaces (200) a variable.
pub async fn put(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(key): PathParams<String>,
    ExactJsonBody(body): ExactJsonBody,
) -> Result<Response, ApiError> {
    let key = VariableKey::new(&key)?;
    let write = parse_put(body)?;
    let entry = audit(&caller, "variable.set", &key, write.secret);
    let written = state
        .store
        .set_variable(
            caller.user,
            &key,
            write,
            &state.sealer,
            crate::now(),
            &entry,
        )
        .await?;
    let status = if written.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(VariableView::from(written))).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(key): PathParams<String>,
) -> Result<Response, ApiError> {
    let key = VariableKey::new(&key)?;
    let entry = audit(&caller, "variable.delete", &key, None);
    if state
        .store
        .delete_variable(caller.user, &key, &entry)
        .await?
    {
        Ok(no_content())
    } else {
        Err(not_found(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: serde_json::Value) -> Result<VariableWrite, ApiError> {
        match body {
            serde_json::Value::Object(map) => parse_put(map),
            _ => unreachable!(),
        }
    }

    #[test]
    fn bodies_say_what_to_expect() {
        let w = parse(json!({"value": 1})).unwrap();
        assert_eq!((w.secret, w.expect), (None, Expect::Any));
        let w = parse(json!({"value": 1, "secret": true, "expect": null})).unwrap();
        assert_eq!(
            (w.secret, w.expect),
            (Some(true), Expect::Value(json!(null)))
        );
        let w = parse(json!({"value": 1, "expectAbsent": true})).unwrap();
        assert_eq!(w.expect, Expect::Absent);
        let w = parse(json!({"value": 1, "expectAbsent": false})).unwrap();
        assert_eq!(w.expect, Expect::Any);
    }

    #[test]
    fn bad_bodies_name_their_field() {
        let field = |body| parse(body).unwrap_err().field.unwrap();
        assert_eq!(field(json!({})), "value");
        assert_eq!(field(json!({"value": 1, "secret": "yes"})), "secret");
        assert_eq!(field(json!({"value": 1, "other": 1})), "other");
        assert_eq!(
            field(json!({"value": 1, "expect": 1, "expectAbsent": true})),
            "expectAbsent"
        );
        let big = json!("x".repeat(MAX_VARIABLE_BYTES));
        let e = parse(json!({ "value": big })).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (crate::error::ErrorCode::ValidationFailed, Some("value"))
        );
    }
}
