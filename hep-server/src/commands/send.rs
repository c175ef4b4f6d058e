//! `hep-server send`: OpenSIPS's `pack_hep` on the command line, and a load generator.
//!
//! ```text
//! hep-server send --dest SPEC [--hep-version 1|2|3] [--proto-type N|sip|log|...]
//!                 [--src IP:PORT] [--dst IP:PORT] [--capture-id N] [--auth-key K]
//!                 [--correlation-id ID] [--count N] [--rate R] [FILE|-]...
//! ```
//!
//! # What is sent
//!
//! Each `FILE` is one payload; `-` is stdin (at most once), and no `FILE` at all means
//! stdin. Every payload is packed once, before anything is sent, with
//! [`hep_proto::pack_hep`]:
//!
//! | field | flag | default |
//! |---|---|---|
//! | version | `--hep-version` | the destination's `version=N` (`hep_id` or relay spec), else 3 |
//! | source | `--src` | `127.0.0.1:5060` (`[::1]:5060` when `--dst` is IPv6) |
//! | destination | `--dst` | `127.0.0.2:5060` (`[::2]:5060` when `--src` is IPv6) |
//! | IP protocol | `--ip-proto` | `udp` |
//! | capture id | `--capture-id` | 1 (the seed's `hep_capture_id`) |
//! | protocol type | `--proto-type` | `sip` |
//! | auth key, correlation id | `--auth-key`, `--correlation-id` | absent |
//! | time | — | the time of packing |
//!
//! `--hep-version` overrides the version of a destination that does not name one
//! (`hep_udp:HOST:PORT`); when the spec says `version=N` too, the two must agree. TCP and
//! TLS carry HEPv3 only. A flag whose field the chosen version cannot carry is an error,
//! not silently dropped: `--proto-type`, `--auth-key` and `--correlation-id` need v3,
//! `--capture-id` needs v2 or v3 (and fits 16 bits in v2).
//!
//! Since the packets are encoded once (a load run must not pay for encoding), every
//! message of a run carries the same timestamp: the time of packing, just before the
//! first is sent.
//!
//! # How it is sent
//!
//! One [`HepSender`] with the seed's settings, `--hep-async` and
//! `--hep-async-max-postponed-chunks` exposed. `--count N` sends N messages in total,
//! cycling through the payloads in order (default: each payload once). The first message
//! is sent alone and awaited (it opens the connection); the rest go through
//! [`HepSender::send_batch`] (for UDP: GSO sends of up to 64 datagrams).
//!
//! - Without `--rate`: batches of [`BATCH`] messages back to back.
//! - With `--rate R`: message `k` is due `k / R` seconds after the start. The generator
//!   wakes at most once a millisecond (or when the next message is due, if later) and
//!   sends every message due by then, so a late wake-up is caught up in the next batch;
//!   it waits until a millisecond's worth is due (`R / 1000` messages, at least one,
//!   at most [`BATCH`]), so that each send carries a full GSO batch instead of the one or
//!   two datagrams that fell due while the last send ran. It sleeps between batches: it
//!   never spins.
//!
//! The generator applies back-pressure to itself instead of letting the sender drop: it
//! sends a batch only while the connection's queue has room for it (TCP/TLS), or is
//! empty (UDP: a non-empty queue means the socket buffer was full, or the socket is not
//! yet open, and the direct GSO path resumes only when the queue has drained). While it
//! waits it yields a few times, then sleeps 1 ms. This is why the default queue is
//! [`DEFAULT_SEND_QUEUE`](crate::cli::DEFAULT_SEND_QUEUE) (65536) and not the seed's 32:
//! OpenSIPS drops rather than block its SIP workers, and a 32-message queue would make a
//! fast TCP run stop and wait every 32 messages. Queued messages share the packed
//! buffers, so a deep queue costs little memory.
//!
//! # The end
//!
//! After the last message the generator waits for the queue to drain while it makes
//! progress (it gives up after [`DRAIN_STALL`] without a message sent or dropped), then
//! [`close`](HepSender::close)s the sender, which flushes what is left for at most its
//! `close_timeout` (1 s) and counts the rest as `closed`.
//!
//! # Delivered or not
//!
//! A message written into a socket is not yet delivered: a receiver that refuses the
//! connection after accepting it (a listener's `allow=`, a TLS 1.3 server that wants a
//! client certificate and got none) resets it unread, and a UDP port nobody listens on
//! answers with ICMP port unreachable. So the close checks the connection
//! ([`SenderConfig::close_confirm_timeout`]):
//!
//! - TCP/TLS: after the last byte the sender closes its side, and the receiver must
//!   close its own in answer within [`CONFIRM_STREAM`]. A receiver does that once it has
//!   read everything (one that closes with unread data resets instead), so an orderly
//!   answer confirms that every byte was read. A reset, a TLS alert, a close of the
//!   receiver's before ours, or no answer in time does not.
//! - UDP: the socket is watched for [`CONFIRM_UDP`] for an ICMP error (reported as
//!   `ECONNREFUSED`), which may come back for any datagram of the run. UDP confirms
//!   nothing more: a datagram a receiver discards (an `allow=` it does not pass) or a
//!   network loses is counted as sent.
//!
//! HEP has no acknowledgement: what a receiver drops message by message on a connection
//! it keeps (a wrong auth key, a capture id a client certificate may not send, a
//! filter) is not seen here either; only the receiver's counters show it.
//!
//! Likewise a connection that broke during the run (a socket error, a reset, the
//! receiver's close) leaves the messages written on it unconfirmed. Then one line goes
//! to stderr, and a second when anything was not delivered:
//!
//! ```text
//! sent 1000000 messages (608000000 bytes) in 1.180 s: 847458 msg/s; dropped 0
//! sent 10 messages (6080 bytes) in 0.101 s: 99 msg/s; dropped 3 (connect_failed: 3)
//! hep-server: send failed: 3 of 13 messages NOT delivered: 3 dropped
//! sent 1 messages (121 bytes) in 0.001 s: 1291 msg/s; dropped 49 (io: 49); unconfirmed 1 (1 broken connection)
//! hep-server: send failed: 50 of 50 messages NOT delivered: 49 dropped; 1 written on a connection the receiver broke (refused, reset or closed it) and not known to be read
//! ```
//!
//! "Sent" is the sender's count: handed to the kernel (UDP) or written (TCP/TLS); the
//! time is from the first message to the last written or dropped (the close and its
//! check are not in it). "Unconfirmed" messages are an upper bound of the loss: the
//! receiver may have read some before the connection broke. The exit status is 0 when
//! every message was sent and confirmed as above, and 1 otherwise.
//!
//! # TLS
//!
//! A `hep_tls` destination needs `--tls-ca FILE` (no system trust store is used), or
//! `--tls-insecure`, which accepts any certificate and is for tests only.
//! `--tls-cert FILE --tls-key FILE` present a client certificate (mTLS);
//! `--tls-server-name` verifies a name other than the destination's host. These flags
//! are refused for other transports.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use hep_proto::{HepVersion, PackSettings, ProtoType, pack_hep};
use hep_transport::sender::{ClientTls, SenderStatsSnapshot};
use hep_transport::{HepDestination, HepSender, SenderConfig, Transport};
use tokio::time::{Instant, sleep, sleep_until};

