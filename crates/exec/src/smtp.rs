//! One guarded mail for notifications: a plain-text message handed to an SMTP relay through the SSRF guard, the relay's certificate verified, its answer (code and text) returned as it was given.
//!
//! The relay's name is resolved here and every address checked by the
//! [`Guard`] like a webhook's; the connection then goes to a checked
//! address (lettre's `builder_dangerous` takes an address as given, and
//! would resolve a name again), while TLS verifies the certificate against
//! the relay's *name*: the public roots (`webpki-roots`, as the HTTP
//! client's), plus a channel's own CA certificate for a relay signed by a
//! private CA. `starttls` requires the upgrade (a relay that does not offer
//! it fails; nothing falls back to clear text), `tls` speaks TLS from the
//! first byte, `none` is plain SMTP, and never carries a password (the
//! channel refuses that combination when it is saved).
//!
//! lettre's transport blocks, so one send runs on the blocking pool, with
//! lettre's own socket timeout and an overall deadline on top: a relay that
//! never answers costs the sender `timeout` and no more. The password is in
//! no error and no `Debug` output.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use cronium_core::{EmailAddress, SmtpTls};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{SmtpTransport, Transport};

use crate::guard::{Guard, Lookup, Refused};
use crate::records::fmt_duration;
use crate::webhook;

/// Where a mail goes and how: a channel's relay, its password opened.
pub struct Relay {
    /// A DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// The user and password for AUTH (PLAIN or LOGIN).
    pub credentials: Option<(String, Password)>,
    /// PEM certificates trusted besides the public roots.
    pub ca_cert: Option<String>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("ca_cert", &self.ca_cert.is_some())
            .finish()
    }
}

/// A relay's password, opened. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// One plain-text mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub from: EmailAddress,
    pub to: Vec<EmailAddress>,
    /// One line; any line break or other control character becomes a space.
    pub subject: String,
    pub body: String,
    /// Without the angle brackets: `msg_cronium_42@example.com`.
    pub message_id: String,
    pub date: SystemTime,
}

/// The name the sender shows in `From`.
const SENDER_NAME: &str = "Cronium";

impl Mail {
    /// The message as it goes over the wire (RFC 5322, CRLF line ends),
    /// with the envelope lettre takes from it. Every header value is
    /// encoded by lettre, so nothing in a subject can start a header.
    fn build(&self) -> Result<Message, SendError> {
        let invalid = |e: &dyn fmt::Display| SendError::Invalid(format!("the mail: {e}"));
        let mailbox = |a: &EmailAddress, name: Option<&str>| -> Result<Mailbox, SendError> {
            let address = a.as_str().parse().map_err(|e| invalid(&e))?;
            Ok(Mailbox::new(name.map(str::to_string), address))
        };
        let subject: String = self
            .subject
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut builder = Message::builder()
            .from(mailbox(&self.from, Some(SENDER_NAME))?)
            .subject(subject)
            .message_id(Some(format!("<{}>", self.message_id)))
            .date(self.date)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(mailbox(to, None)?);
        }
        builder.body(self.body.clone()).map_err(|e| invalid(&e))
    }

    /// The bytes [`send`] hands the relay.
    pub fn format(&self) -> Result<Vec<u8>, SendError> {
        Ok(self.build()?.formatted())
    }
}

/// The relay's positive answer to the mail: `250 2.0.0 Ok: queued as …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The code and every line of the answer, on one line.
    pub text: String,
}

/// Why a mail was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The guard refused the relay's address: no connection was made.
    Refused(String),
    /// The mail or the channel's settings cannot be used as they are.
    Invalid(String),
    /// No answer within the timeout.
    TimedOut(Duration),
    /// The relay answered 4xx (try again later) or 5xx (never): `text` is
    /// its answer as given, code first.
    Rejected { code: u16, text: String },
    /// The TLS handshake failed: the certificate is not trusted or not the
    /// relay's, or the relay offers no STARTTLS.
    Tls(String),
    /// DNS or the connection failed.
    Failed(String),
}

impl SendError {
    /// Whether a later try may go better: a 4xx answer, a timeout, a
    /// network or TLS failure (a relay's certificate gets fixed); not a
    /// refusal, a 5xx answer or unusable settings.
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::Rejected { code, .. } => (400..500).contains(code),
            SendError::TimedOut(_) | SendError::Tls(_) | SendError::Failed(_) => true,
            SendError::Refused(_) | SendError::Invalid(_) => false,
        }
    }

    /// The relay's code, if it answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            SendError::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Refused(why) => write!(f, "refused: {why}"),
            SendError::Invalid(why) | SendError::Failed(why) => f.write_str(why),
            SendError::TimedOut(after) => {
                write!(f, "no answer within {}", fmt_duration(*after))
            }
            SendError::Rejected { text, .. } => f.write_str(text),
            SendError::Tls(why) => write!(f, "TLS: {why}"),
        }
    }
}

