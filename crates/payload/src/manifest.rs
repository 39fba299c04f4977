//! `manifest.yaml` v1: parsing into validated types, and canonical rendering.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::MANIFEST_VERSION;

/// Largest manifest accepted, so a hostile archive cannot make us parse gigabytes of YAML.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

/// Why a manifest was refused. `field` is the dotted path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid YAML: {0}")]
    Syntax(String),
    #[error("manifest field `{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

impl ManifestError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ManifestError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The offending field, if the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ManifestError::Invalid { field, .. } => Some(field),
            ManifestError::Syntax(_) => None,
        }
    }
}

/// The language a script is written in. Each maps to one entrypoint name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interpreter {
    Bash,
    Python,
    Node,
}

impl Interpreter {
    pub const ALL: [Interpreter; 3] = [Interpreter::Bash, Interpreter::Python, Interpreter::Node];

    /// Parses an interpreter name in any case; `nodejs` and `python3` are accepted
    /// because payloads from the original system used them.
    pub fn parse(name: &str) -> Option<Interpreter> {
        match name.trim().to_ascii_lowercase().as_str() {
            "bash" => Some(Interpreter::Bash),
            "python" | "python3" => Some(Interpreter::Python),
            "node" | "nodejs" => Some(Interpreter::Node),
            _ => None,
        }
    }

    /// Canonical name, as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Interpreter::Bash => "bash",
            Interpreter::Python => "python",
            Interpreter::Node => "node",
        }
    }

    /// The script's file name inside the payload.
    pub fn entrypoint(self) -> &'static str {
        match self {
            Interpreter::Bash => "script.sh",
            Interpreter::Python => "script.py",
            Interpreter::Node => "script.js",
        }
    }
}

impl fmt::Display for Interpreter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Interpreter {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Interpreter::parse(s).ok_or_else(|| {
            ManifestError::invalid(
                "interpreter",
                format!("unknown interpreter {s:?} (expected bash, python or node)"),
            )
        })
    }
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 256 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EnvKey(String);

impl EnvKey {
    pub fn new(name: &str) -> Result<EnvKey, String> {
        let mut chars = name.chars();
        let valid_start = matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic());
        if !valid_start || !chars.all(|c| c == '_' || c.is_ascii_alphanumeric()) {
            return Err(format!(
                "invalid variable name {name:?} (use letters, digits and `_`, not starting with a digit)"
            ));
        }
        if name.len() > 256 {
            return Err("variable name is longer than 256 bytes".into());
        }
        Ok(EnvKey(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks an environment value: it must be passable to `execve`, so no NUL byte.
pub fn check_env_value(value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err("value contains a NUL byte".into());
    }
    Ok(())
}

/// Where a payload came from. All fields are optional when reading, because
/// hand-made payloads may omit them; the builder always writes all three.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    pub event_id: Option<String>,
    pub event_version: Option<u64>,
    pub created_at: Option<DateTime<Utc>>,
}

/// A validated v1 manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub interpreter: Interpreter,
    pub environment: BTreeMap<EnvKey, String>,
    pub metadata: Metadata,
}

impl Manifest {
    /// The script's file name inside the payload (fixed by the interpreter).
    pub fn entrypoint(&self) -> &'static str {
        self.interpreter.entrypoint()
    }

    /// Parses and validates `manifest.yaml` text.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::Syntax(format!(
                "manifest is larger than {MAX_MANIFEST_BYTES} bytes"
            )));
        }
        let raw: RawManifest =
            serde_saphyr::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
        raw.validate()
    }

    /// Renders the manifest as canonical YAML: fixed key order, sorted environment.
    pub fn to_yaml(&self) -> String {
        let out = OutManifest {
            version: MANIFEST_VERSION,
            interpreter: self.interpreter.as_str(),
            entrypoint: self.entrypoint(),
            environment: &self.environment,
            metadata: OutMetadata {
                event_id: self.metadata.event_id.as_deref(),
                event_version: self.metadata.event_version,
                created_at: self
                    .metadata
                    .created_at
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            },
        };
        // Serializing plain strings and integers cannot fail.
        serde_saphyr::to_string(&out).expect("manifest serializes")
    }
}

#[derive(Serialize)]
struct OutManifest<'a> {
    version: &'static str,
    interpreter: &'static str,
    entrypoint: &'static str,
    environment: &'a BTreeMap<EnvKey, String>,
    metadata: OutMetadata<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutMetadata<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
}

