//! Benchmark: time to render the web UI's events list, jobs list and job pages (a 10 MiB log and a 20-line one) with 1,000 events and 100,000 jobs, on SQLite and PostgreSQL, over loopback HTTP with a signed-in session.
//!
//! Run with `cargo bench -p cronium-server --bench ui`
//! (`CRONIUM_BENCH_ONLY=sqlite|postgres`, `CRONIUM_BENCH_ROUNDS=200`).
//!
//! For each backend it starts the real server (`cronium_server::start`, what
//! `cronium serve` runs) on a fresh data dir and database, creates 1,000
//! events through the API (what a user would do, payloads included), then
//! seeds the rest with bulk SQL on its own connection, since 100,000 jobs
//! run for real would take most of an hour: 100,000 finished jobs spread
//! over the events, one job whose log is 10 MiB (~105,000 lines of 100
//! bytes, with ANSI colours) and one whose log is 20 such lines. PostgreSQL
//! is then `VACUUM ANALYZE`d, as its autovacuum would do after such a load; SQLite
//! is left as the server leaves it.
//!
//! It signs in through the sign-in form (an admin password set the way
//! `cronium user passwd` does) and times, on one keep-alive connection,
//! `ROUNDS` interleaved rounds (after a warm-up) of `GET /events`,
//! `GET /jobs`, `GET /jobs/{big}`, `GET /jobs/{small}` and, for reference,
//! the viewer's "earlier lines" from the middle of the big log. Each
//! response is checked for what it must show.

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use cronium_server::Config;
use cronium_store::testing::TestPostgres;
use serde_json::json;

const EVENTS: usize = 1000;
const JOBS: i64 = 100_000;
/// The big log's size and each seeded line's length (see [`log_line`]).
const BIG_LOG_BYTES: i64 = 10 * 1024 * 1024;
const SMALL_LOG_LINES: i64 = 20;
/// One page of the viewer (`PAGE_LINES`): the same tail as the big log's.
const PAGE_LOG_LINES: i64 = 500;
const WARM_UP: usize = 20;
const PASSWORD: &str = "bench password, long enough";
/// The aim for every page.
const AIM_P95: Duration = Duration::from_millis(20);

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

/// Line `i` of a seeded log as the SQL below makes it: fixed width, so the
/// big log's size is exact.
fn log_line(i: i64) -> String {
    format!(
        "INFO line {i:07}: processed batch {:04} of the nightly export, 128 rows, \u{1b}[32mok\u{1b}[0m in {:02} ms\n",
        i / 128,
        i % 97
    )
}

const SQLITE_JOBS: &str = "\
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $1 - 1) \
INSERT INTO jobs (event_id, payload_version, \"trigger\", status, attempt, scheduled_at, \
    run_after, started_at, finished_at, exit_code, error, metadata, created_at, updated_at) \
SELECT $2 + i % $3, 1, 'manual', CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'succeeded' END, 1, \
    $4 + i * $5, $4 + i * $5, $4 + i * $5 + 4000, $4 + i * $5 + 1204000, \
    CASE WHEN i % 20 = 0 THEN 1 ELSE 0 END, NULL, '{\"durationMs\":1200}', \
    $4 + i * $5, $4 + i * $5 + 1204000 \
FROM n";

const POSTGRES_JOBS: &str = "\
INSERT INTO jobs (event_id, payload_version, \"trigger\", status, attempt, scheduled_at, \
    run_after, started_at, finished_at, exit_code, error, metadata, created_at, updated_at) \
SELECT $2::bigint + i % $3::bigint, 1, 'manual', CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'succeeded' END, 1, \
    t, t, t + interval '4 ms', t + interval '1204 ms', \
    CASE WHEN i % 20 = 0 THEN 1 ELSE 0 END, NULL, '{\"durationMs\":1200}', t, \
    t + interval '1204 ms' \
FROM generate_series(0, $1::bigint - 1) AS i, \
    LATERAL (SELECT $4::timestamptz + make_interval(secs => (i * $5::bigint / 1e6)::float8) AS t) AS at";

const SQLITE_LOG: &str = "\
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
INSERT INTO job_logs (job_id, seq, stream, at, data, server) \
SELECT $1, i, CASE WHEN i % 50 = 0 THEN 'stderr' ELSE 'stdout' END, $3 + i * 1000, \
    CAST(printf('INFO line %07d: processed batch %04d of the nightly export, 128 rows, ' \
        || char(27) || '[32mok' || char(27) || '[0m in %02d ms', i, i / 128, i % 97) \
        || char(10) AS BLOB), NULL \
