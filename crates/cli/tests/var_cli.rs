//! Variables from the terminal, against a real `cronium serve`: set, get, list and delete, values from standard input, secrets that cannot be read back, compare-and-set, refused keys and values; and the input, output and condition `job show` prints.

mod common;

use std::time::Duration;

use common::{Server, require_runner, script};

#[test]
fn variables_are_set_read_listed_and_deleted() {
    let server = Server::start();
    let set = server
        .cronium(&["var", "set", "web-1.last", r#"{"ok": true, "n": 1}"#])
        .ok();
    assert_eq!(set.stdout(), "created variable web-1.last (version 1)\n");
    let set = server.cronium(&["var", "set", "web-1.last", "-1"]).ok();
    assert_eq!(set.stdout(), "updated variable web-1.last (version 2)\n");
    assert_eq!(
        server.cronium(&["var", "get", "web-1.last"]).ok().stdout(),
        "-1\n"
    );

    // A value from standard input, as JSON.
    server
        .cronium_stdin(
            &["var", "set", "note", "-"],
            &[],
            "\"line one\\nünïcode\"\n",
        )
        .ok();
    assert_eq!(
        server.cronium(&["var", "get", "note"]).ok().stdout(),
        "\"line one\\nünïcode\"\n"
    );

    // A secret: sealed, shown as such, never read back.
    let secret = server
        .cronium(&[
            "var",
            "set",
            "api_token",
            r#""tok-9f2c-never-shown""#,
            "--secret",
        ])
        .ok();
    assert_eq!(
        secret.stdout(),
        "created variable api_token (version 1, secret)\n"
    );
    let got = server
        .cronium(&["var", "get", "api_token"])
        .fails_with(&["secret", "write-only"]);
    assert!(!got.stdout().contains("tok-9f2c"), "{}", got.stdout());
    let list = server.cronium(&["var", "list"]).ok().stdout();
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("KEY"), "{list}");
    assert!(
        lines[1].starts_with("api_token") && lines[1].contains("(secret)"),
        "{list}"
    );
    assert!(lines[2].starts_with("note"), "{list}");
    assert!(
        lines[3].starts_with("web-1.last") && lines[3].contains("-1"),
        "{list}"
    );
    assert!(!list.contains("tok-9f2c"), "{list}");
    let json = server.cronium(&["var", "list", "--json"]).ok().json();
    assert_eq!(json[0]["value"], serde_json::Value::Null);
    assert_eq!(json[0]["secret"], true);
    // --plain makes it readable again.
    server
        .cronium(&["var", "set", "api_token", r#""public""#, "--plain"])
        .ok();
    assert_eq!(
        server.cronium(&["var", "get", "api_token"]).ok().stdout(),
        "\"public\"\n"
    );

    let deleted = server.cronium(&["var", "delete", "note"]).ok();
    assert_eq!(deleted.stdout(), "deleted variable note\n");
    server
        .cronium(&["var", "delete", "note"])
        .fails_with(&["404", "not found"]);
    server.cronium(&["var", "get", "note"]).fails_with(&["404"]);
}

#[test]
fn compare_and_set_and_bad_input_fail_with_the_reason() {
    let server = Server::start();
    server
        .cronium(&["var", "set", "counter", "0", "--expect-absent"])
        .ok();
    server
        .cronium(&["var", "set", "counter", "0", "--expect-absent"])
        .fails_with(&["409", "already exists"]);
    server
        .cronium(&["var", "set", "counter", "2", "--expect", "1"])
        .fails_with(&["409", "expected value"]);
    server
        .cronium(&["var", "set", "counter", "1", "--expect", "0"])
        .ok();
    assert_eq!(
        server.cronium(&["var", "get", "counter"]).ok().stdout(),
        "1\n"
    );

    // Refused before any request: keys, values that are not JSON.
    for key in ["a;rm -rf /", "$(id)", "../x", ".x", "a\nb"] {
        server
            .cronium(&["var", "set", key, "1"])
            .fails_with(&["invalid variable key"]);
    }
    server
        .cronium(&["var", "set", "k", "not json"])
        .fails_with(&["not JSON", "quotes"]);
    server
        .cronium(&["var", "set", "k", "1", "--expect", "{oops"])
        .fails_with(&["--expect is not JSON"]);
    server
        .cronium(&["var", "set", "k", "1", "--secret", "--plain"])
        .fails_with(&["cannot be used with"]);
    // Too large: the server's limit, with its message.
    let big = format!("\"{}\"", "x".repeat(70_000));
    server
        .cronium(&["var", "set", "k", &big])
        .fails_with(&["422", "65536"]);
    server.cronium(&["var", "get", "k"]).fails_with(&["404"]);
}

#[test]
fn job_show_prints_input_output_and_condition() {
    require_runner();
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let path = script(work.path(), "echo.sh", "echo hi\n");
    server
        .cronium(&[
            "event", "create", "--name", "echo", "--script", &path, "--manual",
        ])
        .ok();
    let run = server
        .cronium(&[
            "event",
            "run",
            "echo",
            "--input",
            r#"{"rows": [1, 2]}"#,
            "--json",
        ])
        .ok()
        .json();
    let id = run["id"].to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let show = loop {
        let show = server.cronium(&["job", "show", &id]).ok().stdout();
        if show.contains("succeeded") || std::time::Instant::now() > deadline {
            break show;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(show.contains("status           succeeded"), "{show}");
    assert!(
        show.contains(r#"input            {"rows":[1,2]}"#),
        "{show}"
    );
    assert!(show.contains("output           -\n"), "{show}");
    assert!(show.contains("condition        false\n"), "{show}");
    let json = server.cronium(&["job", "show", &id, "--json"]).ok().json();
    assert_eq!(json["input"], serde_json::json!({"rows": [1, 2]}));
    assert_eq!(json["output"], serde_json::Value::Null);
    assert_eq!(json["condition"], false);
}
