//! The proof of issue 18: a 3-node JetStream cluster (R3), 2 edges, 2 consumers with their
//! stores, Kamailio-like calls at a fixed rate into both edges; mid-run a NATS node and
//! then a consumer are killed (`SIGKILL`) and started again; every broker down at once
//! while an edge takes traffic; a stopped consumer that catches up; throughput, CPU and
//! latency measured; every message checked in the stores at the end.
//!
//! Phases, in order (each bounded in time; [`Plan`] sizes them):
//! 1. main: the calls of the run at `rate` a second per edge; at 25 % of the messages
//!    sent, the stream leader is killed (with `--kill-node N`, node nN, made the stream's
//!    leader before the traffic) and restarted `down` later; at 55 %, consumer 2 is; then
//!    the stores must hold every message.
//! 2. outage: every NATS node stopped; edge 1 takes calls for `outage`; the nodes restart;
//!    the stores must hold them too (the edge spooled them).
//! 3. slow consumer: consumer 1 stopped while calls arrive; started again, it reports its
//!    lag (`hep_nats_pending`) and catches up.
//! 4. throughput: calls as fast as the edges take them, into one edge and then two; a
//!    backlog drained by one consumer and then by two.
//!
//! Then the checks: the stores against every call sent (each message exactly once, each
//! call whole on one consumer in capture order), search through either consumer.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};

use super::measure::{cpu_us_per_message, quantile, total};
use super::nats::{Cluster, Limits};
use super::report::Report;
use super::server::HepServer;
use super::stores::{self, STEPS};
use super::traffic::{Load, Sender};
use crate::bench::procs::{Metrics, clk_tck, http_get};
use crate::interop::proc::Ports;

/// Partitions of the stream (the edge's default).
const PARTITIONS: u32 = 64;

/// The stream's name.
const STREAM: &str = "HEP";

/// How big each phase is.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Calls of the main phase (7 messages each), split between the two edges.
    pub(crate) calls: u64,
    /// Messages a second into each edge during the main phase.
    pub(crate) rate: u64,
    /// How long a killed NATS node or consumer stays down.
    pub(crate) down: Duration,
    /// How long every broker is down in the outage phase.
    pub(crate) outage: Duration,
    /// Messages a second into edge 1 during the outage (and the slow-consumer phase).
    pub(crate) side_rate: u64,
    /// Calls sent in each throughput step.
    pub(crate) throughput_calls: u64,
    /// The longest the stores may take to hold everything after a phase.
    pub(crate) settle: Duration,
    /// JetStream limits of each node.
    pub(crate) limits: Limits,
    /// The longest any process may live.
    pub(crate) max_life: Duration,
    /// The NATS node killed in the main phase, made the stream's leader before the
    /// traffic; `None`: whichever node leads the stream at the kill.
    pub(crate) kill_node: Option<usize>,
}

/// Binaries and places.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) hep_server: PathBuf,
    pub(crate) peer: PathBuf,
    /// This run's directory (cleared at start).
    pub(crate) dir: PathBuf,
    pub(crate) ports: Ports,
    /// What the built hep-server supports.
    pub(crate) peers_config: bool,
}

/// Calls for about `messages` messages: whole groups of 100 calls under way at once.
fn calls_for(messages: u64) -> u64 {
    messages.div_ceil(u64::from(STEPS)).div_ceil(100).max(1) * 100
}

/// Seconds since the Unix epoch.
fn unix_now() -> Result<u64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())
}

/// The running cluster: brokers, edges, consumers.
struct Cluster3 {
    nats: Cluster,
    edges: Vec<Edge>,
    consumers: Vec<Consumer>,
}

/// An edge: where the peers send, and its hep-server.
struct Edge {
    server: HepServer,
    port: u16,
}

/// A consumer: its store and its API.
struct Consumer {
    server: HepServer,
    store: PathBuf,
    http: SocketAddr,
}

