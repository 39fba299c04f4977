//! Notification channels and event actions from the terminal, against a real `cronium serve`: secrets printed once and never shown again, actions added and removed by name, a failing job's delivery in `job show`, a delivery owed when the server is killed sent once after the restart, and errors that say what is wrong.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{Server, require_runner, script, wait_for};
use cronium_exec::testing::sink::{Answer, Sink};
use serde_json::Value;

/// A secret given through the environment: `whsec_` + base64 of 24 bytes.
const GIVEN_SECRET: &str = "whsec_dGhlLWdpdmVuLWtleS1vZi0yNC1ieXRlcw==";

/// A server whose outgoing requests may reach 127.0.0.1.
fn server_allowing_loopback() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(
        &dir.path().join("data"),
        None,
        &[("CRONIUM_HTTP_ALLOW", "127.0.0.1/32")],
    );
    server.wait_until_up();
    (server, dir)
}

/// A loopback port where something listens (and answers nothing): a channel
/// URL the guard lets through here.
fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    (listener, url)
}

#[test]
fn channels_are_added_shown_and_removed_with_the_secret_printed_once() {
    let (server, _dir) = server_allowing_loopback();

    // Without --secret-env the server makes one: printed once, with a note.
    let added = server
        .cronium(&[
            "channel",
            "add",
            "ops",
            "--webhook",
            "https://hooks.example.com/ops",
        ])
        .ok();
    let out = added.stdout();
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret").map(str::trim))
        .unwrap_or_else(|| panic!("no secret line: {out}"))
        .to_string();
    assert!(secret.starts_with("whsec_") && secret.len() == 38, "{out}");
    assert!(out.contains("name       ops"), "{out}");
    assert!(
        out.contains("url        https://hooks.example.com/ops"),
        "{out}"
    );
    assert!(
        added.stderr().contains("cannot be shown again"),
        "{}",
        added.stderr()
    );

    // With --secret-env it comes from the environment, and is not printed.
    let given = server
        .cronium_with(
            &[
                "channel",
                "add",
                "given",
                "--webhook",
                "https://hooks.example.com/given",
                "--secret-env",
                "HOOK_SECRET",
            ],
            &[("HOOK_SECRET", &format!("{GIVEN_SECRET}\n"))],
        )
        .ok();
    assert!(!given.stdout().contains("whsec_"), "{}", given.stdout());
    assert!(!given.stdout().contains("secret"), "{}", given.stdout());
    assert!(given.stderr().is_empty(), "{}", given.stderr());

    // Listed and shown (by name), never with a secret.
    let list = server.cronium(&["channel", "list"]).ok().stdout();
    assert!(list.starts_with("ID"), "{list}");
    assert!(list.contains("given") && list.contains("ops"), "{list}");
    let show = server.cronium(&["channel", "show", "ops"]).ok().stdout();
    assert!(show.contains("kind       webhook"), "{show}");
    let json = server
        .cronium(&["channel", "show", "given", "--json"])
        .ok()
        .json();
    assert_eq!(json["name"], "given");
    assert!(json.get("secret").is_none(), "{json}");
    let all = server.cronium(&["channel", "list", "--json"]).ok().stdout();
    for text in [&list, &show, &all] {
        assert!(!text.contains("whsec_"), "{text}");
    }

    // --json on add prints the API's answer, the made secret included.
    let made = server
        .cronium(&[
            "channel",
            "add",
            "scripted",
            "--webhook",
            "https://hooks.example.com/s",
            "--json",
        ])
        .ok()
        .json();
    assert!(
        made["secret"].as_str().unwrap().starts_with("whsec_"),
        "{made}"
    );

    // Errors say what is wrong.
    server
        .cronium(&[
            "channel",
            "add",
            "meta",
            "--webhook",
            "http://169.254.169.254/latest/meta-data/",
        ])
        .fails_with(&["422 validation_failed: url:", "cloud metadata address"]);
    server
        .cronium(&[
            "channel",
            "add",
            "ops",
            "--webhook",
            "https://hooks.example.com/x",
        ])
        .fails_with(&["409 conflict", "ops"]);
    server
        .cronium_with(
            &[
                "channel",
                "add",
                "short",
                "--webhook",
                "https://hooks.example.com/x",
                "--secret-env",
                "HOOK_SECRET",
            ],
            &[("HOOK_SECRET", "not-a-webhook-secret")],
        )
        .fails_with(&["422 validation_failed: secret:", "whsec_"]);
    server
        .cronium(&[
            "channel",
            "add",
            "unset",
            "--webhook",
            "https://hooks.example.com/x",
            "--secret-env",
            "CRONIUM_TEST_SURELY_UNSET",
        ])
        .fails_with(&["CRONIUM_TEST_SURELY_UNSET is not set"]);
    server
        .cronium(&["channel", "show", "nowhere"])
        .fails_with(&["no channel named \"nowhere\""]);

    server.cronium(&["channel", "remove", "scripted"]).ok();
    let list = server.cronium(&["channel", "list"]).ok().stdout();
    assert!(!list.contains("scripted"), "{list}");
}

