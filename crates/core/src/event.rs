//! Events: what a user defines, the rules it must follow, and when its
//! payload must be regenerated.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cronium_payload::manifest::check_env_value;
use cronium_payload::{EnvKey, Interpreter, PayloadSpec};
use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::http::HttpSpec;
use crate::ids::{EventId, ServerId};
use crate::job::RunPolicy;
use crate::schedule::Schedule;

/// Largest script an event may hold.
pub const MAX_SCRIPT_BYTES: usize = 1024 * 1024;
/// Longest timeout an event may ask for (a week).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);
/// Most retries an event may ask for.
pub const MAX_RETRIES: u32 = 10;
/// Most bytes all environment values (plain and secret) may take together.
pub const MAX_ENV_BYTES: usize = 64 * 1024;
/// Most tags on one event.
pub const MAX_TAGS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Script,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Active,
    Paused,
    Draft,
    Archived,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunLocation {
    /// On the Cronium host, optionally sandboxed.
    Local,
    /// On the event's target servers, over SSH.
    Remote,
}

str_enum!(EventKind { Script = "script", Http = "http" });
str_enum!(EventStatus { Active = "active", Paused = "paused", Draft = "draft", Archived = "archived" });
str_enum!(RunLocation { Local = "local", Remote = "remote" });

/// An event name: 1–100 characters after trimming, no control characters.
/// Unique per owner (the store enforces that).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EventName(String);

