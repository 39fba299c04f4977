//! The script's stdout and stderr reach the caller separate, byte-exact, live and streamed in flat memory.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{Fixture, Lang, assert_bytes_eq, run, spawn};
use cronium_runner::protocol::{Kind, MAX_CHUNK};

/// Repetitions of the 256 byte values the scripts write to stdout: enough to
/// span several framed records.
const BLOCKS: usize = 1200;

/// A script writing, alternately to stdout and stderr: every byte value
/// (many times over), text lines, every byte value backwards, and a last
/// line without a newline on each.
fn binary_writer(lang: Lang) -> String {
    match lang {
        Lang::Bash => {
            let octal = |bytes: &mut dyn Iterator<Item = u8>| {
                bytes.map(|b| format!("\\{b:03o}")).collect::<String>()
            };
            let forward = octal(&mut (0..=255u8));
            let backward = octal(&mut (0..=255u8).rev());
            format!(
                "for _ in $(seq {BLOCKS}); do printf '{forward}'; done\n\
                 printf 'err: line one\\n' >&2\n\
                 printf 'out: line one\\n'\n\
                 printf '{backward}' >&2\n\
                 printf 'out: last line, no newline'\n\
                 printf 'err: last line, no newline' >&2\n"
            )
        }
        Lang::Python => format!(
            "import sys\n\
             out, err = sys.stdout.buffer, sys.stderr.buffer\n\
             def put(stream, data):\n    stream.write(data)\n    stream.flush()\n\
             put(out, bytes(range(256)) * {BLOCKS})\n\
             put(err, b'err: line one\\n')\n\
             put(out, b'out: line one\\n')\n\
             put(err, bytes(reversed(range(256))))\n\
             put(out, b'out: last line, no newline')\n\
             put(err, b'err: last line, no newline')\n"
        ),
        Lang::Node => format!(
            "const all = Buffer.from(Array.from({{ length: 256 }}, (_, i) => i));\n\
             process.stdout.write(Buffer.alloc(256 * {BLOCKS}, all));\n\
             process.stderr.write('err: line one\\n');\n\
             process.stdout.write('out: line one\\n');\n\
             process.stderr.write(Buffer.from(all).reverse());\n\
             process.stdout.write('out: last line, no newline');\n\
             process.stderr.write('err: last line, no newline');\n"
        ),
    }
}

fn expected_stdout() -> Vec<u8> {
    let mut out: Vec<u8> = (0..=255u8).cycle().take(256 * BLOCKS).collect();
    out.extend_from_slice(b"out: line one\nout: last line, no newline");
    out
}

fn expected_stderr() -> Vec<u8> {
    let mut err = b"err: line one\n".to_vec();
    err.extend((0..=255u8).rev());
    err.extend_from_slice(b"err: last line, no newline");
    err
}

#[test]
fn plain_output_passes_through_byte_for_byte() {
    for lang in Lang::ALL {
        let fixture = Fixture::new(lang, &binary_writer(lang));

        let ran = run(fixture.run(&[]));

        assert_eq!(ran.code(), 0, "{lang:?}: {}", ran.stderr_text());
        assert_bytes_eq(&ran.stdout, &expected_stdout(), &format!("{lang:?} stdout"));
        assert_bytes_eq(&ran.stderr, &expected_stderr(), &format!("{lang:?} stderr"));
    }
}

#[test]
fn framed_output_carries_each_stream_byte_for_byte() {
    for lang in Lang::ALL {
        let fixture = Fixture::new(lang, &binary_writer(lang));

        let ran = run(fixture.run(&["--output", "framed"]));

        assert_eq!(ran.code(), 0, "{lang:?}: {}", ran.stderr_text());
        assert_eq!(
            ran.stderr_text(),
            "",
            "{lang:?}: in framed mode everything is on stdout"
        );
        let framed = ran.framed();
        assert_bytes_eq(
            &framed.stdout(),
            &expected_stdout(),
            &format!("{lang:?} Stdout records"),
        );
        assert_bytes_eq(
            &framed.stderr(),
            &expected_stderr(),
            &format!("{lang:?} Stderr records"),
        );
        for (kind, data) in &framed.records {
            if matches!(kind, Kind::Stdout | Kind::Stderr) {
                assert!(
                    !data.is_empty() && data.len() <= MAX_CHUNK,
                    "{kind:?} of {}",
                    data.len()
                );
            }
        }
        assert_eq!(
            framed.event_names(),
            ["verified", "started", "finished"],
            "{lang:?}"
        );
        let result = framed.result();
        assert_eq!(result.exit_code, 0);
        assert_eq!(result.signal, None);
        assert!(!result.timed_out && !result.cancelled, "{result:?}");
    }
}

