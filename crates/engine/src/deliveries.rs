//! The delivery worker: sends the notifications the store's outbox holds (one POST per delivery: a signed webhook, a Slack or a Discord message; or one mail) about a job's start, overrun or end, and records each try, retrying with backoff until delivered or given up.
//!
//! A job's final result and its pending deliveries are written in one
//! transaction (`cronium-store`); this loop only drains them. One step is
//! [`Deliveries::tick`]: lease a batch of due deliveries, send them at once
//! (each through the SSRF guard, [`cronium_exec::webhook::post`]), and
//! record how each went with [`Store::finish_delivery`]. A delivery's job
//! is already final, so nothing a receiver does (an error, a timeout, no
//! answer at all) can reach the job: the worst it can do is make this loop
//! try again later, at most `max_attempts` times.
//!
//! Messages are signed the Standard Webhooks way: `webhook-id` is the
//! delivery's, the same on every try, so a receiver can drop a repeat;
//! `webhook-timestamp` is the try's own; `webhook-signature` is
//! `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, the key being
//! the bytes the channel's `whsec_<base64>` secret encodes. The secret is
//! opened for the signature only and never logged, stored or put in an
//! error.
//!
//! Slack and Discord channels get a one-line summary instead
//! ([`render_slack`], [`render_discord`]), unsigned: their sealed URL is
//! their credential, opened for the POST only. Every interpolated value
//! (event names, error text) is escaped for the receiver's markup, so a job
//! cannot ping a channel, inject a link or format the message.
//!
//! Email channels get a plain-text mail ([`render_email`]) through their
//! SMTP relay ([`cronium_exec::smtp::send`], through the same guard). Its
//! `Message-ID` is made of the delivery's webhook id, so a mail sent again
//! after a lost answer is recognisably the same one, and its `Date` is the
//! job's end: every try sends the same message. The relay's answer is the
//! delivery's status and error: a 4xx (or no answer) is tried again with
//! the same backoff, a 5xx gives up at once. The relay's password is opened
//! for the send only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use cronium_core::job::{JobStatus, retry_delay};
use cronium_core::{ChannelKind, EmailSettings};
use cronium_exec::Guard;
use cronium_exec::http::{USER_AGENT, status_text};
use cronium_exec::smtp::{self, Mail, Password, Relay, Reply, SendError};
use cronium_exec::webhook::{self, PostResponse};
use cronium_store::{Channel, Delivery, DeliveryReason, Event, Job, SendResult, Store, StoreError};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::retry::random_fraction;
use crate::secrets::Sealer;
use crate::signing::SigningKey;

/// How often an idle loop looks for deliveries that came due (new ones,
/// retries whose time has come, ones a dead sender left behind).
const IDLE_POLL: Duration = Duration::from_millis(250);

/// How the delivery worker sends and retries.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// This node's lease owner name (unique per process).
    pub owner: String,
    /// How long a claimed delivery is this sender's: longer than `timeout`,
    /// or another sender may take it over mid-send and send it twice.
    pub lease: Duration,
    /// One POST, from connecting to the status line (and the body's head).
    pub timeout: Duration,
    /// The first retry's delay; each later one doubles it (with jitter).
    pub base_delay: Duration,
    /// Tries in all; the last failed one gives the delivery up.
    pub max_attempts: u32,
    /// The longest wait between tries, `Retry-After` included.
    pub max_delay: Duration,
    /// Deliveries claimed, and sent at once, per tick.
    pub concurrency: usize,
    /// The server's public address (`https://cron.example.com`); when set,
    /// each message links to its job in the API.
    pub public_url: Option<String>,
}

impl DeliveryConfig {
    /// The defaults, for `owner`.
    pub fn new(owner: impl Into<String>) -> DeliveryConfig {
        DeliveryConfig {
            owner: owner.into(),
            lease: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            base_delay: Duration::from_secs(5),
            max_attempts: 8,
            max_delay: Duration::from_secs(3600),
            concurrency: 8,
            public_url: None,
        }
    }
}

/// The delivery worker. `tick` for one step, `run` to loop.
pub struct Deliveries {
    inner: Arc<Inner>,
}

/// What every send needs, shared with the tasks that send.
struct Inner {
    store: Arc<dyn Store>,
    sealer: Sealer,
    guard: Guard,
    config: DeliveryConfig,
    /// Wakes the loop early: a job has ended and may owe messages.
    wake: Arc<Notify>,
}

