//! One guarded POST for notifications: a webhook's request through the same SSRF guard, resolver and agent as the HTTP executor, its answer summed up for a retry decision.
//!
//! The agent is the HTTP executor's ([`crate::http`]): no proxy, a resolver
//! that hands the socket only the addresses [`Guard::resolve`] approved,
//! TLS verified by rustls. Unlike an HTTP event, a notification follows no
//! redirect: a receiver that answers 3xx has answered (a hook that moved is
//! the operator's to fix, and following it would only widen where a
//! message may go). The timeout covers the whole exchange; when it passes
//! the agent is shut down, which interrupts a blocked read, so a receiver
//! that never answers costs the sender `timeout` and no more.

use std::fmt;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::http::header::{self, HeaderName, HeaderValue};
use ureq::http::{Method, Request};

use crate::guard::{Guard, Refused, Target};
use crate::http::{agent, io_cause};
use crate::records::fmt_duration;

/// How much of a response body is kept, for the error message of a try
/// the receiver turned down.
pub const BODY_HEAD: usize = 1024;

/// What came of one POST.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostResponse {
    /// The receiver's status, if it answered (a 3xx included: redirects are
    /// not followed).
    pub status: Option<u16>,
    /// The `Retry-After` header as sent (seconds or an HTTP date): the
    /// caller reads it against its own clock.
    pub retry_after: Option<String>,
    /// The start of the body (at most [`BODY_HEAD`] bytes, as text on one
    /// line), for the error message.
    pub body_head: String,
    /// Why no answer came; `None` when `status` is set.
    pub error: Option<PostError>,
}

/// Why a POST got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    /// The guard refused the address (or the URL): no connection was made.
    Refused(String),
    /// The request cannot be made as given (a header that is not valid).
    Invalid(String),
    /// No answer within the timeout.
    TimedOut(Duration),
    /// DNS, the connection, TLS or the exchange failed.
    Failed(String),
}

impl PostError {
    /// Whether trying again later may help: a refusal or an invalid request
    /// stays what it is; a network failure or a timeout may pass.
    pub fn is_transient(&self) -> bool {
        matches!(self, PostError::TimedOut(_) | PostError::Failed(_))
    }
}

impl fmt::Display for PostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostError::Refused(why) => write!(f, "refused: {why}"),
            PostError::Invalid(why) => f.write_str(why),
            PostError::TimedOut(after) => {
                write!(f, "no answer within {}", fmt_duration(*after))
            }
            PostError::Failed(why) => f.write_str(why),
        }
    }
}

