//! The served OpenAPI document against an outside fuzzer: schemathesis, with all its checks and its stateful phase, finds nothing on a fresh `cronium serve`.
//!
//! What the fuzzer holds the server to: no 5xx, no status the document does
//! not list, no schema-valid request refused, no schema-violating request
//! accepted, no answer that does not match its schema.
//!
//! Nothing it sends may reach past loopback or run its scripts unconfined:
//! the server and the fuzzer share a network namespace of their own (only
//! `lo`, so not even DNS leaves it), the operations that execute or send
//! (`run`, a server's `check`, a channel's `test`) are left out, and the
//! events it creates with schedules run under the bubblewrap sandbox, which
//! has no network either. The seed and the example count are fixed, so a
//! run is repeatable and takes about a minute.
//!
//! One exception to "no schema-valid request refused": applying a workflow
//! may be refused with 422 however valid the body, since what makes a
//! definition whole (unique node ids, edges to nodes of the same workflow,
//! no cycle, events that exist) lies beyond JSON Schema. The 422 stays
//! documented, and every other check still holds for it.

mod common;

use std::process::Command;

const CRONIUM: &str = env!("CARGO_BIN_EXE_cronium");

/// The version `scripts/test.sh` installs.
const SCHEMATHESIS: &str = "4.32.5";

/// The fuzzer's defaults, and the 422 a valid workflow definition may get
/// (see the top of this file).
const CONFIG: &str = r#"
[[operations]]
include-operation-id = "applyWorkflow"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"#;

/// Runs inside the namespace: brings `lo` up, starts the server, waits for
/// its token, fuzzes, stops the server, and exits with the fuzzer's status.
const SCRIPT: &str = r#"
set -u
cronium=$1 data=$2
ip link set lo up || exit 90
"$cronium" serve --data-dir "$data/data" --listen 127.0.0.1:8080 --sandbox bubblewrap \
    >"$data/server.log" 2>&1 &
server=$!
i=0
until [ -s "$data/data/admin.token" ]; do
    i=$((i + 1))
    if [ $i -gt 600 ] || ! kill -0 $server 2>/dev/null; then
        echo "the server did not start:"; cat "$data/server.log"; exit 91
    fi
    sleep 0.1
done
token=$(cat "$data/data/admin.token")
# revokeToken is left out as well: revoking the fuzzer's own token would
# leave every later request unauthenticated (a 401 is documented, so this
# hides nothing but the rest of the run).
timeout 300 st --config-file "$data/schemathesis.toml" run http://127.0.0.1:8080/api/v1/openapi.json \
    --url http://127.0.0.1:8080 \
    --wait-for-schema 60 \
    -H "Authorization: Bearer $token" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --exclude-path-regex '(/run|/check|/test|/logs)$' \
    --exclude-operation-id revokeToken \
    --max-examples 30 \
    --seed 1 \
    --request-timeout 10 \
    --generation-database none \
    --output-sanitize false
status=$?
kill $server
wait $server
# The fuzzer cannot see what the server logged: an internal error logged
# while every answer looked right is a failure too.
if grep -q ' ERROR ' "$data/server.log"; then
    echo "the server logged errors:"; grep ' ERROR ' "$data/server.log"; exit 92
fi
exit $status
"#;

#[test]
fn schemathesis_finds_nothing_in_the_served_document() {
    common::require_runner();
    let version = Command::new("st").arg("--version").output();
    let installed = version
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        installed.contains(SCHEMATHESIS),
        "schemathesis {SCHEMATHESIS} (`st`) is needed: pip install 'schemathesis=={SCHEMATHESIS}' \
         (scripts/test.sh installs it); found: {}",
        match &version {
            Ok(o) => format!(
                "{}{}",
                installed.trim(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => e.to_string(),
        }
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schemathesis.toml"), CONFIG).unwrap();
    let output = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--net",
            "sh",
            "-c",
            SCRIPT,
            "sh",
        ])
        .arg(CRONIUM)
        .arg(dir.path())
        // Anything the fuzzer keeps between runs stays in the temporary dir.
        .current_dir(dir.path())
        .output()
        .expect("unshare (util-linux) runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the fuzzer found something ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // A run that tested nothing would also exit 0.
    assert!(
        stdout.contains("Tested: 43"),
        "expected 43 operations tested:\n{stdout}"
    );
}
