//! `cronium import crontab` with real crontab files against a real `cronium serve`: what is made, what is reported, and that a second import changes nothing.

mod common;

use std::path::Path;

use common::{Server, require_runner};
use serde_json::{Value, json};

const CRONTAB: &str = r#"# m h dom mon dow command
SHELL=/bin/bash
PATH=/usr/local/bin:/usr/bin:/bin
GREETING="hello world"

0 3 * * * echo "$GREETING"
CRON_TZ=Europe/Berlin
30 2 * * 1-5 date +\%F
@hourly true
@reboot /usr/bin/start-things
15 * * * * cat%first line%second \% line
61 * * * * echo bad minute
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Every event, by name.
fn events(server: &Server) -> Vec<Value> {
    let page = server
        .cronium(&["event", "list", "--limit", "500", "--json"])
        .ok()
        .json();
    page["items"].as_array().unwrap().clone()
}

fn event<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no event {name:?} in {events:#?}"))
}

/// How many audit entries there are: a write that changed nothing adds none.
fn audit_entries(server: &Server) -> u64 {
    let answer = ureq::get(format!("{}/api/v1/audit?limit=1", server.url))
        .header("Authorization", format!("Bearer {}", server.admin_token()))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    serde_json::from_str::<Value>(&answer).unwrap()["total"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_users_crontab_becomes_events_and_a_second_import_changes_nothing() {
    require_runner();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "crontab", CRONTAB);

    // The plan: what would be made, when it would fire, what is reported.
    let plan = server
        .cronium(&["import", "crontab", &file, "--timezone", "UTC", "--dry-run"])
        .ok();
    let text = plan.stdout();
    for needle in [
        "read in UTC (--timezone)",
        "line 6: create \"crontab: echo \\\"$GREETING\\\"\"",
        "schedule  0 3 * * * (UTC, --timezone)",
        "schedule  30 2 * * 1-5 (Europe/Berlin, from CRON_TZ)",
        "schedule  @hourly (Europe/Berlin, from CRON_TZ)",
        "line 10: skipped: @reboot",
        "line 12: error: ",
        "4 create, 1 skipped, 1 error (dry run: nothing changed)",
    ] {
        assert!(text.contains(needle), "plan lacks {needle:?}:\n{text}");
    }
    let next = text
        .lines()
        .find(|l| l.trim_start().starts_with("next"))
        .unwrap();
    assert_eq!(next.matches("UTC").count(), 3, "three fire times: {next}");
    assert!(
        plan.stderr().contains("line 12: "),
        "errors are on stderr too: {}",
        plan.stderr()
    );
    assert!(events(&server).is_empty(), "a dry run creates nothing");

    let json = server
        .cronium(&[
            "import",
            "crontab",
            &file,
            "--timezone",
            "UTC",
            "--dry-run",
            "--json",
        ])
        .ok()
        .json();
    let lines = json["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0]["action"], "create");
    assert_eq!(lines[0]["nextFires"].as_array().unwrap().len(), 3);
    assert_eq!(lines[3]["action"], "skipped");
    assert_eq!(lines[4]["action"], "create");
    assert_eq!(lines[5]["action"], "error");

    // The import itself.
    let done = server
        .cronium(&["import", "crontab", &file, "--timezone", "UTC"])
        .ok()
        .stdout();
    assert!(done.contains("4 created, 1 skipped, 1 error"), "{done}");
    let made = events(&server);
    assert_eq!(made.len(), 4);
    let greet = event(&made, "crontab: echo \"$GREETING\"");
    assert_eq!(
        greet["schedule"],
        json!({"type": "cron", "cron": "0 3 * * *", "timezone": "UTC"})
    );
    assert_eq!(greet["interpreter"], "bash");
    assert_eq!(greet["content"], "echo \"$GREETING\"\n");
    assert_eq!(
        greet["env"],
        json!({"GREETING": "hello world", "PATH": "/usr/local/bin:/usr/bin:/bin"}),
        "settings become the environment; SHELL is cron's own"
    );
    assert_eq!(greet["tags"], json!(["crontab"]));
    assert!(
        greet["description"]
            .as_str()
            .unwrap()
            .starts_with("Imported from crontab, line 6: 0 3 * * * echo"),
        "{greet}"
    );
    let date = event(&made, "crontab: date +%F");
    assert_eq!(date["schedule"]["timezone"], "Europe/Berlin");
    assert_eq!(date["content"], "date +%F\n", "\\% is a %");
    let hourly = event(&made, "crontab: true");
    assert_eq!(hourly["schedule"]["cron"], "@hourly");

    // `%` is standard input, fed to the command as cron feeds it.
    let cat = event(&made, "crontab: cat");
    let run = server
        .cronium(&["event", "run", "crontab: cat", "--follow"])
        .ok();
    assert_eq!(run.stdout(), "first line\nsecond % line\n", "{cat}");

    // Again: nothing changes, not even the audit log or a payload version.
    let audit = audit_entries(&server);
    let again = server
        .cronium(&["import", "crontab", &file, "--timezone", "UTC"])
        .ok()
        .stdout();
    assert!(again.contains("4 unchanged, 1 skipped, 1 error"), "{again}");
    assert_eq!(audit_entries(&server), audit, "no write at all");
    let after = events(&server);
    for e in &after {
        assert_eq!(e["payloadVersion"], 1, "{e}");
    }
    assert_eq!(after, made);

    // A changed line updates its event: a new schedule, and a new command
    // on the same line (the event found by its line, renamed).
    let changed = CRONTAB
        .replace("0 3 * * * echo", "0 4 * * * echo")
        .replace("@hourly true", "@hourly /bin/true");
    std::fs::write(&file, changed).unwrap();
    let updated = server
        .cronium(&["import", "crontab", &file, "--timezone", "UTC"])
        .ok()
        .stdout();
    assert!(updated.contains("2 updated, 2 unchanged"), "{updated}");
    let after = events(&server);
    assert_eq!(after.len(), 4, "updated, not added");
    assert_eq!(
        event(&after, "crontab: echo \"$GREETING\"")["schedule"]["cron"],
        "0 4 * * *"
    );
    let renamed = event(&after, "crontab: /bin/true");
    assert_eq!(renamed["id"], hourly["id"]);
    assert_eq!(renamed["content"], "/bin/true\n");
}

#[test]
fn strict_imports_nothing_when_a_line_is_bad() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "jobs", CRONTAB);
    server
        .cronium(&["import", "crontab", &file, "--strict"])
        .fails_with(&["line 12: ", "nothing imported", "--strict"]);
    assert!(events(&server).is_empty());
    // Without the bad line, --strict imports, unless an event of the
    // user's own already has a line's name: that is not taken over.
    let good = CRONTAB.replace("61 * * * * echo bad minute\n", "");
    let file = write(dir.path(), "jobs", &good);
    let own = write(dir.path(), "own.sh", "echo mine\n");
    server
        .cronium(&[
            "event",
            "create",
            "--name",
            "jobs: true",
            "--script",
            &own,
            "--manual",
        ])
        .ok();
    server
        .cronium(&["import", "crontab", &file, "--strict"])
        .fails_with(&[
            "line 9: ",
            "was not imported from a crontab",
            "nothing imported",
        ]);
    assert_eq!(events(&server).len(), 1);
    server.cronium(&["event", "delete", "jobs: true"]).ok();
    let done = server
        .cronium(&["import", "crontab", &file, "--strict"])
        .ok()
        .stdout();
    assert!(done.contains("4 created, 1 skipped"), "{done}");
    let made = events(&server);
    assert!(
        made.iter()
            .all(|e| e["name"].as_str().unwrap().starts_with("jobs: ")),
        "named after the file"
    );
}

