//! The notification POST against real loopback receivers: what it sends, what it makes of each kind of answer, and that the guard stops it before any connection.

use std::time::{Duration, Instant};

use cronium_exec::testing::sink::{Answer, Sink};
use cronium_exec::webhook::{BODY_HEAD, post};
use cronium_exec::{Allow, Guard, PostError, PostResponse};

fn loopback() -> Guard {
    Guard::new(vec![Allow::parse("127.0.0.1/32").unwrap()])
}

async fn post_to(guard: &Guard, url: &str, timeout: Duration) -> PostResponse {
    let headers = [
        ("content-type".to_string(), "application/json".to_string()),
        ("webhook-id".to_string(), "msg_1".to_string()),
    ];
    post(guard, url, &headers, br#"{"a":1}"#.to_vec(), timeout).await
}

#[tokio::test]
async fn a_post_carries_its_headers_and_body_and_reports_the_answer() {
    let sink = Sink::always(Answer::status("202 Accepted", "queued"));
    let response = post_to(&loopback(), &sink.url("/hook?x=1"), Duration::from_secs(5)).await;
    assert_eq!(
        response,
        PostResponse {
            status: Some(202),
            retry_after: None,
            body_head: "queued".into(),
            error: None,
        }
    );
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].method.as_str(), got[0].target.as_str()),
        ("POST", "/hook?x=1")
    );
    assert_eq!(got[0].body, br#"{"a":1}"#);
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[0].header("webhook-id"), Some("msg_1"));
    assert_eq!(
        got[0].header("user-agent"),
        Some(cronium_exec::http::USER_AGENT)
    );
}

#[tokio::test]
async fn each_kind_of_answer_is_reported_as_it_came() {
    let long = "x".repeat(5000);
    // (answer, status, Retry-After, body head)
    let table = [
        (
            Answer::status("503 Service Unavailable", "upstream\ndown\n"),
            503,
            None,
            "upstream down".to_string(),
        ),
        (
            Answer::status("429 Too Many Requests", "").with_header("Retry-After", "120"),
            429,
            Some("120"),
            String::new(),
        ),
        (
            Answer::status("404 Not Found", &long),
            404,
            None,
            "x".repeat(BODY_HEAD),
        ),
    ];
    for (answer, status, retry_after, head) in table {
        let sink = Sink::always(answer);
        let response = post_to(&loopback(), &sink.url("/"), Duration::from_secs(5)).await;
        assert_eq!(response.status, Some(status));
        assert_eq!(response.retry_after.as_deref(), retry_after, "{status}");
        assert_eq!(response.body_head, head, "{status}");
        assert_eq!(response.error, None, "{status}");
    }
}

#[tokio::test]
async fn a_redirect_is_the_answer_and_is_not_followed() {
    let elsewhere = Sink::always(Answer::status("200 OK", ""));
    let location = elsewhere.url("/moved");
    let sink = Sink::always(Answer::status("302 Found", "").with_header("Location", &location));
    let response = post_to(&loopback(), &sink.url("/"), Duration::from_secs(5)).await;
    assert_eq!(response.status, Some(302));
    assert_eq!(elsewhere.accepted(), 0, "the Location was never visited");
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_on_time() {
    let sink = Sink::always(Answer::Hang);
    let started = Instant::now();
    let response = post_to(&loopback(), &sink.url("/"), Duration::from_millis(300)).await;
    let took = started.elapsed();
    assert_eq!(
        response.error,
        Some(PostError::TimedOut(Duration::from_millis(300)))
    );
    assert_eq!(response.status, None);
    assert!(response.error.unwrap().is_transient());
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(sink.received().len(), 1, "the request did arrive");
}

#[tokio::test]
async fn a_closed_port_is_a_transient_failure() {
    // Bind and drop: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let response = post_to(&loopback(), &url, Duration::from_secs(5)).await;
    let error = response.error.expect("no answer");
    assert!(matches!(error, PostError::Failed(_)), "{error:?}");
    assert!(error.is_transient());
    assert!(
        !error.to_string().contains("/hook"),
        "no URL in errors: {error}"
    );
}

#[tokio::test]
async fn the_default_guard_refuses_loopback_before_connecting() {
    let sink = Sink::always(Answer::status("200 OK", ""));
    for url in [
        sink.url("/"),
        format!("http://localhost:{}/", sink.addr().port()),
        format!("http://[::ffff:127.0.0.1]:{}/", sink.addr().port()),
    ] {
        let response = post_to(&Guard::default(), &url, Duration::from_secs(5)).await;
        let error = response.error.expect("refused");
        assert!(matches!(error, PostError::Refused(_)), "{url}: {error:?}");
        assert!(!error.is_transient());
        assert!(error.to_string().contains("loopback"), "{url}: {error}");
    }
    assert_eq!(sink.accepted(), 0);
}

#[tokio::test]
async fn a_url_that_is_not_http_is_refused() {
    let response = post_to(&loopback(), "ftp://127.0.0.1/x", Duration::from_secs(5)).await;
    assert!(
        matches!(response.error, Some(PostError::Refused(ref why)) if why.contains("only http and https")),
        "{response:?}"
    );
}
