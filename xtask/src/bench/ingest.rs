//! Sections 2 and 3: UDP ingest at stepped rates, TCP ingest on 1 and 16 connections.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::Ctx;
use super::procs::{Kamailio, Peer, Proc, Server, UdpSnmp, clk_tck, free_port};

/// One `hep-server send` run, as its summary line reports it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sent {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) dropped: u64,
    pub(crate) secs: f64,
}

/// Runs `hep-server send --dest DEST --count N [--rate R] PAYLOAD`, bounded in time.
pub(crate) fn send(
    ctx: &Ctx<'_>,
    dest: &str,
    count: u64,
    rate: Option<u64>,
    log: &Path,
) -> Result<Sent> {
    let sender = spawn_send(ctx, dest, count, rate, log)?;
    finish_send(sender, count, rate, log)
}

pub(crate) fn spawn_send(
    ctx: &Ctx<'_>,
    dest: &str,
    count: u64,
    rate: Option<u64>,
    log: &Path,
) -> Result<Proc> {
    let mut cmd = Command::new(ctx.bin("hep-server"));
    cmd.args(["send", "--dest", dest, "--count", &count.to_string()]);
    if let Some(r) = rate {
        cmd.args(["--rate", &r.to_string()]);
    }
    cmd.arg(&ctx.payload).env("RUST_LOG", "warn");
    Proc::spawn("hep-server send", cmd, log, false)
}

pub(crate) fn finish_send(
    mut sender: Proc,
    count: u64,
    rate: Option<u64>,
    log: &Path,
) -> Result<Sent> {
    // Paced: the count at the rate, plus slack; unpaced: generous for a slow machine.
    let expect = rate.map_or(60.0, |r| count as f64 / r as f64);
    let limit = Duration::from_secs_f64(expect * 2.0 + 15.0);
    // A run that dropped messages exits 1; the summary still says how many.
    let _ = sender.wait(limit);
    let text = std::fs::read_to_string(log).unwrap_or_default();
    parse_sent(&text).with_context(|| format!("no summary from hep-server send: {}", text.trim()))
}

/// `sent N messages (B bytes) in T s: R msg/s; dropped D ...`
fn parse_sent(text: &str) -> Option<Sent> {
    let line = text.lines().rev().find(|l| l.starts_with("sent "))?;
    let w: Vec<&str> = line.split_whitespace().collect();
    Some(Sent {
        messages: w.get(1)?.parse().ok()?,
        bytes: w.get(3)?.trim_start_matches('(').parse().ok()?,
        secs: w.get(6)?.parse().ok()?,
        dropped: w
            .iter()
            .position(|x| *x == "dropped")
            .and_then(|i| w.get(i + 1))
            .and_then(|d| {
                d.trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .ok()
            })?,
    })
}

// ===== UDP =====

/// A UDP receiver under test.
enum Receiver {
    Sink(Peer),
    Server(Server),
    Kamailio(Kamailio),
}

impl Receiver {
    fn name(&self) -> &'static str {
        match self {
            Self::Sink(_) => "recvmmsg sink",
            Self::Server(_) => "hep-server",
            Self::Kamailio(_) => "Kamailio",
        }
    }

    /// Messages accepted so far (valid HEP: the sink's walk, hep-server's null output,
    /// Kamailio's hep_raw counter).
    fn count(&mut self) -> Result<u64> {
        Ok(match self {
            Self::Sink(p) => p.stats()?.get("valid").copied().unwrap_or(0.0) as u64,
            Self::Server(s) => s.delivered_null()?,
            Self::Kamailio(k) => k.count()?,
        })
    }

    fn cpu_ticks(&self) -> u64 {
        match self {
            Self::Sink(p) => p.proc.sample().cpu_ticks,
            Self::Server(s) => s.proc.sample().cpu_ticks,
            Self::Kamailio(k) => k.cpu_ticks(),
        }
    }

    fn rss_kib(&self) -> u64 {
        match self {
            Self::Sink(p) => p.proc.sample().rss_kib,
            Self::Server(s) => s.proc.sample().rss_kib,
            Self::Kamailio(k) => k.rss_kib(),
        }
    }
}