impl Deliveries {
    pub fn new(
        store: Arc<dyn Store>,
        sealer: Sealer,
        guard: Guard,
        config: DeliveryConfig,
    ) -> Deliveries {
        Deliveries {
            inner: Arc::new(Inner {
                store,
                sealer,
                guard,
                config,
                wake: Arc::new(Notify::new()),
            }),
        }
    }

    /// Notified when a job ends (see `Workers::wake_deliveries`), the loop sends
    /// its messages at once instead of at its next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.inner.wake.clone()
    }

    /// Records the messages owed for jobs running too long
    /// (`duration_exceeded`), claims the deliveries due at `now` (at most
    /// `concurrency`), sends them at once and records each try; returns how
    /// many were tried.
    /// Times recorded are `now` plus the time the tick has taken, so a test
    /// clock stays in charge and a real one stays accurate.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let started = Instant::now();
        let config = &self.inner.config;
        // Jobs running longer than an action allows owe a message now.
        self.inner.store.enqueue_overdue(now).await?;
        let limit = u32::try_from(config.concurrency.max(1)).unwrap_or(u32::MAX);
        let claimed = self
            .inner
            .store
            .claim_deliveries(&config.owner, now, config.lease, limit)
            .await?;
        let count = claimed.len();
        // Bounded by the claim itself; the semaphore keeps it so should the
        // batch and the concurrency ever differ.
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let mut sends = JoinSet::new();
        for delivery in claimed {
            let inner = self.inner.clone();
            let slots = slots.clone();
            sends.spawn(async move {
                let _slot = slots.acquire_owned().await;
                let clock = Clock { now, started };
                inner.deliver(delivery, clock).await;
            });
        }
        while let Some(done) = sends.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a delivery task failed");
            }
        }
        Ok(count)
    }

    /// Ticks until `cancel`: at once again after a full batch, else after
    /// [`IDLE_POLL`]. A cancel lets the sends under way finish (each is
    /// bounded by the timeout); one cut short would be sent again by
    /// another sender once its lease expires.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let full = match self.tick(crate::now()).await {
                Ok(n) => n >= self.inner.config.concurrency.max(1),
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim deliveries; retrying");
                    false
                }
            };
            if cancel.is_cancelled() {
                return;
            }
            if full {
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }
}

/// The injected time of a tick and when it started, for the time now.
#[derive(Clone, Copy)]
struct Clock {
    now: DateTime<Utc>,
    started: Instant,
}

impl Clock {
    fn now(self) -> DateTime<Utc> {
        self.now + TimeDelta::from_std(self.started.elapsed()).unwrap_or(TimeDelta::zero())
    }
}

/// What a delivery is about, loaded from the store.
struct Subject {
    job: Job,
    event: Event,
    occasion: Occasion,
    /// Where to post: a webhook's URL, or a chat channel's opened one.
    url: String,
    receiver: Receiver,
}

/// How a channel wants its message.
enum Receiver {
    /// Standard Webhooks JSON, signed with this key.
    Webhook(SigningKey),
    Slack,
    Discord,
    /// A mail through an SMTP relay.
    Email(Box<EmailReceiver>),
}

/// An email channel's settings, and its relay's password opened.
struct EmailReceiver {
    settings: EmailSettings,
    password: Option<Password>,
}

impl EmailReceiver {
    fn relay(&self) -> Relay {
        let s = &self.settings;
        Relay {
            host: s.host.clone(),
            port: s.port,
            tls: s.tls,
            credentials: s.username.clone().zip(self.password.clone()),
            ca_cert: s.ca_cert.clone(),
        }
    }

    /// A mail from the channel's sender to its recipients, its
    /// `Message-ID` `<{id}@{the sender's domain}>`.
    fn mail(&self, subject: String, body: String, id: &str, date: DateTime<Utc>) -> Mail {
        let s = &self.settings;
        Mail {
            from: s.from.clone(),
            to: s.to.clone(),
            subject,
            body,
            message_id: format!("{id}@{}", s.from.domain()),
            date: date.into(),
        }
    }
}

/// Why a delivery cannot be sent (before any request).
enum NotSent {
    /// It never will be (the job or channel is gone, the secret does not open).
    Never(String),
    /// The store failed; a later try may work.
    NotNow(String),
}

