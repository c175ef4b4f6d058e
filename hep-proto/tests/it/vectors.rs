//! Golden vectors from independent implementations decode to the values independent
//! decoders read from them, and our encoder reproduces the published examples byte for byte.

use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
use hep_proto::{
    AddressFamily, ChunkOrder, HepFrameCodec, HepMessage, HepVersion, PackSettings, ProtoType,
    ip_proto, pack_hep,
};
use hep_testkit::{hex, vectors};
use serde_json::Value;
use tokio_util::codec::Decoder;

fn decode(bytes: &[u8]) -> HepMessage {
    HepMessage::decode(Bytes::copy_from_slice(bytes)).expect("vector decodes")
}

/// Every Kamailio vector decodes to what hepdump.py read from it, field by field.
#[test]
fn every_kamailio_vector_matches_hepdump() {
    let mut checked = 0;
    for line in vectors::hepdump_lines() {
        let want: Value = serde_json::from_str(&line).unwrap();
        let file = want["file"].as_str().unwrap();
        if !file.ends_with(".hep") {
            continue; // the raw TCP stream; its frames are the v3-tcp-*.hep files
        }
        let msg = decode(&vectors::read(&format!("kamailio/{file}")));
        let version = want["version"].as_u64().unwrap();
        assert_eq!(
            msg.version.map(|v| u64::from(v.number())),
            Some(version),
            "{file}"
        );

        // hepdump gives v1/v2 fields at the top level and v3 as a chunk list.
        let mut fields = serde_json::Map::new();
        if version == 3 {
            for c in want["chunks"].as_array().unwrap() {
                fields.insert(c["name"].as_str().unwrap().to_owned(), c["value"].clone());
            }
        } else {
            fields = want.as_object().unwrap().clone();
        }
        let num = |k: &str| fields.get(k).and_then(Value::as_u64);
        let ip = |k: &str, alt: &str| {
            fields
                .get(k)
                .or_else(|| fields.get(alt))
                .map(|v| v.as_str().unwrap().parse::<IpAddr>().unwrap())
        };
        assert_eq!(
            msg.family.map(|f| u64::from(f.wire())),
            num("ip_family").or_else(|| num("family")),
            "{file}"
        );
        assert_eq!(msg.ip_proto.map(u64::from), num("ip_proto"), "{file}");
        assert_eq!(
            msg.src_ip,
            ip("src_ip4", "src_ip").or_else(|| ip("src_ip6", "src_ip")),
            "{file}"
        );
        assert_eq!(
            msg.dst_ip,
            ip("dst_ip4", "dst_ip").or_else(|| ip("dst_ip6", "dst_ip")),
            "{file}"
        );
        assert_eq!(msg.src_port.map(u64::from), num("src_port"), "{file}");
        assert_eq!(msg.dst_port.map(u64::from), num("dst_port"), "{file}");
        assert_eq!(msg.ts_sec.map(u64::from), num("ts_sec"), "{file}");
        assert_eq!(msg.ts_usec.map(u64::from), num("ts_usec"), "{file}");
        assert_eq!(msg.capture_id.map(u64::from), num("capture_id"), "{file}");
        assert_eq!(
            msg.proto_type.map(|t| u64::from(t.id())),
            num("proto_type"),
            "{file}"
        );
        let text = |k: &str| fields.get(k).and_then(Value::as_str).map(str::as_bytes);
        assert_eq!(msg.auth_key.as_deref(), text("auth_key"), "{file}");
        assert_eq!(
            msg.correlation_id.as_deref(),
            text("correlation_id"),
            "{file}"
        );
        assert_eq!(Some(&msg.payload.bytes()[..]), text("payload"), "{file}");
        checked += 1;
    }
    assert_eq!(checked, 87, "vectors checked");
}

