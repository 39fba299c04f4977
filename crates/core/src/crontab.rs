//! Crontab files read as cron reads them, into jobs Cronium can run or lines it reports: no I/O.
//!
//! The rules are Vixie cron's (cronie, Debian cron): a setting `NAME=value`
//! applies to the lines after it; a line is five time fields (or an `@alias`),
//! in a system crontab (`/etc/crontab`, `/etc/cron.d/*`) a user, then the
//! command; the first unescaped `%` ends the command and the rest, each
//! further `%` a newline, is its standard input; `\%` is a `%`. `CRON_TZ`
//! (or `TZ`) is the zone the schedule is read in. What Cronium cannot do the
//! same way (`@reboot`, another `SHELL`, a command ending in a backslash) is
//! reported as [`LineKind::Unsupported`], never approximated.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use cronium_payload::EnvKey;

use crate::schedule::Schedule;

/// How to read a file.
#[derive(Debug, Clone)]
pub struct Options {
    /// A system crontab: a user field between the schedule and the command.
    pub system: bool,
    /// The zone of schedules with no `CRON_TZ`/`TZ` before them (cron uses
    /// the host's).
    pub timezone: String,
}

/// One line that is neither blank, a comment nor a setting that applies
/// cleanly (a bad setting is reported as the line it is on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based, as an editor shows it.
    pub number: usize,
    /// The line as written.
    pub text: String,
    pub kind: LineKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    Job(Job),
    /// Valid for cron, but Cronium would run it differently: why.
    Unsupported(String),
    /// Cron would refuse it too: why.
    Invalid(String),
}

/// Where a job's time zone comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneSource {
    CronTz,
    Tz,
    /// [`Options::timezone`].
    Default,
}

/// A crontab line Cronium can run as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Five fields, or an alias such as `@hourly`.
    pub cron: String,
    pub timezone: String,
    pub zone_source: ZoneSource,
    /// The user field of a system crontab.
    pub user: Option<String>,
    /// The command, `\%` already read as `%`.
    pub command: String,
    /// What cron writes to the command's standard input (after the first `%`).
    pub stdin: Option<String>,
    /// The settings before the line that reach the command's environment.
    pub env: BTreeMap<String, String>,
    /// `MAILTO` in effect: addresses, or `Some(empty)` for "mail nobody";
    /// `None` when unset (cron mails the crontab's owner locally).
    pub mailto: Option<Vec<String>>,
    /// Settings that have no effect in Cronium.
    pub warnings: Vec<String>,
}

/// Settings cron itself reads; they do not reach the command's environment.
const CRON_ONLY: [&str; 4] = ["CRON_TZ", "MAILTO", "MAILFROM", "SHELL"];
/// Shells whose reading of a command is bash's for what crontabs hold.
const SHELLS: [&str; 6] = [
    "/bin/sh",
    "/bin/bash",
    "/usr/bin/sh",
    "/usr/bin/bash",
    "/bin/dash",
    "/usr/bin/dash",
];
/// Longest event name the API takes.
const NAME_CHARS: usize = 100;

/// Reads a crontab: every line that is not blank, a comment or a setting.
pub fn parse(text: &str, options: &Options) -> Vec<Line> {
    let mut settings: BTreeMap<String, String> = BTreeMap::new();
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let line = |kind| Line {
            number: index + 1,
            text: raw.to_string(),
            kind,
        };
        if let Some((name, value)) = setting(trimmed) {
            if let Err(why) = check_setting(&name, &value) {
                lines.push(line(LineKind::Invalid(why)));
            } else {
                settings.insert(name, value);
            }
            continue;
        }
        lines.push(line(entry(trimmed, &settings, options)));
    }
    lines
}

/// `NAME=value`, `NAME = "value"`: cron's `load_env`. A name is read up to
/// `=` or a blank, so `* * * * * A=1 cmd` is not a setting.
fn setting(line: &str) -> Option<(String, String)> {
    let (name, rest) = match line.chars().next()? {
        q @ ('"' | '\'') => {
            let end = line[1..].find(q)? + 1;
            (&line[1..end], &line[end + 1..])
        }
        _ => {
            let end = line.find(|c: char| c == '=' || c.is_whitespace())?;
            (&line[..end], &line[end..])
        }
    };
    let value = rest.trim_start().strip_prefix('=')?.trim();
    if name.is_empty() {
        return None;
    }
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|&q| value.strip_prefix(q)?.strip_suffix(q))
        .filter(|_| value.len() >= 2);
    Some((name.to_string(), unquoted.unwrap_or(value).to_string()))
}

