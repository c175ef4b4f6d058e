//! RTCP receiver report blocks (RFC 3550 6.4): HEP type 5, as the JSON that captagent,
//! heplify and rtpengine send, or as the raw packet.
//!
//! Each report block becomes a [`Report`] on the stream it reports (`source_ssrc`):
//! - jitter: `ia_jitter` is in RTP timestamp units, read at [`DEFAULT_CLOCK_HZ`]
//!   unless told otherwise;
//! - loss: `fraction_lost` is the 8-bit fraction of the last interval (`23` = 23/256 =
//!   8.98 %); `packets_lost` the signed 24-bit cumulative count (a JSON value in
//!   `0x800000..=0xffffff` is that count's negative, written unsigned);
//! - RTT (RFC 3550 A.8): `A - LSR - DLSR` in 1/65536 s, where `A` is the arrival time of
//!   the report (the HEP capture time: the agent that captured it received it), in the
//!   middle 32 bits of an NTP timestamp. Unknown when `lsr` is 0 (no SR received yet),
//!   without a capture time, or when it comes out negative or above
//!   [`MAX_RTT_MS`] (clocks that disagree);
//! - MOS: [`emodel::mos`](super::emodel::mos) of the jitter, half the RTT and the loss.
//!
//! rtpengine's quirks (10.5): `ntp_timestamp_usec` is the raw NTP fraction, `type`
//! appears again inside `sdes_information`, numbers are unsigned decimal; none of them
//! matters here, as only the report blocks are read.

use serde_json::Value;

use super::{DEFAULT_CLOCK_HZ, Error, Report, Source};

/// An RTT above this (ms) is taken for clocks that disagree, not measured.
pub const MAX_RTT_MS: f64 = 10_000.0;

/// Seconds from 1900 (NTP's epoch) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// One report block, as both encodings carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    ssrc: u32,
    fraction_lost: u8,
    packets_lost: i64,
    jitter: u32,
    lsr: u32,
    dlsr: u32,
}

/// The reports of a type 5 payload: JSON (it starts with `{`) or a raw RTCP compound
/// packet. `capture_us` is the HEP capture time (µs since 1970), for the RTT.
///
/// # Errors
/// Neither JSON of the expected shape nor an RTCP packet.
///
/// ```
/// use hep_server::qos::rtcp;
/// let json = br#"{"ssrc":185491181,"type":201,"report_blocks":[{"source_ssrc":1511911437,
///     "fraction_lost":23,"ia_jitter":80,"packets_lost":24,"lsr":0,"dlsr":0}]}"#;
/// let r = &rtcp::parse(json, None, 8000).unwrap()[0];
/// assert_eq!(r.stream, "ssrc:0x5a1df00d");
/// assert_eq!(r.jitter_ms, Some(10.0)); // 80 / 8000 s
/// assert_eq!(r.loss_pct, Some(23.0 * 100.0 / 256.0));
/// ```
pub fn parse(payload: &[u8], capture_us: Option<u64>, clock_hz: u32) -> Result<Vec<Report>, Error> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    let (reporter, blocks) = match first {
        Some(b'{') => json_blocks(payload)?,
        Some(b) if b >> 6 == 2 => raw_blocks(payload)?,
        Some(_) => {
            return Err(Error::Packet(
                "neither JSON nor an RTCP version 2 packet".into(),
            ));
        }
        None => return Err(Error::Json("empty payload".into())),
    };
    let clock = if clock_hz == 0 {
        DEFAULT_CLOCK_HZ
    } else {
        clock_hz
    };
    Ok(blocks
        .into_iter()
        .map(|b| {
            let mut r = Report::new(Source::Rtcp, format!("ssrc:{:#010x}", b.ssrc));
            r.reporter = reporter;
            r.jitter_ms = Some(f64::from(b.jitter) * 1000.0 / f64::from(clock));
            r.loss_pct = Some(f64::from(b.fraction_lost) * 100.0 / 256.0);
            r.packets_lost = Some(b.packets_lost);
            r.rtt_ms = capture_us.and_then(|at| rtt_ms(at, b.lsr, b.dlsr));
            r.with_mos()
        })
        .collect())
}

/// Whether a type 5 payload is a raw RTCP packet (not JSON), which a pcap can carry.
pub fn is_raw(payload: &[u8]) -> bool {
    payload.len() >= 8 && payload[0] >> 6 == 2 && matches!(payload[1], 200..=207)
}

