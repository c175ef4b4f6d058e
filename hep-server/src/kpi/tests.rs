//! The tracker against calls worked out by hand: each test is a call flow as a capture
//! point sees it, and the counts and delays RFC 6076 gives for it.

use std::net::SocketAddr;

use hep_proto::sip::SipSummary;

use super::tracker::{Count, Delay, Limits, Observed, Party, Timeout, Tracker, q850_cause};

const SEC: u64 = 1_000_000;
const MS: u64 = 1_000;

/// What a test's sink was told, in order.
#[derive(Default)]
struct Recorder {
    counts: Vec<Count>,
    delays: Vec<(Delay, u64)>,
}

impl super::tracker::Sink<&'static str> for Recorder {
    fn count(&mut self, _: &&'static str, what: Count) {
        self.counts.push(what);
    }
    fn delay(&mut self, _: &&'static str, what: Delay, micros: u64) {
        self.delays.push((what, micros));
    }
}

impl Recorder {
    fn count(&self, what: Count) -> usize {
        self.counts.iter().filter(|c| **c == what).count()
    }
    fn delays(&self, what: Delay) -> Vec<u64> {
        self.delays
            .iter()
            .filter(|(d, _)| *d == what)
            .map(|(_, us)| *us)
            .collect()
    }
}

const A: &str = "10.0.0.1:5060"; // the caller
const P: &str = "10.0.0.9:5060"; // a proxy in the middle
const B: &str = "10.0.0.2:5060"; // the callee

/// A call's messages fed one by one, with the capture time in ms from the call's start
/// (received at the same time, unless a test says otherwise).
struct Flow {
    tracker: Tracker<&'static str>,
    sink: Recorder,
    call_id: &'static str,
}

const T0: u64 = 1_796_000_000 * SEC;

fn limits() -> Limits {
    Limits {
        max_calls: 1000,
        setup_timeout_us: 300 * SEC,
        call_timeout_us: 4 * 3600 * SEC,
        linger_us: 32 * SEC,
    }
}

impl Flow {
    fn new(call_id: &'static str) -> Self {
        Self {
            tracker: Tracker::new(limits()),
            sink: Recorder::default(),
            call_id,
        }
    }

    /// A request: `method`, from `src` to `dst`, with a Via branch, CSeq number, the
    /// From tag (`a` caller, `b` callee) and the To tag if the dialog has one.
    #[allow(clippy::too_many_arguments)]
    fn req(
        &mut self,
        ms: u64,
        src: &str,
        dst: &str,
        method: &str,
        branch: &str,
        cseq: u32,
        from_tag: &str,
        to_tag: Option<&str>,
    ) -> &mut Self {
        let to = to_tag.map_or(String::new(), |t| format!(";tag={t}"));
        let text = format!(
            "{method} sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch={branch}\r\n\
             From: <sip:alice@x>;tag={from_tag}\r\nTo: <sip:bob@x>{to}\r\n\
             Call-ID: {}\r\nCSeq: {cseq} {method}\r\n\r\n",
            self.call_id
        );
        self.feed(ms, src, dst, &text, None)
    }

    /// A response to CSeq `cseq METHOD`, on branch `branch`.
    #[allow(clippy::too_many_arguments)]
    fn resp(
        &mut self,
        ms: u64,
        src: &str,
        dst: &str,
        code: u16,
        branch: &str,
        cseq: u32,
        method: &str,
    ) -> &mut Self {
        let text = format!(
            "SIP/2.0 {code} Something\r\nVia: SIP/2.0/UDP {dst};branch={branch}\r\n\
             From: <sip:alice@x>;tag=a\r\nTo: <sip:bob@x>;tag=b\r\n\
             Call-ID: {}\r\nCSeq: {cseq} {method}\r\n\r\n",
            self.call_id
        );
        self.feed(ms, src, dst, &text, None)
    }

    fn feed(&mut self, ms: u64, src: &str, dst: &str, text: &str, q850: Option<u16>) -> &mut Self {
        self.feed_at(ms, ms, src, dst, text, q850)
    }