fn check_setting(name: &str, value: &str) -> Result<(), String> {
    if CRON_ONLY.contains(&name) {
        if name == "CRON_TZ" && Tz::from_str(value).is_err() {
            return Err(format!("CRON_TZ={value}: unknown time zone"));
        }
        return Ok(());
    }
    EnvKey::new(name).map_err(|why| format!("{name}: {why}"))?;
    Ok(())
}

/// A schedule line, with the settings in effect.
fn entry(line: &str, settings: &BTreeMap<String, String>, options: &Options) -> LineKind {
    let (first, rest) = token(line);
    let (cron, mut rest) = if let Some(alias) = first.strip_prefix('@') {
        let cron = match alias.to_ascii_lowercase().as_str() {
            "reboot" => {
                return LineKind::Unsupported(
                    "@reboot runs when cron starts; Cronium has no such moment".into(),
                );
            }
            "midnight" => "@daily".to_string(),
            a @ ("yearly" | "annually" | "monthly" | "weekly" | "daily" | "hourly") => {
                format!("@{a}")
            }
            _ => return LineKind::Invalid(format!("unknown schedule {first:?}")),
        };
        (cron, rest)
    } else {
        let mut fields = vec![first];
        let mut rest = rest;
        for _ in 0..4 {
            let (field, after) = token(rest);
            if field.is_empty() {
                return LineKind::Invalid(format!(
                    "{} time fields; a crontab line has 5, then the command",
                    fields.len()
                ));
            }
            fields.push(field);
            rest = after;
        }
        (fields.join(" "), rest)
    };
    let user = if options.system {
        let (user, after) = token(rest);
        if user.is_empty() {
            return LineKind::Invalid("no user field (a system crontab names the user)".into());
        }
        rest = after;
        Some(user.to_string())
    } else {
        None
    };
    if rest.trim().is_empty() {
        return LineKind::Invalid("no command after the schedule".into());
    }
    let (zone_source, timezone) = match (settings.get("CRON_TZ"), settings.get("TZ")) {
        (Some(z), _) => (ZoneSource::CronTz, z.clone()),
        (None, Some(z)) => (ZoneSource::Tz, z.trim_start_matches(':').to_string()),
        (None, None) => (ZoneSource::Default, options.timezone.clone()),
    };
    if let Err(e) = Schedule::cron(&cron, &timezone) {
        return LineKind::Invalid(e.message);
    }
    if let Some(shell) = settings.get("SHELL")
        && !SHELLS.contains(&shell.as_str())
    {
        return LineKind::Unsupported(format!("SHELL={shell}: Cronium runs commands with bash"));
    }
    let (command, stdin) = split_command(rest);
    if command.ends_with('\\') && !command.ends_with("\\\\") {
        return LineKind::Unsupported("the command ends in a backslash".into());
    }
    let mailto = settings.get("MAILTO").map(|to| {
        to.split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect()
    });
    let mut warnings = Vec::new();
    if settings.contains_key("RANDOM_DELAY") {
        warnings.push("RANDOM_DELAY is cronie's; Cronium fires on time".into());
    }
    LineKind::Job(Job {
        cron,
        timezone,
        zone_source,
        user,
        command,
        stdin,
        env: settings
            .iter()
            .filter(|(k, _)| !CRON_ONLY.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        mailto,
        warnings,
    })
}

/// The first blank-separated word and what follows it (blanks skipped).
fn token(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    (&text[..end], text[end..].trim_start())
}

/// Cron's reading of `%`: the command up to the first unescaped `%` (with
/// `\%` as `%`), and the standard input after it (further unescaped `%` as
/// newlines, `\%` as `%`, a final newline added).
fn split_command(text: &str) -> (String, Option<String>) {
    let mut command = String::new();
    let mut chars = text.chars().peekable();
    let mut stdin = None;
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'%') => {
                command.push('%');
                chars.next();
            }
            '%' => {
                stdin = Some(String::new());
                break;
            }
            c => command.push(c),
        }
    }
    if let Some(input) = &mut stdin {
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'%') => {
                    input.push('%');
                    chars.next();
                }
                '%' => input.push('\n'),
                c => input.push(c),
            }
        }
        if !input.is_empty() && !input.ends_with('\n') {
            input.push('\n');
        }
    }
    (command, stdin)
}

