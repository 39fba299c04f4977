//! Cronium's SSH client: connect with a verified host key, authenticate, run commands, check a host.
//!
//! Host keys are always verified: a connection either matches a pinned key
//! ([`HostKeyPolicy::Pinned`]) or is explicitly trust-on-first-use and hands
//! back the key it saw so the caller can pin it. Secrets (private keys,
//! passphrases, passwords) are never logged or put in error messages.

mod check;
mod client;
mod error;
mod known_hosts;
mod process;
mod sftp;
#[cfg(feature = "testing")]
pub mod testing;

pub use check::{CheckReport, Interpreter, RunnerInfo, check, shell_quote};
pub use client::{
    Credentials, DEFAULT_OUTPUT_LIMIT, HostKeyPolicy, Output, Session, Target, Timeouts, connect,
};
pub use error::SshError;
pub use known_hosts::{HostKey, HostKeyPin, find_known_host};
pub use process::{Exit, RemoteProcess};
