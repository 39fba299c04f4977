//! `cronium event create|list|show|edit|delete|payloads|run|action`: events and their actions over the API.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use cronium_payload::Interpreter;
use serde_json::{Map, Value, json};

use crate::channel_cmd::resolve_channel;
use crate::client::{
    Client, ClientArgs, cell, encode, items, print_json, print_table, resolve_event,
};
use crate::payload_cmd::{EnvVar, infer_interpreter, parse_env_arg, parse_interpreter};

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Create an event: a script to run, or an HTTP request to make (--http)
    Create(CreateArgs),
    /// List events
    List(ListArgs),
    /// Show one event (by name or id)
    Show { event: String },
    /// Change an event; only the given fields change
    Edit(EditArgs),
    /// Delete an event and its payloads
    Delete { event: String },
    /// List an event's payload versions
    Payloads { event: String },
    /// Run an event now and print the job's id, or follow its output
    Run(RunArgs),
    /// What the event's jobs set off (notifications, other events): add, list, remove
    #[command(subcommand)]
    Action(ActionCommand),
}

#[derive(Debug, Subcommand)]
pub enum ActionCommand {
    /// Notify a channel, or run another event, when the event's jobs reach
    /// the point --when names (once per job; endings on the final result,
    /// never for an attempt that will be retried)
    #[command(group(clap::ArgGroup::new("does").required(true).args(["notify", "run"])))]
    Add {
        /// The event's name or id
        event: String,
        /// success, failure (failed, timed out or partial), always,
        /// condition (succeeded and its script set the condition to true),
        /// start, or duration_exceeded (with --after); start and
        /// duration_exceeded only notify
        #[arg(long)]
        when: String,
        /// The channel to notify, by name or id
        #[arg(long, value_name = "CHANNEL")]
        notify: Option<String>,
        /// The event to run, by name or id; its input is this run's output,
        /// and its job's context names the job that started it (chains stop
        /// 10 deep)
        #[arg(long, value_name = "EVENT")]
        run: Option<String>,
        /// For duration_exceeded: how long a run may take (90s, 15m, 1h30m)
        #[arg(long, value_name = "DURATION")]
        after: Option<String>,
    },
    /// List an event's actions
    List {
        /// The event's name or id
        event: String,
    },
    /// Remove one of an event's actions by its id (see `action list`)
    Remove {
        /// The event's name or id
        event: String,
        id: i64,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The event's name or id
    pub event: String,
    /// JSON the script reads with `cronium input`
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub input: Option<Value>,
    /// Stream the job's output until it ends, then exit with its status:
    /// the script's exit code, 124 if it timed out, 130 if cancelled, never 0
    /// when it failed on some of its servers (partial)
    #[arg(short, long)]
    pub follow: bool,
}

/// Fields shared by `create` and `edit`.
#[derive(Debug, Clone, clap::Args)]
pub struct Fields {
    #[arg(long)]
    pub description: Option<String>,
    /// bash, python or node [default: from the script's extension]
    #[arg(long, value_parser = parse_interpreter)]
    pub interpreter: Option<Interpreter>,
    /// Environment variable KEY=VALUE, stored in the payload (repeatable; on edit, replaces all)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_arg)]
    pub env: Vec<EnvVar>,
    /// Secret variable, encrypted at rest, never in a payload: KEY=VALUE, or
    /// just KEY to take the value from this shell's environment and keep it
    /// off the command line (repeatable; on edit, replaces all)
    #[arg(long = "secret-env", value_name = "KEY[=VALUE]", value_parser = parse_secret_env_arg)]
    pub secret_env: Vec<EnvVar>,
    /// Cron schedule, 5 or 6 fields, e.g. "0 3 * * *"
    #[arg(long, conflicts_with_all = ["every", "at", "manual"])]
    pub cron: Option<String>,
    /// IANA time zone of --cron [default: UTC]
    #[arg(long, requires = "cron")]
    pub tz: Option<String>,
    /// Fixed interval, e.g. 15m or 1h30m
    #[arg(long, conflicts_with_all = ["at", "manual"])]
    pub every: Option<String>,
    /// Run once at this RFC 3339 time
    #[arg(long, conflicts_with = "manual")]
    pub at: Option<String>,
    /// No schedule: run by hand or through the API only
    #[arg(long)]
    pub manual: bool,
    /// Stop the script after this long, e.g. 30s, 10m, 2h
    #[arg(long)]
    pub timeout: Option<String>,
    #[arg(long)]
    pub retries: Option<u32>,
    /// First retry delay, doubling per retry, e.g. 30s [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub retry_delay: Option<String>,
    /// While an earlier run is queued or running: allow, forbid, queue or replace [default: forbid]
    #[arg(long)]
    pub overlap: Option<String>,
    /// Fires missed while no scheduler ran: skip, run_once or catch_up [default: run_once]
    #[arg(long)]
    pub misfire: Option<String>,
    /// No fire before this RFC 3339 time; anchors --every
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// Stop the schedule after this many runs
    #[arg(long, value_name = "N")]
    pub max_executions: Option<u32>,
    /// With --overlap allow: at most this many runs at once
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<u32>,
    /// Tag (repeatable; on edit, replaces all)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Run on this server over SSH (repeatable; on edit, replaces the targets)
    #[arg(long = "server", value_name = "NAME")]
    pub servers: Vec<String>,
    /// Run on every server with this tag, as they are when each job starts
    /// (repeatable, adds to --server; on edit, replaces the server tags)
    #[arg(long = "server-tag", value_name = "TAG")]
    pub server_tags: Vec<String>,
    /// active, paused, draft or archived
    #[arg(long)]
    pub status: Option<String>,
}

/// The request of an HTTP event (on edit, `--http` replaces the request;
/// its secret headers stay unless `--secret-header` is given).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Make an HTTP request instead of running a script, e.g. --http POST https://example.com/hook
    #[arg(long, num_args = 2, value_names = ["METHOD", "URL"])]
    pub http: Option<Vec<String>>,
    /// Request header NAME:VALUE (repeatable)
    #[arg(long = "header", value_name = "NAME:VALUE", requires = "http")]
    pub headers: Vec<String>,
    /// Secret request header NAME=ENVVAR, its value taken from this shell's
    /// variable ENVVAR and sealed at rest (repeatable)
    #[arg(long = "secret-header", value_name = "NAME=ENVVAR", requires = "http", value_parser = parse_secret_header)]
    pub secret_headers: Vec<(String, String)>,
    /// The request body, read from this file
    #[arg(long, value_name = "FILE", requires = "http")]
    pub body_file: Option<PathBuf>,
    /// A status that counts as success (repeatable) [default: any 2xx]
    #[arg(long = "expect", value_name = "STATUS", requires = "http")]
    pub expect: Vec<u16>,
}

