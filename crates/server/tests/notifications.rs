//! Notification channels, event actions and a job's deliveries over the API, on SQLite and PostgreSQL: secrets shown once and sealed at rest, URLs the SSRF guard refuses never contacted, roles, audit, and a failing job queuing its delivery.

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, TestApp, contains, database_bytes, hex, run_to_end, wait_for};
use cronium_exec::guard::Allow;
use serde_json::{Value, json};

/// Long enough for a slow CI machine; the tests finish far sooner.
const PATIENCE: Duration = Duration::from_secs(30);
/// A secret the client gives: `whsec_` + base64 of 24 bytes.
const GIVEN_SECRET: &str = "whsec_Z2l2ZW4tc2VjcmV0LWtleS0yNC1ieXRlcyE=";

/// A loopback HTTP receiver that counts connections and answers each
/// request `204 No Content`.
struct Sink {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            }
        });
        Sink { port, connections }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/cronium", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A server whose outgoing requests may reach 127.0.0.1 (and nothing else private).
fn app_allowing_loopback(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |c| {
        c.http_allow = vec![Allow::parse("127.0.0.1/32").unwrap()];
    })
}

/// A channel to a public address (never contacted: nothing here sends).
fn channel(app: &TestApp, name: &str) -> Value {
    app.post(
        "/api/v1/channels",
        json!({ "name": name, "url": format!("https://hooks.example.com/{name}") }),
    )
    .expect(201)
}

/// The audit log's records with this action, newest first.
fn audited(app: &TestApp, action: &str) -> Vec<Value> {
    let log = app.get("/api/v1/audit?limit=500").expect(200);
    log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == action)
        .cloned()
        .collect()
}

/// A loopback URL where nothing listens: connecting is refused.
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    url
}

