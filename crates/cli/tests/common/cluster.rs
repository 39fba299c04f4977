//! Several real `cronium serve` nodes on one PostgreSQL database the test owns, a steady workload on them, and the means to hurt them (kill -9, SIGSTOP, restarts with extra environment, a network namespace with an nftables drop rule, a full tmpfs).
#![allow(dead_code)] // each fault uses a different part

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cronium_ssh::testing::TestSshd;
use cronium_store::testing::TestPostgres;
use serde_json::{Value, json};

use crate::common::wait_for;

const CRONIUM: &str = env!("CARGO_BIN_EXE_cronium");
/// Every node shares it, as a cluster must (DESIGN §7.6).
const MASTER_KEY: &str = "6b1f0c3e9a2d4b5c8e7f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5";
/// Short, so a dead node's job is recovered within seconds (the default is 30s).
pub const LEASE: Duration = Duration::from_secs(5);

/// Runs `program args`, panicking with its output unless it succeeds.
#[track_caller]
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A network namespace with a veth pair to the host, deleted (with the pair
/// and any nftables rule inside it) when dropped. Nodes run inside it, so a
/// rule there cuts them off from the database and nothing else on the host.
pub struct Netns {
    pub name: String,
    /// The host's end of the pair: where PostgreSQL listens for the nodes.
    pub host: Ipv4Addr,
    /// The namespace's end: where its nodes listen.
    pub inside: Ipv4Addr,
    pub cidr: String,
}

impl Netns {
    pub fn create() -> Netns {
        let pid = std::process::id();
        // A /30 of 10.213.0.0/16 picked by pid, so parallel test processes differ.
        let block = (pid % 16_000) * 4;
        let base = Ipv4Addr::new(10, 213, (block / 256) as u8, (block % 256) as u8);
        let [a, b, c, d] = base.octets();
        let host = Ipv4Addr::new(a, b, c, d + 1);
        let inside = Ipv4Addr::new(a, b, c, d + 2);
        let name = format!("cronium-f{pid}");
        let (outer, inner) = (format!("crf{pid}h"), format!("crf{pid}n"));
        // Left by an earlier process with the same pid.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &outer])
            .stderr(Stdio::null())
            .status();
        sh("ip", &["netns", "add", &name]);
        let ns = Netns {
            name,
            host,
            inside,
            cidr: format!("{base}/30"),
        };
        sh(
            "ip",
            &[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &ns.name,
            ],
        );
        sh("ip", &["addr", "add", &format!("{host}/30"), "dev", &outer]);
        sh("ip", &["link", "set", &outer, "up"]);
        ns.exec(&["ip", "addr", "add", &format!("{inside}/30"), "dev", &inner]);
        ns.exec(&["ip", "link", "set", &inner, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace.
    #[track_caller]
    pub fn exec(&self, command: &[&str]) -> String {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(command);
        sh("ip", &args)
    }

    /// Drops every packet from the namespace to `port` on the host (the
    /// database) until the returned guard is dropped: connections hang,
    /// as when a network partition or a dead switch swallows them.
    pub fn drop_traffic_to(&self, port: u16) -> DropRule<'_> {
        self.exec(&["nft", "add", "table", "inet", "cronium_fault"]);
        self.exec(&[
            "nft",
            "add",
            "chain",
            "inet",
            "cronium_fault",
            "out",
            "{",
            "type",
            "filter",
            "hook",
            "output",
            "priority",
            "0",
            ";",
            "}",
        ]);
        let (host, port) = (self.host.to_string(), port.to_string());
        self.exec(&[
            "nft",
            "add",
            "rule",
            "inet",
            "cronium_fault",
            "out",
            "ip",
            "daddr",
            &host,
            "tcp",
            "dport",
            &port,
            "drop",
        ]);
        DropRule { ns: self }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The nftables drop rule of [`Netns::drop_traffic_to`]; removed on drop.
pub struct DropRule<'a> {
    ns: &'a Netns,
}

impl Drop for DropRule<'_> {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns.name,
                "nft",
                "delete",
                "table",
                "inet",
                "cronium_fault",
            ])
            .status();
    }
}

