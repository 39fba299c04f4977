//! Variables scripts share across runs (per owner, optionally secret), the compare-and-set expectation, and the hard limits of runtime helpers.
//!
//! A key is pasted into CLI arguments, URLs and log lines, so it is held to
//! a strict alphabet here, once; every edge (API, CLI, helper calls) parses
//! into a [`VariableKey`] before anything else looks at it.

use chrono::{DateTime, Utc};

use crate::{JobId, UserId, ValidationError};

/// The most characters a variable key may have.
pub const MAX_KEY_CHARS: usize = 128;
/// The most bytes a variable's value may take as compact JSON (64 KiB).
pub const MAX_VARIABLE_BYTES: usize = 64 * 1024;
/// The most bytes a run's output may take as compact JSON (1 MiB).
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// The most helper calls one attempt may make; later calls fail with `limit`.
pub const MAX_HELPER_CALLS: u32 = 10_000;

/// A variable's name: 1–128 characters from `[A-Za-z0-9_.-]`, starting with
/// a letter, a digit or `_` (so never `.`-hidden, never an option `-x`, and
/// never anything a shell or a path would read specially).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct VariableKey(String);

impl VariableKey {
    pub fn new(text: &str) -> Result<VariableKey, ValidationError> {
        let refuse = |why: &str| {
            Err(ValidationError::new(
                "key",
                format!(
                    "invalid variable key {text:?}: {why} (1-{MAX_KEY_CHARS} characters from \
                     A-Z a-z 0-9 _ . -, starting with a letter, digit or _)"
                ),
            ))
        };
        let Some(first) = text.chars().next() else {
            return refuse("it is empty");
        };
        if text.chars().count() > MAX_KEY_CHARS {
            return refuse("it is too long");
        }
        if !(first.is_ascii_alphanumeric() || first == '_') {
            return refuse("it must not start with this character");
        }
        if !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return refuse("it holds a character that is not allowed");
        }
        Ok(VariableKey(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for VariableKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A variable as listings show it: a secret one's value is never shown
/// (`value` is `None`), only that it is secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub owner: UserId,
    pub key: VariableKey,
    /// The value; `None` for a secret variable.
    pub value: Option<serde_json::Value>,
    pub secret: bool,
    /// From 1, raised by every write: whoever read version n and sees n
    /// again knows nothing changed in between.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The job whose script wrote it last; `None` for a write through the
    /// API (the audit log says who).
    pub updated_by_job: Option<JobId>,
}

/// What a write expects of the current value (compare-and-set).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Expect {
    /// Whatever it is, or none: a plain write.
    #[default]
    Any,
    /// The variable must not exist.
    Absent,
    /// The variable must exist and hold exactly this value (JSON equality:
    /// object key order and white space do not matter; `1` and `1.0` are
    /// different numbers).
    Value(serde_json::Value),
}

impl Expect {
    /// Whether the current value (`None`: no such variable) meets it.
    pub fn holds(&self, current: Option<&serde_json::Value>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Value(expected) => current == Some(expected),
        }
    }
}

/// Refuses a value over `limit` bytes of compact JSON; returns its size.
/// `field` names the value in the error.
pub fn check_json_size(
    value: &serde_json::Value,
    limit: usize,
    field: &str,
) -> Result<usize, ValidationError> {
    let size = compact_json_len(value);
    if size > limit {
        return Err(ValidationError::new(
            field,
            format!("the value takes {size} bytes as compact JSON; the limit is {limit}"),
        ));
    }
    Ok(size)
}

/// The length of `value` as compact JSON, without building the text.
fn compact_json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing into a counter cannot fail, and a `Value` always serializes.
    serde_json::to_writer(&mut count, value).expect("a JSON value serializes");
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_follow_the_rule() {
        let long_ok = "k".repeat(MAX_KEY_CHARS);
        let too_long = "k".repeat(MAX_KEY_CHARS + 1);
        let cases: &[(&str, bool)] = &[
            ("a", true),
            ("counter_1", true),
            ("web-1.last", true),
            ("_private", true),
            ("9lives", true),
            (&long_ok, true),
            ("a;rm -rf /", false),
            ("$(id)", false),
            ("../x", false),
            (".x", false),
            ("-x", false),
            ("a\nb", false),
            ("a b", false),
            ("a/b", false),
            ("ä", false),
            ("", false),
            (&too_long, false),
        ];
        for (key, ok) in cases {
            let parsed = VariableKey::new(key);
            assert_eq!(parsed.is_ok(), *ok, "{key:?}: {parsed:?}");
            match parsed {
                Ok(k) => assert_eq!(k.as_str(), *key),
                Err(e) => assert_eq!(e.field, "key"),
            }
        }
    }

    #[test]
    fn expectations_compare_json_values() {
        let one = json!({"a": 1, "b": [true, null]});
        assert!(Expect::Any.holds(None));
        assert!(Expect::Any.holds(Some(&one)));
        assert!(Expect::Absent.holds(None));
        assert!(!Expect::Absent.holds(Some(&one)));
        let same: serde_json::Value = serde_json::from_str(r#"{"b":[true,null],"a":1}"#).unwrap();
        assert!(Expect::Value(same).holds(Some(&one)));
        assert!(!Expect::Value(json!({"a": 2})).holds(Some(&one)));
        assert!(!Expect::Value(json!(null)).holds(None));
    }

    #[test]
    fn sizes_are_counted_as_compact_json() {
        let v = json!({"k": "x".repeat(10)});
        let exact = serde_json::to_string(&v).unwrap().len();
        assert_eq!(check_json_size(&v, exact, "value"), Ok(exact));
        let e = check_json_size(&v, exact - 1, "value").unwrap_err();
        assert_eq!(e.field, "value");
        assert!(e.message.contains(&exact.to_string()), "{}", e.message);
    }
}
