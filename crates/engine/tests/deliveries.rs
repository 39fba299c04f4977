//! The delivery worker driven tick by tick with an injected clock against real loopback receivers, on SQLite and PostgreSQL: what a finished job's webhook says and how it is signed (checked by Python's own HMAC), which endings send nothing, and how every kind of answer is retried or given up.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use cronium_core::{
    ActionSpec, ActionTarget, ChannelKind, ChannelName, ChannelSpec, EventKind, EventName,
    EventSpec, EventStatus, JobStatus, RunLocation, RunPolicy, Schedule, SealedSecrets, Trigger,
    When,
};
use cronium_engine::deliveries::{Deliveries, DeliveryConfig, Occasion};
use cronium_engine::payloads::PayloadFiles;
use cronium_engine::secrets::{MasterKey, Sealer};
use cronium_exec::testing::sink::{Answer, Received, Sink};
use cronium_exec::testing::smtp_sink::{Certs, Mode, SmtpSink, SmtpSinkConfig};
use cronium_exec::{Allow, Guard};
use cronium_payload::Interpreter;
use cronium_store::testing::{TestPostgres, sqlite_url};
use cronium_store::{
    AuditEntry, Claim, Delivery, DeliveryReason, DeliveryStatus, Event, Job, JobOutcome, NewJob,
    Store,
};
use serde_json::{Value, json};

/// Makes `name::sqlite` and `name::postgres` tokio tests from `async fn name(url, dir)`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(&super::sqlite_url(dir.path()), dir.path()).await;
            }

            #[tokio::test]
            async fn postgres() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(&super::TestPostgres::fresh_database(), dir.path()).await;
            }
        }
    )*};
}

on_both!(
    a_failed_job_posts_one_signed_message_that_describes_it,
    a_succeeded_job_with_only_a_failure_action_sends_nothing,
    a_receiver_failing_twice_gets_the_same_message_a_third_time_after_backoff,
    one_try_ends_as_the_answer_decides,
    the_last_try_allowed_gives_up_with_the_last_error,
    slack_and_discord_channels_get_an_unsigned_summary_at_their_sealed_url,
    a_running_job_announces_its_start_and_its_overrun_once_each,
    a_failed_job_mails_its_email_channel_over_starttls_and_implicit_tls,
    a_relay_answering_451_twice_takes_the_same_mail_on_the_third_try,
    a_relay_answering_550_fails_the_delivery_at_once_and_the_job_stays_as_it_was,
    a_relay_the_guard_refuses_is_never_contacted_and_the_delivery_gives_up,
);

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry {
        at: t0(),
        actor: None,
        action: action.into(),
        target_type: "event".into(),
        target_id: None,
        detail: json!({}),
    }
}

/// A store, the sealer its channel secrets are sealed with, and where payloads go.
struct World {
    store: Arc<dyn Store>,
    sealer: Sealer,
    dir: std::path::PathBuf,
}

impl World {
    async fn open(url: &str, dir: &std::path::Path) -> World {
        let store = cronium_store::open(url).await.unwrap();
        store.ensure_admin(t0()).await.unwrap();
        World {
            store,
            sealer: Sealer::new(&MasterKey::generate()),
            dir: dir.to_path_buf(),
        }
    }

    /// An event `name` whose jobs notify a channel posting to `url` on `when`.
    async fn notifying(&self, name: &str, url: &str, when: When) -> Event {
        let sealed = self.sealer.seal_channel_secret(SECRET);
        self.notifying_via(name, ChannelKind::Webhook, url.into(), sealed, when)
            .await
    }

    /// An event `name` whose jobs notify a Slack or Discord channel posting to
    /// `url` (sealed, as the API keeps it) on `when`.
    async fn notifying_chat(&self, name: &str, kind: ChannelKind, url: &str, when: When) -> Event {
        let sealed = self.sealer.seal_channel_url(url);
        self.notifying_via(name, kind, cronium_core::redact_url(url), sealed, when)
            .await
    }

    /// An event `name` whose jobs mail `sink` (started in `mode`) on
    /// `when`: over TLS with AUTH and the sink's CA, or plain SMTP without.
    async fn notifying_email(
        &self,
        name: &str,
        (sink, mode): (&SmtpSink, Mode),
        certs: Option<&Certs>,
        when: When,
    ) -> Event {
        use cronium_core::{EmailAddress, EmailSettings, SmtpTls};
        let address = |a: &str| EmailAddress::new(a, "to").unwrap();
        let tls = match mode {
            Mode::Plain => SmtpTls::None,
            Mode::Starttls => SmtpTls::Starttls,
            Mode::Tls => SmtpTls::Tls,
        };
        let settings = EmailSettings {
            to: vec![address("ops@example.com"), address("oncall@example.org")],
            from: address("cronium@example.com"),
            host: "127.0.0.1".into(),
            port: sink.port(),
            tls,
            username: certs.map(|_| "bot".to_string()),
            ca_cert: certs.map(Certs::ca_pem),
        };
        let sealed = match certs {
            Some(_) => self.sealer.seal_smtp_password(SMTP_PASSWORD),
            None => Vec::new(),
        };
        let url = settings.relay_url();
        self.notifying_via_spec(name, ChannelKind::Email, url, sealed, Some(settings), when)
            .await
    }

    async fn notifying_via(
        &self,
        name: &str,
        kind: ChannelKind,
        url: String,
        sealed_secret: Vec<u8>,
        when: When,
    ) -> Event {
        self.notifying_via_spec(name, kind, url, sealed_secret, None, when)
            .await
    }