/// One step: one receiver, one rate, one run.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) receiver: &'static str,
    pub(crate) rate: u64,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) kernel: UdpSnmp,
    /// The sender's achieved rate.
    pub(crate) offered: f64,
    /// Messages the sender itself could not send (its queue overflowed).
    pub(crate) sender_dropped: u64,
    /// Receiver CPU, % of one core over the step.
    pub(crate) cpu: f64,
}

impl Step {
    pub(crate) fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }

    pub(crate) fn clean(&self) -> bool {
        self.sent > 0 && self.received >= self.sent
    }
}

/// All UDP steps, and the settings they ran with.
#[derive(Debug, Clone)]
pub(crate) struct UdpResult {
    pub(crate) steps: Vec<Step>,
    pub(crate) receivers: Vec<&'static str>,
    pub(crate) step_secs: f64,
    pub(crate) sink_rcvbuf: String,
    pub(crate) kamailio_note: Option<String>,
    pub(crate) rss_kib: BTreeMap<&'static str, u64>,
}

impl UdpResult {
    /// The highest rate up to which every run of `receiver`, at every rate, lost nothing
    /// (0 if none): a lossy run at a lower rate caps it even if a higher rate was clean.
    pub(crate) fn zero_loss(&self, receiver: &str) -> Option<u64> {
        zero_loss_rate(
            self.steps
                .iter()
                .filter(|s| s.receiver == receiver)
                .map(|s| (s.rate, s.clean())),
        )
    }
}

pub(crate) fn udp(ctx: &Ctx<'_>) -> Result<UdpResult> {
    let step_secs = ctx.pick(3.0, 1.0, 0.5);
    let ladder: &[u64] = ctx.pick(
        &[
            100_000, 200_000, 400_000, 600_000, 800_000, 900_000, 1_000_000, 1_200_000, 1_400_000,
            1_700_000, 2_000_000,
        ],
        &[100_000, 400_000, 800_000],
        &[50_000],
    );
    let kamailio_ladder: &[u64] = ctx.pick(
        &[25_000, 50_000, 70_000, 100_000, 140_000, 200_000],
        &[25_000, 100_000],
        &[25_000],
    );

    let mut receivers = Vec::new();
    let sink_port = free_port()?;
    let sink = Peer::start(
        &ctx.bin("hep-bench-peer"),
        "udp-sink",
        &[
            "udp-sink".into(),
            "--listen".into(),
            format!("127.0.0.1:{sink_port}"),
        ],
        &ctx.log("udp-sink"),
    )?;
    let sink_rcvbuf = sink.ready.clone();
    receivers.push((Receiver::Sink(sink), sink_port, ladder));
    let server_port = free_port()?;
    let server = Server::start(
        &ctx.bin("hep-server"),
        "hep-server (udp, null)",
        &[
            "--listen".into(),
            format!("hep_udp:127.0.0.1:{server_port}"),
            "--output".into(),
            "null".into(),
        ],
        &ctx.log("udp-hep-server"),
    )?;
    receivers.push((Receiver::Server(server), server_port, ladder));
    let mut kamailio_note = None;
    if ctx.kamailio && Kamailio::available() {
        let port = free_port()?;
        match Kamailio::start(&ctx.dir.join("kamailio"), port) {
            Ok(k) => receivers.push((Receiver::Kamailio(k), port, kamailio_ladder)),
            Err(e) => kamailio_note = Some(format!("Kamailio did not start: {e:#}")),
        }
    } else if ctx.kamailio {
        kamailio_note = Some(
            "Kamailio is not installed (`apt-get install kamailio kamailio-extra-modules`)"
                .to_owned(),
        );
    } else {
        kamailio_note = Some("Kamailio left out (--no-kamailio)".to_owned());
    }

    let names = receivers.iter().map(|(r, _, _)| r.name()).collect();
    let mut steps = Vec::new();
    // A receiver stops climbing after two rates in a row with loss in some run.
    let mut failing: Vec<u32> = vec![0; receivers.len()];
    let mut all_rates: Vec<u64> = receivers
        .iter()
        .flat_map(|(_, _, l)| l.iter().copied())
        .collect();
    all_rates.sort_unstable();
    all_rates.dedup();
    let tck = clk_tck();
    for rate in all_rates {
        let mut clean = vec![true; receivers.len()];
        let mut tried = vec![false; receivers.len()];
        for run in 0..ctx.runs {
            for (i, (rx, port, rates)) in receivers.iter_mut().enumerate() {
                if !rates.contains(&rate) || failing[i] >= 2 {
                    continue;
                }
                tried[i] = true;
                let step = udp_step(ctx, rx, *port, rate, step_secs, run, tck)?;
                println!(
                    "    udp {:>13} {:>8}/s run {}: sent {} received {} lost {} kernel drops {} cpu {:.0}%",
                    step.receiver,
                    rate,
                    run + 1,
                    step.sent,
                    step.received,
                    step.lost(),
                    step.kernel.rcvbuf_errors,
                    step.cpu
                );
                clean[i] &= step.clean();
                steps.push(step);
            }
        }
        for i in 0..receivers.len() {
            if tried[i] {
                failing[i] = if clean[i] { 0 } else { failing[i] + 1 };
            }
        }
    }
    let rss_kib = receivers
        .iter()
        .map(|(r, _, _)| (r.name(), r.rss_kib()))
        .collect();
    Ok(UdpResult {
        steps,
        receivers: names,
        step_secs,
        sink_rcvbuf,
        kamailio_note,
        rss_kib,
    })
}

