//! Notifications: channels (where a message goes) and an event's actions (which of its endings send one).
//!
//! A channel's secret arrives here sealed, like server credentials: a
//! webhook's signing key, or a Slack or Discord channel's whole URL, since
//! anyone holding an incoming-webhook URL can post to it. Such a channel's
//! `url` is only a redacted form ([`redact_url`]) for people to recognise. Where a channel's URL may point is the SSRF guard's
//! business (`cronium-exec`), not this module's: it only checks that the
//! URL is well-formed.

use serde::{Deserialize, Serialize};

use crate::job::JobStatus;
use crate::{ChannelId, EventId, ValidationError, http};

/// What kind of receiver a channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// A JSON `POST` signed the Standard Webhooks way.
    Webhook,
    /// A Slack incoming webhook (`{"text": …}`); its URL is the secret.
    Slack,
    /// A Discord webhook (`{"content": …}`); its URL is the secret.
    Discord,
}

str_enum!(ChannelKind {
    Webhook = "webhook",
    Slack = "slack",
    Discord = "discord",
});

impl ChannelKind {
    /// Whether the channel's URL is its secret (sealed, shown redacted)
    /// rather than a signing key beside a plain URL.
    pub fn url_is_secret(self) -> bool {
        matches!(self, ChannelKind::Slack | ChannelKind::Discord)
    }
}

/// How many trailing path segments [`redact_url`] always hides: Slack's
/// `/services/T…/B…/token` and Discord's `/api/webhooks/id/token` end in
/// their secret parts.
const HIDDEN_TAIL: usize = 2;

/// A chat URL as people may see it: scheme, host and the leading path
/// segments that are plain lowercase words (`https://hooks.slack.com/services/…`).
/// The last two segments, anything with a digit or a capital, the query
/// and the fragment never show, so the token a hook's URL carries cannot.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let mut parts = rest[..end].split('/');
    let host = parts.next().unwrap_or_default();
    let segments: Vec<&str> = parts.filter(|s| !s.is_empty()).collect();
    let shown = segments
        .iter()
        .take(segments.len().saturating_sub(HIDDEN_TAIL))
        .take_while(|s| s.len() <= 16 && s.bytes().all(|b| b.is_ascii_lowercase()));
    let mut out = format!("{scheme}://{host}");
    for segment in shown {
        out.push('/');
        out.push_str(segment);
    }
    out.push_str("/…");
    out
}

plain_name!(
    /// A channel name: 1–64 characters from `[A-Za-z0-9._-]`, unique.
    ChannelName,
    "channel"
);

/// A channel as users define it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    pub name: ChannelName,
    pub kind: ChannelKind,
    /// A webhook's `http`/`https` URL; for a chat kind, only the redacted
    /// form of the sealed one ([`redact_url`]).
    pub url: String,
    /// Sealed by the server, never returned: a webhook's signing secret
    /// (`whsec_…`), or a chat kind's whole URL.
    pub sealed_secret: Vec<u8>,
}

impl ChannelSpec {
    pub fn validate(self) -> Result<ChannelSpec, ValidationError> {
        if self.kind.url_is_secret() {
            // Only the redacted form is here; the sealed URL was checked
            // (without quoting it) before it was sealed.
            if !self.url.ends_with('…') {
                return Err(ValidationError::new(
                    "url",
                    "a chat channel keeps only its redacted URL in the clear",
                ));
            }
        } else {
            http::validate_url(&self.url).map_err(|e| ValidationError::new("url", e.message))?;
        }
        if self.sealed_secret.is_empty() {
            let why = if self.kind.url_is_secret() {
                "a chat channel needs its sealed URL"
            } else {
                "a webhook needs a signing secret"
            };
            return Err(ValidationError::new("secret", why));
        }
        Ok(self)
    }
}

/// Checks a chat channel's URL before it is sealed. The message never
/// quotes the URL, which carries the hook's token.
pub fn validate_chat_url(url: &str) -> Result<(), ValidationError> {
    http::validate_url(url).map_err(|e| {
        let why = if e.message.contains("not an http") {
            "is not an http:// or https:// URL".to_string()
        } else if url.contains(char::is_whitespace) || url.contains(char::is_control) {
            "must not contain spaces or control characters".to_string()
        } else {
            "is not a valid URL".to_string()
        };
        ValidationError::new("url", why)
    })
}

/// When an action fires. The endings (`success`, `failure`, `always`) fire
/// once per job, on its final result (never for an attempt that will be
/// retried); `start` once, when the job's first attempt starts running;
/// `duration_exceeded` once, when an attempt has run longer than the
/// action's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// The job succeeded.
    Success,
    /// The job failed, timed out, or failed on some of its servers (partial).
    Failure,
    /// Any ending of a job that ran, cancelled included.
    Always,
    /// The job started running.
    Start,
    /// The job is still running after the action's threshold.
    DurationExceeded,
}

str_enum!(When {
    Success = "success",
    Failure = "failure",
    Always = "always",
    Start = "start",
    DurationExceeded = "duration_exceeded",
});

impl When {
    /// Whether it fires on a job's final result (rather than while it runs).
    pub fn on_end(self) -> bool {
        matches!(self, When::Success | When::Failure | When::Always)
    }

