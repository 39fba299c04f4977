//! A real OpenSSH server for tests: temp host and client keys, throwaway Unix users, sshd on a free loopback port.
//!
//! Needs root (it creates users) and `/usr/sbin/sshd` (`apt-get install -y
//! openssh-server`; scripts/test.sh does this). Each [`TestSshd`] runs its own
//! `sshd -D` from a temp dir with its own host key, so tests do not share
//! state; its users are separate "hosts" as far as a client can tell (own
//! home, own keys). Dropping it stops sshd and deletes its users with their
//! homes. Users left behind by a test process that died are deleted by the
//! next one that starts a server.

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{Credentials, HostKey, HostKeyPin, HostKeyPolicy, Target};

const SSHD: &str = "/usr/sbin/sshd";
/// Every user the harness creates is named `USER_PREFIX{pid}x{n}`.
const USER_PREFIX: &str = "crssh";
/// The passphrase of every user's encrypted key.
pub const KEY_PASSPHRASE: &str = "correct horse battery staple";

static NEXT_USER: AtomicU32 = AtomicU32::new(0);

/// A running sshd and the users it serves.
pub struct TestSshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    users: Vec<TestUser>,
    /// A key no user authorizes, for "wrong key" tests.
    stranger: ClientKey,
}

/// A throwaway Unix user with a plain key, a passphrase-protected key and a
/// password, all accepted by the server.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub name: String,
    pub home: PathBuf,
    pub key: ClientKey,
    /// Encrypted with [`KEY_PASSPHRASE`].
    pub encrypted_key: ClientKey,
    pub password: String,
}

/// A client key pair as `ssh-keygen` wrote it.
#[derive(Debug, Clone)]
pub struct ClientKey {
    /// The private key file's contents (OpenSSH format).
    pub private: String,
    /// The `.pub` line.
    pub public: String,
}

