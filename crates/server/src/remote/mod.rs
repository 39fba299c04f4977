//! Running payloads on remote servers over SSH: who to connect to, how to log in, which host key to expect.

mod artifacts;
mod executor;
mod pool;

pub use artifacts::{Artifact, RunnerArtifacts};
pub use executor::{CacheLayout, Execution, Phase, RemoteExecutor, Timings};
pub use pool::{IDLE_CLOSE, PER_SERVER_JOBS, Pool};

use cronium_core::{ServerId, ServerName};
use cronium_ssh::{Credentials, HostKeyPin, HostKeyPolicy, Target};
use cronium_store::Server;

use crate::secrets::Sealer;

/// A server record turned into what an SSH connection needs, with its
/// credentials opened. Lives only as long as a connection is being made or
/// kept; never logged (`Credentials` hides its secret in `Debug`).
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
    /// Opens the record's sealed credentials and reads its pin. The error
    /// is a sentence for a user (which server, what is wrong).
    pub fn open(server: &Server, sealer: &Sealer) -> Result<RemoteServer, String> {
        let spec = &server.spec;
        let credentials = sealer
            .open_credentials(&spec.sealed_credentials)
            .map_err(|e| format!("cannot open the credentials of server {}: {e}", spec.name))?;
        let pin = spec
            .known_host
            .as_deref()
            .map(HostKeyPin::parse)
            .transpose()
            .map_err(|e| format!("server {}: {e}", spec.name))?;
        Ok(RemoteServer {
            id: server.id,
            name: spec.name.clone(),
            target: Target::new(spec.host.clone(), spec.port, spec.username.clone()),
            credentials,
            pin,
            cache: CacheLayout::new(spec.effective_cache_dir()),
        })
    }

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
