//! The `cronium` helper command: what the runner binary does when it is
//! called by that name (the runner links `<workdir>/.cronium/bin/cronium` to
//! itself). It sends one request to the runner's socket and prints the answer.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::helper_server::{MAX_REQUEST, MAX_SOCKET_PATH, SOCKET_VAR};
use crate::protocol::{Expect, HelperError, HelperOp, HelperOutcome, MAX_FRAME};

/// Exit statuses of `cronium`, one per kind of failure.
pub const EXIT_OK: u8 = 0;
pub const EXIT_NOT_FOUND: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INVALID: u8 = 3;
pub const EXIT_TOO_LARGE: u8 = 4;
pub const EXIT_CONFLICT: u8 = 5;
pub const EXIT_UNAVAILABLE: u8 = 6;
pub const EXIT_INTERNAL: u8 = 7;

/// The exit status for a failed call.
pub fn exit_status(error: HelperError) -> u8 {
    match error {
        HelperError::NotFound => EXIT_NOT_FOUND,
        HelperError::Invalid => EXIT_INVALID,
        HelperError::TooLarge | HelperError::Limit => EXIT_TOO_LARGE,
        HelperError::Conflict => EXIT_CONFLICT,
        HelperError::Refused | HelperError::Unavailable => EXIT_UNAVAILABLE,
        HelperError::Internal => EXIT_INTERNAL,
    }
}

const EXIT_STATUSES: &str = "\
Values are JSON; '-' reads the value from stdin (use it for large values).

Exit statuses:
  0  ok
  1  not found (var get, var delete)
  2  usage: unknown command, missing argument
  3  invalid: bad key, value not JSON
  4  too large, or too many calls in this attempt
  5  conflict: --expect / --expect-absent did not hold, nothing was written
  6  refused or unavailable (e.g. not inside a Cronium run)
  7  internal error on the server";

#[derive(Parser)]
#[command(
    name = "cronium",
    about = "Runtime helpers for scripts run by Cronium",
    after_help = EXIT_STATUSES,
    disable_version_flag = true
)]
struct Cli {
    /// Print errors as one JSON object on stderr (used by the node module)
    #[arg(long, global = true, hide = true)]
    json_errors: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the run's input as JSON (null when none)
    Input,
    /// Set this attempt's output, replacing an earlier one
    Output {
        /// The output as JSON, or '-' to read it from stdin
        #[arg(value_name = "JSON", allow_negative_numbers = true)]
        value: OsString,
    },
    /// Read, write or delete a variable
    Var {
        #[command(subcommand)]
        command: VarCmd,
    },
    /// Set the run's condition (false unless set)
    Condition {
        #[arg(value_name = "true|false", action = clap::ArgAction::Set, value_parser = clap::value_parser!(bool))]
        value: bool,
    },
    /// Print the run's context as JSON (job, attempt, event, trigger, server)
    Context,
}

#[derive(Subcommand)]
enum VarCmd {
    /// Print a variable's value as JSON (exit status 1 if it does not exist)
    Get { key: OsString },
    /// Write a variable
    Set {
        key: OsString,
        /// The value as JSON, or '-' to read it from stdin
        #[arg(value_name = "JSON", allow_negative_numbers = true)]
        value: OsString,
        /// Make the variable secret (masked in logs, write-only in the API)
        #[arg(long)]
        secret: bool,
        /// Make the variable not secret [default: keep its current secrecy]
        #[arg(long, conflicts_with = "secret")]
        no_secret: bool,
        /// Write only if the current value equals this JSON (exit status 5 if not)
        #[arg(long, value_name = "JSON", allow_negative_numbers = true)]
        expect: Option<OsString>,
        /// Write only if the variable does not exist yet (exit status 5 if it does)
        #[arg(long, conflicts_with = "expect")]
        expect_absent: bool,
    },
    /// Delete a variable (exit status 1 if it did not exist)
    Delete { key: OsString },
}

/// What to do with a successful answer.
enum Print {
    Value,
    Nothing,
}

/// Runs `cronium` with this process's arguments; returns its exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    let json_errors = cli.json_errors;
    let outcome = request(cli.command).and_then(|(op, print)| {
        let value = match call(&op)? {
            HelperOutcome::Ok(value) => value,
            HelperOutcome::Err { error, message } => return Err((error, message)),
        };
        if let Print::Value = print {
            let mut line = serde_json::to_vec(&value).expect("a value serializes");
            line.push(b'\n');
            // A reader that went away (`| head`) is not the call's failure.
            let _ = io::stdout().lock().write_all(&line);
        }
        Ok(())
    });
    match outcome {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err((error, message)) => {
            if json_errors {
                let json = serde_json::to_string(&HelperOutcome::err(error, message.clone()))
                    .expect("an outcome serializes");
                eprintln!("{json}");
            } else {
                eprintln!("cronium: {message}");
            }
            ExitCode::from(exit_status(error))
        }
    }
}

