//! Golden tests: real payloads (rtpengine 10.5's type 5 JSON, verbatim from
//! shared/peers/README.md section 6), RFC 6035's example, an `X-RTP-Stat` as baresip
//! writes it, a raw RR built byte by byte; every figure worked out in the comments.

use super::call::{CallQos, Input};
use super::*;
use hep_proto::ProtoType;

/// rtpengine B's SR about A's stream, no loss (verbatim, irregular spaces included).
const RTPENGINE_CLEAN: &str = r#"{ "sender_information":{"ntp_timestamp_sec":4005581763,"ntp_timestamp_usec":3930513550,"octets":78876,"rtp_timestamp":49920, "packets":313},"ssrc":185491181,"type":200,"report_count":1,"report_blocks":[{"source_ssrc":1511911437,"highest_seq_no":312,"fraction_lost":0,"ia_jitter":0,"packets_lost":0,"lsr":1405347802,"dlsr":600}],"sdes_report_count":1,"sdes_information": [ {"sdes_chunk_ssrc":185491181,"type":1,"text":"2b47b103a8fe"}] }"#;

/// The same with `-l 5` (two lossy hops).
const RTPENGINE_LOSSY: &str = r#"{ "sender_information":{"ntp_timestamp_sec":4005581791,"ntp_timestamp_usec":2761131394,"octets":62748,"rtp_timestamp":41440, "packets":249},"ssrc":185491181,"type":200,"report_count":1,"report_blocks":[{"source_ssrc":1511911437,"highest_seq_no":259,"fraction_lost":23,"ia_jitter":0,"packets_lost":24,"lsr":0,"dlsr":0}],"sdes_report_count":1,"sdes_information": [ {"sdes_chunk_ssrc":185491181,"type":1,"text":"6d8e3f310fed"}] }"#;

fn close(actual: Option<f64>, expected: f64) {
    let a = actual.expect("a value");
    assert!((a - expected).abs() < 1e-6, "{a} != {expected}");
}

#[test]
fn rtpengine_clean_report_has_no_loss_and_a_sub_millisecond_rtt() {
    // Arrival: the SR's own NTP time (loopback: sent and received in the same ms),
    // 4005581763 s - 2208988800 = 1796592963 s (Unix), fraction 3930513550 / 2^32 =
    // 0.915144 s. Middle 32 bits: seconds' low 16 = 21443, fraction's high 16 =
    // 915144 x 65536 / 1e6 = 59974 -> A = 21443 << 16 | 59974.
    // LSR = 1405347802 = 21443 << 16 | 59354; DLSR = 600.
    // RTT = 59974 - 59354 - 600 = 20 units of 1/65536 s = 0.30517578125 ms.
    let arrival_us = 1_796_592_963_915_144;
    let r = rtcp::parse(RTPENGINE_CLEAN.as_bytes(), Some(arrival_us), 8000).unwrap();
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!(r.source, Source::Rtcp);
    assert_eq!(r.stream, "ssrc:0x5a1df00d"); // 1511911437, sipp's UAC stream
    assert_eq!(r.reporter, Some(185_491_181));
    close(r.jitter_ms, 0.0);
    close(r.loss_pct, 0.0);
    assert_eq!(r.packets_lost, Some(0));
    close(r.rtt_ms, 20.0 * 1000.0 / 65536.0);
    // el = 2 x 0 + 0.30517578125 / 2 + 10 = 10.152587890625; R = 93.2 - el / 40 =
    // 92.94618530273438; MOS = 1 + 0.035 R + 7e-6 R (R - 60)(100 - R) = 4.4043189235.
    close(r.mos, 4.404_318_923_501_055);
    assert!(!r.mos_reported);
}

