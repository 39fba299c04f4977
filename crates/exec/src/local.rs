//! The local executor: runs one attempt of a job with the real `cronium-runner` (optionally under bubblewrap) and streams its output as lines.

use std::ffi::OsString;
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cronium_runner::protocol::Kind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use crate::helpers::Relay;
use crate::records::{
    Outcome, RunnerExit, build_report, fmt_duration, frame, lease_record, lease_renewals,
    read_records, renewed,
};
use crate::{CANCEL_MARGIN, OutputLine, RunReport, RunRequest, WATCHDOG_MARGIN};

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
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.work_dir)
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
        let mut lease = lease_renewals(&request.lease);

        let (mut relay, mut replies) = Relay::new(request.helpers.clone(), None);
        // Sandboxed, the announced pid belongs to another PID namespace.
        let reading = read_records(
            stdout,
            &output,
            self.bwrap.is_none().then_some(&pgid),
            &mut relay,
            &request.secrets,
        );
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
                Some(reply) = replies.recv() => {
                    // A runner that stopped reading is gone; its stream says so.
                    let _ = control.write_all(&reply).await;
                }
                until = renewed(&mut lease) => {
                    let _ = control.write_all(&lease_record(until)).await;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
