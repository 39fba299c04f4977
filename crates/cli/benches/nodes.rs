//! Benchmark: several `cronium serve` nodes on one PostgreSQL: trivial jobs per second with one, two and three nodes, the time from `kill -9` of a job's node to the job running on another, and scheduling lateness of 1,000 every-minute crons on one node and on three.
//!
//! Every node is a release `cronium serve` process with 8 job slots, all on
//! the throwaway test cluster of PostgreSQL (`fsync=off`), all on this
//! machine's cores. `CRONIUM_BENCH_ONLY=throughput|takeover|lateness` runs
//! one part; `CRONIUM_BENCH_LATENESS_SECS` (default 65) sets how long the
//! crons are watched.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{Serve, quantile, runner, serve_with};
use cronium_store::testing::TestPostgres;
use serde_json::{Value, json};

/// The master key every node of one database shares.
const KEY: &str = "0d6b1f3c5e7a9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f1a3c5e7b9d";
const JOBS: usize = 600;
const CRONS: usize = 1000;

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .to_utc()
}

/// `nodes` nodes on a fresh database; returns them and the database's URL.
fn cluster(runner: &Path, nodes: usize, env: &[(&str, &str)]) -> (Vec<Serve>, String) {
    let database = TestPostgres::fresh_database();
    // The first node migrates the database; the others join it.
    let all = (0..nodes).map(|_| node(runner, &database, env)).collect();
    (all, database)
}

fn node(runner: &Path, database: &str, env: &[(&str, &str)]) -> Serve {
    let mut all_env = vec![("CRONIUM_MASTER_KEY", KEY)];
    all_env.extend_from_slice(env);
    serve_with(runner, Some(database), &all_env)
}

fn finished(node: &Serve) -> u64 {
    ["succeeded", "failed"]
        .iter()
        .map(|s| {
            node.get(&format!("/jobs?status={s}&limit=1"))["total"]
                .as_u64()
                .unwrap()
        })
        .sum()
}

/// Every job of the database since `from`, through one node's API.
fn jobs_since(node: &Serve, from: DateTime<Utc>) -> Vec<Value> {
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let page = node.get(&format!(
            "/jobs?since={}&limit=500&offset={offset}",
            from.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ));
        let items = page["items"].as_array().unwrap().clone();
        offset += items.len();
        let done = items.is_empty() || offset as u64 >= page["total"].as_u64().unwrap();
        all.extend(items);
        if done {
            return all;
        }
    }
}

fn throughput(runner: &Path) {
    for nodes in 1..=3 {
        let (cluster, _) = cluster(runner, nodes, &[]);
        let event = cluster[0].post(
            "/events",
            &json!({ "name": "trivial", "interpreter": "bash", "content": "true\n",
                     "overlap": "allow" }),
        );
        let run = format!("/events/{}/run", event["id"]);
        // Warm-up: every node has run something.
        for _ in 0..10 * nodes {
            cluster[0].post(&run, &json!({}));
        }
        while finished(&cluster[0]) < 10 * nodes as u64 {
            std::thread::sleep(Duration::from_millis(20));
        }
        let pids: Vec<u32> = cluster.iter().map(Serve::pid).collect();
        let (busy_before, nodes_before, pg_before) = (busy(), cpu_of(&pids), cpu_of(&postgres()));
        let started = Instant::now();
        for _ in 0..JOBS {
            cluster[0].post(&run, &json!({}));
        }
        let target = (JOBS + 10 * nodes) as u64;
        while finished(&cluster[0]) < target {
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = started.elapsed();
        // Where the machine's CPU went meanwhile (clock ticks).
        let all = (busy() - busy_before) as f64;
        let servers = (cpu_of(&pids) - nodes_before) as f64;
        let database = (cpu_of(&postgres()) - pg_before) as f64;
        let cores = all / ticks_per_second() / took.as_secs_f64();
        println!(
            "throughput, {nodes} node(s): {JOBS} trivial jobs queued at once through one node's API, \
             all finished in {:.2} s: {:.0} jobs/s; CPU busy {cores:.2} of {} cores: \
             cronium serve {:.0} %, PostgreSQL {:.0} %, the rest (runners, bash, this client) {:.0} %",
            took.as_secs_f64(),
            JOBS as f64 / took.as_secs_f64(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            100.0 * servers / all,
            100.0 * database / all,
            100.0 * (all - servers - database) / all,
        );
    }
}

/// Clock ticks the machine's CPUs spent busy so far (`/proc/stat`).
fn busy() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    cpu.iter().take(8).sum::<u64>() - cpu[3] - cpu[4]
}

/// Clock ticks the processes `pids` spent on a CPU so far (user + system).
fn cpu_of(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // Fields after the command's closing parenthesis; utime, stime are 14 and 15.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let fields: Vec<&str> = rest.split(' ').collect();
            fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
        })
        .sum()
}

