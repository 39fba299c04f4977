//! `check`: what `cronium server check` reports about a host, gathered in one remote command.

use std::time::Duration;

use tokio::time::timeout;

use crate::error::timed_out;
use crate::{Credentials, HostKey, HostKeyPolicy, Session, SshError, Target, Timeouts, connect};

/// The interpreters a payload may ask for, in the order reported.
const INTERPRETERS: [&str; 3] = ["bash", "python3", "node"];

/// How long the probe command may run before the check gives up on it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything known about a host after a check. A failed check still says
/// how far it got: `reachable` and `authenticated` follow from the phase of
/// `error`, and `host_key` is filled in whenever the handshake got that far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub target: Target,
    /// A TCP connection and SSH handshake succeeded.
    pub reachable: bool,
    /// The credentials were accepted.
    pub authenticated: bool,
    /// The verified (or just trusted) host key.
    pub host_key: Option<HostKey>,
    /// True when the key was trusted on first use in this check and should
    /// now be pinned by the caller.
    pub newly_pinned: bool,
    /// `uname -s`, such as `Linux`.
    pub os: Option<String>,
    /// `uname -m`, such as `x86_64` or `aarch64`.
    pub arch: Option<String>,
    /// bash, python3 and node, each with its version or absent.
    pub interpreters: Vec<Interpreter>,
    /// The deployed runner's `version --json`, if one is deployed.
    pub runner: Option<RunnerInfo>,
    /// Why the check stopped early, if it did.
    pub error: Option<SshError>,
}

impl CheckReport {
    /// A report that knows nothing yet: not reachable, no facts, no error.
    pub fn new(target: Target) -> CheckReport {
        CheckReport {
            target,
            reachable: false,
            authenticated: false,
            host_key: None,
            newly_pinned: false,
            os: None,
            arch: None,
            interpreters: Vec::new(),
            runner: None,
            error: None,
        }
    }

    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// `os arch`, as `uname -sm` prints it.
    pub fn system(&self) -> Option<String> {
        Some(format!("{} {}", self.os.as_ref()?, self.arch.as_ref()?))
    }

