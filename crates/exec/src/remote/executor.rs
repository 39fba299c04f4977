//! Runs one payload on one server: connect (or reuse), make sure the right runner and the payload are on the host, run it framed, stream its output.
//!
//! Remote layout, under the server's cache directory (`.cache/cronium`
//! under the SSH user's home unless the server names another, relative to
//! the home or absolute; see [`CacheLayout`]):
//!
//! ```text
//! <cache>/runner/cronium-runner      the runner, replaced atomically
//! <cache>/payloads/<sha256>.tar.gz   payloads by checksum, newest kept
//! ```
//!
//! A warm job is one round trip: a short shell prelude checks that the
//! runner has the expected size and that the payload is there, then `exec`s
//! the runner. If either is missing it says so before any record, and the
//! executor deploys the runner or uploads the payload and starts again.
//! Every upload goes to a temporary name, is checked with `sha256sum` on the
//! host and only then renamed into place, so a cut upload is never run. The
//! runner's full checksum is verified once per connection. Secrets travel in
//! the runner's `Env` record on the channel, never on a command line or disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cronium_core::JobStatus;
use cronium_runner::protocol::Kind;
use cronium_ssh::{Exit, SshError, shell_quote};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

use super::RemoteServer;
use super::artifacts::{Artifact, RunnerArtifacts};
use super::pool::{Connection, Lease, Pool};
use crate::helpers::Relay;
use crate::records::{
    Outcome, RunnerExit, build_report, fmt_duration, frame, lease_record, lease_renewals,
    read_records, renewed,
};
use crate::{CANCEL_MARGIN, Execution, OutputLine, Phase, RunReport, RunRequest, WATCHDOG_MARGIN};

/// Where the runner sits inside the cache directory.
const RUNNER_IN_CACHE: &str = "runner/cronium-runner";
/// Payloads kept on a host; older ones are removed when a new one arrives.
const KEEP_PAYLOADS: usize = 32;
/// What the prelude prints (and exits with) when something must be uploaded first.
const NEED_RUNNER: &str = "cronium:need-runner";
const NEED_PAYLOAD: &str = "cronium:need-payload";
const NEED_EXIT: u32 = 97;
/// The first byte of a runner's stream: a Hello record.
const HELLO: u8 = Kind::Hello as u8;
/// Limits for the short commands around a run (probe, verify, rename).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// The paths of one server's cache on its host. Relative paths are
/// relative to the SSH user's home: every command starts with `cd`, and
/// SFTP starts there too.
///
/// The directory passed [`cronium_core::validate_cache_dir`] (when the
/// server was saved and again when its row was read), so it holds nothing
/// a shell would interpret; every command still quotes the paths it builds
/// from it, so that a path is one word whatever it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheLayout {
    dir: String,
}

impl Default for CacheLayout {
    fn default() -> CacheLayout {
        CacheLayout::new(cronium_core::DEFAULT_CACHE_DIR)
    }
}

