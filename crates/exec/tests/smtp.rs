//! One mail through `smtp::send` to a real SMTP receiver (aiosmtpd) on loopback: STARTTLS with AUTH, implicit TLS, plain; the relay's answers as given (250, 550, 451); the guard refusing the relay before any connection; a certificate no trusted CA signed.

use std::time::{Duration, SystemTime};

use cronium_core::{EmailAddress, SmtpTls};
use cronium_exec::smtp::{self, Mail, Password, Relay, SendError};
use cronium_exec::testing::smtp_sink::{Certs, Mode, SmtpSink, SmtpSinkConfig};
use cronium_exec::{Allow, Guard};

const TIMEOUT: Duration = Duration::from_secs(10);
const PASSWORD: &str = "s3cret-relay-password";

fn loopback() -> Guard {
    Guard::new(vec![Allow::parse("127.0.0.1/32").unwrap()])
}

fn mail() -> Mail {
    let address = |a: &str| EmailAddress::new(a, "to").unwrap();
    Mail {
        from: address("cronium@example.com"),
        to: vec![address("ops@example.com"), address("oncall@example.org")],
        subject: "[Cronium] backup failed (exit 3) on job 42".into(),
        body: "backup failed (exit 3) after 2.1s — job 42\n".into(),
        message_id: "msg_cronium_7@example.com".into(),
        date: SystemTime::now(),
    }
}

fn relay(sink: &SmtpSink, tls: SmtpTls, certs: Option<&Certs>, auth: bool) -> Relay {
    Relay {
        host: "127.0.0.1".into(),
        port: sink.port(),
        tls,
        credentials: auth.then(|| ("bot".to_string(), Password(PASSWORD.into()))),
        ca_cert: certs.map(Certs::ca_pem),
    }
}

fn sink(mode: Mode, certs: Option<&Certs>, auth: bool, answers: &[&str]) -> SmtpSink {
    let mut config = SmtpSinkConfig {
        mode,
        auth: auth.then(|| ("bot".to_string(), PASSWORD.to_string())),
        ..SmtpSinkConfig::default()
    };
    if !answers.is_empty() {
        config.answers = answers.iter().map(|a| a.to_string()).collect();
    }
    SmtpSink::start(config, certs)
}

