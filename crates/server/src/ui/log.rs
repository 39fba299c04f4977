//! The job page and its log viewer: the tail of the log rendered by the server, earlier lines on demand, live lines over SSE as HTML made here (escaped, ANSI colours as classes), and the raw log as a download.
//!
//! Every line a page shows is made by [`line_html`]: the script's bytes are
//! text, escaped, whatever they contain; of the terminal's escape
//! sequences only SGR colours and bold survive, as `a-*` classes, and every
//! other sequence is dropped. The browser's script (`static/log.js`) only
//! inserts these fragments, keeps at most a bounded number of lines, and
//! follows the stream while the reader is at the bottom.

use std::fmt::Write as _;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use cronium_core::JobId;
use cronium_store::{LogLine, LogStream};
use serde::Deserialize;

use crate::error::{ApiError, PageError, PathParams, QueryParams};
use crate::state::AppState;
use crate::tokens::Viewer;
use crate::ui::pages::{Shell, time};

/// One server of a fleet job, as its page lists it.
pub struct ExecutionRow {
    pub server: String,
    pub status: String,
    pub exit_code: String,
    pub error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "job.html")]
pub struct JobPage {
    pub shell: Shell,
    pub id: i64,
    pub event_id: i64,
    pub event_name: String,
    pub status: String,
    /// Whether the log may still grow (the viewer then follows it).
    pub running: bool,
    pub facts: Vec<(&'static str, String)>,
    pub executions: Vec<ExecutionRow>,
    /// The fleet's servers, for the viewer's filter.
    pub servers: Vec<String>,
    /// The tail of the log, made by [`line_html`] (escaped already).
    pub lines: String,
    pub has_earlier: bool,
}

/// `GET /jobs/{id}`: the job, its servers, and the log viewer.
pub async fn page(
    State(state): State<AppState>,
    _caller: Viewer,
    shell: Shell,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    let job = state.store.get_job(JobId(id)).await?;
    // The name alone: not the whole event (script, environment, tags).
    let event_name = state
        .store
        .event_names(&[job.event_id])
        .await?
        .remove(&job.event_id)
        .unwrap_or_else(|| format!("event {}", job.event_id));
    let (tail, has_earlier) = tail(&state, job.id).await?;
    let mut lines = String::new();
    for line in &tail {
        lines.push_str(&line_html(line));
    }
    let text = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    };
    let executions: Vec<ExecutionRow> = job
        .metadata
        .get("executions")
        .and_then(|e| e.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| ExecutionRow {
            server: text(e.get("server")),
            status: text(e.get("status")),
            exit_code: text(e.get("exitCode")),
            error: text(e.get("error")),
        })
        .collect();
    let servers = executions.iter().map(|e| e.server.clone()).collect();
    let mut facts = vec![
        ("Trigger", job.trigger.to_string()),
        ("Attempt", job.attempt.to_string()),
        ("Scheduled", time(job.scheduled_at)),
        (
            "Started",
            job.started_at.map(time).unwrap_or_else(|| "-".into()),
        ),
        (
            "Finished",
            job.finished_at.map(time).unwrap_or_else(|| "-".into()),
        ),
    ];
    if let Some(ms) = job.metadata.get("durationMs").and_then(|d| d.as_u64()) {
        facts.push(("Duration", format!("{:.1} s", ms as f64 / 1000.0)));
    }
    facts.push((
        "Exit code",
        job.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
    ));
    if let Some(error) = &job.error {
        facts.push(("Error", error.clone()));
    }
    // What the run was given and what its script handed on (helpers).
    if let Some(input) = job.metadata.get("input") {
        facts.push(("Input", json_fact(input)));
    }
    if let Some(output) = &job.output {
        facts.push(("Output", json_fact(output)));
    }
    facts.push(("Condition", job.condition.to_string()));
    // A workflow node's job says which run and node it is.
    let workflow = &job.metadata["workflow"];
    if let (Some(name), Some(run), Some(node)) = (
        workflow["name"].as_str(),
        workflow["run"].as_i64(),
        workflow["node"].as_str(),
    ) {
        facts.push((
            "Workflow",
            format!("{name}, run {run}, node {node} (pass {})", workflow["pass"]),
        ));
    }
    if let Some(by) = cronium_store::StartedBy::of(&job) {
        facts.push((
            "Started by",
            format!(
                "job {} ({}, exit {})",
                by.job,
                by.status,
                by.exit_code.map_or("-".into(), |c| c.to_string())
            ),
        ));
    }
    Ok(JobPage {
        shell: shell.at("jobs"),
        id,
        event_id: job.event_id.0,
        event_name,
        status: job.status.to_string(),
        running: !job.status.is_terminal(),
        facts,
        executions,
        servers,
        lines,
        has_earlier,
    }
    .into_response())
}

