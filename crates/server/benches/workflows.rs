//! Benchmark: workflow runs through the real server, store, workers and `cronium-runner`, beside the same events run one by one through the API, on SQLite and PostgreSQL.
//!
//! Run with `cargo bench -p cronium-server --bench workflows` (set
//! `CRONIUM_BENCH_ONLY` to `sqlite` or `postgres` for one backend,
//! `CRONIUM_BENCH_ROUNDS` for the number of runs of each shape, default 10).
//! The server runs in this process (`cronium_server::start`) with the
//! release runner and the default 8 worker slots. Every node runs one bash
//! event whose script is `true`. Shapes:
//!
//! - **chain**: 10 nodes, each after the one before;
//! - **fan**: 100 nodes: a root, 96 nodes after it, two joins of 48 each,
//!   and a last node after both joins (a node may have at most 50 parents).
//!
//! Measured per run: wall time from `POST /workflows/{id}/run` to the run
//! read back `succeeded` (polled every 0.5 ms), and for every node after
//! the first the **per-node overhead**: its job's `startedAt` minus the
//! `finishedAt` of its last parent's job (when it became ready), both
//! stamped by the server. In the fan, most of that is the wait for one of
//! the 8 worker slots behind 95 siblings. The comparison, in the same
//! run: the same event driven through the API as a script would, 10 runs
//! one after the other (`POST /events/{id}/run`, poll until over, next),
//! with the same overhead between one job's end and the next one's start;
//! and 100 runs queued at once, until the last is over.

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cronium_server::Config;
use cronium_store::testing::TestPostgres;
use serde_json::{Value, json};

const POLL: Duration = Duration::from_micros(500);

fn call(api: &common::Api, method: &str, path: &str, body: Option<&Value>) -> Value {
    api.call(method, path, body)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

fn ms(d: f64) -> String {
    format!("{d:.2} ms")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn p90(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) * 9 / 10]
}

fn gap_ms(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap() as f64 / 1000.0
}

/// The chain's and the fan's definitions.
fn chain() -> Value {
    let nodes: Vec<Value> = (0..10)
        .map(|i| {
            if i == 0 {
                json!({ "id": "n0", "event": "t" })
            } else {
                json!({ "id": format!("n{i}"), "event": "t", "after": [format!("n{}", i - 1)] })
            }
        })
        .collect();
    json!({ "name": "chain", "overlap": "allow", "nodes": nodes })
}

fn fan() -> Value {
    let mut nodes = vec![json!({ "id": "root", "event": "t" })];
    for i in 0..96 {
        nodes.push(json!({ "id": format!("m{i}"), "event": "t", "after": ["root"] }));
    }
    for (j, range) in [(0, 0..48), (1, 48..96)] {
        let after: Vec<String> = range.map(|i| format!("m{i}")).collect();
        nodes.push(json!({ "id": format!("join{j}"), "event": "t", "after": after }));
    }
    nodes.push(json!({ "id": "end", "event": "t", "after": ["join0", "join1"] }));
    json!({ "name": "fan", "overlap": "allow", "nodes": nodes })
}

/// One run: its wall time and every edge's overhead (ms).
fn run_once(api: &common::Api, workflow: i64, definition: &Value) -> (f64, Vec<f64>) {
    let started = Instant::now();
    let run = call(
        api,
        "POST",
        &format!("/workflows/{workflow}/run"),
        Some(&json!({})),
    );
    let id = run["id"].as_i64().unwrap();
    let done = loop {
        let r = call(api, "GET", &format!("/workflow-runs/{id}"), None);
        if r["status"] != "running" {
            break r;
        }
        std::thread::sleep(POLL);
    };
    let wall = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(done["status"], "succeeded", "{done}");
    let mut jobs = std::collections::HashMap::new();
    for node in done["nodes"].as_array().unwrap() {
        let job = call(api, "GET", &format!("/jobs/{}", node["jobId"]), None);
        jobs.insert(node["node"].as_str().unwrap().to_string(), job);
    }
    // A node is ready when its last parent has finished.
    let mut gaps = Vec::new();
    for node in definition["nodes"].as_array().unwrap() {
        let ready = node["after"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|parent| time(&jobs[parent.as_str().unwrap()]["finishedAt"]))
            .max();
        if let Some(ready) = ready {
            let child = &jobs[node["id"].as_str().unwrap()];
            gaps.push(gap_ms(ready, time(&child["startedAt"])));
        }
    }
    (wall, gaps)
}

