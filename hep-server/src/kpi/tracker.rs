//! The call table: one entry per Call-ID, fed every SIP message, telling a [`Sink`] what
//! happened to each call (RFC 6076 definitions). No IO and no clock: the capture time
//! and the receive time come with each message, and [`Tracker::expire`] is called with
//! the receive clock's now.
//!
//! # What it decides
//! - **A retransmission** is a message whose top Via branch, CSeq, status (for a
//!   response) and source and destination addresses were seen before in the same call
//!   (RFC 3261 17.2.3). It is counted as such and read no further: it is never a new
//!   attempt, answer or failure.
//! - **An attempt** is the first INVITE of a Call-ID without a To tag (re-INVITEs have
//!   one). A proxy's copy of it (another branch, the same CSeq) and the retry after a 401
//!   or 407 challenge (the next CSeq) belong to the same attempt: one call, one count.
//! - **Setup delays** run from the INVITE that got the response: SRD to the first
//!   response that is not 100 (RFC 6076 4.2; a challenge does not end it: the delay of
//!   an authenticated call runs from the INVITE that carries the credentials, "the
//!   INVITE containing the necessary information"), PDD to the first 180 or 183, the
//!   answer time to the first 2xx.
//! - **A re-INVITE** is counted once per sender and CSeq (a proxy's copy is the same
//!   re-INVITE); **a Q.850 cause** once per call (the first; the response or CANCEL that
//!   carries it is seen again on a proxy's other side).
//! - **The call's result** is its first final response other than a challenge; a call
//!   whose last answer was a 401/407 that nobody retried gets that status when it
//!   expires.
//! - **The duration** runs from the 2xx to the BYE (or to the last message, when an
//!   answered call ends by timeout); who hung up is told by the BYE's From tag (the
//!   caller's, or not); a `Reason: Q.850;cause=N` on BYE, CANCEL or a final response is
//!   counted.
//! - **Registrations**: REGISTER with the same rules (challenges, retransmissions); RRD
//!   from the REGISTER that got the final response (RFC 6076 4.1). A Call-ID that
//!   refreshes its registration counts each refresh as an attempt.
//!
//! Delays are taken from capture times (the agents' clocks); a delay that comes out
//! negative (two agents whose clocks disagree) is counted, not measured. Entries expire
//! by the receive time (the collector's clock), so no agent's clock can keep one alive
//! or remove it early.
//!
//! # Memory
//! An entry is its Call-ID, a few numbers and up to [`SEEN_PER_CALL`] message hashes:
//! about 400 bytes with the table's own overhead (measured in the bench). The table
//! holds at most `max_calls`; when full, the oldest entry is evicted and counted.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

// Seeded per process (an agent cannot aim Call-IDs at one bucket it cannot predict), and
// several times faster than SipHash on the short keys a call table hashes: the Call-ID
// and a message's fingerprint, on every SIP message.
use foldhash::fast::RandomState;
use std::net::SocketAddr;

use hep_proto::sip::{SipSummary, StartLine};

/// Message hashes kept per call for telling retransmissions; older ones are forgotten
/// (a retransmission comes within 32 s of its original, RFC 3261 Timer B/F).
pub(crate) const SEEN_PER_CALL: usize = 24;

/// Re-INVITEs a call remembers to tell a proxy's copy from a new one.
const MAX_REINVITES_KEPT: usize = 4;

/// The tracker's bounds and timeouts, in microseconds of the receive clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Calls tracked at once.
    pub(crate) max_calls: usize,
    /// A call with no final response yet is given up after this long without a message.
    pub(crate) setup_timeout_us: u64,
    /// An answered call without a BYE is ended after this long without a message.
    pub(crate) call_timeout_us: u64,
    /// A finished call (BYE, failure, registration) is kept this long for its
    /// retransmissions.
    pub(crate) linger_us: u64,
}

