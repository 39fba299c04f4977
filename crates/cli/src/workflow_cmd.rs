//! `cronium workflow apply|list|show|delete`: workflow definitions kept in files (YAML or JSON) and applied to the server, which keeps a new version only when one changes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use cronium_core::WorkflowSpec;
use cronium_core::workflow::Format;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, cell, encode, items, print_json, print_table};

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

/// Runs a `workflow` command; the status is always `0` (failures are errors).
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
