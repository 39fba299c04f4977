//! Server configuration: each setting comes from a flag, else its environment variable, else a default.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cronium_core::schedule::parse_interval;

use cronium_engine::secrets::MasterKey;
use cronium_exec::guard::Allow;

use crate::client::{Network, TrustedProxies};
use crate::tls::TlsFiles;

pub const ENV_DATA_DIR: &str = "CRONIUM_DATA_DIR";
pub const ENV_LISTEN: &str = "CRONIUM_LISTEN";
pub const ENV_DATABASE_URL: &str = "CRONIUM_DATABASE_URL";
pub const ENV_PAYLOAD_RETENTION: &str = "CRONIUM_PAYLOAD_RETENTION";
pub const ENV_RUNNER: &str = "CRONIUM_RUNNER";
pub const ENV_SANDBOX: &str = "CRONIUM_SANDBOX";
pub const ENV_SANDBOX_NETWORK: &str = "CRONIUM_SANDBOX_NETWORK";
pub const ENV_MAX_JOBS: &str = "CRONIUM_MAX_JOBS";
pub const ENV_JOB_RETENTION: &str = "CRONIUM_JOB_RETENTION";
pub const ENV_JOB_KEEP: &str = "CRONIUM_JOB_KEEP";
pub const ENV_JOB_LOG_LIMIT: &str = "CRONIUM_JOB_LOG_LIMIT";
pub const ENV_JOB_LEASE: &str = "CRONIUM_JOB_LEASE";
pub const ENV_DRAIN_TIMEOUT: &str = "CRONIUM_DRAIN_TIMEOUT";
pub const ENV_HTTP_ALLOW: &str = "CRONIUM_HTTP_ALLOW";
pub const ENV_PUBLIC_URL: &str = "CRONIUM_PUBLIC_URL";
pub const ENV_TLS_CERT: &str = "CRONIUM_TLS_CERT";
pub const ENV_TLS_KEY: &str = "CRONIUM_TLS_KEY";
pub const ENV_TRUSTED_PROXIES: &str = "CRONIUM_TRUSTED_PROXIES";
pub const ENV_POLL_ONLY: &str = "CRONIUM_POLL_ONLY";
/// Only an environment variable, never a flag: flags are visible to every
/// user of the machine through `ps`.
pub const ENV_MASTER_KEY: &str = "CRONIUM_MASTER_KEY";

pub const DEFAULT_DATA_DIR: &str = "./cronium-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_PAYLOAD_RETENTION: usize = 5;
pub const DEFAULT_MAX_JOBS: usize = 8;
pub const DEFAULT_JOB_RETENTION: Duration = Duration::from_secs(30 * 86_400);
pub const DEFAULT_JOB_KEEP: u32 = 100;
pub const DEFAULT_JOB_LOG_LIMIT: u64 = 10 * 1024 * 1024;
pub const DEFAULT_JOB_LEASE: Duration = Duration::from_secs(10);
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A browser session unused this long ends.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// A browser session ends this long after sign-in, however much it is used.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Where local jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// Directly, as the server's user.
    None,
    /// Inside bubblewrap: read-only system, private /tmp, no network unless allowed.
    Bubblewrap,
}

/// What the command line said; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub payload_retention: Option<usize>,
    pub runner: Option<PathBuf>,
    pub sandbox: Option<String>,
    pub max_jobs: Option<usize>,
    pub job_retention: Option<String>,
    /// Networks and host names outgoing HTTP may reach although private.
    pub http_allow: Vec<String>,
    /// Where people reach this server, e.g. `https://cron.example.com`.
    pub public_url: Option<String>,
    /// The certificate (chain) and key to serve HTTPS with; both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Addresses and networks whose forwarded headers are believed.
    pub trusted_proxies: Vec<String>,
    /// `--poll-only` was given.
    pub poll_only: bool,
}

