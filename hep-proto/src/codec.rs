//! tokio-util codecs for HEP: byte streams (TCP, TLS) and datagrams (UDP).
//!
//! HEP over a stream is HEPv3 frames back to back; the frame's own total length is the
//! only delimiter:
//!
//! ```text
//!  0       4       6                                   total
//!  +-------+-------+-----------------------------------+------------ next frame
//!  | HEP3  | total | chunk | chunk | ... | payload chunk | HEP3 ...
//!  +-------+-------+-----------------------------------+------------
//! ```
//!
//! Two codecs share the framing rules:
//! - [`HepFrameCodec`] yields each frame as [`Bytes`], undecoded: for relays, and for
//!   listeners that decode per frame so that one bad frame costs only itself.
//! - [`HepCodec`] yields decoded [`HepMessage`]s and encodes them.
//!
//! Framing follows the `Decoder` contract: `Ok(None)` asks for more bytes and is never an
//! error. A framing error (bad magic, a total length below 6 or above the maximum) means
//! the stream is out of step: there is no way to find the next frame, so the error ends
//! the stream (the caller closes the connection). The check is done as soon as the bytes
//! are there: a stream of garbage fails on its first byte, not after 64 KiB.
//!
//! Over UDP each datagram is one message of any version (v1, v2 or v3), and an error
//! costs only its own datagram: [`HepDatagramCodec`], for `tokio_util::udp::UdpFramed`.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::decode::{EEP3_MAGIC, HEP3_HEADER_LEN, HEP3_MAGIC};
use crate::encode::ChunkOrder;
use crate::{DecodeError, DecodeOptions, HepCodecError, HepMessage, HepVersion};

/// The largest frame HEP3's u16 length allows, and the default maximum.
pub const MAX_FRAME_LENGTH: usize = u16::MAX as usize;

/// Splits a byte stream into HEP3 frames (see the [module docs](self)).
///
/// ```
/// use bytes::BytesMut;
/// use hep_proto::HepFrameCodec;
/// use tokio_util::codec::Decoder;
///
/// let stream = include_bytes!("../../hep-testkit/testdata/kamailio/v3-tcp-stream.bin");
/// let mut codec = HepFrameCodec::new();
/// let mut buf = BytesMut::from(&stream[..]);
/// let mut frames = 0;
/// while let Some(frame) = codec.decode(&mut buf).unwrap() {
///     assert_eq!(&frame[..4], b"HEP3");
///     frames += 1;
/// }
/// assert_eq!(frames, 12);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HepFrameCodec {
    max_frame_length: usize,
    accept_eep3: bool,
}

impl Default for HepFrameCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl HepFrameCodec {
    /// A framer accepting frames up to 65535 bytes, `HEP3` and `EEP3`.
    pub const fn new() -> Self {
        Self {
            max_frame_length: MAX_FRAME_LENGTH,
            accept_eep3: true,
        }
    }

    /// The maximum frame length in force.
    pub const fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// Sets the maximum frame length; a longer frame is an error as soon as its header
    /// is read, before any of it is buffered. Values above 65535 have no effect beyond it.
    pub fn set_max_frame_length(&mut self, max: usize) {
        self.max_frame_length = max;
    }

    /// Whether `EEP3` starts a frame too (default: yes).
    pub fn set_accept_eep3(&mut self, accept: bool) {
        self.accept_eep3 = accept;
    }

    fn check_magic(&self, head: &[u8]) -> Result<(), DecodeError> {
        // The whole magic (every frame but a read that ends inside one): compared as one
        // 4-byte value. `starts_with` on slices calls `memcmp`, 19 instructions a frame.
        if let Ok(whole) = <[u8; 4]>::try_from(head) {
            if whole == HEP3_MAGIC || (self.accept_eep3 && whole == EEP3_MAGIC) {
                return Ok(());
            }
            return Err(DecodeError::BadMagic(whole));
        }
        let ok = HEP3_MAGIC.starts_with(head) || (self.accept_eep3 && EEP3_MAGIC.starts_with(head));
        if ok {
            return Ok(());
        }
        let mut found = [0u8; 4];
        found[..head.len()].copy_from_slice(head);
        Err(DecodeError::BadMagic(found))
    }
}

impl Decoder for HepFrameCodec {
    type Item = Bytes;
    type Error = HepCodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, HepCodecError> {
        self.check_magic(&src[..src.len().min(4)])?;
        let Some(&[_, _, _, _, hi, lo]) = src.get(..HEP3_HEADER_LEN) else {
            return Ok(None);
        };
        let total = u16::from_be_bytes([hi, lo]);
        let len = usize::from(total);
        if len < HEP3_HEADER_LEN {
            // A zero-length frame would never advance the stream (OpenSIPS master spins on it).
            return Err(DecodeError::TotalLengthTooSmall(total).into());
        }
        if len > self.max_frame_length {
            return Err(DecodeError::FrameTooLong {
                len,
                max: self.max_frame_length,
            }
            .into());
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        Ok(Some(src.split_to(len).freeze()))
    }
}

impl Encoder<Bytes> for HepFrameCodec {
    type Error = HepCodecError;

