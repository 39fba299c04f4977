//! `cronium server add|edit|import|list|show|check|remove`: the SSH targets of remote events.
//! Credentials are read from files and environment variables, never from
//! the command line, and the API never sends them back.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, cell, print_table};
use crate::server_import::ImportArgs;

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Register a server
    Add(AddArgs),
    /// Change a server: address, login, credentials or its pinned host key
    Edit(EditArgs),
    /// Create or update servers from an Ansible inventory or an ssh_config
    /// file; groups become tags. Hosts that cannot be imported are reported
    /// and left out (exit status 1); importing again changes nothing.
    Import(ImportArgs),
    /// List servers
    List {
        /// Only servers with this tag
        #[arg(long, value_name = "TAG")]
        tag: Option<String>,
    },
    /// Show one server (by name or id)
    Show { server: String },
    /// Connect over SSH and report on the host (host key, system,
    /// interpreters, runner); exits 1 if the check failed. A server without
    /// a pinned host key gets the key seen now pinned (trust on first use).
    Check { server: String },
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
    /// Where the runner and payloads are cached on the host, relative to the
    /// user's home or absolute (default: .cache/cronium)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<String>,
    /// Tag the server (repeatable); events can target servers by tag
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// The server, by name or id
    pub server: String,
    #[arg(long, value_name = "NAME")]
    pub rename: Option<String>,
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long = "user")]
    pub user: Option<String>,
    /// A new private key file (replaces the credentials)
    #[arg(long, conflicts_with = "password_env")]
    pub key: Option<PathBuf>,
    #[arg(long, requires = "key", value_name = "VAR")]
    pub passphrase_env: Option<String>,
    /// A new password, from this environment variable (replaces the credentials)
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// Pin this host key (a known_hosts line, public key or SHA256: fingerprint)
    #[arg(long, value_name = "LINE", conflicts_with = "unpin")]
    pub known_host: Option<String>,
    /// Forget the pinned host key; the next `server check` pins the key it sees
    #[arg(long)]
    pub unpin: bool,
    /// Cache the runner and payloads in DIR on the host, relative to the
    /// user's home or absolute; "" resets to the default (.cache/cronium)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<String>,
    /// Replace the server's tags with these (repeatable)
    #[arg(long = "tag", value_name = "TAG", conflicts_with = "untag")]
    pub tags: Vec<String>,
    /// Remove all of the server's tags
    #[arg(long)]
    pub untag: bool,
}

/// Puts the credentials named by the flags into a request body.
fn add_credentials(
    body: &mut Value,
    key: Option<&PathBuf>,
    passphrase_env: Option<&str>,
    password_env: Option<&str>,
) -> Result<()> {
    if let Some(path) = key {
        let key = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --key {}", path.display()))?;
        body["privateKey"] = json!(key);
    }
    if let Some(var) = passphrase_env {
        body["passphrase"] = json!(secret_from_env(var, "--passphrase-env")?);
    }
    if let Some(var) = password_env {
        body["password"] = json!(secret_from_env(var, "--password-env")?);
    }
    Ok(())
}

/// Runs a server command and returns its exit status: `0`, or `1` when a
/// check ran but failed (its report says in which phase and why).
pub fn run(cmd: ServerCommand, args: &ClientArgs, out: &mut dyn Write) -> Result<u8> {
    let client = &Client::new(args)?;
    let done = |()| 0;
    match cmd {
        ServerCommand::Add(a) => {
            let mut body = json!({
                "name": a.name, "host": a.host, "port": a.port, "username": a.user,
            });
            add_credentials(
                &mut body,
                a.key.as_ref(),
                a.passphrase_env.as_deref(),
                a.password_env.as_deref(),
            )?;
            if let Some(line) = &a.known_host {
                body["knownHost"] = json!(line);
            }
            if let Some(dir) = &a.cache_dir {
                body["cacheDir"] = json!(dir);
            }
            if !a.tags.is_empty() {
                body["tags"] = json!(a.tags);
            }
            let server = client.post("/servers", &body)?;
            show(client, &server, out).map(done)
        }
        ServerCommand::Edit(e) => {
            let id = resolve(client, &e.server)?;
            let mut body = json!({});
            for (field, value) in [
                ("name", e.rename.as_ref()),
                ("host", e.host.as_ref()),
                ("username", e.user.as_ref()),
                ("knownHost", e.known_host.as_ref()),
                ("cacheDir", e.cache_dir.as_ref()),
            ] {
                if let Some(value) = value {
                    body[field] = json!(value);
                }
            }
            if let Some(port) = e.port {
                body["port"] = json!(port);
            }
            if e.unpin {
                body["knownHost"] = json!("");
            }
            if !e.tags.is_empty() || e.untag {
                body["tags"] = json!(e.tags);
            }
            add_credentials(
                &mut body,
                e.key.as_ref(),
                e.passphrase_env.as_deref(),
                e.password_env.as_deref(),
            )?;
            if body.as_object().is_some_and(|b| b.is_empty()) {
                bail!(
                    "nothing to change: give at least one of --rename, --host, --port, --user, --key, --password-env, --known-host, --unpin, --cache-dir, --tag, --untag"
                );
            }
            let server = client.patch(&format!("/servers/{id}"), &body)?;
            show(client, &server, out).map(done)
        }
        ServerCommand::Import(a) => crate::server_import::run(client, &a, out),
        ServerCommand::List { tag } => {
            let servers = match &tag {
                Some(tag) => client.get(&format!("/servers?tag={}", crate::client::encode(tag)))?,
                None => client.get("/servers")?,
            };
            if client.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&servers)?)?;
                return Ok(0);
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
                        host_key_cell(s),
                        cell(&s["tags"]),
                    ]
                })
                .collect();
            print_table(
                out,
                &["ID", "NAME", "ADDRESS", "AUTH", "HOST KEY", "TAGS"],
                &rows,
            )
            .map(done)
        }
        ServerCommand::Show { server } => {
            let id = resolve(client, &server)?;
            let server = client.get(&format!("/servers/{id}"))?;
            show(client, &server, out).map(done)
        }
        ServerCommand::Check { server } => {
            let id = resolve(client, &server)?;
            let report = client.post(&format!("/servers/{id}/check"), &json!({}))?;
            if client.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                print_check(&report, out)?;
            }
            Ok(if report["ok"] == json!(true) { 0 } else { 1 })
        }
        ServerCommand::Remove { server } => {
            let id = resolve(client, &server)?;
            client.delete(&format!("/servers/{id}"))?;
            if client.json {
                writeln!(out, "{}", json!({"deleted": id}))?;
            } else {
                writeln!(out, "removed server {server}")?;
            }
            Ok(0)
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
        "hostKeyFingerprint",
        "cacheDir",
        "tags",
        "updatedAt",
    ] {
        writeln!(out, "{key:<18} {}", cell(&server[key]))?;
    }
    Ok(())
}

