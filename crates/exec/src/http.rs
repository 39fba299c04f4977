//! The HTTP executor: one HTTP request as a job's attempt, its response streamed as the job's log, every hop checked by the SSRF guard.
//!
//! The request runs on ureq (blocking) in `spawn_blocking`; lines come back
//! through a channel while the body arrives. ureq is configured so that the
//! guard sees every connection: no proxy (not even one from the
//! environment, which would connect on our behalf to an address the guard
//! never saw), no redirects of its own (we follow them here, so each hop is
//! checked, counted and never downgraded from https), and a resolver that
//! returns only the addresses [`Guard::resolve`] approved, so the socket
//! connects to exactly what was checked (no DNS-rebinding window between
//! check and connect). Cancellation and the timeout return at once and
//! shut the request's agent down, which interrupts a blocked read.

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cronium_core::JobStatus;
use tokio::sync::mpsc::{self, Sender};
use tokio_util::sync::CancellationToken;
use ureq::config::Config;
use ureq::http::header::{self, HeaderName, HeaderValue};
use ureq::http::{Method, Request, Response, StatusCode, Uri};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};
use ureq::{Agent, AsSendBody, Body};

use crate::guard::{Guard, Lookup, Refused, Target, unbracket};
use crate::mask::{MaskStream, Secrets};
use crate::records::{Lines, fmt_duration};
use crate::{OutputLine, RunReport, Stream};

/// The `User-Agent` sent unless the call names its own.
pub const USER_AGENT: &str = concat!("cronium/", env!("CARGO_PKG_VERSION"));

/// The methods an HTTP event may use.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// One HTTP request to make as a job's attempt.
#[derive(Clone)]
pub struct HttpCall {
    /// One of [`METHODS`].
    pub method: String,
    /// An `http` or `https` URL.
    pub url: String,
    /// Plain headers, sent as given.
    pub headers: Vec<(String, String)>,
    /// Headers whose values are opened secrets: sent, but never written to
    /// output, errors, logs or `Debug`, and dropped when a redirect leaves
    /// the URL's origin.
    pub secret_headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// The statuses that mean success; empty: any 2xx. A redirect whose
    /// status is listed is not followed (it is the answer).
    pub expect_status: Vec<u16>,
    /// For the whole request: every redirect hop and the body.
    pub timeout: Duration,
}

impl HttpCall {
    /// The secret header values, to mask in what the response shows: each
    /// whole value and, for a value with an auth scheme (`Bearer …`,
    /// `Basic …`), the credential after it, which a server may echo alone.
    pub fn secrets(&self) -> Secrets {
        let secrets = Secrets::new();
        for (_, value) in &self.secret_headers {
            secrets.add(value);
            if let Some((_, credential)) = value.trim().split_once(' ') {
                secrets.add(credential);
            }
        }
        secrets
    }
}

impl fmt::Debug for HttpCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secret header values are opened secrets: only their names show.
        let secret_names: Vec<&str> = self
            .secret_headers
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        f.debug_struct("HttpCall")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers)
            .field("secret_headers", &secret_names)
            .field(
                "body",
                &self.body.as_ref().map(|b| format!("{} bytes", b.len())),
            )
            .field("expect_status", &self.expect_status)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What one HTTP attempt may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Body bytes kept (and read): the rest is cut off.
    pub max_body: u64,
    /// Redirects followed; one more fails the attempt.
    pub max_redirects: u32,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_body: 1024 * 1024,
            max_redirects: 5,
        }
    }
}

/// How an HTTP attempt ended.
#[derive(Debug, Clone)]
pub struct HttpOutcome {
    /// `Succeeded`, `Failed`, `TimedOut` or `Cancelled`; no exit code.
    pub report: RunReport,
    /// The final response's status, if one arrived.
    pub status: Option<u16>,
    /// Whether the body was cut at [`HttpLimits::max_body`].
    pub body_truncated: bool,
    /// The URL of the last request made (after redirects).
    pub final_url: String,
}

/// Runs [`HttpCall`]s through one [`Guard`]. Share it with an `Arc`.
#[derive(Debug, Clone)]
pub struct HttpExecutor {
    guard: Guard,
    limits: HttpLimits,
}

impl HttpExecutor {
    pub fn new(guard: Guard, limits: HttpLimits) -> HttpExecutor {
        HttpExecutor { guard, limits }
    }

