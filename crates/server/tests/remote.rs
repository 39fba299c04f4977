//! Remote jobs end to end: the real server deploys the real runner over SSH to a real OpenSSH server whose users act as separate hosts, and runs real bash there.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Backend, TestApp, add_server, finished, wait_for};
use cronium_ssh::testing::{TestSshd, TestUser};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Long enough for a slow CI machine; the tests finish far sooner.
const PATIENCE: Duration = Duration::from_secs(60);

/// Like [`add_server`], with a runner cache directory.
fn add_server_caching_in(
    app: &TestApp,
    sshd: &TestSshd,
    user: &TestUser,
    name: &str,
    cache_dir: &str,
) -> i64 {
    let server = add_server(app, sshd, user, name);
    let changed = app
        .patch(
            &format!("/api/v1/servers/{server}"),
            json!({ "cacheDir": cache_dir }),
        )
        .expect(200);
    assert_eq!(changed["cacheDir"], cache_dir);
    server
}

fn remote_event(app: &TestApp, name: &str, script: &str, servers: &[i64], extra: Value) -> i64 {
    let mut body = json!({
        "name": name, "interpreter": "bash", "content": script,
        "runLocation": "remote", "targetServers": servers,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.create_event(body)["id"].as_i64().unwrap()
}

fn run_now(app: &TestApp, event: i64) -> i64 {
    app.post(&format!("/api/v1/events/{event}/run"), json!({}))
        .expect(201)["id"]
        .as_i64()
        .unwrap()
}

fn run_to_end(app: &TestApp, event: i64) -> Value {
    let id = run_now(app, event);
    finished(app, id)
}

fn executions(job: &Value) -> Vec<Value> {
    job["metadata"]["executions"]
        .as_array()
        .unwrap_or_else(|| panic!("no executions in {job}"))
        .clone()
}

/// The job's log lines as (server, stream, text), every page.
fn lines(app: &TestApp, id: i64) -> Vec<(Option<String>, String, String)> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = app
            .get(&format!("/api/v1/jobs/{id}/logs?after={after}&limit=1000"))
            .expect(200);
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            return all;
        }
        for l in items {
            after = l["seq"].as_u64().unwrap();
            all.push((
                l["server"].as_str().map(str::to_string),
                l["stream"].as_str().unwrap().to_string(),
                l["text"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
}

fn stdout_of(app: &TestApp, id: i64, server: &str) -> String {
    lines(app, id)
        .into_iter()
        .filter(|(s, stream, _)| s.as_deref() == Some(server) && stream == "stdout")
        .map(|(_, _, text)| text)
        .collect()
}

fn runner_path(user: &TestUser) -> PathBuf {
    user.home.join(".cache/cronium/runner/cronium-runner")
}

fn payloads_dir(user: &TestUser) -> PathBuf {
    user.home.join(".cache/cronium/payloads")
}

fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The processes the user runs, other than sshd itself, as `pid cmdline`.
fn processes_of(user: &str) -> Vec<String> {
    let out = std::process::Command::new("ps")
        .args(["-u", user, "-o", "pid=,args="])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("sshd"))
        .map(str::to_string)
        .collect()
}

#[track_caller]
fn no_processes_left(user: &str) {
    wait_for("the user's processes to be gone", PATIENCE, || {
        processes_of(user).is_empty().then_some(())
    });
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

both_backends! {
    fn the_first_run_deploys_the_second_uploads_nothing_and_a_new_version_only_its_payload(backend: Backend) {
        let app = TestApp::spawn(backend);
        let sshd = TestSshd::start(1);
        let user = sshd.user(0);
        let server = add_server(&app, &sshd, user, "web1");
        let event = remote_event(&app, "hello", "echo \"hello from $(whoami)\"\n", &[server], json!({}));

        let first = run_to_end(&app, event);
        assert_eq!(first["status"], "succeeded", "{first}");
        let run = &executions(&first)[0];
        assert_eq!(run["server"], "web1");
        assert_eq!(run["uploaded"]["runner"], true, "{run}");
        assert_eq!(run["uploaded"]["payload"], true, "{run}");
        assert!(run["runnerVersion"].as_str().is_some_and(|v| !v.is_empty()), "{run}");
        let id = first["id"].as_i64().unwrap();
        assert_eq!(stdout_of(&app, id, "web1"), format!("hello from {}\n", user.name));
        assert_eq!(
            sha256_file(&runner_path(user)),
            sha256_file(&common::runner_binary()),
            "the deployed runner is the server's own"
        );
        let checksum = first["metadata"]["checksum"].as_str().unwrap().to_string();
        let payload = payloads_dir(user).join(format!("{checksum}.tar.gz"));
        assert_eq!(run["payloadPath"], payload.display().to_string());
        assert_eq!(sha256_file(&payload), checksum);
        let runner_inode = std::fs::metadata(runner_path(user)).unwrap().ino();
        let payload_inode = std::fs::metadata(&payload).unwrap().ino();

        // The same version again: nothing is uploaded, the files are untouched.
        let second = run_to_end(&app, event);
        assert_eq!(second["status"], "succeeded", "{second}");
        let run = &executions(&second)[0];
        assert_eq!(run["uploaded"], json!({"runner": false, "payload": false, "bytes": 0}));
        assert_eq!(run["timingsMs"]["connect"], 0, "the connection is reused: {run}");
        assert_eq!(std::fs::metadata(runner_path(user)).unwrap().ino(), runner_inode);
        assert_eq!(std::fs::metadata(&payload).unwrap().ino(), payload_inode);

        // A new version of the event: only its payload travels.
        app.patch(&format!("/api/v1/events/{event}"), json!({"content": "echo version two\n"}))
            .expect(200);
        let third = run_to_end(&app, event);
        assert_eq!(third["status"], "succeeded", "{third}");
        let run = &executions(&third)[0];
        assert_eq!(run["uploaded"]["runner"], false);
        assert_eq!(run["uploaded"]["payload"], true);
        assert_eq!(stdout_of(&app, third["id"].as_i64().unwrap(), "web1"), "version two\n");
        assert_eq!(std::fs::metadata(runner_path(user)).unwrap().ino(), runner_inode);
        assert_eq!(file_names(&payloads_dir(user)).len(), 2, "both versions are cached");
        let timings = &run["timingsMs"];
        for phase in ["connect", "deploy", "upload", "run", "cleanup"] {
            assert!(timings[phase].is_u64(), "{phase} missing in {timings}");
        }
    }

    fn a_fleet_with_one_unreachable_host_ends_partial_with_the_others_output_intact(backend: Backend) {
        let app = TestApp::spawn(backend);
        let sshd = TestSshd::start(2);
        let a = add_server(&app, &sshd, sshd.user(0), "alpha");
        let b = add_server(&app, &sshd, sshd.user(1), "beta");
        let down = app
            .post("/api/v1/servers", json!({
                "name": "gone", "host": "127.0.0.1", "port": closed_port(), "username": "nobody",
                "privateKey": sshd.user(0).key.private,
                "knownHost": sshd.host_key().known_hosts_line("127.0.0.1", 1),
            }))
            .expect(201)["id"].as_i64().unwrap();
        // 3000 lines each, as fast as bash writes them: nothing may be lost.
        let script = "for i in $(seq 1 3000); do echo \"$(whoami) line $i\"; done\n";
        let event = remote_event(&app, "fleet", script, &[a, down, b], json!({}));

        let began = Instant::now();
        let job = run_to_end(&app, event);
        assert_eq!(job["status"], "partial", "{job}");
        assert_ne!(job["exitCode"], 0);
        assert!(began.elapsed() < Duration::from_secs(20), "a dead host does not hold the others up");
        let runs = executions(&job);
        let by_name = |name: &str| runs.iter().find(|r| r["server"] == name).unwrap().clone();
        assert_eq!(by_name("alpha")["status"], "succeeded");
        assert_eq!(by_name("beta")["status"], "succeeded");
        let gone = by_name("gone");
        assert_eq!(gone["status"], "failed");
        assert_eq!(gone["phase"], "connect", "{gone}");
        assert!(gone["error"].as_str().unwrap().contains("connect to 127.0.0.1:"), "{gone}");
        assert!(job["error"].as_str().unwrap().contains("gone"), "{job}");

        let id = job["id"].as_i64().unwrap();
        for (name, user) in [("alpha", sshd.user(0)), ("beta", sshd.user(1))] {
            let expected: String = (1..=3000).map(|i| format!("{} line {i}\n", user.name)).collect();
            assert_eq!(stdout_of(&app, id, name), expected, "{name}'s lines, all and in order");
        }
    }
}

/// A host that accepts TCP connections and never says a word: the socket
/// opens, the SSH banner never comes. Every accepted socket is held open
/// until [`SilentHost::stop`], so the client sees silence, not a close.
struct SilentHost {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl SilentHost {
    fn start() -> SilentHost {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((socket, _)) => held.push(socket),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            held.len()
        });
        SilentHost { port, stop, thread }
    }

    /// Closes everything; returns how many connections it accepted.
    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

#[test]
fn a_host_that_accepts_and_never_speaks_fails_at_the_connect_timeout_without_holding_up_the_others()
{
    // What the server's connection pool gives TCP connect plus the SSH
    // handshake (cronium_server::start builds it from the defaults).
    let timeout = cronium_ssh::Timeouts::default().connect;
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(2);
    let silent = SilentHost::start();
    // First in the list, so a fleet that took its hosts one by one would
    // wait out the silent one before starting the others.
    let mute = app
        .post(
            "/api/v1/servers",
            json!({
                "name": "mute", "host": "127.0.0.1", "port": silent.port, "username": "nobody",
                "privateKey": sshd.user(0).key.private,
                "knownHost": sshd.host_key().known_hosts_line("127.0.0.1", silent.port),
            }),
        )
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let a = add_server(&app, &sshd, sshd.user(0), "alpha");
    let b = add_server(&app, &sshd, sshd.user(1), "beta");
    let event = remote_event(
        &app,
        "fleet",
        "echo \"$(whoami) done\"\n",
        &[mute, a, b],
        json!({}),
    );

    let began = Instant::now();
    let id = run_now(&app, event);
    let done =
        |name: &str, user: &TestUser| stdout_of(&app, id, name) == format!("{} done\n", user.name);
    wait_for("the good hosts' output", PATIENCE, || {
        (done("alpha", sshd.user(0)) && done("beta", sshd.user(1))).then_some(())
    });
    let others_done = began.elapsed();
    let job = app.get(&format!("/api/v1/jobs/{id}")).expect(200);
    assert_eq!(
        job["status"], "running",
        "the silent host is still being waited for: {job}"
    );
    assert!(
        others_done < timeout / 2,
        "the good hosts finished after {others_done:?}, held up by the silent one (timeout {timeout:?})"
    );

    let job = finished(&app, id);
    let elapsed = began.elapsed();
    assert_eq!(job["status"], "partial", "{job}");
    assert_ne!(job["exitCode"], 0);
    let runs = executions(&job);
    let by_name = |name: &str| runs.iter().find(|r| r["server"] == name).unwrap().clone();
    assert_eq!(by_name("alpha")["status"], "succeeded");
    assert_eq!(by_name("beta")["status"], "succeeded");
    let mute = by_name("mute");
    assert_eq!(mute["status"], "failed", "{mute}");
    assert_eq!(mute["phase"], "connect", "{mute}");
    let error = mute["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("connect to 127.0.0.1:{}", silent.port))
            && error.contains("timed out"),
        "{error}"
    );
    // It gave up at the timeout: not before (it was given its time), not
    // much after (the timeout is what ended it).
    let waited = Duration::from_millis(mute["timingsMs"]["connect"].as_u64().unwrap());
    assert!(
        waited >= timeout - Duration::from_millis(100) && waited < timeout + Duration::from_secs(5),
        "gave up after {waited:?}, the timeout is {timeout:?}"
    );
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(15),
        "the job took {elapsed:?}"
    );
    assert!(
        silent.stop() >= 1,
        "the client did connect, and met silence"
    );
}

#[test]
fn a_server_with_its_own_cache_dir_deploys_there_runs_warm_and_is_checked_there() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let server = add_server_caching_in(&app, &sshd, user, "own", "opt-cronium/cache");
    let event = remote_event(
        &app,
        "own",
        "echo \"cached by $(whoami)\"\n",
        &[server],
        json!({}),
    );
    let cache = user.home.join("opt-cronium/cache");
    let runner = cache.join("runner/cronium-runner");

    let first = run_to_end(&app, event);
    assert_eq!(first["status"], "succeeded", "{first}");
    let run = &executions(&first)[0];
    assert_eq!(run["uploaded"]["runner"], true, "{run}");
    assert_eq!(run["uploaded"]["payload"], true, "{run}");
    assert_eq!(
        stdout_of(&app, first["id"].as_i64().unwrap(), "own"),
        format!("cached by {}\n", user.name)
    );
    assert_eq!(sha256_file(&runner), sha256_file(&common::runner_binary()));
    let checksum = first["metadata"]["checksum"].as_str().unwrap().to_string();
    let payload = cache.join(format!("payloads/{checksum}.tar.gz"));
    assert_eq!(
        run["payloadPath"],
        payload.display().to_string(),
        "the real path"
    );
    assert_eq!(sha256_file(&payload), checksum);
    assert_eq!(
        file_names(&cache.join("payloads")),
        [format!("{checksum}.tar.gz")]
    );
    assert_eq!(std::fs::metadata(&cache).unwrap().mode() & 0o777, 0o700);
    assert!(
        !user.home.join(".cache/cronium").exists(),
        "nothing under the default directory"
    );

    let second = run_to_end(&app, event);
    assert_eq!(second["status"], "succeeded", "{second}");
    let run = &executions(&second)[0];
    assert_eq!(
        run["uploaded"],
        json!({"runner": false, "payload": false, "bytes": 0})
    );
    assert_eq!(run["payloadPath"], payload.display().to_string());

    // `server check` reports the runner deployed there.
    let version = run["runnerVersion"].as_str().unwrap().to_string();
    let report = app
        .admin("POST", &format!("/api/v1/servers/{server}/check"), None)
        .expect(200);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["runner"]["version"], version.as_str(), "{report}");

    // Moved to an absolute directory the user owns: the next run connects
    // afresh and deploys there; the check follows.
    // Under /tmp itself, not $TMPDIR: the user must be able to reach it.
    let outside = tempfile::Builder::new()
        .prefix("cronium-cache-")
        .tempdir_in("/tmp")
        .unwrap();
    chown(&user.name, outside.path());
    let absolute = outside.path().join("cronium");
    let absolute_text = absolute.to_str().unwrap();
    app.patch(
        &format!("/api/v1/servers/{server}"),
        json!({ "cacheDir": absolute_text }),
    )
    .expect(200);
    let report = app
        .admin("POST", &format!("/api/v1/servers/{server}/check"), None)
        .expect(200);
    assert_eq!(
        report["runner"],
        Value::Null,
        "nothing deployed there yet: {report}"
    );

    let third = run_to_end(&app, event);
    assert_eq!(third["status"], "succeeded", "{third}");
    let run = &executions(&third)[0];
    assert_eq!(run["uploaded"]["runner"], true, "{run}");
    assert_eq!(run["uploaded"]["payload"], true, "{run}");
    let moved = absolute.join(format!("payloads/{checksum}.tar.gz"));
    assert_eq!(run["payloadPath"], moved.display().to_string());
    assert_eq!(sha256_file(&moved), checksum);
    assert_eq!(
        sha256_file(&absolute.join("runner/cronium-runner")),
        sha256_file(&common::runner_binary())
    );
    assert_eq!(std::fs::metadata(&absolute).unwrap().mode() & 0o777, 0o700);
    let fourth = run_to_end(&app, event);
    assert_eq!(
        executions(&fourth)[0]["uploaded"],
        json!({"runner": false, "payload": false, "bytes": 0})
    );
    let report = app
        .admin("POST", &format!("/api/v1/servers/{server}/check"), None)
        .expect(200);
    assert_eq!(report["runner"]["version"], version.as_str(), "{report}");
    assert_eq!(
        file_names(&cache.join("payloads")),
        [format!("{checksum}.tar.gz")],
        "the old directory is left as it was"
    );
    assert!(!user.home.join(".cache/cronium").exists());
}

#[test]
fn a_runner_of_another_version_is_replaced() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    // What an older Cronium left there: a runner that says it is 0.0.1
    // (and would speak an older protocol, without helper calls).
    let old = runner_path(user);
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, "#!/bin/sh\necho '{\"version\":\"0.0.1\"}'\nexit 0\n").unwrap();
    chown(&user.name, &user.home.join(".cache"));
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let server = add_server(&app, &sshd, user, "old");
    // The script's helper call needs the new runner.
    let event = remote_event(
        &app,
        "v",
        "cronium var set deployed true && echo ran\n",
        &[server],
        json!({}),
    );
    let job = run_to_end(&app, event);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(executions(&job)[0]["uploaded"]["runner"], true);
    assert_eq!(sha256_file(&old), sha256_file(&common::runner_binary()));
    assert_eq!(stdout_of(&app, job["id"].as_i64().unwrap(), "old"), "ran\n");
    assert_eq!(
        app.get("/api/v1/variables/deployed").expect(200)["value"],
        true
    );
}

