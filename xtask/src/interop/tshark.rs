//! tshark (Wireshark 4.0, no HEP dissector) as an independent pcap reader and SIP dissector.
//!
//! - ours -> tshark: `hep-server run --output pcap:FILE` is fed the Kamailio vectors (raw
//!   datagrams, or the raw TCP stream); `tshark -r FILE` must open it without errors or
//!   malformed frames and its SIP dissector must show every message with the HEP addresses,
//!   ports and timestamp as the frame's, and the Call-ID and method/status code, exactly as
//!   Kamailio's own decoding of the same vectors recorded them.
//! - tshark -> ours: the pcaps tshark recorded next to the Kamailio vectors: tshark's own
//!   reading of their UDP/TCP payloads equals the raw `.hep` files, and `hep-server decode`
//!   of each pcap gives the same records as of the raw files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use super::kamailio_receiver::read_tsv;
use super::ours::{self, Listen, Server, Window};
use super::peers::Tool;
use super::proc;
use super::{Check, Ctx, Dir};

/// The rows.
pub(crate) fn checks() -> Vec<Check> {
    const NEEDS: &[Tool] = &[Tool::Tshark];
    let pcap_out =
        |version: &'static str, transport: &'static str, sets: &'static [&'static str]| {
            Check::new(
                "tshark",
                Dir::OursToPeer,
                version,
                transport,
                NEEDS,
                move |ctx| pcap_output(ctx, sets),
            )
        };
    let recorded =
        |version: &'static str, transport: &'static str, sets: &'static [&'static str]| {
            Check::new(
                "tshark",
                Dir::PeerToOurs,
                version,
                transport,
                NEEDS,
                move |ctx| recorded_pcaps(ctx, sets),
            )
        };
    vec![
        pcap_out("v1", "udp -> pcap:", &["v1-udp"]),
        pcap_out("v2", "udp -> pcap:", &["v2-udp", "v2-udp-ipv6"]),
        pcap_out("v3", "udp -> pcap:", &["v3-udp", "v3-udp-ipv6"]),
        pcap_out("v3", "tcp -> pcap:", &["v3-tcp"]),
        recorded("v1", "udp (recorded pcap)", &["v1-udp"]),
        recorded("v2", "udp (recorded pcap)", &["v2-udp", "v2-udp-ipv6"]),
        recorded(
            "v3",
            "udp (recorded pcap)",
            &["v3-udp", "v3-udp-ipv6", "v3-udp-hlog-authkey"],
        ),
        recorded("v3", "tcp (recorded pcap)", &["v3-tcp"]),
    ]
}

/// One SIP message as tshark shows it (or as Kamailio recorded it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Seen {
    /// Capture time in microseconds (`None` when it is not compared).
    pub(crate) micros: Option<u64>,
    /// `ip:port` source.
    pub(crate) src: String,
    /// `ip:port` destination.
    pub(crate) dst: String,
    /// Method, or status code for replies.
    pub(crate) method: String,
    /// Call-ID.
    pub(crate) call_id: String,
}

/// Renders an address like [`std::net::SocketAddr`].
fn addr(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// `frame.time_epoch` (`1795670509.909050000`) in microseconds.
fn epoch_micros(text: &str) -> Option<u64> {
    let (sec, frac) = text.split_once('.').unwrap_or((text, ""));
    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    Some(sec.parse::<u64>().ok()? * 1_000_000 + frac.parse::<u64>().ok()?)
}

/// Runs tshark on a pcap, failing on an error exit or any error output.
pub(crate) fn tshark(pcap: &Path, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", "-r"];
    let path = pcap.display().to_string();
    full.push(&path);
    full.extend_from_slice(args);
    let out = proc::output("tshark", &full, None, Duration::from_secs(60))?;
    let stderr: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Running as user"))
        .map(str::to_owned)
        .collect();
    ensure!(
        out.status.success() && stderr.is_empty(),
        "tshark -r {} failed ({}): {}",
        pcap.display(),
        out.status,
        stderr.join(" | ")
    );
    String::from_utf8(out.stdout).context("tshark printed non-UTF-8")
}

/// The SIP messages tshark dissects in a pcap (`-Y sip`), in frame order.
pub(crate) fn sip_in_pcap(pcap: &Path) -> Result<Vec<Seen>> {
    let out = tshark(
        pcap,
        &[
            "-Y",
            "sip",
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-E",
            "occurrence=f",
            "-e",
            "frame.time_epoch",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "udp.srcport",
            "-e",
            "tcp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "ipv6.dst",
            "-e",
            "udp.dstport",
            "-e",
            "tcp.dstport",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "sip.Call-ID",
        ],
    )?;
    Ok(out
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l
                .split('\t')
                .chain(std::iter::repeat(""))
                .take(12)
                .collect();
            let or = |a: &str, b: &str| {
                if a.is_empty() {
                    b.to_owned()
                } else {
                    a.to_owned()
                }
            };
            Seen {
                micros: epoch_micros(f[0]),
                src: addr(&or(f[1], f[2]), &or(f[3], f[4])),
                dst: addr(&or(f[5], f[6]), &or(f[7], f[8])),
                method: or(f[9], f[10]),
                call_id: f[11].to_owned(),
            }
        })
        .collect())
}

