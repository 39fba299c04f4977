//! End-to-end tests of `cronium payload …`: the real binary, run in temp dirs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const CREATED_AT: &str = "2025-01-15T10:00:00Z";
const SCRIPT: &str = "#!/bin/bash\necho \"hello $GREETING\"\n";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts a failure whose message contains every fragment.
    fn fails_with(self, code: i32, fragments: &[&str]) -> Run {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        for fragment in fragments {
            assert!(
                self.stderr.contains(fragment),
                "stderr lacks {fragment:?}: {}",
                self.stderr
            );
        }
        self
    }
}

/// Runs `cronium ARGS` with `dir` as working directory.
fn cronium(dir: &Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_cronium"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run cronium");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

fn payload(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["payload"];
    all.extend_from_slice(args);
    cronium(dir, &all)
}

fn write(dir: &Path, name: &str, content: &str) {
    fs::write(dir.join(name), content).unwrap();
}

/// Builds `out.tar.gz` from `hello.sh` with a fixed creation time, plus `extra` flags.
fn build_hello(dir: &Path, extra: &[&str]) -> Run {
    write(dir, "hello.sh", SCRIPT);
    let mut args = vec![
        "build",
        "--script",
        "hello.sh",
        "--created-at",
        CREATED_AT,
        "-o",
        "out.tar.gz",
    ];
    args.extend_from_slice(extra);
    payload(dir, &args).ok()
}

/// The digest in a `sha256sum`-format checksum file.
fn checksum_file_digest(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let digest = text.split_whitespace().next().unwrap().to_string();
    assert_eq!(digest.len(), 64, "{text}");
    digest
}

/// The value printed after `label` on one of `stdout`'s lines.
fn field<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in {stdout}"))
        .trim()
}

fn inspect_json(dir: &Path, file: &str) -> Value {
    let run = payload(dir, &["inspect", "--json", file]).ok();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

#[test]
fn build_verify_inspect_round_trip() {
    // (script file, --interpreter, expected interpreter, expected entrypoint)
    let table = [
        ("hello.sh", None, "bash", "script.sh"),
        ("run.BASH", None, "bash", "script.sh"),
        ("tool.py", None, "python", "script.py"),
        ("tool.txt", Some("PYTHON"), "python", "script.py"),
        ("app.mjs", None, "node", "script.js"),
        ("app.cjs", None, "node", "script.js"),
        ("app.js", Some("NodeJS"), "node", "script.js"),
        ("other.py", Some("bash"), "bash", "script.sh"),
    ];
    for (script, interpreter, want_interp, want_entry) in table {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let content = format!("# {script}\nprint('x')\n");
        write(dir, script, &content);
        let mut args = vec!["build", "--script", script, "-o", "p.tar.gz"];
        if let Some(name) = interpreter {
            args.extend(["--interpreter", name]);
        }
        let built = payload(dir, &args).ok();

        let digest = checksum_file_digest(&dir.join("p.tar.gz.sha256"));
        assert_eq!(field(&built.stdout, "sha256:"), digest, "{script}");
        let size = fs::metadata(dir.join("p.tar.gz")).unwrap().len();
        assert_eq!(
            field(&built.stdout, "size:"),
            format!("{size} bytes"),
            "{script}"
        );
        assert!(!dir.join("p.tar.gz.sig").exists());

        let verified = payload(dir, &["verify", "p.tar.gz"]).ok();
        assert_eq!(verified.stdout, format!("OK {digest}\n"), "{script}");

        let shown = payload(dir, &["inspect", "p.tar.gz"]).ok().stdout;
        assert_eq!(field(&shown, "interpreter:"), want_interp, "{script}");
        assert_eq!(field(&shown, "entrypoint:"), want_entry, "{script}");
        assert_eq!(field(&shown, "eventId:"), "local", "{script}");
        assert_eq!(field(&shown, "eventVersion:"), "1", "{script}");
        assert!(
            shown.lines().any(|l| l
                .split_whitespace()
                .eq([&content.len().to_string(), want_entry])),
            "{script}: no `{} {want_entry}` line in {shown}",
            content.len()
        );
        assert!(shown.contains("manifest.yaml"), "{shown}");
        assert_eq!(field(&shown, "sha256:"), digest);
    }
}

#[test]
fn env_values_land_in_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(
        dir,
        "vars.env",
        "# settings\n\nGREETING=from file\nREGION=eu-west-1\r\n  INDENTED=yes\nEMPTY=\n",
    );
    build_hello(
        dir,
        &[
            "--env-file",
            "vars.env",
            "--env",
            "GREETING=hello world",
            "--env",
            "URL=https://x.test/?a=b&c=d",
            "--env",
            "BLANK=",
            "--event-id",
            "evt-42",
            "--event-version",
            "7",
        ],
    );
    let json = inspect_json(dir, "out.tar.gz");
    let want = serde_json::json!({
        "GREETING": "hello world",
        "REGION": "eu-west-1",
        "INDENTED": "yes",
        "EMPTY": "",
        "URL": "https://x.test/?a=b&c=d",
        "BLANK": "",
    });
    assert_eq!(json["environment"], want);
    assert_eq!(json["metadata"]["eventId"], "evt-42");
    assert_eq!(json["metadata"]["eventVersion"], 7);

    let text = payload(dir, &["inspect", "out.tar.gz"]).ok().stdout;
    assert!(text.contains("  GREETING=hello world\n"), "{text}");
    assert!(text.contains("  URL=https://x.test/?a=b&c=d\n"), "{text}");
}

