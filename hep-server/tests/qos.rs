//! QoS kept with the call, end to end through `hep-server run`: the Kamailio call (the
//! `v3-udp-` vectors) and, named by its Call-ID as HEP correlation id, RTCP as
//! rtpengine 10.5 sends it (type 5 JSON), a raw RTCP receiver report (type 5) and an
//! RTCP-XR session report (type 35). The call's view, its pcap and the `hep_rtcp_*`
//! metrics are checked against figures worked out by hand (the parsers' golden tests
//! are in src/qos/tests.rs).

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use hep_proto::{HepMessage, HepVersion, ProtoType};
use serde_json::Value;

use common::*;

const CALL: &str = "1-13274@127.0.0.1";
/// The call's INVITE was captured at 1795670509.909050.
const CALL_TS: u32 = 1_795_670_509;
const WAIT: Duration = Duration::from_secs(15);

/// rtpengine's SR with a report block on sipp's UAC stream, no loss (its LSR set to 0:
/// the RTT is the unit tests' business, the capture time here is not its clock's).
const RTCP_CLEAN: &str = r#"{ "sender_information":{"ntp_timestamp_sec":4005581763,"ntp_timestamp_usec":3930513550,"octets":78876,"rtp_timestamp":49920, "packets":313},"ssrc":185491181,"type":200,"report_count":1,"report_blocks":[{"source_ssrc":1511911437,"highest_seq_no":312,"fraction_lost":0,"ia_jitter":0,"packets_lost":0,"lsr":0,"dlsr":0}],"sdes_report_count":1,"sdes_information": [ {"sdes_chunk_ssrc":185491181,"type":1,"text":"2b47b103a8fe"}] }"#;
/// The same stream 10 s later, with 23/256 lost (verbatim from rtpengine with `-l 5`).
const RTCP_LOSSY: &str = r#"{ "sender_information":{"ntp_timestamp_sec":4005581791,"ntp_timestamp_usec":2761131394,"octets":62748,"rtp_timestamp":41440, "packets":249},"ssrc":185491181,"type":200,"report_count":1,"report_blocks":[{"source_ssrc":1511911437,"highest_seq_no":259,"fraction_lost":23,"ia_jitter":0,"packets_lost":24,"lsr":0,"dlsr":0}],"sdes_report_count":1,"sdes_information": [ {"sdes_chunk_ssrc":185491181,"type":1,"text":"6d8e3f310fed"}] }"#;
/// A raw RR from the UAC's SSRC on the UAS's stream: 64/256 lost, jitter 160 (20 ms).
const RAW_RR: [u8; 32] = [
    0x81, 201, 0x00, 0x07, 0x5a, 0x1d, 0xf0, 0x0d, //
    0x0b, 0x0e, 0x5e, 0xed, 0x40, 0x00, 0x00, 0x10, //
    0x00, 0x01, 0x00, 0x10, 0x00, 0x00, 0x00, 160, //
    0, 0, 0, 0, 0, 0, 0, 0,
];
const VQ: &str = "VQSessionReport: CallTerm\r\nCallID: 1-13274@127.0.0.1\r\n\
LocalAddr:IP=127.0.0.1 PORT=6000 SSRC=0x5a1df00d\r\nRemoteAddr:IP=127.0.0.1 PORT=6100 SSRC=0x0b0e5eed\r\n\
LocalMetrics:\r\nPacketLoss:NLR=5.0 JDR=2.0\r\nDelay:RTD=200 IAJ=2\r\nQualityEst:MOSLQ=4.2\r\n";

fn hep(proto: ProtoType, ts: u32, payload: &[u8]) -> Vec<u8> {
    HepMessage::builder()
        .src("127.0.0.1:30001".parse().unwrap())
        .dst("127.0.0.1:30101".parse().unwrap())
        .ip_proto(17)
        .timestamp(ts, 0)
        .proto_type(proto)
        .capture_id(2002)
        .correlation_id(CALL.as_bytes().to_vec())
        .payload(payload.to_vec())
        .build()
        .encode(HepVersion::V3)
        .unwrap()
        .to_vec()
}

