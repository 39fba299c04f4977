//! The workflow pages: the list, a workflow's page (its canonical YAML, recent runs, *Run now*), and a run's page with its graph drawn as inline SVG, its nodes' table, and Cancel and Retry.
//!
//! Starting, cancelling and retrying go through the same functions as
//! `/api/v1/workflows/{id}/run` and `/api/v1/workflow-runs/{id}/…`, so a
//! page does exactly what the API does, with the same side effects and
//! audit entries. The graph is drawn on the server (the Content-Security-
//! Policy allows no inline script, and no script is needed): nodes in
//! columns by their longest path from a root, long columns wrapped, every
//! coordinate computed here and written by the template, which escapes
//! every text.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cronium_core::schedule::format_interval;
use cronium_core::{
    EdgeOn, EventId, JobStatus, NodeStatus, RunStatus, WorkflowId, WorkflowRunId, WorkflowSpec,
    WorkflowTrigger,
};
use cronium_store::{PageRequest, RunFilter, RunNode, Workflow, WorkflowRun};
use serde::Deserialize;

use super::pages::{Pager, Shell, time};
use crate::api::workflow_runs::{cancel_run, retry_run, run_now};
use crate::error::{ApiError, PageError, PathParams, QueryParams, see_other};
use crate::state::AppState;
use crate::tokens::{Editor, Viewer};

/// Workflows per page of the list.
const PAGE_SIZE: u32 = 50;
/// Runs shown on a workflow's page.
const RECENT_RUNS: u32 = 20;

/// A trigger in a few words, as the list and a workflow's page show it.
fn describe(trigger: &WorkflowTrigger) -> String {
    match trigger {
        WorkflowTrigger::Manual => "manual".into(),
        WorkflowTrigger::Cron { cron, timezone } => format!("cron {cron} ({timezone})"),
        WorkflowTrigger::Every { every } => format!("every {}", format_interval(*every)),
        WorkflowTrigger::Webhook { signed: false } => "webhook".into(),
        WorkflowTrigger::Webhook { signed: true } => "webhook (signed)".into(),
    }
}

/// The stored definition, parsed. The store only keeps definitions that
/// parsed when they were applied, so a failure here is a server fault.
fn spec_of(definition: &serde_json::Value) -> Result<WorkflowSpec, ApiError> {
    WorkflowSpec::from_json_value(definition.clone())
        .map_err(|e| ApiError::internal(format!("a stored definition does not parse: {e}")))
}

async fn workflow(state: &AppState, id: i64) -> Result<Workflow, PageError> {
    Ok(state
        .store
        .get_workflow(WorkflowId(id))
        .await?
        .ok_or_else(|| ApiError::not_found("workflow not found"))?)
}

/// The newest `limit` runs of a workflow, and how many it has.
async fn runs_of(
    state: &AppState,
    id: WorkflowId,
    limit: u32,
) -> Result<(Vec<WorkflowRun>, u64), PageError> {
    let filter = RunFilter {
        workflow: Some(id),
        ..RunFilter::default()
    };
    let found = state
        .store
        .list_workflow_runs(&filter, PageRequest { limit, offset: 0 })
        .await?;
    Ok((found.items, found.total))
}

// ---------------------------------------------------------------- the list

pub struct WorkflowRow {
    pub id: i64,
    pub name: String,
    pub version: u64,
    pub trigger: String,
    pub nodes: usize,
    /// The newest run: its id, status and when it was made.
    pub last_run: Option<(i64, String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "workflows.html")]
pub struct WorkflowsPage {
    pub shell: Shell,
    pub workflows: Vec<WorkflowRow>,
    pub total: u64,
    pub pager: Pager,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub page: Option<u64>,
}

