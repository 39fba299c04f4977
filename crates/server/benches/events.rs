//! Benchmark: event create (payload v1 written) and update (new payload version, or none) throughput through the real server over loopback HTTP, on SQLite and PostgreSQL.
//!
//! Run with `cargo bench -p cronium-server --bench events` (and again with
//! `TMPDIR=/dev/shm` to put the data dir on tmpfs). For each backend it
//! starts the server with `cronium_server::start` (what `cronium serve`
//! does, minus signal handling) on a fresh data dir under `$TMPDIR` and a
//! fresh database, and drives it with 1 and 4 client threads, each with its
//! own `ureq` agent (one keep-alive connection). Measured, per backend and
//! client count:
//!
//! - `create`: `POST /api/v1/events`, a 4 KB bash script and 20 variables;
//!   every create builds payload v1 and writes it and its `.sha256` (each
//!   synced, then its directory).
//! - `update, script`: `PATCH` of the script on events already at more than
//!   the retention (5) versions, so each update writes a new version and
//!   prunes the oldest (rows, then files).
//! - `update, rename`: `PATCH` of the name only, which changes no payload
//!   input: the same request path, no payload written. The comparison.
//! - `get`: `GET /api/v1/events/{id}`, for reference.
//!
//! The variants are interleaved in rounds (every variant runs a block of
//! operations per round) so drift on the shared machine spreads over all of
//! them. Throughput is operations over the summed wall time of a variant's
//! blocks; latency is per request as the client sees it. Each phase checks
//! the server's `cronium_payloads_generated_total` moved by exactly what it
//! should (one per create and script update, none per rename or get).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cronium_server::Config;
use cronium_store::testing::TestPostgres;
use serde_json::{Value, json};

const CLIENTS: [usize; 2] = [1, 4];
/// Every variant runs `ROUNDS` blocks of `BLOCK` operations.
const ROUNDS: usize = 4;
const BLOCK: usize = 200;
/// Untimed creates after start-up.
const WARM_UP_CREATES: usize = 100;
/// The events updated, renamed and read, round robin.
const WORKING_SET: usize = 40;
/// The server's default payload retention (`CRONIUM_PAYLOAD_RETENTION`).
const RETENTION: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Create,
    UpdateScript,
    Rename,
    Get,
}

impl Op {
    const ALL: [Op; 4] = [Op::Create, Op::UpdateScript, Op::Rename, Op::Get];

    fn label(self) -> &'static str {
        match self {
            Op::Create => "create (payload v1 written)",
            Op::UpdateScript => "update, script (new version + prune)",
            Op::Rename => "update, rename (no payload)",
            Op::Get => "get",
        }
    }

    /// Payload versions each operation must generate.
    fn payloads(self) -> u64 {
        match self {
            Op::Create | Op::UpdateScript => 1,
            Op::Rename | Op::Get => 0,
        }
    }
}

/// A plausible 4 KB bash script, as in the payload build benchmark, ending
/// in a revision line so updates can change it.
fn script(revision: usize) -> String {
    let mut script = String::from("#!/usr/bin/env bash\nset -euo pipefail\n\n");
    let mut i = 0;
    while script.len() < 4096 {
        script.push_str(&format!(
            "# step {i}: fetch, check and archive batch {i}\n\
             curl -fsS \"$API_URL/batches/{i}\" -H \"Authorization: Bearer $TOKEN\" -o \"$WORK/batch-{i}.json\"\n\
             jq -e '.items | length > 0' \"$WORK/batch-{i}.json\" >/dev/null || echo \"batch {i} empty\" >&2\n\
             gzip -9 \"$WORK/batch-{i}.json\" && mv \"$WORK/batch-{i}.json.gz\" \"$ARCHIVE_DIR/\"\n\n"
        ));
        i += 1;
    }
    script.truncate(4070);
    script.push_str(&format!("\n# revision {revision}\n"));
    script
}

fn event_body(name: &str) -> Value {
    let env: BTreeMap<String, String> = (0..20)
        .map(|i| {
            (
                format!("SETTING_{i:02}"),
                format!("value-{i}-{}", "x".repeat(i % 7 * 4)),
            )
        })
        .collect();
    json!({
        "name": name,
        "interpreter": "bash",
        "content": script(0),
        "env": env,
        "schedule": { "type": "cron", "cron": "*/15 * * * *", "timezone": "Europe/Berlin" },
        "timeout": "10m",
        "tags": ["bench", "nightly"],
    })
}