#[test]
fn slack_and_discord_channels_take_their_url_from_the_environment_and_show_it_redacted() {
    let (server, _dir) = server_allowing_loopback();
    let (_listening, url) = listener();
    let base = url.trim_end_matches("/hook").to_string();
    let token = "cHaTtOkEnQq";

    // From the environment (kept off the command line, where `ps` shows it).
    let slack_url = format!("{base}/services/T01/B02/{token}");
    let added = server
        .cronium_with(
            &["channel", "add", "chat", "--slack-env", "SLACK_HOOK"],
            &[("SLACK_HOOK", &format!("{slack_url}\n"))],
        )
        .ok();
    let out = added.stdout();
    assert!(out.contains("kind       slack"), "{out}");
    assert!(
        out.contains(&format!("url        {base}/services/…")),
        "{out}"
    );
    assert!(!out.contains("secret"), "{out}");
    assert!(added.stderr().is_empty(), "{}", added.stderr());

    // Or on the command line, for a quick try.
    server
        .cronium(&[
            "channel",
            "add",
            "talk",
            "--discord",
            &format!("{base}/api/webhooks/7/{token}"),
        ])
        .ok();
    server
        .cronium_with(
            &["channel", "add", "talk2", "--discord-env", "DISCORD_HOOK"],
            &[("DISCORD_HOOK", &format!("{base}/api/webhooks/8/{token}"))],
        )
        .ok();

    // Listed and shown redacted, never with the token.
    let list = server.cronium(&["channel", "list"]).ok().stdout();
    assert!(list.contains("slack") && list.contains("discord"), "{list}");
    assert!(list.contains(&format!("{base}/api/webhooks/…")), "{list}");
    let show = server.cronium(&["channel", "show", "talk"]).ok().stdout();
    assert!(show.contains("kind       discord"), "{show}");
    let json = server
        .cronium(&["channel", "show", "chat", "--json"])
        .ok()
        .json();
    assert_eq!(json["url"], format!("{base}/services/…"));
    let all = server.cronium(&["channel", "list", "--json"]).ok().stdout();
    for text in [&out, &list, &show, &all] {
        assert!(!text.contains(token), "{text}");
    }

    // One receiver per channel, and a missing variable is named.
    server
        .cronium(&[
            "channel",
            "add",
            "both",
            "--slack",
            &slack_url,
            "--discord",
            &slack_url,
        ])
        .fails_with(&["cannot be used with"]);
    server
        .cronium(&[
            "channel",
            "add",
            "unset",
            "--discord-env",
            "CRONIUM_TEST_SURELY_UNSET",
        ])
        .fails_with(&["CRONIUM_TEST_SURELY_UNSET is not set", "--discord-env"]);
}

