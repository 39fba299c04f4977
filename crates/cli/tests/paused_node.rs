//! A node paused with SIGSTOP past its lease: its script stops by itself before another node takes the job, so the job never runs twice at once, and after SIGCONT the paused node's late reports are refused.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Server, require_runner, wait_for};
use cronium_store::testing::TestPostgres;
use serde_json::json;

const KEY: &str = "7a3c5e7f9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a";

fn alive(pid: i32) -> bool {
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// One attempt as its script recorded it: pid, first and last timestamp
/// (nanoseconds since the epoch), whether it reached its end.
#[derive(Debug)]
struct Attempt {
    pid: i32,
    first: u128,
    last: u128,
    ended: bool,
}

fn attempts(trace: &Path) -> Vec<Attempt> {
    let mut all: Vec<Attempt> = Vec::new();
    for line in std::fs::read_to_string(trace).unwrap_or_default().lines() {
        let [what, pid, at] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("bad trace line {line:?}");
        };
        let (pid, at): (i32, u128) = (pid.parse().unwrap(), at.parse().unwrap());
        match all.iter_mut().find(|a| a.pid == pid) {
            Some(a) => {
                a.last = at;
                a.ended |= what == "end";
            }
            None => all.push(Attempt {
                pid,
                first: at,
                last: at,
                ended: false,
            }),
        }
    }
    all
}

#[test]
fn a_paused_nodes_script_stops_before_another_node_runs_the_job_and_its_late_reports_are_refused()
{
    require_runner();
    let database = TestPostgres::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    // The shortest lease, so the test takes seconds.
    let env = [("CRONIUM_MASTER_KEY", KEY), ("CRONIUM_JOB_LEASE", "5s")];
    let mut a = Server::spawn(&dir.path().join("a"), Some(&database), &env);
    a.wait_until_up();
    let mut b = Server::spawn(&dir.path().join("b"), Some(&database), &env);
    b.wait_until_up();

    // The first attempt ticks every 50 ms for a minute; a later one ticks
    // a few times and ends. Every line is stamped by the script itself.
    let script = format!(
        "t={t}\nstamp() {{ echo \"$1 $$ $(date +%s%N)\" >> $t; }}\n\
         first=$(grep -c . $t 2>/dev/null || echo 0)\nstamp start\necho attempt started\n\
         n=10; [ \"$first\" = 0 ] && n=1200\n\
         for i in $(seq $n); do sleep 0.05; stamp tick; done\nstamp end\necho attempt ended\n",
        t = trace.display()
    );
    let event = a.api(
        "/events",
        Some(json!({
            "name": "steady", "interpreter": "bash", "content": script,
            "retries": 1, "retryDelay": "1s",
        })),
    );
    let job = a.api(&format!("/events/{}/run", event["id"]), Some(json!({})));
    let id = job["id"].as_i64().unwrap();
    let owner = wait_for("the job to run", Duration::from_secs(30), || {
        let j = a.api(&format!("/jobs/{id}"), None);
        (j["status"] == "running" && attempts(&trace).len() == 1)
            .then(|| j["leaseOwner"].as_str().unwrap().to_string())
    });
    // The lease owner is "host/pid/…": pause that node, not its runner.
    let pid: u32 = owner.split('/').nth(1).unwrap().parse().unwrap();
    let (paused, other) = if pid == a.pid() { (&a, &b) } else { (&b, &a) };
    assert_eq!(paused.pid(), pid, "{owner}");
    let first_script = attempts(&trace)[0].pid;
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };

    let done = wait_for("the other node to finish the job", Duration::from_secs(60), || {
        let j = other.api(&format!("/jobs/{id}"), None);
        (j["status"] == "succeeded").then_some(j)
    });
    assert_eq!(done["attempt"], 2, "{done}");
    // The paused node's script was stopped by its runner, unasked.
    assert!(!alive(first_script), "the paused node's script {first_script} still runs");
    let runs = attempts(&trace);
    assert_eq!(runs.len(), 2, "{runs:?}");
    let (first, second) = (&runs[0], &runs[1]);
    assert!(!first.ended && second.ended, "{runs:?}");
    assert!(
        first.last < second.first,
        "the attempts overlapped: the first ticked until {} and the second started at {}",
        first.last,
        second.first
    );
    let gap_ms = (second.first - first.last) / 1_000_000;
    println!("the first attempt's last tick came {gap_ms} ms before the second attempt started");

    // Back from the pause: everything it says about the old attempt is
    // refused; it serves on.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    // (Whichever it notices first: its renewal refused, or its time up.)
    let paused_log = wait_for("the paused node to notice", Duration::from_secs(20), || {
        let log = paused.log();
        (log.contains("lost the job") || log.contains("could not renew the job's lease in time"))
            .then_some(log)
    });
    assert!(!paused_log.contains("job finished"), "{paused_log}");
    let after = paused.api(&format!("/jobs/{id}"), None);
    assert_eq!((&after["status"], &after["attempt"]), (&json!("succeeded"), &json!(2)), "{after}");
    let lines = other.api(&format!("/jobs/{id}/logs"), None);
    let texts: Vec<&str> = lines["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert_eq!(
        texts.iter().filter(|t| t.contains("attempt ended")).count(),
        1,
        "{texts:?}"
    );
}