#[test]
fn a_truncated_runner_on_the_host_is_detected_and_redeployed() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let server = add_server(&app, &sshd, user, "trunc");
    let event = remote_event(&app, "t", "echo fine\n", &[server], json!({}));
    assert_eq!(run_to_end(&app, event)["status"], "succeeded");

    // Cut the runner in half behind the open connection's back, and leave
    // a half-written upload of the kind an interrupted deploy leaves.
    let runner = runner_path(user);
    let full = std::fs::read(&runner).unwrap();
    std::fs::write(&runner, &full[..full.len() / 2]).unwrap();
    let stale = runner.with_file_name(".cronium-runner.0123456789abcdef.tmp");
    std::fs::write(&stale, &full[..1000]).unwrap();
    let two_hours_ago = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&stale)
        .status()
        .unwrap();
    assert!(two_hours_ago.success());

    let job = run_to_end(&app, event);
    assert_eq!(job["status"], "succeeded", "{job}");
    let run = &executions(&job)[0];
    assert_eq!(run["uploaded"]["runner"], true, "{run}");
    assert_eq!(run["uploaded"]["payload"], false, "{run}");
    assert_eq!(std::fs::read(&runner).unwrap(), full, "redeployed whole");
    assert!(
        !stale.exists(),
        "a stale partial upload is swept, never run"
    );
    assert_eq!(
        stdout_of(&app, job["id"].as_i64().unwrap(), "trunc"),
        "fine\n"
    );
}

