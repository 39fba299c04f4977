//! Benchmark: one small bash script on 10 SSH hosts by Cronium (warm), Ansible ad-hoc and a plain `ssh` loop, side by side on the same real sshd.
//!
//! Run as root with OpenSSH installed (`/usr/sbin/sshd`):
//! `cargo bench -p cronium-server --bench remote`. The 10 "hosts" are 10
//! throwaway Unix users of one real sshd on 127.0.0.1 (`cronium_ssh::testing`),
//! each with its own home and key; every tool connects to each as a separate
//! host, checks the host key against the same `known_hosts` file and runs the
//! same script. Variants, each timed per round of all 10 hosts (the first
//! round is a warm-up, reported as "cold"):
//!
//! - **ssh loop**: `ssh … user@127.0.0.1 bash -s < script.sh` for each host
//!   in turn (a full handshake every time); also all 10 at once, and a loop
//!   over multiplexed connections (`ControlMaster`/`ControlPersist`, the
//!   fairest comparison for a warm connection).
//! - **Ansible**: `ansible all -m script -a script.sh` from `ansible-core`
//!   installed from PyPI into a venv (`target/bench-ansible-venv`, created on
//!   first use), with its default forks (5), with `-f 10`, and with `-f 10`
//!   plus pipelining. Ansible's own ssh defaults are kept, which include
//!   `ControlPersist=60s`: rounds after the first reuse its connections.
//! - **Cronium**: the real server in this process (`cronium_server::start`,
//!   what `cronium serve` runs), 10 servers and one remote bash event created
//!   over the HTTP API; `POST /events/{id}/run`, then `GET /jobs/{id}` every
//!   millisecond until it is over. The first run deploys the runner and
//!   uploads the payload; the timed runs must find both cached. Per-job
//!   overhead on a warm connection: the same script on ONE host, minus the
//!   same script as a local event, interleaved.
//!
//! Knobs: `CRONIUM_BENCH_ROUNDS` (timed rounds of the ssh and Cronium
//! variants, default 10), `CRONIUM_BENCH_ANSIBLE_ROUNDS` (default 5),
//! `CRONIUM_BENCH_ONLY` (a comma list of `ssh`, `ansible`, `cronium`),
//! `CRONIUM_BENCH_ANSIBLE_VENV` (another venv directory).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cronium_server::Config;
use cronium_ssh::testing::TestSshd;
use serde_json::{Value, json};

const HOSTS: usize = 10;

/// Small, but real work on the host: reads who it runs as and where, so a
/// run on the wrong account or one that did not happen shows in the check.
const SCRIPT: &str = r#"#!/bin/bash
# The benchmark's script: the same bytes for every tool.
set -eu
user=$(id -un)
cd "$HOME"
count=0
for f in /etc/host*; do count=$((count + 1)); done
echo "cronium-bench-ok $user $count $(uname -s)"
"#;