use crate::cli::SendArgs;

/// Messages per [`HepSender::send_batch`] call when not paced (and the most per call
/// when catching up).
pub const BATCH: usize = 1024;

/// How long the final drain waits without any message sent or dropped before closing.
pub const DRAIN_STALL: Duration = Duration::from_secs(5);

/// How long the close waits for a TCP/TLS receiver to answer the sender's close with its
/// own ([`SenderConfig::close_confirm_timeout`]): a receiver that reads answers as soon as
/// it has read what is in flight, a few megabytes of socket buffers.
pub const CONFIRM_STREAM: Duration = Duration::from_secs(2);

/// How long the close watches a UDP socket for an ICMP error: about a round trip to a
/// distant collector, and the time every `send` over UDP takes beyond its messages.
pub const CONFIRM_UDP: Duration = Duration::from_millis(200);

/// Yields before the generator sleeps while it waits for room.
const SPINS_BEFORE_SLEEP: u32 = 16;

/// When a run's messages are due, and in what runs they go.
///
/// Paced, messages go in runs of a millisecond's worth (`rate / 1000`, at least one, at
/// most [`BATCH`]). Sending whatever was due at each turn of the loop chased the clock:
/// at 300,000 msg/s a turn took longer than the 3.3 us between two messages, so each
/// send carried one or two datagrams, and the generator cost 1.3-2.3 us of CPU a
/// message, more than the server it measured (docs/BENCHMARKS.md).
#[derive(Debug, Clone, Copy)]
struct Pace {
    count: u64,
    rate: Option<f64>,
    run: u64,
}