impl CacheLayout {
    /// `dir` as a server's spec gives it (see
    /// [`cronium_core::ServerSpec::effective_cache_dir`]).
    pub fn new(dir: impl Into<String>) -> CacheLayout {
        CacheLayout { dir: dir.into() }
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The runner, as `server check` looks for it too.
    pub fn runner(&self) -> String {
        format!("{}/{RUNNER_IN_CACHE}", self.dir)
    }

    fn runner_dir(&self) -> String {
        format!("{}/runner", self.dir)
    }

    fn payloads(&self) -> String {
        format!("{}/payloads", self.dir)
    }

    fn payload(&self, sha256: &str) -> String {
        format!("{}/payloads/{sha256}.tar.gz", self.dir)
    }

    /// `path` (one of the above) as an absolute path on a host whose SSH
    /// user's home is `home`.
    fn on_host(&self, home: &str, path: String) -> String {
        if path.starts_with('/') {
            path
        } else {
            format!("{}/{path}", home.trim_end_matches('/'))
        }
    }
}

impl Phase {
    fn of_connect(error: &SshError) -> Phase {
        match error {
            SshError::HostKey { .. } | SshError::KnownHosts(_) => Phase::HostKey,
            SshError::Auth { .. } => Phase::Auth,
            _ => Phase::Connect,
        }
    }
}

impl Execution {
    /// The execution as the job's metadata lists it.
    pub fn to_json(&self, server: &RemoteServer) -> Value {
        let t = self.timings;
        json!({
            "server": server.name.as_str(),
            "serverId": server.id.0,
            "host": server.target.to_string(),
            "status": self.report.status.as_str(),
            "exitCode": self.report.exit_code,
            "error": self.report.error,
            "phase": self.phase.map(Phase::as_str),
            "runnerVersion": self.runner_version,
            "payloadPath": self.payload_path,
            "uploaded": {
                "runner": self.runner_uploaded,
                "payload": self.payload_uploaded,
                "bytes": self.bytes_uploaded,
            },
            "timingsMs": {
                "connect": t.connect, "deploy": t.deploy, "upload": t.upload,
                "run": t.run, "cleanup": t.cleanup,
            },
        })
    }
}

pub struct RemoteExecutor {
    pool: Pool,
    artifacts: RunnerArtifacts,
    kill_grace: Duration,
}

impl RemoteExecutor {
    pub fn new(pool: Pool, artifacts: RunnerArtifacts, kill_grace: Duration) -> RemoteExecutor {
        RemoteExecutor {
            pool,
            artifacts,
            kill_grace,
        }
    }

    /// Closes SSH connections no job has used for a while (see
    /// [`super::pool::IDLE_CLOSE`]); returns how many.
    pub async fn close_idle(&self, now: tokio::time::Instant) -> usize {
        self.pool.close_idle(now).await
    }

    /// Runs `request` on `server`, sending the script's output on `output`
    /// as it arrives (a slow receiver slows the script, nothing is dropped).
    pub async fn run(
        &self,
        server: &RemoteServer,
        request: &RunRequest,
        output: Sender<OutputLine>,
        cancel: CancellationToken,
    ) -> Execution {
        let lease = self.pool.lease(server).await;
        let began = Instant::now();
        let connection = match lease.connection(server, self.pool.timeouts()).await {
            Ok(connection) => connection,
            Err(e) => {
                let mut failed = Execution::failed(Phase::of_connect(&e), e.to_string());
                failed.timings.connect = ms(began.elapsed());
                return failed;
            }
        };
        let mut run = Run {
            server_name: server.name.as_str(),
            lease: &lease,
            connection: &connection,
            artifacts: &self.artifacts,
            cache: &server.cache,
            execution: Execution::failed(Phase::Run, "not run"),
        };
        run.execution.timings.connect = ms(began.elapsed());
        let report = run.go(request, output, cancel, self.kill_grace).await;
        let mut execution = run.execution;
        match report {
            Ok(report) => {
                execution.report = report;
                execution.phase = match execution.report.status {
                    JobStatus::Succeeded | JobStatus::Cancelled | JobStatus::TimedOut => None,
                    _ if execution.report.exit_code.is_some() => None,
                    _ => Some(Phase::Run),
                };
            }
            Err((phase, error)) => {
                execution.report = RunReport::failed(error);
                execution.phase = Some(phase);
            }
        }
        if connection.session.is_closed() {
            lease.discard(&connection).await;
        }
        execution
    }
}

/// What the prelude found missing.
enum Need {
    Runner,
    Payload,
}

/// One execution in progress.
struct Run<'a> {
    /// Who helper calls from this run come from.
    server_name: &'a str,
    lease: &'a Lease,
    connection: &'a Arc<Connection>,
    artifacts: &'a RunnerArtifacts,
    cache: &'a CacheLayout,
    execution: Execution,
}