impl EventName {
    pub fn new(text: &str) -> Result<EventName, ValidationError> {
        let name = text.trim();
        let invalid = |m: &str| ValidationError::new("name", m);
        if name.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if name.chars().count() > 100 {
            return Err(invalid("must be at most 100 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters"));
        }
        Ok(EventName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag: 1–50 characters from `[A-Za-z0-9._:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    pub fn new(text: &str) -> Result<Tag, ValidationError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "._:-".contains(c);
        if text.is_empty() || text.len() > 50 || !text.chars().all(ok_char) {
            return Err(ValidationError::new(
                "tags",
                format!("invalid tag {text:?} (1-50 characters: letters, digits, . _ : -)"),
            ));
        }
        Ok(Tag(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Secret environment values, sealed (encrypted) by the server before they
/// reach the domain or the store. The names are not secret and stay readable,
/// so they can be listed without the key; an empty map has no ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SealedSecrets {
    pub names: BTreeSet<EnvKey>,
    pub sealed: Vec<u8>,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, message)
}

/// Everything a user defines about an event, validated as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub name: EventName,
    pub description: String,
    pub kind: EventKind,
    /// Required for script events.
    pub interpreter: Option<Interpreter>,
    /// The script itself for script events.
    pub content: String,
    /// Non-secret environment: goes into the payload.
    pub env: BTreeMap<EnvKey, String>,
    /// Secret environment: never in a payload, sent to the runner at run time.
    pub secret_env: SealedSecrets,
    pub schedule: Schedule,
    pub status: EventStatus,
    pub run_location: RunLocation,
    pub target_servers: Vec<ServerId>,
    /// Servers by tag: every server holding any of these tags when a job
    /// starts, together with `target_servers` (resolved by the worker).
    pub target_tags: BTreeSet<Tag>,
    pub timeout: Duration,
    pub retries: u32,
    pub tags: BTreeSet<Tag>,
    /// Overlap, misfire, limits and retry timing.
    pub policy: RunPolicy,
    /// The request of an HTTP event; `None` for script events.
    pub http: Option<HttpSpec>,
}

impl EventSpec {
    /// The cross-field rules; per-field rules live in the field types.
    pub fn validate(self) -> Result<EventSpec, ValidationError> {
        let spec = match self.kind {
            EventKind::Script => self.validate_script()?,
            EventKind::Http => self.validate_http()?,
        };
        spec.validate_common()
    }

    fn validate_script(self) -> Result<EventSpec, ValidationError> {
        if self.interpreter.is_none() {
            return Err(invalid(
                "interpreter",
                "required for script events (bash, python or node)",
            ));
        }
        if self.content.trim().is_empty() {
            return Err(invalid("content", "the script must not be empty"));
        }
        if self.content.len() > MAX_SCRIPT_BYTES {
            return Err(invalid(
                "content",
                format!(
                    "the script is {} bytes; the limit is {MAX_SCRIPT_BYTES}",
                    self.content.len()
                ),
            ));
        }
        if self.http.is_some() {
            return Err(invalid("http", "only http events have a request"));
        }
        Ok(self)
    }

    fn validate_http(self) -> Result<EventSpec, ValidationError> {
        let Some(http) = self.http else {
            return Err(invalid("http", "required for http events"));
        };
        let http = http.validate()?;
        if self.interpreter.is_some() || !self.content.is_empty() {
            return Err(invalid(
                "content",
                "an http event has no script (its request is in http)",
            ));
        }
        if !self.env.is_empty() || !self.secret_env.names.is_empty() {
            return Err(invalid(
                "env",
                "an http event has no environment (its headers are in http)",
            ));
        }
        // The request is made by the Cronium server itself.
        if self.run_location != RunLocation::Local {
            return Err(invalid(
                "runLocation",
                "http events are sent from the Cronium server",
            ));
        }
        Ok(EventSpec {
            http: Some(http),
            ..self
        })
    }

    /// A name both `env` and `secretEnv` hold: one namespace, so a clash
    /// (an error naming `env.NAME`). The API answers it as a conflict
    /// rather than a malformed request, since no JSON Schema can say it.
    pub fn env_clash(&self) -> Result<(), ValidationError> {
        match self.env.keys().find(|k| self.secret_env.names.contains(*k)) {
            Some(key) => Err(invalid(format!("env.{key}"), "is also a secret variable")),
            None => Ok(()),
        }
    }

    /// The rules every kind of event follows.
    fn validate_common(self) -> Result<EventSpec, ValidationError> {
        self.env_clash()?;
        // Characters, as JSON Schema's maxLength counts them.
        if self.description.chars().count() > 10_000 {
            return Err(invalid("description", "must be at most 10000 characters"));
        }
        let mut env_bytes = self.secret_env.sealed.len();
        for (key, value) in &self.env {
            check_env_value(value).map_err(|m| invalid(format!("env.{key}"), m))?;
            env_bytes += key.as_str().len() + value.len();
        }
        if env_bytes > MAX_ENV_BYTES {
            return Err(invalid(
                "env",
                format!("environment is larger than {MAX_ENV_BYTES} bytes"),
            ));
        }
        let untargeted = self.target_servers.is_empty() && self.target_tags.is_empty();
        match (self.run_location, untargeted) {
            (RunLocation::Remote, true) => {
                return Err(invalid(
                    "targetServers",
                    "a remote event needs at least one server or server tag",
                ));
            }
            (RunLocation::Local, false) if self.target_servers.is_empty() => {
                return Err(invalid(
                    "targetTags",
                    "a local event has no target server tags",
                ));
            }
            (RunLocation::Local, false) => {
                return Err(invalid(
                    "targetServers",
                    "a local event has no target servers",
                ));
            }
            _ => {}
        }
        if self.target_tags.len() > MAX_TAGS {
            return Err(invalid(
                "targetTags",
                format!("at most {MAX_TAGS} server tags"),
            ));
        }
        let unique: BTreeSet<_> = self.target_servers.iter().collect();
        if unique.len() != self.target_servers.len() {
            return Err(invalid("targetServers", "lists a server twice"));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(invalid("timeout", "must be between 1s and 7d"));
        }
        if self.retries > MAX_RETRIES {
            return Err(invalid("retries", format!("must be at most {MAX_RETRIES}")));
        }
        if self.tags.len() > MAX_TAGS {
            return Err(invalid("tags", format!("at most {MAX_TAGS} tags")));
        }
        let schedule = self.schedule.clone().validate()?;
        let policy = self.policy.clone().validate()?;
        Ok(EventSpec {
            schedule,
            policy,
            ..self
        })
    }

    /// The payload for this event at `version`, or `None` if it has none
    /// (only script events have payloads). Secrets are not part of it.
    pub fn payload_spec(
        &self,
        event: EventId,
        version: u64,
        created_at: DateTime<Utc>,
    ) -> Option<PayloadSpec> {
        Some(PayloadSpec {
            interpreter: self
                .interpreter
                .filter(|_| self.kind == EventKind::Script)?,
            script: self.content.as_bytes().to_vec(),
            environment: self.env.clone(),
            event_id: event.to_string(),
            event_version: version,
            created_at,
        })
    }
}

/// Whether going from `old` to `new` needs a new payload version: only what
/// goes into the payload counts (script, interpreter, non-secret environment),
/// not renames, schedules, tags or secrets.
pub fn needs_new_payload(old: &EventSpec, new: &EventSpec) -> bool {
    new.kind == EventKind::Script
        && (old.kind != new.kind
            || old.content != new.content
            || old.interpreter != new.interpreter
            || old.env != new.env)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn spec() -> EventSpec {
        EventSpec {
            name: EventName::new("backup").unwrap(),
            description: String::new(),
            kind: EventKind::Script,
            interpreter: Some(Interpreter::Bash),
            content: "echo hi\n".into(),
            env: [(EnvKey::new("A").unwrap(), "1".into())].into(),
            secret_env: SealedSecrets::default(),
            schedule: Schedule::Manual,
            status: EventStatus::Active,
            run_location: RunLocation::Local,
            target_servers: vec![],
            target_tags: BTreeSet::new(),
            timeout: Duration::from_secs(3600),
            retries: 0,
            tags: BTreeSet::new(),
            policy: RunPolicy::default(),
            http: None,
        }
    }

    #[test]
    fn names_and_tags() {
        assert_eq!(
            EventName::new("  nightly backup ").unwrap().as_str(),
            "nightly backup"
        );
        for bad in ["", "   ", "a\nb", &"x".repeat(101)] {
            assert_eq!(EventName::new(bad).unwrap_err().field, "name", "{bad:?}");
        }
        assert!(Tag::new("prod:db-1.x_y").is_ok());
        for bad in ["", "with space", "ümlaut", &"t".repeat(51)] {
            assert_eq!(Tag::new(bad).unwrap_err().field, "tags", "{bad:?}");
        }
    }

    #[test]
    fn invalid_specs_name_the_field() {
        type Mutate = fn(&mut EventSpec);
        let table: [(&str, Mutate, &str); 17] = [
            ("no interpreter", |s| s.interpreter = None, "interpreter"),
            ("empty script", |s| s.content = " \n".into(), "content"),
            (
                "huge script",
                |s| s.content = "#".repeat(MAX_SCRIPT_BYTES + 1),
                "content",
            ),
            (
                "http without a request",
                |s| s.kind = EventKind::Http,
                "http",
            ),
            (
                "remote without servers",
                |s| s.run_location = RunLocation::Remote,
                "targetServers",
            ),
            (
                "local with servers",
                |s| s.target_servers = vec![ServerId(1)],
                "targetServers",
            ),
            (
                "local with server tags",
                |s| {
                    s.target_tags.insert(Tag::new("web").unwrap());
                },
                "targetTags",
            ),
            ("zero timeout", |s| s.timeout = Duration::ZERO, "timeout"),
            (
                "week+ timeout",
                |s| s.timeout = MAX_TIMEOUT + Duration::from_secs(1),
                "timeout",
            ),
            (
                "too many retries",
                |s| s.retries = MAX_RETRIES + 1,
                "retries",
            ),
            (
                "NUL in env",
                |s| {
                    s.env.insert(EnvKey::new("B").unwrap(), "a\0b".into());
                },
                "env.B",
            ),
            (
                "secret and plain",
                |s| {
                    s.secret_env.names.insert(EnvKey::new("A").unwrap());
                },
                "env.A",
            ),
            ("a script with a request", |s| s.http = Some(http()), "http"),
            (
                "http with a script",
                |s| {
                    s.kind = EventKind::Http;
                    s.http = Some(http());
                    s.env.clear();
                },
                "content",
            ),
            (
                "http with an environment",
                |s| *s = http_event(|s| s.env = spec().env),
                "env",
            ),
            (
                "http on servers",
                |s| {
                    *s = http_event(|s| {
                        s.run_location = RunLocation::Remote;
                        s.target_servers = vec![ServerId(1)];
                    })
                },
                "runLocation",
            ),
            (
                "http to a bad URL",
                |s| *s = http_event(|s| s.http.as_mut().unwrap().url = "ftp://x/".into()),
                "http.url",
            ),
        ];
        for (what, mutate, field) in table {
            let mut s = spec();
            mutate(&mut s);
            assert_eq!(s.validate().unwrap_err().field, field, "{what}");
        }
        assert!(spec().validate().is_ok());
        assert!(http_event(|_| {}).validate().is_ok());
        let mut by_tag = spec();
        by_tag.run_location = RunLocation::Remote;
        by_tag.target_tags.insert(Tag::new("web").unwrap());
        assert!(by_tag.clone().validate().is_ok(), "a tag alone targets");
        by_tag.target_servers = vec![ServerId(1)];
        assert!(by_tag.validate().is_ok(), "servers and tags together");
    }

    fn http() -> HttpSpec {
        HttpSpec {
            method: crate::http::HttpMethod::Post,
            url: "https://hooks.example.com/x".into(),
            headers: BTreeMap::new(),
            secret_headers: Default::default(),
            body: Some("{}".into()),
            expect_status: vec![],
        }
    }

    /// A valid http event, changed by `change`.
    fn http_event(change: impl FnOnce(&mut EventSpec)) -> EventSpec {
        let mut s = EventSpec {
            kind: EventKind::Http,
            interpreter: None,
            content: String::new(),
            env: BTreeMap::new(),
            http: Some(http()),
            ..spec()
        };
        change(&mut s);
        s
    }

    #[test]
    fn only_payload_inputs_trigger_a_new_version() {
        type Mutate = fn(&mut EventSpec);
        let table: [(&str, Mutate, bool); 8] = [
            ("script", |s| s.content.push('#'), true),
            (
                "interpreter",
                |s| s.interpreter = Some(Interpreter::Python),
                true,
            ),
            (
                "env value",
                |s| {
                    s.env.insert(EnvKey::new("A").unwrap(), "2".into());
                },
                true,
            ),
            (
                "rename",
                |s| s.name = EventName::new("other").unwrap(),
                false,
            ),
            (
                "schedule",
                |s| s.schedule = Schedule::every("5m").unwrap(),
                false,
            ),
            (
                "tags",
                |s| {
                    s.tags.insert(Tag::new("x").unwrap());
                },
                false,
            ),
            ("secret", |s| s.secret_env.sealed = vec![1, 2, 3], false),
            ("status", |s| s.status = EventStatus::Paused, false),
        ];
        for (what, mutate, want) in table {
            let mut new = spec();
            mutate(&mut new);
            assert_eq!(needs_new_payload(&spec(), &new), want, "{what}");
        }
    }

    #[test]
    fn the_payload_carries_script_and_plain_env_only() {
        let mut s = spec();
        s.secret_env.names.insert(EnvKey::new("TOKEN").unwrap());
        let p = s
            .payload_spec(EventId(7), 2, "2026-01-01T00:00:00Z".parse().unwrap())
            .unwrap();
        assert_eq!(p.event_id, "7");
        assert_eq!(p.event_version, 2);
        assert_eq!(p.script, b"echo hi\n");
        assert_eq!(p.environment.len(), 1);
        assert!(!p.environment.contains_key(&EnvKey::new("TOKEN").unwrap()));
    }
}
