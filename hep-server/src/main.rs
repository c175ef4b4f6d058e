//! The `hep-server` binary: parses the command line, logs to stderr, dispatches.
//!
//! Exit status: 0 success, 1 error (including any message that failed to decode),
//! 2 usage error (from clap).

use std::future::Future;
use std::io::{self, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser as _;
use hep_server::cli::{CheckConfigArgs, Cli, Command, DecodeArgs, RunArgs, SearchArgs, SendArgs};
use hep_server::commands;
use hep_server::config::Config;
use hep_server::server::{self, Reload, Summary};
use hep_server::telemetry::log::TARGET;
use tokio::sync::mpsc::Sender;

fn main() -> ExitCode {
    // Exits with status 2 on a usage error (0 for --help and --version).
    let command = Cli::parse().command_or_default();
    // `run` sets up logging once it has read its config's `[log]` section.
    if !matches!(command, Command::Run(_)) {
        hep_server::telemetry::log::init(&Config::default().log);
    }
    match dispatch(command) {
        Ok(code) => code,
        Err(e) => {
            // Reading our output through `head` is not an error.
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            if tracing::dispatcher::has_been_set() {
                // As the other lines: `hep-server: ...`, or JSON with `[log] format = "json"`.
                tracing::error!(target: TARGET, "{e:#}");
            } else {
                // `run` could not read its config: there is no `[log]` to follow.
                let _ = writeln!(io::stderr(), "hep-server: {e:#}");
            }
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
        Command::Search(args) => search(&args.with_env(|name| std::env::var_os(name))),
        Command::Generate(args) => {
            commands::generate::write_all(&args.dir)?;
            Ok(ExitCode::SUCCESS)
        }
        _ => bail!("this subcommand is not implemented yet"),
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (args, config) = effective_config(args)?;
    hep_server::telemetry::log::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hep-server")
        .build()?;
    let summary = runtime.block_on(async {
        // Before anything is bound: a signal that comes early must not find the default
        // action (which ends the process, SIGHUP's included).
        let shutdown = shutdown_signal().context("installing the SIGTERM/SIGINT handler")?;
        let (reload_tx, reloads) = tokio::sync::mpsc::channel(1);
        reload_on_sighup(args, reload_tx).context("installing the SIGHUP handler")?;
        server::run_with_reloads(config, shutdown, reloads).await
    });
    // Drop what a shutdown deadline left running before the counters are read: a relay
    // connection counts its unsent messages as it is dropped. (Threads stuck in a write
    // are not waited for beyond this; the process exits.)
    runtime.shutdown_timeout(Duration::from_secs(1));
    let summary = summary?;
    say_summary(&summary);
    Ok(ExitCode::SUCCESS)
}

/// The exit summary, then a line per reason something was dropped or refused; in JSON
/// mode their figures are fields too. Said after every drop warning the run still owed.
fn say_summary(summary: &Summary) {
    if let Some(drops) = &summary.drops {
        drops.flush();
    }
    let (spooled, replayed) = summary.spool().unzip();
    tracing::info!(
        target: TARGET,
        received = summary.decoded() + summary.rejected(),
        decoded = summary.decoded(),
        rejected = summary.rejected(),
        skipped = summary.skipped(),
        delivered = summary.delivered(),
        dropped = summary.dropped(),
        spooled,
        replayed,
        "{summary}"
    );
    for (kind, count) in summary.by_reason() {
        tracing::info!(
            target: TARGET,
            stage = %kind.stage,
            reason = %kind.reason,
            listener = kind.listener.as_deref(),
            output = kind.output.as_deref(),
            count,
            "{} {count}: {}",
            kind.verb(),
            kind.describe()
        );
    }
}

/// The flags completed from the `HEP_SERVER_...` variables, and the configuration they
/// make: the file (or the defaults), then the environment, then the flags.
fn effective_config(args: RunArgs) -> anyhow::Result<(RunArgs, Config)> {
    let args = args.with_env(|name| std::env::var_os(name))?;
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let config = args.apply(config)?;
    Ok((args, config))
}

/// SIGTERM or SIGINT (Ctrl-C); the handlers are installed at once.
#[cfg(unix)]
fn shutdown_signal() -> io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> io::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// On each SIGHUP, reads the `--config` file again (with the same command-line
/// overrides) and hands it to the server, which switches to it or logs why not.
#[cfg(unix)]
fn reload_on_sighup(args: RunArgs, reloads: Sender<Reload>) -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let Some(path) = args.config.clone() else {
                tracing::info!("SIGHUP: started without --config, there is nothing to reload");
                continue;
            };
            let (file, a) = (path.clone(), args.clone());
            let config = tokio::task::spawn_blocking(move || a.apply(Config::load(&file)?))
                .await
                .unwrap_or_else(|e| Err(e.into()));
            if reloads
                .send(Reload {
                    source: path,
                    config,
                })
                .await
                .is_err()
            {
                break;
            }
        }
    });
    Ok(())
}

/// No SIGHUP here: nothing to reload.
#[cfg(not(unix))]
fn reload_on_sighup(_args: RunArgs, _reloads: Sender<Reload>) -> io::Result<()> {
    Ok(())
}

fn check_config(args: CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let (_, config) = effective_config(args.run)?;
    print!("{}", config.to_toml());
    Ok(ExitCode::SUCCESS)
}

fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    // Not `stderr().lock()`: the runtime's threads log to stderr meanwhile.
    let summary = commands::send::run(&args, io::stdin().lock(), &mut io::stderr())?;
    Ok(if summary.delivered() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn decode(args: &DecodeArgs) -> anyhow::Result<ExitCode> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut err = io::stderr().lock();
    let summary = commands::decode::run(args, io::stdin().lock(), &mut out, &mut err)?;
    Ok(if summary.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn search(args: &SearchArgs) -> anyhow::Result<ExitCode> {
    let dest = commands::search::Destination::of(args)?;
    let summary = commands::search::run(args, dest)?;
    let nothing = summary.messages == 0 && summary.peer_calls == 0;
    if nothing {
        eprintln!("hep-server: no message matches");
    }
    if !summary.unanswered.is_empty() {
        // The results may be incomplete, whatever matched (see `search --help`).
        return Ok(ExitCode::from(3));
    }
    Ok(if nothing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