/// `GET /workflows`: a page of workflows, each with its newest run.
pub async fn list(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Response, PageError> {
    let at = Pager::request(query.page, PAGE_SIZE);
    let found = state.store.list_workflows(at.1).await?;
    let pager = Pager::new("/workflows", &[], at, found.items.len(), found.total);
    let mut workflows = Vec::with_capacity(found.items.len());
    for w in found.items {
        let spec = spec_of(&w.definition)?;
        let (runs, _) = runs_of(&state, w.id, 1).await?;
        workflows.push(WorkflowRow {
            id: w.id.0,
            name: w.name.as_str().to_string(),
            version: w.version,
            trigger: describe(spec.trigger()),
            nodes: spec.nodes().len(),
            last_run: runs
                .first()
                .map(|r| (r.id.0, r.status.to_string(), time(r.created_at))),
        });
    }
    Ok(WorkflowsPage {
        shell: shell.at("workflows"),
        workflows,
        total: found.total,
        pager,
    }
    .into_response())
}

// --------------------------------------------------------- a workflow's page

pub struct RunRow {
    pub id: i64,
    pub status: String,
    pub trigger: String,
    pub version: u64,
    pub pass: u32,
    pub created: String,
    pub error: String,
}

impl RunRow {
    fn of(r: &WorkflowRun) -> RunRow {
        RunRow {
            id: r.id.0,
            status: r.status.to_string(),
            trigger: r.trigger.as_str().to_string(),
            version: r.version,
            pass: r.pass,
            created: time(r.created_at),
            error: r.error.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "workflow.html")]
pub struct WorkflowPage {
    pub shell: Shell,
    pub id: i64,
    pub name: String,
    pub description: String,
    pub version: u64,
    pub facts: Vec<(&'static str, String)>,
    /// The current version's definition, canonical YAML.
    pub yaml: String,
    pub runs: Vec<RunRow>,
    pub total_runs: u64,
    /// The run form: what was typed, and why it was refused.
    pub input: String,
    pub input_error: Option<String>,
    /// Why the run just asked for did not start (the overlap policy).
    pub run_error: Option<String>,
}

impl WorkflowPage {
    async fn load(state: &AppState, shell: Shell, id: i64) -> Result<WorkflowPage, PageError> {
        let w = workflow(state, id).await?;
        let spec = spec_of(&w.definition)?;
        let (runs, total_runs) = runs_of(state, w.id, RECENT_RUNS).await?;
        let mut facts = vec![
            ("Version", format!("v{}", w.version)),
            ("Trigger", describe(spec.trigger())),
            ("Nodes", spec.nodes().len().to_string()),
            ("Overlap", spec.overlap().as_str().to_string()),
            (
                "Fail fast",
                if spec.fail_fast() { "yes" } else { "no" }.into(),
            ),
            ("Created", time(w.created_at)),
            ("Updated", time(w.updated_at)),
        ];
        if let Some(at) = w.next_fire_at {
            facts.push(("Next fire", time(at)));
        }
        if matches!(spec.trigger(), WorkflowTrigger::Webhook { .. }) {
            // The key itself was shown once, when it was made.
            let key = if w.hook {
                "set (rotate it with cronium workflow hook)"
            } else {
                "none"
            };
            facts.push(("Webhook key", key.into()));
        }
        Ok(WorkflowPage {
            shell: shell.at("workflows"),
            id,
            name: w.name.as_str().to_string(),
            description: spec.description().to_string(),
            version: w.version,
            facts,
            yaml: spec.to_yaml(),
            runs: runs.iter().map(RunRow::of).collect(),
            total_runs,
            input: String::new(),
            input_error: None,
            run_error: None,
        })
    }
}

/// `GET /workflows/{id}`.
pub async fn show(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    Ok(WorkflowPage::load(&state, shell, id).await?.into_response())
}

/// `POST /workflows/{id}/run`: runs the workflow now with the optional JSON
/// input, then shows the run; bad JSON comes back beside the input (422),
/// and a run the overlap policy refused comes back with its reason (409).
pub async fn run(
    State(state): State<AppState>,
    Editor(caller): Editor,
    shell: Shell,
    PathParams(id): PathParams<i64>,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    // The form's one field; a script may also post nothing at all (with
    // the CSRF token as a header).
    let typed = super::auth::form_field(&body, "input").unwrap_or_default();
    let input = match typed.trim() {
        "" => Ok(None),
        text => serde_json::from_str(text)
            .map(Some)
            .map_err(|e| format!("not JSON: {e}")),
    };
    let (status, input_error, run_error) = match input {
        Err(message) => (StatusCode::UNPROCESSABLE_ENTITY, Some(message), None),
        Ok(input) => match run_now(&state, &caller, WorkflowId(id), input).await {
            Ok(run) if run.status == RunStatus::Skipped => {
                let reason = run
                    .error
                    .unwrap_or_else(|| "skipped by the overlap policy".into());
                (StatusCode::CONFLICT, None, Some(reason))
            }
            Ok(run) => return Ok(see_other(&format!("/workflow-runs/{}", run.id.0))),
            // The input's own limit is the form's to show.
            Err(e) if e.field.as_deref() == Some("input") => {
                (StatusCode::UNPROCESSABLE_ENTITY, Some(e.message), None)
            }
            Err(e) => return Err(e.into()),
        },
    };
    let mut page = WorkflowPage::load(&state, shell, id).await?;
    page.input = typed;
    page.input_error = input_error;
    page.run_error = run_error;
    Ok((status, page).into_response())
}

// ---------------------------------------------------------------- the graph

/// Width and height of a node's box, in SVG pixels.
const BOX_W: i64 = 168;
const BOX_H: i64 = 44;
/// Room between two columns: the edges and their labels are drawn there.
const COL_GAP: i64 = 84;
const ROW_GAP: i64 = 14;
const MARGIN: i64 = 10;
/// The most boxes stacked in one column: a longer layer (a wide fan-out)
/// wraps into further columns, so a hundred siblings make a page a little
/// wider, not thirty screens tall.
pub const MAX_ROWS: usize = 12;
/// Characters of a node id shown in its box (the whole id is its title).
const ID_CHARS: usize = 19;

/// Where every node goes: its layer (the longest path from a root), and
/// its column and row after long layers are wrapped; by node position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub layer: Vec<usize>,
    pub cell: Vec<(usize, usize)>,
    pub columns: usize,
    /// Boxes in each column.
    pub rows: Vec<usize>,
    /// Per column: the first column of its layer (itself unless the layer
    /// wrapped). The columns of one layer share its first column's rows.
    pub first: Vec<usize>,
}

/// Lays the graph out: a node's layer is one more than its deepest
/// parent's (roots are layer 0); within a layer, nodes go in topological
/// order (ties in file order), top to bottom, a layer of more than
/// [`MAX_ROWS`] nodes spread evenly over as many columns as it needs.
pub fn place(spec: &WorkflowSpec) -> Placement {
    let n = spec.nodes().len();
    let position = |id| spec.position(id).expect("a node of the spec");
    let mut layer = vec![0usize; n];
    let order = spec.order();
    for id in &order {
        let i = position(id);
        for edge in spec.parents(id) {
            layer[i] = layer[i].max(layer[position(&edge.node)] + 1);
        }
    }
    let depth = layer.iter().copied().max().map_or(0, |d| d + 1);
    let mut by_layer: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for id in &order {
        let i = position(id);
        by_layer[layer[i]].push(i);
    }
    let mut cell = vec![(0, 0); n];
    let mut rows = Vec::new();
    let mut first = Vec::new();
    for members in &by_layer {
        let columns = members.len().div_ceil(MAX_ROWS).max(1);
        let per_column = members.len().div_ceil(columns).max(1);
        let start = rows.len();
        rows.extend(std::iter::repeat_n(0, columns));
        first.extend(std::iter::repeat_n(start, columns));
        for (j, &i) in members.iter().enumerate() {
            let column = start + j / per_column;
            cell[i] = (column, j % per_column);
            rows[column] += 1;
        }
    }
    Placement {
        layer,
        cell,
        columns: rows.len(),
        rows,
        first,
    }
}

/// A node's box in the drawing.
pub struct GraphNode {
    pub id: String,
    /// The id as shown: cut to fit the box.
    pub short: String,
    /// The CSS class of its state: `pending`, `queued`, `running`,
    /// `succeeded`, `failed`, `cancelled`, `skipped`.
    pub state: &'static str,
    pub job: Option<i64>,
    pub x: i64,
    pub y: i64,
}

/// An edge, from the parent's right side to the child's left: straight
/// into the first column of the child's layer; into a further column of a
/// wrapped layer, across the gap before the layer and then along the
/// channel above the child's row, so it crosses no box of the layer.
pub struct GraphEdge {
    /// `success`, `failure`, `always` or `condition`.
    pub kind: &'static str,
    pub x1: i64,
    pub y1: i64,
    pub x2: i64,
    pub y2: i64,
    /// The polyline's points, `x,y x,y …`.
    pub points: String,
    /// Where its kind is written (not for `success`): in the gap before
    /// the child's column, where no box is.
    pub label: Option<(i64, i64)>,
}

pub struct Graph {
    pub width: i64,
    pub height: i64,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// Box size, for the template.
    pub box_w: i64,
    pub box_h: i64,
}

/// A node's state as the graph colours it: `running` is told apart from
/// `queued` by its job.
fn state_of(node: Option<&RunNode>) -> &'static str {
    let Some(node) = node else {
        return "pending";
    };
    match (node.status, node.job) {
        (NodeStatus::Running, Some((_, JobStatus::Queued)) | None) => "queued",
        (status, _) => status.as_str(),
    }
}

fn draw(spec: &WorkflowSpec, nodes: &HashMap<&str, &RunNode>) -> Graph {
    let placed = place(spec);
    let tallest = placed.rows.iter().copied().max().unwrap_or(1) as i64;
    let pitch = BOX_H + ROW_GAP;
    let height = 2 * MARGIN + tallest * pitch - ROW_GAP;
    let width = 2 * MARGIN + placed.columns as i64 * (BOX_W + COL_GAP) - COL_GAP;
    let left = |column: usize| MARGIN + column as i64 * (BOX_W + COL_GAP);
    // Each layer centred on the tallest; the columns of a wrapped layer
    // keep its first column's rows, so their rows line up.
    let at = |i: usize| {
        let (column, row) = placed.cell[i];
        let band = placed.rows[placed.first[column]] as i64;
        let offset = (tallest - band) * pitch / 2;
        (left(column), MARGIN + offset + row as i64 * pitch)
    };
    let boxes = spec
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let id = n.id.as_str();
            let run = nodes.get(id).copied();
            let (x, y) = at(i);
            GraphNode {
                id: id.to_string(),
                short: if id.chars().count() > ID_CHARS {
                    format!("{}…", id.chars().take(ID_CHARS - 1).collect::<String>())
                } else {
                    id.to_string()
                },
                state: state_of(run),
                job: run.and_then(|r| r.job).map(|(job, _)| job.0),
                x,
                y,
            }
        })
        .collect();
    let mut edges = Vec::new();
    for (i, n) in spec.nodes().iter().enumerate() {
        let (x2, y) = at(i);
        let y2 = y + BOX_H / 2;
        let column = placed.cell[i].0;
        let first = placed.first[column];
        for edge in &n.after {
            let (x, top) = at(spec.position(&edge.node).expect("a parent in the spec"));
            let (x1, y1) = (x + BOX_W, top + BOX_H / 2);
            // The gap before the child's column: free of boxes.
            let gap = x2 - COL_GAP / 2;
            let (points, label) = if column == first {
                let points = vec![(x1, y1), (x2 - 2, y2)];
                // On the line, where it crosses the gap (a child is always
                // in a column right of its parents).
                let y = y1 + (y2 - y1) * (gap - x1) / (x2 - x1).max(1);
                (points, (gap, y - 4))
            } else {
                let entry = left(first) - COL_GAP / 2;
                // The channel between the child's row and the one above.
                let channel = y2 - BOX_H / 2 - ROW_GAP / 2;
                let points = vec![
                    (x1, y1),
                    (entry, channel),
                    (gap, channel),
                    (gap, y2),
                    (x2 - 2, y2),
                ];
                (points, ((gap + x2) / 2, y2 - 4))
            };
            edges.push(GraphEdge {
                kind: edge.on.as_str(),
                x1,
                y1,
                x2: x2 - 2,
                y2,
                points: points
                    .iter()
                    .map(|(x, y)| format!("{x},{y}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                label: (edge.on != EdgeOn::Success).then_some(label),
            });
        }
    }
    Graph {
        width,
        height,
        nodes: boxes,
        edges,
        box_w: BOX_W,
        box_h: BOX_H,
    }
}

// --------------------------------------------------------------- a run's page

pub struct NodeRow {
    pub id: String,
    pub event: i64,
    pub event_name: String,
    pub state: &'static str,
    pub job: Option<i64>,
    pub reason: String,
    pub pass: u32,
    pub started: String,
    pub finished: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "workflow_run.html")]
