//! The `hep-server` binary: parses the command line, logs to stderr, dispatches.
//!
//! Exit status: 0 success, 1 error (including any message that failed to decode),
//! 2 usage error (from clap).

use std::io::{self, Write as _};
use std::process::ExitCode;

use anyhow::bail;
use clap::Parser as _;
use hep_server::cli::{CheckConfigArgs, Cli, Command, DecodeArgs, RunArgs, SendArgs};
use hep_server::commands;

fn main() -> ExitCode {
    // Exits with status 2 on a usage error (0 for --help and --version).
    let cli = Cli::parse();
    init_tracing();
    match dispatch(cli.command_or_default()) {
        Ok(code) => code,
        Err(e) => {
            // Reading our output through `head` is not an error.
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(io::stderr(), "hep-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Decode(args) => decode(&args),
        Command::Send(args) => send(args),
        _ => bail!("this subcommand is not implemented yet"),
    }
}

/// Logs go to stderr (stdout carries records); `RUST_LOG` sets the filter (default: info).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}

fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    bail!("`hep-server run` is not implemented yet (issue 4)")
}

fn check_config(_args: CheckConfigArgs) -> anyhow::Result<ExitCode> {
    bail!("`hep-server check-config` is not implemented yet (issue 4)")
}

fn send(_args: SendArgs) -> anyhow::Result<ExitCode> {
    bail!("`hep-server send` is not implemented yet (issue 4)")
}

fn decode(args: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut err = io::stderr().lock();
    let summary = commands::decode::run(args, &mut out, &mut err)?;
    Ok(if summary.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
