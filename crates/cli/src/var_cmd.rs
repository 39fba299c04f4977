//! `cronium var list|get|set|delete`: the caller's variables, which their events' scripts read and write with the `cronium var` helper inside a run. Values are JSON; a secret one is write-only.

use std::io::{Read, Write};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use cronium_core::VariableKey;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs, cell, encode, print_json, print_table};

#[derive(Debug, Subcommand)]
pub enum VarCommand {
    /// List your variables (a secret one's value is not shown)
    List,
    /// Print a variable's value as JSON (a secret one cannot be read back)
    Get { key: String },
    /// Create or replace a variable
    Set(SetArgs),
    /// Delete a variable
    Delete { key: String },
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// 1 to 128 characters from A-Z a-z 0-9 _ . -, starting with a letter,
    /// a digit or _
    pub key: String,
    /// The value as JSON (a string needs its quotes: '"text"'), or - to
    /// read it from standard input
    #[arg(allow_hyphen_values = true)]
    pub value: String,
    /// Seal the value at rest and never show it again (without this or
    /// --plain the variable keeps its secrecy; a new one is plain)
    #[arg(long, conflicts_with = "plain")]
    pub secret: bool,
    /// Make a secret variable plain again
    #[arg(long)]
    pub plain: bool,
    /// Only if the variable holds this JSON value now (compare-and-set)
    #[arg(long, value_name = "JSON", allow_hyphen_values = true)]
    pub expect: Option<String>,
    /// Only if the variable does not exist yet
    #[arg(long, conflicts_with = "expect")]
    pub expect_absent: bool,
}

/// The path of a variable, its key checked first (the server checks it too,
/// but a bad key should not need a round trip to be refused).
fn path(key: &str) -> Result<String> {
    let key = VariableKey::new(key).map_err(|e| anyhow::anyhow!(e.message))?;
    Ok(format!("/variables/{}", encode(key.as_str())))
}

fn parse_json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text)
        .with_context(|| format!("{what} is not JSON (a string needs its quotes, e.g. '\"text\"')"))
}

/// At most this many characters of a value in `var list`.
const LIST_VALUE_CHARS: usize = 60;

fn value_cell(variable: &Value) -> String {
    if variable["secret"] == json!(true) {
        return "(secret)".into();
    }
    let text = variable["value"].to_string();
    if text.chars().count() <= LIST_VALUE_CHARS {
        return text;
    }
    let cut: String = text.chars().take(LIST_VALUE_CHARS - 1).collect();
    format!("{cut}…")
}

/// Runs a `var` command; the status is always `0` (failures are errors).
pub fn run(cmd: VarCommand, args: &ClientArgs, out: &mut dyn Write) -> Result<u8> {
    let client = Client::new(args)?;
    match cmd {
        VarCommand::List => {
            let list = client.get("/variables")?;
            if client.json {
                print_json(&list, out)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = list
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|v| {
                    vec![
                        cell(&v["key"]),
                        value_cell(v),
                        cell(&v["version"]),
                        cell(&v["updatedAt"]),
                        cell(&v["updatedByJob"]),
                    ]
                })
                .collect();
            print_table(
                out,
                &["KEY", "VALUE", "VERSION", "UPDATED", "BY JOB"],
                &rows,
            )?;
        }
        VarCommand::Get { key } => {
            let variable = client.get(&path(&key)?)?;
            if client.json {
                print_json(&variable, out)?;
            } else if variable["secret"] == json!(true) {
                bail!("variable {key} is secret: its value is write-only and cannot be read back");
            } else {
                writeln!(out, "{}", variable["value"])?;
            }
        }
        VarCommand::Set(a) => {
            let path = path(&a.key)?;
            let value = if a.value == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the value from standard input")?;
                parse_json(&text, "the value on standard input")?
            } else {
                parse_json(&a.value, "the value")?
            };
            let mut body = json!({ "value": value });
            if a.secret || a.plain {
                body["secret"] = json!(a.secret);
            }
            if let Some(expect) = &a.expect {
                body["expect"] = parse_json(expect, "--expect")?;
            }
            if a.expect_absent {
                body["expectAbsent"] = json!(true);
            }
            let variable = client.put(&path, &body)?;
            if client.json {
                print_json(&variable, out)?;
            } else {
                let done = if variable["version"] == json!(1) {
                    "created"
                } else {
                    "updated"
                };
                let secret = if variable["secret"] == json!(true) {
                    ", secret"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "{done} variable {} (version {}{secret})",
                    a.key, variable["version"]
                )?;
            }
        }
        VarCommand::Delete { key } => {
            client.delete(&path(&key)?)?;
            if !client.json {
                writeln!(out, "deleted variable {key}")?;
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_before_any_request() {
        assert_eq!(path("web-1.last").unwrap(), "/variables/web-1.last");
        for bad in ["a;rm -rf /", "$(id)", "../x", ".x", "a\nb", ""] {
            assert!(path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn list_cells_hide_secrets_and_cut_long_values() {
        assert_eq!(
            value_cell(&json!({"secret": true, "value": null})),
            "(secret)"
        );
        assert_eq!(
            value_cell(&json!({"secret": false, "value": {"a": 1}})),
            r#"{"a":1}"#
        );
        let long = value_cell(&json!({"secret": false, "value": "x".repeat(100)}));
        assert_eq!(long.chars().count(), LIST_VALUE_CHARS);
        assert!(long.ends_with('…'));
    }
}
