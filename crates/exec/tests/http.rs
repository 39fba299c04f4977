//! The HTTP executor and its SSRF guard against real sockets: loopback servers here, private and metadata addresses inside a network namespace of their own.
//!
//! Every server is a small std `TcpListener` in threads that records the
//! requests it reads and counts the connections it accepts, so that "was
//! refused" can be checked where it matters: at the listener, which must
//! see no connection at all.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cronium_core::JobStatus;
use cronium_exec::http::USER_AGENT;
use cronium_exec::{
    Allow, Guard, HttpCall, HttpExecutor, HttpLimits, HttpOutcome, MAX_LINE, OutputLine, Stream,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    target: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The whole request, head and body, as it arrived.
    raw: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with a request.
enum Reply {
    /// Write these bytes and close.
    Send(Vec<u8>),
    /// Answer nothing; hold the connection until the client closes it.
    Hang,
    /// Write these bytes, then hold the connection like `Hang`.
    SendThenHang(Vec<u8>),
    /// Write this head, then body bytes for as long as the client reads.
    Endless(Vec<u8>),
}

type Handler = dyn Fn(&Recorded, &str) -> Reply + Send + Sync;

/// A test HTTP server on one address.
struct Server {
    addr: SocketAddr,
    /// Connections accepted.
    accepted: Arc<AtomicUsize>,
    /// Held connections (`Hang`) the client closed.
    closed: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    /// Serves `handler` on `addr` (port 0 for any); the handler also gets
    /// the server's own base URL (`http://127.0.0.1:PORT`), for redirects.
    fn start(
        addr: &str,
        handler: impl Fn(&Recorded, &str) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let local = listener.local_addr().unwrap();
        let server = Server {
            addr: local,
            accepted: Arc::default(),
            closed: Arc::default(),
            requests: Arc::default(),
        };
        let handler: Arc<Handler> = Arc::new(handler);
        let (accepted, closed, requests) = (
            server.accepted.clone(),
            server.closed.clone(),
            server.requests.clone(),
        );
        let base = format!("http://{local}");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (handler, closed, requests, base) = (
                    handler.clone(),
                    closed.clone(),
                    requests.clone(),
                    base.clone(),
                );
                std::thread::spawn(move || serve(stream, &*handler, &closed, &requests, &base));
            }
        });
        server
    }

    /// A listener that answers nothing: only counts who connects.
    fn counting(addr: &str) -> Server {
        Server::start(addr, |_, _| Reply::Hang)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits up to `within` for `n` held connections to be closed by the client.
    fn wait_closed(&self, n: usize, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.closed.load(Ordering::SeqCst) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

fn serve(
    mut stream: TcpStream,
    handler: &Handler,
    closed: &AtomicUsize,
    requests: &Mutex<Vec<Recorded>>,
    base: &str,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    requests.lock().unwrap().push(request.clone());
    let hold = |mut stream: TcpStream| {
        // Until the client closes its end (read returns 0 or fails).
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        closed.fetch_add(1, Ordering::SeqCst);
    };
    match handler(&request, base) {
        Reply::Send(bytes) => {
            let _ = stream.write_all(&bytes);
            let _ = stream.shutdown(Shutdown::Write);
            // Let the client read everything before the socket goes.
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }
        Reply::Hang => hold(stream),
        Reply::SendThenHang(bytes) => {
            let _ = stream.write_all(&bytes);
            hold(stream);
        }
        Reply::Endless(head) => {
            let _ = stream.write_all(&head);
            let chunk = vec![b'z'; 64 * 1024];
            while stream.write_all(&chunk).is_ok() {}
            closed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    while raw.len() < head_end + length {
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        raw.extend_from_slice(&buf[..n]);
    }
    Some(Recorded {
        method,
        target,
        headers,
        body: raw[head_end..head_end + length].to_vec(),
        raw,
    })
}

/// A complete response that closes the connection.
fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn ok(body: &str) -> Reply {
    Reply::Send(response("200 OK", &[], body.as_bytes()))
}

fn redirect(status: &str, location: &str) -> Reply {
    Reply::Send(response(status, &[("Location", location)], b""))
}

fn call(method: &str, url: &str) -> HttpCall {
    HttpCall {
        method: method.into(),
        url: url.into(),
        headers: vec![],
        secret_headers: vec![],
        body: None,
        expect_status: vec![],
        timeout: Duration::from_secs(10),
    }
}

/// An executor allowed to reach 127.0.0.1 only, with `limits`.
fn loopback_executor(limits: HttpLimits) -> HttpExecutor {
    HttpExecutor::new(
        Guard::new(vec![Allow::parse("127.0.0.1/32").unwrap()]),
        limits,
    )
}

/// Runs `call` to the end, collecting its output.
async fn run(executor: &HttpExecutor, call: &HttpCall) -> (HttpOutcome, Vec<OutputLine>) {
    run_with(executor, call, CancellationToken::new()).await
}

async fn run_with(
    executor: &HttpExecutor,
    call: &HttpCall,
    cancel: CancellationToken,
) -> (HttpOutcome, Vec<OutputLine>) {
    let (tx, mut rx) = mpsc::channel(8);
    let collect = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            lines.push(line);
        }
        lines
    });
    let outcome = executor.run(call, tx, cancel).await;
    (outcome, collect.await.unwrap())
}

fn stream_bytes(lines: &[OutputLine], stream: Stream) -> Vec<u8> {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .flat_map(|l| l.data.clone())
        .collect()
}

fn stdout_lines(lines: &[OutputLine]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.stream == Stream::Stdout)
        .map(|l| String::from_utf8_lossy(&l.data).into_owned())
        .collect()
}

