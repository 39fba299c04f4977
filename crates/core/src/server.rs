//! Remote servers as users define them: where to connect and as whom.
//! Credentials arrive here already sealed (encrypted) by the server process.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// A server name: 1–64 characters from `[A-Za-z0-9._-]`, unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ServerName(String);

impl ServerName {
    pub fn new(text: &str) -> Result<ServerName, ValidationError> {
        let ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if text.is_empty() || text.len() > 64 || !text.chars().all(ok) {
            return Err(ValidationError::new(
                "name",
                format!("invalid server name {text:?} (1-64 characters: letters, digits, . _ -)"),
            ));
        }
        Ok(ServerName(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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
        Ok(self)
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
}
