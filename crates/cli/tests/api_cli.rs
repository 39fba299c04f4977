//! The `cronium` client commands against a real `cronium serve`, both run
//! as the real binary: what an operator types, and what they get back.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const CRONIUM: &str = env!("CARGO_BIN_EXE_cronium");

/// A `cronium serve` on a free port with a fresh data dir, stopped on drop.
struct Server {
    child: Child,
    url: String,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(CRONIUM)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(&data)
            .env_remove("CRONIUM_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cronium serve");
        let server = Server {
            child,
            url,
            data,
            _dir: dir,
        };
        server.wait_until_up();
        server
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ok = ureq::get(format!("{}/healthz", self.url)).call().is_ok();
            if ok && self.data.join("admin.token").exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cronium serve did not come up at {}", self.url);
    }

    /// Runs `cronium ARGS` as the local admin (token from the data dir).
    fn cronium(&self, args: &[&str]) -> Run {
        self.cronium_with(args, &[])
    }

    fn cronium_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(CRONIUM);
        cmd.args(args)
            .env("CRONIUM_URL", &self.url)
            .env("CRONIUM_DATA_DIR", &self.data)
            .env_remove("CRONIUM_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run(cmd.output().expect("run cronium"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run(Output);

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    #[track_caller]
    fn ok(self) -> Run {
        assert!(
            self.0.status.success(),
            "expected success, got {}\nstdout: {}\nstderr: {}",
            self.0.status,
            self.stdout(),
            self.stderr()
        );
        self
    }

    #[track_caller]
    fn fails_with(self, needles: &[&str]) -> Run {
        assert!(
            !self.0.status.success(),
            "expected failure, got success: {}",
            self.stdout()
        );
        let err = self.stderr();
        for needle in needles {
            assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
        }
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout()).unwrap_or_else(|e| panic!("{e}: {}", self.stdout()))
    }
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn an_operator_manages_an_event_from_the_terminal() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let v1 = script(work.path(), "backup.sh", "echo backing up\n");
    let v2 = script(work.path(), "backup2.sh", "echo backing up, faster\n");

    let created = server
        .cronium_with(
            &[
                "event",
                "create",
                "--name",
                "backup",
                "--script",
                &v1,
                "--env",
                "TARGET=/srv",
                "--secret-env",
                "DB_PASSWORD",
                "--cron",
                "0 3 * * *",
                "--tz",
                "Europe/Berlin",
                "--tag",
                "nightly",
                "--json",
            ],
            &[("DB_PASSWORD", "hunter2-from-env")],
        )
        .ok()
        .json();
    assert_eq!(created["name"], "backup");
    assert_eq!(created["interpreter"], "bash", "inferred from .sh");
    assert_eq!(created["payloadVersion"], 1);
    assert_eq!(created["secretEnvKeys"], serde_json::json!(["DB_PASSWORD"]));
    assert!(
        !created.to_string().contains("hunter2"),
        "secret values never come back"
    );

    let list = server.cronium(&["event", "list"]).ok().stdout();
    assert!(
        list.contains("backup") && list.contains("cron 0 3 * * * (Europe/Berlin)"),
        "{list}"
    );
    assert!(list.contains("1 of 1 events"), "{list}");

    // A new script makes a new payload version; a rename does not.
    let edited = server
        .cronium(&["event", "edit", "backup", "--script", &v2, "--json"])
        .ok()
        .json();
    assert_eq!(edited["payloadVersion"], 2);
    let renamed = server
        .cronium(&[
            "event",
            "edit",
            "backup",
            "--rename",
            "nightly-backup",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(renamed["payloadVersion"], 2);

    let payloads = server
        .cronium(&["event", "payloads", "nightly-backup", "--json"])
        .ok()
        .json();
    let versions: Vec<i64> = payloads
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [2, 1], "newest first");
    let show = server
        .cronium(&["event", "show", "nightly-backup"])
        .ok()
        .stdout();
    assert!(show.contains("payload version  2"), "{show}");

    server.cronium(&["event", "delete", "nightly-backup"]).ok();
    server
        .cronium(&["event", "show", "nightly-backup"])
        .fails_with(&["no event named \"nightly-backup\""]);
}

#[test]
fn bad_input_gets_the_servers_message_and_a_failing_status() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let s = script(work.path(), "job.sh", "true\n");
    server
        .cronium(&[
            "event",
            "create",
            "--name",
            "x",
            "--script",
            &s,
            "--cron",
            "61 * * * *",
        ])
        .fails_with(&["422", "schedule.cron"]);
    server
        .cronium(&[
            "event",
            "create",
            "--name",
            "x",
            "--script",
            &s,
            "--cron",
            "0 3 * * *",
            "--tz",
            "Mars/Base",
        ])
        .fails_with(&["422", "schedule.timezone"]);
    server
        .cronium(&["event", "create", "--name", "x", "--script", &s])
        .ok();
    server
        .cronium(&["event", "create", "--name", "x", "--script", &s])
        .fails_with(&["409", "name"]);
    server
        .cronium(&[
            "event", "create", "--name", "y", "--script", &s, "--server", "nowhere",
        ])
        .fails_with(&["no server named \"nowhere\""]);
}

#[test]
fn tokens_limit_what_a_caller_may_do() {
    let server = Server::start();
    let created = server
        .cronium(&[
            "token",
            "create",
            "--name",
            "dashboard",
            "--role",
            "viewer",
            "--json",
        ])
        .ok()
        .json();
    let secret = created["token"].as_str().unwrap().to_string();
    let id = created["id"].to_string();

    let as_viewer = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--token", secret.as_str()]);
        server.cronium(&all)
    };
    as_viewer(&["event", "list"]).ok();
    let work = tempfile::tempdir().unwrap();
    let s = script(work.path(), "job.sh", "true\n");
    as_viewer(&["event", "create", "--name", "nope", "--script", &s]).fails_with(&["403"]);
    as_viewer(&["token", "list"]).fails_with(&["403"]);

    let tokens = server.cronium(&["token", "list", "--json"]).ok().stdout();
    assert!(
        tokens.contains("dashboard") && !tokens.contains(&secret),
        "the secret is shown only once"
    );
    server.cronium(&["token", "revoke", &id]).ok();
    as_viewer(&["event", "list"]).fails_with(&["401"]);
}

#[test]
fn servers_keep_their_credentials_to_themselves() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("id_ed25519");
    let key_text = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key-but-secret-material\n-----END OPENSSH PRIVATE KEY-----\n";
    std::fs::write(&key, key_text).unwrap();

    let added = server
        .cronium(&[
            "server",
            "add",
            "web-1",
            "--host",
            "10.0.0.5",
            "--user",
            "deploy",
            "--key",
            key.to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(added["authKind"], "key");
    let listed = server.cronium(&["server", "list", "--json"]).ok().stdout();
    assert!(
        listed.contains("web-1") && !listed.contains("secret-material"),
        "{listed}"
    );
    let shown = server.cronium(&["server", "show", "web-1"]).ok().stdout();
    assert!(
        shown.contains("10.0.0.5") && !shown.contains("secret-material"),
        "{shown}"
    );

    server
        .cronium(&[
            "server",
            "add",
            "db-1",
            "--host",
            "10.0.0.6",
            "--user",
            "deploy",
            "--password-env",
            "UNSET_PASSWORD_VAR",
        ])
        .fails_with(&["--password-env UNSET_PASSWORD_VAR"]);
    server.cronium(&["server", "remove", "web-1"]).ok();
    server
        .cronium(&["server", "show", "web-1"])
        .fails_with(&["no server named"]);
}