#[test]
fn same_inputs_give_byte_identical_payloads_and_checksums() {
    let build_in = |created_at: &str| {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "job.py", "print('same')\n");
        payload(
            dir.path(),
            &[
                "build",
                "--script",
                "job.py",
                "--env",
                "B=2",
                "--env",
                "A=1",
                "--created-at",
                created_at,
                "-o",
                "v1.tar.gz",
            ],
        )
        .ok();
        let read = |name: &str| fs::read(dir.path().join(name)).unwrap();
        (read("v1.tar.gz"), read("v1.tar.gz.sha256"))
    };
    let first = build_in("2025-01-15T10:00:00Z");
    let second = build_in("2025-01-15T10:00:00Z");
    assert_eq!(first.0, second.0, "payload bytes differ");
    assert_eq!(first.1, second.1, "checksum files differ");
    // The same instant written in another offset is the same creation time.
    let offset = build_in("2025-01-15T12:00:00+02:00");
    assert_eq!(first.0, offset.0);
    // And the comparison is not vacuous: another time gives other bytes.
    let later = build_in("2025-01-15T10:00:01Z");
    assert_ne!(first.0, later.0);
    assert_ne!(first.1, later.1);
}

#[test]
fn sha256sum_accepts_the_checksum_file() {
    let dir = tempfile::tempdir().unwrap();
    build_hello(dir.path(), &[]);
    let check = |dir: &Path| {
        Command::new("sha256sum")
            .args(["-c", "out.tar.gz.sha256"])
            .current_dir(dir)
            .output()
            .expect("run sha256sum")
    };
    let good = check(dir.path());
    assert!(good.status.success(), "{good:?}");
    assert_eq!(String::from_utf8_lossy(&good.stdout), "out.tar.gz: OK\n");
    // sha256sum really compares: a changed payload fails it.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("out.tar.gz"))
        .unwrap();
    f.write_all(b"x").unwrap();
    assert!(!check(dir.path()).status.success());
}

#[test]
fn a_tampered_payload_fails_verify() {
    type Tamper = fn(&mut Vec<u8>);
    let table: [(&str, Tamper); 3] = [
        ("appended byte", |b| b.push(0)),
        ("flipped byte", |b| {
            let mid = b.len() / 2;
            b[mid] ^= 0x01;
        }),
        ("truncated", |b| b.truncate(b.len() - 10)),
    ];
    for (what, tamper) in table {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        build_hello(dir, &[]);
        let path = dir.join("out.tar.gz");
        let mut bytes = fs::read(&path).unwrap();
        tamper(&mut bytes);
        fs::write(&path, bytes).unwrap();
        let run = payload(dir, &["verify", "out.tar.gz"])
            .fails_with(1, &["out.tar.gz failed verification", "checksum mismatch"]);
        assert!(run.stdout.is_empty(), "{what}: {}", run.stdout);
    }
}