impl HttpArgs {
    /// The API's `http` object, when `--http` was given.
    fn json(&self) -> Result<Option<Value>> {
        let Some([method, url]) = self.http.as_deref() else {
            return Ok(None);
        };
        let mut headers = Map::new();
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| anyhow!("--header {header:?}: expected NAME:VALUE"))?;
            headers.insert(name.trim().into(), json!(value.trim()));
        }
        let mut http = json!({
            "method": method.to_ascii_uppercase(),
            "url": url,
            "headers": headers,
            "expectStatus": self.expect,
        });
        if !self.secret_headers.is_empty() {
            http["secretHeaders"] = self
                .secret_headers
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect::<Map<_, _>>()
                .into();
        }
        if let Some(path) = &self.body_file {
            let body = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --body-file {}", path.display()))?;
            http["body"] = json!(body);
        }
        Ok(Some(http))
    }
}

/// `NAME=ENVVAR`: the header's value comes from the variable, so it never
/// appears on a command line (where `ps` shows it to every user).
fn parse_secret_header(s: &str) -> Result<(String, String), String> {
    let (name, var) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=ENVVAR, got {s:?}"))?;
    let value = std::env::var(var).map_err(|_| {
        format!("{var} is not set in the environment (--secret-header {name}={var})")
    })?;
    Ok((name.to_string(), value))
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Unique name of the event
    #[arg(long)]
    pub name: String,
    /// The script file
    #[arg(long, required_unless_present = "http", conflicts_with = "http")]
    pub script: Option<PathBuf>,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub fields: Fields,
}

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// The event's name or id
    pub event: String,
    /// New name
    #[arg(long)]
    pub rename: Option<String>,
    /// Replace the script with this file
    #[arg(long, conflicts_with = "http")]
    pub script: Option<PathBuf>,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub fields: Fields,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub tag: Option<String>,
    /// Names containing this text
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
}

