//! The `cronium` command line: argument definitions and dispatch to each command group.
//!
//! `main.rs` only parses and reports errors; everything testable lives here.
//! Command groups are variants of [`Command`]: the offline `payload` tools,
//! the API client commands (`event`, `job`, `server`, `channel`, `var`,
//! `token`, `import`), `user`, which works on the server's host against its
//! database, and `completions` and `man`, generated from this definition.
//!
//! [`run`] returns the process exit status for a command that ran to its end:
//! `0`, except where a command passes on an outcome of its own (following a
//! job exits with the job's status, see [`follow::End::exit_status`]; a
//! failed `server check` exits 1 after printing its report). An
//! error is a failure of the command itself; `main` prints it and exits 1.

use std::io::Write;

use clap::{Parser, Subcommand};

pub mod channel_cmd;
pub mod client;
pub mod docs_cmd;
pub mod event_cmd;
pub mod follow;
pub mod import_cmd;
pub mod inventory;
pub mod job_cmd;
pub mod node_cmd;
pub mod payload_cmd;
pub mod serve_cmd;
pub mod server_cmd;
pub mod server_import;
pub mod sse;
pub mod ssh_config;
pub mod token_cmd;
pub mod user_cmd;
pub mod var_cmd;
pub mod workflow_cmd;

pub use channel_cmd::ChannelCommand;
pub use client::ClientArgs;
pub use event_cmd::EventCommand;
pub use import_cmd::ImportCommand;
pub use job_cmd::JobCommand;
pub use node_cmd::NodeCommand;
pub use payload_cmd::PayloadCommand;
pub use serve_cmd::ServeArgs;
pub use server_cmd::ServerCommand;
pub use token_cmd::TokenCommand;
pub use user_cmd::UserCommand;
pub use var_cmd::VarCommand;
pub use workflow_cmd::WorkflowCommand;

/// Self-hosted automation: scheduled scripts on this host and remote servers.
#[derive(Debug, Parser)]
#[command(name = "cronium", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// One parsed command line exists per process: variant size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Offline payload tools: build, verify, inspect, keygen, sign.
    #[command(subcommand)]
    Payload(PayloadCommand),
    /// Run the server: REST API, database, payload store.
    Serve(ServeArgs),
    /// Events: create, list, show, edit, delete, payloads, run, action.
    Event {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: EventCommand,
    },
    /// Jobs (runs of events): list, show, logs, cancel.
    Job {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Remote servers: add, list, show, check, remove.
    Server {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ServerCommand,
    },
    /// Notification channels (webhook, Slack, Discord, email): add, list,
    /// show, test, remove.
    Channel {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ChannelCommand,
    },
    /// Variables your events' scripts share (`cronium var` inside a run
    /// reads and writes the same ones): list, get, set, delete.
    Var {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: VarCommand,
    },
    /// Workflows (DAGs of events) kept in YAML or JSON files: apply, list,
    /// show, run, runs, retry, cancel, hook, delete.
    Workflow {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: WorkflowCommand,
    },
    /// The servers that use the same database: list.
    Node {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// API tokens: create, list, revoke.
    Token {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Bring schedules from elsewhere: crontab.
    Import {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Print a shell completion script: bash, zsh or fish (e.g.
    /// `cronium completions bash > /etc/bash_completion.d/cronium`)
    Completions(docs_cmd::CompletionsArgs),
    /// Write the manual pages (cronium.1, cronium-event.1, …) into a directory
    Man(docs_cmd::ManArgs),
    /// Users of the web UI: passwd, add, list, remove. Run on the server's
    /// host: it works on the database directly, like `serve`.
    User {
        #[command(flatten)]
        database: user_cmd::DatabaseArgs,
        #[command(subcommand)]
        command: UserCommand,
    },
}

/// Runs a parsed command line, writing its normal output to `out`, and
/// returns the exit status. Warnings go to standard error; failures are returned.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<u8> {
    let done = |()| 0;
    match cli.command {
        Command::Payload(cmd) => payload_cmd::run(cmd, out).map(done),
        Command::Serve(args) => serve_cmd::run(args).map(done),
        Command::Event { client, command } => event_cmd::run(command, &client, out),
        Command::Job { client, command } => job_cmd::run(command, &client, out),
        Command::Server { client, command } => server_cmd::run(command, &client, out),
        Command::Channel { client, command } => channel_cmd::run(command, &client, out).map(done),
        Command::Var { client, command } => var_cmd::run(command, &client, out),
        Command::Workflow { client, command } => workflow_cmd::run(command, &client, out),
        Command::Node { client, command } => node_cmd::run(command, &client, out).map(done),
        Command::Token { client, command } => token_cmd::run(command, &client, out).map(done),
        Command::Import { client, command } => import_cmd::run(command, &client, out),
        Command::Completions(args) => docs_cmd::completions(&args, out).map(done),
        Command::Man(args) => docs_cmd::man(&args, out).map(done),
        Command::User { database, command } => user_cmd::run(command, database, out).map(done),
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
