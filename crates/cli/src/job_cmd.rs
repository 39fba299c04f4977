//! `cronium job list|show|logs|cancel`: the runs of events, their output, and stopping them.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{Result, anyhow, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{
    Client, ClientArgs, cell, duration_text, encode, items, print_json, print_table, resolve_event,
};
use crate::follow;

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// List jobs, newest first
    List(ListArgs),
    /// Show one job
    Show { id: i64 },
    /// Print a job's output: stdout lines to stdout, stderr lines to stderr,
    /// each after `[NAME] ` when it came from a remote server
    Logs {
        id: i64,
        /// Keep printing until the job ends, then exit with its status
        /// (the script's exit code, 124 timed out, 130 cancelled, never 0
        /// when it failed on some of its servers)
        #[arg(short, long)]
        follow: bool,
    },
    /// Cancel a queued job, or stop a running one
    Cancel { id: i64 },
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this event's jobs (name or id)
    #[arg(long, value_name = "EVENT")]
    pub event: Option<String>,
    /// queued, running, succeeded, failed, timed_out, cancelled, partial, missed or skipped
    #[arg(long)]
    pub status: Option<String>,
    /// Scheduled at or after this RFC 3339 time
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Scheduled before this RFC 3339 time
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
}

/// Runs a `job` command; the status is `0` except after `logs --follow`,
/// which passes on the job's own (see [`follow::End::exit_status`]).
pub fn run(cmd: JobCommand, args: &ClientArgs, out: &mut dyn Write) -> Result<u8> {
    let client = Client::new(args)?;
    match cmd {
        JobCommand::List(a) => list(&client, a, out)?,
        JobCommand::Show { id } => {
            let job = client.get(&format!("/jobs/{id}"))?;
            show(&client, &job, out)?;
        }
        JobCommand::Logs { id, follow: true } => {
            if client.json {
                bail!("--json and --follow do not mix: the output is the job's own");
            }
            return follow::follow_job(&client, id, out);
        }
        JobCommand::Logs { id, follow: false } => logs(&client, id, out)?,
        JobCommand::Cancel { id } => {
            let job = client.post(&format!("/jobs/{id}/cancel"), &json!({}))?;
            if client.json {
                print_json(&job, out)?;
            } else if job["status"] == "cancelled" {
                writeln!(out, "cancelled job {id}")?;
            } else {
                writeln!(out, "stopping job {id} ({})", cell(&job["status"]))?;
            }
        }
    }
    Ok(0)
}

fn list(client: &Client, a: ListArgs, out: &mut dyn Write) -> Result<()> {
    let mut query = format!("/jobs?limit={}&offset={}", a.limit, a.offset);
    if let Some(event) = &a.event {
        query.push_str(&format!("&event={}", resolve_event(client, event)?));
    }
    if let Some(status) = &a.status {
        query.push_str(&format!("&status={}", encode(status)));
    }
    for (key, time) in [("since", a.since), ("until", a.until)] {
        if let Some(t) = time {
            let text = t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            query.push_str(&format!("&{key}={}", encode(&text)));
        }
    }
    let page = client.get(&query)?;
    if client.json {
        return print_json(&page, out);
    }
    let names = event_names(client);
    let rows: Vec<Vec<String>> = items(&page)
        .iter()
        .map(|j| {
            vec![
                cell(&j["id"]),
                event_label(&names, &j["eventId"]),
                cell(&j["status"]),
                cell(&j["trigger"]),
                cell(&j["attempt"]),
                time_text(&j["scheduledAt"]),
                j["durationMs"]
                    .as_u64()
                    .map(duration_text)
                    .unwrap_or_else(|| "-".into()),
                cell(&j["exitCode"]),
            ]
        })
        .collect();
    print_table(
        out,
        &[
            "ID",
            "EVENT",
            "STATUS",
            "TRIGGER",
            "ATTEMPT",
            "SCHEDULED (UTC)",
            "DURATION",
            "EXIT",
        ],
        &rows,
    )?;
    writeln!(out, "{} of {} jobs", rows.len(), page["total"])?;
    Ok(())
}

/// Event names by id, for tables; a name that cannot be had shows as the id.
fn event_names(client: &Client) -> HashMap<i64, String> {
    let Ok(page) = client.get("/events?limit=500") else {
        return HashMap::new();
    };
    items(&page)
        .iter()
        .filter_map(|e| Some((e["id"].as_i64()?, e["name"].as_str()?.to_string())))
        .collect()
}