/// One SIP message, as the tracker reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed<'a> {
    /// Capture time (the agent's clock), µs since the epoch.
    pub(crate) capture_us: u64,
    /// Receive time (the collector's clock), µs since the epoch.
    pub(crate) recv_us: u64,
    pub(crate) src: SocketAddr,
    pub(crate) dst: SocketAddr,
    pub(crate) sip: &'a SipSummary<'a>,
    /// The Q.850 cause of a `Reason` header, if any.
    pub(crate) q850: Option<u16>,
}

/// Who ended an answered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Party {
    Caller,
    Callee,
}

/// How a call left the table without ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Timeout {
    /// No final response came.
    Setup,
    /// Answered, and no BYE came.
    Answered,
}

/// A counted event of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Count {
    /// An initial INVITE: one per call.
    Invite,
    /// A re-INVITE (an INVITE within the dialog).
    Reinvite,
    /// The call's final status, once per call.
    CallResult(u16),
    /// A retransmitted request (`response: false`) or response, by CSeq method.
    Retransmission {
        method: &'static str,
        response: bool,
    },
    /// A registration attempt.
    Register,
    /// A registration's final status.
    RegisterResult(u16),
    /// Who sent the BYE of an answered call.
    HangUp(Party),
    /// A `Reason: Q.850;cause=N`.
    Q850(u16),
    /// A call given up by timeout.
    TimedOut(Timeout),
    /// A call pushed out of a full table.
    Evicted,
    /// A delay that came out negative (clocks of two agents disagree): not measured.
    ClockDisorder,
}

/// A measured delay of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Delay {
    /// Session Request Delay (RFC 6076 4.2).
    Srd,
    /// Post-dial delay: INVITE to the first 180 or 183.
    Pdd,
    /// INVITE to the first 2xx.
    Answer,
    /// 2xx to BYE (or to the call's timeout).
    Duration,
    /// Registration Request Delay (RFC 6076 4.1).
    Rrd,
}

/// Where the tracker's findings go (the metrics, or a test's list). `L` is what a call
/// is labelled with, decided when its first message is seen.
pub(crate) trait Sink<L> {
    fn count(&mut self, labels: &L, what: Count);
    fn delay(&mut self, labels: &L, what: Delay, micros: u64);
}

/// The call table.
pub(crate) struct Tracker<L> {
    calls: HashMap<Box<str>, Call<L>, RandomState>,
    /// Call-IDs by age of their entry, for eviction; an id whose entry is gone (or was
    /// made again, with a later `born`) is skipped.
    ages: VecDeque<(u64, Box<str>)>,
    born: u64,
    limits: Limits,
    hasher: RandomState,
}

struct Call<L> {
    labels: L,
    born: u64,
    /// Receive time of the last message.
    last_us: u64,
    /// Hash of the caller's From tag (the initial INVITE's).
    caller_tag: u64,
    seen: VecDeque<u64>,
    invite: Option<InviteState>,
    register: Option<RegisterState>,
    /// Receive time when the call was finished (BYE, result of a failed call or of a
    /// registration): it lingers for retransmissions, then goes.
    finished_us: Option<u64>,
    /// Whether its Q.850 cause was counted (once per call: a proxy's copy of the message
    /// carries it again).
    q850_counted: bool,
}

#[derive(Default)]
struct InviteState {
    /// The first capture time of each initial INVITE transaction (its CSeq number).
    attempts: Vec<(u32, u64)>,
    srd: bool,
    pdd: bool,
    /// Capture time of the first 2xx.
    answered_us: Option<u64>,
    /// Capture time of the last message (for a duration that ends by timeout).
    last_capture_us: u64,
    result: Option<u16>,
    /// A 401/407 with its would-be SRD, pending a retry.
    challenged: Option<(u16, Option<u64>)>,
    ended: bool,
    /// The re-INVITEs counted (the sender's From tag hash and CSeq number; the last
    /// few): a proxy's copy of one is not another.
    reinvites: Vec<(u64, u32)>,
}

#[derive(Default)]
struct RegisterState {
    /// The current attempt: CSeq and first capture time.
    attempt: Option<(u32, u64)>,
    /// A 401/407 answered the last attempt: the next REGISTER is its retry.
    challenged: bool,
}