/// What the script prints for `user`, as every variant checks it.
fn marker(user: &str) -> String {
    format!("cronium-bench-ok {user} ")
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Median and p90.
fn summary(v: &[Duration]) -> (Duration, Duration) {
    let mut v = v.to_vec();
    v.sort();
    (percentile(&v, 0.5), percentile(&v, 0.9))
}

fn median_f64(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

/// One line of the final table.
struct Row {
    name: String,
    cold: Option<Duration>,
    median: Duration,
    p90: Duration,
}

impl Row {
    fn new(name: impl Into<String>, cold: Option<Duration>, times: &[Duration]) -> Row {
        let (median, p90) = summary(times);
        Row {
            name: name.into(),
            cold,
            median,
            p90,
        }
    }
}

/// The sshd, its 10 users, and the files the command-line tools need.
struct Hosts {
    sshd: TestSshd,
    dir: tempfile::TempDir,
    /// One 0600 private key file per user.
    keys: Vec<PathBuf>,
    known_hosts: PathBuf,
    known_host_line: String,
    script: PathBuf,
}

impl Hosts {
    fn start() -> Hosts {
        let sshd = TestSshd::start(HOSTS);
        let dir = tempfile::Builder::new()
            .prefix("cronium-bench-remote-")
            .tempdir()
            .unwrap();
        // ssh refuses a private key that others can read.
        let write_private = |path: &Path, text: &str| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        let keys: Vec<PathBuf> = sshd
            .users()
            .iter()
            .map(|u| {
                let path = dir.path().join(format!("{}.key", u.name));
                write_private(&path, &u.key.private);
                path
            })
            .collect();
        let known_host_line = sshd.host_key().known_hosts_line(sshd.host(), sshd.port());
        let known_hosts = dir.path().join("known_hosts");
        fs::write(&known_hosts, format!("{known_host_line}\n")).unwrap();
        let script = dir.path().join("script.sh");
        fs::write(&script, SCRIPT).unwrap();
        Hosts {
            sshd,
            dir,
            keys,
            known_hosts,
            known_host_line,
            script,
        }
    }

    fn user(&self, i: usize) -> &str {
        &self.sshd.user(i).name
    }

    /// `ssh … user@127.0.0.1 bash -s < script.sh`, host key checked against our file.
    fn ssh(&self, i: usize, extra: &[String]) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-i")
            .arg(&self.keys[i])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            // Only the key given: root's own keys or agent must not be tried first.
            .args(["-o", "IdentitiesOnly=yes"])
            .arg("-p")
            .arg(self.sshd.port().to_string())
            .args(extra)
            .arg(format!("{}@{}", self.user(i), self.sshd.host()))
            .args(["bash", "-s"])
            .stdin(fs::File::open(&self.script).unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn check_ssh(&self, i: usize, out: &Output) {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&marker(self.user(i))),
            "ssh to {} failed ({}): stdout {stdout:?}, stderr {:?}",
            self.user(i),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Options for a multiplexed connection per user (the socket in our temp dir).
    fn mux_options(&self) -> Vec<String> {
        vec![
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            format!("ControlPath={}/mux-%C", self.dir.path().display()),
            "-o".into(),
            "ControlPersist=300".into(),
        ]
    }
}

/// Times `rounds` + 1 calls of `round`; the first is the warm-up.
fn timed(rounds: usize, mut round: impl FnMut()) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    round();
    let cold = started.elapsed();
    let times = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            round();
            started.elapsed()
        })
        .collect();
    (cold, times)
}

fn ssh_variants(hosts: &Hosts, rounds: usize) -> Vec<Row> {
    let sequential = || {
        for i in 0..HOSTS {
            let out = hosts.ssh(i, &[]).output().unwrap();
            hosts.check_ssh(i, &out);
        }
    };
    let parallel = || {
        let children: Vec<_> = (0..HOSTS)
            .map(|i| hosts.ssh(i, &[]).spawn().unwrap())
            .collect();
        for (i, child) in children.into_iter().enumerate() {
            hosts.check_ssh(i, &child.wait_with_output().unwrap());
        }
    };
    let mux = hosts.mux_options();
    let multiplexed = || {
        for i in 0..HOSTS {
            let out = hosts.ssh(i, &mux).output().unwrap();
            hosts.check_ssh(i, &out);
        }
    };
    let mut rows = Vec::new();
    let (cold, times) = timed(rounds, sequential);
    rows.push(Row::new("ssh loop, sequential", Some(cold), &times));
    let (cold, times) = timed(rounds, parallel);
    rows.push(Row::new("ssh, all 10 at once", Some(cold), &times));
    let (cold, times) = timed(rounds, multiplexed);
    rows.push(Row::new(
        "ssh loop, multiplexed (ControlPersist, warm)",
        Some(cold),
        &times,
    ));
    // The masters would otherwise outlive the benchmark (and its users).
    for i in 0..HOSTS {
        let _ = Command::new("ssh")
            .args(&mux)
            .args(["-O", "exit", "-p"])
            .arg(hosts.sshd.port().to_string())
            .arg(format!("{}@{}", hosts.user(i), hosts.sshd.host()))
            .stdin(Stdio::null())
            .output();
    }
    for row in &rows {
        println!(
            "{}: cold {}, median {}, p90 {} ({rounds} rounds of {HOSTS} hosts)",
            row.name,
            ms(row.cold.unwrap()),
            ms(row.median),
            ms(row.p90)
        );
    }
    rows
}

