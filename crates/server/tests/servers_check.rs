//! `POST /api/v1/servers/{id}/check` against a real OpenSSH server: trust on first use, pinned keys, every way to fail, no secret in any answer.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestApp};
use cronium_ssh::Credentials;
use cronium_ssh::testing::{KEY_PASSPHRASE, TestSshd, TestUser};
use serde_json::{Value, json};

/// Registers `user` of `sshd` as server `name` with `credentials` (the
/// `privateKey`/`passphrase`/`password` fields) and any `extra` fields.
fn add_server(
    app: &TestApp,
    name: &str,
    sshd: &TestSshd,
    user: &TestUser,
    credentials: Value,
) -> i64 {
    let mut body = json!({
        "name": name, "host": sshd.host(), "port": sshd.port(), "username": user.name,
    });
    for (k, v) in credentials.as_object().unwrap() {
        body[k] = v.clone();
    }
    let server = app.post("/api/v1/servers", body).expect(201);
    server["id"].as_i64().unwrap()
}

fn key_of(user: &TestUser) -> Value {
    json!({ "privateKey": user.key.private })
}

fn check(app: &TestApp, id: i64) -> Value {
    app.admin("POST", &format!("/api/v1/servers/{id}/check"), None)
        .expect(200)
}

fn server(app: &TestApp, id: i64) -> Value {
    app.get(&format!("/api/v1/servers/{id}")).expect(200)
}

fn local_uname() -> String {
    let out = std::process::Command::new("uname")
        .arg("-sm")
        .output()
        .expect("uname runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The `server.pin` audit entries, oldest first.
fn pin_entries(app: &TestApp) -> Vec<Value> {
    let page = app.get("/api/v1/audit?limit=500").expect(200);
    let mut pins: Vec<Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "server.pin")
        .cloned()
        .collect();
    pins.reverse();
    pins
}

/// Asserts that none of `secrets` occurs in `text` (the private key is
/// looked for by a line of its base64 body, not only its armour).
#[track_caller]
fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        let probes: Vec<&str> = if secret.contains("PRIVATE KEY") {
            secret.lines().filter(|l| !l.starts_with("-----")).collect()
        } else {
            vec![secret]
        };
        for probe in probes {
            assert!(
                !text.contains(probe),
                "a secret ({probe:?}) was returned: {text}"
            );
        }
    }
    assert!(
        !text.contains("PRIVATE KEY"),
        "a private key was returned: {text}"
    );
}

