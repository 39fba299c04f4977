//! With `--trusted-key`, only payloads whose `.sig` was made by a trusted key run.

mod common;

use std::fs;

use common::{Fixture, run, runner, spec};
use cronium_payload::{BuiltPayload, Interpreter, SigningKey, signature_path};

const SCRIPT: &str = "touch \"$MARKER\"\necho signed and sealed\n";

/// What sits beside the payload.
#[derive(Debug)]
enum Sig {
    By(u8),
    Missing,
    Garbage,
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed([seed; 32])
}

/// A fixture with the payload, its `.sig` as described, and the public key of
/// key 1 (the trusted one) in `trusted.pub`.
fn signed(sig: Sig) -> (Fixture, BuiltPayload) {
    let fixture = Fixture::empty();
    let built = spec(Interpreter::Bash, SCRIPT, &[]).build().unwrap();
    fixture.write_built(&built);
    let sig_path = signature_path(&fixture.payload);
    match sig {
        Sig::By(seed) => fs::write(&sig_path, key(seed).sign(&built.digest)).unwrap(),
        Sig::Missing => {}
        Sig::Garbage => fs::write(&sig_path, "not a signature\n").unwrap(),
    }
    fs::write(
        fixture.file("trusted.pub"),
        key(1).verifying_key().to_text(),
    )
    .unwrap();
    (fixture, built)
}

#[test]
fn only_a_signature_by_a_trusted_key_lets_the_payload_run() {
    let table = [
        (Sig::By(1), 0, "signed and sealed"),
        (
            Sig::By(2),
            125,
            "signature does not verify against any trusted key",
        ),
        (Sig::Missing, 125, "signature required"),
        (Sig::Garbage, 125, "signature is malformed"),
    ];
    for (sig, code, says) in table {
        let what = format!("{sig:?}");
        let (fixture, _) = signed(sig);
        let trusted = fixture.file("trusted.pub");
        let mut cmd = fixture.run(&["--trusted-key"]);
        cmd.arg(&trusted);

        let ran = run(cmd);

        assert_eq!(ran.code(), code, "{what}: {}", ran.stderr_text());
        let output = if code == 0 {
            ran.stdout_text()
        } else {
            ran.stderr_text()
        };
        assert!(output.contains(says), "{what}: {output:?} lacks {says:?}");
        assert_eq!(
            fixture.marker_exists(),
            code == 0,
            "{what}: ran iff trusted"
        );
        assert!(
            fixture.leftovers().is_empty(),
            "{what}: {:?}",
            fixture.leftovers()
        );
    }
}

#[test]
fn any_one_of_several_trusted_keys_is_enough() {
    let (fixture, _) = signed(Sig::By(1));
    let other = fixture.file("other.pub");
    fs::write(&other, key(3).verifying_key().to_text()).unwrap();
    let mut cmd = fixture.run(&["--trusted-key"]);
    cmd.arg(&other)
        .arg("--trusted-key")
        .arg(fixture.file("trusted.pub"));

    let ran = run(cmd);

    assert_eq!(ran.code(), 0, "{}", ran.stderr_text());
    assert!(fixture.marker_exists());
}

#[test]
fn a_valid_signature_does_not_excuse_a_bad_checksum() {
    let (fixture, _) = signed(Sig::By(1));
    let mut cmd = fixture.run(&["--sha256", &"0".repeat(64), "--trusted-key"]);
    cmd.arg(fixture.file("trusted.pub"));

    let ran = run(cmd);

    assert_eq!(ran.code(), 125);
    assert!(
        ran.stderr_text().contains("checksum mismatch"),
        "{}",
        ran.stderr_text()
    );
    assert!(!fixture.marker_exists());
}

#[test]
fn verify_checks_signatures_too() {
    let table = [(Sig::By(1), 0), (Sig::By(2), 125), (Sig::Missing, 125)];
    for (sig, code) in table {
        let what = format!("{sig:?}");
        let (fixture, built) = signed(sig);
        let mut cmd = runner(&["verify"]);
        cmd.arg(&fixture.payload)
            .arg("--trusted-key")
            .arg(fixture.file("trusted.pub"));

        let ran = run(cmd);

        assert_eq!(ran.code(), code, "{what}: {}", ran.stderr_text());
        if code == 0 {
            assert_eq!(ran.stdout_text(), format!("OK {}\n", built.digest));
        }
    }
}
