//! `pack_hep`: a captured packet in, HEP wire bytes out.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use crate::encode::ChunkOrder;
use crate::{EncodeError, HepMessage, HepVersion, ProtoType};

/// What [`pack_hep`] writes besides the packet itself: the node's settings and the
/// capture time (hep-proto reads no clock, so the caller passes the time in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSettings {
    /// Version to write (the seed's `hep_version`; default 3).
    pub version: HepVersion,
    /// This node's capture id (the seed's `hep_capture_id`; default 1).
    pub capture_id: u32,
    /// What the payload is (default SIP). Not carried by v1/v2.
    pub proto_type: ProtoType,
    /// Capture time, seconds and microseconds. Not carried by v1.
    pub timestamp: (u32, u32),
    /// Authentication key (chunk 0x000e, v3 only).
    pub auth_key: Option<Bytes>,
    /// Correlation id (chunk 0x0011, v3 only).
    pub correlation_id: Option<Bytes>,
}

impl Default for PackSettings {
    fn default() -> Self {
        Self {
            version: crate::HEP_VERSION,
            capture_id: 1,
            proto_type: ProtoType::Sip,
            timestamp: (0, 0),
            auth_key: None,
            correlation_id: None,
        }
    }
}

/// Packs a captured packet as HEP: OpenSIPS's `pack_hep(from, to, proto, payload)`.
///
/// `ip_proto` is the transport the packet was captured on (see
/// [`ip_proto`](crate::ip_proto)). v3 is written in the positional-parser-safe
/// [`ChunkOrder::Generic`] order with every generic chunk present.
///
/// ```
/// use hep_proto::{HepVersion, PackSettings, ip_proto, pack_hep};
///
/// let settings = PackSettings { version: HepVersion::V2, capture_id: 228,
///     timestamp: (1313440459, 120000), ..PackSettings::default() };
/// let wire = pack_hep("192.168.0.1:5060".parse().unwrap(), "192.168.0.2:5060".parse().unwrap(),
///     ip_proto::UDP, "INVITE sip:bob", &settings).unwrap();
/// assert_eq!(wire.len(), 42);
/// ```
///
/// # Errors
/// [`EncodeError`] when the payload is too long for v3, `from` and `to` are of different
/// families, or the capture id does not fit v2's 16 bits.
pub fn pack_hep(
    from: SocketAddr,
    to: SocketAddr,
    ip_proto: u8,
    payload: impl Into<Bytes>,
    settings: &PackSettings,
) -> Result<Bytes, EncodeError> {
    if from.is_ipv4() != to.is_ipv4() {
        return Err(EncodeError::FamilyMismatch);
    }
    let mut b = HepMessage::builder()
        .src(from)
        .dst(to)
        .ip_proto(ip_proto)
        .timestamp(settings.timestamp.0, settings.timestamp.1)
        .proto_type(settings.proto_type)
        .capture_id(settings.capture_id)
        .payload(payload);
    if let Some(k) = &settings.auth_key {
        b = b.auth_key(k.clone());
    }
    if let Some(c) = &settings.correlation_id {
        b = b.correlation_id(c.clone());
    }
    let msg = b.build();
    let mut dst = BytesMut::new();
    msg.encode_to(settings.version, ChunkOrder::Generic, &mut dst)?;
    Ok(dst.freeze())
}
