//! `/api/v1/workflows`: workflow definitions applied (stored as a new version only when they change), listed, shown and deleted.
//!
//! A definition arrives as JSON in the shape of the YAML file and is parsed
//! whole into a `WorkflowSpec`; its events are resolved here (a name is one
//! of the caller's own events, an id any event) and the store keeps the
//! canonical JSON, so the same definition written differently is the same
//! version.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cronium_core::{EventId, WorkflowId, WorkflowSpec, WorkflowTrigger};
use cronium_store::{Applied, AuditEntry, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::hooks::{self, NewHook};
use super::{PageBody, no_content, page};
use crate::error::{ApiError, JsonBody, PathParams, QueryParams};
use crate::state::AppState;
use crate::tokens::{Caller, Editor, Viewer};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowView {
    pub id: i64,
    pub name: String,
    pub owner_id: i64,
    /// The current version, from 1.
    pub version: u64,
    /// The current version's definition, canonical.
    pub definition: serde_json::Value,
    /// Whether it has a webhook key (its trigger is `webhook`); the key
    /// itself is shown only when made.
    pub has_webhook: bool,
    /// The next fire of its `cron` or `every` trigger.
    pub next_fire_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Workflow> for WorkflowView {
    fn from(w: Workflow) -> WorkflowView {
        WorkflowView {
            id: w.id.0,
            name: w.name.as_str().to_string(),
            owner_id: w.owner.0,
            version: w.version,
            definition: w.definition,
            has_webhook: w.hook,
            next_fire_at: w.next_fire_at,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// The answer to an apply: the workflow, whether a version was made, and
/// the version it replaced.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedView {
    #[serde(flatten)]
    pub workflow: WorkflowView,
    pub changed: bool,
    pub previous_version: Option<u64>,
    /// A webhook key made by this apply (the trigger became `webhook`, or
    /// its signing changed), shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<NewHook>,
}

/// Keeps the workflow's webhook key in step with its trigger: a `webhook`
/// trigger without a key, or whose signing changed, gets a new one (what
/// is returned, to show once); any other trigger loses its key.
async fn sync_hook(
    state: &AppState,
    caller: &Caller,
    workflow: &Workflow,
    trigger: &WorkflowTrigger,
) -> Result<Option<NewHook>, ApiError> {
    match trigger {
        WorkflowTrigger::Webhook { signed } => {
            if workflow.hook && workflow.hook_signed == *signed {
                return Ok(None);
            }
            Ok(Some(new_hook(state, caller, workflow, *signed).await?))
        }
        _ if workflow.hook => {
            state
                .store
                .set_workflow_hook(workflow.id, None, None)
                .await?;
            Ok(None)
        }
        _ => Ok(None),
    }
}

async fn new_hook(
    state: &AppState,
    caller: &Caller,
    workflow: &Workflow,
    signed: bool,
) -> Result<NewHook, ApiError> {
    let (shown, stored) = hooks::generate(&state.sealer, signed);
    let entry = audit(
        caller,
        "workflow.hook",
        Some(workflow.id),
        json!({ "name": workflow.name.as_str(), "signed": signed }),
    );
    state
        .store
        .set_workflow_hook(workflow.id, Some(stored), Some(&entry))
        .await?;
    Ok(shown)
}

/// A new webhook key (and signing secret, for a signed webhook) for a
/// workflow whose trigger is `webhook`; the old key stops working.
pub async fn rotate_hook(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
) -> Result<axum::Json<NewHook>, ApiError> {
    let workflow = fetch(&state, id).await?;
    let spec = WorkflowSpec::from_json_value(workflow.definition.clone())?;
    let WorkflowTrigger::Webhook { signed } = spec.trigger() else {
        return Err(ApiError::conflict(
            "trigger",
            format!(
                "the workflow's trigger is {}, not webhook",
                spec.trigger().kind()
            ),
        ));
    };
    Ok(axum::Json(
        new_hook(&state, &caller, &workflow, *signed).await?,
    ))
}

fn audit(
    caller: &Caller,
    action: &str,
    target: Option<WorkflowId>,
    detail: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        at: crate::now(),
        actor: Some(caller.actor()),
        action: action.into(),
        target_type: "workflow".into(),
        target_id: target.map(|id| id.0),
        detail,
    }
}

/// Applies a definition: 201 with version 1 for a new name, 200 otherwise
/// (`changed` says whether a version was made).
pub async fn apply(
    State(state): State<AppState>,
    Editor(caller): Editor,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let spec = WorkflowSpec::from_json_value(body)?;
    let resolved = cronium_engine::workflows::resolve(&*state.store, caller.user, &spec).await??;
    let events: Vec<EventId> = resolved.events().map(|(_, id)| id).collect();
    let entry = audit(
        &caller,
        "workflow.apply",
        None,
        json!({ "name": spec.name().as_str() }),
    );
    let (workflow, applied) = state
        .store
        .apply_workflow(
            caller.user,
            spec.name(),
            &spec.to_json(),
            &events,
            crate::now(),
            &entry,
        )
        .await
        .map_err(|e| match e {
            cronium_store::StoreError::NotFound { what: "event" } => {
                ApiError::invalid("nodes", "an event of this workflow was deleted meanwhile")
            }
            other => other.into(),
        })?;
    let (status, changed, previous_version) = match applied {
        Applied::Created => (StatusCode::CREATED, true, None),
        Applied::Updated { from } => (StatusCode::OK, true, Some(from)),
        Applied::Unchanged => (StatusCode::OK, false, None),
    };
    let webhook = sync_hook(&state, &caller, &workflow, spec.trigger()).await?;
    let mut workflow = WorkflowView::from(workflow);
    // What `sync_hook` just made so.
    workflow.has_webhook = matches!(spec.trigger(), WorkflowTrigger::Webhook { .. });
    let view = AppliedView {
        workflow,
        changed,
        previous_version,
        webhook,
    };
    Ok((status, axum::Json(view)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    offset: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Viewer,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<axum::Json<PageBody<WorkflowView>>, ApiError> {
    let page = page(q.limit.as_deref(), q.offset.as_deref())?;
    let found = state.store.list_workflows(page).await?;
    Ok(axum::Json(PageBody {
        items: found.items.into_iter().map(WorkflowView::from).collect(),
        total: found.total,
        limit: page.limit,
        offset: page.offset,
    }))
}

async fn fetch(state: &AppState, id: i64) -> Result<Workflow, ApiError> {
    state
        .store
        .get_workflow(WorkflowId(id))
        .await?
        .ok_or_else(|| ApiError::not_found("workflow not found"))
}

pub async fn show(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams(id): PathParams<i64>,
) -> Result<axum::Json<WorkflowView>, ApiError> {
    Ok(axum::Json(fetch(&state, id).await?.into()))
}

pub async fn delete(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
) -> Result<Response, ApiError> {
    // Read first so the audit entry can name what was deleted.
    let workflow = fetch(&state, id).await?;
    let entry = audit(
        &caller,
        "workflow.delete",
        Some(workflow.id),
        json!({ "name": workflow.name.as_str(), "version": workflow.version }),
    );
    if !state.store.delete_workflow(workflow.id, &entry).await? {
        return Err(ApiError::not_found("workflow not found"));
    }
    Ok(no_content())
}
