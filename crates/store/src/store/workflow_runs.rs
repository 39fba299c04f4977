//! Workflow runs, written once for both backends: a run's nodes advance in the transaction that ended a node's job, so "node done" and "next nodes queued" commit together.
//!
//! Every change to a run holds its row (`FOR UPDATE` on PostgreSQL, the
//! write lock on SQLite) from the read to the commit, and decides with
//! `cronium_core::workflow_run`; the same states always give the same
//! decisions, so [`reconcile`] may advance any run again. A job that ends
//! locks its run before its event and itself (see `store/jobs.rs`), so two
//! nodes of one run ending at once queue on the run, never deadlock on each
//! other. Asking a node's job to stop passes over a job another
//! transaction holds (`SKIP LOCKED`): that one is ending anyway, and its
//! end advances the run again.

use chrono::{DateTime, Utc};
use cronium_core::workflow_run::{self, MAX_RUN_OUTPUT_BYTES, Step};
use cronium_core::{
    EventStatus, JobId, JobStatus, NodeState, NodeStatus, OverlapPolicy, RunStatus, WorkflowId,
    WorkflowRunId, WorkflowSpec,
};
use serde_json::{Value, json};

use super::jobs::{fetch_job, write_job};
use super::{SqlStore, fetch_event, fetch_page, insert_audit};
use crate::db::{Backend, Conn, Lock, sql};
use crate::jobs::{self as rules, NewRow};
use crate::rows::{self, Reader, truncate};
use crate::{
    AuditEntry, NewWorkflowRun, Page, PageRequest, Result, RunFilter, StartedRun, StoreError,
    WorkflowRun,
};

const RUN_SELECT: &str = "SELECT r.id, r.workflow_id, w.name AS workflow_name, r.version, \
     r.status, r.\"trigger\", r.fire_at, r.idempotency_key, r.input, r.pass, r.cancel_requested, \
     r.error, r.created_at, r.started_at, r.finished_at, r.updated_at \
     FROM workflow_runs r JOIN workflows w ON w.id = r.workflow_id";

const NODE_SELECT: &str = "SELECT n.position, n.node, n.event_id, n.payload_version, n.status, \
     n.job_id, j.status AS job_status, j.condition, j.error AS job_error, n.reason, n.pass, \
     n.started_at, n.finished_at FROM workflow_run_nodes n LEFT JOIN jobs j ON j.id = n.job_id \
     WHERE n.run_id = $1 ORDER BY n.position";

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The run a node's job belongs to, read without a lock: what `finish_job`
/// locks first.
pub(super) async fn run_of_job<C: Conn>(conn: &mut C, job: JobId) -> Result<Option<WorkflowRunId>> {
    let row = sql("SELECT run_id FROM workflow_run_nodes WHERE job_id = $1")
        .bind(job.0)
        .fetch_optional(conn)
        .await?;
    row.map(|row| {
        Ok(WorkflowRunId(
            Reader::new(&row, "workflow_run_nodes").int("run_id")?,
        ))
    })
    .transpose()
}

/// Holds the run's row until the transaction ends.
pub(super) async fn lock_run<B: Backend, C: Conn>(conn: &mut C, run: WorkflowRunId) -> Result<()> {
    sql(B::lock(
        "SELECT id FROM workflow_runs WHERE id = $1",
        Lock::Update,
    ))
    .bind(run.0)
    .fetch_optional(conn)
    .await?
    .ok_or(StoreError::NotFound {
        what: "workflow run",
    })?;
    Ok(())
}

async fn fetch_run<C: Conn>(conn: &mut C, id: WorkflowRunId) -> Result<WorkflowRun> {
    let row = sql(format!("{RUN_SELECT} WHERE r.id = $1"))
        .bind(id.0)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound {
            what: "workflow run",
        })?;
    let mut run = rows::workflow_run(&row)?;
    run.nodes = sql(NODE_SELECT)
        .bind(id.0)
        .fetch_all(conn)
        .await?
        .iter()
        .map(rows::run_node)
        .collect::<Result<_>>()?;
    Ok(run)
}

