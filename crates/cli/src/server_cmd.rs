//! `cronium server add|list|show|remove`: the SSH targets of remote events.
//! Credentials are read from files and environment variables, never from
//! the command line, and the API never sends them back.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, cell, print_table};

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Register a server
    Add(AddArgs),
    /// List servers
    List,
    /// Show one server (by name or id)
    Show { server: String },
    /// Remove a server (refused while an event targets it)
    Remove { server: String },
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    pub name: String,
    #[arg(long)]
    pub host: String,
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    #[arg(long = "user")]
    pub user: String,
    /// Private key file (ed25519 recommended)
    #[arg(
        long,
        conflicts_with = "password_env",
        required_unless_present = "password_env"
    )]
    pub key: Option<PathBuf>,
    /// Name of the environment variable holding the key's passphrase
    #[arg(long, requires = "key", value_name = "VAR")]
    pub passphrase_env: Option<String>,
    /// Name of the environment variable holding the password
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// The server's host key as a known_hosts line (else pinned on first check)
    #[arg(long, value_name = "LINE")]
    pub known_host: Option<String>,
}

pub fn run(cmd: ServerCommand, args: &ClientArgs, out: &mut dyn Write) -> Result<()> {
    let client = Client::new(args)?;
    match cmd {
        ServerCommand::Add(a) => {
            let mut body = json!({
                "name": a.name, "host": a.host, "port": a.port, "username": a.user,
            });
            if let Some(path) = &a.key {
                let key = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --key {}", path.display()))?;
                body["privateKey"] = json!(key);
            }
            if let Some(var) = &a.passphrase_env {
                body["passphrase"] = json!(secret_from_env(var, "--passphrase-env")?);
            }
            if let Some(var) = &a.password_env {
                body["password"] = json!(secret_from_env(var, "--password-env")?);
            }
            if let Some(line) = &a.known_host {
                body["knownHost"] = json!(line);
            }
            let server = client.post("/servers", &body)?;
            show(&client, &server, out)
        }
        ServerCommand::List => {
            let servers = client.get("/servers")?;
            if client.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&servers)?)?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = servers
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    vec![
                        cell(&s["id"]),
                        cell(&s["name"]),
                        format!(
                            "{}@{}:{}",
                            cell(&s["username"]),
                            cell(&s["host"]),
                            cell(&s["port"])
                        ),
                        cell(&s["authKind"]),
                        if s["knownHost"].is_null() {
                            "no".into()
                        } else {
                            "yes".into()
                        },
                    ]
                })
                .collect();
            print_table(
                out,
                &["ID", "NAME", "ADDRESS", "AUTH", "HOST KEY PINNED"],
                &rows,
            )
        }
        ServerCommand::Show { server } => {
            let id = resolve(&client, &server)?;
            let server = client.get(&format!("/servers/{id}"))?;
            show(&client, &server, out)
        }
        ServerCommand::Remove { server } => {
            let id = resolve(&client, &server)?;
            client.delete(&format!("/servers/{id}"))?;
            if client.json {
                writeln!(out, "{}", json!({"deleted": id}))?;
            } else {
                writeln!(out, "removed server {server}")?;
            }
            Ok(())
        }
    }
}

fn secret_from_env(var: &str, flag: &str) -> Result<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => bail!("{flag} {var}: the environment variable is not set or empty"),
    }
}

fn resolve(client: &Client, server: &str) -> Result<i64> {
    if let Ok(id) = server.parse::<i64>() {
        return Ok(id);
    }
    client
        .get("/servers")?
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == json!(server))
        .and_then(|s| s["id"].as_i64())
        .ok_or_else(|| anyhow!("no server named {server:?}"))
}

fn show(client: &Client, server: &Value, out: &mut dyn Write) -> Result<()> {
    if client.json {
        writeln!(out, "{}", serde_json::to_string_pretty(server)?)?;
        return Ok(());
    }
    for key in [
        "id",
        "name",
        "host",
        "port",
        "username",
        "authKind",
        "knownHost",
        "updatedAt",
    ] {
        writeln!(out, "{key:<10} {}", cell(&server[key]))?;
    }
    Ok(())
}