#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `host:port`; port 0 picks a free port (tests).
    pub listen: String,
    /// `None`: SQLite in the data dir (`sqlite://<data dir>/cronium.db`).
    pub database_url: Option<String>,
    /// Payload versions kept per event (at least 1).
    pub payload_retention: usize,
    /// `None`: read or create `<data dir>/master.key`.
    pub master_key: Option<MasterKey>,
    /// The `cronium-runner` binary; `None`: next to this program, else on `PATH`.
    pub runner: Option<PathBuf>,
    pub sandbox: SandboxMode,
    /// Whether sandboxed jobs may use the network.
    pub sandbox_network: bool,
    /// Jobs this node runs at once.
    pub max_jobs: usize,
    /// Finished jobs older than this are deleted with their logs…
    pub job_retention: Duration,
    /// …except the newest this many per event.
    pub job_keep: u32,
    /// Output bytes stored per job attempt.
    pub job_log_limit: u64,
    /// How long a worker holds a job between heartbeats; a crashed node's
    /// jobs are recovered this long after its last heartbeat.
    pub job_lease: Duration,
    /// How long a server shutting down (SIGTERM) lets its running jobs
    /// finish before it stops them and hands them back for another server.
    pub drain_timeout: Duration,
    /// What HTTP events may reach although it is loopback, private,
    /// link-local or a cloud metadata address (nothing by default).
    pub http_allow: Vec<Allow>,
    /// Where people reach this server (`https://cron.example.com`), for
    /// links in notifications and as the one origin the web UI's forms may
    /// come from; `None`: messages carry no link, and forms must come from
    /// the origin in the request's `Host` header.
    pub public_url: Option<String>,
    /// Whether the session cookie is always marked `Secure` (sent over
    /// HTTPS only): set when the public URL is `https://…`. A request over
    /// this server's own TLS, or one a trusted proxy says came over https,
    /// gets a `Secure` cookie anyway.
    pub secure_cookies: bool,
    /// Serve HTTPS with these files; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Peers whose `X-Forwarded-For`/`-Proto` and `Forwarded` are believed
    /// (none by default).
    pub trusted_proxies: TrustedProxies,
    /// Never `LISTEN` for other servers' signals on PostgreSQL (behind
    /// PgBouncer in transaction mode, which cannot carry them): work queued
    /// and lines stored elsewhere are found by polling.
    pub poll_only: bool,
    /// A browser session unused this long ends.
    pub session_idle: Duration,
    /// A browser session ends this long after sign-in.
    pub session_lifetime: Duration,
    /// The clock sessions and sign-in limits go by; tests keep a clone and
    /// move it forward.
    pub clock: crate::clock::Clock,
}

#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    /// The flag or variable at fault.
    pub source_name: String,
    pub message: String,
}