/// Characters of an input or output the job page shows; the API has all.
const JSON_FACT_CHARS: usize = 1000;

/// A JSON value for the facts list: compact, cut after [`JSON_FACT_CHARS`].
fn json_fact(value: &serde_json::Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(JSON_FACT_CHARS) {
        Some((cut, _)) => format!(
            "{}… ({} bytes in all; GET /api/v1/jobs/{{id}} has it whole)",
            &text[..cut],
            text.len()
        ),
        None => text,
    }
}

/// Lines a page opens with (the tail), and per "earlier lines" request.
pub const PAGE_LINES: u32 = 500;

/// The job's log lines after `after` (a sequence number), at most `limit`.
async fn lines(
    state: &AppState,
    job: JobId,
    after: u64,
    limit: u32,
) -> Result<Vec<LogLine>, ApiError> {
    Ok(state.store.job_logs(job, after, limit).await?)
}

/// The last [`PAGE_LINES`] lines of a job, and whether there are earlier ones.
pub async fn tail(state: &AppState, job: JobId) -> Result<(Vec<LogLine>, bool), ApiError> {
    let last = state.store.last_log_seq(job).await?;
    let after = last.saturating_sub(u64::from(PAGE_LINES));
    Ok((lines(state, job, after, PAGE_LINES).await?, after > 0))
}

#[derive(Debug, Deserialize)]
pub struct Earlier {
    before: Option<String>,
}

/// `GET /jobs/{id}/lines?before=SEQ`: up to [`PAGE_LINES`] lines before
/// `SEQ`, as HTML, for "earlier lines". Sequence numbers have no gaps, so
/// the page is a plain range.
pub async fn earlier(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams(id): PathParams<i64>,
    QueryParams(q): QueryParams<Earlier>,
) -> Result<Response, PageError> {
    let before: u64 = q
        .before
        .as_deref()
        .and_then(|b| b.trim().parse().ok())
        .ok_or_else(|| ApiError::invalid("before", "must be a log sequence number"))?;
    let after = before.saturating_sub(u64::from(PAGE_LINES) + 1);
    let limit = u32::try_from(before.saturating_sub(after + 1)).unwrap_or(PAGE_LINES);
    let found = lines(&state, JobId(id), after, limit.min(PAGE_LINES)).await?;
    let mut html = String::new();
    for line in &found {
        html.push_str(&line_html(line));
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        html,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    after: Option<String>,
}

/// `GET /jobs/{id}/live`: the log viewer's SSE stream (each event's data a
/// line's HTML), resumed from `Last-Event-ID` or `after`. Authenticated by
/// the session like every page: no token in a URL.
pub async fn live(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams(id): PathParams<i64>,
    QueryParams(q): QueryParams<LiveQuery>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let job = JobId(id);
    state.store.get_job(job).await.map_err(ApiError::from)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(q.after.as_deref())
        .map(|t| t.trim().parse::<u64>())
        .transpose()
        .map_err(|_| ApiError::invalid("after", "must be a log sequence number"))?;
    let stream = crate::api::jobs::follow_logs(state, job, resume.unwrap_or(0), html_event);
    Ok(stream.into_response())
}

fn html_event(line: LogLine) -> SseEvent {
    SseEvent::default()
        .id(line.seq.to_string())
        .event(stream_name(line.stream))
        .data(line_html(&line))
}

/// `GET /jobs/{id}/log.txt`: every line stored so far (also while the job
/// runs), as the script wrote it, fleet lines prefixed with their server.
/// Streamed a page of lines at a time, so a huge log never sits in memory.
pub async fn raw(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    let job = JobId(id);
    state.store.get_job(job).await.map_err(ApiError::from)?;
    let pages = futures_util::stream::unfold(Some(0u64), move |after| {
        let state = state.clone();
        async move {
            let after = after?;
            let page = match lines(&state, job, after, RAW_PAGE_LINES).await {
                Ok(page) if page.is_empty() => return None,
                Ok(page) => page,
                // The download ends short; the server log says why.
                Err(e) => {
                    tracing::warn!(job = job.0, error = %e.message, "raw log cut short");
                    return None;
                }
            };
            let next = page.last().map(|line| line.seq);
            let mut chunk = Vec::new();
            for line in &page {
                if let Some(server) = &line.server {
                    chunk.extend_from_slice(format!("[{server}] ").as_bytes());
                }
                chunk.extend_from_slice(&line.data);
                if !line.data.ends_with(b"\n") {
                    chunk.push(b'\n');
                }
            }
            Some((Ok::<_, std::convert::Infallible>(chunk), next))
        }
    });
    let disposition = format!("attachment; filename=\"job-{id}.log\"");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).expect("an ASCII header"),
            ),
        ],
        axum::body::Body::from_stream(pages),
    )
        .into_response())
}