impl<L> Tracker<L> {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            calls: HashMap::default(),
            ages: VecDeque::new(),
            born: 0,
            limits,
            hasher: RandomState::default(),
        }
    }

    /// Calls in the table.
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// The labels of a call in the table (for its RTCP, which names it by correlation
    /// id).
    pub(crate) fn labels_of(&self, call_id: &str) -> Option<&L> {
        self.calls.get(call_id).map(|c| &c.labels)
    }

    /// Reads one SIP message; `labels` is asked once, when the message starts a call.
    pub(crate) fn observe(
        &mut self,
        m: &Observed<'_>,
        labels: impl FnOnce() -> L,
        sink: &mut impl Sink<L>,
    ) {
        let Some(call_id) = m.sip.call_id else {
            return;
        };
        let Some(cseq) = m.sip.cseq else {
            return;
        };
        let fingerprint = self.fingerprint(m);
        // Most messages belong to a call under way: found by the borrowed Call-ID,
        // without making a key.
        if !self.calls.contains_key(call_id) {
            if self.calls.len() >= self.limits.max_calls {
                self.evict_oldest(sink);
            }
            let born = self.born;
            self.born += 1;
            let key: Box<str> = call_id.into();
            self.ages.push_back((born, key.clone()));
            self.calls.insert(
                key,
                Call {
                    labels: labels(),
                    born,
                    last_us: m.recv_us,
                    caller_tag: 0,
                    seen: VecDeque::with_capacity(4),
                    invite: None,
                    register: None,
                    finished_us: None,
                    q850_counted: false,
                },
            );
        }
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.last_us = call.last_us.max(m.recv_us);
        if call.seen.contains(&fingerprint) {
            sink.count(
                &call.labels,
                Count::Retransmission {
                    method: method_label(cseq.method),
                    response: matches!(m.sip.start, StartLine::Response { .. }),
                },
            );
            return;
        }
        if call.seen.len() == SEEN_PER_CALL {
            call.seen.pop_front();
        }
        call.seen.push_back(fingerprint);
        if let Some(cause) = m.q850.filter(|_| !call.q850_counted) {
            let counts = match m.sip.start {
                StartLine::Request { method, .. } => method == "BYE" || method == "CANCEL",
                StartLine::Response { code, .. } => code >= 300,
            };
            if counts {
                call.q850_counted = true;
                sink.count(&call.labels, Count::Q850(cause));
            }
        }
        let to_tag = m.sip.to.and_then(|t| t.tag).is_some();
        match m.sip.start {
            StartLine::Request { method, .. } => {
                let from_tag = m.sip.from.and_then(|f| f.tag).unwrap_or("");
                let from_tag = self.hasher.hash_one(from_tag);
                call.request(method, to_tag, from_tag, cseq.seq, m, sink);
            }
            StartLine::Response { code, .. } => {
                call.response(code, cseq.method, cseq.seq, m, sink);
            }
        }
    }

    /// Gives up the calls whose time is over at `now_us` (receive clock), reporting what
    /// each one's end means; removes finished calls whose linger is over.
    pub(crate) fn expire(&mut self, now_us: u64, sink: &mut impl Sink<L>) {
        let limits = self.limits;
        self.calls
            .retain(|_, call| !call.expired(now_us, &limits, sink));
        if self.ages.len() > 2 * self.calls.len() + 1024 {
            let calls = &self.calls;
            self.ages
                .retain(|(born, id)| calls.get(id).is_some_and(|c| c.born == *born));
        }
    }

    fn evict_oldest(&mut self, sink: &mut impl Sink<L>) {
        while let Some((born, id)) = self.ages.pop_front() {
            if self.calls.get(&id).is_some_and(|c| c.born == born) {
                if let Some(call) = self.calls.remove(&id) {
                    sink.count(&call.labels, Count::Evicted);
                }
                return;
            }
        }
    }

    /// What tells a message from its retransmission: the top Via branch, the CSeq, the
    /// status and the addresses.
    fn fingerprint(&self, m: &Observed<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(m.sip.via_branch.unwrap_or("").as_bytes());
        h.write_u8(0);
        if let Some(c) = m.sip.cseq {
            h.write_u32(c.seq);
            h.write(c.method.as_bytes());
        }
        h.write_u8(0);
        match m.sip.start {
            StartLine::Request { method, .. } => h.write(method.as_bytes()),
            StartLine::Response { code, .. } => h.write_u16(code),
        }
        std::hash::Hash::hash(&m.src, &mut h);
        std::hash::Hash::hash(&m.dst, &mut h);
        h.finish()
    }
}

