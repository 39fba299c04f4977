//! HTTP request events: the request a user defines (method, URL, headers, body, expected status), validated once.
//!
//! Where a request may go (the SSRF guard) is not decided here: that needs
//! name resolution, which is I/O, and the server's allow list. This module
//! only makes sure a request is well-formed: an `http`/`https` URL with a
//! host and no user info, header names that are HTTP tokens, header values
//! without line breaks, and bounded sizes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Largest request body an event may hold.
pub const MAX_HTTP_BODY_BYTES: usize = 1024 * 1024;
/// Longest URL.
pub const MAX_URL_BYTES: usize = 2048;
/// Most headers, plain and secret together.
pub const MAX_HEADERS: usize = 50;
/// Longest header value.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;
/// Most accepted status codes.
pub const MAX_EXPECTED_STATUSES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

str_enum!(HttpMethod {
    Get = "GET",
    Head = "HEAD",
    Post = "POST",
    Put = "PUT",
    Patch = "PATCH",
    Delete = "DELETE",
    Options = "OPTIONS",
});

/// A header name: an HTTP token (RFC 9110 §5.6.2) of 1–100 characters, kept
/// as written. Two names that differ only in case are the same header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct HeaderName(String);

impl HeaderName {
    /// `field` names the input in the error (`http.headers`, `secretHeaders`).
    pub fn new(text: &str, field: &str) -> Result<HeaderName, ValidationError> {
        let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if text.is_empty() || text.len() > 100 || !text.chars().all(token_char) {
            return Err(ValidationError::new(
                field,
                format!("invalid header name {text:?} (1-100 letters, digits or !#$%&'*+-.^_`|~)"),
            ));
        }
        Ok(HeaderName(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn folded(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for HeaderName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HeaderName::new(&text, "headers").map_err(serde::de::Error::custom)
    }
}

/// Secret header values (an `Authorization` token, say), sealed by the
/// server before they reach the domain or the store, like
/// [`crate::SealedSecrets`]: the names stay readable, the values do not.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SealedHeaders {
    pub names: BTreeSet<HeaderName>,
    pub sealed: Vec<u8>,
}

/// The request an HTTP event makes. The event's own `timeout` bounds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSpec {
    pub method: HttpMethod,
    pub url: String,
    pub headers: BTreeMap<HeaderName, String>,
    pub secret_headers: SealedHeaders,
    pub body: Option<String>,
    /// The statuses that count as success; empty means any 2xx.
    pub expect_status: Vec<u16>,
}

impl HttpSpec {
    /// The rules of a well-formed request; errors name `http.<field>`.
    pub fn validate(self) -> Result<HttpSpec, ValidationError> {
        validate_url(&self.url)?;
        let mut seen = BTreeSet::new();
        let names = self.headers.keys().chain(&self.secret_headers.names);
        for name in names {
            if !seen.insert(name.folded()) {
                return Err(ValidationError::new(
                    "http.headers",
                    format!("header {name} is given twice (plain or secret)"),
                ));
            }
        }
        if seen.len() > MAX_HEADERS {
            return Err(ValidationError::new(
                "http.headers",
                format!("at most {MAX_HEADERS} headers"),
            ));
        }
        for (name, value) in &self.headers {
            check_header_value(value)
                .map_err(|m| ValidationError::new(format!("http.headers.{name}"), m))?;
        }
        if let Some(body) = &self.body
            && body.len() > MAX_HTTP_BODY_BYTES
        {
            return Err(ValidationError::new(
                "http.body",
                format!(
                    "the body is {} bytes; the limit is {MAX_HTTP_BODY_BYTES}",
                    body.len()
                ),
            ));
        }
        if self.expect_status.len() > MAX_EXPECTED_STATUSES {
            return Err(ValidationError::new(
                "http.expectStatus",
                format!("at most {MAX_EXPECTED_STATUSES} statuses"),
            ));
        }
        if let Some(bad) = self
            .expect_status
            .iter()
            .find(|s| !(100..=599).contains(*s))
        {
            return Err(ValidationError::new(
                "http.expectStatus",
                format!("{bad} is not an HTTP status (100-599)"),
            ));
        }
        Ok(self)
    }

    /// Whether a final response status counts as success.
    pub fn accepts(&self, status: u16) -> bool {
        if self.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expect_status.contains(&status)
        }
    }
}

/// A header value the request line can carry: no CR, LF or NUL (they would
/// split or end the header), at most [`MAX_HEADER_VALUE_BYTES`].
pub fn check_header_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Err(format!("longer than {MAX_HEADER_VALUE_BYTES} bytes"));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err("must not contain line breaks or NUL".into());
    }
    Ok(())
}

