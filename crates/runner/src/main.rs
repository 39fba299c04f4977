//! Command line of `cronium-runner` (DESIGN §3.2), and of the `cronium` helper
//! command when called by that name; the work happens in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use cronium_runner::VersionInfo;
use cronium_runner::duration::parse_duration;
use cronium_runner::run::{self, EXIT_RUNNER_FAILED, Expected, RunArgs, VerifyArgs};

#[derive(Parser)]
#[command(name = "cronium-runner", about = "Verify and run a Cronium payload")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args)]
struct Verification {
    /// The payload archive (tar.gz)
    payload: PathBuf,
    /// Checksum file in sha256sum format [default: <payload>.sha256]
    #[arg(long, value_name = "FILE", conflicts_with = "sha256")]
    checksum: Option<PathBuf>,
    /// Expected SHA-256 of the payload, as 64 hex digits
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// Require <payload>.sig signed by this ed25519 public key (repeatable)
    #[arg(long = "trusted-key", value_name = "FILE")]
    trusted_keys: Vec<PathBuf>,
}

impl Verification {
    fn into_args(self) -> VerifyArgs {
        let expected = match (self.checksum, self.sha256) {
            (Some(file), _) => Expected::ChecksumFile(file),
            (None, Some(hex)) => Expected::Hex(hex),
            (None, None) => Expected::Beside,
        };
        VerifyArgs {
            payload: self.payload,
            expected,
            trusted_keys: self.trusted_keys,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputMode {
    Plain,
    Framed,
}

#[derive(Subcommand)]
enum Cmd {
    /// Verify the payload, run its script and exit with the script's status
    Run {
        #[command(flatten)]
        verification: Verification,
        /// Stop the script's process group after this long (e.g. 30s, 5m, 1h30m)
        #[arg(long, value_parser = parse_positive_duration)]
        timeout: Option<Duration>,
        /// Time between SIGTERM and SIGKILL when stopping the script
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        kill_grace: Duration,
        /// Create the private work dir inside DIR [default: $TMPDIR]
        #[arg(long, value_name = "DIR")]
        workdir: Option<PathBuf>,
        /// Keep the work dir after the run
        #[arg(long)]
        keep_workdir: bool,
        /// plain: output passes through; framed: one binary record stream on stdout
        #[arg(long, value_enum, default_value = "plain")]
        output: OutputMode,
        /// Read extra environment (e.g. secrets) as one Env record on stdin (framed only)
        #[arg(long)]
        env_from_stdin: bool,
    },
    /// Check the payload's checksum (and signature) and that it is safe to unpack
    Verify {
        #[command(flatten)]
        verification: Verification,
    },
    /// Print the payload's manifest
    Inspect {
        /// The payload archive (tar.gz)
        payload: PathBuf,
    },
    /// Print version, commit, target and framed-protocol version
    Version {
        #[arg(long)]
        json: bool,
    },
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("the timeout must be greater than zero".into()),
        d => Ok(d),
    }
}

fn main() -> ExitCode {
    // A multi-call binary: the helper dir links `cronium` to the runner.
    let called = std::env::args_os().next().map(PathBuf::from);
    if called.as_deref().and_then(|p| p.file_name()) == Some("cronium".as_ref()) {
        return cronium_runner::helper_client::main();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Usage errors are runner failures (125), not the script's status.
            return ExitCode::from(if e.use_stderr() {
                EXIT_RUNNER_FAILED as u8
            } else {
                0
            });
        }
    };
    let code = match cli.command {
        Cmd::Run {
            verification,
            timeout,
            kill_grace,
            workdir,
            keep_workdir,
            output,
            env_from_stdin,
        } => run::run(&RunArgs {
            verify: verification.into_args(),
            timeout,
            kill_grace,
            workdir,
            keep_workdir,
            framed: matches!(output, OutputMode::Framed),
            env_from_stdin,
        }),
        Cmd::Verify { verification } => match run::verify(&verification.into_args()) {
            Ok(digest) => {
                println!("OK {digest}");
                0
            }
            Err(f) => fail(f),
        },
        Cmd::Inspect { payload } => match run::inspect(&payload) {
            Ok(yaml) => {
                print!("{yaml}");
                0
            }
            Err(f) => fail(f),
        },
        Cmd::Version { json } => {
            let info = VersionInfo::current();
            if json {
                println!("{}", serde_json::to_string(&info).expect("serializes"));
            } else {
                println!("{} {}", info.name, info.version);
                println!("commit: {}", info.commit);
                println!("target: {}", info.target);
                println!("protocol: {}", info.protocol);
            }
            0
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn fail(f: run::Failure) -> i32 {
    eprintln!("cronium-runner: {}", f.message);
    f.code
}
