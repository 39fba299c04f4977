//! Benchmark: job overhead, throughput and scheduling lateness through the real server, scheduler, workers and `cronium-runner`, on SQLite and PostgreSQL.
//!
//! Run with `cargo bench -p cronium-server --bench jobs` (set
//! `CRONIUM_BENCH_LATENESS_SECS` to change how long the lateness phase runs,
//! default 125, and `CRONIUM_BENCH_ONLY` to `sqlite` or `postgres` for one
//! backend). The server runs in this process (`cronium_server::start`,
//! what `cronium serve` does) with a fresh data dir under `$TMPDIR` and the
//! release `cronium-runner`. Measured:
//!
//! - **trigger → finished**: `POST /events/{id}/run` of a bash `true` event,
//!   then `GET /jobs/{id}` every 0.5 ms until it is over; the client's wall
//!   time, and the server's own `finishedAt − createdAt`. The comparison, in
//!   the same run: `cronium-runner run` of the same payload started directly
//!   (what a job costs at the least). Interleaved with them, an HTTP event
//!   (`GET` to a receiver this benchmark runs on loopback, allowed with
//!   `--http-allow 127.0.0.1`), measured the same way.
//! - **throughput**: 1,000 runs queued as fast as one client can, until the
//!   last one is over, with the default 8 slots. The comparison: the same
//!   1,000 payload runs by 8 threads calling `cronium-runner` directly.
//! - **notifications**: a failing event with a `failure` action on a webhook
//!   channel pointing at a receiver on loopback: trigger → message received
//!   (100 runs, one at a time) and the job's `finishedAt` → message
//!   received; then one job owing 1,000 messages (1,000 actions), drained
//!   (messages per second).
//! - **lateness**: 1,000 active events on `S * * * * *` crons (second `S` =
//!   event number mod 60: each fires once a minute, 16–17 a second), then
//!   `startedAt − scheduledAt` of every job of the phase. The comparison: one
//!   event firing every second, measured the same way in the same run.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cronium_server::Config;
use cronium_store::testing::TestPostgres;
use serde_json::{Value, json};

const TRIGGER_RUNS: usize = 200;
const THROUGHPUT_JOBS: usize = 1000;
const SCHEDULED_EVENTS: usize = 1000;

struct Client(common::Api);

impl Client {
    fn new(base: &str, token: &str) -> Client {
        Client(common::Api::new(base, token))
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.0
            .call(method, path, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn event(&self, name: &str, script: &str, extra: Value) -> Value {
        let mut body =
            json!({ "name": name, "interpreter": "bash", "content": script, "overlap": "allow" });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.call("POST", "/events", Some(&body))
    }

    fn run(&self, event: i64) -> i64 {
        self.call("POST", &format!("/events/{event}/run"), Some(&json!({})))["id"]
            .as_i64()
            .unwrap()
    }

    fn job(&self, id: i64) -> Value {
        self.call("GET", &format!("/jobs/{id}"), None)
    }

    fn wait(&self, id: i64, poll: Duration) -> Value {
        loop {
            let job = self.job(id);
            if !matches!(job["status"].as_str(), Some("queued" | "running")) {
                return job;
            }
            std::thread::sleep(poll);
        }
    }

    /// Every job of the event (newest first), paging through.
    fn jobs(&self, event: i64) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let page = self.call(
                "GET",
                &format!("/jobs?event={event}&limit=500&offset={}", all.len()),
                None,
            );
            let items = page["items"].as_array().unwrap().clone();
            let done = items.is_empty();
            all.extend(items);
            if done || all.len() as u64 >= page["total"].as_u64().unwrap() {
                return all;
            }
        }
    }

    fn all_jobs_since(&self, since: DateTime<Utc>) -> Vec<Value> {
        let mut all = Vec::new();
        let since = since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        loop {
            let page = self.call(
                "GET",
                &format!("/jobs?since={since}&limit=500&offset={}", all.len()),
                None,
            );
            let items = page["items"].as_array().unwrap().clone();
            let done = items.is_empty();
            all.extend(items);
            if done || all.len() as u64 >= page["total"].as_u64().unwrap() {
                return all;
            }
        }
    }
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        *v.last().unwrap(),
    )
}

