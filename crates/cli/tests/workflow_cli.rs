//! Workflows from the terminal, against a real `cronium serve`: a YAML file applied (again: unchanged; changed: a new version), listed, shown as YAML, deleted; a broken file refused with its line before anything is sent.

mod common;

use common::{Server, script};

const NIGHTLY: &str = "\
name: nightly
trigger:
  type: cron
  cron: \"0 2 * * *\"
  timezone: UTC
nodes:
  - id: fetch
    event: fetch-data
  - id: report
    event: make-report
    after: [fetch]
";

#[test]
fn a_file_applied_twice_is_unchanged_the_second_time() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path(), "job.sh", "echo hi\n");
    for name in ["fetch-data", "make-report"] {
        server
            .cronium(&["event", "create", "--name", name, "--script", &s])
            .ok();
    }
    let file = script(dir.path(), "nightly.yaml", NIGHTLY);
    let apply = |path: &str| server.cronium(&["workflow", "apply", "-f", path]);
    assert_eq!(apply(&file).ok().stdout(), "created nightly (v1)\n");
    assert_eq!(apply(&file).ok().stdout(), "unchanged nightly (v1)\n");

    // The same definition as JSON is the same version too.
    let json = script(
        dir.path(),
        "nightly.json",
        r#"{"name": "nightly", "trigger": {"type": "cron", "cron": "0 2 * * *", "timezone": "UTC"},
            "nodes": [{"id": "fetch", "event": "fetch-data"},
                      {"id": "report", "event": "make-report", "after": ["fetch"]}]}"#,
    );
    assert_eq!(apply(&json).ok().stdout(), "unchanged nightly (v1)\n");

    let changed = script(
        dir.path(),
        "nightly.yaml",
        &NIGHTLY.replace("after: [fetch]", "after: [{node: fetch, on: always}]"),
    );
    assert_eq!(apply(&changed).ok().stdout(), "updated nightly: v1 → v2\n");

    let list = server.cronium(&["workflow", "list"]).ok().stdout();
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("ID"), "{list}");
    assert!(
        lines[1].contains("nightly") && lines[1].contains(" 2 ") && lines[1].contains("cron"),
        "{list}"
    );

    // `show` prints YAML that applies back as the same version.
    let shown = server
        .cronium(&["workflow", "show", "nightly"])
        .ok()
        .stdout();
    assert!(shown.starts_with("# nightly v2, updated "), "{shown}");
    assert!(shown.contains("on: always"), "{shown}");
    let again = script(dir.path(), "shown.yaml", &shown);
    assert_eq!(apply(&again).ok().stdout(), "unchanged nightly (v2)\n");

    // A broken file is refused here, naming its line, and nothing changes.
    let broken = script(
        dir.path(),
        "broken.yaml",
        "name: nightly\nnodes:\n  - id: fetch\n    event: fetch-data\n    colour: red\n",
    );
    apply(&broken).fails_with(&["broken.yaml", "colour", "line 5"]);
    let cycle = script(
        dir.path(),
        "cycle.yaml",
        "name: nightly\nnodes:\n  - id: a\n    event: fetch-data\n    after: [b]\n  - id: b\n    event: fetch-data\n    after: [a]\n",
    );
    apply(&cycle).fails_with(&["cycle"]);
    // A missing event is the server's to find.
    let missing = script(
        dir.path(),
        "missing.yaml",
        "name: nightly\nnodes:\n  - id: only\n    event: not-there\n",
    );
    apply(&missing).fails_with(&["422", "nodes[0].event", "not-there"]);

    server
        .cronium(&["event", "delete", "fetch-data"])
        .fails_with(&["409", "nightly"]);
    assert_eq!(
        server
            .cronium(&["workflow", "delete", "nightly"])
            .ok()
            .stdout(),
        "deleted workflow nightly\n"
    );
    server
        .cronium(&["workflow", "show", "nightly"])
        .fails_with(&["no workflow named \"nightly\""]);
    server.cronium(&["event", "delete", "fetch-data"]).ok();
}