impl Cluster3 {
    fn start(ctx: &Ctx, plan: &Plan) -> Result<Self> {
        let nats = Cluster::start(
            &ctx.dir.join("nats"),
            &ctx.ports,
            plan.limits,
            plan.max_life,
        )?;
        let urls = nats.urls();
        let logs = ctx.dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        // Consumers first: they read each partition from its start.
        let https: Vec<SocketAddr> = (0..2)
            .map(|_| Ok(SocketAddr::from(([127, 0, 0, 1], ctx.ports.free()?))))
            .collect::<Result<_>>()?;
        let half = PARTITIONS / 2;
        let mut consumers = Vec::new();
        for (i, range) in [(0, half - 1), (half, PARTITIONS - 1)].iter().enumerate() {
            let n = i + 1;
            let store = ctx.dir.join(format!("store{n}"));
            let config = ctx.dir.join(format!("consumer{n}.toml"));
            let other = https[1 - i];
            // No `listen`: a node with inputs has no listeners.
            let mut text = String::new();
            if ctx.peers_config {
                text.push_str(&format!("[cluster]\npeers = [\"http://{other}\"]\n"));
            }
            std::fs::write(&config, text)?;
            let args = vec![
                "--config".to_owned(),
                config.display().to_string(),
                "--input".to_owned(),
                format!(
                    "nats:{urls};stream={STREAM};partitions={}-{}",
                    range.0, range.1
                ),
                "--output".to_owned(),
                format!("store:{}", store.display()),
                "--http".to_owned(),
                https[i].to_string(),
            ];
            let server = HepServer::start(
                &format!("consumer{n}"),
                &ctx.hep_server,
                args,
                &logs,
                &ctx.ports,
                plan.max_life,
            )?;
            consumers.push(Consumer {
                server,
                store,
                http: https[i],
            });
        }
        let mut edges = Vec::new();
        for n in 1..=2 {
            let port = ctx.ports.free()?;
            let spool = ctx.dir.join(format!("spool{n}"));
            let args = vec![
                "--config".to_owned(),
                ctx.dir.join("edge.toml").display().to_string(),
                "--listen".to_owned(),
                format!("hep_tcp:127.0.0.1:{port}"),
                "--http".to_owned(),
                format!("127.0.0.1:{}", ctx.ports.free()?),
                "--output".to_owned(),
                format!(
                    "nats:{urls};stream={STREAM};subject=hep;partitions={PARTITIONS};spool={}",
                    spool.display()
                ),
            ];
            std::fs::write(ctx.dir.join("edge.toml"), "")?;
            let server = HepServer::start(
                &format!("edge{n}"),
                &ctx.hep_server,
                args,
                &logs,
                &ctx.ports,
                plan.max_life,
            )?;
            edges.push(Edge { server, port });
        }
        Ok(Self {
            nats,
            edges,
            consumers,
        })
    }

    fn stores(&self) -> Vec<PathBuf> {
        self.consumers.iter().map(|c| c.store.clone()).collect()
    }

    fn consumer_metrics(&self) -> Vec<Metrics> {
        self.consumers
            .iter()
            .filter_map(|c| c.server.scrape().ok())
            .collect()
    }

    fn edge_metrics(&self) -> Vec<Metrics> {
        self.edges
            .iter()
            .filter_map(|e| e.server.scrape().ok())
            .collect()
    }

    /// Every process still running; names the one that is not.
    fn ensure_running(&mut self) -> Result<()> {
        for s in self
            .edges
            .iter_mut()
            .map(|e| &mut e.server)
            .chain(self.consumers.iter_mut().map(|c| &mut c.server))
        {
            if !s.running() {
                bail!("{} exited: {}", s.name(), s.log_tail());
            }
        }
        Ok(())
    }
}

/// Rows in every store now (committed rows only: what a reader sees).
fn stored_rows(stores: &[PathBuf]) -> u64 {
    stores
        .iter()
        .map(|s| stores::count_rows(s).unwrap_or(0))
        .sum()
}

