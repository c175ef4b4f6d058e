//! The SIP KPIs of one stored call: its messages go through the same `Tracker` as the
//! live feed, with a `Sink` that keeps each Call-ID's findings instead of counting
//! them, so the call view and the metrics follow one set of rules.
//!
//! Computed when the call is read (the API, `search`'s ladder, the page). The table is
//! then expired at the read time with `[kpi]`'s default timeouts: a call still under way
//! shows what is known so far; one whose time is over shows how it ended (timed out, or
//! its challenge as its result).

use std::collections::BTreeMap;

use hep_proto::HepMessage;
use serde::Serialize;

use super::KpiConfig;
use super::tracker::{Count, Delay, Party, Sink, Timeout, Tracker};

/// One stored message, as this module reads it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The message.
    pub message: &'a HepMessage,
    /// When the collector received it, µs since 1970.
    pub recv_us: i64,
}

/// What the tracker found for one Call-ID.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallKpis {
    /// The Call-ID.
    pub call_id: String,
    /// Whether it had an initial INVITE (a call, not only a registration or OPTIONS).
    pub invite: bool,
    /// Session Request Delay (RFC 6076 4.2), ms.
    pub srd_ms: Option<f64>,
    /// Post-dial delay (INVITE to the first 180/183), ms.
    pub pdd_ms: Option<f64>,
    /// INVITE to the first 2xx, ms.
    pub answer_ms: Option<f64>,
    /// 2xx to BYE (or to the last message, when it timed out), seconds.
    pub duration_s: Option<f64>,
    /// The call's final status (its first final response other than a challenge).
    pub final_status: Option<u16>,
    /// Its class: `2xx` ... `6xx`.
    pub status_class: Option<String>,
    /// Who sent the BYE: `caller` or `callee`.
    pub hangup: Option<&'static str>,
    /// The Q.850 cause of a `Reason` header on BYE, CANCEL or a failure (the last one).
    pub q850_cause: Option<u16>,
    /// `setup` (no final response came) or `answered` (no BYE came), when its time
    /// ran out.
    pub timed_out: Option<&'static str>,
    /// Re-INVITEs.
    pub reinvites: u32,
    /// Retransmitted requests and responses.
    pub retransmissions: u32,
    /// Registration Request Delay (RFC 6076 4.1) of its last registration, ms.
    pub rrd_ms: Option<f64>,
    /// Its last registration's final status.
    pub register_status: Option<u16>,
    /// Delays not measured because the agents' clocks disagree (came out negative).
    pub clock_disorder: u32,
}

/// The KPIs of a call and its legs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallView {
    /// Legs: the Call-IDs with SIP among the call's messages (the call and the legs
    /// linked to it).
    pub legs: usize,
    /// The call asked for (empty figures when it has no SIP).
    #[serde(flatten)]
    pub call: CallKpis,
    /// The other legs' KPIs, by Call-ID.
    pub other_legs: Vec<CallKpis>,
}

#[derive(Default)]
struct PerCall(BTreeMap<Box<str>, CallKpis>);

impl PerCall {
    fn of(&mut self, id: &str) -> &mut CallKpis {
        self.0.entry(id.into()).or_insert_with(|| CallKpis {
            call_id: id.to_string(),
            ..CallKpis::default()
        })
    }
}

impl Sink<Box<str>> for PerCall {
    fn count(&mut self, id: &Box<str>, what: Count) {
        let k = self.of(id);
        match what {
            Count::Invite => k.invite = true,
            Count::Reinvite => k.reinvites += 1,
            Count::CallResult(code) => {
                k.final_status = Some(code);
                k.status_class = Some(format!("{}xx", code / 100));
            }
            Count::Retransmission { .. } => k.retransmissions += 1,
            Count::Register => {}
            Count::RegisterResult(code) => k.register_status = Some(code),
            Count::HangUp(p) => {
                k.hangup = Some(match p {
                    Party::Caller => "caller",
                    Party::Callee => "callee",
                });
            }
            Count::Q850(c) => k.q850_cause = Some(c),
            Count::TimedOut(t) => {
                k.timed_out = Some(match t {
                    Timeout::Setup => "setup",
                    Timeout::Answered => "answered",
                });
            }
            Count::Evicted => {}
            Count::ClockDisorder => k.clock_disorder += 1,
        }
    }

