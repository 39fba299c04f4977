//! HTTP request events from the terminal: created with `--http`, shown without their secrets, followed to their end against a real receiver on loopback.

mod common;

use common::Server;
use cronium_exec::testing::sink::{Answer, Sink};

#[test]
fn an_http_event_is_created_shown_and_followed_from_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(
        &dir.path().join("data"),
        None,
        &[("CRONIUM_HTTP_ALLOW", "127.0.0.1/32")],
    );
    server.wait_until_up();
    let receiver = Sink::always(Answer::status("201 Created", "created\nthanks\n"));
    let body = dir.path().join("body.json");
    std::fs::write(&body, "{\"ref\": \"main\"}").unwrap();
    let url = receiver.url("/deploy");

    let secret = "tok-91c3e7b2";
    server
        .cronium_with(
            &[
                "event",
                "create",
                "--name",
                "hook",
                "--manual",
                "--http",
                "post",
                &url,
                "--header",
                "Content-Type: application/json",
                "--secret-header",
                "Authorization=HOOK_TOKEN",
                "--body-file",
                body.to_str().unwrap(),
                "--expect",
                "201",
            ],
            &[("HOOK_TOKEN", secret)],
        )
        .ok();

    let shown = server.cronium(&["event", "show", "hook"]).ok().stdout();
    assert!(
        shown.contains(&format!(
            "request          POST {url} (expects 201) [secret headers: Authorization]"
        )),
        "{shown}"
    );
    assert!(!shown.contains(secret), "{shown}");

    let run = server.cronium(&["event", "run", "hook", "--follow"]);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    let out = run.stdout();
    assert!(out.starts_with("HTTP/1.1 201 Created\n"), "{out}");
    assert!(out.ends_with("\ncreated\nthanks\n"), "{out}");

    let requests = receiver.received();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        (requests[0].method.as_str(), requests[0].target.as_str()),
        ("POST", "/deploy")
    );
    assert_eq!(requests[0].header("authorization"), Some(secret));
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    assert_eq!(requests[0].body, b"{\"ref\": \"main\"}");

    let job = server
        .cronium(&["job", "list", "--event", "hook", "--json"])
        .ok()
        .json();
    let id = job["items"][0]["id"].to_string();
    let show = server.cronium(&["job", "show", &id]).ok().stdout();
    assert!(show.contains("http status      201"), "{show}");

    // Where the guard says no, nothing is created and the message says why.
    server
        .cronium(&[
            "event",
            "create",
            "--name",
            "metadata",
            "--manual",
            "--http",
            "GET",
            "http://169.254.169.254/latest/",
        ])
        .fails_with(&["http.url", "169.254.169.254", "refused"]);
    // A secret header whose variable is not set is refused before anything is sent.
    server
        .cronium(&[
            "event",
            "create",
            "--name",
            "nosecret",
            "--manual",
            "--http",
            "GET",
            &url,
            "--secret-header",
            "Authorization=CRONIUM_TEST_UNSET_VAR",
        ])
        .fails_with(&["CRONIUM_TEST_UNSET_VAR is not set"]);
}