impl Inner {
    async fn deliver(&self, delivery: Delivery, clock: Clock) {
        let result = match self.load(&delivery).await {
            Ok(subject) => self.send(&delivery, &subject, clock).await,
            Err(NotSent::Never(error)) => SendResult::GiveUp {
                status: None,
                error,
            },
            Err(NotSent::NotNow(error)) => self.retry(&delivery, None, error, None, clock.now()),
        };
        let (id, job, channel) = (delivery.id.0, delivery.job_id.0, delivery.channel_id.0);
        match &result {
            SendResult::Delivered { status } => {
                tracing::info!(
                    delivery = id,
                    job,
                    channel,
                    status,
                    "notification delivered"
                );
            }
            SendResult::Retry { at, status, error } => {
                tracing::info!(delivery = id, job, channel, status, error, retry_at = %at, "notification not delivered; will retry");
            }
            SendResult::GiveUp { status, error } => {
                tracing::warn!(
                    delivery = id,
                    job,
                    channel,
                    status,
                    error,
                    "notification given up"
                );
            }
        }
        let recorded = self
            .store
            .finish_delivery(delivery.id, &self.config.owner, result, clock.now())
            .await;
        match recorded {
            Ok(_) => {}
            Err(StoreError::DeliveryLost { .. }) => {
                tracing::warn!(
                    delivery = id,
                    "the delivery's lease was lost while sending; another sender has it"
                );
            }
            Err(e) => tracing::error!(delivery = id, error = %e, "cannot record a delivery"),
        }
    }

    async fn load(&self, delivery: &Delivery) -> Result<Subject, NotSent> {
        let gone = |what: &str, e: StoreError| match e {
            StoreError::NotFound { .. } => NotSent::Never(format!("the {what} no longer exists")),
            e => NotSent::NotNow(format!("cannot load the {what}: {e}")),
        };
        let job = self
            .store
            .get_job(delivery.job_id)
            .await
            .map_err(|e| gone("job", e))?;
        let event = self
            .store
            .get_event(job.event_id)
            .await
            .map_err(|e| gone("event", e))?;
        let channel = self
            .store
            .get_channel(delivery.channel_id)
            .await
            .map_err(|e| gone("channel", e))?;
        let (url, receiver) = open_receiver(&self.sealer, &channel).map_err(NotSent::Never)?;
        let at = delivery.created_at;
        let occasion = match delivery.reason {
            DeliveryReason::End => Occasion::End,
            DeliveryReason::Start => Occasion::Start { at },
            DeliveryReason::DurationExceeded => {
                // The threshold is the action's; one removed since leaves
                // the message owed but unable to name it.
                let actions = self
                    .store
                    .list_actions(event.id)
                    .await
                    .map_err(|e| gone("event", e))?;
                let after_secs = actions
                    .iter()
                    .find(|a| Some(a.id) == delivery.action_id)
                    .and_then(|a| a.spec.after_secs);
                Occasion::DurationExceeded { at, after_secs }
            }
        };
        Ok(Subject {
            job,
            event,
            occasion,
            url,
            receiver,
        })
    }