/// A tmpfs mounted on a directory, unmounted when dropped.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
                path.to_str().unwrap(),
            ],
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Writes a file until the file system refuses: no byte is left.
    pub fn fill(&self) -> u64 {
        use std::io::Write;
        let mut file = std::fs::File::create(self.path.join("filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                    break;
                }
            }
        }
        // And the last few bytes a smaller write could still take.
        while let Ok(n) = file.write(&[0u8; 512]) {
            if n == 0 {
                break;
            }
            written += n as u64;
        }
        written
    }

    /// Gives the space back.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.path.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// One `cronium serve` of the cluster. Its pid is the process's own even in
/// a namespace (`ip netns exec` execs it), so signals reach it.
pub struct Node {
    pub name: String,
    pub data: PathBuf,
    pub url: String,
    listen: String,
    database_url: String,
    netns: Option<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    /// Starts the node (with `extra` environment, such as `LD_PRELOAD` and
    /// `FAKETIME` for libfaketime) and waits until it answers.
    pub fn start(&mut self, extra: &[(&str, &str)]) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, CRONIUM]);
                c
            }
            None => Command::new(CRONIUM),
        };
        cmd.args(["serve", "--listen", &self.listen, "--data-dir"])
            .arg(&self.data)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var_os("HOME").unwrap_or_else(|| "/root".into()),
            )
            .env("CRONIUM_DATABASE_URL", &self.database_url)
            .env("CRONIUM_MASTER_KEY", MASTER_KEY)
            .env("CRONIUM_JOB_LEASE", format!("{}s", LEASE.as_secs()))
            // Not a CRONIUM_ variable, so the runner passes it on: the
            // workload's scripts write which node ran them.
            .env("FAULT_NODE", &self.name)
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start cronium serve"));
        self.wait_until_up();
    }

    fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("{} exited early: {status}\n{}", self.name, self.log());
            }
            let ok = ureq::get(format!("{}/healthz", self.url)).call().is_ok();
            if ok && self.data.join("admin.token").exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not come up at {}\n{}",
            self.name,
            self.url,
            self.log()
        );
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, …) to the node's process.
    pub fn signal(&self, signal: i32) {
        let pid = self.pid().expect("the node runs");
        // SAFETY: a plain kill(2) of our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Everything the node logged, over all its starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A stopped process must be continued to die of SIGKILL promptly
            // (it does anyway), and its children with it.
            unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
        }
        self.kill9();
    }
}

/// How the cluster is laid out.
#[derive(Default)]
pub struct Layout {
    pub nodes: usize,
    /// Run the nodes inside a network namespace of their own.
    pub netns: bool,
    /// Mount a tmpfs of this size as this node's data dir.
    pub tmpfs: Option<(usize, &'static str)>,
}

/// N nodes on one database. Fields drop in order: nodes (and what runs
/// under them) first, then the mount, the namespace, the database, the dir.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub tmpfs: Option<Tmpfs>,
    pub netns: Option<Netns>,
    pub pg: TestPostgres,
    /// The database's name in `pg`.
    pub db: String,
    pub token: String,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(layout: Layout) -> Cluster {
        crate::common::require_runner();
        let dir = tempfile::tempdir().unwrap();
        // Fleet hosts are other Unix users: they must reach the trace file.
        sh("chmod", &["0755", dir.path().to_str().unwrap()]);
        let netns = layout.netns.then(Netns::create);
        let (listen, trusted): (Vec<IpAddr>, Vec<&str>) = match &netns {
            Some(ns) => (vec![IpAddr::V4(ns.host)], vec![ns.cidr.as_str()]),
            None => (vec![], vec![]),
        };
        let pg = TestPostgres::start_owned(&listen, &trusted).expect("start PostgreSQL");
        let url = pg.create_database();
        let db = url.rsplit('/').next().unwrap().to_string();
        let database_url = match &netns {
            Some(ns) => pg.url_on(IpAddr::V4(ns.host), &db),
            None => url,
        };
        let mut tmpfs = None;
        let nodes = (0..layout.nodes)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let data = dir.path().join(&name);
                if layout.tmpfs.is_some_and(|(at, _)| at == i) {
                    tmpfs = Some(Tmpfs::mount(&data, layout.tmpfs.unwrap().1));
                }
                let port = free_port();
                let host = netns.as_ref().map_or(Ipv4Addr::LOCALHOST, |ns| ns.inside);
                Node {
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    data,
                    url: format!("http://{host}:{port}"),
                    listen: format!("{host}:{port}"),
                    database_url: database_url.clone(),
                    netns: netns.as_ref().map(|ns| ns.name.clone()),
                    child: None,
                }
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            tmpfs,
            netns,
            pg,
            db,
            token: String::new(),
            dir,
        };
        // One at a time: the first runs the migrations.
        for node in &mut cluster.nodes {
            node.start(&[]);
        }
        cluster.token = std::fs::read_to_string(cluster.nodes[0].data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        cluster
    }