/// Runs an `event` command; the status is `0` except after `run --follow`,
/// which passes on the job's own.
pub fn run(cmd: EventCommand, args: &ClientArgs, out: &mut dyn Write) -> Result<u8> {
    let client = Client::new(args)?;
    match cmd {
        EventCommand::Run(a) => run_now(&client, a, out),
        other => manage(&client, other, out).map(|()| 0),
    }
}

fn run_now(client: &Client, a: RunArgs, out: &mut dyn Write) -> Result<u8> {
    if a.follow && client.json {
        bail!("--json and --follow do not mix: the output is the job's own");
    }
    let id = resolve_event(client, &a.event)?;
    let body = match a.input {
        Some(input) => json!({ "input": input }),
        None => json!({}),
    };
    let job = client.post(&format!("/events/{id}/run"), &body)?;
    let job_id = job["id"]
        .as_i64()
        .ok_or_else(|| anyhow!("the server's answer has no job id: {job}"))?;
    if a.follow {
        if std::io::stderr().is_terminal() {
            eprintln!(
                "cronium: following job {job_id} (Ctrl-C stops following; `cronium job cancel {job_id}` stops the job)"
            );
        }
        return crate::follow::follow_job(client, job_id, out);
    }
    if client.json {
        print_json(&job, out)?;
    } else {
        writeln!(out, "job {job_id} {}", cell(&job["status"]))?;
    }
    Ok(0)
}

fn parse_json(s: &str) -> Result<Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not JSON: {e}"))
}

fn manage(client: &Client, cmd: EventCommand, out: &mut dyn Write) -> Result<()> {
    match cmd {
        EventCommand::Run(_) => unreachable!("handled by run_now"),
        EventCommand::Action(cmd) => action(client, cmd, out),
        EventCommand::Create(a) => {
            let mut body = fields_json(client, &a.fields)?;
            body.insert("name".into(), json!(a.name));
            if let Some(http) = a.http.json()? {
                body.insert("http".into(), http);
            }
            if let Some(script) = &a.script {
                let interpreter = a
                    .fields
                    .interpreter
                    .or_else(|| infer_interpreter(script))
                    .ok_or_else(|| {
                        anyhow!(
                            "--interpreter is needed: cannot tell it from {}",
                            script.display()
                        )
                    })?;
                body.insert("interpreter".into(), json!(interpreter.as_str()));
                body.insert("content".into(), json!(read_script(script)?));
            }
            let event = client.post("/events", &Value::Object(body))?;
            show(client, &event, out)
        }
        EventCommand::Edit(a) => {
            let id = resolve_event(client, &a.event)?;
            let mut body = fields_json(client, &a.fields)?;
            if let Some(name) = a.rename {
                body.insert("name".into(), json!(name));
            }
            if let Some(script) = &a.script {
                body.insert("content".into(), json!(read_script(script)?));
            }
            if let Some(http) = a.http.json()? {
                body.insert("http".into(), http);
            }
            if body.is_empty() {
                bail!("nothing to change: give at least one field to edit");
            }
            let event = client.patch(&format!("/events/{id}"), &Value::Object(body))?;
            show(client, &event, out)
        }
        EventCommand::Show { event } => {
            let id = resolve_event(client, &event)?;
            let event = client.get(&format!("/events/{id}"))?;
            show(client, &event, out)
        }
        EventCommand::Delete { event } => {
            let id = resolve_event(client, &event)?;
            client.delete(&format!("/events/{id}"))?;
            if client.json {
                writeln!(out, "{}", json!({"deleted": id}))?;
            } else {
                writeln!(out, "deleted event {event}")?;
            }
            Ok(())
        }
        EventCommand::List(a) => {
            let mut query = format!("/events?limit={}&offset={}", a.limit, a.offset);
            for (key, value) in [("status", &a.status), ("tag", &a.tag), ("name", &a.name)] {
                if let Some(v) = value {
                    query.push_str(&format!("&{key}={}", encode(v)));
                }
            }
            let page = client.get(&query)?;
            if client.json {
                return print_json(&page, out);
            }
            let rows: Vec<Vec<String>> = items(&page)
                .iter()
                .map(|e| {
                    vec![
                        cell(&e["id"]),
                        cell(&e["name"]),
                        cell(&e["status"]),
                        schedule_text(&e["schedule"]),
                        cell(&e["interpreter"]),
                        cell(&e["payloadVersion"]),
                        cell(&e["tags"]),
                    ]
                })
                .collect();
            print_table(
                out,
                &[
                    "ID",
                    "NAME",
                    "STATUS",
                    "SCHEDULE",
                    "INTERPRETER",
                    "VERSION",
                    "TAGS",
                ],
                &rows,
            )?;
            writeln!(out, "{} of {} events", rows.len(), page["total"])?;
            Ok(())
        }
        EventCommand::Payloads { event } => {
            let id = resolve_event(client, &event)?;
            let payloads = client.get(&format!("/events/{id}/payloads"))?;
            if client.json {
                return print_json(&payloads, out);
            }
            let rows: Vec<Vec<String>> = payloads
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    vec![
                        cell(&p["version"]),
                        if p["isActive"] == json!(true) {
                            "yes".into()
                        } else {
                            "".into()
                        },
                        cell(&p["size"]),
                        cell(&p["checksum"]),
                        cell(&p["createdAt"]),
                    ]
                })
                .collect();
            print_table(
                out,
                &["VERSION", "ACTIVE", "SIZE", "SHA256", "CREATED"],
                &rows,
            )
        }
    }
}

