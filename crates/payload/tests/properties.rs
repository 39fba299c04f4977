//! Property tests: whatever goes into a payload comes back out of it exactly, and the same inputs always build the same bytes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cronium_payload::{
    EnvKey, Interpreter, Limits, MANIFEST_NAME, PayloadSpec, Sha256Digest, extract, read_manifest,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

/// Values that YAML would happily read back as something else (a boolean,
/// null, a number, a mapping, a comment…) if they were written unquoted.
const YAML_HOSTILE: &[&str] = &[
    "",
    "yes",
    "no",
    "Yes",
    "NO",
    "on",
    "off",
    "y",
    "n",
    "true",
    "False",
    "TRUE",
    "null",
    "Null",
    "NULL",
    "~",
    "0123",
    "0o17",
    "0x1F",
    "1e3",
    "1_000",
    "+1",
    "-0",
    "3.14",
    ".inf",
    "-.Inf",
    ".nan",
    "2025-01-15",
    "12:30:00",
    " leading space",
    "trailing space ",
    "  ",
    "a: b",
    "a:b",
    "- x",
    "-",
    "#c",
    "a #c",
    "? q",
    "multi\nline",
    "trailing newline\n",
    "\n",
    "\n\n",
    "\r\nCRLF",
    "\t tab",
    "'single'",
    "\"double\"",
    "{a: 1}",
    "[1, 2]",
    "&anchor",
    "*alias",
    "!tag",
    "!!str x",
    "%directive",
    "@at",
    "`back",
    "|",
    "> folded",
    "---",
    "...",
    "\\",
    "\\n",
    "ünïcödé",
    "日本語",
    "emoji 🎉",
    "\u{feff}bom",
    "\u{85}nel",
    "\u{2028}ls",
    "\u{7f}del",
    "\u{1b}[31mred",
    "\u{7}bell",
];

fn env_value() -> impl Strategy<Value = String> {
    let hostile = prop::sample::select(YAML_HOSTILE).prop_map(String::from);
    prop_oneof![
        hostile.clone(),
        // Any text without NUL, which no environment value can hold.
        "[^\u{0}]{0,40}",
        (
            hostile,
            "[^\u{0}]{0,10}",
            prop::sample::select(YAML_HOSTILE)
        )
            .prop_map(|(a, b, c)| format!("{a}{b}{c}")),
    ]
}

fn environment() -> impl Strategy<Value = BTreeMap<EnvKey, String>> {
    btree_map("[A-Za-z_][A-Za-z0-9_]{0,20}", env_value(), 0..12).prop_map(|env| {
        env.into_iter()
            .map(|(k, v)| (EnvKey::new(&k).expect("the regex makes valid names"), v))
            .collect()
    })
}

/// Any instant from year 1 to year 9999 (what RFC 3339 can write), to the nanosecond.
fn created_at() -> impl Strategy<Value = DateTime<Utc>> {
    (-62_135_596_800i64..=253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).expect("in range"))
}

fn event_id() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u64..).prop_map(|n| n.to_string()),
        prop::sample::select(YAML_HOSTILE).prop_map(String::from),
        any::<String>(),
    ]
}

fn spec() -> impl Strategy<Value = PayloadSpec> {
    (
        prop::sample::select(Interpreter::ALL.to_vec()),
        vec(any::<u8>(), 0..8 * 1024),
        environment(),
        event_id(),
        prop_oneof![1u64..1000, 1u64..],
        created_at(),
    )
        .prop_map(
            |(interpreter, script, environment, event_id, event_version, created_at)| PayloadSpec {
                interpreter,
                script,
                environment,
                event_id,
                event_version,
                created_at,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn what_is_built_extracts_to_the_same_script_and_manifest(spec in spec()) {
        let built = spec.build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let extracted = extract(&built.bytes[..], dir.path(), &Limits::default())
            .map_err(|e| TestCaseError::fail(format!("extract refused its own payload: {e}")))?;
        prop_assert_eq!(&extracted.manifest, &spec.manifest());
        prop_assert_eq!(extracted.entrypoint, dir.path().join(spec.interpreter.entrypoint()));
        prop_assert_eq!(std::fs::read(dir.path().join(spec.interpreter.entrypoint())).unwrap(), spec.script);
    }

    #[test]
    fn building_twice_gives_identical_bytes_and_digest(spec in spec()) {
        let first = spec.build().unwrap();
        let second = spec.clone().build().unwrap();
        prop_assert_eq!(&first.bytes, &second.bytes);
        prop_assert_eq!(first.digest, second.digest);
        prop_assert_eq!(first.digest, Sha256Digest::of(&first.bytes));
    }

    #[test]
    fn read_manifest_agrees_with_extract(spec in spec()) {
        let built = spec.build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let extracted = extract(&built.bytes[..], dir.path(), &Limits::default())
            .map_err(|e| TestCaseError::fail(format!("extract: {e}")))?;
        let listing = read_manifest(&built.bytes[..], &Limits::default())
            .map_err(|e| TestCaseError::fail(format!("read_manifest: {e}")))?;
        prop_assert_eq!(&listing.manifest, &extracted.manifest);
        prop_assert!(
            !dir.path().join(MANIFEST_NAME).exists(),
            "the manifest is read from memory, not left in the work dir"
        );
        let manifest_len = spec.manifest().to_yaml().len() as u64;
        prop_assert_eq!(
            listing.files,
            vec![
                (MANIFEST_NAME.to_string(), manifest_len),
                (spec.interpreter.entrypoint().to_string(), spec.script.len() as u64),
            ]
        );
    }
}

/// Regression: the builder wrote `eventVersion: 17055913187463813858` (a
/// valid `u64`) and the reader refused it, because it only read integers
/// as `i64` and fell back to a float for anything larger.
#[test]
fn event_version_past_i64_max_survives_the_round_trip() {
    for event_version in [i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
        let spec = PayloadSpec {
            interpreter: Interpreter::Bash,
            script: b"echo hi\n".to_vec(),
            environment: BTreeMap::new(),
            event_id: "42".into(),
            event_version,
            created_at: "2025-01-15T10:00:00Z".parse().unwrap(),
        };
        let listing = read_manifest(&spec.build().unwrap().bytes[..], &Limits::default()).unwrap();
        assert_eq!(listing.manifest.metadata.event_version, Some(event_version));
    }
}

/// The bytes of one fixed payload, pinned across builds, machines and
/// versions: determinism within one process (above) would not notice an
/// entry order, a mode, a timestamp or a gzip header that changed between
/// releases, and with it every digest users have recorded or signed. A
/// deliberate format change updates this digest in the same commit.
#[test]
fn a_fixed_payload_builds_to_its_golden_digest() {
    let spec = PayloadSpec {
        interpreter: Interpreter::Python,
        script: b"import os\nprint(os.environ['GREETING'])\n".to_vec(),
        environment: BTreeMap::from([
            (EnvKey::new("GREETING").unwrap(), "hello".to_string()),
            (EnvKey::new("TARGET").unwrap(), "/srv/data".to_string()),
        ]),
        event_id: "7".into(),
        event_version: 3,
        created_at: "2026-01-02T03:04:05Z".parse().unwrap(),
    };
    let built = spec.build().unwrap();
    assert_eq!(
        built.digest.to_hex(),
        GOLDEN_DIGEST,
        "{} bytes",
        built.bytes.len()
    );
}

const GOLDEN_DIGEST: &str = "862c540d861a75432d189bcb436b2a51266110169d35f158b01a9bd9fc83f6e5";
