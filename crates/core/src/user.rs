//! Users: names, roles, passwords being set, password and session hashes, and API-token hashes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// What a token may do. Ordered: each role can do everything the ones below it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything except secrets.
    Viewer,
    /// Also create, change, run and delete events.
    Editor,
    /// Also manage servers, tokens and users.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Role, ValidationError> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            other => Err(ValidationError::new(
                "role",
                format!("unknown role {other:?} (expected admin, editor or viewer)"),
            )),
        }
    }

    /// Whether a token with this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SHA-256 of an API token's secret: all the database ever holds of it.
/// Tokens are 256-bit random values, so a plain hash is enough (no salt or
/// slow hash needed), and lookups stay a single indexed equality.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

plain_name!(
    /// A user name: 1–64 characters from `[A-Za-z0-9._-]`, unique. Shown in
    /// pages, logs and the audit log, so nothing in it can be markup.
    UserName,
    "user"
);

/// The fewest characters a password may have.
pub const PASSWORD_MIN_CHARS: usize = 12;
/// The most bytes a password may have: argon2 hashes any length, but a
/// megabyte-long password would make every login attempt slow.
pub const PASSWORD_MAX_BYTES: usize = 1024;

/// A password being set (not one being checked: a wrong short password is
/// simply wrong). Never `Debug`- or `Display`-printable.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(text: String) -> Result<Password, ValidationError> {
        let chars = text.chars().count();
        if chars < PASSWORD_MIN_CHARS {
            return Err(ValidationError::new(
                "password",
                format!(
                    "must be at least {PASSWORD_MIN_CHARS} characters long (this one has {chars})"
                ),
            ));
        }
        if text.len() > PASSWORD_MAX_BYTES {
            return Err(ValidationError::new(
                "password",
                format!("must be at most {PASSWORD_MAX_BYTES} bytes long"),
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "password",
                "must not contain control characters (a pasted line break, say)",
            ));
        }
        Ok(Password(text))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A password hash as stored: an argon2id PHC string
/// (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`). Only the hash's shape is
/// checked here; hashing and verifying happen in the server.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(text: String) -> Result<PasswordHash, ValidationError> {
        if !text.starts_with("$argon2id$") || text.len() > 512 {
            return Err(ValidationError::new(
                "passwordHash",
                "not an argon2id hash in PHC format",
            ));
        }
        Ok(PasswordHash(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// The SHA-256 of a browser session's secret (the cookie's value): all the
/// database holds of it, and the session's key. Like a token, the secret
/// has 256 random bits, so a plain hash is enough.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionHash(pub [u8; 32]);

impl fmt::Debug for SessionHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Admin.allows(Role::Editor));
        assert!(Role::Editor.allows(Role::Viewer));
        assert!(Role::Editor.allows(Role::Editor));
        assert!(!Role::Viewer.allows(Role::Editor));
        assert!(!Role::Editor.allows(Role::Admin));
        for role in [Role::Viewer, Role::Editor, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert_eq!(Role::parse("root").unwrap_err().field, "role");
    }

    #[test]
    fn passwords_have_a_minimum_length_and_never_print() {
        let short = Password::new("eleven char".into()).unwrap_err();
        assert_eq!(short.field, "password");
        assert!(short.message.contains("12"), "{}", short.message);
        let ok = Password::new("twelve chars".into()).unwrap();
        assert_eq!(ok.expose(), "twelve chars");
        assert!(!format!("{ok:?}").contains("twelve"));
        // Characters, not bytes: twelve accented letters pass.
        assert!(Password::new("é".repeat(12)).is_ok());
        assert!(Password::new("x".repeat(PASSWORD_MAX_BYTES + 1)).is_err());
        assert!(Password::new("a long password\n".into()).is_err());
    }

    #[test]
    fn password_hashes_are_argon2id_phc_strings() {
        assert!(PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()).is_ok());
        for bad in ["", "hunter2", "$argon2i$v=19$m=1,t=1,p=1$a$b", "$2b$12$abc"] {
            assert!(PasswordHash::new(bad.into()).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_names_are_plain() {
        assert!(UserName::new("alice.ops-1").is_ok());
        for bad in ["", "a b", "<script>", &"x".repeat(65)] {
            assert_eq!(UserName::new(bad).unwrap_err().field, "name", "{bad}");
        }
    }
}
