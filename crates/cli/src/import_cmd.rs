//! `cronium import crontab`: a crontab's lines as events, planned against what the server has, then applied.
//!
//! The file is read by `cronium_core::crontab` (pure); this module decides,
//! per line, whether its event is to be created, updated or left alone, and
//! does it over the API. An imported event carries the tag `crontab` and a
//! description that starts `Imported from SOURCE, line N:`; a line finds its
//! event by name (the command) or, when the command changed, by that
//! marker, so importing the same file again changes nothing.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use chrono::Utc;
use clap::Subcommand;
use cronium_core::crontab::{self, Job, LineKind, Options, ZoneSource};
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, items, print_json};

/// The tag every imported event carries.
const TAG: &str = "crontab";
/// Fire times the plan shows per line.
const FIRES_SHOWN: usize = 3;

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Make events of a crontab's lines (`crontab -l`, /etc/crontab,
    /// /etc/cron.d/*): schedule, command as a bash script, settings as its
    /// environment, CRON_TZ as its zone, MAILTO as a failure notification.
    /// Importing the same file again changes nothing.
    Crontab(CrontabArgs),
}

#[derive(Debug, clap::Args)]
pub struct CrontabArgs {
    /// The crontab file, or - for standard input
    #[arg(default_value = "-", value_name = "FILE|-")]
    pub file: PathBuf,
    /// A system crontab, with a user field before the command [default:
    /// for /etc/crontab and /etc/cron.d/*]
    #[arg(long)]
    pub system: bool,
    /// Zone of the schedules with no CRON_TZ or TZ before them [default:
    /// this machine's, as cron would read them]
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    /// Run the events on this server over SSH
    #[arg(long, value_name = "NAME")]
    pub server: Option<String>,
    /// What the events' names start with [default: the file's name, or
    /// `crontab` for standard input]
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Create new events paused, to switch them on one by one
    #[arg(long)]
    pub paused: bool,
    /// Print the plan, with each event's next fire times; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Import nothing if any line has an error
    #[arg(long)]
    pub strict: bool,
}

pub fn run(cmd: ImportCommand, args: &ClientArgs, out: &mut dyn Write) -> Result<u8> {
    match cmd {
        ImportCommand::Crontab(a) => import_crontab(&a, args, out),
    }
}

/// What happens to one line.
#[derive(Debug)]
enum Step {
    Event(Box<Planned>),
    Skipped(String),
    Error(String),
}

#[derive(Debug)]
struct Planned {
    name: String,
    job: Job,
    body: serde_json::Map<String, Value>,
    /// The event this line already has.
    existing: Option<i64>,
    /// Fields that differ from it (empty: unchanged).
    changes: Vec<String>,
    /// The email channel MAILTO stands for, and whether the event must
    /// still be given its failure notification.
    notify: Option<(i64, String, bool)>,
    warnings: Vec<String>,
    /// After applying: the event's id, or why it failed.
    done: Option<Result<i64, String>>,
}

impl Planned {
    fn verb(&self, dry_run: bool) -> &'static str {
        let (plan, past) = match (self.existing, self.changes.is_empty()) {
            (None, _) => ("create", "created"),
            (Some(_), false) => ("update", "updated"),
            (Some(_), true) => ("unchanged", "unchanged"),
        };
        match (&self.done, dry_run) {
            (Some(Err(_)), _) => "failed",
            (_, true) => plan,
            _ => past,
        }
    }
}

struct Line {
    number: usize,
    text: String,
    step: Step,
}

fn import_crontab(a: &CrontabArgs, args: &ClientArgs, out: &mut dyn Write) -> Result<u8> {
    let stdin = a.file.as_os_str() == "-";
    let text = if stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the crontab from standard input")?;
        text
    } else {
        std::fs::read_to_string(&a.file)
            .with_context(|| format!("cannot read {}", a.file.display()))?
    };
    let system = a.system || (!stdin && is_system_crontab(&a.file));
    let (timezone, zone_note) = match &a.timezone {
        Some(zone) => (zone.clone(), "--timezone"),
        None => (local_zone(), "this machine's zone"),
    };
    cronium_core::Schedule::cron("@daily", &timezone)
        .map_err(|e| anyhow!("--timezone: {}", e.message))?;
    let source = match &a.source {
        Some(s) => s.clone(),
        None if stdin => "crontab".into(),
        None => a
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "crontab".into()),
    };
    let parsed = crontab::parse(
        &text,
        &Options {
            system,
            timezone: timezone.clone(),
        },
    );
    let client = Client::new(args)?;
    let mut lines = plan(&client, a, &source, parsed)?;
    // Lines cron would refuse, and lines whose event cannot be made (a name
    // taken by an event of the user's own).
    let errors = lines
        .iter()
        .filter(|l| matches!(l.step, Step::Error(_)))
        .count();
    let dry_run = a.dry_run || (a.strict && errors > 0);
    if !dry_run {
        apply(&client, &mut lines);
    }
    let failed = lines
        .iter()
        .filter(|l| matches!(&l.step, Step::Event(p) if matches!(p.done, Some(Err(_)))))
        .count();
    if client.json {
        print_json(&report_json(&lines, &timezone, zone_note, dry_run), out)?;
    } else {
        print_plan(&lines, &timezone, zone_note, dry_run, out)?;
    }
    for line in &lines {
        if let Step::Error(why) = &line.step {
            eprintln!("cronium: line {}: {why}", line.number);
        }
    }
    if a.strict && errors > 0 {
        bail!("nothing imported: {errors} line(s) with errors (--strict)");
    }
    if failed > 0 {
        bail!("{failed} event(s) could not be imported (see above)");
    }
    Ok(0)
}