FROM n";

const POSTGRES_LOG: &str = "\
INSERT INTO job_logs (job_id, seq, stream, at, data, server) \
SELECT $1::bigint, i, CASE WHEN i % 50 = 0 THEN 'stderr' ELSE 'stdout' END, \
    $3::timestamptz + make_interval(secs => i / 1000.0), \
    convert_to(format('INFO line %s: processed batch %s of the nightly export, 128 rows, ' \
        || chr(27) || '[32mok' || chr(27) || '[0m in %s ms', lpad(i::text, 7, '0'), \
        lpad((i / 128)::text, 4, '0'), lpad((i % 97)::text, 2, '0')) || chr(10), 'UTF8'), NULL \
FROM generate_series(1, $2::bigint) AS i";

/// One finished job of event `$1` at `$2`, whose log the seeding writes.
const NEW_JOB: &str = "\
INSERT INTO jobs (event_id, payload_version, \"trigger\", status, attempt, scheduled_at, run_after, \
    started_at, finished_at, exit_code, metadata, created_at, updated_at) \
VALUES ($1, 1, 'manual', 'succeeded', 1, $2, $2, $2, $2, 0, '{\"durationMs\":300000}', $2, $2) \
RETURNING id";

/// The ids of the jobs whose pages are timed.
struct Seeded {
    big: i64,
    page: i64,
    small: i64,
    big_lines: i64,
    newest_job: i64,
}

/// Seeds jobs and logs on the database at `url`, the events `first..first
/// + EVENTS` being there already.
async fn seed(backend: Backend, url: &str, first_event: i64, now: DateTime<Utc>) -> Seeded {
    let line_len = log_line(1).len() as i64;
    let big_lines = (BIG_LOG_BYTES + line_len - 1) / line_len;
    let minute: i64 = 60_000_000;
    let start = now - TimeDelta::minutes(JOBS + 10);
    let log_at = now - TimeDelta::minutes(5);
    macro_rules! run {
        ($pool:expr, $micros:expr) => {{
            let pool = $pool;
            sqlx::query(match backend {
                Backend::Sqlite => SQLITE_JOBS,
                Backend::Postgres => POSTGRES_JOBS,
            })
            .bind(JOBS)
            .bind(first_event)
            .bind(EVENTS as i64)
            .bind($micros(start))
            .bind(minute)
            .execute(&pool)
            .await
            .expect("jobs seeded");
            // The jobs whose pages are timed: the newest, of the first event.
            let mut ids = Vec::new();
            for _ in 0..3 {
                let (id,): (i64,) = sqlx::query_as(NEW_JOB)
                    .bind(first_event)
                    .bind($micros(log_at))
                    .fetch_one(&pool)
                    .await
                    .expect("a job");
                ids.push(id);
            }
            let (big, page, small) = (ids[0], ids[1], ids[2]);
            for (job, lines) in [
                (big, big_lines),
                (page, PAGE_LOG_LINES),
                (small, SMALL_LOG_LINES),
            ] {
                sqlx::query(match backend {
                    Backend::Sqlite => SQLITE_LOG,
                    Backend::Postgres => POSTGRES_LOG,
                })
                .bind(job)
                .bind(lines)
                .bind($micros(log_at))
                .execute(&pool)
                .await
                .expect("log seeded");
            }
            let (bytes,): (i64,) = sqlx::query_as(match backend {
                Backend::Sqlite => {
                    "SELECT CAST(SUM(length(data)) AS BIGINT) FROM job_logs WHERE job_id = $1"
                }
                Backend::Postgres => {
                    "SELECT CAST(SUM(octet_length(data)) AS BIGINT) FROM job_logs WHERE job_id = $1"
                }
            })
            .bind(big)
            .fetch_one(&pool)
            .await
            .expect("log size");
            assert_eq!(bytes, big_lines * line_len, "the big log's size");
            let (jobs,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs")
                .fetch_one(&pool)
                .await
                .expect("job count");
            assert_eq!(jobs, JOBS + 3);
            if backend == Backend::Postgres {
                sqlx::query("VACUUM ANALYZE")
                    .execute(&pool)
                    .await
                    .expect("vacuum");
            }
            pool.close().await;
            Seeded {
                big,
                page,
                small,
                big_lines,
                newest_job: small,
            }
        }};
    }
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.expect("SQLite");
            run!(pool, |t: DateTime<Utc>| t.timestamp_micros())
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.expect("PostgreSQL");
            run!(pool, |t: DateTime<Utc>| t)
        }
    }
}

