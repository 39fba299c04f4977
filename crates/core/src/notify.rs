//! Notifications: channels (where a message goes) and an event's actions (which of its endings send one).
//!
//! A channel's secret arrives here sealed, like server credentials: a
//! webhook's signing key, or a Slack or Discord channel's whole URL, since
//! anyone holding an incoming-webhook URL can post to it. Such a channel's
//! `url` is only a redacted form ([`redact_url`]) for people to recognise. Where a channel's URL may point is the SSRF guard's
//! business (`cronium-exec`), not this module's: it only checks that the
//! URL is well-formed.
//!
//! An email channel has no URL of its own: its settings ([`EmailSettings`],
//! the recipients, the sender and the relay) are kept in the clear, its
//! `url` is the relay as `smtp://host:port` for people to recognise, and its
//! sealed secret is the relay's password, if it takes one.

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
    /// A plain-text mail through an SMTP relay; its password is the secret.
    Email,
}

str_enum!(ChannelKind {
    Webhook = "webhook",
    Slack = "slack",
    Discord = "discord",
    Email = "email",
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
    /// (`whsec_…`), a chat kind's whole URL, or an email relay's password
    /// (empty when the relay takes none).
    pub sealed_secret: Vec<u8>,
    /// An email channel's settings, without the password; `None` for
    /// every other kind.
    pub email: Option<EmailSettings>,
}

impl ChannelSpec {
    pub fn validate(self) -> Result<ChannelSpec, ValidationError> {
        if self.kind == ChannelKind::Email {
            return self.validate_email();
        }
        if self.email.is_some() {
            return Err(ValidationError::new(
                "email",
                format!("a {} channel has no email settings", self.kind),
            ));
        }
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

    fn validate_email(self) -> Result<ChannelSpec, ValidationError> {
        let Some(email) = self.email.clone() else {
            return Err(ValidationError::new(
                "email",
                "an email channel needs its settings",
            ));
        };
        let email = email.validate()?;
        if self.url != email.relay_url() {
            return Err(ValidationError::new(
                "url",
                "an email channel's URL is its relay, smtp://host:port",
            ));
        }
        let has_password = !self.sealed_secret.is_empty();
        match (&email.username, has_password) {
            (Some(_), false) => {
                return Err(ValidationError::new(
                    "email.password",
                    "required with a username",
                ));
            }
            (None, true) => {
                return Err(ValidationError::new(
                    "email.username",
                    "required with a password",
                ));
            }
            _ => {}
        }
        if has_password && email.tls == SmtpTls::None {
            return Err(ValidationError::new(
                "email.password",
                "a password is never sent without TLS: use tls \"starttls\" or \"tls\"",
            ));
        }
        Ok(ChannelSpec {
            email: Some(email),
            ..self
        })
    }
}

/// How a mail reaches its relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP, then `STARTTLS` (required: a relay that does not offer
    /// it is an error, never a fallback to clear text). Port 587.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS). Port 465.
    Tls,
    /// No encryption at all, for a relay on a trusted network. Port 25.
    None,
}

str_enum!(SmtpTls {
    Starttls = "starttls",
    Tls = "tls",
    None = "none",
});

impl SmtpTls {
    /// The port a relay given without one listens on.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// The most recipients one email channel has: a channel is a team's
/// address or a few people, not a mailing list.
pub const MAX_RECIPIENTS: usize = 20;
/// The longest CA certificate (PEM) a channel keeps.
pub const MAX_CA_CERT: usize = 64 * 1024;
/// The longest relay user name.
const MAX_USERNAME: usize = 256;

/// An email address as a mail's envelope and headers carry it:
/// `local@domain`, the local part a dot-atom (RFC 5322's `atext` and dots,
/// no quoted strings), the domain a DNS name (ASCII). Stricter than the
/// RFCs, so that anything it takes every relay and mail library takes, and
/// no address can carry a line break or a display name into a header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn new(text: &str, field: &str) -> Result<EmailAddress, ValidationError> {
        let invalid = |why: &str| {
            ValidationError::new(field, format!("{text:?} is not an email address ({why})"))
        };
        let Some((local, domain)) = text.rsplit_once('@') else {
            return Err(invalid("no @"));
        };
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
        if local.is_empty()
            || local.len() > 64
            || local
                .split('.')
                .any(|atom| atom.is_empty() || !atom.chars().all(atext))
        {
            return Err(invalid(
                "the part before @ must be letters, digits, dots and !#$%&'*+/=?^_`{|}~-",
            ));
        }
        if !is_dns_name(domain) {
            return Err(invalid("the part after @ must be a domain name"));
        }
        if text.len() > 254 {
            return Err(invalid("longer than 254 characters"));
        }
        Ok(EmailAddress(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = String;

    fn try_from(text: String) -> Result<EmailAddress, String> {
        EmailAddress::new(&text, "email").map_err(|e| e.message)
    }
}

impl From<EmailAddress> for String {
    fn from(a: EmailAddress) -> String {
        a.0
    }
}

impl std::fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Labels of 1–63 letters, digits and hyphens (not at either end), at
/// least two of them, at most 253 bytes, the last not all digits.
fn is_dns_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && !labels
            .last()
            .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()))
}