#[test]
fn a_changed_host_key_a_refused_key_and_a_down_host_fail_in_their_phase() {
    let app = TestApp::spawn(Backend::Sqlite);
    let mut sshd = TestSshd::start(2);
    let pinned = sshd.host_key_fingerprint();
    let good = add_server(&app, &sshd, sshd.user(0), "moved");
    let stranger = app
        .post(
            "/api/v1/servers",
            json!({
                "name": "stranger", "host": sshd.host(), "port": sshd.port(),
                "username": sshd.user(1).name,
                "privateKey": match sshd.stranger_key() {
                    cronium_ssh::Credentials::Key { private_key, .. } => private_key,
                    _ => unreachable!(),
                },
                "knownHost": sshd.host_key().known_hosts_line(sshd.host(), sshd.port()),
            }),
        )
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let down = app
        .post(
            "/api/v1/servers",
            json!({
                "name": "down", "host": "127.0.0.1", "port": closed_port(),
                "username": sshd.user(0).name, "privateKey": sshd.user(0).key.private,
                "knownHost": sshd.host_key().known_hosts_line("127.0.0.1", 1),
            }),
        )
        .expect(201)["id"]
        .as_i64()
        .unwrap();

    let refused = run_to_end(
        &app,
        remote_event(&app, "s", "echo no\n", &[stranger], json!({})),
    );
    assert_eq!(refused["status"], "failed");
    let run = &executions(&refused)[0];
    assert_eq!(run["phase"], "auth", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains(&sshd.user(1).name),
        "{run}"
    );

    let began = Instant::now();
    let unreachable = run_to_end(
        &app,
        remote_event(&app, "d", "echo no\n", &[down], json!({})),
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "a refused connection fails fast"
    );
    let run = &executions(&unreachable)[0];
    assert_eq!(run["phase"], "connect", "{run}");
    assert!(
        unreachable["error"]
            .as_str()
            .unwrap()
            .contains("connect to 127.0.0.1:"),
        "{unreachable}"
    );

    sshd.replace_host_key();
    let changed = run_to_end(
        &app,
        remote_event(&app, "m", "echo no\n", &[good], json!({})),
    );
    assert_eq!(changed["status"], "failed");
    let run = &executions(&changed)[0];
    assert_eq!(run["phase"], "host key", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains(&pinned), "the pinned fingerprint: {error}");
    assert!(
        error.contains(&sshd.host_key_fingerprint()),
        "the presented one: {error}"
    );
    assert!(
        !sshd.user(0).home.join(".cache/cronium").exists(),
        "nothing was deployed"
    );
}