    fn feed_at(
        &mut self,
        capture_ms: u64,
        recv_ms: u64,
        src: &str,
        dst: &str,
        text: &str,
        q850: Option<u16>,
    ) -> &mut Self {
        let sip = SipSummary::parse(text.as_bytes()).expect("the test's SIP parses");
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        let m = Observed {
            capture_us: T0 + capture_ms * MS,
            recv_us: T0 + recv_ms * MS,
            src,
            dst,
            sip: &sip,
            q850,
        };
        self.tracker.observe(&m, || "labels", &mut self.sink);
        self.tracker.expire(T0 + recv_ms * MS, &mut self.sink);
        self
    }

    fn expire_at(&mut self, ms: u64) -> &mut Self {
        self.tracker.expire(T0 + ms * MS, &mut self.sink);
        self
    }
}

/// Caller -> proxy -> callee, both sides captured: 100, 180, 200, ACK, BYE by the caller.
fn answered_through_a_proxy(f: &mut Flow) {
    f.req(0, A, P, "INVITE", "a1", 1, "a", None)
        .req(1, P, B, "INVITE", "p1", 1, "a", None)
        .resp(1, P, A, 100, "a1", 1, "INVITE")
        .resp(2, B, P, 100, "p1", 1, "INVITE")
        .resp(50, B, P, 180, "p1", 1, "INVITE")
        .resp(51, P, A, 180, "a1", 1, "INVITE")
        .resp(1000, B, P, 200, "p1", 1, "INVITE")
        .resp(1001, P, A, 200, "a1", 1, "INVITE")
        .req(1010, A, P, "ACK", "a2", 1, "a", Some("b"))
        .req(1011, P, B, "ACK", "p2", 1, "a", Some("b"))
        .req(61_000, A, P, "BYE", "a3", 2, "a", Some("b"))
        .req(61_001, P, B, "BYE", "p3", 2, "a", Some("b"))
        .resp(61_010, B, P, 200, "p3", 2, "BYE")
        .resp(61_011, P, A, 200, "a3", 2, "BYE");
}

#[test]
fn an_answered_call_seen_on_both_sides_of_a_proxy_is_one_call_with_rfc_6076_delays() {
    let mut f = Flow::new("call-1");
    answered_through_a_proxy(&mut f);
    let s = &f.sink;
    assert_eq!(
        s.count(Count::Invite),
        1,
        "the proxy's copy is the same attempt"
    );
    assert_eq!(s.count(Count::CallResult(200)), 1, "one result per call");
    // SRD: INVITE (0 ms) to the first response that is not 100: the 180 at 50 ms.
    assert_eq!(s.delays(Delay::Srd), [50 * MS]);
    assert_eq!(s.delays(Delay::Pdd), [50 * MS]);
    assert_eq!(s.delays(Delay::Answer), [1000 * MS]);
    // Duration: the first 200 (1000 ms) to the first BYE (61,000 ms).
    assert_eq!(s.delays(Delay::Duration), [60_000 * MS]);
    assert_eq!(s.count(Count::HangUp(Party::Caller)), 1);
    assert!(
        !s.counts
            .iter()
            .any(|c| matches!(c, Count::Retransmission { .. })),
        "{:?}",
        s.counts
    );
}

#[test]
fn retransmissions_are_counted_apart_and_never_as_attempts_or_answers() {
    let mut f = Flow::new("call-2");
    f.req(0, A, B, "INVITE", "a1", 1, "a", None)
        .req(500, A, B, "INVITE", "a1", 1, "a", None) // Timer A fired
        .req(1500, A, B, "INVITE", "a1", 1, "a", None)
        .resp(1600, B, A, 180, "a1", 1, "INVITE")
        .resp(2000, B, A, 200, "a1", 1, "INVITE")
        .resp(2500, B, A, 200, "a1", 1, "INVITE"); // no ACK yet: the 200 again
    let s = &f.sink;
    assert_eq!(s.count(Count::Invite), 1);
    let rtx = |response| Count::Retransmission {
        method: "INVITE",
        response,
    };
    assert_eq!(s.count(rtx(false)), 2);
    assert_eq!(s.count(rtx(true)), 1);
    assert_eq!(s.count(Count::CallResult(200)), 1);
    // From the INVITE's first sending, not its retransmission.
    assert_eq!(s.delays(Delay::Srd), [1600 * MS]);
}