fn action(client: &Client, cmd: ActionCommand, out: &mut dyn Write) -> Result<()> {
    match cmd {
        ActionCommand::Add {
            event,
            when,
            notify,
            run,
            after,
        } => {
            let id = resolve_event(client, &event)?;
            let mut body = json!({ "when": when });
            if let Some(channel) = notify {
                body["kind"] = json!("notify");
                body["channel"] = json!(resolve_channel(client, &channel)?);
            }
            if let Some(target) = run {
                body["kind"] = json!("run_event");
                body["targetEvent"] = json!(resolve_event(client, &target)?);
            }
            if let Some(after) = after {
                body["after"] = json!(after);
            }
            let action = client.post(&format!("/events/{id}/actions"), &body)?;
            if client.json {
                return print_json(&action, out);
            }
            writeln!(
                out,
                "added action {} to event {event}: {}",
                cell(&action["id"]),
                action_words(&action)
            )?;
            Ok(())
        }
        ActionCommand::List { event } => {
            let id = resolve_event(client, &event)?;
            let actions = client.get(&format!("/events/{id}/actions"))?;
            if client.json {
                return print_json(&actions, out);
            }
            let rows: Vec<Vec<String>> = actions
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|a| {
                    let when = match a["after"].as_str() {
                        Some(after) => format!("{} {after}", cell(&a["when"])),
                        None => cell(&a["when"]),
                    };
                    vec![cell(&a["id"]), when, cell(&a["kind"]), action_target(a)]
                })
                .collect();
            print_table(out, &["ID", "WHEN", "KIND", "TARGET"], &rows)
        }
        ActionCommand::Remove { event, id } => {
            let event_id = resolve_event(client, &event)?;
            client.delete(&format!("/events/{event_id}/actions/{id}"))?;
            if client.json {
                writeln!(out, "{}", json!({"removed": id}))?;
            } else {
                writeln!(out, "removed action {id} of event {event}")?;
            }
            Ok(())
        }
    }
}

/// What an action targets, by name: its channel or its event.
fn action_target(action: &serde_json::Value) -> String {
    let (name, id) = if action["kind"] == "run_event" {
        (&action["targetEventName"], &action["targetEvent"])
    } else {
        (&action["channelName"], &action["channel"])
    };
    name.as_str().map_or_else(|| cell(id), String::from)
}