fn stderr_text(lines: &[OutputLine]) -> String {
    String::from_utf8_lossy(&stream_bytes(lines, Stream::Stderr)).into_owned()
}

fn error(outcome: &HttpOutcome) -> &str {
    outcome.report.error.as_deref().unwrap_or("")
}

/// Gives a connection that should not happen time to arrive before a
/// listener's count is asserted to be zero.
fn settle() {
    std::thread::sleep(Duration::from_millis(100));
}

#[tokio::test]
async fn get_sends_headers_and_streams_status_headers_and_body_as_lines() {
    let server = Server::start("127.0.0.1:0", |_, _| {
        Reply::Send(response(
            "200 OK",
            &[("X-Reply", "yes"), ("Content-Type", "text/plain")],
            b"line one\nline two\nlast",
        ))
    });
    let mut get = call("GET", &server.url("/hello?x=1"));
    get.headers = vec![
        ("X-One".into(), "1".into()),
        ("Accept".into(), "text/plain".into()),
    ];
    let (outcome, lines) = run(&loopback_executor(HttpLimits::default()), &get).await;

    assert_eq!(outcome.report.status, JobStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.report.error, None);
    assert_eq!(outcome.report.exit_code, None);
    assert_eq!(outcome.status, Some(200));
    assert!(!outcome.body_truncated);
    assert_eq!(outcome.final_url, get.url);
    assert_eq!(
        stdout_lines(&lines),
        [
            "HTTP/1.1 200 OK\n",
            "x-reply: yes\n",
            "content-type: text/plain\n",
            "content-length: 22\n",
            "connection: close\n",
            "\n",
            "line one\n",
            "line two\n",
            "last",
        ]
    );
    assert_eq!(stderr_text(&lines), "");

    let [request] = &server.requests()[..] else {
        panic!("{:?}", server.requests())
    };
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("GET", "/hello?x=1")
    );
    assert_eq!(request.header("x-one"), Some("1"));
    assert_eq!(request.header("accept"), Some("text/plain"));
    assert_eq!(request.header("user-agent"), Some(USER_AGENT));
    assert!(USER_AGENT.starts_with("cronium/"));
    assert!(request.body.is_empty());
}

#[tokio::test]
async fn every_method_reaches_the_server_as_named_with_its_body() {
    let server = Server::start("127.0.0.1:0", |request, _| {
        if request.method == "HEAD" {
            Reply::Send(response("200 OK", &[], b""))
        } else {
            ok(&format!(
                "{} got {} bytes",
                request.method,
                request.body.len()
            ))
        }
    });
    // (method as given, method on the wire, body)
    let table: &[(&str, &str, Option<&[u8]>)] = &[
        ("GET", "GET", None),
        ("HEAD", "HEAD", None),
        ("POST", "POST", Some(b"{\"a\":1}")),
        ("PUT", "PUT", Some(b"put body")),
        ("PATCH", "PATCH", Some(b"")),
        ("DELETE", "DELETE", None),
        ("OPTIONS", "OPTIONS", None),
        ("post", "POST", Some(b"lower case")),
    ];
    let executor = loopback_executor(HttpLimits::default());
    for (i, (given, wire, body)) in table.iter().enumerate() {
        let mut c = call(given, &server.url(&format!("/{i}")));
        c.body = body.map(<[u8]>::to_vec);
        let (outcome, _) = run(&executor, &c).await;
        assert_eq!(
            outcome.report.status,
            JobStatus::Succeeded,
            "{given}: {outcome:?}"
        );
        let request = server.requests().pop().unwrap();
        assert_eq!(request.method, *wire, "{given}");
        assert_eq!(request.target, format!("/{i}"), "{given}");
        assert_eq!(request.body, body.unwrap_or_default(), "{given}");
    }
}

#[tokio::test]
async fn post_sends_its_body_and_a_given_user_agent_replaces_the_default() {
    let server = Server::start("127.0.0.1:0", |_, _| {
        Reply::Send(response("201 Created", &[], b"made"))
    });
    let mut post = call("POST", &server.url("/items"));
    post.headers = vec![
        ("Content-Type".into(), "application/json".into()),
        ("User-Agent".into(), "my-agent/2".into()),
    ];
    post.body = Some(b"{\"name\":\"x\"}\n".to_vec());
    let (outcome, lines) = run(&loopback_executor(HttpLimits::default()), &post).await;
    assert_eq!(outcome.report.status, JobStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.status, Some(201));
    assert_eq!(stdout_lines(&lines)[0], "HTTP/1.1 201 Created\n");
    let request = server.requests().pop().unwrap();
    assert_eq!(request.body, b"{\"name\":\"x\"}\n");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("content-length"), Some("13"));
    assert_eq!(request.header("user-agent"), Some("my-agent/2"));
    let agents = request
        .headers
        .iter()
        .filter(|(k, _)| k == "user-agent")
        .count();
    assert_eq!(agents, 1);
}

