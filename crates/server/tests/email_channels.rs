//! Email channels over the API against a real SMTP receiver (aiosmtpd), on SQLite and PostgreSQL: settings shown and the password never (not in an answer, the audit log or the database), bad input named by field, `channel test` reporting the relay's own answer, and a failing job mailed through the server's delivery loop.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Backend, TestApp, contains, database_bytes, hex, run_to_end, wait_for};
use cronium_exec::guard::Allow;
use cronium_exec::testing::smtp_sink::{Certs, Mode, SmtpSink, SmtpSinkConfig};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "Relay-Pa55word-9f3k";

fn app_allowing_loopback(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |c| {
        c.http_allow = vec![Allow::parse("127.0.0.1/32").unwrap()];
        c.public_url = Some("https://cron.example.com".into());
    })
}

fn sink(mode: Mode, certs: Option<&Certs>, answers: &[&str]) -> SmtpSink {
    let mut config = SmtpSinkConfig {
        mode,
        auth: (mode != Mode::Plain).then(|| ("bot@example.com".to_string(), PASSWORD.to_string())),
        ..SmtpSinkConfig::default()
    };
    if !answers.is_empty() {
        config.answers = answers.iter().map(|a| a.to_string()).collect();
    }
    SmtpSink::start(config, certs)
}

/// An email channel over STARTTLS with AUTH to `sink`, trusting `ca`.
fn starttls_channel(app: &TestApp, name: &str, sink: &SmtpSink, ca: &str) -> Value {
    app.post(
        "/api/v1/channels",
        json!({
            "name": name,
            "kind": "email",
            "email": {
                "to": ["ops@example.com", "oncall@example.org"],
                "smtp": sink.relay(),
                "username": "bot@example.com",
                "password": PASSWORD,
                "caCert": ca,
            },
        }),
    )
    .expect(201)
}

/// A plain-SMTP channel to `sink` without AUTH.
fn plain_channel(app: &TestApp, name: &str, sink: &SmtpSink) -> Value {
    app.post(
        "/api/v1/channels",
        json!({
            "name": name,
            "kind": "email",
            "email": { "to": ["ops@example.com"], "from": "cronium@example.com", "smtp": sink.relay(), "tls": "none" },
        }),
    )
    .expect(201)
}