    /// Makes the request, sending the response to `output` as it arrives
    /// (status line, headers, a blank line, the body, as Stdout lines;
    /// redirects and truncation as Stderr lines), until it ends, the
    /// call's timeout passes or `cancel` stops it.
    pub async fn run(
        &self,
        call: &HttpCall,
        output: Sender<OutputLine>,
        cancel: CancellationToken,
    ) -> HttpOutcome {
        let started = Instant::now();
        let deadline = started + call.timeout;
        // One agent per attempt: its pool holds only this attempt's
        // connections, so shutting it down stops exactly this request.
        let agent = agent(&self.guard);
        let progress = Arc::new(Mutex::new(Progress {
            url: call.url.clone(),
            status: None,
            truncated: false,
        }));
        let (lines_tx, mut lines_rx) = mpsc::channel(64);
        let secrets = call.secrets();
        let request = Exchange {
            secrets: secrets.clone(),
            call: call.clone(),
            agent: agent.clone(),
            limits: self.limits,
            deadline,
            lines: lines_tx,
            progress: progress.clone(),
        };
        let task = tokio::task::spawn_blocking(move || request.run());
        // Lines pass through here rather than straight to `output`, so that
        // a stop needs no cooperation from the blocking side: dropping the
        // receiver makes its next send fail.
        let pump = async move {
            while let Some(line) = lines_rx.recv().await {
                // A receiver that went away loses the output, not the run.
                let _ = output.send(line).await;
            }
            task.await
        };
        let end = tokio::select! {
            biased;
            () = cancel.cancelled() => Stop::Cancelled,
            () = tokio::time::sleep_until(deadline.into()) => Stop::TimedOut,
            ended = pump => match ended {
                Ok(end) => Stop::Ended(end),
                Err(e) => Stop::Ended(End::Failed(format!("the HTTP request task failed: {e}"))),
            },
        };
        // Interrupts a read or write still blocked on the socket; a no-op
        // once the request is over.
        agent.shutdown();
        let progress = progress.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (status, error) = match end {
            Stop::Cancelled => (JobStatus::Cancelled, Some("cancelled".to_string())),
            Stop::TimedOut | Stop::Ended(End::TimedOut) => (
                JobStatus::TimedOut,
                Some(format!("timed out after {}", fmt_duration(call.timeout))),
            ),
            Stop::Ended(End::Failed(why)) => (JobStatus::Failed, Some(why)),
            Stop::Ended(End::Response(code)) => match judge(code, &call.expect_status) {
                Ok(()) => (JobStatus::Succeeded, None),
                Err(why) => (JobStatus::Failed, Some(why)),
            },
        };
        HttpOutcome {
            report: RunReport {
                status,
                exit_code: None,
                signal: None,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                error: error.map(|e| secrets.mask_str(&e)),
            },
            status: progress.status,
            body_truncated: progress.truncated,
            final_url: progress.url,
        }
    }
}

/// Why the waiting stopped.
enum Stop {
    Cancelled,
    TimedOut,
    Ended(End),
}

/// How the blocking side ended.
#[derive(Debug)]
enum End {
    /// A final response, read as far as the limits allow.
    Response(u16),
    TimedOut,
    Failed(String),
}

/// What the blocking side has reached so far, for the outcome whatever
/// stops it.
#[derive(Debug, Clone)]
struct Progress {
    url: String,
    status: Option<u16>,
    truncated: bool,
}

/// Whether the final status is what the call expects.
fn judge(code: u16, expect: &[u16]) -> Result<(), String> {
    let ok = if expect.is_empty() {
        (200..300).contains(&code)
    } else {
        expect.contains(&code)
    };
    if ok {
        return Ok(());
    }
    let wanted = match expect {
        [] => "a 2xx status".to_string(),
        [one] => one.to_string(),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(u16::to_string).collect();
            format!("{} or {last}", init.join(", "))
        }
    };
    Err(format!("expected {wanted}, got {}", status_text(code)))
}

/// `503 Service Unavailable`, or just `599` for a status without a name.
pub fn status_text(code: u16) -> String {
    match StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{code} {reason}"),
        None => code.to_string(),
    }
}

/// The ureq agent for one attempt (or one webhook POST): no proxy, no
/// redirects of its own, the guard as its resolver.
pub(crate) fn agent(guard: &Guard) -> Agent {
    let config = Config::builder()
        // A proxy would make the connection on our behalf to an address the
        // guard never checked; `None` also ignores HTTP(S)_PROXY/ALL_PROXY.
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(USER_AGENT)
        .build();
    Agent::with_parts(
        config,
        DefaultConnector::default(),
        GuardResolver {
            guard: guard.clone(),
        },
    )
}

