//! sngrep 1.6 (Debian): a SIP flow viewer with its own HEP (EEP) listener and sender.
//!
//! - ours -> sngrep, live: `hep-server send` sends a call as HEPv3 to sngrep's HEP listener
//!   (`-L udp:127.0.0.1:PORT`, headless `-N -q`, writing what it decoded to a pcap with
//!   `-O`); tshark reads that pcap: sngrep must show the call's messages with the HEP
//!   addresses, ports and timestamps.
//! - ours -> sngrep, file: sngrep `-I` reads the pcap that `hep-server run --output pcap:`
//!   wrote for the Kamailio HEPv3 vectors and finds the same messages as Kamailio recorded.
//! - sngrep -> ours: sngrep reads a SIP pcap (written here) and sends every message as HEPv3
//!   (`-H udp:127.0.0.1:PORT`) to `hep-server run`: the records must carry the packets'
//!   addresses, ports, capture times and bytes.

use std::collections::BTreeSet;
use std::fs;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail, ensure};

use super::ours::{self, Listen, Server, Window};
use super::peers::Tool;
use super::proc::{self, Proc};
use super::sip;
use super::tshark::{Seen, recorded_messages, sip_in_pcap};
use super::{Check, Ctx, Dir};

/// The rows.
pub(crate) fn checks() -> Vec<Check> {
    const NEEDS: &[Tool] = &[Tool::Sngrep, Tool::Tshark];
    vec![
        Check::new(
            "sngrep",
            Dir::OursToPeer,
            "v3",
            "udp (send -> sngrep -L)",
            NEEDS,
            send_to_listener,
        ),
        Check::new(
            "sngrep",
            Dir::OursToPeer,
            "v3",
            "pcap: -> sngrep -I",
            NEEDS,
            read_our_pcap,
        ),
        Check::new(
            "sngrep",
            Dir::PeerToOurs,
            "v3",
            "udp (sngrep -H -> run)",
            &[Tool::Sngrep],
            sngrep_sends,
        ),
    ]
}

/// Messages as tshark shows them, without sngrep's duplicates (it writes some twice).
fn dedup(seen: Vec<Seen>) -> Vec<Seen> {
    let mut set = BTreeSet::new();
    seen.into_iter().filter(|s| set.insert(s.clone())).collect()
}

