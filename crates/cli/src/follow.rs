//! Following a job's output live (`event run --follow`, `job logs --follow`) and the exit status it ends with.
//!
//! The server streams the job's lines as Server-Sent Events and ends with an
//! `end` event. A connection that drops before `end` is reopened with
//! `Last-Event-ID`, and lines at or below the last sequence number written
//! are skipped, so nothing is lost or written twice.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use serde_json::Value;

use crate::client::Client;
use crate::sse::{SseEvent, SseParser};

/// Consecutive failed connections before giving up.
const MAX_RETRIES: u32 = 5;
/// With no byte at all for this long (the server sends a keep-alive every
/// 15 s), the connection is taken for dead and reopened.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// How often the waiting indicator is redrawn.
const TICK: Duration = Duration::from_millis(250);
/// Quiet time before the waiting indicator appears.
const QUIET: Duration = Duration::from_secs(1);
/// How often the waiting indicator asks for the job's status.
const STATUS_POLL: Duration = Duration::from_secs(2);

/// How a job ended, from the stream's `end` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub status: String,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
}

impl End {
    fn parse(data: &str) -> Result<End> {
        let v: Value = serde_json::from_str(data)
            .with_context(|| format!("the server's end event is not JSON: {data:?}"))?;
        Ok(End {
            status: v["status"].as_str().unwrap_or("unknown").to_string(),
            exit_code: v["exitCode"].as_i64(),
            error: v["error"].as_str().map(String::from),
        })
    }

    /// The process exit status that stands for this outcome: 124 for a
    /// timeout and 130 for a cancellation (as a shell reports them); a
    /// failure, or a run on several servers that failed on some
    /// (`partial`), ends with the job's exit code when it has one a process
    /// can exit with, else 1, so it never looks like a success.
    pub fn exit_status(&self) -> u8 {
        match self.status.as_str() {
            "succeeded" => 0,
            "timed_out" => 124,
            "cancelled" => 130,
            _ => match self.exit_code {
                Some(code @ 1..=255) => code as u8,
                _ => 1,
            },
        }
    }
}