    async fn notifying_via_spec(
        &self,
        name: &str,
        kind: ChannelKind,
        url: String,
        sealed_secret: Vec<u8>,
        email: Option<cronium_core::EmailSettings>,
        when: When,
    ) -> Event {
        let spec = EventSpec {
            name: EventName::new(name).unwrap(),
            description: String::new(),
            kind: EventKind::Script,
            interpreter: Some(Interpreter::Bash),
            content: "exit 3\n".into(),
            env: Default::default(),
            secret_env: SealedSecrets::default(),
            schedule: Schedule::every("1h").unwrap(),
            status: EventStatus::Paused,
            run_location: RunLocation::Local,
            target_servers: vec![],
            target_tags: Default::default(),
            timeout: Duration::from_secs(60),
            retries: 0,
            tags: BTreeSet::new(),
            policy: RunPolicy::default(),
            http: None,
        };
        let mut writer = PayloadFiles::new(&self.dir).writer();
        let event = self
            .store
            .create_event(
                cronium_core::UserId(1),
                spec,
                &mut writer,
                t0(),
                &audit("event.create"),
            )
            .await
            .unwrap();
        writer.commit();
        // Event names are free text; channel names are not.
        let plain: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let channel = self
            .store
            .create_channel(
                ChannelSpec {
                    name: ChannelName::new(&format!("{plain}-hook")).unwrap(),
                    kind,
                    url,
                    sealed_secret,
                    email,
                },
                t0(),
                &audit("channel.create"),
            )
            .await
            .unwrap();
        self.store
            .add_action(
                event.id,
                ActionSpec::new(when, None, ActionTarget::Notify(channel.id)).unwrap(),
                t0(),
                &audit("action.add"),
            )
            .await
            .unwrap();
        event
    }

    /// A manual run of `event` queued at t0 and started at t0 + 1 s.
    async fn started(&self, event: &Event) -> Claim {
        let job = self
            .store
            .enqueue_job(
                NewJob {
                    event_id: event.id,
                    trigger: Trigger::Manual,
                    scheduled_at: t0(),
                    input: None,
                },
                t0(),
            )
            .await
            .unwrap();
        let claim = self
            .store
            .claim_job("worker", t0() + secs(1), Duration::from_secs(30))
            .await
            .unwrap()
            .expect("the run is claimable");
        assert_eq!(claim.job.id, job.id);
        claim
    }

    /// A manual run of `event` that ran from t0 + 1 s and ended `status` at t0 + 3 s.
    async fn finished(&self, event: &Event, status: JobStatus) -> Job {
        let claim = self.started(event).await;
        let failed = status != JobStatus::Succeeded;
        self.store
            .finish_job(
                &claim.fence,
                JobOutcome {
                    status,
                    exit_code: Some(if failed { 3 } else { 0 }),
                    error: failed.then(|| "exit status 3".to_string()),
                    metadata: json!({ "durationMs": 2000, "signal": null }),
                },
                t0() + secs(60),
                t0() + secs(3),
            )
            .await
            .unwrap()
    }

    fn deliveries(&self, guard: Guard, tune: impl FnOnce(&mut DeliveryConfig)) -> Deliveries {
        let mut config = DeliveryConfig::new("node-a/1/test");
        config.public_url = Some("https://cron.example.com/".into());
        tune(&mut config);
        Deliveries::new(self.store.clone(), self.sealer.clone(), guard, config)
    }

    async fn only_delivery(&self, job: &Job) -> Delivery {
        let all = self.store.job_deliveries(job.id).await.unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        all.into_iter().next().unwrap()
    }
}

const SMTP_PASSWORD: &str = "relay-pa55word-never-shown";

/// An SMTP receiver in `mode` (with AUTH unless plain) answering `answers`.
fn smtp_sink(mode: Mode, certs: Option<&Certs>, answers: &[&str]) -> SmtpSink {
    let mut config = SmtpSinkConfig {
        mode,
        auth: (mode != Mode::Plain).then(|| ("bot".to_string(), SMTP_PASSWORD.to_string())),
        ..SmtpSinkConfig::default()
    };
    if !answers.is_empty() {
        config.answers = answers.iter().map(|a| a.to_string()).collect();
    }
    SmtpSink::start(config, certs)
}

fn loopback() -> Guard {
    Guard::new(vec![Allow::parse("127.0.0.1/32").unwrap()])
}