    /// A client for node `i`'s API.
    pub fn client(&self, i: usize) -> Api {
        Api {
            url: self.nodes[i].url.clone(),
            token: self.token.clone(),
        }
    }

    /// Rows of `sql` (fields split at `|`), run in the cluster's database.
    #[track_caller]
    pub fn sql(&self, sql: &str) -> Vec<Vec<String>> {
        let out = self
            .pg
            .psql(&self.db, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(String::from).collect())
            .collect()
    }

    /// The first field of the first row.
    #[track_caller]
    pub fn sql_one(&self, sql: &str) -> String {
        self.sql(sql)
            .first()
            .and_then(|r| r.first().cloned())
            .unwrap_or_default()
    }

    /// Which node's process holds job `id`'s lease (owners name the pid).
    pub fn lease_holder(&self, id: i64) -> Option<usize> {
        let owner = self.sql_one(&format!(
            "SELECT lease_owner FROM jobs WHERE id = {id} AND status = 'running'"
        ));
        let pid = owner.split('/').nth(1)?;
        self.nodes
            .iter()
            .position(|n| n.pid().is_some_and(|p| p.to_string() == pid))
    }

    pub fn trace_path(&self) -> PathBuf {
        self.dir.path().join("trace")
    }
}

/// The API of one node, as the admin.
#[derive(Clone)]
pub struct Api {
    pub url: String,
    pub token: String,
}