/// How many addresses ureq keeps from a resolver.
const MAX_ADDRS: usize = 16;

/// ureq's name resolution, through the guard: the connection is made only
/// to addresses [`Guard::resolve`] approved. A refusal travels as
/// `ureq::Error::Other(Refused)`.
#[derive(Debug)]
struct GuardResolver {
    guard: Guard,
}

impl Resolver for GuardResolver {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let refused = |r: Refused| ureq::Error::Other(Box::new(r));
        let failed = |e: Lookup| match e {
            Lookup::Refused(r) => refused(r),
            Lookup::Unresolved(why) => ureq::Error::Other(why.into()),
        };
        let target = Target::from_uri(uri.clone(), &uri.to_string()).map_err(refused)?;
        let addrs = if unbracket(&target.host).parse::<IpAddr>().is_ok() {
            self.guard
                .lookup(&target.host, target.port)
                .map_err(failed)?
        } else {
            // getaddrinfo cannot be interrupted: wait for it on another
            // thread only as long as the request may still take.
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let guard = self.guard.clone();
            std::thread::spawn(move || {
                let _ = tx.send(guard.lookup(&target.host, target.port));
            });
            match rx.recv_timeout(*timeout.after) {
                Ok(resolved) => resolved.map_err(failed)?,
                Err(_) => return Err(ureq::Error::Timeout(timeout.reason)),
            }
        };
        let mut out = self.empty();
        // Every address was checked, so keeping the first few is safe.
        for addr in addrs.into_iter().take(MAX_ADDRS) {
            out.push(addr);
        }
        Ok(out)
    }
}

/// The blocking side of one attempt.
struct Exchange {
    call: HttpCall,
    /// Masked in every line the response becomes.
    secrets: Secrets,
    agent: Agent,
    limits: HttpLimits,
    deadline: Instant,
    lines: mpsc::Sender<OutputLine>,
    progress: Arc<Mutex<Progress>>,
}

/// The call's headers, checked once before anything is sent.
struct Headers {
    plain: Vec<(HeaderName, HeaderValue)>,
    secret: Vec<(HeaderName, HeaderValue)>,
}

impl Headers {
    fn parse(call: &HttpCall) -> Result<Headers, String> {
        let name = |k: &str, kind: &str| {
            HeaderName::from_bytes(k.trim().as_bytes())
                .map_err(|_| format!("{kind} name {k:?} is not a valid header name"))
        };
        let mut plain = Vec::new();
        for (k, v) in &call.headers {
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("header {k}: the value is not a valid header value"))?;
            plain.push((name(k, "header")?, value));
        }
        let mut secret = Vec::new();
        for (k, v) in &call.secret_headers {
            // Never the value in the message: it is an opened secret.
            let mut value = HeaderValue::from_str(v)
                .map_err(|_| format!("secret header {k}: the value is not a valid header value"))?;
            // Keeps it out of the http crate's Debug output too.
            value.set_sensitive(true);
            secret.push((name(k, "secret header")?, value));
        }
        Ok(Headers { plain, secret })
    }

    fn has(&self, wanted: &HeaderName) -> bool {
        self.plain
            .iter()
            .chain(&self.secret)
            .any(|(k, _)| k == wanted)
    }
}

/// One request of the chain: where, how, and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hop {
    pub(crate) target: Target,
    pub(crate) method: Method,
    /// Whether the body (if any) is sent again.
    pub(crate) keep_body: bool,
}

