//! Test harness: starts the real server (`cronium_server::start`, the same path as `cronium serve` minus signals) on a free port with a fresh data dir and database, and talks to it over HTTP.
//!
//! Each test runs on SQLite and on PostgreSQL through [`both_backends!`],
//! which makes `mod <test> { fn sqlite(); fn postgres(); }`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use cronium_server::{Config, Running};
use cronium_store::testing::TestPostgres;
use serde_json::{Value, json};
use ureq::http;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Makes one `#[test]` per backend: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($(fn $name:ident($app:ident: Backend) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($app: $crate::common::Backend) $body

            #[test]
            fn sqlite() {
                run($crate::common::Backend::Sqlite)
            }

            #[test]
            fn postgres() {
                run($crate::common::Backend::Postgres)
            }
        }
    )*};
}

pub struct TestApp {
    pub backend: Backend,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub admin_token: String,
    /// Absolute.
    pub data_dir: PathBuf,
    pub config: Config,
    runtime: tokio::runtime::Runtime,
    running: Option<Running>,
    agent: ureq::Agent,
    /// The CA (PEM) clients trust when the server speaks TLS.
    trust: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, |_| {})
    }

    /// Like [`spawn`](Self::spawn), after `tweak` has changed the configuration.
    pub fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        TestApp::spawn_trusting(backend, None, tweak)
    }

    /// Like [`spawn_with`](Self::spawn_with), its clients trusting the CA
    /// `trust` (PEM): for a server that speaks TLS.
    pub fn spawn_trusting(
        backend: Backend,
        trust: Option<String>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        // A data dir that does not exist yet: start-up must create it.
        let mut config = Config::new(dir.path().join("data"));
        config.listen = "127.0.0.1:0".into();
        config.runner = Some(runner_binary());
        config.database_url = match backend {
            // SQLite uses the default: <data dir>/cronium.db.
            Backend::Sqlite => None,
            Backend::Postgres => Some(TestPostgres::fresh_database()),
        };
        tweak(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let agent = ureq::Agent::new_with_config(
            agent_config(trust.as_deref())
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build(),
        );
        let mut app = TestApp {
            backend,
            base: String::new(),
            admin_token: String::new(),
            data_dir: PathBuf::new(),
            config,
            runtime,
            running: None,
            agent,
            trust,
            _dir: dir,
        };
        app.start();
        app
    }

    /// Starts (or restarts) the server with the same configuration.
    pub fn start(&mut self) {
        assert!(self.running.is_none(), "already running");
        let running = self
            .runtime
            .block_on(cronium_server::start(self.config.clone()))
            .expect("server starts");
        let scheme = if running.is_tls() { "https" } else { "http" };
        self.base = format!("{scheme}://{}", running.local_addr());
        self.data_dir = running.data_dir().to_path_buf();
        self.admin_token = std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_string();
        self.running = Some(running);
    }

    /// The running server.
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// Graceful shutdown, waiting for it to finish; jobs still running are
    /// handed back at once rather than waited for (the drain itself is
    /// shown end to end in `crates/cli/tests/shutdown.rs`).
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.hand_back_token().cancel();
            self.runtime.block_on(running.stop()).expect("clean stop");
        }
    }

    pub fn payload_dir(&self) -> PathBuf {
        self.data_dir.join("payloads")
    }

    /// Any request; `token` is sent as a bearer token.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let result = match body {
            Some(bytes) => self.agent.run(builder.body(bytes).expect("request")),
            None => self.agent.run(builder.body(()).expect("request")),
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .expect("response body");
        Resp {
            status,
            headers,
            body,
        }
    }

    /// A JSON request as `token`.
    pub fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Resp {
        match body {
            Some(json) => self.send(
                method,
                path,
                Some(token),
                &[("content-type", "application/json")],
                Some(serde_json::to_vec(&json).unwrap()),
            ),
            None => self.send(method, path, Some(token), &[], None),
        }
    }

    /// A JSON request as the admin.
    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.call(method, path, &self.admin_token, body)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.admin("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> Resp {
        self.admin("POST", path, Some(body))
    }

    pub fn patch(&self, path: &str, body: Value) -> Resp {
        self.admin("PATCH", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.admin("DELETE", path, None)
    }

    /// Creates an event from `body`, asserting 201; returns it.
    pub fn create_event(&self, body: Value) -> Value {
        let resp = self.post("/api/v1/events", body);
        resp.expect(201)
    }

    /// A token with `role`, created by the admin.
    pub fn token(&self, role: &str) -> String {
        let resp = self.post(
            "/api/v1/tokens",
            json!({ "name": format!("{role} token"), "role": role }),
        );
        resp.expect(201)["token"].as_str().unwrap().to_string()
    }
}

