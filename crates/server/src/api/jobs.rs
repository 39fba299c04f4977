//! `/api/v1/jobs`: job history, cancellation, and logs (a page of JSON, or
//! live Server-Sent Events with `Last-Event-ID` resume).

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use cronium_core::{EventId, JobId, JobStatus};
use cronium_store::{AuditEntry, Delivery, Job, JobFilter, LogLine, LogStream};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{PageBody, page, parse_time};
use crate::error::{ApiError, PathParams, QueryParams};
use crate::state::AppState;
use crate::tokens::{Caller, Editor, Viewer};

/// Lines per page of `GET /jobs/{id}/logs` (and per read while following).
const LOG_PAGE: u32 = 1000;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: i64,
    pub event_id: i64,
    pub payload_version: Option<u64>,
    pub payload_path: Option<String>,
    pub trigger: &'static str,
    pub status: &'static str,
    pub attempt: u32,
    pub scheduled_at: DateTime<Utc>,
    pub run_after: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    /// For a job an action started: the job that started it (its id,
    /// event, action, status, exit code) and its depth in the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_by: Option<serde_json::Value>,
    /// The jobs this job's `run_event` actions started, or why one did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chained: Option<serde_json::Value>,
    /// The JSON the run was started with (manual input, or the output of
    /// the run whose action started it); `null` when none.
    pub input: serde_json::Value,
    /// This attempt's output, set by its script; `null` when unset.
    pub output: serde_json::Value,
    /// This attempt's condition, false unless its script set it.
    pub condition: bool,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Job> for JobView {
    fn from(j: Job) -> JobView {
        JobView {
            id: j.id.0,
            event_id: j.event_id.0,
            payload_version: j.payload_version,
            payload_path: j
                .metadata
                .get("payloadPath")
                .and_then(|p| p.as_str())
                .map(String::from),
            trigger: j.trigger.as_str(),
            status: j.status.as_str(),
            attempt: j.attempt,
            scheduled_at: j.scheduled_at,
            run_after: j.run_after,
            started_at: j.started_at,
            finished_at: j.finished_at,
            duration_ms: j.metadata.get("durationMs").and_then(|d| d.as_u64()),
            exit_code: j.exit_code,
            error: j.error,
            lease_owner: j.lease_owner,
            lease_expires_at: j.lease_expires_at,
            cancel_requested: j.cancel_requested,
            started_by: j.metadata.get("startedBy").cloned(),
            chained: j.metadata.get("chained").cloned(),
            input: j
                .metadata
                .get("input")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            output: j.output.unwrap_or(serde_json::Value::Null),
            condition: j.condition,
            metadata: j.metadata,
            created_at: j.created_at,
            updated_at: j.updated_at,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    event: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

fn time_param(text: Option<&str>, field: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    text.map(|t| parse_time(t, field)).transpose()
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Viewer,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<axum::Json<PageBody<JobView>>, ApiError> {
    let page = page(q.limit.as_deref(), q.offset.as_deref())?;
    let filter = JobFilter {
        event: q
            .event
            .as_deref()
            .map(|e| {
                e.trim()
                    .parse()
                    .map(EventId)
                    .map_err(|_| ApiError::invalid("event", "must be an event id"))
            })
            .transpose()?,
        status: q
            .status
            .as_deref()
            .map(|s| JobStatus::parse(s, "status"))
            .transpose()?,
        since: time_param(q.since.as_deref(), "since")?,
        until: time_param(q.until.as_deref(), "until")?,
    };
    let found = state.store.list_jobs(&filter, page).await?;
    Ok(axum::Json(PageBody {
        items: found.items.into_iter().map(JobView::from).collect(),
        total: found.total,
        limit: page.limit,
        offset: page.offset,
    }))
}

pub async fn show(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams(id): PathParams<i64>,
) -> Result<axum::Json<JobView>, ApiError> {
    Ok(axum::Json(state.store.get_job(JobId(id)).await?.into()))
}

/// One message about a job to one channel, as `GET /jobs/{id}/deliveries` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: i64,
    /// What it reports: `end` (the final result), `start`, or
    /// `duration_exceeded`.
    pub reason: &'static str,
    pub channel: i64,
    /// `None` only if the channel vanished between two reads.
    pub channel_name: Option<String>,
    pub status: &'static str,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The `webhook-id` every try of this message carries, so a receiver's
    /// log can be matched to it.
    pub webhook_id: String,
    pub created_at: DateTime<Utc>,
}

impl DeliveryView {
    fn new(d: Delivery, channel_name: Option<String>) -> DeliveryView {
        DeliveryView {
            webhook_id: d.webhook_id(),
            id: d.id.0,
            reason: d.reason.as_str(),
            channel: d.channel_id.0,
            channel_name,
            status: d.status.as_str(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
            created_at: d.created_at,
        }
    }
}

/// The notifications a job's end set off, oldest first.
pub async fn deliveries(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams(id): PathParams<i64>,
) -> Result<axum::Json<Vec<DeliveryView>>, ApiError> {
    let id = JobId(id);
    // Unknown jobs are 404, not an empty list.
    state.store.get_job(id).await?;
    let deliveries = state.store.job_deliveries(id).await?;
    if deliveries.is_empty() {
        return Ok(axum::Json(Vec::new()));
    }
    let names = super::actions::channel_names(&state).await?;
    Ok(axum::Json(
        deliveries
            .into_iter()
            .map(|d| {
                let name = names.get(&d.channel_id.0).cloned();
                DeliveryView::new(d, name)
            })
            .collect(),
    ))
}

/// Cancels a queued job at once; a running one is stopped by its worker
/// (its whole process group). `202` with the job as it is now.
pub async fn cancel(
    State(state): State<AppState>,
    Editor(caller): Editor,
    PathParams(id): PathParams<i64>,
) -> Result<Response, ApiError> {
    let job = cancel_job(&state, &caller, JobId(id)).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(JobView::from(job))).into_response())
}

/// Cancels a job, audited as `caller` (`job.cancel`): the API's cancel and
/// the dashboard's Cancel button. A finished job is a 409 on `status`.
pub(crate) async fn cancel_job(
    state: &AppState,
    caller: &Caller,
    id: JobId,
) -> Result<Job, ApiError> {
    let entry = AuditEntry {
        at: crate::now(),
        actor: Some(caller.actor()),
        action: "job.cancel".into(),
        target_type: "job".into(),
        target_id: Some(id.0),
        detail: json!({}),
    };
    let job = state.store.cancel_job(id, crate::now(), &entry).await?;
    if job.status == JobStatus::Running {
        // Running here: stop it now rather than at its next heartbeat.
        state.running.cancel(id);
    }
    Ok(job)
}

/// One log line as the API shows it: text when it is UTF-8, else base64.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLineView {
    pub seq: u64,
    pub stream: &'static str,
    pub at: DateTime<Utc>,
    /// The server a remote job's line came from; absent (like `text` and
    /// `base64`) rather than null, for local jobs and the job's own lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
}

impl From<LogLine> for LogLineView {
    fn from(l: LogLine) -> LogLineView {
        let stream = match l.stream {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        };
        let (text, base64) = match String::from_utf8(l.data) {
            Ok(text) => (Some(text), None),
            Err(e) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
            ),
        };
        LogLineView {
            seq: l.seq,
            stream,
            at: l.at,
            server: l.server,
            text,
            base64,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    /// Lines after this sequence number (default 0: from the start).
    after: Option<String>,
    limit: Option<String>,
    /// `true`: a live Server-Sent Events stream until the job is over.
    follow: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    pub items: Vec<LogLineView>,
    /// The job's status when the page was read: more lines may come unless it is final.
    pub status: &'static str,
}

pub async fn logs(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams(id): PathParams<i64>,
    QueryParams(q): QueryParams<LogsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = JobId(id);
    let job = state.store.get_job(id).await?;
    let follow = match q.follow.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "follow",
                format!("expected true or false, got {other:?}"),
            ));
        }
    };
    // `Last-Event-ID` (a reconnecting EventSource) wins over `after`.
    let resume = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::invalid("Last-Event-ID", "must be a log sequence number"))
        })
        .transpose()?;
    let after = match (resume, q.after.as_deref()) {
        (Some(seq), _) => seq,
        (None, Some(text)) => text
            .trim()
            .parse()
            .map_err(|_| ApiError::invalid("after", "must be a log sequence number"))?,
        (None, None) => 0,
    };
    if follow {
        return Ok(follow_logs(state, id, after, line_event).into_response());
    }
    let limit = match q.limit.as_deref() {
        None => LOG_PAGE,
        Some(text) => text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=LOG_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::invalid("limit", format!("must be a number from 1 to {LOG_PAGE}"))
            })?,
    };
    let lines = state.store.job_logs(id, after, limit).await?;
    let body = LogPage {
        items: lines.into_iter().map(LogLineView::from).collect(),
        status: job.status.as_str(),
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response())
}

