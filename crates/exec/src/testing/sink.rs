//! A webhook receiver for tests: a loopback HTTP/1.1 listener that records every request, counts connections, and answers each request as a script says.
//!
//! Plain std threads and sockets, no HTTP library, so what a test sees is
//! what went over the wire. Counting accepted connections is what lets a
//! test say "refused before connecting" where it matters: at the listener.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the sink read it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The request target (`/hook?x`).
    pub target: String,
    /// Names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the sink answers one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A complete response (status with its reason, e.g. `503 Service
    /// Unavailable`; extra headers; body), then the connection closes.
    Reply {
        status: String,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Nothing: the connection is held until the client closes it.
    Hang,
}

impl Answer {
    /// `status` (`"200 OK"`) with a body and no extra headers.
    pub fn status(status: &str, body: &str) -> Answer {
        Answer::Reply {
            status: status.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// `self` with one more header.
    pub fn with_header(self, name: &str, value: &str) -> Answer {
        match self {
            Answer::Reply {
                status,
                mut headers,
                body,
            } => {
                headers.push((name.into(), value.into()));
                Answer::Reply {
                    status,
                    headers,
                    body,
                }
            }
            Answer::Hang => Answer::Hang,
        }
    }
}

type Script = dyn Fn(usize) -> Answer + Send + Sync;

/// A listening receiver. It lives as long as the test process (its threads
/// are detached); each test starts its own on a fresh port.
pub struct Sink {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    /// Listens on `127.0.0.1` (any port) and answers the `n`-th request
    /// (from 0) with `script(n)`.
    pub fn start(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Sink {
        Sink::start_on("127.0.0.1:0", script)
    }

    /// Answers every request with the same `answer`.
    pub fn always(answer: Answer) -> Sink {
        Sink::start(move |_| answer.clone())
    }

    /// Listens on `addr`.
    pub fn start_on(addr: &str, script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Sink {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let sink = Sink {
            addr: listener.local_addr().expect("local address"),
            accepted: Arc::default(),
            received: Arc::default(),
        };
        let script: Arc<Script> = Arc::new(script);
        let (accepted, received) = (sink.accepted.clone(), sink.received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (script, received) = (script.clone(), received.clone());
                std::thread::spawn(move || serve(stream, &*script, &received));
            }
        });
        sink
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Requests read so far, in order of arrival.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn serve(mut stream: TcpStream, script: &Script, received: &Mutex<Vec<Received>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    let n = {
        let mut all = received.lock().unwrap_or_else(|e| e.into_inner());
        all.push(request);
        all.len() - 1
    };
    if let Answer::Reply {
        status,
        headers,
        body,
    } = script(n)
    {
        let mut out = format!("HTTP/1.1 {status}\r\n");
        for (k, v) in &headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        let _ = stream.write_all(out.as_bytes());
        let _ = stream.shutdown(Shutdown::Write);
    }
    // Until the client closes its end, so it reads everything (or, for
    // `Hang`, waits in vain).
    let mut rest = [0u8; 1024];
    while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
}

fn read_request(stream: &mut TcpStream) -> Option<Received> {
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
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    while raw.len() < head_end + length {
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        raw.extend_from_slice(&buf[..n]);
    }
    Some(Received {
        method,
        target,
        headers,
        body: raw[head_end..head_end + length].to_vec(),
        at: Instant::now(),
    })
}