#[test]
fn verify_with_explicit_digest_or_checksum_file() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    build_hello(dir, &[]);
    let digest = checksum_file_digest(&dir.join("out.tar.gz.sha256"));
    fs::rename(dir.join("out.tar.gz.sha256"), dir.join("elsewhere.txt")).unwrap();
    let other = "0".repeat(64);

    let ok = |args: &[&str]| {
        let run = payload(dir, args).ok();
        assert_eq!(run.stdout, format!("OK {digest}\n"), "{args:?}");
    };
    ok(&["verify", "out.tar.gz", "--sha256", &digest]);
    ok(&["verify", "out.tar.gz", "--sha256", &digest.to_uppercase()]);
    ok(&["verify", "out.tar.gz", "--checksum", "elsewhere.txt"]);

    payload(dir, &["verify", "out.tar.gz", "--sha256", &other])
        .fails_with(1, &["checksum mismatch", &other, &digest]);
    payload(dir, &["verify", "out.tar.gz", "--sha256", "abc123"])
        .fails_with(2, &["--sha256", "64 hexadecimal digits"]);
    payload(dir, &["verify", "out.tar.gz", "--checksum", "nope.sha256"])
        .fails_with(1, &["--checksum nope.sha256", "No such file"]);
    payload(
        dir,
        &[
            "verify",
            "out.tar.gz",
            "--checksum",
            "elsewhere.txt",
            "--sha256",
            &digest,
        ],
    )
    .fails_with(2, &["--checksum", "--sha256"]);
}

#[test]
fn a_missing_checksum_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    build_hello(dir.path(), &[]);
    fs::remove_file(dir.path().join("out.tar.gz.sha256")).unwrap();
    let run = payload(dir.path(), &["verify", "out.tar.gz"]).fails_with(
        1,
        &[
            "no checksum file out.tar.gz.sha256",
            "--checksum FILE",
            "--sha256 HEX",
        ],
    );
    assert!(run.stdout.is_empty());
    payload(
        dir.path(),
        &["verify", "missing.tar.gz", "--sha256", &"0".repeat(64)],
    )
    .fails_with(1, &["cannot read payload missing.tar.gz"]);
}

#[test]
fn signatures_verify_against_trusted_keys_only() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    payload(dir, &["keygen", "-o", "one.key"]).ok();
    payload(dir, &["keygen", "-o", "two.key"]).ok();
    build_hello(dir, &["--sign-key", "one.key"]);
    assert!(dir.join("out.tar.gz.sig").exists());
    let digest = checksum_file_digest(&dir.join("out.tar.gz.sha256"));

    let verify = |keys: &[&str]| {
        let mut args = vec!["verify", "out.tar.gz"];
        for key in keys {
            args.extend(["--trusted-key", key]);
        }
        payload(dir, &args)
    };
    let untrusted = "signature does not verify against any trusted key";
    // (trusted keys, signed by one.key?) -> success expected
    let signed_by_one = [
        (vec!["one.key.pub"], true),
        (vec!["two.key.pub", "one.key.pub"], true),
        (vec!["two.key.pub"], false),
    ];
    for (keys, ok) in &signed_by_one {
        let run = verify(keys);
        if *ok {
            assert_eq!(run.ok().stdout, format!("OK {digest}\n"), "{keys:?}");
        } else {
            run.fails_with(1, &[untrusted]);
        }
    }

    // Re-signing with the other key flips which key is trusted.
    let signed = payload(dir, &["sign", "out.tar.gz", "--key", "two.key"]).ok();
    assert!(signed.stdout.contains(&digest), "{}", signed.stdout);
    verify(&["two.key.pub"]).ok();
    verify(&["one.key.pub"]).fails_with(1, &[untrusted]);

    // A trusted key without any signature file is a failure, not a pass.
    fs::remove_file(dir.join("out.tar.gz.sig")).unwrap();
    verify(&["two.key.pub"]).fails_with(1, &["no signature file out.tar.gz.sig"]);
    // ...while a plain checksum verification still passes.
    verify(&[]).ok();

    // An unreadable or malformed trusted key is an error before anything else.
    write(dir, "bad.pub", "not hex\n");
    verify(&["bad.pub"]).fails_with(1, &["--trusted-key bad.pub", "malformed"]);
    verify(&["none.pub"]).fails_with(1, &["--trusted-key none.pub", "No such file"]);
    // Regression: a secret key given as a trusted key used to parse as a public one.
    verify(&["two.key"]).fails_with(1, &["--trusted-key two.key", "this is a secret key"]);
}

#[test]
fn rebuilding_without_a_key_removes_the_stale_signature() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    payload(dir, &["keygen", "-o", "k"]).ok();
    build_hello(dir, &["--sign-key", "k"]);
    assert!(dir.join("out.tar.gz.sig").exists());
    build_hello(dir, &["--env", "CHANGED=1"]);
    assert!(!dir.join("out.tar.gz.sig").exists());
}