/// The SSE stream: every stored line after `after` (event `stdout`,
/// `stderr` or `system`, id = its sequence number, data = the line as
/// `render` makes it: JSON for the API, HTML for the log viewer), then new
/// lines as they are stored, then one `end` event with the job's final
/// status, exit code and error.
pub(crate) fn follow_logs(
    state: AppState,
    job: JobId,
    after: u64,
    render: fn(LogLine) -> SseEvent,
) -> impl IntoResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let hub = state.hub.clone();
        if let Err(e) = pump(&state, job, after, render, &tx).await {
            // The follower learns through the stream; the server log gets the cause.
            tracing::warn!(job = job.0, error = %e, "log follow stopped");
            let _ = tx
                .send(SseEvent::default().event("error").data(e.to_string()))
                .await;
        }
        hub.release(job);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            // nginx would otherwise hold lines back until its buffer fills.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Sse::new(stream).keep_alive(KeepAlive::default()),
    )
}

/// Sends lines until the job is over (`Ok`) or the follower hangs up (`Ok`).
async fn pump(
    state: &AppState,
    job: JobId,
    mut after: u64,
    render: fn(LogLine) -> SseEvent,
    tx: &tokio::sync::mpsc::Sender<SseEvent>,
) -> Result<(), cronium_store::StoreError> {
    let mut updates = state.hub.subscribe(job);
    loop {
        updates.borrow_and_update();
        let lines = state.store.job_logs(job, after, LOG_PAGE).await?;
        let full = lines.len() as u32 == LOG_PAGE;
        for line in lines {
            after = line.seq;
            if tx.send(render(line)).await.is_err() {
                return Ok(());
            }
        }
        if full {
            continue;
        }
        let current = state.store.get_job(job).await?;
        if current.status.is_terminal() {
            // Lines stored between the read above and the final status.
            let rest = state.store.job_logs(job, after, u32::MAX).await?;
            for line in rest {
                if tx.send(render(line)).await.is_err() {
                    return Ok(());
                }
            }
            let end = json!({
                "status": current.status.as_str(),
                "exitCode": current.exit_code,
                "error": current.error,
            });
            let _ = tx
                .send(SseEvent::default().event("end").data(end.to_string()))
                .await;
            return Ok(());
        }
        tokio::select! {
            () = tx.closed() => return Ok(()),
            changed = updates.changed() => {
                if changed.is_err() {
                    // This node's run of the job ended (it may be retried).
                    updates = state.hub.subscribe(job);
                }
            }
            // Lines stored on another node wake this follower through the
            // signal listener; without one it re-reads often (`follow_poll`).
            () = tokio::time::sleep(state.hub.follow_poll()) => {}
        }
    }
}

