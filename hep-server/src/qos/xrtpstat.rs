//! The `X-RTP-Stat` header (AVM's X-RTP, as SBCs and UAs such as baresip send it in a
//! BYE or its 200): `;`-separated `KEY=VALUE` pairs, of which these are read:
//! `PR`/`PS` packets received/sent, `PL=rx,tx` packets lost, `JI=rx,tx` jitter (ms),
//! `DL=avg,min,max` delay (ms).
//!
//! Two reports, one per direction, on streams `rx` and `tx`:
//! - `rx`: loss `PLrx x 100 / (PR + PLrx)` (of the packets expected), jitter `JIrx`;
//! - `tx`: loss `PLtx x 100 / PS` (the far end's count of what was sent), jitter `JItx`;
//! - MOS of each: [`super::emodel::mos`] with the delay `DL` (its average).
//!
//! heplify-server makes one figure of both directions (loss `(PLr + PLs) x 100 / (PR +
//! PS)`, jitter `JIr` only): a one-way problem is then halved, and the direction hidden.

use super::{Error, Report, Source, emodel};

/// The reports of an `X-RTP-Stat` header value.
///
/// # Errors
/// Neither `PR` nor `PS` is there (nothing to count loss against).
///
/// ```
/// use hep_server::qos::xrtpstat;
/// let r = xrtpstat::parse("PR=950;PS=1000;PL=50,0;JI=4,2;DL=20,10,30").unwrap();
/// assert_eq!(r[0].stream, "rx");
/// assert_eq!(r[0].loss_pct, Some(5.0)); // 50 of 1000 expected
/// assert_eq!(r[1].loss_pct, Some(0.0));
/// ```
pub fn parse(value: &str) -> Result<Vec<Report>, Error> {
    let get = |key: &str| {
        value.split([';', ' ']).find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
        })
    };
    let count = |key: &str| get(key).and_then(|v| v.parse::<u64>().ok());
    let pair = |key: &str, i: usize| {
        get(key)
            .and_then(|v| v.split(',').nth(i))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|x| x.is_finite() && *x >= 0.0)
    };
    let (received, sent) = (count("PR"), count("PS"));
    if received.is_none() && sent.is_none() {
        return Err(Error::XRtpStat(
            "neither PR (packets received) nor PS (packets sent) is a number".into(),
        ));
    }
    let delay = pair("DL", 0).unwrap_or(0.0);
    let mut out = Vec::with_capacity(2);
    for (stream, packets, index) in [("rx", received, 0), ("tx", sent, 1)] {
        let Some(packets) = packets else { continue };
        let lost = pair("PL", index);
        let expected = if index == 0 {
            packets as f64 + lost.unwrap_or(0.0)
        } else {
            packets as f64
        };
        let mut r = Report::new(Source::XRtpStat, stream.to_owned());
        r.jitter_ms = pair("JI", index);
        r.packets_lost = lost.map(|l| l as i64);
        r.loss_pct = lost.map(|l| {
            if expected > 0.0 {
                (l * 100.0 / expected).min(100.0)
            } else {
                0.0
            }
        });
        r.mos = r
            .loss_pct
            .map(|loss| emodel::mos(r.jitter_ms.unwrap_or(0.0), delay, loss));
        out.push(r);
    }
    Ok(out)
}
