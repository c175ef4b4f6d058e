//! `hep-server decode`, run as a binary on the golden vectors.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use hep_proto::{HepMessage, HepVersion, ProtoType};
use hep_testkit::vectors::{KAMAILIO_SETS, testdata_dir};
use serde_json::Value;

/// The record's keys (DESIGN.md, plus `proto_name` and `payload_b64`), spelled out here
/// rather than taken from `record::RECORD_KEYS`: this test pins the external interface.
const KEYS: &[&str] = &[
    "version",
    "family",
    "ip_proto",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "ts_sec",
    "ts_usec",
    "proto_type",
    "proto_name",
    "capture_id",
    "auth_key",
    "correlation_id",
    "node_name",
    "vlan",
    "payload",
    "payload_b64",
    "compressed",
    "chunks",
    "recv",
];

fn hep_server<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_hep-server"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running hep-server")
}

fn kamailio(name: &str) -> PathBuf {
    testdata_dir().join("kamailio").join(name)
}

/// Writes `bytes` to a file of this test's own under the target's temp dir.
fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("decode-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Decodes `files` as JSON, expecting success; the records, each checked for its keys.
fn decode_json(files: &[PathBuf]) -> Vec<Value> {
    let mut args = vec![PathBuf::from("decode")];
    args.extend_from_slice(files);
    let out = hep_server(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "decode {files:?} failed:\n{stderr}");
    let records = records(&out);
    assert!(
        stderr.contains(&format!("decoded {} messages, 0 errors", records.len())),
        "{stderr}"
    );
    records
}

fn records(out: &Output) -> Vec<Value> {
    let stdout = std::str::from_utf8(&out.stdout).expect("stdout is UTF-8");
    stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("one JSON object per line");
            let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            let mut want = KEYS.to_vec();
            keys.sort_unstable();
            want.sort_unstable();
            assert_eq!(keys, want, "keys of {line}");
            v
        })
        .collect()
}

fn without_recv(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("recv");
    v
}

fn set_files(prefix: &str) -> Vec<PathBuf> {
    hep_testkit::vectors::kamailio(prefix)
        .into_iter()
        .map(|(name, _)| kamailio(&name))
        .collect()
}

fn pcap_of(prefix: &str) -> PathBuf {
    let set = prefix.trim_end_matches('-');
    // The v3-tcp set's .hep files are the frames of v3-tcp.pcap's stream.
    kamailio(&format!("{set}.pcap"))
}

#[test]
fn every_pcap_decodes_to_its_hep_files_in_order() {
    for prefix in KAMAILIO_SETS {
        let files = set_files(prefix);
        assert!(files.len() >= 12, "{prefix}: {} files", files.len());
        let from_files = decode_json(&files);
        let from_pcap = decode_json(&[pcap_of(prefix)]);
        assert_eq!(from_pcap.len(), from_files.len(), "{prefix}");
        let tcp = prefix.contains("tcp");
        for (i, (p, f)) in from_pcap.iter().zip(&from_files).enumerate() {
            assert!(f["recv"].is_null());
            let recv = &p["recv"];
            assert_eq!(
                recv["transport"],
                if tcp { "tcp" } else { "udp" },
                "{prefix} {i}"
            );
            assert_eq!(recv["listener"], "127.0.0.1:9060", "{prefix} {i}");
            assert!(recv["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
            assert_eq!(
                without_recv(p.clone()),
                without_recv(f.clone()),
                "{prefix} message {i}"
            );
        }
    }
}

#[test]
fn the_tcp_stream_capture_gives_its_12_frames() {
    let from_stream = decode_json(&[kamailio("v3-tcp-stream.bin")]);
    assert_eq!(from_stream.len(), 12);
    assert_eq!(from_stream, decode_json(&set_files("v3-tcp-")));
}

#[test]
fn fields_match_the_vectors() {
    let v1 = decode_json(&[kamailio("v1-udp-0001.hep")]).remove(0);
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["family"], "ipv4");
    assert_eq!(v1["ip_proto"], 17);
    assert_eq!(v1["src_port"], 5061);
    for k in [
        "ts_sec",
        "ts_usec",
        "proto_type",
        "proto_name",
        "capture_id",
        "auth_key",
    ] {
        assert!(v1[k].is_null(), "v1 {k} = {}", v1[k]);
    }
    assert_eq!(v1["compressed"], false);
    assert_eq!(v1["chunks"], Value::Array(vec![]));

    let v2 = decode_json(&[kamailio("v2-udp-ipv6-0001.hep")]).remove(0);
    assert_eq!(v2["family"], "ipv6");
    assert_eq!(v2["src_ip"], "::1");
    assert_eq!(v2["ts_sec"], 1_795_670_501u32);
    assert_eq!(v2["ts_usec"], 696_768);
    assert_eq!(v2["capture_id"], 2001);

    let log = decode_json(&[kamailio("v3-udp-hlog-authkey-0002.hep")]).remove(0);
    assert_eq!(log["proto_type"], 100);
    assert_eq!(log["proto_name"], "log");
    assert_eq!(log["auth_key"], "hep-secret");
    let call_id = log["correlation_id"].as_str().unwrap();
    assert!(call_id.ends_with("@127.0.0.1"), "{call_id}");
    assert!(
        log["payload"]
            .as_str()
            .unwrap()
            .starts_with("kamailio hlog: INVITE")
    );
}

#[test]
fn a_present_but_empty_auth_key_is_an_empty_string() {
    let hex = include_str!("../../hep-proto/tests/it/heplify-hep-packet.hex");
    let wire = hep_testkit::hex(hex);
    let path = temp_file("heplify.hep", &wire);
    let rec = decode_json(&[path]).remove(0);
    assert_eq!(rec["auth_key"], "");
    assert!(rec["correlation_id"].is_null());
    assert_eq!(rec["proto_name"], "sip");
}

#[test]
fn hep_js_truncated_utf8_is_still_text() {
    // hep-js cut the payload by UTF-16 length: it lost bytes, but at a character
    // boundary, so it is still valid UTF-8.
    let path = testdata_dir().join("hepjs/hepjs-v3-utf8-truncated.hep");
    let rec = decode_json(&[path]).remove(0);
    let payload = rec["payload"].as_str().expect("payload is text");
    assert!(payload.contains("Subject: café ✓"), "{payload}");
    assert!(payload.ends_with("Content-Length: 0\r"), "{payload:?}");
    assert!(rec["payload_b64"].is_null());
    assert_eq!(rec["node_name"], "node-\u{0}");
}

#[test]
fn binary_payloads_are_base64() {
    let payload = b"\x80\x00\xff\xfe RTP-ish \xc3";
    let msg = HepMessage::builder()
        .src("192.0.2.1:4000".parse().unwrap())
        .dst("192.0.2.2:4002".parse().unwrap())
        .timestamp(1_700_000_000, 1)
        .proto_type(ProtoType::Rtp)
        .payload(&payload[..])
        .node_name(&b"\xffnode"[..])
        .build();
    let path = temp_file("binary.hep", &msg.encode(HepVersion::V3).unwrap());
    let rec = decode_json(&[path]).remove(0);
    assert!(rec["payload"].is_null());
    let b64 = rec["payload_b64"].as_str().unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        payload
    );
    assert_eq!(rec["node_name"], "hex:ff6e6f6465");
    assert_eq!(rec["proto_name"], "rtp");
}