/// What the generator does next.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Due {
    /// Send up to this many messages in all (those offered included).
    Send(u64),
    /// Sleep until this long after the start.
    WaitUntil(Duration),
}

impl Pace {
    fn new(count: u64, rate: Option<f64>) -> Self {
        let run = rate.map_or(1, |r| ((r / 1000.0) as u64).clamp(1, BATCH as u64));
        Self { count, rate, run }
    }

    /// With `offered` messages handed to the sender, `elapsed` after the start.
    fn due(&self, offered: u64, elapsed: Duration) -> Due {
        let Some(r) = self.rate else {
            return Due::Send(self.count);
        };
        // Message `k` is due `k / r` after the start.
        let due = self.count.min((elapsed.as_secs_f64() * r) as u64 + 1);
        let next_run = (offered + self.run).min(self.count);
        if due >= next_run {
            Due::Send(due)
        } else {
            // When the last message of the next run is due.
            Due::WaitUntil(Duration::from_secs_f64((next_run - 1) as f64 / r))
        }
    }
}

/// What a run did: the sender's counters at the end, and how long it took.
#[derive(Debug, Clone)]
pub struct SendSummary {
    /// Messages the run offered to the sender (`--count`).
    pub offered: u64,
    /// The sender's counters after close.
    pub stats: SenderStatsSnapshot,
    /// From the first message to the last one written or dropped (the close and its
    /// check are not in it).
    pub elapsed: Duration,
}

impl SendSummary {
    /// Messages dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped_total()
    }

    /// Messages not delivered, or not known to be: dropped, or written on a connection
    /// that broke or whose close the receiver did not confirm (an upper bound: it may
    /// have read some of those).
    pub fn not_delivered(&self) -> u64 {
        (self.dropped() + self.stats.unconfirmed_messages).min(self.offered)
    }

    /// Every message sent, and no connection broken: the run succeeded.
    pub fn delivered(&self) -> bool {
        self.dropped() == 0 && self.stats.broken_connections == 0
    }

    /// What went wrong, for the line after the summary; `None` when the run succeeded.
    ///
    /// ```
    /// # use hep_server::commands::send::SendSummary;
    /// # let s = SendSummary { offered: 0, stats: Default::default(), elapsed: Default::default() };
    /// assert_eq!(s.failure(), None);
    /// ```
    pub fn failure(&self) -> Option<String> {
        if self.delivered() {
            return None;
        }
        let s = &self.stats;
        let mut parts = Vec::new();
        if self.dropped() > 0 {
            parts.push(format!("{} dropped", self.dropped()));
        }
        let broken = s.broken_connections;
        let conns = if broken == 1 {
            "a connection".to_owned()
        } else {
            format!("{broken} connections")
        };
        if s.unconfirmed_messages > 0 {
            parts.push(format!(
                "{} written on {conns} the receiver broke (refused, reset or closed it) \
                 and not known to be read",
                s.unconfirmed_messages
            ));
        } else if broken > 0 && self.dropped() == 0 {
            parts.push(format!(
                "the receiver closed {conns} during the run: messages in flight then may be lost"
            ));
        }
        Some(format!(
            "{} of {} messages NOT delivered: {}",
            self.not_delivered(),
            self.offered,
            parts.join("; ")
        ))
    }
}