/// `/etc/crontab` and `/etc/cron.d/*` have a user field.
fn is_system_crontab(path: &Path) -> bool {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    path == Path::new("/etc/crontab") || path.parent() == Some(Path::new("/etc/cron.d"))
}

/// The zone cron on this machine reads schedules in.
fn local_zone() -> String {
    let tz = std::env::var("TZ").ok();
    let etc = std::fs::read_to_string("/etc/timezone").ok();
    let link = std::fs::read_link("/etc/localtime")
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    crontab::host_zone(tz.as_deref(), etc.as_deref(), link.as_deref())
}

/// Every line's step, from the file and what the server has.
fn plan(
    client: &Client,
    a: &CrontabArgs,
    source: &str,
    parsed: Vec<crontab::Line>,
) -> Result<Vec<Line>> {
    let events = all_events(client)?;
    let mail_wanted = parsed.iter().any(
        |l| matches!(&l.kind, LineKind::Job(j) if j.mailto.as_ref().is_some_and(|m| !m.is_empty())),
    );
    let channels = if mail_wanted {
        client
            .get("/channels")?
            .as_array()
            .cloned()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let server = a
        .server
        .as_deref()
        .map(|name| crate::event_cmd::server_id(client, name))
        .transpose()?;
    let names = crontab::event_names(
        source,
        parsed.iter().filter_map(|l| match &l.kind {
            LineKind::Job(job) => Some(job.command.as_str()),
            _ => None,
        }),
    );
    // An event found by its line's marker is that line's only if no line
    // of the file has its name (else that line is its own).
    let all_names: HashSet<String> = names.iter().cloned().collect();
    let mut names = names.into_iter();
    let by_name: BTreeMap<&str, &Value> = events
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e)))
        .collect();
    let imported = |e: &Value| {
        e["tags"]
            .as_array()
            .is_some_and(|t| t.contains(&json!(TAG)))
    };
    let mut claimed: HashSet<i64> = HashSet::new();
    let mut lines = Vec::new();
    for line in parsed {
        let step = match line.kind {
            LineKind::Unsupported(why) => Step::Skipped(why),
            LineKind::Invalid(why) => Step::Error(why),
            LineKind::Job(job) => {
                let name = names.next().expect("a name per job");
                let marker = format!("Imported from {source}, line {}:", line.number);
                let found = match by_name.get(name.as_str()) {
                    Some(e) if !imported(e) => {
                        lines.push(Line {
                            number: line.number,
                            text: line.text,
                            step: Step::Error(format!(
                                "an event named {name:?} exists and was not imported from a crontab; rename it or pass --source"
                            )),
                        });
                        continue;
                    }
                    Some(e) => Some(*e),
                    // The command changed: the event made from this line before.
                    None => events.iter().find(|e| {
                        imported(e)
                            && e["description"]
                                .as_str()
                                .is_some_and(|d| d.starts_with(&marker))
                            && e["name"].as_str().is_some_and(|n| !all_names.contains(n))
                    }),
                };
                let found = found.filter(|e| e["id"].as_i64().is_some_and(|id| claimed.insert(id)));
                let mut description = format!("{marker} {}", line.text.trim());
                if let Some(user) = &job.user {
                    description.push_str(&format!(
                        "\nIn cron it ran as user {user}; Cronium runs it as its own user."
                    ));
                }
                let body = event_body(&name, &description, &job, server, a.paused);
                let changes = found.map(|e| differences(e, &body)).unwrap_or_default();
                let mut warnings = job.warnings.clone();
                let notify = match job.mailto.as_deref() {
                    Some(to) if !to.is_empty() => match email_channel(&channels, to) {
                        Some((id, channel)) => Some((id, channel, true)),
                        None => {
                            warnings.push(format!(
                                "MAILTO={}: no email channel sends to it, so no failure notification (add one with `cronium channel add NAME --email {} --smtp HOST`, then import again)",
                                to.join(","),
                                to.join(",")
                            ));
                            None
                        }
                    },
                    _ => None,
                };
                Step::Event(Box::new(Planned {
                    name,
                    job,
                    body,
                    existing: found.and_then(|e| e["id"].as_i64()),
                    changes,
                    notify,
                    warnings,
                    done: None,
                }))
            }
        };
        lines.push(Line {
            number: line.number,
            text: line.text,
            step,
        });
    }
    // An existing event already notifying its channel on failure needs nothing.
    for line in &mut lines {
        if let Step::Event(p) = &mut line.step
            && let (Some(id), Some((channel, _, missing))) = (p.existing, &mut p.notify)
        {
            let actions = client.get(&format!("/events/{id}/actions"))?;
            *missing = !actions.as_array().into_iter().flatten().any(|act| {
                act["kind"] == "notify"
                    && act["when"] == "failure"
                    && act["channel"] == json!(*channel)
            });
            if *missing {
                p.changes.push("failure notification".into());
            }
        }
    }
    Ok(lines)
}