#[test]
fn a_server_without_a_pinned_host_key_is_refused_until_checked() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let server = app
        .post(
            "/api/v1/servers",
            json!({
                "name": "unpinned", "host": sshd.host(), "port": sshd.port(),
                "username": user.name, "privateKey": user.key.private,
            }),
        )
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let job = run_to_end(
        &app,
        remote_event(&app, "u", "echo no\n", &[server], json!({})),
    );
    let run = &executions(&job)[0];
    assert_eq!(run["phase"], "host key", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("cronium server check unpinned"),
        "{run}"
    );
}

#[test]
fn a_connection_cut_mid_job_leaves_no_script_behind() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let server = add_server(&app, &sshd, user, "cut");
    let event = remote_event(
        &app,
        "long",
        "echo started\nsleep 300 &\nsleep 300\n",
        &[server],
        json!({}),
    );
    let id = run_now(&app, event);
    wait_for("the script to start", PATIENCE, || {
        stdout_of(&app, id, "cut").contains("started").then_some(())
    });
    assert!(
        processes_of(&user.name)
            .iter()
            .any(|p| p.contains("sleep 300"))
    );

    // The connection's sshd process dies: no goodbye, just a closed socket.
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-u", &user.name, "sshd"])
        .status()
        .unwrap();
    assert!(killed.success());

    let job = finished(&app, id);
    assert_eq!(job["status"], "failed", "{job}");
    let run = &executions(&job)[0];
    assert_eq!(run["phase"], "run", "{run}");
    assert!(run["error"].as_str().unwrap().contains("lost"), "{run}");
    // The runner saw its channel close, stopped the script's group and cleaned up.
    no_processes_left(&user.name);
    assert!(
        work_dirs_of(&user.name).is_empty(),
        "work dirs left: {:?}",
        work_dirs_of(&user.name)
    );

    // The next job connects afresh.
    let again = run_to_end(
        &app,
        remote_event(&app, "after", "echo back\n", &[server], json!({})),
    );
    assert_eq!(again["status"], "succeeded", "{again}");
}

