//! Remote servers as users define them: where to connect and as whom.
//! Credentials arrive here already sealed (encrypted) by the server process.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::event::Tag;

plain_name!(
    /// A server name: 1–64 characters from `[A-Za-z0-9._-]`, unique.
    ServerName,
    "server"
);

/// How Cronium authenticates to a server. The secret itself is in
/// [`ServerSpec::sealed_credentials`] and is never returned by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    Key,
    Password,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Key => "key",
            AuthKind::Password => "password",
        }
    }

    pub fn parse(text: &str) -> Result<AuthKind, ValidationError> {
        match text {
            "key" => Ok(AuthKind::Key),
            "password" => Ok(AuthKind::Password),
            other => Err(ValidationError::new(
                "authKind",
                format!("unknown value {other:?} (expected key or password)"),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub name: ServerName,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub auth_kind: AuthKind,
    /// The private key (and its passphrase) or password, encrypted.
    pub sealed_credentials: Vec<u8>,
    /// A pinned host key as a `known_hosts` line, once known.
    pub known_host: Option<String>,
    /// Where Cronium keeps the runner and payloads on the host: relative to
    /// the SSH user's home, or absolute. `None` is [`DEFAULT_CACHE_DIR`].
    /// Always passes [`validate_cache_dir`].
    pub cache_dir: Option<String>,
    /// Labels events target servers by (`targetTags`); an imported
    /// inventory's groups become tags.
    pub tags: BTreeSet<Tag>,
}

/// Most tags on one server.
pub const MAX_SERVER_TAGS: usize = 32;

/// The runner cache directory of a server that sets none, relative to the
/// SSH user's home.
pub const DEFAULT_CACHE_DIR: &str = ".cache/cronium";

/// Longest cache directory accepted, in bytes.
pub const MAX_CACHE_DIR_BYTES: usize = 255;

/// Checks a runner cache directory: relative to the SSH user's home or
/// absolute; only `[A-Za-z0-9._/-]`; no empty, `.` or `..` component; no
/// component starting with `-`; at most [`MAX_CACHE_DIR_BYTES`]; not `/`.
///
/// This strictness is a security property, not tidiness: the directory is
/// pasted into shell commands run on the host (the executor quotes it as
/// well), so it can hold no quote, space, `$`, glob or newline; a leading
/// `-` would read as an option to `mkdir` or `find`; and `..`, `.`, `/` or
/// an empty path would point Cronium's `chmod 700` and its sweep of stale
/// temporary files at a directory that is not its own (the home itself,
/// its parent, the root).
pub fn validate_cache_dir(dir: &str) -> Result<(), ValidationError> {
    let refuse = |why: &str| {
        Err(ValidationError::new(
            "cacheDir",
            format!(
                "invalid cache directory {dir:?}: {why} (a path relative to the SSH user's \
                 home, or absolute, of letters, digits, . _ - and /)"
            ),
        ))
    };
    if dir.is_empty() {
        return refuse("empty");
    }
    if dir.len() > MAX_CACHE_DIR_BYTES {
        return refuse(&format!("longer than {MAX_CACHE_DIR_BYTES} bytes"));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "._/-".contains(c);
    if let Some(c) = dir.chars().find(|&c| !ok(c)) {
        return refuse(&format!("{c:?} is not allowed"));
    }
    if dir == "/" {
        return refuse("the root directory is not a cache directory");
    }
    let relative = dir.strip_prefix('/').unwrap_or(dir);
    for component in relative.split('/') {
        match component {
            "" => return refuse("empty path component (// or a trailing /)"),
            "." | ".." => return refuse(&format!("a {component:?} component")),
            c if c.starts_with('-') => return refuse("a component starts with -"),
            _ => {}
        }
    }
    Ok(())
}

impl ServerSpec {
    pub fn validate(self) -> Result<ServerSpec, ValidationError> {
        let host_ok = |c: char| c.is_ascii_alphanumeric() || ".-:_[]".contains(c);
        if self.host.is_empty() || self.host.len() > 253 || !self.host.chars().all(host_ok) {
            return Err(ValidationError::new(
                "host",
                format!("invalid host {:?} (a DNS name or an IP address)", self.host),
            ));
        }
        if self.port == 0 {
            return Err(ValidationError::new("port", "must be between 1 and 65535"));
        }
        let user_ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if self.username.is_empty()
            || self.username.len() > 32
            || self.username.starts_with('-')
            || !self.username.chars().all(user_ok)
        {
            return Err(ValidationError::new(
                "username",
                format!("invalid user name {:?}", self.username),
            ));
        }
        if self.sealed_credentials.is_empty() {
            return Err(ValidationError::new(
                "credentials",
                "a key or a password is required",
            ));
        }
        if let Some(line) = &self.known_host
            && (line.trim().is_empty() || line.contains('\n'))
        {
            return Err(ValidationError::new(
                "knownHost",
                "must be one known_hosts line",
            ));
        }
        if let Some(dir) = &self.cache_dir {
            validate_cache_dir(dir)?;
        }
        if self.tags.len() > MAX_SERVER_TAGS {
            return Err(ValidationError::new(
                "tags",
                format!("at most {MAX_SERVER_TAGS} tags"),
            ));
        }
        Ok(self)
    }

    /// The runner cache directory in effect: the one set, else the default.
    pub fn effective_cache_dir(&self) -> &str {
        self.cache_dir.as_deref().unwrap_or(DEFAULT_CACHE_DIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServerSpec {
        ServerSpec {
            name: ServerName::new("web-1").unwrap(),
            host: "10.0.0.5".into(),
            port: 22,
            username: "deploy".into(),
            auth_kind: AuthKind::Key,
            sealed_credentials: vec![1],
            known_host: None,
            cache_dir: None,
            tags: BTreeSet::new(),
        }
    }

    #[test]
    fn invalid_servers_name_the_field() {
        type Mutate = fn(&mut ServerSpec);
        let table: [(Mutate, &str); 6] = [
            (|s| s.host = String::new(), "host"),
            (|s| s.host = "a host".into(), "host"),
            (|s| s.port = 0, "port"),
            (|s| s.username = "-oProxyCommand=x".into(), "username"),
            (|s| s.sealed_credentials.clear(), "credentials"),
            (|s| s.known_host = Some("a\nb".into()), "knownHost"),
        ];
        for (mutate, field) in table {
            let mut s = spec();
            mutate(&mut s);
            assert_eq!(s.validate().unwrap_err().field, field);
        }
        assert!(spec().validate().is_ok());
        assert!(ServerName::new("db.prod_1").is_ok());
        assert_eq!(ServerName::new("bad name").unwrap_err().field, "name");
    }

    #[test]
    fn cache_dirs_relative_or_absolute_are_accepted() {
        let longest = format!("/{}", "a".repeat(MAX_CACHE_DIR_BYTES - 1));
        for dir in [
            ".cache/cronium",
            "opt-cronium/cache",
            "cronium",
            "/opt/cronium",
            "/tmp/cronium.cache_1/x-y",
            ".cronium",
            "a..b/c.",
            longest.as_str(),
        ] {
            let mut s = spec();
            s.cache_dir = Some(dir.to_string());
            let s = s
                .validate()
                .unwrap_or_else(|e| panic!("{dir:?} refused: {e}"));
            assert_eq!(s.effective_cache_dir(), dir);
        }
        assert_eq!(spec().effective_cache_dir(), DEFAULT_CACHE_DIR);
        assert!(validate_cache_dir(DEFAULT_CACHE_DIR).is_ok());
    }

    #[test]
    fn cache_dirs_that_could_escape_or_break_a_shell_command_are_refused() {
        let too_long = format!("/{}", "a".repeat(MAX_CACHE_DIR_BYTES));
        for dir in [
            "",
            "/",
            "//",
            "..",
            "../x",
            "a/../b",
            "a/..",
            "/tmp/..",
            ".",
            "./x",
            "a/./b",
            "a//b",
            "a/",
            "//tmp/x",
            "-rf",
            "x/-y",
            "a b",
            "a'b",
            "a\"b",
            "$HOME/x",
            "~/x",
            "a;rm -rf ~",
            "a`id`",
            "a$(id)",
            "a*",
            "a\nb",
            "a\\b",
            "caché",
            too_long.as_str(),
        ] {
            let mut s = spec();
            s.cache_dir = Some(dir.to_string());
            let error = s.validate().expect_err(&format!("{dir:?} was accepted"));
            assert_eq!(error.field, "cacheDir", "{dir:?}");
            assert!(error.message.contains("invalid cache directory"), "{error}");
        }
    }
}