impl Config {
    /// Everything at its default, for `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            listen: DEFAULT_LISTEN.into(),
            database_url: None,
            payload_retention: DEFAULT_PAYLOAD_RETENTION,
            master_key: None,
            runner: None,
            sandbox: SandboxMode::None,
            sandbox_network: false,
            max_jobs: DEFAULT_MAX_JOBS,
            job_retention: DEFAULT_JOB_RETENTION,
            job_keep: DEFAULT_JOB_KEEP,
            job_log_limit: DEFAULT_JOB_LOG_LIMIT,
            job_lease: DEFAULT_JOB_LEASE,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            http_allow: Vec::new(),
            public_url: None,
            secure_cookies: false,
            tls: None,
            trusted_proxies: TrustedProxies::default(),
            poll_only: false,
            session_idle: DEFAULT_SESSION_IDLE,
            session_lifetime: DEFAULT_SESSION_LIFETIME,
            clock: Default::default(),
        }
    }

    /// Flags win over environment variables, which win over defaults.
    /// `env` is a lookup (`std::env::var` in production) so tests need not
    /// touch the process environment.
    pub fn resolve(
        flags: Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let error = |source_name: &str, message: String| ConfigError {
            source_name: source_name.into(),
            message,
        };
        let data_dir = flags
            .data_dir
            .or_else(|| env(ENV_DATA_DIR).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let listen = flags
            .listen
            .or_else(|| env(ENV_LISTEN))
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let database_url = flags.database_url.or_else(|| env(ENV_DATABASE_URL));
        let payload_retention = match flags.payload_retention {
            Some(n) => n,
            None => match env(ENV_PAYLOAD_RETENTION) {
                Some(text) => text.trim().parse().map_err(|_| {
                    error(
                        ENV_PAYLOAD_RETENTION,
                        format!("expected a whole number, got {text:?}"),
                    )
                })?,
                None => DEFAULT_PAYLOAD_RETENTION,
            },
        };
        if payload_retention == 0 {
            return Err(error(
                "payload retention",
                "must be at least 1 (the active payload is always kept)".into(),
            ));
        }
        let master_key = env(ENV_MASTER_KEY)
            .map(|hex| MasterKey::from_hex(&hex))
            .transpose()
            .map_err(|e| error(ENV_MASTER_KEY, e.to_string()))?;
        let number = |name: &str, text: String| -> Result<u64, ConfigError> {
            text.trim()
                .parse()
                .map_err(|_| error(name, format!("expected a whole number, got {text:?}")))
        };
        let interval = |name: &str, text: String| {
            parse_interval(&text).map_err(|message| error(name, message))
        };
        let runner = flags.runner.or_else(|| env(ENV_RUNNER).map(PathBuf::from));
        let sandbox = match flags.sandbox.or_else(|| env(ENV_SANDBOX)).as_deref() {
            None | Some("none") => SandboxMode::None,
            Some("bubblewrap") | Some("bwrap") => SandboxMode::Bubblewrap,
            Some(other) => {
                return Err(error(
                    "sandbox",
                    format!("unknown sandbox {other:?} (expected none or bubblewrap)"),
                ));
            }
        };
        let sandbox_network = match env(ENV_SANDBOX_NETWORK).as_deref() {
            None | Some("0") | Some("false") => false,
            Some("1") | Some("true") => true,
            Some(other) => {
                return Err(error(
                    ENV_SANDBOX_NETWORK,
                    format!("expected true or false, got {other:?}"),
                ));
            }
        };
        let poll_only = flags.poll_only
            || match env(ENV_POLL_ONLY).as_deref() {
                None | Some("0") | Some("false") => false,
                Some("1") | Some("true") => true,
                Some(other) => {
                    return Err(error(
                        ENV_POLL_ONLY,
                        format!("expected true or false, got {other:?}"),
                    ));
                }
            };
        let max_jobs = match flags.max_jobs {
            Some(n) => n,
            None => match env(ENV_MAX_JOBS) {
                Some(text) => number(ENV_MAX_JOBS, text)? as usize,
                None => DEFAULT_MAX_JOBS,
            },
        };
        if max_jobs == 0 {
            return Err(error("max jobs", "must be at least 1".into()));
        }
        let job_retention = match flags.job_retention.or_else(|| env(ENV_JOB_RETENTION)) {
            Some(text) => interval("job retention", text)?,
            None => DEFAULT_JOB_RETENTION,
        };
        let job_keep = match env(ENV_JOB_KEEP) {
            Some(text) => u32::try_from(number(ENV_JOB_KEEP, text)?)
                .map_err(|_| error(ENV_JOB_KEEP, "too large".into()))?,
            None => DEFAULT_JOB_KEEP,
        };
        let job_log_limit = match env(ENV_JOB_LOG_LIMIT) {
            Some(text) => number(ENV_JOB_LOG_LIMIT, text)?,
            None => DEFAULT_JOB_LOG_LIMIT,
        };
        let job_lease = match env(ENV_JOB_LEASE) {
            Some(text) => interval(ENV_JOB_LEASE, text)?,
            None => DEFAULT_JOB_LEASE,
        };
        if job_lease < Duration::from_secs(5) {
            return Err(error(ENV_JOB_LEASE, "must be at least 5s".into()));
        }
        let drain_timeout = match env(ENV_DRAIN_TIMEOUT) {
            Some(text) => interval(ENV_DRAIN_TIMEOUT, text)?,
            None => DEFAULT_DRAIN_TIMEOUT,
        };
        // Flags replace the variable's list; the variable is comma-separated.
        let (http_allow_source, http_allow_texts) = if flags.http_allow.is_empty() {
            let list = env(ENV_HTTP_ALLOW).unwrap_or_default();
            let texts = list
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect();
            (ENV_HTTP_ALLOW, texts)
        } else {
            ("--http-allow", flags.http_allow)
        };
        let http_allow = http_allow_texts
            .iter()
            .map(|text| Allow::parse(text).map_err(|m| error(http_allow_source, m)))
            .collect::<Result<Vec<_>, _>>()?;
        let (public_url_source, public_url) = match flags.public_url {
            Some(url) => ("--public-url", Some(url)),
            None => (ENV_PUBLIC_URL, env(ENV_PUBLIC_URL)),
        };
        let public_url = public_url
            .map(|url| {
                let url = url.trim().trim_end_matches('/').to_string();
                cronium_core::http::validate_url(&url)
                    .map(|()| url)
                    .map_err(|e| error(public_url_source, e.message))
            })
            .transpose()?;
        let secure_cookies = public_url.as_deref().is_some_and(|url| {
            url.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        });
        // Both files or neither: one alone is a mistake, not plain HTTP.
        let path_from =
            |flag: Option<PathBuf>, flag_name: &'static str, var: &'static str| match flag {
                Some(path) => Some((flag_name, path)),
                None => env(var).map(|p| (var, PathBuf::from(p))),
            };
        let tls = match (
            path_from(flags.tls_cert, "--tls-cert", ENV_TLS_CERT),
            path_from(flags.tls_key, "--tls-key", ENV_TLS_KEY),
        ) {
            (Some((_, cert)), Some((_, key))) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some((source, _)), None) => {
                return Err(error(
                    source,
                    format!("needs the private key too (--tls-key or {ENV_TLS_KEY})"),
                ));
            }
            (None, Some((source, _))) => {
                return Err(error(
                    source,
                    format!("needs the certificate too (--tls-cert or {ENV_TLS_CERT})"),
                ));
            }
        };
        // Flags replace the variable's list, as for --http-allow.
        let (proxies_source, proxy_texts) = if flags.trusted_proxies.is_empty() {
            let list = env(ENV_TRUSTED_PROXIES).unwrap_or_default();
            let texts = list
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect();
            (ENV_TRUSTED_PROXIES, texts)
        } else {
            ("--trusted-proxy", flags.trusted_proxies)
        };
        let trusted_proxies = TrustedProxies(
            proxy_texts
                .iter()
                .map(|text| Network::parse(text).map_err(|m| error(proxies_source, m)))
                .collect::<Result<Vec<_>, _>>()?,
        );
        Ok(Config {
            data_dir,
            listen,
            database_url,
            payload_retention,
            master_key,
            runner,
            sandbox,
            sandbox_network,
            max_jobs,
            job_retention,
            job_keep,
            job_log_limit,
            job_lease,
            drain_timeout,
            http_allow,
            public_url,
            secure_cookies,
            tls,
            trusted_proxies,
            poll_only,
            session_idle: DEFAULT_SESSION_IDLE,
            session_lifetime: DEFAULT_SESSION_LIFETIME,
            clock: Default::default(),
        })
    }

    /// The database URL in use: the configured one, or SQLite in `data_dir`.
    pub fn database_url_for(&self, data_dir: &Path) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", data_dir.join("cronium.db").display()),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("payload_retention", &self.payload_retention)
            .field("runner", &self.runner)
            .field("sandbox", &self.sandbox)
            .field("sandbox_network", &self.sandbox_network)
            .field("max_jobs", &self.max_jobs)
            .field("job_retention", &self.job_retention)
            .field("job_keep", &self.job_keep)
            .field("job_log_limit", &self.job_log_limit)
            .field("job_lease", &self.job_lease)
            .field("drain_timeout", &self.drain_timeout)
            .field(
                "http_allow",
                &self
                    .http_allow
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>(),
            )
            .field("public_url", &self.public_url)
            .field("secure_cookies", &self.secure_cookies)
            .field("tls", &self.tls)
            .field(
                "trusted_proxies",
                &self
                    .trusted_proxies
                    .0
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>(),
            )
            .field("poll_only", &self.poll_only)
            .field("session_idle", &self.session_idle)
            .field("session_lifetime", &self.session_lifetime)
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "(from environment)"),
            )
            .finish()
    }
}

