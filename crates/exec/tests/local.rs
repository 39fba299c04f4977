//! The local executor against the real `cronium-runner`, real bash/python3/node and real bubblewrap.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use cronium_core::JobStatus;
use cronium_exec::helpers::{HelperError, HelperOp, HelperOutcome};
use cronium_exec::testing::runner_binary;
use cronium_exec::{
    ExecutorConfig, ExecutorError, LocalExecutor, MAX_LINE, OutputLine, RunReport, RunRequest,
    Sandbox, Stream,
};
use cronium_payload::{EnvKey, Interpreter, PayloadSpec};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A scratch dir with the payloads and the executor's work dir. Under
/// /tmp on purpose: the sandbox hides the host's /tmp, and must still see
/// what the executor binds.
struct Scene {
    dir: TempDir,
    executor: LocalExecutor,
}

impl Scene {
    fn new() -> Scene {
        Scene::with(Sandbox::None, &[])
    }

    fn with(sandbox: Sandbox, runner_env: &[(&str, &str)]) -> Scene {
        Scene::try_with(sandbox, runner_env).unwrap_or_else(|e| panic!("executor: {e}"))
    }

    fn try_with(sandbox: Sandbox, runner_env: &[(&str, &str)]) -> Result<Scene, ExecutorError> {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let executor = LocalExecutor::new(ExecutorConfig {
            runner: runner_binary(),
            work_dir: dir.path().join("work"),
            sandbox,
            kill_grace: Duration::from_secs(1),
        })?
        .with_runner_env(runner_env.iter().copied());
        Ok(Scene { dir, executor })
    }

    /// The sandboxed scene. A machine without bubblewrap fails the test
    /// rather than skipping it: `scripts/test.sh` installs it.
    fn sandboxed(allow_network: bool) -> Scene {
        match Scene::try_with(Sandbox::Bubblewrap { allow_network }, &[]) {
            Ok(scene) => scene,
            Err(ExecutorError::BwrapMissing) => {
                panic!("bwrap is not installed: install bubblewrap (scripts/test.sh does)")
            }
            Err(e) => panic!("sandboxed executor: {e}"),
        }
    }

    /// Builds and writes a payload; returns the request for it.
    fn payload(&self, interpreter: Interpreter, script: &str) -> RunRequest {
        self.payload_with_env(interpreter, script, &[])
    }

    fn payload_with_env(
        &self,
        interpreter: Interpreter,
        script: &str,
        environment: &[(&str, &str)],
    ) -> RunRequest {
        let built = spec(interpreter, script, environment).build().unwrap();
        let path = self
            .dir
            .path()
            .join(format!("p-{}.tar.gz", built.digest.to_hex()));
        built.write(&path).unwrap();
        RunRequest {
            payload: path,
            sha256: built.digest.to_hex(),
            timeout: Duration::from_secs(30),
            env: BTreeMap::new(),
            helpers: None,
            secrets: Default::default(),
            lease: None,
        }
    }

    async fn run(&self, request: RunRequest) -> (RunReport, Vec<OutputLine>) {
        self.run_cancellable(request, CancellationToken::new())
            .await
    }

    async fn run_cancellable(
        &self,
        request: RunRequest,
        cancel: CancellationToken,
    ) -> (RunReport, Vec<OutputLine>) {
        let (tx, mut rx) = mpsc::channel(16);
        let collect = async {
            let mut lines = Vec::new();
            while let Some(line) = rx.recv().await {
                lines.push(line);
            }
            lines
        };
        let (report, lines) = tokio::join!(self.executor.run(request, tx, cancel), collect);
        (report, lines)
    }
}

fn spec(interpreter: Interpreter, script: &str, environment: &[(&str, &str)]) -> PayloadSpec {
    PayloadSpec {
        interpreter,
        script: script.as_bytes().to_vec(),
        environment: environment
            .iter()
            .map(|(k, v)| (EnvKey::new(k).unwrap(), v.to_string()))
            .collect(),
        event_id: "7".into(),
        event_version: 1,
        created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
    }
}

