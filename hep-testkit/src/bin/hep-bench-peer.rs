//! `hep-bench-peer`: the peers `cargo xtask bench` measures hep-server against and with.
//!
//! ```text
//! hep-bench-peer udp-sink   --listen ADDR [--rcvbuf BYTES]   the machine's UDP ceiling
//! hep-bench-peer tcp-sink   --listen ADDR                    TCP ceiling; relay latency probes
//! hep-bench-peer stall      --listen ADDR                    a relay destination that never reads
//! hep-bench-peer idle-conns --dest ADDR --count N            N idle TCP connections
//! hep-bench-peer sip-calls  --dest ADDR --messages N [--spread-secs S] [--start-ts T]
//!                           [--random-call-ids 1] [--concurrent-calls C]
//!                           [--first-call K] [--rate R]      N SIP messages of distinct calls
//! ```
//!
//! `sip-calls` writes HEP3 frames over one TCP connection as fast as the receiver takes
//! them: calls of 7 messages (INVITE, 100, 180, 200, ACK, BYE, 200), each call with its
//! own Call-ID (`bench-N@10.0.0.1`) and tags, From/To users out of 50,000, capture times
//! from `--start-ts` (Unix seconds, default now) spread evenly over `--spread-secs`
//! (default 0: all now). With `--random-call-ids 1` the Call-IDs are
//! `HHHHHHHHHHHHHHHH-N@10.0.0.1` (16 hex digits mixed from N): consecutive calls far apart
//! in a Call-ID index, as the Call-IDs of most agents are, instead of neighbours. With
//! `--concurrent-calls C` (default 1: a call's 7 messages back to back) C calls are under
//! way at a time, their messages interleaved: the INVITEs of C calls, then their 100s, and
//! so on, so that a call's messages are C messages apart, as on a busy proxy where
//! thousands of calls ring at once. `--first-call K` numbers the calls from K (default 0), so
//! that a second peer adds new calls to a filled store; `--rate R` paces the writes to R
//! messages a second (default: as fast as the receiver takes them), the steady ingest under
//! which the HTTP API is measured. It says `ready` once connected and writes in the background
//! (`stats`: `sent=N sending|done`): the load for the store's insert rate and for a
//! search among millions of stored messages.
//!
//! Each prints `ready ...` on stdout once it listens (or has connected), then serves
//! commands read from stdin, one a line, answering each with one line on stdout:
//! - `stats`: the counters as `key=value` pairs;
//! - `probe ADDR RATE COUNT` (tcp-sink): send COUNT latency probes (below) to the UDP
//!   address ADDR at RATE a second, in the background; the next `stats` lines report the
//!   probes seen since and their latency percentiles.
//!
//! It exits at the end of stdin, or after `--max-secs` (default 1200) whatever happens:
//! the harness cannot leave one behind.
//!
//! # The UDP sink
//! What the kernel, a batched receive and a HEP check cost on this machine, without
//! anything of hep-server: a tokio current-thread runtime waits for readability, then
//! `recvmmsg` through quinn-udp (batches of up to `quinn_udp::BATCH_SIZE` buffers, UDP GRO
//! on, as in hep-transport), an `SO_RCVBUF` of `--rcvbuf` (default 8 MiB; Linux caps it
//! at `net.core.rmem_max` unless the process has `CAP_NET_ADMIN`, as hep-server's listener
//! does, and reports twice the granted size), and a minimal HEP3 check
//! per datagram ([`walk`]: magic, total length, every chunk header, the exact size of
//! chunks 1-12, a payload), as the C sink of `docs/limits.md` does.
//!
//! # The TCP sink and the latency probes
//! One thread per connection reads 256 KiB at a time and splits HEP3 frames by their
//! length, checking each with [`walk`]. A probe is a HEPv3 SIP-sized message whose
//! payload starts with `HEPBENCH-PROBE ` and the time it was sent, in nanoseconds since
//! this process started (`Instant`): sent over UDP to the relay under test, it comes back
//! over the relay's TCP connection to this same process, which subtracts. One clock, one
//! process: the figure is the time from the probe's `sendto` to the moment its frame is
//! read here, both loopback hops included (an upper bound on what the relay adds).

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hep_proto::{HepMessage, HepVersion, ProtoType};
use quinn_udp::{RecvMeta, UdpSocketState};

