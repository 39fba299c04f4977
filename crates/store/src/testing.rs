//! Throwaway databases for tests: one real PostgreSQL cluster per test process, a fresh database per test, SQLite files in temp dirs.
//!
//! The cluster starts on first use ([`TestPostgres::fresh_database`]), runs
//! from a temp dir on a free loopback port with durability off (it is thrown
//! away), and is stopped and removed when the process exits (`atexit`: a
//! `Drop` on a static never runs). A process that dies without exiting
//! (SIGKILL, abort) leaves its cluster behind; the next test process to
//! start one stops and removes every cluster whose owner is gone.
//!
//! A test that stops, restarts or cuts off its database owns a cluster of
//! its own instead ([`TestPostgres::start_owned`]): stopped and removed when
//! dropped, listening on the addresses the test names, and controlled with
//! [`TestPostgres::stop_immediate`], [`TestPostgres::start`] and
//! [`TestPostgres::terminate_backends`].
//!
//! For tests that need events in the database but never run them,
//! [`manual_script`] and [`StubWriter`] make one without touching the disk.
//!
//! `initdb` and `pg_ctl` refuse to run as root, so as root they run as the
//! `postgres` user through `runuser`, in a directory chowned to it.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

/// Names every cluster directory, so a later process can find stale ones.
const DIR_PREFIX: &str = "cronium-test-pg-";
/// The file in a cluster directory that holds the owning test process's pid.
const OWNER_FILE: &str = "owner.pid";
/// A directory without an owner file younger than this may still be starting.
const STARTING_GRACE: Duration = Duration::from_secs(120);

const MISSING: &str = "PostgreSQL server binaries (initdb, pg_ctl) were not found in \
    /usr/lib/postgresql/*/bin or on PATH: install PostgreSQL \
    (`apt-get install -y postgresql` on Debian; scripts/test.sh does this)";

/// The process's throwaway PostgreSQL cluster.
#[derive(Debug)]
pub struct TestPostgres {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    as_postgres_user: bool,
    /// `listen_addresses`, as PostgreSQL reads it.
    listen: String,
    /// Stopped and removed when dropped (a cluster from `start_owned`).
    owned: bool,
}

static CLUSTER: OnceLock<Result<TestPostgres, String>> = OnceLock::new();
static NEXT_DATABASE: AtomicU32 = AtomicU32::new(0);