#[test]
fn channel_test_prints_what_the_receiver_answered_and_fails_unless_2xx() {
    let (mut server, _dir) = server_allowing_loopback();
    let happy = Sink::always(Answer::status("200 OK", "ok"));
    let broken = Sink::always(Answer::status("500 Internal Server Error", "invalid_token"));
    server
        .cronium_with(
            &["channel", "add", "chat", "--slack-env", "SLACK_HOOK"],
            &[("SLACK_HOOK", &happy.url("/services/T1/B2/tok"))],
        )
        .ok();
    server
        .cronium_with(
            &[
                "channel",
                "add",
                "ops",
                "--webhook",
                &broken.url("/in"),
                "--secret-env",
                "S",
            ],
            &[("S", GIVEN_SECRET)],
        )
        .ok();

    // 2xx: the receiver's answer, and success.
    let out = server.cronium(&["channel", "test", "chat"]).ok().stdout();
    assert_eq!(out, "status     200\nbody       ok\nerror      -\n");
    assert_eq!(happy.received().len(), 1);

    // 500: what it said, and failure.
    let failed = server
        .cronium(&["channel", "test", "ops"])
        .fails_with(&["the receiver answered 500"]);
    assert_eq!(
        failed.stdout(),
        "status     500\nbody       invalid_token\nerror      500 Internal Server Error\n"
    );
    let json = server
        .cronium(&["channel", "test", "ops", "--json"])
        .fails_with(&["500"])
        .json();
    assert_eq!(json["body"], "invalid_token");

    // Once the operator stops allowing loopback, the guard refuses the
    // address: no connection is made, and the command says why.
    server.kill_and_restart(&[]);
    let accepted = happy.accepted();
    let refused = server
        .cronium(&["channel", "test", "chat"])
        .fails_with(&["the receiver did not answer", "loopback"]);
    assert!(
        refused.stdout().starts_with("status     -\n"),
        "{}",
        refused.stdout()
    );
    assert_eq!(happy.accepted(), accepted, "no connection was made");
}