#[test]
fn sign_refuses_a_payload_that_does_not_match_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    payload(dir, &["keygen", "-o", "k"]).ok();
    build_hello(dir, &[]);
    let mut bytes = fs::read(dir.join("out.tar.gz")).unwrap();
    bytes.push(0);
    fs::write(dir.join("out.tar.gz"), bytes).unwrap();
    payload(dir, &["sign", "out.tar.gz", "--key", "k"])
        .fails_with(1, &["does not match out.tar.gz.sha256", "not signing"]);
    assert!(!dir.join("out.tar.gz.sig").exists());
}

#[test]
fn keygen_writes_a_private_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let run = payload(dir, &["keygen", "-o", "signing.key"]).ok();
    let secret = fs::read_to_string(dir.join("signing.key")).unwrap();
    let public = fs::read_to_string(dir.join("signing.key.pub")).unwrap();
    for (key, label) in [(&secret, "ed25519-secret:"), (&public, "ed25519-public:")] {
        let hex = key.strip_suffix('\n').unwrap().strip_prefix(label).unwrap();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    }
    assert_ne!(secret, public);
    assert!(run.stdout.contains(public.trim()), "{}", run.stdout);
    let mode = fs::metadata(dir.join("signing.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    payload(dir, &["keygen", "-o", "signing.key"]).fails_with(1, &["already exists"]);
    assert_eq!(fs::read_to_string(dir.join("signing.key")).unwrap(), secret);
    // A leftover public key alone also blocks, and no secret key is written.
    write(dir, "lone.pub", "x\n");
    payload(dir, &["keygen", "-o", "lone"]).fails_with(1, &["lone.pub already exists"]);
    assert!(!dir.join("lone").exists());
    // Two key pairs differ: the seed is random.
    payload(dir, &["keygen", "-o", "again.key"]).ok();
    assert_ne!(fs::read_to_string(dir.join("again.key")).unwrap(), secret);
}

#[test]
fn bad_build_input_names_the_flag_and_writes_nothing() {
    // (extra arguments, expected exit code, fragments of the message)
    let table: [(&[&str], i32, &[&str]); 13] = [
        (
            &["--env", "1BAD=x"],
            2,
            &["--env", "invalid variable name \"1BAD\""],
        ),
        (
            &["--env", "HAS-DASH=x"],
            2,
            &["--env", "invalid variable name"],
        ),
        (&["--env", "NOEQUALS"], 2, &["--env", "missing `=`"]),
        (
            &["--interpreter", "ruby"],
            2,
            &["--interpreter", "unknown interpreter \"ruby\""],
        ),
        (
            &["--script", "missing.sh"],
            1,
            &["--script missing.sh", "No such file"],
        ),
        (
            &["--script", "notes.txt"],
            1,
            &["--interpreter", "cannot infer", "notes.txt"],
        ),
        (
            &["--env-file", "bad.env"],
            1,
            &["--env-file bad.env line 3", "invalid variable name"],
        ),
        (&["--env-file", "nope.env"], 1, &["--env-file nope.env"]),
        (&["--event-version", "0"], 2, &["--event-version"]),
        (&["--event-id", ""], 2, &["--event-id", "empty"]),
        (
            &["--created-at", "yesterday"],
            2,
            &["--created-at", "RFC 3339"],
        ),
        (
            &["--sign-key", "notakey"],
            1,
            &["--sign-key notakey", "malformed"],
        ),
        (
            &["-o", "hello.sh"],
            1,
            &["would overwrite --script hello.sh"],
        ),
    ];
    for (extra, code, fragments) in table {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        write(dir, "hello.sh", SCRIPT);
        write(dir, "notes.txt", "echo hi\n");
        write(dir, "bad.env", "# ok\nGOOD=1\nBAD KEY=2\n");
        write(dir, "notakey", "not hex\n");
        let mut args = vec!["build"];
        args.extend_from_slice(extra);
        if !extra.contains(&"--script") {
            args.extend(["--script", "hello.sh"]);
        }
        if !extra.contains(&"-o") {
            args.extend(["-o", "out.tar.gz"]);
        }
        payload(dir, &args).fails_with(code, fragments);
        for name in ["out.tar.gz", "out.tar.gz.sha256", "out.tar.gz.sig"] {
            assert!(!dir.join(name).exists(), "{extra:?} left {name}");
        }
        assert_eq!(fs::read_to_string(dir.join("hello.sh")).unwrap(), SCRIPT);
    }
}

#[test]
fn inspect_json_has_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "hello.sh", SCRIPT);
    // No --created-at: the default is "now", in whole seconds.
    payload(
        dir,
        &[
            "build",
            "--script",
            "hello.sh",
            "--env",
            "GREETING=hi",
            "-o",
            "out.tar.gz",
        ],
    )
    .ok();
    let json = inspect_json(dir, "out.tar.gz");
    assert_eq!(json["interpreter"], "bash");
    assert_eq!(json["entrypoint"], "script.sh");
    assert_eq!(json["environment"], serde_json::json!({ "GREETING": "hi" }));
    assert_eq!(json["metadata"]["eventId"], "local");
    assert_eq!(json["metadata"]["eventVersion"], 1);
    let created = json["metadata"]["createdAt"].as_str().expect("createdAt");
    assert!(
        is_whole_second_utc(created),
        "createdAt {created:?} is not whole-second UTC RFC 3339"
    );
    assert_eq!(
        json["sha256"],
        checksum_file_digest(&dir.join("out.tar.gz.sha256"))
    );
    let files = json["files"].as_array().expect("files");
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["manifest.yaml", "script.sh"]);
    assert_eq!(files[1]["size"], SCRIPT.len());
    assert!(files[0]["size"].as_u64().unwrap() > 0);
}