/// RFC 3550 A.8's round-trip time, or `None` (see the [module docs](self)).
pub fn rtt_ms(arrival_us: u64, lsr: u32, dlsr: u32) -> Option<f64> {
    if lsr == 0 {
        return None;
    }
    let secs = arrival_us / 1_000_000 + NTP_UNIX_OFFSET;
    let frac = (arrival_us % 1_000_000) * 65_536 / 1_000_000;
    // The middle 32 bits: the low 16 of the seconds, the high 16 of the fraction.
    let a = (((secs & 0xffff) << 16) | frac) as u32;
    let rtt = a.wrapping_sub(lsr).wrapping_sub(dlsr);
    if rtt > 0x8000_0000 {
        return None;
    }
    let ms = f64::from(rtt) * 1000.0 / 65_536.0;
    (ms <= MAX_RTT_MS).then_some(ms)
}

fn json_blocks(payload: &[u8]) -> Result<(Option<u32>, Vec<Block>), Error> {
    let v: Value = serde_json::from_slice(payload).map_err(|e| Error::Json(e.to_string()))?;
    let Some(obj) = v.as_object() else {
        return Err(Error::Json("not an object".into()));
    };
    let reporter = obj.get("ssrc").and_then(as_u32);
    let Some(blocks) = obj.get("report_blocks") else {
        // An SR without blocks (a sender that receives nothing) or an SDES/BYE: no
        // stream is reported on.
        return Ok((reporter, Vec::new()));
    };
    let Some(blocks) = blocks.as_array() else {
        return Err(Error::Json("`report_blocks` is not an array".into()));
    };
    let mut out = Vec::with_capacity(blocks.len().min(31));
    for (i, b) in blocks.iter().take(31).enumerate() {
        let field = |name: &str| {
            b.get(name).and_then(Value::as_i64).ok_or_else(|| {
                Error::Json(format!(
                    "report_blocks[{i}].{name}: missing or not an integer"
                ))
            })
        };
        let ssrc = b.get("source_ssrc").and_then(as_u32).ok_or_else(|| {
            Error::Json(format!(
                "report_blocks[{i}].source_ssrc: missing or not a 32-bit number"
            ))
        })?;
        let fraction = field("fraction_lost")?;
        let lost = field("packets_lost")?;
        out.push(Block {
            ssrc,
            fraction_lost: u8::try_from(fraction).map_err(|_| {
                Error::Json(format!(
                    "report_blocks[{i}].fraction_lost: {fraction} is not 0-255"
                ))
            })?,
            packets_lost: if (0x80_0000..=0xff_ffff).contains(&lost) {
                lost - 0x100_0000
            } else {
                lost
            },
            jitter: u32::try_from(field("ia_jitter")?).unwrap_or(u32::MAX),
            lsr: b.get("lsr").and_then(as_u32).unwrap_or(0),
            dlsr: b.get("dlsr").and_then(as_u32).unwrap_or(0),
        });
    }
    Ok((reporter, out))
}

fn as_u32(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// The report blocks of every SR and RR of a compound packet.
fn raw_blocks(mut p: &[u8]) -> Result<(Option<u32>, Vec<Block>), Error> {
    let mut reporter = None;
    let mut out = Vec::new();
    while p.len() >= 4 {
        if p[0] >> 6 != 2 {
            return Err(Error::Packet("not RTCP version 2".into()));
        }
        let count = usize::from(p[0] & 0x1f);
        let kind = p[1];
        let len = (usize::from(u16::from_be_bytes([p[2], p[3]])) + 1) * 4;
        let Some(packet) = p.get(..len) else {
            return Err(Error::Packet(format!(
                "packet type {kind} says {len} bytes, {} are left",
                p.len()
            )));
        };
        let blocks_at = match kind {
            200 => Some(28),
            201 => Some(8),
            _ => None,
        };
        if let Some(at) = blocks_at {
            if packet.len() < at + 24 * count {
                return Err(Error::Packet(format!(
                    "packet type {kind} of {} bytes cannot hold {count} report blocks",
                    packet.len()
                )));
            }
            reporter = reporter.or_else(|| Some(be32(&packet[4..8])));
            for b in packet[at..at + 24 * count].chunks_exact(24) {
                let lost = i64::from(u32::from_be_bytes([0, b[5], b[6], b[7]]));
                out.push(Block {
                    ssrc: be32(&b[0..4]),
                    fraction_lost: b[4],
                    packets_lost: if lost >= 0x80_0000 {
                        lost - 0x100_0000
                    } else {
                        lost
                    },
                    jitter: be32(&b[12..16]),
                    lsr: be32(&b[16..20]),
                    dlsr: be32(&b[20..24]),
                });
            }
        }
        p = &p[len..];
    }
    if out.is_empty() && reporter.is_none() && !p.is_empty() {
        return Err(Error::Packet("shorter than an RTCP header".into()));
    }
    Ok((reporter, out))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
