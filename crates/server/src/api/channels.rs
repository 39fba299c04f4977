//! `/api/v1/channels`: where notifications go. A webhook's signing secret, a Slack or Discord channel's whole URL, and an email relay's password are write-only: sealed on arrival, never returned.

use std::fmt;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use cronium_core::notify::parse_relay;
use cronium_core::{
    ChannelId, ChannelKind, ChannelName, ChannelSpec, EmailAddress, EmailSettings, SmtpTls,
};
use cronium_store::{AuditEntry, Channel};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::no_content;
use crate::error::{ApiError, JsonBody, PathParams};
use crate::state::AppState;
use crate::tokens::{Admin, Caller, Viewer};

/// The Standard Webhooks prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a secret the server makes: 192 bits, a multiple of 3 so
/// the base64 has no padding.
const GENERATED_SECRET_BYTES: usize = 24;
/// What Standard Webhooks allows for a secret's key (24 to 64 bytes): a
/// shorter key is too easy to guess, and receivers would refuse a longer one.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelFields {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub email: Option<EmailFields>,
}

/// An email channel's settings as a client sends them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailFields {
    pub to: Option<Vec<String>>,
    pub from: Option<String>,
    /// `host` or `host:port` (the port from `tls` when left out).
    pub smtp: Option<String>,
    /// `starttls` (the default), `tls` or `none`.
    pub tls: Option<String>,
    pub username: Option<String>,
    /// Write-only: sealed at once, never returned, logged or quoted.
    pub password: Option<String>,
    pub ca_cert: Option<String>,
}

/// Shows everything but the password, of which only whether it is given.
impl fmt::Debug for EmailFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailFields")
            .field("to", &self.to)
            .field("from", &self.from)
            .field("smtp", &self.smtp)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .field("ca_cert", &self.ca_cert.is_some())
            .finish()
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelView {
    pub id: i64,
    pub name: String,
    pub kind: &'static str,
    pub url: String,
    /// An email channel's settings, without the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An email channel's settings as answers show them: the password only as
/// whether there is one.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailView {
    pub to: Vec<String>,
    pub from: String,
    /// `host:port`.
    pub smtp: String,
    pub tls: &'static str,
    pub username: Option<String>,
    pub password_set: bool,
    pub ca_cert: Option<String>,
}

