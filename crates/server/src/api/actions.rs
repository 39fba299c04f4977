//! `/api/v1/events/{id}/actions`: what an event's jobs set off when they end. The one kind is `notify` (a message to a channel), sent once per job on its final result.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cronium_core::{ActionId, ChannelId, EventId, When};
use cronium_store::{Action, AuditEntry, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::no_content;
use crate::error::{ApiError, JsonBody, PathParams};
use crate::state::AppState;
use crate::tokens::{Caller, Editor, Viewer};

/// The kinds of action this server has.
const KINDS: &[&str] = &["notify"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionFields {
    pub when: Option<String>,
    pub kind: Option<String>,
    pub channel: Option<i64>,
    /// Accepted here only so that a request for another kind of action
    /// (which would carry it) is answered about its `kind`, the actual
    /// problem, rather than about an unknown field.
    pub target_event: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionView {
    pub id: i64,
    pub event_id: i64,
    pub when: &'static str,
    pub kind: &'static str,
    pub channel: i64,
    /// `None` only if the channel vanished between two reads.
    pub channel_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl ActionView {
    fn new(a: Action, channel_name: Option<String>) -> ActionView {
        ActionView {
            id: a.id.0,
            event_id: a.event_id.0,
            when: a.when.as_str(),
            kind: "notify",
            channel: a.channel.0,
            channel_name,
            created_at: a.created_at,
        }
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
        actor: Some(caller.token),
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
    let names = channel_names(&state).await?;
    Ok(axum::Json(
        actions
            .into_iter()
            .map(|a| {
                let name = names.get(&a.channel.0).cloned();
                ActionView::new(a, name)
            })
            .collect(),
    ))
}

pub async fn add(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
    JsonBody(fields): JsonBody<ActionFields>,
) -> Result<Response, ApiError> {
    let event = EventId(id);
    let kind = fields.kind.as_deref().unwrap_or("notify");
    if !KINDS.contains(&kind) {
        return Err(ApiError::invalid(
            "kind",
            format!(
                "unknown action kind {kind:?} (the kinds are: {})",
                KINDS.join(", ")
            ),
        ));
    }
    if fields.target_event.is_some() {
        return Err(ApiError::invalid(
            "targetEvent",
            "a notify action takes a channel, not a targetEvent",
        ));
    }
    let when = When::parse(
        fields
            .when
            .as_deref()
            .ok_or_else(|| ApiError::invalid("when", "required (success, failure or always)"))?,
        "when",
    )?;
    let channel = ChannelId(
        fields
            .channel
            .ok_or_else(|| ApiError::invalid("channel", "required: the id of a channel"))?,
    );
    let no_channel = || ApiError::invalid("channel", format!("no channel with id {channel}"));
    // Read first so the answer and the audit entry can name it.
    let channel_name = match state.store.get_channel(channel).await {
        Ok(c) => c.spec.name.as_str().to_string(),
        Err(StoreError::NotFound { .. }) => return Err(no_channel()),
        Err(e) => return Err(e.into()),
    };
    let entry = audit(
        &caller,
        "event.action.add",
        event,
        json!({ "when": when.as_str(), "kind": kind, "channel": channel.0, "channelName": channel_name }),
    );
    let action = match state
        .store
        .add_action(event, when, channel, crate::now(), &entry)
        .await
    {
        Ok(action) => action,
        // Deleted since it was read: still the request's fault, not the route's.
        Err(StoreError::NotFound { what: "channel" }) => return Err(no_channel()),
        Err(e) => return Err(e.into()),
    };
    let view = ActionView::new(action, Some(channel_name));
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
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
    let channel_name = channel_names(&state).await?.remove(&found.channel.0);
    let entry = audit(
        &caller,
        "event.action.remove",
        event,
        json!({
            "action": action.0,
            "when": found.when.as_str(),
            "channel": found.channel.0,
            "channelName": channel_name,
        }),
    );
    state.store.remove_action(event, action, &entry).await?;
    Ok(no_content())
}