/// What a probe's payload starts with; the send time follows as 20 decimal digits.
const PROBE_TAG: &[u8] = b"HEPBENCH-PROBE ";
const PROBE_DIGITS: usize = 20;
/// Receive slot per datagram (a GRO buffer may fill it).
const SLOT: usize = 64 * 1024;

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hep-bench-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Command-line options: `--name value` pairs after the mode.
struct Opts(Vec<(String, String)>);

impl Opts {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let Some(name) = k.strip_prefix("--") else {
                return Err(format!("unexpected argument `{k}`"));
            };
            let v = it.next().ok_or_else(|| format!("`{k}` needs a value"))?;
            out.push((name.to_owned(), v.clone()));
        }
        Ok(Self(out))
    }

    fn get<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        match self.0.iter().rev().find(|(k, _)| k == name) {
            None => Ok(None),
            Some((_, v)) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("--{name}: cannot parse `{v}`")),
        }
    }

    fn need<T: std::str::FromStr>(&self, name: &str) -> Result<T, String> {
        self.get(name)?
            .ok_or_else(|| format!("--{name} is required"))
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let Some((mode, rest)) = args.split_first() else {
        return Err(
            "usage: hep-bench-peer udp-sink|tcp-sink|stall|idle-conns [--OPTION VALUE]...".into(),
        );
    };
    let opts = Opts::parse(rest)?;
    let max = Duration::from_secs(opts.get("max-secs")?.unwrap_or(1200));
    let start = Instant::now();
    let stats: Box<dyn Fn() -> String + Send> = match mode.as_str() {
        "udp-sink" => udp_sink(opts.need("listen")?, opts.get("rcvbuf")?.unwrap_or(8 << 20))?,
        "tcp-sink" => tcp_sink(opts.need("listen")?, start)?,
        "stall" => stall(opts.need("listen")?)?,
        "idle-conns" => idle_conns(opts.need("dest")?, opts.need("count")?)?,
        "sip-calls" => sip_calls(
            opts.need("dest")?,
            opts.need("messages")?,
            opts.get("spread-secs")?.unwrap_or(0),
            opts.get("start-ts")?,
            opts.get::<u8>("random-call-ids")?.unwrap_or(0) != 0,
            opts.get("concurrent-calls")?.unwrap_or(1),
            opts.get("first-call")?.unwrap_or(0),
            opts.get("rate")?.unwrap_or(0),
        )?,
        other => return Err(format!("unknown mode `{other}`")),
    };
    serve_commands(stats, max, start)
}

/// Answers `stats` and `probe` lines until stdin ends or `max` has passed.
fn serve_commands(
    stats: Box<dyn Fn() -> String + Send>,
    max: Duration,
    start: Instant,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = start + max;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                eprintln!("hep-bench-peer: --max-secs reached, exiting");
                return Ok(());
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["stats"] => stats(),
            ["probe", addr, rate, count] => match start_probes(addr, rate, count, start) {
                Ok(()) => "probing".to_owned(),
                Err(e) => format!("error {e}"),
            },
            ["quit"] => return Ok(()),
            [] => continue,
            _ => format!("error unknown command `{line}`"),
        };
        let mut out = io::stdout().lock();
        writeln!(out, "{answer}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
}