/// Waits until the stores hold at least `want` rows, at most `limit`; the rows then.
fn settle(stores: &[PathBuf], want: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let rows = stored_rows(stores);
        if rows >= want || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs every phase and the checks; the report (its checks say what failed).
///
/// # Errors
/// A process that cannot be started or dies, a store that cannot be read: the run cannot
/// go on (the report so far is printed by the caller).
pub(crate) fn run(ctx: &Ctx, plan: &Plan, rep: &mut Report) -> Result<()> {
    let t0 = Instant::now();
    let mut c = Cluster3::start(ctx, plan)?;
    rep.event(
        t0.elapsed(),
        format!("3 NATS nodes, 2 consumers, 2 edges up ({})", c.nats.urls()),
    );
    if let Some(n) = plan.kill_node {
        let moved = c.nats.move_stream_leader(STREAM, n);
        rep.event(
            t0.elapsed(),
            if moved {
                format!("n{n} made the stream's leader (--kill-node {n})")
            } else {
                format!("n{n} could not be made the stream's leader; it is killed anyway")
            },
        );
    }
    let clk = clk_tck();
    let stores = c.stores();
    let mut next_call = 0;

    // What each role costs idle (heartbeats, 64 partition consumers' pulls, timers),
    // over `down`: the CPU per message below includes it.
    let idle0 = role_ticks(&mut c);
    std::thread::sleep(plan.down);
    let idle1 = role_ticks(&mut c);
    for (role, before, after) in [
        ("NATS (3 nodes)", idle0.nats, idle1.nats),
        ("edges (2)", idle0.edges, idle1.edges),
        ("consumers (2)", idle0.consumers, idle1.consumers),
    ] {
        let share = after.saturating_sub(before) as f64 / clk / plan.down.as_secs_f64() * 100.0;
        rep.figure(
            &format!("CPU idle, {role}"),
            format!("{share:.1} % of a core"),
            &format!(
                "measured: /proc/PID/stat over {} s without traffic",
                plan.down.as_secs()
            ),
        );
    }

    // 1. The main phase.
    let main_calls = 0..plan.calls;
    next_call += plan.calls;
    let main_messages = plan.calls * u64::from(STEPS);
    let ticks0 = role_ticks(&mut c);
    let main_started = Instant::now();
    let start_ts = unix_now()?;
    let half = plan.calls / 2;
    let mut senders = Vec::new();
    for (i, calls) in [main_calls.start..half, half..main_calls.end]
        .into_iter()
        .enumerate()
    {
        senders.push(Sender::start(
            &ctx.peer,
            &format!("peer{}", i + 1),
            c.edges[i].port,
            Load {
                calls,
                rate: plan.rate,
                start_ts,
            },
            &ctx.dir.join("logs").join(format!("peer{}.log", i + 1)),
        )?);
    }
    rep.event(
        t0.elapsed(),
        format!(
            "main: {main_messages} messages of {} calls at {} msg/s into each edge",
            plan.calls, plan.rate
        ),
    );
    let quiet = main_phase(&mut c, &mut senders, plan, main_messages, t0, rep)?;
    let sent_secs = main_started.elapsed().as_secs_f64();
    let rows = settle(&stores, main_messages, plan.settle);
    let main_secs = main_started.elapsed().as_secs_f64();
    rep.event(
        t0.elapsed(),
        format!("main: stores hold {rows} rows of {main_messages}"),
    );
    let ticks1 = role_ticks(&mut c);
    let consumer_scrapes = c.consumer_metrics();
    let edge_scrapes = c.edge_metrics();
    c.ensure_running()?;

    // 2. Every broker down while edge 1 takes calls.
    let outage_calls = next_call..next_call + calls_for(plan.side_rate * plan.outage.as_secs());
    next_call = outage_calls.end;
    let outage = outage_phase(&mut c, ctx, plan, outage_calls.clone(), t0, rep)?;

    // 3. A consumer stopped while calls arrive, then catching up.
    let slow_calls = next_call..next_call + calls_for(plan.side_rate * plan.down.as_secs().max(3));
    next_call = slow_calls.end;
    slow_phase(&mut c, ctx, plan, slow_calls, t0, rep)?;

    // The checks of the stores, before the throughput steps add their own calls.
    let all_calls = 0..next_call;
    let want = (all_calls.end - all_calls.start) * u64::from(STEPS);
    settle(&stores, want, plan.settle);
    let tally = stores::tally(&stores, all_calls.clone())?;
    let outage_tally = stores::tally(&stores, outage.calls.clone())?;
    store_checks(rep, &tally, &outage, &outage_tally);
    search_checks(rep, &c, ctx, &all_calls);
    replica_check(rep, &mut c.nats);
    let regressions = total(&c.edge_metrics(), "hep_nats_sequence_regressions_total");
    rep.check(
        "stream sequences only grew",
        regressions == 0,
        format!(
            "{regressions} new messages acknowledged to the edges at a sequence the stream had \
             given before (hep_nats_sequence_regressions_total, both edges)"
        ),
    );
    let restarts = total(&c.consumer_metrics(), "hep_nats_consumer_restarts_total");
    let rewinds = total(&c.consumer_metrics(), "hep_nats_rewinds_total");
    let duplicates_ignored = total(&c.consumer_metrics(), "hep_store_duplicates_total");
    rep.figure(
        "partition consumers made again, partitions read again from their start",
        format!("{restarts}, {rewinds}"),
        "measured: hep_nats_consumer_restarts_total, hep_nats_rewinds_total, both consumers",
    );
    rep.figure(
        "messages read again that the stores already held",
        duplicates_ignored.to_string(),
        "measured: hep_store_duplicates_total, both consumers (consumer 2 read again what came after its saved positions)",
    );

    // Figures of the main phase.
    rep.figure(
        "main phase",
        format!(
            "{main_messages} msgs of {} calls in {sent_secs:.1} s sent, {main_secs:.1} s stored",
            plan.calls
        ),
        "measured",
    );
    let main_rate = main_messages as f64 / main_secs;
    rep.figure(
        "main phase rate (2 edges, 2 consumers)",
        format!("{main_rate:.0} msg/s"),
        "measured: messages / time until the stores held them, kills included",
    );
    let retries = total(&edge_scrapes, "hep_nats_publish_retries_total");
    rep.figure(
        "edge publish retries",
        retries.to_string(),
        "measured: hep_nats_publish_retries_total, both edges",
    );
    rep.figure(
        "publishes the stream deduplicated",
        total(&edge_scrapes, "hep_nats_publish_duplicates_total").to_string(),
        "measured: hep_nats_publish_duplicates_total, both edges",
    );
    let ms = |v: Option<f64>| {
        v.map_or_else(
            || "no observations".to_owned(),
            |s| format!("{:.1} ms", s * 1e3),
        )
    };
    for (what, q) in [("p50", 0.5), ("p99", 0.99)] {
        rep.figure(
            &format!("edge publish to stream ack before the first kill, {what}"),
            ms(quantile(&quiet.edges, "hep_nats_ack_seconds", q)),
            &format!(
                "measured: hep_nats_ack_seconds of both edges over the first {} messages",
                quiet.messages
            ),
        );
        rep.figure(
            &format!("edge receive to store commit before the first kill, {what}"),
            ms(quantile(&quiet.consumers, "hep_nats_edge_to_store_seconds", q)),
            &format!("measured: hep_nats_edge_to_store_seconds of both consumers over the first {} messages", quiet.messages),
        );
    }
    for (what, q) in [("p50", 0.5), ("p99", 0.99)] {
        let v = quantile(&edge_scrapes, "hep_nats_ack_seconds", q);
        rep.figure(
            &format!("edge publish to stream ack, {what}"),
            v.map_or_else(
                || "no observations".to_owned(),
                |s| format!("{:.1} ms", s * 1e3),
            ),
            "measured: hep_nats_ack_seconds of both edges over the main phase, kills included",
        );
    }
    for (what, q) in [("p50", 0.5), ("p99", 0.99)] {
        let v = quantile(&consumer_scrapes, "hep_nats_edge_to_store_seconds", q);
        rep.figure(
            &format!("edge receive to store commit, {what}"),
            v.map_or_else(
                || "no observations".to_owned(),
                |s| format!("{:.1} ms", s * 1e3),
            ),
            "measured: hep_nats_edge_to_store_seconds of both consumers at the end of the main \
             phase (consumer 2's since its restart), kills included",
        );
    }
    for (role, before, after) in [
        ("NATS (3 nodes)", ticks0.nats, ticks1.nats),
        ("edges (2)", ticks0.edges, ticks1.edges),
        ("consumers (2)", ticks0.consumers, ticks1.consumers),
    ] {
        let us = cpu_us_per_message(after.saturating_sub(before), clk, main_messages);
        rep.figure(
            &format!("CPU per message, {role}"),
            format!("{us:.1} µs"),
            "measured: /proc/PID/stat utime+stime over the main phase / messages",
        );
        if us > 0.0 {
            rep.figure(
                &format!("cores per 100,000 msg/s, {role}"),
                format!("{:.2}", us / 10.0),
                "extrapolated from the CPU per message (linear, no contention)",
            );
        }
    }

    // 4. Throughput.
    throughput(&mut c, ctx, plan, next_call, t0, rep)?;

    c.nats.stop();
    Ok(())
}

/// CPU ticks of each role.
#[derive(Debug, Clone, Copy)]
struct RoleTicks {
    nats: u64,
    edges: u64,
    consumers: u64,
}

fn role_ticks(c: &mut Cluster3) -> RoleTicks {
    RoleTicks {
        nats: c.nats.cpu_ticks(),
        edges: c.edges.iter().map(|e| e.server.cpu_ticks()).sum(),
        consumers: c.consumers.iter().map(|c| c.server.cpu_ticks()).sum(),
    }
}

/// The main phase's traffic with its two kills.
fn main_phase(
    c: &mut Cluster3,
    senders: &mut [Sender],
    plan: &Plan,
    messages: u64,
    t0: Instant,
    rep: &mut Report,
) -> Result<Quiet> {
    let mut quiet = Quiet::default();
    // (fraction of the messages sent, what to do): kill, then restart `down` later.
    let mut nats_killed: Option<(usize, Instant)> = None;
    let mut consumer_killed: Option<Instant> = None;
    let mut nats_done = false;
    let mut consumer_done = false;
    let limit = Duration::from_secs(messages / plan.rate.max(1) * 3 + 120);
    let deadline = Instant::now() + limit;
    loop {
        let mut sent = 0;
        let mut done = true;
        for s in senders.iter_mut() {
            let (n, d) = s.progress()?;
            sent += n;
            done &= d;
        }
        let fraction = sent as f64 / messages as f64;
        if !nats_done && nats_killed.is_none() && fraction >= 0.25 {
            quiet = Quiet {
                consumers: c.consumer_metrics(),
                edges: c.edge_metrics(),
                messages: sent,
            };
            let leader = c.nats.stream_leader(STREAM);
            let victim = plan.kill_node.or(leader).unwrap_or(1);
            let role = if leader == Some(victim) {
                "stream leader"
            } else {
                "not the stream leader"
            };
            let meta = c.nats.meta_leader();
            c.nats.kill(victim)?;
            rep.event(
                t0.elapsed(),
                format!(
                    "main: NATS node n{victim} ({role}; meta leader {}) SIGKILLed at {sent} sent",
                    meta.as_deref().unwrap_or("unknown")
                ),
            );
            nats_killed = Some((victim, Instant::now()));
        }
        if let Some((node, at)) = nats_killed
            && at.elapsed() >= plan.down
        {
            let (took, health) = c.nats.restart(node)?;
            rep.event(
                t0.elapsed(),
                format!(
                    "main: n{node} restarted, current again in {:.1} s; {health}",
                    took.as_secs_f64()
                ),
            );
            nats_killed = None;
            nats_done = true;
        }
        // After the NATS node is back: at 55 % of the messages, or at once if the traffic
        // ended first (the consumers still have a backlog to read).
        if nats_done && !consumer_done && consumer_killed.is_none() && (fraction >= 0.55 || done) {
            c.consumers[1].server.kill();
            rep.event(
                t0.elapsed(),
                format!("main: consumer2 SIGKILLed at {sent} sent"),
            );
            consumer_killed = Some(Instant::now());
        }
        if let Some(at) = consumer_killed
            && at.elapsed() >= plan.down
        {
            c.consumers[1].server.restart()?;
            rep.event(t0.elapsed(), "main: consumer2 restarted");
            consumer_killed = None;
            consumer_done = true;
        }
        if done && nats_killed.is_none() && consumer_killed.is_none() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "main phase: {sent} of {messages} sent after {:.0} s",
                limit.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for s in senders.iter_mut() {
        s.stop();
    }
    if !nats_done || !consumer_done {
        rep.check(
            "kills during the main phase",
            false,
            "the traffic ended before both kills (raise the message count or lower the rate)",
        );
    }
    rep.event(t0.elapsed(), "main: every message sent");
    Ok(quiet)
}

/// The metrics of the main phase up to its first kill: latency without the disruptions.
#[derive(Default)]
struct Quiet {
    consumers: Vec<Metrics>,
    edges: Vec<Metrics>,
    /// Messages sent until then.
    messages: u64,
}

/// What the outage phase saw.
#[derive(Debug, Default)]
struct Outage {
    calls: Range<u64>,
    /// The spool's byte or message gauge on edge 1 while the brokers were down.
    spooled: u64,
    /// Seconds from the brokers' restart to the stores holding every message.
    caught_up_secs: f64,
}

fn outage_phase(
    c: &mut Cluster3,
    ctx: &Ctx,
    plan: &Plan,
    calls: Range<u64>,
    t0: Instant,
    rep: &mut Report,
) -> Result<Outage> {
    let stores = c.stores();
    let before = stored_rows(&stores);
    // SIGTERM, not SIGKILL: a crash of all three at once left a replica of the stream
    // that did not become current again within 60 s in nats-server 2.9.10 ("stream store
    // EOF", "Resetting stream cluster state"); for the edge, brokers that are stopped
    // and brokers that crashed are the same outage.
    c.nats.stop();
    rep.event(t0.elapsed(), "outage: every NATS node stopped (SIGTERM)");
    let down_at = Instant::now();
    let mut sender = Sender::start(
        &ctx.peer,
        "peer-outage",
        c.edges[0].port,
        Load {
            calls: calls.clone(),
            rate: plan.side_rate,
            start_ts: unix_now()?,
        },
        &ctx.dir.join("logs").join("peer-outage.log"),
    )?;
    sender.wait_done(plan.outage + Duration::from_secs(60))?;
    sender.stop();
    std::thread::sleep(plan.outage.saturating_sub(down_at.elapsed()));
    let edge = c.edges[0].server.scrape()?;
    let spooled = spool_gauge(&edge);
    rep.event(
        t0.elapsed(),
        format!(
            "outage: {} messages sent to edge1 in {:.1} s with every broker down; spool gauge {spooled}",
            (calls.end - calls.start) * u64::from(STEPS),
            down_at.elapsed().as_secs_f64()
        ),
    );
    let (took, health) = c.nats.start_all()?;
    rep.event(
        t0.elapsed(),
        format!(
            "outage: NATS nodes restarted, routes up in {:.1} s; {health}",
            took.as_secs_f64()
        ),
    );
    let back = Instant::now();
    let want = before + (calls.end - calls.start) * u64::from(STEPS);
    let rows = settle(&stores, want, plan.settle);
    let caught_up_secs = back.elapsed().as_secs_f64();
    rep.event(
        t0.elapsed(),
        format!("outage: stores hold {rows} rows of {want}"),
    );
    c.ensure_running()?;
    Ok(Outage {
        calls,
        spooled,
        caught_up_secs,
    })
}

/// The first spool gauge an edge reports (messages or bytes waiting on disk).
fn spool_gauge(m: &Metrics) -> u64 {
    [
        "hep_spool_messages",
        "hep_spool_bytes",
        "hep_spool_pending_messages",
    ]
    .iter()
    .map(|name| m.sum(name, &[]))
    .find(|&v| v > 0)
    .unwrap_or(0)
}

fn slow_phase(
    c: &mut Cluster3,
    ctx: &Ctx,
    plan: &Plan,
    calls: Range<u64>,
    t0: Instant,
    rep: &mut Report,
) -> Result<()> {
    let stores = c.stores();
    let before = stored_rows(&stores);
    c.consumers[0].server.stop();
    rep.event(t0.elapsed(), "slow consumer: consumer1 stopped");
    let mut sender = Sender::start(
        &ctx.peer,
        "peer-slow",
        c.edges[1].port,
        Load {
            calls: calls.clone(),
            rate: plan.side_rate,
            start_ts: unix_now()?,
        },
        &ctx.dir.join("logs").join("peer-slow.log"),
    )?;
    sender.wait_done(plan.down.max(Duration::from_secs(2)) + Duration::from_secs(60))?;
    sender.stop();
    let messages = (calls.end - calls.start) * u64::from(STEPS);
    // Give the edge time to publish everything it took.
    std::thread::sleep(Duration::from_secs(1));
    c.consumers[0].server.restart()?;
    let back = Instant::now();
    // The largest lag it reports in its first seconds back (it reads as it reports).
    let mut lag = 0;
    while back.elapsed() < Duration::from_secs(3) {
        let now = c.consumers[0]
            .server
            .scrape()
            .map(|m| m.sum("hep_nats_pending", &[]))
            .unwrap_or(0);
        lag = lag.max(now);
        std::thread::sleep(Duration::from_millis(50));
    }
    rep.event(
        t0.elapsed(),
        format!("slow consumer: {messages} messages sent, consumer1 restarted, lag reported {lag}"),
    );
    let want = before + messages;
    let rows = settle(&stores, want, plan.settle);
    let caught = back.elapsed().as_secs_f64();
    let lag_after = c.consumers[0]
        .server
        .scrape()
        .map(|m| m.sum("hep_nats_pending", &[]))
        .unwrap_or(u64::MAX);
    rep.check(
        "slow consumer: lag reported",
        lag > 0,
        format!("hep_nats_pending on consumer1 right after its restart: {lag}"),
    );
    rep.check(
        "slow consumer: caught up",
        rows >= want && lag_after == 0,
        format!(
            "stores {rows} of {want} rows {caught:.1} s after the restart; hep_nats_pending then {lag_after}"
        ),
    );
    c.ensure_running()
}

/// The store checks of the whole run (main, outage and slow phases together).
fn store_checks(rep: &mut Report, t: &stores::Tally, outage: &Outage, during: &stores::Tally) {
    let examples = |t: &stores::Tally| {
        if t.examples.is_empty() {
            String::new()
        } else {
            format!("; e.g. {}", t.examples.join("; "))
        }
    };
    rep.check(
        "every message stored (lost 0)",
        t.lost == 0,
        format!(
            "{} of {} found, {} lost{}",
            t.found,
            t.expected,
            t.lost,
            examples(t)
        ),
    );
    rep.check(
        "each message once (duplicates 0)",
        t.duplicates == 0,
        format!("{} duplicate rows in the stores", t.duplicates),
    );
    rep.check(
        "nothing else stored",
        t.foreign == 0,
        format!("{} rows that are no message of the run", t.foreign),
    );
    let calls = t.expected / u64::from(STEPS);
    rep.check(
        "every call whole on one consumer in capture order",
        t.whole_calls == calls && t.split_calls == 0 && t.out_of_order == 0,
        format!(
            "{} of {calls} calls whole ({} on consumer1, {} on consumer2); {} split, {} out of order",
            t.whole_calls,
            t.calls_per_store.first().copied().unwrap_or(0),
            t.calls_per_store.get(1).copied().unwrap_or(0),
            t.split_calls,
            t.out_of_order
        ),
    );
    rep.check(
        "both consumers hold calls",
        t.calls_per_store.iter().all(|&n| n > 0),
        format!("rows per store {:?}", t.per_store),
    );
    rep.check(
        "brokers down: spooled, then delivered",
        outage.spooled > 0 && during.lost == 0 && during.duplicates == 0,
        format!(
            "{} messages sent while every broker was down: hep_spool_messages {} on edge1; \
             {} stored once, {} lost, {} duplicates, {:.1} s after the brokers' restart",
            during.expected,
            outage.spooled,
            during.found,
            during.lost,
            during.duplicates,
            outage.caught_up_secs
        ),
    );
}

/// What each node's own copy of the stream holds once everything is stored: with a work
/// queue, 0 on every node. A figure, not a check: a copy that differs is nats-server's
/// own state (in 2.9.10, a follower kept 2 acknowledged messages after its stream leader
/// was killed), and what the consumers stored is checked message by message above.
fn replica_check(rep: &mut Report, nats: &mut Cluster) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut held = nats.local_messages();
    let equal =
        |held: &[(String, Option<u64>)]| held.iter().all(|(_, n)| n.is_some() && *n == held[0].1);
    while !equal(&held) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        held = nats.local_messages();
    }
    rep.figure(
        "messages in each node's copy of the stream",
        held.iter()
            .map(|(name, n)| format!("{name} {}", n.map_or("?".to_owned(), |n| n.to_string())))
            .collect::<Vec<_>>()
            .join(", "),
        if equal(&held) {
            "measured: each node's /jsz once everything was stored (kept until max_age, read or not)"
        } else {
            "measured: each node's /jsz once everything was stored; the copies DIFFER (nats-server's state, polled 15 s)"
        },
    );
}