/// Runs the payload with the runner directly, as a job would minus the server.
fn direct_run(runner: &Path, payload: &Path, sha256: &str, work: &Path) -> Duration {
    let started = Instant::now();
    let status = std::process::Command::new(runner)
        .arg("run")
        .arg(payload)
        .args(["--sha256", sha256, "--workdir"])
        .arg(work)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    started.elapsed()
}

struct App {
    runtime: tokio::runtime::Runtime,
    running: Option<cronium_server::Running>,
    client: Client,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(database_url: Option<String>, runner: &Path) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".into();
    config.database_url = database_url;
    config.runner = Some(runner.to_path_buf());
    // The HTTP event's receiver is on loopback.
    config.http_allow = vec![cronium_exec::Allow::parse("127.0.0.1/32").unwrap()];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = runtime.block_on(cronium_server::start(config)).unwrap();
    let data = running.data_dir().to_path_buf();
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let client = Client::new(&format!("http://{}", running.local_addr()), token.trim());
    App {
        runtime,
        running: Some(running),
        client,
        data,
        _dir: dir,
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = self.runtime.block_on(r.stop());
        }
    }
}

fn trigger_and_throughput(name: &str, app: &App, runner: &Path) {
    let c = &app.client;
    let event = c.event("true", "true\n", json!({}));
    let id = event["id"].as_i64().unwrap();
    let payload = &c.call("GET", &format!("/events/{id}/payloads"), None)[0];
    let path = app.data.join(payload["payloadPath"].as_str().unwrap());
    let sha = payload["checksum"].as_str().unwrap().to_string();
    let work = app.data.join("bench-work");
    std::fs::create_dir_all(&work).unwrap();

    let receiver = http_receiver();
    let http = c.call(
        "POST",
        "/events",
        Some(&json!({"name": "http", "overlap": "allow",
                     "http": {"url": format!("http://127.0.0.1:{receiver}/ping")}})),
    )["id"]
        .as_i64()
        .unwrap();

    // Warm-up, then trigger, HTTP and direct runs interleaved.
    for _ in 0..20 {
        let job = c.run(id);
        c.wait(job, Duration::from_micros(500));
        let job = c.run(http);
        c.wait(job, Duration::from_micros(500));
        direct_run(runner, &path, &sha, &work);
    }
    let (mut client_side, mut server_side, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    let (mut http_client, mut http_server) = (Vec::new(), Vec::new());
    // One run of `event`: the client's wall time and the server's own.
    let measure = |event: i64| {
        let started = Instant::now();
        let job = c.run(event);
        let done = c.wait(job, Duration::from_micros(500));
        let client = started.elapsed();
        assert_eq!(done["status"], "succeeded", "{done}");
        let server = (time(&done["finishedAt"]) - time(&done["createdAt"]))
            .to_std()
            .unwrap();
        (client, server)
    };
    for _ in 0..TRIGGER_RUNS {
        let (client, server) = measure(id);
        client_side.push(client);
        server_side.push(server);
        let (client, server) = measure(http);
        http_client.push(client);
        http_server.push(server);
        direct.push(direct_run(runner, &path, &sha, &work));
    }
    let (c50, c99, _) = summary(client_side);
    let (s50, s99, _) = summary(server_side);
    let (d50, d99, _) = summary(direct);
    let (h50, h99, _) = summary(http_client);
    let (hs50, hs99, _) = summary(http_server);
    println!(
        "{name}: HTTP event trigger → finished, {TRIGGER_RUNS} runs: client median {} (p99 {}), server-recorded median {} (p99 {}); against the `true` script event {:+.2} ms (client medians)",
        ms(h50),
        ms(h99),
        ms(hs50),
        ms(hs99),
        (h50.as_secs_f64() - c50.as_secs_f64()) * 1000.0
    );
    println!(
        "{name}: trigger → finished, {TRIGGER_RUNS} runs: client median {} (p99 {}), server-recorded median {} (p99 {}); direct runner median {} (p99 {}); overhead over the direct runner {:.2} ms (x{:.1})",
        ms(c50),
        ms(c99),
        ms(s50),
        ms(s99),
        ms(d50),
        ms(d99),
        (c50.as_secs_f64() - d50.as_secs_f64()) * 1000.0,
        c50.as_secs_f64() / d50.as_secs_f64()
    );

    // Throughput: queue them all, wait for the last.
    let started = Instant::now();
    let jobs: Vec<i64> = (0..THROUGHPUT_JOBS).map(|_| c.run(id)).collect();
    let queued = started.elapsed();
    for job in &jobs {
        let done = c.wait(*job, Duration::from_millis(5));
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    let server = started.elapsed();
    // The same runs, straight to the runner from 8 threads.
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            let next = next.clone();
            let (path, sha, work) = (&path, &sha, &work);
            s.spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < THROUGHPUT_JOBS {
                    direct_run(runner, path, sha, work);
                }
            });
        }
    });
    let direct = started.elapsed();
    let rate = |d: Duration| THROUGHPUT_JOBS as f64 / d.as_secs_f64();
    println!(
        "{name}: throughput, {THROUGHPUT_JOBS} jobs (queued in {:.2} s): {:.0} jobs/s through the server; {:.0} runs/s with the runner called directly by 8 threads ({:.0} %)",
        queued.as_secs_f64(),
        rate(server),
        rate(direct),
        100.0 * rate(server) / rate(direct)
    );
}