/// One version of a workflow's definition, parsed.
async fn spec_at<C: Conn>(
    conn: &mut C,
    workflow: WorkflowId,
    version: u64,
) -> Result<WorkflowSpec> {
    let row =
        sql("SELECT definition FROM workflow_versions WHERE workflow_id = $1 AND version = $2")
            .bind(workflow.0)
            .bind(int(version))
            .fetch_optional(conn)
            .await?
            .ok_or(StoreError::NotFound {
                what: "workflow version",
            })?;
    let text = Reader::new(&row, "workflow_versions").text("definition")?;
    WorkflowSpec::from_json(&text).map_err(|e| {
        StoreError::Backend(format!(
            "corrupt row in workflow_versions (workflow {workflow} version {version}): {e}"
        ))
    })
}

pub(super) async fn start_workflow_run<B: Backend>(
    store: &SqlStore<B>,
    new: NewWorkflowRun,
    now: DateTime<Utc>,
    audit: Option<&AuditEntry>,
) -> Result<StartedRun> {
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    // Runs of one workflow queue here, so the overlap policy sees every
    // earlier one and a key is used once.
    sql(B::lock(
        "SELECT id FROM workflows WHERE id = $1",
        Lock::Update,
    ))
    .bind(new.workflow.0)
    .fetch_optional(&mut tx)
    .await?
    .ok_or(StoreError::NotFound { what: "workflow" })?;
    let earlier = match (&new.idempotency_key, new.fire_at) {
        (Some(key), _) => {
            sql("SELECT id FROM workflow_runs WHERE workflow_id = $1 AND idempotency_key = $2")
                .bind(new.workflow.0)
                .bind(key.clone())
                .fetch_optional(&mut tx)
                .await?
        }
        (None, Some(at)) => {
            sql("SELECT id FROM workflow_runs WHERE workflow_id = $1 AND fire_at = $2")
                .bind(new.workflow.0)
                .bind(truncate(at))
                .fetch_optional(&mut tx)
                .await?
        }
        (None, None) => None,
    };
    if let Some(row) = earlier {
        let id = WorkflowRunId(Reader::new(&row, "workflow_runs").int("id")?);
        let run = fetch_run(&mut tx, id).await?;
        tx.rollback().await?;
        return Ok(StartedRun {
            run,
            created: false,
            stop: Vec::new(),
        });
    }
    let spec = spec_at(&mut tx, new.workflow, new.version).await?;
    let active: Vec<WorkflowRunId> = sql(
        "SELECT id FROM workflow_runs WHERE workflow_id = $1 AND status IN ('queued', 'running') \
         ORDER BY id",
    )
    .bind(new.workflow.0)
    .fetch_all(&mut tx)
    .await?
    .iter()
    .map(|row| Ok(WorkflowRunId(Reader::new(row, "workflow_runs").int("id")?)))
    .collect::<Result<_>>()?;
    let (status, error) = match (spec.overlap(), active.first()) {
        (_, None) | (OverlapPolicy::Allow | OverlapPolicy::Replace, _) => {
            (RunStatus::Running, None)
        }
        (OverlapPolicy::Queue, Some(_)) => (RunStatus::Queued, None),
        (OverlapPolicy::Forbid, Some(earlier)) => (
            RunStatus::Skipped,
            Some(format!(
                "skipped: run {earlier} of this workflow is still active (overlap policy forbid)"
            )),
        ),
    };
    let row = sql(
        "INSERT INTO workflow_runs (workflow_id, version, status, \"trigger\", fire_at, \
         idempotency_key, input, error, created_at, started_at, finished_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $9) RETURNING id",
    )
    .bind(new.workflow.0)
    .bind(int(new.version))
    .bind(status.as_str())
    .bind(new.trigger.as_str())
    .bind(new.fire_at.map(truncate))
    .bind(new.idempotency_key.clone())
    .bind(new.input.as_ref().map(Value::to_string))
    .bind(error)
    .bind(now)
    .bind((status == RunStatus::Running).then_some(now))
    .bind(status.is_terminal().then_some(now))
    .fetch_one(&mut tx)
    .await?;
    let id = WorkflowRunId(Reader::new(&row, "workflow_runs").int("id")?);
    for (position, (node, event)) in new.nodes.iter().enumerate() {
        let payload = super::jobs::active_payload(&mut tx, *event).await?;
        sql(
            "INSERT INTO workflow_run_nodes (run_id, position, node, event_id, payload_version, \
             status) VALUES ($1, $2, $3, $4, $5, 'pending')",
        )
        .bind(id.0)
        .bind(int(position as u64))
        .bind(node.as_str())
        .bind(event.0)
        .bind(payload.map(|p| int(p.event_version)))
        .execute(&mut tx)
        .await?;
    }
    let mut stop = Vec::new();
    if status == RunStatus::Running {
        if spec.overlap() == OverlapPolicy::Replace {
            for earlier in active {
                stop.extend(request_cancel::<B, _>(&mut tx, earlier, now).await?);
            }
        }
        stop.extend(advance::<B, _>(&mut tx, id, now).await?);
    }
    if let Some(audit) = audit {
        insert_audit(&mut tx, &rows::audit_entry(audit, Some(id.0))).await?;
    }
    let run = fetch_run(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StartedRun {
        run,
        created: true,
        stop,
    })
}