fn event_label(names: &HashMap<i64, String>, id: &Value) -> String {
    match id.as_i64().and_then(|id| names.get(&id)) {
        Some(name) => name.clone(),
        None => cell(id),
    }
}

/// At most this many characters of a job's input or output in `job show`.
const PREVIEW_CHARS: usize = 200;

/// A JSON value as one line of `job show`: compact, `-` for null, cut at
/// [`PREVIEW_CHARS`] with its full size said (`--json` shows it whole).
pub fn json_preview(value: &Value) -> String {
    if value.is_null() {
        return "-".into();
    }
    let text = value.to_string();
    if text.chars().count() <= PREVIEW_CHARS {
        return text;
    }
    let cut: String = text.chars().take(PREVIEW_CHARS).collect();
    format!("{cut}… ({} bytes; --json shows it whole)", text.len())
}

fn show(client: &Client, job: &Value, out: &mut dyn Write) -> Result<()> {
    if client.json {
        return print_json(job, out);
    }
    let event = match job["eventId"].as_i64() {
        Some(id) => match client.get(&format!("/events/{id}")) {
            Ok(e) => format!("{} ({id})", cell(&e["name"])),
            Err(_) => id.to_string(),
        },
        None => "-".into(),
    };
    let rows = [
        ("id", cell(&job["id"])),
        ("event", event),
        ("status", cell(&job["status"])),
        ("trigger", cell(&job["trigger"])),
        ("attempt", cell(&job["attempt"])),
        ("payload version", cell(&job["payloadVersion"])),
        ("scheduled", time_text(&job["scheduledAt"])),
        ("started", time_text(&job["startedAt"])),
        ("finished", time_text(&job["finishedAt"])),
        (
            "duration",
            job["durationMs"]
                .as_u64()
                .map(duration_text)
                .unwrap_or_else(|| "-".into()),
        ),
        ("exit code", cell(&job["exitCode"])),
        ("error", cell(&job["error"])),
        ("input", json_preview(&job["input"])),
        ("output", json_preview(&job["output"])),
        ("condition", cell(&job["condition"])),
        (
            "cancel",
            if job["cancelRequested"] == json!(true) {
                "requested".into()
            } else {
                "-".into()
            },
        ),
    ];
    for (label, value) in rows {
        writeln!(out, "{label:<16} {value}")?;
    }
    let by = &job["startedBy"];
    if by.is_object() {
        writeln!(
            out,
            "{:<16} job {} of event {} ({}, exit {}), action {}, chain depth {}",
            "started by",
            cell(&by["job"]),
            cell(&by["event"]),
            cell(&by["status"]),
            cell(&by["exitCode"]),
            cell(&by["action"]),
            cell(&by["depth"]),
        )?;
    }
    for chained in job["chained"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let what = match chained["notStarted"].as_str() {
            Some(why) => format!("event {} not started: {why}", cell(&chained["event"])),
            None => format!(
                "job {} of event {} ({})",
                cell(&chained["job"]),
                cell(&chained["event"]),
                cell(&chained["status"])
            ),
        };
        writeln!(out, "{:<16} {what}", "started")?;
    }
    if let Some(targets) = targets_line(&job["metadata"]) {
        writeln!(out, "{:<16} {targets}", "targets")?;
    }
    let http = &job["metadata"]["http"];
    if http.is_object() {
        let truncated = if http["bodyTruncated"] == json!(true) {
            " (response body truncated)"
        } else {
            ""
        };
        writeln!(
            out,
            "{:<16} {}{truncated}",
            "http status",
            cell(&http["status"])
        )?;
    }
    if let Some(rows) = execution_rows(&job["metadata"]) {
        writeln!(out)?;
        print_table(out, &EXECUTION_HEADER, &rows)?;
    }
    // The job is shown even when its deliveries cannot be had (a server
    // from before notifications has no such route); the reason is noted.
    match job["id"]
        .as_i64()
        .map(|id| client.get(&format!("/jobs/{id}/deliveries")))
    {
        Some(Ok(deliveries)) => {
            let rows = delivery_rows(&deliveries);
            if !rows.is_empty() {
                writeln!(out)?;
                print_table(out, &DELIVERY_HEADER, &rows)?;
            }
        }
        Some(Err(e)) => eprintln!("cronium: cannot list the job's deliveries: {e:#}"),
        None => {}
    }
    Ok(())
}