#[test]
fn a_busy_callee_ends_the_call_with_its_status_and_the_srd_runs_to_it() {
    let mut f = Flow::new("call-3");
    f.req(0, A, B, "INVITE", "a1", 1, "a", None)
        .resp(5, B, A, 100, "a1", 1, "INVITE")
        .resp(80, B, A, 486, "a1", 1, "INVITE")
        .req(81, A, B, "ACK", "a1", 1, "a", Some("b"));
    let s = &f.sink;
    assert_eq!(s.count(Count::CallResult(486)), 1);
    assert_eq!(s.delays(Delay::Srd), [80 * MS]);
    assert!(s.delays(Delay::Answer).is_empty() && s.delays(Delay::Pdd).is_empty());
    assert_eq!(f.tracker.len(), 1, "kept for retransmissions");
    f.expire_at(80 + 33_000);
    assert_eq!(f.tracker.len(), 0, "gone after the linger");
    assert_eq!(f.sink.counts.len(), 2, "{:?}", f.sink.counts);
}

#[test]
fn a_challenged_call_is_one_attempt_measured_from_the_invite_with_credentials() {
    let mut f = Flow::new("call-4");
    f.req(0, A, B, "INVITE", "a1", 1, "a", None)
        .resp(10, B, A, 407, "a1", 1, "INVITE")
        .req(11, A, B, "ACK", "a1", 1, "a", Some("b"))
        .req(100, A, B, "INVITE", "a2", 2, "a", None)
        .resp(130, B, A, 180, "a2", 2, "INVITE")
        .resp(400, B, A, 200, "a2", 2, "INVITE");
    let s = &f.sink;
    assert_eq!(s.count(Count::Invite), 1);
    assert_eq!(
        s.count(Count::CallResult(407)),
        0,
        "a challenge is not a result"
    );
    assert_eq!(s.count(Count::CallResult(200)), 1);
    assert_eq!(s.delays(Delay::Srd), [30 * MS]);
    assert_eq!(s.delays(Delay::Answer), [300 * MS]);
}

#[test]
fn a_challenge_nobody_answers_is_the_calls_result_when_it_expires() {
    let mut f = Flow::new("call-5");
    f.req(0, A, B, "INVITE", "a1", 1, "a", None)
        .resp(10, B, A, 407, "a1", 1, "INVITE")
        .expire_at(299_000);
    assert_eq!(f.sink.count(Count::CallResult(407)), 0, "not yet");
    f.expire_at(301_000);
    assert_eq!(f.sink.count(Count::CallResult(407)), 1);
    assert_eq!(f.sink.delays(Delay::Srd), [10 * MS]);
    assert_eq!(f.tracker.len(), 0);
}

#[test]
fn a_reinvite_is_counted_as_such_and_its_answer_is_not_the_calls() {
    let mut f = Flow::new("call-6");
    f.req(0, A, B, "INVITE", "a1", 1, "a", None)
        .resp(100, B, A, 200, "a1", 1, "INVITE")
        .req(30_000, B, A, "INVITE", "b1", 7, "b", Some("a"))
        .resp(30_010, A, B, 491, "b1", 7, "INVITE")
        .req(31_000, A, B, "INVITE", "a5", 2, "a", Some("b"))
        .resp(31_010, B, A, 200, "a5", 2, "INVITE");
    let s = &f.sink;
    assert_eq!(s.count(Count::Invite), 1);
    assert_eq!(s.count(Count::Reinvite), 2);
    assert_eq!(s.count(Count::CallResult(200)), 1);
    assert_eq!(s.count(Count::CallResult(491)), 0);
}

#[test]
fn a_cancelled_call_ends_with_487_and_the_cancels_q850_cause_is_counted() {
    let mut f = Flow::new("call-7");
    f.req(0, A, B, "INVITE", "a1", 1, "a", None)
        .resp(40, B, A, 180, "a1", 1, "INVITE");
    let cancel = "CANCEL sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=a1\r\n\
                  From: <sip:alice@x>;tag=a\r\nTo: <sip:bob@x>\r\nCall-ID: call-7\r\n\
                  CSeq: 1 CANCEL\r\nReason: Q.850;cause=16\r\n\r\n";
    f.feed(5_000, A, B, cancel, q850_cause("Q.850;cause=16"))
        .resp(5_010, B, A, 200, "a1", 1, "CANCEL")
        .resp(5_020, B, A, 487, "a1", 1, "INVITE");
    let s = &f.sink;
    assert_eq!(s.count(Count::CallResult(487)), 1);
    assert_eq!(s.count(Count::Q850(16)), 1);
    assert_eq!(
        s.count(Count::CallResult(200)),
        0,
        "the CANCEL's 200 is not the call's"
    );
}