type Failure = (Phase, String);

impl Run<'_> {
    async fn go(
        &mut self,
        request: &RunRequest,
        output: Sender<OutputLine>,
        cancel: CancellationToken,
        kill_grace: Duration,
    ) -> Result<RunReport, Failure> {
        let started = Instant::now();
        let mut runner = self.ensure_runner().await?;
        self.execution.timings.deploy += ms(started.elapsed());
        let home = self.connection.host().home.unwrap_or_default();
        let payload = self.cache.payload(&request.sha256);
        self.execution.payload_path = Some(self.cache.on_host(&home, payload));
        // At most: the runner changed under us, then the payload is missing.
        for _ in 0..3 {
            match self
                .start(request, &runner, &output, &cancel, kill_grace)
                .await?
            {
                Ok(report) => return Ok(report),
                Err(Need::Runner) => {
                    let started = Instant::now();
                    self.connection.update(|h| h.runner_sha256 = None);
                    runner = self.ensure_runner().await?;
                    self.execution.timings.deploy += ms(started.elapsed());
                }
                Err(Need::Payload) => {
                    let started = Instant::now();
                    self.upload_payload(request).await?;
                    self.execution.timings.upload += ms(started.elapsed());
                }
            }
        }
        Err((
            Phase::Run,
            "the runner or the payload disappeared from the host again right after upload".into(),
        ))
    }

    /// Makes sure the host has the runner for its architecture, verified
    /// through this connection, deploying it if not. Returns that runner.
    async fn ensure_runner(&mut self) -> Result<Arc<Artifact>, Failure> {
        let deploy_error = |e: String| (Phase::Deploy, e);
        if let Some(artifact) = self.verified_runner() {
            return Ok(artifact);
        }
        // One deploy per host at a time from this process; other processes
        // are kept apart by unique temporary names and atomic renames.
        let _deploying = self.lease.slot.deploy.lock().await;
        if let Some(artifact) = self.verified_runner() {
            return Ok(artifact);
        }
        let (dir, runner_dir, payloads, runner) = (
            shell_quote(self.cache.dir()),
            shell_quote(&self.cache.runner_dir()),
            shell_quote(&self.cache.payloads()),
            shell_quote(&self.cache.runner()),
        );
        // Stale temporary files are looked for only where uploads put
        // them, never deeper: the cache directory is the user's choice.
        let probe = format!(
            "cd && mkdir -p {dir} && chmod 700 {dir} && mkdir -p {runner_dir} {payloads} && \
             find {runner_dir} {payloads} -maxdepth 1 -name '.*.tmp' -mmin +60 -exec rm -f {{}} + 2>/dev/null; \
             echo \"$HOME\"; uname -m; sha256sum < {runner} 2>/dev/null || echo none"
        );
        let out = self.command(&probe).await.map_err(deploy_error)?;
        let mut lines = out.lines();
        let (Some(home), Some(arch), Some(current)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(deploy_error(format!(
                "the host probe printed {out:?}, not a home, an architecture and a checksum"
            )));
        };
        let artifact = self.artifacts.for_arch(arch.trim()).map_err(deploy_error)?;
        let current = current.split_whitespace().next().unwrap_or_default();
        if current != artifact.sha256 {
            let temp = format!(
                "{}/.cronium-runner.{}.tmp",
                self.cache.runner_dir(),
                random_suffix()
            );
            self.upload(
                &temp,
                &artifact.bytes,
                &artifact.sha256,
                &self.cache.runner(),
                "700",
                Phase::Deploy,
            )
            .await?;
            self.execution.runner_uploaded = true;
        }
        let (home, arch, sha) = (
            home.trim().to_string(),
            arch.trim().to_string(),
            artifact.sha256.clone(),
        );
        self.connection.update(|h| {
            h.home = Some(home);
            h.arch = Some(arch);
            h.runner_sha256 = Some(sha);
        });
        Ok(artifact)
    }

    fn verified_runner(&self) -> Option<Arc<Artifact>> {
        let host = self.connection.host();
        let artifact = self.artifacts.for_arch(host.arch.as_deref()?).ok()?;
        (host.runner_sha256.as_deref() == Some(artifact.sha256.as_str())).then_some(artifact)
    }

    async fn upload_payload(&mut self, request: &RunRequest) -> Result<(), Failure> {
        let upload_error = |e: String| (Phase::Upload, e);
        let _uploading = self.lease.slot.deploy.lock().await;
        let sha = &request.sha256;
        let path = self.cache.payload(sha);
        // Another job may have uploaded it while this one waited for the lock.
        let present = format!("cd && test -f {}", shell_quote(&path));
        if self.command(&present).await.is_ok() {
            return Ok(());
        }
        let bytes = tokio::fs::read(&request.payload).await.map_err(|e| {
            upload_error(format!(
                "cannot read the payload {}: {e}",
                request.payload.display()
            ))
        })?;
        let temp = format!("{}/.{sha}.{}.tmp", self.cache.payloads(), random_suffix());
        self.upload(&temp, &bytes, sha, &path, "600", Phase::Upload)
            .await?;
        self.execution.payload_uploaded = true;
        // The newest payloads stay; what a host no longer runs goes.
        let prune = format!(
            "cd && ls -1t {}/*.tar.gz 2>/dev/null | tail -n +{} | \
             while read -r f; do rm -f \"$f\"; done",
            shell_quote(&self.cache.payloads()),
            KEEP_PAYLOADS + 1
        );
        self.command(&prune).await.map_err(upload_error)?;
        Ok(())
    }

    /// Uploads `bytes` to `temp`, checks their SHA-256 on the host and
    /// renames them to `path`; a mismatch removes the temporary file.
    async fn upload(
        &mut self,
        temp: &str,
        bytes: &[u8],
        sha256: &str,
        path: &str,
        mode: &str,
        phase: Phase,
    ) -> Result<(), Failure> {
        let session = &self.connection.session;
        tokio::time::timeout(UPLOAD_TIMEOUT, session.upload(temp, bytes))
            .await
            .map_err(|_| {
                (
                    phase,
                    format!("upload of {temp} timed out after {UPLOAD_TIMEOUT:?}"),
                )
            })?
            .map_err(|e| (phase, e.to_string()))?;
        self.execution.bytes_uploaded += bytes.len() as u64;
        let (temp_q, path_q) = (shell_quote(temp), shell_quote(path));
        let verify = format!(
            "cd && set -- $(sha256sum < {temp_q}) && if [ \"$1\" = {sha256} ]; then \
             chmod {mode} {temp_q} && mv -f {temp_q} {path_q}; else rm -f {temp_q}; \
             echo \"checksum mismatch after upload: the host computed $1, expected {sha256}\"; exit 1; fi"
        );
        self.command(&verify).await.map_err(|e| (phase, e))?;
        Ok(())
    }

    /// Runs a short command, returning its stdout or a sentence on failure.
    async fn command(&self, script: &str) -> Result<String, String> {
        let command = format!("sh -c {}", shell_quote(script));
        let out = tokio::time::timeout(COMMAND_TIMEOUT, self.connection.session.exec(&command))
            .await
            .map_err(|_| format!("a command on the host timed out after {COMMAND_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        if out.success() {
            Ok(out.stdout_text())
        } else {
            Err(format!(
                "{} (exit status {:?}{})",
                out.stdout_text().trim(),
                out.exit_status,
                match out.stderr_text().trim() {
                    "" => String::new(),
                    e => format!(", stderr: {e}"),
                }
            ))
        }
    }

    /// Starts the runner (behind the prelude) and follows the run to its
    /// end. The inner `Err` is something the host lacks.
    async fn start(
        &mut self,
        request: &RunRequest,
        runner: &Artifact,
        output: &Sender<OutputLine>,
        cancel: &CancellationToken,
        kill_grace: Duration,
    ) -> Result<Result<RunReport, Need>, Failure> {
        let began = Instant::now();
        let run_error = |e: String| (Phase::Run, e);
        let sha = &request.sha256;
        let prelude = format!(
            "cd && R={runner_path} && P={payload} && \
             if [ ! -x \"$R\" ] || [ \"$(wc -c < \"$R\")\" -ne {size} ]; then echo {NEED_RUNNER}; exit {NEED_EXIT}; fi && \
             if [ ! -f \"$P\" ]; then echo {NEED_PAYLOAD}; exit {NEED_EXIT}; fi && \
             exec \"$R\" run \"$P\" --sha256 {sha} --timeout {timeout}ms --kill-grace {grace}ms \
             --output framed --env-from-stdin",
            runner_path = shell_quote(&self.cache.runner()),
            payload = shell_quote(&self.cache.payload(sha)),
            size = runner.bytes.len(),
            timeout = request.timeout.as_millis().max(1),
            grace = kill_grace.as_millis(),
        );
        let env = serde_json::to_vec(&request.env)
            .map_err(|e| run_error(format!("cannot encode the environment: {e}")))?;
        let mut process = self
            .connection
            .session
            .start(&format!("sh -c {}", shell_quote(&prelude)))
            .await
            .map_err(|e| run_error(e.to_string()))?;
        let mut control = process.stdin();
        // The runner reads the Env record before anything else; if the
        // prelude stops instead, the record dies with the channel.
        let _ = control.write_all(&frame(Kind::Env, &env)).await;
        let mut lease = lease_renewals(&request.lease);
        let _ = control.flush().await;

        let mut first = [0u8; 1];
        let n = process.stdout.read(&mut first).await.unwrap_or(0);
        if n == 1 && first[0] != HELLO {
            // The prelude saying what is missing, or noise from the remote
            // user's shell start-up, which would corrupt the record stream.
            let mut text = first.to_vec();
            let ended = tokio::time::timeout(
                Duration::from_secs(2),
                (&mut process.stdout).take(4096).read_to_end(&mut text),
            )
            .await
            .is_ok();
            if !ended {
                // A runner started after the noise takes this as a cancellation.
                process.close().await;
            }
            let exit = process.wait().await;
            let text = String::from_utf8_lossy(&text);
            return match (exit.status, text.trim()) {
                (Some(NEED_EXIT), NEED_RUNNER) => Ok(Err(Need::Runner)),
                (Some(NEED_EXIT), NEED_PAYLOAD) => Ok(Err(Need::Payload)),
                (_, text) => Err(run_error(format!(
                    "the host printed {:?} before the runner started; a start-up file of \
                     the SSH user's shell (such as ~/.bashrc) must print nothing when the \
                     shell is not interactive ({})",
                    text.chars().take(200).collect::<String>(),
                    describe(&exit, "")
                ))),
            };
        }
        if n == 0 {
            let exit = process.wait().await;
            return Err(run_error(if exit.connection_lost {
                "the connection was lost before the runner started".to_string()
            } else {
                format!("the runner did not start: {}", describe(&exit, ""))
            }));
        }

        let watchdog = request
            .timeout
            .saturating_add(kill_grace)
            .saturating_add(WATCHDOG_MARGIN);
        let deadline = tokio::time::sleep(watchdog);
        tokio::pin!(deadline);
        let mut cancel_sent = false;
        let mut forced = None;
        let end = {
            let stream = (&first[..]).chain(&mut process.stdout);
            let (mut relay, mut replies) =
                Relay::new(request.helpers.clone(), Some(self.server_name));
            let reading = read_records(stream, output, None, &mut relay, &request.secrets);
            tokio::pin!(reading);
            loop {
                tokio::select! {
                    end = &mut reading => break end,
                    Some(reply) = replies.recv() => {
                        let _ = control.write_all(&reply).await;
                        let _ = control.flush().await;
                    }
                    until = renewed(&mut lease) => {
                        let _ = control.write_all(&lease_record(until)).await;
                        let _ = control.flush().await;
                    }
                    () = cancel.cancelled(), if !cancel_sent => {
                        cancel_sent = true;
                        let _ = control.write_all(&frame(Kind::Cancel, &[])).await;
                        let _ = control.flush().await;
                        let give_up = tokio::time::Instant::now() + kill_grace + CANCEL_MARGIN;
                        if give_up < deadline.deadline() {
                            deadline.as_mut().reset(give_up);
                        }
                    }
                    () = &mut deadline => {
                        forced = Some(format!(
                            "the runner did not finish within {} {}; closed its channel",
                            fmt_duration(if cancel_sent { kill_grace + CANCEL_MARGIN } else { watchdog }),
                            if cancel_sent { "of the cancel request" } else { "of its start" },
                        ));
                        break Default::default();
                    }
                }
            }
        };
        self.execution.runner_version = end.runner_version.clone();
        self.execution.timings.run = ms(began.elapsed());
        let cleanup = Instant::now();
        if forced.is_some() {
            // Closing the channel closes the runner's stdin, which it takes
            // as a cancellation: it stops its script and cleans up.
            process.close().await;
        }
        let exit: Exit = tokio::time::timeout(CANCEL_MARGIN, process.wait())
            .await
            .unwrap_or_default();
        self.execution.timings.cleanup = ms(cleanup.elapsed());
        drop(control);
        if end.result.is_none() && exit.connection_lost {
            return Err(run_error(format!(
                "the connection to {} was lost while the job ran; the runner stops its \
                 script when its channel closes",
                self.connection.session.target().address()
            )));
        }
        Ok(Ok(build_report(Outcome {
            end,
            exit: Some(RunnerExit {
                code: exit.status.map(|s| s as i32),
                signal: None,
                description: describe(&exit, ""),
            }),
            diagnostics: exit.stderr.clone(),
            timeout: request.timeout,
            cancel_sent,
            forced,
            wall: began.elapsed(),
        })))
    }
}