/// An email channel's settings, without the password (sealed apart, in
/// [`ChannelSpec::sealed_secret`]). Stored as JSON, read back through
/// [`EmailSettings::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailSettings {
    /// 1 to [`MAX_RECIPIENTS`] addresses, without repeats.
    pub to: Vec<EmailAddress>,
    pub from: EmailAddress,
    /// The relay: a DNS name, or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// Who the relay authenticates (AUTH PLAIN or LOGIN); the password is
    /// sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// PEM certificates trusted besides the public roots, for a relay
    /// signed by a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

impl EmailSettings {
    pub fn validate(self) -> Result<EmailSettings, ValidationError> {
        if self.to.is_empty() || self.to.len() > MAX_RECIPIENTS {
            return Err(ValidationError::new(
                "email.to",
                format!("1 to {MAX_RECIPIENTS} recipients; got {}", self.to.len()),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for to in &self.to {
            if !seen.insert(to.as_str().to_ascii_lowercase()) {
                return Err(ValidationError::new(
                    "email.to",
                    format!("{to} is listed twice"),
                ));
            }
        }
        let (host, port) = parse_relay(&self.relay(), self.tls)?;
        if host != self.host || port != self.port || port == 0 {
            return Err(ValidationError::new("email.smtp", "not a valid relay"));
        }
        if let Some(user) = &self.username
            && (user.is_empty() || user.len() > MAX_USERNAME || user.contains(char::is_control))
        {
            return Err(ValidationError::new(
                "email.username",
                format!("1 to {MAX_USERNAME} characters, no control characters"),
            ));
        }
        if let Some(pem) = &self.ca_cert {
            check_ca_cert(pem)?;
        }
        Ok(self)
    }

    /// `host:port` (`[v6]:port`), as written in the API.
    pub fn relay(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `smtp://host:port`: the channel's `url`.
    pub fn relay_url(&self) -> String {
        format!("smtp://{}", self.relay())
    }
}

/// A relay as written (`host`, `host:port`, `[v6]:port`, a bare IPv6
/// address): its host and port, the port `tls`'s default when not given.
pub fn parse_relay(text: &str, tls: SmtpTls) -> Result<(String, u16), ValidationError> {
    let invalid = |why: &str| {
        ValidationError::new(
            "email.smtp",
            format!("{text:?} is not a relay: {why} (host or host:port)"),
        )
    };
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid("an unclosed ["))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| invalid("junk after ]"))?),
        };
        (host, port)
    } else if text.matches(':').count() > 1 {
        (text, None)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        None => tls.default_port(),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(invalid("the port must be 1-65535")),
        },
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    if !is_ip && !is_dns_name(&host) && host != "localhost" {
        return Err(invalid("the host must be a DNS name or an IP address"));
    }
    Ok((host, port))
}

/// A CA certificate as a channel keeps it: PEM, at most [`MAX_CA_CERT`]
/// bytes. Whether the certificates in it parse is the sender's to say
/// (`cronium-exec`), when the channel is saved.
pub fn check_ca_cert(pem: &str) -> Result<(), ValidationError> {
    if pem.len() > MAX_CA_CERT {
        return Err(ValidationError::new(
            "email.caCert",
            format!("longer than {MAX_CA_CERT} bytes"),
        ));
    }
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(ValidationError::new(
            "email.caCert",
            "not a PEM certificate (-----BEGIN CERTIFICATE-----…)",
        ));
    }
    Ok(())
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
    /// The job succeeded and its script set its condition to true.
    Condition,
}