impl Job {
    /// The bash script that does what cron does with the line: the
    /// command, fed its standard input through a quoted here-document (no
    /// expansion, as cron writes it verbatim). The braces give the input
    /// to the whole command, as cron's pipe does, and sit on lines of their
    /// own so a `#` in the command cannot comment them out.
    pub fn script(&self) -> String {
        let Some(input) = &self.stdin else {
            return format!("{}\n", self.command);
        };
        let mut delimiter = "CRONIUM_STDIN".to_string();
        while input.lines().any(|l| l == delimiter) {
            delimiter.push('_');
        }
        format!(
            "{{\n{}\n}} <<'{delimiter}'\n{input}{delimiter}\n",
            self.command
        )
    }

    /// The schedule as an event takes it.
    pub fn schedule(&self) -> Schedule {
        Schedule::Cron {
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
        }
    }

    /// The next `n` fire times after `now`, on the schedule's wall clock.
    pub fn next_fires(&self, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        let zone = Tz::from_str(&self.timezone).unwrap_or(Tz::UTC);
        let schedule = self.schedule();
        let mut fires = Vec::with_capacity(n);
        let mut after = now;
        while fires.len() < n {
            let Some(next) = schedule.next_fire(now, after) else {
                break;
            };
            fires.push(next.with_timezone(&zone));
            after = next;
        }
        fires
    }
}