impl std::error::Error for SendError {}

/// The save-time check of a relay: a literal address the guard refuses, or
/// a name resolving to one, is refused. A name that does not resolve now
/// is accepted (DNS may change before a mail goes; every send checks
/// again). Blocks on DNS.
pub fn check_relay(guard: &Guard, host: &str, port: u16) -> Result<(), Refused> {
    match guard.lookup(host, port) {
        Ok(_) | Err(Lookup::Unresolved(_)) => Ok(()),
        Err(Lookup::Refused(refused)) => Err(refused),
    }
}

/// Checks a CA certificate as a channel gives it: PEM with at least one
/// certificate that parses. The message never quotes it (not secret, but
/// long).
pub fn check_ca_cert(pem: &str) -> Result<(), String> {
    let certificate = Certificate::from_pem(pem.as_bytes())
        .map_err(|_| "not valid PEM certificates".to_string())?;
    TlsParameters::builder("relay.invalid".into())
        .add_root_certificate(certificate)
        .build_rustls()
        .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    Ok(())
}

/// Sends `mail` through `relay` within `timeout`, through `guard`. The
/// answer is the relay's own, code first.
pub async fn send(
    guard: &Guard,
    relay: Relay,
    mail: &Mail,
    timeout: Duration,
) -> Result<Reply, SendError> {
    let message = mail.build()?;
    let guard = guard.clone();
    let task = tokio::task::spawn_blocking(move || exchange(&guard, &relay, &message, timeout));
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(SendError::Failed(format!("the send task failed: {e}"))),
        // The blocking side stops by itself: lettre's socket timeout.
        Err(_) => Err(SendError::TimedOut(timeout)),
    }
}

/// The blocking side: resolve and check, then try each checked address
/// until one connects.
fn exchange(
    guard: &Guard,
    relay: &Relay,
    message: &Message,
    timeout: Duration,
) -> Result<Reply, SendError> {
    let addrs = guard.lookup(&relay.host, relay.port).map_err(|e| match e {
        Lookup::Refused(refused) => SendError::Refused(refused.0),
        Lookup::Unresolved(why) => SendError::Failed(why),
    })?;
    let tls = tls(relay)?;
    let mut last = None;
    for addr in addrs {
        match send_to(addr, relay, tls.clone(), message, timeout) {
            Err(SendError::Failed(why)) => last = Some(SendError::Failed(why)),
            answered => return answered,
        }
    }
    Err(last.unwrap_or_else(|| SendError::Failed(format!("{} has no addresses", relay.host))))
}

fn tls(relay: &Relay) -> Result<Tls, SendError> {
    if relay.tls == SmtpTls::None {
        return Ok(Tls::None);
    }
    let mut parameters = TlsParameters::builder(relay.host.clone());
    if let Some(pem) = &relay.ca_cert {
        let certificate = Certificate::from_pem(pem.as_bytes()).map_err(|_| {
            SendError::Invalid("the channel's CA certificate is not valid PEM".into())
        })?;
        parameters = parameters.add_root_certificate(certificate);
    }
    let parameters = parameters
        .build_rustls()
        .map_err(|e| SendError::Invalid(format!("TLS settings: {e}")))?;
    Ok(match relay.tls {
        SmtpTls::Starttls => Tls::Required(parameters),
        _ => Tls::Wrapper(parameters),
    })
}

fn send_to(
    addr: SocketAddr,
    relay: &Relay,
    tls: Tls,
    message: &Message,
    timeout: Duration,
) -> Result<Reply, SendError> {
    let mut builder = SmtpTransport::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .tls(tls)
        .timeout(Some(timeout))
        .hello_name(hello_name());
    if let Some((user, password)) = &relay.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.0.clone()));
    }
    let transport = builder.build();
    match transport.send(message) {
        Ok(response) => {
            let code = response.code().to_string();
            let lines: Vec<&str> = response.message().collect();
            Ok(Reply {
                code: code.parse().unwrap_or(250),
                text: webhook::one_line(&format!("{code} {}", lines.join(" "))),
            })
        }
        Err(e) => Err(classify(&relay.host, addr, &e)),
    }
}

