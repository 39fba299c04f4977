//! Workflow runs against a real `cronium serve`: `workflow run --follow` labels every node's lines and exits with the run's result, a webhook key is shown once and never logged, and a run survives `kill -9` of the server mid-node, with every node run exactly once (SQLite and PostgreSQL).

mod common;

use std::time::Duration;

use common::{Server, script, trace, wait_for};
use cronium_store::testing::TestPostgres;
use serde_json::{Value, json};

#[test]
fn run_follow_labels_each_nodes_lines_and_exits_with_the_runs_result() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [
        ("fetch", "echo fetched\n"),
        ("broken", "echo oops >&2\nexit 2\n"),
        ("after", "echo never\n"),
    ] {
        let file = script(dir.path(), &format!("{name}.sh"), body);
        server
            .cronium(&["event", "create", "--name", name, "--script", &file])
            .ok();
    }
    let file = script(
        dir.path(),
        "pipeline.yaml",
        "name: pipeline\nnodes:\n  - {id: fetch, event: fetch}\n  - {id: broken, event: broken, after: [fetch]}\n  - {id: after, event: after, after: [broken]}\n",
    );
    server.cronium(&["workflow", "apply", "-f", &file]).ok();

    let followed = server.cronium(&["workflow", "run", "pipeline", "--follow"]);
    assert_eq!(followed.code(), Some(1), "{}", followed.stderr());
    assert_eq!(followed.stdout(), "[fetch] fetched\n");
    let err = followed.stderr();
    for needle in [
        "cronium: [fetch] succeeded (job ",
        "[broken] oops\n",
        "cronium: [broken] failed (job ",
        "cronium: [after] skipped: broken failed (its edge is on success)\n",
        "failed: node broken failed and no edge handles it\n",
    ] {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
    // Transitions come in order: fetch's before broken's end.
    assert!(
        err.find("[fetch] succeeded") < err.find("[broken] failed"),
        "{err}"
    );

    let runs = server
        .cronium(&["workflow", "runs", "pipeline"])
        .ok()
        .stdout();
    let lines: Vec<&str> = runs.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{runs}"
    );
    assert!(
        lines[1].contains("pipeline") && lines[1].contains("failed"),
        "{runs}"
    );
    let run = lines[1].split_whitespace().next().unwrap().to_string();

    // The retry runs broken again (still broken), and only it.
    let retried = server.cronium(&["workflow", "retry", &run, "--follow"]);
    assert_eq!(retried.code(), Some(1), "{}", retried.stderr());
    assert_eq!(retried.stdout(), "", "fetch did not run again");
    assert!(retried.stderr().contains("pass 2"), "{}", retried.stderr());
    server
        .cronium(&["workflow", "cancel", &run])
        .fails_with(&["already failed"]);
    server
        .cronium(&["workflow", "run", "no-such-workflow"])
        .fails_with(&["no workflow named \"no-such-workflow\""]);
}

#[test]
fn a_webhook_key_is_shown_once_works_and_never_reaches_the_log() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = script(dir.path(), "echo.sh", "cronium input\n");
    server
        .cronium(&["event", "create", "--name", "echo", "--script", &file])
        .ok();
    let definition = script(
        dir.path(),
        "hooked.yaml",
        "name: hooked\ntrigger: {type: webhook, signed: true}\nnodes:\n  - {id: echo, event: echo}\n",
    );
    let applied = server
        .cronium(&["workflow", "apply", "-f", &definition])
        .ok()
        .stdout();
    let lines: Vec<&str> = applied.lines().collect();
    assert_eq!(lines[0], "created hooked (v1)", "{applied}");
    let path = lines[1]
        .strip_prefix("webhook: POST ")
        .and_then(|rest| rest.strip_suffix(" (shown once; keep it)"))
        .unwrap_or_else(|| panic!("{applied}"))
        .to_string();
    assert!(lines[2].starts_with("signing secret: whsec_"), "{applied}");
    // Applied again: no key shown.
    assert_eq!(
        server
            .cronium(&["workflow", "apply", "-f", &definition])
            .ok()
            .stdout(),
        "unchanged hooked (v1)\n"
    );
    let rotated = server
        .cronium(&["workflow", "hook", "hooked"])
        .ok()
        .stdout();
    let new_path = rotated
        .lines()
        .next()
        .unwrap()
        .strip_prefix("webhook: POST ")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let secret = rotated
        .lines()
        .nth(1)
        .unwrap()
        .strip_prefix("signing secret: ")
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(new_path, path);
    let key = cronium_engine::signing::SigningKey::parse(&secret).unwrap();
    let now = chrono::Utc::now().timestamp().to_string();
    let body = br#"{"pushed": true}"#;
    let mut response = ureq::post(format!("{}{new_path}", server.url))
        .header("webhook-id", "d-1")
        .header("webhook-timestamp", &now)
        .header("webhook-signature", &key.sign("d-1", &now, body))
        .send(&body[..])
        .unwrap();
    assert_eq!(response.status(), 202);
    let run: Value = response.body_mut().read_json().unwrap();
    let id = run["id"].as_i64().unwrap();
    let done = wait_for("the run to end", Duration::from_secs(30), || {
        let r = server.api(&format!("/workflow-runs/{id}"), None);
        (r["status"] != "running").then_some(r)
    });
    assert_eq!(done["status"], "succeeded", "{done}");
    let log = server.log();
    assert!(
        log.contains("/hooks/workflows/{key}"),
        "the call is logged by its route"
    );
    for secret_part in [&path, &new_path] {
        let key = secret_part.rsplit('/').next().unwrap();
        assert!(!log.contains(key), "a webhook key reached the log");
    }
}

