//! Benchmark: `cronium import crontab` of a generated 500-line crontab against a fresh server, and the re-import that changes nothing.
//!
//! Run with `cargo bench -p cronium-cli --bench import_crontab`. Each round
//! starts a release `cronium serve` (SQLite, fresh data dir) and times, as
//! process wall time: the dry run, the import, and the re-import (which
//! finds every event unchanged). The comparison in the same round is the
//! floor of the same work through the API: the 500 `POST /api/v1/events`
//! of the import's bodies from one client, on a second fresh server.

mod common;

use std::time::{Duration, Instant};

use common::{quantile, runner, serve};
use serde_json::json;

const LINES: usize = 500;
const ROUNDS: usize = 5;

/// 500 schedule lines of various kinds, with a few settings between them.
fn crontab() -> String {
    let mut text = String::from("# generated\nSHELL=/bin/bash\nPATH=/usr/bin:/bin\nMAILTO=\"\"\n");
    let mut lines = 0;
    while lines < LINES {
        let i = lines;
        if i % 100 == 50 {
            text.push_str(&format!("CRON_TZ=Europe/Berlin\nBATCH={i}\n"));
        }
        let schedule = match i % 5 {
            0 => format!("{} * * * *", i % 60),
            1 => format!("{} {} * * *", i % 60, i % 24),
            2 => format!("*/{} * * * 1-5", i % 29 + 1),
            3 => "@daily".to_string(),
            _ => format!("0 {} 1,15 * *", i % 24),
        };
        text.push_str(&format!(
            "{schedule} /usr/local/bin/task-{i} --verbose >> /var/log/task-{i}.log 2>&1\n"
        ));
        lines += 1;
    }
    text
}

fn main() {
    let runner = runner();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crontab");
    std::fs::write(&file, crontab()).unwrap();
    let file = file.to_str().unwrap();
    let args = ["import", "crontab", file, "--timezone", "UTC"];
    let mut dry = Vec::new();
    let mut import = Vec::new();
    let mut again = Vec::new();
    let mut api = Vec::new();
    for _ in 0..ROUNDS {
        let server = serve(&runner);
        dry.push(server.cronium(&[&args[..], &["--dry-run"]].concat()));
        import.push(server.cronium(&args));
        let total = server.get("/events?limit=1")["total"].as_u64().unwrap();
        assert_eq!(total as usize, LINES);
        for _ in 0..3 {
            again.push(server.cronium(&args));
        }
        assert_eq!(
            server.get("/events?limit=1")["total"].as_u64().unwrap() as usize,
            LINES
        );
        // The floor: the same events' bodies posted by one client.
        let bodies: Vec<_> = server.get("/events?limit=500")["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                json!({
                    "name": e["name"], "description": e["description"], "interpreter": "bash",
                    "content": e["content"], "env": e["env"], "schedule": e["schedule"],
                    "tags": e["tags"],
                })
            })
            .collect();
        drop(server);
        let fresh = serve(&runner);
        let started = Instant::now();
        for body in &bodies {
            fresh.post("/events", body);
        }
        api.push(started.elapsed());
    }
    let row = |name: &str, samples: &mut Vec<Duration>| {
        let median = quantile(samples, 0.5);
        let per_line = median / LINES as f64;
        println!(
            "| {name} | {} | {median:.0} ms | {per_line:.2} ms |",
            samples.len()
        );
    };
    println!("| {LINES}-line crontab, fresh SQLite server | runs | median | per line |");
    println!("|---|---|---|---|");
    row("`cronium import crontab --dry-run`", &mut dry);
    row("`cronium import crontab` (500 created)", &mut import);
    row("re-import, nothing changed", &mut again);
    row(
        "API floor: 500 `POST /api/v1/events` from one client",
        &mut api,
    );
}