impl<L> Call<L> {
    fn request(
        &mut self,
        method: &str,
        to_tag: bool,
        from_tag: u64,
        seq: u32,
        m: &Observed<'_>,
        sink: &mut impl Sink<L>,
    ) {
        match method {
            "INVITE" if !to_tag => {
                let inv = match &mut self.invite {
                    Some(inv) => inv,
                    None => {
                        sink.count(&self.labels, Count::Invite);
                        self.caller_tag = from_tag;
                        self.invite.insert(InviteState::default())
                    }
                };
                inv.last_capture_us = inv.last_capture_us.max(m.capture_us);
                if !inv.attempts.iter().any(|(s, _)| *s == seq) && inv.attempts.len() < 8 {
                    inv.attempts.push((seq, m.capture_us));
                    // A new transaction after a challenge is its retry.
                    inv.challenged = None;
                }
            }
            "INVITE" => {
                let Some(inv) = &mut self.invite else {
                    // A re-INVITE of a dialog whose start was not seen.
                    sink.count(&self.labels, Count::Reinvite);
                    return;
                };
                if inv.reinvites.contains(&(from_tag, seq)) {
                    return;
                }
                if inv.reinvites.len() == MAX_REINVITES_KEPT {
                    inv.reinvites.remove(0);
                }
                inv.reinvites.push((from_tag, seq));
                sink.count(&self.labels, Count::Reinvite);
            }
            "BYE" => {
                let Some(inv) = &mut self.invite else { return };
                inv.last_capture_us = inv.last_capture_us.max(m.capture_us);
                if inv.ended {
                    return;
                }
                if let Some(answered) = inv.answered_us {
                    inv.ended = true;
                    self.finished_us = Some(m.recv_us);
                    delay(sink, &self.labels, Delay::Duration, answered, m.capture_us);
                    let by = if from_tag == self.caller_tag {
                        Party::Caller
                    } else {
                        Party::Callee
                    };
                    sink.count(&self.labels, Count::HangUp(by));
                }
            }
            "REGISTER" => {
                let reg = self.register.get_or_insert_with(RegisterState::default);
                if reg.attempt.is_some_and(|(s, _)| s == seq) {
                    return;
                }
                if !reg.challenged {
                    sink.count(&self.labels, Count::Register);
                }
                reg.challenged = false;
                reg.attempt = Some((seq, m.capture_us));
                self.finished_us = None;
            }
            _ => {
                if let Some(inv) = &mut self.invite {
                    inv.last_capture_us = inv.last_capture_us.max(m.capture_us);
                }
            }
        }
    }

