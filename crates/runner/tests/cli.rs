//! The other commands and options: `version`, `inspect`, `verify`, `--workdir` and `--keep-workdir`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::{EVENT_ID, Fixture, Lang, run, runner, spec};
use cronium_payload::Interpreter;
use cronium_runner::VersionInfo;
use cronium_runner::protocol::PROTOCOL_VERSION;
use serde_json::Value;

#[test]
fn version_starts_with_name_and_semver() {
    let ran = run(runner(&["version"]));

    assert_eq!(ran.code(), 0);
    let stdout = ran.stdout_text();
    let first = stdout.lines().next().expect("a first line");
    let version = first
        .strip_prefix("cronium-runner ")
        .unwrap_or_else(|| panic!("first line {first:?}"));
    let parts: Vec<&str> = version.split('.').collect();
    assert_eq!(parts.len(), 3, "X.Y.Z: {version:?}");
    assert!(
        parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "X.Y.Z: {version:?}"
    );
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn version_json_has_every_field() {
    let ran = run(runner(&["version", "--json"]));

    assert_eq!(ran.code(), 0);
    let json: Value = serde_json::from_slice(&ran.stdout).expect("version --json is JSON");
    assert_eq!(json["name"], "cronium-runner");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["protocol"], PROTOCOL_VERSION);
    for field in ["commit", "target"] {
        let text = json[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} is a string: {json}"));
        assert!(!text.is_empty(), "{field} is empty");
    }
    // The same thing, through the type executors deserialize it with.
    let info: VersionInfo = serde_json::from_value(json).unwrap();
    assert_eq!(info, VersionInfo::current());
}

#[test]
fn inspect_prints_the_manifest() {
    let env = [("GREETING", "hello world")];
    let fixture = Fixture::with_env(Lang::Python, "print('hi')\n", &env);

    let mut cmd = runner(&["inspect"]);
    cmd.arg(&fixture.payload);
    let ran = run(cmd);

    assert_eq!(ran.code(), 0, "{}", ran.stderr_text());
    let expected = spec(Interpreter::Python, "print('hi')\n", &env)
        .manifest()
        .to_yaml();
    assert_eq!(ran.stdout_text(), expected);
    for line in [
        "interpreter: python",
        "entrypoint: script.py",
        "GREETING: hello world",
        EVENT_ID,
    ] {
        assert!(
            ran.stdout_text().contains(line),
            "{line:?} in {}",
            ran.stdout_text()
        );
    }
}

#[test]
fn verify_prints_ok_and_the_digest_and_runs_nothing() {
    let fixture = Fixture::empty();
    let built = spec(Interpreter::Bash, "touch \"$MARKER\"\n", &[])
        .build()
        .unwrap();
    fixture.write_built(&built);

    // With the checksum file beside the payload, named explicitly, or as hex.
    let sha256 = built.digest.to_hex();
    let checksum = format!("{}.sha256", fixture.payload.display());
    let ways: [&[&str]; 3] = [&[], &["--checksum", &checksum], &["--sha256", &sha256]];
    for args in ways {
        let mut cmd = runner(&["verify"]);
        cmd.arg(&fixture.payload)
            .args(args)
            .env("MARKER", fixture.file("marker"));
        let ran = run(cmd);

        assert_eq!(ran.code(), 0, "{args:?}: {}", ran.stderr_text());
        assert_eq!(ran.stdout_text(), format!("OK {sha256}\n"), "{args:?}");
        assert!(!fixture.marker_exists(), "verify ran the script");
    }
}

/// A script that reports its working directory, i.e. the work dir.
const PWD: &str = "pwd -P\n";

fn work_dir_of(stdout: &str) -> PathBuf {
    PathBuf::from(stdout.trim_end())
}

#[test]
fn the_work_dir_is_private_fresh_and_removed_by_default() {
    let fixture = Fixture::new(Lang::Bash, "pwd -P\nstat -c %a .\nls -A\n");
    assert!(
        !fixture.work.exists(),
        "--workdir DIR does not need to exist"
    );

    let ran = run(fixture.run(&[]));

    assert_eq!(ran.code(), 0, "{}", ran.stderr_text());
    let stdout = ran.stdout_text();
    let lines: Vec<&str> = stdout.lines().collect();
    let [work_dir, mode, entries @ ..] = &lines[..] else {
        panic!("{stdout:?}")
    };
    let work_dir = PathBuf::from(work_dir);
    assert_eq!(work_dir.parent(), Some(fixture.work.as_path()));
    assert!(
        work_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("cronium-run-"),
        "{}",
        work_dir.display()
    );
    assert_eq!(*mode, "700", "only the runner's user may look inside");
    assert_eq!(
        entries,
        ["script.sh"],
        "nothing but the script: the manifest is read from memory"
    );
    assert!(!work_dir.exists(), "removed after the run");
    assert!(fixture.work.is_dir(), "--workdir DIR was created");
    assert!(fixture.leftovers().is_empty(), "{:?}", fixture.leftovers());
}

#[test]
fn keep_workdir_keeps_it_and_says_where() {
    let fixture = Fixture::new(Lang::Bash, &format!("{PWD}echo output > result.txt\n"));

    let ran = run(fixture.run(&["--keep-workdir"]));

    assert_eq!(ran.code(), 0, "{}", ran.stderr_text());
    let work_dir = work_dir_of(&ran.stdout_text());
    assert_eq!(
        ran.stderr_text(),
        format!("cronium-runner: work dir kept at {}\n", work_dir.display())
    );
    assert_eq!(
        fixture.leftovers(),
        [work_dir.file_name().unwrap().to_string_lossy()]
    );
    assert_eq!(
        fs::read_to_string(work_dir.join("result.txt")).unwrap(),
        "output\n"
    );
    assert!(work_dir.join("script.sh").is_file());
    assert_eq!(
        fs::metadata(&work_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn each_run_gets_its_own_work_dir() {
    let fixture = Fixture::new(Lang::Bash, PWD);
    let first = work_dir_of(&run(fixture.run(&["--keep-workdir"])).stdout_text());
    let second = work_dir_of(&run(fixture.run(&["--keep-workdir"])).stdout_text());
    assert_ne!(first, second);
    assert_eq!(fixture.leftovers().len(), 2, "{:?}", fixture.leftovers());
}
