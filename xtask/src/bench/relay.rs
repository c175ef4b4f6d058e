//! Sections 4 and 5: the relay (UDP in, TCP out) and memory.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::Ctx;
use super::ingest::{finish_send, send, settle, spawn_send};
use super::procs::{Peer, Server, UdpSnmp, free_port};

/// One relay step.
#[derive(Debug, Clone)]
pub(crate) struct RelayStep {
    pub(crate) rate: u64,
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
    pub(crate) kernel_drops: u64,
    pub(crate) overload_drops: u64,
}

/// Latency probes at one load.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latency {
    pub(crate) load: u64,
    pub(crate) sent: u64,
    pub(crate) seen: u64,
    pub(crate) p50_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
    /// Messages of the load the sink counted, and that were sent.
    pub(crate) load_received: u64,
    pub(crate) load_sent: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct RelayResult {
    pub(crate) steps: Vec<RelayStep>,
    pub(crate) zero_loss: u64,
    pub(crate) idle: Latency,
    /// At a quarter of the zero-loss rate: where the tail starts, for capacity planning.
    pub(crate) quarter: Latency,
    pub(crate) half: Latency,
    pub(crate) relay_hwm_kib: u64,
    pub(crate) step_secs: f64,
    pub(crate) probe_secs: u64,
}

fn relay_server(ctx: &Ctx<'_>, name: &str, listen_port: u16, dest_port: u16) -> Result<Server> {
    Server::start(
        &ctx.bin("hep-server"),
        name,
        &[
            "--listen".into(),
            format!("hep_udp:127.0.0.1:{listen_port}"),
            "--output".into(),
            format!("relay:hep_tcp:127.0.0.1:{dest_port}"),
        ],
        &ctx.log(&name.replace(' ', "-")),
    )
}

pub(crate) fn relay(ctx: &Ctx<'_>) -> Result<RelayResult> {
    let step_secs = ctx.pick(3.0, 1.0, 0.5);
    let ladder: &[u64] = ctx.pick(
        &[
            100_000, 200_000, 300_000, 400_000, 500_000, 600_000, 700_000, 800_000, 900_000,
            1_000_000, 1_200_000, 1_400_000,
        ],
        &[100_000, 200_000],
        &[50_000],
    );
    let b_port = free_port()?;
    let b = Server::start(
        &ctx.bin("hep-server"),
        "relay destination (tcp, null)",
        &[
            "--listen".into(),
            format!("hep_tcp:127.0.0.1:{b_port}"),
            "--output".into(),
            "null".into(),
        ],
        &ctx.log("relay-destination"),
    )?;
    let a_port = free_port()?;
    let a = relay_server(ctx, "relay (udp in, tcp out)", a_port, b_port)?;
    // Open the relay's connection before measuring.
    send(
        ctx,
        &format!("hep_udp:127.0.0.1:{a_port}"),
        1000,
        Some(10_000),
        &ctx.log("relay-warmup"),
    )?;
    settle(|| b.delivered_null(), Duration::from_secs(3))?;

    let mut steps = Vec::new();
    let mut failing = 0;
    for &rate in ladder {
        let mut clean = true;
        for run in 0..ctx.runs {
            let before = b.delivered_null()?;
            let over0 = a
                .scrape()?
                .sum("hep_dropped_total", &["reason=\"overload\""]);
            let snmp = UdpSnmp::read();
            let count = (rate as f64 * step_secs) as u64;
            let sent = send(
                ctx,
                &format!("hep_udp:127.0.0.1:{a_port}"),
                count,
                Some(rate),
                &ctx.log(&format!("send-relay-{rate}-{run}")),
            )?;
            let delivered = settle(|| b.delivered_null(), Duration::from_secs(5))? - before;
            let step = RelayStep {
                rate,
                sent: sent.messages,
                delivered,
                kernel_drops: UdpSnmp::read().since(snmp).rcvbuf_errors,
                overload_drops: a
                    .scrape()?
                    .sum("hep_dropped_total", &["reason=\"overload\""])
                    - over0,
            };
            println!(
                "    relay {rate:>8}/s run {}: sent {} delivered {} kernel drops {} overload {}",
                run + 1,
                step.sent,
                step.delivered,
                step.kernel_drops,
                step.overload_drops
            );
            clean &= step.delivered >= step.sent && step.sent > 0;
            steps.push(step);
        }
        failing = if clean { 0 } else { failing + 1 };
        if failing >= 2 {
            break;
        }
    }
    let relay_hwm_kib = a.proc.sample().hwm_kib;
    drop(a);
    drop(b);
    let zero_loss = super::ingest::zero_loss_rate(
        steps
            .iter()
            .map(|s| (s.rate, s.delivered >= s.sent && s.sent > 0)),
    )
    .unwrap_or(0);

    // Latency: the relay forwards to the tcp-sink, which also sends the probes.
    let probe_secs: u64 = ctx.pick(10, 2, 2);
    let t_port = free_port()?;
    let mut sink = Peer::start(
        &ctx.bin("hep-bench-peer"),
        "tcp-sink (latency)",
        &[
            "tcp-sink".into(),
            "--listen".into(),
            format!("127.0.0.1:{t_port}"),
        ],
        &ctx.log("latency-sink"),
    )?;
    let a_port = free_port()?;
    let a = relay_server(ctx, "relay (latency)", a_port, t_port)?;
    send(
        ctx,
        &format!("hep_udp:127.0.0.1:{a_port}"),
        1000,
        Some(10_000),
        &ctx.log("latency-warmup"),
    )?;
    let idle = probe(ctx, &mut sink, a_port, 0, probe_secs)?;
    let quarter = probe(
        ctx,
        &mut sink,
        a_port,
        zero_loss.max(20_000) / 4,
        probe_secs,
    )?;
    let half = probe(
        ctx,
        &mut sink,
        a_port,
        zero_loss.max(20_000) / 2,
        probe_secs,
    )?;
    drop(a);
    Ok(RelayResult {
        steps,
        zero_loss,
        idle,
        quarter,
        half,
        relay_hwm_kib,
        step_secs,
        probe_secs,
    })
}

