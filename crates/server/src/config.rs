//! Server configuration: each setting comes from a flag, else its environment variable, else a default.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::secrets::MasterKey;

pub const ENV_DATA_DIR: &str = "CRONIUM_DATA_DIR";
pub const ENV_LISTEN: &str = "CRONIUM_LISTEN";
pub const ENV_DATABASE_URL: &str = "CRONIUM_DATABASE_URL";
pub const ENV_PAYLOAD_RETENTION: &str = "CRONIUM_PAYLOAD_RETENTION";
/// Only an environment variable, never a flag: flags are visible to every
/// user of the machine through `ps`.
pub const ENV_MASTER_KEY: &str = "CRONIUM_MASTER_KEY";

pub const DEFAULT_DATA_DIR: &str = "./cronium-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_PAYLOAD_RETENTION: usize = 5;

/// What the command line said; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub payload_retention: Option<usize>,
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
        Ok(Config {
            data_dir,
            listen,
            database_url,
            payload_retention,
            master_key,
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
        };
        let c = Config::resolve(flags, &env).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/flag/data"));
        assert_eq!(c.listen, "127.0.0.1:1");
        assert_eq!(c.database_url.as_deref(), Some("sqlite:///x.db"));
        assert_eq!(c.payload_retention, 2);
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