const DELIVERY_HEADER: [&str; 7] = [
    "NOTIFIED",
    "ON",
    "STATUS",
    "ATTEMPTS",
    "LAST STATUS",
    "WEBHOOK ID",
    "LAST ERROR",
];

/// One row per message the job set off (`GET /jobs/{id}/deliveries`),
/// the error last and on one line, as in the executions table.
fn delivery_rows(deliveries: &Value) -> Vec<Vec<String>> {
    deliveries
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|d| {
            let channel = match d["channelName"].as_str() {
                Some(name) => name.to_string(),
                None => cell(&d["channel"]),
            };
            let error = d["lastError"]
                .as_str()
                .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| "-".into());
            vec![
                channel,
                cell(&d["reason"]),
                cell(&d["status"]),
                cell(&d["attempts"]),
                cell(&d["lastStatus"]),
                cell(&d["webhookId"]),
                error,
            ]
        })
        .collect()
}

/// The servers a remote job ran on, each with the tags that chose it
/// (`web-1 (tag web)`), or why they could not be resolved.
fn targets_line(metadata: &Value) -> Option<String> {
    if metadata["phase"] == json!("targets") {
        return Some("not resolved (see the error)".into());
    }
    let targets = metadata["resolvedTargets"].as_array()?;
    let shown: Vec<String> = targets
        .iter()
        .map(|t| {
            let tags: Vec<String> = t["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .map(cell)
                .collect();
            match tags.as_slice() {
                [] => cell(&t["server"]),
                [one] => format!("{} (tag {one})", cell(&t["server"])),
                many => format!("{} (tags {})", cell(&t["server"]), many.join(",")),
            }
        })
        .collect();
    Some(shown.join(", "))
}

/// The phases a remote execution is timed in, in the order they happen.
const PHASES: [&str; 5] = ["connect", "deploy", "upload", "run", "cleanup"];

const EXECUTION_HEADER: [&str; 9] = [
    "SERVER", "STATUS", "EXIT", "CONNECT", "DEPLOY", "UPLOAD", "RUN", "CLEANUP", "ERROR",
];

/// One row per server of a remote job (its metadata's `executions`, in
/// server order), or `None` for a job that ran locally. The error comes
/// last, as it is the one cell of unbounded width.
fn execution_rows(metadata: &Value) -> Option<Vec<Vec<String>>> {
    let executions = metadata["executions"].as_array()?;
    let rows = executions
        .iter()
        .map(|e| {
            let mut row = vec![cell(&e["server"]), cell(&e["status"]), cell(&e["exitCode"])];
            row.extend(PHASES.iter().map(|phase| {
                e["timingsMs"][phase]
                    .as_u64()
                    .map(duration_text)
                    .unwrap_or_else(|| "-".into())
            }));
            row.push(execution_error(&e["phase"], &e["error"]));
            row
        })
        .collect();
    Some(rows)
}

/// `auth: permission denied`: the error after the phase that failed, on
/// one line so it stays in its table row.
fn execution_error(phase: &Value, error: &Value) -> String {
    let error = error
        .as_str()
        .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "));
    match (phase.as_str(), error) {
        (Some(phase), Some(error)) if !error.starts_with(phase) => format!("{phase}: {error}"),
        (_, Some(error)) => error,
        (Some(phase), None) => format!("{phase} failed"),
        (None, None) => "-".into(),
    }
}

/// Every line stored so far, a page at a time until a page comes back empty.
fn logs(client: &Client, id: i64, out: &mut dyn Write) -> Result<()> {
    let mut after = 0;
    let mut all = Vec::new();
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    let status = loop {
        let page = client.get(&format!("/jobs/{id}/logs?after={after}"))?;
        let lines = items(&page);
        let Some(last) = lines.last() else {
            break page["status"].clone();
        };
        after = last["seq"]
            .as_u64()
            .ok_or_else(|| anyhow!("a log line without a sequence number: {last}"))?;
        if client.json {
            all.extend_from_slice(lines);
        } else {
            for line in lines {
                follow::write_line(line, out, &mut err)?;
            }
        }
    };
    if client.json {
        print_json(&json!({"items": all, "status": status}), out)?;
    }
    Ok(())
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time like 2025-01-31T09:00:00Z: {e}"))
}

/// An API timestamp to the second, in UTC: `2025-01-31 09:00:05`.
fn time_text(v: &Value) -> String {
    match v.as_str().map(DateTime::parse_from_rfc3339) {
        Some(Ok(t)) => t
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        _ => cell(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_to_the_second_in_utc() {
        assert_eq!(
            time_text(&json!("2025-01-31T10:00:05.123456+01:00")),
            "2025-01-31 09:00:05"
        );
        assert_eq!(time_text(&Value::Null), "-");
    }

    fn execution(server: &str, status: &str, exit: Value, phase: Value, error: Value) -> Value {
        json!({
            "server": server, "serverId": 3, "host": "deploy@10.0.0.5:22", "status": status,
            "exitCode": exit, "error": error, "phase": phase, "runnerVersion": "0.1.0",
            "payloadPath": "/home/deploy/.cache/cronium/payloads/ab.tar.gz",
            "uploaded": {"runner": false, "payload": false, "bytes": 0},
            "timingsMs": {"connect": 0, "deploy": 1, "upload": 0, "run": 12, "cleanup": 0}
        })
    }

    #[test]
    fn a_remote_job_shows_one_row_per_server() {
        let ok = execution("web1", "succeeded", json!(0), Value::Null, Value::Null);
        let failed = execution(
            "web2",
            "failed",
            json!(3),
            json!("run"),
            json!("exit status 3"),
        );
        let refused = json!({
            "server": "db", "status": "failed", "exitCode": null, "phase": "host key",
            "error": "host key changed:\n  was SHA256:aa\n  now SHA256:bb",
            "timingsMs": {"connect": 2345}
        });
        let table = [
            (json!({}), None),
            (json!({"executions": "not a list"}), None),
            (json!({"executions": []}), Some(vec![])),
            (
                json!({"executions": [ok, failed, refused]}),
                Some(vec![
                    vec![
                        "web1",
                        "succeeded",
                        "0",
                        "0ms",
                        "1ms",
                        "0ms",
                        "12ms",
                        "0ms",
                        "-",
                    ],
                    vec![
                        "web2",
                        "failed",
                        "3",
                        "0ms",
                        "1ms",
                        "0ms",
                        "12ms",
                        "0ms",
                        "run: exit status 3",
                    ],
                    vec![
                        "db",
                        "failed",
                        "-",
                        "2.3s",
                        "-",
                        "-",
                        "-",
                        "-",
                        "host key changed: was SHA256:aa now SHA256:bb",
                    ],
                ]),
            ),
            // Whatever a row lacks shows as `-`, never as an error.
            (json!({"executions": [{}]}), Some(vec![vec!["-"; 9]])),
        ];
        for (metadata, want) in table {
            let want: Option<Vec<Vec<String>>> = want.map(|rows| {
                rows.into_iter()
                    .map(|r| r.into_iter().map(String::from).collect())
                    .collect()
            });
            assert_eq!(execution_rows(&metadata), want, "{metadata}");
        }
    }

    #[test]
    fn an_executions_error_names_the_phase_once() {
        let table = [
            (
                json!("auth"),
                json!("permission denied"),
                "auth: permission denied",
            ),
            (
                json!("connect"),
                json!("connect: refused"),
                "connect: refused",
            ),
            (
                Value::Null,
                json!("lost\n the  connection"),
                "lost the connection",
            ),
            (json!("upload"), Value::Null, "upload failed"),
            (Value::Null, Value::Null, "-"),
        ];
        for (phase, error, want) in table {
            assert_eq!(execution_error(&phase, &error), want, "{phase} {error}");
        }
    }

    #[test]
    fn deliveries_show_their_channel_by_name_and_their_error_on_one_line() {
        let deliveries = json!([
            {"id": 4, "reason": "end", "channel": 2, "channelName": "ops", "status": "failed", "attempts": 5,
             "lastStatus": 500, "lastError": "server error:\n  try later", "webhookId": "msg_cronium_4"},
            {"id": 5, "reason": "start", "channel": 3, "channelName": null, "status": "pending", "attempts": 0,
             "lastStatus": null, "lastError": null, "webhookId": "msg_cronium_5"},
        ]);
        assert_eq!(
            delivery_rows(&deliveries),
            vec![
                vec![
                    "ops",
                    "end",
                    "failed",
                    "5",
                    "500",
                    "msg_cronium_4",
                    "server error: try later"
                ],
                vec!["3", "start", "pending", "0", "-", "msg_cronium_5", "-"],
            ]
        );
        assert!(delivery_rows(&json!([])).is_empty());
        assert!(delivery_rows(&Value::Null).is_empty());
    }

    #[test]
    fn since_and_until_must_be_rfc3339() {
        assert!(parse_time("2025-01-31T09:00:00Z").is_ok());
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