#[test]
fn rtpengine_lossy_report_reads_the_8_bit_fraction() {
    // fraction_lost 23 -> 23 / 256 = 8.984375 %; lsr 0: no SR yet, no RTT.
    let r = &rtcp::parse(RTPENGINE_LOSSY.as_bytes(), Some(1), 8000).unwrap()[0];
    close(r.loss_pct, 8.984_375);
    assert_eq!(r.packets_lost, Some(24));
    assert_eq!(r.rtt_ms, None);
    // el = 10; R = 92.95 - 2.5 x 8.984375 = 70.4890625;
    // MOS = 1 + 2.4671171875 + 7e-6 x 70.4890625 x 10.4890625 x 29.5109375 = 3.6198525.
    close(r.mos, 3.619_852_498_679_813_7);
}

#[test]
fn raw_receiver_report_reads_like_the_json() {
    // V=2, RC=1 (0x81), PT=201 (RR), length 7 words (32 bytes), reporter 0x0b0e5eed;
    // block: SSRC 0x5a1df00d, fraction 0x40 (64/256 = 25 %), cumulative -1 (0xffffff:
    // duplicates), highest seq 0x00010010, jitter 160 (20 ms at 8 kHz), LSR 0, DLSR 0.
    let rr: [u8; 32] = [
        0x81, 201, 0x00, 0x07, 0x0b, 0x0e, 0x5e, 0xed, //
        0x5a, 0x1d, 0xf0, 0x0d, 0x40, 0xff, 0xff, 0xff, //
        0x00, 0x01, 0x00, 0x10, 0x00, 0x00, 0x00, 160, //
        0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert!(rtcp::is_raw(&rr));
    let r = &rtcp::parse(&rr, None, 8000).unwrap()[0];
    assert_eq!(r.stream, "ssrc:0x5a1df00d");
    assert_eq!(r.reporter, Some(0x0b0e_5eed));
    close(r.loss_pct, 25.0);
    assert_eq!(r.packets_lost, Some(-1));
    close(r.jitter_ms, 20.0);
    // el = 2 x 20 + 0 + 10 = 50; R = 93.2 - 1.25 - 62.5 = 29.45; MOS = 1.58643439.
    close(r.mos, 1.586_434_389_625);
    // Cut short: the error says what was missing.
    let err = rtcp::parse(&rr[..20], None, 8000).unwrap_err();
    assert_eq!(
        err.to_string(),
        "raw RTCP: packet type 201 says 32 bytes, 20 are left"
    );
    assert!(!rtcp::is_raw(RTPENGINE_CLEAN.as_bytes()));
}

#[test]
fn rtcp_json_errors_name_the_field() {
    let e = rtcp::parse(br#"{"report_blocks":[{"source_ssrc":1,"fraction_lost":300,"packets_lost":0,"ia_jitter":0}]}"#, None, 8000)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "RTCP JSON: report_blocks[0].fraction_lost: 300 is not 0-255"
    );
    let e = rtcp::parse(br#"{"report_blocks":[{"fraction_lost":3}]}"#, None, 8000).unwrap_err();
    assert!(
        e.to_string().contains("report_blocks[0].source_ssrc"),
        "{e}"
    );
    assert!(rtcp::parse(b"{nope", None, 8000).is_err());
    // An SR without blocks reports on no stream.
    assert_eq!(
        rtcp::parse(br#"{"ssrc":5,"type":200}"#, None, 8000).unwrap(),
        vec![]
    );
}

#[test]
fn rtt_beyond_the_bound_or_negative_is_unknown() {
    // A = 1 s after the LSR, minus a DLSR of 0.5 s: 500 ms.
    let arrival_us = 10_000_000; // Unix 10 s: NTP seconds 2208988810, low 16 = 0x9c8a.
    let a = ((2_208_988_810u64 & 0xffff) << 16) as u32;
    close(rtcp::rtt_ms(arrival_us, a - 65536, 32768), 500.0);
    // An LSR after the arrival (clocks disagree): negative, unknown.
    assert_eq!(rtcp::rtt_ms(arrival_us, a + 65536, 0), None);
    // 20 s: above MAX_RTT_MS.
    assert_eq!(rtcp::rtt_ms(arrival_us, a - 20 * 65536, 0), None);
}

/// RFC 6035 section 4.7's example, with a remote block added that carries no MOS.
const VQ: &str = "VQSessionReport: CallTerm\r\n\
CallID: 6dwb2f@10.0.0.1\r\n\
LocalID: <sip:alice@example.org>\r\n\
RemoteID: <sip:bob@example.net>\r\n\
OrigID: <sip:alice@example.org>\r\n\
LocalAddr:IP=10.10.1.100 PORT=5000 SSRC=0x2468abcd\r\n\
RemoteAddr:IP=11.1.1.150 PORT=5002 SSRC=0x1357efff\r\n\
LocalMetrics:\r\n\
Timestamps:START=2004-10-10T18:23:43Z STOP=2004-10-10T18:33:53Z\r\n\
SessionDesc:PT=0 PD=PCMU SR=8000 FD=20 FO=20 FPP=1 PPS=50 FMTP=\"annexb=no\" PLC=3 SSUP=on\r\n\
JitterBuffer:JBA=3 JBR=2 JBN=40 JBM=80 JBX=120\r\n\
PacketLoss:NLR=5.0 JDR=2.0\r\n\
BurstGapLoss:BLD=0 BD=0 GLD=2.0 GD=500 GMIN=16\r\n\
Delay:RTD=200 ESD=140 SOWD=200 IAJ=2 MAJ=10\r\n\
Signal:SL=-21 NL=-50 RLQ=90\r\n\
QualityEst:RLQ=90 RCQ=85 EXTRI=90 MOSLQ=4.2 MOSCQ=4.3 QoEEstAlg=P.564\r\n\
RemoteMetrics:\r\n\
PacketLoss:NLR=1.0 JDR=unavailable\r\n\
Delay:RTD=100 IAJ=10\r\n\
DialogID:1890463548@alice.example.org;to-tag=8472761;from-tag=9123dh311\r\n";

#[test]
fn vq_session_report_gives_one_stream_per_metrics_block() {
    let r = vq::parse(VQ.as_bytes()).unwrap();
    assert_eq!(r.len(), 2);
    // Local metrics: of what the local end receives, i.e. the remote SSRC's stream.
    assert_eq!(r[0].stream, "ssrc:0x1357efff");
    assert_eq!(r[0].source, Source::RtcpXr);
    close(r[0].loss_pct, 5.0);
    close(r[0].jitter_ms, 2.0);
    close(r[0].rtt_ms, 200.0);
    close(r[0].mos, 4.2); // MOSLQ, the reporter's
    assert!(r[0].mos_reported);
    // Remote: no MOS given, computed: el = 2 x 10 + 100 / 2 + 10 = 80;
    // R = 93.2 - 2 - 2.5 = 88.7; MOS = 1 + 3.1045 + 7e-6 x 88.7 x 28.7 x 11.3 = 4.305864079.
    assert_eq!(r[1].stream, "ssrc:0x2468abcd");
    close(r[1].mos, 4.305_864_079);
    assert!(!r[1].mos_reported);
    let e = vq::parse(b"hello\r\n").unwrap_err();
    assert!(e.to_string().contains("VQSessionReport"), "{e}");
    let e = vq::parse(b"VQSessionReport: CallTerm\r\nCallID: x\r\n").unwrap_err();
    assert!(e.to_string().contains("LocalMetrics"), "{e}");
}

const X_RTP_STAT: &str = "CS=0;PS=1433;ES=1525;OS=229280;SP=0/0;SO=0;QS=-;PR=1522;ER=1525;OR=243520;CR=0;SR=0;QR=-;PL=3,0;BL=0;LS=0;RB=0/0;SL=0;JI=5,1;DL=40,20,60;IP=10.0.0.1:10000,10.0.0.2:20000";

#[test]
fn x_rtp_stat_gives_each_direction_its_own_loss_and_mos() {
    let r = xrtpstat::parse(X_RTP_STAT).unwrap();
    assert_eq!((r[0].stream.as_str(), r[1].stream.as_str()), ("rx", "tx"));
    // rx: 3 lost of 1522 + 3 = 1525 expected: 0.19672131 %; el = 2 x 5 + 40 + 10 = 60;
    // R = 93.2 - 1.5 - 2.5 x 0.19672131 = 91.20819672; MOS = 4.36746447.
    close(r[0].loss_pct, 300.0 / 1525.0);
    close(r[0].jitter_ms, 5.0);
    close(r[0].mos, 4.367_464_474_831_943);
    // tx: 0 of 1433; el = 2 + 40 + 10 = 52; R = 91.9; MOS = 4.382722287.
    close(r[1].loss_pct, 0.0);
    close(r[1].mos, 4.382_722_287);
    // heplify-server's one figure: (3 + 0) x 100 / (1522 + 1433) = 0.1015 %, half the
    // receive loss: the direction that lost packets is hidden.
    let e = xrtpstat::parse("CS=0;JI=1,1").unwrap_err();
    assert!(e.to_string().contains("PR"), "{e}");
}

#[test]
fn emodel_bounds() {
    assert_eq!(emodel::mos(0.0, 0.0, 100.0), 1.0); // R < 0
    assert_eq!(emodel::mos_of_r(120.0), 4.5);
    assert_eq!(
        emodel::mos(f64::NAN, -5.0, f64::INFINITY),
        emodel::mos(0.0, 0.0, 0.0)
    );
    // The knee at el = 160: 93.2 - 160/40 = 89.2 and 93.2 - (160-120)/10 = 89.2 agree.
    close(Some(emodel::r_factor(75.0, 0.0, 0.0)), 89.2);
}

#[test]
fn a_call_groups_its_reports_by_stream_in_capture_order() {
    let bye = format!(
        "BYE sip:b@h SIP/2.0\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nX-RTP-Stat: {X_RTP_STAT}\r\n\r\n"
    );
    let msgs = [
        Input {
            proto_type: Some(ProtoType::Rtcp),
            payload: RTPENGINE_LOSSY.as_bytes(),
            capture_us: Some(2_000_000),
        },
        Input {
            proto_type: Some(ProtoType::Rtcp),
            payload: RTPENGINE_CLEAN.as_bytes(),
            capture_us: Some(1_000_000),
        },
        Input {
            proto_type: Some(ProtoType::Sip),
            payload: bye.as_bytes(),
            capture_us: Some(3_000_000),
        },
        // The same BYE captured on the proxy's other side: one report.
        Input {
            proto_type: Some(ProtoType::Sip),
            payload: bye.as_bytes(),
            capture_us: Some(3_000_100),
        },
        Input {
            proto_type: Some(ProtoType::Rtcp),
            payload: b"{broken",
            capture_us: Some(4),
        },
        Input {
            proto_type: Some(ProtoType::Log),
            payload: b"a log line",
            capture_us: Some(5),
        },
    ];
    let q = CallQos::of(msgs);
    let names: Vec<_> = q
        .streams
        .iter()
        .map(|s| (s.source, s.stream.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (Source::Rtcp, "ssrc:0x5a1df00d"),
            (Source::XRtpStat, "rx"),
            (Source::XRtpStat, "tx")
        ]
    );
    let rtcp = &q.streams[0];
    assert_eq!(rtcp.samples.len(), 2);
    assert_eq!(rtcp.samples[0].ts_usec, Some(1_000_000)); // sorted by capture time
    assert_eq!(rtcp.summary.packets_lost, Some(24)); // the last count
    close(rtcp.summary.loss_pct_max, 8.984_375);
    close(rtcp.summary.loss_pct_avg, 8.984_375 / 2.0);
    close(rtcp.summary.mos_min, 3.619_852_498_679_813_7);
    assert_eq!(q.streams[1].samples.len(), 1);
    assert_eq!(q.unreadable, 1);
    assert!(q.first_error.as_deref().unwrap().starts_with("RTCP JSON"));
}