fn say_ready(what: &str) -> Result<(), String> {
    let mut out = io::stdout().lock();
    writeln!(out, "ready {what}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())
}

/// The minimal HEP3 check of the C sink: magic, total length, every chunk header, the
/// exact size of the fixed-size chunks 1-12, a payload chunk. Returns the payload.
pub fn walk(d: &[u8]) -> Option<&[u8]> {
    // Wire length of chunk types 1-12 (0: octets).
    const SIZE: [usize; 13] = [0, 7, 7, 10, 10, 22, 22, 8, 8, 10, 10, 7, 10];
    let (head, _) = d.split_first_chunk::<6>()?;
    if &head[..4] != b"HEP3" && &head[..4] != b"EEP3" {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([head[4], head[5]]));
    let d = d.get(..total)?;
    let mut off = 6;
    let mut payload = None;
    while off < total {
        let &[v0, v1, t0, t1, l0, l1] = d.get(off..off + 6)? else {
            return None;
        };
        let (vendor, ty) = (u16::from_be_bytes([v0, v1]), u16::from_be_bytes([t0, t1]));
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len < 6 || off + len > total {
            return None;
        }
        if vendor == 0 {
            if let Some(&size) = SIZE.get(usize::from(ty))
                && size != 0
                && size != len
            {
                return None;
            }
            if ty == 0x0f || ty == 0x10 {
                payload = d.get(off + 6..off + len);
            }
        }
        off += len;
    }
    payload
}

#[derive(Default)]
struct Counters {
    units: AtomicU64,
    valid: AtomicU64,
    bytes: AtomicU64,
    reads: AtomicU64,
}

// ===== udp-sink =====

fn udp_sink(listen: SocketAddr, rcvbuf: usize) -> Result<Box<dyn Fn() -> String + Send>, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |what: &str| {
        let what = what.to_owned();
        move |e: io::Error| format!("udp-sink {listen}: {what}: {e}")
    };
    let sock = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(err("socket"))?;
    sock.set_recv_buffer_size(rcvbuf)
        .map_err(err("SO_RCVBUF"))?;
    // As hep-server's listener: above rmem_max when privileged, so that the ceiling and
    // the server are measured with the same buffer.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&sock, rcvbuf);
    let granted = sock.recv_buffer_size().map_err(err("SO_RCVBUF"))?;
    sock.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
    sock.bind(&listen.into()).map_err(err("bind"))?;
    let std_sock: UdpSocket = sock.into();
    let c = Arc::new(Counters::default());
    let counters = Arc::clone(&c);
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(format!("udp-sink: runtime: {e}")));
                return;
            }
        };
        rt.block_on(async move {
            let state = match UdpSocketState::new((&std_sock).into()) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("udp-sink: quinn-udp: {e}")));
                    return;
                }
            };
            let io = match tokio::net::UdpSocket::from_std(std_sock) {
                Ok(io) => io,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("udp-sink: tokio: {e}")));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            recv_loop(&io, &state, &counters).await;
        });
    });
    ready_rx
        .recv()
        .map_err(|_| "udp-sink: receiver thread died".to_owned())??;
    say_ready(&format!("udp-sink {listen} rcvbuf={granted}"))?;
    Ok(Box::new(move || {
        format!(
            "datagrams={} valid={} bytes={} batches={}",
            c.units.load(Relaxed),
            c.valid.load(Relaxed),
            c.bytes.load(Relaxed),
            c.reads.load(Relaxed)
        )
    }))
}

async fn recv_loop(io: &tokio::net::UdpSocket, state: &UdpSocketState, c: &Counters) {
    let n_slots = quinn_udp::BATCH_SIZE;
    let mut scratch = vec![0u8; SLOT * n_slots];
    let mut meta = vec![RecvMeta::default(); n_slots];
    loop {
        if io.readable().await.is_err() {
            return;
        }
        let mut slots: Vec<io::IoSliceMut<'_>> =
            scratch.chunks_mut(SLOT).map(io::IoSliceMut::new).collect();
        let got = io.try_io(tokio::io::Interest::READABLE, || {
            state.recv(io.into(), &mut slots, &mut meta)
        });
        drop(slots);
        let n = match got {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("udp-sink: receive failed: {e}");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let (mut units, mut valid, mut bytes) = (0u64, 0u64, 0u64);
        for (i, m) in meta.iter().take(n).enumerate() {
            let len = m.len.min(SLOT);
            let buf = scratch.get(i * SLOT..i * SLOT + len).unwrap_or_default();
            let stride = if m.stride == 0 { len.max(1) } else { m.stride };
            for d in buf.chunks(stride) {
                units += 1;
                bytes += d.len() as u64;
                valid += u64::from(walk(d).is_some());
            }
        }
        c.units.fetch_add(units, Relaxed);
        c.valid.fetch_add(valid, Relaxed);
        c.bytes.fetch_add(bytes, Relaxed);
        c.reads.fetch_add(1, Relaxed);
    }
}

// ===== tcp-sink and probes =====

/// Latencies of the probes seen since the last `probe` command, in nanoseconds.
#[derive(Default)]
struct Probes {
    sent: AtomicU64,
    seen: Mutex<Vec<u64>>,
}

static PROBES: std::sync::OnceLock<Arc<Probes>> = std::sync::OnceLock::new();

fn probes() -> &'static Arc<Probes> {
    PROBES.get_or_init(Arc::default)
}