#[tokio::test]
async fn the_final_status_decides_success_against_expect_status() {
    // (status the server answers, expect_status, succeeded, error)
    let table: &[(&str, &[u16], bool, Option<&str>)] = &[
        ("200 OK", &[], true, None),
        ("201 Created", &[], true, None),
        (
            "404 Not Found",
            &[],
            false,
            Some("expected a 2xx status, got 404 Not Found"),
        ),
        ("200 OK", &[200], true, None),
        (
            "503 Service Unavailable",
            &[200],
            false,
            Some("expected 200, got 503 Service Unavailable"),
        ),
        ("404 Not Found", &[404, 410], true, None),
        (
            "202 Accepted",
            &[200, 201],
            false,
            Some("expected 200 or 201, got 202 Accepted"),
        ),
        (
            "500 Internal Server Error",
            &[],
            false,
            Some("expected a 2xx status, got 500 Internal Server Error"),
        ),
    ];
    let executor = loopback_executor(HttpLimits::default());
    for (status, expect, succeeded, why) in table {
        let status = status.to_string();
        let server = Server::start("127.0.0.1:0", move |_, _| {
            Reply::Send(response(&status, &[], b"body"))
        });
        let mut c = call("GET", &server.url("/"));
        c.expect_status = expect.to_vec();
        let (outcome, lines) = run(&executor, &c).await;
        let wanted = if *succeeded {
            JobStatus::Succeeded
        } else {
            JobStatus::Failed
        };
        assert_eq!(outcome.report.status, wanted, "{expect:?}: {outcome:?}");
        assert_eq!(outcome.report.error.as_deref(), *why);
        // The response is the log whether or not it was expected.
        assert!(stream_bytes(&lines, Stream::Stdout).ends_with(b"\n\nbody"));
    }
}

#[tokio::test]
async fn a_body_over_the_cap_is_cut_there_and_marked() {
    let body: Vec<u8> = (0..10_000u32)
        .map(|i| if i % 100 == 99 { b'\n' } else { b'a' })
        .collect();
    let served = body.clone();
    let server = Server::start("127.0.0.1:0", move |_, _| {
        Reply::Send(response("200 OK", &[], &served))
    });
    let limits = HttpLimits {
        max_body: 4096,
        ..HttpLimits::default()
    };
    let (outcome, lines) = run(&loopback_executor(limits), &call("GET", &server.url("/"))).await;
    assert_eq!(outcome.report.status, JobStatus::Succeeded, "{outcome:?}");
    assert!(outcome.body_truncated);
    let stdout = stream_bytes(&lines, Stream::Stdout);
    let body_start = stdout.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    assert_eq!(&stdout[body_start..], &body[..4096]);
    assert_eq!(
        stderr_text(&lines),
        "cronium: response body truncated at 4096 bytes\n"
    );
    // The marker comes after the last body line.
    assert_eq!(lines.last().unwrap().stream, Stream::Stderr);

    // Exactly at the cap is not truncated.
    let (outcome, lines) = run(
        &loopback_executor(HttpLimits {
            max_body: 10_000,
            ..HttpLimits::default()
        }),
        &call("GET", &server.url("/")),
    )
    .await;
    assert!(!outcome.body_truncated);
    assert_eq!(stderr_text(&lines), "");
    assert!(stream_bytes(&lines, Stream::Stdout).ends_with(&body));
}

