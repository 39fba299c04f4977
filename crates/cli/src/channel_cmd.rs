//! `cronium channel add|list|show|test|remove`: where notifications go. A webhook's signing secret and an email relay's password come from an environment variable, never the command line (a signing secret the server makes is printed once); a Slack or Discord URL, itself a secret, preferably does too.

use std::io::Write;

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, cell, print_json, print_table};

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Add a channel: a signed webhook (without --secret-env the server
    /// makes a signing secret and it is printed once), a Slack or Discord
    /// incoming webhook, or email through an SMTP relay (--email with
    /// --smtp)
    Add(Box<AddArgs>),
    /// List channels
    List,
    /// Show one channel (by name or id)
    Show { channel: String },
    /// Send a channel a test message now and print what the receiver
    /// answered; exits non-zero unless it answered 2xx
    Test { channel: String },
    /// Remove a channel (refused while an event's action notifies it)
    Remove { channel: String },
}

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("receiver")
        .required(true)
        .args(["webhook", "slack", "slack_env", "discord", "discord_env", "email"]),
))]
pub struct AddArgs {
    /// Unique name: letters, digits, . _ -
    pub name: String,
    /// POST a signed JSON message to this URL (Standard Webhooks)
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Name of the environment variable holding the signing secret
    /// (whsec_ + base64); kept off the command line, where `ps` shows it
    #[arg(long, value_name = "VAR", requires = "webhook")]
    pub secret_env: Option<String>,
    /// Post a summary to this Slack incoming-webhook URL (a secret:
    /// prefer --slack-env)
    #[arg(long, value_name = "URL")]
    pub slack: Option<String>,
    /// Name of the environment variable holding the Slack webhook URL
    #[arg(long, value_name = "VAR")]
    pub slack_env: Option<String>,
    /// Post a summary to this Discord webhook URL (a secret: prefer
    /// --discord-env)
    #[arg(long, value_name = "URL")]
    pub discord: Option<String>,
    /// Name of the environment variable holding the Discord webhook URL
    #[arg(long, value_name = "VAR")]
    pub discord_env: Option<String>,
    /// Mail a plain-text message to these addresses (1 to 20, comma
    /// separated) through the relay --smtp names
    #[arg(
        long,
        value_name = "ADDR[,ADDR…]",
        value_delimiter = ',',
        requires = "smtp"
    )]
    pub email: Option<Vec<String>>,
    /// The SMTP relay: HOST or HOST:PORT (the port defaults by
    /// --smtp-tls: 587 starttls, 465 tls, 25 none)
    #[arg(long, value_name = "HOST[:PORT]")]
    pub smtp: Option<String>,
    /// How to reach the relay: starttls (default), tls (from the first
    /// byte) or none (no password allowed then)
    #[arg(long, value_name = "MODE")]
    pub smtp_tls: Option<String>,
    /// The sender (default: --smtp-user if it is an address, else
    /// cronium@ the relay's name)
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,
    /// The user the relay authenticates (with --smtp-password-env)
    #[arg(long, value_name = "USER")]
    pub smtp_user: Option<String>,
    /// Name of the environment variable holding the relay's password;
    /// kept off the command line, where `ps` shows it
    #[arg(long, value_name = "VAR")]
    pub smtp_password_env: Option<String>,
    /// A PEM file of CA certificates to trust for the relay (one signed
    /// by a private CA)
    #[arg(long, value_name = "PEM")]
    pub smtp_ca_file: Option<std::path::PathBuf>,
}

impl AddArgs {
    /// The `email` settings of an email channel's request.
    fn email_settings(&self, to: &[String]) -> Result<Value> {
        if self.smtp.is_none() {
            bail!("--email needs --smtp HOST[:PORT], the relay that sends the mail");
        }
        if self.smtp_password_env.is_some() && self.smtp_user.is_none() {
            bail!("--smtp-password-env needs --smtp-user");
        }
        let mut email = json!({ "to": to, "smtp": self.smtp });
        for (key, value) in [
            ("tls", &self.smtp_tls),
            ("from", &self.from),
            ("username", &self.smtp_user),
        ] {
            if let Some(value) = value {
                email[key] = json!(value);
            }
        }
        if let Some(var) = &self.smtp_password_env {
            email["password"] = json!(env_value(var, "--smtp-password-env")?);
        }
        if let Some(path) = &self.smtp_ca_file {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
            email["caCert"] = json!(pem);
        }
        Ok(email)
    }
}

impl AddArgs {
    /// The channel's kind and URL, from whichever option named them.
    fn receiver(&self) -> Result<(&'static str, String)> {
        let from_env = |var: &str, flag: &str| -> Result<String> {
            let value = std::env::var(var)
                .map_err(|_| anyhow!("{var} is not set in the environment ({flag} {var})"))?;
            let value = value.trim();
            if value.is_empty() {
                bail!("{var} is empty ({flag} {var})");
            }
            Ok(value.to_string())
        };
        Ok(match self {
            AddArgs {
                webhook: Some(url), ..
            } => ("webhook", url.clone()),
            AddArgs {
                slack: Some(url), ..
            } => ("slack", url.clone()),
            AddArgs {
                slack_env: Some(var),
                ..
            } => ("slack", from_env(var, "--slack-env")?),
            AddArgs {
                discord: Some(url), ..
            } => ("discord", url.clone()),
            AddArgs {
                discord_env: Some(var),
                ..
            } => ("discord", from_env(var, "--discord-env")?),
            _ => bail!("give --webhook, --slack(-env), --discord(-env) or --email"),
        })
    }
}

