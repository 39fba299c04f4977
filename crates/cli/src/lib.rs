//! The `cronium` command line: argument definitions and dispatch to each command group.
//!
//! `main.rs` only parses and reports errors; everything testable lives here.
//! Command groups are variants of [`Command`]; today only the offline
//! `payload` tools exist, `serve` and the API client commands join later.

use std::io::Write;

use clap::{Parser, Subcommand};

pub mod payload_cmd;

pub use payload_cmd::PayloadCommand;

/// Self-hosted automation: scheduled scripts on this host and remote servers.
#[derive(Debug, Parser)]
#[command(name = "cronium", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Offline payload tools: build, verify, inspect, keygen, sign.
    #[command(subcommand)]
    Payload(PayloadCommand),
}

/// Runs a parsed command line, writing its normal output to `out`.
/// Warnings go to standard error; failures are returned.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Payload(cmd) => payload_cmd::run(cmd, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
