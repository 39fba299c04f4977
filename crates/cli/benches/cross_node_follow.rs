//! Benchmark: how soon a follower sees a line a script printed, on the server running the job and on two other servers of one PostgreSQL database (one listening, one `--poll-only`), in the same rounds.
//!
//! Run with `cargo bench -p cronium-cli --bench cross_node_follow`. Three
//! release `cronium serve` processes share one database in a throwaway
//! PostgreSQL cluster (same master key, own data dirs); the third runs with
//! `--poll-only`. Each round queues a job whose script blocks reading a FIFO
//! and prints what it reads; whichever server claims it runs it. Once it
//! runs, one follower per server streams its log
//! (`GET /api/v1/jobs/{id}/logs?follow=true`); the clock starts when the
//! benchmark writes to the FIFO (the script is already blocked opening it)
//! and stops, per follower, when its stream yields the line. Followers are
//! sorted by where they are: the server running the job (woken in-process),
//! another listening server (woken by NOTIFY), the `--poll-only` server
//! when it is not the one running the job (re-reading every 500 ms).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Serve, quantile, runner, serve_with};
use cronium_store::testing::TestPostgres;
use serde_json::json;

const N: usize = 60;
const WARM_UP: usize = 5;
const MASTER_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A node of the cluster: the same master key on every one; the third
/// polls (`CRONIUM_POLL_ONLY`).
fn node(runner: &Path, url: &str, poll_only: bool) -> Serve {
    let mut env = vec![("CRONIUM_MASTER_KEY", MASTER_KEY)];
    if poll_only {
        env.push(("CRONIUM_POLL_ONLY", "true"));
    }
    serve_with(runner, Some(url), &env)
}

/// Streams the job's log in a thread: sends `()` once the stream is
/// open, then the instant the first stdout line arrives.
fn follow(
    node: &Serve,
    job: i64,
    opened: mpsc::Sender<()>,
    seen: mpsc::Sender<(usize, Instant)>,
    who: usize,
) {
    let url = format!("{}/api/v1/jobs/{job}/logs?follow=true", node.base);
    let auth = format!("Bearer {}", node.token);
    std::thread::spawn(move || {
        let response = ureq::get(&url)
            .header("authorization", &auth)
            .call()
            .unwrap();
        opened.send(()).unwrap();
        let mut reader = BufReader::new(response.into_body().into_reader());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 {
            if line.starts_with("event: stdout") {
                let _ = seen.send((who, Instant::now()));
                return;
            }
            line.clear();
        }
    });
}

fn main() {
    let runner = runner();
    let url = TestPostgres::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let nodes = [
        node(&runner, &url, false),
        node(&runner, &url, false),
        node(&runner, &url, true),
    ];
    let poll_only = 2;
    let fifo = dir.path().join("gate");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let event = nodes[0].post(
        "/events",
        &json!({"name": "gate", "interpreter": "bash",
                "content": format!("read line < '{}'\necho \"$line\"\n", fifo.display()),
                "overlap": "allow"}),
    );
    let id = event["id"].as_i64().unwrap();

    // Samples (ms) per kind of follower.
    let mut same = Vec::new();
    let mut other = Vec::new();
    let mut polled = Vec::new();
    let mut ran_on = [0usize; 3];
    for round in 0..WARM_UP + N {
        let job = nodes[round % 2].post(&format!("/events/{id}/run"), &json!({}));
        let job_id = job["id"].as_i64().unwrap();
        let owner = loop {
            let job = nodes[0].get(&format!("/jobs/{job_id}"));
            if job["status"] == "running" {
                break job["leaseOwner"].as_str().unwrap().to_string();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let runs = nodes
            .iter()
            .position(|n| owner.split('/').nth(1) == Some(&n.pid().to_string()))
            .expect("the job runs on one of the three");
        let (opened_tx, opened) = mpsc::channel();
        let (seen_tx, seen) = mpsc::channel();
        for (who, node) in nodes.iter().enumerate() {
            follow(node, job_id, opened_tx.clone(), seen_tx.clone(), who);
        }
        for _ in 0..nodes.len() {
            opened.recv_timeout(Duration::from_secs(30)).unwrap();
        }
        // The followers have read the (empty) log and wait.
        std::thread::sleep(Duration::from_millis(100));
        // Blocks until the script has opened its end.
        let mut gate = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        let printed = Instant::now();
        gate.write_all(b"hello\n").unwrap();
        drop(gate);
        let mut times = [0.0f64; 3];
        for _ in 0..nodes.len() {
            let (who, at) = seen.recv_timeout(Duration::from_secs(30)).unwrap();
            times[who] = at.duration_since(printed).as_secs_f64();
        }
        if round < WARM_UP {
            continue;
        }
        ran_on[runs] += 1;
        for (who, took) in times.into_iter().enumerate() {
            let took = Duration::from_secs_f64(took);
            if who == runs {
                same.push(took);
            } else if who == poll_only {
                polled.push(took);
            } else {
                other.push(took);
            }
        }
    }
    println!(
        "{N} rounds after {WARM_UP} warm-up; the job ran on a {} times, b {}, c (--poll-only) {}",
        ran_on[0], ran_on[1], ran_on[2]
    );
    println!("| follower | samples | median | p90 |");
    println!("|---|---|---|---|");
    for (name, samples) in [
        ("on the server running the job", &mut same),
        ("on another server, listening (NOTIFY)", &mut other),
        ("on another server, --poll-only", &mut polled),
    ] {
        if samples.is_empty() {
            continue;
        }
        let median = quantile(samples, 0.5);
        let p90 = quantile(samples, 0.9);
        println!(
            "| {name} | {} | {median:.1} ms | {p90:.1} ms |",
            samples.len()
        );
    }
}
