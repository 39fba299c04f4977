//! Benchmark: runtime helper calls from real scripts through the real runner and server, on this host and over a warm SSH connection, beside the same read through the HTTP API.
//!
//! Run as root with OpenSSH installed (`/usr/sbin/sshd`):
//! `cargo bench -p cronium-server --bench helpers`. The server runs in this
//! process on SQLite (the default); the remote host is a throwaway user of a
//! real sshd on 127.0.0.1 (`cronium_ssh::testing`). Each variant is a python
//! event that times its own calls with `time.perf_counter()` and prints the
//! figures as JSON; every event runs once to warm up (deploying the runner
//! and the payload for the remote one), then once timed. Variants:
//!
//! - `var get` round trip from python (`cronium.get_variable`, the module
//!   speaks to the runner's socket itself), `CRONIUM_BENCH_CALLS` times
//!   (default 500): locally, and on the remote host;
//! - the same from bash (`cronium var get`, a process per call);
//! - 1,000 `var set` calls from one python script, total time;
//! - beside them, `GET /api/v1/variables/{key}` from this process over a
//!   keep-alive connection, the same number of times.

mod common;

use std::time::{Duration, Instant};

use cronium_server::Config;
use cronium_ssh::testing::TestSshd;
use serde_json::{Value, json};

const PYTHON: &str = r#"import json, os, time, cronium
calls = int(os.environ["CALLS"])
cronium.get_variable("bench")
times = []
for _ in range(calls):
    started = time.perf_counter()
    cronium.get_variable("bench")
    times.append((time.perf_counter() - started) * 1000)
times.sort()
started = time.perf_counter()
for i in range(1000):
    cronium.set_variable("bench-counter", i)
total = (time.perf_counter() - started) * 1000
print(json.dumps({"median": times[len(times) // 2], "p90": times[len(times) * 9 // 10], "set1000": total}))
"#;

const BASH: &str = r#"times=()
for i in $(seq "$CALLS"); do
    started=$(date +%s%N)
    cronium var get bench > /dev/null
    times+=($(( $(date +%s%N) - started )))
done
printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "{\"median\": %.3f, \"p90\": %.3f}\n", a[int(NR / 2) + 1] / 1e6, a[int(NR * 9 / 10)] / 1e6 }'
"#;

fn main() {
    let calls: usize = std::env::var("CRONIUM_BENCH_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let runner = common::runner();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".into();
    config.runner = Some(runner);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = runtime.block_on(cronium_server::start(config)).unwrap();
    let token = std::fs::read_to_string(running.data_dir().join("admin.token")).unwrap();
    let api = common::Api::new(&format!("http://{}", running.local_addr()), token.trim());
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let server = api
        .call(
            "POST",
            "/servers",
            Some(&json!({
                "name": "bench-host", "host": sshd.host(), "port": sshd.port(),
                "username": user.name, "privateKey": user.key.private,
                "knownHost": sshd.host_key().known_hosts_line(sshd.host(), sshd.port()),
            })),
        )
        .unwrap()["id"]
        .clone();
    api.call(
        "PUT",
        "/variables/bench",
        Some(&json!({ "value": { "text": "a small value", "n": 42 } })),
    )
    .unwrap();
    let env = json!({ "CALLS": calls.to_string() });
    let event = |name: &str, interpreter: &str, script: &str, remote: bool| -> i64 {
        let mut body = json!({ "name": name, "interpreter": interpreter, "content": script,
            "env": env, "timeout": "10m" });
        if remote {
            body["runLocation"] = json!("remote");
            body["targetServers"] = json!([server]);
        }
        api.call("POST", "/events", Some(&body)).unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let variants = [
        (
            "python, this host",
            event("py-local", "python", PYTHON, false),
        ),
        (
            "python, over SSH",
            event("py-remote", "python", PYTHON, true),
        ),
        ("bash, this host", event("sh-local", "bash", BASH, false)),
        ("bash, over SSH", event("sh-remote", "bash", BASH, true)),
    ];

    println!("{calls} `var get` calls per variant (after one warm-up run each)");
    for (label, event) in variants {
        run(&api, event).unwrap_or_else(|e| panic!("{label}: warm-up: {e}"));
        let figures = run(&api, event).unwrap_or_else(|e| panic!("{label}: {e}"));
        let mut line = format!(
            "{label}: var get median {:.3} ms, p90 {:.3} ms",
            figures["median"].as_f64().unwrap(),
            figures["p90"].as_f64().unwrap()
        );
        if let Some(total) = figures["set1000"].as_f64() {
            line.push_str(&format!("; 1,000 var set: {total:.0} ms in total"));
        }
        println!("{line}");
    }

    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        api.call("GET", "/variables/bench", None).unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "HTTP API GET /variables/bench from this process: median {:.3} ms, p90 {:.3} ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 9 / 10])
    );
    runtime.block_on(running.stop()).unwrap();
}

/// Runs `event` and returns the JSON line its script printed.
fn run(api: &common::Api, event: i64) -> Result<Value, String> {
    let job = api.call("POST", &format!("/events/{event}/run"), Some(&json!({})))?;
    let id = job["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let done = loop {
        let job = api.call("GET", &format!("/jobs/{id}"), None)?;
        if !matches!(job["status"].as_str(), Some("queued" | "running")) {
            break job;
        }
        if Instant::now() > deadline {
            return Err(format!("job {id} did not finish"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let logs = api.call("GET", &format!("/jobs/{id}/logs?limit=1000"), None)?;
    let text: String = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap_or_default())
        .collect();
    if done["status"] != "succeeded" {
        return Err(format!("job {id} {}: {text}", done["status"]));
    }
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).map_err(|e| format!("job {id} printed {text:?}: {e}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