    /// Writes an already encoded frame unchanged (a relay forwarding what it received).
    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> Result<(), HepCodecError> {
        dst.extend_from_slice(frame.chunk());
        Ok(())
    }
}

/// Decodes a stream of HEP3 frames into [`HepMessage`]s and encodes messages as HEP3.
///
/// A frame that is framed correctly but whose chunks are invalid is also an error here;
/// a listener that wants to skip such a frame and keep the connection uses
/// [`HepFrameCodec`] and decodes each frame itself.
///
/// ```
/// use bytes::BytesMut;
/// use hep_proto::{HepCodec, HepMessage, ProtoType};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = HepCodec::new();
/// let msg = HepMessage::builder().proto_type(ProtoType::Log).payload("hello").build();
/// let mut buf = BytesMut::new();
/// codec.encode(&msg, &mut buf).unwrap();
/// codec.encode(&msg, &mut buf).unwrap();
/// assert_eq!(codec.decode(&mut buf).unwrap().unwrap().payload.bytes(), "hello");
/// assert!(codec.decode(&mut buf).unwrap().is_some());
/// assert!(codec.decode(&mut buf).unwrap().is_none());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HepCodec {
    framer: HepFrameCodec,
    options: DecodeOptions,
    order: ChunkOrder,
}

impl HepCodec {
    /// A codec with the default limits and chunk order.
    pub fn new() -> Self {
        Self::default()
    }

    /// A codec with these decode options.
    pub fn with_options(options: DecodeOptions) -> Self {
        let mut framer = HepFrameCodec::new();
        framer.set_accept_eep3(options.accept_eep3());
        Self {
            framer,
            options,
            order: ChunkOrder::default(),
        }
    }

    /// The framer, to read or change its maximum frame length.
    pub fn framer_mut(&mut self) -> &mut HepFrameCodec {
        &mut self.framer
    }

    /// Sets the chunk order used when encoding.
    pub fn set_chunk_order(&mut self, order: ChunkOrder) {
        self.order = order;
    }
}

impl Decoder for HepCodec {
    type Item = HepMessage;
    type Error = HepCodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<HepMessage>, HepCodecError> {
        match self.framer.decode(src)? {
            Some(frame) => Ok(Some(self.options.decode(&frame)?)),
            None => Ok(None),
        }
    }
}

impl Encoder<&HepMessage> for HepCodec {
    type Error = HepCodecError;

    fn encode(&mut self, msg: &HepMessage, dst: &mut BytesMut) -> Result<(), HepCodecError> {
        msg.encode_to(HepVersion::V3, self.order, dst)?;
        Ok(())
    }
}

/// Decodes each UDP datagram as one HEP message (v1, v2 or v3, told by its first bytes)
/// and encodes each message as one datagram, for `tokio_util::udp::UdpFramed`.
///
/// # The datagram contract
/// `UdpFramed` receives a datagram into its buffer and calls
/// [`decode_eof`](Decoder::decode_eof) on it until that returns `Ok(None)`; an `Err` is
/// yielded as an item and the stream goes on. So:
/// - the whole buffer is one datagram: it is taken out of the buffer in one piece (zero
///   copy: the message's payload is a slice of it) and decoded;
/// - an empty buffer gives `Ok(None)` (the datagram was consumed by the previous call);
/// - on error the buffer is left **empty** too, before the `Err` is returned, so that one
///   bad datagram is reported once and never poisons the next (a codec that left the bytes
///   there would fail on them again on every poll).
///
/// [`decode`](Decoder::decode) does the same as `decode_eof`. This codec is for datagram
/// sockets only: on a byte stream a partial read is not a datagram; use [`HepCodec`].
///
/// # Note
/// The decoded message shares the receive buffer, as every zero-copy decoder does: while
/// messages are alive, `UdpFramed` cannot reuse that memory for the next datagram and
/// allocates a fresh buffer instead. A collector that keeps messages for long copies out
/// the parts it keeps.
///
/// ```
/// use bytes::BytesMut;
/// use hep_proto::{HepDatagramCodec, HepMessage, HepVersion};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = HepDatagramCodec::new();
/// codec.set_version(HepVersion::V2);
/// let msg = HepMessage::builder()
///     .src("10.0.0.1:5060".parse().unwrap())
///     .dst("10.0.0.2:5060".parse().unwrap())
///     .payload("OPTIONS sip:x SIP/2.0\r\n\r\n")
///     .build();
///
/// // A bad datagram is an error, and it is gone: the next one decodes.
/// let mut buf = BytesMut::from(&b"not HEP at all"[..]);
/// assert!(codec.decode_eof(&mut buf).is_err());
/// assert!(buf.is_empty());
///
/// codec.encode(&msg, &mut buf).unwrap();
/// let got = codec.decode_eof(&mut buf).unwrap().unwrap();
/// assert_eq!(got.version, Some(HepVersion::V2));
/// assert_eq!(got.payload.bytes(), "OPTIONS sip:x SIP/2.0\r\n\r\n");
/// assert!(codec.decode_eof(&mut buf).unwrap().is_none());
/// ```
///
/// A receive loop (the IO lives in the caller; see `hep-transport` for the collector's):
///
/// ```no_run
/// use futures_util::StreamExt as _;
/// use hep_proto::HepDatagramCodec;
/// use tokio::net::UdpSocket;
/// use tokio_util::udp::UdpFramed;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let socket = UdpSocket::bind("127.0.0.1:9060").await?;
/// let mut datagrams = UdpFramed::new(socket, HepDatagramCodec::new());
/// while let Some(item) = datagrams.next().await {
///     match item {
///         Ok((msg, from)) => println!("{from}: {:?}", msg.proto_type),
///         // One bad datagram: count it and go on with the next.
///         Err(e) => eprintln!("dropped a datagram: {e}"),
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct HepDatagramCodec {
    options: DecodeOptions,
    version: HepVersion,
    order: ChunkOrder,
}