/// The target directory (`target/`), from this benchmark's own path
/// (`target/release/deps/remote-…`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// `ansible` from a venv with ansible-core from PyPI, created on first use.
fn ansible_binary() -> PathBuf {
    let venv = std::env::var_os("CRONIUM_BENCH_ANSIBLE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("bench-ansible-venv"));
    let ansible = venv.join("bin/ansible");
    if !ansible.is_file() {
        println!(
            "creating {}: python3 -m venv, then pip install ansible-core from PyPI (first run only)",
            venv.display()
        );
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("run python3 -m venv");
        assert!(
            status.success(),
            "python3 -m venv {} failed",
            venv.display()
        );
        let status = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "ansible-core"])
            .status()
            .expect("run pip");
        assert!(status.success(), "pip install ansible-core failed");
    }
    let version = Command::new(&ansible)
        .arg("--version")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("run ansible --version");
    println!(
        "using {} ({})",
        ansible.display(),
        String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .unwrap_or("?")
            .trim()
    );
    ansible
}

fn ansible_variants(hosts: &Hosts, rounds: usize) -> Vec<Row> {
    let ansible = ansible_binary();
    let dir = hosts.dir.path().join("ansible");
    fs::create_dir_all(&dir).unwrap();
    let mut inventory = String::from("[bench]\n");
    for i in 0..HOSTS {
        inventory.push_str(&format!(
            "h{i} ansible_host={} ansible_port={} ansible_user={} ansible_ssh_private_key_file={}\n",
            hosts.sshd.host(),
            hosts.sshd.port(),
            hosts.user(i),
            hosts.keys[i].display()
        ));
    }
    // Host keys are checked (Ansible's default) against the same file as ssh's.
    inventory.push_str(&format!(
        "\n[all:vars]\nansible_ssh_common_args='-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'\nansible_python_interpreter=/usr/bin/python3\n",
        hosts.known_hosts.display()
    ));
    let inventory_path = dir.join("inventory.ini");
    fs::write(&inventory_path, inventory).unwrap();
    let control = dir.join("cp");
    let run = |forks: Option<usize>, pipelining: bool| {
        let mut c = Command::new(&ansible);
        c.arg("all")
            .arg("-i")
            .arg(&inventory_path)
            .args(["-m", "script", "-a"])
            .arg(&hosts.script);
        if let Some(f) = forks {
            c.arg("-f").arg(f.to_string());
        }
        // Everything Ansible writes locally stays in our temp dir, and no
        // ansible.cfg from the working directory or home is picked up.
        c.current_dir(&dir)
            .env("LC_ALL", "C.UTF-8")
            .env("ANSIBLE_CONFIG", dir.join("none.cfg"))
            .env("ANSIBLE_HOME", dir.join("home"))
            .env("ANSIBLE_LOCAL_TEMP", dir.join("tmp"))
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", &control)
            .env("ANSIBLE_NOCOLOR", "1")
            .env(
                "ANSIBLE_PIPELINING",
                if pipelining { "True" } else { "False" },
            )
            .stdin(Stdio::null());
        let out = c.output().expect("run ansible");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let all_ran = (0..HOSTS).all(|i| {
            stdout.contains(&format!("h{i} | CHANGED")) && stdout.contains(&marker(hosts.user(i)))
        });
        assert!(
            out.status.success() && all_ran,
            "ansible failed ({}), or not every host ran the script:\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut rows = Vec::new();
    let (cold, times) = timed(rounds, || run(None, false));
    rows.push(Row::new("Ansible, default forks (5)", Some(cold), &times));
    let (cold, times) = timed(rounds, || run(Some(10), false));
    rows.push(Row::new("Ansible, -f 10", Some(cold), &times));
    let (cold, times) = timed(rounds, || run(Some(10), true));
    rows.push(Row::new("Ansible, -f 10, pipelining", Some(cold), &times));
    // Ansible's ControlPersist masters would outlive the benchmark by 60 s.
    // Counting them also shows that Ansible kept its connections open.
    let mut masters = 0;
    if let Ok(sockets) = fs::read_dir(&control) {
        for socket in sockets.flatten() {
            let closed = Command::new("ssh")
                .arg("-S")
                .arg(socket.path())
                .args(["-O", "exit", "unused"])
                .stdin(Stdio::null())
                .output();
            masters += usize::from(closed.is_ok_and(|o| o.status.success()));
        }
    }
    println!("Ansible had {masters} ControlPersist connections open at the end (closed now)");
    for row in &rows {
        println!(
            "{}: first round {}, median {}, p90 {} ({rounds} rounds of {HOSTS} hosts)",
            row.name,
            ms(row.cold.unwrap()),
            ms(row.median),
            ms(row.p90)
        );
    }
    rows
}

struct Client(common::Api);

impl Client {
    fn new(base: &str, token: &str) -> Client {
        Client(common::Api::new(base, token))
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        self.0.call(method, path, body)
    }

    fn run(&self, event: i64) -> Result<i64, String> {
        let job = self.call("POST", &format!("/events/{event}/run"), Some(&json!({})))?;
        job["id"]
            .as_i64()
            .ok_or_else(|| format!("no job id in {job}"))
    }

    /// Polls the job every millisecond until it is over; a job that did not
    /// succeed is an error naming what the server recorded.
    fn wait(&self, id: i64) -> Result<Value, String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let job = self.call("GET", &format!("/jobs/{id}"), None)?;
            match job["status"].as_str() {
                Some("queued" | "running") if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Some("succeeded") => return Ok(job),
                _ => {
                    return Err(format!(
                        "Cronium job {id} did not succeed: status {}, error {}, metadata {}; its log:\n{}",
                        job["status"],
                        job["error"],
                        job["metadata"],
                        self.log(id).unwrap_or_else(|e| e)
                    ));
                }
            }
        }
    }

    fn log(&self, id: i64) -> Result<String, String> {
        let page = self.call("GET", &format!("/jobs/{id}/logs?limit=1000"), None)?;
        Ok(page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|l| format!("[{}] {}", l["stream"], l["text"].as_str().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default())
    }

    /// Runs the event once and waits; the client's trigger → final status time.
    fn run_once(&self, event: i64) -> Result<(Duration, Value), String> {
        let started = Instant::now();
        let job = self.run(event)?;
        let done = self.wait(job)?;
        Ok((started.elapsed(), done))
    }
}

struct App {
    runtime: tokio::runtime::Runtime,
    running: Option<cronium_server::Running>,
    client: Client,
    _dir: tempfile::TempDir,
}

fn start(runner: &Path) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("data"));
    config.listen = "127.0.0.1:0".into();
    config.runner = Some(runner.to_path_buf());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = runtime.block_on(cronium_server::start(config)).unwrap();
    let token = fs::read_to_string(running.data_dir().join("admin.token")).unwrap();
    let client = Client::new(&format!("http://{}", running.local_addr()), token.trim());
    App {
        runtime,
        running: Some(running),
        client,
        _dir: dir,
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = self.runtime.block_on(r.stop());
        }
    }
}