/// The signature Python's own `hmac`, `hashlib` and `base64` compute for a
/// request, from the Standard Webhooks recipe, not from our code.
fn python_signature(request: &Received, secret: &str) -> String {
    let input = json!({
        "id": request.header("webhook-id").unwrap(),
        "timestamp": request.header("webhook-timestamp").unwrap(),
        "body": BASE64.encode(&request.body),
        "secret": secret,
    });
    let script = r#"
import base64, hashlib, hmac, json, sys
d = json.load(sys.stdin)
key = base64.b64decode(d["secret"][len("whsec_"):])
signed = (d["id"] + "." + d["timestamp"] + ".").encode() + base64.b64decode(d["body"])
print("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode())
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `at` is within `[from + low, from + high]` (whole seconds; plus a second
/// for the time the tick itself took).
fn assert_between(at: DateTime<Utc>, from: DateTime<Utc>, low: f64, high: f64, what: &str) {
    let waited = (at - from).as_seconds_f64();
    assert!(
        waited >= low && waited <= high + 1.0,
        "{what}: waited {waited}s, expected {low}..{high}s"
    );
}

async fn a_failed_job_posts_one_signed_message_that_describes_it(url: &str, dir: &std::path::Path) {
    let w = World::open(url, dir).await;
    let sink = Sink::always(Answer::status("200 OK", ""));
    let event = w
        .notifying("nightly-backup", &sink.url("/hook"), When::Failure)
        .await;
    let job = w.finished(&event, JobStatus::Failed).await;
    let deliveries = w.deliveries(loopback(), |_| {});

    let now = t0() + secs(10);
    assert_eq!(deliveries.tick(now).await.unwrap(), 1);
    let got = sink.received();
    assert_eq!(got.len(), 1, "exactly one POST");
    let request = &got[0];
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "/hook")
    );

    // Signed the Standard Webhooks way, as an independent implementation computes it.
    let delivery = w.only_delivery(&job).await;
    assert_eq!(
        request.header("webhook-id"),
        Some(delivery.webhook_id().as_str())
    );
    let timestamp: i64 = request
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!((now.timestamp()..now.timestamp() + 5).contains(&timestamp));
    assert_eq!(
        request.header("webhook-signature"),
        Some(python_signature(request, SECRET).as_str())
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(
        request
            .header("user-agent")
            .unwrap()
            .starts_with("cronium/")
    );

    // The body is the job's final state.
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let job = w.store.get_job(job.id).await.unwrap();
    assert_eq!(
        body,
        json!({
            "type": "job.finished",
            "timestamp": "2026-03-01T12:00:03Z",
            "data": {
                "event": { "id": event.id.0, "name": "nightly-backup" },
                "job": {
                    "id": job.id.0,
                    "status": "failed",
                    "attempt": 1,
                    "exitCode": 3,
                    "error": "exit status 3",
                    "durationMs": 2000,
                    "scheduledAt": "2026-03-01T12:00:00Z",
                    "startedAt": "2026-03-01T12:00:01Z",
                    "finishedAt": "2026-03-01T12:00:03Z",
                    "trigger": "manual",
                    "output": null,
                    "condition": false,
                },
                "link": format!("https://cron.example.com/api/v1/jobs/{}", job.id.0),
            },
        })
    );
    // Nothing leaks the key: not the body, not a header.
    let key = SECRET.trim_start_matches("whsec_");
    assert!(!String::from_utf8_lossy(&request.body).contains(key));
    assert!(request.headers.iter().all(|(_, v)| !v.contains(key)));

    let delivery = w.only_delivery(&job).await;
    assert_eq!(
        (delivery.status, delivery.attempts, delivery.last_status),
        (DeliveryStatus::Delivered, 1, Some(200))
    );
    assert_eq!(delivery.last_error, None);
    // Delivered is done: later ticks send nothing more.
    assert_eq!(deliveries.tick(now + secs(3600)).await.unwrap(), 0);
    assert_eq!(sink.received().len(), 1);
    // And the job is as it was.
    assert_eq!(w.store.get_job(job.id).await.unwrap(), job);
}

async fn a_succeeded_job_with_only_a_failure_action_sends_nothing(
    url: &str,
    dir: &std::path::Path,
) {
    let w = World::open(url, dir).await;
    let sink = Sink::always(Answer::status("200 OK", ""));
    let event = w.notifying("fine", &sink.url("/"), When::Failure).await;
    let job = w.finished(&event, JobStatus::Succeeded).await;
    let deliveries = w.deliveries(loopback(), |_| {});
    assert_eq!(deliveries.tick(t0() + secs(10)).await.unwrap(), 0);
    assert!(w.store.job_deliveries(job.id).await.unwrap().is_empty());
    assert_eq!(sink.accepted(), 0);
}

async fn a_receiver_failing_twice_gets_the_same_message_a_third_time_after_backoff(
    url: &str,
    dir: &std::path::Path,
) {
    let w = World::open(url, dir).await;
    let sink = Sink::start(|n| match n {
        0 | 1 => Answer::status("500 Internal Server Error", "database is down"),
        _ => Answer::status("200 OK", "thanks"),
    });
    let event = w.notifying("flaky", &sink.url("/"), When::Always).await;
    let job = w.finished(&event, JobStatus::Failed).await;
    let deliveries = w.deliveries(loopback(), |c| c.base_delay = Duration::from_secs(5));

    // First try at t1: a 500, retried after base_delay · [0.5, 1).
    let t1 = t0() + secs(10);
    assert_eq!(deliveries.tick(t1).await.unwrap(), 1);
    let d = w.only_delivery(&job).await;
    assert_eq!(
        (d.status, d.attempts, d.last_status),
        (DeliveryStatus::Pending, 1, Some(500))
    );
    assert_eq!(
        d.last_error.as_deref(),
        Some("500 Internal Server Error: database is down")
    );
    assert_between(d.next_attempt_at, t1, 2.5, 5.0, "first backoff");
    // Not before its time.
    assert_eq!(
        deliveries.tick(d.next_attempt_at - secs(1)).await.unwrap(),
        0
    );

    // Second try when due: another 500, and the wait doubles.
    let t2 = d.next_attempt_at;
    assert_eq!(deliveries.tick(t2).await.unwrap(), 1);
    let d = w.only_delivery(&job).await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 2));
    assert_between(d.next_attempt_at, t2, 5.0, 10.0, "second backoff");

    // Third try: delivered.
    assert_eq!(deliveries.tick(d.next_attempt_at).await.unwrap(), 1);
    let d = w.only_delivery(&job).await;
    assert_eq!(
        (d.status, d.attempts, d.last_status, d.last_error.as_deref()),
        (DeliveryStatus::Delivered, 3, Some(200), None)
    );

    // Three POSTs of one message: one id, one body, each try signed anew.
    let got = sink.received();
    assert_eq!(got.len(), 3);
    let ids: BTreeSet<_> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids, BTreeSet::from([Some(d.webhook_id().as_str())]));
    assert!(got.iter().all(|r| r.body == got[0].body));
    for request in &got {
        assert_eq!(
            request.header("webhook-signature"),
            Some(python_signature(request, SECRET).as_str())
        );
    }
    assert_eq!(deliveries.tick(t2 + secs(3600)).await.unwrap(), 0);
    assert_eq!(sink.received().len(), 3);
}