/// The pinned key's fingerprint, for the list.
fn host_key_cell(server: &Value) -> String {
    match (
        server["hostKeyFingerprint"].as_str(),
        server["knownHost"].is_null(),
    ) {
        (Some(fingerprint), _) => fingerprint.to_string(),
        (None, true) => "not pinned".into(),
        (None, false) => "unreadable pin".into(),
    }
}

/// The report of `server check`, one fact a line. What the check did not
/// get far enough to learn is left out rather than shown as absent.
fn print_check(report: &Value, out: &mut dyn Write) -> Result<()> {
    let line = |out: &mut dyn Write, label: &str, text: &str| writeln!(out, "{label:<9} {text}");
    line(
        out,
        "server",
        &format!(
            "{} ({}@{}:{})",
            cell(&report["server"]),
            cell(&report["username"]),
            cell(&report["host"]),
            cell(&report["port"])
        ),
    )?;
    let result = match report["error"].as_object() {
        None => "ok".to_string(),
        Some(error) => format!(
            "failed in phase {}: {}",
            cell(&error["phase"]),
            cell(&error["message"])
        ),
    };
    line(out, "result", &result)?;
    let pinned = report["pinned"] == json!(true);
    let key = &report["hostKey"];
    if key.is_object() {
        let how = if report["newlyPinned"] == json!(true) {
            "pinned just now: trusted on first use"
        } else if pinned {
            "already pinned"
        } else {
            "not pinned"
        };
        let text = format!(
            "{} {} ({how})",
            cell(&key["algorithm"]),
            cell(&key["fingerprint"])
        );
        line(out, "host key", &text)?;
    } else if pinned {
        line(out, "host key", "not verified (a key is pinned)")?;
    }
    if let Some(system) = report["system"].as_str() {
        line(out, "system", system)?;
    }
    let interpreters = report["interpreters"].as_array().map(Vec::as_slice);
    let probed = interpreters.is_some_and(|list| !list.is_empty());
    for interpreter in interpreters.unwrap_or_default() {
        let version = interpreter["version"]
            .as_str()
            .or_else(|| interpreter["versionLine"].as_str())
            .unwrap_or("not found");
        line(out, &cell(&interpreter["name"]), version)?;
    }
    if probed {
        let runner = &report["runner"];
        let text = if runner.is_null() {
            "not deployed".to_string()
        } else {
            match runner["version"].as_str() {
                Some(version) => version.to_string(),
                None => format!("unknown version ({})", cell(&runner["raw"])),
            }
        };
        line(out, "runner", &text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(report: Value) -> String {
        let mut out = Vec::new();
        print_check(&report, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_check_that_stopped_early_shows_only_what_it_learnt() {
        let text = printed(json!({
            "server": "web", "host": "10.0.0.5", "port": 22, "username": "deploy",
            "ok": false, "pinned": false, "newlyPinned": false, "hostKey": null,
            "system": null, "interpreters": [], "runner": null,
            "error": { "phase": "connect", "message": "connect to 10.0.0.5:22 failed: refused" },
        }));
        assert_eq!(
            text,
            "server    web (deploy@10.0.0.5:22)\n\
             result    failed in phase connect: connect to 10.0.0.5:22 failed: refused\n"
        );
    }

    #[test]
    fn a_missing_interpreter_and_an_unversioned_runner_say_so() {
        let text = printed(json!({
            "server": "web", "host": "h", "port": 2222, "username": "u",
            "ok": true, "pinned": true, "newlyPinned": false,
            "hostKey": { "algorithm": "ssh-ed25519", "fingerprint": "SHA256:x" },
            "system": "Linux aarch64",
            "interpreters": [
                { "name": "bash", "version": "5.2", "versionLine": "GNU bash, version 5.2" },
                { "name": "node", "version": null, "versionLine": null },
            ],
            "runner": { "version": null, "raw": "garbage" },
            "error": null,
        }));
        for line in [
            "host key  ssh-ed25519 SHA256:x (already pinned)",
            "system    Linux aarch64",
            "bash      5.2",
            "node      not found",
            "runner    unknown version (garbage)",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
    }
}
