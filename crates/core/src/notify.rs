//! Notifications: channels (where a message goes) and an event's actions (which of its endings send one).
//!
//! A channel's secret (a webhook's signing key) arrives here sealed, like
//! server credentials. Where a channel's URL may point is the SSRF guard's
//! business (`cronium-exec`), not this module's: it only checks that the
//! URL is well-formed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::job::JobStatus;
use crate::{ValidationError, http};

/// What kind of receiver a channel is. Webhooks for now: a JSON `POST`
/// signed the Standard Webhooks way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Webhook,
}

str_enum!(ChannelKind { Webhook = "webhook" });

/// A channel name: 1–64 characters from `[A-Za-z0-9._-]`, unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ChannelName(String);

impl ChannelName {
    pub fn new(text: &str) -> Result<ChannelName, ValidationError> {
        let ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if text.is_empty() || text.len() > 64 || !text.chars().all(ok) {
            return Err(ValidationError::new(
                "name",
                format!("invalid channel name {text:?} (1-64 characters: letters, digits, . _ -)"),
            ));
        }
        Ok(ChannelName(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A channel as users define it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    pub name: ChannelName,
    pub kind: ChannelKind,
    /// Where the message is posted: an `http`/`https` URL.
    pub url: String,
    /// The signing secret (`whsec_…`), sealed by the server; never returned.
    pub sealed_secret: Vec<u8>,
}

impl ChannelSpec {
    pub fn validate(self) -> Result<ChannelSpec, ValidationError> {
        http::validate_url(&self.url).map_err(|e| ValidationError::new("url", e.message))?;
        if self.sealed_secret.is_empty() {
            return Err(ValidationError::new(
                "secret",
                "a webhook needs a signing secret",
            ));
        }
        Ok(self)
    }
}

/// Which endings of a job an action fires on. It fires once per job, on
/// its final result (never for an attempt that will be retried).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// The job succeeded.
    Success,
    /// The job failed, timed out, or failed on some of its servers (partial).
    Failure,
    /// Any ending of a job that ran, cancelled included.
    Always,
}

str_enum!(When {
    Success = "success",
    Failure = "failure",
    Always = "always",
});

impl When {
    /// Whether a job that ended `status` fires an action of this kind.
    /// Jobs that never ran (missed, skipped) fire nothing.
    pub fn matches(self, status: JobStatus) -> bool {
        let ran = matches!(
            status,
            JobStatus::Succeeded
                | JobStatus::Failed
                | JobStatus::TimedOut
                | JobStatus::Partial
                | JobStatus::Cancelled
        );
        match self {
            When::Success => status == JobStatus::Succeeded,
            When::Failure => matches!(
                status,
                JobStatus::Failed | JobStatus::TimedOut | JobStatus::Partial
            ),
            When::Always => ran,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_fire_on_the_endings_they_name_and_never_on_runs_that_did_not_happen() {
        use JobStatus::*;
        let table = [
            (When::Success, Succeeded, true),
            (When::Success, Failed, false),
            (When::Failure, Failed, true),
            (When::Failure, TimedOut, true),
            (When::Failure, Partial, true),
            (When::Failure, Succeeded, false),
            (When::Failure, Cancelled, false),
            (When::Always, Succeeded, true),
            (When::Always, Cancelled, true),
            (When::Always, Missed, false),
            (When::Always, Skipped, false),
            (When::Always, Queued, false),
            (When::Always, Running, false),
        ];
        for (when, status, fires) in table {
            assert_eq!(when.matches(status), fires, "{when} on {status}");
        }
    }

    #[test]
    fn a_channel_needs_a_url_and_a_secret() {
        let spec = |url: &str, secret: Vec<u8>| ChannelSpec {
            name: ChannelName::new("ops").unwrap(),
            kind: ChannelKind::Webhook,
            url: url.into(),
            sealed_secret: secret,
        };
        assert!(
            spec("https://hooks.example.com/x", vec![1])
                .validate()
                .is_ok()
        );
        assert_eq!(
            spec("ftp://x/", vec![1]).validate().unwrap_err().field,
            "url"
        );
        assert_eq!(
            spec("https://x/", vec![]).validate().unwrap_err().field,
            "secret"
        );
        assert!(ChannelName::new("has space").is_err());
    }
}
