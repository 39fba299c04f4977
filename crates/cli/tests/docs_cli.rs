//! `cronium completions` and `cronium man`: generated from the command definition, and mentioning the real commands.

use std::process::Command;

const CRONIUM: &str = env!("CARGO_BIN_EXE_cronium");

fn cronium(args: &[&str]) -> String {
    let out = Command::new(CRONIUM).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_know_the_subcommands_and_their_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let script = cronium(&["completions", shell]);
        assert!(script.len() > 10_000, "{shell}: {} bytes", script.len());
        for word in ["event", "import", "crontab", "dry-run", "follow"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    assert!(cronium(&["completions", "bash"]).contains("complete -F _cronium"));
    let err = Command::new(CRONIUM)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("bash, zsh or fish"));
}

#[test]
fn man_writes_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let said = cronium(&["man", pages.to_str().unwrap()]);
    assert!(said.starts_with("wrote "), "{said}");
    let page = |name: &str| {
        std::fs::read_to_string(pages.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let top = page("cronium.1");
    assert!(top.contains(".TH cronium 1"), "{top}");
    for sub in ["event", "job", "import", "serve"] {
        assert!(top.contains(sub), "cronium.1 lacks {sub}");
    }
    let import = page("cronium-import-crontab.1");
    assert!(import.contains("cronium\\-import\\-crontab"), "{import}");
    assert!(
        import.contains("dry\\-run") && import.contains("MAILTO"),
        "{import}"
    );
    let serve = page("cronium-serve.1");
    assert!(
        serve.contains("poll\\-only") && serve.contains("PgBouncer"),
        "{serve}"
    );
    page("cronium-event-run.1");
    assert!(
        !pages.join("cronium-help.1").exists(),
        "no page for clap's help"
    );
}