/// `hep-server send` -> sngrep's HEP listener.
fn send_to_listener(ctx: &Ctx) -> Result<String> {
    let dir = ctx.subdir("run")?;
    let port = ctx.ports.free()?;
    let out = dir.join("sngrep.pcap");
    let listen = format!("udp:127.0.0.1:{port}");
    let out_s = out.display().to_string();
    let mut sngrep = Proc::start(
        "sngrep",
        "sngrep",
        &["-N", "-q", "-F", "-L", &listen, "-O", &out_s],
        &dir.join("sngrep.log"),
        Duration::from_secs(30),
    )?;
    proc::wait_for("sngrep to listen", Duration::from_secs(10), || {
        sngrep.ensure_running()?;
        Ok(proc::udp_bound(port))
    })?;
    let mut window = Window::open();
    let cid = sip::unique_call_id("sngrep");
    let a: SocketAddr = "127.0.0.1:5061".parse()?;
    let b: SocketAddr = "127.0.0.2:5080".parse()?;
    let call = sip::call(&cid, a, b);
    for (i, m) in call.iter().enumerate() {
        let file = dir.join(format!("msg-{:02}.sip", i + 1));
        fs::write(&file, &m.text)?;
        ours::send(
            ctx,
            &[
                "--dest".to_owned(),
                format!("hep_udp:127.0.0.1:{port}"),
                "--hep-version".to_owned(),
                "3".to_owned(),
                "--src".to_owned(),
                m.src.to_string(),
                "--dst".to_owned(),
                m.dst.to_string(),
                "--capture-id".to_owned(),
                "2001".to_owned(),
                file.display().to_string(),
            ],
        )?;
    }
    // sngrep writes each message as it decodes it; give it a moment, then stop it.
    let mut seen = Vec::new();
    let _ = proc::wait_for("sngrep to write the call", Duration::from_secs(5), || {
        seen = if out.exists() {
            dedup(sip_in_pcap(&out).unwrap_or_default())
        } else {
            Vec::new()
        };
        Ok(seen.len() >= call.len())
    });
    window.close();
    sngrep.stop();
    let seen = dedup(sip_in_pcap(&out)?);
    let mut problems = Vec::new();
    if seen.len() != call.len() {
        problems.push(format!(
            "sngrep decoded {} of {} messages; log: {}",
            seen.len(),
            call.len(),
            sngrep.log_tail(2)
        ));
    }
    for (i, m) in call.iter().enumerate() {
        let method = match m.start() {
            Some(sip::StartLine::Request(method)) => method,
            Some(sip::StartLine::Reply(code, _)) => code.to_string(),
            None => String::new(),
        };
        let found = seen.iter().any(|s| {
            s.src == m.src.to_string()
                && s.dst == m.dst.to_string()
                && s.method == method
                && s.call_id == cid
                && s.micros.is_some_and(|t| window.contains(t))
        });
        if !found {
            problems.push(format!(
                "message {} ({method} {} -> {}) not shown",
                i + 1,
                m.src,
                m.dst
            ));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(format!(
        "sngrep's HEP listener decoded all {} messages of the call: methods/status, Call-ID, HEP src/dst ip:port, HEP ts as frame time",
        seen.len()
    ))
}

/// sngrep `-I` of our `pcap:` output.
fn read_our_pcap(ctx: &Ctx) -> Result<String> {
    let dir = ctx.subdir("run")?;
    let port = ctx.ports.free()?;
    let pcap = dir.join("ours.pcap");
    let json = dir.join("records.jsonl");
    let mut server = Server::start(
        ctx,
        &dir,
        &[Listen::Udp(port)],
        &[
            format!("pcap:{}", pcap.display()),
            format!("json:{}", json.display()),
        ],
    )?;
    let files = [
        ctx.kamailio_set("v3-udp")?,
        ctx.kamailio_set("v3-udp-ipv6")?,
    ]
    .concat();
    ours::replay_udp(&files, port)?;
    let received = server
        .wait_records(files.len(), Duration::from_secs(5))?
        .len();
    let summary = server.stop();
    ensure!(
        received == files.len(),
        "hep-server received {received} of {}; {summary}",
        files.len()
    );
    let out = dir.join("sngrep.pcap");
    let status = Proc::start(
        "sngrep -I",
        "sngrep",
        &[
            "-N".to_owned(),
            "-q".to_owned(),
            "-F".to_owned(),
            "-I".to_owned(),
            pcap.display().to_string(),
            "-O".to_owned(),
            out.display().to_string(),
        ],
        &dir.join("sngrep.log"),
        Duration::from_secs(30),
    )?
    .wait(Duration::from_secs(30))?;
    ensure!(status.success(), "sngrep -I failed ({status})");
    let mut seen = dedup(sip_in_pcap(&out)?);
    let mut want = recorded_messages(ctx, &["v3-udp", "v3-udp-ipv6"])?;
    seen.sort();
    want.sort();
    if seen != want {
        let first = want.iter().find(|w| !seen.contains(w));
        bail!(
            "sngrep found {} SIP messages in our pcap, expected {}; first missing {first:?}",
            seen.len(),
            want.len()
        );
    }
    let calls: BTreeSet<&str> = seen.iter().map(|s| s.call_id.as_str()).collect();
    Ok(format!(
        "sngrep -I of our pcap: {} messages of {} calls (IPv4+IPv6) with addrs, times, methods/status, Call-IDs as Kamailio recorded",
        seen.len(),
        calls.len()
    ))
}

/// sngrep `-I SIP.pcap -H udp:...` -> `hep-server run`.
fn sngrep_sends(ctx: &Ctx) -> Result<String> {
    let dir = ctx.subdir("run")?;
    let cid = sip::unique_call_id("sngrep-eep");
    let a: SocketAddr = "127.0.0.1:5061".parse()?;
    let b: SocketAddr = "127.0.0.2:5080".parse()?;
    let call = sip::call(&cid, a, b);
    let base = 1_795_000_000_000_000u64;
    let frames: Vec<(u64, SocketAddrV4, SocketAddrV4, &[u8])> = call
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let v4 = |s: SocketAddr| match s {
                SocketAddr::V4(v) => v,
                SocketAddr::V6(_) => SocketAddrV4::new([0, 0, 0, 0].into(), 0),
            };
            (
                base + 1000 * i as u64 + 7,
                v4(m.src),
                v4(m.dst),
                m.text.as_bytes(),
            )
        })
        .collect();
    let input = dir.join("sip.pcap");
    write_sip_pcap(&input, &frames)?;

    let port = ctx.ports.free()?;
    let json = dir.join("records.jsonl");
    let mut server = Server::start(
        ctx,
        &dir,
        &[Listen::Udp(port)],
        &[format!("json:{}", json.display())],
    )?;
    let status = Proc::start(
        "sngrep -H",
        "sngrep",
        &[
            "-N".to_owned(),
            "-q".to_owned(),
            "-F".to_owned(),
            "-I".to_owned(),
            input.display().to_string(),
            "-H".to_owned(),
            format!("udp:127.0.0.1:{port}"),
        ],
        &dir.join("sngrep.log"),
        Duration::from_secs(30),
    )?
    .wait(Duration::from_secs(30))?;
    ensure!(status.success(), "sngrep -H failed ({status})");
    let records = server.wait_records(call.len(), Duration::from_secs(5))?;
    let summary = server.stop();

    let mut problems = Vec::new();
    if records.len() != call.len() {
        problems.push(format!(
            "{} records for {} messages sngrep sent; {summary}",
            records.len(),
            call.len()
        ));
    }
    let mut capture_ids = BTreeSet::new();
    for (i, (us, src, dst, bytes)) in frames.iter().enumerate() {
        let found = records
            .iter()
            .find(|r| ours::payload(r).is_ok_and(|p| p == *bytes));
        let Some(r) = found else {
            problems.push(format!("message {} not received", i + 1));
            continue;
        };
        capture_ids.insert(ours::u(r, "capture_id").unwrap_or(0));
        let checks = [
            ("version", ours::u(r, "version") == Some(3)),
            ("family", ours::s(r, "family") == Some("ipv4")),
            ("ip_proto", ours::u(r, "ip_proto") == Some(17)),
            ("src", ours::src(r) == src.to_string()),
            ("dst", ours::dst(r) == dst.to_string()),
            ("timestamp", ours::micros(r) == Some(*us)),
            ("proto_type", ours::u(r, "proto_type") == Some(1)),
        ];
        for (what, ok) in checks {
            if !ok {
                problems.push(format!("message {} {what} differs: {r}", i + 1));
            }
        }
    }
    // sngrep 1.6 writes its capture id 2002 as htons() into the 32-bit chunk:
    // 0x07d20000 on the wire. We report what is on the wire.
    if !capture_ids.iter().all(|&c| c == 2002 || c == 2002 << 16) {
        problems.push(format!(
            "capture ids {capture_ids:?}, expected sngrep's 2002"
        ));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    let ids: Vec<String> = capture_ids.iter().map(u64::to_string).collect();
    Ok(format!(
        "sngrep re-sent {} SIP packets of a pcap as HEPv3: addrs, ports, capture time (us), payload bytes equal; capture id {} on the wire (sngrep 1.6 writes its 2002 as 0x07d20000)",
        records.len(),
        ids.join(",")
    ))
}

/// Writes Ethernet/IPv4/UDP frames carrying SIP to a classic pcap file.
fn write_sip_pcap(path: &Path, frames: &[(u64, SocketAddrV4, SocketAddrV4, &[u8])]) -> Result<()> {
    let mut out: Vec<u8> = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (us, src, dst, payload) in frames {
        let udp_len = u16::try_from(8 + payload.len())?;
        let ip_len = 20 + udp_len;
        let mut ip = Vec::with_capacity(20);
        ip.extend_from_slice(&[0x45, 0]);
        ip.extend_from_slice(&ip_len.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        ip.extend_from_slice(&src.ip().octets());
        ip.extend_from_slice(&dst.ip().octets());
        let sum = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let folded = (sum & 0xffff) + (sum >> 16);
        let checksum = !u16::try_from((folded & 0xffff) + (folded >> 16))?;
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        let mut frame = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00];
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&src.port().to_be_bytes());
        frame.extend_from_slice(&dst.port().to_be_bytes());
        frame.extend_from_slice(&udp_len.to_be_bytes());
        frame.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
        frame.extend_from_slice(payload);
        let len = u32::try_from(frame.len())?;
        out.extend_from_slice(&u32::try_from(us / 1_000_000)?.to_le_bytes());
        out.extend_from_slice(&u32::try_from(us % 1_000_000)?.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&frame);
    }
    fs::write(path, out)?;
    Ok(())
}