/// A lettre error as the sender reports it: the relay's answer as given,
/// or what failed, without lettre's wording around it.
fn classify(host: &str, addr: SocketAddr, error: &lettre::transport::smtp::Error) -> SendError {
    use std::error::Error as _;
    let cause = error.source().map(ToString::to_string).unwrap_or_default();
    if let Some(code) = error.status() {
        let code = code.to_string();
        return SendError::Rejected {
            code: code.parse().unwrap_or(0),
            text: webhook::one_line(&format!("{code} {cause}")),
        };
    }
    if error.is_timeout() {
        return SendError::Failed(format!("{host} ({addr}): timed out"));
    }
    // rustls reports a failed handshake as an I/O error of kind InvalidData.
    let mut source = error.source();
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return SendError::Tls(io.get_ref().map_or(io.to_string(), ToString::to_string));
        }
        source = inner.source();
    }
    if error.is_tls() {
        return SendError::Tls(cause);
    }
    if error.is_client() && cause.contains("STARTTLS") {
        return SendError::Tls(format!("{host} does not offer STARTTLS"));
    }
    SendError::Failed(format!("{host} ({addr}): {cause}"))
}

/// The name this host gives in `EHLO`: its host name when it looks like
/// one, else an address literal (as RFC 5321 asks).
fn hello_name() -> ClientId {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = buf.split(|&b| b == 0).next().unwrap_or_default();
    let name = String::from_utf8_lossy(name);
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if ok && !name.is_empty() && name.chars().all(plain) {
        ClientId::Domain(name.into_owned())
    } else {
        ClientId::Domain("[127.0.0.1]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(subject: &str) -> Mail {
        let address = |a: &str| EmailAddress::new(a, "to").unwrap();
        Mail {
            from: address("cronium@example.com"),
            to: vec![address("ops@example.com"), address("dev@example.org")],
            subject: subject.into(),
            body: "backup failed\n".into(),
            message_id: "msg_cronium_42@example.com".into(),
            date: SystemTime::UNIX_EPOCH + Duration::from_secs(1_772_366_400),
        }
    }

    /// The header lines of a formatted mail, unfolded.
    fn headers(raw: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(raw);
        let head = text.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
        head.split("\r\n").map(str::to_string).collect()
    }

    #[test]
    fn a_mail_has_its_headers_and_nothing_in_a_subject_adds_one() {
        let raw = mail("[Cronium] backup failed\r\nBcc: victim@evil.example\nX-Injected: 1")
            .format()
            .unwrap();
        let headers = headers(&raw);
        let names: Vec<&str> = headers
            .iter()
            .filter_map(|h| h.split_once(':').map(|(name, _)| name))
            .collect();
        assert!(
            !names.contains(&"Bcc") && !names.contains(&"X-Injected"),
            "{headers:?}"
        );
        let subject = headers.iter().find(|h| h.starts_with("Subject: ")).unwrap();
        assert!(subject.contains("backup failed"), "{subject}");
        assert!(
            headers.contains(&"Message-ID: <msg_cronium_42@example.com>".to_string()),
            "{headers:?}"
        );
        assert!(
            headers.contains(&"From: Cronium <cronium@example.com>".to_string()),
            "{headers:?}"
        );
        assert!(
            headers.contains(&"To: ops@example.com, dev@example.org".to_string()),
            "{headers:?}"
        );
        assert!(
            headers.contains(&"Date: Sun, 01 Mar 2026 12:00:00 +0000".to_string()),
            "{headers:?}"
        );
        assert!(
            headers
                .iter()
                .any(|h| h.starts_with("Content-Type: text/plain")),
            "{headers:?}"
        );
    }

    #[test]
    fn the_same_mail_formats_to_the_same_bytes() {
        assert_eq!(mail("x").format().unwrap(), mail("x").format().unwrap());
    }

    #[test]
    fn four_hundreds_and_network_failures_are_retried_five_hundreds_and_refusals_are_not() {
        let rejected = |code| SendError::Rejected {
            code,
            text: format!("{code} no"),
        };
        let table = [
            (rejected(451), true),
            (rejected(421), true),
            (rejected(550), false),
            (rejected(554), false),
            (SendError::TimedOut(Duration::from_secs(1)), true),
            (SendError::Failed("connection refused".into()), true),
            (
                SendError::Tls("invalid peer certificate: UnknownIssuer".into()),
                true,
            ),
            (
                SendError::Refused("127.0.0.1 is a loopback address".into()),
                false,
            ),
            (SendError::Invalid("bad".into()), false),
        ];
        for (error, transient) in table {
            assert_eq!(error.is_transient(), transient, "{error}");
        }
        assert_eq!(rejected(550).to_string(), "550 no");
    }

    #[test]
    fn a_relays_debug_output_hides_the_password() {
        let relay = Relay {
            host: "mail.example.com".into(),
            port: 587,
            tls: SmtpTls::Starttls,
            credentials: Some(("bot".into(), Password("hunter2-secret".into()))),
            ca_cert: None,
        };
        let shown = format!("{relay:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("bot"), "{shown}");
    }
}