/// Readable, stable event names for a file's commands, in order:
/// `SOURCE: command` (blanks collapsed, shortened to fit), and ` (2)`,
/// ` (3)` after a name already given, so the same file always gives the
/// same names.
pub fn event_names<'a>(source: &str, commands: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for command in commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        let summary: String = words
            .join(" ")
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        // Room for a ` (NN)` suffix.
        let base = shorten(&format!("{source}: {summary}"), NAME_CHARS - 5);
        let mut name = base.clone();
        let mut n = 1;
        while names.contains(&name) {
            n += 1;
            name = format!("{base} ({n})");
        }
        names.push(name);
    }
    names
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// The zone cron reads a host's schedules in: `TZ` when it names one, else
/// `/etc/timezone`'s contents, else the zone `/etc/localtime` links to, else
/// UTC. The caller reads the three (this module does no I/O).
pub fn host_zone(
    tz_env: Option<&str>,
    etc_timezone: Option<&str>,
    localtime_link: Option<&str>,
) -> String {
    let valid = |name: &str| Tz::from_str(name).is_ok().then(|| name.to_string());
    tz_env
        .map(|tz| tz.trim().trim_start_matches(':'))
        .and_then(valid)
        .or_else(|| etc_timezone.map(str::trim).and_then(valid))
        .or_else(|| {
            let link = localtime_link?;
            let (_, zone) = link.split_once("zoneinfo/")?;
            valid(zone)
        })
        .unwrap_or_else(|| "UTC".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(tz: &str) -> Options {
        Options {
            system: false,
            timezone: tz.into(),
        }
    }

    fn job(line: &Line) -> &Job {
        match &line.kind {
            LineKind::Job(job) => job,
            other => panic!("line {}: {other:?}", line.number),
        }
    }

    #[test]
    fn settings_apply_to_the_lines_after_them() {
        let text = "\
# nightly jobs
PATH=/usr/bin:/bin
0 3 * * * backup
  GREETING = \"hello world\"
MAILTO=ops@example.com, dev@example.com
CRON_TZ=Europe/Berlin
5 4 * * * greet

TZ=America/New_York
MAILTO=\"\"
@hourly ping
";
        let lines = parse(text, &user("UTC"));
        assert_eq!(lines.len(), 3, "{lines:?}");
        let first = job(&lines[0]);
        assert_eq!(lines[0].number, 3);
        assert_eq!(first.timezone, "UTC");
        assert_eq!(first.zone_source, ZoneSource::Default);
        assert_eq!(first.mailto, None);
        assert_eq!(first.env.keys().collect::<Vec<_>>(), ["PATH"]);
        let second = job(&lines[1]);
        assert_eq!(second.timezone, "Europe/Berlin");
        assert_eq!(second.env["GREETING"], "hello world");
        assert_eq!(
            second.mailto.as_deref(),
            Some(&["ops@example.com".to_string(), "dev@example.com".to_string()][..])
        );
        assert!(!second.env.contains_key("MAILTO") && !second.env.contains_key("CRON_TZ"));
        let third = job(&lines[2]);
        assert_eq!(third.timezone, "Europe/Berlin", "CRON_TZ wins over TZ");
        assert_eq!(
            third.env["TZ"], "America/New_York",
            "TZ reaches the command"
        );
        assert_eq!(third.mailto, Some(vec![]), "MAILTO=\"\" mails nobody");
        assert_eq!(third.cron, "@hourly");
    }

    #[test]
    fn lines_become_jobs_reports_or_errors() {
        // (line, system, what it must be: job cron + command, or a
        // fragment of the report)
        type Case<'a> = (&'a str, bool, Result<(&'a str, &'a str), &'a str>);
        let table: &[Case] = &[
            (
                "0 3 * * * /usr/bin/backup --all",
                false,
                Ok(("0 3 * * *", "/usr/bin/backup --all")),
            ),
            (
                "*/15\t9-17 * * mon-fri  check   -q",
                false,
                Ok(("*/15 9-17 * * mon-fri", "check   -q")),
            ),
            ("@daily rotate", false, Ok(("@daily", "rotate"))),
            ("@MIDNIGHT rotate", false, Ok(("@daily", "rotate"))),
            ("@annually party", false, Ok(("@annually", "party"))),
            (
                "17 * * * * root cd / && run-parts /etc/cron.hourly",
                true,
                Ok(("17 * * * *", "cd / && run-parts /etc/cron.hourly")),
            ),
            (
                "@weekly www-data php cron.php",
                true,
                Ok(("@weekly", "php cron.php")),
            ),
            ("@reboot start-things", false, Err("@reboot")),
            ("@fortnightly x", false, Err("unknown schedule")),
            ("61 * * * * x", false, Err("61")),
            ("0 3 * *", false, Err("4 time fields")),
            ("0 3 * * *", false, Err("no command")),
            ("0 3 * * * root", true, Err("no command")),
            ("* * 32 * * x", false, Err("invalid cron expression")),
            ("0 3 * * * echo a \\", false, Err("backslash")),
            ("BAD-NAME=1", false, Err("BAD-NAME")),
            ("CRON_TZ=Mars/Olympus", false, Err("unknown time zone")),
        ];
        for (text, system, want) in table {
            let options = Options {
                system: *system,
                timezone: "UTC".into(),
            };
            let lines = parse(text, &options);
            assert_eq!(lines.len(), 1, "{text:?}");
            match (&lines[0].kind, want) {
                (LineKind::Job(job), Ok((cron, command))) => {
                    assert_eq!(
                        (job.cron.as_str(), job.command.as_str()),
                        (*cron, *command),
                        "{text:?}"
                    );
                    assert_eq!(job.user.is_some(), *system, "{text:?}");
                }
                (LineKind::Unsupported(why) | LineKind::Invalid(why), Err(needle)) => {
                    assert!(why.contains(needle), "{text:?}: {why}");
                }
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn unsupported_and_invalid_are_told_apart() {
        let lines = parse("@reboot x\n61 * * * * y\n", &user("UTC"));
        assert!(matches!(lines[0].kind, LineKind::Unsupported(_)));
        assert!(matches!(lines[1].kind, LineKind::Invalid(_)));
    }

    #[test]
    fn a_shell_other_than_sh_or_bash_is_reported() {
        let text = "SHELL=/bin/bash\n1 * * * * a\nSHELL=/usr/bin/zsh\n2 * * * * b\nSHELL=/bin/sh\n3 * * * * c\n";
        let kinds: Vec<bool> = parse(text, &user("UTC"))
            .iter()
            .map(|l| matches!(l.kind, LineKind::Job(_)))
            .collect();
        assert_eq!(kinds, [true, false, true]);
    }

    #[test]
    fn percent_signs_split_command_and_input_as_cron_does() {
        let table: &[(&str, &str, Option<&str>)] = &[
            ("date +\\%Y-\\%m-\\%d", "date +%Y-%m-%d", None),
            (
                "mail -s hi root%line one%line two",
                "mail -s hi root",
                Some("line one\nline two\n"),
            ),
            ("cat%a\\%b%", "cat", Some("a%b\n")),
            ("cat%", "cat", Some("")),
            ("echo a\\b", "echo a\\b", None),
        ];
        for (command, want_command, want_stdin) in table {
            let (got, stdin) = split_command(command);
            assert_eq!(got, *want_command, "{command:?}");
            assert_eq!(stdin.as_deref(), *want_stdin, "{command:?}");
        }
    }

    #[test]
    fn the_script_feeds_the_input_to_the_whole_command() {
        let lines = parse(
            "0 * * * * grep x | wc -l # count%x1%y%CRONIUM_STDIN\n",
            &user("UTC"),
        );
        let script = job(&lines[0]).script();
        assert_eq!(
            script,
            "{\ngrep x | wc -l # count\n} <<'CRONIUM_STDIN_'\nx1\ny\nCRONIUM_STDIN\nCRONIUM_STDIN_\n"
        );
        let plain = parse("0 * * * * echo hi\n", &user("UTC"));
        assert_eq!(job(&plain[0]).script(), "echo hi\n");
    }

    #[test]
    fn the_script_runs_under_bash_as_cron_would_run_the_line() {
        let Ok(out) = std::process::Command::new("bash")
            .arg("-c")
            .arg(
                job(&parse("0 * * * * tr a-z A-Z; cat%one%two \\% three", &user("UTC"))[0])
                    .script(),
            )
            .output()
        else {
            return; // no bash here
        };
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ONE\nTWO % THREE\n");
    }

    #[test]
    fn names_are_readable_stable_and_unique() {
        let long = "x".repeat(200);
        let names = event_names(
            "crontab",
            ["backup  --all", "backup --all", "ping\thost", long.as_str()],
        );
        assert_eq!(names[0], "crontab: backup --all");
        assert_eq!(names[1], "crontab: backup --all (2)");
        assert_eq!(names[2], "crontab: ping host");
        assert!(names[3].chars().count() <= NAME_CHARS && names[3].ends_with('…'));
        for name in &names {
            crate::EventName::new(name).unwrap();
        }
    }

    #[test]
    fn next_fires_are_on_the_schedules_wall_clock() {
        let lines = parse("CRON_TZ=Europe/Berlin\n30 2 * * * x\n", &user("UTC"));
        let now: DateTime<Utc> = "2026-03-28T12:00:00Z".parse().unwrap();
        let fires: Vec<String> = job(&lines[0])
            .next_fires(now, 3)
            .iter()
            .map(|t| t.format("%Y-%m-%d %H:%M %Z").to_string())
            .collect();
        // 2026-03-29 02:30 does not exist in Berlin: it fires at 03:00.
        assert_eq!(
            fires,
            [
                "2026-03-29 03:00 CEST",
                "2026-03-30 02:30 CEST",
                "2026-03-31 02:30 CEST"
            ]
        );
    }

    #[test]
    fn the_host_zone_comes_from_tz_then_etc_timezone_then_localtime() {
        let table = [
            (
                (Some(":Europe/Paris"), Some("Asia/Tokyo"), None),
                "Europe/Paris",
            ),
            ((Some("garbage"), Some("Asia/Tokyo\n"), None), "Asia/Tokyo"),
            (
                (None, None, Some("/usr/share/zoneinfo/America/Chicago")),
                "America/Chicago",
            ),
            ((None, Some("Nowhere/Land"), None), "UTC"),
            ((None, None, None), "UTC"),
        ];
        for ((tz, etc, link), want) in table {
            assert_eq!(host_zone(tz, etc, link), want);
        }
    }
}
