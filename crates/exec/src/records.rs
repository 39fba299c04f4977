//! The runner's framed record stream as the executors read it: output records become lines, the Result record (or how the runner died) becomes a [`RunReport`].
//!
//! Local and remote runs read the same stream with [`read_records`] and
//! explain it with [`build_report`], so a run means the same wherever it ran.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use cronium_core::JobStatus;
use cronium_runner::protocol::{
    self, Hello, Kind, MAX_CHUNK, MAX_FRAME, PROTOCOL_VERSION, ProtocolError, RunResult,
};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc::Sender;

use crate::helpers::Relay;
use crate::mask::{MaskStream, Secrets};
use crate::{Lease, MAX_LINE, OutputLine, RunReport, Stream};

/// One framed record, as bytes to send.
pub(crate) fn frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(5 + payload.len());
    protocol::write_frame(&mut bytes, kind, payload).expect("writing to a Vec cannot fail");
    bytes
}

/// The Lease record that lets the runner's script go on until `until`.
pub(crate) fn lease_record(until: tokio::time::Instant) -> Vec<u8> {
    let left = until.saturating_duration_since(tokio::time::Instant::now());
    let lease = protocol::Lease {
        valid_for_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
    };
    frame(
        Kind::Lease,
        &serde_json::to_vec(&lease).expect("a lease serializes"),
    )
}

/// The attempt's lease, to pass on to its runner: [`renewed`] yields it at
/// once, then at every renewal.
pub(crate) fn lease_renewals(lease: &Option<Lease>) -> Option<Lease> {
    let mut lease = lease.clone();
    if let Some(rx) = &mut lease {
        rx.mark_changed();
    }
    lease
}

/// The attempt's lease after its next renewal; pending forever when the
/// attempt has no lease or its owner is gone (the last one stands).
pub(crate) async fn renewed(lease: &mut Option<Lease>) -> tokio::time::Instant {
    if let Some(rx) = lease
        && rx.changed().await.is_ok()
    {
        return *rx.borrow_and_update();
    }
    *lease = None;
    std::future::pending().await
}

/// What the record stream said.
#[derive(Debug, Default)]
pub(crate) struct StreamEnd {
    pub(crate) result: Option<RunResult>,
    /// From the Hello record.
    pub(crate) runner_version: Option<String>,
    verified: bool,
    started: bool,
    messages: Vec<String>,
    /// Set when the stream was not a well-formed protocol-1 stream.
    broken: Option<String>,
}

#[derive(Deserialize)]
struct EventRecord {
    event: String,
    pid: Option<i32>,
    message: Option<String>,
}

/// Reads records until the Result (or the end of the stream), passing the
/// script's output on as lines.
///
/// `pgid` receives the script's process group from `started`, when the
/// caller can use it (a local, unsandboxed runner). Helper calls go to
/// `relay`, whose replies the caller writes to the runner's stdin. Every
/// value in `secrets` is masked in the output and in the runner's messages
/// before they go anywhere.
pub(crate) async fn read_records<R: AsyncRead + Unpin>(
    stdout: R,
    output: &Sender<OutputLine>,
    pgid: Option<&AtomicI32>,
    relay: &mut Relay,
    secrets: &Secrets,
) -> StreamEnd {
    let mut reader = BufReader::with_capacity(MAX_CHUNK + 5, stdout);
    let mut payload = Vec::new();
    let mut end = StreamEnd::default();
    let mut stdout_lines = LineSplitter::new(Stream::Stdout, secrets);
    let mut stderr_lines = LineSplitter::new(Stream::Stderr, secrets);
    let mut first = true;
    loop {
        let kind = match read_frame(&mut reader, &mut payload).await {
            Ok(Some(kind)) => kind,
            Ok(None) => break,
            Err(e) => {
                end.broken = Some(e.to_string());
                break;
            }
        };
        if std::mem::take(&mut first) && kind != Kind::Hello {
            end.broken = Some(format!("expected a Hello record first, got {kind:?}"));
            break;
        }
        match kind {
            Kind::Hello => match serde_json::from_slice::<Hello>(&payload) {
                Ok(hello) if hello.protocol == PROTOCOL_VERSION => {
                    end.runner_version = Some(hello.runner_version);
                }
                Ok(hello) => {
                    end.broken = Some(format!(
                        "the runner speaks protocol {} (runner {}), this server {PROTOCOL_VERSION}",
                        hello.protocol, hello.runner_version
                    ));
                    break;
                }
                Err(e) => {
                    end.broken = Some(format!("bad Hello record: {e}"));
                    break;
                }
            },
            Kind::Stdout => stdout_lines.push(&payload, output).await,
            Kind::Stderr => stderr_lines.push(&payload, output).await,
            Kind::Event => {
                // Events are informational and may grow fields: one we cannot
                // read is skipped rather than failing the run.
                let Ok(event) = serde_json::from_slice::<EventRecord>(&payload) else {
                    tracing::warn!("skipping an unreadable runner event");
                    continue;
                };
                match event.event.as_str() {
                    "verified" => end.verified = true,
                    "started" => {
                        end.started = true;
                        if let (Some(pid), Some(pgid)) = (event.pid, pgid) {
                            pgid.store(pid, Ordering::SeqCst);
                        }
                    }
                    "message" => end
                        .messages
                        .extend(event.message.map(|m| secrets.mask_str(&m))),
                    _ => {}
                }
            }
            Kind::Result => {
                match serde_json::from_slice::<RunResult>(&payload) {
                    Ok(result) => end.result = Some(result),
                    Err(e) => end.broken = Some(format!("bad Result record: {e}")),
                }
                break;
            }
            Kind::Env | Kind::Cancel | Kind::Reply | Kind::Lease => {
                end.broken = Some(format!("unexpected {kind:?} record from the runner"));
                break;
            }
            Kind::Call => relay.call(&payload),
        }
    }
    stdout_lines.finish(output).await;
    stderr_lines.finish(output).await;
    end
}