fn describe(exit: &Exit, stdout: &str) -> String {
    let mut parts = Vec::new();
    match (&exit.status, &exit.signal) {
        (Some(code), _) => parts.push(format!("exit status {code}")),
        (None, Some(signal)) => parts.push(format!("killed by signal {signal}")),
        (None, None) => parts.push("no exit status".into()),
    }
    if !stdout.is_empty() {
        parts.push(format!("stdout: {stdout}"));
    }
    if !exit.stderr.is_empty() {
        parts.push(format!("stderr: {}", exit.stderr));
    }
    parts.join("; ")
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// A name part no other process on the host picks at the same time.
fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_paths_are_under_the_home_unless_absolute() {
        let sha = "ab".repeat(32);
        let default = CacheLayout::default();
        assert_eq!(default.runner(), ".cache/cronium/runner/cronium-runner");
        assert_eq!(
            default.on_host("/home/deploy", default.payload(&sha)),
            format!("/home/deploy/.cache/cronium/payloads/{sha}.tar.gz")
        );
        let relative = CacheLayout::new("opt-cronium/cache");
        assert_eq!(
            relative.on_host("/home/deploy/", relative.runner()),
            "/home/deploy/opt-cronium/cache/runner/cronium-runner"
        );
        let absolute = CacheLayout::new("/srv/cronium");
        assert_eq!(
            absolute.on_host("/home/deploy", absolute.payload(&sha)),
            format!("/srv/cronium/payloads/{sha}.tar.gz")
        );
        assert_eq!(absolute.runner(), "/srv/cronium/runner/cronium-runner");
    }
}
