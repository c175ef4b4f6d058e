//! The HEP bytes a received message goes on as: what a relay forwards and what the store
//! keeps.

use bytes::Bytes;
use hep_proto::{EncodeError, HepVersion};
use hep_transport::Received;

/// The bytes of `m` in HEP `version`: the very bytes it was received as when no callback
/// changed it and it arrived in `version` (no copy, no re-encoding: a relay forwards what
/// the agent sent), else the message encoded in `version` (so that what goes on is what
/// the outputs saw, e.g. without a stripped auth key).
///
/// ```
/// use hep_proto::{HepMessage, HepVersion};
/// use hep_server::formats::hep::wire_bytes;
/// use hep_transport::{Received, RecvInfo, Transport};
///
/// let wire = HepMessage::builder()
///     .src("10.0.0.1:5060".parse().unwrap())
///     .dst("10.0.0.2:5060".parse().unwrap())
///     .payload("hello")
///     .build()
///     .encode(HepVersion::V3)?;
/// let at = "127.0.0.1:9060".parse().unwrap();
/// let mut m = Received::new(
///     HepMessage::decode(wire.clone()).unwrap(),
///     wire.clone(),
///     RecvInfo::new(Transport::Udp, at, at),
/// );
/// assert_eq!(wire_bytes(&m, HepVersion::V3)?.as_ptr(), wire.as_ptr(), "the same bytes");
/// m.message_mut().node_name = Some("edge-1".into());
/// assert_ne!(wire_bytes(&m, HepVersion::V3)?, wire, "changed: encoded again");
/// # Ok::<(), hep_proto::EncodeError>(())
/// ```
///
/// # Errors
/// A changed message (or one for another version) that cannot be encoded in `version`.
#[inline]
pub fn wire_bytes(m: &Received, version: HepVersion) -> Result<Bytes, EncodeError> {
    if !m.modified && m.message.version == Some(version) {
        Ok(m.wire.clone())
    } else {
        m.message.encode(version)
    }
}