#[test]
fn actions_are_managed_by_name_and_a_failing_jobs_delivery_shows_in_job_show() {
    require_runner();
    let (server, dir) = server_allowing_loopback();
    let (_listener, url) = listener();
    let path = script(dir.path(), "fails.sh", "echo about to fail\nexit 3\n");
    server
        .cronium(&[
            "event", "create", "--name", "fails", "--script", &path, "--manual",
        ])
        .ok();
    server
        .cronium(&["channel", "add", "sink", "--webhook", &url])
        .ok();
    server
        .cronium(&[
            "channel",
            "add",
            "cheers",
            "--webhook",
            "https://hooks.example.com/cheers",
        ])
        .ok();

    let added = server
        .cronium(&[
            "event", "action", "add", "fails", "--when", "failure", "--notify", "sink",
        ])
        .ok()
        .stdout();
    assert!(added.contains("on failure notify sink"), "{added}");
    let cheers = server
        .cronium(&[
            "event", "action", "add", "fails", "--when", "success", "--notify", "cheers", "--json",
        ])
        .ok()
        .json();
    assert_eq!(cheers["kind"], "notify");
    assert_eq!(cheers["channelName"], "cheers");

    let list = server
        .cronium(&["event", "action", "list", "fails"])
        .ok()
        .stdout();
    let rows: Vec<&str> = list.lines().collect();
    assert_eq!(rows.len(), 3, "{list}");
    assert!(
        rows[0].starts_with("ID") && rows[0].contains("WHEN") && rows[0].contains("TARGET"),
        "{list}"
    );
    assert!(
        rows[1].contains("failure") && rows[1].contains("notify") && rows[1].ends_with("sink"),
        "{list}"
    );
    assert!(
        rows[2].contains("success") && rows[2].ends_with("cheers"),
        "{list}"
    );

    // Errors say what is wrong.
    server
        .cronium(&[
            "event", "action", "add", "fails", "--when", "failure", "--notify", "nowhere",
        ])
        .fails_with(&["no channel named \"nowhere\""]);
    server
        .cronium(&[
            "event", "action", "add", "fails", "--when", "failure", "--notify", "999999",
        ])
        .fails_with(&["409 conflict: channel: no channel with id 999999"]);
    server
        .cronium(&[
            "event",
            "action",
            "add",
            "fails",
            "--when",
            "sometimes",
            "--notify",
            "sink",
        ])
        .fails_with(&["422 validation_failed: when:", "success"]);
    server
        .cronium(&["channel", "remove", "sink"])
        .fails_with(&["409 conflict", "remove them first"]);

    // A failing run: its failure action queued one delivery, to `sink`.
    let run = server.cronium(&["event", "run", "fails", "--follow"]);
    assert_eq!(run.code(), Some(3), "{}", run.stderr());
    let page = server
        .cronium(&["job", "list", "--event", "fails", "--json"])
        .ok()
        .json();
    let job = page["items"][0]["id"].to_string();
    let show = server.cronium(&["job", "show", &job]).ok().stdout();
    assert!(show.contains("status           failed"), "{show}");
    let header = show
        .lines()
        .find(|l| l.starts_with("NOTIFIED"))
        .unwrap_or_else(|| panic!("no deliveries table: {show}"));
    assert!(
        header.contains("STATUS") && header.contains("ATTEMPTS") && header.contains("LAST ERROR"),
        "{show}"
    );
    let rows: Vec<&str> = show
        .lines()
        .skip_while(|l| !l.starts_with("NOTIFIED"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 1, "only the failure action fired: {show}");
    assert!(rows[0].starts_with("sink "), "{show}");
    assert!(rows[0].contains("msg_cronium_"), "{show}");
    assert!(!show.contains("cheers"), "{show}");
    // --json is the API's job, unchanged.
    let json = server.cronium(&["job", "show", &job, "--json"]).ok().json();
    assert_eq!(json["status"], "failed");

    // A job without deliveries shows no such table.
    let quiet = script(dir.path(), "quiet.sh", "true\n");
    server
        .cronium(&[
            "event", "create", "--name", "quiet", "--script", &quiet, "--manual",
        ])
        .ok();
    server.cronium(&["event", "run", "quiet", "--follow"]).ok();
    let page: Value = server
        .cronium(&["job", "list", "--event", "quiet", "--json"])
        .ok()
        .json();
    let quiet_job = page["items"][0]["id"].to_string();
    let show = server.cronium(&["job", "show", &quiet_job]).ok().stdout();
    assert!(!show.contains("NOTIFIED"), "{show}");

    // Removed by id; then the channel can go.
    let actions = server
        .cronium(&["event", "action", "list", "fails", "--json"])
        .ok()
        .json();
    for action in actions.as_array().unwrap() {
        let id = action["id"].to_string();
        let removed = server
            .cronium(&["event", "action", "remove", "fails", &id])
            .ok()
            .stdout();
        assert!(
            removed.contains(&format!("removed action {id}")),
            "{removed}"
        );
    }
    server
        .cronium(&["event", "action", "remove", "fails", "999999"])
        .fails_with(&["404 not_found: action not found"]);
    let list = server
        .cronium(&["event", "action", "list", "fails"])
        .ok()
        .stdout();
    assert_eq!(list.lines().count(), 1, "only the header: {list}");
    server.cronium(&["channel", "remove", "sink"]).ok();
}

#[test]
fn a_chain_is_added_by_name_and_job_show_says_what_started_what() {
    require_runner();
    let (server, dir) = server_allowing_loopback();
    let extract = script(dir.path(), "extract.sh", "echo extracted\n");
    let load = script(dir.path(), "load.sh", "exit 5\n");
    for (name, path) in [("extract", &extract), ("load", &load)] {
        server
            .cronium(&[
                "event", "create", "--name", name, "--script", path, "--manual",
            ])
            .ok();
    }
    let added = server
        .cronium(&[
            "event", "action", "add", "extract", "--when", "success", "--run", "load",
        ])
        .ok()
        .stdout();
    assert!(added.contains("on success run load"), "{added}");
    let list = server
        .cronium(&["event", "action", "list", "extract"])
        .ok()
        .stdout();
    let row = list.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("success") && row.contains("run_event") && row.ends_with("load"),
        "{list}"
    );

    // What cannot be is refused, saying why.
    server
        .cronium(&[
            "event", "action", "add", "extract", "--when", "start", "--run", "load",
        ])
        .fails_with(&["422 validation_failed: when:", "fires on a result"]);
    server
        .cronium(&["event", "action", "add", "extract", "--when", "success"])
        .fails_with(&["--notify", "--run"]);
    server
        .cronium(&[
            "event", "action", "add", "extract", "--when", "success", "--run", "nothing",
        ])
        .fails_with(&["no event named \"nothing\""]);
    server
        .cronium(&["event", "delete", "load"])
        .fails_with(&["409 conflict", "run this event from an action"]);

    // Running extract runs load, whose job names extract's.
    server
        .cronium(&["event", "run", "extract", "--follow"])
        .ok();
    let first: Value = server
        .cronium(&["job", "list", "--event", "extract", "--json"])
        .ok()
        .json();
    let first = first["items"][0]["id"].as_i64().unwrap();
    let then = wait_for("load's job to end", Duration::from_secs(30), || {
        let page: Value = server
            .cronium(&["job", "list", "--event", "load", "--json"])
            .ok()
            .json();
        let job = page["items"].get(0)?.clone();
        job["finishedAt"].is_string().then_some(job)
    });
    let then_id = then["id"].to_string();
    let show = server.cronium(&["job", "show", &then_id]).ok().stdout();
    assert!(show.contains("trigger          action"), "{show}");
    let by = show
        .lines()
        .find(|l| l.starts_with("started by"))
        .unwrap_or_else(|| panic!("no started by: {show}"));
    assert!(
        by.contains(&format!("job {first} of event"))
            && by.contains("(succeeded, exit 0)")
            && by.contains("chain depth 1"),
        "{show}"
    );
    let show = server
        .cronium(&["job", "show", &first.to_string()])
        .ok()
        .stdout();
    assert!(
        show.lines()
            .any(|l| l.starts_with("started ") && l.contains(&format!("job {then_id} of event"))),
        "{show}"
    );
}

