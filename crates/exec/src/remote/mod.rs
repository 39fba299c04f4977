//! Running payloads on remote servers over SSH: who to connect to, how to log in, which host key to expect.

mod artifacts;
mod executor;
mod pool;

pub use artifacts::{Artifact, RunnerArtifacts};
pub use executor::{CacheLayout, RemoteExecutor};
pub use pool::{IDLE_CLOSE, PER_SERVER_JOBS, Pool};

use cronium_core::{ServerId, ServerName};
use cronium_ssh::{Credentials, HostKeyPin, HostKeyPolicy, Target};

/// A server turned into what an SSH connection needs, with its credentials
/// opened (the engine opens them from the server's record). Lives only as
/// long as a connection is being made or kept; never logged (`Credentials` hides its secret in `Debug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteServer {
    pub id: ServerId,
    pub name: ServerName,
    pub target: Target,
    pub credentials: Credentials,
    /// The pinned host key, if one is known yet.
    pub pin: Option<HostKeyPin>,
    /// Where the runner and payloads are cached on the host. Part of the
    /// pool's comparison, so a changed directory gets a fresh connection,
    /// which probes and deploys again.
    pub cache: CacheLayout,
}

impl RemoteServer {
    /// Pinned if a key is known, else trust on first use. Only `server
    /// check` may trust on first use (and it records what it saw); jobs
    /// refuse servers without a pin.
    pub fn policy(&self) -> HostKeyPolicy {
        match &self.pin {
            Some(pin) => HostKeyPolicy::Pinned(pin.clone()),
            None => HostKeyPolicy::TrustOnFirstUse,
        }
    }
}