pub struct RunPage {
    pub shell: Shell,
    pub id: i64,
    pub workflow_id: i64,
    pub workflow_name: String,
    pub status: String,
    pub facts: Vec<(&'static str, String)>,
    pub error: Option<String>,
    /// The run's input, pretty JSON.
    pub input: Option<String>,
    pub graph: Graph,
    pub nodes: Vec<NodeRow>,
    /// Queued or running: the page refreshes itself, and can be cancelled.
    pub active: bool,
    pub cancel_requested: bool,
    /// Failed or cancelled: it can be retried.
    pub retryable: bool,
}

/// `GET /workflow-runs/{id}`.
pub async fn run_page(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    let run = state.store.get_workflow_run(WorkflowRunId(id)).await?;
    // The graph of the version the run pinned, not the current one.
    let version = state
        .store
        .workflow_version(run.workflow, run.version)
        .await?
        .ok_or_else(|| {
            ApiError::internal(format!(
                "run {id} pinned version {} of workflow {}, which is gone",
                run.version, run.workflow.0
            ))
        })?;
    let spec = spec_of(&version.definition)?;
    let by_id: HashMap<&str, &RunNode> = run.nodes.iter().map(|n| (n.node.as_str(), n)).collect();
    let graph = draw(&spec, &by_id);
    let events: Vec<EventId> = run.nodes.iter().map(|n| n.event).collect();
    let names = state.store.event_names(&events).await?;
    let nodes = run
        .nodes
        .iter()
        .map(|n| NodeRow {
            id: n.node.as_str().to_string(),
            event: n.event.0,
            event_name: names
                .get(&n.event)
                .cloned()
                .unwrap_or_else(|| format!("event {}", n.event.0)),
            state: state_of(Some(n)),
            job: n.job.map(|(job, _)| job.0),
            reason: n.reason.clone().unwrap_or_default(),
            pass: n.pass,
            started: n.started_at.map(time).unwrap_or_default(),
            finished: n.finished_at.map(time).unwrap_or_default(),
        })
        .collect();
    let mut facts = vec![
        ("Version", format!("v{}", run.version)),
        ("Trigger", run.trigger.as_str().to_string()),
        ("Pass", run.pass.to_string()),
        ("Created", time(run.created_at)),
    ];
    if let Some(at) = run.started_at {
        facts.push(("Started", time(at)));
    }
    if let Some(at) = run.finished_at {
        facts.push(("Finished", time(at)));
    }
    let input = run
        .input
        .as_ref()
        .map(|v| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
    Ok(RunPage {
        shell: shell.at("workflows"),
        id,
        workflow_id: run.workflow.0,
        workflow_name: run.workflow_name,
        status: run.status.to_string(),
        facts,
        error: run.error,
        input,
        graph,
        nodes,
        active: !run.status.is_terminal(),
        cancel_requested: run.cancel_requested,
        retryable: matches!(run.status, RunStatus::Failed | RunStatus::Cancelled),
    }
    .into_response())
}

/// `POST /workflow-runs/{id}/cancel`: as the API's cancel; back to the run.
pub async fn cancel(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    cancel_run(&state, &caller, WorkflowRunId(id)).await?;
    Ok(see_other(&format!("/workflow-runs/{id}")))
}

/// `POST /workflow-runs/{id}/retry`: as the API's retry; back to the run.
pub async fn retry(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    retry_run(&state, &caller, WorkflowRunId(id)).await?;
    Ok(see_other(&format!("/workflow-runs/{id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> WorkflowSpec {
        WorkflowSpec::from_yaml(yaml).unwrap()
    }

    #[test]
    fn a_node_goes_in_the_column_of_its_longest_path_from_a_root() {
        // d waits for a directly and through b → c: it goes after c.
        let s = spec(
            "name: w\nnodes:\n  - {id: a, event: e}\n  - {id: d, event: e, after: [a, c]}\n\
             \x20 - {id: b, event: e, after: [a]}\n  - {id: c, event: e, after: [b]}\n\
             \x20 - {id: z, event: e}\n",
        );
        let placed = place(&s);
        // By file position: a, d, b, c, z.
        assert_eq!(placed.layer, [0, 3, 1, 2, 0]);
        assert_eq!(placed.cell, [(0, 0), (3, 0), (1, 0), (2, 0), (0, 1)]);
        assert_eq!(placed.rows, [2, 1, 1, 1]);
    }

    #[test]
    fn a_hundred_wide_fan_out_wraps_into_columns_of_at_most_max_rows() {
        let mut yaml = String::from("name: fan\nnodes:\n  - {id: root, event: e}\n");
        for i in 0..99 {
            yaml.push_str(&format!("  - {{id: n{i}, event: e, after: [root]}}\n"));
        }
        let s = spec(&yaml);
        let placed = place(&s);
        // 99 children: 9 columns of 11, each of its own cells.
        assert_eq!(placed.columns, 1 + 9);
        assert!(
            placed.rows.iter().all(|&r| r <= MAX_ROWS),
            "{:?}",
            placed.rows
        );
        assert_eq!(placed.rows[1..].iter().sum::<usize>(), 99);
        let mut cells = placed.cell.clone();
        cells.sort_unstable();
        cells.dedup();
        assert_eq!(cells.len(), 100, "two nodes share a cell");
        let graph = draw(&s, &HashMap::new());
        assert!(graph.height <= 2 * MARGIN + MAX_ROWS as i64 * (BOX_H + ROW_GAP));
        assert_eq!(graph.edges.len(), 99);
        // Every edge runs left to right, into a box; those into a wrapped
        // column go round the boxes of the columns before it.
        assert!(graph.edges.iter().all(|e| e.x1 < e.x2));
        let inside = |x: i64, y: i64| {
            graph
                .nodes
                .iter()
                .any(|n| (n.x..=n.x + BOX_W).contains(&x) && (n.y..=n.y + BOX_H).contains(&y))
        };
        for e in &graph.edges {
            let points: Vec<(i64, i64)> = e
                .points
                .split(' ')
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            // Every segment but the first (out of the root's column), in
            // steps of a pixel, stays off every box.
            for pair in points[1..].windows(2) {
                let ((ax, ay), (bx, by)) = (pair[0], pair[1]);
                let steps = (bx - ax).abs().max((by - ay).abs()).max(1);
                for k in 0..steps {
                    let (x, y) = (ax + (bx - ax) * k / steps, ay + (by - ay) * k / steps);
                    assert!(!inside(x, y), "{} crosses a box at {x},{y}", e.points);
                }
            }
        }
        assert!(graph.nodes.iter().all(|n| n.state == "pending"));
    }

    #[test]
    fn only_edges_other_than_success_are_labelled_and_long_ids_are_cut() {
        let s = spec(
            "name: w\nnodes:\n  - {id: a-very-long-node-identifier-here, event: e}\n\
             \x20 - {id: b, event: e, after: [{node: a-very-long-node-identifier-here, on: failure}]}\n\
             \x20 - {id: c, event: e, after: [a-very-long-node-identifier-here]}\n",
        );
        let graph = draw(&s, &HashMap::new());
        let kinds: Vec<(&str, bool)> = graph
            .edges
            .iter()
            .map(|e| (e.kind, e.label.is_some()))
            .collect();
        assert_eq!(kinds, [("failure", true), ("success", false)]);
        assert_eq!(graph.nodes[0].short, "a-very-long-node-i…");
        assert_eq!(graph.nodes[0].id, "a-very-long-node-identifier-here");
        // The label sits in the gap before the child, clear of every box.
        let (x, _) = graph.edges[0].label.unwrap();
        assert!(graph.nodes.iter().all(|n| x < n.x || x > n.x + BOX_W));
    }
}