/// `on failure notify ops`, `on success run deploy`, `on duration_exceeded 10m notify ops`.
fn action_words(action: &serde_json::Value) -> String {
    let mut when = cell(&action["when"]);
    if let Some(after) = action["after"].as_str() {
        when = format!("{when} {after}");
    }
    let verb = if action["kind"] == "run_event" {
        "run"
    } else {
        "notify"
    };
    format!("on {when} {verb} {}", action_target(action))
}

/// `KEY=VALUE`, or `KEY` alone: the value of that variable in our environment.
fn parse_secret_env_arg(s: &str) -> Result<EnvVar, String> {
    if s.contains('=') {
        return parse_env_arg(s);
    }
    match std::env::var(s) {
        Ok(value) => parse_env_arg(&format!("{s}={value}")),
        Err(_) => Err(format!(
            "{s} is not set in the environment (or use KEY=VALUE)"
        )),
    }
}

/// The JSON fields for what the flags say; absent flags are left out, so an
/// edit changes only what was given.
fn fields_json(client: &Client, f: &Fields) -> Result<Map<String, Value>> {
    let mut body = Map::new();
    let env_map = |vars: &[EnvVar]| {
        Value::Object(
            vars.iter()
                .map(|v| (v.key.as_str().to_string(), json!(v.value)))
                .collect(),
        )
    };
    if let Some(d) = &f.description {
        body.insert("description".into(), json!(d));
    }
    if let Some(i) = f.interpreter {
        body.insert("interpreter".into(), json!(i.as_str()));
    }
    if !f.env.is_empty() {
        body.insert("env".into(), env_map(&f.env));
    }
    if !f.secret_env.is_empty() {
        body.insert("secretEnv".into(), env_map(&f.secret_env));
    }
    let schedule = if let Some(cron) = &f.cron {
        Some(json!({"type": "cron", "cron": cron, "timezone": f.tz.as_deref().unwrap_or("UTC")}))
    } else if let Some(every) = &f.every {
        Some(json!({"type": "every", "every": every}))
    } else if let Some(at) = &f.at {
        Some(json!({"type": "at", "at": at}))
    } else if f.manual {
        Some(json!({"type": "manual"}))
    } else {
        None
    };
    if let Some(s) = schedule {
        body.insert("schedule".into(), s);
    }
    if let Some(t) = &f.timeout {
        body.insert("timeout".into(), json!(t));
    }
    if let Some(r) = f.retries {
        body.insert("retries".into(), json!(r));
    }
    let policy = [
        ("retryDelay", f.retry_delay.as_ref().map(|v| json!(v))),
        ("overlap", f.overlap.as_ref().map(|v| json!(v))),
        ("misfire", f.misfire.as_ref().map(|v| json!(v))),
        ("startAt", f.start_at.as_ref().map(|v| json!(v))),
        ("maxExecutions", f.max_executions.map(|v| json!(v))),
        ("maxConcurrent", f.max_concurrent.map(|v| json!(v))),
    ];
    for (name, value) in policy {
        if let Some(value) = value {
            body.insert(name.into(), value);
        }
    }
    if !f.tags.is_empty() {
        body.insert("tags".into(), json!(f.tags));
    }
    if let Some(s) = &f.status {
        body.insert("status".into(), json!(s));
    }
    if !f.servers.is_empty() {
        let ids = f
            .servers
            .iter()
            .map(|name| server_id(client, name))
            .collect::<Result<Vec<_>>>()?;
        body.insert("targetServers".into(), json!(ids));
        body.insert("runLocation".into(), json!("remote"));
    }
    if !f.server_tags.is_empty() {
        body.insert("targetTags".into(), json!(f.server_tags));
        body.insert("runLocation".into(), json!("remote"));
    }
    Ok(body)
}

fn read_script(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --script {}", path.display()))
}

pub(crate) fn server_id(client: &Client, name: &str) -> Result<i64> {
    if let Ok(id) = name.parse::<i64>() {
        return Ok(id);
    }
    let servers = client.get("/servers")?;
    servers
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == json!(name))
        .and_then(|s| s["id"].as_i64())
        .ok_or_else(|| anyhow!("no server named {name:?} (see `cronium server list`)"))
}

