//! Fault injection: several real `cronium serve` nodes on one PostgreSQL database run a steady workload while a node is killed or paused, the database's connections are cut, the database restarts, a data dir fills up, the network to the database drops packets or a node's wall clock jumps; afterwards every invariant is checked (`common/invariants.rs`), and the checker itself is shown to catch each kind of violation.
//!
//! Needs root (namespaces, mounts, throwaway users for sshd), PostgreSQL,
//! OpenSSH, iproute2, nftables and libfaketime. The faults run one at a time (each owns a
//! PostgreSQL cluster and uses both cores); run with `--nocapture` to see the
//! figures each prints.

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/invariants.rs"]
mod invariants;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cluster::{Cluster, LEASE, Layout, Workload, time_until};
use cronium_store::testing::TestPostgres;
use invariants::{Followed, Subject};

/// The fault tests run one after another.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a run of the workload's long event takes.
const LONG: Duration = Duration::from_secs(10);

/// How late a scheduler tick or a worker's poll may be once settled.
const GRACE: Duration = Duration::from_secs(5);

/// Waits until some job has succeeded since `since` (database clock,
/// microseconds): the cluster runs work again.
fn wait_for_work(cluster: &Cluster, since: i64, limit: Duration) -> Duration {
    time_until("a job to succeed again", limit, || {
        cluster
            .pg
            .psql(
                &cluster.db,
                &format!(
                    "SELECT count(*) FROM jobs WHERE status = 'succeeded' \
                     AND finished_at > to_timestamp({since} / 1e6)"
                ),
            )
            .is_ok_and(|n| n.trim().parse::<u32>().unwrap_or(0) > 0)
    })
}

fn db_micros(cluster: &Cluster) -> i64 {
    cluster
        .sql_one("SELECT (extract(epoch FROM now()) * 1000000)::bigint")
        .parse()
        .unwrap()
}

/// Lets the workload run until every node has run a few jobs.
fn warm_up(cluster: &Cluster) {
    for node in &cluster.nodes {
        let mark = format!(" local@{} ", node.name);
        cluster::time_until(
            &format!("{} to run jobs", node.name),
            Duration::from_secs(40),
            || {
                std::fs::read_to_string(cluster.trace_path())
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.starts_with("end ") && l.contains(&mark))
                    .count()
                    >= 2
            },
        );
    }
}

fn job_state(cluster: &Cluster, id: i64) -> (String, i64) {
    let row = cluster.sql(&format!("SELECT status, attempt FROM jobs WHERE id = {id}"));
    (row[0][0].clone(), row[0][1].parse().unwrap())
}

