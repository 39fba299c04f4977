//! `cronium completions` and `cronium man`: shell completions and manual pages generated from the clap definition.
//!
//! Both are made from [`crate::Cli`] at run time, so they always match the
//! binary that prints them; nothing is kept in the repository to go stale.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// bash, zsh or fish
    #[arg(value_parser = parse_shell)]
    pub shell: Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Where to write the pages
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
}

fn parse_shell(s: &str) -> Result<Shell, String> {
    match s {
        "bash" => Ok(Shell::Bash),
        "zsh" => Ok(Shell::Zsh),
        "fish" => Ok(Shell::Fish),
        other => Err(format!("unknown shell {other:?} (bash, zsh or fish)")),
    }
}

pub fn completions(args: &CompletionsArgs, out: &mut dyn Write) -> Result<()> {
    let mut cmd = crate::Cli::command();
    // Into a buffer first: the generator panics on a write error (a closed
    // pipe), where a write here is an ordinary error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "cronium", &mut script);
    out.write_all(&script)?;
    Ok(())
}

/// One page per command that has its own arguments: `cronium.1`,
/// `cronium-event.1`, `cronium-event-create.1`, …, as git and cargo name theirs.
pub fn man(args: &ManArgs, out: &mut dyn Write) -> Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut cmd = crate::Cli::command();
    // Subcommands render with their full names (`cronium-event-create`) only
    // once the tree is built.
    cmd.build();
    let mut written = 0;
    write_pages(&cmd, &args.dir, &mut written)?;
    writeln!(
        out,
        "wrote {written} manual pages to {}",
        args.dir.display()
    )?;
    Ok(())
}

fn write_pages(cmd: &clap::Command, dir: &std::path::Path, written: &mut usize) -> Result<()> {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .source(format!("cronium {}", env!("CARGO_PKG_VERSION")))
        .manual("Cronium Manual")
        .render(&mut page)?;
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    *written += 1;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