/// `YYYY-MM-DDTHH:MM:SSZ`, exactly: UTC, no fractional seconds.
fn is_whole_second_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// A gzip-compressed tar whose entry names are written raw, unvalidated.
fn raw_tar_gz(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    for (name, kind, data, link) in entries {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        if let Some(target) = link {
            header.set_link_name(target).unwrap();
        }
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn hostile_and_broken_archives_are_refused() {
    use tar::EntryType::{Regular, Symlink};
    const MANIFEST: &[u8] = b"version: v1\ninterpreter: bash\nentrypoint: script.sh\n";
    const SH: &[u8] = b"echo hi\n";
    type Entries<'a> = Vec<(&'a str, tar::EntryType, &'a [u8], Option<&'a str>)>;
    let table: [(&str, Entries, &str); 6] = [
        (
            "dotdot",
            vec![
                ("manifest.yaml", Regular, MANIFEST, None),
                ("../escaped", Regular, SH, None),
                ("script.sh", Regular, SH, None),
            ],
            "`..` components are not allowed",
        ),
        (
            "absolute",
            vec![
                ("manifest.yaml", Regular, MANIFEST, None),
                ("/tmp/escaped", Regular, SH, None),
            ],
            "absolute paths are not allowed",
        ),
        (
            "symlink",
            vec![
                ("manifest.yaml", Regular, MANIFEST, None),
                ("script.sh", Symlink, b"", Some("/etc/passwd")),
            ],
            "symbolic links are not allowed",
        ),
        (
            "no-manifest",
            vec![("script.sh", Regular, SH, None)],
            "no manifest.yaml",
        ),
        (
            "no-entrypoint",
            vec![("manifest.yaml", Regular, MANIFEST, None)],
            "no entrypoint \"script.sh\"",
        ),
        (
            "bad-manifest",
            vec![
                (
                    "manifest.yaml",
                    Regular,
                    b"version: v9\ninterpreter: bash\nentrypoint: script.sh\n",
                    None,
                ),
                ("script.sh", Regular, SH, None),
            ],
            "unsupported version",
        ),
    ];
    for (name, entries, reason) in table {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let file = format!("{name}.tar.gz");
        fs::write(dir.join(&file), raw_tar_gz(&entries)).unwrap();
        // The checksum is right, written by the real sha256sum: only the archive is bad.
        let sum = Command::new("sha256sum")
            .arg(&file)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(sum.status.success());
        fs::write(dir.join(format!("{file}.sha256")), sum.stdout).unwrap();

        payload(dir, &["verify", &file]).fails_with(1, &["failed verification", reason]);
        payload(dir, &["inspect", &file]).fails_with(1, &["not a valid payload", reason]);
        payload(dir, &["keygen", "-o", "k"]).ok();
        payload(dir, &["sign", &file, "--key", "k"]).fails_with(1, &["not signing", reason]);
        assert!(!dir.join(format!("{file}.sig")).exists(), "{name}");
        assert!(!dir.join("escaped").exists() && !dir.parent().unwrap().join("escaped").exists());
    }
}