#[test]
fn timeout_and_cancel_kill_the_remote_process_group() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let server = add_server(&app, &sshd, user, "tc");
    let slow = "echo started\nsleep 300 &\nsleep 300\n";

    let timed = remote_event(&app, "timed", slow, &[server], json!({"timeout": "1s"}));
    let job = run_to_end(&app, timed);
    assert_eq!(job["status"], "timed_out", "{job}");
    assert_eq!(job["exitCode"], 124);
    no_processes_left(&user.name);

    let cancelled = remote_event(&app, "cancelled", slow, &[server], json!({}));
    let id = run_now(&app, cancelled);
    wait_for("the script to start", PATIENCE, || {
        stdout_of(&app, id, "tc").contains("started").then_some(())
    });
    app.post(&format!("/api/v1/jobs/{id}/cancel"), json!({}))
        .expect(202);
    let job = finished(&app, id);
    assert_eq!(job["status"], "cancelled", "{job}");
    no_processes_left(&user.name);
}

#[test]
fn secrets_reach_the_script_but_never_the_remote_disk_or_command_line() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let server = add_server(&app, &sshd, user, "vault");
    let secret = "s3cr3t-remote-7f1c9d2e";
    // The script holds still until the test has looked (the gate file), so
    // the runner's work dir, gone once the job ends, is there to be searched.
    let gate = user.home.join("go-on");
    let script = format!(
        "printf %s \"$API_TOKEN\" | sha256sum\necho waiting\n\
         for i in $(seq 600); do [ -e {gate} ] && break; sleep 0.1; done\n",
        gate = gate.display()
    );
    let event = remote_event(
        &app,
        "secretive",
        &script,
        &[server],
        json!({"secretEnv": {"API_TOKEN": secret}}),
    );
    let id = run_now(&app, event);
    wait_for("the script to run", PATIENCE, || {
        stdout_of(&app, id, "vault")
            .contains("waiting")
            .then_some(())
    });
    // While it runs: no process of the user has the secret on its command line.
    for pid in pids_of(&user.name) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !common::contains(&cmdline, secret.as_bytes()),
            "pid {pid}: {}",
            String::from_utf8_lossy(&cmdline)
        );
    }
    // …and none of its files holds the secret, the work dir included.
    let uid = std::fs::metadata(&user.home).unwrap().uid();
    let on_disk = || {
        [
            files_containing(&user.home, secret.as_bytes(), None),
            files_containing(Path::new("/tmp"), secret.as_bytes(), Some(uid)),
        ]
        .concat()
    };
    let work_dirs = work_dirs_of(&user.name);
    assert!(
        work_dirs.iter().any(|d| d.contains("cronium-run-")),
        "the runner's work dir is there to search: {work_dirs:?}"
    );
    let during = on_disk();
    assert!(
        during.is_empty(),
        "the secret is on the host's disk while the job runs: {during:?}"
    );
    std::fs::write(&gate, "").unwrap();

    let job = finished(&app, id);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(work_dirs_of(&user.name).is_empty(), "the work dir is gone");
    let hash: String = Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        stdout_of(&app, id, "vault").starts_with(&hash),
        "the script got the secret"
    );
    let after = on_disk();
    assert!(
        after.is_empty(),
        "the secret is on the host's disk after the job: {after:?}"
    );
    // The check can fail: the same scan finds a file the user did write.
    std::fs::write(user.home.join("planted"), secret).unwrap();
    assert_eq!(
        files_containing(&user.home, secret.as_bytes(), None),
        vec![user.home.join("planted")]
    );
}