/// How one try went, as the delivery records it.
struct Expect {
    status: DeliveryStatus,
    last_status: Option<u16>,
    /// The start of `last_error` (`None`: no error).
    error: Option<&'static str>,
    /// For a retry: the wait, `low..=high` seconds.
    retry_in: Option<(f64, f64)>,
}

async fn one_try_ends_as_the_answer_decides(url: &str, dir: &std::path::Path) {
    use DeliveryStatus::*;
    let w = World::open(url, dir).await;
    let now = t0() + secs(10);
    // (case, the receiver's answer, whether the guard allows loopback, the outcome)
    let table = [
        (
            "2xx",
            Answer::status("204 No Content", ""),
            true,
            Expect {
                status: Delivered,
                last_status: Some(204),
                error: None,
                retry_in: None,
            },
        ),
        (
            "429 with Retry-After is retried when asked",
            Answer::status("429 Too Many Requests", "slow down").with_header("Retry-After", "120"),
            true,
            Expect {
                status: Pending,
                last_status: Some(429),
                error: Some("429 Too Many Requests: slow down"),
                retry_in: Some((120.0, 120.0)),
            },
        ),
        (
            "429 asking for less than the backoff waits the backoff",
            Answer::status("429 Too Many Requests", "").with_header("Retry-After", "0"),
            true,
            Expect {
                status: Pending,
                last_status: Some(429),
                error: Some("429 Too Many Requests"),
                retry_in: Some((2.5, 5.0)),
            },
        ),
        (
            "503 is retried after the backoff",
            Answer::status("503 Service Unavailable", "maintenance"),
            true,
            Expect {
                status: Pending,
                last_status: Some(503),
                error: Some("503 Service Unavailable: maintenance"),
                retry_in: Some((2.5, 5.0)),
            },
        ),
        (
            "404 is given up at once",
            Answer::status("404 Not Found", "no such hook"),
            true,
            Expect {
                status: Failed,
                last_status: Some(404),
                error: Some("404 Not Found: no such hook"),
                retry_in: None,
            },
        ),
        (
            "a redirect is an answer, given up",
            Answer::status("301 Moved Permanently", "")
                .with_header("Location", "http://127.0.0.1:1/"),
            true,
            Expect {
                status: Failed,
                last_status: Some(301),
                error: Some("301 Moved Permanently (redirects are not followed)"),
                retry_in: None,
            },
        ),
        (
            "no answer within the timeout is retried",
            Answer::Hang,
            true,
            Expect {
                status: Pending,
                last_status: None,
                error: Some("no answer within 300ms"),
                retry_in: Some((2.5, 5.0)),
            },
        ),
        (
            "a refused address is given up without connecting",
            Answer::status("200 OK", ""),
            false,
            Expect {
                status: Failed,
                last_status: None,
                error: Some("refused: 127.0.0.1 is a loopback address"),
                retry_in: None,
            },
        ),
    ];
    for (i, (case, answer, allow_loopback, expect)) in table.into_iter().enumerate() {
        let sink = Sink::always(answer);
        let event = w
            .notifying(&format!("case-{i}"), &sink.url("/"), When::Failure)
            .await;
        let job = w.finished(&event, JobStatus::Failed).await;
        let guard = if allow_loopback {
            loopback()
        } else {
            Guard::default()
        };
        let deliveries = w.deliveries(guard, |c| c.timeout = Duration::from_millis(300));
        assert_eq!(deliveries.tick(now).await.unwrap(), 1, "{case}");
        let d = w.only_delivery(&job).await;
        assert_eq!(
            (d.status, d.attempts, d.last_status),
            (expect.status, 1, expect.last_status),
            "{case}"
        );
        match (expect.error, d.last_error.as_deref()) {
            (None, None) => {}
            (Some(want), Some(got)) => assert!(got.starts_with(want), "{case}: {got}"),
            (want, got) => panic!("{case}: error {got:?}, expected {want:?}"),
        }
        match expect.retry_in {
            Some((low, high)) => assert_between(d.next_attempt_at, now, low, high, case),
            None => assert_ne!(d.status, Pending, "{case}"),
        }
        let connections = if allow_loopback { 1 } else { 0 };
        assert_eq!(sink.accepted(), connections, "{case}");
    }
}

async fn the_last_try_allowed_gives_up_with_the_last_error(url: &str, dir: &std::path::Path) {
    let w = World::open(url, dir).await;
    let sink = Sink::always(Answer::status("503 Service Unavailable", "still down"));
    let event = w.notifying("down", &sink.url("/"), When::Failure).await;
    let job = w.finished(&event, JobStatus::TimedOut).await;
    let deliveries = w.deliveries(loopback(), |c| c.max_attempts = 3);
    let mut now = t0() + secs(10);
    for tries in 1..=3 {
        assert_eq!(deliveries.tick(now).await.unwrap(), 1, "try {tries}");
        now = w.only_delivery(&job).await.next_attempt_at;
    }
    let d = w.only_delivery(&job).await;
    assert_eq!(
        (d.status, d.attempts, d.last_status),
        (DeliveryStatus::Failed, 3, Some(503))
    );
    assert_eq!(
        d.last_error.as_deref(),
        Some("503 Service Unavailable: still down (gave up after 3 tries)")
    );
    assert_eq!(deliveries.tick(now + secs(86_400)).await.unwrap(), 0);
    assert_eq!(sink.received().len(), 3);
}