    fn response(
        &mut self,
        code: u16,
        method: &str,
        seq: u32,
        m: &Observed<'_>,
        sink: &mut impl Sink<L>,
    ) {
        match method {
            "INVITE" => {
                let Some(inv) = &mut self.invite else { return };
                inv.last_capture_us = inv.last_capture_us.max(m.capture_us);
                // Only the initial INVITE's transactions: a re-INVITE's answers are not
                // the call's.
                let Some(&(_, sent)) = inv.attempts.iter().find(|(s, _)| *s == seq) else {
                    return;
                };
                if code == 100 {
                    return;
                }
                if code == 401 || code == 407 {
                    if inv.result.is_none() && inv.answered_us.is_none() {
                        let srd = (!inv.srd).then_some(m.capture_us);
                        inv.challenged = Some((code, srd));
                    }
                    return;
                }
                if !inv.srd {
                    inv.srd = true;
                    delay(sink, &self.labels, Delay::Srd, sent, m.capture_us);
                }
                if (code == 180 || code == 183) && !inv.pdd {
                    inv.pdd = true;
                    delay(sink, &self.labels, Delay::Pdd, sent, m.capture_us);
                }
                if code < 200 || inv.result.is_some() {
                    return;
                }
                inv.result = Some(code);
                sink.count(&self.labels, Count::CallResult(code));
                if code < 300 {
                    inv.answered_us = Some(m.capture_us);
                    delay(sink, &self.labels, Delay::Answer, sent, m.capture_us);
                } else {
                    self.finished_us = Some(m.recv_us);
                }
            }
            "REGISTER" => {
                let Some(reg) = &mut self.register else {
                    return;
                };
                let Some((attempt, sent)) = reg.attempt else {
                    return;
                };
                if attempt != seq || code < 200 {
                    return;
                }
                if code == 401 || code == 407 {
                    reg.challenged = true;
                    return;
                }
                reg.attempt = None;
                sink.count(&self.labels, Count::RegisterResult(code));
                delay(sink, &self.labels, Delay::Rrd, sent, m.capture_us);
                if self.invite.is_none() {
                    self.finished_us = Some(m.recv_us);
                }
            }
            _ => {}
        }
    }

    /// Whether the call leaves the table at `now_us`; reports what its leaving means.
    fn expired(&mut self, now_us: u64, limits: &Limits, sink: &mut impl Sink<L>) -> bool {
        let idle = now_us.saturating_sub(self.last_us);
        if let Some(finished) = self.finished_us {
            return now_us.saturating_sub(finished) >= limits.linger_us && idle >= limits.linger_us;
        }
        let Some(inv) = &mut self.invite else {
            // OPTIONS, a registration under way, MESSAGE ...: nothing to report.
            return idle >= limits.linger_us.max(limits.setup_timeout_us);
        };
        match (inv.answered_us, inv.result) {
            (Some(answered), _) => {
                if idle < limits.call_timeout_us {
                    return false;
                }
                delay(
                    sink,
                    &self.labels,
                    Delay::Duration,
                    answered,
                    inv.last_capture_us,
                );
                sink.count(&self.labels, Count::TimedOut(Timeout::Answered));
                true
            }
            (None, Some(_)) => idle >= limits.linger_us,
            (None, None) => {
                if idle < limits.setup_timeout_us {
                    return false;
                }
                if let Some((code, srd_at)) = inv.challenged {
                    // Challenged, never retried: the challenge was the answer.
                    if let (Some(at), Some(&(_, sent))) = (srd_at, inv.attempts.last()) {
                        delay(sink, &self.labels, Delay::Srd, sent, at);
                    }
                    sink.count(&self.labels, Count::CallResult(code));
                } else {
                    sink.count(&self.labels, Count::TimedOut(Timeout::Setup));
                }
                true
            }
        }
    }
}

/// Reports `to - from` as `what`, or a clock disorder when it is negative.
fn delay<L>(sink: &mut impl Sink<L>, labels: &L, what: Delay, from: u64, to: u64) {
    match to.checked_sub(from) {
        Some(d) => sink.delay(labels, what, d),
        None => sink.count(labels, Count::ClockDisorder),
    }
}

/// The methods a metric label may name; any other is `other`, so that traffic cannot
/// grow the label's values.
pub(crate) fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 14] = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "REGISTER",
        "OPTIONS",
        "INFO",
        "UPDATE",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "PUBLISH",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(method))
        .copied()
        .unwrap_or("other")
}

/// The Q.850 cause (0 to 127) of a `Reason` header value such as
/// `SIP;cause=200, Q.850;cause=16;text="Normal call clearing"`, if it has one.
pub(crate) fn q850_cause(reason: &str) -> Option<u16> {
    reason.split(',').find_map(|value| {
        let (protocol, params) = value.split_once(';')?;
        if !protocol.trim().eq_ignore_ascii_case("Q.850") {
            return None;
        }
        params.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            if !k.trim().eq_ignore_ascii_case("cause") {
                return None;
            }
            v.trim().parse().ok().filter(|c| *c <= 127)
        })
    })
}
