//! `cronium server add|check|show` end to end: the real `cronium` binary, a real `cronium serve` and a real OpenSSH server.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::Server;
use cronium_ssh::testing::{KEY_PASSPHRASE, TestSshd};

fn local_uname() -> String {
    let out = std::process::Command::new("uname")
        .arg("-sm")
        .output()
        .expect("uname runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Writes a private key where `--key` can read it, mode 0600 as ssh wants.
fn key_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn check_pins_on_first_use_and_fails_naming_the_phase_once_the_host_key_changes() {
    let server = Server::start();
    let mut sshd = TestSshd::start(1);
    let user = sshd.user(0).clone();
    let work = tempfile::tempdir().unwrap();
    let key = key_file(work.path(), "id_ed25519", &user.key.private);
    let port = sshd.port().to_string();
    server
        .cronium(&[
            "server",
            "add",
            "web-1",
            "--host",
            sshd.host(),
            "--port",
            &port,
            "--user",
            &user.name,
            "--key",
            key.to_str().unwrap(),
        ])
        .ok();
    let listed = server.cronium(&["server", "list"]).ok().stdout();
    assert!(listed.contains("not pinned"), "{listed}");

    let fingerprint = sshd.host_key_fingerprint();
    let first = server.cronium(&["server", "check", "web-1"]).ok().stdout();
    let address = format!("{}@127.0.0.1:{port}", user.name);
    for needle in [
        format!("web-1 ({address})"),
        "result    ok".to_string(),
        format!("ssh-ed25519 {fingerprint} (pinned just now: trusted on first use)"),
        format!("system    {}", local_uname()),
        "runner    not deployed".to_string(),
    ] {
        assert!(first.contains(&needle), "no {needle:?} in:\n{first}");
    }
    let bash = first
        .lines()
        .find_map(|l| l.strip_prefix("bash"))
        .unwrap_or_else(|| panic!("no bash line:\n{first}"));
    assert!(
        bash.trim().starts_with(|c: char| c.is_ascii_digit()),
        "{first}"
    );
    assert!(!first.contains("PRIVATE KEY"), "{first}");

    let shown = server.cronium(&["server", "show", "web-1"]).ok().stdout();
    assert!(
        shown.contains(&format!("hostKeyFingerprint {fingerprint}")),
        "{shown}"
    );
    let listed = server.cronium(&["server", "list"]).ok().stdout();
    assert!(listed.contains(&fingerprint), "{listed}");

    let second = server.cronium(&["server", "check", "web-1"]).ok().stdout();
    assert!(
        second.contains(&format!("{fingerprint} (already pinned)")),
        "{second}"
    );
    let json = server
        .cronium(&["server", "check", "web-1", "--json"])
        .ok()
        .json();
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["newlyPinned"], false);
    assert_eq!(json["hostKey"]["fingerprint"], fingerprint.as_str());

    // The host comes back with another key.
    sshd.replace_host_key();
    let new_fingerprint = sshd.host_key_fingerprint();
    let changed = server.cronium(&["server", "check", "web-1"]);
    assert_eq!(changed.code(), Some(1), "stderr: {}", changed.stderr());
    let report = changed.stdout();
    assert!(
        report.contains("result    failed in phase host key: "),
        "{report}"
    );
    assert!(
        report.contains(&fingerprint) && report.contains(&new_fingerprint),
        "{report}"
    );
    assert!(!report.contains("runner"), "no probe ran: {report}");
    let json = server.cronium(&["server", "check", "web-1", "--json"]);
    assert_eq!(json.code(), Some(1));
    assert_eq!(json.json()["error"]["phase"], "host key");
    let shown = server.cronium(&["server", "show", "web-1"]).ok().stdout();
    assert!(
        shown.contains(&format!("hostKeyFingerprint {fingerprint}")),
        "the pin is unchanged: {shown}"
    );

    // The operator checked the reinstall: forget the old pin, pin the new key.
    server.cronium(&["server", "edit", "web-1", "--unpin"]).ok();
    let repinned = server.cronium(&["server", "check", "web-1"]).ok().stdout();
    assert!(
        repinned.contains(&format!("{new_fingerprint} (pinned just now")),
        "{repinned}"
    );
    server
        .cronium(&["server", "edit", "web-1"])
        .fails_with(&["nothing to change"]);

    server
        .cronium(&["server", "check", "no-such-server"])
        .fails_with(&["no server named \"no-such-server\""]);
}

#[test]
fn a_password_or_a_key_passphrase_from_the_environment_logs_in() {
    let server = Server::start();
    let sshd = TestSshd::start(2);
    let (a, b) = (sshd.user(0).clone(), sshd.user(1).clone());
    let work = tempfile::tempdir().unwrap();
    let encrypted = key_file(work.path(), "id_encrypted", &b.encrypted_key.private);
    let port = sshd.port().to_string();
    let secrets = [
        ("CRONIUM_TEST_SSH_PASSWORD", a.password.as_str()),
        ("CRONIUM_TEST_SSH_PASSPHRASE", KEY_PASSPHRASE),
    ];
    let common = ["--host", sshd.host(), "--port", &port];
    let mut add_password = vec!["server", "add", "by-password", "--user", &a.name];
    add_password.extend(common);
    add_password.extend(["--password-env", "CRONIUM_TEST_SSH_PASSWORD"]);
    let added = server.cronium_with(&add_password, &secrets).ok().stdout();
    assert!(added.contains("password"), "{added}");
    let mut add_key = vec!["server", "add", "by-key", "--user", &b.name];
    add_key.extend(common);
    add_key.extend([
        "--key",
        encrypted.to_str().unwrap(),
        "--passphrase-env",
        "CRONIUM_TEST_SSH_PASSPHRASE",
    ]);
    server.cronium_with(&add_key, &secrets).ok();

    let mut everything = String::new();
    for name in ["by-password", "by-key"] {
        let report = server.cronium(&["server", "check", name]).ok().stdout();
        assert!(report.contains("result    ok"), "{report}");
        assert!(report.contains(&local_uname()), "{report}");
        everything.push_str(&report);
        everything.push_str(&server.cronium(&["server", "show", name]).ok().stdout());
    }
    everything.push_str(&server.cronium(&["server", "list", "--json"]).ok().stdout());
    for (_, secret) in secrets {
        assert!(!everything.contains(secret), "{secret} shown: {everything}");
    }
}

#[test]
fn a_fleet_run_streams_every_hosts_lines_labelled_and_exits_non_zero_unless_all_succeed() {
    common::require_runner();
    let server = Server::start();
    let sshd = TestSshd::start(2);
    let work = tempfile::tempdir().unwrap();
    let port = sshd.port().to_string();
    let known_host = sshd.host_key().known_hosts_line(sshd.host(), sshd.port());
    for (name, user) in [("east", sshd.user(0)), ("west", sshd.user(1))] {
        let key = key_file(work.path(), name, &user.key.private);
        server
            .cronium(&[
                "server",
                "add",
                name,
                "--host",
                sshd.host(),
                "--port",
                &port,
                "--user",
                &user.name,
                "--key",
                key.to_str().unwrap(),
                "--known-host",
                &known_host,
            ])
            .ok();
    }
    // A host that is down: nothing listens on its port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let key = key_file(work.path(), "gone", &sshd.user(0).key.private);
    server
        .cronium(&[
            "server",
            "add",
            "gone",
            "--host",
            "127.0.0.1",
            "--port",
            &closed_port,
            "--user",
            "nobody",
            "--key",
            key.to_str().unwrap(),
            "--known-host",
            &known_host,
        ])
        .ok();
    let script = common::script(
        work.path(),
        "fleet.sh",
        "echo \"hi from $(whoami)\"\necho oops >&2\n",
    );
    server
        .cronium(&[
            "event", "create", "--name", "fleet", "--script", &script, "--manual", "--server",
            "east", "--server", "gone", "--server", "west",
        ])
        .ok();

    let run = server.cronium(&["event", "run", "fleet", "--follow"]);
    assert_ne!(run.code(), Some(0), "one host failed: {}", run.stderr());
    let out = run.stdout();
    for (label, user) in [("east", sshd.user(0)), ("west", sshd.user(1))] {
        assert!(
            out.contains(&format!("[{label}] hi from {}\n", user.name)),
            "{out}"
        );
        assert!(
            run.stderr().contains(&format!("[{label}] oops")),
            "{}",
            run.stderr()
        );
    }
    let jobs = server
        .cronium(&["job", "list", "--event", "fleet", "--json"])
        .ok()
        .json();
    let job = &jobs["items"][0];
    assert_eq!(job["status"], "partial", "{job}");
    let id = job["id"].to_string();
    let shown = server.cronium(&["job", "show", &id]).ok().stdout();
    assert!(shown.contains("partial"), "{shown}");
    let gone = shown
        .lines()
        .find(|l| l.starts_with("gone"))
        .unwrap_or_else(|| panic!("no row for the dead host:\n{shown}"));
    assert!(
        gone.contains("failed") && gone.contains("connect"),
        "{gone}"
    );

    // On edit, the servers given replace the targets: the live hosts only.
    server
        .cronium(&[
            "event", "edit", "fleet", "--server", "east", "--server", "west",
        ])
        .ok();
    let run = server.cronium(&["event", "run", "fleet", "--follow"]);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(run.stdout().contains("[east] hi from") && run.stdout().contains("[west] hi from"));
}

#[test]
fn a_cache_dir_given_on_add_is_shown_used_by_runs_and_checks_and_reset_by_edit() {
    common::require_runner();
    let server = Server::start();
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let work = tempfile::tempdir().unwrap();
    let key = key_file(work.path(), "id_ed25519", &user.key.private);
    let port = sshd.port().to_string();
    let added = server
        .cronium(&[
            "server",
            "add",
            "cached",
            "--host",
            sshd.host(),
            "--port",
            &port,
            "--user",
            &user.name,
            "--key",
            key.to_str().unwrap(),
            "--cache-dir",
            "opt-cronium/cache",
        ])
        .ok()
        .stdout();
    assert!(
        added.contains("cacheDir           opt-cronium/cache\n"),
        "{added}"
    );
    let shown = server.cronium(&["server", "show", "cached"]).ok().stdout();
    assert!(
        shown.contains("cacheDir           opt-cronium/cache\n"),
        "{shown}"
    );
    // The first check pins the host key; nothing is deployed yet.
    let first = server.cronium(&["server", "check", "cached"]).ok().stdout();
    assert!(first.contains("runner    not deployed"), "{first}");

    let script = common::script(work.path(), "hi.sh", "echo hi\n");
    server
        .cronium(&[
            "event", "create", "--name", "hi", "--script", &script, "--manual", "--server",
            "cached",
        ])
        .ok();
    let run = server.cronium(&["event", "run", "hi", "--follow"]);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        user.home
            .join("opt-cronium/cache/runner/cronium-runner")
            .is_file()
    );
    assert!(!user.home.join(".cache/cronium").exists());
    let second = server.cronium(&["server", "check", "cached"]).ok().stdout();
    let runner = second
        .lines()
        .find_map(|l| l.strip_prefix("runner"))
        .unwrap_or_else(|| panic!("no runner line:\n{second}"));
    assert!(
        runner.trim().starts_with(|c: char| c.is_ascii_digit()),
        "the deployed runner's version: {second}"
    );

    server
        .cronium(&["server", "edit", "cached", "--cache-dir", "../elsewhere"])
        .fails_with(&["422", "cacheDir"]);
    let reset = server
        .cronium(&["server", "edit", "cached", "--cache-dir", ""])
        .ok()
        .stdout();
    assert!(
        reset.contains("cacheDir           .cache/cronium\n"),
        "{reset}"
    );
    let json = server
        .cronium(&["server", "show", "cached", "--json"])
        .ok()
        .json();
    assert_eq!(json["cacheDir"], ".cache/cronium");
}
