//! Payloads that fail verification exit 125 with a clear message and run nothing, write nothing, leave nothing.

mod common;

use std::fs;

use common::{Fixture, Lang, runner, spec};
use cronium_payload::testing::{RawEntry, archive, gzip_bomb, valid_manifest};
use cronium_payload::{Interpreter, Limits, checksum_path};

/// The script of every payload here: it would leave a marker if it ever ran.
const SCRIPT: &str = "touch \"$MARKER\"\necho ran\n";

fn manifest() -> RawEntry {
    RawEntry::file("manifest.yaml", valid_manifest("bash"))
}

fn script() -> RawEntry {
    RawEntry::file("script.sh", SCRIPT).with_mode(0o755)
}

/// One way to break a payload, and what the refusal must say.
struct Case {
    name: &'static str,
    /// Puts the broken payload into the fixture; returns extra `run` arguments.
    setup: fn(&Fixture) -> Vec<String>,
    message: &'static str,
}

/// Writes a good payload (with its checksum file) for a case to break.
fn good_payload(fixture: &Fixture) {
    fixture.write_built(&spec(Interpreter::Bash, SCRIPT, &[]).build().unwrap());
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "tampered payload",
            setup: |f| {
                good_payload(f);
                let mut bytes = fs::read(&f.payload).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x01;
                fs::write(&f.payload, bytes).unwrap();
                vec![]
            },
            message: "failed verification: checksum mismatch",
        },
        Case {
            name: "wrong --sha256",
            setup: |f| {
                good_payload(f);
                vec!["--sha256".into(), "0".repeat(64)]
            },
            message: "checksum mismatch: expected 0000000000000000000000000000000000000000000000000000000000000000",
        },
        Case {
            name: "missing checksum file",
            setup: |f| {
                good_payload(f);
                fs::remove_file(checksum_path(&f.payload)).unwrap();
                vec![]
            },
            message: "refusing to run unverified payload",
        },
        Case {
            name: "malformed checksum file",
            setup: |f| {
                good_payload(f);
                fs::write(checksum_path(&f.payload), "not a checksum\n").unwrap();
                vec![]
            },
            message: "malformed checksum",
        },
        Case {
            name: "traversal entry",
            setup: |f| {
                f.write_raw(&archive(&[
                    manifest(),
                    script(),
                    RawEntry::file("../evil", "pwned"),
                ]));
                vec![]
            },
            message: "unsafe archive entry \"../evil\": `..` components are not allowed",
        },
        Case {
            name: "absolute path entry",
            setup: |f| {
                let target = f.file("absolute-evil");
                let name = target.to_str().unwrap().as_bytes();
                f.write_raw(&archive(&[
                    manifest(),
                    script(),
                    RawEntry::file(name, "pwned"),
                ]));
                vec![]
            },
            message: "absolute paths are not allowed",
        },
        Case {
            name: "symlink entry",
            setup: |f| {
                f.write_raw(&archive(&[
                    manifest(),
                    script(),
                    RawEntry::symlink("link", "/etc/passwd"),
                ]));
                vec![]
            },
            message: "unsafe archive entry \"link\": symbolic links are not allowed",
        },
        Case {
            name: "hard link entry",
            setup: |f| {
                f.write_raw(&archive(&[
                    manifest(),
                    script(),
                    RawEntry::hardlink("hard", "script.sh"),
                ]));
                vec![]
            },
            message: "unsafe archive entry \"hard\": hard links are not allowed",
        },
        Case {
            name: "char device entry",
            setup: |f| {
                f.write_raw(&archive(&[
                    manifest(),
                    script(),
                    RawEntry::char_device("null"),
                ]));
                vec![]
            },
            message: "unsafe archive entry \"null\": device files are not allowed",
        },
        Case {
            name: "gzip bomb past the unpacked size limit",
            setup: |f| {
                // Its script.sh is all zeros: nothing that could run, only fill the disk.
                f.write_raw(&gzip_bomb(Limits::default().max_unpacked_bytes + 1));
                vec![]
            },
            message: "archive unpacks to more than 67108864 bytes",
        },
        Case {
            name: "gzip bomb of over a gibibyte",
            setup: |f| {
                // Sixteen times the limit, in about a megabyte: refused
                // before it is inflated, so this is quick.
                f.write_raw(&gzip_bomb((1 << 30) + 1));
                vec![]
            },
            message: "archive unpacks to more than 67108864 bytes",
        },
        Case {
            name: "unknown interpreter",
            setup: |f| {
                f.write_raw(&archive(&[
                    RawEntry::file("manifest.yaml", valid_manifest("cobol")),
                    script(),
                ]));
                vec![]
            },
            message: "unknown interpreter \"cobol\"",
        },
        Case {
            name: "missing entrypoint",
            setup: |f| {
                // The manifest says python, so the entrypoint is script.py; only script.sh is there.
                f.write_raw(&archive(&[
                    RawEntry::file("manifest.yaml", valid_manifest("python")),
                    script(),
                ]));
                vec![]
            },
            message: "payload has no entrypoint \"script.py\"",
        },
    ]
}

