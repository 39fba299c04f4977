//! `/api/v1/events/{id}/actions`: what an event's jobs set off: `notify` (a message to a channel) when a job starts, runs too long or ends, or `run_event` (a job of another event) when it ends; each fires once per job.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cronium_core::schedule::{format_interval, parse_interval};
use cronium_core::{ActionId, ActionSpec, ActionTarget, ChannelId, EventId, When};
use cronium_store::{Action, AuditEntry, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::no_content;
use crate::error::{ApiError, JsonBody, PathParams};
use crate::state::AppState;
use crate::tokens::{Caller, Editor, Viewer};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionFields {
    pub when: Option<String>,
    /// `notify` or `run_event`; implied by `channel` or `targetEvent` when absent.
    pub kind: Option<String>,
    pub channel: Option<i64>,
    pub target_event: Option<i64>,
    /// How long a job may run before a `duration_exceeded` action fires:
    /// `90s`, `15m`, `1h30m`, like an event's timeout.
    pub after: Option<String>,
}

impl ActionFields {
    /// The action these fields describe, checked as a whole.
    fn spec(&self) -> Result<ActionSpec, ApiError> {
        let target = match (self.kind.as_deref(), self.channel, self.target_event) {
            (Some("notify") | None, Some(channel), None) => {
                ActionTarget::Notify(ChannelId(channel))
            }
            (Some("run_event") | None, None, Some(event)) => ActionTarget::RunEvent(EventId(event)),
            (Some("notify"), _, Some(_)) => {
                return Err(ApiError::invalid(
                    "targetEvent",
                    "a notify action takes a channel, not a targetEvent",
                ));
            }
            (Some("run_event"), Some(_), _) => {
                return Err(ApiError::invalid(
                    "channel",
                    "a run_event action takes a targetEvent, not a channel",
                ));
            }
            (Some("notify"), None, None) => {
                return Err(ApiError::invalid(
                    "channel",
                    "required: the id of a channel",
                ));
            }
            (Some("run_event"), None, None) => {
                return Err(ApiError::invalid(
                    "targetEvent",
                    "required: the id of the event to run",
                ));
            }
            (Some(other), _, _) => {
                return Err(ApiError::invalid(
                    "kind",
                    format!("unknown action kind {other:?} (the kinds are: notify, run_event)"),
                ));
            }
            (None, Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "targetEvent",
                    "an action either notifies a channel or runs an event, not both",
                ));
            }
            (None, None, None) => {
                return Err(ApiError::invalid(
                    "channel",
                    "required: a channel to notify (or a targetEvent to run)",
                ));
            }
        };
        let when = self.when.as_deref().ok_or_else(|| {
            ApiError::invalid(
                "when",
                "required (success, failure, always, condition, start or duration_exceeded)",
            )
        })?;
        let after_secs = self
            .after
            .as_deref()
            .map(|a| parse_interval(a).map_err(|m| ApiError::invalid("after", m)))
            .transpose()?
            .map(|d| d.as_secs());
        Ok(ActionSpec::new(
            When::parse(when, "when")?,
            after_secs,
            target,
        )?)
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionView {
    pub id: i64,
    pub event_id: i64,
    pub when: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_event: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_event_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl ActionView {
    /// `name` is the channel's or the target event's (`None` only if it
    /// vanished between two reads).
    fn new(a: Action, name: Option<String>) -> ActionView {
        let (channel, target_event) = match a.spec.target {
            ActionTarget::Notify(c) => (Some(c.0), None),
            ActionTarget::RunEvent(e) => (None, Some(e.0)),
        };
        ActionView {
            id: a.id.0,
            event_id: a.event_id.0,
            when: a.spec.when.as_str(),
            after: a
                .spec
                .after_secs
                .map(|s| format_interval(Duration::from_secs(s))),
            kind: a.spec.target.kind(),
            channel,
            channel_name: name.clone().filter(|_| channel.is_some()),
            target_event,
            target_event_name: name.filter(|_| target_event.is_some()),
            created_at: a.created_at,
        }
    }
}

/// The name of what an action targets: its channel or its event.
async fn target_name(
    state: &AppState,
    target: ActionTarget,
    channels: &HashMap<i64, String>,
) -> Result<Option<String>, ApiError> {
    match target {
        ActionTarget::Notify(c) => Ok(channels.get(&c.0).cloned()),
        ActionTarget::RunEvent(e) => match state.store.get_event(e).await {
            Ok(event) => Ok(Some(event.spec.name.as_str().to_string())),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        },
    }
}

/// Channel names by id, for views that show both.
pub(crate) async fn channel_names(state: &AppState) -> Result<HashMap<i64, String>, ApiError> {
    Ok(state
        .store
        .list_channels()
        .await?
        .into_iter()
        .map(|c| (c.id.0, c.spec.name.as_str().to_string()))
        .collect())
}

/// Actions are changes of their event, audited as such.
fn audit(caller: &Caller, action: &str, event: EventId, detail: serde_json::Value) -> AuditEntry {
    AuditEntry {
        at: crate::now(),
        actor: Some(caller.actor()),
        action: action.into(),
        target_type: "event".into(),
        target_id: Some(event.0),
        detail,
    }
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams(id): PathParams<i64>,
) -> Result<axum::Json<Vec<ActionView>>, ApiError> {
    let actions = state.store.list_actions(EventId(id)).await?;
    let channels = channel_names(&state).await?;
    let mut views = Vec::with_capacity(actions.len());
    for a in actions {
        let name = target_name(&state, a.spec.target, &channels).await?;
        views.push(ActionView::new(a, name));
    }
    Ok(axum::Json(views))
}

pub async fn add(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
    JsonBody(fields): JsonBody<ActionFields>,
) -> Result<Response, ApiError> {
    let event = EventId(id);
    let spec = fields.spec()?;
    // Well-formed, but naming nothing that exists now: the state refuses it.
    let missing = || match spec.target {
        ActionTarget::Notify(c) => ApiError::conflict("channel", format!("no channel with id {c}")),
        ActionTarget::RunEvent(e) => {
            ApiError::conflict("targetEvent", format!("no event with id {e}"))
        }
    };
    // Read first so the answer and the audit entry can name it.
    let channels = channel_names(&state).await?;
    let name = target_name(&state, spec.target, &channels)
        .await?
        .ok_or_else(missing)?;
    let entry = audit(
        &caller,
        "event.action.add",
        event,
        detail(None, &spec, &name),
    );
    let action = match state
        .store
        .add_action(event, spec, crate::now(), &entry)
        .await
    {
        Ok(action) => action,
        // Deleted since it was read: still the request's fault, not the route's.
        Err(StoreError::NotFound {
            what: "channel" | "target event",
        }) => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    let view = ActionView::new(action, Some(name));
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

/// What the audit log says of an action: its id once it has one, when it
/// fires, and what it does, by id and name.
fn detail(id: Option<ActionId>, spec: &ActionSpec, name: &str) -> serde_json::Value {
    let mut detail = json!({ "when": spec.when.as_str(), "kind": spec.target.kind() });
    if let Some(id) = id {
        detail["action"] = json!(id.0);
    }
    if let Some(after) = spec.after_secs {
        detail["after"] = json!(format_interval(Duration::from_secs(after)));
    }
    match spec.target {
        ActionTarget::Notify(c) => {
            detail["channel"] = json!(c.0);
            detail["channelName"] = json!(name);
        }
        ActionTarget::RunEvent(e) => {
            detail["targetEvent"] = json!(e.0);
            detail["targetEventName"] = json!(name);
        }
    }
    detail
}

pub async fn remove(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams((id, action)): PathParams<(i64, i64)>,
) -> Result<Response, ApiError> {
    let event = EventId(id);
    let action = ActionId(action);
    // Read first so the audit entry can say what was removed.
    let found = state
        .store
        .list_actions(event)
        .await?
        .into_iter()
        .find(|a| a.id == action)
        .ok_or_else(|| ApiError::not_found("action not found"))?;
    let channels = channel_names(&state).await?;
    let name = target_name(&state, found.spec.target, &channels)
        .await?
        .unwrap_or_default();
    let entry = audit(
        &caller,
        "event.action.remove",
        event,
        detail(Some(action), &found.spec, &name),
    );
    state.store.remove_action(event, action, &entry).await?;
    Ok(no_content())
}
