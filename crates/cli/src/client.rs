//! The API client used by `cronium event|server|token|job`: finds the server
//! and the token, sends JSON, opens event streams, and turns the server's
//! error body into a message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// Where to reach the API and who we are. Flags win over the environment,
/// which wins over the local data dir of a `cronium serve` on this machine.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Cronium server URL [env: CRONIUM_URL; default: http://127.0.0.1:8080]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// API token [env: CRONIUM_TOKEN; default: <data dir>/admin.token]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Data dir of a local server, to read its admin token [env: CRONIUM_DATA_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the API's JSON instead of a table
    #[arg(long, global = true)]
    pub json: bool,
}

/// A connection to the API.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
    pub json: bool,
}

impl Client {
    pub fn new(args: &ClientArgs) -> Result<Client> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let base = args
            .url
            .clone()
            .or_else(|| env("CRONIUM_URL"))
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let token = match args.token.clone().or_else(|| env("CRONIUM_TOKEN")) {
            Some(t) => t,
            None => {
                let dir = args
                    .data_dir
                    .clone()
                    .or_else(|| env("CRONIUM_DATA_DIR").map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from("cronium-data"));
                read_token(&dir.join("admin.token"))?
            }
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            LiteralFirst::default(),
        );
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
            json: args.json,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let req = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.bearer());
        self.finish("GET", path, req.call())
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let req = self
            .agent
            .post(self.url(path))
            .header("Authorization", self.bearer());
        self.finish("POST", path, req.send_json(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        let req = self
            .agent
            .patch(self.url(path))
            .header("Authorization", self.bearer());
        self.finish("PATCH", path, req.send_json(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Value> {
        let req = self
            .agent
            .put(self.url(path))
            .header("Authorization", self.bearer());
        self.finish("PUT", path, req.send_json(body))
    }

    pub fn delete(&self, path: &str) -> Result<Value> {
        let req = self
            .agent
            .delete(self.url(path))
            .header("Authorization", self.bearer());
        self.finish("DELETE", path, req.call())
    }

    /// Opens a `text/event-stream` at `path`, resuming after `last_event_id`.
    /// A stream may rightly stay open for hours, so it has no overall time
    /// limit; only reaching the server and getting its answer are bounded.
    pub fn stream(
        &self,
        path: &str,
        last_event_id: Option<u64>,
    ) -> Result<ureq::BodyReader<'static>, StreamError> {
        let mut req = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.bearer())
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let req = req
            .config()
            .timeout_global(None)
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .build();
        let resp = req.call().map_err(|e| StreamError {
            retry: true,
            error: anyhow!(e).context(format!("cannot reach {} (GET {path})", self.base)),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body().into_reader());
        }
        let text = resp.into_body().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Err(StreamError {
            // A refusal (no such job, bad token) will not change by asking
            // again; a server error or a proxy's 502 may.
            retry: status.is_server_error(),
            error: anyhow!(error_message(status.as_u16(), &body)),
        })
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn finish(
        &self,
        method: &str,
        path: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value> {
        let mut resp =
            result.with_context(|| format!("cannot reach {} ({method} {path})", self.base))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer to {method} {path}"))?;
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(body);
        }
        Err(anyhow!(error_message(status.as_u16(), &body)))
    }
}

/// ureq's resolver starts a thread per request whenever a timeout is set,
/// even for `127.0.0.1`, and even when the request then reuses a kept-alive
/// connection: a spawn and a join on every call of a short-lived command.
/// An address written as an IP needs no lookup; names still get one.
#[derive(Debug, Default)]
struct LiteralFirst(ureq::unversioned::resolver::DefaultResolver);

impl ureq::unversioned::resolver::Resolver for LiteralFirst {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        if let Some(authority) = uri.authority() {
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                let https = uri.scheme_str() == Some("https");
                let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
                let mut found = self.empty();
                found.push(std::net::SocketAddr::new(ip, port));
                return Ok(found);
            }
        }
        self.0.resolve(uri, config, timeout)
    }
}

/// Why an event stream could not be opened, and whether trying again may help.
#[derive(Debug)]
pub struct StreamError {
    pub retry: bool,
    pub error: anyhow::Error,
}