/// 1000 probes a second for `secs` (less one), under a load of `load` messages a second.
fn probe(ctx: &Ctx<'_>, sink: &mut Peer, a_port: u16, load: u64, secs: u64) -> Result<Latency> {
    let frames0 = sink.stats()?.get("valid").copied().unwrap_or(0.0) as u64;
    let load_log = ctx.log(&format!("latency-load-{load}"));
    let sender = if load > 0 {
        Some(spawn_send(
            ctx,
            &format!("hep_udp:127.0.0.1:{a_port}"),
            load * secs,
            Some(load),
            &load_log,
        )?)
    } else {
        None
    };
    std::thread::sleep(Duration::from_millis(500));
    let n_probes = 1000 * (secs.saturating_sub(1)).max(1);
    let answer = sink
        .proc
        .ask(&format!("probe 127.0.0.1:{a_port} 1000 {n_probes}"))?;
    anyhow::ensure!(answer == "probing", "tcp-sink: {answer}");
    let load_sent = match sender {
        Some(s) => finish_send(s, load * secs, Some(load), &load_log)?.messages,
        None => 0,
    };
    // Probes end within `secs` of starting; then let the relay drain.
    let deadline = Instant::now() + Duration::from_secs(secs + 5);
    loop {
        let st = sink.stats()?;
        let sent = st.get("probes_sent").copied().unwrap_or(0.0) as u64;
        if sent >= n_probes || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let frames = settle(
        || Ok(sink.stats()?.get("valid").copied().unwrap_or(0.0) as u64),
        Duration::from_secs(5),
    )?;
    let st = sink.stats()?;
    let get = |k: &str| st.get(k).copied().unwrap_or(0.0);
    let l = Latency {
        load,
        sent: get("probes_sent") as u64,
        seen: get("probes_seen") as u64,
        p50_us: get("p50_us"),
        p90_us: get("p90_us"),
        p99_us: get("p99_us"),
        max_us: get("max_us"),
        load_received: (frames - frames0).saturating_sub(get("probes_seen") as u64),
        load_sent,
    };
    println!(
        "    latency at {load}/s: probes {}/{} p50 {:.0} us p99 {:.0} us max {:.0} us; load {}/{}",
        l.seen, l.sent, l.p50_us, l.p99_us, l.max_us, l.load_received, l.load_sent
    );
    Ok(l)
}

/// RSS over time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Series {
    /// (seconds since start, RSS KiB, queue depth, dropped so far).
    pub(crate) points: Vec<(f64, u64, u64, u64)>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct MemoryResult {
    /// (rate, VmHWM KiB, sent, delivered) of a fresh hep-server at the UDP zero-loss rate.
    pub(crate) peak: Option<(u64, u64, u64, u64)>,
    pub(crate) stalled_rate: u64,
    pub(crate) stalled: Series,
    pub(crate) stalled_hwm_kib: u64,
    /// (connections asked, connections open, RSS before, RSS after, VmHWM) KiB.
    pub(crate) idle: Option<(u64, u64, u64, u64, u64)>,
    pub(crate) relay_peak: Option<(u64, u64)>,
}

pub(crate) fn memory(
    ctx: &Ctx<'_>,
    udp_zero: Option<u64>,
    relay_zero: Option<u64>,
) -> Result<MemoryResult> {
    let mut out = MemoryResult::default();
    let secs = ctx.pick(5.0, 2.0, 0.5);

    // Peak RSS at the zero-loss rate, fresh process.
    let rate = udp_zero.filter(|&r| r > 0).unwrap_or(800_000);
    let port = free_port()?;
    let s = Server::start(
        &ctx.bin("hep-server"),
        "hep-server (memory)",
        &[
            "--listen".into(),
            format!("hep_udp:127.0.0.1:{port}"),
            "--output".into(),
            "null".into(),
        ],
        &ctx.log("memory-hep-server"),
    )?;
    let sent = send(
        ctx,
        &format!("hep_udp:127.0.0.1:{port}"),
        (rate as f64 * secs) as u64,
        Some(rate),
        &ctx.log("send-memory"),
    )?;
    let delivered = settle(|| s.delivered_null(), Duration::from_secs(3))?;
    out.peak = Some((rate, s.proc.sample().hwm_kib, sent.messages, delivered));
    drop(s);

    // The relay at its zero-loss rate, fresh process, to a second hep-server.
    if let Some(r) = relay_zero.filter(|&r| r > 0) {
        let b_port = free_port()?;
        let b = Server::start(
            &ctx.bin("hep-server"),
            "relay destination (memory)",
            &[
                "--listen".into(),
                format!("hep_tcp:127.0.0.1:{b_port}"),
                "--output".into(),
                "null".into(),
            ],
            &ctx.log("memory-relay-destination"),
        )?;
        let a_port = free_port()?;
        let a = relay_server(ctx, "relay (memory)", a_port, b_port)?;
        send(
            ctx,
            &format!("hep_udp:127.0.0.1:{a_port}"),
            (r as f64 * secs) as u64,
            Some(r),
            &ctx.log("send-memory-relay"),
        )?;
        settle(|| b.delivered_null(), Duration::from_secs(3))?;
        out.relay_peak = Some((r, a.proc.sample().hwm_kib));
    }

    // A stalled destination: accepts, never reads.
    let stall_secs: u64 = ctx.pick(60, 6, 2);
    let every = ctx.pick(5.0, 1.0, 0.5);
    out.stalled_rate = 50_000;
    let st_port = free_port()?;
    let mut stall = Peer::start(
        &ctx.bin("hep-bench-peer"),
        "stall",
        &[
            "stall".into(),
            "--listen".into(),
            format!("127.0.0.1:{st_port}"),
        ],
        &ctx.log("stall"),
    )?;
    let a_port = free_port()?;
    let a = relay_server(ctx, "relay (stalled destination)", a_port, st_port)?;
    let log = ctx.log("send-stalled");
    let sender = spawn_send(
        ctx,
        &format!("hep_udp:127.0.0.1:{a_port}"),
        out.stalled_rate * stall_secs,
        Some(out.stalled_rate),
        &log,
    )?;
    let t0 = Instant::now();
    let mut next = 0.0;
    while t0.elapsed().as_secs_f64() < stall_secs as f64 + 0.5 {
        let t = t0.elapsed().as_secs_f64();
        if t >= next {
            let m = a.scrape()?;
            out.stalled.points.push((
                t,
                a.proc.sample().rss_kib,
                m.sum("hep_output_queue_depth", &[]),
                m.sum("hep_dropped_total", &[]),
            ));
            next += every;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = finish_send(
        sender,
        out.stalled_rate * stall_secs,
        Some(out.stalled_rate),
        &log,
    );
    out.stalled_hwm_kib = a.proc.sample().hwm_kib;
    let accepted = stall.stats()?.get("accepted").copied().unwrap_or(0.0);
    println!("    stalled destination: accepted {accepted} connection(s)");
    drop(a);
    drop(stall);

    // Idle TCP connections.
    let n: u64 = ctx.pick(10_000, 500, 100);
    let port = free_port()?;
    let mport = free_port()?;
    let cfg = ctx.dir.join("idle.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = [\"hep_tcp:127.0.0.1:{port}\"]\noutputs = [\"null\"]\n\n[limits]\n\
             max_connections = {}\nidle_timeout_ms = 600000\n",
            n + 2000
        ),
    )?;
    let _ = mport;
    let s = Server::start(
        &ctx.bin("hep-server"),
        "hep-server (idle connections)",
        &["--config".into(), cfg.display().to_string()],
        &ctx.log("idle-hep-server"),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let rss0 = s.proc.sample().rss_kib;
    let peer = Peer::start(
        &ctx.bin("hep-bench-peer"),
        "idle-conns",
        &[
            "idle-conns".into(),
            "--dest".into(),
            format!("127.0.0.1:{port}"),
            "--count".into(),
            n.to_string(),
        ],
        &ctx.log("idle-conns"),
    )?;
    let open = settle(
        || Ok(s.scrape()?.sum("hep_connections_open", &[])),
        Duration::from_secs(30),
    )
    .context("connections open")?;
    std::thread::sleep(Duration::from_secs(1));
    let smp = s.proc.sample();
    println!(
        "    idle connections: {} ({}) open, RSS {} -> {} KiB",
        open, peer.ready, rss0, smp.rss_kib
    );
    out.idle = Some((n, open, rss0, smp.rss_kib, smp.hwm_kib));
    drop(peer);
    drop(s);
    Ok(out)
}
