//! `cargo xtask bench [--quick|--smoke] [--runs N] [--no-kamailio] [--out FILE] [SECTION...]`:
//! hep-server against its peers and this machine's ceiling, written to
//! `docs/BENCHMARKS.md`.
//!
//! Sections (all by default): `codec` (criterion, callgrind, perf stat), `udp` (stepped
//! rates into hep-server, the `hep-bench-peer` recvmmsg sink and Kamailio sipcapture,
//! interleaved), `tcp` (1 and 16 connections), `relay` (UDP in, TCP out: zero-loss rate,
//! latency at half of it), `memory` (peak RSS, a stalled relay destination, idle
//! connections), `store` (insert rate of `store:DIR`, search of one call among 10 M
//! stored messages), `api` (the HTTP API: 20 clients asking for calls by Call-ID and by
//! user among 10 M stored messages while 100,000 msg/s are stored), `kpi` (ingest with the
//! SIP KPIs off and on; memory of a tracked call).
//!
//! The machine is shared and noisy: every figure is taken side by side with what it is
//! compared to (receivers interleaved run by run at each rate), repeated (`--runs`,
//! default 3), and reported as a median with the spread. `--quick` is a short run (one
//! run, short steps, a few rates, under two minutes) written to
//! `target/bench/BENCHMARKS-quick.md`; `--smoke` runs one small step of each section on
//! debug builds in seconds (CI's `bench` step: the harness cannot rot; its figures mean
//! nothing) to `target/bench/BENCHMARKS-smoke.md`; a full run replaces the generated part of
//! `docs/BENCHMARKS.md` (between the `bench:begin`/`bench:end` markers) and leaves the
//! prose around it.
//!
//! All traffic is loopback; every step is bounded in messages and time; every process is
//! started and stopped by PID (see `procs`).

mod api;
mod codec;
mod ingest;
mod kpi;
pub(crate) mod procs;
mod relay;
mod report;
mod store;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::Workspace;

/// The sections, in the order they run.
const SECTIONS: [&str; 8] = [
    "codec", "udp", "tcp", "relay", "memory", "store", "api", "kpi",
];

/// Parsed `cargo xtask bench` arguments.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) quick: bool,
    /// `--smoke`: seconds, not minutes, on debug builds (for CI: the harness cannot rot).
    pub(crate) smoke: bool,
    pub(crate) runs: usize,
    pub(crate) kamailio: bool,
    pub(crate) out: Option<PathBuf>,
    pub(crate) sections: Vec<String>,
}

impl Options {
    /// Parses `[--quick|--smoke] [--runs N] [--no-kamailio] [--out FILE] [SECTION...]`.
    ///
    /// # Errors
    /// Unknown flags or sections, a bad `--runs`.
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            quick: false,
            smoke: false,
            runs: 0,
            kamailio: true,
            out: None,
            sections: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--smoke" => {
                    o.smoke = true;
                    o.kamailio = false;
                }
                "--no-kamailio" => o.kamailio = false,
                "--runs" => {
                    let v = it.next().context("`--runs` needs a number")?;
                    o.runs = v
                        .parse()
                        .ok()
                        .filter(|&n| (1..=9).contains(&n))
                        .with_context(|| format!("`--runs {v}`: expected 1 to 9"))?;
                }
                "--out" => o.out = Some(it.next().context("`--out` needs a file")?.into()),
                s if SECTIONS.contains(&s) => o.sections.push(s.to_owned()),
                other => bail!(
                    "unknown `cargo xtask bench` argument `{other}` (sections: {})",
                    SECTIONS.join(", ")
                ),
            }
        }
        if o.runs == 0 {
            o.runs = if o.quick || o.smoke { 1 } else { 3 };
        }
        if o.sections.is_empty() {
            o.sections = SECTIONS.iter().map(|s| (*s).to_owned()).collect();
        }
        Ok(o)
    }

    fn wants(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s == section)
    }
}

/// How much a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Size {
    /// Every rate, several runs, minutes (`docs/BENCHMARKS.md`).
    Full,
    /// A few rates, one run, under two minutes.
    Quick,
    /// One small step of each section on debug builds, seconds.
    Smoke,
}

/// What every section needs.
pub(crate) struct Ctx<'a> {
    pub(crate) ws: &'a Workspace,
    pub(crate) size: Size,
    pub(crate) runs: usize,
    pub(crate) kamailio: bool,
    pub(crate) target_dir: PathBuf,
    /// `<target>/release`.
    pub(crate) release: PathBuf,
    /// Logs, configs and payloads of this run.
    pub(crate) dir: PathBuf,
    /// The SIP payload of the Kamailio v3 INVITE vector, for `hep-server send`.
    pub(crate) payload: PathBuf,
}