    async fn send(&self, delivery: &Delivery, subject: &Subject, clock: Clock) -> SendResult {
        let public_url = self.config.public_url.as_deref();
        let (job, event, occasion) = (&subject.job, &subject.event, subject.occasion);
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("user-agent".to_string(), USER_AGENT.to_string()),
        ];
        let body = match &subject.receiver {
            Receiver::Webhook(key) => {
                let body = render(job, event, occasion, public_url);
                let id = delivery.webhook_id();
                let timestamp = clock.now().timestamp().to_string();
                let signature = key.sign(&id, &timestamp, &body);
                headers.push(("webhook-id".to_string(), id));
                headers.push(("webhook-timestamp".to_string(), timestamp));
                headers.push(("webhook-signature".to_string(), signature));
                body
            }
            Receiver::Slack => render_slack(job, event, occasion, public_url),
            Receiver::Discord => render_discord(job, event, occasion, public_url),
            Receiver::Email(email) => {
                let (subject, body) = render_email(job, event, occasion, public_url);
                let date = occasion
                    .at()
                    .unwrap_or(job.finished_at.unwrap_or(job.updated_at));
                let mail = email.mail(subject, body, &delivery.webhook_id(), date);
                let sent = smtp::send(&self.guard, email.relay(), &mail, self.config.timeout).await;
                if let Ok(reply) = &sent {
                    tracing::info!(delivery = delivery.id.0, answer = %reply.text, "the relay took the mail");
                }
                return self.judge_mail(delivery, sent, clock.now());
            }
        };
        let response = webhook::post(
            &self.guard,
            &subject.url,
            &headers,
            body,
            self.config.timeout,
        )
        .await;
        self.judge(delivery, response, clock.now())
    }

    /// What one answer (or its absence) makes of a delivery.
    fn judge(&self, delivery: &Delivery, response: PostResponse, now: DateTime<Utc>) -> SendResult {
        let PostResponse {
            status,
            retry_after,
            body_head,
            error,
        } = response;
        let Some(code) = status else {
            let error = error.unwrap_or_else(|| {
                webhook::PostError::Failed("no answer and no reason (a bug)".into())
            });
            let text = error.to_string();
            return if error.is_transient() {
                self.retry(delivery, None, text, None, now)
            } else {
                SendResult::GiveUp {
                    status: None,
                    error: text,
                }
            };
        };
        if (200..300).contains(&code) {
            return SendResult::Delivered { status: code };
        }
        let mut error = status_text(code);
        if !body_head.is_empty() {
            error = format!("{error}: {body_head}");
        }
        if (300..400).contains(&code) {
            error.push_str(" (redirects are not followed)");
        }
        match code {
            429 => {
                let asked = retry_after
                    .as_deref()
                    .and_then(|t| parse_retry_after(t, now));
                self.retry(delivery, Some(code), error, asked, now)
            }
            500..=599 => self.retry(delivery, Some(code), error, None, now),
            _ => SendResult::GiveUp {
                status: Some(code),
                error,
            },
        }
    }

    /// What a relay's answer (or its absence) makes of a delivery: its code
    /// is the status, its text the error; 4xx and network failures are
    /// tried again, 5xx and refusals are final.
    fn judge_mail(
        &self,
        delivery: &Delivery,
        sent: Result<Reply, SendError>,
        now: DateTime<Utc>,
    ) -> SendResult {
        let error = match sent {
            Ok(reply) => return SendResult::Delivered { status: reply.code },
            Err(error) => error,
        };
        let (status, text) = (error.code(), error.to_string());
        if error.is_transient() {
            self.retry(delivery, status, text, None, now)
        } else {
            SendResult::GiveUp {
                status,
                error: text,
            }
        }
    }

    /// Another try at the backoff's time (or later, if the receiver asked
    /// for it), unless this was the last try allowed.
    fn retry(
        &self,
        delivery: &Delivery,
        status: Option<u16>,
        error: String,
        asked: Option<Duration>,
        now: DateTime<Utc>,
    ) -> SendResult {
        let tries = delivery.attempts + 1;
        if tries >= self.config.max_attempts {
            return SendResult::GiveUp {
                status,
                error: format!("{error} (gave up after {tries} tries)"),
            };
        }
        let backoff = backoff(
            self.config.base_delay,
            self.config.max_delay,
            delivery.attempts,
            random_fraction(),
        );
        let delay = asked.map_or(backoff, |a| a.min(self.config.max_delay).max(backoff));
        SendResult::Retry {
            at: now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX),
            status,
            error,
        }
    }
}

/// Where a channel's messages go and how it wants them: its URL (a chat
/// channel's opened) and signing key. Errors never quote a secret.
fn open_receiver(sealer: &Sealer, channel: &Channel) -> Result<(String, Receiver), String> {
    let sealed = &channel.spec.sealed_secret;
    match channel.spec.kind {
        ChannelKind::Webhook => {
            let secret = sealer
                .open_channel_secret(sealed)
                .map_err(|e| format!("cannot open the channel's secret: {e}"))?;
            let key =
                SigningKey::parse(&secret).map_err(|e| format!("the channel's secret {e}"))?;
            Ok((channel.spec.url.clone(), Receiver::Webhook(key)))
        }
        kind @ (ChannelKind::Slack | ChannelKind::Discord) => {
            let url = sealer
                .open_channel_url(sealed)
                .map_err(|e| format!("cannot open the channel's URL: {e}"))?;
            let receiver = if kind == ChannelKind::Slack {
                Receiver::Slack
            } else {
                Receiver::Discord
            };
            Ok((url, receiver))
        }
        ChannelKind::Email => {
            let settings = channel
                .spec
                .email
                .clone()
                .ok_or("the email channel has no settings")?;
            let password = if sealed.is_empty() {
                None
            } else {
                let opened = sealer
                    .open_smtp_password(sealed)
                    .map_err(|e| format!("cannot open the relay's password: {e}"))?;
                Some(Password(opened))
            };
            let receiver = EmailReceiver { settings, password };
            Ok((
                channel.spec.url.clone(),
                Receiver::Email(Box::new(receiver)),
            ))
        }
    }
}

