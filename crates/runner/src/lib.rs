//! `cronium-runner`: verifies a payload, runs its script under the right
//! interpreter, enforces the timeout on the whole process group and streams
//! the output, plain or framed, and serves the script's helper calls. Called
//! `cronium`, the same binary is the helper command ([`helper_client`]).
//! Executors link this library for [`protocol`].

pub mod duration;
pub mod helper_client;
pub mod helper_server;
pub mod output;
pub mod protocol;
pub mod run;
pub mod supervise;

/// Version, commit and target, as `cronium-runner version --json` prints them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionInfo {
    pub name: String,
    pub version: String,
    pub commit: String,
    pub target: String,
    pub protocol: u32,
}

impl VersionInfo {
    pub fn current() -> VersionInfo {
        VersionInfo {
            name: "cronium-runner".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            commit: env!("CRONIUM_GIT_COMMIT").into(),
            target: env!("CRONIUM_TARGET").into(),
            protocol: protocol::PROTOCOL_VERSION,
        }
    }
}