/// Peak resident set size of a running process, in bytes (`VmHWM`).
fn peak_rss(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn two_hundred_megabytes_stream_through_in_flat_memory() {
    const TOTAL: u64 = 200_000_000;
    const LIMIT: u64 = 64 * 1024 * 1024;
    let fixture = Fixture::new(Lang::Bash, &format!("head -c {TOTAL} /dev/zero\n"));
    let mut running = spawn(fixture.run(&[]));
    let pid = running.pid();
    let mut stdout = running.take_stdout();

    let mut received = 0u64;
    let mut nonzero = 0usize;
    let mut peak = 0u64;
    let mut samples = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = stdout.read(&mut buf).expect("read runner stdout");
        if n == 0 {
            break;
        }
        received += n as u64;
        nonzero += buf[..n].iter().filter(|b| **b != 0).count();
        // VmHWM only grows, so the last sample taken while the runner lives is its peak so far.
        if let Some(rss) = peak_rss(pid) {
            peak = peak.max(rss);
            samples += 1;
        }
    }
    let ran = running.finish();

    assert_eq!(ran.code(), 0, "{}", ran.stderr_text());
    assert_eq!(received, TOTAL);
    assert_eq!(nonzero, 0, "the bytes are the script's zeros");
    assert!(
        samples > 100,
        "the runner's memory was sampled ({samples} times)"
    );
    assert!(
        peak < LIMIT,
        "the runner peaked at {} MiB while streaming {} MB",
        peak / 1024 / 1024,
        TOTAL / 1_000_000
    );
}

/// Prints "first", waits until the test creates `$GO`, then prints "second".
/// Nothing is flushed by hand: the runner must make output live by itself.
fn first_then_wait(lang: Lang) -> &'static str {
    match lang {
        Lang::Bash => "echo first\nwhile [ ! -e \"$GO\" ]; do sleep 0.01; done\necho second\n",
        Lang::Python => {
            "import os, time\nprint('first')\n\
             while not os.path.exists(os.environ['GO']):\n    time.sleep(0.01)\n\
             print('second')\n"
        }
        Lang::Node => {
            "const fs = require('fs');\nconsole.log('first');\n\
             const poll = setInterval(() => {\n\
               if (fs.existsSync(process.env.GO)) { clearInterval(poll); console.log('second'); }\n\
             }, 10);\n"
        }
    }
}

#[test]
fn output_arrives_while_the_script_still_runs() {
    // Which PYTHONUNBUFFERED the runner inherits (`runner()` removes it by
    // default); an empty value means "buffered" to Python.
    let cases = [
        (Lang::Bash, None),
        (Lang::Python, None),
        (Lang::Python, Some("")),
        (Lang::Node, None),
    ];
    for (lang, unbuffered) in cases {
        let case = format!("{lang:?} with PYTHONUNBUFFERED {unbuffered:?}");
        let fixture = Fixture::new(lang, first_then_wait(lang));
        let go = fixture.file("go");
        let mut cmd = fixture.run(&[]);
        cmd.env("GO", &go);
        if let Some(value) = unbuffered {
            cmd.env("PYTHONUNBUFFERED", value);
        }
        let mut running = spawn(cmd);

        let (lines_tx, lines) = mpsc::channel();
        let mut stdout = BufReader::new(running.take_stdout());
        let reader = thread::spawn(move || {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            // (If the test already failed and left, nobody listens: fine.)
            let _ = lines_tx.send(line);
            let mut rest = String::new();
            stdout.read_to_string(&mut rest).unwrap();
            let _ = lines_tx.send(rest);
        });

        // The script cannot end before we create $GO, so if "first" is
        // readable now, it was passed on live.
        let first = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!("{case}: the first line did not arrive while the script waited")
            });
        assert_eq!(first, "first\n", "{case}");
        assert!(
            running.is_running(),
            "{case}: the runner is still waiting for its script"
        );

        fs::write(&go, "").unwrap();
        let rest = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the rest");
        assert_eq!(rest, "second\n", "{case}");
        reader.join().unwrap();
        let ran = running.finish();
        assert_eq!(ran.code(), 0, "{case}: {}", ran.stderr_text());
    }
}