fn wait_job(api: &common::Api, id: i64) -> Value {
    loop {
        let job = call(api, "GET", &format!("/jobs/{id}"), None);
        if !matches!(job["status"].as_str(), Some("queued" | "running")) {
            return job;
        }
        std::thread::sleep(POLL);
    }
}

fn bench(label: &str, database_url: Option<String>, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".into();
    config.database_url = database_url;
    config.runner = Some(common::runner());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = runtime.block_on(cronium_server::start(config)).unwrap();
    let token = std::fs::read_to_string(running.data_dir().join("admin.token")).unwrap();
    let api = common::Api::new(&format!("http://{}", running.local_addr()), token.trim());
    let event = call(
        &api,
        "POST",
        "/events",
        Some(
            &json!({ "name": "t", "interpreter": "bash", "content": "true\n", "overlap": "allow" }),
        ),
    )["id"]
        .as_i64()
        .unwrap();
    println!("\n## {label}: {rounds} runs of each shape (after one warm-up run)\n");
    println!("| what | wall median | wall p90 | per-node overhead median | p90 |");
    println!("|---|---|---|---|---|");
    for (name, definition) in [
        ("10-node chain", chain()),
        ("100-node fan-out/fan-in", fan()),
    ] {
        let workflow = call(&api, "POST", "/workflows", Some(&definition))["id"]
            .as_i64()
            .unwrap();
        run_once(&api, workflow, &definition);
        let mut walls = Vec::new();
        let mut gaps = Vec::new();
        for _ in 0..rounds {
            let (wall, g) = run_once(&api, workflow, &definition);
            walls.push(wall);
            gaps.extend(g);
        }
        println!(
            "| workflow, {name} | {} | {} | {} | {} |",
            ms(median(walls.clone())),
            ms(p90(walls)),
            ms(median(gaps.clone())),
            ms(p90(gaps))
        );
    }

    // The comparison: the same event through the API, as a script would.
    let mut walls = Vec::new();
    let mut gaps = Vec::new();
    for round in 0..=rounds {
        let started = Instant::now();
        let mut previous: Option<Value> = None;
        for _ in 0..10 {
            let job = call(
                &api,
                "POST",
                &format!("/events/{event}/run"),
                Some(&json!({})),
            );
            let job = wait_job(&api, job["id"].as_i64().unwrap());
            if let Some(p) = &previous
                && round > 0
            {
                gaps.push(gap_ms(time(&p["finishedAt"]), time(&job["startedAt"])));
            }
            previous = Some(job);
        }
        if round > 0 {
            walls.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    println!(
        "| API, 10 runs one after another | {} | {} | {} | {} |",
        ms(median(walls.clone())),
        ms(p90(walls)),
        ms(median(gaps.clone())),
        ms(p90(gaps))
    );
    let mut walls = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let ids: Vec<i64> = (0..100)
            .map(|_| {
                call(
                    &api,
                    "POST",
                    &format!("/events/{event}/run"),
                    Some(&json!({})),
                )["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        for id in ids {
            wait_job(&api, id);
        }
        walls.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "| API, 100 runs queued at once | {} | {} | | |",
        ms(median(walls.clone())),
        ms(p90(walls))
    );
    runtime.block_on(running.stop()).unwrap();
}

fn main() {
    let rounds: usize = std::env::var("CRONIUM_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let only = std::env::var("CRONIUM_BENCH_ONLY").ok();
    if only.as_deref() != Some("postgres") {
        bench("SQLite", None, rounds);
    }
    if only.as_deref() != Some("sqlite") {
        bench("PostgreSQL", Some(TestPostgres::fresh_database()), rounds);
    }
}