/// Where an event runs: `this host`, or its servers and server tags.
fn runs_on(event: &Value) -> String {
    let listed = |key: &str| {
        event[key]
            .as_array()
            .is_some_and(|items| !items.is_empty())
            .then(|| cell(&event[key]))
    };
    match (listed("targetServers"), listed("targetTags")) {
        (None, None) => "this host".into(),
        (Some(ids), None) => format!("servers {ids}"),
        (None, Some(tags)) => format!("servers tagged {tags}"),
        (Some(ids), Some(tags)) => format!("servers {ids} and servers tagged {tags}"),
    }
}

fn show(client: &Client, event: &Value, out: &mut dyn Write) -> Result<()> {
    if client.json {
        return print_json(event, out);
    }
    let env_names = |v: &Value| {
        v.as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let rows = [
        ("id", cell(&event["id"])),
        ("name", cell(&event["name"])),
        ("status", cell(&event["status"])),
        match event["http"].is_object() {
            true => ("request", request_text(&event["http"])),
            false => ("interpreter", cell(&event["interpreter"])),
        },
        ("schedule", schedule_text(&event["schedule"])),
        ("runs on", runs_on(event)),
        ("timeout", cell(&event["timeout"])),
        ("retries", cell(&event["retries"])),
        ("retry delay", cell(&event["retryDelay"])),
        ("overlap", cell(&event["overlap"])),
        ("misfire", cell(&event["misfire"])),
        ("next fires", cell(&event["nextFires"])),
        ("env", env_names(&event["env"])),
        ("secret env", cell(&event["secretEnvKeys"])),
        ("tags", cell(&event["tags"])),
        ("payload version", cell(&event["payloadVersion"])),
        ("updated", cell(&event["updatedAt"])),
    ];
    // An HTTP event has no environment and no payload to speak of.
    let script_only = ["env", "secret env", "payload version"];
    let http = event["http"].is_object();
    for (label, value) in rows {
        if !(http && script_only.contains(&label)) {
            writeln!(out, "{label:<16} {value}")?;
        }
    }
    Ok(())
}

/// `POST https://… (expects 200,202) [secret headers: Authorization]`.
fn request_text(http: &Value) -> String {
    let mut text = format!("{} {}", cell(&http["method"]), cell(&http["url"]));
    let expect = cell(&http["expectStatus"]);
    if !expect.is_empty() {
        text.push_str(&format!(" (expects {expect})"));
    }
    let secret = cell(&http["secretHeaderNames"]);
    if !secret.is_empty() {
        text.push_str(&format!(" [secret headers: {secret}]"));
    }
    text
}

fn schedule_text(s: &Value) -> String {
    match s["type"].as_str() {
        Some("cron") => format!("cron {} ({})", cell(&s["cron"]), cell(&s["timezone"])),
        Some("every") => format!("every {}", cell(&s["every"])),
        Some("at") => format!("at {}", cell(&s["at"])),
        Some(other) => other.to_string(),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_can_come_from_the_environment_instead_of_the_command_line() {
        // SAFETY: this test is the only user of this variable name.
        unsafe { std::env::set_var("CRONIUM_TEST_SECRET_FROM_ENV", "s3cret=x") };
        let var = parse_secret_env_arg("CRONIUM_TEST_SECRET_FROM_ENV").unwrap();
        assert_eq!(var.value, "s3cret=x");
        assert_eq!(parse_secret_env_arg("A=b").unwrap().value, "b");
        assert!(
            parse_secret_env_arg("CRONIUM_TEST_SURELY_UNSET")
                .unwrap_err()
                .contains("not set")
        );
    }

    #[test]
    fn schedules_read_like_their_flags() {
        let table = [
            (
                json!({"type": "cron", "cron": "0 3 * * *", "timezone": "Europe/Berlin"}),
                "cron 0 3 * * * (Europe/Berlin)",
            ),
            (json!({"type": "every", "every": "15m"}), "every 15m"),
            (json!({"type": "manual"}), "manual"),
            (json!(null), "-"),
        ];
        for (schedule, want) in table {
            assert_eq!(schedule_text(&schedule), want);
        }
    }
}