/// Marks the run cancelling and advances it: its pending nodes are
/// cancelled, its jobs asked to stop. Returns the running jobs asked.
async fn request_cancel<B: Backend, C: Conn>(
    conn: &mut C,
    id: WorkflowRunId,
    now: DateTime<Utc>,
) -> Result<Vec<JobId>> {
    lock_run::<B, _>(conn, id).await?;
    let run = fetch_run(conn, id).await?;
    match run.status {
        RunStatus::Queued => {
            end_run(
                conn,
                id,
                RunStatus::Cancelled,
                Some("cancelled before it started".into()),
                now,
            )
            .await?;
            Ok(Vec::new())
        }
        RunStatus::Running => {
            sql("UPDATE workflow_runs SET cancel_requested = TRUE, updated_at = $2 WHERE id = $1")
                .bind(id.0)
                .bind(now)
                .execute(conn)
                .await?;
            advance::<B, _>(conn, id, now).await
        }
        done => Err(StoreError::Conflict {
            field: "status".into(),
            message: format!("workflow run {id} is already {done}"),
        }),
    }
}

async fn end_run<C: Conn>(
    conn: &mut C,
    id: WorkflowRunId,
    status: RunStatus,
    error: Option<String>,
    now: DateTime<Utc>,
) -> Result<()> {
    sql(
        "UPDATE workflow_runs SET status = $2, error = $3, finished_at = $4, updated_at = $4 \
         WHERE id = $1",
    )
    .bind(id.0)
    .bind(status.as_str())
    .bind(error)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

async fn set_node<C: Conn>(
    conn: &mut C,
    run: &WorkflowRun,
    position: usize,
    status: NodeStatus,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    let finished = status.is_decided().then_some(now);
    sql(
        "UPDATE workflow_run_nodes SET status = $3, reason = $4, finished_at = $5, pass = $6 \
         WHERE run_id = $1 AND position = $2",
    )
    .bind(run.id.0)
    .bind(int(position as u64))
    .bind(status.as_str())
    .bind(reason.map(str::to_string))
    .bind(finished)
    .bind(i64::from(run.pass))
    .execute(conn)
    .await?;
    Ok(())
}

/// Brings the run up to date: nodes whose job ended take its result, the
/// nodes that became ready run or are skipped, and a run whose nodes are
/// all decided ends (starting the next queued run of its workflow).
/// Returns the running jobs asked to stop. The caller's transaction holds
/// the run.
pub(super) async fn advance<B: Backend, C: Conn>(
    conn: &mut C,
    id: WorkflowRunId,
    now: DateTime<Utc>,
) -> Result<Vec<JobId>> {
    let run = fetch_run(conn, id).await?;
    if run.status != RunStatus::Running {
        return Ok(Vec::new());
    }
    let spec = spec_at(conn, run.workflow, run.version).await?;
    let mut states = Vec::with_capacity(run.nodes.len());
    let mut newly_succeeded = false;
    for (position, node) in run.nodes.iter().enumerate() {
        let mut state = NodeState::new(node.status);
        if node.status == NodeStatus::Running {
            match node.job {
                None => {
                    state.status = NodeStatus::Failed;
                    set_node(
                        conn,
                        &run,
                        position,
                        state.status,
                        Some("its job no longer exists"),
                        now,
                    )
                    .await?;
                }
                Some((_, job_status)) if job_status.is_terminal() => {
                    state.status = NodeStatus::of_job(job_status);
                    newly_succeeded |= state.status == NodeStatus::Succeeded;
                    set_node(conn, &run, position, state.status, None, now).await?;
                }
                Some(_) => {}
            }
        }
        state.condition = node.condition;
        states.push(state);
    }
    if newly_succeeded && run_output_bytes(conn, id).await? > MAX_RUN_OUTPUT_BYTES as i64 {
        for (position, state) in states.iter_mut().enumerate() {
            if state.status == NodeStatus::Succeeded
                && run.nodes[position].status == NodeStatus::Running
            {
                state.status = NodeStatus::Failed;
                let why = format!(
                    "the outputs of this run's nodes take more than {} MiB",
                    MAX_RUN_OUTPUT_BYTES / (1024 * 1024)
                );
                set_node(conn, &run, position, state.status, Some(&why), now).await?;
            }
        }
    }
    let mut stop = Vec::new();
    loop {
        let mut again = false;
        for step in workflow_run::advance(&spec, &mut states, run.cancel_requested) {
            match step {
                Step::Run(position) => {
                    if let Err(why) = start_node::<B, _>(conn, &run, &spec, position, now).await? {
                        states[position].status = NodeStatus::Failed;
                        set_node(conn, &run, position, NodeStatus::Failed, Some(&why), now).await?;
                        again = true;
                    }
                }
                Step::Decide {
                    node,
                    status,
                    reason,
                } => set_node(conn, &run, node, status, Some(&reason), now).await?,
                Step::Stop { node, reason } => {
                    let Some((job, _)) = current_job(conn, id, node).await? else {
                        continue;
                    };
                    match stop_job::<B, _>(conn, job, &reason, now).await? {
                        Some(JobStatus::Cancelled) => {
                            states[node].status = NodeStatus::Cancelled;
                            set_node(conn, &run, node, NodeStatus::Cancelled, Some(&reason), now)
                                .await?;
                            again = true;
                        }
                        Some(JobStatus::Running) => stop.push(job),
                        _ => {}
                    }
                }
            }
        }
        if !again {
            break;
        }
    }
    if let Some(end) = workflow_run::outcome(&spec, &states, run.cancel_requested) {
        let error = match end {
            RunStatus::Failed => workflow_run::unhandled_failure(&spec, &states)
                .map(|node| format!("node {node} failed and no edge handles it")),
            RunStatus::Cancelled => Some("cancelled".to_string()),
            _ => None,
        };
        end_run(conn, id, end, error, now).await?;
        start_next_queued::<B, _>(conn, run.workflow, now).await?;
    }
    Ok(stop)
}

/// Starts the oldest queued run of the workflow once none is running
/// (overlap `queue`).
async fn start_next_queued<B: Backend, C: Conn>(
    conn: &mut C,
    workflow: WorkflowId,
    now: DateTime<Utc>,
) -> Result<()> {
    let running = sql(
        "SELECT COUNT(*) AS n FROM workflow_runs WHERE workflow_id = $1 AND status = 'running'",
    )
    .bind(workflow.0)
    .fetch_one(conn)
    .await?;
    if Reader::new(&running, "workflow_runs").int("n")? > 0 {
        return Ok(());
    }
    let next = sql(
        "SELECT id FROM workflow_runs WHERE workflow_id = $1 AND status = 'queued' \
         ORDER BY id LIMIT 1",
    )
    .bind(workflow.0)
    .fetch_optional(conn)
    .await?;
    let Some(next) = next else { return Ok(()) };
    let next = WorkflowRunId(Reader::new(&next, "workflow_runs").int("id")?);
    sql(
        "UPDATE workflow_runs SET status = 'running', started_at = $2, updated_at = $2 \
         WHERE id = $1",
    )
    .bind(next.0)
    .bind(now)
    .execute(conn)
    .await?;
    Box::pin(advance::<B, _>(conn, next, now)).await?;
    Ok(())
}

async fn run_output_bytes<C: Conn>(conn: &mut C, id: WorkflowRunId) -> Result<i64> {
    let row = sql(
        "SELECT CAST(COALESCE(SUM(LENGTH(j.output)), 0) AS BIGINT) AS n \
         FROM workflow_run_nodes n JOIN jobs j ON j.id = n.job_id WHERE n.run_id = $1",
    )
    .bind(id.0)
    .fetch_one(conn)
    .await?;
    Reader::new(&row, "jobs").int("n")
}

async fn current_job<C: Conn>(
    conn: &mut C,
    run: WorkflowRunId,
    position: usize,
) -> Result<Option<(JobId, JobStatus)>> {
    let row = sql(
        "SELECT n.job_id, j.status FROM workflow_run_nodes n JOIN jobs j ON j.id = n.job_id \
         WHERE n.run_id = $1 AND n.position = $2",
    )
    .bind(run.0)
    .bind(int(position as u64))
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        let r = Reader::new(&row, "workflow_run_nodes");
        Ok((
            JobId(r.int("job_id")?),
            super::jobs::parse_status(&r.text("status")?)?,
        ))
    })
    .transpose()
}