/// A signed-in browser: one keep-alive connection and the session cookie.
struct Browser {
    agent: ureq::Agent,
    base: String,
    cookie: String,
}

impl Browser {
    fn sign_in(base: &str) -> Browser {
        let agent = ureq::Agent::new_with_config(
            ureq::config::Config::builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(Duration::from_secs(60)))
                .build(),
        );
        let form = format!(
            "name=admin&password={}&next=%2F",
            PASSWORD.replace(' ', "+").replace(',', "%2C")
        );
        let response = agent
            .post(format!("{base}/login"))
            .header("origin", base)
            .content_type("application/x-www-form-urlencoded")
            .send(form)
            .expect("sign-in");
        assert_eq!(response.status().as_u16(), 303, "sign-in refused");
        let set = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("a session cookie");
        let cookie = set.split(';').next().expect("name=value").to_string();
        Browser {
            agent,
            base: base.to_string(),
            cookie,
        }
    }

    /// `GET path`: the body, which must be a 200.
    fn get(&self, path: &str) -> String {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
}

/// A page the benchmark times, and what its body must contain.
struct Target {
    label: String,
    path: String,
    must_show: Vec<String>,
    must_not_show: Vec<String>,
}

struct Row {
    backend: Backend,
    label: String,
    bytes: usize,
    median: Duration,
    p95: Duration,
    p99: Duration,
    max: Duration,
}

