//! `cronium token create|list|revoke`: API tokens. A token's secret is shown
//! once, when it is created; the server keeps only its hash.

use std::io::Write;

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use crate::client::{Client, ClientArgs, cell, print_table};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret (shown only this once)
    Create {
        #[arg(long)]
        name: String,
        /// admin, editor or viewer
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// List tokens (without secrets)
    List,
    /// Revoke a token by id
    Revoke { id: i64 },
}

pub fn run(cmd: TokenCommand, args: &ClientArgs, out: &mut dyn Write) -> Result<()> {
    let client = Client::new(args)?;
    match cmd {
        TokenCommand::Create { name, role } => {
            let token = client.post("/tokens", &json!({"name": name, "role": role}))?;
            if client.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&token)?)?;
            } else {
                writeln!(
                    out,
                    "created token {} ({}, id {})",
                    cell(&token["name"]),
                    cell(&token["role"]),
                    cell(&token["id"])
                )?;
                writeln!(out, "{}", cell(&token["token"]))?;
                eprintln!("cronium: store this token now; it cannot be shown again");
            }
            Ok(())
        }
        TokenCommand::List => {
            let tokens = client.get("/tokens")?;
            if client.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&tokens)?)?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = tokens
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    vec![
                        cell(&t["id"]),
                        cell(&t["name"]),
                        cell(&t["role"]),
                        cell(&t["createdAt"]),
                        cell(&t["lastUsedAt"]),
                        cell(&t["revokedAt"]),
                    ]
                })
                .collect();
            print_table(
                out,
                &["ID", "NAME", "ROLE", "CREATED", "LAST USED", "REVOKED"],
                &rows,
            )
        }
        TokenCommand::Revoke { id } => {
            client.delete(&format!("/tokens/{id}"))?;
            if client.json {
                writeln!(out, "{}", json!({"revoked": id}))?;
            } else {
                writeln!(out, "revoked token {id}")?;
            }
            Ok(())
        }
    }
}
