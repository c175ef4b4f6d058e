//! `cargo xtask cluster [--short] [--calls N] [--rate R]`: issue 18's proof on loopback.
//!
//! A 3-node NATS JetStream cluster (Debian's `nats-server`, stream replicas 3), two edges
//! (`hep-server run --listen hep_tcp:... --output nats:...`), two consumers
//! (`--input nats:...;partitions=A-B --output store:DIR`, with `[cluster] peers` pointing
//! at each other when hep-server has it), Kamailio-like calls from `hep-bench-peer
//! sip-calls` at a fixed rate into both edges, a NATS node and a consumer killed mid-run
//! and restarted, every broker down while an edge takes calls, a stopped consumer that
//! catches up, throughput, CPU and latency; then every message is checked in the stores
//! (see [`proof`] for the phases). The last lines are the checks and figures, `cluster: N
//! passed, N failed in S s`, and the failures named again; the Markdown of the run goes to
//! `target/cluster/report.md` (docs/SCALE-OUT.md quotes a full run).
//!
//! The full run (1,001,000 messages of 143,000 calls: `sip-calls` writes 7 messages a call)
//! uses release builds; `--short` (CI's `cluster` step) sends seconds of traffic on debug
//! builds, with the same kills and checks. Everything is loopback; every process runs under
//! `timeout` and is stopped by PID (see [`nats`], [`server`]).

mod measure;
mod nats;
mod proof;
mod report;
mod server;
mod stores;
mod traffic;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::Workspace;
use crate::interop::peers;
use crate::interop::proc::Ports;

/// Parsed `cargo xtask cluster` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    /// Seconds of traffic on debug builds (CI).
    pub(crate) short: bool,
    /// Calls of the main phase (7 messages each).
    pub(crate) calls: u64,
    /// Messages a second into each edge in the main phase.
    pub(crate) rate: u64,
    /// Do not install nats-server when it is missing.
    pub(crate) no_install: bool,
    /// The NATS node killed in the main phase (made the stream's leader first); `None`:
    /// whichever leads the stream then.
    pub(crate) kill_node: Option<usize>,
}

/// Calls of the full run: 1,001,000 messages (the million; 7 messages a call),
/// 71,500 calls into each edge.
const FULL_CALLS: u64 = 143_000;
/// Calls of `--short`: about 14,000 messages.
const SHORT_CALLS: u64 = 2_000;

impl Options {
    /// Parses `[--short] [--calls N] [--rate R] [--kill-node N] [--no-install]`.
    ///
    /// # Errors
    /// Unknown arguments, numbers out of range.
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut short = false;
        let mut calls = None;
        let mut rate = None;
        let mut no_install = false;
        let mut kill_node = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut number = |what: &str, max: u64| -> Result<u64> {
                let v = it
                    .next()
                    .with_context(|| format!("`{what}` needs a number"))?;
                v.parse()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .with_context(|| format!("`{what} {v}`: expected 1 to {max}"))
            };
            match a.as_str() {
                "--short" => short = true,
                "--no-install" => no_install = true,
                "--calls" => calls = Some(number("--calls", 10_000_000)?),
                "--rate" => rate = Some(number("--rate", 1_000_000)?),
                "--kill-node" => {
                    kill_node = Some(usize::try_from(number("--kill-node", nats::NODES as u64)?)?);
                }
                other => bail!("unknown `cargo xtask cluster` argument `{other}`"),
            }
        }
        Ok(Self {
            short,
            calls: calls.unwrap_or(if short { SHORT_CALLS } else { FULL_CALLS }),
            rate: rate.unwrap_or(if short { 700 } else { 800 }),
            no_install,
            kill_node,
        })
    }

    /// The command that runs with these options, for the report.
    fn command_line(&self) -> String {
        let base: Vec<String> = if self.short {
            vec!["--short".to_owned()]
        } else {
            Vec::new()
        };
        let defaults = Self::parse(&base).unwrap_or_else(|_| self.clone());
        let mut line = "cargo xtask cluster".to_owned();
        if self.short {
            line.push_str(" --short");
        }
        if self.calls != defaults.calls {
            line.push_str(&format!(" --calls {}", self.calls));
        }
        if self.rate != defaults.rate {
            line.push_str(&format!(" --rate {}", self.rate));
        }
        if let Some(n) = self.kill_node {
            line.push_str(&format!(" --kill-node {n}"));
        }
        line
    }

    /// The phases' sizes for these options.
    fn plan(&self) -> proof::Plan {
        if self.short {
            proof::Plan {
                calls: self.calls,
                rate: self.rate,
                down: Duration::from_secs(2),
                outage: Duration::from_secs(3),
                side_rate: 1_000,
                throughput_calls: 300,
                settle: Duration::from_secs(60),
                limits: nats::Limits {
                    memory_mb: 64,
                    file_mb: 512,
                },
                max_life: Duration::from_secs(600),
                kill_node: self.kill_node,
            }
        } else {
            proof::Plan {
                calls: self.calls,
                rate: self.rate,
                down: Duration::from_secs(10),
                outage: Duration::from_secs(30),
                side_rate: 2_000,
                throughput_calls: 10_000,
                settle: Duration::from_secs(600),
                limits: nats::Limits {
                    memory_mb: 256,
                    // Three copies of a million ~700-byte messages and the run's others.
                    file_mb: 4_096,
                },
                max_life: Duration::from_secs(3_600),
                kill_node: self.kill_node,
            }
        }
    }
}