/// One client: its own agent, so its own keep-alive connection.
struct Client(common::Api);

impl Client {
    fn new(base: &str, token: &str) -> Client {
        Client(common::Api::new(base, token))
    }

    /// Sends a request and returns the JSON body, panicking unless `status`.
    fn json(&self, method: &str, path: &str, body: Option<&Value>, status: u16) -> Value {
        let (got, json) = self
            .0
            .send(method, path, body)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, status, "{method} {path}: {json}");
        json
    }

    fn metric(&self, name: &str) -> u64 {
        let text = self.0.text("/metrics").unwrap_or_else(|e| panic!("{e}"));
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
    }
}

/// What the clients of one variant send. `n` numbers operations across the
/// whole run (never reused, so names and scripts always change).
fn run_op(client: &Client, op: Op, n: usize, set: &[i64]) {
    let id = set[n % set.len()];
    match op {
        Op::Create => {
            let event = client.json(
                "POST",
                "/api/v1/events",
                Some(&event_body(&format!("bench event {n}"))),
                201,
            );
            assert_eq!(event["payloadVersion"], 1, "{event}");
        }
        Op::UpdateScript => {
            let event = client.json(
                "PATCH",
                &format!("/api/v1/events/{id}"),
                Some(&json!({ "content": script(n) })),
                200,
            );
            assert!(event["payloadVersion"].as_u64() > Some(1), "{event}");
        }
        Op::Rename => {
            client.json(
                "PATCH",
                &format!("/api/v1/events/{id}"),
                Some(&json!({ "name": format!("bench event {id} renamed {n}") })),
                200,
            );
        }
        Op::Get => {
            let event = client.json("GET", &format!("/api/v1/events/{id}"), None, 200);
            assert_eq!(event["id"], id);
        }
    }
}

/// Latencies and wall time gathered over a variant's blocks.
#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    wall: Duration,
}

/// Runs `count` operations of `op` spread over `clients` threads, which
/// take the next operation number from a shared counter.
fn run_block(
    clients: &[Client],
    op: Op,
    count: usize,
    next: &AtomicUsize,
    set: &[i64],
    samples: &mut Samples,
) {
    let end = next.load(Ordering::SeqCst) + count;
    let barrier = Barrier::new(clients.len() + 1);
    let (wall, latencies) = std::thread::scope(|scope| {
        let workers: Vec<_> = clients
            .iter()
            .map(|client| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut times = Vec::with_capacity(count);
                    barrier.wait();
                    loop {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= end {
                            break;
                        }
                        let start = Instant::now();
                        run_op(client, op, n, set);
                        times.push(start.elapsed());
                    }
                    times
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let times: Vec<Duration> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("client thread"))
            .collect();
        (start.elapsed(), times)
    });
    // The counter overshoots by one per thread; keep numbers unique anyway.
    next.store(end + clients.len(), Ordering::SeqCst);
    assert_eq!(latencies.len(), count);
    samples.latencies.extend(latencies);
    samples.wall += wall;
}

struct Row {
    backend: Backend,
    clients: usize,
    op: Op,
    ops: usize,
    per_sec: f64,
    median: Duration,
    p90: Duration,
    p99: Duration,
}

fn summarize(backend: Backend, clients: usize, op: Op, mut samples: Samples) -> Row {
    samples.latencies.sort();
    let n = samples.latencies.len();
    let at = |q: f64| samples.latencies[((n as f64 * q) as usize).min(n - 1)];
    Row {
        backend,
        clients,
        op,
        ops: n,
        per_sec: n as f64 / samples.wall.as_secs_f64(),
        median: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    }
}

/// The file system `path` is on, from `/proc/self/mounts` (longest match).
fn file_system(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            let point = point.replace("\\040", " ");
            path.starts_with(&point)
                .then(|| (point.len(), format!("{kind} ({device} on {point})")))
        })
        .max()
        .map(|(_, description)| description)
        .unwrap_or_else(|| "unknown".into())
}

