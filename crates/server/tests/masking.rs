//! Secret masking end to end: a script echoing its secret environment on this host and on a remote host over real OpenSSH stores only `***` (database file, logs API, SSE and a webhook notification), also when the value is split across writes.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Backend, TestApp, add_server, contains, database_bytes, finished, hex, wait_for};
use cronium_exec::guard::Allow;
use cronium_exec::testing::sink::{Answer, Sink};
use cronium_ssh::testing::TestSshd;
use serde_json::{Value, json};

/// Long enough for a slow CI machine; the tests finish far sooner.
const PATIENCE: Duration = Duration::from_secs(60);
/// The secret. The scripts below never hold it in one piece, so finding
/// it anywhere means output leaked, not the script.
const SECRET: &str = "supersecret";

/// Writes the secret whole, then in two writes with a pause between (the
/// runner relays them as separate records), then split the same way on
/// stderr.
const ECHO_SECRET: &str = "echo \"plain: $API_TOKEN.\"
printf 'sup'; sleep 0.2; printf 'ersecret\\n'
printf '%s' \"${API_TOKEN:0:5}\" >&2; sleep 0.2; printf '%s!\\n' \"${API_TOKEN:5}\" >&2
echo done
";

/// [`ECHO_SECRET`], then the secret on the runner's own stderr and the
/// runner killed: the job's error quotes that stderr, and the error is
/// what a notification carries.
fn echo_and_kill_the_runner() -> String {
    format!(
        "{ECHO_SECRET}sleep 0.5\necho \"runner says $API_TOKEN\" >/proc/$PPID/fd/2\nkill -9 $PPID\nsleep 5\n"
    )
}

/// The masked output every run of [`ECHO_SECRET`] must store.
const MASKED_STDOUT: &str = "plain: ***.\n***\ndone\n";
const MASKED_STDERR: &str = "***!\n";

/// The job's lines as (server, stream, text), every page.
fn lines(app: &TestApp, id: i64) -> Vec<(Option<String>, String, String)> {
    let page = app
        .get(&format!("/api/v1/jobs/{id}/logs?limit=1000"))
        .expect(200);
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["server"].as_str().map(str::to_string),
                l["stream"].as_str().unwrap().to_string(),
                l["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn stream_of(lines: &[(Option<String>, String, String)], stream: &str) -> String {
    lines
        .iter()
        .filter(|(_, s, _)| s == stream)
        .map(|(_, _, text)| text.as_str())
        .collect()
}

/// None of `secrets` is anywhere in the database: as text, or as the hex
/// of a bytea dump.
#[track_caller]
fn not_in_the_database(app: &TestApp, secrets: &[&str]) {
    let bytes = database_bytes(app);
    for secret in secrets {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{secret} is in the database"
        );
        assert!(
            !contains(&bytes, hex(secret).as_bytes()),
            "{secret} is in the database as hex"
        );
    }
}

/// A server whose notifications may go to loopback, and the receiver there.
fn app_with_sink(backend: Backend) -> (TestApp, Sink) {
    let sink = Sink::always(Answer::status("200 OK", ""));
    let app = TestApp::spawn_with(backend, |c| {
        c.http_allow = vec![Allow::parse("127.0.0.1/32").unwrap()];
    });
    (app, sink)
}

/// Makes `event`'s jobs notify `sink` when they end as `when` says.
fn notify_on(app: &TestApp, event: i64, when: &str, sink: &Sink) {
    let channel = app
        .post(
            "/api/v1/channels",
            json!({ "name": "ops", "url": sink.url("/hook") }),
        )
        .expect(201);
    app.post(
        &format!("/api/v1/events/{event}/actions"),
        json!({ "when": when, "channel": channel["id"] }),
    )
    .expect(201);
}

/// Runs `event` and follows its log stream to its end, as a client
/// watching live would: the job's id and the stream as received.
fn run_and_follow(app: &TestApp, event: i64) -> (i64, String) {
    let id = app
        .post(&format!("/api/v1/events/{event}/run"), json!({}))
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let sse = app
        .send(
            "GET",
            &format!("/api/v1/jobs/{id}/logs?follow=true"),
            Some(&app.admin_token),
            &[],
            None,
        )
        .text();
    assert!(sse.contains("event: end"), "{sse}");
    (id, sse)
}