/// `cargo xtask cluster`: runs the proof and prints the report.
///
/// # Errors
/// As [`run_checks`].
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<ExitCode> {
    let failed = run_checks(ws, opts)?;
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the proof; the names of the failed checks (empty: every check passed).
///
/// # Errors
/// A build that fails, nats-server missing, a process that cannot be started or dies,
/// a hep-server without the NATS input.
pub(crate) fn run_checks(ws: &Workspace, opts: &Options) -> Result<Vec<String>> {
    let started = Instant::now();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => ws.root().join(d),
        None => ws.root().join("target"),
    };
    let profile = if opts.short { "debug" } else { "release" };
    let mut build = ws.cargo().arg("build");
    if !opts.short {
        build = build.arg("--release");
    }
    build
        .args(["-p", "hep-server", "-p", "hep-testkit"])
        .args(["--bin", "hep-server", "--bin", "hep-bench-peer"])
        .run()?;
    ensure_nats_server(!opts.no_install)?;

    let work = target.join("cluster");
    let dir = work.join("run");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let hep_server = target.join(profile).join("hep-server");
    if !proof::supports_nats(&hep_server)? {
        bail!(
            "{} has no `run --input` (the NATS input of issue 18): nothing to prove yet",
            hep_server.display()
        );
    }
    let ctx = proof::Ctx {
        peers_config: proof::supports_peers(&hep_server, &dir)?,
        hep_server,
        peer: target.join(profile).join("hep-bench-peer"),
        dir: dir.clone(),
        ports: Ports::default(),
    };
    let plan = opts.plan();
    let mut rep = report::Report {
        header: format!(
            "`{}` ({} calls, {} msg/s into each edge; {} builds; {})",
            opts.command_line(),
            plan.calls,
            plan.rate,
            profile,
            machine()
        ),
        ..report::Report::default()
    };
    let result = proof::run(&ctx, &plan, &mut rep);
    if let Err(err) = &result {
        rep.check("the run went to its end", false, format!("{err:#}"));
    }
    rep.elapsed = started.elapsed();
    print!("{}", rep.text());
    let md = work.join("report.md");
    std::fs::write(&md, rep.markdown()).with_context(|| format!("writing {}", md.display()))?;
    println!(
        "==> wrote {} (logs in {})",
        md.display(),
        dir.join("logs").display()
    );
    Ok(rep.failed())
}

/// nats-server on `PATH`, installed with apt-get when missing and allowed (as root).
///
/// # Errors
/// Still missing.
fn ensure_nats_server(install: bool) -> Result<()> {
    if peers::on_path("nats-server").is_some() {
        return Ok(());
    }
    if install && peers::is_root() {
        peers::apt_install(&["nats-server"])?;
    }
    if peers::on_path("nats-server").is_none() {
        bail!(
            "nats-server is not installed (apt-get install nats-server{})",
            if install {
                "; not root"
            } else {
                "; --no-install"
            }
        );
    }
    Ok(())
}

/// The CPU count and load average, for the report's header.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cpus} CPUs, load average {} at the start", load.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        Options::parse(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn options() {
        let full = parse(&[]).unwrap();
        assert_eq!((full.short, full.calls), (false, FULL_CALLS));
        assert_eq!(full.calls * 7, 1_001_000);
        let short = parse(&["--short"]).unwrap();
        assert!(short.short && short.calls == SHORT_CALLS);
        let o = parse(&["--short", "--calls", "300", "--rate", "900"]).unwrap();
        assert_eq!((o.calls, o.rate), (300, 900));
        assert!(parse(&["--calls", "0"]).is_err());
        assert!(parse(&["--rate"]).is_err());
        assert!(parse(&["--long"]).is_err());
        let k = parse(&["--short", "--kill-node", "1"]).unwrap();
        assert_eq!(k.kill_node, Some(1));
        assert_eq!(
            k.command_line(),
            "cargo xtask cluster --short --kill-node 1"
        );
        assert!(parse(&["--kill-node", "4"]).is_err());
        assert_eq!(full.kill_node, None);
        assert_eq!(full.command_line(), "cargo xtask cluster");
        assert_eq!(
            o.command_line(),
            "cargo xtask cluster --short --calls 300 --rate 900"
        );
    }
}
