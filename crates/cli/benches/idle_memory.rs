//! Benchmark: resident memory of an idle `cronium serve` (the release binary), fresh, with 1,000 scheduled events, and after running 200 jobs; on SQLite and PostgreSQL.
//!
//! Run with `cargo bench -p cronium-cli --bench idle_memory`. Each phase
//! waits 5 s of idleness, then reads `VmRSS` (and the peak, `VmHWM`) from
//! `/proc/<pid>/status` of the server process alone (a PostgreSQL server's
//! own processes are not counted).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cronium_store::testing::TestPostgres;
use serde_json::{Value, json};

const EVENTS: usize = 1000;
const JOBS: usize = 200;
const SETTLE: Duration = Duration::from_secs(5);

/// `VmRSS` and `VmHWM` in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> f64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        let kb: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Serve {
    child: Child,
    base: String,
    auth: String,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(database_url: Option<String>, runner: &Path) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = dir.path().join("data");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cronium"));
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(&data)
    .arg("--runner")
    .arg(runner)
    .env_remove("CRONIUM_DATABASE_URL")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(url) = database_url {
        cmd.env("CRONIUM_DATABASE_URL", url);
    }
    let child = cmd.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(format!("{base}/healthz")).call().is_err() || !data.join("admin.token").exists()
    {
        assert!(Instant::now() < deadline, "cronium serve did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    Serve {
        child,
        base,
        auth: format!("Bearer {}", token.trim()),
        _dir: dir,
    }
}

impl Serve {
    fn post(&self, path: &str, body: &Value) -> Value {
        ureq::post(format!("{}/api/v1{path}", self.base))
            .header("authorization", &self.auth)
            .send_json(body)
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    }

    fn get(&self, path: &str) -> Value {
        ureq::get(format!("{}/api/v1{path}", self.base))
            .header("authorization", &self.auth)
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    }

    fn settled(&self) -> (f64, f64) {
        std::thread::sleep(SETTLE);
        memory(self.child.id())
    }
}

fn main() {
    let runner = common::runner();
    println!("| backend | phase | RSS | peak RSS |");
    println!("|---|---|---|---|");
    for (name, url) in [
        ("SQLite", None),
        ("PostgreSQL", Some(TestPostgres::fresh_database())),
    ] {
        let server = serve(url, &runner);
        let row = |phase: &str, (rss, peak): (f64, f64)| {
            println!("| {name} | {phase} | {rss:.1} MiB | {peak:.1} MiB |");
        };
        row("fresh, idle", server.settled());
        for i in 0..EVENTS {
            server.post(
                "/events",
                &json!({
                    "name": format!("hourly {i}"), "interpreter": "bash", "content": "true\n",
                    "schedule": { "type": "cron", "cron": format!("{} * * * *", i % 60) },
                }),
            );
        }
        row(
            &format!("{EVENTS} hourly cron events, idle"),
            server.settled(),
        );
        let event = server.post("/events", &json!({
            "name": "manual", "interpreter": "bash", "content": "echo hello\n", "overlap": "allow",
        }));
        let mut last = 0;
        for _ in 0..JOBS {
            last = server.post(&format!("/events/{}/run", event["id"]), &json!({}))["id"]
                .as_i64()
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while !matches!(
            server.get(&format!("/jobs/{last}"))["status"].as_str(),
            Some("succeeded")
        ) {
            assert!(Instant::now() < deadline, "jobs did not finish");
            std::thread::sleep(Duration::from_millis(100));
        }
        row(&format!("after {JOBS} jobs, idle"), server.settled());
    }
}