impl Ctx<'_> {
    /// The value for this run's size.
    pub(crate) fn pick<T>(&self, full: T, quick: T, smoke: T) -> T {
        match self.size {
            Size::Full => full,
            Size::Quick => quick,
            Size::Smoke => smoke,
        }
    }

    pub(crate) fn bin(&self, name: &str) -> PathBuf {
        self.release.join(name)
    }

    pub(crate) fn vector(&self, name: &str) -> PathBuf {
        self.ws
            .root()
            .join("hep-testkit/testdata/kamailio")
            .join(name)
    }

    pub(crate) fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }
}

/// Runs the benchmark and writes the report.
///
/// # Errors
/// A build that fails, a process that cannot be started, a report that cannot be written.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<ExitCode> {
    let started = Instant::now();
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => ws.root().join(d),
        None => ws.root().join("target"),
    };
    let release = target_dir.join(if opts.smoke { "debug" } else { "release" });
    let dir = target_dir.join("bench").join("run");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;

    let profile: &[&str] = if opts.smoke { &[] } else { &["--release"] };
    ws.cargo()
        .arg("build")
        .args(profile)
        .args(["-p", "hep-server", "-p", "hep-testkit"])
        .args(["--bin", "hep-server", "--bin", "hep-bench-peer"])
        .run()?;
    ws.cargo()
        .arg("build")
        .args(profile)
        .args(["-p", "hep-proto", "--examples"])
        .run()?;

    let payload = dir.join("invite.sip");
    write_payload(
        &ws.root()
            .join("hep-testkit/testdata/kamailio/v3-udp-0001.hep"),
        &payload,
    )?;
    let ctx = Ctx {
        ws,
        size: if opts.smoke {
            Size::Smoke
        } else if opts.quick {
            Size::Quick
        } else {
            Size::Full
        },
        runs: opts.runs,
        kamailio: opts.kamailio,
        target_dir,
        release,
        dir,
        payload,
    };
    let mut rep = report::Report::new(&ctx, opts);
    if opts.wants("codec") {
        rep.codec = Some(codec::run(&ctx)?);
    }
    if opts.wants("udp") {
        rep.udp = Some(ingest::udp(&ctx)?);
    }
    if opts.wants("tcp") {
        rep.tcp = Some(ingest::tcp(&ctx)?);
    }
    let udp_zero = rep.udp.as_ref().and_then(|u| u.zero_loss("hep-server"));
    if opts.wants("relay") {
        rep.relay = Some(relay::relay(&ctx)?);
    }
    if opts.wants("memory") {
        let relay_zero = rep.relay.as_ref().map(|r| r.zero_loss);
        rep.memory = Some(relay::memory(&ctx, udp_zero, relay_zero)?);
    }
    if opts.wants("store") {
        rep.store = Some(store::store(&ctx)?);
    }
    if opts.wants("api") {
        rep.api = Some(api::api(&ctx)?);
    }
    if opts.wants("kpi") {
        rep.kpi = Some(kpi::kpi(&ctx)?);
    }
    rep.finish(started.elapsed());

    let text = rep.markdown();
    let out = match &opts.out {
        Some(p) => p.clone(),
        None if opts.smoke => ctx.target_dir.join("bench").join("BENCHMARKS-smoke.md"),
        None if opts.quick => ctx.target_dir.join("bench").join("BENCHMARKS-quick.md"),
        None => ws.root().join("docs").join("BENCHMARKS.md"),
    };
    report::write_between_markers(&out, &text)?;
    println!("{}", rep.summary());
    println!(
        "==> wrote {} (logs in {})",
        out.display(),
        ctx.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The SIP payload (chunk 0x000f) of a HEP3 vector, for `hep-server send`: it packs it
/// with the same chunks, so the load is a 609-byte datagram like Kamailio's 608.
fn write_payload(vector: &Path, out: &Path) -> Result<()> {
    let wire = std::fs::read(vector).with_context(|| format!("reading {}", vector.display()))?;
    let mut off = 6;
    while let Some(h) = wire.get(off..off + 6) {
        let ty = u16::from_be_bytes([h[2], h[3]]);
        let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        if len < 6 {
            break;
        }
        if ty == 0x000f {
            let body = wire.get(off + 6..off + len).context("payload chunk")?;
            std::fs::write(out, body)?;
            return Ok(());
        }
        off += len;
    }
    bail!("no payload chunk in {}", vector.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        Options::parse(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn options() {
        let o = parse(&[]).unwrap();
        assert_eq!((o.quick, o.runs, o.sections.len()), (false, 3, 8));
        assert_eq!(parse(&["store"]).unwrap().sections, ["store"]);
        let o = parse(&["--quick", "udp", "tcp"]).unwrap();
        assert_eq!((o.quick, o.runs), (true, 1));
        assert_eq!(o.sections, ["udp", "tcp"]);
        assert!(parse(&["--runs", "0"]).is_err());
        assert!(parse(&["disk"]).is_err());
        assert!(!parse(&["--no-kamailio"]).unwrap().kamailio);
        let o = parse(&["--smoke"]).unwrap();
        assert!(o.smoke && !o.kamailio && o.runs == 1);
    }
}
