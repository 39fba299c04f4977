//! HTTP request events from the terminal: created with `--http`, shown without their secrets, followed to their end against a real receiver on loopback.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::Server;

/// Answers every request `201 Created` with a two-line body and keeps the
/// raw requests.
fn receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            kept.lock()
                .unwrap()
                .push(format!("{head}\r\n{}", String::from_utf8_lossy(&body)));
            let _ = stream.write_all(
                b"HTTP/1.1 201 Created\r\nContent-Length: 15\r\nConnection: close\r\n\r\ncreated\nthanks\n",
            );
        }
    });
    (port, seen)
}

#[test]
fn an_http_event_is_created_shown_and_followed_from_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(
        &dir.path().join("data"),
        None,
        &[("CRONIUM_HTTP_ALLOW", "127.0.0.1/32")],
    );
    server.wait_until_up();
    let (port, seen) = receiver();
    let body = dir.path().join("body.json");
    std::fs::write(&body, "{\"ref\": \"main\"}").unwrap();
    let url = format!("http://127.0.0.1:{port}/deploy");

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

    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0].starts_with("POST /deploy HTTP/1.1\r\n"),
        "{requests:?}"
    );
    assert!(
        requests[0].contains(&format!("authorization: {secret}"))
            || requests[0].contains(&format!("Authorization: {secret}")),
        "{requests:?}"
    );
    assert!(requests[0].ends_with("{\"ref\": \"main\"}"), "{requests:?}");

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
