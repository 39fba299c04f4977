//! What the runner adds over running a script directly: `true` in bash, both
//! ways, interleaved in one run so machine noise hits every variant alike.
//!
//! `cargo bench -p cronium-runner --bench overhead`. To include the static
//! build that is copied to hosts, build it with `scripts/build-runner.sh` and
//! pass its path in `CRONIUM_RUNNER_STATIC`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cronium_payload::{Interpreter, PayloadSpec};

const ITERATIONS: usize = 300;

struct Variant {
    label: String,
    command: Command,
    samples: Vec<Duration>,
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "true\n").unwrap();
    let payload = dir.path().join("bench.tar.gz");
    PayloadSpec {
        interpreter: Interpreter::Bash,
        script: b"true\n".to_vec(),
        environment: Default::default(),
        event_id: "bench".into(),
        event_version: 1,
        created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
    }
    .build()
    .unwrap()
    .write(&payload)
    .unwrap();
    // The work dir's file system matters (creating and removing a directory
    // is most of the runner's own I/O): measure on tmpfs too, as /tmp is on
    // Debian 13, Fedora and Arch.
    let on_disk = dir.path().join("work");
    let tmpfs = tempfile::tempdir_in("/dev/shm").expect("/dev/shm (tmpfs)");

    let mut runners = vec![(
        "default build",
        PathBuf::from(env!("CARGO_BIN_EXE_cronium-runner")),
    )];
    if let Some(path) = std::env::var_os("CRONIUM_RUNNER_STATIC") {
        runners.push(("static build", PathBuf::from(path)));
    }

    let mut direct = Command::new(which("bash"));
    direct.arg(&script);
    let mut variants = vec![variant("bash script.sh (direct)", direct)];
    for (build, runner) in &runners {
        for (fs, work) in [("/tmp", on_disk.as_path()), ("tmpfs", tmpfs.path())] {
            let mut cmd = Command::new(runner);
            cmd.arg("run").arg(&payload).arg("--workdir").arg(work);
            variants.push(variant(&format!("runner, {build}, work dir in {fs}"), cmd));
        }
        let mut cmd = Command::new(runner);
        cmd.arg("version");
        variants.push(variant(&format!("runner version, {build} (startup)"), cmd));
    }

    for _ in 0..20 {
        for v in &mut variants {
            time(&mut v.command);
        }
    }
    for _ in 0..ITERATIONS {
        for v in &mut variants {
            let t = time(&mut v.command);
            v.samples.push(t);
        }
    }

    println!("runner overhead, {ITERATIONS} interleaved runs of each (times in ms)");
    println!("{:<48} {:>8} {:>8} {:>8}", "", "median", "p90", "added");
    let base = median(&mut variants[0].samples);
    for v in &mut variants {
        let m = median(&mut v.samples);
        let p90 = v.samples[v.samples.len() * 9 / 10];
        let added = if v.label.contains("work dir") {
            format!("{:+.2}", ms(m) - ms(base))
        } else {
            String::new()
        };
        println!(
            "{:<48} {:>8.2} {:>8.2} {:>8}",
            v.label,
            ms(m),
            ms(p90),
            added
        );
    }
}

fn variant(label: &str, mut command: Command) -> Variant {
    command.stdout(Stdio::null()).stderr(Stdio::null());
    Variant {
        label: label.to_string(),
        command,
        samples: Vec::with_capacity(ITERATIONS),
    }
}

fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd.status().expect("spawn");
    let elapsed = start.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    elapsed
}

fn which(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| panic!("{name} not on PATH"))
}

/// Sorts the samples and returns the median.
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