/// Where a redirect leads, by the rules browsers and curl follow: 303
/// becomes GET (HEAD stays HEAD), 301 and 302 become GET for anything but
/// GET and HEAD, 307 and 308 keep method and body. https never redirects
/// to http: a token meant for TLS would go out in clear.
pub(crate) fn next_hop(
    from: &Target,
    method: &Method,
    status: u16,
    location: &str,
) -> Result<Hop, String> {
    if let Some((scheme, _)) = location.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "{} redirect to {location} refused: only http and https URLs are allowed, not {scheme}",
                status_text(status)
            ));
        }
    }
    let joined = join(&from.uri, location).map_err(|why| {
        format!(
            "{} redirect with a bad Location {location:?}: {why}",
            status_text(status)
        )
    })?;
    let shown = joined.to_string();
    let target = Target::from_uri(joined, &shown)
        .map_err(|r| format!("{} redirect refused: {r}", status_text(status)))?;
    if from.scheme == "https" && target.scheme == "http" {
        return Err(format!(
            "{} redirect from {} to {shown} refused: it would downgrade https to http",
            status_text(status),
            from.uri
        ));
    }
    let get_or_head = *method == Method::GET || *method == Method::HEAD;
    let (method, keep_body) = match status {
        307 | 308 => (method.clone(), true),
        303 if *method == Method::HEAD => (Method::HEAD, false),
        303 => (Method::GET, false),
        _ if get_or_head => (method.clone(), false),
        _ => (Method::GET, false),
    };
    Ok(Hop {
        target,
        method,
        keep_body,
    })
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// `location` resolved against `base` (RFC 3986 §5.2, for the forms
/// servers send: absolute, network-path `//host/p`, absolute-path `/p`,
/// relative `p`, `../p`, `?q`). The fragment is dropped: it is never sent.
pub(crate) fn join(base: &Uri, location: &str) -> Result<Uri, String> {
    let location = location.trim();
    let location = location.split_once('#').map_or(location, |(l, _)| l);
    if location.is_empty() {
        return Ok(base.clone());
    }
    let parse = |text: String| text.parse::<Uri>().map_err(|e| e.to_string());
    let scheme = base.scheme_str().unwrap_or("http");
    let has_scheme = location.split_once(':').is_some_and(|(s, _)| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            && s.as_bytes()[0].is_ascii_alphabetic()
    });
    if has_scheme {
        return parse(location.to_string());
    }
    if location.starts_with("//") {
        return parse(format!("{scheme}:{location}"));
    }
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    let prefix = format!("{scheme}://{authority}");
    if location.starts_with('/') {
        return parse(format!("{prefix}{}", remove_dots(location)));
    }
    if let Some(query) = location.strip_prefix('?') {
        return parse(format!("{prefix}{}?{query}", base.path()));
    }
    let (rel_path, query) = match location.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (location, None),
    };
    let base_path = base.path();
    let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    let mut path = remove_dots(&format!("{dir}{rel_path}"));
    if let Some(q) = query {
        path = format!("{path}?{q}");
    }
    parse(format!("{prefix}{path}"))
}

/// An absolute path with `.` and `..` segments resolved; `..` never climbs
/// above the root. A query, if any, is kept as it is.
fn remove_dots(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut result = format!("/{}", out.join("/"));
    if let Some(q) = query {
        result.push('?');
        result.push_str(q);
    }
    result
}

impl Exchange {
    fn run(self) -> End {
        match self.exchange() {
            Ok(code) => End::Response(code),
            Err(end) => end,
        }
    }