/// An absolute `http` or `https` URL with a host and no user info (user
/// info would put a password into a value that is shown and logged; send
/// it as a secret `Authorization` header instead).
pub fn validate_url(url: &str) -> Result<(), ValidationError> {
    let invalid = |m: String| ValidationError::new("http.url", m);
    if url.len() > MAX_URL_BYTES {
        return Err(invalid(format!("longer than {MAX_URL_BYTES} bytes")));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "must not contain spaces or control characters".into(),
        ));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid(format!("{url:?} is not an http:// or https:// URL")))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(invalid(
            "must not contain user info; send credentials as a secret header".into(),
        ));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid(format!("unclosed [ in {authority:?}")))?;
            if !after.is_empty() && !after.starts_with(':') {
                return Err(invalid(format!(
                    "unexpected {after:?} after the IPv6 address"
                )));
            }
            check_port(after.strip_prefix(':')).map_err(invalid)?;
            host
        }
        None => {
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            check_port(port).map_err(invalid)?;
            host
        }
    };
    if host.is_empty() {
        return Err(invalid(format!("{url:?} has no host")));
    }
    Ok(())
}

fn check_port(port: Option<&str>) -> Result<(), String> {
    match port {
        None => Ok(()),
        Some(p) if p.parse::<u16>().is_ok_and(|p| p > 0) => Ok(()),
        Some(p) => Err(format!("{p:?} is not a port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> HttpSpec {
        HttpSpec {
            method: HttpMethod::Post,
            url: url.into(),
            headers: BTreeMap::new(),
            secret_headers: SealedHeaders::default(),
            body: None,
            expect_status: vec![],
        }
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_no_user_info() {
        for good in [
            "https://example.com",
            "http://example.com:8080/hook?x=1#f",
            "http://[::1]:9000/path",
            "https://10.0.0.1/",
        ] {
            assert_eq!(validate_url(good), Ok(()), "{good}");
        }
        let table = [
            ("ftp://example.com/", "not an http:// or https:// URL"),
            ("example.com", "not an http:// or https:// URL"),
            ("https://", "has no host"),
            ("https://:80/", "has no host"),
            ("https://user:pw@example.com/", "user info"),
            ("https://example.com:99999/", "is not a port"),
            ("https://example.com:0/", "is not a port"),
            ("https://[::1/", "unclosed ["),
            ("https://exa mple.com/", "spaces"),
        ];
        for (url, want) in table {
            let e = validate_url(url).unwrap_err();
            assert_eq!(e.field, "http.url");
            assert!(e.message.contains(want), "{url}: {}", e.message);
        }
    }

    #[test]
    fn headers_are_tokens_with_single_line_values_and_never_twice() {
        assert!(HeaderName::new("X-Api-Key", "http.headers").is_ok());
        for bad in ["", "with space", "colon:", "ümlaut"] {
            assert!(HeaderName::new(bad, "http.headers").is_err(), "{bad:?}");
        }
        let mut twice = spec("https://example.com/");
        twice
            .headers
            .insert(HeaderName::new("Authorization", "h").unwrap(), "x".into());
        twice
            .secret_headers
            .names
            .insert(HeaderName::new("authorization", "h").unwrap());
        assert!(twice.validate().unwrap_err().message.contains("twice"));

        let mut split = spec("https://example.com/");
        split.headers.insert(
            HeaderName::new("X-A", "h").unwrap(),
            "a\r\nInjected: yes".into(),
        );
        let e = split.validate().unwrap_err();
        assert_eq!(e.field, "http.headers.X-A");
    }

    #[test]
    fn expected_statuses_decide_success() {
        let any_2xx = spec("https://example.com/").validate().unwrap();
        assert!(any_2xx.accepts(204) && !any_2xx.accepts(301) && !any_2xx.accepts(500));
        let mut only = spec("https://example.com/");
        only.expect_status = vec![200, 404];
        let only = only.validate().unwrap();
        assert!(only.accepts(404) && !only.accepts(201));
        let mut bad = spec("https://example.com/");
        bad.expect_status = vec![99];
        assert_eq!(bad.validate().unwrap_err().field, "http.expectStatus");
    }

    #[test]
    fn bodies_are_bounded() {
        let mut big = spec("https://example.com/");
        big.body = Some("x".repeat(MAX_HTTP_BODY_BYTES + 1));
        assert_eq!(big.validate().unwrap_err().field, "http.body");
    }
}
