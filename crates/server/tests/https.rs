//! Reaching the server beyond localhost, over real loopback sockets: built-in TLS (HSTS, `Secure` cookies, the certificate reloaded when its files change, bad files refused at start-up) and trusted proxies (forwarded addresses and scheme believed from them alone).
//!
//! These run on SQLite only: nothing here reaches the database beyond
//! signing in, which `ui.rs` covers on both.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Backend, TestApp};
use cronium_exec::testing::smtp_sink::Certs;
use cronium_server::tls::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery staple";

/// A test CA and the server certificates it signs (`Certs`, shared with
/// the SMTP tests), as the server's `TlsFiles`.
struct Pki(Certs);

impl Pki {
    fn new() -> Pki {
        Pki(Certs::authority())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.dir().join(name)
    }

    fn ca_pem(&self) -> String {
        self.0.ca_pem()
    }

    /// A new key and certificate, `NAME.pem` and `NAME.key`.
    fn server(&self, name: &str) -> TlsFiles {
        let (cert, key) = self.0.issue(name);
        TlsFiles { cert, key }
    }
}

/// The certificate (DER) a TLS server at `addr` presents to a client that
/// trusts `ca_pem`; the handshake must succeed.
fn served_certificate(addr: SocketAddr, ca_pem: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut socket).expect("the handshake");
    }
    conn.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

fn spawn_tls(pki: &Pki, files: &TlsFiles) -> TestApp {
    let files = files.clone();
    TestApp::spawn_trusting(Backend::Sqlite, Some(pki.ca_pem()), move |c| {
        c.tls = Some(files)
    })
}