    fn exchange(&self) -> Result<u16, End> {
        let call = &self.call;
        let method_name = call.method.trim().to_ascii_uppercase();
        if !METHODS.contains(&method_name.as_str()) {
            return Err(End::Failed(format!(
                "method {:?} is not supported: use one of {}",
                call.method,
                METHODS.join(", ")
            )));
        }
        let mut method = Method::from_bytes(method_name.as_bytes())
            .map_err(|e| End::Failed(format!("method {:?}: {e}", call.method)))?;
        let headers = Headers::parse(call).map_err(End::Failed)?;
        let mut target = Target::parse(&call.url).map_err(|r| End::Failed(r.0))?;
        let origin = target.clone();
        let mut body = call.body.clone();
        let mut cross_origin = false;
        let mut hops = 0u32;
        let mut out = LineCutter::new(Stream::Stdout, &self.lines, &self.secrets);
        loop {
            self.update(|p| p.url = target.uri.to_string());
            let response = self.send(&target, &method, body.as_deref(), &headers, cross_origin)?;
            let status = response.status().as_u16();
            let location = response.headers().get(header::LOCATION);
            if is_redirect(status)
                && !call.expect_status.contains(&status)
                && let Some(location) = location
            {
                let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
                if hops >= self.limits.max_redirects {
                    return Err(End::Failed(format!(
                        "too many redirects: more than {} (the last, {} from {}, led to {location})",
                        self.limits.max_redirects,
                        status_text(status),
                        target.uri
                    )));
                }
                let hop = next_hop(&target, &method, status, &location).map_err(End::Failed)?;
                self.note(format!(
                    "cronium: {} → {}\n",
                    status_text(status),
                    hop.target.uri
                ))?;
                // Once the chain has left the origin, secrets stay
                // behind for the rest of it.
                cross_origin |= hop.target.origin() != origin.origin();
                if !hop.keep_body {
                    body = None;
                }
                method = hop.method;
                target = hop.target;
                hops += 1;
                continue;
            }
            self.update(|p| p.status = Some(status));
            write_head(&response, &mut out)?;
            self.read_body(response.into_body(), &mut out)?;
            return Ok(status);
        }
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.progress.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// A Stderr line of our own (redirects, truncation).
    fn note(&self, text: String) -> Result<(), End> {
        let mut cutter = LineCutter::new(Stream::Stderr, &self.lines, &self.secrets);
        cutter.push(text.as_bytes())?;
        cutter.finish()
    }

    fn send(
        &self,
        target: &Target,
        method: &Method,
        body: Option<&[u8]>,
        headers: &Headers,
        cross_origin: bool,
    ) -> Result<Response<Body>, End> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(target.uri.clone());
        for (k, v) in &headers.plain {
            // Plain credentials follow the same rule as secret headers
            // across origins, as browsers and curl do.
            if cross_origin && is_credential(k) {
                continue;
            }
            builder = builder.header(k, v);
        }
        if !cross_origin {
            for (k, v) in &headers.secret {
                builder = builder.header(k, v);
            }
        }
        if !headers.has(&header::USER_AGENT) {
            builder = builder.header(header::USER_AGENT, USER_AGENT);
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(End::TimedOut);
        }
        let result = match body {
            Some(bytes) => self.call(builder.body(bytes), remaining),
            None => self.call(builder.body(()), remaining),
        };
        result.map_err(|e| self.failure(method, target, e))
    }

    fn call<S: AsSendBody>(
        &self,
        request: Result<Request<S>, ureq::http::Error>,
        remaining: Duration,
    ) -> Result<Response<Body>, ureq::Error> {
        let request = self
            .agent
            .configure_request(request?)
            // The async side stops at the deadline anyway; this bounds the
            // blocking thread it leaves behind.
            .timeout_global(Some(remaining))
            .build();
        self.agent.run(request)
    }

    /// A request that got no response, explained with the URL it was for.
    fn failure(&self, method: &Method, target: &Target, error: ureq::Error) -> End {
        let url = &target.uri;
        match error {
            ureq::Error::Timeout(_) => End::TimedOut,
            ureq::Error::Other(other) => match other.downcast::<Refused>() {
                Ok(refused) => End::Failed(format!("{method} {url} refused: {refused}")),
                Err(other) => End::Failed(format!("{method} {url}: {other}")),
            },
            // rustls reports handshake and certificate failures as
            // InvalidData I/O errors.
            ureq::Error::Io(e)
                if target.scheme == "https" && e.kind() == std::io::ErrorKind::InvalidData =>
            {
                End::Failed(format!("{method} {url}: TLS: {}", io_cause(&e)))
            }
            ureq::Error::Io(e) => End::Failed(format!("{method} {url}: {}", io_cause(&e))),
            ureq::Error::HostNotFound => {
                End::Failed(format!("{method} {url}: {} has no addresses", target.host))
            }
            ureq::Error::Rustls(e) => End::Failed(format!("{method} {url}: TLS: {e}")),
            other => End::Failed(format!("{method} {url}: {other}")),
        }
    }

    fn read_body(&self, body: Body, out: &mut LineCutter<'_>) -> Result<(), End> {
        let cap = self.limits.max_body;
        let mut reader = body.into_reader();
        let mut buf = vec![0u8; 16 * 1024];
        let mut kept: u64 = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    out.finish()?;
                    return Err(self.body_failure(e));
                }
            };
            let room = usize::try_from(cap - kept).unwrap_or(usize::MAX);
            if n > room {
                out.push(&buf[..room])?;
                out.finish()?;
                self.update(|p| p.truncated = true);
                // Stop reading: the rest never enters memory; dropping the
                // reader closes the connection.
                return self.note(format!("cronium: response body truncated at {cap} bytes\n"));
            }
            out.push(&buf[..n])?;
            kept += n as u64;
        }
        out.finish()
    }

    fn body_failure(&self, error: std::io::Error) -> End {
        // ureq reports its own timeout inside an io::Error.
        let timed_out = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(|e| matches!(e, ureq::Error::Timeout(_)))
            || error.kind() == std::io::ErrorKind::TimedOut;
        if timed_out {
            return End::TimedOut;
        }
        let url = self
            .progress
            .lock()
            .map(|p| p.url.clone())
            .unwrap_or_default();
        End::Failed(format!(
            "reading the response body of {url}: {}",
            io_cause(&error)
        ))
    }
}