#[test]
fn text_format_shows_the_request_line_and_call_id() {
    let out = hep_server(
        ["decode", "--format", "text"]
            .map(PathBuf::from)
            .into_iter()
            .chain([kamailio("v3-udp-0001.hep")]),
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(
        text.contains("INVITE sip:service@127.0.0.1:5060 SIP/2.0"),
        "{text}"
    );
    let call_id = text
        .split("Call-ID: ")
        .nth(1)
        .expect("a Call-ID")
        .trim_end();
    assert!(
        call_id.starts_with("1-") && call_id.ends_with("@127.0.0.1"),
        "{text}"
    );
    assert!(
        text.starts_with("2026-11-26T05:21:49.909050Z cid=2001 127.0.0.1:5061 -> 127.0.0.1:5060"),
        "{text}"
    );
}

#[test]
fn garbage_is_an_error_and_good_files_still_print() {
    let garbage = temp_file("garbage.bin", b"this is not HEP at all\n");
    let out = hep_server([
        PathBuf::from("decode"),
        garbage.clone(),
        kamailio("v3-udp-0001.hep"),
        PathBuf::from("/nonexistent/file.hep"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(records(&out).len(), 1);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "{}: not a HEP datagram, HEP3 stream or pcap/pcapng file",
            garbage.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("/nonexistent/file.hep: cannot read"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("decoded 1 messages, 2 errors\n"),
        "{stderr}"
    );
}

#[test]
fn a_bad_packet_is_reported_with_its_number_and_the_rest_decode() {
    let mut pcap = std::fs::read(kamailio("v3-udp.pcap")).unwrap();
    // The 7th HEP message: make its first chunk claim more bytes than there are.
    let at = pcap
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"HEP3")
        .nth(6)
        .unwrap()
        .0;
    pcap[at + 10..at + 12].copy_from_slice(&0xfff0u16.to_be_bytes());
    let path = temp_file("v3-udp-bad7.pcap", &pcap);
    let out = hep_server([PathBuf::from("decode"), path]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(records(&out).len(), 11);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("v3-udp-bad7.pcap: packet 7: chunk 0x0000/0x0001"),
        "{stderr}"
    );
    assert!(stderr.contains("decoded 11 messages, 1 errors"), "{stderr}");
}

/// Rewrites a pcapng capture as classic pcap, with each frame passed through `relink`.
fn to_classic_pcap(
    src: &Path,
    link: pcap_file::DataLink,
    relink: impl Fn(&[u8]) -> Vec<u8>,
) -> Vec<u8> {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::pcapng::{Block, PcapNgReader};

    let mut reader = PcapNgReader::new(std::fs::File::open(src).unwrap()).unwrap();
    let header = PcapHeader {
        datalink: link,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header).unwrap();
    while let Some(block) = reader.next_block() {
        if let Block::EnhancedPacket(epb) = block.unwrap() {
            let data = relink(&epb.data);
            let len = u32::try_from(data.len()).unwrap();
            writer
                .write_packet(&PcapPacket::new(epb.timestamp, len, &data))
                .unwrap();
        }
    }
    writer.into_writer()
}

#[test]
fn classic_pcap_ethernet_and_linux_cooked_v2() {
    for prefix in ["v3-udp-", "v3-tcp-"] {
        let want: Vec<Value> = decode_json(&[pcap_of(prefix)]);
        let eth = to_classic_pcap(
            &pcap_of(prefix),
            pcap_file::DataLink::ETHERNET,
            <[u8]>::to_vec,
        );
        let sll2 = to_classic_pcap(&pcap_of(prefix), pcap_file::DataLink::LINUX_SLL2, |frame| {
            // SLL2: protocol type, reserved, interface index, ARPHRD, packet type,
            // address length, 8 address bytes; then the IP packet.
            let mut out = frame[12..14].to_vec();
            out.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6]);
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&frame[14..]);
            out
        });
        for (name, bytes) in [("eth", eth), ("sll2", sll2)] {
            // pcap-file writes big-endian headers by default: the a1b2c3d4 magic.
            assert_eq!(&bytes[..4], b"\xa1\xb2\xc3\xd4");
            let path = temp_file(&format!("{prefix}{name}.pcap"), &bytes);
            assert_eq!(decode_json(&[path]), want, "{prefix}{name}");
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(hep_server(["decode"]).status.code(), Some(2));
    assert_eq!(
        hep_server(["decode", "--format", "yaml", "x"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(hep_server(["frobnicate"]).status.code(), Some(2));
}

#[test]
fn compressed_payloads_are_shown_inflated() {
    let hex = include_str!("../../hep-proto/tests/it/captagent-zlib.hex");
    let path = temp_file("captagent-zlib.hep", &hep_testkit::hex(hex));
    let rec = decode_json(&[path]).remove(0);
    assert_eq!(rec["compressed"], true);
    assert!(
        rec["payload"]
            .as_str()
            .unwrap()
            .starts_with("SIP/2.0 401 Unauthorized")
    );
    assert_eq!(rec["auth_key"], "myHep");
    assert_eq!(rec["ip_proto"], 6);
}

/// The 12 frames of the Kamailio TCP stream capture.
fn stream_frames() -> Vec<Vec<u8>> {
    let mut stream = &std::fs::read(kamailio("v3-tcp-stream.bin")).unwrap()[..];
    let mut frames = Vec::new();
    while !stream.is_empty() {
        let len = usize::from(u16::from_be_bytes([stream[4], stream[5]]));
        frames.push(stream[..len].to_vec());
        stream = &stream[len..];
    }
    assert_eq!(frames.len(), 12);
    frames
}

#[test]
fn garbage_between_stream_frames_is_reported_and_the_frames_after_it_decode() {
    let frames = stream_frames();
    let offset_of = |k: usize| frames[..k].iter().map(Vec::len).sum::<usize>();
    // (what is put between frames, after which frame, what the error says)
    let cases: [(&[u8], usize, &str); 3] = [
        // Right after the first frame: the file used to pass for one datagram.
        (b"garbage!!", 1, "not a HEP3 frame"),
        (b"garbage!!", 5, "not a HEP3 frame"),
        // A HEP3 header whose length runs past the end of the file.
        (b"HEP3\xff\xffxx", 2, "exceeds"),
    ];
    for (junk, after, what) in cases {
        let mut file = frames[..after].concat();
        file.extend_from_slice(junk);
        file.extend_from_slice(&frames[after..].concat());
        let path = temp_file(&format!("junk-after-{after}.bin"), &file);
        let out = hep_server([PathBuf::from("decode"), path]);
        let stderr = String::from_utf8(out.stderr.clone()).unwrap();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(records(&out).len(), 12, "every frame decodes: {stderr}");
        let at = offset_of(after);
        let resumed = at + junk.len();
        assert!(
            stderr.contains(&format!("(byte {at}): ")) && stderr.contains(what),
            "names the byte and the problem: {stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "skipped {} bytes, resuming at byte {resumed}",
                junk.len()
            )),
            "{stderr}"
        );
        assert!(
            stderr.ends_with("decoded 12 messages, 1 errors\n"),
            "{stderr}"
        );
    }
}

#[test]
fn dash_reads_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hep-server"))
        .args(["decode", "--format", "text", "-"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stream = std::fs::read(kamailio("v3-tcp-stream.bin")).unwrap();
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 12);
    assert!(
        stderr.ends_with("decoded 12 messages, 0 errors\n"),
        "{stderr}"
    );
    // Standard input is read once: `-` twice is a usage error.
    let out = hep_server(["decode", "-", "-"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`-`"));
}
