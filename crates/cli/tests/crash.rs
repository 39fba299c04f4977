//! Killing `cronium serve` between writing a payload file and committing its
//! row, then restarting it, leaves a consistent state: no event, no orphan
//! file, and the same request succeeds afterwards. A real crash: the server
//! aborts at that exact point (the `after-payload-write` failpoint).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::Server;
use cronium_store::testing::TestPostgres;
use serde_json::{Value, json};

/// What `std::process::abort` dies of.
const SIGABRT: i32 = 6;

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn create_event(server: &Server, token: &str) -> Result<Value, ureq::Error> {
    let body = json!({"name": "backup", "interpreter": "bash", "content": "echo hi\n"});
    ureq::post(format!("{}/api/v1/events", server.url))
        .header("Authorization", format!("Bearer {token}"))
        .send_json(&body)
        .and_then(|mut r| r.body_mut().read_json())
}

fn events(server: &Server, token: &str) -> Value {
    ureq::get(format!("{}/api/v1/events", server.url))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}

fn a_crash_between_payload_file_and_row_leaves_nothing_behind(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // First life: prepared to die right after the payload files are written.
    let mut doomed = Server::spawn(
        &data,
        database_url,
        &[("CRONIUM_FAILPOINT", "after-payload-write")],
    );
    doomed.wait_until_up();
    let token = doomed.admin_token();
    assert!(
        create_event(&doomed, &token).is_err(),
        "the server died mid-request"
    );
    let status = doomed.wait_for_exit();
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "killed at the failpoint: {status}"
    );
    let payloads = data.join("payloads");
    assert!(
        files_under(&payloads)
            .iter()
            .any(|f| f.ends_with("v1.tar.gz")),
        "the crash left a payload file with no row: {:?}",
        files_under(&payloads)
    );
    drop(doomed);

    // Second life: the start-up sweep removes the orphan; no event exists.
    let mut server = Server::spawn(&data, database_url, &[]);
    server.wait_until_up();
    let listed = events(&server, &token);
    assert_eq!(listed["total"], 0, "the row never committed: {listed}");
    assert_eq!(
        files_under(&payloads),
        Vec::<String>::new(),
        "orphans swept"
    );

    // And the same request now succeeds, as version 1.
    let event = create_event(&server, &token).expect("create after restart");
    assert_eq!(event["payloadVersion"], 1);
    let files = files_under(&payloads);
    assert_eq!(files.len(), 2, "payload and checksum: {files:?}");
}

#[test]
fn crash_after_payload_write_on_sqlite() {
    a_crash_between_payload_file_and_row_leaves_nothing_behind(None);
}

#[test]
fn crash_after_payload_write_on_postgres() {
    let url = TestPostgres::fresh_database();
    a_crash_between_payload_file_and_row_leaves_nothing_behind(Some(&url));
}
