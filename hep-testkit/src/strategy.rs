//! proptest strategies for HEP messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use hep_proto::{AddressFamily, Chunk, HepMessage, HepVersion, Payload, ProtoType};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// Chunks that decoding keeps raw: vendor chunks and generic types without a field.
pub fn kept_chunk() -> impl Strategy<Value = Chunk> {
    prop_oneof![
        (1..=u16::MAX, any::<u16>(), bytes(40)).prop_map(|(v, t, d)| Chunk::new(v, t, d)),
        // Generic octet types without a field of their own, and unknown types.
        (
            prop_oneof![Just(0x22u16), Just(0x24), Just(0x29), 0x2a..0x100u16],
            bytes(40)
        )
            .prop_map(|(t, d)| Chunk::new(0, t, d)),
        any::<u16>().prop_map(|mos| Chunk::new(0, 0x20, mos.to_be_bytes().to_vec())),
    ]
}

/// Any message that HEPv3 can carry: each field present or not, addresses of one family.
pub fn v3_message() -> impl Strategy<Value = HepMessage> {
    let ips = prop_oneof![
        (option::of(any::<u32>()), option::of(any::<u32>())).prop_map(|(s, d)| (
            s.map(|s| IpAddr::V4(Ipv4Addr::from(s))),
            d.map(|d| IpAddr::V4(Ipv4Addr::from(d))),
            AddressFamily::Ipv4
        )),
        (option::of(any::<u128>()), option::of(any::<u128>())).prop_map(|(s, d)| (
            s.map(|s| IpAddr::V6(Ipv6Addr::from(s))),
            d.map(|d| IpAddr::V6(Ipv6Addr::from(d))),
            AddressFamily::Ipv6
        )),
    ];
    (
        (
            ips,
            any::<bool>(),
            option::of(any::<u8>()),
            option::of(any::<u16>()),
            option::of(any::<u16>()),
        ),
        (
            option::of(any::<u32>()),
            option::of(any::<u32>()),
            option::of(any::<u8>()),
            option::of(any::<u32>()),
        ),
        (
            option::of(bytes(24)),
            option::of(bytes(24)),
            option::of(any::<u16>()),
            option::of(bytes(24)),
        ),
        (bytes(600), vec(kept_chunk(), 0..4)),
    )
        .prop_map(|(a, b, c, d)| {
            let ((src_ip, dst_ip, fam), with_family, ip_proto, src_port, dst_port) = a;
            let (ts_sec, ts_usec, proto_type, capture_id) = b;
            let (auth_key, correlation_id, vlan, node_name) = c;
            let (payload, chunks) = d;
            HepMessage {
                version: Some(HepVersion::V3),
                family: with_family.then_some(fam),
                ip_proto,
                src_ip,
                dst_ip,
                src_port,
                dst_port,
                ts_sec,
                ts_usec,
                proto_type: proto_type.map(ProtoType::from_id),
                capture_id,
                auth_key,
                correlation_id,
                vlan,
                node_name,
                payload: Payload::Plain(payload),
                chunks,
            }
        })
}

/// Any message that HEPv1 or HEPv2 can carry at `version`.
pub fn v12_message(version: HepVersion) -> impl Strategy<Value = HepMessage> {
    let ips = prop_oneof![
        (any::<u32>(), any::<u32>()).prop_map(|(s, d)| (
            IpAddr::V4(Ipv4Addr::from(s)),
            IpAddr::V4(Ipv4Addr::from(d)),
            AddressFamily::Ipv4
        )),
        (any::<u128>(), any::<u128>()).prop_map(|(s, d)| (
            IpAddr::V6(Ipv6Addr::from(s)),
            IpAddr::V6(Ipv6Addr::from(d)),
            AddressFamily::Ipv6
        )),
    ];
    (
        ips,
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        bytes(600),
    )
        .prop_map(move |((s, d, fam), p, sp, dp, sec, usec, cid, payload)| {
            let v2 = version == HepVersion::V2;
            HepMessage {
                version: Some(version),
                family: Some(fam),
                ip_proto: Some(p),
                src_ip: Some(s),
                dst_ip: Some(d),
                src_port: Some(sp),
                dst_port: Some(dp),
                ts_sec: v2.then_some(sec),
                ts_usec: v2.then_some(usec),
                capture_id: v2.then_some(u32::from(cid)),
                payload: Payload::Plain(payload),
                ..HepMessage::default()
            }
        })
}