pub fn run(cmd: ChannelCommand, args: &ClientArgs, out: &mut dyn Write) -> Result<()> {
    let client = &Client::new(args)?;
    match cmd {
        ChannelCommand::Add(a) => {
            let smtp_flags = a.smtp.is_some()
                || a.smtp_tls.is_some()
                || a.from.is_some()
                || a.smtp_user.is_some()
                || a.smtp_password_env.is_some()
                || a.smtp_ca_file.is_some();
            if a.email.is_none() && smtp_flags {
                bail!(
                    "--smtp, --smtp-tls, --from, --smtp-user, --smtp-password-env and --smtp-ca-file go with --email"
                );
            }
            let body = if let Some(to) = &a.email {
                json!({ "name": a.name, "kind": "email", "email": a.email_settings(to)? })
            } else {
                let (kind, url) = a.receiver()?;
                json!({ "name": a.name, "kind": kind, "url": url })
            };
            let mut body = body;
            if let Some(var) = &a.secret_env {
                body["secret"] = json!(secret_from_env(var)?);
            }
            let channel = client.post("/channels", &body)?;
            if client.json {
                return print_json(&channel, out);
            }
            show(&channel, out)?;
            if let Some(secret) = channel["secret"].as_str() {
                writeln!(out, "{:<10} {secret}", "secret")?;
                eprintln!(
                    "cronium: store this signing secret now (receivers verify messages with it); it cannot be shown again"
                );
            }
            Ok(())
        }
        ChannelCommand::List => {
            let channels = client.get("/channels")?;
            if client.json {
                return print_json(&channels, out);
            }
            let rows: Vec<Vec<String>> = channels
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    vec![
                        cell(&c["id"]),
                        cell(&c["name"]),
                        cell(&c["kind"]),
                        target(c),
                    ]
                })
                .collect();
            print_table(out, &["ID", "NAME", "KIND", "URL"], &rows)
        }
        ChannelCommand::Show { channel } => {
            let id = resolve_channel(client, &channel)?;
            let channel = client.get(&format!("/channels/{id}"))?;
            if client.json {
                return print_json(&channel, out);
            }
            show(&channel, out)
        }
        ChannelCommand::Test { channel } => {
            let id = resolve_channel(client, &channel)?;
            let answer = client.post(&format!("/channels/{id}/test"), &json!({}))?;
            if client.json {
                print_json(&answer, out)?;
            } else {
                for key in ["status", "body", "error"] {
                    writeln!(out, "{key:<10} {}", cell(&answer[key]))?;
                }
            }
            match answer["status"].as_u64() {
                Some(200..=299) => Ok(()),
                Some(status) => bail!("the receiver answered {status}, not 2xx"),
                None => bail!(
                    "the receiver did not answer: {}",
                    answer["error"].as_str().unwrap_or("no reason given")
                ),
            }
        }
        ChannelCommand::Remove { channel } => {
            let id = resolve_channel(client, &channel)?;
            client.delete(&format!("/channels/{id}"))?;
            if client.json {
                writeln!(out, "{}", json!({"removed": id}))?;
            } else {
                writeln!(out, "removed channel {channel}")?;
            }
            Ok(())
        }
    }
}

fn show(channel: &Value, out: &mut dyn Write) -> Result<()> {
    for (label, key) in [
        ("id", "id"),
        ("name", "name"),
        ("kind", "kind"),
        ("url", "url"),
    ] {
        writeln!(out, "{label:<10} {}", cell(&channel[key]))?;
    }
    let email = &channel["email"];
    if email.is_object() {
        let to: Vec<&str> = email["to"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        writeln!(out, "{:<10} {}", "to", to.join(", "))?;
        for (label, key) in [
            ("from", "from"),
            ("smtp", "smtp"),
            ("tls", "tls"),
            ("user", "username"),
        ] {
            writeln!(out, "{label:<10} {}", cell(&email[key]))?;
        }
        let password = if email["passwordSet"] == json!(true) {
            "set"
        } else {
            "none"
        };
        writeln!(out, "{:<10} {password}", "password")?;
        let ca = if email["caCert"].is_string() {
            "own CA certificate"
        } else {
            "public roots"
        };
        writeln!(out, "{:<10} {ca}", "trust")?;
    }
    writeln!(out, "{:<10} {}", "created", cell(&channel["createdAt"]))?;
    Ok(())
}

/// Where a channel sends, for `list`: its URL, or an email channel's
/// recipients and relay.
fn target(channel: &Value) -> String {
    let email = &channel["email"];
    if !email.is_object() {
        return cell(&channel["url"]);
    }
    let to: Vec<&str> = email["to"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!("{} via {}", to.join(","), cell(&channel["url"]))
}

/// A value from the environment variable `var` (named by `flag`), trimmed.
fn env_value(var: &str, flag: &str) -> Result<String> {
    let value = std::env::var(var)
        .map_err(|_| anyhow!("{var} is not set in the environment ({flag} {var})"))?;
    let value = value.trim();
    if value.is_empty() {
        bail!("{var} is empty ({flag} {var})");
    }
    Ok(value.to_string())
}

/// The secret in `var`, trimmed (a value read from a file often ends in a
/// newline, which is never part of a secret).
fn secret_from_env(var: &str) -> Result<String> {
    let value = std::env::var(var)
        .map_err(|_| anyhow!("{var} is not set in the environment (--secret-env {var})"))?;
    let value = value.trim();
    if value.is_empty() {
        bail!("{var} is empty (--secret-env {var})");
    }
    Ok(value.to_string())
}

/// A channel's id from its id or its exact name.
pub fn resolve_channel(client: &Client, channel: &str) -> Result<i64> {
    if let Ok(id) = channel.parse::<i64>() {
        return Ok(id);
    }
    let channels = client.get("/channels")?;
    channels
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == json!(channel))
        .and_then(|c| c["id"].as_i64())
        .ok_or_else(|| anyhow!("no channel named {channel:?} (see `cronium channel list`)"))
}
