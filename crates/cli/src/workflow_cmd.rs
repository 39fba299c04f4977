//! `cronium workflow apply|list|show|run|runs|retry|cancel|hook|delete`: workflow definitions kept in files (YAML or JSON) and applied to the server, which keeps a new version only when one changes; their runs started, followed node by node, retried and cancelled.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use cronium_core::WorkflowSpec;
use cronium_core::workflow::Format;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, cell, encode, items, print_json, print_table};
use crate::follow::write_line;

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Apply a definition file: creates the workflow, or makes a new version
    /// when the definition changed (applying it again changes nothing)
    Apply {
        /// The definition, YAML or JSON (by the extension .json); - reads
        /// YAML from standard input
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List workflows
    List,
    /// Print a workflow's current definition as YAML
    Show {
        /// The workflow's name or id
        workflow: String,
    },
    /// Delete a workflow and all its versions
    Delete {
        /// The workflow's name or id
        workflow: String,
    },
    /// Run a workflow now
    Run {
        /// The workflow's name or id
        workflow: String,
        /// JSON input for the nodes without parents
        #[arg(long)]
        input: Option<String>,
        /// Print each node's transitions and its lines, labelled with the
        /// node, until the run ends; exit non-zero unless it succeeded
        #[arg(short, long)]
        follow: bool,
    },
    /// List runs, newest first
    Runs {
        /// Only this workflow's (name or id)
        workflow: Option<String>,
        /// Only runs with this status (queued, running, succeeded, failed,
        /// cancelled, skipped)
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Run a failed or cancelled run's failed part again: every node that
    /// did not succeed, and what follows it
    Retry {
        /// The run's id
        run: i64,
        /// Follow it, as `run --follow` does
        #[arg(short, long)]
        follow: bool,
    },
    /// Cancel a run: pending nodes never start, running ones are stopped
    Cancel {
        /// The run's id
        run: i64,
    },
    /// Make a new webhook key (and signing secret, for a signed webhook)
    /// for a workflow with a webhook trigger; the old key stops working
    Hook {
        /// The workflow's name or id
        workflow: String,
    },
}

/// A webhook key just made, as lines to keep: they are shown only now.
fn hook_lines(hook: &Value, out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "webhook: POST {} (shown once; keep it)",
        cell(&hook["path"])
    )?;
    if let Some(secret) = hook["secret"].as_str() {
        writeln!(out, "signing secret: {secret} (shown once; keep it)")?;
    }
    Ok(())
}

/// Reads and checks a definition here first, so a mistake is reported with
/// its line before anything is sent.
fn read_definition(file: &Path) -> Result<WorkflowSpec> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let format = match file.extension().and_then(|e| e.to_str()) {
        Some("json") => Format::Json,
        _ => Format::Yaml,
    };
    WorkflowSpec::parse(&text, format).map_err(|e| anyhow!("{}: {e}", file.display()))
}

/// A workflow's id from its id or its exact name.
fn resolve(client: &Client, workflow: &str) -> Result<i64> {
    if let Ok(id) = workflow.parse::<i64>() {
        return Ok(id);
    }
    let mut offset = 0;
    let mut matches = Vec::new();
    loop {
        let page = client.get(&format!("/workflows?limit=500&offset={offset}"))?;
        let found = items(&page);
        matches.extend(
            found
                .iter()
                .filter(|w| w["name"] == json!(workflow))
                .filter_map(|w| w["id"].as_i64()),
        );
        offset += found.len() as u64;
        if found.is_empty() || page["total"].as_u64().is_none_or(|t| offset >= t) {
            break;
        }
    }
    match matches.as_slice() {
        [id] => Ok(*id),
        [] => bail!("no workflow named {workflow:?}"),
        _ => bail!("several workflows are named {workflow:?}; use the id"),
    }
}

/// What an apply did, as one line.
fn applied_line(answer: &Value) -> String {
    let name = answer["name"].as_str().unwrap_or_default();
    let version = &answer["version"];
    match (
        answer["changed"].as_bool(),
        answer["previousVersion"].as_u64(),
    ) {
        (Some(false), _) => format!("unchanged {name} (v{version})"),
        (_, Some(from)) => format!("updated {name}: v{from} → v{version}"),
        _ => format!("created {name} (v{version})"),
    }
}

/// How a node stands, as `--follow` reports it: a running node by its
/// job's status (queued or running).
fn node_state(node: &Value) -> String {
    match (node["status"].as_str(), node["jobStatus"].as_str()) {
        (Some("running"), Some(job)) => job.to_string(),
        (status, _) => status.unwrap_or("unknown").to_string(),
    }
}