/// The async twin of [`protocol::read_frame`]: the same format and limits,
/// reusing `payload` between records.
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    payload: &mut Vec<u8>,
) -> Result<Option<Kind>, ProtocolError> {
    let mut header = [0u8; 5];
    let mut filled = 0;
    while filled < header.len() {
        match r.read(&mut header[filled..]).await {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(ProtocolError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtocolError::Io(e)),
        }
    }
    let kind = Kind::from_byte(header[0]).ok_or(ProtocolError::UnknownKind(header[0]))?;
    let len = u32::from_be_bytes(header[1..].try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    payload.resize(len, 0);
    r.read_exact(payload).await.map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ProtocolError::Truncated,
        _ => ProtocolError::Io(e),
    })?;
    Ok(Some(kind))
}

/// Cuts a stream's bytes into lines of at most [`MAX_LINE`] bytes, each
/// ending in `\n` but a final fragment: how every executor's output becomes
/// [`OutputLine`]s, whether it is read async (the runner's records) or in a
/// blocking thread (an HTTP response).
#[derive(Debug, Default)]
pub(crate) struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Takes `data`; returns the lines it completed, in order.
    pub(crate) fn push(&mut self, mut data: &[u8]) -> Vec<Vec<u8>> {
        let mut done = Vec::new();
        while !data.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let window = &data[..data.len().min(room)];
            let (take, complete) = match window.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (window.len(), window.len() == room),
            };
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if complete {
                done.push(std::mem::take(&mut self.pending));
            }
        }
        done
    }

    /// The final fragment without a `\n`, if any.
    pub(crate) fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// [`Lines`] of one stream, masked, sent on as they complete.
struct LineSplitter {
    stream: Stream,
    mask: MaskStream,
    lines: Lines,
}

impl LineSplitter {
    fn new(stream: Stream, secrets: &Secrets) -> LineSplitter {
        LineSplitter {
            stream,
            mask: secrets.stream(),
            lines: Lines::default(),
        }
    }

    async fn push(&mut self, data: &[u8], output: &Sender<OutputLine>) {
        // Masked before it is cut into lines: a secret split across
        // records, or across a 64 KiB line cut, is still one secret.
        let masked = self.mask.push(data);
        for line in self.lines.push(&masked) {
            self.send(line, output).await;
        }
    }

    async fn finish(&mut self, output: &Sender<OutputLine>) {
        let held = self.mask.finish();
        for line in self.lines.push(&held) {
            self.send(line, output).await;
        }
        if let Some(line) = self.lines.finish() {
            self.send(line, output).await;
        }
    }

    async fn send(&self, data: Vec<u8>, output: &Sender<OutputLine>) {
        let line = OutputLine {
            stream: self.stream,
            data,
        };
        // A receiver that went away loses the output, not the run: the
        // stream is still drained so the runner never blocks on it.
        let _ = output.send(line).await;
    }
}

pub(crate) struct Outcome {
    pub(crate) end: StreamEnd,
    pub(crate) exit: Option<RunnerExit>,
    /// The head of the runner's own stderr.
    pub(crate) diagnostics: String,
    pub(crate) timeout: Duration,
    pub(crate) cancel_sent: bool,
    pub(crate) forced: Option<String>,
    pub(crate) wall: Duration,
}

/// How the runner process itself ended, where a run has to be explained
/// without the runner's Result record.
pub(crate) struct RunnerExit {
    pub(crate) code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) description: String,
}

impl From<ExitStatus> for RunnerExit {
    fn from(status: ExitStatus) -> RunnerExit {
        RunnerExit {
            code: status.code(),
            signal: status.signal(),
            description: describe_exit(status),
        }
    }
}