fn udp_step(
    ctx: &Ctx<'_>,
    rx: &mut Receiver,
    port: u16,
    rate: u64,
    secs: f64,
    run: usize,
    tck: f64,
) -> Result<Step> {
    let before = rx.count()?;
    let snmp = UdpSnmp::read();
    let cpu0 = rx.cpu_ticks();
    let t0 = Instant::now();
    let count = (rate as f64 * secs) as u64;
    let log = ctx.log(&format!(
        "send-udp-{}-{rate}-{run}",
        rx.name().replace(' ', "-")
    ));
    let sent = send(
        ctx,
        &format!("hep_udp:127.0.0.1:{port}"),
        count,
        Some(rate),
        &log,
    )?;
    let received = settle(|| rx.count(), Duration::from_secs(3))?.saturating_sub(before);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (rx.cpu_ticks() - cpu0) as f64 / tck / elapsed * 100.0;
    let kernel = UdpSnmp::read().since(snmp);
    Ok(Step {
        receiver: rx.name(),
        rate,
        sent: sent.messages,
        received,
        kernel,
        offered: if sent.secs > 0.0 {
            sent.messages as f64 / sent.secs
        } else {
            0.0
        },
        cpu,
        sender_dropped: sent.dropped,
    })
}

/// The highest rate below which every (rate, clean) run was clean; `None` without runs.
pub(crate) fn zero_loss_rate(runs: impl IntoIterator<Item = (u64, bool)>) -> Option<u64> {
    let mut rates: BTreeMap<u64, bool> = BTreeMap::new();
    for (rate, clean) in runs {
        *rates.entry(rate).or_insert(true) &= clean;
    }
    if rates.is_empty() {
        return None;
    }
    Some(
        rates
            .into_iter()
            .take_while(|&(_, clean)| clean)
            .last()
            .map_or(0, |(r, _)| r),
    )
}

/// Polls a counter until it has not moved for 300 ms (at most `limit`).
pub(crate) fn settle(mut count: impl FnMut() -> Result<u64>, limit: Duration) -> Result<u64> {
    let deadline = Instant::now() + limit;
    let mut last = count()?;
    let mut still_since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = count()?;
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= Duration::from_millis(300) {
            break;
        }
    }
    Ok(last)
}

// ===== TCP =====

/// One TCP run.
#[derive(Debug, Clone)]
pub(crate) struct TcpRun {
    pub(crate) receiver: &'static str,
    pub(crate) conns: usize,
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) secs: f64,
    pub(crate) cpu: f64,
}

impl TcpRun {
    pub(crate) fn rate(&self) -> f64 {
        self.messages as f64 / self.secs
    }