impl fmt::Display for SendSummary {
    /// `sent N messages (B bytes) in T s: R msg/s; dropped D (reason: n, ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            s.sent_messages as f64 / secs
        } else {
            0.0
        };
        write!(
            f,
            "sent {} messages ({} bytes) in {secs:.3} s: {rate:.0} msg/s; dropped {}",
            s.sent_messages,
            s.sent_bytes,
            s.dropped_total()
        )?;
        let mut reasons = s.dropped_by_reason().filter(|&(_, n)| n > 0).peekable();
        if reasons.peek().is_some() {
            f.write_str(" (")?;
            for (i, (reason, n)) in reasons.enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{reason}: {n}")?;
            }
            f.write_str(")")?;
        }
        if s.broken_connections > 0 {
            let plural = if s.broken_connections == 1 { "" } else { "s" };
            write!(
                f,
                "; unconfirmed {} ({} broken connection{plural})",
                s.unconfirmed_messages, s.broken_connections
            )?;
        }
        Ok(())
    }
}

/// The packets and the sender settings of one run, everything checked.
#[derive(Debug)]
pub struct Plan {
    /// Where, over what, at which version.
    pub destination: HepDestination,
    /// The sender's settings.
    pub config: SenderConfig,
    /// One encoded packet per payload, in order.
    pub packets: Vec<Bytes>,
    /// Messages to send in total.
    pub count: u64,
    /// Messages per second, if paced.
    pub rate: Option<f64>,
}

