//! `kill -9` of `cronium serve` while a job runs, then a restart: the job is
//! never left `running`, never runs twice at once, is left alone until its
//! lease runs out, and is then retried or failed with the reason, as its
//! event's retries say. On SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Server, alive, trace, wait_for};
use cronium_store::testing::TestPostgres;
use serde_json::{Value, json};

/// Short, so recovery after the crash comes quickly (the default is 30s),
/// yet long enough that the second server is up well before it runs out:
/// the test watches it leave the job alone until then.
const LEASE: &str = "5s";

/// An RFC 3339 time from the API.
fn time(value: &Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn killed_mid_run(database_url: Option<&str>, retries: u32) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let trace_file = dir.path().join("trace");
    let env = [("CRONIUM_JOB_LEASE", LEASE)];
    let mut first = Server::spawn(&data, database_url, &env);
    first.wait_until_up();

    // The first attempt sleeps long; a later one finishes at once.
    let script = format!(
        "echo \"start $$\" >> {t}\nif [ $(grep -c start {t}) -eq 1 ]; then sleep 60; fi\necho \"end $$\" >> {t}\n",
        t = trace_file.display()
    );
    let event = first.api(
        "/events",
        Some(json!({
            "name": "crash victim", "interpreter": "bash", "content": script,
            "retries": retries, "retryDelay": "1s",
        })),
    );
    let job = first.api(&format!("/events/{}/run", event["id"]), Some(json!({})));
    let id = job["id"].as_i64().unwrap();
    let script_pid: i32 = wait_for("the script to start", Duration::from_secs(30), || {
        trace(&trace_file)
            .first()?
            .strip_prefix("start ")?
            .parse()
            .ok()
    });
    let running = first.api(&format!("/jobs/{id}"), None);
    assert_eq!(running["status"], "running", "{running}");
    // Heartbeats only push the lease further out, so the job is the first
    // server's at least until the expiry it reports now.
    let leased_until = time(&running["leaseExpiresAt"]);

    // kill -9: no shutdown code runs. The runner loses its control channel
    // and stops the script itself.
    unsafe { libc::kill(first.pid() as i32, libc::SIGKILL) };
    first.wait_for_exit();
    wait_for(
        "the orphaned script to be stopped",
        Duration::from_secs(15),
        || (!alive(script_pid)).then_some(()),
    );

    let mut second = Server::spawn(&data, database_url, &env);
    second.wait_until_up();
    // Until the lease runs out, the new server leaves the job alone: it
    // cannot tell a dead worker from a slow one. Looked at until shortly
    // before the expiry (the clocks are the same; the margin is for the
    // store's rounding).
    let mut looked = 0;
    while Utc::now() + chrono::Duration::milliseconds(100) < leased_until {
        let j = second.api(&format!("/jobs/{id}"), None);
        assert!(
            j["status"] == "running" && j["attempt"] == 1,
            "recovered before its lease expired at {leased_until}: {j}"
        );
        let lines = trace(&trace_file);
        assert_eq!(
            lines.len(),
            1,
            "started again before the lease expired: {lines:?}"
        );
        looked += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        looked > 0,
        "the second server came up after the lease had expired at {leased_until}: nothing was checked"
    );
    let done = wait_for("the job to be recovered", Duration::from_secs(60), || {
        let j = second.api(&format!("/jobs/{id}"), None);
        matches!(j["status"].as_str(), Some("succeeded" | "failed")).then_some(j)
    });
    let lines = trace(&trace_file);
    // And once it has run out, it is recovered.
    let recovered_at = time(&done["finishedAt"]);
    assert!(
        recovered_at >= leased_until,
        "finished at {recovered_at}, before the lease expired at {leased_until}"
    );
    if retries > 0 {
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["attempt"], 2, "{done}");
        // The first attempt never ended; the second started after it was gone.
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[1].starts_with("start ") && lines[2].starts_with("end "),
            "{lines:?}"
        );
    } else {
        assert_eq!(done["status"], "failed", "{done}");
        let why = done["error"].as_str().unwrap();
        assert!(why.contains("stopped reporting"), "{why}");
        assert_eq!(lines.len(), 1, "ran again without retries: {lines:?}");
    }
    let running = second.api("/jobs?status=running", None);
    assert_eq!(running["total"], 0, "{running}");
}

#[test]
fn sqlite_killed_mid_run_is_retried() {
    killed_mid_run(None, 1);
}

#[test]
fn sqlite_killed_mid_run_without_retries_fails_with_the_reason() {
    killed_mid_run(None, 0);
}

#[test]
fn postgres_killed_mid_run_is_retried() {
    killed_mid_run(Some(&TestPostgres::fresh_database()), 1);
}

#[test]
fn postgres_killed_mid_run_without_retries_fails_with_the_reason() {
    killed_mid_run(Some(&TestPostgres::fresh_database()), 0);
}