    pub fn interpreter(&self, name: &str) -> Option<&Interpreter> {
        self.interpreters.iter().find(|i| i.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    pub name: String,
    /// The version number (`5.2.15(1)-release`, `3.11.2`, `20.19.2`), or
    /// `None` if the interpreter is not on the remote `PATH`.
    pub version: Option<String>,
    /// The first line of `--version` as printed, when present.
    pub version_line: Option<String>,
}

/// A deployed runner, as its `version --json` describes itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerInfo {
    /// The `version` field, or `None` if the output did not have one (an
    /// old or broken runner, to be replaced).
    pub version: Option<String>,
    /// The output as printed (first 4 KiB, one line).
    pub raw: String,
}

/// Connects to `target` and reports on it; never fails, see
/// [`CheckReport::error`]. `runner_path` is where the caller deploys the
/// runner on this host: relative to the SSH user's home, or absolute.
pub async fn check(
    target: &Target,
    credentials: &Credentials,
    policy: &HostKeyPolicy,
    timeouts: Timeouts,
    runner_path: &str,
) -> CheckReport {
    let mut report = CheckReport::new(target.clone());
    let session = match connect(target, credentials, policy, timeouts).await {
        Ok(session) => session,
        Err(error) => {
            report.reachable = matches!(error, SshError::HostKey { .. } | SshError::Auth { .. });
            report.error = Some(error);
            return report;
        }
    };
    report.reachable = true;
    report.authenticated = true;
    report.host_key = Some(session.host_key().clone());
    report.newly_pinned = session.trusted_on_first_use();
    if let Err(error) = probe(&session, runner_path, &mut report).await {
        report.error = Some(error);
    }
    session.close().await;
    report
}

/// Runs one shell command that prints a tagged line per fact, so the whole
/// probe is one round trip. Wrapped in `sh -c` so a login shell that is not
/// POSIX (fish, csh) still runs it.
async fn probe(
    session: &Session,
    runner_path: &str,
    report: &mut CheckReport,
) -> Result<(), SshError> {
    let mut script = String::from("echo \"uname:$(uname -s) $(uname -m)\"\n");
    for name in INTERPRETERS {
        script.push_str(&format!(
            "if command -v {name} >/dev/null 2>&1; then \
             echo \"interpreter:{name}:$({name} --version 2>&1 </dev/null | head -n 1)\"; \
             else echo \"interpreter:{name}\"; fi\n"
        ));
    }
    // Quoted: the path comes from the caller's configuration.
    let runner = match runner_path.starts_with('/') {
        true => shell_quote(runner_path),
        false => format!("\"$HOME\"/{}", shell_quote(runner_path)),
    };
    script.push_str(&format!(
        "r={runner}\n\
         if [ -x \"$r\" ]; then \
         echo \"runner:$(\"$r\" version --json 2>/dev/null </dev/null | head -c 4096 | tr -d '\\n')\"; fi\n"
    ));
    let command = format!("sh -c {}", shell_quote(&script));
    let output = timeout(PROBE_TIMEOUT, session.exec_limited(&command, 64 * 1024))
        .await
        .map_err(|_| SshError::Command {
            address: session.target().address(),
            command: "host probe (uname, interpreters, runner)".into(),
            reason: timed_out("the probe", PROBE_TIMEOUT),
        })??;
    if !output.success() {
        return Err(SshError::Command {
            address: session.target().address(),
            command: "host probe (uname, interpreters, runner)".into(),
            reason: format!(
                "exited with {:?}: {}",
                output.exit_status,
                output.stderr_text().trim()
            ),
        });
    }
    for line in output.stdout_text().lines() {
        if let Some(uname) = line.strip_prefix("uname:") {
            let mut parts = uname.split_whitespace();
            report.os = parts.next().map(str::to_string);
            report.arch = parts.next().map(str::to_string);
        } else if let Some(rest) = line.strip_prefix("interpreter:") {
            let (name, version_line) = match rest.split_once(':') {
                Some((name, line)) => (name, Some(line.trim().to_string())),
                None => (rest, None),
            };
            report.interpreters.push(Interpreter {
                name: name.to_string(),
                version: version_line.as_deref().and_then(version_number),
                version_line,
            });
        } else if let Some(json) = line.strip_prefix("runner:") {
            report.runner = Some(RunnerInfo {
                version: serde_json::from_str::<serde_json::Value>(json)
                    .ok()
                    .and_then(|v| v.get("version")?.as_str().map(str::to_string)),
                raw: json.to_string(),
            });
        }
    }
    Ok(())
}

/// The first word that starts with a digit (a leading `v` is dropped):
/// `GNU bash, version 5.2.15(1)-release (…)` gives `5.2.15(1)-release`,
/// `Python 3.11.2` gives `3.11.2`, `v20.19.2` gives `20.19.2`.
fn version_number(line: &str) -> Option<String> {
    line.split_whitespace()
        .map(|word| word.trim_end_matches(','))
        .map(|word| word.strip_prefix('v').unwrap_or(word))
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_string)
}

/// Quotes `text` as one POSIX shell word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers_come_out_of_each_interpreters_banner() {
        let cases = [
            (
                "GNU bash, version 5.2.15(1)-release (x86_64-pc-linux-gnu)",
                "5.2.15(1)-release",
            ),
            ("Python 3.11.2", "3.11.2"),
            ("v20.19.2", "20.19.2"),
        ];
        for (line, version) in cases {
            assert_eq!(version_number(line).as_deref(), Some(version));
        }
        assert_eq!(version_number("command not found"), None);
    }

    #[test]
    fn shell_quoting_survives_single_quotes() {
        assert_eq!(shell_quote("it's"), r#"'it'\''s'"#);
    }
}