/// The job's deliveries as the API lists them.
fn deliveries(server: &Server, job: &str) -> Vec<Value> {
    let url = format!("{}/api/v1/jobs/{job}/deliveries", server.url);
    let mut response = ureq::get(&url)
        .header("Authorization", &format!("Bearer {}", server.admin_token()))
        .call()
        .unwrap();
    let list: Value = response.body_mut().read_json().unwrap();
    list.as_array().unwrap().clone()
}

#[test]
fn a_delivery_owed_when_the_server_is_killed_is_sent_once_after_the_restart() {
    require_runner();
    let (mut server, dir) = server_allowing_loopback();
    // The receiver's port, closed for now: the first try fails and the
    // delivery waits for its retry, owed, when the server dies.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    server
        .cronium_with(
            &[
                "channel",
                "add",
                "pager",
                "--webhook",
                &url,
                "--secret-env",
                "PAGER_SECRET",
            ],
            &[("PAGER_SECRET", GIVEN_SECRET)],
        )
        .ok();
    let path = script(dir.path(), "fails.sh", "exit 4\n");
    server
        .cronium(&[
            "event", "create", "--name", "fails", "--script", &path, "--manual",
        ])
        .ok();
    server
        .cronium(&[
            "event", "action", "add", "fails", "--when", "failure", "--notify", "pager",
        ])
        .ok();
    let run = server.cronium(&["event", "run", "fails", "--follow"]);
    assert_eq!(run.code(), Some(4), "{}", run.stderr());
    let jobs = server
        .cronium(&["job", "list", "--event", "fails", "--json"])
        .ok()
        .json();
    let job = jobs["items"][0]["id"].to_string();
    let owed = wait_for("the first try to fail", Duration::from_secs(20), || {
        let list = deliveries(&server, &job);
        (list.len() == 1 && list[0]["attempts"].as_u64() >= Some(1)).then(|| list[0].clone())
    });
    assert_eq!(owed["status"], "pending", "{owed}");
    assert!(
        owed["lastError"].as_str().is_some_and(|e| !e.is_empty()),
        "{owed}"
    );

    // kill -9 with the message owed; the receiver comes up; a new server
    // on the same data dir sends it, once.
    let sink = Sink::start_on(&format!("127.0.0.1:{port}"), |_| {
        Answer::status("204 No Content", "")
    });
    server.kill_and_restart(&[("CRONIUM_HTTP_ALLOW", "127.0.0.1/32")]);
    let delivered = wait_for(
        "the delivery after the restart",
        Duration::from_secs(30),
        || {
            let list = deliveries(&server, &job);
            (list[0]["status"] == "delivered").then(|| list[0].clone())
        },
    );
    std::thread::sleep(Duration::from_millis(1500));
    let received = sink.received();
    assert_eq!(received.len(), 1, "sent once: {received:?}");
    assert_eq!(
        received[0].header("webhook-id"),
        delivered["webhookId"].as_str(),
        "the id the API shows"
    );
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["data"]["job"]["status"], "failed", "{body}");
    assert_eq!(body["data"]["job"]["exitCode"], 4, "{body}");
    assert_eq!(deliveries(&server, &job)[0]["attempts"], 2);
}