/// Counts the frames of a pcap matching a display filter.
fn count_frames(pcap: &Path, filter: &str) -> Result<usize> {
    let out = tshark(pcap, &["-Y", filter, "-T", "fields", "-e", "frame.number"])?;
    Ok(out.lines().filter(|l| !l.is_empty()).count())
}

/// The messages Kamailio recorded for these vector sets (the oracle for what the SIP is).
pub(crate) fn recorded_messages(ctx: &Ctx, sets: &[&str]) -> Result<Vec<Seen>> {
    let rows = if sets == ["v3-tcp"] {
        read_tsv(&ctx.kamailio_vector("decoded-kamailio-sipcapture-tcp.tsv"))?
    } else {
        read_tsv(&ctx.kamailio_vector("decoded-kamailio-sipcapture.tsv"))?
            .into_iter()
            .filter(|r| {
                r.get("file").is_some_and(|f| {
                    sets.iter().any(|s| {
                        f.strip_prefix(s)
                            .is_some_and(|rest| rest.starts_with("-0") && rest.ends_with(".hep"))
                    })
                })
            })
            .collect()
    };
    let get = |r: &super::kamailio_receiver::Row, k: &str| r.get(k).cloned().unwrap_or_default();
    Ok(rows
        .iter()
        .map(|r| Seen {
            micros: get(r, "micro_ts").parse().ok(),
            src: addr(&get(r, "source_ip"), &get(r, "source_port")),
            dst: addr(&get(r, "destination_ip"), &get(r, "destination_port")),
            method: get(r, "method"),
            call_id: get(r, "callid"),
        })
        .collect())
}