both_backends! {
    fn the_first_check_pins_the_key_later_checks_verify_it_and_a_changed_key_is_refused(backend: Backend) {
        let app = TestApp::spawn(backend);
        let mut sshd = TestSshd::start(1);
        let user = sshd.user(0).clone();
        let id = add_server(&app, "web-1", &sshd, &user, key_of(&user));
        let before = server(&app, id);
        assert_eq!(before["knownHost"], Value::Null);
        assert_eq!(before["hostKeyFingerprint"], Value::Null);
        let mut answers = before.to_string();

        // First contact: trusted, then pinned.
        let first = check(&app, id);
        answers.push_str(&first.to_string());
        assert_eq!(first["ok"], true, "{first}");
        assert_eq!(first["error"], Value::Null);
        assert_eq!(first["server"], "web-1");
        assert_eq!(first["username"], user.name.as_str());
        assert_eq!(first["port"], sshd.port());
        assert_eq!((first["reachable"].clone(), first["authenticated"].clone()), (json!(true), json!(true)));
        assert_eq!(first["newlyPinned"], true);
        assert_eq!(first["pinned"], true);
        let fingerprint = sshd.host_key_fingerprint();
        assert_eq!(first["hostKey"], json!({ "algorithm": "ssh-ed25519", "fingerprint": fingerprint }));
        assert_eq!(first["system"], local_uname(), "same machine, same `uname -sm`");
        assert_eq!(format!("{} {}", first["os"].as_str().unwrap(), first["arch"].as_str().unwrap()), local_uname());
        let names: Vec<&str> = first["interpreters"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["bash", "python3", "node"]);
        let bash = &first["interpreters"][0];
        assert!(bash["version"].as_str().unwrap().starts_with(|c: char| c.is_ascii_digit()), "{bash}");
        assert!(bash["versionLine"].as_str().unwrap().contains("GNU bash"), "{bash}");
        assert_eq!(first["runner"], Value::Null, "nothing deployed");

        let pinned = server(&app, id);
        answers.push_str(&pinned.to_string());
        let line = sshd.host_key().known_hosts_line(sshd.host(), sshd.port());
        assert_eq!(pinned["knownHost"], line.as_str());
        assert_eq!(pinned["hostKeyFingerprint"], fingerprint.as_str());
        let pins = pin_entries(&app);
        assert_eq!(pins.len(), 1, "{pins:?}");
        assert_eq!(pins[0]["targetId"], id);
        assert_eq!(pins[0]["detail"]["fingerprint"], fingerprint.as_str());

        // Second contact: verified against the pin, nothing new recorded.
        let second = check(&app, id);
        answers.push_str(&second.to_string());
        assert_eq!(second["ok"], true, "{second}");
        assert_eq!(second["newlyPinned"], false);
        assert_eq!(second["pinned"], true);
        assert_eq!(second["hostKey"]["fingerprint"], fingerprint.as_str());
        assert_eq!(pin_entries(&app).len(), 1);
        assert_eq!(server(&app, id)["updatedAt"], pinned["updatedAt"], "a verified check writes nothing");

        // The host comes back with another key: refused, pin kept.
        sshd.replace_host_key();
        let new_fingerprint = sshd.host_key_fingerprint();
        assert_ne!(new_fingerprint, fingerprint);
        let changed = check(&app, id);
        answers.push_str(&changed.to_string());
        assert_eq!(changed["ok"], false, "{changed}");
        assert_eq!(changed["error"]["phase"], "host key");
        let message = changed["error"]["message"].as_str().unwrap();
        assert!(message.contains(&fingerprint) && message.contains(&new_fingerprint), "{message}");
        assert!(message.contains(&format!("127.0.0.1:{}", sshd.port())), "{message}");
        assert_eq!(changed["reachable"], true);
        assert_eq!(changed["authenticated"], false);
        assert_eq!(changed["newlyPinned"], false);
        assert_eq!(changed["pinned"], true);
        let after = server(&app, id);
        assert_eq!(after["knownHost"], line.as_str(), "the pin is unchanged");
        assert_eq!(after["hostKeyFingerprint"], fingerprint.as_str());
        assert_eq!(pin_entries(&app).len(), 1);

        answers.push_str(&app.get("/api/v1/audit?limit=500").text());
        assert_no_secret(&answers, &[&user.key.private]);
    }
}

#[test]
fn a_key_the_server_does_not_accept_fails_in_the_auth_phase_and_pins_nothing() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0).clone();
    let Credentials::Key { private_key, .. } = sshd.stranger_key() else {
        panic!("the stranger has a key");
    };
    let id = add_server(
        &app,
        "stranger",
        &sshd,
        &user,
        json!({ "privateKey": private_key }),
    );

    let report = check(&app, id);
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["error"]["phase"], "auth");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains(&user.name), "names the user: {message}");
    assert_eq!(report["reachable"], true);
    assert_eq!(report["authenticated"], false);
    // Without authentication nothing says the key belongs to a host we
    // are meant to use, so it is not pinned.
    assert_eq!(report["newlyPinned"], false);
    assert_eq!(report["pinned"], false);
    assert_eq!(server(&app, id)["knownHost"], Value::Null);
    assert!(pin_entries(&app).is_empty());
    assert_no_secret(&report.to_string(), &[&private_key]);
}

#[test]
fn a_stopped_sshd_fails_in_the_connect_phase_at_once() {
    let app = TestApp::spawn(Backend::Sqlite);
    let mut sshd = TestSshd::start(1);
    let user = sshd.user(0).clone();
    let id = add_server(&app, "gone", &sshd, &user, key_of(&user));
    sshd.stop();

    let started = Instant::now();
    let report = check(&app, id);
    let elapsed = started.elapsed();
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["error"]["phase"], "connect");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("127.0.0.1:{}", sshd.port())),
        "{message}"
    );
    assert_eq!(report["reachable"], false);
    assert_eq!(report["authenticated"], false);
    assert_eq!(report["hostKey"], Value::Null);
    assert_eq!(report["system"], Value::Null);
    assert_eq!(report["interpreters"], json!([]));
    assert_eq!(report["pinned"], false);
    // A refused connection is reported as such, not after the 10 s connect
    // timeout runs out; the bound only tells the two apart.
    assert!(
        elapsed < Duration::from_secs(5),
        "took {elapsed:?}: {report}"
    );
    eprintln!("a check of a stopped sshd answered in {elapsed:?}");
}

