//! Shared by the CLI benchmarks: a release `cronium serve` on a fresh data dir, an API client, and medians.
#![allow(dead_code)] // each benchmark uses a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const CRONIUM: &str = env!("CARGO_BIN_EXE_cronium");

/// The release runner beside the benchmark's `cronium`, built if need be.
pub fn runner() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "cronium-runner",
            "--bin",
            "cronium-runner",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    Path::new(CRONIUM).with_file_name("cronium-runner")
}

/// A `cronium serve` with SQLite in a fresh temporary data dir, killed on drop.
pub struct Serve {
    child: Child,
    pub base: String,
    pub token: String,
    agent: ureq::Agent,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(runner: &Path) -> Serve {
    serve_with(runner, None, &[])
}

/// A `cronium serve` on `database_url` (its own SQLite without one) with
/// extra environment, in a fresh data dir.
pub fn serve_with(runner: &Path, database_url: Option<&str>, env: &[(&str, &str)]) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = dir.path().join("data");
    let child = Command::new(CRONIUM)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data)
        .arg("--runner")
        .arg(runner)
        .env_remove("CRONIUM_DATABASE_URL")
        .envs(database_url.map(|url| ("CRONIUM_DATABASE_URL", url)))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(format!("{base}/healthz")).call().is_err() || !data.join("admin.token").exists()
    {
        assert!(Instant::now() < deadline, "cronium serve did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    Serve {
        child,
        base,
        token,
        agent: ureq::Agent::new_with_defaults(),
        _dir: dir,
    }
}

impl Serve {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, and the process reaped.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub fn post(&self, path: &str, body: &Value) -> Value {
        self.agent
            .post(self.url(path))
            .header("authorization", format!("Bearer {}", self.token))
            .send_json(body)
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    }

    pub fn get(&self, path: &str) -> Value {
        serde_json::from_str(&self.get_text(path)).unwrap()
    }

    /// The whole body of a GET, e.g. an event stream read to its end.
    pub fn get_text(&self, path: &str) -> String {
        self.agent
            .get(self.url(path))
            .header("authorization", format!("Bearer {}", self.token))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    }

    /// `cronium ARGS` against this server; panics unless it succeeds.
    pub fn cronium(&self, args: &[&str]) -> Duration {
        let started = Instant::now();
        let out = Command::new(CRONIUM)
            .args(args)
            .env("CRONIUM_URL", &self.base)
            .env("CRONIUM_TOKEN", &self.token)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "cronium {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        took
    }
}

/// The `q`-quantile of `samples` in milliseconds (sorted in place).
pub fn quantile(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}
