//! Benchmark: masking throughput on 200 MB of script output in 64 KiB chunks, with no secrets, one, and twenty, beside a plain copy of the same bytes.
//!
//! Run with `cargo bench -p cronium-exec --bench mask`. No harness: every
//! variant streams the whole output through a fresh [`MaskStream`] once a
//! round, the variants interleaved, and the median over the rounds is
//! printed in MB/s (10^6 bytes). `CRONIUM_BENCH_ROUNDS` (default 7) and
//! `CRONIUM_BENCH_MB` (default 200) change the size of the run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cronium_exec::Secrets;

const CHUNK: usize = 64 * 1024;
/// One line in this many carries a secret (in the variants that have one).
const SECRET_EVERY: usize = 5_000;

/// A small deterministic generator: the same output every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| char::from(ALPHABET[(self.next() % ALPHABET.len() as u64) as usize]))
            .collect()
    }
}

/// Twenty secrets of the kinds scripts hold: API tokens, passwords, a
/// database URL.
fn secrets(rng: &mut Rng) -> Vec<String> {
    let mut all = vec![
        format!("ghp_{}", rng.token(36)),
        format!("postgres://app:{}@db.internal:5432/app", rng.token(16)),
    ];
    while all.len() < 20 {
        let len = 12 + (rng.next() % 30) as usize;
        all.push(rng.token(len));
    }
    all
}

/// `mb` MB of log-like text: timestamps, levels, paths and numbers, lines
/// of 40–160 bytes; every [`SECRET_EVERY`]th line quotes `leak` (one of the
/// secrets), so the masking variants have real occurrences to replace.
fn output(rng: &mut Rng, mb: usize, leak: &str) -> (Vec<u8>, usize) {
    const WORDS: &[&str] = &[
        "INFO",
        "WARN",
        "fetched",
        "batch",
        "/srv/data/archive",
        "rows",
        "in",
        "ms",
        "retrying",
        "upload",
        "complete",
        "checksum",
        "ok",
        "GET",
        "https://api.example.com/v2/items",
        "200",
        "sent",
        "queue",
        "worker-3",
        "db",
    ];
    let target = mb * 1_000_000;
    let mut out = Vec::with_capacity(target + 256);
    let mut line = 0usize;
    let mut leaks = 0;
    while out.len() < target {
        out.extend_from_slice(
            format!("2026-11-28T08:{:02}:{:02}Z ", line / 60 % 60, line % 60).as_bytes(),
        );
        let words = 4 + (rng.next() % 20) as usize;
        for _ in 0..words {
            out.extend_from_slice(WORDS[(rng.next() % WORDS.len() as u64) as usize].as_bytes());
            out.push(b' ');
            if rng.next().is_multiple_of(4) {
                out.extend_from_slice((rng.next() % 100_000).to_string().as_bytes());
                out.push(b' ');
            }
        }
        if line % SECRET_EVERY == SECRET_EVERY - 1 {
            out.extend_from_slice(b"token=");
            out.extend_from_slice(leak.as_bytes());
            leaks += 1;
        }
        out.push(b'\n');
        line += 1;
    }
    (out, leaks)
}

/// Streams `data` through a fresh masker in 64 KiB chunks; returns the
/// time and how many bytes came out.
fn mask_all(secrets: &Secrets, data: &[u8]) -> (Duration, usize) {
    let started = Instant::now();
    let mut stream = secrets.stream();
    let mut bytes = 0;
    for chunk in data.chunks(CHUNK) {
        bytes += black_box(stream.push(black_box(chunk))).len();
    }
    bytes += stream.finish().len();
    (started.elapsed(), bytes)
}

/// The floor: each chunk copied once, as the line splitter copies it anyway.
fn copy_all(data: &[u8]) -> (Duration, usize) {
    let started = Instant::now();
    let mut buf = Vec::with_capacity(CHUNK);
    let mut bytes = 0;
    for chunk in data.chunks(CHUNK) {
        buf.clear();
        buf.extend_from_slice(black_box(chunk));
        bytes += black_box(&buf).len();
    }
    (started.elapsed(), bytes)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rounds = env_usize("CRONIUM_BENCH_ROUNDS", 7);
    let mb = env_usize("CRONIUM_BENCH_MB", 200);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let values = secrets(&mut rng);
    let (data, leaks) = output(&mut rng, mb, &values[0]);

    let none = Secrets::new();
    let one = Secrets::new();
    one.add(&values[0]);
    let twenty = Secrets::new();
    for v in &values {
        twenty.add(v);
    }
    // Each masked occurrence turns the secret into `***`: the output must
    // shrink by exactly that, or the variant did not mask.
    let masked_len = data.len() - leaks * (values[0].len() - 3);
    let variants: [(&str, Option<&Secrets>); 4] = [
        ("copy of each chunk (floor)", None),
        ("no secrets", Some(&none)),
        ("1 secret", Some(&one)),
        ("20 secrets", Some(&twenty)),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    // One warm-up round, then the measured ones, variants interleaved so
    // that a busy neighbour slows them all alike.
    for round in 0..=rounds {
        for (i, (name, secrets)) in variants.iter().enumerate() {
            let (took, bytes) = match secrets {
                None => copy_all(&data),
                Some(s) => mask_all(s, &data),
            };
            let want = match (i, secrets) {
                (_, None) | (1, _) => data.len(),
                _ => masked_len,
            };
            assert_eq!(bytes, want, "{name}: wrong output length");
            if round > 0 {
                times[i].push(took);
            }
        }
    }
    println!(
        "{mb} MB of output ({} bytes), {CHUNK}-byte chunks, {leaks} occurrences of the secret, {rounds} rounds after 1 warm-up",
        data.len()
    );
    println!(
        "{:<28} {:>10} {:>10} {:>12}",
        "variant", "median", "MB/s", "vs copy"
    );
    let medians: Vec<Duration> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect();
    for ((name, _), median) in variants.iter().zip(&medians) {
        let mbps = data.len() as f64 / 1e6 / median.as_secs_f64();
        let ratio = median.as_secs_f64() / medians[0].as_secs_f64();
        println!(
            "{name:<28} {:>8.1}ms {mbps:>10.0} {ratio:>11.2}×",
            median.as_secs_f64() * 1e3
        );
    }
}
