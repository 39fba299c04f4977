//! What the server benchmarks share: the release runner, and an HTTP client for the API (one keep-alive agent, a bearer token, JSON in and out).

// Each benchmark uses a part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// The release `cronium-runner`, built if missing or stale (`cargo bench`
/// builds only this crate's targets).
pub fn runner() -> PathBuf {
    let exe = std::env::current_exe().expect("the benchmark's path");
    // target/release/deps/<bench> → target/release
    let release = exe.ancestors().nth(2).expect("target/release");
    let runner = release.join("cronium-runner");
    let status = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "cronium-runner",
            "--bin",
            "cronium-runner",
        ])
        .status()
        .expect("cargo runs");
    assert!(
        status.success() && runner.is_file(),
        "cannot build {}",
        runner.display()
    );
    runner
}

pub struct Api {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Api {
    /// `base` is `http://host:port`.
    pub fn new(base: &str, token: &str) -> Api {
        Api {
            agent: ureq::Agent::new_with_config(
                ureq::config::Config::builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(60)))
                    .build(),
            ),
            base: base.to_string(),
            auth: format!("Bearer {token}"),
        }
    }

    /// Sends `method path` (GET without a body; POST, PATCH or PUT with one) and
    /// returns the status and the JSON body, or why there was none.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.base);
        let auth = self.auth.as_str();
        let result = match (method, body) {
            ("GET", None) => self.agent.get(&url).header("authorization", auth).call(),
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("authorization", auth)
                .send_json(b),
            ("PATCH", Some(b)) => self
                .agent
                .patch(&url)
                .header("authorization", auth)
                .send_json(b),
            ("PUT", Some(b)) => self
                .agent
                .put(&url)
                .header("authorization", auth)
                .send_json(b),
            _ => {
                return Err(format!(
                    "{method} {path}: not a request the benchmarks send"
                ));
            }
        };
        let mut response = result.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{method} {path}: body: {e}"))?;
        let json = serde_json::from_str(&text)
            .map_err(|e| format!("{method} {path}: {status}: {e}: {text}"))?;
        Ok((status, json))
    }

    /// The body of `GET path` as text (such as `/metrics`).
    pub fn text(&self, path: &str) -> Result<String, String> {
        self.agent
            .get(format!("{}{path}", self.base))
            .header("authorization", &self.auth)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| format!("GET {path}: {e}"))
    }

    /// [`Api::send`] under `/api/v1`, where anything but a 2xx is an error.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let (status, json) = self.send(method, &format!("/api/v1{path}"), body)?;
        if (200..300).contains(&status) {
            Ok(json)
        } else {
            Err(format!("{method} {path}: {status} {json}"))
        }
    }
}