#[test]
fn tls_answers_carry_hsts_and_the_session_cookie_is_secure() {
    let pki = Pki::new();
    let files = pki.server("first");
    let app = spawn_tls(&pki, &files);
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    app.set_password("admin", PASSWORD);

    // The API, public and with a token, and a page: all say HSTS.
    let health = app.send("GET", "/healthz", None, &[], None);
    assert_eq!(health.status, 200);
    assert_eq!(
        health.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let events = app.get("/api/v1/events");
    assert_eq!(events.status, 200);
    assert_eq!(
        events.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let missing = app.get("/api/v1/nothing");
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("strict-transport-security"),
        Some("max-age=31536000")
    );

    let mut browser = app.browser();
    let form = browser.get("/login");
    assert_eq!(form.status, 200);
    assert_eq!(
        form.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let resp = browser.login("admin", PASSWORD, "/");
    assert_eq!(resp.status, 303, "{}", resp.text());
    let cookie = resp.header("set-cookie").unwrap();
    assert!(
        cookie.ends_with("; HttpOnly; SameSite=Strict; Path=/; Secure"),
        "{cookie}"
    );
    assert_eq!(browser.get("/settings").status, 200);
    let csrf = browser.csrf("/");
    let out = browser.post("/logout", &[("csrf", &csrf)]);
    let cleared = out.header("set-cookie").unwrap();
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("; Secure"),
        "{cleared}"
    );

    // Plain HTTP to the TLS port gets no answer.
    let plain = format!("http://{}/healthz", app.running().local_addr());
    assert!(ureq::get(&plain).call().is_err());
}

#[test]
fn the_certificate_is_reloaded_when_its_files_change() {
    let pki = Pki::new();
    let live = pki.server("live");
    let app = spawn_tls(&pki, &live);
    let addr = app.running().local_addr();
    let ca = pki.ca_pem();
    let first = der_of(&live.cert);
    assert_eq!(served_certificate(addr, &ca), first);

    // Renewed in place (cert, then key): the next connection has the new one.
    let renewed = pki.server("renewed");
    std::fs::copy(&renewed.cert, &live.cert).unwrap();
    std::fs::copy(&renewed.key, &live.key).unwrap();
    let second = der_of(&renewed.cert);
    assert_ne!(first, second);
    assert_eq!(served_certificate(addr, &ca), second);
    assert_eq!(app.send("GET", "/healthz", None, &[], None).status, 200);

    // Replaced by renaming new files over the old (a new inode).
    let third = pki.server("third");
    std::fs::rename(&third.key, &live.key).unwrap();
    std::fs::rename(&third.cert, &live.cert).unwrap();
    assert_eq!(served_certificate(addr, &ca), der_of(&live.cert));
    let third = der_of(&live.cert);

    // A broken key is not used: the certificate in use stays, and works.
    std::fs::write(&live.key, "not a key\n").unwrap();
    assert_eq!(served_certificate(addr, &ca), third);
    assert_eq!(app.send("GET", "/healthz", None, &[], None).status, 200);
    // A key of another certificate neither.
    let other = pki.server("other");
    std::fs::copy(&other.key, &live.key).unwrap();
    assert_eq!(served_certificate(addr, &ca), third);
    assert!(
        app.running().reload_tls().is_err(),
        "an explicit reload says why"
    );
    // Fixed: used at once, by a reload (SIGHUP's) as by the next connection.
    std::fs::copy(&other.cert, &live.cert).unwrap();
    app.running().reload_tls().unwrap();
    assert_eq!(served_certificate(addr, &ca), der_of(&other.cert));
}

#[test]
fn a_bad_certificate_or_key_stops_start_up_naming_the_file() {
    let pki = Pki::new();
    let good = pki.server("good");
    let other = pki.server("other");
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let missing = pki.path("missing.pem");
    let cases = [
        (
            good.cert.clone(),
            missing.clone(),
            missing.clone(),
            "cannot read",
        ),
        (
            missing.clone(),
            good.key.clone(),
            missing.clone(),
            "cannot read",
        ),
        (
            good.cert.clone(),
            garbage.clone(),
            garbage.clone(),
            "no private key",
        ),
        (
            garbage.clone(),
            good.key.clone(),
            garbage.clone(),
            "no certificate",
        ),
        (
            good.cert.clone(),
            other.key.clone(),
            other.key.clone(),
            "does not belong",
        ),
        // A key where the certificate should be, and the other way round.
        (
            good.key.clone(),
            good.cert.clone(),
            good.key.clone(),
            "no certificate",
        ),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (cert, key, named, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut config = cronium_server::Config::new(dir.path().join("data"));
        config.listen = "127.0.0.1:0".into();
        config.tls = Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
        let err = match runtime.block_on(cronium_server::start(config)) {
            Ok(_) => panic!("started with {cert:?} and {key:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(&named.display().to_string()), "{err}");
        assert!(err.contains(why), "{why}: {err}");
        assert!(
            !dir.path().join("data").exists(),
            "nothing made before the check: {err}"
        );
    }
}

/// Signs in with `X-Forwarded-For: xff` (and any other headers); returns
/// the answer.
fn login_forwarded(
    browser: &mut common::Browser<'_>,
    extra: &[(&str, &str)],
    name: &str,
    password: &str,
) -> common::Resp {
    let body = format!(
        "name={}&password={}&next=%2F",
        common::encode(name),
        common::encode(password)
    );
    let origin = browser.app.base.clone();
    let mut headers = vec![
        ("content-type", "application/x-www-form-urlencoded"),
        ("origin", origin.as_str()),
    ];
    headers.extend_from_slice(extra);
    browser.send("POST", "/login", &headers, Some(body))
}

#[test]
fn a_trusted_proxy_says_who_the_client_is() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.trusted_proxies = cronium_server::client::TrustedProxies(vec![
            cronium_server::client::Network::parse("127.0.0.1").unwrap(),
        ]);
    });
    app.set_password("admin", PASSWORD);
    let mut browser = app.browser();
    let from = |xff: &'static str| [("x-forwarded-for", xff)];

    // Five failures from one forwarded address, under five names…
    for i in 0..5 {
        let resp = login_forwarded(
            &mut browser,
            &from("203.0.113.1"),
            &format!("guess{i}"),
            "x",
        );
        assert_eq!(resp.status, 401);
    }
    // …block that address, even when it puts another in front…
    let resp = login_forwarded(&mut browser, &from("203.0.113.1"), "admin", PASSWORD);
    assert_eq!(resp.status, 429, "{}", resp.text());
    let resp = login_forwarded(
        &mut browser,
        &from("6.6.6.6, 203.0.113.1"),
        "admin",
        PASSWORD,
    );
    assert_eq!(
        resp.status, 429,
        "the client's own part of the header is not believed"
    );
    // …but not another client of the same proxy, nor the proxy itself.
    let resp = login_forwarded(
        &mut browser,
        &from("203.0.113.2, 127.0.0.1"),
        "admin",
        PASSWORD,
    );
    assert_eq!(resp.status, 303, "{}", resp.text());
    assert!(
        !resp.header("set-cookie").unwrap().contains("Secure"),
        "plain http"
    );
    assert_eq!(resp.header("strict-transport-security"), None);
    assert_eq!(app.browser().login("admin", PASSWORD, "/").status, 303);

    // The forwarded address is the one audited.
    let audit = app.get("/api/v1/audit?limit=50").expect(200);
    let addresses: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "session.create")
        .map(|r| &r["detail"]["address"])
        .collect();
    assert!(
        addresses.contains(&&Value::from("203.0.113.2")),
        "{addresses:?}"
    );

    // The proxy says the client used https: a Secure cookie and HSTS.
    let mut secure = app.browser();
    let resp = login_forwarded(
        &mut secure,
        &[
            ("x-forwarded-for", "203.0.113.3"),
            ("x-forwarded-proto", "https"),
        ],
        "admin",
        PASSWORD,
    );
    assert_eq!(resp.status, 303);
    assert!(resp.header("set-cookie").unwrap().ends_with("; Secure"));
    assert_eq!(
        resp.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let api = app.send(
        "GET",
        "/healthz",
        None,
        &[("x-forwarded-proto", "https")],
        None,
    );
    assert_eq!(
        api.header("strict-transport-security"),
        Some("max-age=31536000")
    );
}

#[test]
fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    // A proxy is trusted, but not the one this test connects from.
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.trusted_proxies = cronium_server::client::TrustedProxies(vec![
            cronium_server::client::Network::parse("10.0.0.0/8").unwrap(),
        ]);
    });
    app.set_password("admin", PASSWORD);
    let mut browser = app.browser();
    let forwarded = [
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.3",
        "203.0.113.4",
        "203.0.113.5",
    ];
    for (i, xff) in forwarded.iter().enumerate() {
        let resp = login_forwarded(
            &mut browser,
            &[("x-forwarded-for", xff)],
            &format!("guess{i}"),
            "x",
        );
        assert_eq!(resp.status, 401);
    }
    // Every failure counted against 127.0.0.1, whatever the header said.
    let resp = login_forwarded(
        &mut browser,
        &[("x-forwarded-for", "203.0.113.9")],
        "admin",
        PASSWORD,
    );
    assert_eq!(resp.status, 429, "{}", resp.text());
    let resp = login_forwarded(
        &mut browser,
        &[("forwarded", "for=203.0.113.10;proto=https")],
        "admin",
        PASSWORD,
    );
    assert_eq!(resp.status, 429);
    // Nor does it get to say https.
    let api = app.send(
        "GET",
        "/healthz",
        None,
        &[("x-forwarded-proto", "https"), ("forwarded", "proto=https")],
        None,
    );
    assert_eq!(api.header("strict-transport-security"), None);
}