/// Lines per read of the raw download.
const RAW_PAGE_LINES: u32 = 5000;

fn stream_name(stream: LogStream) -> &'static str {
    match stream {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
        LogStream::System => "system",
    }
}

/// One line as the viewer shows it: `<div class="l stderr" data-seq=…
/// data-server=…><time …>HH:MM:SS</time><b>[web-1]</b><span>text</span></div>`,
/// the time in UTC until the page's script shows it in the reader's zone.
pub fn line_html(line: &LogLine) -> String {
    let text = String::from_utf8_lossy(&line.data);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let mut html = format!(
        "<div class=\"l {}\" data-seq=\"{}\"",
        stream_name(line.stream),
        line.seq
    );
    if let Some(server) = &line.server {
        let _ = write!(html, " data-server=\"{}\"", escape(server));
    }
    let _ = write!(
        html,
        "><time datetime=\"{}\" title=\"{} UTC\">{}</time>",
        line.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        line.at.format("%Y-%m-%d %H:%M:%S%.3f"),
        line.at.format("%H:%M:%S")
    );
    if let Some(server) = &line.server {
        let _ = write!(html, "<b>[{}]</b>", escape(server));
    }
    html.push_str("<span>");
    html.push_str(&ansi_html(text));
    html.push_str("</span></div>");
    html
}

/// HTML's five special characters as entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The style an SGR sequence has set so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Style {
    bold: bool,
    fg: Option<u8>,
    bg: Option<u8>,
}

impl Style {
    fn classes(&self) -> String {
        let mut classes = Vec::new();
        if self.bold {
            classes.push("a-b".to_string());
        }
        if let Some(fg) = self.fg {
            classes.push(format!("a-f{fg}"));
        }
        if let Some(bg) = self.bg {
            classes.push(format!("a-g{bg}"));
        }
        classes.join(" ")
    }