/// Every PostgreSQL server process on the machine.
fn postgres() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .collect()
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// `kill -9` of the node running a job → the job running on the other
/// node, `rounds` times, with the given lease.
fn takeover(runner: &Path, lease: &str, rounds: usize) {
    let env = [("CRONIUM_JOB_LEASE", lease)];
    let (mut nodes, database) = cluster(runner, 2, &env);
    let dir = tempfile::tempdir().unwrap();
    let mut samples = Vec::new();
    for round in 0..rounds {
        let trace = dir.path().join(format!("trace-{round}"));
        // The first attempt runs long; the retry ends at once.
        let script = format!(
            "echo start >> {t}\nif [ $(grep -c start {t}) -eq 1 ]; then sleep 120; fi\n",
            t = trace.display()
        );
        let event = nodes[0].post(
            "/events",
            &json!({ "name": format!("victim {round}"), "interpreter": "bash",
                     "content": script, "retries": 1, "retryDelay": "1s" }),
        );
        let job = nodes[0].post(&format!("/events/{}/run", event["id"]), &json!({}));
        let id = job["id"].as_i64().unwrap();
        let owner = loop {
            let j = nodes[0].get(&format!("/jobs/{id}"));
            if j["status"] == "running" && trace.exists() {
                break j["leaseOwner"].as_str().unwrap().to_string();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The lease owner is "host/pid/…": kill that node.
        let pid: u32 = owner.split('/').nth(1).unwrap().parse().unwrap();
        let victim = nodes.iter().position(|n| n.pid() == pid).unwrap();
        let other = 1 - victim;
        let killed = Instant::now();
        nodes[victim].kill();
        loop {
            let j = nodes[other].get(&format!("/jobs/{id}"));
            if j["attempt"] == 2 && (j["status"] == "running" || j["status"] == "succeeded") {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(120),
                "never taken over: {j}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        samples.push(killed.elapsed());
        // A fresh node takes the killed one's place for the next round.
        nodes[victim] = node(runner, &database, &env);
    }
    let mut sorted = samples.clone();
    println!(
        "takeover, lease {lease}: kill -9 of the job's node → the job running on the other node: \
         median {:.2} s, min {:.2} s, max {:.2} s over {rounds} rounds",
        quantile(&mut sorted, 0.5) / 1000.0,
        samples.iter().min().unwrap().as_secs_f64(),
        samples.iter().max().unwrap().as_secs_f64(),
    );
}

/// Lateness (`startedAt − scheduledAt`) of 1,000 crons firing once a
/// minute each, 16–17 in every second, watched for `seconds`.
fn lateness(runner: &Path, nodes: usize, seconds: u64) {
    let (cluster, _) = cluster(runner, nodes, &[]);
    for i in 0..CRONS {
        cluster[i % nodes].post(
            "/events",
            &json!({ "name": format!("cron {i}"), "interpreter": "bash", "content": "true\n",
                     "schedule": { "type": "cron", "cron": format!("{} * * * * *", i % 60) } }),
        );
    }
    let from = Utc::now() + chrono::TimeDelta::seconds(2);
    std::thread::sleep(Duration::from_secs(seconds));
    let until = Utc::now() - chrono::TimeDelta::seconds(5);
    let jobs: Vec<Value> = jobs_since(&cluster[0], from)
        .into_iter()
        .filter(|j| j["trigger"] == "schedule" && time(&j["scheduledAt"]) < until)
        .collect();
    let mut fires = std::collections::HashSet::new();
    let duplicates = jobs
        .iter()
        .filter(|j| {
            !fires.insert((
                j["eventId"].as_i64(),
                j["scheduledAt"].as_str().map(String::from),
            ))
        })
        .count();
    let mut late: Vec<Duration> = jobs
        .iter()
        .filter(|j| j["startedAt"].is_string())
        .map(|j| {
            (time(&j["startedAt"]) - time(&j["scheduledAt"]))
                .to_std()
                .unwrap_or_default()
        })
        .collect();
    let mut recorded: Vec<Duration> = jobs
        .iter()
        .map(|j| {
            (time(&j["createdAt"]) - time(&j["scheduledAt"]))
                .to_std()
                .unwrap_or_default()
        })
        .collect();
    let count = late.len();
    println!(
        "lateness, {nodes} node(s), {CRONS} every-minute crons, {count} fires over {seconds} s \
         ({duplicates} recorded twice): median {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         recording the fire: median {:.1} ms, p99 {:.1} ms",
        quantile(&mut late, 0.5),
        quantile(&mut late, 0.99),
        quantile(&mut late, 1.0),
        quantile(&mut recorded, 0.5),
        quantile(&mut recorded, 0.99),
    );
}

fn main() {
    let only = std::env::var("CRONIUM_BENCH_ONLY").ok();
    let wanted = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let runner = runner();
    if wanted("throughput") {
        throughput(&runner);
    }
    if wanted("takeover") {
        takeover(&runner, "10s", 5);
        takeover(&runner, "30s", 3);
    }
    if wanted("lateness") {
        let seconds: u64 = std::env::var("CRONIUM_BENCH_LATENESS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(65);
        for nodes in [1, 3] {
            lateness(&runner, nodes, seconds);
        }
    }
}
