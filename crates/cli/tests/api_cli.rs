//! The `cronium` client commands against a real `cronium serve`, both run
//! as the real binary: what an operator types, and what they get back.

mod common;

use common::{Server, script};

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