fn of(lines: &[OutputLine], stream: Stream) -> Vec<Vec<u8>> {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.data.clone())
        .collect()
}

fn text(lines: &[OutputLine], stream: Stream) -> String {
    String::from_utf8(of(lines, stream).concat()).unwrap()
}

/// Gone: no such process, or a zombie nobody has reaped yet (it runs no
/// more code). Killing is asynchronous, so this waits a little.
fn gone(pid: i32) -> bool {
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                return true;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

/// Pids whose command line mentions `marker` (any PID namespace: the host's
/// /proc sees them all).
fn processes_named(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) && !gone(pid) {
            found.push(pid);
        }
    }
    found
}

fn pids_in(lines: &[OutputLine], key: &str) -> i32 {
    text(lines, Stream::Stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= line in {lines:?}"))
}

#[tokio::test]
async fn output_arrives_as_byte_exact_lines_per_stream() {
    let scene = Scene::new();
    let script = r#"
printf 'one\n'
printf 'to stderr\n' >&2
printf 'two\n'
head -c 204800 /dev/zero | tr '\0' 'x'; printf '\n'
printf 'err tail without newline' >&2
printf 'tail without newline'
"#;

    let (report, lines) = scene.run(scene.payload(Interpreter::Bash, script)).await;

    assert_eq!(report.status, JobStatus::Succeeded, "{report:?}");
    assert_eq!(report.exit_code, Some(0));
    assert_eq!(report.error, None);
    let mut long = vec![b'x'; 204800];
    long.push(b'\n');
    let mut want: Vec<Vec<u8>> = vec![b"one\n".to_vec(), b"two\n".to_vec()];
    want.extend(long.chunks(MAX_LINE).map(<[u8]>::to_vec));
    want.push(b"tail without newline".to_vec());
    assert_eq!(of(&lines, Stream::Stdout), want);
    let sizes: Vec<usize> = want[2..6].iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        [65536, 65536, 65536, 8193],
        "a 200 KiB line in 64 KiB pieces"
    );
    assert_eq!(
        of(&lines, Stream::Stderr),
        [
            b"to stderr\n".to_vec(),
            b"err tail without newline".to_vec()
        ]
    );
}

#[tokio::test]
async fn binary_output_passes_unchanged() {
    let scene = Scene::new();
    let script = "import sys\nsys.stdout.buffer.write(bytes(range(256)) + b'\\xff\\xfe\\n\\x00')\n";

    let (report, lines) = scene.run(scene.payload(Interpreter::Python, script)).await;

    assert_eq!(report.status, JobStatus::Succeeded, "{report:?}");
    let all: Vec<u8> = (0..=255u8).chain([0xff, 0xfe, b'\n', 0]).collect();
    let newline = usize::from(b'\n');
    assert_eq!(
        of(&lines, Stream::Stdout),
        [
            all[..=newline].to_vec(),
            all[newline + 1..all.len() - 1].to_vec(),
            vec![0]
        ]
    );
}

#[tokio::test]
async fn a_line_arrives_while_the_script_still_runs() {
    let scene = Scene::new();
    let request = scene.payload(Interpreter::Bash, "echo first\nsleep 2\necho second\n");
    let (tx, mut rx) = mpsc::channel(16);

    let run = scene.executor.run(request, tx, CancellationToken::new());
    tokio::pin!(run);
    let first = tokio::select! {
        report = &mut run => panic!("the run ended before any line arrived: {report:?}"),
        line = rx.recv() => line.expect("a line"),
    };

    assert_eq!(first.data, b"first\n");
    let report = run.await;
    assert_eq!(report.status, JobStatus::Succeeded, "{report:?}");
    assert_eq!(rx.recv().await.map(|l| l.data), Some(b"second\n".to_vec()));
}

