//! What must hold of a cluster after any fault, checked from the database (by its own clock), the scripts' trace file and what followers printed; every violation is named, and all are reported together.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat};
use cronium_store::testing::TestPostgres;

/// What one `cronium job logs ID --follow` printed on its standard output.
#[derive(Debug, Clone)]
pub struct Followed {
    pub job: i64,
    /// The node it followed through.
    pub node: String,
    pub stdout: Vec<u8>,
    /// Whether it ended by itself (its job ended), rather than being killed.
    pub finished: bool,
}

/// Everything the checker looks at.
pub struct Subject<'a> {
    pub pg: &'a TestPostgres,
    pub db: &'a str,
    /// Events scheduled `every` (id, interval): their fires are checked.
    pub every: &'a [(i64, Duration)],
    pub trace: &'a Path,
    pub followers: &'a [Followed],
    /// How late recovery or a claim may be after the cluster settled (a
    /// scheduler tick, a worker's poll) before a job counts as stuck.
    pub grace: Duration,
}

/// Every violation of every invariant, each naming the job or event.
pub fn check(s: &Subject) -> Vec<String> {
    let mut all = Vec::new();
    all.extend(fires(s.pg, s.db, s.every, s.grace));
    all.extend(leases(s.pg, s.db, s.grace));
    all.extend(progress(s.pg, s.db, s.grace));
    all.extend(log_sequences(s.pg, s.db));
    let trace = std::fs::read_to_string(s.trace).unwrap_or_default();
    all.extend(overlaps(&trace));
    all.extend(stored_output(s.pg, s.db, &trace));
    all.extend(followers(s.pg, s.db, s.followers));
    all
}

/// Panics listing every violation, if there is any.
#[track_caller]
pub fn assert_holds(violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{} invariant(s) violated:\n  {}",
        violations.len(),
        violations.join("\n  ")
    );
}

fn rows(pg: &TestPostgres, db: &str, sql: &str) -> Vec<Vec<String>> {
    let out = pg
        .psql(db, sql)
        .unwrap_or_else(|e| panic!("checker query failed: {sql}: {e}"));
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(String::from).collect())
        .collect()
}

/// An instant given as microseconds since the epoch, as RFC 3339.
pub fn at(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_else(|| format!("{micros}µs"))
}

fn secs(micros: i64) -> String {
    format!("{:.1}s", micros as f64 / 1e6)
}

const MICROS: &str = "(extract(epoch FROM {})*1000000)::bigint";

fn micros_of(column: &str) -> String {
    MICROS.replace("{}", column)
}

fn db_now(pg: &TestPostgres, db: &str) -> i64 {
    rows(pg, db, &format!("SELECT {}", micros_of("now()")))[0][0]
        .parse()
        .unwrap()
}