impl TestSshd {
    /// Starts an sshd with `users` fresh users. Panics with the reason if it
    /// cannot (not root, OpenSSH not installed, sshd refusing its config).
    pub fn start(users: usize) -> TestSshd {
        preflight();
        remove_stale_users();
        let dir = tempfile::Builder::new()
            .prefix("cronium-test-sshd-")
            .tempdir()
            .expect("create a temp dir for sshd");
        fs::create_dir(dir.path().join("authorized_keys")).expect("create authorized_keys dir");
        let stranger = keygen(dir.path(), "stranger", None);
        let mut server = TestSshd {
            dir,
            port: 0,
            child: None,
            users: Vec::new(),
            stranger,
        };
        for _ in 0..users {
            server.add_user();
        }
        server.new_host_key();
        // A free port can be taken between choosing it and sshd binding it;
        // try a few.
        let mut last_failure = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(why) => last_failure = why,
            }
        }
        panic!("sshd did not start: {last_failure}");
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn users(&self) -> &[TestUser] {
        &self.users
    }

    pub fn user(&self, index: usize) -> &TestUser {
        &self.users[index]
    }

    /// Where to connect as `user`.
    pub fn target(&self, user: &TestUser) -> Target {
        Target::new(self.host(), self.port, user.name.clone())
    }

    /// The host key sshd presents now.
    pub fn host_key(&self) -> HostKey {
        let line = fs::read_to_string(self.dir.path().join("host_key.pub")).expect("read host key");
        HostKey::from_openssh(&line).expect("ssh-keygen writes readable keys")
    }

    /// The host key's fingerprint as `ssh-keygen -lf` prints it (computed by
    /// OpenSSH itself, not by the code under test).
    pub fn host_key_fingerprint(&self) -> String {
        let output = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.path().join("host_key.pub")));
        output
            .split_whitespace()
            .nth(1)
            .expect("ssh-keygen -lf prints bits, fingerprint, comment, type")
            .to_string()
    }

    /// A policy pinning the current host key.
    pub fn pinned(&self) -> HostKeyPolicy {
        HostKeyPolicy::Pinned(HostKeyPin::Key(self.host_key()))
    }

    /// A key the server accepts for no user.
    pub fn stranger_key(&self) -> Credentials {
        Credentials::Key {
            private_key: self.stranger.private.clone(),
            passphrase: None,
        }
    }

    /// Restarts sshd on the same port with a newly generated host key, as a
    /// reinstalled (or impersonated) host would look.
    pub fn replace_host_key(&mut self) {
        self.stop();
        self.new_host_key();
        // The port was just released by our own sshd; wait for it to bind again.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(why) if Instant::now() > deadline => panic!("sshd did not restart: {why}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Stops sshd; the port then refuses connections. The users stay until drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn add_user(&mut self) {
        let name = format!(
            "{USER_PREFIX}{}x{}",
            std::process::id(),
            NEXT_USER.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("useradd").args(["-m", "-s", "/bin/bash", &name]));
        // useradd leaves the account locked, and sshd without PAM refuses
        // locked accounts even for key auth; '*' unlocks it without a password.
        run(Command::new("usermod").args(["-p", "*", &name]));
        let password = format!("pw-{name}-{}", std::process::id());
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .expect("run chpasswd");
        writeln!(chpasswd.stdin.take().expect("stdin"), "{name}:{password}")
            .expect("write chpasswd");
        assert!(
            chpasswd.wait().expect("chpasswd").success(),
            "chpasswd failed for {name}"
        );
        let home = PathBuf::from(format!("/home/{name}"));
        let key = keygen(self.dir.path(), &format!("{name}-key"), None);
        let encrypted_key = keygen(
            self.dir.path(),
            &format!("{name}-encrypted"),
            Some(KEY_PASSPHRASE),
        );
        fs::write(
            self.dir.path().join("authorized_keys").join(&name),
            format!("{}\n{}\n", key.public.trim(), encrypted_key.public.trim()),
        )
        .expect("write authorized_keys");
        self.users.push(TestUser {
            name,
            home,
            key,
            encrypted_key,
            password,
        });
    }

    fn new_host_key(&self) {
        let path = self.dir.path().join("host_key");
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(path.with_extension("pub"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test-host", "-f"])
            .arg(&path));
    }

    fn spawn(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {dir}/host_key\n\
                 PidFile {dir}/sshd.pid\n\
                 AuthorizedKeysFile {dir}/authorized_keys/%u\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication yes\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin no\n\
                 UsePAM no\n\
                 StrictModes no\n\
                 MaxStartups 100\n\
                 Subsystem sftp internal-sftp\n",
                port = self.port,
                dir = dir.display()
            ),
        )
        .map_err(|e| format!("write sshd_config: {e}"))?;
        let log_path = dir.join("sshd.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("create sshd.log: {e}"))?;
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("run {SSHD}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "{SSHD} exited with {status}: {}",
                    fs::read_to_string(&log_path).unwrap_or_default().trim()
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{SSHD} did not accept connections within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl TestUser {
    /// The plain key, as credentials.
    pub fn key_credentials(&self) -> Credentials {
        Credentials::Key {
            private_key: self.key.private.clone(),
            passphrase: None,
        }
    }

    /// The encrypted key with `passphrase` (right or wrong).
    pub fn encrypted_key_credentials(&self, passphrase: &str) -> Credentials {
        Credentials::Key {
            private_key: self.encrypted_key.private.clone(),
            passphrase: Some(passphrase.to_string()),
        }
    }

    pub fn password_credentials(&self) -> Credentials {
        Credentials::Password {
            password: self.password.clone(),
        }
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        self.stop();
        for user in &self.users {
            delete_user(&user.name);
        }
    }
}

fn preflight() {
    if !Path::new(SSHD).exists() {
        panic!(
            "{SSHD} was not found: install OpenSSH (`apt-get install -y openssh-server` \
             on Debian; scripts/test.sh does this)"
        );
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!("the sshd test harness must run as root: it creates Unix users");
    }
    // sshd's privilege separation needs this directory; Debian creates it
    // only when the service is started by systemd.
    fs::create_dir_all("/run/sshd").expect("create /run/sshd");
}

fn keygen(dir: &Path, name: &str, passphrase: Option<&str>) -> ClientKey {
    let path = dir.join(name);
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-C",
            name,
            "-N",
            passphrase.unwrap_or(""),
            "-f",
        ])
        .arg(&path));
    ClientKey {
        private: fs::read_to_string(&path).expect("read private key"),
        public: fs::read_to_string(path.with_extension("pub")).expect("read public key"),
    }
}

fn delete_user(name: &str) {
    // `-f`: a session sshd has not finished tearing down may still run as
    // the user, and plain userdel would refuse.
    for _ in 0..20 {
        let status = Command::new("userdel")
            .args(["-r", "-f", name])
            .stderr(Stdio::null())
            .status();
        // 6: the user does not exist (already gone).
        if matches!(status.map(|s| s.code()), Ok(Some(0 | 6))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deletes users whose test process is gone (it was killed before its
/// `TestSshd` dropped).
fn remove_stale_users() {
    let Ok(passwd) = fs::read_to_string("/etc/passwd") else {
        return;
    };
    for line in passwd.lines() {
        let name = line.split(':').next().unwrap_or("");
        let Some(rest) = name.strip_prefix(USER_PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('x') else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            delete_user(name);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}

fn run(command: &mut Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