impl TestPostgres {
    /// The cluster, started on first call. Panics with the reason (such as
    /// PostgreSQL not being installed) if it cannot start.
    pub fn get() -> &'static TestPostgres {
        match CLUSTER.get_or_init(start) {
            Ok(cluster) => cluster,
            Err(why) => panic!("cannot start the test PostgreSQL cluster: {why}"),
        }
    }

    /// Creates an empty database with a name unique to this call and returns
    /// its URL. Blocks for the few milliseconds `createdb` takes.
    pub fn fresh_database() -> String {
        TestPostgres::get().create_database()
    }

    pub fn create_database(&self) -> String {
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        let port = self.port.to_string();
        let output = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", &name])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run createdb: {e}"));
        assert!(
            output.status.success(),
            "createdb {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.url(&name)
    }

    /// The URL of database `name` in this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` reached at `host` (one of the addresses
    /// the cluster listens on).
    pub fn url_on(&self, host: IpAddr, name: &str) -> String {
        format!("postgres://postgres@{host}:{}/{name}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn stop(&self) {
        stop_cluster(&self.bin, &self.root, self.as_postgres_user);
    }

    /// A cluster of the caller's own, stopped and removed when dropped, for a
    /// test that stops, restarts or cuts off its database. It listens on
    /// 127.0.0.1 and on `listen` (addresses that must exist now and at every
    /// [`TestPostgres::start`]) and trusts connections from 127.0.0.1 and
    /// from the networks in `trusted` (CIDR, such as `10.0.0.0/30`).
    pub fn start_owned(listen: &[IpAddr], trusted: &[&str]) -> Result<TestPostgres, String> {
        let mut addresses = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
        for address in listen {
            if !addresses.contains(address) {
                addresses.push(*address);
            }
        }
        let listen = addresses
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let hba: String = trusted
            .iter()
            .map(|cidr| format!("host all all {cidr} trust\n"))
            .collect();
        start_cluster(listen, &hba, true)
    }

    /// `pg_ctl stop -m immediate`: every backend is killed at once, nothing
    /// is checkpointed; the next [`TestPostgres::start`] runs crash recovery.
    pub fn stop_immediate(&self) -> Result<(), String> {
        run(
            self.tool("pg_ctl").arg("-D").arg(self.data_dir()).args([
                "-m",
                "immediate",
                "-w",
                "stop",
            ]),
            "pg_ctl stop",
        )
    }

    /// Starts the cluster again on the same port and data dir, after
    /// [`TestPostgres::stop_immediate`].
    pub fn start(&self) -> Result<(), String> {
        pg_ctl_start(self, self.port).map_err(|why| {
            let log = fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default();
            format!("{why}\n{log}")
        })
    }

    /// Ends every connection to database `name` but the caller's own
    /// (`pg_terminate_backend`), as an administrator or a failover would;
    /// returns how many there were.
    pub fn terminate_backends(&self, name: &str) -> Result<u64, String> {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            name.replace('\'', "''")
        );
        let out = self.psql("postgres", &sql)?;
        out.trim()
            .parse()
            .map_err(|e| format!("pg_terminate_backend answered {out:?}: {e}"))
    }

    /// Runs `sql` in database `name` with `psql` (stopping at the first
    /// error) and returns its rows, unaligned: one per line, fields
    /// separated by `|`, no header.
    pub fn psql(&self, name: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", name])
            .args(["-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "psql failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if self.owned {
            self.stop();
        }
    }
}

/// A payload writer that writes nothing: each version gets paths and a
/// checksum of its own, and the script as its bytes.
pub struct StubWriter;

impl crate::PayloadWriter for StubWriter {
    fn write(
        &mut self,
        event: cronium_core::EventId,
        version: u64,
        spec: &cronium_core::EventSpec,
        _created_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::PayloadFile, String> {
        Ok(crate::PayloadFile {
            payload_path: format!("payloads/{event}/v{version}.tar.gz"),
            checksum_path: format!("payloads/{event}/v{version}.tar.gz.sha256"),
            payload_size: spec.content.len() as u64,
            checksum: format!("{:064x}", event.0 * 1000 + version as i64),
            bytes: spec.content.as_bytes().to_vec(),
        })
    }
}

/// A manual bash event named `name`, allowed `retries` retries.
pub fn manual_script(name: &str, retries: u32) -> cronium_core::EventSpec {
    use cronium_core::{EventKind, EventName, EventStatus, RunLocation, Schedule, SealedSecrets};
    cronium_core::EventSpec {
        name: EventName::new(name).expect("a valid event name"),
        description: String::new(),
        kind: EventKind::Script,
        interpreter: Some(cronium_payload::Interpreter::Bash),
        content: "echo hello\n".into(),
        env: Default::default(),
        secret_env: SealedSecrets::default(),
        schedule: Schedule::Manual,
        status: EventStatus::Active,
        run_location: RunLocation::Local,
        target_servers: vec![],
        target_tags: Default::default(),
        timeout: Duration::from_secs(60),
        retries,
        tags: Default::default(),
        policy: Default::default(),
        http: None,
    }
}

/// A SQLite URL for a database file inside `dir` (created on open).
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("cronium.db").display())
}

extern "C" fn stop_at_exit() {
    if let Some(Ok(cluster)) = CLUSTER.get() {
        cluster.stop();
    }
}

fn start() -> Result<TestPostgres, String> {
    let cluster = start_cluster("127.0.0.1".into(), "", false)?;
    // SAFETY: registers a plain `extern "C" fn` with no captured state.
    unsafe { libc::atexit(stop_at_exit) };
    Ok(cluster)
}

/// Creates and starts a cluster listening on `listen`, with `hba` lines
/// added to its `pg_hba.conf`.
fn start_cluster(listen: String, hba: &str, owned: bool) -> Result<TestPostgres, String> {
    let bin = find_binaries()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let as_postgres_user = unsafe { libc::geteuid() } == 0;
    sweep_stale_clusters(&bin, as_postgres_user);

    let root = tempfile::Builder::new()
        .prefix(DIR_PREFIX)
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?
        .keep();
    fs::write(root.join(OWNER_FILE), std::process::id().to_string())
        .map_err(|e| format!("cannot write {}: {e}", root.join(OWNER_FILE).display()))?;
    let cluster = TestPostgres {
        bin,
        root,
        port: 0,
        as_postgres_user,
        listen,
        owned,
    };
    match init_and_start(cluster, hba) {
        Ok(cluster) => Ok(cluster),
        Err((cluster, why)) => {
            cluster.stop();
            Err(why)
        }
    }
}