fn bench_backend(backend: Backend, rounds: usize, rows: &mut Vec<Row>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".into();
    config.runner = Some(common::runner());
    // The seeded jobs span ~70 days: pruning must leave them alone.
    config.job_retention = Duration::from_secs(10 * 365 * 86_400);
    config.job_keep = u32::MAX;
    config.database_url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(TestPostgres::fresh_database()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let running = runtime
        .block_on(cronium_server::start(config.clone()))
        .expect("server starts");
    let base = format!("http://{}", running.local_addr());
    let data_dir = running.data_dir().to_path_buf();
    let token = std::fs::read_to_string(data_dir.join("admin.token")).expect("admin.token");
    let api = common::Api::new(&base, token.trim());

    let started = Instant::now();
    let mut ids = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        // A yearly cron: a schedule to show, and no fire during the run.
        let event = api
            .call(
                "POST",
                "/events",
                Some(&json!({
                    "name": format!("nightly export {i:04}"),
                    "interpreter": "bash",
                    "content": format!("#!/usr/bin/env bash\nset -euo pipefail\n./export.sh --part {i}\n"),
                    "schedule": { "type": "cron", "cron": "0 3 1 1 *", "timezone": "Europe/Berlin" },
                    "tags": ["bench", "export"],
                })),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        ids.push(event["id"].as_i64().expect("id"));
    }
    // The seeding below gives jobs to ids first..first + EVENTS.
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "event ids in a row"
    );
    let events_took = started.elapsed();
    let url = config
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("cronium.db").display()));
    let seeded = runtime.block_on(seed(backend, &url, ids[0], Utc::now()));
    println!(
        "{}: {EVENTS} events through the API in {:.1} s; {JOBS} jobs and logs of {}, {PAGE_LOG_LINES} and {SMALL_LOG_LINES} lines ({:.1} MiB) seeded in {:.1} s",
        backend.name(),
        events_took.as_secs_f64(),
        seeded.big_lines,
        (seeded.big_lines * log_line(1).len() as i64) as f64 / 1048576.0,
        (started.elapsed() - events_took).as_secs_f64()
    );

    runtime
        .block_on(async {
            let store = cronium_server::users::open_store(&config).await?;
            cronium_server::users::apply(
                store.as_ref(),
                cronium_server::users::UserAction::Passwd {
                    name: "admin".into(),
                    password: cronium_core::Password::new(PASSWORD.into()).expect("a password"),
                },
            )
            .await
        })
        .expect("admin password set");
    let browser = Browser::sign_in(&base);

    let last = seeded.big_lines;
    let middle = last / 2;
    let targets = [
        Target {
            label: "events list (`GET /events`, 50 of 1,000)".into(),
            path: "/events".into(),
            must_show: vec!["nightly export 0000".into(), "nightly export 0049".into()],
            must_not_show: vec!["nightly export 0050".into()],
        },
        Target {
            label: "jobs list (`GET /jobs`, 100 of 100,003)".into(),
            path: "/jobs".into(),
            must_show: vec![
                format!("/jobs/{}\"", seeded.newest_job),
                "nightly export 0999".into(),
            ],
            must_not_show: vec![],
        },
        Target {
            label: format!("job page, 10 MiB log ({last} lines)"),
            path: format!("/jobs/{}", seeded.big),
            must_show: vec![
                format!("line {last:07}"),
                format!("data-seq=\"{}\"", last - 499),
            ],
            must_not_show: vec![format!("data-seq=\"{}\"", last - 500)],
        },
        Target {
            label: format!("job page, {PAGE_LOG_LINES}-line log"),
            path: format!("/jobs/{}", seeded.page),
            must_show: vec!["line 0000001".into(), format!("line {PAGE_LOG_LINES:07}")],
            must_not_show: vec![],
        },
        Target {
            label: format!("job page, small log ({SMALL_LOG_LINES} lines)"),
            path: format!("/jobs/{}", seeded.small),
            must_show: vec!["line 0000001".into(), "line 0000020".into()],
            must_not_show: vec![],
        },
        Target {
            label: "earlier lines, middle of the 10 MiB log (500)".into(),
            path: format!("/jobs/{}/lines?before={middle}", seeded.big),
            must_show: vec![format!("line {:07}", middle - 1)],
            must_not_show: vec![format!("line {middle:07}")],
        },
    ];
    let mut bytes = vec![0; targets.len()];
    for (target, size) in targets.iter().zip(&mut bytes) {
        let body = browser.get(&target.path);
        for text in &target.must_show {
            assert!(body.contains(text.as_str()), "{}: no {text}", target.path);
        }
        for text in &target.must_not_show {
            assert!(!body.contains(text.as_str()), "{}: {text}", target.path);
        }
        *size = body.len();
    }
    let mut samples = vec![Vec::with_capacity(rounds); targets.len()];
    for round in 0..WARM_UP + rounds {
        for (target, times) in targets.iter().zip(&mut samples) {
            let start = Instant::now();
            let body = browser.get(&target.path);
            let took = start.elapsed();
            assert!(!body.is_empty());
            if round >= WARM_UP {
                times.push(took);
            }
        }
    }
    runtime.block_on(running.stop()).expect("clean stop");
    for ((target, mut times), bytes) in targets.into_iter().zip(samples).zip(bytes) {
        times.sort();
        let n = times.len();
        let at = |q: f64| times[((n as f64 * q) as usize).min(n - 1)];
        rows.push(Row {
            backend,
            label: target.label,
            bytes,
            median: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
            max: times[n - 1],
        });
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let started = Instant::now();
    let only = std::env::var("CRONIUM_BENCH_ONLY").unwrap_or_default();
    let rounds: usize = std::env::var("CRONIUM_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    println!(
        "{rounds} rounds (after {WARM_UP} warm-up), each page once per round, one keep-alive connection"
    );
    let mut rows = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if only.is_empty() || only.eq_ignore_ascii_case(&format!("{backend:?}")) {
            bench_backend(backend, rounds, &mut rows);
        }
    }
    println!();
    println!("| backend | page | bytes | median | p95 | p99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {}{} | {} | {} |",
            r.backend.name(),
            r.label,
            r.bytes,
            ms(r.median),
            ms(r.p95),
            if r.p95 > AIM_P95 { " (over 20 ms)" } else { "" },
            ms(r.p99),
            ms(r.max)
        );
    }
    println!();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let of = |prefix: &str| {
            rows.iter()
                .find(|r| r.backend == backend && r.label.starts_with(prefix))
        };
        let big = of("job page, 10 MiB");
        for other in [of("job page, 500-line"), of("job page, small")] {
            if let (Some(big), Some(other)) = (big, other) {
                println!(
                    "{}: {} ÷ {}: median {:.2}×, p95 {:.2}×",
                    backend.name(),
                    big.label,
                    other.label,
                    big.median.as_secs_f64() / other.median.as_secs_f64(),
                    big.p95.as_secs_f64() / other.p95.as_secs_f64()
                );
            }
        }
    }
    println!("\ntotal {:.0} s", started.elapsed().as_secs_f64());
}