async fn slack_and_discord_channels_get_an_unsigned_summary_at_their_sealed_url(
    url: &str,
    dir: &std::path::Path,
) {
    let w = World::open(url, dir).await;
    let slack = Sink::always(Answer::status("200 OK", "ok"));
    let discord = Sink::always(Answer::status("204 No Content", ""));
    let to_slack = w
        .notifying_chat(
            "<!channel> & <https://evil|click>",
            ChannelKind::Slack,
            &slack.url("/services/T01/B02/tokenA"),
            When::Failure,
        )
        .await;
    let to_discord = w
        .notifying_chat(
            "@everyone *now*",
            ChannelKind::Discord,
            &discord.url("/api/webhooks/99/tokenB"),
            When::Failure,
        )
        .await;
    let slack_job = w.finished(&to_slack, JobStatus::Failed).await;
    let discord_job = w.finished(&to_discord, JobStatus::Failed).await;
    let deliveries = w.deliveries(loopback(), |_| {});
    assert_eq!(deliveries.tick(t0() + secs(10)).await.unwrap(), 2);

    // Slack got its text at the URL that was sealed, with every `& < >` of
    // the event's name escaped, and no Standard Webhooks headers.
    let got = slack.received();
    assert_eq!(got.len(), 1, "exactly one POST to Slack");
    let request = &got[0];
    assert_eq!(request.target, "/services/T01/B02/tokenA");
    assert_eq!(request.header("content-type"), Some("application/json"));
    for header in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert_eq!(request.header(header), None, "{header}");
    }
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        body,
        json!({ "text": format!(
            "*&lt;!channel&gt; &amp; &lt;https://evil|click&gt;* failed (exit 3) after 2.0s — job {}\n\
             exit status 3\nhttps://cron.example.com/api/v1/jobs/{}",
            slack_job.id, slack_job.id
        ) })
    );

    // Discord got its content, mentions parsed from nothing, markdown escaped.
    let got = discord.received();
    assert_eq!(got.len(), 1, "exactly one POST to Discord");
    let request = &got[0];
    assert_eq!(request.target, "/api/webhooks/99/tokenB");
    assert_eq!(request.header("webhook-signature"), None);
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["allowed_mentions"], json!({ "parse": [] }));
    assert_eq!(
        body["content"],
        format!(
            "*\\@everyone \\*now\\** failed (exit 3) after 2.0s — job {}\n\
             exit status 3\nhttps://cron.example.com/api/v1/jobs/{}",
            discord_job.id, discord_job.id
        )
    );
    for job in [&slack_job, &discord_job] {
        let delivery = w.only_delivery(job).await;
        assert_eq!(delivery.status, DeliveryStatus::Delivered, "{delivery:?}");
    }
}

async fn a_failed_job_mails_its_email_channel_over_starttls_and_implicit_tls(
    url: &str,
    dir: &std::path::Path,
) {
    let w = World::open(url, dir).await;
    let certs = Certs::make();
    for (name, mode) in [
        ("mailed-starttls", Mode::Starttls),
        ("mailed-tls", Mode::Tls),
    ] {
        let sink = smtp_sink(mode, Some(&certs), &["250 2.0.0 Ok: queued as 4F2A"]);
        let event = w
            .notifying_email(name, (&sink, mode), Some(&certs), When::Failure)
            .await;
        let job = w.finished(&event, JobStatus::Failed).await;
        let deliveries = w.deliveries(loopback(), |_| {});
        assert_eq!(deliveries.tick(t0() + secs(10)).await.unwrap(), 1);

        let got = sink.received();
        assert_eq!(got.len(), 1, "{mode:?}: exactly one mail");
        let mail = &got[0];
        assert!(mail.tls, "{mode:?}");
        assert_eq!(mail.user.as_deref(), Some("bot"));
        assert_eq!(mail.mail_from, "cronium@example.com");
        assert_eq!(mail.rcpt_tos, ["ops@example.com", "oncall@example.org"]);
        let delivery = w.only_delivery(&job).await;
        assert_eq!(
            mail.header("subject"),
            Some(format!("[Cronium] {name} failed (exit 3) on job {}", job.id).as_str())
        );
        assert_eq!(
            mail.header("message-id"),
            Some(format!("<{}@example.com>", delivery.webhook_id()).as_str())
        );
        assert_eq!(mail.header("from"), Some("Cronium <cronium@example.com>"));
        assert_eq!(
            mail.header("to"),
            Some("ops@example.com, oncall@example.org")
        );
        assert_eq!(mail.header("date"), Some("Sun, 01 Mar 2026 12:00:03 +0000"));
        let body = mail.body.as_deref().unwrap();
        for line in [
            format!("*{name}* failed (exit 3) after 2.0s — job {}", job.id),
            format!("Event:      {name} (id {})", event.id),
            format!("Job:        {} (attempt 1, manual)", job.id),
            "Status:     failed".to_string(),
            "Exit code:  3".to_string(),
            "Duration:   2.0s".to_string(),
            "  exit status 3".to_string(),
            format!("https://cron.example.com/api/v1/jobs/{}", job.id),
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "{line:?} missing from:\n{body}"
            );
        }
        assert!(!mail.raw.contains(SMTP_PASSWORD));
        assert_eq!(
            (
                delivery.status,
                delivery.attempts,
                delivery.last_status,
                delivery.last_error
            ),
            (DeliveryStatus::Delivered, 1, Some(250), None)
        );
    }
}

