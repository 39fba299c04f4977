//! What the runner adds over running a script directly: `true` in bash, both
//! ways, interleaved in one run so machine noise hits both sides alike.
//!
//! `cargo bench -p cronium-runner --bench overhead` (release build).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cronium_payload::{Interpreter, PayloadSpec};

const ITERATIONS: usize = 300;

fn main() {
    let runner = env!("CARGO_BIN_EXE_cronium-runner");
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
    let bash = which("bash");
    let work = dir.path().join("work");

    let direct = || time(Command::new(&bash).arg(&script));
    let via_runner = || {
        time(
            Command::new(runner)
                .arg("run")
                .arg(&payload)
                .arg("--workdir")
                .arg(&work),
        )
    };
    let version = || time(Command::new(runner).arg("version"));

    for _ in 0..20 {
        direct();
        via_runner();
    }
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ITERATIONS {
        a.push(direct());
        b.push(via_runner());
        c.push(version());
    }
    let (ma, mb) = (median(&mut a), median(&mut b));
    println!("runner overhead, {ITERATIONS} interleaved runs each (times in ms)");
    println!("{:<40} {:>8} {:>8}", "", "median", "p90");
    report("bash script.sh (direct)", &mut a);
    report("cronium-runner run payload.tar.gz", &mut b);
    report("cronium-runner version (startup)", &mut c);
    println!(
        "added by the runner at the median: {:.2} ms ({:.2}x)",
        ms(mb.saturating_sub(ma)),
        mb.as_secs_f64() / ma.as_secs_f64()
    );
}

fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn");
    let elapsed = start.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    elapsed
}

fn which(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| panic!("{name} not on PATH"))
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(label: &str, samples: &mut [Duration]) {
    samples.sort();
    let p90 = samples[samples.len() * 9 / 10];
    println!("{label:<40} {:>8.2} {:>8.2}", ms(median(samples)), ms(p90));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
