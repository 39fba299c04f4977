//! What a script sees in its environment: inherited, then manifest, then the runner's own `CRONIUM_*` variables.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{EVENT_ID, EVENT_VERSION, Fixture, Lang, run, spawn};
use cronium_payload::testing::{RawEntry, archive};
use cronium_runner::protocol::{self, Kind};

/// Variables each script reports, one `NAME=value` line each (`<unset>` if missing).
const NAMES: [&str; 11] = [
    "GREETING",
    "TRICKY",
    "SHARED",
    "INHERITED_ONLY",
    "CRONIUM_EVENT_ID",
    "CRONIUM_EVENT_VERSION",
    "CRONIUM_JOB_ID",
    "CRONIUM_EXECUTION_ID",
    "CRONIUM_WORK_DIR",
    "CRONIUM_NOT_OWNED",
    "NEVER_SET",
];

/// A script in `lang` that prints every name in [`NAMES`] and then its working directory as `cwd=...`.
fn reporter(lang: Lang) -> String {
    let names = NAMES.join(" ");
    match lang {
        Lang::Bash => format!(
            "for name in {names}; do printf '%s=%s\\n' \"$name\" \"${{!name-<unset>}}\"; done\n\
             printf 'cwd=%s\\n' \"$(pwd -P)\"\n"
        ),
        Lang::Python => format!(
            "import os\n\
             for name in {names:?}.split():\n    print(f\"{{name}}={{os.environ.get(name, '<unset>')}}\")\n\
             print(f\"cwd={{os.getcwd()}}\")\n"
        ),
        Lang::Node => format!(
            "for (const name of {names:?}.split(' ')) console.log(`${{name}}=${{process.env[name] ?? '<unset>'}}`);\n\
             console.log(`cwd=${{process.cwd()}}`);\n"
        ),
    }
}

