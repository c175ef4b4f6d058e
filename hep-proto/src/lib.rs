//! Sans-IO codec for HEP, the Homer Encapsulation Protocol, versions 1, 2 and 3.
//!
//! SIP proxies, SBCs, media servers and capture agents mirror their signalling to a
//! capture server as HEP. This crate turns bytes into [`HepMessage`]s and back. It does
//! no IO and reads no clock (like `quinn-proto` and `rustls`): sockets live in
//! `hep-transport`, and the capture time is always a parameter.
//!
//! # Wire format
//!
//! HEPv3 is a control header followed by typed chunks; every length includes its header:
//!
//! ```text
//!  0      4        6
//!  +------+--------+--------------------------------------------------------+
//!  | HEP3 | total  | chunk ... chunk                                        |
//!  +------+--------+--------------------------------------------------------+
//!  chunk:  +---------+---------+---------+-----------------+
//!          | vendor  |  type   | length  | value           |   all big-endian
//!          | u16     |  u16    | u16 (6+)| length - 6      |
//!          +---------+---------+---------+-----------------+
//! ```
//!
//! HEPv1/v2 are a fixed 8-byte header (version, header length, family, IP protocol,
//! ports), the addresses (8 or 32 bytes), for v2 a 12-byte little-endian time block
//! (seconds, microseconds, 16-bit capture id, 2 padding bytes), then the payload to the
//! end of the datagram.
//!
//! # What decoding checks
//!
//! Every length, before it is used: the total length against the buffer, each chunk
//! against what remains, the exact size of every fixed-size generic chunk. A vendor chunk
//! (vendor id not 0) never sets a generic field. A v3 message needs a payload chunk. The
//! family chunk must agree with the address chunks. Chunk 0x0010 is inflated (gzip or
//! zlib) under a cap. Decoding never panics, on any input (fuzzed), and borrows: payloads
//! and other byte fields are [`bytes::Bytes`] slices of the input buffer.
//!
//! ```
//! use bytes::Bytes;
//! use hep_proto::{HepMessage, HepVersion, ProtoType};
//!
//! let wire = Bytes::from_static(include_bytes!("../../hep-testkit/testdata/kamailio/v3-udp-0001.hep"));
//! let msg = HepMessage::decode(wire.clone())?;
//! assert_eq!(msg.version, Some(HepVersion::V3));
//! assert_eq!(msg.proto_type, Some(ProtoType::Sip));
//! assert_eq!(msg.capture_id, Some(2001));
//! assert!(msg.payload.bytes().starts_with(b"INVITE sip:service@127.0.0.1:5060"));
//! # Ok::<(), hep_proto::DecodeError>(())
//! ```
//!
//! # Layout
//! - `types`: [`HepVersion`], [`AddressFamily`], [`ProtoType`], [`ip_proto`] numbers.
//! - `chunk`: [`ChunkType`] (the spec's generic chunks) and raw [`Chunk`]s.
//! - `message`: [`HepMessage`], [`Payload`], [`HepMessageBuilder`].
//! - `decode` / `encode`: [`DecodeOptions`], [`ChunkOrder`], `HepMessage::{decode, encode}`.
//! - `view`: [`HepView`], a checked reading of a message in place, allocating nothing.
//! - `compress`: chunk 0x0010, gzip and zlib, with a cap.
//! - `codec` (feature `codec`, on by default): [`HepFrameCodec`] and [`HepCodec`],
//!   tokio-util codecs for streams, and [`HepDatagramCodec`] for UDP.
//! - `received`: [`Received`] (a decoded message, the bytes it came in and its
//!   [`RecvInfo`]), [`Transport`], [`ClientIdentity`]: what a listener hands to a service,
//!   as plain data, so that callbacks need no IO crate.
//! - `pack`: [`pack_hep`], the seed's packer.
//! - `error`: [`DecodeError`], [`EncodeError`], and the codecs' `HepCodecError`.
//! - [`sip`]: a zero-copy summary of a SIP payload (start line, Call-ID, CSeq, From/To
//!   user and tag, the top Via's branch, any header by name), the one every crate uses.
//!
//! # Features
//! - `codec` (default): the tokio-util codecs ([`codec`] module, `HepCodecError`), for
//!   reading and writing HEP with `FramedRead`/`FramedWrite`/`UdpFramed`. It adds
//!   `tokio-util` (and, through it, `tokio` without a runtime). Without it the crate
//!   depends on `bytes`, `flate2`, `memchr` and `thiserror` only:
//!
//! ```toml
//! hep-proto = { version = "0.1", default-features = false }
//! ```
#![doc(test(attr(deny(warnings))))]
// The docs above link to the codecs, which are not there without their feature.
#![cfg_attr(not(feature = "codec"), allow(rustdoc::broken_intra_doc_links))]
#![warn(clippy::unwrap_used)]
#![warn(clippy::exhaustive_enums)]

pub mod chunk;
#[cfg(feature = "codec")]
pub mod codec;
mod compress;
mod decode;
mod encode;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod message;
mod pack;
mod received;
pub mod sip;
mod types;
mod view;

/// The README's examples, compiled and run as doctests (one of them uses the codecs).
#[cfg(all(doctest, feature = "codec"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use chunk::{Chunk, ChunkShape, ChunkType};
#[cfg(feature = "codec")]
pub use codec::{HepCodec, HepDatagramCodec, HepFrameCodec};
pub use compress::gzip_payload;
pub use decode::{
    DEFAULT_MAX_INFLATED_LEN, DecodeOptions, EEP3_MAGIC, HEP3_HEADER_LEN, HEP3_MAGIC,
};
pub use encode::ChunkOrder;
#[cfg(feature = "codec")]
pub use error::HepCodecError;
pub use error::{DecodeError, EncodeError};
pub use message::{HepMessage, HepMessageBuilder, Payload};
pub use pack::{PackSettings, pack_hep};
pub use received::{ClientIdentity, Received, RecvInfo, Transport};
pub use types::{AddressFamily, HEP_VERSION, HepVersion, ProtoType, hep_version, ip_proto};
pub use view::{ChunkView, HepView, PayloadView};