/// Checks the arguments, reads the payloads (`stdin` for `-`) and packs them with the
/// current time.
///
/// # Errors
/// A conflicting or out-of-range flag, an unreadable file, a payload too long for the
/// version, or TLS settings that cannot be loaded; each message says which.
pub fn plan(args: &SendArgs, stdin: impl Read) -> anyhow::Result<Plan> {
    let dest = &args.dest;
    let version = match (args.hep_version, dest.version_given) {
        (Some(v), true) if v != dest.destination.version() => bail!(
            "--hep-version {v} conflicts with `version={}` in --dest `{}`: give one of them",
            dest.destination.version(),
            dest.destination
        ),
        (Some(v), _) => v,
        (None, _) => dest.destination.version(),
    };
    let destination = dest
        .destination
        .clone()
        .with_version(version)
        .with_context(|| format!("--hep-version {version} with --dest `{}`", dest.destination))?;

    let v3_only = [
        ("--proto-type", args.proto_type.is_some()),
        ("--auth-key", args.auth_key.is_some()),
        ("--correlation-id", args.correlation_id.is_some()),
    ];
    if version != HepVersion::V3 {
        for (flag, given) in v3_only {
            ensure!(
                !given,
                "{flag} needs HEPv3: HEPv{version} has no such field"
            );
        }
    }
    if let Some(id) = args.capture_id {
        ensure!(
            version != HepVersion::V1,
            "--capture-id needs HEPv2 or v3: HEPv1 has no capture id"
        );
        ensure!(
            version != HepVersion::V2 || id <= u32::from(u16::MAX),
            "--capture-id {id} does not fit HEPv2's 16-bit field (at most 65535)"
        );
    }
    let (src, dst) = addresses(args.src, args.dst)?;

    let tls_flags = !args.tls_ca.is_empty()
        || args.tls_cert.is_some()
        || args.tls_server_name.is_some()
        || args.tls_insecure;
    let tls = if destination.transport() == Transport::Tls {
        Some(client_tls(args)?)
    } else {
        ensure!(
            !tls_flags,
            "--tls-* flags apply to hep_tls destinations only, and --dest `{destination}` is {}",
            destination.transport()
        );
        None
    };
    let mut config = SenderConfig::default();
    config.hep_async = args.hep_async;
    config.hep_async_max_postponed_chunks = args.hep_async_max_postponed_chunks;
    config.tls = tls;
    config.close_confirm_timeout = if destination.transport() == Transport::Udp {
        CONFIRM_UDP
    } else {
        CONFIRM_STREAM
    };

    let payloads = read_payloads(&args.files, stdin)?;
    let settings = PackSettings {
        version,
        capture_id: args.capture_id.unwrap_or(1),
        proto_type: args.proto_type.unwrap_or(ProtoType::Sip),
        timestamp: now(),
        auth_key: args.auth_key.clone().map(Bytes::from),
        correlation_id: args.correlation_id.clone().map(Bytes::from),
    };
    let packets = payloads
        .into_iter()
        .map(|(name, payload)| {
            pack_hep(src, dst, args.ip_proto, payload, &settings)
                .with_context(|| format!("packing {name} as HEPv{version}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Plan {
        destination,
        config,
        count: args.count.unwrap_or(packets.len() as u64),
        packets,
        rate: args.rate,
    })
}

/// Runs `send`: [`plan`], then sends on a new tokio runtime and reports on `err`.
///
/// # Errors
/// See [`plan`]; also a runtime or sender that cannot be built, or `err` failing.
pub fn run(
    args: &SendArgs,
    stdin: impl Read,
    err: &mut impl io::Write,
) -> anyhow::Result<SendSummary> {
    let plan = plan(args, stdin)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hep-send")
        .build()
        .context("starting the tokio runtime")?;
    let summary = runtime.block_on(send(plan))?;
    writeln!(err, "{summary}")?;
    if let Some(failure) = summary.failure() {
        writeln!(err, "hep-server: send failed: {failure}")?;
    }
    Ok(summary)
}

/// Sends a planned run; must be called inside a tokio runtime.
///
/// # Errors
/// The sender cannot be built (see [`HepSender::new`]).
pub async fn send(plan: Plan) -> anyhow::Result<SendSummary> {
    let Plan {
        destination,
        config,
        packets,
        count,
        rate,
    } = plan;
    let udp = destination.transport() == Transport::Udp;
    let capacity = config.hep_async_max_postponed_chunks;
    let label = destination.to_string();
    let sender =
        HepSender::new(destination, config).with_context(|| format!("cannot send to `{label}`"))?;
    tracing::debug!(destination = %label, count, ?rate, "sending");
    let stats = sender.stats().clone();
    let start = Instant::now();

    if count > 0 && !packets.is_empty() {
        // The first message alone: it opens the connection (the result is counted).
        let _ = sender.send(packets[0].clone()).await;
        let mut offered = 1u64;

        // The payloads repeated so that any `BATCH` messages starting at any payload are
        // one contiguous slice.
        let p = packets.len();
        let ring: Vec<Bytes> = packets
            .iter()
            .cycle()
            .take(p * (BATCH.div_ceil(p) + 1))
            .cloned()
            .collect();
        let pace = Pace::new(count, rate);
        let mut spins = 0u32;
        while offered < count {
            let due = match pace.due(offered, start.elapsed()) {
                Due::Send(due) => due,
                Due::WaitUntil(at) => {
                    sleep_until((start + at).max(Instant::now() + Duration::from_millis(1))).await;
                    continue;
                }
            };
            let depth = stats.snapshot().queue_depth as usize;
            let room = if udp && depth > 0 {
                0
            } else {
                capacity.saturating_sub(depth)
            };
            if room == 0 {
                spins += 1;
                if spins <= SPINS_BEFORE_SLEEP {
                    tokio::task::yield_now().await;
                } else {
                    sleep(Duration::from_millis(1)).await;
                }
                continue;
            }
            spins = 0;
            let n = ((due - offered) as usize).min(BATCH).min(room);
            let at = (offered % p as u64) as usize;
            sender.send_batch(&ring[at..at + n]);
            offered += n as u64;
        }
    }

    drain(&sender).await;
    let elapsed = start.elapsed();
    sender.close().await;
    Ok(SendSummary {
        offered: if packets.is_empty() { 0 } else { count },
        stats: stats.snapshot(),
        elapsed,
    })
}

/// Waits until the sender's queue is empty, or nothing has been sent or dropped for
/// [`DRAIN_STALL`].
async fn drain(sender: &HepSender) {
    let mut progress = None;
    let mut since = Instant::now();
    loop {
        let s = sender.stats().snapshot();
        if s.queue_depth == 0 {
            return;
        }
        let now_progress = s.sent_messages + s.dropped_total();
        if progress != Some(now_progress) {
            progress = Some(now_progress);
            since = Instant::now();
        } else if since.elapsed() >= DRAIN_STALL {
            tracing::warn!(
                queued = s.queue_depth,
                "no progress for {DRAIN_STALL:?}: closing with messages still queued"
            );
            return;
        }
        sleep(Duration::from_millis(1)).await;
    }
}

/// The header addresses: defaults of the family of whichever is given.
fn addresses(
    src: Option<SocketAddr>,
    dst: Option<SocketAddr>,
) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    const V4_SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    const V4_DST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    const V6_SRC: IpAddr = IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1));
    const V6_DST: IpAddr = IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 2));
    let v6 = src.or(dst).is_some_and(|a| a.is_ipv6());
    let (def_src, def_dst) = if v6 {
        (V6_SRC, V6_DST)
    } else {
        (V4_SRC, V4_DST)
    };
    let src = src.unwrap_or_else(|| SocketAddr::new(def_src, 5060));
    let dst = dst.unwrap_or_else(|| SocketAddr::new(def_dst, 5060));
    ensure!(
        src.is_ipv4() == dst.is_ipv4(),
        "--src {src} and --dst {dst} must be of the same family (HEP carries one family)"
    );
    Ok((src, dst))
}