/// The phases a remote execution records, in the order they happen.
const PHASES: [&str; 5] = ["connect", "deploy", "upload", "run", "cleanup"];

/// `metadata.executions` of a finished job: one per target server.
fn executions(job: &Value, servers: usize) -> Result<&Vec<Value>, String> {
    match job["metadata"]["executions"].as_array() {
        Some(e) if e.len() == servers => Ok(e),
        _ => Err(format!(
            "job {} has no metadata.executions with {servers} entries: {}",
            job["id"], job["metadata"]
        )),
    }
}

/// Whether an execution deployed the runner or uploaded the payload
/// (`uploaded: {runner, payload, bytes}`); anything unreadable counts as yes.
fn uploaded_anything(execution: &Value) -> bool {
    let u = &execution["uploaded"];
    u["runner"] != json!(false) || u["payload"] != json!(false) || u["bytes"] != json!(0)
}

/// Every phase's times of these jobs' executions, in ms.
fn phase_times<'a>(
    jobs: impl IntoIterator<Item = &'a Value>,
    servers: usize,
) -> Result<BTreeMap<String, Vec<f64>>, String> {
    let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for job in jobs {
        for execution in executions(job, servers)? {
            if let Some(timings) = execution["timingsMs"].as_object() {
                for (phase, v) in timings {
                    if let Some(v) = v.as_f64() {
                        phases.entry(phase.clone()).or_default().push(v);
                    }
                }
            }
        }
    }
    Ok(phases)
}