/// The HEP3 spec's example (rev 37, 113 bytes) decodes as documented and is re-encoded
/// byte for byte in the spec's chunk order.
#[test]
fn spec_example_round_trips_byte_for_byte() {
    let wire = vectors::read("spec/hep3-spec-example.hep");
    let msg = decode(&wire);
    assert_eq!(msg.src(), Some("212.202.0.1:12010".parse().unwrap()));
    assert_eq!(msg.dst(), Some("82.116.0.211:5060".parse().unwrap()));
    assert_eq!((msg.ts_sec, msg.ts_usec), (Some(1313440459), Some(120000)));
    assert_eq!(msg.capture_id, Some(228));
    assert_eq!(msg.proto_type, Some(ProtoType::Sip));
    assert_eq!(msg.payload.bytes(), "INVITE sip:bob");

    let mut out = BytesMut::new();
    msg.encode_to(HepVersion::V3, ChunkOrder::Spec, &mut out)
        .unwrap();
    assert_eq!(out, wire);
}

/// heplify-server's decoder test packet (778 bytes, empty auth key chunk) re-encodes
/// byte for byte, and the empty auth key stays present-but-empty.
#[test]
fn heplify_test_packet_round_trips_byte_for_byte() {
    let wire = hex(include_str!("heplify-hep-packet.hex"));
    assert_eq!(wire.len(), 778);
    let msg = decode(&wire);
    assert_eq!(msg.auth_key.as_deref(), Some(&b""[..]));
    assert_eq!(msg.payload.bytes().len(), 673);
    let mut out = BytesMut::new();
    msg.encode_to(HepVersion::V3, ChunkOrder::Spec, &mut out)
        .unwrap();
    assert_eq!(out, wire);
}

/// hep-protocol.md g.6: a HEPv2 packet built from the C struct layout, 42 bytes.
#[test]
fn pack_hep_v2_matches_the_c_struct_layout() {
    let settings = PackSettings {
        version: HepVersion::V2,
        capture_id: 228,
        timestamp: (1313440459, 120000),
        ..PackSettings::default()
    };
    let wire = pack_hep(
        "192.168.0.1:5060".parse().unwrap(),
        "192.168.0.2:5060".parse().unwrap(),
        ip_proto::UDP,
        "INVITE sip:bob",
        &settings,
    )
    .unwrap();
    assert_eq!(
        wire,
        hex("0210021113c413c4c0a80001c0a80002cb82494ec0d40100e4000000494e56495445207369703a626f62")
    );
}

/// Packing the spec example's fields in the default (positional-parser) order puts the
/// `hep_generic` block first and the addresses after it.
#[test]
fn pack_hep_v3_writes_the_generic_block_first() {
    let settings = PackSettings {
        capture_id: 228,
        timestamp: (1313440459, 120000),
        ..PackSettings::default()
    };
    let wire = pack_hep(
        "212.202.0.1:12010".parse().unwrap(),
        "82.116.0.211:5060".parse().unwrap(),
        ip_proto::UDP,
        "INVITE sip:bob",
        &settings,
    )
    .unwrap();
    let types: Vec<u16> = chunk_types(&wire);
    assert_eq!(types, [1, 2, 7, 8, 9, 10, 11, 12, 3, 4, 15]);
    // Same facts as the spec example, only the order differs.
    assert_eq!(
        decode(&wire),
        decode(&vectors::read("spec/hep3-spec-example.hep"))
    );
}

fn chunk_types(wire: &[u8]) -> Vec<u16> {
    let mut off = 6;
    let mut out = vec![];
    while off < wire.len() {
        out.push(u16::from_be_bytes([wire[off + 2], wire[off + 3]]));
        off += usize::from(u16::from_be_bytes([wire[off + 4], wire[off + 5]]));
    }
    out
}

/// hep-protocol.md g.5: captagent's chunk 0x10 holds a zlib stream (OpenSIPS cannot
/// read it); it inflates to a 488-byte 401, and the compressed bytes stay as received.
#[test]
fn captagent_zlib_payload_inflates() {
    let wire = Bytes::from(hex(include_str!("captagent-zlib.hex")));
    let msg = HepMessage::decode(wire.clone()).unwrap();
    assert!(msg.payload.is_compressed());
    assert_eq!(msg.payload.bytes().len(), 488);
    assert!(msg.payload.bytes().starts_with(b"SIP/2.0 401 Unauthorized"));
    assert_eq!(msg.ip_proto, Some(ip_proto::TCP));
    assert_eq!(msg.auth_key.as_deref(), Some(&b"myHep"[..]));
    // Re-encoding in captagent's own (generic) order gives back the received bytes.
    assert_eq!(msg.encode(HepVersion::V3).unwrap(), wire);
}

