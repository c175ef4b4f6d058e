//! RTCP-XR / VQ session reports (RFC 6035; HEP type 35, `mos_short`): the text a phone
//! or SBC PUBLISHes at the end of a call (`VQSessionReport: CallTerm`) or during it
//! (`VQIntervalReport`, `VQAlertReport`).
//!
//! Each `LocalMetrics:` and `RemoteMetrics:` block becomes a [`Report`] on the stream it
//! measures: the local metrics are of the stream the local end receives (sent from
//! `RemoteAddr`'s SSRC), the remote ones of the stream it sends (`LocalAddr`'s SSRC);
//! `local` and `remote` name them when the SSRC is not given. Read from a block:
//! - loss: `PacketLoss: NLR` (network loss rate, %); `JDR` (discarded by the jitter
//!   buffer) is not loss on the network and is left out;
//! - jitter: `Delay: IAJ` (ms); RTT: `Delay: RTD` (ms);
//! - MOS: `QualityEst: MOSLQ` (listening quality), else `MOSCQ`, else
//!   [`emodel::mos`](super::emodel::mos).
//!
//! A value that is not a number (`unavailable`, empty) is unknown, not an error.

use super::{Error, Report, Source};

/// The reports of a VQ report.
///
/// # Errors
/// Not UTF-8, no `VQ...Report` line, or no metrics block.
///
/// ```
/// use hep_server::qos::vq;
/// let text = "VQSessionReport: CallTerm\r\nLocalMetrics:\r\nPacketLoss:NLR=5.0 JDR=2.0\r\n\
///             Delay:RTD=200 IAJ=2\r\nQualityEst:MOSLQ=4.2 MOSCQ=4.3\r\n";
/// let r = &vq::parse(text.as_bytes()).unwrap()[0];
/// assert_eq!((r.loss_pct, r.jitter_ms, r.rtt_ms, r.mos), (Some(5.0), Some(2.0), Some(200.0), Some(4.2)));
/// ```
pub fn parse(payload: &[u8]) -> Result<Vec<Report>, Error> {
    let text = std::str::from_utf8(payload).map_err(|e| Error::Vq(format!("not UTF-8: {e}")))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let is_report = lines
        .next()
        .and_then(|l| l.split_once(':'))
        .is_some_and(|(name, _)| name.trim().starts_with("VQ") && name.trim().ends_with("Report"));
    if !is_report {
        return Err(Error::Vq(
            "the first line is not `VQSessionReport:` (or an interval or alert report)".into(),
        ));
    }
    let mut local_ssrc = None;
    let mut remote_ssrc = None;
    // (is the local block, its report)
    let mut blocks: Vec<(bool, Report)> = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        match name {
            "LocalMetrics" | "RemoteMetrics" => {
                let local = name == "LocalMetrics";
                blocks.push((local, Report::new(Source::RtcpXr, String::new())));
                continue;
            }
            "LocalAddr" => local_ssrc = field(value, "SSRC").and_then(hex_or_decimal),
            "RemoteAddr" => remote_ssrc = field(value, "SSRC").and_then(hex_or_decimal),
            _ => {}
        }
        let Some((_, r)) = blocks.last_mut() else {
            continue;
        };
        let num = |k: &str| {
            field(value, k)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|x| x.is_finite())
        };
        match name {
            "PacketLoss" => r.loss_pct = num("NLR"),
            "Delay" => {
                r.jitter_ms = num("IAJ");
                r.rtt_ms = num("RTD");
            }
            "QualityEst" => {
                r.mos = num("MOSLQ")
                    .or_else(|| num("MOSCQ"))
                    .filter(|m| (1.0..=5.0).contains(m));
                r.mos_reported = r.mos.is_some();
            }
            _ => {}
        }
    }
    if blocks.is_empty() {
        return Err(Error::Vq(
            "no `LocalMetrics:` or `RemoteMetrics:` block".into(),
        ));
    }
    Ok(blocks
        .into_iter()
        .map(|(local, mut r)| {
            // The local end receives what the remote SSRC sends, and the other way.
            let (ssrc, side) = if local {
                (remote_ssrc, "local")
            } else {
                (local_ssrc, "remote")
            };
            r.stream = ssrc.map_or_else(|| side.to_owned(), |s| format!("ssrc:{s:#010x}"));
            r.with_mos()
        })
        .collect())
}

/// The value of `key=` among the space-separated pairs of `value`.
fn field<'a>(value: &'a str, key: &str) -> Option<&'a str> {
    value.split_whitespace().find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.eq_ignore_ascii_case(key).then_some(v)
    })
}

fn hex_or_decimal(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}