#[test]
fn the_callee_hanging_up_is_told_by_the_from_tag_of_the_bye() {
    let mut f = Flow::new("call-8");
    f.req(0, A, B, "INVITE", "a1", 1, "a", None)
        .resp(100, B, A, 200, "a1", 1, "INVITE")
        .req(110, A, B, "ACK", "a2", 1, "a", Some("b"));
    let bye = "BYE sip:alice@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=b9\r\n\
               From: <sip:bob@x>;tag=b\r\nTo: <sip:alice@x>;tag=a\r\nCall-ID: call-8\r\n\
               CSeq: 1 BYE\r\nReason: Q.850;cause=16;text=\"Normal call clearing\"\r\n\r\n";
    f.feed(20_100, B, A, bye, Some(16));
    let s = &f.sink;
    assert_eq!(s.count(Count::HangUp(Party::Callee)), 1);
    assert_eq!(s.count(Count::HangUp(Party::Caller)), 0);
    assert_eq!(s.count(Count::Q850(16)), 1);
    assert_eq!(s.delays(Delay::Duration), [20_000 * MS]);
}

#[test]
fn a_registration_with_a_challenge_is_one_attempt_and_each_refresh_another() {
    let mut f = Flow::new("reg-1");
    f.req(0, A, B, "REGISTER", "r1", 1, "a", None)
        .resp(5, B, A, 401, "r1", 1, "REGISTER")
        .req(50, A, B, "REGISTER", "r2", 2, "a", None)
        .resp(70, B, A, 200, "r2", 2, "REGISTER");
    assert_eq!(f.sink.count(Count::Register), 1);
    assert_eq!(f.sink.count(Count::RegisterResult(200)), 1);
    assert_eq!(f.sink.count(Count::RegisterResult(401)), 0);
    // RRD from the REGISTER with the credentials (RFC 6076 4.1).
    assert_eq!(f.sink.delays(Delay::Rrd), [20 * MS]);
    f.req(20_000, A, B, "REGISTER", "r3", 3, "a", None)
        .resp(20_015, B, A, 200, "r3", 3, "REGISTER");
    assert_eq!(f.sink.count(Count::Register), 2);
    assert_eq!(f.sink.delays(Delay::Rrd), [20 * MS, 15 * MS]);
}

#[test]
fn an_answered_call_without_bye_ends_by_timeout_with_its_duration_to_the_last_message() {
    let mut f = Flow::new("call-9");
    f.req(0, A, B, "INVITE", "a1", 1, "a", None)
        .resp(100, B, A, 200, "a1", 1, "INVITE")
        .req(110, A, B, "ACK", "a2", 1, "a", Some("b"))
        .req(600_000, A, B, "UPDATE", "a3", 2, "a", Some("b")); // a session refresh
    f.expire_at(600_000 + 4 * 3_600_000 - 1);
    assert_eq!(f.tracker.len(), 1);
    f.expire_at(600_000 + 4 * 3_600_000);
    assert_eq!(f.tracker.len(), 0);
    assert_eq!(f.sink.count(Count::TimedOut(Timeout::Answered)), 1);
    assert_eq!(f.sink.delays(Delay::Duration), [599_900 * MS]);
}

#[test]
fn a_call_that_never_gets_a_final_response_times_out_as_such() {
    let mut f = Flow::new("call-10");
    f.req(0, A, B, "INVITE", "a1", 1, "a", None)
        .resp(20, B, A, 180, "a1", 1, "INVITE")
        .expire_at(320_021);
    assert_eq!(f.sink.count(Count::TimedOut(Timeout::Setup)), 1);
    assert!(
        f.sink
            .counts
            .iter()
            .all(|c| !matches!(c, Count::CallResult(_)))
    );
}

#[test]
fn expiry_follows_the_receive_clock_whatever_the_capture_times_say() {
    let mut f = Flow::new("call-11");
    // An agent whose clock is a day behind: captured "yesterday", received now.
    let day = 86_400_000;
    let invite = "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=a1\r\n\
                  From: <sip:a@x>;tag=a\r\nTo: <sip:b@x>\r\nCall-ID: call-11\r\nCSeq: 1 INVITE\r\n\r\n";
    f.feed_at(0, day, A, B, invite, None);
    f.expire_at(day + 1_000);
    assert_eq!(
        f.tracker.len(),
        1,
        "one second old by the collector's clock"
    );
    f.expire_at(day + 301_000);
    assert_eq!(f.tracker.len(), 0);
}