/// `GET /api/v1/calls?call_id=` of a sample of calls through each consumer.
fn search_checks(rep: &mut Report, c: &Cluster3, ctx: &Ctx, calls: &Range<u64>) {
    const SAMPLE: u64 = 20;
    let step = ((calls.end - calls.start) / SAMPLE).max(1);
    let sample: Vec<u64> = (calls.start..calls.end)
        .step_by(usize::try_from(step).unwrap_or(1))
        .take(SAMPLE as usize)
        .collect();
    let window = "since=0&until=4102444800";
    let mut found = vec![0u64; c.consumers.len()];
    let mut errors = Vec::new();
    for &call in &sample {
        let id = format!("bench-{call}@10.0.0.1");
        for (i, consumer) in c.consumers.iter().enumerate() {
            match http_get(
                consumer.http,
                &format!("/api/v1/calls?call_id={id}&{window}"),
            ) {
                Ok((200, body)) if body.contains(&format!("\"call_id\":\"{id}\"")) => found[i] += 1,
                Ok((200, _)) => {}
                Ok((code, body)) => {
                    errors.push(format!("consumer{} {code}: {}", i + 1, body.trim()))
                }
                Err(err) => errors.push(format!("consumer{}: {err:#}", i + 1)),
            }
        }
    }
    let n = sample.len() as u64;
    if ctx.peers_config {
        cli_search_check(rep, c, ctx, &sample);
        rep.check(
            "search through either consumer finds every call",
            found.iter().all(|&f| f == n) && errors.is_empty(),
            format!("{n} sampled calls: found {found:?} through consumer1, consumer2 ([cluster] peers){}",
                errors.first().map_or(String::new(), |e| format!("; {e}"))),
        );
    } else {
        rep.check(
            "search finds every call on the consumer holding it",
            found.iter().sum::<u64>() == n && errors.is_empty(),
            format!(
                "{n} sampled calls: found {found:?} through consumer1, consumer2 (this hep-server \
                 has no [cluster] peers: each node searched on its own){}",
                errors.first().map_or(String::new(), |e| format!("; {e}"))
            ),
        );
    }
}