#[tokio::test]
async fn a_failing_exit_status_is_a_failure() {
    let scene = Scene::new();
    let script = "console.log('about to fail'); process.exit(3);\n";

    let (report, lines) = scene.run(scene.payload(Interpreter::Node, script)).await;

    assert_eq!(report.status, JobStatus::Failed);
    assert_eq!(report.exit_code, Some(3));
    assert_eq!(report.signal, None);
    assert_eq!(report.error.as_deref(), Some("exit status 3"));
    assert_eq!(text(&lines, Stream::Stdout), "about to fail\n");
}

#[tokio::test]
async fn a_script_exiting_127_itself_is_not_a_missing_interpreter() {
    let scene = Scene::new();

    let (report, _) = scene
        .run(scene.payload(Interpreter::Bash, "no-such-command-here\n"))
        .await;

    assert_eq!(report.status, JobStatus::Failed);
    assert_eq!(report.exit_code, Some(127));
    assert_eq!(report.error.as_deref(), Some("exit status 127"));
}

#[tokio::test]
async fn a_timeout_stops_the_script_and_its_background_children() {
    let scene = Scene::new();
    let mut request = scene.payload(Interpreter::Bash, "sleep 300 &\necho bg=$!\nsleep 300\n");
    request.timeout = Duration::from_secs(1);

    let (report, lines) = scene.run(request).await;

    assert_eq!(report.status, JobStatus::TimedOut, "{report:?}");
    assert_eq!(report.exit_code, Some(124));
    assert_eq!(report.error.as_deref(), Some("timed out after 1s"));
    let grandchild = pids_in(&lines, "bg");
    assert!(
        gone(grandchild),
        "the backgrounded sleep {grandchild} is still running"
    );
}

#[tokio::test]
async fn cancelling_stops_the_whole_process_group() {
    let scene = Scene::new();
    let request = scene.payload(
        Interpreter::Bash,
        "sleep 300 &\necho bg=$!\necho script=$$\nwait\n",
    );
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(16);

    let run = scene.executor.run(request, tx, cancel.clone());
    let watch = async {
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            let is_script_line = line.data.starts_with(b"script=");
            lines.push(line);
            if is_script_line {
                cancel.cancel();
            }
        }
        lines
    };
    let (report, lines) = tokio::join!(run, watch);

    assert_eq!(report.status, JobStatus::Cancelled, "{report:?}");
    assert_eq!(report.error.as_deref(), Some("cancelled"));
    for key in ["bg", "script"] {
        let pid = pids_in(&lines, key);
        assert!(gone(pid), "{key} process {pid} is still running");
    }
}

#[tokio::test]
async fn a_tampered_payload_is_refused_and_never_runs() {
    let scene = Scene::new();
    let marker = scene.dir.path().join("ran");
    let request = scene.payload(Interpreter::Bash, "echo original\n");
    // Same path, other bytes: a well-formed payload that would leave a mark.
    let other = spec(
        Interpreter::Bash,
        &format!("touch {}\necho tampered\n", marker.display()),
        &[],
    );
    std::fs::write(&request.payload, other.build().unwrap().bytes).unwrap();

    let (report, lines) = scene.run(request).await;

    assert_eq!(report.status, JobStatus::Failed);
    assert_eq!(report.exit_code, Some(125));
    let error = report.error.unwrap();
    assert!(error.starts_with("payload rejected: "), "{error}");
    assert!(error.contains("checksum"), "{error}");
    assert!(lines.is_empty(), "{lines:?}");
    assert!(!marker.exists(), "the tampered script ran");
}

#[tokio::test]
async fn a_missing_interpreter_is_exit_127_with_a_clear_error() {
    let scene = Scene::with(
        Sandbox::None,
        &[("CRONIUM_RUNNER_BASH", "/nonexistent/bash")],
    );

    let (report, lines) = scene
        .run(scene.payload(Interpreter::Bash, "echo unreachable\n"))
        .await;

    assert_eq!(report.status, JobStatus::Failed);
    assert_eq!(report.exit_code, Some(127));
    let error = report.error.unwrap();
    assert!(error.starts_with("interpreter not found: "), "{error}");
    assert!(error.contains("/nonexistent/bash"), "{error}");
    assert!(lines.is_empty(), "{lines:?}");
}

