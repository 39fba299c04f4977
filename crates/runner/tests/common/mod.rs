//! Shared helpers for the runner's integration tests: payload fixtures, the real binary, framed decoding, process checks.

// Each test file is its own crate and uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use cronium_payload::{
    BuiltPayload, EnvKey, Interpreter, PayloadSpec, Sha256Digest, checksum_path,
};
use cronium_runner::protocol::{self, Hello, Kind, PROTOCOL_VERSION, RunResult};
use serde_json::Value;
use tempfile::TempDir;

/// The binary under test.
pub const RUNNER: &str = env!("CARGO_BIN_EXE_cronium-runner");

/// Metadata every built payload carries.
pub const EVENT_ID: &str = "evt-42";
pub const EVENT_VERSION: u64 = 3;

/// How long any runner invocation may take before the test calls it hung.
/// Only a safety net: no test relies on it for its verdict.
const HANG: Duration = Duration::from_secs(60);

/// Variables from the developer's or CI's environment that would change what
/// the runner does; every command starts without them.
const AMBIENT: [&str; 9] = [
    "CRONIUM_RUNNER_BASH",
    "CRONIUM_RUNNER_PYTHON",
    "CRONIUM_RUNNER_NODE",
    "CRONIUM_EVENT_ID",
    "CRONIUM_EVENT_VERSION",
    "CRONIUM_JOB_ID",
    "CRONIUM_EXECUTION_ID",
    "CRONIUM_WORK_DIR",
    "PYTHONUNBUFFERED",
];

/// `cronium-runner` with a clean environment and no stdin.
pub fn runner(args: &[&str]) -> Command {
    let mut cmd = Command::new(RUNNER);
    cmd.args(args).stdin(Stdio::null());
    for var in AMBIENT {
        cmd.env_remove(var);
    }
    cmd
}

/// The three interpreters, each with a way to say things in its own language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Bash,
    Python,
    Node,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::Bash, Lang::Python, Lang::Node];

    pub fn interpreter(self) -> Interpreter {
        match self {
            Lang::Bash => Interpreter::Bash,
            Lang::Python => Interpreter::Python,
            Lang::Node => Interpreter::Node,
        }
    }
}

/// The spec of a payload for `script`, with fixed metadata.
pub fn spec(interpreter: Interpreter, script: &str, env: &[(&str, &str)]) -> PayloadSpec {
    PayloadSpec {
        interpreter,
        script: script.as_bytes().to_vec(),
        environment: env
            .iter()
            .map(|(k, v)| (EnvKey::new(k).expect("valid name"), v.to_string()))
            .collect(),
        event_id: EVENT_ID.into(),
        event_version: EVENT_VERSION,
        created_at: "2025-01-15T10:00:00Z".parse().expect("valid time"),
    }
}

/// A private directory holding one payload (`payload.tar.gz` and its
/// `.sha256`), the parent for the runner's work dirs (`work/`, passed as
/// `--workdir`) and whatever files a test wants its script to touch.
pub struct Fixture {
    _dir: TempDir,
    root: PathBuf,
    pub payload: PathBuf,
    pub work: PathBuf,
}