async fn a_relay_answering_451_twice_takes_the_same_mail_on_the_third_try(
    url: &str,
    dir: &std::path::Path,
) {
    let w = World::open(url, dir).await;
    let sink = smtp_sink(
        Mode::Plain,
        None,
        &[
            "451 4.3.0 try again later",
            "451 4.3.0 try again later",
            "250 2.0.0 Ok",
        ],
    );
    let event = w
        .notifying_email("greylisted", (&sink, Mode::Plain), None, When::Failure)
        .await;
    let job = w.finished(&event, JobStatus::Failed).await;
    let deliveries = w.deliveries(loopback(), |c| c.base_delay = Duration::from_secs(5));

    let t1 = t0() + secs(10);
    assert_eq!(deliveries.tick(t1).await.unwrap(), 1);
    let d = w.only_delivery(&job).await;
    assert_eq!(
        (d.status, d.attempts, d.last_status, d.last_error.as_deref()),
        (
            DeliveryStatus::Pending,
            1,
            Some(451),
            Some("451 4.3.0 try again later")
        )
    );
    assert_between(d.next_attempt_at, t1, 2.5, 5.0, "first backoff");
    assert_eq!(deliveries.tick(d.next_attempt_at).await.unwrap(), 1);
    let d = w.only_delivery(&job).await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 2));
    assert_eq!(deliveries.tick(d.next_attempt_at).await.unwrap(), 1);
    let d = w.only_delivery(&job).await;
    assert_eq!(
        (d.status, d.attempts, d.last_status, d.last_error.as_deref()),
        (DeliveryStatus::Delivered, 3, Some(250), None)
    );

    // Three tries of one message; the relay took exactly one.
    let tries = sink.attempts();
    assert_eq!(tries.len(), 3);
    let ids: BTreeSet<_> = tries
        .iter()
        .map(|m| m.header("message-id").map(str::to_string))
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([Some(format!("<{}@example.com>", d.webhook_id()))])
    );
    assert!(
        tries.iter().all(|m| m.raw == tries[0].raw),
        "every try sends the same bytes"
    );
    assert_eq!(sink.received().len(), 1);
    assert_eq!(deliveries.tick(t1 + secs(3600)).await.unwrap(), 0);
}

async fn a_relay_answering_550_fails_the_delivery_at_once_and_the_job_stays_as_it_was(
    url: &str,
    dir: &std::path::Path,
) {
    let w = World::open(url, dir).await;
    let sink = smtp_sink(Mode::Plain, None, &["550 5.1.1 mailbox unavailable"]);
    let event = w
        .notifying_email("bounced", (&sink, Mode::Plain), None, When::Failure)
        .await;
    let job = w.finished(&event, JobStatus::Failed).await;
    let before = w.store.get_job(job.id).await.unwrap();
    let deliveries = w.deliveries(loopback(), |_| {});
    assert_eq!(deliveries.tick(t0() + secs(10)).await.unwrap(), 1);
    let d = w.only_delivery(&job).await;
    assert_eq!(
        (d.status, d.attempts, d.last_status, d.last_error.as_deref()),
        (
            DeliveryStatus::Failed,
            1,
            Some(550),
            Some("550 5.1.1 mailbox unavailable")
        )
    );
    assert_eq!(deliveries.tick(t0() + secs(3600)).await.unwrap(), 0);
    assert_eq!(sink.attempts().len(), 1);
    assert!(sink.received().is_empty());
    assert_eq!(w.store.get_job(job.id).await.unwrap(), before);
}

