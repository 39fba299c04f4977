//! The runner binaries Cronium can deploy, one per host architecture, with their checksums.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// One deployable runner.
#[derive(Debug)]
pub struct Artifact {
    /// As `uname -m` names it: `x86_64`, `aarch64`, …
    pub arch: String,
    pub bytes: Vec<u8>,
    /// Lowercase hex.
    pub sha256: String,
}

/// Runners by architecture.
#[derive(Debug, Clone, Default)]
pub struct RunnerArtifacts(BTreeMap<String, Arc<Artifact>>);

impl RunnerArtifacts {
    /// The runner this server uses itself serves hosts of this machine's
    /// architecture; `cronium-runner-<arch>` files next to it (as
    /// `scripts/build-runner.sh` builds them for other targets) serve the
    /// others.
    pub fn discover(local_runner: &Path) -> std::io::Result<RunnerArtifacts> {
        let mut artifacts = RunnerArtifacts::default();
        artifacts.insert(std::env::consts::ARCH, std::fs::read(local_runner)?);
        let Some(dir) = local_runner.parent() else {
            return Ok(artifacts);
        };
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name();
            let Some(arch) = name
                .to_str()
                .and_then(|n| n.strip_prefix("cronium-runner-"))
            else {
                continue;
            };
            // `cronium-runner-x86_64.tmp` and the like are not artifacts.
            if arch.is_empty() || !arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                artifacts.insert(arch, std::fs::read(entry.path())?);
            }
        }
        Ok(artifacts)
    }

    pub fn insert(&mut self, arch: &str, bytes: Vec<u8>) {
        let sha256 = hex(&Sha256::digest(&bytes));
        self.0.insert(
            arch.to_string(),
            Arc::new(Artifact {
                arch: arch.to_string(),
                bytes,
                sha256,
            }),
        );
    }

    /// The runner for a host whose `uname -m` is `arch`.
    pub fn for_arch(&self, arch: &str) -> Result<Arc<Artifact>, String> {
        self.0.get(arch).cloned().ok_or_else(|| {
            let have: Vec<&str> = self.0.keys().map(String::as_str).collect();
            format!(
                "no cronium-runner for {arch} hosts (available: {}); build one with \
                 scripts/build-runner.sh <target> and put it next to the server's runner \
                 as cronium-runner-{arch}",
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                }
            )
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_architecture_without_a_runner_is_named_with_the_ones_available() {
        let mut artifacts = RunnerArtifacts::default();
        artifacts.insert("x86_64", b"runner".to_vec());
        let found = artifacts.for_arch("x86_64").unwrap();
        // `printf runner | sha256sum`
        assert_eq!(
            found.sha256,
            "527aa9f431539da8e151d5434d1d5e611d973f601d8e970790882624554146b0"
        );
        let error = artifacts.for_arch("aarch64").unwrap_err();
        assert!(
            error.contains("no cronium-runner for aarch64 hosts (available: x86_64)"),
            "{error}"
        );
    }
}