    fn delay(&mut self, id: &Box<str>, what: Delay, micros: u64) {
        let k = self.of(id);
        let ms = micros as f64 / 1000.0;
        match what {
            Delay::Srd => k.srd_ms = Some(ms),
            Delay::Pdd => k.pdd_ms = Some(ms),
            Delay::Answer => k.answer_ms = Some(ms),
            Delay::Duration => k.duration_s = Some(micros as f64 / 1e6),
            Delay::Rrd => k.rrd_ms = Some(ms),
        }
    }
}

impl CallView {
    /// The KPIs of `call_id` and of the other Call-IDs among `messages` (in any order:
    /// they are read by capture time), as they stand at `now_us` (receive clock), with
    /// the timeouts of `kpi` (the running `[kpi]`, so a call reads as the metrics counted
    /// it).
    pub fn of<'a>(
        call_id: &str,
        messages: impl IntoIterator<Item = Input<'a>>,
        now_us: i64,
        kpi: &KpiConfig,
    ) -> Self {
        let mut msgs: Vec<Input<'a>> = messages.into_iter().collect();
        let capture = |m: &Input<'_>| {
            m.message.ts_sec.map_or(m.recv_us, |s| {
                i64::from(s) * 1_000_000 + i64::from(m.message.ts_usec.unwrap_or(0))
            })
        };
        msgs.sort_by_key(|m| (capture(m), m.recv_us));
        let mut tracker: Tracker<Box<str>> = Tracker::new(kpi.limits());
        let mut sink = PerCall::default();
        for m in &msgs {
            let recv = u64::try_from(m.recv_us).unwrap_or(0);
            super::read_sip(&super::Seen::of(m.message), recv, |observed| {
                let Some(id) = observed.sip.call_id else {
                    return;
                };
                let id: Box<str> = id.into();
                sink.of(&id);
                tracker.observe(&observed, || id, &mut sink);
            });
        }
        tracker.expire(u64::try_from(now_us).unwrap_or(0), &mut sink);
        let mut all = sink.0;
        let legs = all.len();
        let call = all.remove(call_id).unwrap_or_else(|| CallKpis {
            call_id: call_id.to_owned(),
            ..CallKpis::default()
        });
        Self {
            legs,
            call,
            other_legs: all.into_values().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_796_000_000_000_000;
    const A: &str = "10.0.0.1:5060";
    const P: &str = "10.0.0.9:5060";
    const B: &str = "10.0.0.2:5060";

    /// A SIP message of `call` at `ms` after T0: `first` is the start line, `cseq` the
    /// CSeq, `from_tag` the From tag, `to_tag` the To tag if any, `extra` more headers.
    #[allow(clippy::too_many_arguments)]
    fn sip(
        ms: i64,
        src: &str,
        dst: &str,
        call: &str,
        first: &str,
        branch: &str,
        cseq: &str,
        tags: (&str, Option<&str>),
        extra: &str,
    ) -> HepMessage {
        let to = tags.1.map_or(String::new(), |t| format!(";tag={t}"));
        let text = format!(
            "{first}\r\nVia: SIP/2.0/UDP {src};branch={branch}\r\nFrom: <sip:alice@h>;tag={}\r\n\
             To: <sip:bob@h>{to}\r\nCall-ID: {call}\r\nCSeq: {cseq}\r\n{extra}Content-Length: 0\r\n\r\n",
            tags.0
        );
        let at = T0 + ms * 1000;
        HepMessage::builder()
            .src(src.parse().unwrap())
            .dst(dst.parse().unwrap())
            .ip_proto(17)
            .timestamp((at / 1_000_000) as u32, (at % 1_000_000) as u32)
            .payload(text)
            .build()
    }

    #[test]
    fn a_two_leg_call_through_a_proxy_gets_each_legs_kpis() {
        let inv = "INVITE sip:bob@h SIP/2.0";
        let msgs = [
            // A-leg "c1": A -> P; B-leg "c2": P -> B (a B2BUA: its own Call-ID).
            sip(0, A, P, "c1", inv, "z9hG4bKa", "1 INVITE", ("fa", None), ""),
            // A retransmits its INVITE after 500 ms (Timer A): not a new attempt.
            sip(
                500,
                A,
                P,
                "c1",
                inv,
                "z9hG4bKa",
                "1 INVITE",
                ("fa", None),
                "",
            ),
            sip(
                10,
                P,
                B,
                "c2",
                inv,
                "z9hG4bKb",
                "1 INVITE",
                ("fb", None),
                "",
            ),
            sip(
                20,
                P,
                A,
                "c1",
                "SIP/2.0 100 Trying",
                "z9hG4bKa",
                "1 INVITE",
                ("fa", None),
                "",
            ),
            sip(
                900,
                B,
                P,
                "c2",
                "SIP/2.0 180 Ringing",
                "z9hG4bKb",
                "1 INVITE",
                ("fb", Some("tb")),
                "",
            ),
            sip(
                950,
                P,
                A,
                "c1",
                "SIP/2.0 180 Ringing",
                "z9hG4bKa",
                "1 INVITE",
                ("fa", Some("ta")),
                "",
            ),
            sip(
                3000,
                B,
                P,
                "c2",
                "SIP/2.0 200 OK",
                "z9hG4bKb",
                "1 INVITE",
                ("fb", Some("tb")),
                "",
            ),
            sip(
                3050,
                P,
                A,
                "c1",
                "SIP/2.0 200 OK",
                "z9hG4bKa",
                "1 INVITE",
                ("fa", Some("ta")),
                "",
            ),
            // The callee hangs up 60 s later, with a Q.850 cause.
            sip(
                63_000,
                B,
                P,
                "c2",
                "BYE sip:alice@h SIP/2.0",
                "z9hG4bKc",
                "1 BYE",
                ("tb", Some("fb")),
                "Reason: Q.850;cause=16;text=\"Normal call clearing\"\r\n",
            ),
            sip(
                63_050,
                P,
                A,
                "c1",
                "BYE sip:alice@h SIP/2.0",
                "z9hG4bKd",
                "1 BYE",
                ("ta", Some("fa")),
                "",
            ),
        ];
        let inputs = msgs.iter().map(|m| Input {
            message: m,
            recv_us: T0 + 1,
        });
        // Read 10 s after the BYE: before any timeout.
        let kpi = KpiConfig::default();
        let v = CallView::of("c1", inputs, T0 + 73_000_000, &kpi);
        assert_eq!(v.legs, 2);
        let a = &v.call;
        assert_eq!(a.call_id, "c1");
        assert!(a.invite);
        assert_eq!(a.srd_ms, Some(950.0)); // INVITE at 0 to the 180 at 950 (100 skipped)
        assert_eq!(a.pdd_ms, Some(950.0));
        assert_eq!(a.answer_ms, Some(3050.0));
        assert_eq!(a.duration_s, Some(60.0)); // 3050 to 63050
        assert_eq!(
            (a.final_status, a.status_class.as_deref()),
            (Some(200), Some("2xx"))
        );
        assert_eq!(a.hangup, Some("callee")); // From tag ta is not the caller's fa
        assert_eq!(a.retransmissions, 1);
        assert_eq!(a.timed_out, None);
        let b = &v.other_legs[0];
        assert_eq!(b.call_id, "c2");
        assert_eq!((b.srd_ms, b.answer_ms), (Some(890.0), Some(2990.0)));
        assert_eq!(b.q850_cause, Some(16));
        assert_eq!(b.duration_s, Some(60.0));
        assert_eq!(b.hangup, Some("callee"));

        // The same call read 5 h later without its BYEs: it timed out, answered.
        let inputs = msgs[..8].iter().map(|m| Input {
            message: m,
            recv_us: T0 + 1,
        });
        let v = CallView::of("c1", inputs.clone(), T0 + 5 * 3600 * 1_000_000, &kpi);
        assert_eq!(v.call.timed_out, Some("answered"));
        assert_eq!(v.call.duration_s, Some(0.0)); // 2xx to its last message, the 2xx

        // Read 2 h after, with the default 4 h call timeout: under way; with `[kpi]
        // call_timeout_secs = 3600`, as the running tracker would have it: timed out.
        let two_hours = T0 + 2 * 3600 * 1_000_000;
        let v = CallView::of("c1", inputs.clone(), two_hours, &kpi);
        assert_eq!(v.call.timed_out, None);
        let short = KpiConfig {
            call_timeout_secs: 3600,
            ..KpiConfig::default()
        };
        let v = CallView::of("c1", inputs, two_hours, &short);
        assert_eq!(v.call.timed_out, Some("answered"));
    }
}