#[tokio::test]
async fn an_endless_body_stops_being_read_at_the_cap() {
    let server = Server::start("127.0.0.1:0", |_, _| {
        Reply::Endless(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n".to_vec())
    });
    let limits = HttpLimits {
        max_body: 256 * 1024,
        ..HttpLimits::default()
    };
    let began = Instant::now();
    let (outcome, lines) = run(&loopback_executor(limits), &call("GET", &server.url("/"))).await;
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(outcome.report.status, JobStatus::Succeeded, "{outcome:?}");
    assert!(outcome.body_truncated);
    let stdout = stream_bytes(&lines, Stream::Stdout);
    let body_start = stdout.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    assert_eq!(stdout.len() - body_start, 256 * 1024);
    // The connection was dropped, so the server's writes stop.
    assert!(server.wait_closed(1, Duration::from_secs(5)));
}

#[tokio::test]
async fn long_lines_arrive_in_pieces_of_max_line_bytes() {
    let body = vec![b'x'; MAX_LINE * 2 + 10];
    let served = body.clone();
    let server = Server::start("127.0.0.1:0", move |_, _| {
        Reply::Send(response("200 OK", &[], &served))
    });
    let (outcome, lines) = run(
        &loopback_executor(HttpLimits::default()),
        &call("GET", &server.url("/")),
    )
    .await;
    assert_eq!(outcome.report.status, JobStatus::Succeeded);
    let sizes: Vec<usize> = lines
        .iter()
        .skip_while(|l| l.data != b"\n")
        .skip(1)
        .map(|l| l.data.len())
        .collect();
    assert_eq!(sizes, [MAX_LINE, MAX_LINE, 10]);
    assert!(lines.iter().all(|l| l.data.len() <= MAX_LINE));
}

#[tokio::test]
async fn a_silent_server_times_out_promptly_and_the_connection_is_closed() {
    let server = Server::start("127.0.0.1:0", |_, _| Reply::Hang);
    let mut c = call("GET", &server.url("/slow"));
    c.timeout = Duration::from_millis(300);
    let began = Instant::now();
    let (outcome, lines) = run(&loopback_executor(HttpLimits::default()), &c).await;
    let took = began.elapsed();
    assert_eq!(outcome.report.status, JobStatus::TimedOut, "{outcome:?}");
    assert_eq!(error(&outcome), "timed out after 300ms");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(outcome.report.duration_ms >= 300);
    assert_eq!(outcome.status, None);
    assert!(lines.is_empty());
    // The abandoned request does not linger on the socket.
    assert!(server.wait_closed(1, Duration::from_secs(2)));
}

#[tokio::test]
async fn a_body_that_stalls_times_out_keeping_the_status_and_what_arrived() {
    let server = Server::start("127.0.0.1:0", |_, _| {
        Reply::SendThenHang(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial\n".to_vec())
    });
    let mut c = call("GET", &server.url("/"));
    c.timeout = Duration::from_millis(500);
    let (outcome, lines) = run(&loopback_executor(HttpLimits::default()), &c).await;
    assert_eq!(outcome.report.status, JobStatus::TimedOut, "{outcome:?}");
    assert_eq!(outcome.status, Some(200));
    assert!(
        stdout_lines(&lines).contains(&"partial\n".to_string()),
        "{lines:?}"
    );
    assert!(server.wait_closed(1, Duration::from_secs(2)));
}

#[tokio::test]
async fn cancel_stops_promptly_and_closes_the_connection() {
    let server = Server::start("127.0.0.1:0", |_, _| Reply::Hang);
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        canceller.cancel();
    });
    let began = Instant::now();
    let (outcome, _) = run_with(
        &loopback_executor(HttpLimits::default()),
        &call("GET", &server.url("/")),
        cancel,
    )
    .await;
    assert_eq!(outcome.report.status, JobStatus::Cancelled, "{outcome:?}");
    assert_eq!(error(&outcome), "cancelled");
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    assert!(server.wait_closed(1, Duration::from_secs(2)));
}

#[tokio::test]
async fn connection_refused_fails_naming_the_url_and_the_cause() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook?x=1");
    let (outcome, lines) = run(
        &loopback_executor(HttpLimits::default()),
        &call("GET", &url),
    )
    .await;
    assert_eq!(outcome.report.status, JobStatus::Failed);
    let why = error(&outcome);
    assert!(why.starts_with(&format!("GET {url}: ")), "{why}");
    assert!(why.to_lowercase().contains("connection refused"), "{why}");
    assert_eq!(outcome.status, None);
    assert!(lines.is_empty());
}

#[tokio::test]
async fn a_secret_header_reaches_the_server_and_nothing_else() {
    const SECRET: &str = "Bearer tok-9f8e7d6c5b4a";
    let server = Server::start("127.0.0.1:0", |_, _| ok("fine"));
    let mut c = call("POST", &server.url("/"));
    c.secret_headers = vec![("Authorization".into(), SECRET.into())];
    c.body = Some(b"x".to_vec());
    let (outcome, lines) = run(&loopback_executor(HttpLimits::default()), &c).await;
    assert_eq!(outcome.report.status, JobStatus::Succeeded, "{outcome:?}");
    assert_eq!(server.requests()[0].header("authorization"), Some(SECRET));

    let everywhere = format!(
        "{outcome:?} {c:?} {c:#?} {:?}",
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.data).into_owned())
            .collect::<Vec<_>>()
    );
    assert!(!everywhere.contains("tok-9f8e7d6c5b4a"), "{everywhere}");
    assert!(format!("{c:?}").contains("Authorization"));

    // Nor in the error when the request fails.
    let mut bad = c.clone();
    bad.url = "http://127.0.0.1:1/".into();
    bad.secret_headers
        .push(("X-Token".into(), "tok-9f8e7d6c5b4a\u{1}".into()));
    let (outcome, lines) = run(&loopback_executor(HttpLimits::default()), &bad).await;
    assert_eq!(outcome.report.status, JobStatus::Failed);
    assert_eq!(
        error(&outcome),
        "secret header X-Token: the value is not a valid header value"
    );
    assert!(!format!("{outcome:?}{lines:?}").contains("tok-9f8e7d6c5b4a"));
}

#[tokio::test]
async fn a_response_echoing_a_secret_header_shows_only_the_mask() {
    // A server that echoes what it was sent: in a header, whole, and in the
    // body as the bare token, split by the 16 KiB reads of a long body.
    let server = Server::start("127.0.0.1:0", |request, _| {
        let auth = request.header("authorization").unwrap_or("").to_string();
        let token = auth.trim_start_matches("Bearer ");
        let mut body = "x".repeat(16 * 1024 - 3);
        body.push_str(&format!("{token} and {auth}\n"));
        Reply::Send(response(
            "401 Unauthorized",
            &[("X-Echo", &auth)],
            body.as_bytes(),
        ))
    });
    let mut c = call("GET", &server.url("/"));
    c.secret_headers = vec![("Authorization".into(), "Bearer tok-9f8e7d6c5b4a".into())];
    let (outcome, lines) = run(&loopback_executor(HttpLimits::default()), &c).await;
    assert_eq!(outcome.report.status, JobStatus::Failed, "{outcome:?}");
    let stdout = String::from_utf8(stream_bytes(&lines, Stream::Stdout)).unwrap();
    assert!(stdout.contains("x-echo: ***\n"), "{stdout}");
    assert!(
        stdout.ends_with("xxx*** and ***\n"),
        "{}",
        &stdout[stdout.len() - 40..]
    );
    assert!(!format!("{outcome:?}{lines:?}").contains("9f8e7d6c5b4a"));
}