/// Cancels a queued job, or asks a running one to stop; a job another
/// transaction holds is passed over. Returns the job's status after.
async fn stop_job<B: Backend, C: Conn>(
    conn: &mut C,
    job: JobId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Option<JobStatus>> {
    let Some(row) = sql(B::lock(
        concat!(job_select!(), "WHERE id = $1"),
        Lock::UpdateSkipLocked,
    ))
    .bind(job.0)
    .fetch_optional(conn)
    .await?
    else {
        return Ok(None);
    };
    let mut job = rows::job(&row)?;
    if job.status.is_terminal() || job.cancel_requested {
        return Ok(Some(job.status));
    }
    rules::cancel(&mut job, now)?;
    if job.status == JobStatus::Cancelled {
        job.error = Some(format!("cancelled: {reason}"));
    }
    Ok(Some(write_job(conn, &job).await?.status))
}

/// Queues the node's job: its pinned event payload, its input from its
/// parents (or the run's), and where it belongs in its metadata.
/// `Ok(Err(why))` when it cannot run.
async fn start_node<B: Backend, C: Conn>(
    conn: &mut C,
    run: &WorkflowRun,
    spec: &WorkflowSpec,
    position: usize,
    now: DateTime<Utc>,
) -> Result<std::result::Result<JobId, String>> {
    let node = &run.nodes[position];
    let Some(event) = fetch_event::<B, _>(conn, node.event).await? else {
        return Ok(Err(format!("event {} no longer exists", node.event)));
    };
    if !matches!(event.spec.status, EventStatus::Active | EventStatus::Paused) {
        return Ok(Err(format!(
            "event {} is {}; only active or paused events run",
            event.spec.name, event.spec.status
        )));
    }
    let payload = match node.payload_version {
        None => None,
        Some(version) => {
            let row = sql(concat!(
                "SELECT ",
                payload_columns!(),
                " FROM runner_payloads WHERE event_id = $1 AND event_version = $2"
            ))
            .bind(node.event.0)
            .bind(int(version))
            .fetch_optional(conn)
            .await?;
            match row {
                Some(row) => Some(rows::payload(&row)?),
                None => {
                    return Ok(Err(format!(
                        "version {version} of event {}'s payload, which this run pinned, \
                         is no longer kept",
                        event.spec.name
                    )));
                }
            }
        }
    };
    // Only the parents' outputs are read: a node of a wide fan-in reads
    // its parents once, the others never.
    let mut outputs = vec![Value::Null; run.nodes.len()];
    for edge in &spec.nodes()[position].after {
        let Some(p) = spec.position(&edge.node) else {
            continue;
        };
        if let Some((job, status)) = run.nodes[p].job
            && status.is_terminal()
        {
            outputs[p] = fetch_job(conn, job).await?.output.unwrap_or(Value::Null);
        }
    }
    let run_input = run.input.clone().unwrap_or(Value::Null);
    let input = workflow_run::input(spec, position, &run_input, |p| outputs[p].clone());
    let mut metadata = rules::pinned_metadata(payload.as_ref(), Some(input), None);
    rules::merge_metadata(
        &mut metadata,
        json!({ "workflow": {
            "id": run.workflow,
            "name": run.workflow_name,
            "run": run.id,
            "node": node.node,
            "pass": run.pass,
        }}),
    );
    let row = NewRow {
        event_id: node.event.0,
        payload_version: node.payload_version.map(int),
        trigger: cronium_core::Trigger::Workflow.as_str(),
        status: JobStatus::Queued.as_str(),
        scheduled_at: now,
        fire_at: None,
        finished_at: None,
        error: None,
        metadata,
        now,
    };
    let job = super::jobs::insert_job(conn, row)
        .await?
        .ok_or_else(|| StoreError::Backend("a workflow node's job conflicted".into()))?;
    sql(
        "UPDATE workflow_run_nodes SET status = 'running', job_id = $3, reason = NULL, pass = $4, \
         started_at = $5, finished_at = NULL WHERE run_id = $1 AND position = $2",
    )
    .bind(run.id.0)
    .bind(int(position as u64))
    .bind(job.id.0)
    .bind(i64::from(run.pass))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(Ok(job.id))
}

pub(super) async fn get_workflow_run<B: Backend>(
    store: &SqlStore<B>,
    id: WorkflowRunId,
) -> Result<WorkflowRun> {
    fetch_run(&mut store.db.pool(), id).await
}

pub(super) async fn list_workflow_runs<B: Backend>(
    store: &SqlStore<B>,
    filter: &RunFilter,
    page: PageRequest,
) -> Result<Page<WorkflowRun>> {
    let (limit, offset) = rows::page_bounds(page);
    let mut clauses = Vec::new();
    for (given, clause) in [
        (filter.workflow.is_some(), "r.workflow_id ="),
        (filter.status.is_some(), "r.status ="),
        (filter.since.is_some(), "r.created_at >="),
    ] {
        if given {
            clauses.push(format!("{clause} ${}", clauses.len() + 1));
        }
    }
    let filters = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    let bound = |text: String| {
        let mut query = sql(text);
        if let Some(w) = filter.workflow {
            query = query.bind(w.0);
        }
        if let Some(s) = filter.status {
            query = query.bind(s.as_str());
        }
        if let Some(since) = filter.since {
            query = query.bind(truncate(since));
        }
        query
    };
    let n = clauses.len();
    fetch_page(
        &mut store.db.pool(),
        bound(format!(
            "SELECT COUNT(*) AS n FROM workflow_runs r{filters}"
        )),
        bound(format!(
            "{RUN_SELECT}{filters} ORDER BY r.id DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        ))
        .bind(limit)
        .bind(offset),
        rows::workflow_run,
    )
    .await
}

pub(super) async fn cancel_workflow_run<B: Backend>(
    store: &SqlStore<B>,
    id: WorkflowRunId,
    now: DateTime<Utc>,
    audit: &AuditEntry,
) -> Result<(WorkflowRun, Vec<JobId>)> {
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    let stop = request_cancel::<B, _>(&mut tx, id, now).await?;
    insert_audit(&mut tx, &rows::audit_entry(audit, Some(id.0))).await?;
    let run = fetch_run(&mut tx, id).await?;
    tx.commit().await?;
    Ok((run, stop))
}

pub(super) async fn retry_workflow_run<B: Backend>(
    store: &SqlStore<B>,
    id: WorkflowRunId,
    now: DateTime<Utc>,
    audit: &AuditEntry,
) -> Result<WorkflowRun> {
    let now = truncate(now);
    let mut tx = store.db.begin().await?;
    lock_run::<B, _>(&mut tx, id).await?;
    let run = fetch_run(&mut tx, id).await?;
    if !matches!(run.status, RunStatus::Failed | RunStatus::Cancelled) {
        return Err(StoreError::Conflict {
            field: "status".into(),
            message: format!(
                "workflow run {id} is {}; only a failed or cancelled run can be retried",
                run.status
            ),
        });
    }
    let mut states: Vec<NodeState> = run.nodes.iter().map(|n| NodeState::new(n.status)).collect();
    for position in workflow_run::retry(&mut states) {
        sql(
            "UPDATE workflow_run_nodes SET status = 'pending', reason = NULL, finished_at = NULL \
             WHERE run_id = $1 AND position = $2",
        )
        .bind(id.0)
        .bind(int(position as u64))
        .execute(&mut tx)
        .await?;
    }
    sql(
        "UPDATE workflow_runs SET status = 'running', pass = pass + 1, cancel_requested = FALSE, \
         error = NULL, finished_at = NULL, updated_at = $2 WHERE id = $1",
    )
    .bind(id.0)
    .bind(now)
    .execute(&mut tx)
    .await?;
    advance::<B, _>(&mut tx, id, now).await?;
    insert_audit(&mut tx, &rows::audit_entry(audit, Some(id.0))).await?;
    let run = fetch_run(&mut tx, id).await?;
    tx.commit().await?;
    Ok(run)
}

pub(super) async fn reconcile<B: Backend>(
    store: &SqlStore<B>,
    now: DateTime<Utc>,
) -> Result<usize> {
    let now = truncate(now);
    // Running runs a finished job could not advance: a node whose job
    // ended (or is gone) while the node still says running, or no node
    // left undecided.
    let stale: Vec<WorkflowRunId> = sql(
        "SELECT r.id FROM workflow_runs r WHERE r.status = 'running' AND (\
           EXISTS (SELECT 1 FROM workflow_run_nodes n LEFT JOIN jobs j ON j.id = n.job_id \
                   WHERE n.run_id = r.id AND n.status = 'running' \
                   AND (j.id IS NULL OR j.status NOT IN ('queued', 'running'))) \
           OR NOT EXISTS (SELECT 1 FROM workflow_run_nodes n WHERE n.run_id = r.id \
                   AND n.status IN ('pending', 'running'))) \
         ORDER BY r.id",
    )
    .fetch_all(&mut store.db.pool())
    .await?
    .iter()
    .map(|row| Ok(WorkflowRunId(Reader::new(row, "workflow_runs").int("id")?)))
    .collect::<Result<_>>()?;
    for &id in &stale {
        let mut tx = store.db.begin().await?;
        lock_run::<B, _>(&mut tx, id).await?;
        advance::<B, _>(&mut tx, id, now).await?;
        tx.commit().await?;
    }
    Ok(stale.len())
}

pub(super) async fn prune_workflow_runs<B: Backend>(
    store: &SqlStore<B>,
    older_than: DateTime<Utc>,
    keep_per_workflow: u32,
) -> Result<u64> {
    let mut tx = store.db.begin().await?;
    let deleted = sql(
        // As jobs are pruned: among ended runs, the newest of each workflow stay.
        "DELETE FROM workflow_runs WHERE id IN (SELECT id FROM (\
         SELECT id, COALESCE(finished_at, created_at) AS ended, \
         ROW_NUMBER() OVER (PARTITION BY workflow_id ORDER BY id DESC) AS nth \
         FROM workflow_runs WHERE status NOT IN ('queued', 'running')) AS ended_runs \
         WHERE nth > $2 AND ended < $1)",
    )
    .bind(truncate(older_than))
    .bind(i64::from(keep_per_workflow))
    .execute(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(deleted)
}