fn tcp_sink(listen: SocketAddr, start: Instant) -> Result<Box<dyn Fn() -> String + Send>, String> {
    let l = TcpListener::bind(listen).map_err(|e| format!("tcp-sink {listen}: bind: {e}"))?;
    let c = Arc::new(Counters::default());
    let conns = Arc::new(AtomicU64::new(0));
    {
        let (c, conns) = (Arc::clone(&c), Arc::clone(&conns));
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                conns.fetch_add(1, Relaxed);
                let c = Arc::clone(&c);
                std::thread::spawn(move || read_frames(s, &c, start));
            }
        });
    }
    say_ready(&format!("tcp-sink {listen}"))?;
    Ok(Box::new(move || {
        let p = probes();
        let mut seen = p.seen.lock().map(|v| v.clone()).unwrap_or_default();
        seen.sort_unstable();
        let pct = |q: f64| -> f64 {
            if seen.is_empty() {
                return 0.0;
            }
            let i = ((seen.len() - 1) as f64 * q).round() as usize;
            seen.get(i).copied().unwrap_or(0) as f64 / 1000.0
        };
        format!(
            "frames={} valid={} bytes={} conns={} probes_sent={} probes_seen={} p50_us={:.1} p90_us={:.1} p99_us={:.1} max_us={:.1}",
            c.units.load(Relaxed),
            c.valid.load(Relaxed),
            c.bytes.load(Relaxed),
            conns.load(Relaxed),
            p.sent.load(Relaxed),
            seen.len(),
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        )
    }))
}

fn read_frames(mut s: TcpStream, c: &Counters, start: Instant) {
    let mut buf = vec![0u8; 256 * 1024];
    let (mut from, mut to) = (0usize, 0usize);
    loop {
        if to == buf.len() {
            buf.copy_within(from..to, 0);
            to -= from;
            from = 0;
        }
        let n = match s.read(buf.get_mut(to..).unwrap_or_default()) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        to += n;
        c.bytes.fetch_add(n as u64, Relaxed);
        c.reads.fetch_add(1, Relaxed);
        let (mut units, mut valid) = (0u64, 0u64);
        let filled = buf.get(..to).unwrap_or_default();
        while let Some(&[_, _, _, _, hi, lo]) = filled.get(from..from + 6) {
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            if len < 6 {
                eprintln!("tcp-sink: framing error, closing");
                return;
            }
            let Some(frame) = filled.get(from..from + len) else {
                break;
            };
            units += 1;
            if let Some(payload) = walk(frame) {
                valid += 1;
                if let Some(sent_ns) = probe_time(payload) {
                    let now = start.elapsed().as_nanos() as u64;
                    if let Ok(mut v) = probes().seen.lock() {
                        v.push(now.saturating_sub(sent_ns));
                    }
                }
            }
            from += len;
        }
        if from == to {
            (from, to) = (0, 0);
        }
        c.units.fetch_add(units, Relaxed);
        c.valid.fetch_add(valid, Relaxed);
    }
}

