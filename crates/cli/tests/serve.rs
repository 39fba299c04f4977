//! `cronium serve` as an operator first meets it: no flags, no setup, a data
//! dir appears, and a signal stops it cleanly.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn wait_for_health(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(format!("{url}/healthz")).call().is_err() {
        assert!(Instant::now() < deadline, "no answer at {url}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The README's promise: `cronium serve` with nothing else creates
/// `./cronium-data/` and listens on 127.0.0.1:8080.
#[test]
fn serve_with_no_flags_sets_itself_up_in_the_current_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cronium"))
        .arg("serve")
        .current_dir(cwd.path())
        .env_remove("CRONIUM_DATA_DIR")
        .env_remove("CRONIUM_LISTEN")
        .env_remove("CRONIUM_DATABASE_URL")
        .env_remove("CRONIUM_MASTER_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_health("http://127.0.0.1:8080");

    let data = cwd.path().join("cronium-data");
    assert_eq!(mode(&data), 0o700, "the data dir is private");
    assert_eq!(mode(&data.join("admin.token")), 0o600);
    assert_eq!(mode(&data.join("master.key")), 0o600);
    assert!(data.join("payloads").is_dir());
    assert!(
        std::fs::read_dir(&data)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".db")),
        "an embedded SQLite database"
    );

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM is a clean shutdown: {status}");
    let log = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    assert!(
        log.contains("admin.token"),
        "the log says where the token is: {log}"
    );
    assert!(!log.contains(token.trim()), "and never what it is");
}

#[test]
fn sigint_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(&dir.path().join("data"), None, &[]);
    server.wait_until_up();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.pid() as i32, libc::SIGINT) };
    let started = Instant::now();
    let status = server.wait_for_exit();
    assert!(status.success(), "SIGINT is a clean shutdown: {status}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
