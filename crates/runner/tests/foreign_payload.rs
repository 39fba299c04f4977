//! A payload made by other tools (Python's `tarfile`, coreutils' `sha256sum`) runs unchanged.

mod common;

use std::process::Command;

use common::{Fixture, run};

/// Writes `payload.tar.gz` the way a hand-rolled build script would: a `./`
/// root entry, `./`-prefixed names, an upper-case interpreter, unquoted
/// numbers, and Python's default (PAX) tar format.
const MAKE_PAYLOAD: &str = r#"
import io, sys, tarfile

manifest = b"""version: v1
interpreter: BASH
entrypoint: script.sh
environment:
  WHO: the python tarfile module
  ANSWER: 42
metadata:
  eventId: 77
  eventVersion: 2
  createdAt: "2025-01-15T10:00:00Z"
"""
script = b"""echo "made by $WHO, answer $ANSWER"
echo "event $CRONIUM_EVENT_ID version $CRONIUM_EVENT_VERSION"
echo "to stderr" >&2
exit 3
"""

with tarfile.open(sys.argv[1], "w:gz") as tar:
    root = tarfile.TarInfo("./")
    root.type = tarfile.DIRTYPE
    root.mode = 0o755
    tar.addfile(root)
    for name, data, mode in [("./manifest.yaml", manifest, 0o644), ("./script.sh", script, 0o755)]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        tar.addfile(info, io.BytesIO(data))
"#;

fn tool(program: &str, args: &[&str], dir: &std::path::Path) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn a_payload_from_python_tarfile_and_sha256sum_runs_unchanged() {
    let fixture = Fixture::empty();
    let dir = fixture.root();
    tool("python3", &["-c", MAKE_PAYLOAD, "payload.tar.gz"], dir);
    let checksum = tool("sha256sum", &["payload.tar.gz"], dir);
    std::fs::write(fixture.file("payload.tar.gz.sha256"), &checksum).unwrap();
    // The file is what `sha256sum -c` expects, so any host can check it too.
    tool(
        "sha256sum",
        &["--check", "--strict", "payload.tar.gz.sha256"],
        dir,
    );

    let ran = run(fixture.run(&[]));

    assert_eq!(
        ran.code(),
        3,
        "the script's own status; stderr: {}",
        ran.stderr_text()
    );
    assert_eq!(
        ran.stdout_text(),
        "made by the python tarfile module, answer 42\nevent 77 version 2\n"
    );
    assert_eq!(ran.stderr_text(), "to stderr\n");
    assert!(fixture.leftovers().is_empty(), "{:?}", fixture.leftovers());

    // `verify` agrees with sha256sum on the digest.
    let hex = String::from_utf8(checksum).unwrap()[..64].to_string();
    let mut cmd = common::runner(&["verify"]);
    cmd.arg(&fixture.payload);
    let verified = run(cmd);
    assert_eq!(verified.code(), 0, "{}", verified.stderr_text());
    assert_eq!(verified.stdout_text(), format!("OK {hex}\n"));
}