fn probe_time(payload: &[u8]) -> Option<u64> {
    let digits = payload.strip_prefix(PROBE_TAG)?.get(..PROBE_DIGITS)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Sends `count` probes to `addr` at `rate` a second, in a thread; resets the seen list.
fn start_probes(addr: &str, rate: &str, count: &str, start: Instant) -> Result<(), String> {
    let addr: SocketAddr = addr.parse().map_err(|_| format!("bad address `{addr}`"))?;
    let rate: f64 = rate.parse().map_err(|_| format!("bad rate `{rate}`"))?;
    let count: u64 = count.parse().map_err(|_| format!("bad count `{count}`"))?;
    if !(rate > 0.0 && rate <= 100_000.0) {
        return Err("rate must be in (0, 100000]".into());
    }
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.connect(addr).map_err(|e| e.to_string())?;
    let mut payload = PROBE_TAG.to_vec();
    payload.extend(std::iter::repeat_n(b'0', PROBE_DIGITS));
    payload.extend_from_slice(b" ");
    // SIP-sized, like the load.
    payload.resize(500, b'x');
    let msg = HepMessage::builder()
        .src("127.0.0.1:5060".parse().map_err(|_| "addr")?)
        .dst("127.0.0.2:5060".parse().map_err(|_| "addr")?)
        .timestamp(0, 0)
        .proto_type(ProtoType::Sip)
        .capture_id(0xbe4c)
        .payload(Bytes::from(payload.clone()))
        .build();
    let wire = msg.encode(HepVersion::V3).map_err(|e| e.to_string())?;
    let mut wire = wire.to_vec();
    let at = wire.len() - payload.len() + PROBE_TAG.len();
    let p = Arc::clone(probes());
    p.sent.store(0, Relaxed);
    if let Ok(mut v) = p.seen.lock() {
        v.clear();
    }
    std::thread::spawn(move || {
        let t0 = Instant::now();
        for k in 0..count {
            let due = t0 + Duration::from_secs_f64(k as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let now = start.elapsed().as_nanos() as u64;
            let digits = format!("{now:0width$}", width = PROBE_DIGITS);
            if let Some(dst) = wire.get_mut(at..at + PROBE_DIGITS) {
                dst.copy_from_slice(digits.as_bytes());
            }
            if sock.send(&wire).is_ok() {
                p.sent.fetch_add(1, Relaxed);
            }
        }
    });
    Ok(())
}

// ===== stall and idle-conns =====

fn stall(listen: SocketAddr) -> Result<Box<dyn Fn() -> String + Send>, String> {
    let l = TcpListener::bind(listen).map_err(|e| format!("stall {listen}: bind: {e}"))?;
    let held = Arc::new(Mutex::new(Vec::new()));
    {
        let held = Arc::clone(&held);
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                if let Ok(mut h) = held.lock() {
                    h.push(s);
                }
            }
        });
    }
    say_ready(&format!("stall {listen}"))?;
    Ok(Box::new(move || {
        format!("accepted={}", held.lock().map(|h| h.len()).unwrap_or(0))
    }))
}