both_backends! {
    fn a_channel_test_reports_exactly_what_the_receiver_answered(backend: Backend) {
        use cronium_exec::testing::sink::{Answer, Sink as Recorder};
        let app = app_allowing_loopback(backend);

        // A webhook that answers 200: the test message is signed like any.
        let happy = Recorder::always(Answer::status("200 OK", "thanks"));
        let ops = app
            .post("/api/v1/channels", json!({ "name": "ops", "url": happy.url("/in"), "secret": GIVEN_SECRET }))
            .expect(201);
        let answer = app.post(&format!("/api/v1/channels/{}/test", ops["id"]), json!({})).expect(200);
        assert_eq!(answer, json!({ "status": 200, "body": "thanks", "error": null }));
        let got = happy.received();
        assert_eq!(got.len(), 1, "one POST");
        let message: Value = serde_json::from_slice(&got[0].body).unwrap();
        assert_eq!(message["type"], "channel.test");
        assert_eq!(message["data"]["channel"], json!({ "id": ops["id"], "name": "ops" }));
        assert!(got[0].header("webhook-id").unwrap().starts_with("msg_cronium_test_"));
        assert!(got[0].header("webhook-signature").unwrap().starts_with("v1,"));

        // A Slack hook that answers 500 with a body: 200 here, saying so.
        let broken = Recorder::always(Answer::status("500 Internal Server Error", "no_service"));
        let chat = app
            .post("/api/v1/channels", json!({ "name": "chat", "kind": "slack", "url": broken.url("/services/T1/B2/tok") }))
            .expect(201);
        let answer = app.post(&format!("/api/v1/channels/{}/test", chat["id"]), json!({})).expect(200);
        assert_eq!(answer, json!({ "status": 500, "body": "no_service", "error": "500 Internal Server Error" }));
        let got = broken.received();
        assert_eq!(got.len(), 1, "one POST, no retry");
        let text: Value = serde_json::from_slice(&got[0].body).unwrap();
        assert_eq!(text, json!({ "text": "Test message from Cronium for channel *chat*: notifications will arrive here." }));
        assert_eq!(got[0].header("webhook-signature"), None);

        // Nothing listening: no status, and why.
        let gone = app
            .post("/api/v1/channels", json!({ "name": "gone", "kind": "discord", "url": closed_port_url() }))
            .expect(201);
        let answer = app.post(&format!("/api/v1/channels/{}/test", gone["id"]), json!({})).expect(200);
        assert_eq!(answer["status"], Value::Null, "{answer}");
        assert_eq!(answer["body"], "");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");

        app.post("/api/v1/channels/999999/test", json!({})).expect_error(404, "not_found", None);
    }

    fn a_slack_or_discord_url_is_sealed_and_only_ever_shown_redacted(backend: Backend) {
        let app = app_allowing_loopback(backend);
        let sink = Sink::start();
        let token = "sEcReTtOkEnXyZ";
        let slack_url = format!("http://127.0.0.1:{}/services/T0AA/B0BB/{token}", sink.port);
        let discord_url = format!("http://127.0.0.1:{}/api/webhooks/42/{token}", sink.port);
        let slack = app
            .post("/api/v1/channels", json!({ "name": "chat", "kind": "slack", "url": slack_url }))
            .expect(201);
        assert_eq!(slack["kind"], "slack");
        assert_eq!(slack["url"], format!("http://127.0.0.1:{}/services/…", sink.port));
        assert!(slack.get("secret").is_none(), "no signing secret is made: {slack}");
        let discord = app
            .post("/api/v1/channels", json!({ "name": "talk", "kind": "discord", "url": discord_url }))
            .expect(201);
        assert_eq!(discord["kind"], "discord");
        assert_eq!(discord["url"], format!("http://127.0.0.1:{}/api/webhooks/…", sink.port));

        // A chat channel has no signing secret to give, and a bad URL is
        // refused without being quoted back.
        app.post("/api/v1/channels", json!({ "name": "x", "kind": "slack", "url": slack_url, "secret": GIVEN_SECRET }))
            .expect_error(422, "validation_failed", Some("secret"));
        let bad = app
            .post("/api/v1/channels", json!({ "name": "x", "kind": "discord", "url": format!("ftp://127.0.0.1/{token}") }))
            .expect_error(422, "validation_failed", Some("url"));
        assert!(!bad.to_string().contains(token), "{bad}");
        // The guard still judges the sealed URL: a private address is refused.
        app.post("/api/v1/channels", json!({ "name": "x", "kind": "slack", "url": format!("http://10.0.0.1/services/T/B/{token}") }))
            .expect_error(422, "validation_failed", Some("url"));

        // Shown redacted everywhere; the URL is in no answer, audit entry or
        // database byte (as text, or as the hex of a bytea dump).
        let chat_id = slack["id"].as_i64().unwrap();
        let list = app.get("/api/v1/channels").expect(200);
        let kinds: Vec<&Value> = list.as_array().unwrap().iter().map(|c| &c["kind"]).collect();
        assert_eq!(kinds, [&json!("slack"), &json!("discord")]);
        let shown = app.get(&format!("/api/v1/channels/{chat_id}")).expect(200);
        assert_eq!(shown["url"], slack["url"]);
        let creates = audited(&app, "channel.create");
        assert_eq!(creates.len(), 2, "{creates:?}");
        assert_eq!(creates[1]["detail"], json!({ "name": "chat", "kind": "slack", "url": "sealed" }));
        let audit_log = app.get("/api/v1/audit?limit=500").expect(200);
        for body in [&slack, &discord, &list, &shown, &audit_log] {
            assert!(!body.to_string().contains(token), "{body}");
        }
        let bytes = database_bytes(&app);
        for needle in [token.to_string(), "T0AA".to_string(), hex(token)] {
            assert!(!contains(&bytes, needle.as_bytes()), "{needle} is in the database");
        }
        // Checking the URL never posted anything.
        assert_eq!(sink.connections(), 0);
    }

    fn a_generated_secret_is_shown_once_and_sealed_at_rest(backend: Backend) {
        let app = TestApp::spawn(backend);
        let created = app
            .post("/api/v1/channels", json!({ "name": "ops", "url": "https://hooks.example.com/ops" }))
            .expect(201);
        let secret = created["secret"].as_str().unwrap().to_string();
        // whsec_ + base64 of 24 bytes: 32 characters.
        assert!(secret.starts_with("whsec_") && secret.len() == 6 + 32, "{secret}");
        assert_eq!(created["name"], "ops");
        assert_eq!(created["kind"], "webhook", "the default kind");
        assert_eq!(created["url"], "https://hooks.example.com/ops");
        assert!(created["createdAt"].is_string() && created["updatedAt"].is_string(), "{created}");
        let id = created["id"].as_i64().unwrap();

        // Never again: not in the list, the channel or the audit log.
        let list = app.get("/api/v1/channels").expect(200);
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        let shown = app.get(&format!("/api/v1/channels/{id}")).expect(200);
        assert_eq!(shown["name"], "ops");
        assert!(shown.get("secret").is_none(), "{shown}");
        for body in [list.to_string(), shown.to_string(), app.get("/api/v1/audit?limit=500").expect(200).to_string()] {
            assert!(!body.contains(&secret[6..]), "{body}");
        }

        // A secret the client gives is taken, and not echoed back.
        let given = app
            .post("/api/v1/channels", json!({ "name": "given", "kind": "webhook", "url": "https://hooks.example.com/g", "secret": GIVEN_SECRET }))
            .expect(201);
        assert!(given.get("secret").is_none(), "{given}");

        // Sealed at rest: neither secret is in the database, as text or as
        // the hex of a bytea dump.
        let bytes = database_bytes(&app);
        for s in [secret.as_str(), GIVEN_SECRET] {
            let key = &s["whsec_".len()..];
            assert!(!contains(&bytes, key.as_bytes()), "{s} is in the database");
            assert!(!contains(&bytes, hex(key).as_bytes()), "{s} is in the database as hex");
        }

        // Audited by name, with no secret.
        let creates = audited(&app, "channel.create");
        assert_eq!(creates.len(), 2, "{creates:?}");
        assert_eq!(creates[1]["detail"]["name"], "ops");
        assert_eq!(creates[1]["detail"]["secret"], "generated");
        assert_eq!(creates[0]["detail"]["secret"], "given");
        assert_eq!(creates[0]["targetType"], "channel");
        assert_eq!(creates[0]["targetId"], given["id"]);
        let log = app.get("/api/v1/audit?limit=500").expect(200).to_string();
        assert!(!log.contains(&GIVEN_SECRET[6..]), "{log}");

        // Duplicate names are refused; deletion is audited; then it is gone.
        app.post("/api/v1/channels", json!({ "name": "ops", "url": "https://hooks.example.com/other" }))
            .expect_error(409, "conflict", Some("name"));
        app.delete(&format!("/api/v1/channels/{id}")).expect(204);
        app.get(&format!("/api/v1/channels/{id}")).expect_error(404, "not_found", None);
        app.delete(&format!("/api/v1/channels/{id}")).expect_error(404, "not_found", None);
        let deletes = audited(&app, "channel.delete");
        assert_eq!(deletes.len(), 1, "{deletes:?}");
        assert_eq!(deletes[0]["detail"]["name"], "ops");
        assert_eq!(deletes[0]["targetId"], id);
        let list = app.get("/api/v1/channels").expect(200);
        let names: Vec<&Value> = list.as_array().unwrap().iter().map(|c| &c["name"]).collect();
        assert_eq!(names, [&json!("given")]);
    }

    fn a_url_the_guard_refuses_is_422_and_never_contacted(backend: Backend) {
        // No allow list: loopback is refused.
        let app = TestApp::spawn(backend);
        let sink = Sink::start();
        let refused = app
            .post("/api/v1/channels", json!({ "name": "local", "url": sink.url() }))
            .expect_error(422, "validation_failed", Some("url"));
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("127.0.0.1 is a loopback address"), "{message}");
        assert!(message.contains("--http-allow"), "says how to allow it: {message}");
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/hook",
            "http://[::1]/hook",
            "ftp://hooks.example.com/x",
            "https://user:pw@hooks.example.com/x",
            "not a url",
        ] {
            app.post("/api/v1/channels", json!({ "name": "bad", "url": url }))
                .expect_error(422, "validation_failed", Some("url"));
        }
        // Nothing connected, and nothing was stored.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(sink.connections(), 0);
        assert_eq!(app.get("/api/v1/channels").expect(200), json!([]));
        assert!(audited(&app, "channel.create").is_empty());
    }

    fn bad_channel_input_names_its_field(backend: Backend) {
        let app = TestApp::spawn(backend);
        let url = "https://hooks.example.com/x";
        let cases = [
            (json!({ "url": url }), "name"),
            (json!({ "name": "has space", "url": url }), "name"),
            (json!({ "name": "x" }), "url"),
            (json!({ "name": "x", "url": url, "kind": "sms" }), "kind"),
            (json!({ "name": "x", "url": url, "secret": "Z2l2ZW4tc2VjcmV0LWtleS0yNC1ieXRlcyE=" }), "secret"),
            (json!({ "name": "x", "url": url, "secret": "whsec_not base64!" }), "secret"),
            (json!({ "name": "x", "url": url, "secret": "whsec_c2hvcnQ=" }), "secret"),
        ];
        for (body, field) in cases {
            let err = app.post("/api/v1/channels", body.clone()).expect_error(422, "validation_failed", Some(field));
            if let Some(secret) = body["secret"].as_str() {
                assert!(!err.to_string().contains(secret), "the message repeats the secret: {err}");
            }
        }
        let kind = app.post("/api/v1/channels", json!({ "name": "x", "url": url, "kind": "sms" })).json();
        let message = kind["error"]["message"].as_str().unwrap();
        assert!(["webhook", "slack", "discord", "email"].iter().all(|k| message.contains(k)), "{kind}");
        app.post("/api/v1/channels", json!({ "name": "x", "url": url, "token": "t" }))
            .expect_error(400, "bad_request", Some("token"));
        app.get("/api/v1/channels/999999").expect_error(404, "not_found", None);
        assert_eq!(app.get("/api/v1/channels").expect(200), json!([]));
    }

    fn actions_are_added_listed_and_removed(backend: Backend) {
        let app = TestApp::spawn(backend);
        let editor = app.token("editor");
        let viewer = app.token("viewer");
        let ops = channel(&app, "ops");
        let ops_id = ops["id"].as_i64().unwrap();
        let event = app.create_event(common::script_event("backup"));
        let event_id = event["id"].as_i64().unwrap();
        let actions = format!("/api/v1/events/{event_id}/actions");

        assert_eq!(app.call("GET", &actions, &viewer, None).expect(200), json!([]));
        // An editor adds them; `kind` defaults to notify.
        let added = app
            .call("POST", &actions, &editor, Some(json!({ "when": "failure", "channel": ops_id })))
            .expect(201);
        assert_eq!(added["eventId"], event_id);
        assert_eq!(added["when"], "failure");
        assert_eq!(added["kind"], "notify");
        assert_eq!(added["channel"], ops_id);
        assert_eq!(added["channelName"], "ops");
        assert!(added["createdAt"].is_string(), "{added}");
        let always = app
            .call("POST", &actions, &editor, Some(json!({ "when": "always", "kind": "notify", "channel": ops_id })))
            .expect(201);

        // A viewer reads them, oldest first, and may not add one.
        let list = app.call("GET", &actions, &viewer, None).expect(200);
        let ids: Vec<&Value> = list.as_array().unwrap().iter().map(|a| &a["id"]).collect();
        assert_eq!(ids, [&added["id"], &always["id"]]);
        assert_eq!(list[0]["channelName"], "ops");
        app.call("POST", &actions, &viewer, Some(json!({ "when": "always", "channel": ops_id })))
            .expect_error(403, "forbidden", None);

        // Bad input names its field. An unknown channel or event is a 409: the
        // body is well-formed, and would do with a channel that exists.
        let unknown = app
            .call("POST", &actions, &editor, Some(json!({ "when": "always", "channel": 999999 })))
            .expect_error(409, "conflict", Some("channel"));
        app.call("POST", &actions, &editor, Some(json!({ "when": "success", "targetEvent": 999999 })))
            .expect_error(409, "conflict", Some("targetEvent"));
        assert!(unknown["error"]["message"].as_str().unwrap().contains("999999"), "{unknown}");
        let kind = app
            .call("POST", &actions, &editor, Some(json!({ "when": "success", "kind": "page", "channel": ops_id })))
            .expect_error(422, "validation_failed", Some("kind"));
        let message = kind["error"]["message"].as_str().unwrap();
        assert!(message.contains("run_event") && message.contains("notify"), "{message}");
        for (body, field) in [
            (json!({ "channel": ops_id }), "when"),
            (json!({ "when": "whenever", "channel": ops_id }), "when"),
            (json!({ "when": "always" }), "channel"),
            (json!({ "when": "always", "channel": ops_id, "targetEvent": event_id }), "targetEvent"),
            (json!({ "when": "always", "kind": "notify", "targetEvent": event_id }), "targetEvent"),
            (json!({ "when": "always", "kind": "run_event", "channel": ops_id }), "channel"),
            (json!({ "when": "always", "kind": "run_event" }), "targetEvent"),
            // Only notifications fire while a job runs.
            (json!({ "when": "start", "targetEvent": event_id }), "when"),
            (json!({ "when": "duration_exceeded", "channel": ops_id }), "after"),
            (json!({ "when": "duration_exceeded", "channel": ops_id, "after": "soon" }), "after"),
            (json!({ "when": "duration_exceeded", "channel": ops_id, "after": "31d" }), "after"),
            (json!({ "when": "failure", "channel": ops_id, "after": "10m" }), "after"),
        ] {
            app.call("POST", &actions, &editor, Some(body.clone()))
                .expect_error(422, "validation_failed", Some(field));
        }
        assert_eq!(app.get(&actions).expect(200).as_array().unwrap().len(), 2);
        app.call("POST", "/api/v1/events/999999/actions", &editor, Some(json!({ "when": "always", "channel": ops_id })))
            .expect_error(404, "not_found", None);
        app.get("/api/v1/events/999999/actions").expect_error(404, "not_found", None);

        // A channel in use cannot go; an admin-only act even so.
        app.call("DELETE", &format!("/api/v1/channels/{ops_id}"), &editor, None)
            .expect_error(403, "forbidden", None);
        let in_use = app.delete(&format!("/api/v1/channels/{ops_id}")).expect_error(409, "conflict", Some("channel"));
        assert!(in_use["error"]["message"].as_str().unwrap().contains("2 action"), "{in_use}");

        // Removed by an editor, audited; once only.
        for action in [&added, &always] {
            app.call("DELETE", &format!("{actions}/{}", action["id"]), &editor, None).expect(204);
        }
        app.call("DELETE", &format!("{actions}/{}", added["id"]), &editor, None)
            .expect_error(404, "not_found", None);
        app.call("DELETE", &format!("{actions}/{}", added["id"]), &viewer, None)
            .expect_error(403, "forbidden", None);
        assert_eq!(app.get(&actions).expect(200), json!([]));
        let adds = audited(&app, "event.action.add");
        assert_eq!(adds.len(), 2, "{adds:?}");
        assert_eq!(adds[1]["targetType"], "event");
        assert_eq!(adds[1]["targetId"], event_id);
        assert_eq!(adds[1]["detail"]["channelName"], "ops");
        assert_eq!(adds[1]["detail"]["when"], "failure");
        let removes = audited(&app, "event.action.remove");
        assert_eq!(removes.len(), 2, "{removes:?}");
        assert_eq!(removes[1]["detail"]["action"], added["id"]);
        assert_eq!(removes[1]["detail"]["channelName"], "ops");

        // Unused now, the channel can go.
        app.delete(&format!("/api/v1/channels/{ops_id}")).expect(204);
    }

    fn chains_and_notifications_while_running_are_actions_too(backend: Backend) {
        let app = TestApp::spawn(backend);
        let ops = channel(&app, "ops");
        let first = app.create_event(common::script_event("extract"));
        let then = app.create_event(common::script_event("load"));
        let actions = format!("/api/v1/events/{}/actions", first["id"]);

        let chain = app
            .post(&actions, json!({ "when": "success", "targetEvent": then["id"] }))
            .expect(201);
        assert_eq!(chain["kind"], "run_event");
        assert_eq!(chain["targetEvent"], then["id"]);
        assert_eq!(chain["targetEventName"], "load");
        assert_eq!(chain.get("channel"), None, "{chain}");
        let start = app
            .post(&actions, json!({ "when": "start", "channel": ops["id"] }))
            .expect(201);
        assert_eq!((&start["when"], &start["kind"]), (&json!("start"), &json!("notify")));
        let late = app
            .post(&actions, json!({ "when": "duration_exceeded", "after": "90m", "channel": ops["id"] }))
            .expect(201);
        assert_eq!(late["after"], "1h30m");
        let list = app.get(&actions).expect(200);
        assert_eq!(list, json!([chain, start, late]));
        let added = audited(&app, "event.action.add");
        assert_eq!(added[2]["detail"]["targetEventName"], "load");
        assert_eq!(added[0]["detail"]["after"], "1h30m");

        // The event a chain runs stays until the chain goes.
        let refused = app
            .delete(&format!("/api/v1/events/{}", then["id"]))
            .expect_error(409, "conflict", Some("event"));
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains(&first["id"].to_string()), "{message}");
        app.get(&format!("/api/v1/events/{}", then["id"])).expect(200);
        app.delete(&format!("{actions}/{}", chain["id"])).expect(204);
        app.delete(&format!("/api/v1/events/{}", then["id"])).expect(204);
    }

    fn a_success_runs_the_next_event_whose_job_names_the_one_that_started_it(backend: Backend) {
        let app = TestApp::spawn(backend);
        let first = app.create_event(common::script_event("extract"));
        let then = app.create_event(json!({
            "name": "load", "interpreter": "bash", "content": "exit 4\n",
        }));
        let (first_id, then_id) = (first["id"].as_i64().unwrap(), then["id"].as_i64().unwrap());
        app.post(&format!("/api/v1/events/{first_id}/actions"), json!({ "when": "success", "targetEvent": then_id }))
            .expect(201);

        let a = run_to_end(&app, first_id);
        assert_eq!(a["status"], "succeeded");
        let chained = &a["chained"][0];
        assert_eq!((&chained["event"], &chained["status"]), (&json!(then_id), &json!("queued")));
        let b_id = chained["job"].as_i64().unwrap();
        let b = wait_for("the chained job to finish", PATIENCE, || {
            let j = app.get(&format!("/api/v1/jobs/{b_id}")).expect(200);
            (j["finishedAt"].is_string()).then_some(j)
        });
        assert_eq!((&b["eventId"], &b["trigger"], &b["status"]), (&json!(then_id), &json!("action"), &json!("failed")));
        let by = &b["startedBy"];
        assert_eq!(by["job"], a["id"]);
        assert_eq!(by["event"], first_id);
        assert_eq!(by["status"], "succeeded");
        assert_eq!(by["exitCode"], 0);
        assert_eq!(by["depth"], 1);
        // A failure of B runs nothing: it has no actions.
        assert_eq!(b.get("chained"), None, "{b}");
    }

    fn a_chain_that_loops_stops_at_the_depth_limit(backend: Backend) {
        let app = TestApp::spawn(backend);
        let ping = app.create_event(common::script_event("ping"))["id"].as_i64().unwrap();
        let pong = app.create_event(common::script_event("pong"))["id"].as_i64().unwrap();
        for (from, to) in [(ping, pong), (pong, ping)] {
            app.post(&format!("/api/v1/events/{from}/actions"), json!({ "when": "always", "targetEvent": to }))
                .expect(201);
        }
        run_to_end(&app, ping);
        let last = wait_for("the chain to stop", PATIENCE, || {
            let jobs = app.get("/api/v1/jobs?limit=100").expect(200);
            jobs["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["chained"][0]["notStarted"].is_string())
                .cloned()
        });
        let why = last["chained"][0]["notStarted"].as_str().unwrap();
        assert!(why.contains("chain depth limit") && why.contains("the limit is 10"), "{why}");
        assert_eq!(last["startedBy"]["depth"], 10);
        // Nothing more runs: eleven jobs, depths 0 to 10, all finished.
        std::thread::sleep(Duration::from_millis(300));
        let jobs = app.get("/api/v1/jobs?limit=100").expect(200);
        let items = jobs["items"].as_array().unwrap();
        assert_eq!(items.len(), 11, "{jobs}");
        assert!(items.iter().all(|j| j["status"] == "succeeded"), "{jobs}");
    }

    fn only_an_admin_manages_channels(backend: Backend) {
        let app = TestApp::spawn(backend);
        let editor = app.token("editor");
        let viewer = app.token("viewer");
        let body = json!({ "name": "ops", "url": "https://hooks.example.com/ops" });
        for token in [&viewer, &editor] {
            app.call("POST", "/api/v1/channels", token, Some(body.clone()))
                .expect_error(403, "forbidden", None);
        }
        let id = channel(&app, "ops")["id"].as_i64().unwrap();
        for token in [&viewer, &editor] {
            let list = app.call("GET", "/api/v1/channels", token, None).expect(200);
            assert_eq!(list[0]["name"], "ops");
            app.call("GET", &format!("/api/v1/channels/{id}"), token, None).expect(200);
            app.call("DELETE", &format!("/api/v1/channels/{id}"), token, None)
                .expect_error(403, "forbidden", None);
        }
        assert_eq!(app.get("/api/v1/channels").expect(200).as_array().unwrap().len(), 1);
    }

    fn a_failing_job_queues_one_delivery_for_its_failure_action(backend: Backend) {
        let app = app_allowing_loopback(backend);
        let sink = Sink::start();
        let hook = app
            .post("/api/v1/channels", json!({ "name": "sink", "url": sink.url() }))
            .expect(201);
        let other = channel(&app, "on-success");
        let event = app.create_event(json!({
            "name": "fails", "interpreter": "bash", "content": "echo about to fail\nexit 3\n",
        }));
        let event_id = event["id"].as_i64().unwrap();
        let actions = format!("/api/v1/events/{event_id}/actions");
        app.post(&actions, json!({ "when": "failure", "channel": hook["id"] })).expect(201);
        // Does not fire on a failure.
        app.post(&actions, json!({ "when": "success", "channel": other["id"] })).expect(201);

        let job = run_to_end(&app, event_id);
        assert_eq!(job["status"], "failed", "{job}");
        let deliveries = app.get(&format!("/api/v1/jobs/{}/deliveries", job["id"])).expect(200);
        let list = deliveries.as_array().unwrap();
        assert_eq!(list.len(), 1, "{deliveries}");
        let d = &list[0];
        assert_eq!(d["channel"], hook["id"]);
        assert_eq!(d["channelName"], "sink");
        assert_eq!(d["webhookId"], format!("msg_cronium_{}", d["id"]));
        // Whether it was sent yet is the sender's business, not this test's.
        assert!(["pending", "delivered", "failed"].contains(&d["status"].as_str().unwrap()), "{d}");
        assert!(d["attempts"].is_u64() && d["nextAttemptAt"].is_string() && d["createdAt"].is_string(), "{d}");
        for field in ["lastStatus", "lastError", "deliveredAt"] {
            assert!(d.get(field).is_some(), "{field} missing: {d}");
        }
        assert!(!d.to_string().contains("whsec_"), "{d}");

        // Readable by a viewer; an unknown job is 404, not an empty list.
        let viewer = app.token("viewer");
        app.call("GET", &format!("/api/v1/jobs/{}/deliveries", job["id"]), &viewer, None).expect(200);
        app.get("/api/v1/jobs/999999/deliveries").expect_error(404, "not_found", None);

        // A job of an event without actions set off nothing.
        let quiet = app.create_event(common::script_event("quiet"));
        let quiet_job = run_to_end(&app, quiet["id"].as_i64().unwrap());
        assert_eq!(app.get(&format!("/api/v1/jobs/{}/deliveries", quiet_job["id"])).expect(200), json!([]));
    }
}
