//! Media quality (QoS) of calls: what RTCP reports, RTCP-XR / VQ session reports and
//! `X-RTP-Stat` headers say about each RTP stream, read into the same [`Report`]:
//! jitter (ms), loss (%), round-trip time (ms) and a MOS.
//!
//! Pure functions: no IO, no clock (the capture time comes with the payload), no panic
//! on any input; what cannot be read is an [`Error`] naming what was wrong.
//!
//! - [`rtcp`]: HEP type 5, the JSON that captagent, heplify and rtpengine send (sender
//!   information, `report_blocks[]`), and raw RTCP packets (SR/RR) when an agent sends
//!   the packet itself;
//! - [`vq`]: HEP type 35 (`mos_short`), RFC 6035 `VQSessionReport` text;
//! - [`xrtpstat`]: the `X-RTP-Stat` header of a BYE or its 200;
//! - [`emodel`]: the MOS from jitter, delay and loss where the source gives none;
//! - [`call`]: the per-stream view of a call from all of its reports.

pub mod call;
pub mod emodel;
pub mod rtcp;
#[cfg(test)]
mod tests;
pub mod vq;
pub mod xrtpstat;

use serde::Serialize;

/// Where a report came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An RTCP receiver report block (HEP type 5, JSON or raw).
    Rtcp,
    /// An RTCP-XR / VQ session report (HEP type 35).
    RtcpXr,
    /// An `X-RTP-Stat` SIP header.
    XRtpStat,
}

/// What one report says about one RTP stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// What sent it.
    pub source: Source,
    /// The stream: `ssrc:0x5a1df00d` (the SSRC reported on), or for a source without
    /// SSRCs a direction (`rx`, `tx`, `local`, `remote`).
    pub stream: String,
    /// The SSRC of the reporter, when the source says.
    pub reporter: Option<u32>,
    /// Interarrival jitter, ms.
    pub jitter_ms: Option<f64>,
    /// Packets lost, % (of the last interval for RTCP, of the call for the others).
    pub loss_pct: Option<f64>,
    /// Cumulative packets lost, when the source says.
    pub packets_lost: Option<i64>,
    /// Round-trip time, ms, when it can be told.
    pub rtt_ms: Option<f64>,
    /// MOS (1 to 5): the reporter's own, else [`emodel::mos`] of the jitter, half the
    /// RTT and the loss.
    pub mos: Option<f64>,
    /// Whether `mos` is the reporter's (`false`: computed here).
    pub mos_reported: bool,
}

impl Report {
    fn new(source: Source, stream: String) -> Self {
        Self {
            source,
            stream,
            reporter: None,
            jitter_ms: None,
            loss_pct: None,
            packets_lost: None,
            rtt_ms: None,
            mos: None,
            mos_reported: false,
        }
    }

    /// Fills in a computed MOS where the report has none and says enough: loss, with
    /// jitter and RTT read as 0 when unknown.
    fn with_mos(mut self) -> Self {
        if self.mos.is_none()
            && let Some(loss) = self.loss_pct
        {
            let delay = self.rtt_ms.map_or(0.0, |r| r / 2.0);
            self.mos = Some(emodel::mos(self.jitter_ms.unwrap_or(0.0), delay, loss));
        }
        self
    }
}

/// Why a payload gave no report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not JSON, or JSON of another shape.
    #[error("RTCP JSON: {0}")]
    Json(String),
    /// A raw RTCP packet that is cut short or not version 2.
    #[error("raw RTCP: {0}")]
    Packet(String),
    /// A VQ report without its `VQSessionReport` line or metrics.
    #[error("RTCP-XR session report: {0}")]
    Vq(String),
    /// An `X-RTP-Stat` value without the fields a report needs.
    #[error("X-RTP-Stat: {0}")]
    XRtpStat(String),
}

/// The RTP clock rate jitter in RTCP is counted in when nothing says otherwise: 8 kHz,
/// the rate of G.711, G.729 and most telephony audio (G.722 too, by RFC 3551's quirk).
pub const DEFAULT_CLOCK_HZ: u32 = 8_000;