fn idle_conns(dest: SocketAddr, count: usize) -> Result<Box<dyn Fn() -> String + Send>, String> {
    let mut held = Vec::with_capacity(count);
    let mut failed = 0u64;
    let mut first_error = None;
    for _ in 0..count {
        match TcpStream::connect_timeout(&dest, Duration::from_secs(5)) {
            Ok(s) => held.push(s),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let connected = held.len();
    say_ready(&format!(
        "idle-conns {dest} connected={connected} failed={failed}{}",
        first_error
            .map(|e| format!(" first_error={e:?}"))
            .unwrap_or_default()
    ))?;
    Ok(Box::new(move || {
        let _keep = &held;
        format!("connected={connected} failed={failed}")
    }))
}

/// The messages of one call, `(from_caller, text)`; `{c}` is the call number.
const CALL: [(bool, &str); 7] = [
    (
        true,
        "INVITE sip:bob{u}@10.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-{c}-1\r\nFrom: \"Alice\" <sip:alice{u}@10.0.0.1:5060>;tag=a{c}\r\nTo: <sip:bob{u}@10.0.0.2:5060>\r\nCall-ID: bench-{c}@10.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice{u}@10.0.0.1:5060>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 129\r\n\r\nv=0\r\no=user1 53655765 2353687637 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 6004 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
    ),
    (
        false,
        "SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-{c}-1\r\nFrom: \"Alice\" <sip:alice{u}@10.0.0.1:5060>;tag=a{c}\r\nTo: <sip:bob{u}@10.0.0.2:5060>\r\nCall-ID: bench-{c}@10.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        false,
        "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-{c}-1\r\nFrom: \"Alice\" <sip:alice{u}@10.0.0.1:5060>;tag=a{c}\r\nTo: <sip:bob{u}@10.0.0.2:5060>;tag=b{c}\r\nCall-ID: bench-{c}@10.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob{u}@10.0.0.2:5060>\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        false,
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-{c}-1\r\nFrom: \"Alice\" <sip:alice{u}@10.0.0.1:5060>;tag=a{c}\r\nTo: <sip:bob{u}@10.0.0.2:5060>;tag=b{c}\r\nCall-ID: bench-{c}@10.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob{u}@10.0.0.2:5060>\r\nContent-Type: application/sdp\r\nContent-Length: 129\r\n\r\nv=0\r\no=user2 53655765 2353687637 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 6006 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
    ),
    (
        true,
        "ACK sip:bob{u}@10.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-{c}-2\r\nFrom: \"Alice\" <sip:alice{u}@10.0.0.1:5060>;tag=a{c}\r\nTo: <sip:bob{u}@10.0.0.2:5060>;tag=b{c}\r\nCall-ID: bench-{c}@10.0.0.1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        true,
        "BYE sip:bob{u}@10.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-{c}-3\r\nFrom: \"Alice\" <sip:alice{u}@10.0.0.1:5060>;tag=a{c}\r\nTo: <sip:bob{u}@10.0.0.2:5060>;tag=b{c}\r\nCall-ID: bench-{c}@10.0.0.1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        false,
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-{c}-3\r\nFrom: \"Alice\" <sip:alice{u}@10.0.0.1:5060>;tag=a{c}\r\nTo: <sip:bob{u}@10.0.0.2:5060>;tag=b{c}\r\nCall-ID: bench-{c}@10.0.0.1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
    ),
];

/// A bijective mix of `x` (SplitMix64's finaliser): call numbers to scattered Call-IDs.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The call (its number) and the step of the call (0-6) of message `i` of the stream,
/// with `concurrent` calls under way at a time: the first messages of a group of that
/// many calls, then their second messages, and so on.
fn call_and_step(i: u64, concurrent: u64) -> (u64, usize) {
    let group = i / (7 * concurrent);
    let within = i % (7 * concurrent);
    (
        group * concurrent + within % concurrent,
        (within / concurrent) as usize,
    )
}

/// Users the calls are spread over.
const USERS: u64 = 50_000;

/// How the `sip-calls` stream is made: its calls, their capture times and its pace.
#[derive(Debug, Clone, Copy)]
struct CallStream {
    messages: u64,
    start_us: u64,
    step_us: u64,
    random_call_ids: bool,
    concurrent_calls: u64,
    first_call: u64,
    /// Messages a second; 0: as fast as the receiver reads.
    rate: u64,
}

/// Writes `messages` SIP messages of distinct calls as HEP3 frames to `dest` over TCP.
#[allow(clippy::too_many_arguments)] // One per command line option, named at the one caller.
fn sip_calls(
    dest: SocketAddr,
    messages: u64,
    spread_secs: u64,
    start_ts: Option<u64>,
    random_call_ids: bool,
    concurrent_calls: u64,
    first_call: u64,
    rate: u64,
) -> Result<Box<dyn Fn() -> String + Send>, String> {
    let started = Instant::now();
    let start_us = match start_ts {
        Some(s) => s * 1_000_000,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_micros() as u64,
    };
    let stream = CallStream {
        messages,
        start_us,
        step_us: (spread_secs * 1_000_000).checked_div(messages).unwrap_or(0),
        random_call_ids,
        concurrent_calls: concurrent_calls.max(1),
        first_call,
        rate,
    };
    let mut conn = TcpStream::connect_timeout(&dest, Duration::from_secs(5))
        .map_err(|e| format!("connect {dest}: {e}"))?;
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Mutex::new(None::<Result<f64, String>>));
    let (sent2, done2) = (Arc::clone(&sent), Arc::clone(&done));
    // Written in the background: `ready` comes at once, `stats` tells the progress.
    std::thread::spawn(move || {
        let r = write_calls(&mut conn, stream, &sent2).map(|()| started.elapsed().as_secs_f64());
        drop(conn);
        *done2
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
    });
    say_ready(&format!("sip-calls {dest} messages={messages}"))?;
    Ok(Box::new(move || {
        let state = match &*done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            None => "sending".to_owned(),
            Some(Ok(secs)) => format!("done secs={secs:.3}"),
            Some(Err(e)) => format!("error {e:?}"),
        };
        format!("sent={} {state}", sent.load(Relaxed))
    }))
}