    /// Whether a job that ended `status` fires an action of this kind.
    /// Jobs that never ran (missed, skipped) fire nothing, and neither do
    /// the kinds that fire while a job runs.
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
            When::Start | When::DurationExceeded => false,
        }
    }
}

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionTarget {
    /// Sends a message to a channel.
    Notify(ChannelId),
    /// Starts a job of another event (or the same one), whose context names
    /// the job that started it.
    RunEvent(EventId),
}

impl ActionTarget {
    /// The kind's name in the API: `notify` or `run_event`.
    pub fn kind(self) -> &'static str {
        match self {
            ActionTarget::Notify(_) => "notify",
            ActionTarget::RunEvent(_) => "run_event",
        }
    }
}

/// The longest `duration_exceeded` threshold: 30 days.
pub const MAX_DURATION_THRESHOLD_SECS: u64 = 30 * 24 * 3600;

/// An action as users define it, checked: a `duration_exceeded` action has
/// a threshold and nothing else does, and only notifications fire while a
/// job runs (a chain starts from a result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionSpec {
    pub when: When,
    /// Seconds an attempt may run before a `duration_exceeded` action fires.
    pub after_secs: Option<u64>,
    pub target: ActionTarget,
}

impl ActionSpec {
    pub fn new(
        when: When,
        after_secs: Option<u64>,
        target: ActionTarget,
    ) -> Result<ActionSpec, ValidationError> {
        match (when, after_secs) {
            (When::DurationExceeded, None) => {
                return Err(ValidationError::new(
                    "after",
                    "required for duration_exceeded: how long a run may take",
                ));
            }
            (When::DurationExceeded, Some(secs))
                if secs == 0 || secs > MAX_DURATION_THRESHOLD_SECS =>
            {
                return Err(ValidationError::new(
                    "after",
                    "must be from 1 second to 30 days",
                ));
            }
            (When::DurationExceeded, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(ValidationError::new(
                    "after",
                    "only a duration_exceeded action has a threshold",
                ));
            }
        }
        if !when.on_end() && matches!(target, ActionTarget::RunEvent(_)) {
            return Err(ValidationError::new(
                "when",
                format!(
                    "a run_event action fires on a result (success, failure or always), not on {when}"
                ),
            ));
        }
        Ok(ActionSpec {
            when,
            after_secs,
            target,
        })
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
            (When::Start, Succeeded, false),
            (When::DurationExceeded, Failed, false),
        ];
        for (when, status, fires) in table {
            assert_eq!(when.matches(status), fires, "{when} on {status}");
        }
    }

    #[test]
    fn an_action_is_checked_as_a_whole() {
        let notify = ActionTarget::Notify(ChannelId(1));
        let run = ActionTarget::RunEvent(EventId(2));
        let table = [
            (When::Failure, None, notify, None),
            (When::Success, None, run, None),
            (When::Start, None, notify, None),
            (When::DurationExceeded, Some(600), notify, None),
            (When::DurationExceeded, None, notify, Some("after")),
            (When::DurationExceeded, Some(0), notify, Some("after")),
            (
                When::DurationExceeded,
                Some(MAX_DURATION_THRESHOLD_SECS + 1),
                notify,
                Some("after"),
            ),
            (When::Failure, Some(5), notify, Some("after")),
            (When::Start, None, run, Some("when")),
            (When::DurationExceeded, Some(5), run, Some("when")),
        ];
        for (when, after, target, error) in table {
            let got = ActionSpec::new(when, after, target).err().map(|e| e.field);
            assert_eq!(got.as_deref(), error, "{when} {after:?} {}", target.kind());
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

    #[test]
    fn a_chat_url_is_shown_without_its_token() {
        let table = [
            (
                "https://hooks.slack.com/services/T0001/B0002/XXXXsecret",
                "https://hooks.slack.com/services/…",
            ),
            (
                "https://discord.com/api/webhooks/123456/tok-EN_abc",
                "https://discord.com/api/webhooks/…",
            ),
            // Two lowercase words at the end are still hidden: they may be the token.
            (
                "http://127.0.0.1:9/hook/abc/def",
                "http://127.0.0.1:9/hook/…",
            ),
            ("https://h.example/?token=abc", "https://h.example/…"),
            ("https://h.example/a/Secret/b/c", "https://h.example/a/…"),
        ];
        for (url, shown) in table {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn a_chat_channel_keeps_only_the_redacted_url_and_needs_the_sealed_one() {
        let spec = |url: &str, secret: Vec<u8>| ChannelSpec {
            name: ChannelName::new("chat").unwrap(),
            kind: ChannelKind::Slack,
            url: url.into(),
            sealed_secret: secret,
        };
        assert!(
            spec("https://hooks.slack.com/services/…", vec![1])
                .validate()
                .is_ok()
        );
        let clear = spec("https://hooks.slack.com/services/T1/B2/x", vec![1]);
        assert_eq!(clear.validate().unwrap_err().field, "url");
        let unsealed = spec("https://hooks.slack.com/services/…", vec![]);
        assert_eq!(unsealed.validate().unwrap_err().field, "secret");
        let error = validate_chat_url("ftp://hooks.slack.com/services/T1/B2/tok").unwrap_err();
        assert!(!error.message.contains("tok"), "{}", error.message);
    }
}
