//! `SshError`: what went wrong, in which phase, against which `user@host:port`.
//!
//! Messages name the address and the phase so they can be shown to a user as
//! they are; they never contain a password, a passphrase or a private key.

use std::time::Duration;

/// A failure talking to a server. The variant is the phase that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    /// TCP connection or SSH handshake failed (refused, unreachable, timed out).
    #[error("connect to {address} failed: {reason}")]
    Connect { address: String, reason: String },

    /// The server's host key is not the pinned one (or could not be checked).
    #[error("host key of {address}: {reason}")]
    HostKey { address: String, reason: String },

    /// The server refused the credentials, or they could not be used at all
    /// (an unreadable key, a wrong passphrase).
    #[error("authentication as {user} at {address} failed: {reason}")]
    Auth {
        address: String,
        user: String,
        reason: String,
    },

    /// A channel could not be opened or broke while a command ran.
    #[error("channel to {address} failed: {reason}")]
    Channel { address: String, reason: String },

    /// A command ran but could not be started or did not finish in time.
    #[error("command `{command}` on {address} failed: {reason}")]
    Command {
        address: String,
        command: String,
        reason: String,
    },

    /// A file could not be written over SFTP.
    #[error("upload of {path} to {address} failed: {reason}")]
    Upload {
        address: String,
        path: String,
        reason: String,
    },

    /// Text given as a host key pin (a `known_hosts` line or a fingerprint)
    /// could not be read.
    #[error("invalid known_hosts entry: {0}")]
    KnownHosts(String),
}

impl SshError {
    /// The phase as a short lowercase word (`connect`, `host key`, `auth`,
    /// `channel`, `command`, `upload`, `known_hosts`), for job metadata and CLI output.
    pub fn phase(&self) -> &'static str {
        match self {
            SshError::Connect { .. } => "connect",
            SshError::HostKey { .. } => "host key",
            SshError::Auth { .. } => "auth",
            SshError::Channel { .. } => "channel",
            SshError::Command { .. } => "command",
            SshError::Upload { .. } => "upload",
            SshError::KnownHosts(_) => "known_hosts",
        }
    }
}

pub(crate) fn timed_out(what: &str, after: Duration) -> String {
    format!("{what} timed out after {:.1} s", after.as_secs_f64())
}
