//! Benchmark: `cronium event run NAME --follow` of a `true` event beside the API's own trigger → finished, in the same run.
//!
//! Run with `cargo bench -p cronium-cli --bench run_follow`. A release
//! `cronium serve` (SQLite, fresh data dir) and the release runner; `N`
//! interleaved rounds after a warm-up of each way of running the job:
//!
//! - the CLI: the `cronium` process, name → id, `POST …/run`, then the log
//!   stream until its `end` event, and exit (wall time of the process);
//! - the API, streamed: `POST /api/v1/events/{id}/run`, then
//!   `GET /api/v1/jobs/{id}/logs?follow=true` read to its end, one client
//!   with a kept-alive connection;
//! - the API, polled: `POST …/run`, then `GET /api/v1/jobs/{id}` every
//!   0.5 ms until the job is over (the `jobs` benchmark's figure);
//! - `cronium --version`: what starting the CLI process costs by itself.

mod common;

use std::time::{Duration, Instant};

use common::{quantile, runner, serve};
use serde_json::json;

const N: usize = 100;
const WARM_UP: usize = 10;

fn main() {
    let runner = runner();
    let server = serve(&runner);
    let event = server.post(
        "/events",
        &json!({"name": "t", "interpreter": "bash", "content": "true\n", "overlap": "allow"}),
    );
    let id = event["id"].as_i64().unwrap();

    let cli = || server.cronium(&["event", "run", "t", "--follow"]);
    let id_text = id.to_string();
    let cli_by_id = || server.cronium(&["event", "run", &id_text, "--follow"]);
    let streamed = || {
        let started = Instant::now();
        let job = server.post(&format!("/events/{id}/run"), &json!({}))["id"]
            .as_i64()
            .unwrap();
        let stream = server.get_text(&format!("/jobs/{job}/logs?follow=true"));
        let took = started.elapsed();
        assert!(stream.contains("event: end"), "{stream}");
        took
    };
    let polled = || {
        let started = Instant::now();
        let job = server.post(&format!("/events/{id}/run"), &json!({}))["id"]
            .as_i64()
            .unwrap();
        loop {
            let status = server.get(&format!("/jobs/{job}"))["status"].clone();
            if status == "succeeded" {
                return started.elapsed();
            }
            assert!(status != "failed", "the job failed");
            std::thread::sleep(Duration::from_micros(500));
        }
    };
    let version = || server.cronium(&["--version"]);

    let ways: [(&str, &dyn Fn() -> Duration); 5] = [
        ("`cronium event run t --follow` (process wall time)", &cli),
        (
            "`cronium event run ID --follow` (no name lookup)",
            &cli_by_id,
        ),
        ("API: POST run, then the log stream to its end", &streamed),
        ("API: POST run, then GET the job every 0.5 ms", &polled),
        ("`cronium --version` (process start alone)", &version),
    ];
    for (_, way) in &ways {
        for _ in 0..WARM_UP {
            way();
        }
    }
    let mut samples = vec![Vec::with_capacity(N); ways.len()];
    for _ in 0..N {
        for ((_, way), samples) in ways.iter().zip(&mut samples) {
            samples.push(way());
        }
    }
    println!("| way ({N} interleaved rounds after {WARM_UP} warm-up) | median | p90 |");
    println!("|---|---|---|");
    for ((name, _), samples) in ways.iter().zip(&mut samples) {
        let median = quantile(samples, 0.5);
        let p90 = quantile(samples, 0.9);
        println!("| {name} | {median:.1} ms | {p90:.1} ms |");
    }
}