/// Every fire recorded once; between an event's first and last fire none
/// missing (a missed fire is a row, not a gap); and the schedule still
/// firing.
pub fn fires(
    pg: &TestPostgres,
    db: &str,
    every: &[(i64, Duration)],
    grace: Duration,
) -> Vec<String> {
    let mut out = Vec::new();
    for row in rows(
        pg,
        db,
        &format!(
            "SELECT j.event_id, e.name, {}, count(*) FROM jobs j JOIN events e ON e.id = j.event_id \
             WHERE j.fire_at IS NOT NULL GROUP BY 1, 2, 3 HAVING count(*) > 1 ORDER BY 1, 3",
            micros_of("j.fire_at")
        ),
    ) {
        out.push(format!(
            "event {} ({}): fire {} recorded {} times",
            row[0],
            row[1],
            at(row[2].parse().unwrap()),
            row[3]
        ));
    }
    let now = db_now(pg, db);
    for &(event, interval) in every {
        let step = interval.as_micros() as i64;
        let name = rows(
            pg,
            db,
            &format!("SELECT name FROM events WHERE id = {event}"),
        )
        .first()
        .map(|r| r[0].clone())
        .unwrap_or_else(|| "deleted".into());
        let times: Vec<i64> = rows(
            pg,
            db,
            &format!(
                "SELECT DISTINCT {} FROM jobs WHERE event_id = {event} AND fire_at IS NOT NULL ORDER BY 1",
                micros_of("fire_at")
            ),
        )
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
        let Some(&last) = times.last() else {
            out.push(format!("event {event} ({name}): no fire recorded"));
            continue;
        };
        for pair in times.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if (b - a) % step != 0 {
                out.push(format!(
                    "event {event} ({name}): fire {} is off its {interval:?} schedule ({} after the one before)",
                    at(b),
                    secs(b - a)
                ));
                continue;
            }
            let missing: Vec<i64> = (1..(b - a) / step).map(|k| a + k * step).collect();
            if !missing.is_empty() {
                let shown: Vec<String> = missing.iter().take(3).map(|&t| at(t)).collect();
                let more = if missing.len() > 3 {
                    format!(" and {} more", missing.len() - 3)
                } else {
                    String::new()
                };
                out.push(format!(
                    "event {event} ({name}): no row for fire {}{more} (between {} and {})",
                    shown.join(", "),
                    at(a),
                    at(b)
                ));
            }
        }
        let late = now - last;
        if late > step + grace.as_micros() as i64 {
            out.push(format!(
                "event {event} ({name}): last fire recorded is {}, {} before the database's now: the schedule stalled",
                at(last),
                secs(late)
            ));
        }
    }
    out
}

/// No job `running` without a live lease, by the database's clock (allowing
/// `grace` for the scheduler tick that recovers it).
pub fn leases(pg: &TestPostgres, db: &str, grace: Duration) -> Vec<String> {
    rows(
        pg,
        db,
        &format!(
            "SELECT j.id, e.name, coalesce({}::text, ''), coalesce({}::text, '') \
             FROM jobs j JOIN events e ON e.id = j.event_id WHERE j.status = 'running' \
             AND (j.lease_expires_at IS NULL OR j.lease_expires_at < now() - interval '{} milliseconds') \
             ORDER BY 1",
            micros_of("j.lease_expires_at"),
            micros_of("now() - j.lease_expires_at"),
            grace.as_millis()
        ),
    )
    .into_iter()
    .map(|r| {
        if r[2].is_empty() {
            format!("job {} ({}): running without a lease", r[0], r[1])
        } else {
            format!(
                "job {} ({}): running, but its lease expired at {} ({} ago by the database's clock)",
                r[0],
                r[1],
                at(r[2].parse().unwrap()),
                secs(r[3].parse().unwrap())
            )
        }
    })
    .collect()
}

/// Every job terminal, running (its lease is [`leases`]' concern), or
/// queued and due no more than `grace` ago.
pub fn progress(pg: &TestPostgres, db: &str, grace: Duration) -> Vec<String> {
    rows(
        pg,
        db,
        &format!(
            "SELECT j.id, e.name, {}, {} FROM jobs j JOIN events e ON e.id = j.event_id \
             WHERE j.status = 'queued' AND j.run_after < now() - interval '{} milliseconds' ORDER BY 1",
            micros_of("j.run_after"),
            micros_of("now() - j.run_after"),
            grace.as_millis()
        ),
    )
    .into_iter()
    .map(|r| {
        format!(
            "job {} ({}): queued and due since {} ({} ago), yet nobody runs it",
            r[0],
            r[1],
            at(r[2].parse().unwrap()),
            secs(r[3].parse().unwrap())
        )
    })
    .collect()
}