/// Writes one log line (the API's JSON object) where it belongs: stdout
/// lines to `out`, stderr lines to `err`, the server's own notes to `err`
/// after `cronium: `. A line from a remote server starts with `[NAME] `.
/// Returns whether the output now ends at a line start.
pub fn write_line(line: &Value, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool> {
    let bytes = line_bytes(line)?;
    let label = line["server"].as_str().map(|name| format!("[{name}] "));
    let (to, prefix): (&mut dyn Write, &str) = match line["stream"].as_str() {
        Some("stdout") => (out, ""),
        Some("stderr") => (err, ""),
        Some("system") => (err, "cronium: "),
        other => bail!("a log line from an unknown stream {other:?}"),
    };
    to.write_all(prefix.as_bytes())?;
    if let Some(label) = &label {
        to.write_all(label.as_bytes())?;
    }
    to.write_all(&bytes)?;
    // A script's unfinished line is left open, byte for byte, so its next
    // piece continues it. Notes, and labelled lines (the next line may
    // come from another server, and a label in mid-line reads as output),
    // are always finished.
    let ends = bytes.ends_with(b"\n");
    let finish = !ends && (!prefix.is_empty() || label.is_some());
    if finish {
        to.write_all(b"\n")?;
    }
    to.flush()?;
    Ok(ends || finish)
}

/// A line's bytes: its text, or its base64 when it was not UTF-8.
fn line_bytes(line: &Value) -> Result<Vec<u8>> {
    if let Some(text) = line["text"].as_str() {
        return Ok(text.as_bytes().to_vec());
    }
    match line["base64"].as_str() {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .with_context(|| format!("log line {} has bad base64", line["seq"])),
        None => Ok(Vec::new()),
    }
}

/// What one event from the stream means to the follower.
#[derive(Debug, PartialEq)]
enum Step {
    /// A line not written before: write it.
    Line(Value),
    /// A line already written (a resumed stream repeating itself).
    Seen,
    End(End),
    /// The server gave up on this stream; reconnecting may help.
    Failed(String),
    /// Something this client does not know; ignored.
    Other,
}

/// The follower's memory across connections: the last line written, and
/// the last note from the server (which usually says why a job failed).
#[derive(Debug, Default)]
struct Cursor {
    last_seq: Option<u64>,
    last_note: Option<String>,
}

impl Cursor {
    fn step(&mut self, event: &SseEvent) -> Result<Step> {
        match event.event.as_str() {
            "stdout" | "stderr" | "system" => {
                let line: Value = serde_json::from_str(&event.data)
                    .with_context(|| format!("a log line is not JSON: {:?}", event.data))?;
                let seq = line["seq"]
                    .as_u64()
                    .or_else(|| event.id.as_deref().and_then(|id| id.parse().ok()))
                    .ok_or_else(|| anyhow!("a log line without a sequence number"))?;
                if self.last_seq.is_some_and(|last| seq <= last) {
                    return Ok(Step::Seen);
                }
                self.last_seq = Some(seq);
                if line["stream"] == "system" {
                    self.last_note = line["text"].as_str().map(|t| t.trim_end().to_string());
                }
                Ok(Step::Line(line))
            }
            "end" => Ok(Step::End(End::parse(&event.data)?)),
            "error" => Ok(Step::Failed(event.data.clone())),
            _ => Ok(Step::Other),
        }
    }
}

/// What the reading thread reports.
enum Msg {
    Events(Vec<SseEvent>),
    Closed(Option<std::io::Error>),
}

/// Why one connection stopped before the job's end.
enum Interruption {
    /// Closed or broken; `fruitful` when it delivered anything first.
    Lost { why: String, fruitful: bool },
    /// Silent for too long: taken for dead.
    Silent,
}

/// Streams job `job`'s lines to `out` and `err` until it ends, and returns
/// how it ended; an unsuccessful end is also told on `err`, unless the
/// server's last note said it already. `progress`: draw the waiting
/// indicator on `err` (a terminal).
pub fn follow(
    client: &Client,
    job: i64,
    out: &mut dyn Write,
    err: &mut dyn Write,
    progress: bool,
) -> Result<End> {
    let path = format!("/jobs/{job}/logs?follow=true");
    let mut cursor = Cursor::default();
    let mut waiting = Waiting::new(progress);
    let mut failures = 0;
    loop {
        // A silent connection is not a failure (a queued job may well be
        // quiet for long), so only a broken or refused one counts.
        let (failed, reason) = match client.stream(&path, cursor.last_seq) {
            Ok(reader) => match pump(client, job, reader, &mut cursor, &mut waiting, out, err)? {
                Ok(end) => {
                    waiting.clear(err)?;
                    if let Some(summary) = summary(job, &end, cursor.last_note.as_deref()) {
                        writeln!(err, "{summary}")?;
                    }
                    return Ok(end);
                }
                Err(Interruption::Silent) => (false, "no data for a minute".to_string()),
                Err(Interruption::Lost { why, fruitful }) => {
                    if fruitful {
                        failures = 0;
                    }
                    (true, why)
                }
            },
            Err(e) if e.retry => (true, format!("{:#}", e.error)),
            Err(e) => return Err(e.error),
        };
        if failed {
            failures += 1;
            if failures > MAX_RETRIES {
                bail!("lost the log stream of job {job}: {reason}");
            }
        }
        waiting.clear(err)?;
        writeln!(
            err,
            "cronium: log stream interrupted ({reason}); reconnecting"
        )?;
        std::thread::sleep(backoff(failures));
    }
}

/// `cronium: job 7 cancelled: …` for an end the output has not explained.
fn summary(job: i64, end: &End, last_note: Option<&str>) -> Option<String> {
    match (&end.error, end.status.as_str()) {
        (_, "succeeded") => None,
        (Some(why), _) if last_note == Some(why.trim_end()) => None,
        (Some(why), status) => Some(format!("cronium: job {job} {status}: {why}")),
        (None, status) => Some(format!("cronium: job {job} {status}")),
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250 << failures.min(4))
}

/// Reads one connection until the job's end (`Ok(Ok)`), until the
/// connection fails (`Ok(Err)`), or until output cannot be written (`Err`).
fn pump(
    client: &Client,
    job: i64,
    mut reader: impl Read + Send + 'static,
    cursor: &mut Cursor,
    waiting: &mut Waiting,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Result<End, Interruption>> {
    // A thread reads so that this one can redraw the indicator and notice
    // silence; it is left behind, blocked, if the connection goes quiet.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut parser = SseParser::new();
        let mut buf = vec![0; 16 * 1024];
        loop {
            let msg = match reader.read(&mut buf) {
                Ok(0) => Msg::Closed(None),
                Ok(n) => Msg::Events(parser.feed(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Msg::Closed(Some(e)),
            };
            let last = matches!(msg, Msg::Closed(_));
            if tx.send(msg).is_err() || last {
                return;
            }
        }
    });
    let mut fruitful = false;
    let mut heard = Instant::now();
    loop {
        match rx.recv_timeout(TICK) {
            Ok(Msg::Events(events)) => {
                fruitful = true;
                heard = Instant::now();
                for event in &events {
                    match cursor.step(event)? {
                        Step::Line(line) => {
                            waiting.clear(err)?;
                            let at_line_start =
                                write_line(&line, out, err).context("writing the job's output")?;
                            waiting.output(at_line_start);
                        }
                        Step::End(end) => return Ok(Ok(end)),
                        Step::Failed(why) => {
                            return Ok(Err(Interruption::Lost {
                                why: format!("the server reported: {why}"),
                                fruitful: false,
                            }));
                        }
                        Step::Seen | Step::Other => {}
                    }
                }
            }
            Ok(Msg::Closed(e)) => {
                let why = match e {
                    Some(e) => format!("connection broken: {e}"),
                    None => "the server closed the connection".into(),
                };
                return Ok(Err(Interruption::Lost { why, fruitful }));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if heard.elapsed() > SILENCE_LIMIT {
                    return Ok(Err(Interruption::Silent));
                }
                waiting.tick(client, job, err)?;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Ok(Err(Interruption::Lost {
                    why: "the reader stopped".into(),
                    fruitful,
                }));
            }
        }
    }
}

/// The one-line "waiting: queued 3s…" indicator, redrawn in place on a
/// terminal's standard error while no output arrives.
struct Waiting {
    enabled: bool,
    /// What is on the screen now, so an unchanged line is not redrawn.
    shown: Option<String>,
    /// Drawing at the start of a line must not cut into a line the script
    /// has not finished.
    at_line_start: bool,
    quiet_since: Instant,
    status: String,
    polled: Option<Instant>,
}

impl Waiting {
    fn new(enabled: bool) -> Waiting {
        Waiting {
            enabled,
            shown: None,
            at_line_start: true,
            quiet_since: Instant::now(),
            status: "queued".into(),
            polled: None,
        }
    }

    fn output(&mut self, at_line_start: bool) {
        self.at_line_start = at_line_start;
        self.quiet_since = Instant::now();
    }

    fn tick(&mut self, client: &Client, job: i64, err: &mut dyn Write) -> Result<()> {
        let quiet = self.quiet_since.elapsed();
        if !self.enabled || !self.at_line_start || quiet < QUIET {
            return Ok(());
        }
        if self.polled.is_none_or(|at| at.elapsed() >= STATUS_POLL) {
            self.polled = Some(Instant::now());
            // Only decoration: a failed poll keeps the last known status.
            if let Ok(found) = client.get(&format!("/jobs/{job}"))
                && let Some(status) = found["status"].as_str()
            {
                self.status = status.to_string();
            }
        }
        let text = waiting_text(&self.status, quiet);
        if self.shown.as_ref() != Some(&text) {
            write!(err, "\r\x1b[2K{text}")?;
            err.flush()?;
            self.shown = Some(text);
        }
        Ok(())
    }

    fn clear(&mut self, err: &mut dyn Write) -> Result<()> {
        if self.shown.take().is_some() {
            write!(err, "\r\x1b[2K")?;
            err.flush()?;
        }
        Ok(())
    }
}

/// `waiting: queued 3s…`, `waiting: running 2m05s…`.
fn waiting_text(status: &str, quiet: Duration) -> String {
    let secs = quiet.as_secs();
    let waited = if secs < 60 {
        format!("{secs}s")
    } else {
        crate::client::duration_text(secs * 1000)
    };
    format!("waiting: {status} {waited}…")
}

/// Follows a job to its end on this process's standard streams and returns
/// the exit status that stands for its outcome.
pub fn follow_job(client: &Client, id: i64, out: &mut dyn Write) -> Result<u8> {
    let stderr = std::io::stderr();
    let progress = std::io::IsTerminal::is_terminal(&stderr);
    let mut err = stderr.lock();
    Ok(follow(client, id, out, &mut err, progress)?.exit_status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn end(status: &str, exit_code: Option<i64>) -> End {
        End {
            status: status.into(),
            exit_code,
            error: None,
        }
    }

    #[test]
    fn a_followed_job_hands_its_outcome_to_the_shell() {
        let table = [
            (end("succeeded", Some(0)), 0),
            (end("failed", Some(3)), 3),
            (end("failed", Some(255)), 255),
            (end("timed_out", Some(124)), 124),
            (end("timed_out", None), 124),
            // A cancelled script dies of SIGTERM (143), but the shell's word for
            // an interrupted command is 130.
            (end("cancelled", Some(143)), 130),
            (end("cancelled", None), 130),
            (end("failed", None), 1),
            // Codes a process cannot exit with still fail.
            (end("failed", Some(0)), 1),
            (end("failed", Some(-1)), 1),
            (end("failed", Some(256)), 1),
            // Several servers, some failed: never 0, even when the job's code is.
            (end("partial", None), 1),
            (end("partial", Some(0)), 1),
            (end("partial", Some(2)), 2),
        ];
        for (outcome, want) in table {
            assert_eq!(outcome.exit_status(), want, "{outcome:?}");
        }
    }

    #[test]
    fn the_end_event_carries_status_code_and_error() {
        let got =
            End::parse(r#"{"status":"timed_out","exitCode":124,"error":"timed out after 1s"}"#)
                .unwrap();
        assert_eq!(
            got,
            End {
                status: "timed_out".into(),
                exit_code: Some(124),
                error: Some("timed out after 1s".into()),
            }
        );
        let got = End::parse(r#"{"status":"failed","exitCode":null,"error":null}"#).unwrap();
        assert_eq!(got, end("failed", None));
        assert!(End::parse("not json").is_err());
    }

    #[test]
    fn each_line_goes_to_its_own_stream() {
        let table = [
            (
                json!({"stream": "stdout", "text": "hello\n"}),
                "hello\n",
                "",
                true,
            ),
            (
                json!({"stream": "stderr", "text": "oops\n"}),
                "",
                "oops\n",
                true,
            ),
            (
                json!({"stream": "stdout", "text": "no newline"}),
                "no newline",
                "",
                false,
            ),
            (
                json!({"stream": "system", "text": "runner started\n"}),
                "",
                "cronium: runner started\n",
                true,
            ),
            (
                json!({"stream": "system", "text": "killed"}),
                "",
                "cronium: killed\n",
                true,
            ),
            // Lines from remote servers carry the server's name.
            (
                json!({"stream": "stdout", "text": "deployed\n", "server": "web1"}),
                "[web1] deployed\n",
                "",
                true,
            ),
            (
                json!({"stream": "stderr", "text": "disk 91% full\n", "server": "db-2"}),
                "",
                "[db-2] disk 91% full\n",
                true,
            ),
            // The next line may be another server's: a label's line is finished.
            (
                json!({"stream": "stdout", "text": "no newline", "server": "web1"}),
                "[web1] no newline\n",
                "",
                true,
            ),
            (
                json!({"stream": "stdout", "text": "", "server": "web1"}),
                "[web1] \n",
                "",
                true,
            ),
            (
                json!({"stream": "system", "text": "connect failed\n", "server": "web2"}),
                "",
                "cronium: [web2] connect failed\n",
                true,
            ),
            // A local job's line, or one the server has no label for.
            (
                json!({"stream": "stdout", "text": "local\n", "server": null}),
                "local\n",
                "",
                true,
            ),
        ];
        for (line, want_out, want_err, want_line_start) in table {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let at_line_start = write_line(&line, &mut out, &mut err).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), want_out, "{line}");
            assert_eq!(String::from_utf8(err).unwrap(), want_err, "{line}");
            assert_eq!(at_line_start, want_line_start, "{line}");
        }
    }

    #[test]
    fn binary_lines_are_written_as_the_bytes_they_were() {
        // "\xff\xfe\n" is not UTF-8, so the server sends it as base64.
        let line = json!({"seq": 1, "stream": "stdout", "base64": "//4K"});
        let (mut out, mut err) = (Vec::new(), Vec::new());
        write_line(&line, &mut out, &mut err).unwrap();
        assert_eq!(out, b"\xff\xfe\n");
        let labelled = json!({"seq": 2, "stream": "stderr", "base64": "//4K", "server": "web1"});
        write_line(&labelled, &mut out, &mut err).unwrap();
        assert_eq!(err, b"[web1] \xff\xfe\n");
        let bad = json!({"seq": 3, "stream": "stdout", "base64": "!!"});
        assert!(write_line(&bad, &mut out, &mut err).is_err());
    }

    fn sse(event: &str, data: Value) -> SseEvent {
        SseEvent {
            event: event.into(),
            id: data["seq"].as_u64().map(|s| s.to_string()),
            data: data.to_string(),
        }
    }

    #[test]
    fn a_resumed_stream_writes_no_line_twice() {
        let mut cursor = Cursor::default();
        let line = |seq: u64| {
            sse(
                "stdout",
                json!({"seq": seq, "stream": "stdout", "text": "x\n"}),
            )
        };
        let steps = |cursor: &mut Cursor, seqs: &[u64]| -> Vec<bool> {
            seqs.iter()
                .map(|&s| matches!(cursor.step(&line(s)).unwrap(), Step::Line(_)))
                .collect()
        };
        // The first connection delivers 1..=3 and drops.
        assert_eq!(steps(&mut cursor, &[1, 2, 3]), [true, true, true]);
        assert_eq!(
            cursor.last_seq,
            Some(3),
            "the next connection resumes after 3"
        );
        // Should the server resend from an earlier point, the old lines are skipped.
        assert_eq!(
            steps(&mut cursor, &[2, 3, 4, 5]),
            [false, false, true, true]
        );

        let end = sse(
            "end",
            json!({"status": "succeeded", "exitCode": 0, "error": null}),
        );
        assert_eq!(
            cursor.step(&end).unwrap(),
            Step::End(End {
                status: "succeeded".into(),
                exit_code: Some(0),
                error: None
            })
        );
        let failed = SseEvent {
            event: "error".into(),
            data: "database is locked".into(),
            id: None,
        };
        assert_eq!(
            cursor.step(&failed).unwrap(),
            Step::Failed("database is locked".into())
        );
        let unknown = SseEvent {
            event: "progress".into(),
            data: "{}".into(),
            id: None,
        };
        assert_eq!(cursor.step(&unknown).unwrap(), Step::Other);
    }

    #[test]
    fn an_unexplained_end_is_told_once() {
        let failed = End {
            status: "failed".into(),
            exit_code: None,
            error: Some("runner died without a result".into()),
        };
        let table = [
            (end("succeeded", Some(0)), None, None),
            (failed.clone(), Some("runner died without a result"), None),
            (
                failed,
                Some("attempt 1 of 1 started"),
                Some("cronium: job 7 failed: runner died without a result"),
            ),
            (
                end("cancelled", None),
                None,
                Some("cronium: job 7 cancelled"),
            ),
        ];
        for (outcome, last_note, want) in table {
            assert_eq!(
                summary(7, &outcome, last_note).as_deref(),
                want,
                "{outcome:?} after {last_note:?}"
            );
        }
    }

    #[test]
    fn the_waiting_line_says_what_the_job_is_doing_and_for_how_long() {
        let table = [
            ("queued", 3_400, "waiting: queued 3s…"),
            ("running", 59_999, "waiting: running 59s…"),
            ("running", 125_000, "waiting: running 2m05s…"),
        ];
        for (status, ms, want) in table {
            assert_eq!(waiting_text(status, Duration::from_millis(ms)), want);
        }
    }

    #[test]
    fn reconnects_back_off_but_not_forever() {
        let waits: Vec<u128> = (1..=MAX_RETRIES).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 4000]);
    }
}