/// hep-protocol.md g.4: a LOG packet from hep-wireshark's pcap.
#[test]
fn hep_wireshark_log_packet() {
    let msg = decode(&hex(include_str!("hep-wireshark-log.hex")));
    assert_eq!(msg.proto_type, Some(ProtoType::Log));
    assert_eq!(msg.capture_id, Some(2001));
    assert_eq!(
        msg.correlation_id.as_deref(),
        Some(&b"qgf3dm9rudi@127.0.0.1"[..])
    );
    assert!(
        msg.payload
            .bytes()
            .starts_with(b"SYSLOG: Processing OPTIONS")
    );
}

/// hep-js vectors, including the one whose UTF-8 it truncated: the lengths are
/// self-consistent, so it decodes, carrying the truncated text.
#[test]
fn hepjs_vectors_decode() {
    let msg = decode(&vectors::read("hepjs/hepjs-v3-options.hep"));
    assert_eq!(msg.src(), Some("192.0.2.10:5060".parse().unwrap()));
    assert_eq!(msg.node_name.as_deref(), Some(&b"2001"[..]));
    assert_eq!(msg.auth_key.as_deref(), Some(&b"hep-secret"[..]));
    assert_eq!(
        msg.correlation_id.as_deref(),
        Some(&b"corr-1@example.test"[..])
    );
    assert_eq!((msg.ts_sec, msg.ts_usec), (Some(1700000000), Some(123456)));

    let msg = decode(&vectors::read("hepjs/hepjs-v3-utf8-truncated.hep"));
    assert_eq!(msg.node_name.as_deref(), Some(&b"node-\x00"[..]));
    let input: Value =
        serde_json::from_slice(&vectors::read("hepjs/hepjs-v3-utf8-truncated.json")).unwrap();
    let full = input["payload"].as_str().unwrap().as_bytes();
    // hep-js sized the chunk in UTF-16 units: 3 bytes short of the UTF-8 text.
    assert_eq!(&msg.payload.bytes()[..], &full[..full.len() - 3]);
}

/// The TCP capture splits into the same 12 frames as the per-frame files, and each
/// decodes to the same message as its file.
#[test]
fn tcp_stream_frames_match_the_split_files() {
    let mut buf = BytesMut::from(&vectors::read("kamailio/v3-tcp-stream.bin")[..]);
    let mut codec = HepFrameCodec::new();
    let files = vectors::kamailio("v3-tcp-");
    for (name, bytes) in &files {
        let frame = codec.decode(&mut buf).unwrap().expect("a frame per file");
        assert_eq!(frame, bytes, "{name}");
    }
    assert!(buf.is_empty());
    assert_eq!(files.len(), 12);
}

/// IPv6 vectors carry the Linux AF_INET6 value 10 and ::1 addresses.
#[test]
fn ipv6_vectors_are_ipv6() {
    for set in ["v2-udp-ipv6-", "v3-udp-ipv6-"] {
        for (name, bytes) in vectors::kamailio(set) {
            let msg = decode(&bytes);
            assert_eq!(msg.family, Some(AddressFamily::Ipv6), "{name}");
            assert_eq!(msg.src_ip, Some("::1".parse().unwrap()), "{name}");
        }
    }
}

/// Re-encoding any Kamailio v3 vector in the spec order gives back its bytes, except
/// hlog packets, which Kamailio writes with the ports swapped.
#[test]
fn kamailio_v3_vectors_re_encode_to_the_same_facts() {
    for set in ["v3-udp-", "v3-udp-ipv6-", "v3-udp-hlog-authkey-", "v3-tcp-"] {
        for (name, bytes) in vectors::kamailio(set) {
            let msg = decode(&bytes);
            let again = HepMessage::decode(msg.encode(HepVersion::V3).unwrap()).unwrap();
            assert_eq!(again, msg, "{name}");
        }
    }
}