/// Each job's log lines numbered 1..n, none missing or doubled.
pub fn log_sequences(pg: &TestPostgres, db: &str) -> Vec<String> {
    let mut out = Vec::new();
    for r in rows(
        pg,
        db,
        "SELECT l.job_id, e.name, string_agg(l.seq::text, ',' ORDER BY l.seq) \
         FROM job_logs l JOIN jobs j ON j.id = l.job_id JOIN events e ON e.id = j.event_id \
         GROUP BY 1, 2 ORDER BY 1",
    ) {
        let seqs: Vec<i64> = r[2].split(',').map(|s| s.parse().unwrap()).collect();
        let n = *seqs.last().unwrap();
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for s in &seqs {
            *counts.entry(*s).or_default() += 1;
        }
        let missing: Vec<String> = (1..=n)
            .filter(|s| !counts.contains_key(s))
            .map(|s| s.to_string())
            .collect();
        if !missing.is_empty() {
            out.push(format!(
                "job {} ({}): log lines 1..{n} lack {}",
                r[0],
                r[1],
                missing.join(", ")
            ));
        }
        for (seq, count) in counts.iter().filter(|(_, c)| **c > 1) {
            out.push(format!(
                "job {} ({}): log line {seq} stored {count} times",
                r[0], r[1]
            ));
        }
    }
    out
}

/// One execution's span, from the trace: its start to its last sign of life.
#[derive(Debug, Clone)]
struct Span {
    exec: String,
    whr: String,
    start: i64,
    last: i64,
    starts: usize,
}

/// No two attempts of a job running at once, by what the scripts wrote:
/// lines `start|tick|end JOB EXECUTION WHERE NANOS`, where `WHERE` is
/// `local@<node>` or `<host>@ssh`; a fleet job's executions on different
/// hosts may overlap, two of its attempts on one host may not.
pub fn overlaps(trace: &str) -> Vec<String> {
    let mut out = Vec::new();
    // (job, group) → execution → span
    let mut spans: BTreeMap<(i64, String), BTreeMap<String, Span>> = BTreeMap::new();
    for (n, line) in trace.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let parsed = match fields.as_slice() {
            [kind @ ("start" | "tick" | "end"), job, exec, whr, nanos] => job
                .parse::<i64>()
                .ok()
                .zip(nanos.parse::<i64>().ok())
                .map(|(job, nanos)| (*kind, job, *exec, *whr, nanos)),
            _ => None,
        };
        let Some((kind, job, exec, whr, nanos)) = parsed else {
            out.push(format!("trace line {} unreadable: {line:?}", n + 1));
            continue;
        };
        let group = match whr.split_once('@') {
            Some(("local", _)) => "local".to_string(),
            _ => whr.to_string(),
        };
        let key = (job, group);
        let span = spans
            .entry(key)
            .or_default()
            .entry(exec.to_string())
            .or_insert(Span {
                exec: exec.to_string(),
                whr: whr.to_string(),
                start: nanos,
                last: nanos,
                starts: 0,
            });
        if kind == "start" {
            span.starts += 1;
            if span.starts > 1 {
                out.push(format!(
                    "job {job}: execution {exec} started more than once (on {} and {whr})",
                    span.whr
                ));
            }
            span.start = span.start.min(nanos);
        }
        span.last = span.last.max(nanos);
    }
    for ((job, _), execs) in spans {
        let mut list: Vec<Span> = execs.into_values().collect();
        list.sort_by_key(|s| s.start);
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                if b.start < a.last {
                    out.push(format!(
                        "job {job}: attempt {} on {} overlaps attempt {} on {} by {:.3}s",
                        a.exec,
                        a.whr,
                        b.exec,
                        b.whr,
                        (a.last.min(b.last) - b.start) as f64 / 1e9
                    ));
                }
            }
        }
    }
    out
}