#[tokio::test]
async fn an_unsupported_method_fails_before_connecting() {
    let server = Server::counting("127.0.0.1:0");
    for method in ["TRACE", "CONNECT", "PROPFIND", ""] {
        let (outcome, _) = run(
            &loopback_executor(HttpLimits::default()),
            &call(method, &server.url("/")),
        )
        .await;
        assert_eq!(outcome.report.status, JobStatus::Failed);
        assert!(
            error(&outcome).contains("is not supported: use one of GET, HEAD"),
            "{outcome:?}"
        );
    }
    settle();
    assert_eq!(server.accepted(), 0);
}

#[tokio::test]
async fn the_default_guard_refuses_loopback_in_every_spelling_without_connecting() {
    let v4 = Server::counting("127.0.0.1:0");
    let p = v4.port();
    // The same port on ::1, so `localhost` and `[::]` have a listener
    // whichever family they would pick.
    let v6 = Server::counting(&format!("[::1]:{p}"));
    // (URL, part of the error)
    let table: Vec<(String, &str)> = vec![
        (
            format!("http://127.0.0.1:{p}/"),
            "127.0.0.1 is a loopback address",
        ),
        (format!("http://[::1]:{p}/"), "::1 is a loopback address"),
        (
            format!("http://[::ffff:127.0.0.1]:{p}/"),
            "::ffff:127.0.0.1 is a loopback address (IPv4-mapped 127.0.0.1)",
        ),
        (
            format!("http://localhost:{p}/"),
            "127.0.0.1 (from localhost) is a loopback address",
        ),
        (
            format!("http://LOCALHOST:{p}/"),
            "127.0.0.1 (from localhost) is a loopback address",
        ),
        (
            format!("http://0.0.0.0:{p}/"),
            "0.0.0.0 is the unspecified address",
        ),
        (format!("http://[::]:{p}/"), ":: is the unspecified address"),
        // Numeric forms the resolver reads as 127.0.0.1.
        (
            format!("http://127.1:{p}/"),
            "127.0.0.1 (from 127.1) is a loopback address",
        ),
        (
            format!("http://2130706433:{p}/"),
            "127.0.0.1 (from 2130706433) is a loopback address",
        ),
        (
            format!("http://0x7f000001:{p}/"),
            "127.0.0.1 (from 0x7f000001) is a loopback address",
        ),
    ];
    let executor = HttpExecutor::new(Guard::default(), HttpLimits::default());
    for (url, why) in &table {
        let (outcome, lines) = run(&executor, &call("GET", url)).await;
        assert_eq!(outcome.report.status, JobStatus::Failed, "{url}");
        let error = error(&outcome);
        assert!(
            error.starts_with(&format!("GET {url} refused: ")),
            "{url}: {error}"
        );
        assert!(error.contains(why), "{url}: {error}");
        assert!(
            error.ends_with("unless the server allows it (--http-allow)"),
            "{error}"
        );
        assert!(lines.is_empty());
        // The save-time check agrees.
        assert!(Guard::default().check_url(url).is_err(), "{url}");
    }
    settle();
    assert_eq!((v4.accepted(), v6.accepted()), (0, 0));
}

#[tokio::test]
async fn an_allowed_host_name_lets_its_addresses_through() {
    let server = Server::start("127.0.0.1:0", |_, _| ok("hi"));
    let executor = HttpExecutor::new(
        Guard::new(vec![Allow::parse("LOCALHOST").unwrap()]),
        HttpLimits::default(),
    );
    let url = format!("http://localhost:{}/", server.port());
    let (outcome, _) = run(&executor, &call("GET", &url)).await;
    assert_eq!(outcome.report.status, JobStatus::Succeeded, "{outcome:?}");
    // The name is allowed, not the address: 127.0.0.1 written out is not.
    let (outcome, _) = run(&executor, &call("GET", &server.url("/"))).await;
    assert_eq!(outcome.report.status, JobStatus::Failed);
    assert_eq!(server.accepted(), 1);
}

#[tokio::test]
async fn a_redirect_to_a_refused_address_is_refused_before_connecting() {
    let target = Server::counting("127.0.0.2:0");
    let location = target.url("/internal");
    let server = Server::start("127.0.0.1:0", move |_, _| redirect("302 Found", &location));
    let (outcome, lines) = run(
        &loopback_executor(HttpLimits::default()),
        &call("GET", &server.url("/start")),
    )
    .await;
    assert_eq!(outcome.report.status, JobStatus::Failed);
    let why = error(&outcome);
    assert!(
        why.starts_with(&format!(
            "GET {} refused: 127.0.0.2 is a loopback address",
            target.url("/internal")
        )),
        "{why}"
    );
    assert_eq!(
        stderr_text(&lines),
        format!("cronium: 302 Found → {}\n", target.url("/internal"))
    );
    assert_eq!(outcome.final_url, target.url("/internal"));
    assert_eq!(outcome.status, None);
    assert_eq!(server.requests().len(), 1);
    settle();
    assert_eq!(target.accepted(), 0);
}

