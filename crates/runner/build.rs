//! Records the git commit and target triple so `cronium-runner version` can report them.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CRONIUM_GIT_COMMIT");
    for path in [
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/packed-refs",
    ] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("CRONIUM_GIT_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    println!(
        "cargo:rustc-env=CRONIUM_GIT_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
    println!(
        "cargo:rustc-env=CRONIUM_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
}