#[test]
fn concurrent_first_runs_on_one_host_deploy_the_runner_once() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let server = add_server(&app, &sshd, user, "busy");
    let event = remote_event(
        &app,
        "parallel",
        "echo \"run $CRONIUM_JOB_ID\"\n",
        &[server],
        json!({"overlap": "allow"}),
    );
    let ids: Vec<i64> = (0..4).map(|_| run_now(&app, event)).collect();
    let jobs: Vec<Value> = ids.iter().map(|&id| finished(&app, id)).collect();
    for job in &jobs {
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let deployed = jobs
        .iter()
        .filter(|j| executions(j)[0]["uploaded"]["runner"] == true)
        .count();
    assert_eq!(deployed, 1, "one deploy, the others waited for it");
    assert_eq!(
        sha256_file(&runner_path(user)),
        sha256_file(&common::runner_binary())
    );
    assert_eq!(
        file_names(&user.home.join(".cache/cronium/runner")),
        vec!["cronium-runner".to_string()],
        "no temporary file left"
    );
}

fn chown(user: &str, path: &Path) {
    let status = std::process::Command::new("chown")
        .args(["-R", &format!("{user}:{user}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn pids_of(user: &str) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-u", user])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Directories in /tmp owned by the user (the runner's work dirs).
fn work_dirs_of(user: &str) -> Vec<String> {
    let uid = std::fs::metadata(format!("/home/{user}")).unwrap().uid();
    std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| e.metadata().is_ok_and(|m| m.is_dir() && m.uid() == uid))
        .map(|e| e.path().display().to_string())
        .collect()
}

/// Regular files under `root` whose bytes contain `needle`. With `owner`,
/// only what that uid could have written: its own files, in directories it
/// owns or that anyone may write (others' trees under /tmp, such as build
/// directories, are not the remote user's to write).
fn files_containing(root: &Path, needle: &[u8], owner: Option<u32>) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let writable_by_owner = owner
                .is_none_or(|uid| meta.uid() == uid || (meta.is_dir() && meta.mode() & 0o002 != 0));
            if !writable_by_owner {
                continue;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file()
                && std::fs::read(entry.path()).is_ok_and(|b| common::contains(&b, needle))
            {
                found.push(entry.path());
            }
        }
    }
    found
}