/// Every event on the server, page by page.
fn all_events(client: &Client) -> Result<Vec<Value>> {
    let mut events = Vec::new();
    loop {
        let page = client.get(&format!("/events?limit=500&offset={}", events.len()))?;
        let got = items(&page);
        events.extend_from_slice(got);
        let total = page["total"].as_u64().unwrap_or(0) as usize;
        if got.is_empty() || events.len() >= total {
            return Ok(events);
        }
    }
}

/// The first email channel that sends to every MAILTO address.
fn email_channel(channels: &[Value], to: &[String]) -> Option<(i64, String)> {
    channels
        .iter()
        .filter(|c| c["kind"] == "email")
        .find(|c| {
            let sends: Vec<String> = c["email"]["to"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_ascii_lowercase))
                .collect();
            to.iter().all(|a| sends.contains(&a.to_ascii_lowercase()))
        })
        .and_then(|c| Some((c["id"].as_i64()?, c["name"].as_str()?.to_string())))
}

/// The API's fields for a line's event.
fn event_body(
    name: &str,
    description: &str,
    job: &Job,
    server: Option<i64>,
    paused: bool,
) -> serde_json::Map<String, Value> {
    let mut body = serde_json::Map::new();
    body.insert("name".into(), json!(name));
    body.insert("description".into(), json!(description));
    body.insert("interpreter".into(), json!("bash"));
    body.insert("content".into(), json!(job.script()));
    body.insert("env".into(), json!(job.env));
    body.insert(
        "schedule".into(),
        json!({"type": "cron", "cron": job.cron, "timezone": job.timezone}),
    );
    body.insert(
        "runLocation".into(),
        json!(if server.is_some() { "remote" } else { "local" }),
    );
    body.insert(
        "targetServers".into(),
        json!(server.into_iter().collect::<Vec<_>>()),
    );
    body.insert("tags".into(), json!([TAG]));
    if paused {
        body.insert("status".into(), json!("paused"));
    }
    body
}