    pub(crate) fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TcpResult {
    pub(crate) runs: Vec<TcpRun>,
    pub(crate) count: u64,
}

pub(crate) fn tcp(ctx: &Ctx<'_>) -> Result<TcpResult> {
    let count: u64 = ctx.pick(6_000_000, 500_000, 100_000);
    let port = free_port()?;
    let server = Server::start(
        &ctx.bin("hep-server"),
        "hep-server (tcp, null)",
        &[
            "--listen".into(),
            format!("hep_tcp:127.0.0.1:{port}"),
            "--output".into(),
            "null".into(),
        ],
        &ctx.log("tcp-hep-server"),
    )?;
    let sink_port = free_port()?;
    let mut sink = Peer::start(
        &ctx.bin("hep-bench-peer"),
        "tcp-sink",
        &[
            "tcp-sink".into(),
            "--listen".into(),
            format!("127.0.0.1:{sink_port}"),
        ],
        &ctx.log("tcp-sink"),
    )?;
    let tck = clk_tck();
    let mut runs = Vec::new();
    for run in 0..ctx.runs {
        for conns in [1usize, 16] {
            let r = tcp_run(
                ctx,
                port,
                conns,
                count,
                run,
                tck,
                "hep-server",
                &mut || server.delivered_null(),
                server.proc.pid(),
            )?;
            runs.push(r);
        }
        let pid = sink.proc.pid();
        let r = tcp_run(
            ctx,
            sink_port,
            1,
            count,
            run,
            tck,
            "recv sink",
            &mut || Ok(sink.stats()?.get("valid").copied().unwrap_or(0.0) as u64),
            pid,
        )?;
        runs.push(r);
    }
    for r in &runs {
        println!(
            "    tcp {:>10} x{:>2}: {:.0} msg/s {:.0} MB/s cpu {:.0}%",
            r.receiver,
            r.conns,
            r.rate(),
            r.mb_s(),
            r.cpu
        );
    }
    Ok(TcpResult { runs, count })
}

#[allow(clippy::too_many_arguments)]
fn tcp_run(
    ctx: &Ctx<'_>,
    port: u16,
    conns: usize,
    count: u64,
    run: usize,
    tck: f64,
    receiver: &'static str,
    received: &mut dyn FnMut() -> Result<u64>,
    pid: u32,
) -> Result<TcpRun> {
    let before = received()?;
    let cpu0 = super::procs::cpu_ticks(pid);
    let per = count / conns as u64;
    let total = per * conns as u64;
    let t0 = Instant::now();
    let mut senders = Vec::new();
    for c in 0..conns {
        let log = ctx.log(&format!("send-tcp-{receiver}-{conns}-{run}-{c}").replace(' ', "-"));
        senders.push((
            spawn_send(ctx, &format!("hep_tcp:127.0.0.1:{port}"), per, None, &log)?,
            log,
        ));
    }
    // Done when the receiver has counted everything, or has stopped moving.
    let deadline = t0 + Duration::from_secs(120);
    let mut last = (before, Instant::now());
    let (got, end) = loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = received()?;
        if now - before >= total {
            break (now - before, Instant::now());
        }
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3) || Instant::now() > deadline {
            break (now - before, last.1);
        }
    };
    let secs = (end - t0).as_secs_f64();
    let cpu = (super::procs::cpu_ticks(pid) - cpu0) as f64 / tck / secs * 100.0;
    let mut bytes_sent = 0;
    for (s, log) in senders {
        bytes_sent += finish_send(s, per, None, &log)?.bytes;
    }
    if got < total {
        bail!("{receiver} over TCP x{conns}: received {got} of {total}");
    }
    Ok(TcpRun {
        receiver,
        conns,
        messages: got,
        bytes: bytes_sent,
        secs,
        cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lossy_lower_rate_caps_the_zero_loss_rate() {
        let runs = [
            (100, true),
            (200, true),
            (300, false),
            (400, true),
            (200, true),
        ];
        assert_eq!(zero_loss_rate(runs), Some(200));
        assert_eq!(zero_loss_rate([(100, false), (200, true)]), Some(0));
        assert_eq!(zero_loss_rate([]), None);
    }

    #[test]
    fn send_summaries_parse() {
        let s = parse_sent(
            "x\nsent 2400000 messages (1461600000 bytes) in 3.003 s: 799285 msg/s; dropped 0\n",
        )
        .unwrap();
        assert_eq!(
            (s.messages, s.bytes, s.dropped),
            (2_400_000, 1_461_600_000, 0)
        );
        assert!((s.secs - 3.003).abs() < 1e-9);
        let s = parse_sent(
            "sent 10 messages (6080 bytes) in 0.101 s: 99 msg/s; dropped 3 (connect_failed: 3)",
        )
        .unwrap();
        assert_eq!(s.dropped, 3);
    }
}