impl From<Channel> for ChannelView {
    fn from(c: Channel) -> ChannelView {
        let password_set = !c.spec.sealed_secret.is_empty();
        ChannelView {
            id: c.id.0,
            name: c.spec.name.as_str().to_string(),
            kind: c.spec.kind.as_str(),
            url: c.spec.url,
            email: c.spec.email.map(|e| EmailView {
                to: e.to.iter().map(|a| a.as_str().to_string()).collect(),
                from: e.from.as_str().to_string(),
                smtp: e.relay(),
                tls: e.tls.as_str(),
                username: e.username,
                password_set,
                ca_cert: e.ca_cert,
            }),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// The answer to `POST`: the channel, and the secret when the server made
/// it (the only time it is shown; a secret the client sent is not echoed).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedChannel {
    #[serde(flatten)]
    pub channel: ChannelView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A signing secret in clear. Not `Debug`-printable, so it cannot reach a
/// log by accident.
pub struct SigningSecret(String);

impl SigningSecret {
    pub fn generate() -> SigningSecret {
        let mut bytes = [0u8; GENERATED_SECRET_BYTES];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        SigningSecret(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// `whsec_` and the standard base64 (padded as usual) of 24 to 64 bytes.
    /// The message never repeats the value.
    pub fn parse(text: &str) -> Result<SigningSecret, ApiError> {
        let invalid = |why: String| ApiError::invalid("secret", why);
        let Some(encoded) = text.strip_prefix(SECRET_PREFIX) else {
            return Err(invalid(format!(
                "must start with {SECRET_PREFIX} followed by base64 (the Standard Webhooks form); leave it out to have one made"
            )));
        };
        let key = STANDARD.decode(encoded).map_err(|_| {
            invalid(format!(
                "the part after {SECRET_PREFIX} is not valid base64 (A-Z a-z 0-9 + /, padded with =)"
            ))
        })?;
        if !SECRET_BYTES.contains(&key.len()) {
            return Err(invalid(format!(
                "the key is {} bytes; it must be {} to {} bytes",
                key.len(),
                SECRET_BYTES.start(),
                SECRET_BYTES.end()
            )));
        }
        Ok(SigningSecret(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

fn audit(
    caller: &Caller,
    action: &str,
    target: Option<ChannelId>,
    detail: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        at: crate::now(),
        actor: Some(caller.actor()),
        action: action.into(),
        target_type: "channel".into(),
        target_id: target.map(|id| id.0),
        detail,
    }
}

/// Refuses a URL the SSRF guard refuses now (a literal address, or a name
/// resolving to one), with the guard's message; the sender checks again at
/// every try. The lookup blocks, so it runs off the async workers.
pub(crate) async fn check_url(state: &AppState, url: &str, field: &str) -> Result<(), ApiError> {
    let guard = state.http_guard.clone();
    let url = url.to_string();
    tokio::task::spawn_blocking(move || guard.check_url(&url))
        .await
        .map_err(ApiError::internal)?
        .map_err(|refused| ApiError::invalid(field, refused.to_string()))
}

pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(fields): JsonBody<ChannelFields>,
) -> Result<Response, ApiError> {
    let name = ChannelName::new(
        fields
            .name
            .as_deref()
            .ok_or_else(|| ApiError::invalid("name", "required"))?,
    )?;
    let kind = ChannelKind::parse(fields.kind.as_deref().unwrap_or("webhook"), "kind")?;
    if kind == ChannelKind::Email {
        return create_email(state, caller, name, fields).await;
    }
    if fields.email.is_some() {
        return Err(ApiError::invalid(
            "email",
            format!("a {kind} channel has no email settings (they are for kind email)"),
        ));
    }
    let url = fields
        .url
        .ok_or_else(|| ApiError::invalid("url", "required"))?;
    if kind.url_is_secret() {
        return create_chat(state, caller, name, kind, url, fields.secret.is_some()).await;
    }
    check_url(&state, &url, "url").await?;
    let (secret, generated) = match fields.secret.as_deref() {
        Some(text) => (SigningSecret::parse(text)?, false),
        None => (SigningSecret::generate(), true),
    };
    let spec = ChannelSpec {
        name,
        kind,
        url,
        sealed_secret: state.sealer.seal_channel_secret(secret.as_str()),
        email: None,
    }
    .validate()?;
    let entry = audit(
        &caller,
        "channel.create",
        None,
        json!({
            "name": spec.name.as_str(),
            "kind": spec.kind.as_str(),
            "secret": if generated { "generated" } else { "given" },
        }),
    );
    let shown = generated.then(|| secret.as_str().to_string());
    save(&state, spec, &entry, shown).await
}

/// Stores a checked channel with its audit entry and answers 201 with it
/// (and a generated secret, shown this once).
async fn save(
    state: &AppState,
    spec: ChannelSpec,
    entry: &AuditEntry,
    secret: Option<String>,
) -> Result<Response, ApiError> {
    let channel = state
        .store
        .create_channel(spec, crate::now(), entry)
        .await?;
    let body = CreatedChannel {
        channel: channel.into(),
        secret,
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// A Slack or Discord channel: its URL is its credential (whoever has it
/// can post), so it is sealed at once and only its redacted form is kept in
/// the clear; no error, answer or audit entry quotes it.
async fn create_chat(
    state: AppState,
    caller: Caller,
    name: ChannelName,
    kind: ChannelKind,
    url: String,
    secret_given: bool,
) -> Result<Response, ApiError> {
    if secret_given {
        return Err(ApiError::invalid(
            "secret",
            format!("a {kind} channel has no signing secret (its URL is its secret)"),
        ));
    }
    cronium_core::validate_chat_url(&url)?;
    if let Err(mut refused) = check_url(&state, &url, "url").await {
        // The guard names the URL when it cannot parse it; this one's path
        // carries the hook's token.
        if refused.message.contains(url_after_host(&url)) {
            refused.message = "is not a valid http:// or https:// URL".into();
        }
        return Err(refused);
    }
    let spec = ChannelSpec {
        name,
        kind,
        url: cronium_core::redact_url(&url),
        sealed_secret: state.sealer.seal_channel_url(&url),
        email: None,
    }
    .validate()?;
    let entry = audit(
        &caller,
        "channel.create",
        None,
        json!({ "name": spec.name.as_str(), "kind": spec.kind.as_str(), "url": "sealed" }),
    );
    save(&state, spec, &entry, None).await
}

/// An email channel: its settings checked (the relay by the SSRF guard
/// too), its password sealed at once. No error, answer or audit entry
/// quotes the password.
async fn create_email(
    state: AppState,
    caller: Caller,
    name: ChannelName,
    fields: ChannelFields,
) -> Result<Response, ApiError> {
    if fields.url.is_some() {
        return Err(ApiError::invalid(
            "url",
            "an email channel has no URL: its relay is email.smtp",
        ));
    }
    if fields.secret.is_some() {
        return Err(ApiError::invalid(
            "secret",
            "an email channel has no signing secret (its relay's password is email.password)",
        ));
    }
    let email = fields
        .email
        .ok_or_else(|| ApiError::invalid("email", "required for an email channel"))?;
    let tls = SmtpTls::parse(email.tls.as_deref().unwrap_or("starttls"), "email.tls")?;
    let smtp = email
        .smtp
        .as_deref()
        .ok_or_else(|| ApiError::invalid("email.smtp", "required: the relay, host or host:port"))?;
    let (host, port) = parse_relay(smtp, tls)?;
    let to = email
        .to
        .ok_or_else(|| ApiError::invalid("email.to", "required: 1 to 20 addresses"))?
        .iter()
        .map(|a| EmailAddress::new(a.trim(), "email.to"))
        .collect::<Result<Vec<_>, _>>()?;
    let username = email.username.filter(|u| !u.is_empty());
    let from = match email.from.as_deref() {
        Some(from) => EmailAddress::new(from.trim(), "email.from")?,
        None => default_sender(username.as_deref(), &host)?,
    };
    if email.password.as_deref() == Some("") {
        return Err(ApiError::invalid("email.password", "must not be empty"));
    }
    // Empty, like an empty username: none (only the public roots).
    let ca_cert = email.ca_cert.filter(|pem| !pem.trim().is_empty());
    if let Some(pem) = &ca_cert {
        cronium_core::notify::check_ca_cert(pem)?;
        cronium_exec::smtp::check_ca_cert(pem)
            .map_err(|why| ApiError::invalid("email.caCert", why))?;
    }
    let settings = EmailSettings {
        to,
        from,
        host,
        port,
        tls,
        username,
        ca_cert,
    };
    let spec = ChannelSpec {
        name,
        kind: ChannelKind::Email,
        url: settings.relay_url(),
        sealed_secret: email
            .password
            .as_deref()
            .map(|p| state.sealer.seal_smtp_password(p))
            .unwrap_or_default(),
        email: Some(settings),
    }
    .validate()?;
    let settings = spec.email.as_ref().expect("an email channel's settings");
    // The relay's address, as the sender will check it at every try.
    let guard = state.http_guard.clone();
    let (host, port) = (settings.host.clone(), settings.port);
    tokio::task::spawn_blocking(move || cronium_exec::smtp::check_relay(&guard, &host, port))
        .await
        .map_err(ApiError::internal)?
        .map_err(|refused| ApiError::invalid("email.smtp", refused.to_string()))?;
    let entry = audit(
        &caller,
        "channel.create",
        None,
        json!({
            "name": spec.name.as_str(),
            "kind": "email",
            "to": settings.to,
            "smtp": settings.relay(),
            "tls": settings.tls.as_str(),
            "password": if spec.sealed_secret.is_empty() { "none" } else { "sealed" },
        }),
    );
    save(&state, spec, &entry, None).await
}

/// The sender when none is given: the user name if it is an address (what
/// most relays let a user send as), else `cronium@` the relay's domain.
fn default_sender(username: Option<&str>, host: &str) -> Result<EmailAddress, ApiError> {
    if let Some(address) = username.and_then(|u| EmailAddress::new(u, "email.from").ok()) {
        return Ok(address);
    }
    EmailAddress::new(&format!("cronium@{host}"), "email.from").map_err(|_| {
        ApiError::invalid(
            "email.from",
            "required: the relay is an address, so no sender can be made from its name",
        )
    })
}

/// What follows a URL's host (its path and query): the part a guard
/// message must not repeat. Never empty, so a bare host matches nothing.
fn url_after_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    match rest.find(['/', '?', '#']) {
        Some(at) if at + 1 < rest.len() => &rest[at..],
        _ => "\u{0}",
    }
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Viewer,
) -> Result<axum::Json<Vec<ChannelView>>, ApiError> {
    let channels = state.store.list_channels().await?;
    Ok(axum::Json(
        channels.into_iter().map(ChannelView::from).collect(),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    _caller: Viewer,
    PathParams(id): PathParams<i64>,
) -> Result<axum::Json<ChannelView>, ApiError> {
    Ok(axum::Json(
        state.store.get_channel(ChannelId(id)).await?.into(),
    ))
}

/// How long a test message waits for its answer: a delivery's timeout.
const TEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The answer to `POST /channels/{id}/test`: what the receiver said.
#[derive(Debug, Serialize)]
pub struct TestAnswer {
    /// An HTTP status, or an SMTP relay's code.
    pub status: Option<u16>,
    /// The first KiB of its body, on one line; a relay's whole answer.
    pub body: String,
    /// Why it failed; `None` on 2xx.
    pub error: Option<String>,
}

/// Sends a test message now. The answer is 200 whatever the receiver did,
/// since reporting what it said is the point; only a missing channel (or
/// caller) is an error here.
pub async fn test(
    State(state): State<AppState>,
    Admin(_caller): Admin,
    PathParams(id): PathParams<i64>,
) -> Result<axum::Json<TestAnswer>, ApiError> {
    let channel = state.store.get_channel(ChannelId(id)).await?;
    let answer = cronium_engine::deliveries::send_test(
        &state.sealer,
        &state.http_guard,
        &channel,
        TEST_TIMEOUT,
        crate::now(),
    )
    .await;
    Ok(axum::Json(TestAnswer {
        status: answer.status,
        body: answer.body,
        error: answer.error,
    }))
}

pub async fn delete(
    State(state): State<AppState>,
    Admin(caller): Admin,
    PathParams(id): PathParams<i64>,
) -> Result<Response, ApiError> {
    let id = ChannelId(id);
    // Read first so the audit entry can name what was deleted.
    let channel = state.store.get_channel(id).await?;
    let entry = audit(
        &caller,
        "channel.delete",
        Some(id),
        json!({ "name": channel.spec.name.as_str() }),
    );
    state.store.delete_channel(id, &entry).await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_the_standard_webhooks_form() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert_ne!(a.as_str(), b.as_str());
        assert!(a.as_str().starts_with(SECRET_PREFIX), "{}", a.as_str());
        // 24 bytes: 32 base64 characters, no padding.
        assert_eq!(a.as_str().len(), SECRET_PREFIX.len() + 32);
        assert_eq!(
            SigningSecret::parse(a.as_str()).unwrap().as_str(),
            a.as_str()
        );
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn given_secrets_must_be_whsec_and_base64_of_a_long_enough_key() {
        let key = |n: usize| STANDARD.encode(vec![7u8; n]);
        for good in [format!("whsec_{}", key(24)), format!("whsec_{}", key(64))] {
            assert!(SigningSecret::parse(&good).is_ok(), "{good}");
        }
        for (bad, why) in [
            (key(32), "must start with whsec_"),
            (format!("whsec_{}!", key(30)), "not valid base64"),
            (format!("whsec_{}", key(16)), "16 bytes"),
            (format!("whsec_{}", key(65)), "65 bytes"),
            ("whsec_".to_string(), "0 bytes"),
        ] {
            let err = SigningSecret::parse(&bad).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("secret"));
            assert!(err.message.contains(why), "{bad}: {}", err.message);
            assert!(
                bad.len() < 8 || !err.message.contains(&bad),
                "{}",
                err.message
            );
        }
    }
}