#[test]
fn a_system_crontab_has_a_user_field_that_the_plan_reports() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let text = "\
# /etc/cron.d/maintenance
17 * * * * root cd / && run-parts --report /etc/cron.hourly
@daily www-data php /srv/app/cron.php
";
    let file = write(dir.path(), "maintenance", text);
    let plan = server
        .cronium(&["import", "crontab", &file, "--system", "--dry-run"])
        .ok()
        .stdout();
    assert!(plan.contains("user      root in cron"), "{plan}");
    assert!(plan.contains("user      www-data in cron"), "{plan}");
    // Read as a user crontab, `root` would be the command.
    assert!(
        plan.contains("\"maintenance: cd / && run-parts --report /etc/cron.hourly\""),
        "{plan}"
    );

    // From standard input, under a name of one's choosing.
    let run = server.cronium_stdin(
        &[
            "import", "crontab", "-", "--system", "--source", "cron.d", "--json",
        ],
        &[],
        text,
    );
    let report = run.ok().json();
    assert_eq!(report["lines"][1]["user"], "www-data");
    let made = events(&server);
    let php = event(&made, "cron.d: php /srv/app/cron.php");
    assert!(
        php["description"].as_str().unwrap().contains("www-data"),
        "the user is kept in the description: {php}"
    );
    assert_eq!(php["content"], "php /srv/app/cron.php\n");
}

#[test]
fn mailto_becomes_a_failure_notification_once_an_email_channel_sends_there() {
    let dir = tempfile::tempdir().unwrap();
    // The channel's relay is on loopback; no mail is sent.
    let mut server = Server::spawn(
        &dir.path().join("data"),
        None,
        &[("CRONIUM_HTTP_ALLOW", "127.0.0.1/32")],
    );
    server.wait_until_up();
    let file = write(
        dir.path(),
        "crontab",
        "MAILTO=ops@example.com\n*/5 * * * * /usr/local/bin/check\n",
    );
    let first = server.cronium(&["import", "crontab", &file]).ok().stdout();
    assert!(
        first.contains("warning   MAILTO=ops@example.com: no email channel sends to it"),
        "{first}"
    );
    let name = "crontab: /usr/local/bin/check";
    let actions = server
        .cronium(&["event", "action", "list", name, "--json"])
        .ok()
        .json();
    assert_eq!(actions, json!([]));

    server
        .cronium(&[
            "channel",
            "add",
            "ops-mail",
            "--email",
            "ops@example.com",
            "--smtp",
            "127.0.0.1:2525",
            "--smtp-tls",
            "none",
            "--from",
            "cronium@example.com",
        ])
        .ok();
    let plan = server
        .cronium(&["import", "crontab", &file, "--dry-run"])
        .ok()
        .stdout();
    assert!(plan.contains(": failure notification"), "{plan}");
    assert!(
        plan.contains("notify    ops-mail on failure (MAILTO)"),
        "{plan}"
    );
    server.cronium(&["import", "crontab", &file]).ok();
    let actions = server
        .cronium(&["event", "action", "list", name, "--json"])
        .ok()
        .json();
    let actions = actions.as_array().unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0]["when"], "failure");
    assert_eq!(actions[0]["channelName"], "ops-mail");
    let again = server.cronium(&["import", "crontab", &file]).ok().stdout();
    assert!(again.contains("1 unchanged"), "{again}");
}