#[test]
fn the_payload_cache_keeps_the_newest_and_prunes_the_rest() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let server = add_server(&app, &sshd, user, "cache");
    let event = remote_event(&app, "c", "echo one\n", &[server], json!({}));
    assert_eq!(run_to_end(&app, event)["status"], "succeeded");

    // Forty payloads of events long gone, older than anything real.
    let dir = payloads_dir(user);
    for i in 0..40 {
        let old = dir.join(format!("{i:064x}.tar.gz"));
        std::fs::write(&old, b"old").unwrap();
        let aged = std::process::Command::new("touch")
            .args(["-d", &format!("{} days ago", 40 - i)])
            .arg(&old)
            .status()
            .unwrap();
        assert!(aged.success());
    }
    app.patch(
        &format!("/api/v1/events/{event}"),
        json!({"content": "echo two\n"}),
    )
    .expect(200);
    let job = run_to_end(&app, event);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(executions(&job)[0]["uploaded"]["payload"], true);

    let left = file_names(&dir);
    assert_eq!(left.len(), 32, "{left:?}");
    let checksum = job["metadata"]["checksum"].as_str().unwrap();
    assert!(
        left.contains(&format!("{checksum}.tar.gz")),
        "the new payload stays"
    );
    for i in 0..9 {
        assert!(
            !left.contains(&format!("{i:064x}.tar.gz")),
            "the oldest go: {i}"
        );
    }
    // A payload pruned away is simply uploaded again.
    std::fs::remove_file(dir.join(format!("{checksum}.tar.gz"))).unwrap();
    let again = run_to_end(&app, event);
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(executions(&again)[0]["uploaded"]["payload"], true);
}

#[test]
fn a_shell_start_up_file_that_prints_is_named_instead_of_corrupting_the_run() {
    let app = TestApp::spawn(Backend::Sqlite);
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let server = add_server(&app, &sshd, user, "chatty");
    let event = remote_event(&app, "quiet", "echo fine\n", &[server], json!({}));
    assert_eq!(run_to_end(&app, event)["status"], "succeeded");

    // A greeting without the usual "interactive only" guard; the user's
    // shell reads it for commands run over ssh too.
    let bashrc = user.home.join(".bashrc");
    let original = std::fs::read(&bashrc).unwrap_or_default();
    std::fs::write(
        &bashrc,
        [b"echo Welcome to the box!\n".as_slice(), &original].concat(),
    )
    .unwrap();
    let job = run_to_end(&app, event);
    assert_eq!(job["status"], "failed", "{job}");
    let run = &executions(&job)[0];
    assert_eq!(run["phase"], "run", "{run}");
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("Welcome to the box!"), "{error}");
    assert!(error.contains("~/.bashrc"), "{error}");
    no_processes_left(&user.name);

    std::fs::write(&bashrc, original).unwrap();
    assert_eq!(run_to_end(&app, event)["status"], "succeeded");
}