fn bench_backend(backend: Backend, rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".into();
    config.payload_retention = RETENTION;
    config.runner = Some(common::runner());
    config.database_url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(TestPostgres::fresh_database()),
    };
    // The same runtime `cronium serve` builds: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let running = runtime
        .block_on(cronium_server::start(config))
        .expect("server starts");
    let base = format!("http://{}", running.local_addr());
    let data_dir = running.data_dir().to_path_buf();
    let token = std::fs::read_to_string(data_dir.join("admin.token")).expect("admin.token");
    let token = token.trim();
    println!(
        "{}: data dir {} on {}",
        backend.name(),
        data_dir.display(),
        file_system(&data_dir)
    );

    // Warm-up: creates, then the working set pushed past the retention so
    // every timed script update prunes.
    let setup = Client::new(&base, token);
    let next = AtomicUsize::new(0);
    let mut set = Vec::new();
    for _ in 0..WARM_UP_CREATES {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let event = setup.json(
            "POST",
            "/api/v1/events",
            Some(&event_body(&format!("bench event {n}"))),
            201,
        );
        if set.len() < WORKING_SET {
            set.push(event["id"].as_i64().expect("id"));
        }
    }
    for _ in 0..WORKING_SET * RETENTION {
        let n = next.fetch_add(1, Ordering::SeqCst);
        run_op(&setup, Op::UpdateScript, n, &set);
    }
    for op in [Op::Rename, Op::Get] {
        for _ in 0..WORKING_SET {
            let n = next.fetch_add(1, Ordering::SeqCst);
            run_op(&setup, op, n, &set);
        }
    }

    let pools: Vec<Vec<Client>> = CLIENTS
        .iter()
        .map(|&c| (0..c).map(|_| Client::new(&base, token)).collect())
        .collect();
    for pool in &pools {
        for client in pool {
            // Opens each client's connection before timing starts.
            client.json("GET", &format!("/api/v1/events/{}", set[0]), None, 200);
        }
    }
    let mut samples: BTreeMap<(usize, Op), Samples> = BTreeMap::new();
    let metric = "cronium_payloads_generated_total";
    for _ in 0..ROUNDS {
        for (pool, &clients) in pools.iter().zip(&CLIENTS) {
            for op in Op::ALL {
                let before = setup.metric(metric);
                run_block(
                    pool,
                    op,
                    BLOCK,
                    &next,
                    &set,
                    samples.entry((clients, op)).or_default(),
                );
                let generated = setup.metric(metric) - before;
                assert_eq!(generated, op.payloads() * BLOCK as u64, "{op:?}");
            }
        }
    }

    // Pruning kept exactly `RETENTION` versions (two files each) per event of the set.
    for id in &set {
        let files = std::fs::read_dir(data_dir.join("payloads").join(id.to_string()))
            .expect("payload dir")
            .count();
        assert_eq!(files, 2 * RETENTION, "event {id}");
    }

    runtime.block_on(running.stop()).expect("clean stop");
    for ((clients, op), s) in samples {
        rows.push(summarize(backend, clients, op, s));
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let started = Instant::now();
    let tmp = std::env::temp_dir();
    println!(
        "temp dir {} on {}; {} rounds × {BLOCK} operations per variant",
        tmp.display(),
        file_system(&tmp),
        ROUNDS
    );
    println!(
        "SQLite: WAL, synchronous=NORMAL (no fsync per commit). PostgreSQL: the throwaway \
         test cluster (fsync=off, synchronous_commit=off), its data dir under the same temp dir."
    );
    let mut rows = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        bench_backend(backend, &mut rows);
    }
    println!();
    println!("| backend | clients | operation | ops | ops/s | median | p90 | p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} |",
            r.backend.name(),
            r.clients,
            r.op.label(),
            r.ops,
            r.per_sec,
            ms(r.median),
            ms(r.p90),
            ms(r.p99)
        );
    }
    println!();
    println!("payload cost (median script update − median rename, same backend and clients):");
    for r in rows.iter().filter(|r| r.op == Op::UpdateScript) {
        let rename = rows
            .iter()
            .find(|x| x.backend == r.backend && x.clients == r.clients && x.op == Op::Rename)
            .expect("rename row");
        println!(
            "  {} {} client(s): +{:.2} ms ({:.0} vs {:.0} ops/s)",
            r.backend.name(),
            r.clients,
            (r.median.as_secs_f64() - rename.median.as_secs_f64()) * 1e3,
            r.per_sec,
            rename.per_sec
        );
    }
    println!("\ntotal {:.0} s", started.elapsed().as_secs_f64());
}