impl TestApp {
    /// Runs a `cronium user` action against this server's database, as the
    /// command does on the server's host.
    pub fn users(
        &self,
        action: cronium_server::users::UserAction,
    ) -> cronium_server::users::Outcome {
        self.runtime.block_on(async {
            let store = cronium_server::users::open_store(&self.config)
                .await
                .expect("store");
            cronium_server::users::apply(store.as_ref(), action)
                .await
                .expect("user action")
        })
    }

    /// Sets `name`'s password.
    pub fn set_password(&self, name: &str, password: &str) {
        self.users(cronium_server::users::UserAction::Passwd {
            name: name.into(),
            password: cronium_core::Password::new(password.into()).unwrap(),
        });
    }

    /// Adds a user with `role` and `password`.
    pub fn add_user(&self, name: &str, role: &str, password: &str) {
        self.users(cronium_server::users::UserAction::Add {
            name: name.into(),
            role: cronium_core::Role::parse(role).unwrap(),
            password: cronium_core::Password::new(password.into()).unwrap(),
        });
    }

    /// A browser with no session yet, sending this server's own `Origin`.
    pub fn browser(&self) -> Browser<'_> {
        Browser {
            app: self,
            agent: ureq::Agent::new_with_config(
                agent_config(self.trust.as_deref())
                    .http_status_as_error(false)
                    .max_redirects(0)
                    .timeout_global(Some(Duration::from_secs(60)))
                    .build(),
            ),
            cookie: None,
            origin: Some(self.base.clone()),
        }
    }
}

/// A client configuration trusting `ca` (PEM) alone, or the usual roots.
fn agent_config(ca: Option<&str>) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    let builder = ureq::config::Config::builder();
    match ca {
        Some(pem) => {
            let cert = ureq::tls::Certificate::from_pem(pem.as_bytes()).expect("a PEM CA");
            builder.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
                        cert,
                    ])))
                    .build(),
            )
        }
        None => builder,
    }
}

/// What a browser does to the UI, without following redirects: it keeps
/// the session cookie it was given, and sends `origin` with its forms.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    agent: ureq::Agent,
    /// `cronium_session=…`, as the browser would send it back.
    pub cookie: Option<String>,
    pub origin: Option<String>,
}

impl Browser<'_> {
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Resp {
        let mut builder = http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.app.base, path));
        if let Some(cookie) = &self.cookie {
            builder = builder.header("cookie", cookie.as_str());
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let result = match body {
            Some(body) => self
                .agent
                .run(builder.body(body.into_bytes()).expect("request")),
            None => self.agent.run(builder.body(()).expect("request")),
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.body_mut().read_to_vec().expect("response body");
        let resp = Resp {
            status,
            headers,
            body,
        };
        // Like a browser: a new cookie replaces the old, an expired one goes.
        if let Some(set) = resp.header("set-cookie") {
            let pair = set.split(';').next().unwrap().trim().to_string();
            self.cookie = if set.contains("Max-Age=0") {
                None
            } else {
                Some(pair)
            };
        }
        resp
    }

    pub fn get(&mut self, path: &str) -> Resp {
        self.send("GET", path, &[], None)
    }

    /// Posts a form (fields percent-encoded) with this browser's origin.
    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let origin = self.origin.clone();
        let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(origin) = &origin {
            headers.push(("origin", origin.as_str()));
        }
        self.send("POST", path, &headers, Some(body))
    }

    /// Signs in; returns the answer to the form.
    pub fn login(&mut self, name: &str, password: &str, next: &str) -> Resp {
        self.post(
            "/login",
            &[("name", name), ("password", password), ("next", next)],
        )
    }

    /// Signs in, asserting it worked.
    #[track_caller]
    pub fn signed_in(mut self, name: &str, password: &str) -> Self {
        let resp = self.login(name, password, "/");
        assert_eq!(resp.status, 303, "{}", resp.text());
        assert!(self.cookie.is_some());
        self
    }

    /// The CSRF token in the forms of the page at `path`.
    #[track_caller]
    pub fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path);
        assert_eq!(page.status, 200, "{}", page.text());
        csrf_of(&page.text())
    }
}

