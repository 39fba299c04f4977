//! For tests of this and other crates: the real `cronium-runner` this workspace builds, a webhook receiver (`sink`), and an SMTP receiver (`smtp_sink`).

pub mod sink;
pub mod smtp_sink;

use std::path::{Path, PathBuf};

/// The real `cronium-runner`, built by this workspace: `target/<profile>/`
/// next to the test binary's `deps/`. Built on first use when missing, since
/// `cargo test -p <one crate>` alone does not build other crates' binaries.
pub fn runner_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test binary path");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile>");
            let runner = profile_dir.join("cronium-runner");
            if !runner.is_file() {
                let status = std::process::Command::new(env!("CARGO"))
                    .args(["build", "-p", "cronium-runner", "--bin", "cronium-runner"])
                    .status()
                    .expect("cargo runs");
                assert!(status.success(), "cargo build -p cronium-runner failed");
            }
            assert!(
                runner.is_file(),
                "{} missing: run cargo build -p cronium-runner",
                runner.display()
            );
            runner
        })
        .clone()
}