impl Api {
    /// `GET` (no body) or `POST` (a JSON body); the error names the node.
    pub fn call(&self, path: &str, body: Option<Value>) -> Result<Value, String> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .new_agent();
        let url = format!("{}/api/v1{path}", self.url);
        let auth = format!("Bearer {}", self.token);
        let response = match &body {
            Some(body) => agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(body),
            None => agent.get(&url).header("Authorization", &auth).call(),
        };
        let mut response = response.map_err(|e| format!("{} {path}: {e}", self.url))?;
        response
            .body_mut()
            .read_json()
            .map_err(|e| format!("{} {path}: {e}", self.url))
    }

    #[track_caller]
    pub fn ok(&self, path: &str, body: Option<Value>) -> Value {
        self.call(path, body).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The script every workload event runs: it writes `start`, a `tick` per
/// step and `end` to the trace (job, execution, where, nanoseconds), and a
/// line of output per step. `whr` is `local@<node>` or `<user>@ssh`.
pub fn traced_script(trace: &Path, steps: u32, step: &str, whr: &str) -> String {
    format!(
        "t={t}\nw=\"{whr}\"\nj=$CRONIUM_JOB_ID x=$CRONIUM_EXECUTION_ID\n\
         echo \"start $j $x $w $(date +%s%N)\" >> $t\n\
         for i in $(seq 1 {steps}); do\n  echo \"step $i of $x\"\n  \
         echo \"tick $j $x $w $(date +%s%N)\" >> $t\n  sleep {step}\ndone\n\
         echo \"end $j $x $w $(date +%s%N)\" >> $t\n",
        t = trace.display()
    )
}

/// The workload's events, by id.
#[derive(Debug, Clone, Default)]
pub struct Events {
    /// Scheduled every 1s and every 2s: (id, interval).
    pub scheduled: Vec<(i64, Duration)>,
    /// A manual event whose runs take ~1s.
    pub short: i64,
    /// A manual event whose runs take long (10s, 30s), with retries.
    pub long: i64,
    /// A manual event on two SSH hosts.
    pub fleet: Option<i64>,
}

/// A `cronium job logs ID --follow` process and what it printed.
pub struct Follower {
    pub job: i64,
    pub node: String,
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Follower {
    pub fn spawn(api: &Api, node: &str, job: i64) -> Follower {
        let mut child = Command::new(CRONIUM)
            .args(["job", "logs", &job.to_string(), "--follow"])
            .env("CRONIUM_URL", &api.url)
            .env("CRONIUM_TOKEN", &api.token)
            .env_remove("CRONIUM_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a follower");
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Follower {
            job,
            node: node.to_string(),
            child,
            out,
            reader: Some(reader),
        }
    }

    /// Waits for the follower to end (its job ended) at most until
    /// `deadline`; what it printed, and whether it ended.
    pub fn finish(mut self, deadline: Instant) -> super::invariants::Followed {
        let finished = loop {
            if self.child.try_wait().unwrap().is_some() {
                break true;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let stdout = self.out.lock().unwrap().clone();
        super::invariants::Followed {
            job: self.job,
            node: self.node.clone(),
            stdout,
            finished,
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The steady workload: scheduled events firing, a driver thread starting
/// manual (and fleet) runs on the nodes in turn, and followers of them on
/// another node than the one that started them.
pub struct Workload {
    pub events: Events,
    stop: Arc<AtomicBool>,
    driver: Option<JoinHandle<()>>,
    pub followers: Arc<Mutex<Vec<Follower>>>,
    /// Manual runs started (job ids).
    pub started: Arc<Mutex<Vec<i64>>>,
    /// Runs the driver could not start (a node down or cut off).
    pub refused: Arc<Mutex<Vec<String>>>,
    pub sshd: Option<TestSshd>,
}

impl Workload {
    /// Creates the events (through node 0) and starts the driver. With
    /// `fleet`, a real sshd with two users serves a fleet event. A run of
    /// the long event takes `long` (in steps of a quarter second).
    pub fn start(cluster: &Cluster, fleet: bool, long: Duration) -> Workload {
        let api = cluster.client(0);
        let trace = cluster.trace_path();
        std::fs::write(&trace, "").unwrap();
        sh("chmod", &["0666", trace.to_str().unwrap()]);
        let create = |name: &str, body: Value| -> i64 {
            let mut body = body;
            body["name"] = json!(name);
            body["interpreter"] = json!("bash");
            api.ok("/events", Some(body))["id"].as_i64().unwrap()
        };
        let local = "local@$FAULT_NODE";
        let mut events = Events::default();
        for (name, every, steps) in [("every-1s", 1u64, 2u32), ("every-2s", 2, 4)] {
            let id = create(
                name,
                json!({
                    "content": traced_script(&trace, steps, "0.2", local),
                    "schedule": {"type": "every", "every": format!("{every}s")},
                    "retries": 1, "retryDelay": "1s",
                }),
            );
            events.scheduled.push((id, Duration::from_secs(every)));
        }
        events.short = create(
            "short",
            json!({"content": traced_script(&trace, 5, "0.2", local), "retries": 2,
                   "retryDelay": "1s", "overlap": "allow"}),
        );
        events.long = create(
            "long",
            json!({"content": traced_script(&trace, (long.as_millis() / 250) as u32, "0.25", local),
                   "retries": 2,
                   "retryDelay": "1s", "overlap": "allow"}),
        );
        let sshd = fleet.then(|| TestSshd::start(2));
        if let Some(sshd) = &sshd {
            let known_host = sshd.host_key().known_hosts_line(sshd.host(), sshd.port());
            let mut ids = Vec::new();
            for (i, user) in sshd.users().iter().enumerate() {
                let server = api.ok(
                    "/servers",
                    Some(json!({
                        "name": format!("host{i}"), "host": sshd.host(), "port": sshd.port(),
                        "username": user.name, "privateKey": user.key.private,
                        "knownHost": known_host,
                    })),
                );
                ids.push(server["id"].as_i64().unwrap());
            }
            events.fleet = Some(create(
                "fleet",
                json!({"content": traced_script(&trace, 3, "0.2", "$(whoami)@ssh"),
                       "runLocation": "remote", "targetServers": ids, "retries": 1,
                       "retryDelay": "1s", "overlap": "allow"}),
            ));
        }

        let stop = Arc::new(AtomicBool::new(false));
        let followers = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let clients: Vec<(String, Api)> = (0..cluster.nodes.len())
            .map(|i| (cluster.nodes[i].name.clone(), cluster.client(i)))
            .collect();
        let driver = {
            let (stop, followers, started, refused) = (
                stop.clone(),
                followers.clone(),
                started.clone(),
                refused.clone(),
            );
            let events = events.clone();
            std::thread::spawn(move || {
                let mut round = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let n = clients.len();
                    let (_, api) = &clients[round % n];
                    let event = match events.fleet {
                        Some(fleet) if round % 4 == 3 => fleet,
                        _ => events.short,
                    };
                    match api.call(&format!("/events/{event}/run"), Some(json!({}))) {
                        Ok(job) => {
                            let id = job["id"].as_i64().unwrap();
                            started.lock().unwrap().push(id);
                            // Followed from the next node, every other run.
                            if round.is_multiple_of(2) {
                                let (name, other) = &clients[(round + 1) % n];
                                followers
                                    .lock()
                                    .unwrap()
                                    .push(Follower::spawn(other, name, id));
                            }
                        }
                        Err(e) => refused.lock().unwrap().push(e),
                    }
                    round += 1;
                    std::thread::sleep(Duration::from_millis(1200));
                }
            })
        };
        Workload {
            events,
            stop,
            driver: Some(driver),
            followers,
            started,
            refused,
            sshd,
        }
    }

    /// Starts a run of the long event through node `via`, followed from
    /// every node; its job id.
    pub fn start_long(&self, cluster: &Cluster, via: usize) -> i64 {
        let job = cluster.client(via).ok(
            &format!("/events/{}/run", self.events.long),
            Some(json!({})),
        );
        let id = job["id"].as_i64().unwrap();
        self.started.lock().unwrap().push(id);
        for (i, node) in cluster.nodes.iter().enumerate() {
            self.followers.lock().unwrap().push(Follower::spawn(
                &cluster.client(i),
                &node.name,
                id,
            ));
        }
        id
    }

    /// Stops starting runs, waits (at most `limit`) for every manual run to
    /// end and for its followers to finish; what the followers printed.
    pub fn settle(
        &mut self,
        cluster: &Cluster,
        limit: Duration,
    ) -> Vec<super::invariants::Followed> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(driver) = self.driver.take() {
            driver.join().unwrap();
        }
        let deadline = Instant::now() + limit;
        let started = self.started.lock().unwrap().clone();
        if !started.is_empty() {
            let ids = started
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let open = format!(
                "SELECT count(*) FROM jobs WHERE id IN ({ids}) AND status IN ('queued', 'running')"
            );
            let settled = (|| {
                while Instant::now() < deadline {
                    if cluster
                        .pg
                        .psql(&cluster.db, &open)
                        .is_ok_and(|n| n.trim() == "0")
                    {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                false
            })();
            if !settled {
                eprintln!("not every manual run ended within {limit:?}");
            }
        }
        let followers = std::mem::take(&mut *self.followers.lock().unwrap());
        let end = Instant::now().max(deadline.min(Instant::now() + Duration::from_secs(20)));
        followers
            .into_iter()
            .map(|f| f.finish(end.max(Instant::now() + Duration::from_secs(5))))
            .collect()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
    }
}

/// Waits for `what` at most `limit`, returning how long it took.
#[track_caller]
pub fn time_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    wait_for(what, limit, || check().then_some(()));
    start.elapsed()
}
