//! Workflow runs: `POST /api/v1/workflows/{id}/run`, and `/api/v1/workflow-runs` to list, show, cancel and retry them.
//!
//! Starting goes through `cronium_engine::workflows`, as the webhook trigger
//! and the scheduler do; everything after (nodes advancing as their jobs
//! end) happens in the store.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cronium_core::{RunStatus, WorkflowId, WorkflowRunId};
use cronium_engine::workflows::{RunStart, StartError, start_run};
use cronium_store::{AuditEntry, RunFilter, RunNode, RunTrigger, StartedRun, WorkflowRun};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{PageBody, parse_time};
use crate::error::{ApiError, PathParams, QueryParams, parse_optional_json};
use crate::state::AppState;
use crate::tokens::{Caller, Editor, Viewer};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub id: i64,
    pub workflow_id: i64,
    pub workflow_name: String,
    /// The definition's version the run pinned.
    pub version: u64,
    pub status: String,
    pub trigger: String,
    pub input: Option<serde_json::Value>,
    pub pass: u32,
    pub cancel_requested: bool,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Every node, in the definition's order (left out of lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeView>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub node: String,
    pub event_id: i64,
    pub payload_version: Option<u64>,
    pub status: String,
    pub job_id: Option<i64>,
    pub job_status: Option<String>,
    pub reason: Option<String>,
    pub pass: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<RunNode> for NodeView {
    fn from(n: RunNode) -> NodeView {
        NodeView {
            node: n.node.as_str().to_string(),
            event_id: n.event.0,
            payload_version: n.payload_version,
            status: n.status.as_str().to_string(),
            job_id: n.job.map(|(id, _)| id.0),
            job_status: n.job.map(|(_, s)| s.as_str().to_string()),
            reason: n.reason,
            pass: n.pass,
            started_at: n.started_at,
            finished_at: n.finished_at,
        }
    }
}

impl RunView {
    fn new(run: WorkflowRun, with_nodes: bool) -> RunView {
        RunView {
            id: run.id.0,
            workflow_id: run.workflow.0,
            workflow_name: run.workflow_name,
            version: run.version,
            status: run.status.as_str().to_string(),
            trigger: run.trigger.as_str().to_string(),
            input: run.input,
            pass: run.pass,
            cancel_requested: run.cancel_requested,
            error: run.error,
            created_at: run.created_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            nodes: with_nodes.then(|| run.nodes.into_iter().map(NodeView::from).collect()),
        }
    }
}

impl From<WorkflowRun> for RunView {
    fn from(run: WorkflowRun) -> RunView {
        RunView::new(run, true)
    }
}

fn audit(
    caller: &Caller,
    action: &str,
    target: Option<i64>,
    detail: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        at: crate::now(),
        actor: Some(caller.actor()),
        action: action.into(),
        target_type: "workflow_run".into(),
        target_id: target,
        detail,
    }
}

/// The body of `POST /workflows/{id}/run`: optional input for its first nodes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFields {
    pub input: Option<serde_json::Value>,
}

impl From<StartError> for ApiError {
    fn from(e: StartError) -> ApiError {
        match e {
            StartError::Invalid(e) => ApiError::conflict(
                "definition",
                format!("the workflow's definition no longer resolves: {e}"),
            ),
            StartError::Store(e) => e.into(),
        }
    }
}

/// What a started run tells this node: its first jobs are queued, and the
/// runs it replaced have jobs here to stop.
pub(crate) fn started(state: &AppState, started: &StartedRun) {
    for job in &started.stop {
        state.running.cancel(*job);
    }
    state.jobs_queued.notify_one();
}

/// Starts a run of workflow `id` now, as `caller`, with its side effects
/// (the runs it replaced stopped, the runner woken): the run as recorded,
/// `running`, `queued` behind an active run, or `skipped` by the overlap
/// policy (the caller decides how to answer that). The API and the UI's
/// *Run now* both come here.
pub(crate) async fn run_now(
    state: &AppState,
    caller: &Caller,
    id: WorkflowId,
    input: Option<serde_json::Value>,
) -> Result<WorkflowRun, ApiError> {
    if let Some(input) = &input {
        cronium_core::check_json_size(input, cronium_core::MAX_OUTPUT_BYTES, "input")?;
    }
    let workflow = state
        .store
        .get_workflow(id)
        .await?
        .ok_or_else(|| ApiError::not_found("workflow not found"))?;
    let entry = audit(
        caller,
        "workflow.run",
        None,
        json!({ "workflow": workflow.id, "name": workflow.name.as_str() }),
    );
    let start = RunStart {
        input,
        ..RunStart::default()
    };
    let run = start_run(
        &*state.store,
        &workflow,
        RunTrigger::Manual,
        start,
        crate::now(),
        Some(&entry),
    )
    .await?;
    started(state, &run);
    tracing::info!(workflow = id.0, run = run.run.id.0, actor = %caller.actor(), status = %run.run.status, "workflow run");
    Ok(run.run)
}