fn killed_mid_run(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let trace_file = dir.path().join("trace");
    let env = [("CRONIUM_JOB_LEASE", "5s")];
    let mut first = Server::spawn(&data, database_url, &env);
    first.wait_until_up();
    let t = trace_file.display();
    // b's first attempt hangs until the server is killed; its retry ends at once.
    for (name, body) in [
        ("a", format!("echo \"end a\" >> {t}\n")),
        (
            "b",
            format!(
                "echo \"start b $$\" >> {t}\nif [ $(grep -c 'start b' {t}) -eq 1 ]; then sleep 60; fi\necho \"end b\" >> {t}\n"
            ),
        ),
        ("c", format!("echo \"end c\" >> {t}\n")),
    ] {
        first.api("/events",
            Some(
                json!({ "name": name, "interpreter": "bash", "content": body, "retries": 1, "retryDelay": "1s" }),
            ),
        );
    }
    let workflow = first.api(
        "/workflows",
        Some(json!({ "name": "chain", "nodes": [
            { "id": "a", "event": "a" },
            { "id": "b", "event": "b", "after": ["a"] },
            { "id": "c", "event": "c", "after": ["b"] },
        ]})),
    );
    let run = first.api(
        &format!("/workflows/{}/run", workflow["id"]),
        Some(json!({})),
    )["id"]
        .as_i64()
        .unwrap();
    wait_for("b to start", Duration::from_secs(30), || {
        trace(&trace_file)
            .iter()
            .any(|l| l.starts_with("start b"))
            .then_some(())
    });

    unsafe { libc::kill(first.pid() as i32, libc::SIGKILL) };
    first.wait_for_exit();
    let mut second = Server::spawn(&data, database_url, &env);
    second.wait_until_up();
    let done = wait_for("the run to end", Duration::from_secs(90), || {
        let r = second.api(&format!("/workflow-runs/{run}"), None);
        (r["status"] != "running").then_some(r)
    });
    assert_eq!(done["status"], "succeeded", "{done}");
    // Every node ran exactly once: one job each, b's on its second attempt
    // (the first died with the server), and each script finished once.
    let mut lines = trace(&trace_file);
    lines.retain(|l| l.starts_with("end"));
    assert_eq!(lines, ["end a", "end b", "end c"]);
    for node in done["nodes"].as_array().unwrap() {
        let event = node["eventId"].as_i64().unwrap();
        let jobs = second.api(&format!("/jobs?event={event}"), None);
        assert_eq!(jobs["total"], 1, "node {}: {jobs}", node["node"]);
        let job = &jobs["items"][0];
        assert_eq!(job["id"], node["jobId"]);
        let attempts = if node["node"] == "b" { 2 } else { 1 };
        assert_eq!(job["attempt"], attempts, "{job}");
    }
    let running = second.api("/jobs?status=running", None);
    assert_eq!(running["total"], 0, "{running}");
}

#[test]
fn sqlite_a_run_killed_mid_node_continues_after_the_restart() {
    killed_mid_run(None);
}

#[test]
fn postgres_a_run_killed_mid_node_continues_after_the_restart() {
    killed_mid_run(Some(&TestPostgres::fresh_database()));
}
