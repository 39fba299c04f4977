//! Two `cronium serve` processes on one PostgreSQL database: a job running on one is followed live from the other (`cronium job logs --follow`), each line as its script prints it, once and in order, then the end; a `--poll-only` server follows and claims by polling.

mod common;

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{Background, Server, require_runner, wait_for};
use cronium_store::testing::TestPostgres;
use serde_json::{Value, json};

/// Both servers seal and open secrets with this key, as every node of one
/// cluster must.
const MASTER_KEY: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";
/// How late a line may reach the other server's follower. Far above what it
/// takes (tens of milliseconds), and below the 5 s a follower waits between
/// re-reads when the listener is connected: a line that came by re-reading
/// rather than by a signal is caught out by the next gate (see below).
const PROMPT: Duration = Duration::from_millis(2500);
const LINES: usize = 4;

/// A script that prints `line N` only once the test creates `gate-N`.
fn gated_script(gates: &Path) -> String {
    format!(
        "for i in $(seq {LINES}); do\n  \
         for t in $(seq 1200); do [ -e '{g}/gate-'$i ] && break; sleep 0.02; done\n  \
         echo \"line $i\"\ndone\n",
        g = gates.display()
    )
}

fn node(dir: &Path, name: &str, url: &str, env: &[(&str, &str)]) -> Server {
    let mut all = vec![("CRONIUM_MASTER_KEY", MASTER_KEY)];
    all.extend_from_slice(env);
    let mut server = Server::spawn(&dir.join(name), Some(url), &all);
    server.wait_until_up();
    server
}

/// Starts a job of a new gated event through `server`'s API and waits until
/// it runs there (its lease owner).
fn gated_job(server: &Server, name: &str, gates: &Path) -> Value {
    let event = server.api(
        "/events",
        Some(json!({"name": name, "interpreter": "bash", "content": gated_script(gates)})),
    );
    let job = server.api(&format!("/events/{}/run", event["id"]), Some(json!({})));
    let id = job["id"].as_i64().unwrap();
    wait_for("the job to start", Duration::from_secs(30), || {
        let job = server.api(&format!("/jobs/{id}"), None);
        (job["status"] == "running").then_some(job)
    })
}

/// Opens each gate in turn and checks that `lines` (the follower's output)
/// shows that line within [`PROMPT`], then that the follower ends as the
/// job does, and nothing else was printed.
fn lines_arrive_promptly(gates: &Path, follower: &mut Background, lines: &Receiver<String>) {
    for i in 1..=LINES {
        // The follower has caught up and is waiting: nothing may come early.
        assert_eq!(
            lines.recv_timeout(Duration::from_millis(300)),
            Err(RecvTimeoutError::Timeout),
            "before gate {i}"
        );
        std::fs::write(gates.join(format!("gate-{i}")), "").unwrap();
        let opened = Instant::now();
        let line = lines
            .recv_timeout(PROMPT)
            .unwrap_or_else(|e| panic!("line {i} not seen within {PROMPT:?}: {e}"));
        assert_eq!(line, format!("line {i}"), "every line once, in order");
        eprintln!("line {i} seen {:?} after its gate opened", opened.elapsed());
    }
    let last = Instant::now();
    let (status, err) = follower.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}: {err}");
    assert!(
        last.elapsed() < PROMPT,
        "the end took {:?} to arrive",
        last.elapsed()
    );
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(1)),
        Err(RecvTimeoutError::Disconnected),
        "nothing after the last line"
    );
}

/// Lines reach the other server by its listener. Were they to come only by
/// re-reading (every 5 s while the listener is connected), a line could
/// arrive in time at most once: it is seen just after a re-read, and the
/// next gate opens right then, a whole interval before the next one.
#[test]
fn a_job_on_one_server_is_followed_live_from_another() {
    require_runner();
    let url = TestPostgres::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let gates = dir.path().join("gates");
    std::fs::create_dir(&gates).unwrap();
    let a = node(dir.path(), "a", &url, &[]);
    let job = gated_job(&a, "gated", &gates);
    // Only now does the second server start: the job cannot be its.
    let b = node(dir.path(), "b", &url, &[]);
    wait_for("b to listen", Duration::from_secs(10), || {
        b.log()
            .contains("listening for other servers' signals")
            .then_some(())
    });
    assert!(!a.log().contains("--poll-only"));

    let id = job["id"].to_string();
    let mut follower = b.cronium_spawn(&["job", "logs", &id, "--follow"]);
    let lines = follower.stdout_lines();
    lines_arrive_promptly(&gates, &mut follower, &lines);
    let done = b.api(&format!("/jobs/{id}"), None);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["leaseOwner"], job["leaseOwner"], "it ran on a: {done}");
}

/// Behind PgBouncer in transaction mode LISTEN cannot work: a server told
/// `--poll-only` does not listen, and still follows a job running elsewhere
/// and claims work queued elsewhere, by polling.
#[test]
fn a_poll_only_server_follows_and_claims_by_polling() {
    require_runner();
    let url = TestPostgres::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let gates = dir.path().join("gates");
    std::fs::create_dir(&gates).unwrap();
    // One slot on a, so a job queued while it is busy is b's to take.
    let a = node(dir.path(), "a", &url, &[("CRONIUM_MAX_JOBS", "1")]);
    let job = gated_job(&a, "gated", &gates);
    let b = node(dir.path(), "b", &url, &[("CRONIUM_POLL_ONLY", "true")]);
    assert!(b.log().contains("--poll-only: no LISTEN"), "{}", b.log());
    assert!(!b.log().contains("listening for other servers' signals"));

    // Queued through a, which has no free slot: b claims it.
    let quick = a.api(
        "/events",
        Some(json!({"name": "quick", "interpreter": "bash", "content": "echo quick\n"})),
    );
    let queued = a.api(&format!("/events/{}/run", quick["id"]), Some(json!({})));
    let ran = wait_for("b to run the queued job", Duration::from_secs(30), || {
        let j = b.api(&format!("/jobs/{}", queued["id"]), None);
        (j["status"] == "succeeded").then_some(j)
    });
    assert_ne!(ran["leaseOwner"], job["leaseOwner"], "{ran}");

    let id = job["id"].to_string();
    let mut follower = b.cronium_spawn(&["job", "logs", &id, "--follow"]);
    let lines = follower.stdout_lines();
    lines_arrive_promptly(&gates, &mut follower, &lines);
}