/// `404 not_found: event 7 not found`, or with the field: `422 validation_failed: name: must not be empty`.
fn error_message(status: u16, body: &Value) -> String {
    let err = &body["error"];
    let message = err["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string());
    let code = err["code"].as_str().unwrap_or("error");
    match err["field"].as_str() {
        Some(field) if !message.starts_with(field) => {
            format!("{status} {code}: {field}: {message}")
        }
        _ => format!("{status} {code}: {message}"),
    }
}

fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "no API token: pass --token or set CRONIUM_TOKEN (could not read {}: {e})",
            path.display()
        )
    })?;
    let token = text.trim().to_string();
    if token.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(token)
}

/// Prints rows as aligned columns under a header.
pub fn print_table(
    out: &mut dyn std::io::Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// A JSON value as a table cell: strings bare, null as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// An event's id from its id or its exact name.
pub fn resolve_event(client: &Client, event: &str) -> Result<i64> {
    if let Ok(id) = event.parse::<i64>() {
        return Ok(id);
    }
    let page = client.get(&format!("/events?name={}&limit=500", encode(event)))?;
    let matches: Vec<i64> = items(&page)
        .iter()
        .filter(|e| e["name"] == json!(event))
        .filter_map(|e| e["id"].as_i64())
        .collect();
    match matches.as_slice() {
        [id] => Ok(*id),
        [] => bail!("no event named {event:?}"),
        _ => bail!("several events are named {event:?}; use the id"),
    }
}

/// The `items` of a page the API returned.
pub fn items(page: &Value) -> &[Value] {
    page["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Pretty JSON, for `--json`.
pub fn print_json(value: &Value, out: &mut dyn std::io::Write) -> Result<()> {
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// Percent-encodes a query value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Milliseconds as a person reads them: `850ms`, `2.3s`, `1m05s`, `2h03m`.
pub fn duration_text(ms: u64) -> String {
    let secs = ms / 1000;
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{}.{}s", secs, ms % 1000 / 100),
        60_000..3_600_000 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_carry_status_code_and_field() {
        let table = [
            (
                422,
                json!({"error": {"code": "validation_failed", "message": "must not be empty", "field": "name"}}),
                "422 validation_failed: name: must not be empty",
            ),
            (
                404,
                json!({"error": {"code": "not_found", "message": "event not found"}}),
                "404 not_found: event not found",
            ),
            (502, json!("Bad Gateway"), "502 error: \"Bad Gateway\""),
        ];
        for (status, body, want) in table {
            assert_eq!(error_message(status, &body), want);
        }
    }

    #[test]
    fn tables_align_columns() {
        let mut out = Vec::new();
        print_table(
            &mut out,
            &["ID", "NAME"],
            &[
                vec!["1".into(), "backup".into()],
                vec!["12".into(), "x".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID  NAME\n1   backup\n12  x\n"
        );
    }

    #[test]
    fn addresses_written_as_ips_need_no_lookup() {
        use ureq::unversioned::resolver::Resolver;
        use ureq::unversioned::transport::{NextTimeout, time::Duration as Budget};
        let config = ureq::Agent::config_builder().build();
        let timeout = NextTimeout {
            after: Budget::from(Duration::from_secs(60)),
            reason: ureq::Timeout::Global,
            per_read: None,
            per_write: None,
        };
        let table = [
            ("http://127.0.0.1:8080/api", "127.0.0.1:8080"),
            ("http://[::1]/api", "[::1]:80"),
            ("https://10.1.2.3/", "10.1.2.3:443"),
            ("http://localhost:9/", "127.0.0.1:9"),
        ];
        for (url, want) in table {
            let found = LiteralFirst::default()
                .resolve(&url.parse().unwrap(), &config, timeout)
                .unwrap();
            let found: Vec<String> = found.iter().map(|a| a.to_string()).collect();
            assert!(found.contains(&want.to_string()), "{url}: {found:?}");
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode("nightly backup/db&x=1"),
            "nightly%20backup%2Fdb%26x%3D1"
        );
        assert_eq!(encode("plain-name_1.x"), "plain-name_1.x");
    }

    #[test]
    fn durations_read_at_a_glance() {
        let table = [
            (0, "0ms"),
            (850, "850ms"),
            (1000, "1.0s"),
            (2345, "2.3s"),
            (59_999, "59.9s"),
            (60_000, "1m00s"),
            (65_000, "1m05s"),
            (3_599_000, "59m59s"),
            (3_600_000, "1h00m"),
            (7_380_000, "2h03m"),
        ];
        for (ms, want) in table {
            assert_eq!(duration_text(ms), want, "{ms} ms");
        }
    }
}