/// What a channel's receiver answered a test message: the status (an HTTP
/// status, or an SMTP relay's code), the answer's text (the head of an
/// HTTP body, or the relay's whole answer) and, unless it was positive,
/// why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestAnswer {
    pub status: Option<u16>,
    pub body: String,
    pub error: Option<String>,
}

impl TestAnswer {
    fn from_post(response: PostResponse) -> TestAnswer {
        let error = match (response.status, response.error) {
            (Some(code), _) if (200..300).contains(&code) => None,
            (Some(code), _) => Some(status_text(code)),
            (None, Some(why)) => Some(why.to_string()),
            (None, None) => Some("no answer and no reason (a bug)".into()),
        };
        TestAnswer {
            status: response.status,
            body: response.body_head,
            error,
        }
    }

    fn from_mail(sent: Result<Reply, SendError>) -> TestAnswer {
        match sent {
            Ok(reply) => TestAnswer {
                status: Some(reply.code),
                body: reply.text,
                error: None,
            },
            Err(error) => TestAnswer {
                status: error.code(),
                body: match &error {
                    SendError::Rejected { text, .. } => text.clone(),
                    _ => String::new(),
                },
                error: Some(error.to_string()),
            },
        }
    }
}

/// Sends a channel a test message now, once, through the same POST and
/// guard as its deliveries: `{"type": "channel.test", …}` signed for a
/// webhook (its `webhook-id` `msg_cronium_test_<random>`, never a
/// delivery's), a one-line note for Slack and Discord, a short mail for
/// email (its `Message-ID` `msg_cronium_test_<random>@…`). What came back
/// is the receiver's answer, for the caller to show as it is.
pub async fn send_test(
    sealer: &Sealer,
    guard: &Guard,
    channel: &Channel,
    timeout: Duration,
    now: DateTime<Utc>,
) -> TestAnswer {
    let (url, receiver) = match open_receiver(sealer, channel) {
        Ok(opened) => opened,
        Err(why) => {
            return TestAnswer {
                status: None,
                body: String::new(),
                error: Some(why),
            };
        }
    };
    let name = channel.spec.name.as_str();
    let note = |escape: fn(&str) -> String| {
        format!(
            "Test message from Cronium for channel *{}*: notifications will arrive here.",
            escape(name)
        )
    };
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("user-agent".to_string(), USER_AGENT.to_string()),
    ];
    let body = match receiver {
        Receiver::Webhook(key) => {
            let body = serde_json::to_vec(&json!({
                "type": "channel.test",
                "timestamp": now.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                "data": { "channel": { "id": channel.id.0, "name": name } },
            }))
            .expect("JSON values serialize");
            let id = format!("msg_cronium_test_{:016x}", random_u64());
            let timestamp = now.timestamp().to_string();
            let signature = key.sign(&id, &timestamp, &body);
            headers.push(("webhook-id".to_string(), id));
            headers.push(("webhook-timestamp".to_string(), timestamp));
            headers.push(("webhook-signature".to_string(), signature));
            body
        }
        Receiver::Slack => serde_json::to_vec(&json!({ "text": note(slack_escape) }))
            .expect("JSON values serialize"),
        Receiver::Discord => serde_json::to_vec(
            &json!({ "content": note(discord_escape), "allowed_mentions": { "parse": [] } }),
        )
        .expect("JSON values serialize"),
        Receiver::Email(email) => {
            let subject = format!("[Cronium] test message for channel {name}");
            let body = format!("{}\n", note(|s| s.to_string()));
            let id = format!("msg_cronium_test_{:016x}", random_u64());
            let mail = email.mail(subject, body, &id, now);
            return TestAnswer::from_mail(smtp::send(guard, email.relay(), &mail, timeout).await);
        }
    };
    TestAnswer::from_post(webhook::post(guard, &url, &headers, body, timeout).await)
}

/// A random number, so a test message's `webhook-id` repeats no other.
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // An id needs no secrecy; should the source fail, the time stands in.
    if getrandom::fill(&mut bytes).is_err() {
        return Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    }
    u64::from_le_bytes(bytes)
}

/// The wait after a delivery's `attempts + 1`-th failed try:
/// `base · 2^attempts`, capped at `max`, in its upper half by `jitter`
/// (the jobs' own backoff, [`retry_delay`]).
pub fn backoff(base: Duration, max: Duration, attempts: u32, jitter: f64) -> Duration {
    retry_delay(base, attempts.saturating_add(1), jitter).min(max)
}