/// Headers that carry credentials in plain headers too.
fn is_credential(name: &HeaderName) -> bool {
    name == header::AUTHORIZATION || name == header::PROXY_AUTHORIZATION || name == header::COOKIE
}

/// The innermost reason of an I/O error, without ureq's `io:` prefix.
pub(crate) fn io_cause(error: &std::io::Error) -> String {
    match error.get_ref() {
        Some(inner) => match inner.downcast_ref::<ureq::Error>() {
            Some(ureq::Error::Io(e)) => io_cause(e),
            _ => inner.to_string(),
        },
        None => error.to_string(),
    }
}

/// The status line, every header, and the blank line before the body.
fn write_head(response: &Response<Body>, out: &mut LineCutter<'_>) -> Result<(), End> {
    let mut head = Vec::new();
    head.extend_from_slice(
        format!(
            "{:?} {}\n",
            response.version(),
            status_text(response.status().as_u16())
        )
        .as_bytes(),
    );
    for (name, value) in response.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.push(b'\n');
    }
    head.push(b'\n');
    out.push(&head)?;
    // The head ends a line, so nothing is pending: the body starts a line.
    out.finish()
}

/// [`Lines`] of one stream, masked, sent from the blocking thread as they
/// complete. Sending fails only once the attempt was given up on.
struct LineCutter<'a> {
    stream: Stream,
    mask: MaskStream,
    cut: Lines,
    lines: &'a mpsc::Sender<OutputLine>,
}