fn client_tls(args: &SendArgs) -> anyhow::Result<ClientTls> {
    let mut b = ClientTls::builder();
    if args.tls_insecure {
        tracing::warn!(
            "--tls-insecure: the collector's certificate is NOT verified (for tests only)"
        );
        b = b.dangerous_accept_any_server_certificate();
    } else {
        ensure!(
            !args.tls_ca.is_empty(),
            "a hep_tls destination needs --tls-ca FILE (the CA that signed the collector's \
             certificate; no system trust store is used), or --tls-insecure for tests"
        );
    }
    for ca in &args.tls_ca {
        b = b.ca_file(ca);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        b = b.client_cert_files(cert, key);
    }
    if let Some(name) = &args.tls_server_name {
        b = b.server_name(name);
    }
    Ok(b.build()?)
}

/// `(name for messages, payload)` for each file, stdin for `-` or when there is none.
fn read_payloads(
    files: &[std::path::PathBuf],
    mut stdin: impl Read,
) -> anyhow::Result<Vec<(String, Bytes)>> {
    let mut read_stdin = move || -> anyhow::Result<(String, Bytes)> {
        let mut buf = Vec::new();
        stdin
            .read_to_end(&mut buf)
            .context("reading the payload from stdin")?;
        Ok(("stdin".to_owned(), Bytes::from(buf)))
    };
    if files.is_empty() {
        return Ok(vec![read_stdin()?]);
    }
    let stdin_uses = files.iter().filter(|f| f.as_os_str() == "-").count();
    ensure!(stdin_uses <= 1, "`-` (stdin) may be given only once");
    files
        .iter()
        .map(|f| {
            if f.as_os_str() == "-" {
                read_stdin()
            } else {
                read_file(f)
            }
        })
        .collect()
}

