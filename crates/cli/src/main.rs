//! Entry point of the `cronium` binary: parses arguments and reports errors.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use cronium_cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(cli, &mut out).and_then(|status| Ok(out.flush().map(|()| status)?)) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: "what failed: why".
            eprintln!("cronium: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