type Failed = (HelperError, String);

fn invalid(message: impl Into<String>) -> Failed {
    (HelperError::Invalid, message.into())
}

/// Turns the command line into a request, checking keys and values first.
fn request(command: Cmd) -> Result<(HelperOp, Print), Failed> {
    Ok(match command {
        Cmd::Input => (HelperOp::Input, Print::Value),
        Cmd::Context => (HelperOp::Context, Print::Value),
        Cmd::Output { value } => (
            HelperOp::Output {
                value: json_value(&value, "the output")?,
            },
            Print::Nothing,
        ),
        Cmd::Condition { value } => (HelperOp::Condition { value }, Print::Nothing),
        Cmd::Var { command } => match command {
            VarCmd::Get { key } => (HelperOp::VarGet { key: text(key)? }, Print::Value),
            VarCmd::Delete { key } => (HelperOp::VarDelete { key: text(key)? }, Print::Nothing),
            VarCmd::Set {
                key,
                value,
                secret,
                no_secret,
                expect,
                expect_absent,
            } => {
                let key = text(key)?;
                let value = json_value(&value, "the value")?;
                let expect = match (expect, expect_absent) {
                    (Some(e), _) => {
                        Some(Expect::Value(parse_json(e.as_encoded_bytes(), "--expect")?))
                    }
                    (None, true) => Some(Expect::Absent),
                    (None, false) => None,
                };
                let secret = match (secret, no_secret) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                };
                (
                    HelperOp::VarSet {
                        key,
                        value,
                        secret,
                        expect,
                    },
                    Print::Nothing,
                )
            }
        },
    })
}

fn text(key: OsString) -> Result<String, Failed> {
    key.into_string()
        .map_err(|_| invalid("the key is not valid UTF-8"))
}

/// A value argument, or stdin for `-`, parsed as JSON.
fn json_value(arg: &OsString, what: &str) -> Result<Value, Failed> {
    if arg != "-" {
        return parse_json(arg.as_encoded_bytes(), what);
    }
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .take(MAX_REQUEST as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| invalid(format!("cannot read {what} from stdin: {e}")))?;
    if bytes.len() > MAX_REQUEST {
        return Err((
            HelperError::TooLarge,
            format!("{what} on stdin is larger than the {MAX_REQUEST} bytes a helper call carries"),
        ));
    }
    parse_json(&bytes, what)
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value, Failed> {
    let text = std::str::from_utf8(bytes).map_err(|_| invalid(format!("{what} is not UTF-8")))?;
    serde_json::from_str(text).map_err(|e| invalid(format!("{what} is not JSON: {e}")))
}

/// One request on the runner's socket: a JSON line out, a JSON line back.
fn call(op: &HelperOp) -> Result<HelperOutcome, Failed> {
    let unavailable = |message: String| (HelperError::Unavailable, message);
    let path = std::env::var_os(SOCKET_VAR)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            unavailable(format!(
                "not inside a Cronium run ({SOCKET_VAR} is not set)"
            ))
        })?;
    if path.len() > MAX_SOCKET_PATH {
        return Err(unavailable(format!(
            "the helper socket path is {} bytes, more than the {MAX_SOCKET_PATH} a Unix socket allows: \
             run with a shorter --workdir",
            path.len()
        )));
    }
    let mut line = serde_json::to_vec(op).expect("a request serializes");
    if line.len() > MAX_REQUEST {
        return Err((
            HelperError::TooLarge,
            format!(
                "the request is {} bytes, more than the {MAX_REQUEST} a helper call carries",
                line.len()
            ),
        ));
    }
    line.push(b'\n');
    let reach = |e: io::Error| {
        unavailable(format!(
            "cannot reach the runner at {}: {e}",
            path.to_string_lossy()
        ))
    };
    let mut stream = UnixStream::connect(&path).map_err(reach)?;
    stream.write_all(&line).map_err(reach)?;
    let mut answer = Vec::new();
    (&stream)
        .take(MAX_FRAME as u64 + 1)
        .read_to_end(&mut answer)
        .map_err(reach)?;
    if answer.is_empty() {
        return Err(unavailable(
            "the runner closed the connection without an answer".into(),
        ));
    }
    serde_json::from_slice(&answer).map_err(|e| {
        (
            HelperError::Internal,
            format!("the runner's answer is not readable: {e}"),
        )
    })
}