/// `hep-server search --store STORE --peer OTHER --call-id ID --format json` from each
/// consumer's store, the other consumer as its peer: every sampled call whole (its 7
/// messages) through either.
fn cli_search_check(rep: &mut Report, c: &Cluster3, ctx: &Ctx, sample: &[u64]) {
    let mut whole = vec![0u64; c.consumers.len()];
    let mut errors = Vec::new();
    for &call in sample.iter().take(5) {
        let id = format!("bench-{call}@10.0.0.1");
        for (i, consumer) in c.consumers.iter().enumerate() {
            let other = &c.consumers[1 - i];
            let args = [
                "search".to_owned(),
                "--store".to_owned(),
                consumer.store.display().to_string(),
                "--peer".to_owned(),
                format!("http://{}", other.http),
                "--call-id".to_owned(),
                id.clone(),
                "--since".to_owned(),
                "0".to_owned(),
                "--format".to_owned(),
                "json".to_owned(),
            ];
            let bin = ctx.hep_server.to_string_lossy().into_owned();
            match crate::interop::proc::output(&bin, &args, None, Duration::from_secs(30)) {
                Ok(out) if out.status.success() => {
                    let records = out.stdout.iter().filter(|&&b| b == b'\n').count();
                    if records == usize::from(STEPS) {
                        whole[i] += 1;
                    } else {
                        errors.push(format!("{id} through consumer{}: {records} records", i + 1));
                    }
                }
                Ok(out) => errors.push(format!(
                    "{id} through consumer{} ({}): {}",
                    i + 1,
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(err) => errors.push(format!("{err:#}")),
            }
        }
    }
    let n = sample.len().min(5) as u64;
    rep.check(
        "hep-server search through either consumer finds every call whole",
        whole.iter().all(|&w| w == n),
        format!(
            "{n} sampled calls, 7 records each: {whole:?} through consumer1, consumer2 \
             (search --store ITS_STORE --peer THE_OTHER){}",
            errors.first().map_or(String::new(), |e| format!("; {e}"))
        ),
    );
}

/// Throughput: one edge, two edges; a backlog drained by one consumer, then two.
fn throughput(
    c: &mut Cluster3,
    ctx: &Ctx,
    plan: &Plan,
    first_call: u64,
    t0: Instant,
    rep: &mut Report,
) -> Result<()> {
    let calls = plan.throughput_calls;
    let messages = calls * u64::from(STEPS);
    let published = |c: &Cluster3| total(&c.edge_metrics(), "hep_nats_published_total");
    let mut next = first_call;
    // Into one edge, then into both (half each).
    for edges in [1_usize, 2] {
        let before = published(c);
        let started = Instant::now();
        let start_ts = unix_now()?;
        let mut senders = Vec::new();
        for e in 0..edges {
            let share = calls / edges as u64;
            let load = Load {
                calls: next..next + share,
                rate: 0,
                start_ts,
            };
            next += share;
            senders.push(Sender::start(
                &ctx.peer,
                &format!("peer-tp{edges}-{}", e + 1),
                c.edges[e].port,
                load,
                &ctx.dir
                    .join("logs")
                    .join(format!("peer-tp{edges}-{}.log", e + 1)),
            )?);
        }
        let want = before + (calls / edges as u64) * edges as u64 * u64::from(STEPS);
        let deadline = Instant::now() + plan.settle;
        while published(c) < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let secs = started.elapsed().as_secs_f64();
        let got = published(c).saturating_sub(before);
        for s in &mut senders {
            s.stop();
        }
        rep.event(
            t0.elapsed(),
            format!("throughput: {got} published through {edges} edge(s) in {secs:.1} s"),
        );
        rep.figure(
            &format!("edge throughput, {edges} edge(s)"),
            format!("{:.0} msg/s", got as f64 / secs),
            "measured: published and acked (hep_nats_published_total) / time, as fast as the peers send",
        );
    }
    // A backlog drained by consumer 1 alone, then by both; after each, every consumer
    // runs until the stores hold the whole backlog.
    for consumers in [1_usize, 2] {
        for k in &mut c.consumers {
            k.server.stop();
        }
        let stores = c.stores();
        let before = stored_rows(&stores);
        let before_published = published(c);
        let load = Load {
            calls: next..next + calls,
            rate: 0,
            start_ts: unix_now()?,
        };
        next += calls;
        let mut sender = Sender::start(
            &ctx.peer,
            &format!("peer-backlog{consumers}"),
            c.edges[0].port,
            load,
            &ctx.dir
                .join("logs")
                .join(format!("peer-backlog{consumers}.log")),
        )?;
        sender.wait_done(plan.settle)?;
        sender.stop();
        let deadline = Instant::now() + plan.settle;
        while published(c) < before_published + messages && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let running: Vec<PathBuf> = c
            .consumers
            .iter()
            .take(consumers)
            .map(|k| k.store.clone())
            .collect();
        let running_before = stored_rows(&running);
        let started = Instant::now();
        for k in c.consumers.iter_mut().take(consumers) {
            k.server.restart()?;
        }
        // Until the running consumers' stores stop growing for 2 s.
        let mut last = running_before;
        let mut last_change = Instant::now();
        let deadline = Instant::now() + plan.settle;
        while last_change.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = stored_rows(&running);
            if now != last {
                last = now;
                last_change = Instant::now();
            }
        }
        let secs = last_change.duration_since(started).as_secs_f64().max(0.001);
        let drained = last.saturating_sub(running_before);
        rep.event(
            t0.elapsed(),
            format!(
                "throughput: {drained} messages of a {messages}-message backlog stored by \
                 {consumers} consumer(s) in {secs:.1} s (from their start)"
            ),
        );
        rep.figure(
            &format!("consumer throughput, {consumers} consumer(s)"),
            format!("{:.0} msg/s", drained as f64 / secs),
            if consumers == 1 {
                "measured: a backlog drained by consumer1 alone (its 32 partitions) / time from its start"
            } else {
                "measured: a backlog drained by both consumers / time from their start"
            },
        );
        for k in &mut c.consumers {
            if !k.server.running() {
                k.server.restart()?;
            }
        }
        let rows = settle(&stores, before + messages, plan.settle);
        if rows < before + messages {
            bail!(
                "throughput: the stores hold {rows} rows of {}",
                before + messages
            );
        }
    }
    Ok(())
}

/// Whether `hep-server run` of `bin` has the NATS input (the lead's part of issue 18).
pub(crate) fn supports_nats(bin: &Path) -> Result<bool> {
    let out = std::process::Command::new(bin)
        .args(["run", "--help"])
        .output()
        .with_context(|| format!("running {} run --help", bin.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).contains("--input"))
}

/// Whether `bin` accepts `[cluster] peers` in its config.
pub(crate) fn supports_peers(bin: &Path, dir: &Path) -> Result<bool> {
    let config = dir.join("peers-probe.toml");
    std::fs::write(&config, "[cluster]\npeers = [\"http://127.0.0.1:9\"]\n")?;
    let ok = std::process::Command::new(bin)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .is_ok_and(|o| o.status.success());
    let _ = std::fs::remove_file(&config);
    Ok(ok)
}