both_backends! {
    fn a_local_run_stores_streams_and_notifies_only_the_mask(backend: Backend) {
        let (app, sink) = app_with_sink(backend);
        let event = app.create_event(json!({
            "name": "leaky", "interpreter": "bash", "content": echo_and_kill_the_runner(),
            "secretEnv": { "API_TOKEN": SECRET },
        }))["id"]
            .as_i64()
            .unwrap();
        notify_on(&app, event, "failure", &sink);

        // Followed while it runs: the SSE stream ends with the job.
        let (id, sse) = run_and_follow(&app, event);
        assert!(sse.contains("plain: ***."), "{sse}");
        assert!(!sse.contains(SECRET), "the secret in the SSE stream: {sse}");

        let job = finished(&app, id);
        assert_eq!(job["status"], "failed", "{job}");
        let error = job["error"].as_str().unwrap();
        assert!(error.contains("stderr: runner says ***"), "{error}");
        assert!(!job.to_string().contains(SECRET), "{job}");

        let lines = lines(&app, id);
        assert_eq!(stream_of(&lines, "stdout"), MASKED_STDOUT, "{lines:?}");
        assert_eq!(stream_of(&lines, "stderr"), MASKED_STDERR, "{lines:?}");
        assert!(stream_of(&lines, "system").contains("runner says ***"), "{lines:?}");
        assert!(!format!("{lines:?}").contains(SECRET));

        let hook = wait_for("the webhook", PATIENCE, || sink.received().into_iter().next());
        let message: Value = serde_json::from_slice(&hook.body).unwrap();
        assert_eq!(message["data"]["job"]["id"], id, "{message}");
        let notified = message["data"]["job"]["error"].as_str().unwrap();
        assert!(notified.contains("runner says ***"), "{notified}");
        assert!(!contains(&hook.body, SECRET.as_bytes()), "{message}");

        not_in_the_database(&app, &[SECRET]);
    }
}

#[test]
fn a_remote_run_over_ssh_stores_only_the_mask() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let server = add_server(&app, &sshd, sshd.user(0), "web1");
    let event = app.create_event(json!({
        "name": "leaky remote", "interpreter": "bash", "content": ECHO_SECRET,
        "runLocation": "remote", "targetServers": [server],
        "secretEnv": { "API_TOKEN": SECRET },
    }))["id"]
        .as_i64()
        .unwrap();
    let (id, sse) = run_and_follow(&app, event);
    assert!(!sse.contains(SECRET), "the secret in the SSE stream: {sse}");
    let job = finished(&app, id);
    assert_eq!(job["status"], "succeeded", "{job}");
    let lines = lines(&app, id);
    assert!(
        lines
            .iter()
            .filter(|(_, s, _)| s != "system")
            .all(|(server, _, _)| server.as_deref() == Some("web1")),
        "{lines:?}"
    );
    assert_eq!(stream_of(&lines, "stdout"), MASKED_STDOUT, "{lines:?}");
    assert_eq!(stream_of(&lines, "stderr"), MASKED_STDERR, "{lines:?}");
    not_in_the_database(&app, &[SECRET]);
}

/// A secret variable's value. Like [`SECRET`], no script holds it whole.
const VAULT: &str = "vaultsecret99";

both_backends! {
    fn secret_variables_a_script_reads_or_writes_are_masked_in_its_log_output_and_notification(backend: Backend) {
        let (app, sink) = app_with_sink(backend);
        app.call("PUT", "/api/v1/variables/vault", &app.admin_token,
            Some(json!({ "value": VAULT, "secret": true }))).expect(201);
        // Reads the secret variable and prints it, hands it on in its
        // output, and writes a new secret variable it then prints too.
        let script = "v=$(cronium var get vault)\n\
                      echo \"read $v\"\n\
                      cronium output \"{\\\"echoed\\\": $v}\"\n\
                      fresh=\"$(printf fresh)secret77\"\n\
                      cronium var set fresh \"\\\"$fresh\\\"\" --secret\n\
                      echo \"wrote $fresh\"\n";
        let event = app.create_event(json!({ "name": "reader", "interpreter": "bash", "content": script }))["id"]
            .as_i64()
            .unwrap();
        notify_on(&app, event, "success", &sink);

        let (id, sse) = run_and_follow(&app, event);
        assert!(!sse.contains(VAULT) && !sse.contains("freshsecret77"), "{sse}");

        let job = finished(&app, id);
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["output"], json!({ "echoed": "***" }), "{job}");
        let lines = lines(&app, id);
        assert_eq!(stream_of(&lines, "stdout"), "read \"***\"\nwrote ***\n", "{lines:?}");

        let hook = wait_for("the webhook", PATIENCE, || sink.received().into_iter().next());
        let message: Value = serde_json::from_slice(&hook.body).unwrap();
        assert_eq!(message["data"]["job"]["output"], json!({ "echoed": "***" }), "{message}");
        assert!(!contains(&hook.body, VAULT.as_bytes()), "{message}");

        not_in_the_database(&app, &[VAULT, "freshsecret77"]);
        // Still there, for whoever may read it: sealed, not lost.
        let fresh = app.get("/api/v1/variables/fresh").expect(200);
        assert_eq!(fresh["secret"], true, "{fresh}");
    }
}
