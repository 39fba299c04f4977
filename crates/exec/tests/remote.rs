//! The SSH executor on its own against a real OpenSSH server (the end-to-end remote jobs are the server crate's `tests/remote.rs`).

use std::time::{Duration, Instant};

use cronium_exec::remote::{Pool, RemoteExecutor, RemoteServer, RunnerArtifacts};
use cronium_exec::{Phase, RunRequest};
use cronium_ssh::testing::TestSshd;

/// Long enough for a slow CI machine; the tests finish far sooner.
const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The processes of a (throwaway) Unix user.
fn pids_of(user: &str) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-u", user])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

// Multi-threaded: `wait_for` blocks its thread while the SSH session's own
// task must go on running to say goodbye.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_of_an_architecture_without_a_runner_fails_in_the_deploy_phase() {
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let server = RemoteServer {
        id: cronium_core::ServerId(1),
        name: cronium_core::ServerName::new("odd").unwrap(),
        target: sshd.target(user),
        credentials: user.key_credentials(),
        pin: Some(cronium_ssh::HostKeyPin::Key(sshd.host_key())),
        cache: Default::default(),
    };
    let mut artifacts = RunnerArtifacts::default();
    artifacts.insert("sparc64", b"#!/bin/sh\n".to_vec());
    let executor = RemoteExecutor::new(Pool::default(), artifacts, Duration::from_secs(1));
    let request = RunRequest {
        payload: "/nonexistent.tar.gz".into(),
        sha256: "0".repeat(64),
        timeout: Duration::from_secs(10),
        env: Default::default(),
        helpers: None,
        secrets: Default::default(),
        lease: None,
    };
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let execution = executor
        .run(
            &server,
            &request,
            tx,
            tokio_util::sync::CancellationToken::new(),
        )
        .await;
    assert_eq!(execution.phase, Some(Phase::Deploy));
    let error = execution.report.error.unwrap();
    let arch = std::env::consts::ARCH;
    assert!(
        error.contains(&format!(
            "no cronium-runner for {arch} hosts (available: sparc64)"
        )),
        "{error}"
    );
    assert!(!execution.runner_uploaded);

    // The connection made for it stays open for the next job, until idle.
    let sessions = || pids_of(&user.name).len();
    // A process of the login may still be on its way out (seen once on a
    // loaded machine): what must hold is that one stays.
    wait_for(
        "one sshd session process for the connection",
        PATIENCE,
        || (sessions() == 1).then_some(()),
    );
    let now = tokio::time::Instant::now();
    assert_eq!(executor.close_idle(now).await, 0, "just used");
    assert_eq!(executor.close_idle(now + Duration::from_secs(601)).await, 1);
    wait_for("the idle connection's session to end", PATIENCE, || {
        (sessions() == 0).then_some(())
    });
}