impl<'a> LineCutter<'a> {
    fn new(
        stream: Stream,
        lines: &'a mpsc::Sender<OutputLine>,
        secrets: &Secrets,
    ) -> LineCutter<'a> {
        LineCutter {
            stream,
            mask: secrets.stream(),
            cut: Lines::default(),
            lines,
        }
    }

    fn push(&mut self, data: &[u8]) -> Result<(), End> {
        let masked = self.mask.push(data);
        for line in self.cut.push(&masked) {
            self.send(line)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), End> {
        let held = self.mask.finish();
        for line in self.cut.push(&held) {
            self.send(line)?;
        }
        match self.cut.finish() {
            Some(line) => self.send(line),
            None => Ok(()),
        }
    }

    fn send(&self, data: Vec<u8>) -> Result<(), End> {
        let line = OutputLine {
            stream: self.stream,
            data,
        };
        // The async side dropped the receiver: it stopped waiting (cancel
        // or timeout) and already decided the outcome.
        self.lines
            .blocking_send(line)
            .map_err(|_| End::Failed("stopped".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn join_resolves_every_location_form_against_the_current_url() {
        let base: Uri = "https://a.example:8443/dir/page?x=1".parse().unwrap();
        let table: &[(&str, &str)] = &[
            ("https://b.example/p", "https://b.example/p"),
            ("HTTP://b.example/p", "http://b.example/p"),
            ("//b.example/p?q", "https://b.example/p?q"),
            ("/other", "https://a.example:8443/other"),
            ("/a/./b/../c?y=2", "https://a.example:8443/a/c?y=2"),
            ("next", "https://a.example:8443/dir/next"),
            ("next?y=2#frag", "https://a.example:8443/dir/next?y=2"),
            ("../up", "https://a.example:8443/up"),
            ("../../../up", "https://a.example:8443/up"),
            ("./", "https://a.example:8443/dir/"),
            ("?y=2", "https://a.example:8443/dir/page?y=2"),
            ("", "https://a.example:8443/dir/page?x=1"),
        ];
        for (location, expected) in table {
            let joined = join(&base, location).unwrap_or_else(|e| panic!("{location}: {e}"));
            assert_eq!(joined.to_string(), *expected, "{location}");
        }
    }

    #[test]
    fn redirect_methods_follow_the_browser_rules() {
        let from = target("http://a.example/x");
        // (method, status, method after, body kept)
        let table: &[(&str, u16, &str, bool)] = &[
            ("GET", 301, "GET", false),
            ("GET", 302, "GET", false),
            ("GET", 303, "GET", false),
            ("GET", 307, "GET", true),
            ("HEAD", 303, "HEAD", false),
            ("HEAD", 302, "HEAD", false),
            ("POST", 301, "GET", false),
            ("POST", 302, "GET", false),
            ("POST", 303, "GET", false),
            ("POST", 307, "POST", true),
            ("POST", 308, "POST", true),
            ("PUT", 302, "GET", false),
            ("PUT", 308, "PUT", true),
            ("DELETE", 303, "GET", false),
            ("PATCH", 307, "PATCH", true),
        ];
        for (method, status, after, keep) in table {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let hop = next_hop(&from, &method, *status, "/y").unwrap();
            assert_eq!(hop.method.as_str(), *after, "{method} {status}");
            assert_eq!(hop.keep_body, *keep, "{method} {status}");
            assert_eq!(hop.target.uri.to_string(), "http://a.example/y");
        }
    }

    #[test]
    fn redirects_never_downgrade_https_to_http() {
        let from = target("https://a.example/x");
        for location in [
            "http://a.example/x",
            "http://b.example/",
            "HTTP://a.example:443/",
        ] {
            let err = next_hop(&from, &Method::GET, 302, location).unwrap_err();
            assert!(
                err.contains("would downgrade https to http"),
                "{location}: {err}"
            );
            assert!(
                err.starts_with("302 Found redirect from https://a.example/x to http"),
                "{err}"
            );
        }
        // Upgrades and https → https are followed.
        let up = next_hop(
            &target("http://a.example/"),
            &Method::GET,
            301,
            "https://a.example/",
        );
        assert_eq!(up.unwrap().target.scheme, "https");
        assert!(next_hop(&from, &Method::GET, 302, "https://b.example/").is_ok());
        // And a relative Location keeps https.
        assert_eq!(
            next_hop(&from, &Method::GET, 302, "/y")
                .unwrap()
                .target
                .scheme,
            "https"
        );
    }

    #[test]
    fn redirects_to_other_schemes_or_with_credentials_are_refused() {
        let from = target("https://a.example/x");
        for (location, why) in [
            ("ftp://a.example/", "only http and https"),
            ("file:///etc/passwd", "only http and https"),
            ("https://user:pw@b.example/", "user names and passwords"),
        ] {
            let err = next_hop(&from, &Method::GET, 302, location).unwrap_err();
            assert!(err.contains(why), "{location}: {err}");
        }
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let a = target("https://a.example/x");
        // (url, same origin as https://a.example/x)
        for (url, same) in [
            ("https://a.example/other?q", true),
            ("https://A.EXAMPLE:443/", true),
            ("https://a.example./", true),
            ("https://a.example:8443/", false),
            ("http://a.example/", false),
            ("https://b.example/", false),
            ("https://sub.a.example/", false),
        ] {
            assert_eq!(target(url).origin() == a.origin(), same, "{url}");
        }
    }

    #[test]
    fn the_final_status_is_judged_against_expect_status() {
        // (status, expected, error)
        let table: &[(u16, &[u16], Option<&str>)] = &[
            (200, &[], None),
            (204, &[], None),
            (299, &[], None),
            (302, &[], Some("expected a 2xx status, got 302 Found")),
            (
                503,
                &[],
                Some("expected a 2xx status, got 503 Service Unavailable"),
            ),
            (200, &[200], None),
            (
                503,
                &[200],
                Some("expected 200, got 503 Service Unavailable"),
            ),
            (404, &[404], None),
            (200, &[404], Some("expected 404, got 200 OK")),
            (
                500,
                &[200, 201, 202],
                Some("expected 200, 201 or 202, got 500 Internal Server Error"),
            ),
            (599, &[200], Some("expected 200, got 599")),
        ];
        for (status, expect, error) in table {
            assert_eq!(
                judge(*status, expect).err().as_deref(),
                *error,
                "{status} {expect:?}"
            );
        }
    }

    #[test]
    fn debug_shows_secret_header_names_only() {
        let call = HttpCall {
            method: "POST".into(),
            url: "https://a.example/".into(),
            headers: vec![("X-Plain".into(), "visible".into())],
            secret_headers: vec![("Authorization".into(), "Bearer s3cr3t-value".into())],
            body: Some(b"{}".to_vec()),
            expect_status: vec![],
            timeout: Duration::from_secs(5),
        };
        let shown = format!("{call:?} {call:#?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("Authorization"), "{shown}");
        assert!(shown.contains("visible"), "{shown}");
    }
}