impl Fixture {
    /// A fixture with no payload written yet.
    pub fn empty() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        // Canonical, so paths the scripts report (cwd) compare equal.
        let root = dir.path().canonicalize().expect("canonical temp dir");
        Fixture {
            payload: root.join("payload.tar.gz"),
            work: root.join("work"),
            root,
            _dir: dir,
        }
    }

    /// A fixture with a payload built by `PayloadSpec::build` for `script`.
    pub fn new(lang: Lang, script: &str) -> Fixture {
        Fixture::with_env(lang, script, &[])
    }

    pub fn with_env(lang: Lang, script: &str, env: &[(&str, &str)]) -> Fixture {
        let fixture = Fixture::empty();
        fixture.write_built(&spec(lang.interpreter(), script, env).build().unwrap());
        fixture
    }

    /// Writes a built payload and its checksum file.
    pub fn write_built(&self, built: &BuiltPayload) {
        built.write(&self.payload).expect("write payload");
    }

    /// Writes arbitrary archive bytes with a *correct* checksum file, so that
    /// only the runner's own inspection of the archive can refuse them.
    pub fn write_raw(&self, bytes: &[u8]) -> Sha256Digest {
        fs::write(&self.payload, bytes).expect("write payload");
        let digest = Sha256Digest::of(bytes);
        fs::write(
            checksum_path(&self.payload),
            digest.checksum_line("payload.tar.gz"),
        )
        .expect("write checksum");
        digest
    }

    /// A path inside the fixture, for markers and pid files.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `cronium-runner run <payload> --workdir <work> <args>`, with `MARKER`
    /// and `PID_FILE` in its environment pointing into the fixture.
    pub fn run(&self, args: &[&str]) -> Command {
        let mut cmd = runner(&["run"]);
        cmd.arg(&self.payload)
            .arg("--workdir")
            .arg(&self.work)
            .args(args)
            .env("MARKER", self.file("marker"))
            .env("PID_FILE", self.file("pids"));
        cmd
    }

    /// Whether the script left its marker (see [`Fixture::run`]).
    pub fn marker_exists(&self) -> bool {
        self.file("marker").exists()
    }

    /// Everything left in the `--workdir` parent (nothing, normally).
    pub fn leftovers(&self) -> Vec<String> {
        match fs::read_dir(&self.work) {
            Ok(entries) => entries
                .map(|e| {
                    e.expect("dir entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("cannot list {}: {e}", self.work.display()),
        }
    }
}

/// How a finished runner ended, with everything it wrote.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Ran {
    /// The runner's exit code; a runner killed by a signal is a test failure.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| {
            panic!(
                "runner died of {:?}; stderr: {}",
                self.status,
                self.stderr_text()
            )
        })
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn framed(&self) -> Framed {
        Framed::decode(&self.stdout)
    }
}

/// Runs a command to the end, capturing its output.
pub fn run(cmd: Command) -> Ran {
    spawn(cmd).finish()
}

/// A runner process being watched. Its stdin is a pipe that stays open until
/// it exits (in framed mode, closing it means "cancel"). Dropped while still
/// running (a failed test), it is killed.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    waited: bool,
}