fn print_phases(label: &str, phases: &BTreeMap<String, Vec<f64>>) {
    let known = PHASES.iter().map(|p| p.to_string());
    let others = phases
        .keys()
        .filter(|k| !PHASES.contains(&k.as_str()))
        .cloned();
    let text: Vec<String> = known
        .chain(others)
        .filter_map(|p| {
            phases
                .get(&p)
                .map(|v| format!("{p} {:.1} ms", median_f64(v)))
        })
        .collect();
    println!(
        "Cronium: {label}, per-server medians: {}",
        if text.is_empty() {
            "no timingsMs recorded".to_string()
        } else {
            text.join(", ")
        }
    );
}

/// Every host's line is in the job's log: each server really ran the script.
fn check_log(c: &Client, job: &Value, users: &[&str]) -> Result<(), String> {
    let id = job["id"].as_i64().unwrap_or_default();
    let log = c.log(id)?;
    match users.iter().find(|u| !log.contains(&marker(u))) {
        Some(missing) => Err(format!(
            "job {id}: no output from {missing} in its log:\n{log}"
        )),
        None => Ok(()),
    }
}

fn cronium_variants(hosts: &Hosts, rounds: usize) -> Result<Vec<Row>, String> {
    let runner = common::runner();
    let app = start(&runner);
    let c = &app.client;
    let mut servers = Vec::new();
    for i in 0..HOSTS {
        let server = c.call(
            "POST",
            "/servers",
            Some(&json!({
                "name": format!("host-{i}"),
                "host": hosts.sshd.host(),
                "port": hosts.sshd.port(),
                "username": hosts.user(i),
                "privateKey": hosts.sshd.user(i).key.private,
                "knownHost": hosts.known_host_line,
            })),
        )?;
        servers.push(
            server["id"]
                .as_i64()
                .ok_or_else(|| format!("no server id in {server}"))?,
        );
    }
    let event = |name: &str, targets: &[i64]| -> Result<i64, String> {
        let mut body = json!({
            "name": name, "interpreter": "bash", "content": SCRIPT, "overlap": "allow",
        });
        if !targets.is_empty() {
            body["runLocation"] = json!("remote");
            body["targetServers"] = json!(targets);
        }
        let event = c.call("POST", "/events", Some(&body))?;
        event["id"]
            .as_i64()
            .ok_or_else(|| format!("no event id in {event}"))
    };
    let users: Vec<&str> = (0..HOSTS).map(|i| hosts.user(i)).collect();

    // 10 hosts: one cold run (deploys the runner, uploads the payload), then warm ones.
    let all = event("ten hosts", &servers)?;
    let (cold, cold_job) = c.run_once(all)?;
    check_log(c, &cold_job, &users)?;
    let cold_uploads = executions(&cold_job, HOSTS)?
        .iter()
        .filter(|e| uploaded_anything(e))
        .count();
    println!("Cronium: cold run uploaded to {cold_uploads} of {HOSTS} servers");
    print_phases(
        "cold run (deploy + upload)",
        &phase_times([&cold_job], HOSTS)?,
    );
    let (mut warm, mut server_side, mut jobs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (took, job) = c.run_once(all)?;
        warm.push(took);
        let time = |k: &str| {
            job[k]
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
        };
        if let (Some(created), Some(finished)) = (time("createdAt"), time("finishedAt")) {
            server_side.push((finished - created).to_std().unwrap_or_default());
        }
        jobs.push(job);
    }
    check_log(c, jobs.last().unwrap(), &users)?;
    // Warm means cached: a warm run that uploaded anything is a failure of
    // the cache, not a slow run.
    for job in &jobs {
        for execution in executions(job, HOSTS)? {
            if uploaded_anything(execution) {
                return Err(format!(
                    "warm job {} uploaded again (uploaded = {}): {execution}",
                    job["id"], execution["uploaded"]
                ));
            }
        }
    }
    print_phases(
        &format!("{rounds} warm runs × {HOSTS} servers"),
        &phase_times(&jobs, HOSTS)?,
    );
    let (median, p90) = summary(&warm);
    let s50 = if server_side.is_empty() {
        "?".to_string()
    } else {
        ms(summary(&server_side).0)
    };
    println!(
        "Cronium, 10 hosts: cold {}, warm median {}, p90 {}, server-recorded median {} ({rounds} runs; no warm run uploaded anything)",
        ms(cold),
        ms(median),
        ms(p90),
        s50
    );
    let mut rows = vec![Row::new("Cronium, 10 hosts (warm)", Some(cold), &warm)];

    // Per-job overhead on a warm connection: one host, against the same
    // script run locally, interleaved so both see the same machine.
    let one = event("one host", &servers[..1])?;
    let local = event("local", &[])?;
    for _ in 0..3 {
        c.run_once(one)?;
        c.run_once(local)?;
    }
    let (mut remote_times, mut local_times, mut one_jobs) = (Vec::new(), Vec::new(), Vec::new());
    let runs = rounds * 5;
    for _ in 0..runs {
        let (took, job) = c.run_once(one)?;
        remote_times.push(took);
        if uploaded_anything(&executions(&job, 1)?[0]) {
            return Err(format!("warm one-host job {} uploaded again", job["id"]));
        }
        one_jobs.push(job);
        local_times.push(c.run_once(local)?.0);
    }
    check_log(c, one_jobs.last().unwrap(), &users[..1])?;
    print_phases(
        &format!("{runs} warm runs × 1 server"),
        &phase_times(&one_jobs, 1)?,
    );
    let (r50, r90) = summary(&remote_times);
    let (l50, l90) = summary(&local_times);
    println!(
        "Cronium, 1 host (warm) median {} (p90 {}), same script local median {} (p90 {}): per-job remote overhead {:.1} ms ({runs} runs each, interleaved)",
        ms(r50),
        ms(r90),
        ms(l50),
        ms(l90),
        (r50.as_secs_f64() - l50.as_secs_f64()) * 1000.0
    );
    rows.push(Row::new("Cronium, 1 host (warm)", None, &remote_times));
    rows.push(Row::new("Cronium, same script local", None, &local_times));
    Ok(rows)
}