fn init_and_start(mut c: TestPostgres, hba: &str) -> Result<TestPostgres, (TestPostgres, String)> {
    if c.as_postgres_user
        && let Err(why) = run(Command::new("chown").arg("postgres:").arg(&c.root), "chown")
    {
        return Err((c, why));
    }
    let data = c.data_dir();
    let init = run(
        c.tool("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data),
        "initdb",
    );
    if let Err(why) = init {
        return Err((c, why));
    }
    if !hba.is_empty() {
        let appended = fs::OpenOptions::new()
            .append(true)
            .open(data.join("pg_hba.conf"))
            .and_then(|mut file| std::io::Write::write_all(&mut file, hba.as_bytes()));
        if let Err(e) = appended {
            return Err((c, format!("cannot add to pg_hba.conf: {e}")));
        }
    }
    // A free port can be taken between the probe and the bind: try a few.
    let mut last = String::new();
    for _ in 0..5 {
        let port = match free_port() {
            Ok(port) => port,
            Err(why) => return Err((c, why)),
        };
        match pg_ctl_start(&c, port) {
            Ok(()) => {
                c.port = port;
                return Ok(c);
            }
            Err(why) => {
                let log = fs::read_to_string(c.root.join("postgres.log")).unwrap_or_default();
                last = format!("{why}\n{log}");
            }
        }
    }
    Err((c, last))
}

/// `pg_ctl start` on `port`, waiting until the cluster accepts connections.
fn pg_ctl_start(c: &TestPostgres, port: u16) -> Result<(), String> {
    // A cluster a test stops with `-m immediate` must keep what it
    // acknowledged: without synchronous commit the last commits are lost
    // with the WAL buffers. fsync stays off: the machine does not crash.
    let options = format!(
        "-p {port} -k {} -c listen_addresses={} -c fsync=off \
         -c synchronous_commit={} -c full_page_writes=off -c max_connections=300",
        c.root.display(),
        c.listen,
        if c.owned { "on" } else { "off" }
    );
    run(
        c.tool("pg_ctl")
            .arg("-D")
            .arg(c.data_dir())
            .arg("-l")
            .arg(c.root.join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"]),
        "pg_ctl start",
    )
}

impl TestPostgres {
    fn tool(&self, name: &str) -> Command {
        server_tool(&self.bin, name, self.as_postgres_user, &self.root)
    }
}

/// A server-side tool, run as `postgres` when we are root, from `cwd` (which
/// the postgres user can enter, unlike the test's own directory perhaps).
fn server_tool(bin: &Path, name: &str, as_postgres_user: bool, cwd: &Path) -> Command {
    let mut command = if as_postgres_user {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(name));
        c
    } else {
        Command::new(bin.join(name))
    };
    command.current_dir(cwd).stdin(Stdio::null());
    command
}

/// Runs a command to completion; its output only matters when it fails.
/// Output goes to a temp file, not a pipe: the postmaster `pg_ctl` starts
/// would inherit a pipe and keep it open, and reading it would never end.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let mut out = tempfile::tempfile().map_err(|e| format!("{what}: temp file: {e}"))?;
    let status = command
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out.try_clone().map_err(|e| e.to_string())?)
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        return Ok(());
    }
    use std::io::{Read, Seek};
    let mut text = String::new();
    let _ = out.rewind().and_then(|()| out.read_to_string(&mut text));
    Err(format!("{what} failed ({status}): {text}"))
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// The directory holding `initdb`, `pg_ctl` and `createdb`: Debian keeps them
/// in `/usr/lib/postgresql/<major>/bin` (newest major wins), elsewhere on PATH.
fn find_binaries() -> Result<PathBuf, String> {
    let complete = |dir: &Path| {
        ["initdb", "pg_ctl", "createdb"]
            .iter()
            .all(|tool| dir.join(tool).is_file())
    };
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, dir)| complete(dir))
        .collect();
    versioned.sort();
    if let Some((_, dir)) = versioned.pop() {
        return Ok(dir);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter_map(|dir| fs::canonicalize(dir.join("initdb")).ok())
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
        .find(|dir| complete(dir))
        .ok_or_else(|| MISSING.to_string())
}

/// Stops and removes clusters left by test processes that no longer run.
fn sweep_stale_clusters(bin: &Path, as_postgres_user: bool) {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| n.starts_with(DIR_PREFIX)) {
            continue;
        }
        let root = entry.path();
        let owner = fs::read_to_string(root.join(OWNER_FILE))
            .ok()
            .and_then(|pid| pid.trim().parse::<i32>().ok());
        let stale = match owner {
            Some(pid) => !process_alive(pid),
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STARTING_GRACE),
        };
        if stale {
            stop_cluster(bin, &root, as_postgres_user);
        }
    }
}

fn process_alive(pid: i32) -> bool {
    // A killed owner can linger as a zombie until its parent reaps it, and
    // signal 0 still reaches a zombie: on Linux, ask /proc for its state.
    if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        return !matches!(state, Some('Z' | 'X'));
    }
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Stops the cluster under `root` if it runs, then removes `root`.
fn stop_cluster(bin: &Path, root: &Path, as_postgres_user: bool) {
    let data = root.join("data");
    if data.join("postmaster.pid").exists() {
        // Immediate: nothing in a throwaway cluster is worth a checkpoint.
        let _ = server_tool(bin, "pg_ctl", as_postgres_user, root)
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = fs::remove_dir_all(root);
}
