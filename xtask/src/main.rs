//! `cargo xtask`: workspace automation for the HEP toolkit.
//!
//! Run it through the alias in `.cargo/config.toml`:
//!
//! ```text
//! cargo xtask ci                                 # fmt, clippy, tests, doctests, docs, fuzz smoke run
//! cargo xtask fuzz <TARGET|--all> [--time SECS]  # cargo-fuzz on stable (RUSTC_BOOTSTRAP=1)
//! cargo xtask bench [--quick] [SECTION...]       # hep-server vs peers and this machine; docs/BENCHMARKS.md
//! cargo xtask interop [--no-install] [FILTER...]  # our HEP against Kamailio, hep-js, tshark, sngrep
//! cargo xtask browser [--no-install]             # the web page in chromium against a fed hep-server
//! cargo xtask package [--profile NAME] [--check]  # the .deb (cargo-deb); --check installs, runs, purges it
//! cargo xtask cluster [--short]                  # issue 18's proof: NATS JetStream, 2 edges, 2 consumers
//! ```
//!
//! It follows the [cargo-xtask] conventions: one binary, plain `std::process::Command`, the
//! `$CARGO` the alias was started with, and few dependencies so that it compiles quickly on
//! a clean machine: `anyhow`, `serde_json` (for the JSON lines `hep-server`, hep-js and
//! sqlite3 print), `syn` (`structure`) and the workspace's `rusqlite` (`cluster` reads the
//! consumers' stores; hep-server builds it anyway). Every command it runs is echoed as
//! `==> ...`.
//!
//! [cargo-xtask]: https://github.com/matklad/cargo-xtask

mod bench;
mod browser;
mod ci;
mod cluster;
mod cmd;
mod fuzz;
mod interop;
mod package;
mod structure;

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};

/// Usage text printed by `cargo xtask help` and after argument errors.
const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci                                 run every CI step and print `N passed, N failed`
  fuzz <TARGET|--all> [--time SECS]  run cargo-fuzz targets for SECS seconds each (default 60)
  bench [--quick|--smoke] [--runs N] [--no-kamailio] [--out FILE] [SECTION...]
                                     measure hep-server against its peers and this machine's
                                     ceiling (sections: codec udp tcp relay memory); write
                                     docs/BENCHMARKS.md (--quick: 2 minutes, --smoke: seconds
                                     on debug builds; both to target/bench/)
  interop [--no-install] [FILTER...]  run hep-server against real peers (Kamailio, hep-js,
                                     tshark, sngrep) on loopback; print the results table
  browser [--no-install]             run the web page's tests in Debian's chromium (playwright-core)
                                     against a hep-server fed with the Kamailio vectors; print the
                                     results table; screenshots to target/browser/
  package [--profile NAME] [--check] build the Debian package of hep-server into target/debian/
                                     (cargo-deb, release profile); --check (a CI step, as root):
                                     lintian, apt-get install, systemd-analyze verify, run the
                                     unit's ExecStart as its user, send, search, reload, stop,
                                     apt-get purge (dev profile unless --profile)
  cluster [--short] [--calls N] [--rate R] [--kill-node N] [--no-install]
                                     issue 18's proof on loopback: a 3-node NATS JetStream
                                     cluster, 2 edges, 2 consumers with stores, calls at R msg/s
                                     into each edge, a NATS node and a consumer killed and
                                     restarted, every broker down, a slow consumer; every
                                     message checked in the stores; throughput, CPU, latency
                                     (--short: seconds of traffic on debug builds, CI's step;
                                     --kill-node N: node nN is made the stream's leader, then
                                     killed, instead of whichever leads)
  structure                          check the module graph (no import cycle among sibling
                                     modules) and that hep-callbacks alone builds no TLS or
                                     socket crate
  help                               print this text";

/// The workspace `cargo xtask` operates on: where it lives and which cargo drives it.
#[derive(Debug)]
pub(crate) struct Workspace {
    /// The workspace root, the directory holding the root `Cargo.toml`.
    root: PathBuf,
    /// The cargo binary: `$CARGO` when run through cargo, else `cargo` from `PATH`.
    cargo: OsString,
}

impl Workspace {
    /// Finds the workspace root as the parent of this crate's manifest directory.
    ///
    /// # Errors
    /// Fails if `CARGO_MANIFEST_DIR` has no parent, which cannot happen for a crate inside the
    /// workspace, but is reported rather than unwrapped.
    fn locate() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .with_context(|| {
                format!(
                    "cannot find the workspace root: {} has no parent directory",
                    manifest_dir.display()
                )
            })?
            .to_path_buf();
        let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        Ok(Self { root, cargo })
    }

    /// The workspace root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// A `cargo` command that runs in the workspace root.
    pub(crate) fn cargo(&self) -> cmd::Cmd {
        cmd::Cmd::new(&self.cargo, "cargo", &self.root)
    }
}

fn main() -> ExitCode {
    match run(env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line and dispatches to a subcommand.
///
/// # Errors
/// Returns an error for unknown commands or arguments, and for a failed `fuzz` run.
fn run(args: Vec<String>) -> Result<ExitCode> {
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(ExitCode::FAILURE);
    };
    let ws = Workspace::locate()?;
    match command.as_str() {
        "ci" => {
            no_arguments(command, rest)?;
            Ok(ci::run(&ws))
        }
        "fuzz" => {
            let opts =
                fuzz::Options::parse(rest).map_err(|err| anyhow::anyhow!("{err:#}\n\n{USAGE}"))?;
            fuzz::run(&ws, &opts)?;
            Ok(ExitCode::SUCCESS)
        }
        "interop" => {
            let opts = interop::Options::parse(rest)
                .map_err(|err| anyhow::anyhow!("{err:#}\n\n{USAGE}"))?;
            interop::run(&ws, &opts)
        }
        "bench" => {
            let opts =
                bench::Options::parse(rest).map_err(|err| anyhow::anyhow!("{err:#}\n\n{USAGE}"))?;
            bench::run(&ws, &opts)
        }
        "browser" => {
            let opts = browser::Options::parse(rest)
                .map_err(|err| anyhow::anyhow!("{err:#}\n\n{USAGE}"))?;
            browser::run(&ws, &opts)
        }
        "package" => {
            let opts = package::Options::parse(rest)
                .map_err(|err| anyhow::anyhow!("{err:#}\n\n{USAGE}"))?;
            package::run(&ws, &opts)?;
            Ok(ExitCode::SUCCESS)
        }
        "cluster" => {
            let opts = cluster::Options::parse(rest)
                .map_err(|err| anyhow::anyhow!("{err:#}\n\n{USAGE}"))?;
            cluster::run(&ws, &opts)
        }
        "structure" => {
            no_arguments(command, rest)?;
            structure::run(&ws)?;
            Ok(ExitCode::SUCCESS)
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// Rejects extra arguments for commands that take none.
///
/// # Errors
/// Fails when `rest` is not empty.
fn no_arguments(command: &str, rest: &[String]) -> Result<()> {
    if let Some(extra) = rest.first() {
        bail!("`cargo xtask {command}` takes no arguments, got `{extra}`\n\n{USAGE}");
    }
    Ok(())
}