/// POSTs `body` to `url` with `headers` (plus `User-Agent: cronium/<version>`
/// unless given), through `guard`, within `timeout`. Never follows a
/// redirect. Errors name neither the URL (a hook's URL may carry a token in
/// its path) nor any header value.
pub async fn post(
    guard: &Guard,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> PostResponse {
    let target = match Target::parse(url) {
        Ok(target) => target,
        Err(Refused(why)) => return failed(PostError::Refused(why)),
    };
    let mut parsed = Vec::with_capacity(headers.len());
    for (k, v) in headers {
        let Ok(name) = HeaderName::from_bytes(k.trim().as_bytes()) else {
            return failed(PostError::Invalid(format!(
                "{k:?} is not a valid header name"
            )));
        };
        let Ok(mut value) = HeaderValue::from_str(v) else {
            return failed(PostError::Invalid(format!(
                "header {k}: the value is not a valid header value"
            )));
        };
        // A signature is no secret, but nothing of a header needs to be in
        // the http crate's Debug output either.
        value.set_sensitive(true);
        parsed.push((name, value));
    }
    let deadline = Instant::now() + timeout;
    // One agent per POST: shutting it down stops exactly this request.
    let agent = agent(guard);
    let answer = Arc::new(Mutex::new(PostResponse::default()));
    let exchange = {
        let (agent, answer) = (agent.clone(), answer.clone());
        move || exchange(&agent, target, parsed, body, (deadline, timeout), &answer)
    };
    let task = tokio::task::spawn_blocking(exchange);
    let ended = tokio::time::timeout_at(deadline.into(), task).await;
    // Interrupts a read still blocked on the socket; a no-op once done.
    agent.shutdown();
    let mut response = answer.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let error = match ended {
        Ok(Ok(Ok(()))) => None,
        Ok(Ok(Err(error))) => Some(error),
        Ok(Err(e)) => Some(PostError::Failed(format!("the POST task failed: {e}"))),
        Err(_) => Some(PostError::TimedOut(timeout)),
    };
    // A status that arrived is the answer, even if the body then stalled.
    if response.status.is_none() {
        response.error = error;
    }
    response
}

fn failed(error: PostError) -> PostResponse {
    PostResponse {
        error: Some(error),
        ..PostResponse::default()
    }
}

/// The blocking side: sends, and records the answer in `answer` as it
/// arrives, so whatever stops it the caller has what came.
fn exchange(
    agent: &ureq::Agent,
    target: Target,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
    (deadline, timeout): (Instant, Duration),
    answer: &Mutex<PostResponse>,
) -> Result<(), PostError> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(target.uri.clone());
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    let request = builder
        .body(body.as_slice())
        .map_err(|e| PostError::Invalid(e.to_string()))?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    let request = agent
        .configure_request(request)
        // The async side stops at the deadline anyway; this bounds the
        // blocking thread it leaves behind.
        .timeout_global(Some(remaining))
        .build();
    let response = agent
        .run(request)
        .map_err(|e| failure(&target, e, timeout))?;
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string());
    {
        let mut answer = answer.lock().unwrap_or_else(|e| e.into_inner());
        answer.status = Some(response.status().as_u16());
        answer.retry_after = retry_after;
    }
    // Only the head of the body: the rest never enters memory, and
    // dropping the reader closes the connection.
    let mut reader = response.into_body().into_reader().take(BODY_HEAD as u64);
    let mut head = Vec::with_capacity(BODY_HEAD);
    let mut buf = [0u8; 256];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                head.extend_from_slice(&buf[..n]);
                answer.lock().unwrap_or_else(|e| e.into_inner()).body_head =
                    one_line(&String::from_utf8_lossy(&head));
            }
        }
    }
    Ok(())
}

/// A request that got no response, explained without its URL.
fn failure(target: &Target, error: ureq::Error, timeout: Duration) -> PostError {
    match error {
        ureq::Error::Timeout(_) => PostError::TimedOut(timeout),
        ureq::Error::Other(other) => match other.downcast::<Refused>() {
            Ok(refused) => PostError::Refused(refused.0),
            Err(other) => PostError::Failed(other.to_string()),
        },
        // rustls reports handshake and certificate failures as InvalidData.
        ureq::Error::Io(e)
            if target.scheme == "https" && e.kind() == std::io::ErrorKind::InvalidData =>
        {
            PostError::Failed(format!("TLS: {}", io_cause(&e)))
        }
        ureq::Error::Io(e) => PostError::Failed(format!("{}: {}", target.host, io_cause(&e))),
        ureq::Error::HostNotFound => PostError::Failed(format!("{} has no addresses", target.host)),
        ureq::Error::Rustls(e) => PostError::Failed(format!("TLS: {e}")),
        other => PostError::Failed(other.to_string()),
    }
}

/// Text as one line: line breaks and other control characters as spaces,
/// runs of them as one, trimmed (a receiver's answer, quoted in an error).
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && out.ends_with(' ') {
            continue;
        }
        out.push(c);
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_head_is_one_trimmed_line() {
        let table: &[(&[u8], &str)] = &[
            (b"", ""),
            (b"  upstream down\n", "upstream down"),
            (b"{\n  \"error\": \"x\"\r\n}\n", "{ \"error\": \"x\" }"),
            (b"tab\there\x00nul", "tab here nul"),
            (b"bad \xff byte", "bad \u{fffd} byte"),
        ];
        for (bytes, want) in table {
            assert_eq!(
                one_line(&String::from_utf8_lossy(bytes)),
                *want,
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn refusals_and_invalid_requests_are_final_network_failures_are_not() {
        let table = [
            (PostError::Refused("no".into()), false),
            (PostError::Invalid("bad".into()), false),
            (PostError::TimedOut(Duration::from_secs(1)), true),
            (PostError::Failed("connection refused".into()), true),
        ];
        for (error, transient) in table {
            assert_eq!(error.is_transient(), transient, "{error}");
        }
    }
}