fn line_event(line: LogLine) -> SseEvent {
    let view = LogLineView::from(line);
    SseEvent::default()
        .id(view.seq.to_string())
        .event(view.stream)
        .json_data(&view)
        .expect("a log line serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stream: LogStream, data: &[u8], server: Option<&str>) -> LogLine {
        LogLine {
            seq: 7,
            stream,
            at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            data: data.to_vec(),
            server: server.map(str::to_string),
        }
    }

    #[test]
    fn a_line_carries_its_server_only_when_it_has_one() {
        for (line, expected) in [
            (
                line(LogStream::Stdout, b"hi\n", Some("web1")),
                json!({"seq": 7, "stream": "stdout", "at": "2027-01-15T08:00:00Z",
                       "server": "web1", "text": "hi\n"}),
            ),
            (
                line(LogStream::Stderr, &[0xff], Some("db")),
                json!({"seq": 7, "stream": "stderr", "at": "2027-01-15T08:00:00Z",
                       "server": "db", "base64": "/w=="}),
            ),
            (
                line(LogStream::System, b"attempt 1 started\n", None),
                json!({"seq": 7, "stream": "system", "at": "2027-01-15T08:00:00Z",
                       "text": "attempt 1 started\n"}),
            ),
        ] {
            let view = serde_json::to_value(LogLineView::from(line)).unwrap();
            assert_eq!(view, expected);
        }
    }
}
