//! The local executor: runs one attempt of a job with the real `cronium-runner` (optionally under bubblewrap) and streams its output as lines.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cronium_core::JobStatus;
use cronium_runner::protocol::{
    self, Hello, Kind, MAX_CHUNK, MAX_FRAME, PROTOCOL_VERSION, ProtocolError, RunResult,
};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

/// Longest [`OutputLine`]: longer lines arrive in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;
/// After a cancel request, how long past the kill grace the runner may take
/// before the executor kills it (and the group it announced) itself.
pub const CANCEL_MARGIN: Duration = Duration::from_secs(5);
/// A runner still going this long after timeout + kill grace is stuck (it
/// enforces the timeout itself); the executor then kills it.
pub const WATCHDOG_MARGIN: Duration = Duration::from_secs(30);
/// How much of the runner's own stderr is kept for error messages.
const STDERR_KEEP: usize = 8 * 1024;

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// The `cronium-runner` binary.
    pub runner: PathBuf,
    /// Where each run gets a directory of its own (the runner's `--workdir`,
    /// removed afterwards); created 0700.
    pub work_dir: PathBuf,
    pub sandbox: Sandbox,
    /// The runner's `--kill-grace`: SIGTERM to SIGKILL on timeout or cancel.
    pub kill_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    None,
    /// Read-only system without capabilities, private `/tmp`, own
    /// PID/IPC/UTS (and, unless allowed, network) namespaces; only the run's
    /// own directory and the private `/tmp` are writable.
    /// See also [`LocalExecutor::hide_in_sandbox`].
    Bubblewrap {
        allow_network: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(
        "runner {path}: {source} (build it with `cargo build -p cronium-runner` or point the server at an installed cronium-runner)"
    )]
    RunnerMissing { path: PathBuf, source: io::Error },
    #[error("runner {0} is not an executable file")]
    RunnerNotExecutable(PathBuf),
    #[error(
        "the bubblewrap sandbox needs `bwrap`, which is not on PATH: install bubblewrap (apt-get install bubblewrap) or run jobs without the sandbox"
    )]
    BwrapMissing,
    #[error("bubblewrap ({bwrap}) cannot create a sandbox on this machine: {detail}")]
    BwrapUnusable { bwrap: PathBuf, detail: String },
    #[error("cannot create the work dir {path}: {source}")]
    WorkDir { path: PathBuf, source: io::Error },
}

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

/// Runs payloads with the local `cronium-runner`, exactly as remote hosts
/// will: the runner binary in framed mode, secrets in the `Env` record on its
/// stdin (never on a command line or in its environment), stdin kept open as
/// the control channel, the record stream turned into [`OutputLine`]s and a
/// [`RunReport`]. The runner owns timeouts and process-group cleanup; the
/// executor only steps in when the runner dies or will not stop. Share it
/// with an `Arc`.
#[derive(Debug)]
pub struct LocalExecutor {
    config: ExecutorConfig,
    /// `bwrap`, resolved once, when sandboxed.
    bwrap: Option<PathBuf>,
    /// The runner's whole environment, computed once (see [`runner_base_env`]).
    runner_env: Vec<(OsString, OsString)>,
    /// Directories the sandbox shows empty (see [`LocalExecutor::hide_in_sandbox`]).
    hidden: Vec<PathBuf>,
}