#[tokio::test]
async fn redirects_are_followed_with_the_method_body_and_headers_each_status_calls_for() {
    // Both on 127.0.0.1 (allowed) but on two ports: two origins.
    let other = Server::start("127.0.0.1:0", |_, _| ok("landed"));
    // (status, same origin, method after, body kept)
    let table: &[(&str, bool, &str, bool)] = &[
        ("301 Moved Permanently", true, "GET", false),
        ("302 Found", true, "GET", false),
        ("303 See Other", true, "GET", false),
        ("307 Temporary Redirect", true, "POST", true),
        ("308 Permanent Redirect", true, "POST", true),
        ("302 Found", false, "GET", false),
        ("307 Temporary Redirect", false, "POST", true),
    ];
    for (status, same_origin, method_after, body_kept) in table {
        let other_url = other.url("/landing");
        let status_owned = status.to_string();
        let same = *same_origin;
        let server = Server::start("127.0.0.1:0", move |request, base| {
            if request.target == "/landing" {
                ok("landed")
            } else if same {
                redirect(&status_owned, &format!("{base}/landing"))
            } else {
                redirect(&status_owned, &other_url)
            }
        });
        let mut post = call("POST", &server.url("/start"));
        post.body = Some(b"payload".to_vec());
        post.headers = vec![
            ("X-Plain".into(), "kept".into()),
            ("Authorization".into(), "Basic cGxhaW4=".into()),
        ];
        post.secret_headers = vec![("X-Secret".into(), "s3cret".into())];
        let (outcome, lines) = run(&loopback_executor(HttpLimits::default()), &post).await;
        assert_eq!(
            outcome.report.status,
            JobStatus::Succeeded,
            "{status}: {outcome:?}"
        );
        let landing = if same {
            server.url("/landing")
        } else {
            other.url("/landing")
        };
        assert_eq!(outcome.final_url, landing);
        assert_eq!(
            stderr_text(&lines),
            format!("cronium: {status} → {landing}\n")
        );
        assert!(stream_bytes(&lines, Stream::Stdout).ends_with(b"landed"));

        let second = if same {
            server.requests()[1].clone()
        } else {
            other.requests().pop().unwrap()
        };
        assert_eq!(second.method, *method_after, "{status}");
        assert_eq!(
            second.body,
            if *body_kept { &b"payload"[..] } else { b"" },
            "{status}"
        );
        assert_eq!(second.header("x-plain"), Some("kept"), "{status}");
        // Secrets (and plain credentials) stay with the origin they were meant for.
        let (secret, auth) = if same {
            (Some("s3cret"), Some("Basic cGxhaW4="))
        } else {
            (None, None)
        };
        assert_eq!(second.header("x-secret"), secret, "{status}");
        assert_eq!(second.header("authorization"), auth, "{status}");
        if !same {
            assert!(
                !String::from_utf8_lossy(&second.raw).contains("s3cret"),
                "{status}"
            );
        }
    }
}

#[tokio::test]
async fn a_redirect_chain_longer_than_the_limit_fails_clearly() {
    let server = Server::start("127.0.0.1:0", |request, base| {
        let n: u32 = request.target.trim_start_matches('/').parse().unwrap_or(0);
        redirect("302 Found", &format!("{base}/{}", n + 1))
    });
    let limits = HttpLimits {
        max_redirects: 2,
        ..HttpLimits::default()
    };
    let (outcome, lines) = run(&loopback_executor(limits), &call("GET", &server.url("/0"))).await;
    assert_eq!(outcome.report.status, JobStatus::Failed);
    assert_eq!(
        error(&outcome),
        format!(
            "too many redirects: more than 2 (the last, 302 Found from {}, led to {})",
            server.url("/2"),
            server.url("/3")
        )
    );
    let targets: Vec<String> = server.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/0", "/1", "/2"]);
    assert_eq!(stderr_text(&lines).lines().count(), 2);
}

#[tokio::test]
async fn a_redirect_whose_status_is_expected_is_the_answer() {
    let server = Server::start("127.0.0.1:0", |_, _| redirect("302 Found", "/elsewhere"));
    let mut c = call("GET", &server.url("/"));
    c.expect_status = vec![302];
    let (outcome, lines) = run(&loopback_executor(HttpLimits::default()), &c).await;
    assert_eq!(outcome.report.status, JobStatus::Succeeded, "{outcome:?}");
    assert_eq!(outcome.status, Some(302));
    assert!(stdout_lines(&lines).contains(&"location: /elsewhere\n".to_string()));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn an_https_url_to_a_plain_server_fails_as_tls_and_never_falls_back_to_http() {
    // An https → http redirect needs a TLS server whose certificate the
    // webpki roots trust, which a test cannot have: that hop rule is
    // covered where it is decided (`http::tests`). What a test can show
    // is that https is never quietly spoken as plain http: this server
    // answers plain HTTP at once, whatever it is sent.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let first_bytes = Arc::new(Mutex::new(Vec::new()));
    let seen = first_bytes.clone();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.write_all(&response("200 OK", &[], b"plain"));
        let mut buf = [0u8; 5];
        let _ = stream.read_exact(&mut buf);
        seen.lock().unwrap().extend_from_slice(&buf);
    });
    let url = format!("https://127.0.0.1:{port}/");
    let (outcome, lines) = run(
        &loopback_executor(HttpLimits::default()),
        &call("GET", &url),
    )
    .await;
    assert_eq!(outcome.report.status, JobStatus::Failed, "{outcome:?}");
    let why = error(&outcome);
    assert!(why.starts_with(&format!("GET {url}: TLS: ")), "{why}");
    assert!(lines.is_empty());
    // What the client sent was a TLS handshake record (type 22), not "GET /".
    assert_eq!(first_bytes.lock().unwrap().first(), Some(&22));
}