fn parse(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .map(|line| {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("line {line:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn each_layer_arrives_and_the_right_one_wins() {
    // Quotes, `$`, spaces and non-ASCII must survive YAML and execve untouched.
    let tricky = r#"it's "quoted" $HOME `date` ünïcødé  two  spaces"#;
    let manifest = [
        ("GREETING", "hello world"),
        ("TRICKY", tricky),
        ("SHARED", "from the manifest"),
        // A payload cannot impersonate the runner or the executor.
        ("CRONIUM_EVENT_ID", "forged"),
        ("CRONIUM_EVENT_VERSION", "999"),
        ("CRONIUM_JOB_ID", "forged"),
        ("CRONIUM_EXECUTION_ID", "forged"),
        ("CRONIUM_WORK_DIR", "/forged"),
        // Not one of the runner's: the manifest may set it like any other.
        ("CRONIUM_NOT_OWNED", "from the manifest"),
    ];

    for lang in Lang::ALL {
        let fixture = Fixture::with_env(lang, &reporter(lang), &manifest);
        let mut cmd = fixture.run(&[]);
        cmd.env("SHARED", "inherited")
            .env("INHERITED_ONLY", "inherited")
            .env("CRONIUM_JOB_ID", "job-7")
            .env("CRONIUM_EXECUTION_ID", "exec-99")
            .env_remove("NEVER_SET");

        let ran = run(cmd);
        assert_eq!(ran.code(), 0, "{lang:?}: {}", ran.stderr_text());
        assert_eq!(ran.stderr_text(), "", "{lang:?}");
        let seen = parse(&ran.stdout_text());

        let work_dir = Path::new(&seen["CRONIUM_WORK_DIR"]);
        let expected: BTreeMap<String, String> = [
            ("GREETING", "hello world"),
            ("TRICKY", tricky),
            ("SHARED", "from the manifest"),
            ("INHERITED_ONLY", "inherited"),
            ("CRONIUM_EVENT_ID", EVENT_ID),
            ("CRONIUM_EVENT_VERSION", &EVENT_VERSION.to_string()),
            ("CRONIUM_JOB_ID", "job-7"),
            ("CRONIUM_EXECUTION_ID", "exec-99"),
            ("CRONIUM_WORK_DIR", &seen["CRONIUM_WORK_DIR"]),
            ("CRONIUM_NOT_OWNED", "from the manifest"),
            ("NEVER_SET", "<unset>"),
            ("cwd", &seen["CRONIUM_WORK_DIR"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(seen, expected, "{lang:?}");

        // The work dir was a fresh one under --workdir, and it is gone now.
        assert_eq!(work_dir.parent(), Some(fixture.work.as_path()), "{lang:?}");
        let name = work_dir.file_name().unwrap().to_string_lossy();
        assert!(name.starts_with("cronium-run-"), "{lang:?}: {name}");
        assert!(
            !work_dir.exists(),
            "{lang:?}: {} was not removed",
            work_dir.display()
        );
        assert!(
            fixture.leftovers().is_empty(),
            "{lang:?}: {:?}",
            fixture.leftovers()
        );
    }
}

#[test]
fn job_and_execution_ids_come_from_the_executor_only() {
    let fixture = Fixture::with_env(
        Lang::Bash,
        &reporter(Lang::Bash),
        &[
            ("CRONIUM_JOB_ID", "forged"),
            ("CRONIUM_EXECUTION_ID", "forged"),
        ],
    );

    let mut cmd = fixture.run(&[]);
    cmd.env("CRONIUM_JOB_ID", "job-1")
        .env("CRONIUM_EXECUTION_ID", "exec-2");
    let inherited = parse(&run(cmd).stdout_text());
    assert_eq!(inherited["CRONIUM_JOB_ID"], "job-1");
    assert_eq!(inherited["CRONIUM_EXECUTION_ID"], "exec-2");

    // The executor's Env record (framed mode) is the executor speaking too, and wins.
    let mut cmd = fixture.run(&["--output", "framed", "--env-from-stdin"]);
    cmd.env("CRONIUM_JOB_ID", "job-1");
    let mut running = spawn(cmd);
    let record = br#"{"CRONIUM_JOB_ID":"job-from-record"}"#;
    protocol::write_frame(running.stdin(), Kind::Env, record).unwrap();
    let framed = running.finish().framed();
    assert_eq!(framed.result().exit_code, 0, "{}", framed.messages());
    let from_record = parse(&String::from_utf8(framed.stdout()).unwrap());
    assert_eq!(from_record["CRONIUM_JOB_ID"], "job-from-record");
    assert_eq!(from_record["CRONIUM_EXECUTION_ID"], "<unset>");

    // Without ids from the executor, the payload's forgeries do not stand in for them.
    let none = parse(&run(fixture.run(&[])).stdout_text());
    assert_eq!(none["CRONIUM_JOB_ID"], "<unset>");
    assert_eq!(none["CRONIUM_EXECUTION_ID"], "<unset>");
}

#[test]
fn without_metadata_the_event_variables_are_unset_not_forged() {
    let fixture = Fixture::empty();
    let manifest = "version: v1\ninterpreter: bash\nentrypoint: script.sh\n\
                    environment:\n  CRONIUM_EVENT_ID: forged\n  CRONIUM_EVENT_VERSION: 999\n";
    fixture.write_raw(&archive(&[
        RawEntry::file("manifest.yaml", manifest),
        RawEntry::file("script.sh", reporter(Lang::Bash)),
    ]));

    let mut cmd = fixture.run(&[]);
    cmd.env("CRONIUM_EVENT_ID", "inherited")
        .env("CRONIUM_EVENT_VERSION", "5");
    let ran = run(cmd);

    assert_eq!(ran.code(), 0, "{}", ran.stderr_text());
    let seen = parse(&ran.stdout_text());
    assert_eq!(seen["CRONIUM_EVENT_ID"], "<unset>");
    assert_eq!(seen["CRONIUM_EVENT_VERSION"], "<unset>");
}