pub fn spawn(mut cmd: Command) -> Running {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cronium-runner");
    Running {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        child,
        waited: false,
    }
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` to the runner itself (not to its script).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with our own child's pid; it has not been waited for, so the pid is still ours.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill runner");
    }

    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("stdin still open")
    }

    /// Takes the runner's stdin, to write to it from elsewhere; dropping it closes it.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin still open")
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Takes the runner's stdout, to read it while it runs.
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.stdout.take().expect("stdout not taken yet")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for the runner to exit (reading whatever output was not taken)
    /// and closes its stdin only then.
    pub fn finish(mut self) -> Ran {
        let stdout = self.stdout.take().map(drain);
        let stderr = drain(self.child.stderr.take().expect("stderr piped"));
        let give_up = Instant::now() + HANG;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < give_up,
                "cronium-runner still running after {HANG:?}"
            );
            thread::sleep(Duration::from_millis(5));
        };
        self.waited = true;
        self.stdin = None;
        Ran {
            status,
            stdout: stdout
                .map(|h| h.join().expect("stdout reader"))
                .unwrap_or_default(),
            stderr: stderr.join().expect("stderr reader"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.waited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        from.read_to_end(&mut buf).expect("read runner output");
        buf
    })
}

/// A framed-mode stdout, decoded and checked for shape: `Hello` first,
/// `Result` last, each exactly once.
#[derive(Debug)]
pub struct Framed {
    pub records: Vec<(Kind, Vec<u8>)>,
}

impl Framed {
    pub fn decode(mut bytes: &[u8]) -> Framed {
        let mut records = Vec::new();
        while let Some(record) =
            protocol::read_frame(&mut bytes).unwrap_or_else(|e| panic!("after {records:?}: {e}"))
        {
            records.push(record);
        }
        let kinds: Vec<Kind> = records.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds.first(), Some(&Kind::Hello), "first record: {kinds:?}");
        assert_eq!(kinds.last(), Some(&Kind::Result), "last record: {kinds:?}");
        assert_eq!(
            kinds.iter().filter(|k| **k == Kind::Hello).count(),
            1,
            "{kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|k| **k == Kind::Result).count(),
            1,
            "{kinds:?}"
        );
        let hello: Hello = serde_json::from_slice(&records[0].1).expect("Hello is JSON");
        assert_eq!(hello.protocol, PROTOCOL_VERSION);
        assert_eq!(hello.runner_version, env!("CARGO_PKG_VERSION"));
        Framed { records }
    }

    pub fn result(&self) -> RunResult {
        let (_, json) = self.records.last().expect("decode checked it");
        serde_json::from_slice(json).expect("Result is JSON")
    }

    /// All `Stdout` records, concatenated.
    pub fn stdout(&self) -> Vec<u8> {
        self.concat(Kind::Stdout)
    }

    /// All `Stderr` records, concatenated.
    pub fn stderr(&self) -> Vec<u8> {
        self.concat(Kind::Stderr)
    }

    fn concat(&self, kind: Kind) -> Vec<u8> {
        self.records
            .iter()
            .filter(|(k, _)| *k == kind)
            .flat_map(|(_, data)| data.iter().copied())
            .collect()
    }

    pub fn events(&self) -> Vec<Value> {
        self.records
            .iter()
            .filter(|(k, _)| *k == Kind::Event)
            .map(|(_, json)| serde_json::from_slice(json).expect("Event is JSON"))
            .collect()
    }

    /// The `event` field of each event, in order.
    pub fn event_names(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["event"].as_str().expect("event has a name").to_string())
            .collect()
    }

    /// The `message` events' texts, joined by newlines.
    pub fn messages(&self) -> String {
        self.events()
            .iter()
            .filter(|e| e["event"] == "message")
            .map(|e| e["message"].as_str().expect("message text").to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Asserts two byte strings are equal, reporting lengths and the first
/// difference instead of dumping megabytes of binary.
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let at = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    let around = |b: &[u8]| b[at.saturating_sub(8)..(at + 8).min(b.len())].to_vec();
    panic!(
        "{what}: {} bytes, expected {}; first difference at byte {at}: {:?} vs expected {:?}",
        actual.len(),
        expected.len(),
        around(actual),
        around(expected)
    );
}

/// Waits until a script has published `path` (written to a temporary name
/// and renamed, so it is complete once it exists) and returns its content.
pub fn wait_for_file(path: &Path) -> String {
    let give_up = Instant::now() + HANG;
    loop {
        if let Ok(text) = fs::read_to_string(path) {
            return text;
        }
        assert!(
            Instant::now() < give_up,
            "{} never appeared",
            path.display()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Bash lines that start a grandchild `sleep 300` in the background and
/// publish "<script pid> <grandchild pid>" to `$PID_FILE`.
pub const BASH_SPAWN_GRANDCHILD: &str = r#"sleep 300 &
echo "$$ $!" > "$PID_FILE.tmp" && mv "$PID_FILE.tmp" "$PID_FILE"
"#;

/// A process a script started, which must be gone after the run. If it is
/// not (the test fails), dropping the guard kills it so nothing leaks.
pub struct Descendant {
    pub pid: i32,
    /// Its command name (`/proc/<pid>/comm`), to tell it from a later process that reuses the pid.
    pub comm: String,
}

impl Descendant {
    /// Reads "<script pid> <grandchild pid>" as written by [`BASH_SPAWN_GRANDCHILD`].
    pub fn script_and_grandchild(pid_file: &Path) -> (Descendant, Descendant) {
        let text = wait_for_file(pid_file);
        let pids: Vec<i32> = text
            .split_whitespace()
            .map(|p| p.parse().expect("pid"))
            .collect();
        let [script, grandchild] = pids[..] else {
            panic!("pid file: {text:?}")
        };
        let script = Descendant {
            pid: script,
            comm: "bash".into(),
        };
        let grandchild = Descendant {
            pid: grandchild,
            comm: "sleep".into(),
        };
        assert!(script.is_alive(), "the script runs");
        // `$!` is written once bash has forked the background child, which
        // may not have exec'd `sleep` yet (seen on a loaded machine): its
        // command name is still bash's for that moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !grandchild.is_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(grandchild.is_alive(), "the grandchild runs");
        (script, grandchild)
    }

    /// Alive: the pid exists, is not a zombie and still runs the same program.
    pub fn is_alive(&self) -> bool {
        let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        // "<pid> (<comm>) <state> ..."; comm may contain spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            return false;
        };
        let comm = &stat[open + 1..close];
        let state = stat[close + 1..].trim_start().chars().next();
        comm == self.comm && !matches!(state, Some('Z' | 'X') | None)
    }

    /// Asserts the process is gone, allowing up to two seconds for it to be reaped.
    pub fn assert_gone(&self, what: &str) {
        let give_up = Instant::now() + Duration::from_secs(2);
        while self.is_alive() {
            assert!(
                Instant::now() < give_up,
                "{what} (pid {}, {}) survived the run",
                self.pid,
                self.comm
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Descendant {
    fn drop(&mut self) {
        if self.is_alive() {
            // SAFETY: kill with a pid we just saw running our own program.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}