async fn a_relay_the_guard_refuses_is_never_contacted_and_the_delivery_gives_up(
    url: &str,
    dir: &std::path::Path,
) {
    let w = World::open(url, dir).await;
    let sink = smtp_sink(Mode::Plain, None, &[]);
    let event = w
        .notifying_email("guarded", (&sink, Mode::Plain), None, When::Failure)
        .await;
    let job = w.finished(&event, JobStatus::Failed).await;
    // No allow list: 127.0.0.1 is refused.
    let deliveries = w.deliveries(Guard::default(), |_| {});
    assert_eq!(deliveries.tick(t0() + secs(10)).await.unwrap(), 1);
    let d = w.only_delivery(&job).await;
    assert_eq!(
        (d.status, d.attempts, d.last_status),
        (DeliveryStatus::Failed, 1, None)
    );
    let error = d.last_error.unwrap();
    assert!(
        error.starts_with("refused: ") && error.contains("127.0.0.1 is a loopback address"),
        "{error}"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(sink.attempts().is_empty());
}

/// An event named `name` and its job 17 that ended `status` with `error`.
fn a_job(name: &str, status: JobStatus, error: Option<&str>) -> (Job, Event) {
    let (mut job, mut event) = fleet_job();
    event.spec.name = EventName::new(name).unwrap();
    job.id = cronium_core::JobId(17);
    job.status = status;
    job.exit_code = Some(3);
    job.error = error.map(str::to_string);
    job.metadata = json!({ "durationMs": 2100 });
    (job, event)
}

#[test]
fn chat_messages_escape_everything_a_job_can_put_in_them() {
    use cronium_engine::deliveries::{render_discord, render_slack};
    let slack = |job: &Job, event: &Event| -> Value {
        serde_json::from_slice(&render_slack(job, event, Occasion::End, None)).unwrap()
    };
    let discord = |job: &Job, event: &Event| -> Value {
        serde_json::from_slice(&render_discord(job, event, Occasion::End, None)).unwrap()
    };
    // (event name, status, error, Slack text, Discord content)
    let table = [
        (
            "backup",
            JobStatus::Failed,
            None,
            "*backup* failed (exit 3) after 2.1s — job 17",
            "*backup* failed (exit 3) after 2.1s — job 17",
        ),
        (
            "<!channel> & <https://evil|click>",
            JobStatus::TimedOut,
            None,
            "*&lt;!channel&gt; &amp; &lt;https://evil|click&gt;* timed out (exit 3) after 2.1s — job 17",
            "*\\<!channel\\> & \\<https://evil\\|click\\>* timed out (exit 3) after 2.1s — job 17",
        ),
        (
            "deploy",
            JobStatus::Failed,
            Some("@everyone look: <@123> **bold** `code` ~~x~~ > quote \\ [a](b)"),
            "*deploy* failed (exit 3) after 2.1s — job 17\n\
             @everyone look: &lt;@123&gt; **bold** `code` ~~x~~ &gt; quote \\ [a](b)",
            "*deploy* failed (exit 3) after 2.1s — job 17\n\
             \\@everyone look: \\<\\@123\\> \\*\\*bold\\*\\* \\`code\\` \\~\\~x\\~\\~ \\> quote \\\\ \\[a\\]\\(b\\)",
        ),
        (
            "ok",
            JobStatus::Succeeded,
            None,
            "*ok* succeeded (exit 3) after 2.1s — job 17",
            "*ok* succeeded (exit 3) after 2.1s — job 17",
        ),
    ];
    for (name, status, error, slack_text, discord_content) in table {
        let (job, event) = a_job(name, status, error);
        assert_eq!(slack(&job, &event), json!({ "text": slack_text }), "{name}");
        let body = discord(&job, &event);
        assert_eq!(body["content"], discord_content, "{name}");
        assert_eq!(body["allowed_mentions"], json!({ "parse": [] }), "{name}");
    }
}

#[test]
fn a_discord_message_is_cut_to_two_thousand_characters_and_a_long_error_quoted_in_part() {
    use cronium_engine::deliveries::{DISCORD_CONTENT_CHARS, render_discord, render_slack};
    // An escaped name, an error quoted in part and a long link come to more
    // than Discord takes.
    let (job, event) = a_job(
        &"_".repeat(100),
        JobStatus::Failed,
        Some(&"é_".repeat(2000)),
    );
    let link = format!("https://cron.example.com/{}", "(x)".repeat(400));
    let body: Value =
        serde_json::from_slice(&render_discord(&job, &event, Occasion::End, Some(&link))).unwrap();
    let content = body["content"].as_str().unwrap();
    assert_eq!(content.chars().count(), DISCORD_CONTENT_CHARS);
    assert!(content.ends_with('…'), "{content}");
    assert!(content.starts_with(&format!("*{}* failed", "\\_".repeat(100))));

    // The error is quoted up to 500 characters and marked as cut.
    let slack: Value =
        serde_json::from_slice(&render_slack(&job, &event, Occasion::End, None)).unwrap();
    let text = slack["text"].as_str().unwrap();
    let quoted = text.split_once('\n').unwrap().1;
    assert_eq!(quoted, format!("{}…", "é_".repeat(250)));
}

/// A partial fleet job of event 7 and its event.
fn fleet_job() -> (Job, Event) {
    let event = Event {
        id: cronium_core::EventId(7),
        owner: cronium_core::UserId(1),
        spec: EventSpec {
            name: EventName::new("fleet").unwrap(),
            description: String::new(),
            kind: EventKind::Script,
            interpreter: Some(Interpreter::Bash),
            content: "true\n".into(),
            env: Default::default(),
            secret_env: SealedSecrets::default(),
            schedule: Schedule::every("1h").unwrap(),
            status: EventStatus::Active,
            run_location: RunLocation::Local,
            target_servers: vec![],
            target_tags: Default::default(),
            timeout: Duration::from_secs(60),
            retries: 0,
            tags: BTreeSet::new(),
            policy: RunPolicy::default(),
            http: None,
        },
        payload_version: Some(1),
        created_at: t0(),
        updated_at: t0(),
    };
    let job = Job {
        id: cronium_core::JobId(42),
        event_id: event.id,
        payload_version: Some(1),
        trigger: Trigger::Schedule,
        status: JobStatus::Partial,
        attempt: 2,
        scheduled_at: t0(),
        run_after: t0(),
        lease_owner: None,
        lease_expires_at: None,
        cancel_requested: false,
        started_at: Some(t0() + TimeDelta::milliseconds(1500)),
        finished_at: Some(t0() + secs(9)),
        exit_code: None,
        error: Some("1 of 2 servers failed".into()),
        metadata: json!({
            "durationMs": 7500,
            "executions": [
                { "server": "web-1", "serverId": 1, "status": "succeeded", "exitCode": 0,
                  "error": null, "phase": null, "timingsMs": { "run": 10 } },
                { "server": "web-2", "serverId": 2, "status": "failed", "exitCode": null,
                  "error": "connection refused", "phase": "connect", "timingsMs": { "run": 0 } },
            ],
            "http": { "status": 502, "bodyTruncated": false },
        }),
        output: None,
        condition: false,
        created_at: t0(),
        updated_at: t0() + secs(9),
    };
    (job, event)
}

#[test]
fn a_fleet_job_lists_each_servers_execution_and_an_http_job_its_status() {
    let (job, event) = fleet_job();
    let body: Value = serde_json::from_slice(&cronium_engine::deliveries::render(
        &job,
        &event,
        Occasion::End,
        None,
    ))
    .unwrap();
    assert_eq!(
        body["data"]["executions"],
        json!([
            { "server": "web-1", "status": "succeeded", "exitCode": 0, "error": null, "phase": null },
            { "server": "web-2", "status": "failed", "exitCode": null, "error": "connection refused",
              "phase": "connect" },
        ])
    );
    assert_eq!(
        body["data"]["http"],
        json!({ "status": 502, "bodyTruncated": false })
    );
    assert_eq!(body["data"]["job"]["startedAt"], "2026-03-01T12:00:01.500Z");
    assert_eq!(body["data"].get("link"), None, "no public URL, no link");
    // The same job renders to the same bytes: every try sends what was signed before.
    assert_eq!(
        cronium_engine::deliveries::render(&job, &event, Occasion::End, None),
        cronium_engine::deliveries::render(&job, &event, Occasion::End, None)
    );
}

async fn a_running_job_announces_its_start_and_its_overrun_once_each(
    url: &str,
    dir: &std::path::Path,
) {
    use cronium_engine::deliveries::{render_discord, render_slack};
    let w = World::open(url, dir).await;
    let sink = Sink::always(Answer::status("200 OK", ""));
    let event = w
        .notifying("slow-report", &sink.url("/hook"), When::Start)
        .await;
    let actions = w.store.list_actions(event.id).await.unwrap();
    let late = ActionSpec::new(When::DurationExceeded, Some(60), actions[0].spec.target).unwrap();
    w.store
        .add_action(event.id, late, t0(), &audit("action.add"))
        .await
        .unwrap();
    let claim = w.started(&event).await;
    let job = claim.job.clone();
    assert!(claim.owes_deliveries);
    let deliveries = w.deliveries(loopback(), |_| {});

    // The start: sent at once, signed, saying only what the start fixed.
    assert_eq!(deliveries.tick(t0() + secs(2)).await.unwrap(), 1);
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("webhook-signature"),
        Some(python_signature(&got[0], SECRET).as_str())
    );
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    let job_brief = json!({
        "id": job.id.0,
        "status": "running",
        "scheduledAt": "2026-03-01T12:00:00Z",
        "trigger": "manual",
    });
    assert_eq!(
        body,
        json!({
            "type": "job.started",
            "timestamp": "2026-03-01T12:00:01Z",
            "data": {
                "event": { "id": event.id.0, "name": "slow-report" },
                "job": job_brief,
                "link": format!("https://cron.example.com/api/v1/jobs/{}", job.id.0),
            },
        })
    );

    // The overrun: not before 60 s of running, then once.
    assert_eq!(deliveries.tick(t0() + secs(60)).await.unwrap(), 0);
    assert_eq!(deliveries.tick(t0() + secs(61)).await.unwrap(), 1);
    assert_eq!(deliveries.tick(t0() + secs(62)).await.unwrap(), 0);
    assert_eq!(deliveries.tick(t0() + secs(3600)).await.unwrap(), 0);
    let got = sink.received();
    assert_eq!(got.len(), 2);
    let body: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(body["type"], "job.duration_exceeded");
    assert_eq!(body["timestamp"], "2026-03-01T12:01:01Z");
    let mut overdue_brief = job_brief.clone();
    overdue_brief["afterSecs"] = json!(60);
    assert_eq!(body["data"]["job"], overdue_brief);
    let ids: BTreeSet<&str> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "two messages, two ids");

    // Its end fires no end action (it has none), and the two stay delivered.
    w.store
        .finish_job(
            &claim.fence,
            JobOutcome {
                status: JobStatus::Succeeded,
                exit_code: Some(0),
                error: None,
                metadata: json!({ "durationMs": 3_599_000 }),
            },
            t0() + secs(3700),
            t0() + secs(3600),
        )
        .await
        .unwrap();
    assert_eq!(deliveries.tick(t0() + secs(3601)).await.unwrap(), 0);
    let all = w.store.job_deliveries(job.id).await.unwrap();
    let reasons: Vec<_> = all.iter().map(|d| (d.reason, d.status)).collect();
    assert_eq!(
        reasons,
        [
            (DeliveryReason::Start, DeliveryStatus::Delivered),
            (DeliveryReason::DurationExceeded, DeliveryStatus::Delivered),
        ]
    );

    // Chat channels say the same in a line.
    let job = w.store.get_job(job.id).await.unwrap();
    let at = t0() + secs(61);
    let slack: Value = serde_json::from_slice(&render_slack(
        &job,
        &event,
        Occasion::DurationExceeded {
            at,
            after_secs: Some(600),
        },
        None,
    ))
    .unwrap();
    assert_eq!(
        slack["text"],
        format!(
            "*slow-report* is still running after 10m 00s — job {}",
            job.id
        )
    );
    let discord: Value =
        serde_json::from_slice(&render_discord(&job, &event, Occasion::Start { at }, None))
            .unwrap();
    assert_eq!(
        discord["content"],
        format!("*slow-report* started — job {}", job.id)
    );
    // And mail: the subject says it; the body holds no final facts.
    let overrun = Occasion::DurationExceeded {
        at,
        after_secs: Some(60),
    };
    let (subject, body) = cronium_engine::deliveries::render_email(&job, &event, overrun, None);
    assert_eq!(
        subject,
        format!(
            "[Cronium] slow-report is still running after 1m 00s on job {}",
            job.id
        )
    );
    assert!(body.contains("Status:     running"), "{body}");
    assert!(body.contains("At:         2026-03-01T12:01:01Z"), "{body}");
    assert!(!body.contains("Exit code"), "{body}");
}

