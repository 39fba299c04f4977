//! Executors: run one attempt of a job (a script on this host through the local runner, optionally sandboxed, or on a server over SSH; or an HTTP request) and stream its output as lines.
//!
//! The script executors speak the runner's framed protocol (`records`): the
//! script's output arrives as [`OutputLine`]s on a channel while it runs,
//! and the attempt ends in a [`RunReport`]. The HTTP executor (`http`)
//! streams a response the same way, through the SSRF guard (`guard`), which
//! also guards the one POST a notification makes (`webhook`) and the one
//! mail an email channel sends (`smtp`). This
//! crate knows the runner's protocol, SSH and outgoing HTTP; it knows
//! nothing of the database, jobs' leases or the API: the engine hands it an
//! [`Attempt`] (a [`RunRequest`] with the pinned payload, its digest, the
//! timeout and the environment with the secrets already opened, and where
//! to run it; or an [`HttpCall`]). Every secret value is masked as `***`
//! (`mask`) before output or an error leaves this crate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cronium_core::JobStatus;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

pub mod guard;
pub mod helpers;
pub mod http;
pub mod local;
pub mod mask;
mod records;
pub mod remote;
pub mod smtp;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhook;

pub use guard::{Allow, Guard, Refused};
pub use helpers::{HelperFuture, HelperHandler, Helpers};
pub use http::{HttpCall, HttpExecutor, HttpLimits, HttpOutcome};
pub use local::{ExecutorConfig, ExecutorError, LocalExecutor, Sandbox};
pub use mask::{MaskStream, Secrets, mask_json};
use remote::{RemoteExecutor, RemoteServer};
pub use webhook::{PostError, PostResponse};

/// Longest [`OutputLine`]: longer lines arrive in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;
/// After a cancel request, how long past the kill grace the runner may take
/// before the executor kills it (and the group it announced) itself.
pub const CANCEL_MARGIN: Duration = Duration::from_secs(5);
/// A runner still going this long after timeout + kill grace is stuck (it
/// enforces the timeout itself); the executor then kills it.
pub const WATCHDOG_MARGIN: Duration = Duration::from_secs(30);

/// One attempt of a job.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The payload `.tar.gz`, absolute.
    pub payload: PathBuf,
    /// The digest the job pinned (64 hex digits), passed as `--sha256`: the
    /// database, not a file beside the payload, says what may run.
    pub sha256: String,
    pub timeout: Duration,
    /// Secrets and `CRONIUM_JOB_ID` / `CRONIUM_EXECUTION_ID`: sent only in
    /// the framed `Env` record on the runner's stdin.
    pub env: BTreeMap<String, String>,
    /// Who answers the script's helper calls; without it every call is
    /// answered `unavailable`.
    pub helpers: Option<Helpers>,
    /// Every secret value the run can see, masked as `***` in its output
    /// before it leaves the executor; shared, so values the run learns
    /// later (a secret variable it reads) are masked from then on.
    pub secrets: Secrets,
    /// Until when the attempt may run, renewed by the caller while it holds
    /// the job: each renewal goes to the runner as a Lease record, and the
    /// runner stops the script by itself once the last one runs out.
    /// `None`: only the timeout limits the run.
    pub lease: Option<Lease>,
}

/// An attempt's lease as its executor sees it: the instant it runs out,
/// moved forward at each renewal.
pub type Lease = tokio::sync::watch::Receiver<tokio::time::Instant>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of the script's output, with its `\n` (none on a final
/// fragment), byte for byte; at most [`MAX_LINE`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: Stream,
    pub data: Vec<u8>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// `Succeeded`, `Failed`, `TimedOut` or `Cancelled`.
    pub status: JobStatus,
    /// The runner's exit status (the script's own, or 124–128+N).
    pub exit_code: Option<i32>,
    /// The signal that ended the script (or the runner, if it died).
    pub signal: Option<i32>,
    /// The script's run time as the runner measured it (0 if it never
    /// started); wall time since spawn if the runner died.
    pub duration_ms: u64,
    /// Why it did not succeed, for people.
    pub error: Option<String>,
}

impl RunReport {
    /// A failed attempt that never reached the runner.
    pub fn failed(error: impl Into<String>) -> RunReport {
        RunReport {
            status: JobStatus::Failed,
            exit_code: None,
            signal: None,
            duration_ms: 0,
            error: Some(error.into()),
        }
    }
}