pub(crate) fn build_report(o: Outcome) -> RunReport {
    let end = o.end;
    let messages = end.messages.join("; ");
    match (end.result, end.broken, o.forced) {
        (Some(r), None, None) => {
            let status = if r.timed_out {
                JobStatus::TimedOut
            } else if r.cancelled {
                JobStatus::Cancelled
            } else if r.exit_code == 0 {
                JobStatus::Succeeded
            } else {
                JobStatus::Failed
            };
            let error = match status {
                JobStatus::Succeeded => None,
                JobStatus::TimedOut => Some(format!("timed out after {}", fmt_duration(o.timeout))),
                JobStatus::Cancelled if o.cancel_sent => Some("cancelled".to_string()),
                JobStatus::Cancelled => Some(format!("cancelled by the runner: {messages}")),
                _ => Some(failure_reason(&r, end.verified, end.started, &messages)),
            };
            RunReport {
                status,
                exit_code: Some(r.exit_code),
                signal: r.signal,
                duration_ms: r.duration_ms,
                error,
            }
        }
        (_, broken, forced) => {
            let mut why = Vec::new();
            why.extend(forced.clone());
            why.extend(broken.map(|b| format!("corrupt output stream: {b}")));
            match &o.exit {
                Some(exit) => why.push(exit.description.clone()),
                None => why.push("exit status unknown".into()),
            }
            if !messages.is_empty() {
                why.push(format!("last messages: {messages}"));
            }
            if !o.diagnostics.is_empty() {
                why.push(format!("stderr: {}", o.diagnostics));
            }
            let status = if forced.is_some() && o.cancel_sent {
                JobStatus::Cancelled
            } else {
                JobStatus::Failed
            };
            let lead = if status == JobStatus::Cancelled {
                "cancelled, but"
            } else {
                "runner died without a result:"
            };
            RunReport {
                status,
                exit_code: o.exit.as_ref().and_then(|e| e.code),
                signal: o.exit.as_ref().and_then(|e| e.signal),
                duration_ms: o.wall.as_millis() as u64,
                error: Some(format!("{lead} {}", why.join("; "))),
            }
        }
    }
}

/// Why a run that the runner reported on failed. 125–127 mean the runner's
/// own failures only when the script never started: a script may well exit
/// 127 itself (bash: command not found).
fn failure_reason(r: &RunResult, verified: bool, started: bool, messages: &str) -> String {
    let detail = |fallback: String| {
        if messages.is_empty() {
            fallback
        } else {
            messages.to_string()
        }
    };
    if !started {
        match r.exit_code {
            125 => {
                // Before `verified` the runner only looks at the payload and
                // its checksum; after it, unpacking refuses "refusing payload".
                let rejected = !verified || messages.starts_with("refusing payload");
                let lead = if rejected {
                    "payload rejected"
                } else {
                    "runner failed"
                };
                return format!("{lead}: {}", detail("exit status 125".into()));
            }
            126 => {
                return format!(
                    "interpreter not executable: {}",
                    detail("exit status 126".into())
                );
            }
            127 => {
                return format!(
                    "interpreter not found: {}",
                    detail("exit status 127".into())
                );
            }
            _ => {}
        }
    }
    let reason = match r.signal {
        Some(sig) => format!("killed by signal {sig}{}", signal_name(sig)),
        None => format!("exit status {}", r.exit_code),
    };
    if messages.is_empty() {
        reason
    } else {
        format!("{reason} (runner: {messages})")
    }
}

fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("runner exited with status {code}"),
        (None, Some(sig)) => format!("runner killed by signal {sig}{}", signal_name(sig)),
        _ => status.to_string(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => " (SIGHUP)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGQUIT => " (SIGQUIT)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGPIPE => " (SIGPIPE)",
        libc::SIGTERM => " (SIGTERM)",
        _ => "",
    }
}

/// `2s`, `1m30s`, `1500ms`: short and exact.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let mut s = LineSplitter::new(Stream::Stdout, &Secrets::new());
        for chunk in chunks {
            s.push(chunk, &tx).await;
        }
        s.finish(&tx).await;
        drop(tx);
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            lines.push(line.data);
        }
        lines
    }

    #[tokio::test]
    async fn lines_are_cut_at_newlines_across_chunks_and_at_64_kib() {
        assert_eq!(
            split(&[b"a\nb", b"c\n\nd"]).await,
            vec![
                b"a\n".to_vec(),
                b"bc\n".to_vec(),
                b"\n".to_vec(),
                b"d".to_vec()
            ]
        );
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let lines = split(&[&long[..100], &long[100..], b"\n"]).await;
        let sizes: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_LINE, MAX_LINE, 11]);
        assert_eq!(split(&[]).await, Vec::<Vec<u8>>::new());
    }

    #[test]
    fn durations_read_like_the_runner_flags() {
        let table = [
            (2_000, "2s"),
            (1_500, "1500ms"),
            (90_000, "1m30s"),
            (3_600_000, "1h"),
        ];
        for (ms, text) in table {
            assert_eq!(fmt_duration(Duration::from_millis(ms)), text);
        }
    }
}