/// A log line without its colours.
fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Stops the workload, checks every invariant, prints the figures.
fn settle_and_check(fault: &str, cluster: &Cluster, workload: &mut Workload, figures: &[String]) {
    let followed = workload.settle(cluster, Duration::from_secs(60));
    let violations = invariants::check(&Subject {
        pg: &cluster.pg,
        db: &cluster.db,
        every: &workload.events.scheduled,
        trace: &cluster.trace_path(),
        followers: &followed,
        grace: GRACE,
    });
    let summary = cluster.sql(
        "SELECT status, count(*), count(*) FILTER (WHERE attempt > 1) FROM jobs GROUP BY 1 ORDER BY 1",
    );
    let errors = cluster.sql(
        "SELECT coalesce(error, ''), count(*) FROM jobs WHERE error IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
    );
    eprintln!("== {fault}");
    for line in figures {
        eprintln!("   {line}");
    }
    eprintln!(
        "   jobs by status (count, retried): {}",
        summary
            .iter()
            .map(|r| format!("{} {} ({})", r[0], r[1], r[2]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for e in &errors {
        eprintln!("   error x{}: {}", e[1], e[0]);
    }
    eprintln!(
        "   manual runs started {}, refused {}; followers {} ({} ended by themselves)",
        workload.started.lock().unwrap().len(),
        workload.refused.lock().unwrap().len(),
        followed.len(),
        followed.iter().filter(|f| f.finished).count()
    );
    // What the nodes warned about, by message.
    for node in &cluster.nodes {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for line in node.log().lines() {
            let line = &strip_ansi(line);
            let Some(rest) = line.split_once(" WARN ").or(line.split_once(" ERROR ")) else {
                continue;
            };
            let message = rest.1.split_once(": ").map_or(rest.1, |(_, m)| m);
            let message = message.split(" job=").next().unwrap_or(message);
            let message = message.split(" error=").next().unwrap_or(message);
            *counts
                .entry(message.chars().take(90).collect())
                .or_default() += 1;
        }
        for (message, n) in counts {
            eprintln!("   {} warned x{n}: {message}", node.name);
        }
    }
    if !violations.is_empty() {
        for node in &cluster.nodes {
            let log = node.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- {} log (last lines)\n{}",
                node.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    invariants::assert_holds(&violations);
}

#[test]
fn a_node_killed_mid_job_its_job_is_retried_on_another_node() {
    let _serial = serial();
    // Three nodes: which of the other two takes the job over is theirs to
    // settle through the database.
    let mut cluster = Cluster::start(Layout {
        nodes: 3,
        ..Layout::default()
    });
    let mut workload = Workload::start(&cluster, true, LONG);
    warm_up(&cluster);
    let id = workload.start_long(&cluster, 0);
    let victim = common::wait_for("the long job to run", Duration::from_secs(20), || {
        cluster.lease_holder(id)
    });
    // Killed once the job has surely produced some output.
    let mark = format!("tick {id} {id}-1 ");
    common::wait_for("the long job's ticks", Duration::from_secs(20), || {
        (std::fs::read_to_string(cluster.trace_path())
            .unwrap_or_default()
            .matches(&mark)
            .count()
            >= 4)
            .then_some(())
    });
    cluster.nodes[victim].kill9();
    let mut survivor = None;
    let elsewhere = time_until("the job to run on another node", LEASE * 4, || {
        survivor = cluster.lease_holder(id).filter(|&n| n != victim);
        job_state(&cluster, id).1 >= 2 && survivor.is_some()
            || job_state(&cluster, id).0 == "succeeded"
    });
    let started_again = cluster.sql_one(
        "SELECT count(*) FROM jobs WHERE attempt > 1 AND updated_at > now() - interval '30 seconds'",
    );
    cluster.nodes[victim].start(&[]);
    let done = time_until("the long job to end", Duration::from_secs(40), || {
        matches!(job_state(&cluster, id).0.as_str(), "succeeded" | "failed")
    });
    let (status, attempt) = job_state(&cluster, id);
    assert_eq!(
        (status.as_str(), attempt),
        ("succeeded", 2),
        "the killed attempt is retried once"
    );
    settle_and_check(
        "kill -9 of the node running a job",
        &cluster,
        &mut workload,
        &[
            format!(
                "SIGKILL of {} (of 3 nodes) -> job {id} running on {}: {:.1}s (lease {}s)",
                cluster.nodes[victim].name,
                survivor.map_or("another node", |n| cluster.nodes[n].name.as_str()),
                elsewhere.as_secs_f64(),
                LEASE.as_secs()
            ),
            format!(
                "job {id} succeeded on attempt {attempt}, {:.1}s after the kill; {started_again} job(s) on a later attempt meanwhile",
                (elsewhere + done).as_secs_f64(),
            ),
        ],
    );
}

#[test]
fn every_database_connection_terminated_the_nodes_reconnect() {
    let _serial = serial();
    let cluster = Cluster::start(Layout {
        nodes: 2,
        ..Layout::default()
    });
    let mut workload = Workload::start(&cluster, true, LONG);
    warm_up(&cluster);
    let id = workload.start_long(&cluster, 1);
    common::wait_for("the long job to run", Duration::from_secs(20), || {
        cluster.lease_holder(id)
    });
    let since = db_micros(&cluster);
    let mut terminated = 0;
    // Twice, a second apart: a pool that reconnected once must do it again.
    for _ in 0..2 {
        terminated += cluster.pg.terminate_backends(&cluster.db).unwrap();
        std::thread::sleep(Duration::from_secs(1));
    }
    let back = wait_for_work(&cluster, since, Duration::from_secs(30));
    let done = time_until("the long job to end", Duration::from_secs(60), || {
        matches!(job_state(&cluster, id).0.as_str(), "succeeded" | "failed")
    });
    let (status, attempt) = job_state(&cluster, id);
    assert_eq!(status, "succeeded", "job {id}");
    settle_and_check(
        "pg_terminate_backend of every connection",
        &cluster,
        &mut workload,
        &[
            format!("{terminated} connections terminated (two rounds, 1s apart)"),
            format!(
                "a job succeeded again {:.1}s after the second round",
                back.as_secs_f64()
            ),
            format!(
                "long job {id}: {status} on attempt {attempt}, {:.1}s later",
                done.as_secs_f64()
            ),
        ],
    );
}

#[test]
fn the_database_stopped_immediately_and_restarted_mid_run() {
    let _serial = serial();
    let cluster = Cluster::start(Layout {
        nodes: 2,
        ..Layout::default()
    });
    let mut workload = Workload::start(&cluster, true, LONG);
    warm_up(&cluster);
    let id = workload.start_long(&cluster, 0);
    common::wait_for("the long job to run", Duration::from_secs(20), || {
        cluster.lease_holder(id)
    });
    let stopped = Instant::now();
    cluster.pg.stop_immediate().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    cluster.pg.start().unwrap();
    let down = stopped.elapsed();
    let since = db_micros(&cluster);
    let back = wait_for_work(&cluster, since, Duration::from_secs(30));
    let done = time_until("the long job to end", Duration::from_secs(60), || {
        matches!(job_state(&cluster, id).0.as_str(), "succeeded" | "failed")
    });
    let (status, attempt) = job_state(&cluster, id);
    assert_eq!(status, "succeeded", "job {id}");
    settle_and_check(
        "PostgreSQL stopped (-m immediate) and restarted",
        &cluster,
        &mut workload,
        &[
            format!("database down {:.1}s", down.as_secs_f64()),
            format!(
                "a job succeeded again {:.1}s after the restart",
                back.as_secs_f64()
            ),
            format!(
                "long job {id}: {status} on attempt {attempt}, {:.1}s after the restart",
                done.as_secs_f64()
            ),
        ],
    );
}

#[test]
fn a_node_whose_data_dir_is_full_claims_nothing_and_keeps_serving() {
    let _serial = serial();
    let cluster = Cluster::start(Layout {
        nodes: 2,
        tmpfs: Some((1, "32m")),
        ..Layout::default()
    });
    let mut workload = Workload::start(&cluster, false, LONG);
    warm_up(&cluster);
    let tmpfs = cluster.tmpfs.as_ref().unwrap();
    let since = db_micros(&cluster);
    let filled = tmpfs.fill();
    let full = Instant::now();
    let trace_len = || std::fs::metadata(cluster.trace_path()).map_or(0, |m| m.len() as usize);
    // It notices at its next look for work, and claims nothing from then on.
    let noticed = time_until(
        "n2 to notice its full disk",
        Duration::from_secs(10),
        || {
            cluster.nodes[1]
                .log()
                .contains("the data dir is full: claiming no jobs")
        },
    );
    let quiet_from = trace_len();
    // While full: the node still answers its API, and what it claims ends.
    let n2 = cluster.client(1);
    let mut answered = 0;
    while full.elapsed() < Duration::from_secs(10) {
        if n2.call("/jobs?limit=1", None).is_ok() {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let failed_here = cluster.sql(&format!(
        "SELECT id, status, attempt, coalesce(error, '') FROM jobs \
         WHERE finished_at > to_timestamp({since} / 1e6) AND status <> 'succeeded' ORDER BY id"
    ));
    let n2_log = cluster.nodes[1].log();
    let no_space = n2_log.matches("No space left").count();
    let while_full = std::fs::read_to_string(cluster.trace_path()).unwrap_or_default();
    let started_on_n2 = while_full[quiet_from..]
        .lines()
        .filter(|l| l.starts_with("start ") && l.contains(" local@n2 "))
        .count();
    let ran_on_n1 = while_full[quiet_from..]
        .lines()
        .filter(|l| l.starts_with("end ") && l.contains(" local@n1 "))
        .count();
    tmpfs.free();
    let freed = Instant::now();
    let mark = " local@n2 ";
    let before = std::fs::read_to_string(cluster.trace_path())
        .unwrap_or_default()
        .len();
    let again = time_until("n2 to run a job again", Duration::from_secs(30), || {
        std::fs::read_to_string(cluster.trace_path()).unwrap_or_default()[before..]
            .lines()
            .any(|l| l.starts_with("end ") && l.contains(mark))
    });
    let _ = freed;
    assert!(
        answered >= 15,
        "n2 answered {answered} of 20 API calls while full"
    );
    assert_eq!(started_on_n2, 0, "n2 started jobs with its data dir full");
    assert!(ran_on_n1 > 0, "n1 ran nothing meanwhile");
    assert!(
        cluster.nodes[1]
            .log()
            .contains("the data dir has room again: claiming jobs"),
        "n2 did not say it claims again"
    );
    // What failed says why, with the path.
    for r in failed_here.iter().filter(|r| r[1] == "failed") {
        assert!(
            r[3].contains("No space left on device")
                && r[3].contains(&*tmpfs.path.to_string_lossy()),
            "job {} failed without saying the disk is full: {}",
            r[0],
            r[3]
        );
    }
    let mut figures = vec![
        format!("{filled} bytes written to fill n2's 32 MiB tmpfs data dir"),
        format!(
            "n2 stopped claiming {:.1}s after; while full it started no job and n1 finished {ran_on_n1}",
            noticed.as_secs_f64()
        ),
        format!("n2 answered {answered}/20 API calls while full"),
        format!(
            "{} job(s) ended other than succeeded while full:",
            failed_here.len()
        ),
    ];
    for r in failed_here.iter().take(8) {
        figures.push(format!(
            "  job {} {} attempt {}: {}",
            r[0], r[1], r[2], r[3]
        ));
    }
    figures.push(format!(
        "n2's own log mentions \"No space left\" {no_space} times"
    ));
    figures.push(format!(
        "after freeing the space n2 ran a job again within {:.1}s",
        again.as_secs_f64()
    ));
    settle_and_check(
        "n2's data dir full (tmpfs)",
        &cluster,
        &mut workload,
        &figures,
    );
}

#[test]
fn the_database_unreachable_for_twenty_seconds() {
    let _serial = serial();
    let cluster = Cluster::start(Layout {
        nodes: 2,
        netns: true,
        ..Layout::default()
    });
    // The nodes live in the namespace, the test's sshd on the host's
    // loopback: no fleet here. The long job outlasts the outage: its lease
    // runs out while its worker still runs it, and nobody can take it over
    // until the database is back.
    let mut workload = Workload::start(&cluster, false, Duration::from_secs(30));
    warm_up(&cluster);
    let id = workload.start_long(&cluster, 0);
    common::wait_for("the long job to run", Duration::from_secs(20), || {
        cluster.lease_holder(id)
    });
    let ns = cluster.netns.as_ref().unwrap();
    let rule = ns.drop_traffic_to(cluster.pg.port());
    let cut = Instant::now();
    // The fault is its duration: nothing to poll for.
    std::thread::sleep(Duration::from_secs(20));
    drop(rule);
    let outage = cut.elapsed();
    let since = db_micros(&cluster);
    let back = wait_for_work(&cluster, since, Duration::from_secs(60));
    let done = time_until("the long job to end", Duration::from_secs(60), || {
        matches!(job_state(&cluster, id).0.as_str(), "succeeded" | "failed")
    });
    let (status, attempt) = job_state(&cluster, id);
    settle_and_check(
        "database unreachable for 20s (nftables drop)",
        &cluster,
        &mut workload,
        &[
            format!(
                "packets to the database dropped for {:.1}s (lease {}s)",
                outage.as_secs_f64(),
                LEASE.as_secs()
            ),
            format!(
                "a job succeeded again {:.1}s after the rule was removed",
                back.as_secs_f64()
            ),
            format!(
                "long job {id}: {status} on attempt {attempt}, {:.1}s after the rule was removed",
                (back + done).as_secs_f64()
            ),
        ],
    );
}

// --- the checker catches what it must --------------------------------------

/// A scratch database with Cronium's schema and a clean history: an event
/// firing every second for the last ten seconds, a manual job with five log
/// lines, a trace of two attempts one after the other, and a follower that
/// saw everything.
struct Scratch {
    pg: &'static TestPostgres,
    db: String,
    event: i64,
    job: i64,
    trace: tempfile::NamedTempFile,
    followed: Vec<Followed>,
}

impl Scratch {
    fn new() -> Scratch {
        let pg = TestPostgres::get();
        let url = pg.create_database();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(cronium_store::open(&url))
            .expect("migrate the scratch database");
        let db = url.rsplit('/').next().unwrap().to_string();
        let sql = |sql: &str| pg.psql(&db, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let user = sql(
            "INSERT INTO users (name, role, created_at) VALUES ('planter', 'admin', now()) RETURNING id",
        );
        let event = sql(&format!(
            "INSERT INTO events (owner_id, name, name_folded, kind, interpreter, content, schedule, \
             status, run_location, timeout_secs, retries, created_at, updated_at) VALUES \
             ({}, 'ticker', 'ticker', 'script', 'bash', 'true', '{{}}', 'active', 'local', 60, 0, \
             now(), now()) RETURNING id",
            user.trim()
        ))
        .trim()
        .parse()
        .unwrap();
        sql(&format!(
            "INSERT INTO jobs (event_id, \"trigger\", status, scheduled_at, fire_at, run_after, \
             started_at, finished_at, created_at, updated_at) \
             SELECT {event}, 'schedule', 'succeeded', t, t, t, t, t, t, t FROM \
             (SELECT date_trunc('second', now()) - k * interval '1 second' AS t \
              FROM generate_series(1, 10) k) fires"
        ));
        let job: i64 = sql(&format!(
            "INSERT INTO jobs (event_id, \"trigger\", status, attempt, scheduled_at, run_after, \
             started_at, finished_at, created_at, updated_at) VALUES \
             ({event}, 'manual', 'succeeded', 2, now(), now(), now(), now(), now(), now()) RETURNING id"
        ))
        .trim()
        .parse()
        .unwrap();
        sql(&format!(
            "INSERT INTO job_logs (job_id, seq, stream, at, data) \
             SELECT {job}, k, 'stdout', now(), convert_to('step ' || k || ' of {job}-2' || E'\\n', 'UTF8') \
             FROM generate_series(1, 5) k"
        ));
        let trace = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            trace.path(),
            format!(
                "start {job} {job}-1 local@n1 1000\ntick {job} {job}-1 local@n1 2000\n\
                 start {job} {job}-2 local@n2 3000\ntick {job} {job}-2 local@n2 4000\n\
                 end {job} {job}-2 local@n2 5000\n"
            ),
        )
        .unwrap();
        let followed = vec![Followed {
            job,
            node: "n2".into(),
            stdout: lines(job, &[1, 2, 3, 4, 5]),
            finished: true,
        }];
        Scratch {
            pg,
            db,
            event,
            job,
            trace,
            followed,
        }
    }

    fn sql(&self, sql: &str) -> String {
        self.pg
            .psql(&self.db, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn check(&self) -> Vec<String> {
        invariants::check(&Subject {
            pg: self.pg,
            db: &self.db,
            every: &[(self.event, Duration::from_secs(1))],
            trace: self.trace.path(),
            followers: &self.followed,
            grace: GRACE,
        })
    }

    /// The fire time `k` seconds before the newest recorded one, in µs.
    fn fire(&self, k: i64) -> i64 {
        self.sql(&format!(
            "SELECT (extract(epoch FROM max(fire_at)) * 1000000)::bigint - {k} * 1000000 \
             FROM jobs WHERE event_id = {}",
            self.event
        ))
        .trim()
        .parse()
        .unwrap()
    }
}

/// The scratch job's output lines `steps`, as printed.
#[test]
fn a_node_paused_past_its_lease_then_resumed() {
    let _serial = serial();
    let cluster = Cluster::start(Layout {
        nodes: 2,
        ..Layout::default()
    });
    let mut workload = Workload::start(&cluster, true, LONG);
    warm_up(&cluster);
    let id = workload.start_long(&cluster, 0);
    let victim = common::wait_for("the long job to run", Duration::from_secs(20), || {
        cluster.lease_holder(id)
    });
    let survivor = 1 - victim;
    let mark = format!("tick {id} {id}-1 ");
    common::wait_for("the long job's ticks", Duration::from_secs(20), || {
        (std::fs::read_to_string(cluster.trace_path())
            .unwrap_or_default()
            .matches(&mark)
            .count()
            >= 4)
            .then_some(())
    });
    // SIGSTOP of the node alone: its runner, a process of its own, goes on
    // and must stop the script by itself when the lease is not renewed.
    cluster.nodes[victim].signal(libc::SIGSTOP);
    let elsewhere = time_until("the job to run on the other node", LEASE * 4, || {
        let (status, attempt) = job_state(&cluster, id);
        attempt >= 2 && cluster.lease_holder(id) == Some(survivor) || status == "succeeded"
    });
    // Paused a while longer: its late reports come well after the takeover.
    std::thread::sleep(LEASE);
    cluster.nodes[victim].signal(libc::SIGCONT);
    let done = time_until("the long job to end", Duration::from_secs(40), || {
        matches!(job_state(&cluster, id).0.as_str(), "succeeded" | "failed")
    });
    assert_eq!(job_state(&cluster, id), ("succeeded".to_string(), 2));
    let noticed = time_until(
        "the resumed node to give the job up",
        Duration::from_secs(20),
        || {
            let log = cluster.nodes[victim].log();
            log.contains("lost the job") || log.contains("could not renew the job's lease in time")
        },
    );
    // The first attempt's script stopped ticking before the second began
    // (the invariants check every job this way; this is the figure).
    let trace = std::fs::read_to_string(cluster.trace_path()).unwrap();
    let stamp = |prefix: &str, last: bool| -> Option<u128> {
        let mut stamps = trace
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u128>().ok());
        if last {
            stamps.next_back()
        } else {
            stamps.next()
        }
    };
    let first_last = stamp(&format!("tick {id} {id}-1 "), true).unwrap();
    let second_start = stamp(&format!("start {id} {id}-2 "), false).unwrap();
    assert!(first_last < second_start, "the attempts overlapped");
    settle_and_check(
        "SIGSTOP of the node running a job, past its lease, then SIGCONT",
        &cluster,
        &mut workload,
        &[
            format!(
                "SIGSTOP of {} -> job {id} running on {}: {:.1}s (lease {}s)",
                cluster.nodes[victim].name,
                cluster.nodes[survivor].name,
                elsewhere.as_secs_f64(),
                LEASE.as_secs()
            ),
            format!(
                "the paused attempt's last tick came {} ms before the new attempt started",
                (second_start - first_last) / 1_000_000
            ),
            format!(
                "after SIGCONT: job {id} succeeded on attempt 2 {:.1}s later; the resumed node gave it up within {:.1}s",
                done.as_secs_f64(),
                noticed.as_secs_f64()
            ),
        ],
    );
}

#[test]
fn a_nodes_wall_clock_jumps_back_an_hour() {
    let _serial = serial();
    let mut cluster = Cluster::start(Layout {
        nodes: 2,
        ..Layout::default()
    });
    // Node 2 again, under libfaketime: its wall clock follows a file the
    // test rewrites; the monotonic clock stays true, as in a real clock
    // step, and only `cronium` itself is fooled (not its runners' scripts,
    // whose timestamps the invariants read).
    let offset_file = cluster.dir.path().join("faketime.rc");
    std::fs::write(&offset_file, "+0\n").unwrap();
    let libfaketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        Path::new(libfaketime).exists(),
        "libfaketime is not installed: install libfaketime (scripts/test.sh does)"
    );
    cluster.nodes[1].kill9();
    cluster.nodes[1].start(&[
        ("LD_PRELOAD", libfaketime),
        ("FAKETIME_TIMESTAMP_FILE", offset_file.to_str().unwrap()),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ("FAKETIME_ONLY_CMDS", "cronium"),
    ]);
    let mut workload = Workload::start(&cluster, true, LONG);
    warm_up(&cluster);
    std::fs::write(&offset_file, "-1h\n").unwrap();
    // The node says so, in its log and in the node list.
    let warned = time_until(
        "the node to report its clock",
        Duration::from_secs(20),
        || {
            cluster.nodes[1]
                .log()
                .contains("this server's clock is far from the database's")
        },
    );
    let offset: i64 = common::wait_for("the node list to show it", Duration::from_secs(20), || {
        let nodes = cluster.client(0).ok("/nodes", None);
        let me = nodes["items"]
            .as_array()?
            .iter()
            .find(|n| n["address"].as_str() == cluster.nodes[1].url.strip_prefix("http://"))?
            .clone();
        let ms = me["clockOffsetMs"].as_i64()?;
        (ms < -3_000_000).then_some(ms)
    });
    // Work goes on past the jump, on both nodes, for a while.
    let id = workload.start_long(&cluster, 1);
    let done = time_until("the long job to end", LONG * 4, || {
        matches!(job_state(&cluster, id).0.as_str(), "succeeded" | "failed")
    });
    let (status, attempt) = job_state(&cluster, id);
    assert_eq!((status.as_str(), attempt), ("succeeded", 1), "job {id}");
    settle_and_check(
        "a node's wall clock set back an hour mid-run (libfaketime)",
        &cluster,
        &mut workload,
        &[
            format!(
                "the node warned {:.1}s after the jump; the node list shows its clock {:.0} s off",
                warned.as_secs_f64(),
                offset as f64 / 1000.0
            ),
            format!(
                "a 10 s job started through it after the jump succeeded on attempt 1 in {:.1}s",
                done.as_secs_f64()
            ),
        ],
    );
}

fn lines(job: i64, steps: &[u32]) -> Vec<u8> {
    steps
        .iter()
        .map(|k| format!("step {k} of {job}-2\n"))
        .collect::<String>()
        .into_bytes()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_checker_passes_a_clean_history() {
    let scratch = Scratch::new();
    assert_eq!(scratch.check(), Vec::<String>::new());
}

#[test]
fn the_checker_catches_a_fire_recorded_twice() {
    let s = Scratch::new();
    let fire = s.fire(3);
    s.sql("ALTER TABLE jobs DROP CONSTRAINT jobs_fire_unique");
    s.sql(&format!(
        "INSERT INTO jobs (event_id, \"trigger\", status, scheduled_at, fire_at, run_after, \
         created_at, updated_at) SELECT event_id, \"trigger\", 'succeeded', fire_at, fire_at, \
         fire_at, now(), now() FROM jobs WHERE event_id = {} AND fire_at = to_timestamp({fire} / 1e6)",
        s.event
    ));
    assert_eq!(
        s.check(),
        [format!(
            "event {} (ticker): fire {} recorded 2 times",
            s.event,
            invariants::at(fire)
        )]
    );
}

#[test]
fn the_checker_catches_a_fire_missing_from_the_record() {
    let s = Scratch::new();
    let (before, gone, after) = (s.fire(5), s.fire(4), s.fire(3));
    s.sql(&format!(
        "DELETE FROM jobs WHERE fire_at = to_timestamp({gone} / 1e6)"
    ));
    assert_eq!(
        s.check(),
        [format!(
            "event {} (ticker): no row for fire {} (between {} and {})",
            s.event,
            invariants::at(gone),
            invariants::at(before),
            invariants::at(after)
        )]
    );
}

#[test]
fn the_checker_catches_a_schedule_that_stopped_firing() {
    let s = Scratch::new();
    let last = s.fire(0);
    s.sql(&format!(
        "UPDATE jobs SET fire_at = fire_at - interval '30 seconds', scheduled_at = scheduled_at \
         - interval '30 seconds' WHERE event_id = {}",
        s.event
    ));
    let found = s.check();
    let expected = format!(
        "event {} (ticker): last fire recorded is {}, ",
        s.event,
        invariants::at(last - 30_000_000)
    );
    assert!(
        found.len() == 1
            && found[0].starts_with(&expected)
            && found[0].ends_with("before the database's now: the schedule stalled"),
        "{found:?}"
    );
}

#[test]
fn the_checker_catches_a_job_running_without_a_live_lease() {
    let s = Scratch::new();
    s.sql(&format!(
        "UPDATE jobs SET status = 'running', lease_owner = 'gone', \
         lease_expires_at = now() - interval '1 minute' WHERE id = {}",
        s.job
    ));
    let found = s.check();
    let expected = format!("job {} (ticker): running, but its lease expired at ", s.job);
    assert!(
        found.len() == 1
            && found[0].starts_with(&expected)
            && found[0].ends_with(" ago by the database's clock)"),
        "{found:?}"
    );
    s.sql(&format!(
        "UPDATE jobs SET lease_expires_at = NULL WHERE id = {}",
        s.job
    ));
    assert_eq!(
        s.check(),
        [format!("job {} (ticker): running without a lease", s.job)]
    );
}

#[test]
fn the_checker_catches_a_job_queued_long_past_its_time() {
    let s = Scratch::new();
    s.sql(&format!(
        "UPDATE jobs SET status = 'queued', run_after = now() - interval '2 minutes' WHERE id = {}",
        s.job
    ));
    let found = s.check();
    assert!(
        found.len() == 1
            && found[0].starts_with(&format!("job {} (ticker): queued and due since ", s.job))
            && found[0].ends_with(" ago), yet nobody runs it"),
        "{found:?}"
    );
}

#[test]
fn the_checker_catches_a_gap_in_a_jobs_log() {
    let s = Scratch::new();
    s.sql(&format!(
        "DELETE FROM job_logs WHERE job_id = {} AND seq = 3",
        s.job
    ));
    let mut found = s.check();
    found.sort();
    assert_eq!(
        found,
        [
            format!(
                "follower of job {j} on n2: line 3 is \"step 3 of {j}-2\", the stored line is \"step 4 of {j}-2\" (printed 5, stored 4)",
                j = s.job
            ),
            format!("job {} (ticker): log lines 1..5 lack 3", s.job),
        ]
    );
}

#[test]
fn the_checker_catches_a_printed_line_missing_from_a_succeeded_jobs_log() {
    let s = Scratch::new();
    let j = s.job;
    // The trace has the attempt print one step; it printed a sixth as well.
    let mut trace = std::fs::read_to_string(s.trace.path()).unwrap();
    for t in 0..5 {
        trace.push_str(&format!("tick {j} {j}-2 local@n2 {}\n", 4100 + t));
    }
    let clean = std::fs::read_to_string(s.trace.path()).unwrap();
    assert_eq!(
        invariants::stored_output(s.pg, &s.db, &clean),
        Vec::<String>::new()
    );
    assert_eq!(
        invariants::stored_output(s.pg, &s.db, &trace),
        [format!(
            "job {j}: \"step 6 of {j}-2\" was printed 1 time(s), stored 0 (the job succeeded)"
        )]
    );
}

#[test]
fn the_checker_catches_overlapping_attempts_in_the_trace() {
    let s = Scratch::new();
    let j = s.job;
    // Attempt 1 still ticked after attempt 2 had started.
    let mut trace = std::fs::read_to_string(s.trace.path()).unwrap();
    trace.push_str(&format!("tick {j} {j}-1 local@n1 3500\n"));
    write(s.trace.path(), &trace);
    assert_eq!(
        s.check(),
        [format!(
            "job {j}: attempt {j}-1 on local@n1 overlaps attempt {j}-2 on local@n2 by 0.000s"
        )]
    );
    // One execution started twice, on two nodes.
    trace.push_str(&format!("start {j} {j}-2 local@n1 6000\n"));
    write(s.trace.path(), &trace);
    let found = s.check();
    assert!(
        found.contains(&format!(
            "job {j}: execution {j}-2 started more than once (on local@n2 and local@n1)"
        )),
        "{found:?}"
    );
    // A fleet's executions on two hosts may overlap; not on one host.
    write(
        s.trace.path(),
        &format!(
            "start {j} {j}-1 a@ssh 1000\nstart {j} {j}-1 b@ssh 1000\nend {j} {j}-1 a@ssh 3000\n\
             end {j} {j}-1 b@ssh 3000\nstart {j} {j}-2 a@ssh 2000\nend {j} {j}-2 a@ssh 4000\n"
        ),
    );
    assert_eq!(
        s.check(),
        [format!(
            "job {j}: attempt {j}-1 on a@ssh overlaps attempt {j}-2 on a@ssh by 0.000s"
        )]
    );
}

#[test]
fn the_checker_catches_a_follower_that_repeated_or_missed_lines() {
    let mut s = Scratch::new();
    let j = s.job;
    s.followed[0].stdout = lines(j, &[1, 2, 2, 3, 4, 5]);
    assert_eq!(
        s.check(),
        [format!(
            "follower of job {j} on n2: printed line 2 (\"step 2 of {j}-2\") twice (printed 6, stored 5)"
        )]
    );
    s.followed[0].stdout = lines(j, &[1, 2, 4, 5]);
    assert_eq!(
        s.check(),
        [format!(
            "follower of job {j} on n2: missed line 3 (\"step 3 of {j}-2\") (printed 4, stored 5)"
        )]
    );
    s.followed[0].stdout = lines(j, &[1, 2]);
    s.followed[0].finished = false;
    assert_eq!(
        s.check(),
        [
            format!("follower of job {j} on n2: had not ended after its job did"),
            format!(
                "follower of job {j} on n2: missed the last 3 of 5 stored lines, from line 3 (\"step 3 of {j}-2\") (printed 2, stored 5)"
            ),
        ]
    );
}

#[test]
fn the_checker_reports_every_violation_together() {
    let s = Scratch::new();
    s.sql(&format!(
        "DELETE FROM job_logs WHERE job_id = {} AND seq = 2",
        s.job
    ));
    s.sql(&format!(
        "UPDATE jobs SET status = 'running', lease_expires_at = NULL WHERE fire_at IS NOT NULL \
         AND fire_at = (SELECT min(fire_at) FROM jobs WHERE event_id = {})",
        s.event
    ));
    let found = s.check();
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].ends_with("running without a lease"), "{found:?}");
    assert_eq!(
        found[1],
        format!("job {} (ticker): log lines 1..5 lack 2", s.job)
    );
    assert!(
        found[2].starts_with(&format!("follower of job {} on n2: ", s.job)),
        "{found:?}"
    );
}