/// The fields of `body` the event has otherwise. Tags and status are the
/// user's once the event exists: a re-import leaves them as they are.
fn differences(event: &Value, body: &serde_json::Map<String, Value>) -> Vec<String> {
    body.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "tags" | "status"))
        .filter(|(k, v)| match k.as_str() {
            "schedule" => {
                let s = &event["schedule"];
                s["type"] != "cron" || s["cron"] != v["cron"] || s["timezone"] != v["timezone"]
            }
            _ => &event[k.as_str()] != *v,
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// Creates and updates what the plan says; a failure is kept on its line
/// and the others go on.
fn apply(client: &Client, lines: &mut [Line]) {
    for line in lines.iter_mut() {
        let Step::Event(p) = &mut line.step else {
            continue;
        };
        let result = (|| -> Result<i64> {
            let id = match p.existing {
                None => {
                    let event = client.post("/events", &Value::Object(p.body.clone()))?;
                    event["id"]
                        .as_i64()
                        .ok_or_else(|| anyhow!("no id in {event}"))?
                }
                Some(id) => {
                    let patch: serde_json::Map<String, Value> = p
                        .body
                        .iter()
                        .filter(|(k, _)| p.changes.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if !patch.is_empty() {
                        client.patch(&format!("/events/{id}"), &Value::Object(patch))?;
                    }
                    id
                }
            };
            if let Some((channel, _, true)) = p.notify {
                client.post(
                    &format!("/events/{id}/actions"),
                    &json!({"when": "failure", "kind": "notify", "channel": channel}),
                )?;
            }
            Ok(id)
        })();
        p.done = Some(result.map_err(|e| format!("{e:#}")));
    }
}

fn zone_text(job: &Job, default_note: &str) -> String {
    match job.zone_source {
        ZoneSource::CronTz => format!("{}, from CRON_TZ", job.timezone),
        ZoneSource::Tz => format!("{}, from TZ", job.timezone),
        ZoneSource::Default => format!("{}, {default_note}", job.timezone),
    }
}

fn print_plan(
    lines: &[Line],
    timezone: &str,
    zone_note: &str,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<()> {
    writeln!(
        out,
        "Schedules without CRON_TZ or TZ are read in {timezone} ({zone_note})."
    )?;
    let now = Utc::now();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in lines {
        match &line.step {
            Step::Skipped(why) => {
                *counts.entry("skipped").or_default() += 1;
                writeln!(out, "line {}: skipped: {why}", line.number)?;
                writeln!(out, "    {}", line.text.trim())?;
            }
            Step::Error(why) => {
                *counts.entry("error").or_default() += 1;
                writeln!(out, "line {}: error: {why}", line.number)?;
                writeln!(out, "    {}", line.text.trim())?;
            }
            Step::Event(p) => {
                let verb = p.verb(dry_run);
                *counts.entry(verb).or_default() += 1;
                write!(out, "line {}: {verb} {:?}", line.number, p.name)?;
                match (p.done.as_ref(), p.existing.as_ref()) {
                    (Some(Ok(id)), _) | (None, Some(id)) => write!(out, " (event {id})")?,
                    _ => {}
                }
                if !p.changes.is_empty() && p.existing.is_some() {
                    write!(out, ": {}", p.changes.join(", "))?;
                }
                writeln!(out)?;
                if let Some(Err(why)) = &p.done {
                    writeln!(out, "    error     {why}")?;
                }
                writeln!(
                    out,
                    "    schedule  {} ({})",
                    p.job.cron,
                    zone_text(&p.job, zone_note)
                )?;
                let fires: Vec<String> = p
                    .job
                    .next_fires(now, FIRES_SHOWN)
                    .iter()
                    .map(|t| t.format("%a %Y-%m-%d %H:%M %Z").to_string())
                    .collect();
                writeln!(out, "    next      {}", fires.join(", "))?;
                if let Some(user) = &p.job.user {
                    writeln!(out, "    user      {user} in cron; runs as Cronium's user")?;
                }
                if let Some((_, channel, _)) = &p.notify {
                    writeln!(out, "    notify    {channel} on failure (MAILTO)")?;
                }
                for warning in &p.warnings {
                    writeln!(out, "    warning   {warning}")?;
                }
            }
        }
    }
    let order = [
        "create",
        "created",
        "update",
        "updated",
        "unchanged",
        "skipped",
        "error",
        "failed",
    ];
    let summary: Vec<String> = order
        .iter()
        .filter_map(|k| counts.get(k).map(|n| format!("{n} {k}")))
        .collect();
    let summary = if summary.is_empty() {
        "nothing to import".to_string()
    } else {
        summary.join(", ")
    };
    let note = if dry_run {
        " (dry run: nothing changed)"
    } else {
        ""
    };
    writeln!(out, "{summary}{note}")?;
    Ok(())
}

fn report_json(lines: &[Line], timezone: &str, zone_note: &str, dry_run: bool) -> Value {
    let now = Utc::now();
    let lines: Vec<Value> = lines
        .iter()
        .map(|line| {
            let mut v = json!({"line": line.number, "text": line.text});
            match &line.step {
                Step::Skipped(why) => {
                    v["action"] = json!("skipped");
                    v["reason"] = json!(why);
                }
                Step::Error(why) => {
                    v["action"] = json!("error");
                    v["reason"] = json!(why);
                }
                Step::Event(p) => {
                    v["action"] = json!(p.verb(dry_run));
                    v["name"] = json!(p.name);
                    v["id"] = match &p.done {
                        Some(Ok(id)) => json!(id),
                        _ => json!(p.existing),
                    };
                    if let Some(Err(why)) = &p.done {
                        v["reason"] = json!(why);
                    }
                    v["schedule"] = p.body["schedule"].clone();
                    v["zoneFrom"] = json!(match p.job.zone_source {
                        ZoneSource::CronTz => "CRON_TZ",
                        ZoneSource::Tz => "TZ",
                        ZoneSource::Default => "default",
                    });
                    v["nextFires"] = p
                        .job
                        .next_fires(now, FIRES_SHOWN)
                        .iter()
                        .map(|t| json!(t.to_rfc3339()))
                        .collect();
                    v["user"] = json!(p.job.user);
                    v["changes"] = json!(p.changes);
                    v["notify"] = json!(
                        p.notify
                            .as_ref()
                            .map(|(id, name, _)| json!({"channel": id, "channelName": name}))
                    );
                    v["warnings"] = json!(p.warnings);
                }
            }
            v
        })
        .collect();
    json!({
        "timezone": timezone,
        "timezoneFrom": zone_note,
        "dryRun": dry_run,
        "lines": lines,
    })
}
