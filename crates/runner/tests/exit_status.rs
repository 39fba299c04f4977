//! The runner exits with the script's status, 128+N when the script dies of signal N, and 127 without an interpreter.

mod common;

use common::{Fixture, Lang, run};

/// One script and how its run must end: exit code, and the signal it died of.
struct Case {
    script: &'static str,
    code: i32,
    signal: Option<i32>,
}

const fn exits(script: &'static str, code: i32) -> Case {
    Case {
        script,
        code,
        signal: None,
    }
}

const fn killed(script: &'static str, signal: i32) -> Case {
    Case {
        script,
        code: 128 + signal,
        signal: Some(signal),
    }
}

/// Runs each case in plain mode (the exit status is the verdict) and in
/// framed mode (the Result record must say the same and name the signal).
fn check(lang: Lang, cases: &[Case]) {
    for case in cases {
        let fixture = Fixture::new(lang, case.script);

        let plain = run(fixture.run(&[]));
        assert_eq!(
            plain.code(),
            case.code,
            "{lang:?} {:?}; stderr: {}",
            case.script,
            plain.stderr_text()
        );

        let framed = run(fixture.run(&["--output", "framed"]));
        assert_eq!(
            framed.code(),
            case.code,
            "{lang:?} {:?} framed",
            case.script
        );
        let result = framed.framed().result();
        assert_eq!(result.exit_code, case.code, "{lang:?} {:?}", case.script);
        assert_eq!(result.signal, case.signal, "{lang:?} {:?}", case.script);
        assert!(!result.timed_out && !result.cancelled, "{result:?}");
        assert!(fixture.leftovers().is_empty(), "{:?}", fixture.leftovers());
    }
}

#[test]
fn bash_exit_codes_propagate() {
    check(
        Lang::Bash,
        &[
            exits("exit 0\n", 0),
            exits("echo done\n", 0),
            exits("exit 1\n", 1),
            exits("exit 7\n", 7),
            exits("false\n", 1),
            killed("kill -USR1 $$\n", libc::SIGUSR1),
            killed("kill -KILL $$\n", libc::SIGKILL),
        ],
    );
}

#[test]
fn python_exit_codes_propagate() {
    check(
        Lang::Python,
        &[
            exits("import sys\nsys.exit(0)\n", 0),
            exits("print('done')\n", 0),
            exits("import sys\nsys.exit(1)\n", 1),
            exits("import sys\nsys.exit(7)\n", 7),
            exits("raise RuntimeError('boom')\n", 1),
            killed(
                "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n",
                libc::SIGTERM,
            ),
        ],
    );
}

#[test]
fn node_exit_codes_propagate() {
    check(
        Lang::Node,
        &[
            exits("process.exit(0);\n", 0),
            exits("console.log('done');\n", 0),
            exits("process.exit(1);\n", 1),
            exits("process.exitCode = 7;\n", 7),
            exits("process.exit(7);\n", 7),
            killed("process.kill(process.pid, 'SIGUSR2');\n", libc::SIGUSR2),
            killed("process.kill(process.pid, 'SIGTERM');\n", libc::SIGTERM),
        ],
    );
}

#[test]
fn a_python_interpreter_that_does_not_exist_exits_127() {
    let fixture = Fixture::new(
        Lang::Python,
        "open(__import__('os').environ['MARKER'], 'w')\n",
    );
    let mut cmd = fixture.run(&[]);
    cmd.env("CRONIUM_RUNNER_PYTHON", "/nonexistent/python3");

    let ran = run(cmd);

    assert_eq!(ran.code(), 127, "stderr: {}", ran.stderr_text());
    let stderr = ran.stderr_text();
    assert!(stderr.starts_with("cronium-runner: "), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/python3") && stderr.contains("not found"),
        "{stderr}"
    );
    assert!(!fixture.marker_exists());
    assert!(fixture.leftovers().is_empty(), "{:?}", fixture.leftovers());
}

#[test]
fn python_missing_from_path_exits_127_and_names_python3() {
    let fixture = Fixture::new(
        Lang::Python,
        "open(__import__('os').environ['MARKER'], 'w')\n",
    );
    let empty_bin = fixture.file("empty-bin");
    std::fs::create_dir(&empty_bin).unwrap();
    // `runner()` already removed CRONIUM_RUNNER_*, so PATH is the only place left to look.
    let mut cmd = fixture.run(&[]);
    cmd.env("PATH", &empty_bin);

    let ran = run(cmd);

    assert_eq!(ran.code(), 127, "stderr: {}", ran.stderr_text());
    let stderr = ran.stderr_text();
    assert!(stderr.starts_with("cronium-runner: "), "{stderr}");
    assert!(
        stderr.contains("python3") && stderr.contains("not found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("CRONIUM_RUNNER_PYTHON"),
        "says how to fix it: {stderr}"
    );
    assert!(!fixture.marker_exists());
    assert!(fixture.leftovers().is_empty(), "{:?}", fixture.leftovers());
}