#[tokio::test]
async fn secrets_reach_the_script_but_not_the_runners_command_line_or_environment() {
    let scene = Scene::new();
    let release = scene.dir.path().join("release");
    let script = r#"
echo "runner=$PPID"
echo "token=$API_TOKEN job=$CRONIUM_JOB_ID execution=$CRONIUM_EXECUTION_ID"
while [ ! -e "$RELEASE" ]; do sleep 0.05; done
"#;
    let mut request = scene.payload_with_env(
        Interpreter::Bash,
        script,
        &[("RELEASE", release.to_str().unwrap())],
    );
    let secret = "s3cr3t-value-9f2c";
    request.env = [
        ("API_TOKEN", secret),
        ("CRONIUM_JOB_ID", "41"),
        ("CRONIUM_EXECUTION_ID", "41-2"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    let (tx, mut rx) = mpsc::channel(16);

    let run = scene.executor.run(request, tx, CancellationToken::new());
    let inspect = async {
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            let done = line.data.starts_with(b"token=");
            lines.push(line);
            if done {
                break;
            }
        }
        // The script waits for us: the runner is alive while we look at it.
        let runner = pids_in(&lines, "runner");
        let cmdline = std::fs::read(format!("/proc/{runner}/cmdline")).unwrap();
        let environ = std::fs::read(format!("/proc/{runner}/environ")).unwrap();
        std::fs::write(&release, "").unwrap();
        while let Some(line) = rx.recv().await {
            lines.push(line);
        }
        (lines, cmdline, environ)
    };
    let (report, (lines, cmdline, environ)) = tokio::join!(run, inspect);

    assert_eq!(report.status, JobStatus::Succeeded, "{report:?}");
    assert_eq!(
        text(&lines, Stream::Stdout).lines().nth(1),
        Some(format!("token={secret} job=41 execution=41-2").as_str())
    );
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(
        cmdline.contains("cronium-runner"),
        "not the runner: {cmdline:?}"
    );
    assert!(cmdline.contains("--env-from-stdin"), "{cmdline:?}");
    let environ = String::from_utf8_lossy(&environ);
    for leak in [secret, "CRONIUM_JOB_ID", "CRONIUM_EXECUTION_ID"] {
        assert!(
            !cmdline.contains(leak),
            "{leak} on the command line: {cmdline:?}"
        );
        assert!(
            !environ.contains(leak),
            "{leak} in the environment: {environ:?}"
        );
    }
}

#[tokio::test]
async fn a_runner_that_dies_is_a_failure_and_its_script_is_killed() {
    let scene = Scene::new();
    let request = scene.payload(
        Interpreter::Bash,
        "echo runner=$PPID\necho script=$$\nsleep 300\n",
    );
    let (tx, mut rx) = mpsc::channel(16);

    let run = scene.executor.run(request, tx, CancellationToken::new());
    let kill_runner = async {
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            let is_script_line = line.data.starts_with(b"script=");
            lines.push(line);
            if is_script_line {
                let runner = pids_in(&lines, "runner");
                // SAFETY: plain syscall; the runner is our own child.
                unsafe { libc::kill(runner, libc::SIGKILL) };
            }
        }
        lines
    };
    let (report, lines) = tokio::join!(run, kill_runner);

    assert_eq!(report.status, JobStatus::Failed);
    assert_eq!(report.exit_code, None);
    assert_eq!(report.signal, Some(libc::SIGKILL));
    let error = report.error.unwrap();
    assert!(
        error.starts_with("runner died without a result: "),
        "{error}"
    );
    assert!(error.contains("signal 9"), "{error}");
    let script = pids_in(&lines, "script");
    assert!(
        gone(script),
        "the orphaned script {script} is still running"
    );
    let left: Vec<_> = std::fs::read_dir(scene.dir.path().join("work"))
        .unwrap()
        .collect();
    assert!(
        left.is_empty(),
        "the dead runner's files stay behind: {left:?}"
    );
}