/// The exit status for a run's end: 0 only for success, 130 for a
/// cancellation (as a shell reports one), else 1.
fn run_exit_status(status: &str) -> u8 {
    match status {
        "succeeded" => 0,
        "cancelled" => 130,
        _ => 1,
    }
}

/// Follows a run until it ends: each node's transitions (on `err`, after
/// `cronium: `) and its job's lines labelled `[node] `, every line once;
/// nodes last decided before pass `since` (a retry keeps them) are left
/// out. Polls the run and its jobs' new lines, a few times a second.
pub fn follow_run(
    client: &Client,
    run: i64,
    since: u64,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8> {
    let mut states: HashMap<String, String> = HashMap::new();
    // Per job, the last line written: a node's retry is a new job.
    let mut written: HashMap<i64, u64> = HashMap::new();
    loop {
        let shown = client.get(&format!("/workflow-runs/{run}"))?;
        for node in shown["nodes"].as_array().map_or(&[][..], Vec::as_slice) {
            let id = node["node"].as_str().unwrap_or_default();
            if node["pass"].as_u64().is_some_and(|pass| pass < since) {
                continue;
            }
            if let Some(job) = node["jobId"].as_i64() {
                loop {
                    let after = written.get(&job).copied().unwrap_or(0);
                    let page = client.get(&format!("/jobs/{job}/logs?after={after}&limit=1000"))?;
                    let lines = items(&page);
                    for line in lines {
                        let mut line = line.clone();
                        line["server"] = match line["server"].as_str() {
                            Some(server) => json!(format!("{id}@{server}")),
                            None => json!(id),
                        };
                        write_line(&line, out, err)?;
                        if let Some(seq) = line["seq"].as_u64() {
                            written.insert(job, seq);
                        }
                    }
                    if lines.len() < 1000 {
                        break;
                    }
                }
            }
            let state = node_state(node);
            if states.get(id) != Some(&state) {
                let job = node["jobId"]
                    .as_i64()
                    .map(|j| format!(" (job {j})"))
                    .unwrap_or_default();
                let reason = node["reason"]
                    .as_str()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                writeln!(err, "cronium: [{id}] {state}{job}{reason}")?;
                states.insert(id.to_string(), state);
            }
        }
        let status = shown["status"].as_str().unwrap_or("unknown");
        if !matches!(status, "queued" | "running") {
            let why = shown["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            writeln!(err, "cronium: run {run} {status}{why}")?;
            out.flush()?;
            return Ok(run_exit_status(status));
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// How often `--follow` asks for the run's state and its new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Runs a `workflow` command; the status is `0` except for a followed run
/// that did not succeed (failures are errors).
pub fn run(cmd: WorkflowCommand, args: &ClientArgs, out: &mut dyn Write) -> Result<u8> {
    match cmd {
        WorkflowCommand::Apply { file } => {
            let spec = read_definition(&file)?;
            let client = Client::new(args)?;
            let answer = client.post("/workflows", &spec.to_json())?;
            if client.json {
                print_json(&answer, out)?;
            } else {
                writeln!(out, "{}", applied_line(&answer))?;
                if let Some(hook) = answer.get("webhook") {
                    hook_lines(hook, out)?;
                }
            }
        }
        WorkflowCommand::List => {
            let client = Client::new(args)?;
            let page = client.get("/workflows?limit=500")?;
            if client.json {
                print_json(&page, out)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = items(&page)
                .iter()
                .map(|w| {
                    vec![
                        cell(&w["id"]),
                        cell(&w["name"]),
                        cell(&w["version"]),
                        w["definition"]["nodes"]
                            .as_array()
                            .map_or(0, Vec::len)
                            .to_string(),
                        cell(&w["definition"]["trigger"]["type"]),
                        cell(&w["updatedAt"]),
                    ]
                })
                .collect();
            print_table(
                out,
                &["ID", "NAME", "VERSION", "NODES", "TRIGGER", "UPDATED"],
                &rows,
            )?;
        }
        WorkflowCommand::Show { workflow } => {
            let client = Client::new(args)?;
            let id = resolve(&client, &workflow)?;
            let shown = client.get(&format!("/workflows/{}", encode(&id.to_string())))?;
            if client.json {
                print_json(&shown, out)?;
                return Ok(0);
            }
            let spec = WorkflowSpec::from_json_value(shown["definition"].clone())
                .map_err(|e| anyhow!("the server's definition does not parse: {e}"))?;
            writeln!(
                out,
                "# {} v{}, updated {}",
                cell(&shown["name"]),
                shown["version"],
                cell(&shown["updatedAt"])
            )?;
            write!(out, "{}", spec.to_yaml())?;
        }
        WorkflowCommand::Delete { workflow } => {
            let client = Client::new(args)?;
            let id = resolve(&client, &workflow)?;
            client.delete(&format!("/workflows/{id}"))?;
            if !client.json {
                writeln!(out, "deleted workflow {workflow}")?;
            }
        }
        WorkflowCommand::Run {
            workflow,
            input,
            follow,
        } => {
            let client = Client::new(args)?;
            let id = resolve(&client, &workflow)?;
            let body = match input {
                Some(text) => json!({ "input": serde_json::from_str::<Value>(&text)
                    .map_err(|e| anyhow!("--input is not JSON: {e}"))? }),
                None => json!({}),
            };
            let started = client.post(&format!("/workflows/{id}/run"), &body)?;
            return started_run(&client, &started, follow, out);
        }
        WorkflowCommand::Runs {
            workflow,
            status,
            limit,
        } => {
            let client = Client::new(args)?;
            let mut query = format!("/workflow-runs?limit={limit}");
            if let Some(workflow) = workflow {
                query.push_str(&format!("&workflow={}", resolve(&client, &workflow)?));
            }
            if let Some(status) = status {
                query.push_str(&format!("&status={}", encode(&status)));
            }
            let page = client.get(&query)?;
            if client.json {
                print_json(&page, out)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = items(&page)
                .iter()
                .map(|r| {
                    vec![
                        cell(&r["id"]),
                        cell(&r["workflowName"]),
                        format!("v{}", r["version"]),
                        cell(&r["status"]),
                        cell(&r["trigger"]),
                        cell(&r["pass"]),
                        cell(&r["createdAt"]),
                        cell(&r["error"]),
                    ]
                })
                .collect();
            print_table(
                out,
                &[
                    "ID", "WORKFLOW", "VERSION", "STATUS", "TRIGGER", "PASS", "CREATED", "ERROR",
                ],
                &rows,
            )?;
        }
        WorkflowCommand::Retry { run, follow } => {
            let client = Client::new(args)?;
            let retried = client.post(&format!("/workflow-runs/{run}/retry"), &json!({}))?;
            return started_run(&client, &retried, follow, out);
        }
        WorkflowCommand::Hook { workflow } => {
            let client = Client::new(args)?;
            let id = resolve(&client, &workflow)?;
            let hook = client.post(&format!("/workflows/{id}/hook"), &json!({}))?;
            if client.json {
                print_json(&hook, out)?;
            } else {
                hook_lines(&hook, out)?;
            }
        }
        WorkflowCommand::Cancel { run } => {
            let client = Client::new(args)?;
            let cancelled = client.post(&format!("/workflow-runs/{run}/cancel"), &json!({}))?;
            if client.json {
                print_json(&cancelled, out)?;
            } else {
                writeln!(out, "cancelling run {run} ({})", cell(&cancelled["status"]))?;
            }
        }
    }
    Ok(0)
}

/// Reports a run just started (or retried), or follows it.
fn started_run(client: &Client, run: &Value, follow: bool, out: &mut dyn Write) -> Result<u8> {
    let id = run["id"]
        .as_i64()
        .ok_or_else(|| anyhow!("the server's run has no id"))?;
    if follow {
        writeln!(
            std::io::stderr(),
            "cronium: run {id} of {} (v{}, pass {})",
            cell(&run["workflowName"]),
            run["version"],
            run["pass"]
        )?;
        let pass = run["pass"].as_u64().unwrap_or(1);
        return follow_run(client, id, pass, out, &mut std::io::stderr());
    }
    if client.json {
        print_json(run, out)?;
    } else {
        writeln!(
            out,
            "run {id} of {} ({})",
            cell(&run["workflowName"]),
            cell(&run["status"])
        )?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_lines_say_what_changed() {
        let line = |v: Value| applied_line(&v);
        assert_eq!(
            line(json!({"name": "n", "version": 1, "changed": true, "previousVersion": null})),
            "created n (v1)"
        );
        assert_eq!(
            line(json!({"name": "n", "version": 3, "changed": true, "previousVersion": 2})),
            "updated n: v2 → v3"
        );
        assert_eq!(
            line(json!({"name": "n", "version": 3, "changed": false, "previousVersion": null})),
            "unchanged n (v3)"
        );
    }
}