fn lateness(name: &str, app: &App, seconds: u64) {
    let c = &app.client;
    let lateness_of = |jobs: &[Value]| -> Vec<Duration> {
        jobs.iter()
            .filter(|j| j["trigger"] == "schedule" && j["startedAt"].is_string())
            .map(|j| {
                (time(&j["startedAt"]) - time(&j["scheduledAt"]))
                    .to_std()
                    .unwrap_or_default()
            })
            .collect()
    };
    // The comparison: one event every second, nothing else scheduled.
    let single = c.event(
        "every second",
        "true\n",
        json!({ "schedule": { "type": "cron", "cron": "* * * * * *" } }),
    );
    std::thread::sleep(Duration::from_secs(20));
    c.call(
        "POST",
        &format!("/events/{}/run", single["id"]),
        Some(&json!({})),
    );
    let pause = json!({ "status": "paused" });
    patch(c, single["id"].as_i64().unwrap(), &pause);
    let (o50, o99, omax) = summary(lateness_of(&c.jobs(single["id"].as_i64().unwrap())));

    let created = Instant::now();
    for i in 0..SCHEDULED_EVENTS {
        c.event(
            &format!("cron {i}"),
            "true\n",
            json!({ "schedule": { "type": "cron", "cron": format!("{} * * * * *", i % 60) } }),
        );
    }
    println!(
        "{name}: created {SCHEDULED_EVENTS} cron events in {:.1} s",
        created.elapsed().as_secs_f64()
    );
    let from = Utc::now() + chrono::TimeDelta::seconds(2);
    std::thread::sleep(Duration::from_secs(seconds));
    let until = Utc::now();
    let jobs: Vec<Value> = c
        .all_jobs_since(from)
        .into_iter()
        .filter(|j| time(&j["scheduledAt"]) < until - chrono::TimeDelta::seconds(5))
        .collect();
    let statuses = jobs.iter().filter(|j| j["status"] != "succeeded").count();
    // Where the lateness comes from: recording the fire, or waiting for a worker.
    let recorded: Vec<Duration> = jobs
        .iter()
        .map(|j| {
            (time(&j["createdAt"]) - time(&j["scheduledAt"]))
                .to_std()
                .unwrap_or_default()
        })
        .collect();
    let (r50, r99, _) = summary(recorded);
    println!(
        "{name}: of which recording the fire (createdAt − scheduledAt): median {}, p99 {}",
        ms(r50),
        ms(r99)
    );
    let late = lateness_of(&jobs);
    let count = late.len();
    let (l50, l99, lmax) = summary(late);
    println!(
        "{name}: lateness (startedAt − scheduledAt), {count} scheduled jobs of {SCHEDULED_EVENTS} every-minute crons over {seconds} s: median {}, p99 {}, max {} ({statuses} not succeeded); one every-second cron alone: median {}, p99 {}, max {}",
        ms(l50),
        ms(l99),
        ms(lmax),
        ms(o50),
        ms(o99),
        ms(omax)
    );
}