#[test]
fn password_auth_and_a_passphrase_protected_key_work() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(2);
    let (a, b) = (sshd.user(0).clone(), sshd.user(1).clone());
    let by_password = add_server(
        &app,
        "by-password",
        &sshd,
        &a,
        json!({ "password": a.password }),
    );
    let by_encrypted_key = add_server(
        &app,
        "by-encrypted-key",
        &sshd,
        &b,
        json!({ "privateKey": b.encrypted_key.private, "passphrase": KEY_PASSPHRASE }),
    );
    assert_eq!(server(&app, by_password)["authKind"], "password");

    let mut answers = String::new();
    for (id, user) in [(by_password, &a), (by_encrypted_key, &b)] {
        let report = check(&app, id);
        answers.push_str(&report.to_string());
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["username"], user.name.as_str());
        assert_eq!(report["system"], local_uname());
        assert_eq!(
            report["hostKey"]["fingerprint"],
            sshd.host_key_fingerprint()
        );
        answers.push_str(&server(&app, id).to_string());
    }
    // The second server was trusted on its own first use, though the
    // address (and so the key) is the same: pins belong to records.
    assert_eq!(pin_entries(&app).len(), 2);

    // A wrong passphrase is an auth failure that does not echo it.
    app.patch(
        &format!("/api/v1/servers/{by_encrypted_key}"),
        json!({ "privateKey": b.encrypted_key.private, "passphrase": "not the passphrase" }),
    )
    .expect(200);
    let wrong = check(&app, by_encrypted_key);
    answers.push_str(&wrong.to_string());
    assert_eq!(wrong["ok"], false, "{wrong}");
    assert_eq!(wrong["error"]["phase"], "auth");
    assert!(
        wrong["error"]["message"]
            .as_str()
            .unwrap()
            .contains("passphrase"),
        "{wrong}"
    );

    answers.push_str(&app.get("/api/v1/servers").text());
    answers.push_str(&app.get("/api/v1/audit?limit=500").text());
    assert_no_secret(
        &answers,
        &[
            &a.password,
            KEY_PASSPHRASE,
            "not the passphrase",
            &b.encrypted_key.private,
        ],
    );
}

#[test]
fn a_known_host_given_at_create_is_used_and_a_wrong_one_is_refused() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0).clone();
    let fingerprint = sshd.host_key_fingerprint();
    let line = sshd.host_key().known_hosts_line(sshd.host(), sshd.port());

    // Each form of the right key: known_hosts line, bare public key, fingerprint.
    let forms = [
        ("by-line", line.clone()),
        ("by-key", sshd.host_key().to_openssh()),
        ("by-fingerprint", fingerprint.clone()),
    ];
    for (name, known_host) in forms {
        let mut credentials = key_of(&user);
        credentials["knownHost"] = json!(known_host);
        let id = add_server(&app, name, &sshd, &user, credentials);
        assert_eq!(server(&app, id)["hostKeyFingerprint"], fingerprint.as_str());
        let report = check(&app, id);
        assert_eq!(report["ok"], true, "{name}: {report}");
        assert_eq!(report["pinned"], true);
        assert_eq!(report["newlyPinned"], false, "{name}: already pinned");
        assert_eq!(
            server(&app, id)["knownHost"],
            known_host.as_str(),
            "{name}: kept as given"
        );
    }
    assert!(pin_entries(&app).is_empty());

    // Another key entirely: a second sshd's host key stands in for the key
    // of whatever the pin was really meant for.
    let sshd_other = TestSshd::start(0);
    let wrong_line = sshd_other
        .host_key()
        .known_hosts_line(sshd.host(), sshd.port());
    let wrong_fingerprint = sshd_other.host_key_fingerprint();
    let mut credentials = key_of(&user);
    credentials["knownHost"] = json!(wrong_line);
    let id = add_server(&app, "wrong-pin", &sshd, &user, credentials);
    let report = check(&app, id);
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["error"]["phase"], "host key");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&wrong_fingerprint) && message.contains(&fingerprint),
        "{message}"
    );
    assert_eq!(report["newlyPinned"], false);
    assert_eq!(
        server(&app, id)["knownHost"],
        wrong_line.as_str(),
        "the pin is unchanged"
    );
    assert!(pin_entries(&app).is_empty());

    // Clearing the pin lets the next check trust on first use again.
    app.patch(&format!("/api/v1/servers/{id}"), json!({ "knownHost": "" }))
        .expect(200);
    assert_eq!(server(&app, id)["knownHost"], Value::Null);
    let report = check(&app, id);
    assert_eq!(report["newlyPinned"], true, "{report}");
    assert_eq!(server(&app, id)["hostKeyFingerprint"], fingerprint.as_str());
}

