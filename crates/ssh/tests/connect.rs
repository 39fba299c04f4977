//! Connecting to a real OpenSSH server: host keys verified or trusted on first use, every way to log in, every way to fail.

use std::time::{Duration, Instant};

use cronium_ssh::testing::{KEY_PASSPHRASE, TestSshd};
use cronium_ssh::{Credentials, HostKeyPin, HostKeyPolicy, SshError, Timeouts, check, connect};

/// Where these tests look for a deployed runner, relative to the home.
const RUNNER: &str = ".cache/cronium/runner/cronium-runner";

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        auth: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn a_pinned_host_with_a_key_runs_commands_and_reports_on_itself() {
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let target = sshd.target(user);

    let session = connect(&target, &user.key_credentials(), &sshd.pinned(), timeouts())
        .await
        .expect("key auth to a pinned host");
    assert!(!session.trusted_on_first_use());
    assert_eq!(
        session.host_key().fingerprint(),
        sshd.host_key_fingerprint()
    );

    let whoami = session.exec("whoami; echo oops >&2; exit 3").await.unwrap();
    assert_eq!(whoami.stdout_text().trim(), user.name);
    assert_eq!(whoami.stderr_text().trim(), "oops");
    assert_eq!(whoami.exit_status, Some(3));
    assert!(!whoami.truncated);

    let big = session
        .exec_limited("head -c 100000 /dev/zero", 1000)
        .await
        .unwrap();
    assert!(big.success());
    assert_eq!(big.stdout.len(), 1000);
    assert!(
        big.truncated,
        "output past the limit is dropped and says so"
    );
    session.close().await;

    let report = check(
        &target,
        &user.key_credentials(),
        &sshd.pinned(),
        timeouts(),
        RUNNER,
    )
    .await;
    assert!(report.ok(), "{:?}", report.error);
    assert!(report.reachable && report.authenticated);
    assert!(!report.newly_pinned);
    let uname = std::process::Command::new("uname")
        .arg("-sm")
        .output()
        .unwrap();
    assert_eq!(
        report.system().unwrap(),
        String::from_utf8_lossy(&uname.stdout).trim(),
        "same machine, so the same `uname -sm`"
    );
    let bash = report.interpreter("bash").expect("bash is always probed");
    assert!(
        bash.version
            .as_deref()
            .unwrap()
            .starts_with(|c: char| c.is_ascii_digit())
    );
    assert!(bash.version_line.as_deref().unwrap().contains("GNU bash"));
    assert_eq!(
        report.interpreters.len(),
        3,
        "bash, python3, node: present or absent"
    );
    assert_eq!(report.runner, None, "nothing deployed yet");
}

#[tokio::test]
async fn a_deployed_runner_reports_its_version() {
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let target = sshd.target(user);
    let session = connect(&target, &user.key_credentials(), &sshd.pinned(), timeouts())
        .await
        .unwrap();
    // A stand-in runner that prints what `cronium-runner version --json` prints.
    let install = r#"mkdir -p ~/.cache/cronium/runner && cd ~/.cache/cronium/runner &&
        printf '#!/bin/sh\necho '"'"'{"name":"cronium-runner","version":"9.8.7","protocol":1}'"'"'\n' > cronium-runner &&
        chmod +x cronium-runner"#;
    assert!(session.exec(install).await.unwrap().success());

    let report = check(
        &target,
        &user.key_credentials(),
        &sshd.pinned(),
        timeouts(),
        RUNNER,
    )
    .await;
    let runner = report.runner.expect("a runner is deployed");
    assert_eq!(runner.version.as_deref(), Some("9.8.7"));
    assert!(runner.raw.contains("cronium-runner"));

    // The runner is looked for where the caller says: an absolute path, or
    // one relative to the home; nothing there, no runner.
    let moved = "mv ~/.cache/cronium/runner ~/'elsewhere'";
    assert!(session.exec(moved).await.unwrap().success());
    let absolute = user.home.join("elsewhere/cronium-runner");
    for (path, version) in [
        (absolute.to_str().unwrap(), Some("9.8.7")),
        ("elsewhere/cronium-runner", Some("9.8.7")),
        (RUNNER, None),
    ] {
        let report = check(
            &target,
            &user.key_credentials(),
            &sshd.pinned(),
            timeouts(),
            path,
        )
        .await;
        assert!(report.ok(), "{path}: {:?}", report.error);
        assert_eq!(
            report.runner.map(|r| r.version),
            version.map(|v| Some(v.to_string())),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_passphrase_protected_key_needs_the_right_passphrase() {
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let target = sshd.target(user);

    let right = user.encrypted_key_credentials(KEY_PASSPHRASE);
    let session = connect(&target, &right, &sshd.pinned(), timeouts())
        .await
        .unwrap();
    assert!(session.exec("true").await.unwrap().success());

    let wrong = user.encrypted_key_credentials("not the passphrase");
    let err = connect(&target, &wrong, &sshd.pinned(), timeouts())
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
    assert!(
        !err.to_string().contains("not the passphrase"),
        "never echo a secret: {err}"
    );

    let none = Credentials::Key {
        private_key: user.encrypted_key.private.clone(),
        passphrase: None,
    };
    let err = connect(&target, &none, &sshd.pinned(), timeouts())
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("no passphrase"), "{err}");
}

#[tokio::test]
async fn password_auth_works_and_a_wrong_password_or_key_is_refused() {
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let target = sshd.target(user);

    let session = connect(
        &target,
        &user.password_credentials(),
        &sshd.pinned(),
        timeouts(),
    )
    .await
    .expect("password auth");
    assert_eq!(
        session.exec("whoami").await.unwrap().stdout_text().trim(),
        user.name
    );

    let wrong_password = Credentials::Password {
        password: "hunter2".into(),
    };
    let err = connect(&target, &wrong_password, &sshd.pinned(), timeouts())
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::Auth { .. }), "{err}");
    assert!(
        !err.to_string().contains("hunter2"),
        "never echo a secret: {err}"
    );

    let err = connect(&target, &sshd.stranger_key(), &sshd.pinned(), timeouts())
        .await
        .unwrap_err();
    assert_eq!(err.phase(), "auth");
    let message = err.to_string();
    assert!(
        message.contains(&user.name) && message.contains(&target.address()),
        "{message}"
    );
    assert!(message.contains("refused the key"), "{message}");

    let report = check(
        &target,
        &sshd.stranger_key(),
        &sshd.pinned(),
        timeouts(),
        RUNNER,
    )
    .await;
    assert!(report.reachable && !report.authenticated);
    assert_eq!(report.error.unwrap().phase(), "auth");
}

