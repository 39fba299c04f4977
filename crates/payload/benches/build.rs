//! Benchmark: building a typical event payload (4 KB script, 20 variables), against a naive tar + gzip baseline.
//!
//! Run with `cargo bench -p cronium-payload --bench build`. No harness: each
//! operation is timed one call at a time after a warm-up, and the median,
//! 90th percentile and mean are printed in microseconds.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use cronium_payload::{
    BuiltPayload, EnvKey, Interpreter, Limits, MANIFEST_NAME, PayloadSpec, Sha256Digest, extract,
};
use flate2::Compression;
use flate2::write::GzEncoder;

const WARM_UP: usize = 200;
const ITERATIONS: usize = 2000;
/// Writing syncs two files and their directory twice, so it is slower and noisier.
const WRITE_ITERATIONS: usize = 300;

/// A plausible 4 KB bash script: text, as scripts are, so it compresses as they do.
fn typical_script() -> Vec<u8> {
    let mut script = String::from("#!/usr/bin/env bash\nset -euo pipefail\n\n");
    let mut i = 0;
    while script.len() < 4096 {
        script.push_str(&format!(
            "# step {i}: fetch, check and archive batch {i}\n\
             curl -fsS \"$API_URL/batches/{i}\" -H \"Authorization: Bearer $TOKEN\" -o \"$WORK/batch-{i}.json\"\n\
             jq -e '.items | length > 0' \"$WORK/batch-{i}.json\" >/dev/null || echo \"batch {i} empty\" >&2\n\
             gzip -9 \"$WORK/batch-{i}.json\" && mv \"$WORK/batch-{i}.json.gz\" \"$ARCHIVE_DIR/\"\n\n"
        ));
        i += 1;
    }
    script.truncate(4096);
    script.into_bytes()
}

fn typical_spec() -> PayloadSpec {
    let environment: BTreeMap<EnvKey, String> = (0..20)
        .map(|i| {
            (
                EnvKey::new(&format!("SETTING_{i:02}")).unwrap(),
                format!("value-{i}-{}", "x".repeat(i % 7 * 4)),
            )
        })
        .collect();
    PayloadSpec {
        interpreter: Interpreter::Bash,
        script: typical_script(),
        environment,
        event_id: "1842".into(),
        event_version: 17,
        created_at: "2026-11-02T08:30:00Z".parse().unwrap(),
    }
}

/// What an unoptimised implementation would do: the `tar` builder's
/// `append_data` with its default GNU headers, and gzip at the default level.
fn naive_build(spec: &PayloadSpec) -> BuiltPayload {
    let manifest = spec.manifest().to_yaml();
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for (name, data, mode) in [
        (MANIFEST_NAME, manifest.as_bytes(), 0o644),
        (spec.interpreter.entrypoint(), &spec.script[..], 0o755),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(spec.created_at.timestamp() as u64);
        tar.append_data(&mut header, name, data).unwrap();
    }
    let bytes = tar.into_inner().unwrap().finish().unwrap();
    let digest = Sha256Digest::of(&bytes);
    BuiltPayload { bytes, digest }
}

struct Stats {
    median: f64,
    p90: f64,
    mean: f64,
}

fn measure(warm_up: usize, iterations: usize, mut op: impl FnMut(usize)) -> Stats {
    for i in 0..warm_up {
        op(i);
    }
    let mut times: Vec<Duration> = (0..iterations)
        .map(|i| {
            let start = Instant::now();
            op(warm_up + i);
            start.elapsed()
        })
        .collect();
    times.sort();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    Stats {
        median: micros(times[iterations / 2]),
        p90: micros(times[iterations * 9 / 10]),
        mean: micros(times.iter().sum::<Duration>()) / iterations as f64,
    }
}

fn main() {
    let spec = typical_spec();
    let built = spec.build().unwrap();
    let naive = naive_build(&spec);
    // Both must be real payloads, or the comparison means nothing.
    for payload in [&built, &naive] {
        let dir = tempfile::tempdir().unwrap();
        let extracted = extract(&payload.bytes[..], dir.path(), &Limits::default()).unwrap();
        assert_eq!(std::fs::read(extracted.entrypoint).unwrap(), spec.script);
        assert_eq!(extracted.manifest, spec.manifest());
    }

    let rows = [
        (
            "PayloadSpec::build",
            ITERATIONS,
            measure(WARM_UP, ITERATIONS, |_| {
                black_box(black_box(&spec).build().unwrap());
            }),
        ),
        (
            "naive: tar append_data + gzip default",
            ITERATIONS,
            measure(WARM_UP, ITERATIONS, |_| {
                black_box(naive_build(black_box(&spec)));
            }),
        ),
        ("build + write payload and .sha256", WRITE_ITERATIONS, {
            let dir = tempfile::tempdir().unwrap();
            measure(WARM_UP / 10, WRITE_ITERATIONS, |i| {
                let path = dir.path().join(format!("v{i}.tar.gz"));
                spec.build().unwrap().write(&path).unwrap();
            })
        }),
        ("extract into a fresh dir (runner side)", ITERATIONS, {
            let dir = tempfile::tempdir().unwrap();
            measure(WARM_UP, ITERATIONS, |i| {
                let dest = dir.path().join(format!("w{i}"));
                std::fs::create_dir(&dest).unwrap();
                black_box(extract(&built.bytes[..], &dest, &Limits::default()).unwrap());
            })
        }),
    ];

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "payload: {} B script, {} variables; built {} B, naive {} B; {cores} cores",
        spec.script.len(),
        spec.environment.len(),
        built.bytes.len(),
        naive.bytes.len(),
    )
    .unwrap();
    writeln!(
        out,
        "files written under {} (set TMPDIR to measure another filesystem)",
        std::env::temp_dir().display()
    )
    .unwrap();
    writeln!(
        out,
        "\n| {:<40} | {:>6} | {:>10} | {:>10} | {:>10} |",
        "operation", "runs", "median µs", "p90 µs", "mean µs"
    )
    .unwrap();
    writeln!(
        out,
        "|{:-<42}|{:->8}|{:->12}|{:->12}|{:->12}|",
        "", "", "", "", ""
    )
    .unwrap();
    for (name, runs, s) in &rows {
        writeln!(
            out,
            "| {name:<40} | {runs:>6} | {:>10.1} | {:>10.1} | {:>10.1} |",
            s.median, s.p90, s.mean
        )
        .unwrap();
    }
}