/// Any YAML scalar. Hand-written manifests say `PORT: 8080` or `eventId: 123`
/// without quotes; we take such values as their text.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    /// Integers past `i64::MAX`, which `Int` cannot hold and `Float` would round.
    UInt(u64),
    Float(f64),
    Str(String),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::UInt(u) => u.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Str(s) => s,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: Option<Scalar>,
    interpreter: Option<String>,
    entrypoint: Option<String>,
    #[serde(default)]
    environment: Option<BTreeMap<String, Option<Scalar>>>,
    #[serde(default)]
    metadata: Option<RawMetadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMetadata {
    event_id: Option<Scalar>,
    event_version: Option<Scalar>,
    created_at: Option<String>,
}

impl RawManifest {
    fn validate(self) -> Result<Manifest, ManifestError> {
        let version = self
            .version
            .ok_or_else(|| ManifestError::invalid("version", "missing (expected v1)"))?
            .into_text();
        if version != MANIFEST_VERSION {
            return Err(ManifestError::invalid(
                "version",
                format!("unsupported version {version:?} (expected v1)"),
            ));
        }

        let interpreter: Interpreter = self
            .interpreter
            .ok_or_else(|| ManifestError::invalid("interpreter", "missing"))?
            .parse()?;

        let entrypoint = self
            .entrypoint
            .ok_or_else(|| ManifestError::invalid("entrypoint", "missing"))?;
        let entrypoint_name = entrypoint.strip_prefix("./").unwrap_or(&entrypoint);
        if entrypoint_name != interpreter.entrypoint() {
            return Err(ManifestError::invalid(
                "entrypoint",
                format!(
                    "{entrypoint:?} does not match interpreter {interpreter} (expected {})",
                    interpreter.entrypoint()
                ),
            ));
        }

        let mut environment = BTreeMap::new();
        for (name, value) in self.environment.unwrap_or_default() {
            let field = format!("environment.{name}");
            let key = EnvKey::new(&name).map_err(|r| ManifestError::invalid(&field, r))?;
            let value = value.map(Scalar::into_text).unwrap_or_default();
            check_env_value(&value).map_err(|r| ManifestError::invalid(&field, r))?;
            environment.insert(key, value);
        }

        let metadata = match self.metadata {
            None => Metadata::default(),
            Some(raw) => raw.validate()?,
        };
        Ok(Manifest {
            interpreter,
            environment,
            metadata,
        })
    }
}