impl Default for HepDatagramCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl HepDatagramCodec {
    /// A codec with the default decode options that encodes HEPv3 in the default chunk
    /// order.
    pub fn new() -> Self {
        Self::with_options(DecodeOptions::default())
    }

    /// A codec with these decode options.
    pub fn with_options(options: DecodeOptions) -> Self {
        Self {
            options,
            version: HepVersion::V3,
            order: ChunkOrder::default(),
        }
    }

    /// The decode options in force.
    pub const fn options(&self) -> DecodeOptions {
        self.options
    }

    /// The version messages are encoded as.
    pub const fn version(&self) -> HepVersion {
        self.version
    }

    /// Sets the version messages are encoded as (default: v3). Decoding accepts every
    /// version whatever this is.
    pub fn set_version(&mut self, version: HepVersion) {
        self.version = version;
    }

    /// Sets the chunk order used when encoding v3.
    pub fn set_chunk_order(&mut self, order: ChunkOrder) {
        self.order = order;
    }
}

impl Decoder for HepDatagramCodec {
    type Item = HepMessage;
    type Error = HepCodecError;

    /// Decodes the whole buffer as one datagram; see the [type docs](HepDatagramCodec).
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<HepMessage>, HepCodecError> {
        if src.is_empty() {
            return Ok(None);
        }
        // Take the datagram out first: `src` is empty whatever the outcome, so a bad
        // datagram is reported once and the next poll goes on to the next datagram.
        let datagram = src.split().freeze();
        Ok(Some(self.options.decode(&datagram)?))
    }

    /// The same as [`decode`](Self::decode): `UdpFramed` calls this once per datagram.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<HepMessage>, HepCodecError> {
        self.decode(src)
    }
}

impl Encoder<&HepMessage> for HepDatagramCodec {
    type Error = HepCodecError;

    /// Appends `msg` encoded as the chosen [`version`](HepDatagramCodec::version); nothing
    /// is appended on error.
    fn encode(&mut self, msg: &HepMessage, dst: &mut BytesMut) -> Result<(), HepCodecError> {
        msg.encode_to(self.version, self.order, dst)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EncodeError;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let msg = HepMessage::builder().payload(payload.to_vec()).build();
        msg.encode(HepVersion::V3).unwrap().to_vec()
    }