/// Messages between two checks of the pace (`--rate`).
const PACE_EVERY: u64 = 1_000;

fn write_calls(conn: &mut TcpStream, s: CallStream, sent: &AtomicU64) -> Result<(), String> {
    let caller: SocketAddr = "10.0.0.1:5060".parse().map_err(|_| "addr")?;
    let callee: SocketAddr = "10.0.0.2:5060".parse().map_err(|_| "addr")?;
    let mut buf = Vec::with_capacity(1 << 20);
    let started = Instant::now();
    for i in 0..s.messages {
        if s.rate > 0 && i % PACE_EVERY == 0 {
            conn.write_all(&buf).map_err(|e| format!("write: {e}"))?;
            buf.clear();
            sent.store(i, Relaxed);
            let due = started + Duration::from_secs_f64(i as f64 / s.rate as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let (call, step) = call_and_step(i, s.concurrent_calls);
        let call = call + s.first_call;
        let (from_caller, text) = CALL[step];
        let mut payload = text
            .replace("{c}", &call.to_string())
            .replace("{u}", &(call % USERS).to_string());
        if s.random_call_ids {
            payload = payload.replace(
                &format!("Call-ID: bench-{call}@"),
                &format!("Call-ID: {:016x}-{call}@", splitmix64(call)),
            );
        }
        let ts = s.start_us + i * s.step_us;
        let (src, dst) = if from_caller {
            (caller, callee)
        } else {
            (callee, caller)
        };
        let msg = HepMessage::builder()
            .src(src)
            .dst(dst)
            .timestamp((ts / 1_000_000) as u32, (ts % 1_000_000) as u32)
            .proto_type(ProtoType::Sip)
            .capture_id(2001)
            .payload(payload)
            .build();
        let wire = msg.encode(HepVersion::V3).map_err(|e| e.to_string())?;
        buf.extend_from_slice(&wire);
        if buf.len() >= 1 << 20 {
            conn.write_all(&buf).map_err(|e| format!("write: {e}"))?;
            buf.clear();
            sent.store(i + 1, Relaxed);
        }
    }
    conn.write_all(&buf).map_err(|e| format!("write: {e}"))?;
    conn.flush().map_err(|e| format!("write: {e}"))?;
    sent.store(s.messages, Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_accepts_the_vectors_and_finds_probes() {
        let v = include_bytes!("../../testdata/kamailio/v3-udp-0001.hep");
        let payload = walk(v).unwrap();
        assert!(payload.starts_with(b"INVITE "));
        assert!(walk(&v[..v.len() - 1]).is_none());
        let mut bad = v.to_vec();
        bad[0x0b] = 0x09; // chunk 1 length 9
        assert!(walk(&bad).is_none());
        let mut p = PROBE_TAG.to_vec();
        p.extend_from_slice(b"00000000000000001234 xx");
        assert_eq!(probe_time(&p), Some(1234));
    }

    #[test]
    fn concurrent_calls_interleave_their_steps_and_every_call_gets_all_seven() {
        let order = |concurrent| {
            (0..14)
                .map(|i| call_and_step(i, concurrent))
                .collect::<Vec<_>>()
        };
        let back_to_back: Vec<(u64, usize)> = (0..14).map(|i| (i / 7, (i % 7) as usize)).collect();
        assert_eq!(order(1), back_to_back);
        assert_eq!(
            order(2)[..6],
            [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)],
            "the INVITEs of both calls, then their 100s, ..."
        );
        let mut seen = order(2);
        seen.sort_unstable();
        assert_eq!(seen, back_to_back, "each call's seven, once each");
    }
}