both_backends! {
    fn an_email_channel_shows_its_settings_and_never_its_password(backend: Backend) {
        let app = app_allowing_loopback(backend);
        let certs = Certs::make();
        let relay = sink(Mode::Starttls, Some(&certs), &["250 2.0.0 Ok: queued as 7C1D"]);
        let created = starttls_channel(&app, "ops-mail", &relay, &certs.ca_pem());
        assert_eq!(created["kind"], "email");
        assert_eq!(created["url"], format!("smtp://{}", relay.relay()));
        assert_eq!(
            created["email"],
            json!({
                "to": ["ops@example.com", "oncall@example.org"],
                // The user name is an address: the sender by default.
                "from": "bot@example.com",
                "smtp": relay.relay(),
                "tls": "starttls",
                "username": "bot@example.com",
                "passwordSet": true,
                "caCert": certs.ca_pem(),
            })
        );
        assert!(created.get("secret").is_none(), "{created}");
        let id = created["id"].as_i64().unwrap();

        // The port follows the TLS mode when not given; no password, none set.
        let open = app
            .post("/api/v1/channels", json!({
                "name": "open", "kind": "email",
                "email": { "to": ["a@example.com"], "from": "cronium@example.com", "smtp": "127.0.0.1", "tls": "tls" },
            }))
            .expect(201);
        assert_eq!(open["email"]["smtp"], "127.0.0.1:465");
        assert_eq!(open["email"]["passwordSet"], false);
        assert_eq!(open["email"]["username"], Value::Null);

        // `channel test` mails now and reports the relay's own answer.
        let answer = app.post(&format!("/api/v1/channels/{id}/test"), json!({})).expect(200);
        assert_eq!(answer, json!({ "status": 250, "body": "250 2.0.0 Ok: queued as 7C1D", "error": null }));
        let got = relay.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].header("subject"), Some("[Cronium] test message for channel ops-mail"));
        assert!(got[0].header("message-id").unwrap().starts_with("<msg_cronium_test_"));
        assert!(got[0].tls);
        assert_eq!(got[0].user.as_deref(), Some("bot@example.com"));

        // The password is in no answer, no audit entry and no database byte.
        let list = app.get("/api/v1/channels").expect(200);
        let shown = app.get(&format!("/api/v1/channels/{id}")).expect(200);
        assert_eq!(shown["email"], created["email"]);
        let audit = app.get("/api/v1/audit?limit=500").expect(200);
        let create = audit["items"].as_array().unwrap().iter().find(|r| r["action"] == "channel.create" && r["detail"]["name"] == "ops-mail").unwrap();
        assert_eq!(create["detail"]["password"], "sealed");
        assert_eq!(create["detail"]["kind"], "email");
        for body in [&created, &list, &shown, &answer, &audit] {
            assert!(!body.to_string().contains(PASSWORD), "{body}");
        }
        let bytes = database_bytes(&app);
        for needle in [PASSWORD.to_string(), hex(PASSWORD)] {
            assert!(!contains(&bytes, needle.as_bytes()), "the password is in the database");
        }
    }

    fn bad_email_input_names_its_field_and_never_quotes_the_password(backend: Backend) {
        let app = app_allowing_loopback(backend);
        let good = json!({ "to": ["ops@example.com"], "from": "c@example.com", "smtp": "127.0.0.1:2525", "tls": "starttls" });
        let with = |patch: Value| {
            let mut email = good.clone();
            for (k, v) in patch.as_object().unwrap() {
                email[k] = v.clone();
            }
            json!({ "name": "mail", "kind": "email", "email": email })
        };
        let many: Vec<String> = (0..21).map(|i| format!("u{i}@example.com")).collect();
        let cases = [
            // Credentials never travel in clear.
            (with(json!({ "tls": "none", "username": "bot", "password": PASSWORD })), "email.password"),
            (with(json!({ "username": "bot", "password": "" })), "email.password"),
            (with(json!({ "password": PASSWORD })), "email.username"),
            (with(json!({ "to": [] })), "email.to"),
            (with(json!({ "to": many })), "email.to"),
            (with(json!({ "to": ["not-an-address"] })), "email.to"),
            (with(json!({ "to": ["a@example.com\r\nBcc: x@evil.example"] })), "email.to"),
            (with(json!({ "from": "Cronium <c@example.com>" })), "email.from"),
            (with(json!({ "smtp": "bad host:x" })), "email.smtp"),
            (with(json!({ "smtp": null })), "email.smtp"),
            (with(json!({ "tls": "ssl" })), "email.tls"),
            (with(json!({ "caCert": "not a certificate" })), "email.caCert"),
            (with(json!({ "caCert": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n" })), "email.caCert"),
            // An address relay gives no sender to default to.
            (with(json!({ "from": null })), "email.from"),
            (json!({ "name": "mail", "kind": "email" }), "email"),
            (json!({ "name": "mail", "kind": "email", "url": "https://x.example.com/", "email": good }), "url"),
            (json!({ "name": "mail", "kind": "email", "secret": "whsec_x", "email": good }), "secret"),
            (json!({ "name": "hook", "url": "https://hooks.example.com/x", "email": good }), "email"),
        ];
        for (body, field) in cases {
            let error = app.post("/api/v1/channels", body.clone()).expect_error(422, "validation_failed", Some(field));
            assert!(!error.to_string().contains(PASSWORD), "{body}: {error}");
        }
        app.post("/api/v1/channels", with(json!({ "port": 25 })))
            .expect_error(400, "bad_request", Some("email.port"));
        assert_eq!(app.get("/api/v1/channels").expect(200), json!([]));
    }

    fn a_relay_the_guard_refuses_is_refused_at_save_naming_the_field(backend: Backend) {
        // No allow list: loopback is refused, and nothing is contacted.
        let app = TestApp::spawn(backend);
        let relay = sink(Mode::Plain, None, &[]);
        let refused = app
            .post("/api/v1/channels", json!({
                "name": "mail", "kind": "email",
                "email": { "to": ["ops@example.com"], "from": "c@example.com", "smtp": relay.relay(), "tls": "none" },
            }))
            .expect_error(422, "validation_failed", Some("email.smtp"));
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("127.0.0.1 is a loopback address") && message.contains("--http-allow"), "{message}");
        std::thread::sleep(Duration::from_millis(100));
        assert!(relay.attempts().is_empty());
        assert_eq!(app.get("/api/v1/channels").expect(200), json!([]));
    }

    fn a_channel_test_reports_a_refusal_and_an_untrusted_certificate(backend: Backend) {
        let app = app_allowing_loopback(backend);
        let bouncing = sink(Mode::Plain, None, &["550 5.1.1 mailbox unavailable"]);
        let id = plain_channel(&app, "bounce", &bouncing)["id"].as_i64().unwrap();
        let answer = app.post(&format!("/api/v1/channels/{id}/test"), json!({})).expect(200);
        assert_eq!(
            answer,
            json!({ "status": 550, "body": "550 5.1.1 mailbox unavailable", "error": "550 5.1.1 mailbox unavailable" })
        );

        // A relay whose certificate another CA signed.
        let certs = Certs::make();
        let other = Certs::make();
        let relay = sink(Mode::Starttls, Some(&certs), &[]);
        let id = starttls_channel(&app, "wrong-ca", &relay, &other.ca_pem())["id"].as_i64().unwrap();
        let answer = app.post(&format!("/api/v1/channels/{id}/test"), json!({})).expect(200);
        assert_eq!(answer["status"], Value::Null, "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.starts_with("TLS: ") && error.contains("certificate"), "{error}");
        assert!(!answer.to_string().contains(PASSWORD));
        assert!(relay.attempts().is_empty());
    }

    fn a_failing_job_is_mailed_and_a_bounce_leaves_the_job_alone(backend: Backend) {
        let app = app_allowing_loopback(backend);
        let certs = Certs::make();
        let relay = sink(Mode::Starttls, Some(&certs), &["250 2.0.0 Ok: queued as 9B"]);
        let bouncing = sink(Mode::Plain, None, &["550 5.1.1 mailbox unavailable"]);
        let mail = starttls_channel(&app, "ops-mail", &relay, &certs.ca_pem());
        let bounce = plain_channel(&app, "bounce", &bouncing);
        let event = app.create_event(json!({ "name": "backup", "interpreter": "bash", "content": "exit 3\n" }));
        let event_id = event["id"].as_i64().unwrap();
        for channel in [&mail, &bounce] {
            app.post(&format!("/api/v1/events/{event_id}/actions"), json!({ "when": "failure", "channel": channel["id"] }))
                .expect(201);
        }
        let job = run_to_end(&app, event_id);
        assert_eq!(job["status"], "failed");
        let job_id = job["id"].as_i64().unwrap();
        let deliveries = wait_for("both deliveries to end", PATIENCE, || {
            let all = app.get(&format!("/api/v1/jobs/{job_id}/deliveries")).expect(200);
            all.as_array().unwrap().iter().all(|d| d["status"] != "pending").then_some(all)
        });
        let of = |channel: &Value| {
            deliveries.as_array().unwrap().iter().find(|d| d["channel"] == channel["id"]).unwrap().clone()
        };
        let sent = of(&mail);
        assert_eq!((&sent["status"], &sent["lastStatus"], &sent["lastError"]), (&json!("delivered"), &json!(250), &Value::Null));
        let bounced = of(&bounce);
        assert_eq!(
            (&bounced["status"], &bounced["attempts"], &bounced["lastStatus"], &bounced["lastError"]),
            (&json!("failed"), &json!(1), &json!(550), &json!("550 5.1.1 mailbox unavailable"))
        );

        let got = relay.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].header("subject"), Some(format!("[Cronium] backup failed (exit 3) on job {job_id}").as_str()));
        assert_eq!(
            got[0].header("message-id"),
            Some(format!("<{}@example.com>", sent["webhookId"].as_str().unwrap()).as_str())
        );
        let body = got[0].body.as_deref().unwrap();
        assert!(body.contains(&format!("https://cron.example.com/api/v1/jobs/{job_id}")), "{body}");
        assert!(body.contains("Exit code:  3"), "{body}");
        // The bounce did nothing to the job.
        let after = app.get(&format!("/api/v1/jobs/{job_id}")).expect(200);
        assert_eq!(after, job);
        assert!(!deliveries.to_string().contains(PASSWORD));
    }
}
