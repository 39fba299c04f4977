//! Connecting (TCP, handshake, host key check, authentication) and running commands on a session.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, AuthResult, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::error::timed_out;
use crate::{HostKey, HostKeyPin, SshError};

/// Where to connect and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl Target {
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> Target {
        Target {
            host: host.into(),
            port,
            user: user.into(),
        }
    }

    /// `host:port` (`[addr]:port` for an IPv6 address), as errors show it.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.address())
    }
}

/// How to log in. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A private key in OpenSSH (or PKCS#8) format, and its passphrase if it
    /// is encrypted.
    Key {
        private_key: String,
        passphrase: Option<String>,
    },
    Password {
        password: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Key { .. } => f.write_str("Credentials::Key(..)"),
            Credentials::Password { .. } => f.write_str("Credentials::Password(..)"),
        }
    }
}

/// Which host key to accept. There is no "accept anything".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Only this key; anything else is refused with [`SshError::HostKey`].
    Pinned(HostKeyPin),
    /// No key is known yet: accept the one presented and report it
    /// ([`Session::host_key`], [`Session::trusted_on_first_use`]) so the
    /// caller can pin it.
    TrustOnFirstUse,
}

/// How long each phase may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect plus the SSH handshake (key exchange, host key check).
    pub connect: Duration,
    /// Authentication, once the handshake is done.
    pub auth: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(10),
            auth: Duration::from_secs(10),
        }
    }
}

/// What a command produced. Output beyond the limit is read and dropped
/// (so the remote side never blocks on a full window) and `truncated` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The exit status, if the command exited (rather than being killed).
    pub exit_status: Option<u32>,
    /// The signal's name (`TERM`, `KILL`, …) if the command was killed.
    pub exit_signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.exit_status == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// The default cap on each of stdout and stderr kept by [`Session::exec`].
pub const DEFAULT_OUTPUT_LIMIT: usize = 1024 * 1024;

/// An authenticated connection. Dropping it closes the connection.
pub struct Session {
    // Shared with the tasks that pump a started command's output, which
    // ask it whether the connection died.
    handle: Arc<Handle<Client>>,
    target: Target,
    host_key: HostKey,
    trusted_on_first_use: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target)
            .field("host_key", &self.host_key)
            .field("trusted_on_first_use", &self.trusted_on_first_use)
            .finish()
    }
}

/// Connects to `target`, verifies its host key against `policy` and logs in.
///
/// The private key is decoded before anything touches the network, so a
/// wrong passphrase fails at once (as [`SshError::Auth`]).
pub async fn connect(
    target: &Target,
    credentials: &Credentials,
    policy: &HostKeyPolicy,
    timeouts: Timeouts,
) -> Result<Session, SshError> {
    let address = target.address();
    let auth_error = |reason: String| SshError::Auth {
        address: address.clone(),
        user: target.user.clone(),
        reason,
    };
    let key = match credentials {
        Credentials::Key {
            private_key,
            passphrase,
        } => Some(decode_key(private_key, passphrase.as_deref()).map_err(auth_error)?),
        Credentials::Password { .. } => None,
    };

    let seen = Arc::new(Mutex::new(None));
    let client = Client {
        policy: policy.clone(),
        seen: Arc::clone(&seen),
    };
    let config = Arc::new(client::Config {
        // Long-lived connections are reused by callers; keepalives notice a
        // dead peer instead of waiting on TCP.
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    });
    let connect_error = |reason: String| SshError::Connect {
        address: address.clone(),
        reason,
    };
    let handshake = async {
        let stream = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        client::connect_stream(config, stream, client)
            .await
            .map_err(|e| {
                let seen = seen.lock().expect("not poisoned").clone();
                match (seen, policy) {
                    (Some(seen), HostKeyPolicy::Pinned(pin)) if !pin.matches(&seen) => {
                        SshError::HostKey {
                            address: address.clone(),
                            reason: format!(
                                "the server presented {} {} but {} is pinned; \
                                 refusing to connect (if the host was reinstalled, \
                                 check the new key and pin it again)",
                                seen.algorithm(),
                                seen.fingerprint(),
                                pin.fingerprint()
                            ),
                        }
                    }
                    (None, _) if matches!(e, russh::Error::UnknownKey) => SshError::HostKey {
                        address: address.clone(),
                        reason: "the server presented a certificate, not a plain host key".into(),
                    },
                    _ => connect_error(format!("SSH handshake: {e}")),
                }
            })
    };
    let mut handle = timeout(timeouts.connect, handshake).await.map_err(|_| {
        connect_error(timed_out("TCP connect and SSH handshake", timeouts.connect))
    })??;
    let host_key = seen
        .lock()
        .expect("not poisoned")
        .clone()
        .expect("a handshake that succeeded checked a host key");

    let user = target.user.clone();
    let attempt = async {
        match (credentials, key) {
            (_, Some(key)) => {
                handle
                    .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), None))
                    .await
            }
            (Credentials::Password { password }, None) => {
                handle.authenticate_password(user, password.clone()).await
            }
            (Credentials::Key { .. }, None) => unreachable!("keys are decoded above"),
        }
    };
    let what = match credentials {
        Credentials::Key { .. } => "key",
        Credentials::Password { .. } => "password",
    };
    match timeout(timeouts.auth, attempt).await {
        Err(_) => return Err(auth_error(timed_out("authentication", timeouts.auth))),
        Ok(Err(e)) => return Err(auth_error(format!("{what} authentication: {e}"))),
        Ok(Ok(AuthResult::Success)) => {}
        Ok(Ok(AuthResult::Failure {
            remaining_methods,
            partial_success,
        })) => {
            let methods: Vec<&str> = remaining_methods.iter().map(<&str>::from).collect();
            return Err(auth_error(if partial_success {
                format!(
                    "the {what} was accepted but the server requires more ({})",
                    methods.join(", ")
                )
            } else {
                format!(
                    "the server refused the {what} (it accepts: {})",
                    if methods.is_empty() {
                        "nothing further".to_string()
                    } else {
                        methods.join(", ")
                    }
                )
            }));
        }
    }

    Ok(Session {
        handle: Arc::new(handle),
        target: target.clone(),
        host_key,
        trusted_on_first_use: matches!(policy, HostKeyPolicy::TrustOnFirstUse),
    })
}

