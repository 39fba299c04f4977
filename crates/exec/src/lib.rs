//! Executors: run one attempt of a job on one target (this host through the local runner, optionally sandboxed, or a server over SSH) and stream its output as lines.
//!
//! Both speak the runner's framed protocol (`records`): the script's output
//! arrives as [`OutputLine`]s on a channel while it runs, and the attempt
//! ends in a [`RunReport`]. This crate knows the runner's protocol and SSH;
//! it knows nothing of the database, jobs' leases or HTTP: the engine hands
//! it a [`RunRequest`] (the pinned payload, its digest, the timeout and the
//! environment with the secrets already opened) and a target.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cronium_core::JobStatus;

pub mod local;
mod records;
pub mod remote;
#[cfg(feature = "testing")]
pub mod testing;

pub use local::{ExecutorConfig, ExecutorError, LocalExecutor, Sandbox};

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
}

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
