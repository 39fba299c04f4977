//! A stopping server drains: SIGTERM stops claiming, lets running jobs finish up to `CRONIUM_DRAIN_TIMEOUT`, then hands the rest back so another server runs them at once.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, alive, require_runner, trace, wait_for};
use cronium_store::testing::TestPostgres;
use serde_json::{Value, json};

/// The same master key on every server of one database.
const KEY: &str = "5f1c0c8e3a7b9d2e4f6a8b0c1d3e5f7a9b2c4d6e8f0a1b3c5d7e9f1a2b4c6d8e";

fn signal(server: &Server, sig: i32) {
    assert_eq!(unsafe { libc::kill(server.pid() as i32, sig) }, 0);
}

/// An event whose first attempt sleeps `first_sleep` seconds and whose
/// later attempts end at once, each writing its pid to `trace`.
fn create_event(server: &Server, trace: &Path, first_sleep: u32, retries: u32) -> Value {
    let script = format!(
        "echo \"start $$\" >> {t}\necho begun\n\
         if [ $(grep -c start {t}) -eq 1 ]; then sleep {first_sleep}; fi\n\
         echo \"end $$\" >> {t}\necho done\n",
        t = trace.display()
    );
    server.api(
        "/events",
        Some(json!({
            "name": "long one", "interpreter": "bash", "content": script,
            "retries": retries, "retryDelay": "1s",
        })),
    )
}

/// Starts a run of `event` and waits until its script has started; returns
/// the job id and the script's pid.
fn start_run(server: &Server, event: &Value, trace_file: &Path) -> (i64, i32) {
    let job = server.api(&format!("/events/{}/run", event["id"]), Some(json!({})));
    let pid = wait_for("the script to start", Duration::from_secs(30), || {
        trace(trace_file)
            .first()?
            .strip_prefix("start ")?
            .parse()
            .ok()
    });
    (job["id"].as_i64().unwrap(), pid)
}

#[test]
fn sigterm_lets_a_running_job_finish_before_the_server_exits() {
    require_runner();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let trace_file = dir.path().join("trace");
    let mut server = Server::spawn(&data, None, &[]);
    server.wait_until_up();
    let event = create_event(&server, &trace_file, 2, 0);
    let (id, _) = start_run(&server, &event, &trace_file);

    signal(&server, libc::SIGTERM);
    let status = server.wait_for_exit();
    assert!(status.success(), "{status}");
    // The script ran to its end before the server went away.
    let lines = trace(&trace_file);
    assert_eq!(lines.len(), 2, "{lines:?}\n{}", server.log());
    assert!(lines[1].starts_with("end "), "{lines:?}");
    assert!(
        server
            .log()
            .contains("stopping: waiting for the running jobs to finish"),
        "{}",
        server.log()
    );

    let mut again = Server::spawn(&data, None, &[]);
    again.wait_until_up();
    let job = again.api(&format!("/jobs/{id}"), None);
    assert_eq!(
        (&job["status"], &job["attempt"]),
        (&json!("succeeded"), &json!(1)),
        "{job}"
    );
}

#[test]
fn a_second_sigterm_hands_the_job_back_at_once_and_without_retries_it_fails_saying_why() {
    require_runner();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let trace_file = dir.path().join("trace");
    let mut server = Server::spawn(&data, None, &[("CRONIUM_DRAIN_TIMEOUT", "10m")]);
    server.wait_until_up();
    let event = create_event(&server, &trace_file, 300, 0);
    let (id, pid) = start_run(&server, &event, &trace_file);

    signal(&server, libc::SIGTERM);
    wait_for("the drain to begin", Duration::from_secs(10), || {
        server
            .log()
            .contains("waiting for the running jobs")
            .then_some(())
    });
    let second = Instant::now();
    signal(&server, libc::SIGTERM);
    let status = server.wait_for_exit();
    assert!(status.success(), "{status}");
    // Not the ten minutes of the drain timeout: the kill grace at most.
    assert!(
        second.elapsed() < Duration::from_secs(20),
        "{:?}",
        second.elapsed()
    );
    assert!(!alive(pid), "the script {pid} outlived its server");

    let mut again = Server::spawn(&data, None, &[]);
    again.wait_until_up();
    let job = again.api(&format!("/jobs/{id}"), None);
    assert_eq!(job["status"], "failed", "{job}");
    let why = job["error"].as_str().unwrap();
    assert!(
        why.contains("shut down before the job finished and handed it back"),
        "{why}"
    );
    // The server's own lines go to standard error.
    let log = again
        .cronium(&["job", "logs", &id.to_string()])
        .ok()
        .stderr();
    assert!(
        log.contains("is shutting down: the job is handed back"),
        "{log}"
    );
    assert_eq!(trace(&trace_file).len(), 1, "ran again without retries");
}

#[test]
fn past_the_drain_timeout_another_server_runs_the_job_at_once_not_after_its_lease() {
    require_runner();
    let database = TestPostgres::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let trace_file = dir.path().join("trace");
    // A lease of a minute: a job that waited for it would start again only
    // a minute after the shutdown.
    let env = [
        ("CRONIUM_MASTER_KEY", KEY),
        ("CRONIUM_JOB_LEASE", "60s"),
        ("CRONIUM_DRAIN_TIMEOUT", "1s"),
    ];
    let mut a = Server::spawn(&dir.path().join("a"), Some(&database), &env);
    a.wait_until_up();
    let event = create_event(&a, &trace_file, 300, 1);
    let (id, first_pid) = start_run(&a, &event, &trace_file);
    // Only now does the second server come: the job is the first's.
    let mut b = Server::spawn(&dir.path().join("b"), Some(&database), &env);
    b.wait_until_up();

    let stopped = Instant::now();
    signal(&a, libc::SIGTERM);
    assert!(a.wait_for_exit().success());
    assert!(
        !alive(first_pid),
        "the first attempt's script outlived its server"
    );
    let done = wait_for(
        "the job to end on the other server",
        Duration::from_secs(40),
        || {
            let job = b.api(&format!("/jobs/{id}"), None);
            (job["status"] == "succeeded").then_some(job)
        },
    );
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "took {took:?}: it waited for the lease"
    );
    assert_eq!(done["attempt"], 2, "{done}");
    let lines = trace(&trace_file);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[1].starts_with("start ") && lines[2].starts_with("end "),
        "{lines:?}"
    );
    let log = b.cronium(&["job", "logs", &id.to_string()]).ok().stderr();
    assert!(
        log.contains("is shutting down: the job is handed back"),
        "{log}"
    );
    println!("SIGTERM to the job finished on the other server: {took:?}");
}