/// `hep-server run --output pcap:` fed with vectors, read by tshark.
fn pcap_output(ctx: &Ctx, sets: &[&str]) -> Result<String> {
    let dir = ctx.subdir("run")?;
    let tcp = sets == ["v3-tcp"];
    let port = ctx.ports.free()?;
    let pcap = dir.join("out.pcap");
    let json = dir.join("records.jsonl");
    let mut window = Window::open();
    let mut server = Server::start(
        ctx,
        &dir,
        &[Listen::Udp(port), Listen::Tcp(port)],
        &[
            format!("pcap:{}", pcap.display()),
            format!("json:{}", json.display()),
        ],
    )?;
    let expected_n = if tcp {
        let stream = std::fs::read(ctx.kamailio_vector("v3-tcp-stream.bin"))?;
        ours::replay_tcp(&stream, port)?;
        ctx.kamailio_set("v3-tcp")?.len()
    } else {
        let files: Vec<PathBuf> = sets
            .iter()
            .map(|s| ctx.kamailio_set(s))
            .collect::<Result<Vec<_>>>()?
            .concat();
        ours::replay_udp(&files, port)?;
        files.len()
    };
    let received = server
        .wait_records(expected_n, Duration::from_secs(5))?
        .len();
    // Outputs flush within ~100 ms; stopping the server flushes and closes the file.
    let summary = server.stop();
    window.close();
    ensure!(
        received == expected_n,
        "hep-server received {received} of {expected_n} messages; {summary}"
    );

    let mut seen = sip_in_pcap(&pcap)?;
    let all = count_frames(&pcap, "frame")?;
    let malformed = count_frames(&pcap, "_ws.malformed || _ws.expert.severity >= error")?;
    let mut want = recorded_messages(ctx, sets)?;
    let v1 = sets.iter().all(|s| s.starts_with("v1"));
    if v1 {
        // HEPv1 has no timestamp: the frame time is the receive time.
        for s in &mut seen {
            ensure!(
                s.micros.is_some_and(|t| window.contains(t)),
                "frame time {:?} of a HEPv1 message is not the receive time",
                s.micros
            );
            s.micros = None;
        }
        for w in &mut want {
            w.micros = None;
        }
    }
    let mut problems = Vec::new();
    if all != expected_n || malformed != 0 {
        problems.push(format!(
            "{all} frames for {expected_n} messages, {malformed} malformed or with errors"
        ));
    }
    let (mut seen_sorted, mut want_sorted) = (seen.clone(), want.clone());
    seen_sorted.sort();
    want_sorted.sort();
    if seen_sorted != want_sorted {
        let first = want_sorted.iter().find(|w| !seen_sorted.contains(w));
        problems.push(format!(
            "tshark shows {} SIP messages, expected {}; first missing {first:?}, e.g. shown {:?}",
            seen.len(),
            want.len(),
            seen.first()
        ));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    let calls: std::collections::BTreeSet<&str> = seen.iter().map(|s| s.call_id.as_str()).collect();
    Ok(format!(
        "tshark -r: {} frames, 0 malformed; SIP dissector shows all {} messages of {} call(s): src/dst ip:port, {}method/status, Call-ID as recorded",
        all,
        seen.len(),
        calls.len(),
        if v1 {
            "receive time, "
        } else {
            "HEP ts as frame time, "
        }
    ))
}

/// The pcaps recorded with the vectors: tshark's payloads = raw files; decode(pcap) = decode(raw).
fn recorded_pcaps(ctx: &Ctx, sets: &[&str]) -> Result<String> {
    let mut total = 0;
    let mut problems = Vec::new();
    for set in sets {
        let pcap = ctx.kamailio_vector(&format!("{set}.pcap"));
        let tcp = *set == "v3-tcp";
        let raw: Vec<PathBuf> = if tcp {
            vec![ctx.kamailio_vector("v3-tcp-stream.bin")]
        } else {
            ctx.kamailio_set(set)?
        };
        // 1. tshark reads the same bytes out of the pcap.
        let field = if tcp { "tcp.payload" } else { "udp.payload" };
        let payloads: Vec<Vec<u8>> = tshark(&pcap, &["-T", "fields", "-e", field])?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(unhex)
            .collect::<Result<_>>()?;
        let raw_bytes: Vec<Vec<u8>> = raw
            .iter()
            .map(std::fs::read)
            .collect::<std::io::Result<_>>()?;
        let same = if tcp {
            payloads.concat() == raw_bytes.concat()
        } else {
            payloads == raw_bytes
        };
        if !same {
            problems.push(format!(
                "{set}: tshark's {field} of {} frames differs from the {} raw file(s)",
                payloads.len(),
                raw.len()
            ));
        }
        // 2. decode(pcap) == decode(raw files), apart from how they were received.
        let strip = |recs: Vec<Value>| -> Vec<Value> {
            recs.into_iter()
                .map(|mut r| {
                    if let Some(o) = r.as_object_mut() {
                        o.remove("recv");
                    }
                    r
                })
                .collect()
        };
        let from_pcap = strip(ours::decode(ctx, std::slice::from_ref(&pcap))?);
        let from_raw = strip(ours::decode(ctx, &raw)?);
        if from_pcap.is_empty() || from_pcap != from_raw {
            let first = from_pcap
                .iter()
                .zip(&from_raw)
                .position(|(a, b)| a != b)
                .map_or_else(|| "count".to_owned(), |i| format!("record {}", i + 1));
            problems.push(format!(
                "{set}: decode of the pcap gives {} records, of the raw files {} (first difference: {first})",
                from_pcap.len(),
                from_raw.len()
            ));
        }
        total += from_pcap.len();
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(format!(
        "{}: tshark's payload bytes = raw files; hep-server decode of the pcaps = of the raw files ({total} records)",
        sets.iter()
            .map(|s| format!("{s}.pcap"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Parses hex (tshark's `udp.payload`, optionally with `:` separators).
fn unhex(text: &str) -> Result<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    ensure!(digits.len().is_multiple_of(2), "odd hex length");
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair)?;
            Ok(u8::from_str_radix(s, 16)?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_hex_parse() {
        assert_eq!(
            epoch_micros("1795670509.909050000"),
            Some(1_795_670_509_909_050)
        );
        assert_eq!(epoch_micros("12.5"), Some(12_500_000));
        assert_eq!(unhex("00ff10").unwrap(), [0, 255, 16]);
        assert_eq!(unhex("00:ff").unwrap(), [0, 255]);
        assert_eq!(addr("::1", "5060"), "[::1]:5060");
    }
}
