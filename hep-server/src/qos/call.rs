//! The QoS of one call: every report its stored messages carry (RTCP and RTCP-XR by
//! correlation id, `X-RTP-Stat` in its SIP), grouped by stream, with each stream's
//! samples in time for a chart and a summary. Computed when a call is read (the API,
//! `search`'s ladder, the page): one code path, nothing stored twice.
//!
//! Bounds: [`MAX_STREAMS`] streams and [`MAX_SAMPLES`] samples a stream; what is over
//! them is counted in [`CallQos::dropped`]. Payloads that give no report are counted in
//! [`CallQos::unreadable`], the first reason kept.

use hep_proto::ProtoType;
use serde::Serialize;

use super::{DEFAULT_CLOCK_HZ, Report, Source, rtcp, vq, xrtpstat};
use crate::time::UtcTimestamp;

/// Streams of one call, at most.
pub const MAX_STREAMS: usize = 64;
/// Samples of one stream, at most (an RTCP report every 5 s: almost 3 hours).
pub const MAX_SAMPLES: usize = 2_000;

/// One stored message, as this module reads it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The HEP protocol type (`None` for HEPv1/v2: SIP).
    pub proto_type: Option<ProtoType>,
    /// The payload.
    pub payload: &'a [u8],
    /// The capture time, µs since 1970.
    pub capture_us: Option<i64>,
}

/// The QoS of a call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallQos {
    /// Its streams, by source then name.
    pub streams: Vec<Stream>,
    /// Reports over the bounds, not kept.
    pub dropped: usize,
    /// RTCP and RTCP-XR payloads (and `X-RTP-Stat` values) that gave no report.
    pub unreadable: usize,
    /// Why the first of them gave none.
    pub first_error: Option<String>,
}

/// One stream of a call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stream {
    /// What reported it.
    pub source: Source,
    /// Its name: `ssrc:0x...`, or a direction ([`Report::stream`]).
    pub stream: String,
    /// The SSRC that reported it (the last report's), when known.
    pub reporter: Option<u32>,
    /// Its reports in capture order.
    pub samples: Vec<Sample>,
    /// The summary of the samples.
    pub summary: Summary,
}

/// One report of a stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Capture time, RFC 3339 UTC with microseconds.
    pub ts: Option<String>,
    /// Capture time, µs since 1970 (for charts).
    pub ts_usec: Option<i64>,
    /// Interarrival jitter, ms.
    pub jitter_ms: Option<f64>,
    /// Loss, %.
    pub loss_pct: Option<f64>,
    /// Cumulative packets lost.
    pub packets_lost: Option<i64>,
    /// Round-trip time, ms.
    pub rtt_ms: Option<f64>,
    /// MOS.
    pub mos: Option<f64>,
}

/// A stream's figures over its samples (`None` where no sample has the value).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// How many samples.
    pub samples: usize,
    /// Mean jitter, ms.
    pub jitter_ms_avg: Option<f64>,
    /// Highest jitter, ms.
    pub jitter_ms_max: Option<f64>,
    /// Mean loss, %.
    pub loss_pct_avg: Option<f64>,
    /// Highest loss, %.
    pub loss_pct_max: Option<f64>,
    /// The last cumulative count (RTCP's counts run over the call).
    pub packets_lost: Option<i64>,
    /// Mean RTT, ms.
    pub rtt_ms_avg: Option<f64>,
    /// Mean MOS.
    pub mos_avg: Option<f64>,
    /// Lowest MOS.
    pub mos_min: Option<f64>,
}

