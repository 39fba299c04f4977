//! HTTP request events end to end: the real server sends them to a real HTTP receiver this test starts on loopback (allowed in the server's config), on SQLite and PostgreSQL; and refuses them where the guard says no.

#[macro_use]
mod common;

use common::{Backend, TestApp, run_to_end};
use cronium_exec::guard::Allow;
use cronium_exec::testing::sink::{Answer, Received, Sink};
use serde_json::{Value, json};

const SECRET: &str = "Bearer s3cr3t-hdr-4e1f0a";

/// A receiver answering the `n`-th request with the `n`-th of `answers`
/// (the last one repeats).
fn receiver(answers: Vec<(&'static str, &'static str)>) -> Sink {
    Sink::start(move |n| {
        let (status, body) = answers[n.min(answers.len() - 1)];
        Answer::status(status, body).with_header("X-Receiver", "yes")
    })
}

/// `METHOD target` of a request, as its request line starts.
fn request_line(r: &Received) -> String {
    format!("{} {}", r.method, r.target)
}

/// A server whose HTTP events may reach 127.0.0.1 (and nothing else private).
fn app_allowing_loopback(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |c| {
        c.http_allow = vec![Allow::parse("127.0.0.1/32").unwrap()];
    })
}

/// Every log line of a job: (stream, text).
fn lines(app: &TestApp, job: &Value) -> Vec<(String, String)> {
    let page = app
        .get(&format!("/api/v1/jobs/{}/logs?limit=1000", job["id"]))
        .expect(200);
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap().to_string(),
                l["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

both_backends! {
    fn a_request_is_sent_with_its_secret_header_and_its_response_is_the_jobs_output(backend: Backend) {
        let app = app_allowing_loopback(backend);
        let receiver = receiver(vec![("200 OK", "deployed main\nall good\n")]);
        let event = app.create_event(json!({
            "name": "deploy hook",
            "http": {
                "method": "POST",
                "url": receiver.url("/hooks/deploy?ref=main"),
                "headers": {"Content-Type": "application/json"},
                "secretHeaders": {"Authorization": SECRET},
                "body": "{\"ref\": \"main\"}",
            },
        }));
        assert_eq!(event["kind"], "http", "{event}");
        assert_eq!(event["payloadVersion"], Value::Null, "no payload for a request");
        assert_eq!(event["http"]["secretHeaderNames"], json!(["Authorization"]));
        let id = event["id"].as_i64().unwrap();

        let job = run_to_end(&app, id);
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["metadata"]["http"]["status"], 200, "{job}");

        let seen = receiver.received();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(request_line(&seen[0]), "POST /hooks/deploy?ref=main");
        assert_eq!(seen[0].header("authorization"), Some(SECRET));
        assert_eq!(seen[0].header("content-type"), Some("application/json"));
        assert_eq!(seen[0].body, b"{\"ref\": \"main\"}");

        let out = lines(&app, &job);
        let stdout: Vec<&str> = out
            .iter()
            .filter(|(s, _)| s == "stdout")
            .map(|(_, t)| t.as_str())
            .collect();
        assert!(stdout.first().is_some_and(|l| l.starts_with("HTTP/1.1 200")), "{stdout:?}");
        assert!(stdout.iter().any(|l| l.trim_end().eq_ignore_ascii_case("x-receiver: yes")), "{stdout:?}");
        assert!(stdout.ends_with(&["deployed main\n", "all good\n"]), "{stdout:?}");

        // The secret is nowhere the API shows: not in the event, its jobs,
        // their output or the audit log.
        for path in [
            format!("/api/v1/events/{id}"),
            "/api/v1/events".to_string(),
            format!("/api/v1/jobs/{}", job["id"]),
            format!("/api/v1/jobs/{}/logs", job["id"]),
            "/api/v1/audit".to_string(),
        ] {
            let body = app.get(&path).expect(200).to_string();
            assert!(!body.contains("s3cr3t-hdr"), "{path}: {body}");
        }
        // The check can fail: the same search finds what the receiver got.
        assert!(format!("{seen:?}").contains("s3cr3t-hdr"));
    }

    fn an_unexpected_status_fails_the_job_naming_both_and_is_retried(backend: Backend) {
        let app = app_allowing_loopback(backend);
        let receiver = receiver(vec![("503 Service Unavailable", "busy\n"), ("202 Accepted", "queued\n")]);
        let event = app.create_event(json!({
            "name": "flaky hook",
            "retries": 1,
            "retryDelay": "1s",
            "http": {"url": receiver.url("/"), "expectStatus": [202]},
        }));
        let job = run_to_end(&app, event["id"].as_i64().unwrap());
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["attempt"], 2, "{job}");
        let out = lines(&app, &job);
        let first_error = out
            .iter()
            .find(|(s, t)| s == "system" && t.contains("503"))
            .map(|(_, t)| t.clone());
        assert!(
            first_error.as_deref().is_some_and(|t| t.contains("202")),
            "the first attempt's error names what was expected and what came: {out:?}"
        );
        assert_eq!(receiver.received().len(), 2);
        assert!(receiver.received().iter().all(|r| request_line(r) == "GET /"));
    }

    fn a_request_to_a_refused_address_is_rejected_when_saved_and_never_sent(backend: Backend) {
        // No allow list: loopback is refused.
        let app = TestApp::spawn(backend);
        let receiver = receiver(vec![("200 OK", "")]);
        for url in [
            receiver.url("/"),
            format!("http://localhost:{}/", receiver.addr().port()),
            format!("http://[::ffff:127.0.0.1]:{}/", receiver.addr().port()),
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "http://10.0.0.1/".to_string(),
        ] {
            let body = app
                .post("/api/v1/events", json!({"name": "sneaky", "http": {"url": url}}))
                .expect_error(422, "validation_failed", Some("http.url"));
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("refused"), "{url}: {message}");
        }
        assert_eq!(receiver.accepted(), 0);
        let page = app.get("/api/v1/events").expect(200);
        assert_eq!(page["total"], 0, "nothing was saved: {page}");
    }

    fn a_patch_replaces_the_request_keeps_its_secrets_and_cannot_change_the_kind(backend: Backend) {
        let app = app_allowing_loopback(backend);
        let receiver = receiver(vec![("204 No Content", "")]);
        let script = app.create_event(json!({
            "name": "a script", "interpreter": "bash", "content": "echo hi\n",
        }));
        app.patch(
            &format!("/api/v1/events/{}", script["id"]),
            json!({"http": {"url": receiver.url("/x")}}),
        )
        // Well-formed, and fine for an HTTP event: this one's kind refuses it.
        .expect_error(409, "conflict", Some("kind"));

        // A PATCH that keeps the request but not its secrets keeps the secrets.
        let created = app.create_event(json!({
            "name": "keeper",
            "http": {"url": receiver.url("/k"), "secretHeaders": {"X-Token": "t0k"}},
        }));
        let kid = created["id"].as_i64().unwrap();
        let patched = app
            .patch(&format!("/api/v1/events/{kid}"), json!({"http": {"method": "PUT", "url": receiver.url("/k2")}}))
            .expect(200);
        assert_eq!(patched["http"]["secretHeaderNames"], json!(["X-Token"]), "{patched}");
        let job = run_to_end(&app, kid);
        assert_eq!(job["status"], "succeeded", "{job}");
        let seen = receiver.received();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(request_line(&seen[0]), "PUT /k2");
        assert_eq!(seen[0].header("x-token"), Some("t0k"));
        let cleared = app
            .patch(&format!("/api/v1/events/{kid}"), json!({"http": {"url": receiver.url("/k3"), "secretHeaders": {}}}))
            .expect(200);
        assert_eq!(cleared["http"]["secretHeaderNames"], json!([]), "{cleared}");
    }
}
