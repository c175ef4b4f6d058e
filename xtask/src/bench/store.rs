//! Section 6: the capture store. Insert rate of `store:DIR` for SIP messages of distinct
//! calls, and the time `hep-server search` takes to find one call among millions of
//! stored messages.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::Ctx;
use super::procs::{Peer, Server, free_port};

/// Calls under way at once in the interleaved insert runs: each call's 7 messages are
/// this many messages apart, so a batch of the store holds parts of calls.
pub(crate) const INTERLEAVED_CALLS: u64 = 10_000;

/// One insert run.
#[derive(Debug, Clone)]
pub(crate) struct InsertRun {
    /// Calls under way at once (1: a call's messages back to back).
    pub(crate) concurrent_calls: u64,
    pub(crate) messages: u64,
    pub(crate) secs: f64,
    pub(crate) dropped: u64,
}

impl InsertRun {
    pub(crate) fn rate(&self) -> f64 {
        self.messages as f64 / self.secs
    }
}

/// The search among a filled store.
#[derive(Debug, Clone)]
pub(crate) struct SearchRun {
    /// Messages in the store.
    pub(crate) stored: u64,
    pub(crate) partitions: u64,
    pub(crate) bytes: u64,
    /// Wall time of each `hep-server search --call-id`, ms (process start included).
    pub(crate) call_ms: Vec<f64>,
    /// Messages the call search printed.
    pub(crate) call_found: usize,
    /// Wall time of each `hep-server search --user U --limit 100`, ms.
    pub(crate) user_ms: Vec<f64>,
    /// The fill's insert rate, msg/s.
    pub(crate) fill_rate: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct StoreResult {
    pub(crate) inserts: Vec<InsertRun>,
    pub(crate) search: SearchRun,
}

impl StoreResult {
    /// Median insert rate of the runs with `concurrent_calls` calls under way at once,
    /// msg/s.
    pub(crate) fn insert_rate(&self, concurrent_calls: u64) -> f64 {
        super::report::median(
            self.inserts
                .iter()
                .filter(|r| r.concurrent_calls == concurrent_calls)
                .map(InsertRun::rate)
                .collect(),
        )
    }
}

pub(crate) fn store(ctx: &Ctx<'_>) -> Result<StoreResult> {
    let count: u64 = ctx.pick(2_000_000, 300_000, 20_000);
    let mut inserts = Vec::new();
    // Alternated: a slower minute of the host does not fall on one kind only.
    for run in 0..ctx.runs {
        for concurrent in [1, INTERLEAVED_CALLS] {
            let name = format!("store-insert-{run}-{concurrent}");
            let dir = ctx.dir.join(&name);
            let (r, _) = fill(ctx, &dir, count, 0, concurrent, &name)?;
            println!(
                "    store insert run {run}, {concurrent} calls at once: {} msgs in {:.2} s \
                 = {:.0} msg/s (dropped {})",
                r.messages,
                r.secs,
                r.rate(),
                r.dropped
            );
            inserts.push(r);
            std::fs::remove_dir_all(&dir).ok();
        }
    }
    let stored: u64 = ctx.pick(10_000_000, 1_000_000, 20_000);
    let dir = ctx.dir.join("store-search");
    // A day of capture time, received in the hour (or two) the fill runs in: a search
    // reads each partition's capture times from its row ids.
    let (fill_run, (partitions, bytes)) = fill(ctx, &dir, stored, 86_400, 1, "store-search")?;
    println!(
        "    store fill: {} msgs in {:.1} s = {:.0} msg/s",
        fill_run.messages,
        fill_run.secs,
        fill_run.rate()
    );
    let call = (stored / 7) / 2;
    let call_id = format!("bench-{call}@10.0.0.1");
    let user = format!("alice{}", call % 50_000);
    let mut call_ms = Vec::new();
    let mut user_ms = Vec::new();
    let mut call_found = 0;
    for _ in 0..ctx.pick(7, 3, 1) {
        let (ms, n) = search(ctx, &dir, &["--call-id", &call_id])?;
        call_ms.push(ms);
        call_found = n;
        let (ms, _) = search(ctx, &dir, &["--user", &user, "--limit", "100"])?;
        user_ms.push(ms);
    }
    if call_found != 7 {
        bail!("the call search found {call_found} messages of {call_id}, expected 7");
    }
    let search = SearchRun {
        stored,
        partitions,
        bytes,
        call_ms,
        call_found,
        user_ms,
        fill_rate: fill_run.rate(),
    };
    println!(
        "    store search among {stored}: call {:.1} ms, user {:.1} ms (median)",
        super::report::median(search.call_ms.clone()),
        super::report::median(search.user_ms.clone())
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(StoreResult { inserts, search })
}

/// Stores `count` messages of distinct calls in `dir` through `hep-server run`, their
/// capture times spread over `spread_secs` ending now, `concurrent_calls` calls under way
/// at once; the insert run, and the store's partitions and bytes at the end.
pub(crate) fn fill(
    ctx: &Ctx<'_>,
    dir: &Path,
    count: u64,
    spread_secs: u64,
    concurrent_calls: u64,
    name: &str,
) -> Result<(InsertRun, (u64, u64))> {
    std::fs::remove_dir_all(dir).ok();
    std::fs::create_dir_all(dir)?;
    let config = dir.with_extension("toml");
    std::fs::write(&config, "[store]\nmax_age_hours = 0\nmax_size_mb = 0\n")?;
    let calls = CallStream {
        config: &config,
        output: format!("store:{}", dir.join("db").display()),
        count,
        spread_secs,
        concurrent_calls,
        rate: None,
        name,
    };
    let streamed = calls.run(ctx)?;
    let mut server = streamed.server;
    server.proc.stop();
    let parts = on_disk(&dir.join("db"));
    Ok((
        InsertRun {
            concurrent_calls,
            messages: count,
            secs: streamed.secs,
            dropped: streamed.dropped,
        },
        parts,
    ))
}

/// `hep-bench-peer sip-calls` into a fresh `hep-server run --config CONFIG --listen
/// hep_tcp --output OUTPUT`, until the output has counted every message.
pub(crate) struct CallStream<'a> {
    pub(crate) config: &'a Path,
    pub(crate) output: String,
    pub(crate) count: u64,
    /// Capture times spread over this many seconds, ending now.
    pub(crate) spread_secs: u64,
    pub(crate) concurrent_calls: u64,
    /// Messages a second the peer sends at most; `None`: as fast as the server takes them.
    pub(crate) rate: Option<u64>,
    pub(crate) name: &'a str,
}

/// A [`CallStream`] taken: the server, still running, and the time it took.
pub(crate) struct Streamed {
    pub(crate) server: Server,
    /// From the peer's start to the output's counters reaching every message, s.
    pub(crate) secs: f64,
    /// What the output dropped.
    pub(crate) dropped: u64,
}

impl CallStream<'_> {
    pub(crate) fn run(&self, ctx: &Ctx<'_>) -> Result<Streamed> {
        let name = self.name;
        let port = free_port()?;
        let server = Server::start(
            &ctx.bin("hep-server"),
            &format!("hep-server ({name})"),
            &[
                "--config".into(),
                self.config.display().to_string(),
                "--listen".into(),
                format!("hep_tcp:127.0.0.1:{port}"),
                "--output".into(),
                self.output.clone(),
            ],
            &ctx.log(&format!("{name}-hep-server")),
        )?;
        let label = format!("output=\"{}\"", self.output);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let started = Instant::now();
        // The peer says `ready` once connected and writes in the background.
        let mut args = vec![
            "sip-calls".to_owned(),
            "--dest".into(),
            format!("127.0.0.1:{port}"),
            "--messages".into(),
            self.count.to_string(),
            "--spread-secs".into(),
            self.spread_secs.to_string(),
            "--start-ts".into(),
            (now - self.spread_secs).to_string(),
            "--concurrent-calls".into(),
            self.concurrent_calls.to_string(),
        ];
        if let Some(rate) = self.rate {
            args.extend(["--rate".into(), rate.to_string()]);
        }
        let _peer = Peer::start(
            &ctx.bin("hep-bench-peer"),
            "sip-calls",
            &args,
            &ctx.log(&format!("{name}-peer")),
        )?;
        let deadline = started + Duration::from_secs(600);
        loop {
            let m = server.scrape()?;
            let delivered = m.sum("hep_delivered_total", &[&label]);
            let dropped = m.sum("hep_dropped_total", &[&label]);
            if delivered + dropped >= self.count {
                return Ok(Streamed {
                    server,
                    secs: started.elapsed().as_secs_f64(),
                    dropped,
                });
            }
            if Instant::now() > deadline {
                bail!("{name}: {delivered} of {} taken after 600 s", self.count);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `hep-server search --store DIR/db ARGS --format json`; wall time in ms and the
/// number of records.
fn search(ctx: &Ctx<'_>, dir: &Path, args: &[&str]) -> Result<(f64, usize)> {
    let started = Instant::now();
    let out = Command::new(ctx.bin("hep-server"))
        .arg("search")
        .arg("--store")
        .arg(dir.join("db"))
        .args(args)
        .args(["--format", "json"])
        .output()
        .context("running hep-server search")?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        bail!(
            "hep-server search {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let n = out.stdout.iter().filter(|&&b| b == b'\n').count();
    Ok((ms, n))
}

/// Partition files in a store directory, and the bytes of all its files.
fn on_disk(dir: &Path) -> (u64, u64) {
    let mut parts = 0;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().ends_with(".db") {
            parts += 1;
        }
        bytes += e.metadata().map_or(0, |m| m.len());
    }
    (parts, bytes)
}