/// `GET target` over HTTP/1.0 (no chunks): status, headers (lowercase), body.
fn get(server: &Server, target: &str) -> (u16, String, Vec<u8>) {
    let addr = server.http.expect("an http listener");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(s, "GET {target} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

fn series(text: &str, name: &str, labels: &[&str]) -> Option<String> {
    text.lines()
        .find(|l| l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.to_owned())
}

#[test]
fn a_calls_rtcp_is_kept_with_it_and_shown_in_its_view_pcap_and_metrics() {
    let dir = test_dir("qos-call");
    let server = Server::with_config(
        &dir,
        &format!(
            "listen = [\"hep_udp:127.0.0.1:0\"]\noutputs = [\"store:{}\"]\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [store]\nmax_age_hours = 0\nmin_free_mb = 0\n\
             [aliases]\n\"127.0.0.1:5060\" = \"kamailio\"\n",
            dir.join("store").display()
        ),
    );
    send_udp(server.udp(), &set_bytes("v3-udp-0"));
    // The call is in the KPI table before its RTCP comes (as in life: RTCP follows the
    // answer).
    wait_for("the call's BYE counted", WAIT, || {
        server
            .metrics()
            .0
            .contains("hep_sip_hangups_total{")
            .then_some(())
    });
    send_udp(
        server.udp(),
        &[
            hep(ProtoType::Rtcp, CALL_TS + 6, RTCP_CLEAN.as_bytes()),
            hep(ProtoType::Rtcp, CALL_TS + 16, RTCP_LOSSY.as_bytes()),
            hep(ProtoType::Rtcp, CALL_TS + 17, &RAW_RR),
            hep(ProtoType::MosShort, CALL_TS + 20, VQ.as_bytes()),
        ],
    );
    let v: Value = wait_for("16 messages of the call", WAIT, || {
        let (status, _, body) = get(&server, &format!("/api/v1/calls/{CALL}"));
        let v: Value = serde_json::from_slice(&body).ok()?;
        (status == 200 && v["messages"].as_array()?.len() == 16).then_some(v)
    });

    // Its KPIs, from its stored SIP (SUMMARY.txt's capture times).
    let k = &v["kpis"];
    assert_eq!(k["legs"], 1);
    assert_eq!(k["call_id"], CALL);
    assert_eq!(k["final_status"], 200);
    assert_eq!(k["status_class"], "2xx");
    assert_eq!(k["srd_ms"], 0.96); // .909050 -> the first 180 at .910010
    assert_eq!(k["answer_ms"], 2.07); // -> the first 200 at .911120
    assert_eq!(k["duration_s"], 0.005788); // -> the BYE at .916908
    assert_eq!(k["hangup"], "caller");

    // Its streams: by source, then name.
    let streams = v["qos"]["streams"].as_array().unwrap();
    let names: Vec<String> = streams
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["source"].as_str().unwrap(),
                s["stream"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "rtcp ssrc:0x0b0e5eed",
            "rtcp ssrc:0x5a1df00d",
            "rtcp_xr ssrc:0x0b0e5eed"
        ]
    );
    let uac = &streams[1];
    assert_eq!(uac["samples"].as_array().unwrap().len(), 2);
    assert_eq!(uac["summary"]["loss_pct_max"], 8.984375); // 23 / 256
    assert_eq!(uac["summary"]["packets_lost"], 24);
    assert_eq!(uac["reporter"], 185_491_181);
    let uas = &streams[0];
    assert_eq!(uas["summary"]["loss_pct_max"], 25.0); // 64 / 256
    assert_eq!(uas["summary"]["jitter_ms_max"], 20.0); // 160 / 8000 s
    assert_eq!(streams[2]["summary"]["mos_min"], 4.2);
    assert_eq!(v["qos"]["unreadable"], 0);

    // The pcap: the 12 SIP packets, the raw RR and the VQ report (a payload that was a
    // packet); the two JSON RTCP reports were never packets: left out, and said so.
    let (status, head, pcap) = get(&server, &format!("/api/v1/calls/{CALL}/pcap"));
    assert_eq!(status, 200);
    assert!(head.contains("x-rtcp-json-left-out: 2"), "{head}");
    let (mut records, mut at, mut rtcp_found) = (0, 24, false);
    while at < pcap.len() {
        let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &pcap[at + 16..at + 16 + incl];
        // Ethernet 14 + IPv4 20 + UDP 8: the RR as it was.
        rtcp_found |= frame.len() == 14 + 20 + 8 + 32 && frame[42..] == RAW_RR;
        at += 16 + incl;
        records += 1;
    }
    assert_eq!(records, 14);
    assert!(rtcp_found, "the raw RR is a UDP packet of the pcap");
    // `search --format pcap` of the call: the same packets, and the same words.
    let search = std::process::Command::new(BIN)
        .args(["search", "--store"])
        .arg(dir.join("store"))
        .args(["--call-id", CALL, "--format", "pcap"])
        .output()
        .unwrap();
    assert!(
        search.status.success(),
        "{}",
        String::from_utf8_lossy(&search.stderr)
    );
    assert_eq!(search.stdout.len(), pcap.len());
    assert!(
        String::from_utf8_lossy(&search.stderr)
            .contains("2 RTCP report(s) sent as JSON (not packets) are left out of the pcap"),
        "{}",
        String::from_utf8_lossy(&search.stderr)
    );

    // The metrics, under the call's target (its INVITE went to the proxy: kamailio, out).
    // The tracker reads beside the store and publishes what it read every 100 ms: once
    // the last report sent (the VQ report) shows, the ones before it do too.
    let m = wait_for("the VQ report in the metrics", WAIT, || {
        let m = server.metrics().0;
        series(&m, "hep_rtcp_mos_count", &["source=\"rtcp_xr\""]).map(|_| m)
    });
    let call = [
        "target=\"kamailio\"",
        "direction=\"out\"",
        "source=\"rtcp\"",
    ];
    assert_eq!(
        series(&m, "hep_rtcp_loss_ratio_count", &call).as_deref(),
        Some("3")
    );
    // 0 + 0.08984375 + 0.25
    assert_eq!(
        series(&m, "hep_rtcp_loss_ratio_sum", &call).as_deref(),
        Some("0.339843")
    );
    let zero = [call[0], call[1], call[2], "le=\"0\""];
    assert_eq!(
        series(&m, "hep_rtcp_loss_ratio_bucket", &zero).as_deref(),
        Some("1")
    );
    let xr = ["target=\"kamailio\"", "source=\"rtcp_xr\""];
    assert_eq!(
        series(&m, "hep_rtcp_mos_sum", &xr).as_deref(),
        Some("4.200000")
    );
    assert_eq!(
        series(&m, "hep_rtcp_rtt_seconds_sum", &xr).as_deref(),
        Some("0.200000")
    );
    server.stop();
}