#[test]
fn a_missing_runner_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-runner");

    let err = LocalExecutor::new(ExecutorConfig {
        runner: missing.clone(),
        work_dir: dir.path().join("work"),
        sandbox: Sandbox::None,
        kill_grace: Duration::from_secs(1),
    })
    .unwrap_err();

    assert!(
        matches!(err, ExecutorError::RunnerMissing { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("cargo build -p cronium-runner"),
        "{message}"
    );
}

#[test]
fn the_work_dir_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("a/b/work");

    LocalExecutor::new(ExecutorConfig {
        runner: runner_binary(),
        work_dir: work.clone(),
        sandbox: Sandbox::None,
        kill_grace: Duration::from_secs(1),
    })
    .unwrap();

    let mode = std::fs::metadata(&work).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn sandboxed_scripts_cannot_write_the_system_but_can_write_their_work_dir() {
    // A probe that got through removes itself: a failing test must not litter the host.
    let probe = r#"
for dir in /usr /etc; do
    if touch "$dir/cronium-sandbox-probe" 2>/dev/null; then echo "$dir writable"; rm "$dir/cronium-sandbox-probe"; else echo "$dir read-only"; fi
done
"#;
    // The probe only means something where it can write without the
    // sandbox (as root, which the suite runs as): show that first.
    let plain = Scene::new();
    let (report, lines) = plain.run(plain.payload(Interpreter::Bash, probe)).await;
    assert_eq!(report.status, JobStatus::Succeeded, "{report:?}");
    assert_eq!(
        text(&lines, Stream::Stdout),
        "/usr writable\n/etc writable\n",
        "without the sandbox the probe must be able to write (run the suite as root)"
    );

    let scene = Scene::sandboxed(false);
    let script = format!(
        "mount -o remount,bind,rw / 2>/dev/null && echo \"remounted /\"\n{probe}\
         echo data > \"$CRONIUM_WORK_DIR/scratch\" && echo \"work dir writable\"\n"
    );

    let (report, lines) = scene.run(scene.payload(Interpreter::Bash, &script)).await;

    assert_eq!(report.status, JobStatus::Succeeded, "{report:?}");
    assert_eq!(
        text(&lines, Stream::Stdout),
        "/usr read-only\n/etc read-only\nwork dir writable\n"
    );
}

#[tokio::test]
async fn sandboxed_scripts_get_a_private_tmp() {
    let scene = Scene::sandboxed(false);
    let host_file = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    let script = format!(
        "if [ -e {0} ]; then echo visible; else echo hidden; fi\necho x > /tmp/own && cat /tmp/own\n",
        host_file.path().display()
    );

    let (report, lines) = scene.run(scene.payload(Interpreter::Bash, &script)).await;

    assert_eq!(report.status, JobStatus::Succeeded, "{report:?}");
    assert_eq!(text(&lines, Stream::Stdout), "hidden\nx\n");
}

/// Connects to a listener the test holds open on the host's loopback.
fn connect_script(listener: &TcpListener) -> String {
    let port = listener.local_addr().unwrap().port();
    format!("if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo connected; else echo no network; fi\n")
}

#[tokio::test]
async fn sandboxed_scripts_have_no_network_by_default() {
    let scene = Scene::sandboxed(false);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();

    let (report, lines) = scene
        .run(scene.payload(Interpreter::Bash, &connect_script(&listener)))
        .await;

    assert_eq!(report.status, JobStatus::Succeeded, "{report:?}");
    assert_eq!(text(&lines, Stream::Stdout), "no network\n");
}

#[tokio::test]
async fn sandboxed_scripts_reach_the_network_when_allowed() {
    let scene = Scene::sandboxed(true);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();

    let (report, lines) = scene
        .run(scene.payload(Interpreter::Bash, &connect_script(&listener)))
        .await;

    assert_eq!(report.status, JobStatus::Succeeded, "{report:?}");
    assert_eq!(text(&lines, Stream::Stdout), "connected\n");
}

#[tokio::test]
async fn a_sandboxed_timeout_leaves_nothing_running() {
    let scene = Scene::sandboxed(false);
    let marker = format!("cronium-sandbox-sleeper-{}", std::process::id());
    let script = format!("(exec -a {marker} sleep 300) &\necho started\nsleep 300\n");
    let mut request = scene.payload(Interpreter::Bash, &script);
    request.timeout = Duration::from_secs(1);

    let (report, lines) = scene.run(request).await;

    assert_eq!(report.status, JobStatus::TimedOut, "{report:?}");
    assert_eq!(text(&lines, Stream::Stdout), "started\n");
    assert_eq!(processes_named(&marker), Vec::<i32>::new());
}

#[tokio::test]
async fn hidden_dirs_are_empty_in_the_sandbox_except_for_the_runs_own_files() {
    let scene = Scene::sandboxed(false);
    // The scene's dir plays the server's data dir: a key beside the
    // payloads and the work dir.
    let data = scene.dir.path().to_path_buf();
    std::fs::write(data.join("master.key"), "do not read").unwrap();
    let scene = Scene {
        executor: scene.executor.hide_in_sandbox([&data]),
        ..scene
    };
    let script = format!(
        "ls -A {0}\ncat {0}/master.key 2>/dev/null || echo no key\ntouch {0}/planted 2>/dev/null || echo read-only\n",
        data.display()
    );
    let request = scene.payload(Interpreter::Bash, &script);
    let payload_name = request
        .payload
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    let (report, lines) = scene.run(request).await;

    assert_eq!(report.status, JobStatus::Succeeded, "{report:?}");
    // Only what the run needs shows: its payload and the way to its run directory.
    assert_eq!(
        text(&lines, Stream::Stdout),
        format!("{payload_name}\nwork\nno key\nread-only\n")
    );
    assert!(!data.join("planted").exists());
}

/// An in-memory helper service: variables in a map, every call recorded.
#[derive(Default)]
struct MapHelpers {
    vars: std::sync::Mutex<BTreeMap<String, serde_json::Value>>,
    calls: std::sync::Mutex<Vec<String>>,
}

impl cronium_exec::HelperHandler for MapHelpers {
    fn call<'a>(&'a self, server: Option<&'a str>, op: HelperOp) -> cronium_exec::HelperFuture<'a> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(format!("{op:?}"));
            let mut vars = self.vars.lock().unwrap();
            match op {
                HelperOp::VarSet { key, value, .. } => {
                    vars.insert(key, value);
                    HelperOutcome::Ok(serde_json::Value::Null)
                }
                HelperOp::VarGet { key } => match vars.get(&key) {
                    Some(v) => HelperOutcome::Ok(v.clone()),
                    None => HelperOutcome::err(HelperError::NotFound, format!("no variable {key}")),
                },
                HelperOp::Context => HelperOutcome::Ok(serde_json::json!({ "server": server })),
                _ => HelperOutcome::err(HelperError::Invalid, "not in this test"),
            }
        })
    }
}