#[tokio::test]
async fn a_mail_over_starttls_with_auth_arrives_as_sent() {
    let certs = Certs::make();
    let sink = sink(
        Mode::Starttls,
        Some(&certs),
        true,
        &["250 2.0.0 Ok: queued as 4F2A"],
    );
    let reply = smtp::send(
        &loopback(),
        relay(&sink, SmtpTls::Starttls, Some(&certs), true),
        &mail(),
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(
        (reply.code, reply.text.as_str()),
        (250, "250 2.0.0 Ok: queued as 4F2A")
    );
    let got = sink.received();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert!(m.tls, "STARTTLS was on");
    assert_eq!(m.user.as_deref(), Some("bot"));
    assert_eq!(m.mail_from, "cronium@example.com");
    assert_eq!(m.rcpt_tos, ["ops@example.com", "oncall@example.org"]);
    assert_eq!(
        m.header("subject"),
        Some("[Cronium] backup failed (exit 3) on job 42")
    );
    assert_eq!(m.header("message-id"), Some("<msg_cronium_7@example.com>"));
    assert_eq!(
        m.body.as_deref(),
        Some("backup failed (exit 3) after 2.1s — job 42\n")
    );
    assert!(!m.raw.contains(PASSWORD));
}

#[tokio::test]
async fn a_mail_over_implicit_tls_arrives() {
    let certs = Certs::make();
    let sink = sink(Mode::Tls, Some(&certs), true, &[]);
    let reply = smtp::send(
        &loopback(),
        relay(&sink, SmtpTls::Tls, Some(&certs), true),
        &mail(),
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(reply.code, 250);
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls);
    assert_eq!(got[0].user.as_deref(), Some("bot"));
}

#[tokio::test]
async fn a_plain_relay_takes_a_mail_without_auth() {
    let sink = sink(Mode::Plain, None, false, &[]);
    smtp::send(
        &loopback(),
        relay(&sink, SmtpTls::None, None, false),
        &mail(),
        TIMEOUT,
    )
    .await
    .unwrap();
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert!(!got[0].tls);
    assert_eq!(got[0].user, None);
}

#[tokio::test]
async fn the_relays_refusals_are_returned_as_given() {
    let sink = sink(
        Mode::Plain,
        None,
        false,
        &["550 5.1.1 mailbox unavailable", "451 4.3.0 try again later"],
    );
    let relay = || relay(&sink, SmtpTls::None, None, false);
    let error = smtp::send(&loopback(), relay(), &mail(), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        SendError::Rejected {
            code: 550,
            text: "550 5.1.1 mailbox unavailable".into()
        }
    );
    assert!(!error.is_transient());
    let error = smtp::send(&loopback(), relay(), &mail(), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "451 4.3.0 try again later");
    assert!(error.is_transient());
    assert!(sink.received().is_empty());
    assert_eq!(sink.attempts().len(), 2);
}

#[tokio::test]
async fn a_relay_the_guard_refuses_is_never_contacted() {
    let sink = sink(Mode::Plain, None, false, &[]);
    let error = smtp::send(
        &Guard::default(),
        relay(&sink, SmtpTls::None, None, false),
        &mail(),
        TIMEOUT,
    )
    .await
    .unwrap_err();
    let SendError::Refused(why) = &error else {
        panic!("expected a refusal: {error:?}");
    };
    assert!(why.contains("127.0.0.1 is a loopback address"), "{why}");
    assert!(!error.is_transient());
    assert!(smtp::check_relay(&Guard::default(), "127.0.0.1", sink.port()).is_err());
    assert!(smtp::check_relay(&loopback(), "127.0.0.1", sink.port()).is_ok());
    std::thread::sleep(Duration::from_millis(100));
    assert!(sink.attempts().is_empty());
}

#[tokio::test]
async fn a_certificate_no_trusted_ca_signed_fails_with_a_tls_error() {
    let certs = Certs::make();
    let other = Certs::make();
    for mode in [Mode::Starttls, Mode::Tls] {
        let sink = sink(mode, Some(&certs), true, &[]);
        let tls = if mode == Mode::Tls {
            SmtpTls::Tls
        } else {
            SmtpTls::Starttls
        };
        // Signed by another CA; and with no CA given, the public roots only.
        for ca in [Some(&other), None] {
            let error = smtp::send(&loopback(), relay(&sink, tls, ca, true), &mail(), TIMEOUT)
                .await
                .unwrap_err();
            let text = error.to_string();
            assert!(matches!(error, SendError::Tls(_)), "{mode:?}: {error:?}");
            assert!(
                text.starts_with("TLS: ") && text.contains("certificate"),
                "{text}"
            );
            assert!(!text.contains(PASSWORD), "{text}");
        }
        assert!(sink.attempts().is_empty());
    }
}

#[tokio::test]
async fn a_relay_that_does_not_offer_starttls_is_not_used_in_clear() {
    let sink = sink(Mode::Plain, None, false, &[]);
    let error = smtp::send(
        &loopback(),
        relay(&sink, SmtpTls::Starttls, None, false),
        &mail(),
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, SendError::Tls(_)), "{error:?}");
    assert!(sink.attempts().is_empty());
}

#[tokio::test]
async fn nothing_listening_is_a_failure_worth_retrying() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = Relay {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        credentials: None,
        ca_cert: None,
    };
    let error = smtp::send(&loopback(), relay, &mail(), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(error, SendError::Failed(_)), "{error:?}");
    assert!(error.is_transient());
}

#[test]
fn a_ca_certificate_must_be_pem_that_parses() {
    let certs = Certs::make();
    assert!(smtp::check_ca_cert(&certs.ca_pem()).is_ok());
    assert!(
        smtp::check_ca_cert(
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
        )
        .is_err()
    );
}