/// Runs this test binary's test `name` alone, in a child process set up by
/// `command` (this binary is its last argument), with `marker` set so the
/// test knows it is the child; asserts that it ran there and passed.
fn run_in_child(mut command: std::process::Command, name: &str, marker: &str) {
    let output = command
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture"])
        .env(marker, "1")
        .output()
        .expect("the child starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "in the child: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The child ran the test rather than filtering it out.
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[tokio::test]
async fn environment_proxies_are_ignored() {
    // The proxy variables are set in a child running this test alone, so
    // they touch no other test; the child fails unless its request went
    // straight to the server.
    const CHILD: &str = "CRONIUM_TEST_PROXY_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let runner = std::process::Command::new("env");
        return run_in_child(runner, "environment_proxies_are_ignored", CHILD);
    }
    let proxy = Server::counting("127.0.0.1:0");
    // SAFETY: set before any other thread of this child reads the
    // environment; this child runs this one test only.
    unsafe {
        for name in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            std::env::set_var(name, proxy.url(""));
        }
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    let server = Server::start("127.0.0.1:0", |_, _| ok("direct"));
    let (outcome, _) = run(
        &loopback_executor(HttpLimits::default()),
        &call("GET", &server.url("/")),
    )
    .await;
    assert_eq!(outcome.report.status, JobStatus::Succeeded, "{outcome:?}");
    assert_eq!(server.accepted(), 1);
    settle();
    assert_eq!(proxy.accepted(), 0);
}

/// Addresses put on the namespace's loopback interface: private, metadata
/// and one public address, so that a connection to any of them would stay
/// on this machine (the namespace has no other interface and no route).
const NETNS_ADDRS: [&str; 5] = [
    "10.0.0.1/32",
    "169.254.169.254/32",
    "100.100.100.200/32",
    "93.184.216.34/32",
    "fd00:ec2::254/128",
];

#[tokio::test]
async fn private_and_metadata_addresses_are_refused_in_a_network_namespace() {
    // A fresh network and mount namespace: only `lo`, no routes out, and a
    // private /etc/hosts naming test hosts, set up by `unshare` and `ip`;
    // then this same test runs again inside it and does the checks.
    const CHILD: &str = "CRONIUM_TEST_NETNS_CHILD";
    if std::env::var_os(CHILD).is_some() {
        return netns_checks().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n\
         93.184.216.34 public.test mixed.test\n\
         10.0.0.1 mixed.test\n\
         169.254.169.254 metadata.test\n",
    )
    .unwrap();
    let mut script = String::from("set -e; ip link set lo up; ");
    for addr in NETNS_ADDRS {
        script.push_str(&format!("ip addr add {addr} dev lo; "));
    }
    script.push_str(&format!(
        "mount --bind {} /etc/hosts; exec \"$@\"",
        hosts.display()
    ));
    let mut unshare = std::process::Command::new("unshare");
    unshare.args(["--net", "--mount", "sh", "-c", &script, "sh"]);
    run_in_child(
        unshare,
        "private_and_metadata_addresses_are_refused_in_a_network_namespace",
        CHILD,
    );
}

async fn netns_checks() {
    // Only inside the namespace: 10.0.0.1 is local here, and nothing routes out.
    assert!(
        TcpListener::bind("10.0.0.1:0").is_ok(),
        "not in the prepared namespace"
    );
    let routes = std::process::Command::new("ip")
        .args(["route", "show", "default"])
        .output()
        .unwrap();
    assert!(
        routes.stdout.is_empty(),
        "a default route exists: refusing to run"
    );

    let private = Server::counting("10.0.0.1:0");
    let metadata = Server::counting("169.254.169.254:0");
    let alibaba = Server::counting("100.100.100.200:0");
    let aws_v6 = Server::counting("[fd00:ec2::254]:0");
    let public = Server::start("93.184.216.34:0", |_, _| ok("public"));
    let p = public.port();
    // mixed.test resolves to 93.184.216.34 and 10.0.0.1: one listener each
    // on the same port.
    let mixed_private = Server::counting(&format!("10.0.0.1:{p}"));

    let guard = Guard::default();
    let executor = HttpExecutor::new(guard.clone(), HttpLimits::default());
    // (URL, part of the error)
    let refused: Vec<(String, &str)> = vec![
        (
            private.url("/"),
            "10.0.0.1 is a private address (10.0.0.0/8)",
        ),
        (
            metadata.url("/latest/meta-data/"),
            "169.254.169.254 is a cloud metadata address",
        ),
        (
            alibaba.url("/"),
            "100.100.100.200 is a cloud metadata address",
        ),
        (aws_v6.url("/"), "fd00:ec2::254 is a cloud metadata address"),
        (
            format!("http://[::ffff:10.0.0.1]:{}/", private.port()),
            "::ffff:10.0.0.1 is a private address (10.0.0.0/8) (IPv4-mapped 10.0.0.1)",
        ),
        (
            format!("http://metadata.test:{}/", metadata.port()),
            "169.254.169.254 (from metadata.test) is a cloud metadata address",
        ),
        // One refused address refuses the name, whichever would be tried.
        (
            format!("http://mixed.test:{p}/"),
            "10.0.0.1 (from mixed.test) is a private address",
        ),
    ];
    for (url, why) in &refused {
        let (outcome, _) = run(&executor, &call("GET", url)).await;
        assert_eq!(outcome.report.status, JobStatus::Failed, "{url}");
        assert!(error(&outcome).contains(why), "{url}: {outcome:?}");
        let saved = guard.check_url(url).expect_err(url);
        assert!(saved.0.contains(why), "{url}: {saved}");
    }
    settle();
    for server in [&private, &metadata, &alibaba, &aws_v6, &mixed_private] {
        assert_eq!(server.accepted(), 0, "{}", server.addr);
    }
    assert_eq!(public.accepted(), 0);

    // A public address, literal or by name, is reached with the default guard.
    for url in [public.url("/"), format!("http://public.test:{p}/")] {
        let (outcome, lines) = run(&executor, &call("GET", &url)).await;
        assert_eq!(
            outcome.report.status,
            JobStatus::Succeeded,
            "{url}: {outcome:?}"
        );
        assert!(stream_bytes(&lines, Stream::Stdout).ends_with(b"public"));
        assert!(guard.check_url(&url).is_ok());
    }
    assert_eq!(public.accepted(), 2);

    // Allowing the private network lets it through.
    let allowed = HttpExecutor::new(
        Guard::new(vec![Allow::parse("10.0.0.0/8").unwrap()]),
        HttpLimits::default(),
    );
    let inside = Server::start("10.0.0.1:0", |_, _| ok("inside"));
    let (outcome, _) = run(&allowed, &call("GET", &inside.url("/"))).await;
    assert_eq!(outcome.report.status, JobStatus::Succeeded, "{outcome:?}");
    // And a redirect from there to the metadata address is still refused.
    let to_metadata = metadata.url("/latest/");
    let bouncer = Server::start("10.0.0.1:0", move |_, _| {
        redirect("301 Moved Permanently", &to_metadata)
    });
    let (outcome, _) = run(&allowed, &call("GET", &bouncer.url("/"))).await;
    assert!(
        error(&outcome).contains("169.254.169.254 is a cloud metadata address"),
        "{outcome:?}"
    );
    settle();
    assert_eq!(metadata.accepted(), 0);

    // A name nobody knows fails as what it is (no answer from DNS), not as a
    // refusal. Checked here because the lookup asks the DNS servers, and
    // only in this namespace can that query not leave the machine.
    let (outcome, _) = run(
        &HttpExecutor::new(Guard::default(), HttpLimits::default()),
        &call("GET", "http://no-such-host.invalid/"),
    )
    .await;
    assert_eq!(outcome.report.status, JobStatus::Failed);
    assert!(
        error(&outcome).starts_with(
            "GET http://no-such-host.invalid/: could not resolve no-such-host.invalid: "
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn executors_run_an_http_attempt_and_report_its_status() {
    use cronium_exec::remote::{Pool, RemoteExecutor, RunnerArtifacts};
    use cronium_exec::{Attempt, ExecutorConfig, Executors, LocalExecutor, Sandbox};

    let dir = tempfile::tempdir().unwrap();
    let local = LocalExecutor::new(ExecutorConfig {
        runner: cronium_exec::testing::runner_binary(),
        work_dir: dir.path().join("work"),
        sandbox: Sandbox::None,
        kill_grace: Duration::from_secs(1),
    })
    .unwrap();
    let remote = RemoteExecutor::new(
        Pool::default(),
        RunnerArtifacts::default(),
        Duration::from_secs(1),
    );
    let limits = HttpLimits {
        max_body: 3,
        ..HttpLimits::default()
    };
    let executors = Executors::new(local, remote, loopback_executor(limits));
    let server = Server::start("127.0.0.1:0", |_, _| {
        Reply::Send(response("202 Accepted", &[], b"queued"))
    });
    let (tx, mut rx) = mpsc::channel(64);
    let execution = executors
        .run(
            Attempt::Http(&call("PUT", &server.url("/q"))),
            tx,
            CancellationToken::new(),
        )
        .await;
    assert_eq!(
        execution.report.status,
        JobStatus::Succeeded,
        "{execution:?}"
    );
    assert_eq!(execution.http_status, Some(202));
    assert!(execution.body_truncated);
    assert_eq!(execution.phase, None);
    let mut first = None;
    while let Some(line) = rx.recv().await {
        first.get_or_insert(line.data);
    }
    assert_eq!(first.as_deref(), Some(&b"HTTP/1.1 202 Accepted\n"[..]));
}