impl RawMetadata {
    fn validate(self) -> Result<Metadata, ManifestError> {
        let event_version = match self.event_version {
            None => None,
            Some(Scalar::Int(v)) if v >= 1 => Some(v as u64),
            Some(Scalar::UInt(v)) => Some(v),
            Some(Scalar::Str(s)) if s.parse::<u64>().is_ok_and(|v| v >= 1) => s.parse().ok(),
            Some(other) => {
                return Err(ManifestError::invalid(
                    "metadata.eventVersion",
                    format!("expected a positive integer, got {:?}", other.into_text()),
                ));
            }
        };
        let created_at = match self.created_at {
            None => None,
            Some(text) => Some(
                DateTime::parse_from_rfc3339(&text)
                    .map_err(|e| {
                        ManifestError::invalid(
                            "metadata.createdAt",
                            format!("{text:?} is not an RFC 3339 timestamp: {e}"),
                        )
                    })?
                    .with_timezone(&Utc),
            ),
        };
        Ok(Metadata {
            event_id: self.event_id.map(Scalar::into_text),
            event_version,
            created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_EXAMPLE: &str = r#"version: v1
interpreter: bash
entrypoint: script.sh
environment:
  KEY: value
metadata:
  eventId: "123"
  eventVersion: 1
  createdAt: "2025-01-15T10:00:00Z"
"#;

    #[test]
    fn parses_the_contract_example() {
        let m = Manifest::parse(SEED_EXAMPLE).unwrap();
        assert_eq!(m.interpreter, Interpreter::Bash);
        assert_eq!(m.entrypoint(), "script.sh");
        assert_eq!(m.environment[&EnvKey::new("KEY").unwrap()], "value");
        assert_eq!(m.metadata.event_id.as_deref(), Some("123"));
        assert_eq!(m.metadata.event_version, Some(1));
        assert_eq!(
            m.metadata.created_at.unwrap().to_rfc3339(),
            "2025-01-15T10:00:00+00:00"
        );
    }

    #[test]
    fn canonical_yaml_round_trips() {
        let m = Manifest::parse(SEED_EXAMPLE).unwrap();
        let again = Manifest::parse(&m.to_yaml()).unwrap();
        assert_eq!(m, again);
        assert!(m.to_yaml().starts_with("version: v1\ninterpreter: bash\n"));
    }

    #[test]
    fn interpreter_names_in_any_case() {
        let table = [
            ("bash", Some(Interpreter::Bash)),
            ("BASH", Some(Interpreter::Bash)),
            ("Python", Some(Interpreter::Python)),
            ("python3", Some(Interpreter::Python)),
            ("NODE", Some(Interpreter::Node)),
            ("NODEJS", Some(Interpreter::Node)),
            ("nodejs", Some(Interpreter::Node)),
            ("ruby", None),
            ("", None),
            ("sh", None),
        ];
        for (name, want) in table {
            assert_eq!(Interpreter::parse(name), want, "{name:?}");
        }
    }

    #[test]
    fn unquoted_scalars_are_taken_as_text() {
        let m = Manifest::parse(
            "version: v1\ninterpreter: NODEJS\nentrypoint: ./script.js\nenvironment:\n  PORT: 8080\n  DEBUG: true\n  EMPTY:\nmetadata:\n  eventId: 42\n  eventVersion: \"3\"\n",
        )
        .unwrap();
        assert_eq!(m.interpreter, Interpreter::Node);
        let env = |k: &str| m.environment[&EnvKey::new(k).unwrap()].clone();
        assert_eq!(env("PORT"), "8080");
        assert_eq!(env("DEBUG"), "true");
        assert_eq!(env("EMPTY"), "");
        assert_eq!(m.metadata.event_id.as_deref(), Some("42"));
        assert_eq!(m.metadata.event_version, Some(3));
    }

    /// Each bad manifest must be refused with an error naming the field at fault.
    #[test]
    fn invalid_manifests_name_the_field() {
        let base = |version: &str, interp: &str, entry: &str, extra: &str| {
            format!("version: {version}\ninterpreter: {interp}\nentrypoint: {entry}\n{extra}")
        };
        let table = [
            (
                base("v2", "bash", "script.sh", ""),
                "version",
                "unsupported version",
            ),
            (
                "interpreter: bash\nentrypoint: script.sh\n".to_string(),
                "version",
                "missing",
            ),
            (
                base("v1", "ruby", "script.rb", ""),
                "interpreter",
                "unknown interpreter",
            ),
            (
                "version: v1\nentrypoint: script.sh\n".to_string(),
                "interpreter",
                "missing",
            ),
            (
                "version: v1\ninterpreter: bash\n".to_string(),
                "entrypoint",
                "missing",
            ),
            (
                base("v1", "bash", "script.py", ""),
                "entrypoint",
                "does not match",
            ),
            (
                base("v1", "python", "../script.py", ""),
                "entrypoint",
                "does not match",
            ),
            (
                base("v1", "bash", "script.sh", "environment:\n  1BAD: x\n"),
                "environment.1BAD",
                "invalid variable name",
            ),
            (
                base("v1", "bash", "script.sh", "environment:\n  HAS-DASH: x\n"),
                "environment.HAS-DASH",
                "invalid variable name",
            ),
            (
                base("v1", "bash", "script.sh", "environment:\n  K: \"a\\0b\"\n"),
                "environment.K",
                "NUL",
            ),
            (
                base("v1", "bash", "script.sh", "metadata:\n  eventVersion: 0\n"),
                "metadata.eventVersion",
                "positive integer",
            ),
            (
                base(
                    "v1",
                    "bash",
                    "script.sh",
                    "metadata:\n  createdAt: yesterday\n",
                ),
                "metadata.createdAt",
                "RFC 3339",
            ),
        ];
        for (text, field, reason) in table {
            let err = Manifest::parse(&text).expect_err(&text);
            assert_eq!(err.field(), Some(field), "{text}");
            assert!(err.to_string().contains(reason), "{err} for {text}");
        }
    }

    #[test]
    fn unknown_top_level_field_is_refused() {
        let err = Manifest::parse(
            "version: v1\ninterpreter: bash\nentrypoint: script.sh\nenviroment:\n  A: b\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("enviroment"), "{err}");
    }

    #[test]
    fn garbage_is_a_syntax_error() {
        assert!(matches!(
            Manifest::parse("{{{"),
            Err(ManifestError::Syntax(_))
        ));
        assert!(matches!(
            Manifest::parse("- a\n- b\n"),
            Err(ManifestError::Syntax(_))
        ));
    }
}