#[test]
fn an_invalid_known_host_is_refused_naming_the_field() {
    let app = TestApp::spawn(Backend::Sqlite);
    let base = json!({ "name": "x", "host": "h", "username": "u", "password": "p" });
    let cases = [
        (
            "example.com ssh-ed25519 AAAAnotbase64!!",
            "cannot read the public key",
        ),
        ("example.com", "not a known_hosts line"),
        ("SHA256:short", "not a SHA256 fingerprint"),
        (
            "@revoked * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            "marker lines",
        ),
        (
            "[h]:x ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            "bad host",
        ),
    ];
    for (known_host, why) in cases {
        let mut body = base.clone();
        body["knownHost"] = json!(known_host);
        let err = app.post("/api/v1/servers", body).expect_error(
            422,
            "validation_failed",
            Some("knownHost"),
        );
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{known_host:?}: {message}");
    }
    assert_eq!(
        app.get("/api/v1/servers").expect(200),
        json!([]),
        "nothing was created"
    );

    let good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let mut body = base.clone();
    body["knownHost"] = json!(format!("  h {good}  "));
    let created = app.post("/api/v1/servers", body).expect(201);
    assert_eq!(created["knownHost"], format!("h {good}"), "stored trimmed");
    let fingerprint = created["hostKeyFingerprint"].as_str().unwrap();
    assert!(
        fingerprint.starts_with("SHA256:") && fingerprint.len() == 50,
        "{fingerprint}"
    );

    let id = &created["id"];
    let err = app
        .patch(
            &format!("/api/v1/servers/{id}"),
            json!({ "knownHost": "h ssh-ed25519" }),
        )
        .expect_error(422, "validation_failed", Some("knownHost"));
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a known_hosts line"),
        "{err}"
    );
    assert_eq!(
        server(&app, id.as_i64().unwrap())["knownHost"],
        format!("h {good}"),
        "unchanged"
    );
}

#[test]
fn only_an_admin_may_check_and_an_unknown_server_is_404() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0).clone();
    let id = add_server(&app, "web", &sshd, &user, key_of(&user));
    let path = format!("/api/v1/servers/{id}/check");
    for role in ["viewer", "editor"] {
        let token = app.token(role);
        app.call("POST", &path, &token, None)
            .expect_error(403, "forbidden", None);
    }
    assert_eq!(
        server(&app, id)["knownHost"],
        Value::Null,
        "nothing was pinned"
    );
    app.admin("POST", "/api/v1/servers/424242/check", None)
        .expect_error(404, "not_found", None);
}

#[test]
fn concurrent_first_checks_pin_once() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0).clone();
    let id = add_server(&app, "web", &sshd, &user, key_of(&user));

    let reports: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4).map(|_| scope.spawn(|| check(&app, id))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for report in &reports {
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["pinned"], true);
    }
    let newly = reports.iter().filter(|r| r["newlyPinned"] == true).count();
    assert_eq!(newly, 1, "exactly one check pinned: {reports:?}");
    assert_eq!(pin_entries(&app).len(), 1);
    assert_eq!(
        server(&app, id)["hostKeyFingerprint"],
        sshd.host_key_fingerprint()
    );
}