str_enum!(When {
    Success = "success",
    Failure = "failure",
    Always = "always",
    Start = "start",
    DurationExceeded = "duration_exceeded",
    Condition = "condition",
});

impl When {
    /// Whether it fires on a job's final result (rather than while it runs).
    pub fn on_end(self) -> bool {
        matches!(
            self,
            When::Success | When::Failure | When::Always | When::Condition
        )
    }

    /// Whether a job that ended `status`, its final attempt having set its
    /// condition to `condition`, fires an action of this kind. Jobs that
    /// never ran (missed, skipped) fire nothing, and neither do the kinds
    /// that fire while a job runs.
    pub fn matches(self, status: JobStatus, condition: bool) -> bool {
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
            When::Condition => status == JobStatus::Succeeded && condition,
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
                    "a run_event action fires on a result (success, failure, always or \
                     condition), not on {when}"
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
        // (when, status, the condition the script set, fires)
        let table = [
            (When::Success, Succeeded, false, true),
            (When::Success, Failed, false, false),
            (When::Failure, Failed, false, true),
            (When::Failure, TimedOut, false, true),
            (When::Failure, Partial, false, true),
            (When::Failure, Succeeded, false, false),
            (When::Failure, Cancelled, false, false),
            (When::Always, Succeeded, false, true),
            (When::Always, Cancelled, false, true),
            (When::Always, Missed, false, false),
            (When::Always, Skipped, false, false),
            (When::Always, Queued, false, false),
            (When::Always, Running, false, false),
            (When::Start, Succeeded, false, false),
            (When::DurationExceeded, Failed, false, false),
            (When::Condition, Succeeded, true, true),
            (When::Condition, Succeeded, false, false),
            // A condition set by a script that then failed decides nothing.
            (When::Condition, Failed, true, false),
            (When::Condition, Partial, true, false),
            (When::Condition, Cancelled, true, false),
        ];
        for (when, status, condition, fires) in table {
            assert_eq!(
                when.matches(status, condition),
                fires,
                "{when} on {status} with condition {condition}"
            );
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
            email: None,
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
            email: None,
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

    fn email(tls: SmtpTls, username: Option<&str>) -> EmailSettings {
        let (host, port) = parse_relay("mail.example.com", tls).unwrap();
        EmailSettings {
            to: vec![EmailAddress::new("ops@example.com", "email.to").unwrap()],
            from: EmailAddress::new("cronium@example.com", "email.from").unwrap(),
            host,
            port,
            tls,
            username: username.map(str::to_string),
            ca_cert: None,
        }
    }

    fn email_spec(settings: EmailSettings, secret: Vec<u8>) -> ChannelSpec {
        ChannelSpec {
            name: ChannelName::new("mail").unwrap(),
            kind: ChannelKind::Email,
            url: settings.relay_url(),
            sealed_secret: secret,
            email: Some(settings),
        }
    }

    #[test]
    fn email_addresses_are_plain_dot_atoms_at_a_domain() {
        for good in [
            "a@example.com",
            "first.last+tag@mail.example.co.uk",
            "o'brien@x-y.example",
            "a!#$%&'*+/=?^_`{|}~-b@example.com",
        ] {
            assert!(EmailAddress::new(good, "to").is_ok(), "{good}");
        }
        for bad in [
            "",
            "example.com",
            "@example.com",
            "a@",
            "a@localhost",
            "a..b@example.com",
            ".a@example.com",
            "a b@example.com",
            "\"quoted\"@example.com",
            "a@example.com\r\nBcc: x@evil.example",
            "Name <a@example.com>",
            "a@-x.example.com",
            "a@1.2.3.4",
            "a@[127.0.0.1]",
            "ü@example.com",
        ] {
            let error = EmailAddress::new(bad, "email.to").unwrap_err();
            assert_eq!(error.field, "email.to", "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(EmailAddress::new(&long, "to").is_err());
    }

    #[test]
    fn a_relay_gets_the_port_its_tls_mode_implies() {
        let table = [
            (
                "mail.example.com",
                SmtpTls::Starttls,
                ("mail.example.com", 587),
            ),
            ("mail.example.com", SmtpTls::Tls, ("mail.example.com", 465)),
            ("mail.example.com", SmtpTls::None, ("mail.example.com", 25)),
            (
                "Mail.Example.com.:2525",
                SmtpTls::Tls,
                ("mail.example.com", 2525),
            ),
            ("127.0.0.1:1025", SmtpTls::None, ("127.0.0.1", 1025)),
            ("[::1]:2525", SmtpTls::Starttls, ("::1", 2525)),
            ("::1", SmtpTls::Starttls, ("::1", 587)),
            ("localhost", SmtpTls::None, ("localhost", 25)),
        ];
        for (text, tls, (host, port)) in table {
            assert_eq!(
                parse_relay(text, tls).unwrap(),
                (host.to_string(), port),
                "{text}"
            );
        }
        for bad in [
            "",
            "mail:0",
            "mail.example.com:99999",
            "mail.example.com:x",
            "a b:25",
            "[::1",
            "smtp://mail.example.com",
        ] {
            let error = parse_relay(bad, SmtpTls::Starttls).unwrap_err();
            assert_eq!(error.field, "email.smtp", "{bad}");
        }
    }

    #[test]
    fn an_email_channel_has_its_settings_its_relay_as_url_and_a_password_only_over_tls() {
        // Without authentication the sealed secret is empty.
        assert!(
            email_spec(email(SmtpTls::None, None), vec![])
                .validate()
                .is_ok()
        );
        assert!(
            email_spec(email(SmtpTls::Starttls, Some("u")), vec![1])
                .validate()
                .is_ok()
        );
        let clear = email_spec(email(SmtpTls::None, Some("u")), vec![1]);
        assert_eq!(clear.validate().unwrap_err().field, "email.password");
        let no_password = email_spec(email(SmtpTls::Tls, Some("u")), vec![]);
        assert_eq!(no_password.validate().unwrap_err().field, "email.password");
        let no_user = email_spec(email(SmtpTls::Tls, None), vec![1]);
        assert_eq!(no_user.validate().unwrap_err().field, "email.username");

        let mut wrong_url = email_spec(email(SmtpTls::Tls, None), vec![]);
        wrong_url.url = "smtp://other.example.com:465".into();
        assert_eq!(wrong_url.validate().unwrap_err().field, "url");
        let mut missing = email_spec(email(SmtpTls::Tls, None), vec![]);
        missing.email = None;
        assert_eq!(missing.validate().unwrap_err().field, "email");

        let mut many = email(SmtpTls::Tls, None);
        many.to = (0..=MAX_RECIPIENTS)
            .map(|i| EmailAddress::new(&format!("u{i}@example.com"), "to").unwrap())
            .collect();
        assert_eq!(many.validate().unwrap_err().field, "email.to");
        let mut none = email(SmtpTls::Tls, None);
        none.to.clear();
        assert_eq!(none.validate().unwrap_err().field, "email.to");
        let mut twice = email(SmtpTls::Tls, None);
        twice
            .to
            .push(EmailAddress::new("OPS@example.com", "to").unwrap());
        assert_eq!(twice.validate().unwrap_err().field, "email.to");
        let mut ca = email(SmtpTls::Tls, None);
        ca.ca_cert = Some("not pem".into());
        assert_eq!(ca.validate().unwrap_err().field, "email.caCert");

        // Other kinds have no email settings.
        let mut webhook = email_spec(email(SmtpTls::Tls, None), vec![1]);
        webhook.kind = ChannelKind::Webhook;
        webhook.url = "https://hooks.example.com/x".into();
        assert_eq!(webhook.validate().unwrap_err().field, "email");
    }

    #[test]
    fn email_settings_round_trip_through_their_stored_json() {
        let mut settings = email(SmtpTls::Starttls, Some("bot"));
        settings.ca_cert =
            Some("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n".into());
        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(json["to"], serde_json::json!(["ops@example.com"]));
        assert_eq!(json["tls"], "starttls");
        assert_eq!(json["port"], 587);
        let back: EmailSettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, settings);
        let bad = serde_json::json!({ "to": ["x"], "from": "a@example.com", "host": "h.example", "port": 25, "tls": "none" });
        assert!(serde_json::from_value::<EmailSettings>(bad).is_err());
    }
}
