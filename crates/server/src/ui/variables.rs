//! The variables page: the signed-in user's variables (a secret one's value shown as `•••`), and for editors a form to set one and a button to delete one.
//!
//! Writes go through the same store calls as `PUT`/`DELETE
//! /api/v1/variables/{key}`, audited with the signed-in user as actor and
//! the key, never the value. A form that cannot be done answers 422 with
//! the page, the error beside its field and what was typed kept (never a
//! secret value).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cronium_core::{Expect, VariableKey};
use cronium_store::{StoreError, VariableWrite};
use serde::Deserialize;

use super::pages::{Shell, time};
use crate::api::variables::audit;
use crate::error::{ApiError, FormBody, PageError, PathParams, see_other};
use crate::state::AppState;
use crate::tokens::{Caller, Editor, Viewer};

pub struct VariableRow {
    pub key: String,
    /// Compact JSON; empty for a secret variable.
    pub value: String,
    pub secret: bool,
    pub version: u64,
    pub updated: String,
    pub job: Option<i64>,
}

/// The set form's error, by field.
#[derive(Debug, Default)]
pub struct Errors(Option<(String, String)>);

impl Errors {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .as_ref()
            .filter(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "variables.html")]
pub struct VariablesPage {
    pub shell: Shell,
    pub rows: Vec<VariableRow>,
    pub errors: Errors,
    /// What was typed into the set form, kept when it is refused.
    pub key: String,
    pub value: String,
    pub secrecy: String,
}

impl VariablesPage {
    async fn load(state: &AppState, caller: &Caller, shell: Shell) -> Result<Self, PageError> {
        let rows = state
            .store
            .list_variables(caller.user)
            .await?
            .into_iter()
            .map(|v| VariableRow {
                key: v.key.as_str().to_string(),
                value: match (&v.value, v.secret) {
                    (Some(value), false) => value.to_string(),
                    _ => String::new(),
                },
                secret: v.secret,
                version: v.version,
                updated: time(v.updated_at),
                job: v.updated_by_job.map(|j| j.0),
            })
            .collect();
        Ok(VariablesPage {
            shell: shell.at("variables"),
            rows,
            errors: Errors::default(),
            key: String::new(),
            value: String::new(),
            secrecy: "keep".into(),
        })
    }
}

/// `GET /variables`.
pub async fn list(
    State(state): State<AppState>,
    Viewer(caller): Viewer,
    shell: Shell,
) -> Result<Response, PageError> {
    Ok(VariablesPage::load(&state, &caller, shell)
        .await?
        .into_response())
}

#[derive(Deserialize)]
pub struct SetForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    secrecy: String,
}

/// `POST /variables`: creates or replaces a variable.
pub async fn set(
    State(state): State<AppState>,
    Editor(caller): Editor,
    shell: Shell,
    FormBody(form): FormBody<SetForm>,
) -> Result<Response, PageError> {
    let secret = match form.secrecy.as_str() {
        "secret" => Some(true),
        "plain" => Some(false),
        _ => None,
    };
    let checked = VariableKey::new(form.key.trim())
        .map_err(|e| ("key", e.message))
        .and_then(|key| {
            serde_json::from_str::<serde_json::Value>(&form.value)
                .map(|value| (key, value))
                .map_err(|e| {
                    (
                        "value",
                        format!("not JSON ({e}); a string needs its quotes: \"text\""),
                    )
                })
        });
    let written = match checked {
        Ok((key, value)) => {
            let entry = audit(&caller, "variable.set", &key, secret);
            let write = VariableWrite {
                value,
                secret,
                expect: Expect::Any,
            };
            state
                .store
                .set_variable(
                    caller.user,
                    &key,
                    write,
                    &state.sealer,
                    crate::now(),
                    &entry,
                )
                .await
                .map(drop)
                .map_err(|e| match e {
                    StoreError::Invalid(v) => {
                        Ok((if v.field == "key" { "key" } else { "value" }, v.message))
                    }
                    other => Err(other),
                })
        }
        Err(field) => Err(Ok(field)),
    };
    match written {
        Ok(()) => Ok(see_other("/variables")),
        Err(Err(e)) => Err(e.into()),
        Err(Ok((field, message))) => {
            let mut page = VariablesPage::load(&state, &caller, shell).await?;
            page.errors = Errors(Some((field.to_string(), message)));
            page.key = form.key;
            // A secret value typed into a refused form is not sent back.
            if secret != Some(true) {
                page.value = form.value;
            }
            page.secrecy = match secret {
                Some(true) => "secret",
                Some(false) => "plain",
                None => "keep",
            }
            .into();
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// `POST /variables/{key}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(key): PathParams<String>,
) -> Result<Response, PageError> {
    let key = VariableKey::new(&key).map_err(ApiError::from)?;
    let entry = audit(&caller, "variable.delete", &key, None);
    if !state
        .store
        .delete_variable(caller.user, &key, &entry)
        .await?
    {
        return Err(ApiError::not_found(format!("variable {key} not found")).into());
    }
    Ok(see_other("/variables"))
}