#[test]
fn an_email_channel_is_added_shown_tested_and_its_password_never_printed_or_logged() {
    use cronium_exec::testing::smtp_sink::{Certs, Mode, SmtpSink, SmtpSinkConfig};
    const PASSWORD: &str = "cli-Relay-pa55word-Qx7";
    let dir = tempfile::tempdir().unwrap();
    // Debug logging: the password must not reach even that.
    let mut server = Server::spawn(
        &dir.path().join("data"),
        None,
        &[
            ("CRONIUM_HTTP_ALLOW", "127.0.0.1/32"),
            ("CRONIUM_LOG", "debug"),
        ],
    );
    server.wait_until_up();
    let certs = Certs::make();
    let relay = SmtpSink::start(
        SmtpSinkConfig {
            mode: Mode::Starttls,
            auth: Some(("bot".into(), PASSWORD.into())),
            answers: vec!["250 2.0.0 Ok: queued as CLI1".into()],
        },
        Some(&certs),
    );
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, certs.ca_pem()).unwrap();
    let smtp = relay.relay();
    let ca_path = ca.to_str().unwrap();
    let add = [
        "channel",
        "add",
        "ops-mail",
        "--email",
        "ops@example.com,oncall@example.org",
        "--smtp",
        smtp.as_str(),
        "--from",
        "cronium@example.com",
        "--smtp-user",
        "bot",
        "--smtp-password-env",
        "RELAY_PASSWORD",
        "--smtp-ca-file",
        ca_path,
    ];
    let added = server
        .cronium_with(&add, &[("RELAY_PASSWORD", PASSWORD)])
        .ok();
    let out = added.stdout();
    for line in [
        "kind       email".to_string(),
        format!("url        smtp://{smtp}"),
        "to         ops@example.com, oncall@example.org".to_string(),
        "from       cronium@example.com".to_string(),
        format!("smtp       {smtp}"),
        "tls        starttls".to_string(),
        "user       bot".to_string(),
        "password   set".to_string(),
        "trust      own CA certificate".to_string(),
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} missing:\n{out}");
    }

    let list = server.cronium(&["channel", "list"]).ok().stdout();
    assert!(
        list.contains(&format!(
            "ops@example.com,oncall@example.org via smtp://{smtp}"
        )),
        "{list}"
    );
    let shown = server
        .cronium(&["channel", "show", "ops-mail"])
        .ok()
        .stdout();
    assert!(shown.contains("password   set"), "{shown}");
    let json = server
        .cronium(&["channel", "show", "ops-mail", "--json"])
        .ok()
        .json();
    assert_eq!(json["kind"], "email");
    assert_eq!(json["email"]["passwordSet"], true);
    assert_eq!(json["email"]["to"][1], "oncall@example.org");

    // The test mail goes, and the relay's own answer is printed.
    let tested = server
        .cronium(&["channel", "test", "ops-mail"])
        .ok()
        .stdout();
    assert!(tested.contains("status     250"), "{tested}");
    assert!(
        tested.contains("body       250 2.0.0 Ok: queued as CLI1"),
        "{tested}"
    );
    assert_eq!(relay.received().len(), 1);

    // A password over plain SMTP is refused, naming the flag's field.
    server
        .cronium_with(
            &[
                "channel",
                "add",
                "clear",
                "--email",
                "ops@example.com",
                "--smtp",
                smtp.as_str(),
                "--smtp-tls",
                "none",
                "--from",
                "c@example.com",
                "--smtp-user",
                "bot",
                "--smtp-password-env",
                "RELAY_PASSWORD",
            ],
            &[("RELAY_PASSWORD", PASSWORD)],
        )
        .fails_with(&["email.password"]);
    // --smtp goes with --email.
    server
        .cronium(&[
            "channel",
            "add",
            "x",
            "--webhook",
            "https://hooks.example.com/x",
            "--smtp",
            "mail.example.com",
        ])
        .fails_with(&["--email"]);

    // Nowhere: not in any output, nor in the server's (debug) log.
    let log = server.log();
    assert!(
        !log.is_empty(),
        "the server logged nothing: is its log captured?"
    );
    for text in [out, list, shown, json.to_string(), tested, log] {
        assert!(!text.contains(PASSWORD), "the password was shown: {text}");
    }
}