    /// Applies one SGR parameter list (`1;31`); anything else it ignores.
    fn apply(&mut self, params: &str) {
        let codes: Vec<u16> = params
            .split(';')
            .map(|p| {
                if p.is_empty() {
                    0
                } else {
                    p.parse().unwrap_or(u16::MAX)
                }
            })
            .collect();
        let mut i = 0;
        while i < codes.len() {
            match codes[i] {
                0 => *self = Style::default(),
                1 => self.bold = true,
                22 => self.bold = false,
                c @ 30..=37 => self.fg = Some((c - 30) as u8),
                39 => self.fg = None,
                c @ 40..=47 => self.bg = Some((c - 40) as u8),
                49 => self.bg = None,
                c @ 90..=97 => self.fg = Some((c - 90 + 8) as u8),
                c @ 100..=107 => self.bg = Some((c - 100 + 8) as u8),
                // 256-colour and true-colour forms: their arguments are skipped.
                38 | 48 => {
                    i += match codes.get(i + 1) {
                        Some(5) => 2,
                        Some(2) => 4,
                        _ => 0,
                    };
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// A terminal line as safe HTML: text escaped; SGR colours (the 16 basic
/// ones, foreground and background) and bold as `<span class="a-…">`;
/// every other escape sequence (cursor moves, titles, hyperlinks) and
/// control character dropped, so nothing a script prints can become markup
/// or move what the page shows.
pub fn ansi_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut style = Style::default();
    let mut chars = text.chars().peekable();
    let mut run = String::new();
    let flush = |out: &mut String, run: &mut String, style: &Style| {
        if run.is_empty() {
            return;
        }
        let classes = style.classes();
        if classes.is_empty() {
            out.push_str(&escape(run));
        } else {
            let _ = write!(out, "<span class=\"{classes}\">{}</span>", escape(run));
        }
        run.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                flush(&mut out, &mut run, &style);
                match chars.peek() {
                    // CSI: parameters, then one final byte in @..~.
                    Some('[') => {
                        chars.next();
                        let mut params = String::new();
                        let mut last = None;
                        for c in chars.by_ref() {
                            if ('@'..='~').contains(&c) {
                                last = Some(c);
                                break;
                            }
                            params.push(c);
                        }
                        if last == Some('m') {
                            style.apply(&params);
                        }
                    }
                    // OSC (titles, hyperlinks): up to BEL or ESC \.
                    Some(']') => {
                        chars.next();
                        while let Some(c) = chars.next() {
                            if c == '\u{7}' {
                                break;
                            }
                            if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                                chars.next();
                                break;
                            }
                        }
                    }
                    // Any other escape: the next character goes with it.
                    Some(_) => {
                        chars.next();
                    }
                    None => {}
                }
            }
            '\t' => run.push(c),
            c if c.is_control() => {}
            c => run.push(c),
        }
    }
    flush(&mut out, &mut run, &style);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_script_prints_stays_text() {
        let table = [
            ("plain", "plain"),
            (
                "<script>alert(1)</script>",
                "&lt;script&gt;alert(1)&lt;/script&gt;",
            ),
            (
                "</div><b onclick=\"x\">",
                "&lt;/div&gt;&lt;b onclick=&quot;x&quot;&gt;",
            ),
            (
                "\u{1b}[31mred\u{1b}[0m after",
                "<span class=\"a-f1\">red</span> after",
            ),
            (
                "\u{1b}[1;92mbold bright\u{1b}[22m",
                "<span class=\"a-b a-f10\">bold bright</span>",
            ),
            (
                "\u{1b}[41m<x>\u{1b}[m",
                "<span class=\"a-g1\">&lt;x&gt;</span>",
            ),
            // 256 colours are not kept, and do not leak their arguments.
            ("\u{1b}[38;5;196mx", "x"),
            // Cursor moves, clears, titles and hyperlinks vanish.
            ("a\u{1b}[2Jb\u{1b}[10;10Hc", "abc"),
            ("\u{1b}]0;title\u{7}t", "t"),
            (
                "\u{1b}]8;;https://evil.example\u{1b}\\link\u{1b}]8;;\u{1b}\\",
                "link",
            ),
            ("bell\u{7} and\rreturn", "bell andreturn"),
            ("tab\there", "tab\there"),
            ("\u{1b}[31", ""),
        ];
        for (input, want) in table {
            assert_eq!(ansi_html(input), want, "{input:?}");
        }
    }

    #[test]
    fn a_line_marks_its_stream_server_and_time() {
        let line = LogLine {
            seq: 42,
            stream: LogStream::Stderr,
            at: chrono::DateTime::from_timestamp(1_800_000_000, 5_000_000).unwrap(),
            data: b"oops <b>\n".to_vec(),
            server: Some("web-1\"x".into()),
        };
        assert_eq!(
            line_html(&line),
            "<div class=\"l stderr\" data-seq=\"42\" data-server=\"web-1&quot;x\">\
             <time datetime=\"2027-01-15T08:00:00.005Z\" title=\"2027-01-15 08:00:00.005 UTC\">08:00:00</time>\
             <b>[web-1&quot;x]</b><span>oops &lt;b&gt;</span></div>"
        );
    }
}