#[tokio::test]
async fn trust_on_first_use_returns_the_key_and_a_changed_key_is_refused_with_both_fingerprints() {
    let mut sshd = TestSshd::start(1);
    let user = sshd.user(0).clone();
    let target = sshd.target(&user);

    let report = check(
        &target,
        &user.key_credentials(),
        &HostKeyPolicy::TrustOnFirstUse,
        timeouts(),
        RUNNER,
    )
    .await;
    assert!(report.ok(), "{:?}", report.error);
    assert!(report.newly_pinned);
    let seen = report.host_key.expect("the key seen is reported");
    let old_fingerprint = sshd.host_key_fingerprint();
    assert_eq!(
        seen.fingerprint(),
        old_fingerprint,
        "same text as ssh-keygen -lf"
    );

    // The caller pins what it saw, as a known_hosts line; it works from then on.
    let line = seen.known_hosts_line(&target.host, target.port);
    assert!(
        line.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", target.port)),
        "{line}"
    );
    let pinned = HostKeyPolicy::Pinned(HostKeyPin::parse(&line).unwrap());
    connect(&target, &user.key_credentials(), &pinned, timeouts())
        .await
        .unwrap();

    // The host comes back with another key on the same address.
    sshd.replace_host_key();
    let new_fingerprint = sshd.host_key_fingerprint();
    assert_ne!(new_fingerprint, old_fingerprint);
    let err = connect(&target, &user.key_credentials(), &pinned, timeouts())
        .await
        .unwrap_err();
    assert!(matches!(err, SshError::HostKey { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&old_fingerprint), "{message}");
    assert!(message.contains(&new_fingerprint), "{message}");
    assert!(message.contains(&target.address()), "{message}");

    // A pin by fingerprint alone is held to the same rule.
    let by_fingerprint = HostKeyPolicy::Pinned(HostKeyPin::parse(&old_fingerprint).unwrap());
    let err = connect(
        &target,
        &user.key_credentials(),
        &by_fingerprint,
        timeouts(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.phase(), "host key");

    let report = check(
        &target,
        &user.key_credentials(),
        &pinned,
        timeouts(),
        RUNNER,
    )
    .await;
    assert!(report.reachable && !report.authenticated);
    assert_eq!(report.error.unwrap().phase(), "host key");
}

#[test]
fn a_malformed_known_hosts_line_is_a_clear_error() {
    let err = HostKeyPin::parse("[127.0.0.1]:2222 ssh-ed25519").unwrap_err();
    assert_eq!(err.phase(), "known_hosts");
    assert!(err.to_string().contains("not a known_hosts line"), "{err}");
    assert!(err.to_string().contains("[127.0.0.1]:2222"), "{err}");
}

#[tokio::test]
async fn a_closed_port_fails_fast_in_the_connect_phase() {
    let mut sshd = TestSshd::start(1);
    let user = sshd.user(0).clone();
    let target = sshd.target(&user);
    sshd.stop();

    let started = Instant::now();
    let err = connect(
        &target,
        &user.key_credentials(),
        &HostKeyPolicy::TrustOnFirstUse,
        timeouts(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SshError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&target.address()), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused, not timed out: {err}"
    );

    let report = check(
        &target,
        &user.key_credentials(),
        &HostKeyPolicy::TrustOnFirstUse,
        timeouts(),
        RUNNER,
    )
    .await;
    assert!(!report.reachable && !report.authenticated && report.host_key.is_none());
}

#[tokio::test]
async fn two_users_are_two_distinct_hosts() {
    let sshd = TestSshd::start(2);
    let (a, b) = (sshd.user(0), sshd.user(1));
    assert_ne!(a.name, b.name);

    let on_a = connect(
        &sshd.target(a),
        &a.key_credentials(),
        &sshd.pinned(),
        timeouts(),
    )
    .await
    .unwrap();
    let on_b = connect(
        &sshd.target(b),
        &b.key_credentials(),
        &sshd.pinned(),
        timeouts(),
    )
    .await
    .unwrap();
    assert!(on_a.exec("echo a > ~/mark").await.unwrap().success());
    assert_eq!(
        on_a.exec("echo $HOME; cat ~/mark")
            .await
            .unwrap()
            .stdout_text(),
        format!("{}\na\n", a.home.display())
    );
    let on_b_home = on_b.exec("echo $HOME; cat ~/mark").await.unwrap();
    assert_eq!(on_b_home.stdout_text(), format!("{}\n", b.home.display()));
    assert!(!on_b_home.success(), "b's home has no mark from a");

    // One user's key does not open the other's account.
    let err = connect(
        &sshd.target(b),
        &a.key_credentials(),
        &sshd.pinned(),
        timeouts(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.phase(), "auth");
}