    #[test]
    fn read_single_frame_one_byte_at_a_time() {
        let wire = frame(b"INVITE");
        let mut codec = HepFrameCodec::new();
        let mut buf = BytesMut::new();
        for (i, b) in wire.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let out = codec.decode(&mut buf).unwrap();
            assert_eq!(out.is_some(), i == wire.len() - 1, "byte {i}");
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn garbage_fails_on_the_first_byte() {
        let mut buf = BytesMut::from(&b"G"[..]);
        let err = HepFrameCodec::new().decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            HepCodecError::Decode(DecodeError::BadMagic([b'G', 0, 0, 0]))
        ));
    }

    #[test]
    fn zero_length_frame_is_an_error_not_a_spin() {
        let mut buf = BytesMut::from(&b"HEP3\x00\x00"[..]);
        let err = HepFrameCodec::new().decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            HepCodecError::Decode(DecodeError::TotalLengthTooSmall(0))
        ));
    }

    #[test]
    fn max_frame_len_is_checked_from_the_header() {
        let mut codec = HepFrameCodec::new();
        codec.set_max_frame_length(100);
        let mut buf = BytesMut::from(&b"HEP3\x01\x00"[..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            HepCodecError::Decode(DecodeError::FrameTooLong { len: 256, max: 100 })
        ));
    }

    #[test]
    fn two_frames_in_one_read_come_out_in_order() {
        let mut wire = frame(b"one");
        wire.extend(frame(b"two"));
        let mut codec = HepCodec::new();
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(
            codec.decode(&mut buf).unwrap().unwrap().payload.bytes(),
            "one"
        );
        assert_eq!(
            codec.decode(&mut buf).unwrap().unwrap().payload.bytes(),
            "two"
        );
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    // ===== HepDatagramCodec =====

    const V1: &[u8] = include_bytes!("../../hep-testkit/testdata/kamailio/v1-udp-0001.hep");
    const V2: &[u8] = include_bytes!("../../hep-testkit/testdata/kamailio/v2-udp-ipv6-0001.hep");
    const V3: &[u8] = include_bytes!("../../hep-testkit/testdata/kamailio/v3-udp-0001.hep");

    #[test]
    fn datagram_empty_buffer_is_none() {
        let mut codec = HepDatagramCodec::new();
        let mut buf = BytesMut::new();
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    }

    #[test]
    fn datagram_detects_every_version() {
        let mut codec = HepDatagramCodec::new();
        for (wire, version) in [
            (V1, HepVersion::V1),
            (V2, HepVersion::V2),
            (V3, HepVersion::V3),
        ] {
            let mut buf = BytesMut::from(wire);
            let msg = codec.decode_eof(&mut buf).unwrap().unwrap();
            assert_eq!(msg.version, Some(version));
            assert!(buf.is_empty(), "the whole datagram is consumed");
            assert!(codec.decode_eof(&mut buf).unwrap().is_none());
        }
    }

    /// The `UdpFramed` contract: after an error the buffer is empty, so the next call
    /// sees the next datagram, not the bad one again.
    #[test]
    fn udp_bad_datagram_does_not_end_stream() {
        let mut codec = HepDatagramCodec::new();
        let mut buf = BytesMut::from(&V3[..V3.len() - 10]); // total length > bytes received
        let err = codec.decode_eof(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            HepCodecError::Decode(DecodeError::TotalLengthExceedsData { .. })
        ));
        assert!(buf.is_empty());
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());

        buf.extend_from_slice(V3);
        let msg = codec.decode_eof(&mut buf).unwrap().unwrap();
        assert_eq!(msg.capture_id, Some(2001));
    }

    /// `decode` follows the same rule as `decode_eof`.
    #[test]
    fn datagram_decode_clears_on_error_too() {
        let mut codec = HepDatagramCodec::new();
        let mut buf = BytesMut::from(&b"\x02\x10\x07"[..]);
        assert!(codec.decode(&mut buf).is_err());
        assert!(buf.is_empty());
    }

    #[test]
    fn datagram_encodes_the_chosen_version() {
        let msg = HepMessage::decode(Bytes::from_static(V3)).unwrap();
        let mut codec = HepDatagramCodec::new();
        assert_eq!(codec.version(), HepVersion::V3);
        for version in [HepVersion::V1, HepVersion::V2, HepVersion::V3] {
            codec.set_version(version);
            let mut buf = BytesMut::new();
            codec.encode(&msg, &mut buf).unwrap();
            assert_eq!(buf, msg.encode(version).unwrap(), "{version:?}");
            let back = codec.decode_eof(&mut buf).unwrap().unwrap();
            assert_eq!(back.version, Some(version));
            assert_eq!(back.payload, msg.payload);
            assert_eq!((back.src(), back.dst()), (msg.src(), msg.dst()));
        }
    }

    /// Kamailio's v3 chunk order is the spec's: encoding in it gives the vector back.
    #[test]
    fn datagram_encodes_in_the_chosen_order() {
        let msg = HepMessage::decode(Bytes::from_static(V3)).unwrap();
        let mut codec = HepDatagramCodec::new();
        codec.set_chunk_order(ChunkOrder::Spec);
        let mut buf = BytesMut::new();
        codec.encode(&msg, &mut buf).unwrap();
        assert_eq!(buf, V3);
    }

    #[test]
    fn datagram_encode_error_appends_nothing() {
        // v1/v2 need both addresses.
        let msg = HepMessage::builder().payload("x").build();
        let mut codec = HepDatagramCodec::new();
        codec.set_version(HepVersion::V2);
        let mut buf = BytesMut::new();
        let err = codec.encode(&msg, &mut buf).unwrap_err();
        assert!(matches!(
            err,
            HepCodecError::Encode(EncodeError::MissingAddresses)
        ));
        assert!(buf.is_empty());
    }
}