/// Every line an attempt printed is stored, for attempts whose job then
/// succeeded (their worker lived to report, so nothing excuses a lost
/// line): the workload's scripts print `step I of EXECUTION` before each
/// `tick` they write to the trace.
pub fn stored_output(pg: &TestPostgres, db: &str, trace: &str) -> Vec<String> {
    let succeeded: BTreeMap<String, i64> = rows(
        pg,
        db,
        "SELECT id, attempt FROM jobs WHERE status = 'succeeded'",
    )
    .into_iter()
    .map(|r| (format!("{}-{}", r[0], r[1]), r[0].parse().unwrap()))
    .collect();
    // "step I of X" → how many times the trace says it was printed.
    let mut printed: BTreeMap<String, (i64, usize)> = BTreeMap::new();
    let mut ticks: BTreeMap<(String, String), usize> = BTreeMap::new();
    for line in trace.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let ["tick", _, exec, whr, _] = f.as_slice()
            && let Some(job) = succeeded.get(*exec)
        {
            let n = ticks
                .entry((exec.to_string(), whr.to_string()))
                .or_default();
            *n += 1;
            printed
                .entry(format!("step {n} of {exec}"))
                .or_insert((*job, 0))
                .1 += 1;
        }
    }
    if printed.is_empty() {
        return Vec::new();
    }
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows(
        pg,
        db,
        "SELECT replace(convert_from(data, 'UTF8'), E'\n', '') FROM job_logs \
         WHERE stream = 'stdout' AND data LIKE 'step %'",
    ) {
        *stored.entry(r[0].clone()).or_default() += 1;
    }
    printed
        .into_iter()
        .filter_map(|(line, (job, times))| {
            let kept = stored.get(&line).copied().unwrap_or(0);
            (kept < times).then(|| {
                format!(
                    "job {job}: {line:?} was printed {times} time(s), stored {kept} (the job succeeded)"
                )
            })
        })
        .collect()
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// What `cronium job logs --follow` prints on standard output for a job's
/// stored lines: its stdout lines, labelled `[server] ` on a fleet.
pub fn expected_output(pg: &TestPostgres, db: &str, job: i64) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows(
        pg,
        db,
        &format!(
            "SELECT coalesce(server, ''), encode(data, 'hex') FROM job_logs \
             WHERE job_id = {job} AND stream = 'stdout' ORDER BY seq"
        ),
    ) {
        let data = unhex(&r[1]);
        if !r[0].is_empty() {
            out.extend_from_slice(format!("[{}] ", r[0]).as_bytes());
            out.extend_from_slice(&data);
            if !data.ends_with(b"\n") {
                out.push(b'\n');
            }
        } else {
            out.extend_from_slice(&data);
        }
    }
    out
}

/// Every follower saw every stored stdout line of its job exactly once,
/// in order, and ended when its job did.
pub fn followers(pg: &TestPostgres, db: &str, followed: &[Followed]) -> Vec<String> {
    let mut out = Vec::new();
    for f in followed {
        let who = format!("follower of job {} on {}", f.job, f.node);
        if !f.finished {
            out.push(format!("{who}: had not ended after its job did"));
        }
        let expected = expected_output(pg, db, f.job);
        if expected == f.stdout {
            continue;
        }
        let want: Vec<&[u8]> = expected.split_inclusive(|b| *b == b'\n').collect();
        let got: Vec<&[u8]> = f.stdout.split_inclusive(|b| *b == b'\n').collect();
        let k = want.iter().zip(&got).take_while(|(a, b)| a == b).count();
        let show = |line: &[u8]| format!("{:?}", String::from_utf8_lossy(line).trim_end());
        let mut message = format!("{who}: ");
        if k >= got.len() {
            let _ = write!(
                message,
                "missed the last {} of {} stored lines, from line {} ({})",
                want.len() - k,
                want.len(),
                k + 1,
                show(want[k])
            );
        } else if k > 0 && got[k] == want[k - 1] {
            let _ = write!(message, "printed line {k} ({}) twice", show(want[k - 1]));
        } else if k < want.len() && want.get(k + 1) == Some(&got[k]) {
            let _ = write!(message, "missed line {} ({})", k + 1, show(want[k]));
        } else if k >= want.len() {
            let _ = write!(
                message,
                "printed {} more line(s) than stored, from {}",
                got.len() - k,
                show(got[k])
            );
        } else {
            let _ = write!(
                message,
                "line {} is {}, the stored line is {}",
                k + 1,
                show(got[k]),
                show(want[k])
            );
        }
        let _ = write!(message, " (printed {}, stored {})", got.len(), want.len());
        out.push(message);
    }
    out
}