/// The reports of one message: RTCP (type 5), RTCP-XR (type 35), or the `X-RTP-Stat`
/// header of a SIP message. `Ok(empty)` for a message that carries no QoS.
///
/// # Errors
/// A QoS payload that cannot be read ([`super::Error`]).
pub fn reports_of(m: &Input<'_>) -> Result<Vec<Report>, super::Error> {
    let capture_us = m.capture_us.and_then(|t| u64::try_from(t).ok());
    match m.proto_type {
        Some(ProtoType::Rtcp) => rtcp::parse(m.payload, capture_us, DEFAULT_CLOCK_HZ),
        Some(ProtoType::MosShort) => vq::parse(m.payload),
        None | Some(ProtoType::Sip) => match hep_proto::sip::header(m.payload, "X-RTP-Stat") {
            Some(v) => xrtpstat::parse(v),
            None => Ok(Vec::new()),
        },
        _ => Ok(Vec::new()),
    }
}

impl CallQos {
    /// The QoS of a call's messages (any order; samples are sorted by capture time).
    pub fn of<'a>(messages: impl IntoIterator<Item = Input<'a>>) -> Self {
        let mut qos = Self::default();
        let mut reports: Vec<(Option<i64>, Report)> = Vec::new();
        for m in messages {
            match reports_of(&m) {
                Ok(rs) => reports.extend(rs.into_iter().map(|r| (m.capture_us, r))),
                Err(e) => {
                    qos.unreadable += 1;
                    qos.first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        reports.sort_by_key(|r| r.0);
        for (at, r) in reports {
            let key = (r.source, r.stream.as_str());
            let i = match qos
                .streams
                .binary_search_by(|s| (s.source, s.stream.as_str()).cmp(&key))
            {
                Ok(i) => i,
                Err(_) if qos.streams.len() >= MAX_STREAMS => {
                    qos.dropped += 1;
                    continue;
                }
                Err(i) => {
                    qos.streams.insert(
                        i,
                        Stream {
                            source: r.source,
                            stream: r.stream.clone(),
                            reporter: None,
                            samples: Vec::new(),
                            summary: Summary::default(),
                        },
                    );
                    i
                }
            };
            let s = &mut qos.streams[i];
            let sample = Sample {
                ts: at.map(rfc3339),
                ts_usec: at,
                jitter_ms: r.jitter_ms,
                loss_pct: r.loss_pct,
                packets_lost: r.packets_lost,
                rtt_ms: r.rtt_ms,
                mos: r.mos,
            };
            // The same header seen at two capture points (a BYE in and out of a proxy,
            // its retransmission) is one report.
            if r.source == Source::XRtpStat && s.samples.iter().any(|x| same_figures(x, &sample)) {
                continue;
            }
            if s.samples.len() >= MAX_SAMPLES {
                qos.dropped += 1;
                continue;
            }
            s.reporter = r.reporter.or(s.reporter);
            s.samples.push(sample);
        }
        for s in &mut qos.streams {
            s.summary = Summary::of(&s.samples);
        }
        qos
    }
}

fn same_figures(a: &Sample, b: &Sample) -> bool {
    (a.jitter_ms, a.loss_pct, a.packets_lost, a.rtt_ms, a.mos)
        == (b.jitter_ms, b.loss_pct, b.packets_lost, b.rtt_ms, b.mos)
}

fn rfc3339(us: i64) -> String {
    UtcTimestamp::new(us.div_euclid(1_000_000), us.rem_euclid(1_000_000) as u32).to_string()
}

impl Summary {
    fn of(samples: &[Sample]) -> Self {
        let avg = |f: fn(&Sample) -> Option<f64>| {
            let v: Vec<f64> = samples.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let fold = |f: fn(&Sample) -> Option<f64>, pick: fn(f64, f64) -> f64| {
            samples.iter().filter_map(f).reduce(pick)
        };
        Self {
            samples: samples.len(),
            jitter_ms_avg: avg(|s| s.jitter_ms),
            jitter_ms_max: fold(|s| s.jitter_ms, f64::max),
            loss_pct_avg: avg(|s| s.loss_pct),
            loss_pct_max: fold(|s| s.loss_pct, f64::max),
            packets_lost: samples.iter().rev().find_map(|s| s.packets_lost),
            rtt_ms_avg: avg(|s| s.rtt_ms),
            mos_avg: avg(|s| s.mos),
            mos_min: fold(|s| s.mos, f64::min),
        }
    }
}