#[test]
fn every_verification_failure_exits_125_and_runs_nothing() {
    for case in cases() {
        let fixture = Fixture::empty();
        let extra = (case.setup)(&fixture);
        let mut cmd = fixture.run(&[]);
        cmd.args(&extra);

        let ran = common::run(cmd);

        let name = case.name;
        let stderr = ran.stderr_text();
        assert_eq!(ran.code(), 125, "{name}: {stderr}");
        assert!(stderr.starts_with("cronium-runner: "), "{name}: {stderr}");
        assert!(
            stderr.contains(case.message),
            "{name}: {stderr:?} lacks {:?}",
            case.message
        );
        assert_eq!(ran.stdout_text(), "", "{name}: the script did not run");
        assert!(!fixture.marker_exists(), "{name}: the script ran");
        // Nothing escaped the work dir, and the work dir itself is gone.
        // The runner unpacks into a private dir inside `--workdir`, so an
        // escaping `../evil` would land in `--workdir` itself.
        assert!(
            !fixture.work.join("evil").exists(),
            "{name}: ../evil was written"
        );
        assert!(
            !fixture.root().join("absolute-evil").exists(),
            "{name}: /…/absolute-evil was written"
        );
        assert!(
            fixture.leftovers().is_empty(),
            "{name}: left {:?}",
            fixture.leftovers()
        );
    }
}

#[test]
fn verify_refuses_the_same_payloads_without_running_them() {
    for case in cases() {
        let fixture = Fixture::empty();
        let extra = (case.setup)(&fixture);
        let mut cmd = runner(&["verify"]);
        cmd.arg(&fixture.payload).args(&extra);

        let ran = common::run(cmd);

        let name = case.name;
        let stderr = ran.stderr_text();
        assert_eq!(ran.code(), 125, "{name}: {stderr}");
        assert!(stderr.starts_with("cronium-runner: "), "{name}: {stderr}");
        assert!(
            stderr.contains(case.message),
            "{name}: {stderr:?} lacks {:?}",
            case.message
        );
        assert_eq!(ran.stdout_text(), "", "{name}");
        assert!(!fixture.marker_exists(), "{name}");
        assert!(!fixture.work.join("evil").exists(), "{name}");
    }
}

#[test]
fn framed_mode_reports_a_refusal_as_a_result_record() {
    let fixture = Fixture::empty();
    fixture.write_raw(&archive(&[
        manifest(),
        script(),
        RawEntry::file("../evil", "pwned"),
    ]));

    let ran = common::run(fixture.run(&["--output", "framed"]));

    assert_eq!(ran.code(), 125);
    let framed = ran.framed();
    let result = framed.result();
    assert_eq!(result.exit_code, 125);
    assert_eq!(result.duration_ms, 0, "the script never started");
    assert!(
        framed
            .messages()
            .contains("`..` components are not allowed"),
        "{}",
        framed.messages()
    );
    assert!(
        !framed.event_names().contains(&"started".to_string()),
        "{:?}",
        framed.event_names()
    );
    assert!(framed.stdout().is_empty());
    assert!(!fixture.marker_exists());
    assert!(fixture.leftovers().is_empty(), "{:?}", fixture.leftovers());
}

#[test]
fn a_good_payload_passes_the_same_checks() {
    // The control for the cases above: the same script, untouched, runs.
    let fixture = Fixture::new(Lang::Bash, SCRIPT);
    let ran = common::run(fixture.run(&[]));
    assert_eq!(ran.code(), 0, "{}", ran.stderr_text());
    assert_eq!(ran.stdout_text(), "ran\n");
    assert!(fixture.marker_exists());

    // And a hand-crafted archive of the same two files runs too.
    let fixture = Fixture::empty();
    fixture.write_raw(&archive(&[manifest(), script()]));
    let ran = common::run(fixture.run(&[]));
    assert_eq!(ran.code(), 0, "{}", ran.stderr_text());
    assert!(fixture.marker_exists());
}
