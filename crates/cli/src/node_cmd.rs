//! `cronium node list`: the servers that use the same database, as each last heartbeated, alive or not, with their clock's offset from the database's.

use std::io::Write;

use anyhow::Result;
use clap::Subcommand;

use crate::client::{Client, ClientArgs, cell, items, print_json, print_table};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the servers on this database: alive (heartbeat within 15 s),
    /// version, start, last heartbeat, clock offset, running jobs
    List,
}

pub fn run(cmd: NodeCommand, args: &ClientArgs, out: &mut dyn Write) -> Result<()> {
    let client = Client::new(args)?;
    match cmd {
        NodeCommand::List => {
            let nodes = client.get("/nodes")?;
            if client.json {
                return print_json(&nodes, out);
            }
            let rows: Vec<Vec<String>> = items(&nodes)
                .iter()
                .map(|n| {
                    let offset = n["clockOffsetMs"].as_i64().unwrap_or(0);
                    let clock = if n["clockSkewed"].as_bool() == Some(true) {
                        format!("{offset:+} ms (skewed)")
                    } else {
                        format!("{offset:+} ms")
                    };
                    vec![
                        cell(&n["id"]),
                        cell(&n["address"]),
                        if n["alive"].as_bool() == Some(true) {
                            "alive"
                        } else {
                            "gone"
                        }
                        .into(),
                        cell(&n["version"]),
                        cell(&n["startedAt"]),
                        cell(&n["heartbeatAt"]),
                        clock,
                        cell(&n["runningJobs"]),
                    ]
                })
                .collect();
            print_table(
                out,
                &[
                    "ID",
                    "ADDRESS",
                    "STATE",
                    "VERSION",
                    "STARTED",
                    "HEARTBEAT",
                    "CLOCK",
                    "RUNNING",
                ],
                &rows,
            )?;
        }
    }
    Ok(())
}
