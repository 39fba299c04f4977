//! `cronium user passwd|add|list|role|remove`: users of the web UI, managed on the server's host straight in its database (found as `cronium serve` finds it), so the first password needs no API.
//!
//! A password never comes from the command line, where every user of the
//! machine could read it (`ps`): it is asked for twice on the terminal
//! without echo, or read from standard input (`--password-stdin`) or from
//! an environment variable (`--password-env VAR`).

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use cronium_server::users::{Outcome, UserAction};
use serde_json::json;

use crate::client::print_table;

/// Where the database is, as for `cronium serve`.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Data directory (its SQLite database) [env: CRONIUM_DATA_DIR]
    /// [default: ./cronium-data]
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// sqlite://PATH or postgres://… [env: CRONIUM_DATABASE_URL]
    /// [default: sqlite://<data dir>/cronium.db]
    #[arg(long, value_name = "URL", global = true)]
    pub database_url: Option<String>,
}

/// Where a new password comes from; with neither flag, the terminal.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Read the password from standard input (one line; a final newline is dropped)
    #[arg(long, conflicts_with = "password_env")]
    pub password_stdin: bool,

    /// Read the password from this environment variable
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Set a user's password (at least 12 characters); signs it out everywhere
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Add a user with a password (at least 12 characters)
    Add {
        name: String,
        /// admin, editor or viewer
        #[arg(long)]
        role: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List users
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Give a user another role (not the last admin's away from admin);
    /// their API tokens with a stronger role are revoked
    Role {
        name: String,
        /// admin, editor or viewer
        #[arg(long)]
        role: String,
    },
    /// Remove a user with its API tokens and sessions (not the last admin,
    /// nor a user who still owns events)
    Remove { name: String },
}

pub fn run(cmd: UserCommand, db: DatabaseArgs, out: &mut dyn Write) -> Result<()> {
    let flags = cronium_server::Overrides {
        data_dir: db.data_dir,
        database_url: db.database_url,
        ..Default::default()
    };
    let (action, json) = match cmd {
        UserCommand::Passwd { name, password } => {
            let password = read_password(&password, &name)?;
            (UserAction::Passwd { name, password }, false)
        }
        UserCommand::Add {
            name,
            role,
            password,
        } => {
            let role = cronium_core::Role::parse(&role)?;
            let password = read_password(&password, &name)?;
            (
                UserAction::Add {
                    name,
                    role,
                    password,
                },
                false,
            )
        }
        UserCommand::List { json } => (UserAction::List, json),
        UserCommand::Role { name, role } => {
            let role = cronium_core::Role::parse(&role)?;
            (UserAction::Role { name, role }, false)
        }
        UserCommand::Remove { name } => (UserAction::Remove { name }, false),
    };
    let what = match &action {
        UserAction::Passwd { .. } => "set the password of",
        UserAction::Add { .. } => "added",
        UserAction::Remove { .. } => "removed",
        UserAction::Role { .. } => "changed the role of",
        UserAction::List => "",
    };
    match cronium_server::users::run_blocking(flags, action)? {
        Outcome::User(user) => {
            writeln!(out, "{what} user {} ({})", user.name, user.role)?;
        }
        Outcome::Users(users) if json => {
            let list: Vec<_> = users
                .iter()
                .map(|u| {
                    json!({
                        "id": u.id.0,
                        "name": u.name,
                        "role": u.role.as_str(),
                        "hasPassword": u.has_password,
                        "createdAt": u.created_at,
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
        Outcome::Users(users) => {
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u.id.0.to_string(),
                        u.name.clone(),
                        u.role.to_string(),
                        if u.has_password { "set" } else { "none" }.to_string(),
                        u.created_at.to_rfc3339(),
                    ]
                })
                .collect();
            print_table(out, &["ID", "NAME", "ROLE", "PASSWORD", "CREATED"], &rows)?;
        }
    }
    Ok(())
}

fn read_password(args: &PasswordArgs, name: &str) -> Result<cronium_core::Password> {
    let text = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .context("cannot read the password from standard input")?;
        let line = text.strip_suffix('\n').unwrap_or(&text);
        line.strip_suffix('\r').unwrap_or(line).to_string()
    } else if let Some(var) = &args.password_env {
        match std::env::var(var) {
            Ok(text) => text,
            Err(_) => bail!("the environment variable {var} is not set (or not UTF-8)"),
        }
    } else {
        prompt_twice(name)?
    };
    Ok(cronium_core::Password::new(text)?)
}

/// Asks on the terminal, twice, without echo.
fn prompt_twice(name: &str) -> Result<String> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context(
            "no terminal to ask for the password on; use --password-stdin or --password-env VAR",
        )?;
    let first = prompt_hidden(
        &mut tty,
        &format!(
            "New password for {name} (at least {} characters): ",
            cronium_core::PASSWORD_MIN_CHARS
        ),
    )?;
    let second = prompt_hidden(&mut tty, "The same again: ")?;
    if first != second {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

fn prompt_hidden(tty: &mut std::fs::File, prompt: &str) -> Result<String> {
    use std::os::fd::AsRawFd;
    tty.write_all(prompt.as_bytes())?;
    tty.flush()?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data, filled by tcgetattr on an open descriptor.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is the terminal opened above, `saved` a valid termios.
    let is_tty = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if is_tty {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: as above; echo is restored below whatever the read did.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::BufReader::new(&*tty).read_line(&mut line);
    if is_tty {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    read.context("cannot read the password from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