fn print_table(rows: &[Row], cronium: Option<Duration>) {
    println!();
    println!("| variant | first round (cold) | median | p90 | ÷ Cronium 10 hosts |");
    println!("|---|---|---|---|---|");
    for row in rows {
        let ratio = cronium
            .map(|c| format!("{:.1}×", row.median.as_secs_f64() / c.as_secs_f64()))
            .unwrap_or_else(|| "not measured".into());
        println!(
            "| {} | {} | {} | {} | {ratio} |",
            row.name,
            row.cold.map(ms).unwrap_or_default(),
            ms(row.median),
            ms(row.p90)
        );
    }
}

fn main() {
    let rounds = env_number("CRONIUM_BENCH_ROUNDS", 10);
    let ansible_rounds = env_number("CRONIUM_BENCH_ANSIBLE_ROUNDS", 5);
    let only = std::env::var("CRONIUM_BENCH_ONLY").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only.split(',').any(|p| p.trim() == part);
    println!(
        "{} CPUs; {HOSTS} hosts = {HOSTS} users of one sshd on 127.0.0.1",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let hosts = Hosts::start();
    println!(
        "sshd on port {}, {}",
        hosts.sshd.port(),
        String::from_utf8_lossy(&Command::new("ssh").arg("-V").output().unwrap().stderr).trim()
    );
    let mut rows = Vec::new();
    if wanted("ssh") {
        rows.extend(ssh_variants(&hosts, rounds));
    }
    if wanted("ansible") {
        rows.extend(ansible_variants(&hosts, ansible_rounds));
    }
    let mut failure = None;
    if wanted("cronium") {
        match cronium_variants(&hosts, rounds) {
            Ok(r) => rows.extend(r),
            Err(e) => failure = Some(e),
        }
    }
    let cronium = rows
        .iter()
        .find(|r| r.name == "Cronium, 10 hosts (warm)")
        .map(|r| r.median);
    print_table(&rows, cronium);
    if let Some(cronium) = cronium {
        let ratio = |name: &str| {
            rows.iter()
                .find(|r| r.name == name)
                .map(|r| r.median.as_secs_f64() / cronium.as_secs_f64())
        };
        if let (Some(a), Some(s)) = (ratio("Ansible, -f 10"), ratio("ssh loop, sequential")) {
            println!(
                "\nAnsible (-f 10) / Cronium: {a:.1}× (aim ≥ 10×); sequential ssh loop / Cronium: {s:.1}× (aim > 1×)"
            );
        }
    }
    if let Some(e) = failure {
        drop(hosts);
        eprintln!("\nCronium part FAILED: {e}");
        std::process::exit(1);
    }
}