/// A `Retry-After` value as a wait from `now`: whole seconds, or an HTTP
/// date (a date in the past is no wait). Anything else is ignored.
pub fn parse_retry_after(text: &str, now: DateTime<Utc>) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is an RFC 2822 date.
    let at = DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// What a message reports on: the delivery's reason, with what a message
/// about a running job needs to say the same thing on every try (the job
/// itself moves on meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occasion {
    /// The job's final result.
    End,
    /// The job started, at `at`.
    Start { at: DateTime<Utc> },
    /// The job was still running `after_secs` after its attempt started,
    /// as noticed at `at` (`None` once the action has been removed).
    DurationExceeded {
        at: DateTime<Utc>,
        after_secs: Option<u64>,
    },
}

impl Occasion {
    /// When a running job's message happened (`None` for a final result,
    /// whose time is the job's end).
    fn at(self) -> Option<DateTime<Utc>> {
        match self {
            Occasion::End => None,
            Occasion::Start { at } | Occasion::DurationExceeded { at, .. } => Some(at),
        }
    }

    /// The Standard Webhooks `type` of its message.
    fn kind(self) -> &'static str {
        match self {
            Occasion::End => "job.finished",
            Occasion::Start { .. } => "job.started",
            Occasion::DurationExceeded { .. } => "job.duration_exceeded",
        }
    }
}

/// The webhook message about a job: the same bytes on every try, since
/// everything in it is fixed by then (a final result, or for a running job
/// only what its start fixed).
pub fn render(job: &Job, event: &Event, occasion: Occasion, public_url: Option<&str>) -> Vec<u8> {
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    let mut data = Map::new();
    data.insert(
        "event".into(),
        json!({ "id": event.id.0, "name": event.spec.name.as_str() }),
    );
    let timestamp = match occasion {
        Occasion::End => {
            data.insert(
                "job".into(),
                json!({
                    "id": job.id.0,
                    "status": job.status.as_str(),
                    "attempt": job.attempt,
                    "exitCode": job.exit_code,
                    "error": job.error,
                    "durationMs": job.metadata.get("durationMs").and_then(Value::as_u64),
                    "scheduledAt": time(Some(job.scheduled_at)),
                    "startedAt": time(job.started_at),
                    "finishedAt": time(job.finished_at),
                    "trigger": job.trigger.as_str(),
                    // What its script handed on (already masked).
                    "output": job.output,
                    "condition": job.condition,
                }),
            );
            job.finished_at.or(Some(job.updated_at))
        }
        Occasion::Start { at } | Occasion::DurationExceeded { at, .. } => {
            let mut brief = json!({
                "id": job.id.0,
                "status": "running",
                "scheduledAt": time(Some(job.scheduled_at)),
                "trigger": job.trigger.as_str(),
            });
            if let Occasion::DurationExceeded { after_secs, .. } = occasion {
                brief["afterSecs"] = json!(after_secs);
            }
            data.insert("job".into(), brief);
            Some(at)
        }
    };
    if occasion == Occasion::End {
        if let Some(executions) = job.metadata.get("executions").and_then(Value::as_array) {
            // Only what a receiver acts on; timings and upload details stay in the API.
            let brief: Vec<Value> = executions
                .iter()
                .map(|e| {
                    json!({
                        "server": e.get("server"),
                        "status": e.get("status"),
                        "exitCode": e.get("exitCode"),
                        "error": e.get("error"),
                        "phase": e.get("phase"),
                    })
                })
                .collect();
            data.insert("executions".into(), Value::Array(brief));
        }
        if let Some(http) = job.metadata.get("http") {
            data.insert("http".into(), http.clone());
        }
    }
    if let Some(base) = public_url {
        data.insert(
            "link".into(),
            json!(format!(
                "{}/api/v1/jobs/{}",
                base.trim_end_matches('/'),
                job.id
            )),
        );
    }
    let message = json!({
        "type": occasion.kind(),
        "timestamp": time(timestamp),
        "data": data,
    });
    serde_json::to_vec(&message).expect("JSON values serialize")
}

/// The most of a job's error a chat message quotes (characters): enough
/// to tell what went wrong, the rest is in the API.
const CHAT_ERROR_CHARS: usize = 500;

/// Discord refuses a `content` longer than this (characters).
pub const DISCORD_CONTENT_CHARS: usize = 2000;