fn decode_key(text: &str, passphrase: Option<&str>) -> Result<PrivateKey, String> {
    use russh::keys::Error;
    russh::keys::decode_secret_key(text, passphrase).map_err(|e| match (e, passphrase) {
        (Error::KeyIsEncrypted, _) => {
            "the private key is encrypted and no passphrase was given".into()
        }
        (Error::SshKey(_), Some(_)) => {
            "the private key could not be decrypted (wrong passphrase?)".into()
        }
        (e, _) => format!("the private key could not be read: {e}"),
    })
}

impl Session {
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The host key the server presented (and that was verified or trusted).
    pub fn host_key(&self) -> &HostKey {
        &self.host_key
    }

    /// Whether the host key was accepted without a pin; the caller should
    /// now pin [`Session::host_key`].
    pub fn trusted_on_first_use(&self) -> bool {
        self.trusted_on_first_use
    }

    /// Runs `command` (through the remote user's shell, as `ssh host cmd`
    /// does) and collects its exit status and up to 1 MiB of each stream.
    pub async fn exec(&self, command: &str) -> Result<Output, SshError> {
        self.exec_limited(command, DEFAULT_OUTPUT_LIMIT).await
    }

    /// [`Session::exec`] keeping at most `limit` bytes of each stream.
    pub async fn exec_limited(&self, command: &str, limit: usize) -> Result<Output, SshError> {
        let mut channel = self.open_channel().await?;
        let command_error = |reason: String| SshError::Command {
            address: self.target.address(),
            command: command.to_string(),
            reason,
        };
        channel
            .exec(true, command)
            .await
            .map_err(|e| command_error(format!("cannot start: {e}")))?;
        let mut output = Output::default();
        let keep = |buffer: &mut Vec<u8>, data: &[u8], truncated: &mut bool| {
            let room = limit.saturating_sub(buffer.len());
            if data.len() > room {
                *truncated = true;
            }
            buffer.extend_from_slice(&data[..data.len().min(room)]);
        };
        // The channel ends with Close (`wait` returns None); the exit status
        // may come before or after the end of the output.
        while let Some(message) = channel.wait().await {
            match message {
                ChannelMsg::Data { data } => keep(&mut output.stdout, &data, &mut output.truncated),
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    keep(&mut output.stderr, &data, &mut output.truncated)
                }
                ChannelMsg::ExitStatus { exit_status } => output.exit_status = Some(exit_status),
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    output.exit_signal = Some(signal_name_text(&signal_name))
                }
                ChannelMsg::Failure => {
                    return Err(command_error("the server refused to run it".into()));
                }
                _ => {}
            }
        }
        if output.exit_status.is_none() && output.exit_signal.is_none() {
            if self.handle.is_closed() {
                return Err(SshError::Channel {
                    address: self.target.address(),
                    reason: "the connection closed before the command finished".into(),
                });
            }
            return Err(command_error(
                "the channel closed without an exit status".into(),
            ));
        }
        Ok(output)
    }

    pub(crate) async fn open_channel(&self) -> Result<russh::Channel<client::Msg>, SshError> {
        self.handle
            .channel_open_session()
            .await
            .map_err(|e| SshError::Channel {
                address: self.target.address(),
                reason: format!("cannot open a session channel: {e}"),
            })
    }

    /// Whether the connection is gone (the server closed it, or keepalives
    /// went unanswered). A closed session cannot open channels.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// A check for [`Session::is_closed`] that outlives a borrow of the session.
    pub(crate) fn handle_closed_probe(&self) -> impl Fn() -> bool + Send + 'static {
        let handle = Arc::clone(&self.handle);
        move || handle.is_closed()
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

pub(crate) fn signal_name_text(signal: &russh::Sig) -> String {
    match signal {
        russh::Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

/// The russh handler: checks the host key against the policy and records
/// the key it saw, so a refusal can name both fingerprints.
struct Client {
    policy: HostKeyPolicy,
    seen: Arc<Mutex<Option<HostKey>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        presented: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // Host certificates would need a CA pin; a plain key pin is what a
        // server record holds.
        let PublicKeyOrCertificate::PublicKey { key, .. } = presented else {
            return Ok(false);
        };
        let key = HostKey::new(key.clone());
        let accepted = match &self.policy {
            HostKeyPolicy::Pinned(pin) => pin.matches(&key),
            HostKeyPolicy::TrustOnFirstUse => true,
        };
        *self.seen.lock().expect("not poisoned") = Some(key);
        Ok(accepted)
    }
}