/// The phase an execution failed in, as job metadata and errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    HostKey,
    Auth,
    Deploy,
    Upload,
    Run,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::HostKey => "host key",
            Phase::Auth => "auth",
            Phase::Deploy => "deploy",
            Phase::Upload => "upload",
            Phase::Run => "run",
        }
    }
}

/// Milliseconds spent in each phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    pub connect: u64,
    pub deploy: u64,
    pub upload: u64,
    pub run: u64,
    pub cleanup: u64,
}

/// One target's part of an attempt: how it ended, for a remote one where
/// it failed, how long each phase took and what was uploaded, and for an
/// HTTP one the final status.
#[derive(Debug)]
pub struct Execution {
    pub report: RunReport,
    /// Where it failed, if it did before or outside the script.
    pub phase: Option<Phase>,
    pub timings: Timings,
    pub runner_version: Option<String>,
    /// The payload's path on the host.
    pub payload_path: Option<String>,
    pub runner_uploaded: bool,
    pub payload_uploaded: bool,
    pub bytes_uploaded: u64,
    /// An HTTP attempt's final status, if a response arrived.
    pub http_status: Option<u16>,
    /// Whether an HTTP attempt's response body was cut at the limit.
    pub body_truncated: bool,
}

impl Execution {
    /// A run on this host: only its report (nothing to connect, deploy or upload).
    fn local(report: RunReport) -> Execution {
        Execution {
            report,
            phase: None,
            timings: Timings::default(),
            runner_version: None,
            payload_path: None,
            runner_uploaded: false,
            payload_uploaded: false,
            bytes_uploaded: 0,
            http_status: None,
            body_truncated: false,
        }
    }

    /// An HTTP request: its report and what the response said.
    fn http(outcome: HttpOutcome) -> Execution {
        Execution {
            http_status: outcome.status,
            body_truncated: outcome.body_truncated,
            ..Execution::local(outcome.report)
        }
    }

    pub(crate) fn failed(phase: Phase, error: impl Into<String>) -> Execution {
        Execution {
            phase: Some(phase),
            ..Execution::local(RunReport::failed(error))
        }
    }
}

/// One execution of an attempt: what runs, and where.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    /// A script on this host, through the local runner (sandboxed when configured).
    Local(&'a RunRequest),
    /// A script on a server over SSH.
    Remote(&'a RemoteServer, &'a RunRequest),
    /// An HTTP request, through the SSRF guard.
    Http(&'a HttpCall),
}

/// Every way Cronium runs an attempt, behind one call: [`Executors::run`]
/// runs an attempt and streams its output lines as they come. Share it
/// with an `Arc`.
pub struct Executors {
    local: LocalExecutor,
    remote: RemoteExecutor,
    http: HttpExecutor,
}

impl Executors {
    pub fn new(local: LocalExecutor, remote: RemoteExecutor, http: HttpExecutor) -> Executors {
        Executors {
            local,
            remote,
            http,
        }
    }

    /// Runs `attempt`, sending its output on `output` as it arrives (a slow
    /// receiver slows the script or the download down; nothing is
    /// dropped), until it ends or `cancel` stops it.
    pub async fn run(
        &self,
        attempt: Attempt<'_>,
        output: Sender<OutputLine>,
        cancel: CancellationToken,
    ) -> Execution {
        let mut execution = match attempt {
            Attempt::Local(request) => {
                Execution::local(self.local.run(request.clone(), output, cancel).await)
            }
            Attempt::Remote(server, request) => {
                self.remote.run(server, request, output, cancel).await
            }
            Attempt::Http(call) => Execution::http(self.http.run(call, output, cancel).await),
        };
        // An error may quote the runner's own stderr or its messages: it is
        // stored and notified like output, so it is masked like output.
        if let Attempt::Local(request) | Attempt::Remote(_, request) = attempt
            && let Some(error) = &mut execution.report.error
        {
            *error = request.secrets.mask_str(error);
        }
        execution
    }

    /// Closes SSH connections no job has used for a while; returns how many.
    pub async fn close_idle(&self, now: tokio::time::Instant) -> usize {
        self.remote.close_idle(now).await
    }
}