/// A Slack message: `{"text": "*backup* failed (exit 3) after 2.1s — job 17"}`,
/// the job's error and link on the lines below. `&`, `<` and `>` in every
/// interpolated value are escaped, so none can become `<!channel>` or a link.
pub fn render_slack(
    job: &Job,
    event: &Event,
    occasion: Occasion,
    public_url: Option<&str>,
) -> Vec<u8> {
    let text = summary(job, event, occasion, public_url, slack_escape);
    serde_json::to_vec(&json!({ "text": text })).expect("JSON values serialize")
}

/// A Discord message: the same summary in `content` (at most 2,000
/// characters, cut with `…`), markdown characters in interpolated values
/// escaped, and `allowed_mentions` empty so nothing in it pings anyone.
pub fn render_discord(
    job: &Job,
    event: &Event,
    occasion: Occasion,
    public_url: Option<&str>,
) -> Vec<u8> {
    let mut content = summary(job, event, occasion, public_url, discord_escape);
    if content.chars().count() > DISCORD_CONTENT_CHARS {
        content = content.chars().take(DISCORD_CONTENT_CHARS - 1).collect();
        content.push('…');
    }
    let message = json!({ "content": content, "allowed_mentions": { "parse": [] } });
    serde_json::to_vec(&message).expect("JSON values serialize")
}

/// `failed (exit 3)`: how a job ended, as every message words it.
fn outcome(job: &Job) -> String {
    let mut text = status_words(job.status).to_string();
    if let Some(code) = job.exit_code {
        text.push_str(&format!(" (exit {code})"));
    }
    text
}

/// What happened, as every message words it: `failed (exit 3)`, `started`,
/// `is still running after 10m 00s`.
fn happened(job: &Job, occasion: Occasion) -> String {
    match occasion {
        Occasion::End => outcome(job),
        Occasion::Start { .. } => "started".into(),
        Occasion::DurationExceeded {
            after_secs: Some(secs),
            ..
        } => format!(
            "is still running after {}",
            duration_words(secs.saturating_mul(1000))
        ),
        Occasion::DurationExceeded { .. } => "is still running".into(),
    }
}

/// `*name* failed (exit 3) after 2.1s — job 17` (or `*name* started — job
/// 17`), the event's name passed through `escape`.
fn headline(job: &Job, event: &Event, occasion: Occasion, escape: fn(&str) -> String) -> String {
    let name = escape(event.spec.name.as_str());
    let mut text = format!("*{name}* {}", happened(job, occasion));
    let duration = job.metadata.get("durationMs").and_then(Value::as_u64);
    if let Some(ms) = duration.filter(|_| occasion == Occasion::End) {
        text.push_str(&format!(" after {}", duration_words(ms)));
    }
    text.push_str(&format!(" — job {}", job.id));
    text
}

/// The [`headline`], then (for a final result) the error, and the link,
/// each interpolated value passed through `escape`.
fn summary(
    job: &Job,
    event: &Event,
    occasion: Occasion,
    public_url: Option<&str>,
    escape: fn(&str) -> String,
) -> String {
    let mut text = headline(job, event, occasion, escape);
    let error = job.error.as_deref().filter(|_| occasion == Occasion::End);
    if let Some(error) = error.filter(|e| !e.trim().is_empty()) {
        let mut quoted: String = error.chars().take(CHAT_ERROR_CHARS).collect();
        if error.chars().count() > CHAT_ERROR_CHARS {
            quoted.push('…');
        }
        text.push('\n');
        text.push_str(&escape(&quoted));
    }
    if let Some(base) = public_url {
        let link = format!("{}/api/v1/jobs/{}", base.trim_end_matches('/'), job.id);
        text.push('\n');
        text.push_str(&escape(&link));
    }
    text
}

/// The most of a job's error a mail quotes (characters).
const MAIL_ERROR_CHARS: usize = 4000;

