//! Section 8: what the SIP KPIs cost. The same stream of SIP calls over one TCP
//! connection into `hep-server run --output null` with `[kpi]` off and on (alternated),
//! and the memory of the call table: the resident set with 10 % of a table's calls (at
//! least 10,000) and with all of them, the slope between the two being the cost of one
//! tracked call.

use std::time::Duration;

use anyhow::Result;

use super::Ctx;
use super::procs::Server;
use super::store::CallStream;

/// Messages a second of the streams that fill the call table: the tracker keeps up
/// (it read every message at 100,000 msg/s with the machine's load at 9).
const MEMORY_RATE: u64 = 150_000;

/// One run of the stream.
#[derive(Debug, Clone)]
pub(crate) struct KpiRun {
    pub(crate) kpi: bool,
    pub(crate) messages: u64,
    pub(crate) secs: f64,
    /// Messages the tracker missed (its feed overflowed).
    pub(crate) lagged: u64,
}

impl KpiRun {
    pub(crate) fn rate(&self) -> f64 {
        self.messages as f64 / self.secs
    }
}

/// The call table's memory at two sizes.
#[derive(Debug, Clone)]
pub(crate) struct TableMemory {
    /// (calls tracked, resident set KiB) with few and with many calls.
    pub(crate) points: [(u64, u64); 2],
}

impl TableMemory {
    /// Bytes per tracked call: the slope between the two points.
    pub(crate) fn bytes_per_call(&self) -> Option<f64> {
        let [(c0, r0), (c1, r1)] = self.points;
        (c1 > c0).then(|| (r1 as f64 - r0 as f64) * 1024.0 / (c1 - c0) as f64)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct KpiResult {
    pub(crate) runs: Vec<KpiRun>,
    pub(crate) memory: TableMemory,
}

impl KpiResult {
    /// Median rate with the KPIs on or off, msg/s.
    pub(crate) fn rate(&self, kpi: bool) -> f64 {
        super::report::median(
            self.runs
                .iter()
                .filter(|r| r.kpi == kpi)
                .map(KpiRun::rate)
                .collect(),
        )
    }
}

pub(crate) fn kpi(ctx: &Ctx<'_>) -> Result<KpiResult> {
    let messages: u64 = ctx.pick(3_000_000, 700_000, 70_000);
    let mut runs = Vec::new();
    for run in 0..ctx.runs {
        for on in [false, true] {
            let (r, _) = stream(ctx, on, messages, None, &format!("kpi-{run}-{on}"))?;
            println!(
                "    kpi {}: {} msgs in {:.2} s = {:.0} msg/s (tracker lagged {})",
                if on { "on " } else { "off" },
                r.messages,
                r.secs,
                r.rate(),
                r.lagged
            );
            runs.push(r);
        }
    }
    // The table at two sizes (finished calls stay 32 s for their retransmissions).
    let max_calls: u64 = ctx.pick(1_000_000, 200_000, 30_000);
    // The feed's buffer holds the last `FEED_CAPACITY` messages (65,536): both points
    // fill it, so that it is not in the slope. At a rate the tracker keeps up with, so
    // that the table holds whole calls, not what a lagging tracker saw of them.
    let few = (max_calls / 10).max(10_000);
    let mut points = [(0, 0); 2];
    for (i, calls) in [few, max_calls].into_iter().enumerate() {
        let name = format!("kpi-memory-{i}");
        let (_, point) = stream(ctx, true, calls * 7, Some(MEMORY_RATE), &name)?;
        points[i] = point;
        println!(
            "    kpi table: {} calls tracked, RSS {:.1} MiB",
            point.0,
            point.1 as f64 / 1024.0
        );
    }
    let memory = TableMemory { points };
    if let Some(b) = memory.bytes_per_call() {
        println!("    kpi table: {b:.0} bytes a tracked call");
    }
    Ok(KpiResult { runs, memory })
}

/// Streams `messages` SIP messages (7 a call, the calls of each group of 100,000 under
/// way at once) into a fresh server with the KPIs `kpi`; the run, and (calls tracked, RSS
/// KiB) once all are taken.
fn stream(
    ctx: &Ctx<'_>,
    kpi: bool,
    messages: u64,
    rate: Option<u64>,
    name: &str,
) -> Result<(KpiRun, (u64, u64))> {
    let dir = ctx.dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("hep-server.toml");
    std::fs::write(
        &config,
        format!("[kpi]\nenabled = {kpi}\nmax_calls = 1000000\n"),
    )?;
    let streamed = CallStream {
        config: &config,
        output: "null".into(),
        count: messages,
        spread_secs: 0,
        concurrent_calls: messages.div_ceil(7).min(100_000),
        rate,
        name,
    }
    .run(ctx)?;
    let server = streamed.server;
    // The tracker reads behind the listener: let it catch up before the table is
    // measured (its lag is counted either way).
    let point = if kpi {
        settle(&server)?
    } else {
        (0, server.proc.sample().rss_kib)
    };
    let lagged = server.scrape()?.sum("hep_sip_kpi_lagged_total", &[]);
    let mut server = server;
    server.proc.stop();
    std::fs::remove_dir_all(&dir).ok();
    Ok((
        KpiRun {
            kpi,
            messages,
            secs: streamed.secs,
            lagged,
        },
        point,
    ))
}

/// Waits until the tracked calls stop changing (the tracker has read its feed); the
/// calls tracked and the resident set then.
fn settle(server: &Server) -> Result<(u64, u64)> {
    let mut last = u64::MAX;
    // The gauge is refreshed by the tracker's sweep, once a second.
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(1_100));
        let tracked = server.scrape()?.sum("hep_sip_calls_tracked", &[]);
        if tracked == last {
            return Ok((tracked, server.proc.sample().rss_kib));
        }
        last = tracked;
    }
    Ok((last, server.proc.sample().rss_kib))
}
