//! A stored call's SIP KPIs ([`crate::kpi::call`]) and media quality ([`crate::qos::call`]), computed
//! from its messages when it is read: the one code path of the API's call view, the
//! page (which reads the API) and `search`'s ladder.

use std::io;

use serde::Serialize;

use crate::kpi::KpiConfig;
use crate::kpi::call::{CallKpis, CallView, Input as KpiInput};
use crate::qos::Source;
use crate::qos::call::{CallQos, Input as QosInput};
use crate::store::Stored;

/// The KPIs and the QoS of a call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallQuality {
    /// Its SIP KPIs and its legs'.
    pub kpis: CallView,
    /// Its streams' quality.
    pub qos: CallQos,
}

impl CallQuality {
    /// The quality of `call_id` from its stored `messages` (its legs' included), as it
    /// stands at `now_us` with the timeouts of `kpi`.
    pub fn of(call_id: &str, messages: &[Stored], now_us: i64, kpi: &KpiConfig) -> Self {
        let kpis = CallView::of(
            call_id,
            messages.iter().map(|s| KpiInput {
                message: &s.message,
                recv_us: s.recv_ts_usec,
            }),
            now_us,
            kpi,
        );
        let qos = CallQos::of(messages.iter().map(|s| QosInput {
            proto_type: s.message.proto_type,
            payload: s.message.payload.bytes(),
            capture_us: Some(s.ts_usec),
        }));
        Self { kpis, qos }
    }
}

impl CallQuality {
    /// The KPIs and a table of the streams as text, for under a ladder (`search
    /// --call-id`, the API's `text?format=ladder`).
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn write_text(&self, out: &mut dyn io::Write) -> io::Result<()> {
        let k = &self.kpis;
        writeln!(
            out,
            "\nKPIs of {} ({} leg{})",
            k.call.call_id,
            k.legs,
            if k.legs == 1 { "" } else { "s" }
        )?;
        for leg in std::iter::once(&k.call).chain(&k.other_legs) {
            if leg.call_id != k.call.call_id {
                writeln!(out, "  leg {}", leg.call_id)?;
            }
            write_kpis(leg, out)?;
        }
        let q = &self.qos;
        if q.streams.is_empty() {
            writeln!(out, "\nQoS: no RTCP, RTCP-XR or X-RTP-Stat report")?;
        } else {
            writeln!(out, "\nQoS ({} streams)", q.streams.len())?;
            writeln!(
                out,
                "  {:<10} {:<18} {:>7} {:>17} {:>15} {:>6} {:>8} {:>11}",
                "source",
                "stream",
                "reports",
                "jitter ms avg/max",
                "loss % avg/max",
                "lost",
                "RTT ms",
                "MOS avg/min"
            )?;
            for s in &q.streams {
                let m = &s.summary;
                let source = match s.source {
                    Source::Rtcp => "rtcp",
                    Source::RtcpXr => "rtcp-xr",
                    Source::XRtpStat => "x-rtp-stat",
                };
                writeln!(
                    out,
                    "  {:<10} {:<18} {:>7} {:>17} {:>15} {:>6} {:>8} {:>11}",
                    source,
                    s.stream,
                    m.samples,
                    pair(m.jitter_ms_avg, m.jitter_ms_max, 1),
                    pair(m.loss_pct_avg, m.loss_pct_max, 2),
                    m.packets_lost.map_or_else(|| "-".into(), |n| n.to_string()),
                    num(m.rtt_ms_avg, 2),
                    pair(m.mos_avg, m.mos_min, 2),
                )?;
            }
        }
        if q.unreadable > 0 {
            writeln!(
                out,
                "  {} report(s) could not be read; the first: {}",
                q.unreadable,
                q.first_error.as_deref().unwrap_or("")
            )?;
        }
        if q.dropped > 0 {
            writeln!(out, "  {} report(s) over the bounds left out", q.dropped)?;
        }
        Ok(())
    }
}

fn write_kpis(k: &CallKpis, out: &mut dyn io::Write) -> io::Result<()> {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.3} ms"));
    let result = match (k.final_status, &k.status_class) {
        (Some(s), Some(c)) => format!("{s} ({c})"),
        _ if k.timed_out.is_some() => "none".into(),
        _ => "none yet".into(),
    };
    write!(
        out,
        "  result {result}  SRD {}  PDD {}  answer {}",
        ms(k.srd_ms),
        ms(k.pdd_ms),
        ms(k.answer_ms)
    )?;
    if let Some(d) = k.duration_s {
        write!(out, "  duration {d:.3} s")?;
    }
    if let Some(by) = k.hangup {
        write!(out, "  hung up by {by}")?;
    }
    writeln!(out)?;
    write!(
        out,
        "  Q.850 cause {}  retransmissions {}  re-INVITEs {}",
        k.q850_cause.map_or_else(|| "-".into(), |c| c.to_string()),
        k.retransmissions,
        k.reinvites
    )?;
    if let Some(t) = k.timed_out {
        write!(out, "  timed out ({t})")?;
    }
    if let (Some(status), rrd) = (k.register_status, k.rrd_ms) {
        write!(out, "  registration {status}, RRD {}", ms(rrd))?;
    }
    writeln!(out)
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn pair(a: Option<f64>, b: Option<f64>, digits: usize) -> String {
    format!("{}/{}", num(a, digits), num(b, digits))
}