/// A mail about a job: its subject, `[Cronium] backup failed (exit 3) on
/// job 42`, and a plain-text body: the [`headline`], the job's facts one a
/// line, each server's result for a fleet job, the HTTP status, the error
/// and the link. Nothing here needs escaping: the mail is plain text and
/// its headers are encoded when it is sent (a line break in an event's
/// name cannot start a header).
pub fn render_email(
    job: &Job,
    event: &Event,
    occasion: Occasion,
    public_url: Option<&str>,
) -> (String, String) {
    let name = event.spec.name.as_str();
    let happened = happened(job, occasion);
    let subject = format!("[Cronium] {name} {happened} on job {}", job.id);
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let plain = |s: &str| s.to_string();
    let mut body = format!("{}\n\n", headline(job, event, occasion, plain));
    // A running job's message says only what its start fixed.
    let end = occasion == Occasion::End;
    let mut fact = |label: &str, value: String| body.push_str(&format!("{label:<12}{value}\n"));
    fact("Event:", format!("{name} (id {})", event.id));
    fact(
        "Job:",
        format!(
            "{} (attempt {}, {})",
            job.id,
            job.attempt,
            job.trigger.as_str()
        ),
    );
    if !end {
        fact("Status:", "running".into());
        if let Some(at) = occasion.at() {
            fact("At:", time(at));
        }
    } else {
        fact("Status:", job.status.as_str().to_string());
        if let Some(code) = job.exit_code {
            fact("Exit code:", code.to_string());
        }
        if let Some(ms) = job.metadata.get("durationMs").and_then(Value::as_u64) {
            fact("Duration:", duration_words(ms));
        }
        if let Some(at) = job.started_at {
            fact("Started:", time(at));
        }
        if let Some(at) = job.finished_at {
            fact("Finished:", time(at));
        }
        if let Some(status) = job.metadata.pointer("/http/status").and_then(Value::as_u64) {
            fact("HTTP:", status_text(status as u16));
        }
        if let Some(executions) = job.metadata.get("executions").and_then(Value::as_array) {
            body.push_str("\nServers:\n");
            for e in executions {
                let text = |key: &str| e.get(key).and_then(Value::as_str);
                let mut line = format!(
                    "  {}: {}",
                    text("server").unwrap_or("?"),
                    text("status").unwrap_or("?")
                );
                if let Some(code) = e.get("exitCode").and_then(Value::as_i64) {
                    line.push_str(&format!(" (exit {code})"));
                }
                if let Some(error) = text("error") {
                    match text("phase") {
                        Some(phase) => line.push_str(&format!(", at {phase}: {error}")),
                        None => line.push_str(&format!(": {error}")),
                    }
                }
                body.push_str(&line);
                body.push('\n');
            }
        }
        if let Some(error) = job.error.as_deref().filter(|e| !e.trim().is_empty()) {
            let mut quoted: String = error.chars().take(MAIL_ERROR_CHARS).collect();
            if error.chars().count() > MAIL_ERROR_CHARS {
                quoted.push('…');
            }
            body.push_str("\nError:\n");
            for line in quoted.lines() {
                body.push_str(&format!("  {line}\n"));
            }
        }
    }
    if let Some(base) = public_url {
        body.push_str(&format!(
            "\n{}/api/v1/jobs/{}\n",
            base.trim_end_matches('/'),
            job.id
        ));
    }
    (subject, body)
}

fn status_words(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Succeeded => "succeeded",
        JobStatus::Failed => "failed",
        JobStatus::TimedOut => "timed out",
        JobStatus::Partial => "failed on some servers",
        JobStatus::Cancelled => "was cancelled",
        other => other.as_str(),
    }
}

/// `850ms`, `2.1s`, `4m 05s`.
fn duration_words(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

/// Slack's three control characters as its entities (its documented rule).
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A backslash before every character Discord's markdown (or its mention
/// and link syntax) gives a meaning to, so the text shows as written.
pub fn discord_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\*_~`|>@<#[]()".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn backoff_doubles_from_the_base_within_jitter_and_stops_at_the_cap() {
        let base = Duration::from_secs(5);
        let max = Duration::from_secs(60);
        // (tries before this one, lowest wait, highest wait)
        let table = [
            (0, 2.5, 5.0),
            (1, 5.0, 10.0),
            (2, 10.0, 20.0),
            (3, 20.0, 40.0),
        ];
        for (attempts, low, high) in table {
            let secs = |j| backoff(base, max, attempts, j).as_secs_f64();
            assert_eq!(secs(0.0), low, "{attempts}");
            assert!(
                secs(0.999) < high && secs(0.999) > high * 0.99,
                "{attempts}"
            );
        }
        assert_eq!(backoff(base, max, 4, 0.999), max, "capped");
        assert_eq!(backoff(base, max, 30, 0.0), max, "capped, even far out");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let table = [
            ("120", Some(120)),
            (" 0 ", Some(0)),
            ("Sun, 01 Mar 2026 12:02:00 GMT", Some(120)),
            ("Sun, 01 Mar 2026 11:00:00 GMT", Some(0)),
            ("soon", None),
            ("-5", None),
            ("", None),
        ];
        for (text, secs) in table {
            assert_eq!(
                parse_retry_after(text, now),
                secs.map(Duration::from_secs),
                "{text:?}"
            );
        }
    }
}