#[test]
fn a_full_table_evicts_its_oldest_call_and_counts_it() {
    let mut tracker = Tracker::new(Limits {
        max_calls: 2,
        ..limits()
    });
    let mut sink = Recorder::default();
    for (i, id) in ["c1", "c2", "c3"].iter().enumerate() {
        let text = format!(
            "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z{i}\r\n\
             From: <sip:a@x>;tag=a\r\nTo: <sip:b@x>\r\nCall-ID: {id}\r\nCSeq: 1 INVITE\r\n\r\n"
        );
        let sip = SipSummary::parse(text.as_bytes()).unwrap();
        let m = Observed {
            capture_us: T0,
            recv_us: T0,
            src: A.parse().unwrap(),
            dst: B.parse().unwrap(),
            sip: &sip,
            q850: None,
        };
        tracker.observe(&m, || "labels", &mut sink);
    }
    assert_eq!(tracker.len(), 2);
    assert_eq!(sink.count(Count::Evicted), 1);
    assert_eq!(sink.count(Count::Invite), 3);
}

#[test]
fn a_response_captured_before_its_request_is_a_clock_disorder_not_a_delay() {
    let mut f = Flow::new("call-12");
    f.req(1000, A, B, "INVITE", "a1", 1, "a", None)
        .resp(400, B, A, 180, "a1", 1, "INVITE");
    assert_eq!(f.sink.count(Count::ClockDisorder), 2, "SRD and PDD");
    assert!(f.sink.delays(Delay::Srd).is_empty());
}

#[test]
fn reason_headers_give_their_q850_cause_and_nothing_else() {
    assert_eq!(q850_cause("Q.850;cause=16;text=\"Normal\""), Some(16));
    assert_eq!(
        q850_cause("SIP;cause=200;text=\"x\", Q.850 ; cause = 31"),
        Some(31)
    );
    assert_eq!(q850_cause("SIP;cause=487"), None);
    assert_eq!(
        q850_cause("Q.850;cause=999"),
        None,
        "Q.850 causes end at 127"
    );
    assert_eq!(q850_cause("Q.850"), None);
}

#[test]
fn a_reinvite_seen_on_both_sides_of_a_proxy_is_one_reinvite() {
    // Found through Kamailio (xtask interop, "kamailio golden KPIs"): a stateless proxy's
    // copy of a re-INVITE (its own Via branch, other addresses) was a second re-INVITE.
    let mut f = Flow::new("call-20");
    answered_through_a_proxy(&mut f);
    f.req(2_000, A, P, "INVITE", "a9", 3, "a", Some("b"))
        .req(2_001, P, B, "INVITE", "p9", 3, "a", Some("b"))
        .resp(2_010, B, P, 200, "p9", 3, "INVITE")
        .resp(2_011, P, A, 200, "a9", 3, "INVITE")
        // The callee's own re-INVITE may reuse the number: its CSeq space is its own.
        .req(3_000, B, P, "INVITE", "b9", 3, "b", Some("a"))
        .req(3_001, P, A, "INVITE", "q9", 3, "b", Some("a"));
    assert_eq!(f.sink.count(Count::Reinvite), 2);
    assert_eq!(f.sink.count(Count::Invite), 1);
}

#[test]
fn a_q850_cause_on_both_sides_of_a_proxy_is_counted_once() {
    // Found through Kamailio as above: the 486 with its Reason, seen going in and out.
    let mut f = Flow::new("call-21");
    let busy = |via: &str| {
        format!(
            "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP {via};branch=x\r\n\
             From: <sip:alice@x>;tag=a\r\nTo: <sip:bob@x>;tag=b\r\nCall-ID: call-21\r\n\
             CSeq: 1 INVITE\r\nReason: Q.850;cause=17\r\n\r\n"
        )
    };
    f.req(0, A, P, "INVITE", "a1", 1, "a", None)
        .req(1, P, B, "INVITE", "p1", 1, "a", None)
        .feed(40, B, P, &busy(P), q850_cause("Q.850;cause=17"))
        .feed(41, P, A, &busy(A), q850_cause("Q.850;cause=17"));
    assert_eq!(f.sink.count(Count::Q850(17)), 1);
    assert_eq!(f.sink.count(Count::CallResult(486)), 1);
}