impl LocalExecutor {
    /// Checks the runner exists and is executable and, for bubblewrap, that
    /// `bwrap` is on PATH and can build the sandbox here; creates the work dir.
    pub fn new(mut config: ExecutorConfig) -> Result<LocalExecutor, ExecutorError> {
        let meta =
            std::fs::metadata(&config.runner).map_err(|source| ExecutorError::RunnerMissing {
                path: config.runner.clone(),
                source,
            })?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(ExecutorError::RunnerNotExecutable(config.runner));
        }
        let work_dir_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ExecutorError::WorkDir { path, source }
        };
        crate::files::create_private_dir(&config.work_dir)
            .map_err(work_dir_error(&config.work_dir))?;
        // Absolute, symlink-free paths: bubblewrap binds them at the same
        // place inside the sandbox, and the runner never resolves them again.
        config.work_dir = config
            .work_dir
            .canonicalize()
            .map_err(work_dir_error(&config.work_dir))?;
        config.runner =
            config
                .runner
                .canonicalize()
                .map_err(|source| ExecutorError::RunnerMissing {
                    path: config.runner.clone(),
                    source,
                })?;
        let bwrap = match config.sandbox {
            Sandbox::None => None,
            Sandbox::Bubblewrap { allow_network } => {
                let bwrap = find_on_path("bwrap").ok_or(ExecutorError::BwrapMissing)?;
                probe_bwrap(&bwrap, allow_network)?;
                Some(bwrap)
            }
        };
        Ok(LocalExecutor {
            config,
            bwrap,
            runner_env: runner_base_env(std::env::vars_os()),
            hidden: Vec::new(),
        })
    }

    /// Extra (non-secret) variables for the runner process itself, such as
    /// `CRONIUM_RUNNER_BASH`. They are visible in `/proc/<pid>/environ` and
    /// inherited by scripts: secrets belong in [`RunRequest::env`].
    pub fn with_runner_env<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        for (k, v) in vars {
            let k = k.into();
            self.runner_env.retain(|(name, _)| *name != k);
            self.runner_env.push((k, v.into()));
        }
        self
    }

    /// Directories a sandboxed script must not read, such as the server's
    /// data dir (master key, database, tokens): the sandbox shows the system
    /// read-only, not hidden, and its scripts run as the server's user. They
    /// appear as empty directories; the run's own work dir and payload stay
    /// visible even when they live inside. No effect without the sandbox.
    pub fn hide_in_sandbox<P: Into<PathBuf>>(mut self, dirs: impl IntoIterator<Item = P>) -> Self {
        // bwrap mounts over the real location, so symlinks are resolved now.
        self.hidden.extend(dirs.into_iter().map(|d| {
            let d = d.into();
            d.canonicalize().unwrap_or_else(|_| absolute(&d))
        }));
        self
    }

    pub fn config(&self) -> &ExecutorConfig {
        &self.config
    }

    /// Runs one attempt. Sends output lines on `output` as they arrive (a
    /// slow receiver slows the script down; a dropped one loses the lines but
    /// not the run); returns once the runner has exited.
    pub async fn run(
        &self,
        request: RunRequest,
        output: Sender<OutputLine>,
        cancel: CancellationToken,
    ) -> RunReport {
        let began = Instant::now();
        if request.timeout.is_zero() {
            return RunReport::failed("invalid run request: the timeout must be greater than zero");
        }
        let env_record = match serde_json::to_vec(&request.env) {
            Ok(json) => frame(Kind::Env, &json),
            Err(e) => return RunReport::failed(format!("cannot encode the environment: {e}")),
        };
        // Declared before the process guard below, so it is removed after
        // whatever ran in it was killed.
        let run_dir = match RunDir::create(&self.config.work_dir) {
            Ok(dir) => dir,
            Err(e) => {
                return RunReport::failed(format!(
                    "cannot create a run directory in {}: {e}",
                    self.config.work_dir.display()
                ));
            }
        };
        let mut child = match self.command(&request, &run_dir.0).spawn() {
            Ok(child) => child,
            Err(e) => {
                let program = self.bwrap.as_ref().unwrap_or(&self.config.runner);
                return RunReport::failed(format!("cannot start {}: {e}", program.display()));
            }
        };
        let (Some(mut control), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three are piped");
        };
        let pgid = AtomicI32::new(0);
        let mut running = Running {
            child,
            pgid: &pgid,
            finished: false,
        };
        let diagnostics = tokio::spawn(keep_head(stderr));

        // The runner reads the Env record before anything else. If this
        // write fails the runner is already gone, and its stream says why.
        let _ = control.write_all(&env_record).await;

        // Sandboxed, the announced pid belongs to another PID namespace.
        let reading = read_records(stdout, &output, self.bwrap.is_none().then_some(&pgid));
        tokio::pin!(reading);
        let watchdog = request
            .timeout
            .saturating_add(self.config.kill_grace)
            .saturating_add(WATCHDOG_MARGIN);
        let deadline = tokio::time::sleep(watchdog);
        tokio::pin!(deadline);
        let mut cancel_sent = false;
        let mut forced: Option<String> = None;
        let end = loop {
            tokio::select! {
                end = &mut reading => break end,
                () = cancel.cancelled(), if !cancel_sent => {
                    cancel_sent = true;
                    let _ = control.write_all(&frame(Kind::Cancel, &[])).await;
                    let give_up = tokio::time::Instant::now() + self.config.kill_grace + CANCEL_MARGIN;
                    if give_up < deadline.deadline() {
                        deadline.as_mut().reset(give_up);
                    }
                }
                () = &mut deadline => {
                    running.kill();
                    let waited = if cancel_sent { self.config.kill_grace + CANCEL_MARGIN } else { watchdog };
                    forced = Some(format!(
                        "the runner did not finish within {} {}; killed it",
                        fmt_duration(waited),
                        if cancel_sent { "of the cancel request" } else { "of its start" },
                    ));
                    // With the runner dead its end of the pipe is closed.
                    break reading.await;
                }
            }
        };

        if end.result.is_none() || forced.is_some() {
            running.kill();
        }
        let exit = match tokio::time::timeout(CANCEL_MARGIN, running.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                running.kill();
                running.child.wait().await.ok()
            }
        };
        running.finished = true;
        // Keeping the control channel open until the runner has exited: its
        // end-of-file would be read as one more cancellation.
        drop(control);
        let diagnostics = match tokio::time::timeout(Duration::from_secs(1), diagnostics).await {
            Ok(Ok(text)) => text,
            _ => String::new(),
        };
        build_report(Outcome {
            end,
            exit: exit.map(RunnerExit::from),
            diagnostics,
            timeout: request.timeout,
            cancel_sent,
            forced,
            wall: began.elapsed(),
        })
    }

    /// `cronium-runner run …`, under `bwrap` when sandboxed.
    fn command(&self, request: &RunRequest, run_dir: &Path) -> Command {
        let payload = absolute(&request.payload);
        let runner = &self.config.runner;
        let mut cmd = match (&self.bwrap, self.config.sandbox) {
            (Some(bwrap), Sandbox::Bubblewrap { allow_network }) => {
                let mut cmd = Command::new(bwrap);
                cmd.args(bwrap_args(allow_network));
                // A path that does not exist cannot be hidden (nor needs to
                // be): bwrap cannot make a mount point on the read-only root.
                let hidden: Vec<&PathBuf> = self.hidden.iter().filter(|d| d.is_dir()).collect();
                for dir in &hidden {
                    cmd.arg("--tmpfs").arg(dir);
                }
                // Bound after the tmpfs mounts (the private /tmp, hidden
                // dirs), which would otherwise cover them.
                cmd.arg("--bind").arg(run_dir).arg(run_dir);
                for path in [runner, &payload] {
                    cmd.arg("--ro-bind").arg(path).arg(path);
                }
                // Hidden dirs are not scratch space; the binds inside stay as they are.
                for dir in &hidden {
                    cmd.arg("--remount-ro").arg(dir);
                }
                cmd.arg("--").arg(runner);
                cmd
            }
            _ => Command::new(runner),
        };
        cmd.arg("run")
            .arg(&payload)
            .arg("--sha256")
            .arg(&request.sha256)
            .arg("--timeout")
            .arg(format!("{}ms", request.timeout.as_millis().max(1)))
            .arg("--kill-grace")
            .arg(format!("{}ms", self.config.kill_grace.as_millis()))
            .arg("--workdir")
            .arg(run_dir)
            .args(["--output", "framed", "--env-from-stdin"])
            .env_clear()
            .envs(self.runner_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// The sandbox's fixed part: a read-only system, fresh /dev, /proc and /tmp,
/// every namespace private (the network unless allowed), no capabilities.
/// `--new-session`
/// keeps a script from pushing input into a terminal the server may have;
/// the runner's own process group lives inside that session unharmed.
fn bwrap_args(allow_network: bool) -> Vec<&'static str> {
    let mut args = vec![
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--unshare-all",
    ];
    if allow_network {
        args.push("--share-net");
    }
    // Without `--cap-drop ALL` a sandbox started by root keeps root's
    // capabilities and could simply remount / read-write.
    args.extend(["--cap-drop", "ALL", "--die-with-parent", "--new-session"]);
    args
}

/// Tries the sandbox once, so a machine that cannot build it (no user
/// namespaces, seccomp) fails at start-up rather than on every job.
fn probe_bwrap(bwrap: &Path, allow_network: bool) -> Result<(), ExecutorError> {
    let unusable = |detail: String| ExecutorError::BwrapUnusable {
        bwrap: bwrap.to_path_buf(),
        detail,
    };
    let out = std::process::Command::new(bwrap)
        .args(bwrap_args(allow_network))
        .args(["--", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| unusable(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(unusable(if stderr.is_empty() {
            format!("`bwrap … true` failed with {}", out.status)
        } else {
            stderr
        }))
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The server's environment minus its own `CRONIUM_*` settings: scripts
/// inherit the runner's environment, and those hold the master key and the
/// database URL; a stray `CRONIUM_JOB_ID` would also pass for the job's.
/// `CRONIUM_RUNNER_*` (interpreter overrides) are the runner's and stay.
fn runner_base_env(vars: impl Iterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    vars.filter(|(k, _)| {
        let k = k.as_encoded_bytes();
        !k.starts_with(b"CRONIUM_") || k.starts_with(b"CRONIUM_RUNNER_")
    })
    .collect()
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

pub(crate) fn frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(5 + payload.len());
    protocol::write_frame(&mut bytes, kind, payload).expect("writing to a Vec cannot fail");
    bytes
}

/// A directory of each run's own under the work dir: the runner's
/// `--workdir`, and all a sandboxed script may write, so it never sees
/// another run's files. Removed when dropped, with whatever a killed runner
/// left in it.
struct RunDir(PathBuf);

impl RunDir {
    fn create(parent: &Path) -> io::Result<RunDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("run-{}-{n}", std::process::id()));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(RunDir(path)),
                // Left behind by an earlier server that had the same pid.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove a run directory");
        }
    }
}

/// The runner process while a run is in flight. Dropped early (the run's
/// future was dropped, or it is being torn down), it kills the announced
/// process group first, because a runner killed with SIGKILL cannot stop its
/// script; `kill_on_drop` then takes care of the runner.
struct Running<'a> {
    child: Child,
    /// The script's process group as announced in `started` (0: none known,
    /// or sandboxed, where the id belongs to another PID namespace).
    pgid: &'a AtomicI32,
    finished: bool,
}

impl Running<'_> {
    /// SIGKILL to the script's group and the runner. Sandboxed, killing
    /// `bwrap` takes the whole PID namespace with it.
    fn kill(&mut self) {
        let pgid = self.pgid.load(Ordering::SeqCst);
        // Never 0 or 1: kill(0)/kill(-1) would hit the server or everything.
        if pgid > 1 {
            // SAFETY: plain syscall on a process group id.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.kill();
        }
    }
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
/// caller can use it (a local, unsandboxed runner).
pub(crate) async fn read_records<R: AsyncRead + Unpin>(
    stdout: R,
    output: &Sender<OutputLine>,
    pgid: Option<&AtomicI32>,
) -> StreamEnd {
    let mut reader = BufReader::with_capacity(MAX_CHUNK + 5, stdout);
    let mut payload = Vec::new();
    let mut end = StreamEnd::default();
    let mut stdout_lines = LineSplitter::new(Stream::Stdout);
    let mut stderr_lines = LineSplitter::new(Stream::Stderr);
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
                    "message" => end.messages.extend(event.message),
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
            Kind::Env | Kind::Cancel => {
                end.broken = Some(format!("unexpected {kind:?} record from the runner"));
                break;
            }
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

/// Cuts one stream's chunks into lines of at most [`MAX_LINE`] bytes.
struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineSplitter {
    fn new(stream: Stream) -> LineSplitter {
        LineSplitter {
            stream,
            pending: Vec::new(),
        }
    }

    async fn push(&mut self, mut data: &[u8], output: &Sender<OutputLine>) {
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
                self.send(output).await;
            }
        }
    }

    async fn finish(&mut self, output: &Sender<OutputLine>) {
        if !self.pending.is_empty() {
            self.send(output).await;
        }
    }

    async fn send(&mut self, output: &Sender<OutputLine>) {
        let line = OutputLine {
            stream: self.stream,
            data: std::mem::take(&mut self.pending),
        };
        // A receiver that went away loses the output, not the run: the
        // stream is still drained so the runner never blocks on it.
        let _ = output.send(line).await;
    }
}

/// The first [`STDERR_KEEP`] bytes of the runner's own stderr (its
/// diagnostics come first), draining the rest so it never blocks.
async fn keep_head(mut stderr: ChildStderr) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = STDERR_KEEP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).trim().to_string()
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
        let mut s = LineSplitter::new(Stream::Stdout);
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
    fn the_servers_own_settings_do_not_reach_the_runner() {
        let vars = [
            ("PATH", "/usr/bin"),
            ("CRONIUM_MASTER_KEY", "k"),
            ("CRONIUM_JOB_ID", "9"),
            ("CRONIUM_RUNNER_PYTHON", "/opt/python3"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept: Vec<_> = runner_base_env(vars.into_iter())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(kept, ["PATH", "CRONIUM_RUNNER_PYTHON"]);
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