#[test]
fn an_email_names_the_job_in_its_subject_and_lists_its_facts_and_servers() {
    use cronium_engine::deliveries::render_email;
    let (job, event) = fleet_job();
    let (subject, body) = render_email(
        &job,
        &event,
        Occasion::End,
        Some("https://cron.example.com/"),
    );
    assert_eq!(subject, "[Cronium] fleet failed on some servers on job 42");
    assert_eq!(
        body,
        "*fleet* failed on some servers after 7.5s — job 42\n\
         \n\
         Event:      fleet (id 7)\n\
         Job:        42 (attempt 2, schedule)\n\
         Status:     partial\n\
         Duration:   7.5s\n\
         Started:    2026-03-01T12:00:01.500Z\n\
         Finished:   2026-03-01T12:00:09Z\n\
         HTTP:       502 Bad Gateway\n\
         \n\
         Servers:\n  web-1: succeeded (exit 0)\n  web-2: failed, at connect: connection refused\n\
         \n\
         Error:\n  1 of 2 servers failed\n\
         \n\
         https://cron.example.com/api/v1/jobs/42\n"
    );
    // The same job renders to the same mail: every try sends what the first did.
    assert_eq!(
        render_email(&job, &event, Occasion::End, None),
        render_email(&job, &event, Occasion::End, None)
    );
}
