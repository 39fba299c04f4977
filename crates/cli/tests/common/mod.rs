//! Shared by the end-to-end tests: a real `cronium serve` process and a way
//! to run the real `cronium` binary against it.
#![allow(dead_code)] // each test file uses a different part

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const CRONIUM: &str = env!("CARGO_BIN_EXE_cronium");

/// Where a server on `data` logs: beside the data dir, which may not exist yet.
fn log_path(data: &Path) -> PathBuf {
    data.with_extension("log")
}

/// The server's standard error, appended to its log file.
fn log_file(data: &Path) -> Stdio {
    if let Some(parent) = data.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(data))
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

/// A `cronium serve` process on a free port, killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
    pub data: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A server with a fresh data dir and its embedded SQLite database.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::spawn(&dir.path().join("data"), None, &[]);
        server.wait_until_up();
        server._dir = Some(dir);
        server
    }

    /// Starts `cronium serve` on `data` (and `database_url`, if given) with
    /// extra environment, without waiting for it to come up.
    pub fn spawn(data: &Path, database_url: Option<&str>, env: &[(&str, &str)]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Server::spawn_on(port, data, database_url, env)
    }

    fn spawn_on(
        port: u16,
        data: &Path,
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> Server {
        let mut cmd = Command::new(CRONIUM);
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env_remove("CRONIUM_DATABASE_URL")
        .env_remove("CRONIUM_FAILPOINT")
        .stdout(Stdio::null())
        .stderr(log_file(data));
        if let Some(url) = database_url {
            cmd.env("CRONIUM_DATABASE_URL", url);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Server {
            child: cmd.spawn().expect("start cronium serve"),
            url: format!("http://127.0.0.1:{port}"),
            data: data.to_path_buf(),
            _dir: None,
        }
    }

    /// Waits for `/healthz` to answer and the admin token to exist.
    pub fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("cronium serve exited early: {status}");
            }
            let ok = ureq::get(format!("{}/healthz", self.url)).call().is_ok();
            if ok && self.data.join("admin.token").exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cronium serve did not come up at {}", self.url);
    }

    /// Waits for the process to end on its own and returns how it ended.
    pub fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "cronium serve did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`, then a new `cronium serve` on the same address and data
    /// dir (SQLite), with `env`, up and answering.
    pub fn kill_and_restart(&mut self, env: &[(&str, &str)]) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let port = self.url.rsplit(':').next().unwrap().parse().unwrap();
        let mut next = Server::spawn_on(port, &self.data, None, env);
        // `next` now holds the dead process and reaps nothing when dropped.
        std::mem::swap(&mut self.child, &mut next.child);
        self.wait_until_up();
    }

    /// What the server has logged so far (its standard error, every run
    /// on this data dir).
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(&self.data)).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Runs `cronium ARGS` as the local admin (token from the data dir).
    /// `GET` (no body) or `POST` (a JSON body) to `/api/v1{path}` as the
    /// admin; the JSON answer, which must be a success.
    pub fn api(&self, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/api/v1{path}", self.url);
        let auth = format!("Bearer {}", self.admin_token());
        let mut response = match &body {
            Some(body) => ureq::post(&url)
                .header("Authorization", &auth)
                .send_json(body),
            None => ureq::get(&url).header("Authorization", &auth).call(),
        }
        .unwrap_or_else(|e| panic!("{path}: {e}"));
        response.body_mut().read_json().unwrap()
    }

    pub fn cronium(&self, args: &[&str]) -> Run {
        self.cronium_with(args, &[])
    }

    pub fn cronium_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(CRONIUM);
        cmd.args(args)
            .env("CRONIUM_URL", &self.url)
            .env("CRONIUM_DATA_DIR", &self.data)
            .env_remove("CRONIUM_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run(cmd.output().expect("run cronium"))
    }

    /// Runs `cronium ARGS` with `stdin` as its standard input.
    pub fn cronium_stdin(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
        use std::io::Write;
        let mut child = Command::new(CRONIUM)
            .args(args)
            .env("CRONIUM_URL", &self.url)
            .env("CRONIUM_DATA_DIR", &self.data)
            .env_remove("CRONIUM_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cronium");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        Run(child.wait_with_output().expect("run cronium"))
    }

    /// Starts `cronium ARGS` as the local admin with its output piped, for a
    /// test that reads it while the command still runs.
    pub fn cronium_spawn(&self, args: &[&str]) -> Background {
        let child = Command::new(CRONIUM)
            .args(args)
            .env("CRONIUM_URL", &self.url)
            .env("CRONIUM_DATA_DIR", &self.data)
            .env_remove("CRONIUM_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cronium");
        Background(child)
    }
}

/// A `cronium` command still running, killed on drop so a failing test
/// leaves nothing behind.
pub struct Background(pub Child);

impl Background {
    /// Its standard output, line by line, as the lines arrive.
    pub fn stdout_lines(&mut self) -> std::sync::mpsc::Receiver<String> {
        let stdout = self.0.stdout.take().expect("stdout is piped once");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// Waits at most `limit` for it to exit; its standard error is read at
    /// the end (tests keep it short).
    #[track_caller]
    pub fn wait(&mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "cronium did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut stderr) = self.0.stderr.take() {
            use std::io::Read;
            stderr.read_to_string(&mut err).unwrap();
        }
        (status, err)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The runner the server starts jobs with sits next to the `cronium` binary.
#[track_caller]
pub fn require_runner() {
    let runner = Path::new(CRONIUM).with_file_name("cronium-runner");
    assert!(
        runner.exists(),
        "{} is missing: run `cargo build -p cronium-runner` (or `cargo test --workspace`) first",
        runner.display()
    );
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Run(pub Output);

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert!(
            self.0.status.success(),
            "expected success, got {}\nstdout: {}\nstderr: {}",
            self.0.status,
            self.stdout(),
            self.stderr()
        );
        self
    }

    #[track_caller]
    pub fn fails_with(self, needles: &[&str]) -> Run {
        assert!(
            !self.0.status.success(),
            "expected failure, got success: {}",
            self.stdout()
        );
        let err = self.stderr();
        for needle in needles {
            assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
        }
        self
    }

    /// The exit code (a command killed by a signal has none).
    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout()).unwrap_or_else(|e| panic!("{e}: {}", self.stdout()))
    }
}

pub fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
#[track_caller]
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` is alive (a zombie is not).
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only asks whether the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The lines a test's scripts appended to their trace file (none yet if
/// it does not exist).
pub fn trace(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}