fn read_file(path: &Path) -> anyhow::Result<(String, Bytes)> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok((path.display().to_string(), Bytes::from(bytes)))
}

/// Now as HEP's (seconds, microseconds).
fn now() -> (u32, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as u32, d.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    use crate::cli::{Cli, Command};

    fn args(extra: &[&str]) -> SendArgs {
        let argv = ["hep-server", "send"].iter().chain(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Send(a)) => a,
            _ => panic!("not send"),
        }
    }

    fn plan_of(extra: &[&str]) -> anyhow::Result<Plan> {
        plan(&args(extra), &b"OPTIONS sip:x SIP/2.0\r\n\r\n"[..])
    }

    #[test]
    fn version_comes_from_the_destination_unless_given() {
        let p = plan_of(&["--dest", "hep_udp:127.0.0.1:9;version=2"]).unwrap();
        assert_eq!(p.destination.version(), HepVersion::V2);
        assert_eq!(p.packets[0][0], 2);
        let p = plan_of(&["--dest", "hep_udp:127.0.0.1:9", "--hep-version", "1"]).unwrap();
        assert_eq!(p.destination.version(), HepVersion::V1);
        let p = plan_of(&[
            "--dest",
            "127.0.0.1:9; transport=udp; version=2",
            "--hep-version",
            "2",
        ])
        .unwrap();
        assert_eq!(p.count, 1);
        let e = plan_of(&[
            "--dest",
            "hep_udp:127.0.0.1:9;version=2",
            "--hep-version",
            "3",
        ])
        .unwrap_err();
        assert!(format!("{e:#}").contains("conflicts"), "{e:#}");
        let e = plan_of(&["--dest", "hep_tcp:127.0.0.1:9", "--hep-version", "2"]).unwrap_err();
        assert!(format!("{e:#}").contains("HEPv3 only"), "{e:#}");
    }

    #[test]
    fn a_destination_without_a_port_is_where_a_listener_without_one_listens() {
        // `run` listens on hep_tcp:0.0.0.0 without a port: `send` must find it there.
        let listen: hep_transport::ListenSpec = "hep_tcp:127.0.0.1".parse().unwrap();
        for dest in ["hep_tcp:127.0.0.1", "127.0.0.1; transport=tcp"] {
            let p = plan_of(&["--dest", dest]).unwrap();
            assert_eq!(p.destination.port(), listen.addr.port(), "{dest}");
        }
        assert_eq!(listen.addr.port(), hep_transport::HEP_PORT);
    }

    #[test]
    fn fields_a_version_cannot_carry_are_refused() {
        let d = ["--dest", "hep_udp:127.0.0.1:9", "--hep-version"];
        for (v, flag, value) in [
            ("2", "--auth-key", "k"),
            ("1", "--correlation-id", "c"),
            ("2", "--proto-type", "log"),
            ("1", "--capture-id", "1"),
            ("2", "--capture-id", "65536"),
        ] {
            let e = plan_of(&[d[0], d[1], d[2], v, flag, value]).unwrap_err();
            assert!(format!("{e:#}").contains(flag), "{flag}: {e:#}");
        }
        assert!(plan_of(&[d[0], d[1], d[2], "2", "--capture-id", "65535"]).is_ok());
    }

    #[test]
    fn addresses_follow_the_given_family() {
        let v4 = addresses(None, None).unwrap();
        assert_eq!(
            (v4.0.to_string(), v4.1.to_string()),
            ("127.0.0.1:5060".into(), "127.0.0.2:5060".into())
        );
        let v6 = addresses(None, Some("[2001:db8::1]:5070".parse().unwrap())).unwrap();
        assert_eq!(v6.0.to_string(), "[::1]:5060");
        let v6 = addresses(Some("[::1]:5070".parse().unwrap()), None).unwrap();
        assert_eq!(v6.1.to_string(), "[::2]:5060");
        assert!(
            addresses(
                Some("1.2.3.4:1".parse().unwrap()),
                Some("[::1]:1".parse().unwrap())
            )
            .is_err()
        );
    }

    #[test]
    fn tls_flags_are_checked() {
        let e = plan_of(&["--dest", "hep_tls:127.0.0.1:9"]).unwrap_err();
        assert!(format!("{e:#}").contains("--tls-ca"), "{e:#}");
        let p = plan_of(&["--dest", "hep_tls:127.0.0.1:9", "--tls-insecure"]).unwrap();
        assert!(p.config.tls.is_some());
        let e = plan_of(&["--dest", "hep_tcp:127.0.0.1:9", "--tls-insecure"]).unwrap_err();
        assert!(
            format!("{e:#}").contains("hep_tls destinations only"),
            "{e:#}"
        );
    }

    #[test]
    fn stdin_at_most_once() {
        let e = plan_of(&["--dest", "hep_udp:127.0.0.1:9", "-", "-"]).unwrap_err();
        assert!(e.to_string().contains("only once"), "{e}");
    }

    /// Drives a pace as the loop does, each send taking `per_send`: the runs it sent and
    /// when the last one went.
    fn runs_of(pace: Pace, per_send: Duration) -> (Vec<u64>, Duration) {
        let (mut offered, mut now, mut runs) = (0, Duration::ZERO, Vec::new());
        loop {
            match pace.due(offered, now) {
                Due::Send(due) => {
                    let n = (due - offered).min(BATCH as u64);
                    runs.push(n);
                    offered += n;
                    if offered == pace.count {
                        return (runs, now);
                    }
                    now += per_send;
                }
                Due::WaitUntil(at) => now = at.max(now + Duration::from_millis(1)),
            }
        }
    }

    #[test]
    fn a_paced_run_goes_in_runs_of_a_millisecond_even_when_each_send_is_slow() {
        // 300,000 msg/s with sends slower than the 3.3 us between two messages: the
        // generator must not chase the clock with one-message sends...
        let (runs, end) = runs_of(Pace::new(30_000, Some(300_000.0)), Duration::from_micros(5));
        let (_last, full) = runs.split_last().unwrap();
        assert!(full.iter().all(|&n| n >= 300), "{runs:?}");
        assert_eq!(runs.iter().sum::<u64>(), 30_000);
        // ...and keeps the rate: 30,000 messages take about 100 ms.
        assert!(
            (Duration::from_millis(95)..Duration::from_millis(105)).contains(&end),
            "{end:?}"
        );
    }

    #[test]
    fn a_slow_rate_sends_each_message_when_due_and_no_rate_sends_at_once() {
        let pace = Pace::new(3, Some(10.0));
        assert_eq!(pace.due(0, Duration::ZERO), Due::Send(1));
        assert_eq!(
            pace.due(1, Duration::from_millis(20)),
            Due::WaitUntil(Duration::from_millis(100))
        );
        assert_eq!(pace.due(1, Duration::from_millis(100)), Due::Send(2));
        assert_eq!(Pace::new(5, None).due(0, Duration::ZERO), Due::Send(5));
        // Fast: runs of at most BATCH, and a short run waits only for its own last message.
        assert_eq!(Pace::new(10, Some(5e6)).run, BATCH as u64);
        assert_eq!(
            Pace::new(10, Some(5e6)).due(0, Duration::ZERO),
            Due::WaitUntil(Duration::from_secs_f64(9.0 / 5e6))
        );
    }

    #[test]
    fn the_summary_line_names_the_reasons() {
        let s = SendSummary {
            offered: 0,
            stats: SenderStatsSnapshot::default(),
            elapsed: Duration::from_millis(1500),
        };
        assert_eq!(
            s.to_string(),
            "sent 0 messages (0 bytes) in 1.500 s: 0 msg/s; dropped 0"
        );
    }
}