#[tokio::test]
async fn helper_calls_reach_the_attempts_handler_and_its_answers_reach_the_script() {
    let scene = Scene::new();
    let mut request = scene.payload(
        Interpreter::Bash,
        "cronium var set n '{\"a\": [1, 2]}'\ncronium var get n\ncronium var get missing; echo \"status=$?\"\ncronium context\n",
    );
    let helpers = std::sync::Arc::new(MapHelpers::default());
    request.helpers = Some(cronium_exec::Helpers::new(helpers.clone()));
    let (report, lines) = scene.run(request).await;
    assert_eq!(report.status, JobStatus::Succeeded, "{report:?}");
    assert_eq!(
        text(&lines, Stream::Stdout),
        "{\"a\":[1,2]}\nstatus=1\n{\"server\":null}\n"
    );
    assert!(text(&lines, Stream::Stderr).contains("no variable missing"));
    assert_eq!(helpers.calls.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn without_a_handler_every_call_is_unavailable_and_the_run_goes_on() {
    let scene = Scene::new();
    let request = scene.payload(Interpreter::Bash, "cronium var get k; echo \"status=$?\"\n");
    let (report, lines) = scene.run(request).await;
    assert_eq!(report.status, JobStatus::Succeeded, "{report:?}");
    assert_eq!(text(&lines, Stream::Stdout), "status=6\n");
    assert!(
        text(&lines, Stream::Stderr).contains("no helper service"),
        "{}",
        text(&lines, Stream::Stderr)
    );
}

#[tokio::test]
async fn a_runner_speaking_an_older_protocol_is_refused() {
    // A stand-in for a runner from before helper calls: a protocol-1
    // Hello, then a successful Result.
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old-runner");
    std::fs::write(
        &old,
        "#!/usr/bin/python3\nimport json, struct, sys\n\
         def frame(kind, body):\n    sys.stdout.buffer.write(struct.pack('>BI', kind, len(body)) + body)\n\
         frame(1, json.dumps({'protocol': 1, 'runnerVersion': '0.0.9'}).encode())\n\
         frame(5, json.dumps({'exitCode': 0, 'signal': None, 'timedOut': False, 'cancelled': False, 'durationMs': 1}).encode())\n",
    )
    .unwrap();
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let executor = LocalExecutor::new(ExecutorConfig {
        runner: old,
        work_dir: dir.path().join("work"),
        sandbox: Sandbox::None,
        kill_grace: Duration::from_secs(1),
    })
    .unwrap();
    let scene = Scene::new();
    let request = scene.payload(Interpreter::Bash, "true\n");
    let (tx, _rx) = mpsc::channel(16);
    let report = executor.run(request, tx, CancellationToken::new()).await;
    assert_eq!(report.status, JobStatus::Failed, "{report:?}");
    let error = report.error.unwrap();
    assert!(
        error.contains("the runner speaks protocol 1 (runner 0.0.9), this server 3"),
        "{error}"
    );
}

#[tokio::test]
async fn a_lease_no_longer_renewed_stops_the_script_though_the_executor_lives_on() {
    // The worker renews the attempt's lease while it holds the job in the
    // database; once it cannot (paused, cut off), the script must stop on
    // its own, without a cancel and with the control channel still open.
    let scene = Scene::new();
    let mut request = scene.payload(
        Interpreter::Bash,
        "sleep 300 &\necho bg=$!\necho script=$$\nwait\n",
    );
    let now = tokio::time::Instant::now;
    let (renew, lease) = tokio::sync::watch::channel(now() + Duration::from_millis(500));
    request.lease = Some(lease);
    let (tx, mut rx) = mpsc::channel(16);
    let run = scene.executor.run(request, tx, CancellationToken::new());
    let renewing = async {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            renew.send_replace(now() + Duration::from_millis(500));
        }
        // Renewals stop here; the sender lives on, like a paused worker.
        now()
    };
    let watch = async {
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            lines.push(line);
        }
        lines
    };
    let (report, last_renewal, lines) = tokio::join!(run, renewing, watch);
    let stopped_after = now() - last_renewal;

    assert_eq!(report.status, JobStatus::Cancelled, "{report:?}");
    assert!(
        report
            .error
            .as_deref()
            .is_some_and(|e| e.contains("stopped renewing the job's lease")),
        "{report:?}"
    );
    // Renewals kept it running for a second; their end stopped it within
    // the lease's 0.5 s plus the runner's 1 s grace (and start-up slack).
    assert!(stopped_after < Duration::from_secs(5), "{stopped_after:?}");
    for key in ["bg", "script"] {
        let pid = pids_in(&lines, key);
        assert!(gone(pid), "{key} process {pid} is still running");
    }
    drop(renew);
}
