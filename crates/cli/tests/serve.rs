//! `cronium serve` as an operator first meets it: no flags, no setup, a data
//! dir appears, and a signal stops it cleanly.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use cronium_exec::testing::smtp_sink::Certs;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn wait_for_health(url: &str, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(format!("{url}/healthz")).call().is_err() {
        // A server that could not start (the address taken between the
        // check and its start) says why on its standard error.
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::io::read_to_string(child.stderr.take().unwrap()).unwrap_or_default();
            panic!("cronium serve exited ({status}) before answering at {url}: {log}");
        }
        assert!(Instant::now() < deadline, "no answer at {url}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Fails the test at once, saying what to do, when something else listens
/// on `addr`: otherwise the server cannot start there and the test waits
/// for a health check that another program may even answer.
#[track_caller]
fn require_free(addr: &str) {
    if let Err(e) = std::net::TcpListener::bind(addr) {
        panic!(
            "{addr} is not free ({e}): this test runs `cronium serve` with no flags, which \
             listens there. Stop what listens on it (`ss -ltnp 'sport = :8080'` shows it) \
             and run the test again."
        );
    }
}

/// The README's promise: `cronium serve` with nothing else creates
/// `./cronium-data/` and listens on 127.0.0.1:8080.
#[test]
fn serve_with_no_flags_sets_itself_up_in_the_current_directory() {
    require_free("127.0.0.1:8080");
    let cwd = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cronium"))
        .arg("serve")
        .current_dir(cwd.path())
        .env_remove("CRONIUM_DATA_DIR")
        .env_remove("CRONIUM_LISTEN")
        .env_remove("CRONIUM_DATABASE_URL")
        .env_remove("CRONIUM_MASTER_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_health("http://127.0.0.1:8080", &mut child);

    let data = cwd.path().join("cronium-data");
    assert_eq!(mode(&data), 0o700, "the data dir is private");
    assert_eq!(mode(&data.join("admin.token")), 0o600);
    assert_eq!(mode(&data.join("master.key")), 0o600);
    assert!(data.join("payloads").is_dir());
    assert!(
        std::fs::read_dir(&data)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".db")),
        "an embedded SQLite database"
    );

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM is a clean shutdown: {status}");
    let log = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    assert!(
        log.contains("admin.token"),
        "the log says where the token is: {log}"
    );
    assert!(!log.contains(token.trim()), "and never what it is");
}

#[test]
fn sigint_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(&dir.path().join("data"), None, &[]);
    server.wait_until_up();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.pid() as i32, libc::SIGINT) };
    let started = Instant::now();
    let status = server.wait_for_exit();
    assert!(status.success(), "SIGINT is a clean shutdown: {status}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A CA and two server certificates for 127.0.0.1, `one` and `two`.
fn make_certs() -> Certs {
    let certs = Certs::authority();
    certs.issue("one");
    certs.issue("two");
    certs
}

fn served_pem(port: u16) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = text.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    text[start..end].to_string()
}

fn pem_in(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

#[test]
fn serve_over_tls_reloads_its_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs();
    let (cert, key) = (dir.path().join("live.pem"), dir.path().join("live.key"));
    std::fs::copy(certs.dir().join("one.pem"), &cert).unwrap();
    std::fs::copy(certs.dir().join("one.key"), &key).unwrap();
    // From the environment, as a service unit would set it.
    let mut server = Server::spawn(
        &dir.path().join("data"),
        None,
        &[
            ("CRONIUM_TLS_CERT", cert.to_str().unwrap()),
            ("CRONIUM_TLS_KEY", key.to_str().unwrap()),
        ],
    );
    server.url = server.url.replace("http://", "https://");
    let ca = ureq::tls::Certificate::from_pem(
        std::fs::read(certs.dir().join("ca.pem"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
                        ca,
                    ])))
                    .build(),
            )
            .build(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        match agent.get(format!("{}/healthz", server.url)).call() {
            Ok(resp) => break resp,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no answer over https: {e}\n{}",
                server.log()
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        health.headers().get("strict-transport-security").unwrap(),
        "max-age=31536000"
    );
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(served_pem(port), pem_in(&cert));

    // SIGHUP reads the files again: the next connection has the new pair.
    // (Written without changing their size or time would go unnoticed
    // until then; the signal does not wait for a change.)
    std::fs::copy(certs.dir().join("two.pem"), &cert).unwrap();
    std::fs::copy(certs.dir().join("two.key"), &key).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("loaded a new TLS certificate") {
        assert!(
            Instant::now() < deadline,
            "no reload logged:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(served_pem(port), pem_in(&certs.dir().join("two.pem")));
    assert!(
        agent.get(format!("{}/healthz", server.url)).call().is_ok(),
        "still serving"
    );

    // SAFETY: as above.
    unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) };
    assert!(server.wait_for_exit().success());
}

#[test]
fn tls_flags_come_in_pairs_and_a_bad_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs();
    let serve = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_cronium"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("CRONIUM_TLS_CERT")
            .env_remove("CRONIUM_TLS_KEY")
            .output()
            .unwrap()
    };
    let cert = certs.dir().join("one.pem");
    let wrong_key = certs.dir().join("two.key");
    let out = serve(&["--tls-cert".as_ref(), cert.as_os_str()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--tls-cert") && stderr.contains("--tls-key"),
        "{stderr}"
    );

    let out = serve(&[
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        wrong_key.as_os_str(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(wrong_key.to_str().unwrap()),
        "the key is named: {stderr}"
    );

    let out = serve(&["--trusted-proxy".as_ref(), "proxy.example".as_ref()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--trusted-proxy"), "{stderr}");
}