/// A database URL fit for logs: any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{user}{hidden}@{host}")
        }
        None => authority.to_string(),
    };
    // PostgreSQL also takes the password as a query parameter.
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn defaults() {
        let c = Config::resolve(Overrides::default(), &env_of(&[])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./cronium-data"));
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.database_url, None);
        assert_eq!(c.payload_retention, 5);
        assert!(c.master_key.is_none());
        assert_eq!(
            c.database_url_for(Path::new("/srv/cronium")),
            "sqlite:///srv/cronium/cronium.db"
        );
    }

    #[test]
    fn flags_beat_environment_beats_defaults() {
        let env = env_of(&[
            (ENV_DATA_DIR, "/env/data"),
            (ENV_LISTEN, "0.0.0.0:9000"),
            (ENV_DATABASE_URL, "postgres://env"),
            (ENV_PAYLOAD_RETENTION, "7"),
        ]);
        let c = Config::resolve(Overrides::default(), &env).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/env/data"));
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.database_url.as_deref(), Some("postgres://env"));
        assert_eq!(c.payload_retention, 7);
        let flags = Overrides {
            data_dir: Some("/flag/data".into()),
            listen: Some("127.0.0.1:1".into()),
            database_url: Some("sqlite:///x.db".into()),
            payload_retention: Some(2),
            ..Overrides::default()
        };
        let c = Config::resolve(flags, &env).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/flag/data"));
        assert_eq!(c.listen, "127.0.0.1:1");
        assert_eq!(c.database_url.as_deref(), Some("sqlite:///x.db"));
        assert_eq!(c.payload_retention, 2);
    }

    #[test]
    fn http_allow_comes_from_the_flags_or_else_the_comma_separated_variable() {
        let env = env_of(&[(ENV_HTTP_ALLOW, "10.0.0.0/8, hooks.internal,")]);
        let c = Config::resolve(Overrides::default(), &env).unwrap();
        let texts: Vec<String> = c.http_allow.iter().map(|a| a.to_string()).collect();
        assert_eq!(texts, ["10.0.0.0/8", "hooks.internal"]);
        let flags = Overrides {
            http_allow: vec!["127.0.0.1".into()],
            ..Overrides::default()
        };
        let c = Config::resolve(flags, &env).unwrap();
        assert_eq!(c.http_allow.len(), 1);
        let flags = Overrides {
            http_allow: vec!["not a network/".into()],
            ..Overrides::default()
        };
        assert_eq!(
            Config::resolve(flags, &env).unwrap_err().source_name,
            "--http-allow"
        );
    }

    #[test]
    fn the_public_url_is_optional_and_kept_without_a_trailing_slash() {
        let c = Config::resolve(Overrides::default(), &env_of(&[])).unwrap();
        assert_eq!(c.public_url, None);
        assert!(!c.secure_cookies);
        let env = env_of(&[(ENV_PUBLIC_URL, "https://cron.example.com/ ")]);
        let c = Config::resolve(Overrides::default(), &env).unwrap();
        assert_eq!(c.public_url.as_deref(), Some("https://cron.example.com"));
        assert!(
            c.secure_cookies,
            "served over https: the cookie says Secure"
        );
        // The flag wins over the variable.
        let flags = Overrides {
            public_url: Some("http://cron.internal:8080".into()),
            ..Overrides::default()
        };
        let c = Config::resolve(flags, &env).unwrap();
        assert_eq!(c.public_url.as_deref(), Some("http://cron.internal:8080"));
        assert!(!c.secure_cookies);
    }

    #[test]
    fn tls_needs_both_files_and_proxies_are_addresses_or_networks() {
        let c = Config::resolve(Overrides::default(), &env_of(&[])).unwrap();
        assert!(c.tls.is_none(), "plain HTTP by default");
        assert!(
            c.trusted_proxies.0.is_empty(),
            "no proxy trusted by default"
        );
        let env = env_of(&[
            (ENV_TLS_CERT, "/etc/cronium/cert.pem"),
            (ENV_TLS_KEY, "/etc/cronium/key.pem"),
            (ENV_TRUSTED_PROXIES, "127.0.0.1, 10.0.0.0/8,"),
        ]);
        let c = Config::resolve(Overrides::default(), &env).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("/etc/cronium/cert.pem"));
        assert_eq!(tls.key, PathBuf::from("/etc/cronium/key.pem"));
        let nets: Vec<String> = c.trusted_proxies.0.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["127.0.0.1/32", "10.0.0.0/8"]);
        // Flags win, each on its own.
        let flags = Overrides {
            tls_key: Some("/flag/key.pem".into()),
            trusted_proxies: vec!["::1".into()],
            ..Overrides::default()
        };
        let c = Config::resolve(flags, &env).unwrap();
        assert_eq!(c.tls.unwrap().key, PathBuf::from("/flag/key.pem"));
        assert_eq!(c.trusted_proxies.0.len(), 1);
        // One without the other is an error that says what is missing.
        let flags = Overrides {
            tls_cert: Some("/flag/cert.pem".into()),
            ..Overrides::default()
        };
        let err = Config::resolve(flags, &env_of(&[])).unwrap_err();
        assert_eq!(err.source_name, "--tls-cert");
        assert!(err.message.contains("--tls-key"), "{err}");
        let err =
            Config::resolve(Overrides::default(), &env_of(&[(ENV_TLS_KEY, "k.pem")])).unwrap_err();
        assert_eq!(err.source_name, ENV_TLS_KEY);
        assert!(err.message.contains("--tls-cert"), "{err}");
        let flags = Overrides {
            trusted_proxies: vec!["proxy.internal".into()],
            ..Overrides::default()
        };
        assert_eq!(
            Config::resolve(flags, &env_of(&[]))
                .unwrap_err()
                .source_name,
            "--trusted-proxy"
        );
    }

    #[test]
    fn bad_values_name_their_source() {
        let err = Config::resolve(
            Overrides::default(),
            &env_of(&[(ENV_PAYLOAD_RETENTION, "many")]),
        )
        .unwrap_err();
        assert_eq!(err.source_name, ENV_PAYLOAD_RETENTION);
        let flags = Overrides {
            payload_retention: Some(0),
            ..Overrides::default()
        };
        assert!(Config::resolve(flags, &env_of(&[])).is_err());
        for (name, value, source) in [
            (ENV_SANDBOX, "docker", "sandbox"),
            (ENV_SANDBOX_NETWORK, "maybe", ENV_SANDBOX_NETWORK),
            (ENV_POLL_ONLY, "yes", ENV_POLL_ONLY),
            (ENV_MAX_JOBS, "0", "max jobs"),
            (ENV_MAX_JOBS, "many", ENV_MAX_JOBS),
            (ENV_JOB_RETENTION, "forever", "job retention"),
            (ENV_JOB_LEASE, "1s", ENV_JOB_LEASE),
            (ENV_JOB_LOG_LIMIT, "10MB", ENV_JOB_LOG_LIMIT),
            (ENV_HTTP_ALLOW, "10.0.0.0/8, 10.0.0.0/99", ENV_HTTP_ALLOW),
            (ENV_PUBLIC_URL, "cron.example.com", ENV_PUBLIC_URL),
            (ENV_TRUSTED_PROXIES, "10.0.0.1/8", ENV_TRUSTED_PROXIES),
        ] {
            let err = Config::resolve(Overrides::default(), &env_of(&[(name, value)])).unwrap_err();
            assert_eq!(err.source_name, source, "{name}={value}");
        }
        let err =
            Config::resolve(Overrides::default(), &env_of(&[(ENV_MASTER_KEY, "abc")])).unwrap_err();
        assert_eq!(err.source_name, ENV_MASTER_KEY);
        let key = "ab".repeat(32);
        let c = Config::resolve(Overrides::default(), &env_of(&[(ENV_MASTER_KEY, &key)])).unwrap();
        assert!(c.master_key.is_some());
        assert!(
            !format!("{c:?}").contains(&key),
            "Debug must not show the key"
        );
    }

    #[test]
    fn urls_are_redacted_for_logs() {
        let table = [
            (
                "postgres://u:secret@db:5432/cronium",
                "postgres://u:***@db:5432/cronium",
            ),
            ("postgres://u@db/cronium", "postgres://u@db/cronium"),
            (
                "postgres://db/x?sslmode=off&password=no",
                "postgres://db/x?sslmode=off&password=***",
            ),
            ("sqlite:///srv/c.db", "sqlite:///srv/c.db"),
            ("postgres://u:p@ss@db/x", "postgres://u:***@db/x"),
        ];
        for (url, want) in table {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }
}