/// The value of the first `csrf` hidden field in a page.
pub fn csrf_of(html: &str) -> String {
    let start = html
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token")
        + 19;
    html[start..].split('"').next().unwrap().to_string()
}

/// Form encoding of a value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.hand_back_token().cancel();
            let _ = self.runtime.block_on(running.stop());
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the status and returns the JSON body (`null` when empty).
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts an error response: status, code and (if given) field.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str, field: Option<&str>) -> Value {
        let body = self.expect(status);
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        if let Some(f) = field {
            assert_eq!(body["error"]["field"], f, "{body}");
        }
        body
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub use cronium_exec::testing::runner_binary;

/// Runs the event now and waits (up to 30 s) for its job to end; the job as the API shows it then.
pub fn run_to_end(app: &TestApp, event: i64) -> Value {
    let job = app
        .post(&format!("/api/v1/events/{event}/run"), json!({}))
        .expect(201);
    finished_within(app, job["id"].as_i64().unwrap(), Duration::from_secs(30))
}

/// Waits (up to 60 s, for a slow CI machine) for job `id` to end; the job
/// as the API shows it then.
#[track_caller]
pub fn finished(app: &TestApp, id: i64) -> Value {
    finished_within(app, id, Duration::from_secs(60))
}

#[track_caller]
fn finished_within(app: &TestApp, id: i64, limit: Duration) -> Value {
    wait_for("the job to finish", limit, || {
        let j = app.get(&format!("/api/v1/jobs/{id}")).expect(200);
        let status = j["status"].as_str().unwrap();
        (status != "queued" && status != "running").then_some(j)
    })
}

/// Registers `user` of `sshd` as a server with its key and a pinned host
/// key; its id.
pub fn add_server(
    app: &TestApp,
    sshd: &cronium_ssh::testing::TestSshd,
    user: &cronium_ssh::testing::TestUser,
    name: &str,
) -> i64 {
    let body = json!({
        "name": name, "host": sshd.host(), "port": sshd.port(), "username": user.name,
        "privateKey": user.key.private,
        "knownHost": sshd.host_key().known_hosts_line(sshd.host(), sshd.port()),
    });
    app.post("/api/v1/servers", body).expect(201)["id"]
        .as_i64()
        .unwrap()
}

/// Everything job `id` wrote on `stream` (`stdout`, `stderr`, `system`),
/// its lines concatenated, from every server.
pub fn output(app: &TestApp, id: i64, stream: &str) -> String {
    let page = app
        .get(&format!("/api/v1/jobs/{id}/logs?limit=1000"))
        .expect(200);
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["stream"] == stream)
        .map(|l| l["text"].as_str().unwrap_or_default())
        .collect()
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`.
#[track_caller]
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal valid script event.
pub fn script_event(name: &str) -> Value {
    json!({ "name": name, "interpreter": "bash", "content": "echo hello\n" })
}

/// Every regular file under `dir`, recursively, relative to it.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Everything the database holds, as bytes: the SQLite files (database, WAL,
/// shared memory), or a `pg_dump` of the PostgreSQL database.
pub fn database_bytes(app: &TestApp) -> Vec<u8> {
    match app.backend {
        Backend::Sqlite => {
            let mut all = Vec::new();
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let path = app.data_dir.join(format!("cronium.db{suffix}"));
                if let Ok(bytes) = std::fs::read(&path) {
                    all.extend(bytes);
                }
            }
            assert!(
                !all.is_empty(),
                "no SQLite files in {}",
                app.data_dir.display()
            );
            all
        }
        Backend::Postgres => {
            let url = app.config.database_url.as_deref().unwrap();
            let out = std::process::Command::new("pg_dump")
                .args(["--data-only", "--no-owner", url])
                .output()
                .expect("pg_dump runs");
            assert!(
                out.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }
    }
}

/// `text` as lowercase hex, the way bytea columns are dumped.
pub fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}