/// When each message arrived, in order: monotonic and wall clock.
type Arrivals = Arc<std::sync::Mutex<Vec<(Instant, DateTime<Utc>)>>>;

/// A loopback webhook receiver answering `204`, and its arrivals.
fn message_receiver() -> (u16, Arrivals) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                kept.lock().unwrap().push((Instant::now(), Utc::now()));
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            });
        }
    });
    (port, seen)
}

fn notifications(name: &str, app: &App) {
    let c = &app.client;
    let (port, seen) = message_receiver();
    let channel = c.call(
        "POST",
        "/channels",
        Some(&json!({"name": "bench", "url": format!("http://127.0.0.1:{port}/hook")})),
    )["id"]
        .as_i64()
        .unwrap();
    let failing = c.event("failing", "exit 1\n", json!({}))["id"]
        .as_i64()
        .unwrap();
    let action = json!({"when": "failure", "channel": channel});
    c.call("POST", &format!("/events/{failing}/actions"), Some(&action));
    let received = |n: usize| loop {
        if let Some(at) = seen.lock().unwrap().get(n - 1) {
            return *at;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    // Warm-up, then one run at a time: trigger → message received.
    for n in 1..=10 {
        c.run(failing);
        received(n);
    }
    let (mut from_trigger, mut from_finish) = (Vec::new(), Vec::new());
    for n in 11..=110 {
        let started = Instant::now();
        let job = c.run(failing);
        let (at, wall) = received(n);
        from_trigger.push(at - started);
        let done = c.wait(job, Duration::from_millis(1));
        from_finish.push(
            (wall - time(&done["finishedAt"]))
                .to_std()
                .unwrap_or_default(),
        );
    }
    let (t50, t99, _) = summary(from_trigger);
    let (f50, f99, _) = summary(from_finish);
    println!(
        "{name}: job failed → webhook received, 100 runs: from the trigger median {} (p99 {}), from the job's finishedAt median {} (p99 {})",
        ms(t50),
        ms(t99),
        ms(f50),
        ms(f99)
    );

    // One job owing 1,000 messages, drained.
    let many = c.event("many", "exit 1\n", json!({}))["id"]
        .as_i64()
        .unwrap();
    for _ in 0..1000 {
        c.call("POST", &format!("/events/{many}/actions"), Some(&action));
    }
    let before = seen.lock().unwrap().len();
    let job = c.run(many);
    let done = c.wait(job, Duration::from_millis(1));
    let (first, _) = received(before + 1);
    let (last, _) = received(before + 1000);
    let drained = last - first;
    println!(
        "{name}: 1,000 deliveries of one job (finished {}) drained in {:.2} s: {:.0} deliveries/s",
        done["finishedAt"].as_str().unwrap_or("-"),
        drained.as_secs_f64(),
        999.0 / drained.as_secs_f64()
    );
}

/// A loopback HTTP server answering every request `200 OK` with a short body
/// (one connection per request, as the HTTP executor makes them); its port.
fn http_receiver() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                );
            });
        }
    });
    port
}

fn patch(c: &Client, event: i64, body: &Value) {
    c.call("PATCH", &format!("/events/{event}"), Some(body));
}

fn main() {
    let tmp = std::env::temp_dir();
    let seconds: u64 = std::env::var("CRONIUM_BENCH_LATENESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(125);
    println!(
        "temp dir {}; {} CPUs",
        tmp.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let runner = common::runner();
    let only = std::env::var("CRONIUM_BENCH_ONLY").unwrap_or_default();
    for (name, postgres) in [("SQLite", false), ("PostgreSQL", true)] {
        if !only.is_empty() && !name.eq_ignore_ascii_case(&only) {
            continue;
        }
        let database = || postgres.then(TestPostgres::fresh_database);
        let app = start(database(), &runner);
        trigger_and_throughput(name, &app, &runner);
        notifications(name, &app);
        drop(app);
        if seconds > 0 {
            let app = start(database(), &runner);
            lateness(name, &app, seconds);
        }
    }
}