/// Runs the workflow now: `201` with the run (`running`, `queued` behind
/// an active run, or `skipped` by the overlap policy, which is `409`).
pub async fn run(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let fields: RunFields = parse_optional_json(&body)?;
    let run = run_now(&state, &caller, WorkflowId(id), fields.input).await?;
    if run.status == RunStatus::Skipped {
        return Err(ApiError::conflict(
            "overlap",
            run.error
                .unwrap_or_else(|| "skipped by the overlap policy".into()),
        ));
    }
    Ok((StatusCode::CREATED, axum::Json(RunView::from(run))).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    workflow: Option<String>,
    status: Option<String>,
    since: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Viewer,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<axum::Json<PageBody<RunView>>, ApiError> {
    let page = super::page(q.limit.as_deref(), q.offset.as_deref())?;
    let filter = RunFilter {
        workflow: q
            .workflow
            .as_deref()
            .map(|w| {
                w.parse::<i64>()
                    .map(WorkflowId)
                    .map_err(|_| ApiError::invalid("workflow", format!("not a workflow id: {w:?}")))
            })
            .transpose()?,
        status: q
            .status
            .as_deref()
            .map(|s| RunStatus::parse(s, "status"))
            .transpose()?,
        since: q
            .since
            .as_deref()
            .map(|t| parse_time(t, "since"))
            .transpose()?,
    };
    let found = state.store.list_workflow_runs(&filter, page).await?;
    Ok(axum::Json(PageBody {
        items: found
            .items
            .into_iter()
            .map(|r| RunView::new(r, false))
            .collect(),
        total: found.total,
        limit: page.limit,
        offset: page.offset,
    }))
}

pub async fn show(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams(id): PathParams<i64>,
) -> Result<axum::Json<RunView>, ApiError> {
    let run = state.store.get_workflow_run(WorkflowRunId(id)).await?;
    Ok(axum::Json(run.into()))
}

/// Cancels run `id` as `caller`: pending nodes never start, running
/// nodes' jobs stop (at once on this node, at their next heartbeat
/// elsewhere), and a run queued behind it may start. The API and the UI
/// both come here.
pub(crate) async fn cancel_run(
    state: &AppState,
    caller: &Caller,
    id: WorkflowRunId,
) -> Result<WorkflowRun, ApiError> {
    let entry = audit(caller, "workflow_run.cancel", Some(id.0), json!({}));
    let (run, stop) = state
        .store
        .cancel_workflow_run(id, crate::now(), &entry)
        .await?;
    for job in stop {
        state.running.cancel(job);
    }
    // A queued run behind this one may have started.
    state.jobs_queued.notify_one();
    Ok(run)
}

/// Retries run `id` as `caller`: a new pass over every node of a failed or
/// cancelled run that did not succeed. The API and the UI both come here.
pub(crate) async fn retry_run(
    state: &AppState,
    caller: &Caller,
    id: WorkflowRunId,
) -> Result<WorkflowRun, ApiError> {
    let entry = audit(caller, "workflow_run.retry", Some(id.0), json!({}));
    let run = state
        .store
        .retry_workflow_run(id, crate::now(), &entry)
        .await?;
    state.jobs_queued.notify_one();
    Ok(run)
}

/// Cancels a run (see [`cancel_run`]): `202`, `409` once it has ended.
pub async fn cancel(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
) -> Result<Response, ApiError> {
    let run = cancel_run(&state, &caller, WorkflowRunId(id)).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(RunView::from(run))).into_response())
}

/// Retries a failed or cancelled run (see [`retry_run`]).
pub async fn retry(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
) -> Result<axum::Json<RunView>, ApiError> {
    let run = retry_run(&state, &caller, WorkflowRunId(id)).await?;
    Ok(axum::Json(run.into()))
}
