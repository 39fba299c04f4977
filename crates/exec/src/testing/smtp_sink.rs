//! An SMTP receiver for tests: Python's aiosmtpd (`smtp_sink.py`) on a loopback port, plain, STARTTLS or implicit TLS, with AUTH, answering each mail as the test says and recording what arrived.
//!
//! A real SMTP server, not a mock, so what a test sees is what a relay
//! would: the envelope, the raw message, whether TLS was on, who logged in.
//! Python's own `email` parser reads each message too, so a test checks
//! the headers and body as an independent reader decodes them. The TLS
//! certificates come from `openssl` ([`Certs`]): a CA and a server
//! certificate it signs for `127.0.0.1` and `localhost`.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

const SCRIPT: &str = include_str!("smtp_sink.py");

/// How the receiver speaks to its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    /// STARTTLS required before anything else.
    Starttls,
    /// TLS from the first byte.
    Tls,
}

/// One mail as the receiver took it (or turned it down at DATA).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The message as sent, CRLF line ends and all.
    pub raw: String,
    /// Whether the session was encrypted when the mail came.
    pub tls: bool,
    /// The user the client authenticated as.
    pub user: Option<String>,
    /// What the receiver answered to the mail.
    pub answer: String,
    /// `(name, value)` as Python's parser decodes them, in order.
    pub headers: Vec<(String, String)>,
    /// The decoded text body, lines ending in `\n`, with one at the end.
    pub body: Option<String>,
}

impl ReceivedMail {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the receiver took it (a 2xx answer).
    pub fn accepted(&self) -> bool {
        self.answer.starts_with('2')
    }
}

/// A test CA and server certificates it signed for `127.0.0.1` and
/// `localhost`, in a temp dir that lives as long as this (for the SMTP
/// receiver here, and for other crates' TLS tests).
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    /// A CA and one server certificate it signed, with `openssl` (EC
    /// P-256 keys, valid two days).
    pub fn make() -> Certs {
        let certs = Certs::authority();
        certs.issue("server");
        certs
    }

    /// The CA alone; server certificates come from [`Certs::issue`].
    pub fn authority() -> Certs {
        let certs = Certs {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let mut ca = vec!["req", "-x509"];
        ca.extend(NEW_EC_KEY);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Cronium Test CA",
        ]);
        certs.openssl(&ca);
        std::fs::write(
            certs.dir().join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        certs
    }

    /// A new key and a certificate for `127.0.0.1` and `localhost` signed by
    /// the CA, as `NAME.pem` and `NAME.key` in [`Certs::dir`]: (cert, key).
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let (pem, key, csr) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("{name}.csr"),
        );
        let subject = format!("/CN={name}");
        let mut request = vec!["req"];
        request.extend(NEW_EC_KEY);
        request.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        self.openssl(&request);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        (self.dir().join(pem), self.dir().join(key))
    }

    /// Where the files are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM) that signed the server's.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir().join("ca.pem")).expect("ca.pem")
    }

    fn server(&self) -> (PathBuf, PathBuf) {
        (self.dir().join("server.pem"), self.dir().join("server.key"))
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir())
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl (apt-get install openssl): {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `openssl req` arguments for a new, unencrypted EC P-256 key.
const NEW_EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// How to start a receiver.
#[derive(Debug, Clone)]
pub struct SmtpSinkConfig {
    pub mode: Mode,
    /// The user and password AUTH takes; without, no AUTH is offered.
    pub auth: Option<(String, String)>,
    /// The answer to the n-th mail is the n-th of these, then the last
    /// one again: `["451 4.3.0 try later", "250 2.0.0 Ok"]`.
    pub answers: Vec<String>,
}

impl Default for SmtpSinkConfig {
    fn default() -> SmtpSinkConfig {
        SmtpSinkConfig {
            mode: Mode::Plain,
            auth: None,
            answers: vec!["250 2.0.0 Ok: queued as CRONIUM1".into()],
        }
    }
}

/// A running receiver; stopped when dropped.
pub struct SmtpSink {
    port: u16,
    log: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts one on a free loopback port (`certs` for the TLS modes) and
    /// waits until it listens.
    pub fn start(config: SmtpSinkConfig, certs: Option<&Certs>) -> SmtpSink {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("smtp_sink.py");
        std::fs::write(&script, SCRIPT).expect("write the sink's script");
        let log = dir.path().join("mails.jsonl");
        let port = free_port();
        let mode = match config.mode {
            Mode::Plain => "plain",
            Mode::Starttls => "starttls",
            Mode::Tls => "tls",
        };
        let mut command = Command::new(python());
        command
            .arg(&script)
            .args(["--port", &port.to_string(), "--mode", mode])
            .arg("--log")
            .arg(&log)
            .args(["--answers", &config.answers.join("|")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if config.mode != Mode::Plain {
            let (cert, key) = certs.expect("a TLS receiver needs certificates").server();
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some((user, password)) = &config.auth {
            command.args(["--user", user, "--password", password]);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 for the SMTP sink: {e}"));
        let mut ready = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut ready)
            .expect("read the sink's stdout");
        assert_eq!(
            ready.trim(),
            "ready",
            "the SMTP sink did not start (is python3-aiosmtpd installed?)"
        );
        let stdin = child.stdin.take();
        SmtpSink {
            port,
            log,
            child,
            stdin,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, as a channel's `smtp` setting.
    pub fn relay(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every mail that reached DATA, in order, taken or not.
    pub fn attempts(&self) -> Vec<ReceivedMail> {
        read_log(&self.log)
    }

    /// The mails the receiver took.
    pub fn received(&self) -> Vec<ReceivedMail> {
        self.attempts()
            .into_iter()
            .filter(ReceivedMail::accepted)
            .collect()
    }

    /// Waits up to `limit` for `n` mails to reach DATA.
    pub fn wait_for_attempts(&self, n: usize, limit: Duration) -> Vec<ReceivedMail> {
        let start = Instant::now();
        loop {
            let got = self.attempts();
            if got.len() >= n || start.elapsed() > limit {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Closing stdin ends the script; a kill makes sure.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_log(log: &Path) -> Vec<ReceivedMail> {
    let Ok(text) = std::fs::read_to_string(log) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("sink log line {l:?}: {e}")))
        .collect()
}

/// The Python with aiosmtpd: Debian's (`/usr/bin/python3`, where
/// `python3-aiosmtpd` installs it) ahead of whatever `python3` is first on
/// PATH.
fn python() -> PathBuf {
    for candidate in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "no python3 with aiosmtpd (apt-get install python3-aiosmtpd; scripts/test.sh does this)"
    );
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}
