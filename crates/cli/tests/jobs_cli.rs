//! Running events and following jobs from the terminal, against a real
//! `cronium serve` that runs scripts with the real `cronium-runner`.

mod common;

use std::time::Duration;

use common::{Server, require_runner, script};
use serde_json::Value;

/// Starts a server and creates a manual bash event `name` running `body`.
fn server_with_event(name: &str, body: &str, extra: &[&str]) -> (Server, tempfile::TempDir) {
    require_runner();
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let path = script(work.path(), &format!("{name}.sh"), body);
    let mut args = vec![
        "event", "create", "--name", name, "--script", &path, "--manual",
    ];
    args.extend_from_slice(extra);
    server.cronium(&args).ok();
    (server, work)
}

fn only_job(server: &Server, event: &str) -> Value {
    let page = server
        .cronium(&["job", "list", "--event", event, "--json"])
        .ok()
        .json();
    assert_eq!(page["total"], 1, "{page}");
    page["items"][0].clone()
}

#[test]
fn a_followed_run_behaves_like_the_script_itself() {
    let (server, _work) = server_with_event(
        "report",
        "echo 'line one'\necho 'a warning' >&2\necho 'line two'\nexit 3\n",
        &[],
    );

    let run = server.cronium(&["event", "run", "report", "--follow"]);
    assert_eq!(
        run.code(),
        Some(3),
        "the script's exit code: {}",
        run.stderr()
    );
    assert_eq!(
        run.stdout(),
        "line one\nline two\n",
        "stdout lines, nothing else"
    );
    let err = run.stderr();
    assert!(err.contains("a warning\n"), "stderr lines on stderr: {err}");
    assert!(!err.contains("line one"), "{err}");

    // Afterwards, the job remembers all of it.
    let job = only_job(&server, "report");
    assert_eq!(job["status"], "failed");
    assert_eq!(job["exitCode"], 3);
    assert_eq!(job["trigger"], "manual");
    let id = job["id"].to_string();

    let list = server
        .cronium(&["job", "list", "--event", "report"])
        .ok()
        .stdout();
    assert!(list.contains("report") && list.contains("failed"), "{list}");
    assert!(list.contains("1 of 1 jobs"), "{list}");
    let show = server.cronium(&["job", "show", &id]).ok().stdout();
    assert!(show.contains("status           failed"), "{show}");
    assert!(show.contains("exit code        3"), "{show}");
    assert!(show.contains("report ("), "the event by name: {show}");

    let logs = server.cronium(&["job", "logs", &id]).ok();
    assert_eq!(logs.stdout(), "line one\nline two\n");
    assert!(logs.stderr().contains("a warning\n"), "{}", logs.stderr());
    let logs = server.cronium(&["job", "logs", &id, "--json"]).ok().json();
    // Each stream keeps its order; the two are separate pipes, so how they
    // interleave is up to the scheduler.
    let texts = |stream: &str| -> Vec<String> {
        logs["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["stream"] == stream)
            .map(|l| l["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(texts("stdout"), ["line one\n", "line two\n"]);
    assert_eq!(texts("stderr"), ["a warning\n"]);
    assert_eq!(logs["status"], "failed");

    // Following a job that is over replays it and ends the same way.
    let again = server.cronium(&["job", "logs", &id, "--follow"]);
    assert_eq!(again.code(), Some(3));
    assert_eq!(again.stdout(), "line one\nline two\n");
}

#[test]
fn a_run_without_follow_prints_the_job_and_leaves_it_running() {
    let (server, _work) = server_with_event("quick", "echo done\n", &[]);
    let queued = server.cronium(&["event", "run", "quick"]).ok().stdout();
    assert!(
        queued.starts_with("job ") && queued.contains("queued"),
        "{queued}"
    );
    let id = queued.split_whitespace().nth(1).unwrap();

    // Catching up with a job started earlier: its output, then its status.
    let caught_up = server.cronium(&["job", "logs", id, "--follow"]).ok();
    assert_eq!(caught_up.stdout(), "done\n");

    let job = server
        .cronium(&["event", "run", "quick", "--json", "--input", r#"{"n": 1}"#])
        .ok()
        .json();
    assert!(job["id"].is_i64(), "{job}");
    assert_eq!(job["trigger"], "manual");

    server
        .cronium(&["event", "run", "quick", "--input", "{not json"])
        .fails_with(&["--input", "not JSON"]);
    server
        .cronium(&["event", "run", "quick", "--follow", "--json"])
        .fails_with(&["do not mix"]);
}

#[test]
fn the_script_reads_its_input_and_success_exits_zero() {
    let (server, _work) = server_with_event("greet", "echo \"input=$(cronium input)\"\n", &[]);
    let run = server
        .cronium(&["event", "run", "greet", "-f", "--input", r#"{"who":"ops"}"#])
        .ok();
    assert_eq!(run.stdout(), "input={\"who\":\"ops\"}\n");
}

#[test]
fn output_arrives_while_the_job_still_runs() {
    // The script cannot print its second line, or end, before the test
    // creates the gate: a CLI that buffered until the job ended would never
    // show the first line in time.
    let gates = tempfile::tempdir().unwrap();
    let gate = gates.path().join("gate");
    let body = format!(
        "echo first\nfor i in $(seq 600); do [ -e '{}' ] && break; sleep 0.05; done\necho second\n",
        gate.display()
    );
    let (server, _work) = server_with_event("slow", &body, &[]);
    let mut follower = server.cronium_spawn(&["event", "run", "slow", "--follow"]);
    let lines = follower.stdout_lines();

    let first = lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(first, "first");
    assert_eq!(
        lines.recv_timeout(Duration::from_millis(500)),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout),
        "nothing else may arrive before the gate opens"
    );
    assert!(
        follower.0.try_wait().unwrap().is_none(),
        "the follower is still waiting for the job"
    );
    std::fs::write(&gate, "").unwrap();
    let second = lines.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(second, "second");
    let (status, err) = follower.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}: {err}");
    assert!(
        !err.contains("waiting:"),
        "no progress indicator when stderr is not a terminal: {err:?}"
    );
}

#[test]
fn binary_output_comes_back_byte_for_byte() {
    let (server, _work) = server_with_event("bytes", "printf 'ok\\n\\377\\376\\n'\n", &[]);
    let run = server.cronium(&["event", "run", "bytes", "--follow"]).ok();
    assert_eq!(run.0.stdout, b"ok\n\xff\xfe\n");
    let id = only_job(&server, "bytes")["id"].to_string();
    let logs = server.cronium(&["job", "logs", &id]).ok();
    assert_eq!(logs.0.stdout, b"ok\n\xff\xfe\n");
}

#[test]
fn cancelling_a_running_job_ends_its_follower_with_130() {
    let (server, _work) = server_with_event("long", "echo started\nsleep 60\n", &[]);
    let mut follower = server.cronium_spawn(&["event", "run", "long", "--follow"]);
    let lines = follower.stdout_lines();
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(30)).unwrap(),
        "started"
    );

    let job = only_job(&server, "long");
    assert_eq!(job["status"], "running");
    let id = job["id"].to_string();
    let cancel = server.cronium(&["job", "cancel", &id]).ok().stdout();
    assert!(cancel.contains(&format!("job {id}")), "{cancel}");

    let (status, err) = follower.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("cancelled"), "{err}");
    let job = server.cronium(&["job", "show", &id, "--json"]).ok().json();
    assert_eq!(job["status"], "cancelled");

    server.cronium(&["job", "cancel", &id]).fails_with(&["409"]);
}

#[test]
fn a_job_over_its_timeout_exits_124() {
    let (server, _work) = server_with_event("stuck", "sleep 30\n", &["--timeout", "1s"]);
    let run = server.cronium(&["event", "run", "stuck", "--follow"]);
    assert_eq!(run.code(), Some(124), "{}", run.stderr());
    assert!(run.stderr().contains("timed out"), "{}", run.stderr());
    assert_eq!(only_job(&server, "stuck")["status"], "timed_out");
}

#[test]
fn a_refused_run_fails_with_the_servers_reason() {
    let (server, _work) = server_with_event("busy", "sleep 60\n", &[]);
    let first = server
        .cronium(&["event", "run", "busy", "--json"])
        .ok()
        .json();
    // The default overlap policy forbids a second run while one is under way.
    server
        .cronium(&["event", "run", "busy", "--follow"])
        .fails_with(&["409"]);
    server
        .cronium(&["job", "cancel", &first["id"].to_string()])
        .ok();

    let work = tempfile::tempdir().unwrap();
    let path = script(work.path(), "draft.sh", "true\n");
    server
        .cronium(&[
            "event", "create", "--name", "draft", "--script", &path, "--manual", "--status",
            "draft",
        ])
        .ok();
    server
        .cronium(&["event", "run", "draft"])
        .fails_with(&["409", "only active or paused events run"]);
    server
        .cronium(&["event", "run", "nothing-by-this-name"])
        .fails_with(&["no event named"]);
}

#[test]
fn job_lists_filter_by_status_and_time() {
    let (server, _work) = server_with_event("twice", "exit 0\n", &[]);
    for _ in 0..2 {
        server.cronium(&["event", "run", "twice", "-f"]).ok();
    }
    let all = server.cronium(&["job", "list", "--json"]).ok().json();
    assert_eq!(all["total"], 2);
    let ids: Vec<i64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert!(ids[0] > ids[1], "newest first: {ids:?}");

    let succeeded = server
        .cronium(&[
            "job",
            "list",
            "--status",
            "succeeded",
            "--limit",
            "1",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(succeeded["total"], 2);
    assert_eq!(succeeded["items"].as_array().unwrap().len(), 1);
    let future = server
        .cronium(&["job", "list", "--since", "2999-01-01T00:00:00Z", "--json"])
        .ok()
        .json();
    assert_eq!(future["total"], 0);
    server
        .cronium(&["job", "list", "--since", "last tuesday"])
        .fails_with(&["--since", "RFC 3339"]);
    server
        .cronium(&["job", "show", "999999"])
        .fails_with(&["404"]);
}

#[test]
fn a_follower_rides_out_a_server_restart_without_losing_or_repeating_a_line() {
    require_runner();
    // A short lease, so the restarted server takes the orphaned job back soon.
    let env = [("CRONIUM_JOB_LEASE", "5s")];
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(&dir.path().join("data"), None, &env);
    server.wait_until_up();
    let path = script(dir.path(), "steps.sh", "echo begin\nsleep 3\necho finish\n");
    server
        .cronium(&[
            "event",
            "create",
            "--name",
            "steps",
            "--script",
            &path,
            "--manual",
            "--retries",
            "1",
        ])
        .ok();

    let mut follower = server.cronium_spawn(&["event", "run", "steps", "--follow"]);
    let lines = follower.stdout_lines();
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(30)).unwrap(),
        "begin"
    );
    // The server dies mid-job; the killed attempt is retried from the start.
    server.kill_and_restart(&env);

    let (status, err) = follower.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("reconnecting"), "{err}");
    let followed: Vec<String> = lines.iter().collect();
    assert_eq!(followed, ["begin", "finish"], "after the first begin");

    // What the follower printed is exactly what the job stored.
    let id = only_job(&server, "steps")["id"].to_string();
    let stored = server.cronium(&["job", "logs", &id]).ok().stdout();
    assert_eq!(stored, "begin\nbegin\nfinish\n");
}

#[test]
fn run_policy_flags_are_set_shown_and_checked() {
    let (server, _work) = server_with_event(
        "policed",
        "true\n",
        &[
            "--overlap",
            "queue",
            "--misfire",
            "catch_up",
            "--retries",
            "2",
            "--retry-delay",
            "30s",
            "--max-executions",
            "5",
        ],
    );
    let event = server
        .cronium(&["event", "show", "policed", "--json"])
        .ok()
        .json();
    assert_eq!(event["overlap"], "queue");
    assert_eq!(event["misfire"], "catch_up");
    assert_eq!(event["retryDelay"], "30s");
    assert_eq!(event["maxExecutions"], 5);
    let table = server.cronium(&["event", "show", "policed"]).ok().stdout();
    assert!(
        table.contains("queue") && table.contains("catch_up"),
        "{table}"
    );
    server
        .cronium(&["event", "edit", "policed", "--overlap", "sometimes"])
        .fails_with(&["overlap"]);
    server
        .cronium(&["event", "edit", "policed", "--max-concurrent", "2"])
        .fails_with(&["maxConcurrent"]);
    let edited = server
        .cronium(&[
            "event",
            "edit",
            "policed",
            "--overlap",
            "allow",
            "--max-concurrent",
            "2",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(edited["maxConcurrent"], 2);
}

/// Past the per-attempt cap the first and the last lines are kept, with one
/// line between saying what was left out: the error is usually at the end.
#[test]
fn output_past_the_cap_keeps_its_first_and_last_lines() {
    require_runner();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(
        &dir.path().join("data"),
        None,
        &[("CRONIUM_JOB_LOG_LIMIT", "1000")],
    );
    server.wait_until_up();
    // 3,893 bytes of numbers, then the line that matters.
    let body = "seq 1 1000\necho 'disk full' >&2\nexit 3\n";
    let path = script(dir.path(), "loud.sh", body);
    server
        .cronium(&[
            "event", "create", "--name", "loud", "--script", &path, "--manual",
        ])
        .ok();
    let run = server.cronium(&["event", "run", "loud", "--follow"]);
    assert_eq!(run.code(), Some(3));
    let (out, err) = (run.stdout(), run.stderr());
    assert!(out.starts_with("1\n2\n3\n"), "the head: {out}");
    assert!(out.ends_with("999\n1000\n"), "the tail: {out}");
    assert!(err.contains("disk full"), "the last line: {err}");
    let marker = err
        .lines()
        .find(|l| l.contains("left out"))
        .unwrap_or_else(|| panic!("no marker: {err}"));
    assert!(
        marker.contains(" lines (") && marker.contains("bytes) left out"),
        "{marker}"
    );
    let stored: usize = out.len() + "disk full\n".len();
    assert!(stored <= 1000, "{stored} bytes kept");
}
