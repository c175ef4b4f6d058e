//! HEP messages from files: raw datagrams, HEP3 stream captures, pcap and pcapng.
//!
//! [`CaptureReader`] tells the format by the first bytes ([`CaptureFormat::detect`]) and
//! yields each HEP message's bytes, undecoded, as a [`Frame`] with where it was found and,
//! for pcap input, how it travelled ([`RecvInfo`] from the IP/UDP/TCP headers: transport,
//! peer = source, listener = destination). Decoding is the caller's (with its own
//! [`DecodeOptions`](hep_proto::DecodeOptions)), so that one bad message costs only itself.
//!
//! - **pcap / pcapng** (read with `pcap-file`): link types Ethernet (with VLAN tags),
//!   Linux cooked capture v1 and v2, raw IP, and BSD loopback/null; then IPv4 or IPv6
//!   (extension headers skipped), then UDP (each payload is one HEP datagram) or TCP (each
//!   direction of a connection is reassembled in sequence order and split into HEP3
//!   frames; retransmitted bytes are skipped; a gap is reported and the stream resumes at
//!   the next segment holding `HEP3`). Other protocols are skipped. IP fragments are
//!   reported, not reassembled.
//! - **HEP3 stream capture**: a file starting with `HEP3` whose first frame is followed
//!   by more bytes (the raw bytes of a HEP-over-TCP connection), split on the frame
//!   lengths. Bytes where a frame should start that are not one (no `HEP3`/`EEP3`, a
//!   length below the header, or one running past the end of the file while a `HEP3`
//!   follows) are reported with their byte offset and skipped up to the next `HEP3`, where
//!   reading resumes: garbage between frames costs only itself.
//! - **datagram**: anything else is one HEP message of any version (a UDP payload).
//!
//! ```
//! use hep_server::formats::capture_file::{CaptureFormat, CaptureReader};
//!
//! let stream = include_bytes!("../../../hep-testkit/testdata/kamailio/v3-tcp-stream.bin");
//! let reader = CaptureReader::from_bytes(stream.to_vec().into()).unwrap();
//! assert_eq!(reader.format(), CaptureFormat::Hep3Stream);
//! assert_eq!(reader.filter(Result::is_ok).count(), 12);
//! ```

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use bytes::{Bytes, BytesMut};
use hep_proto::{EEP3_MAGIC, HEP3_MAGIC, HepCodecError, HepFrameCodec};
use hep_transport::{RecvInfo, Transport};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, PcapError};
use tokio_util::codec::Decoder as _;

/// The kind of file, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CaptureFormat {
    /// One HEP message (v1, v2 or v3) filling the file: a UDP payload.
    Datagram,
    /// HEP3 frames back to back: the bytes of a HEP-over-TCP connection.
    Hep3Stream,
    /// A libpcap file (microsecond or nanosecond, either byte order).
    Pcap,
    /// A pcapng file.
    PcapNg,
}

impl CaptureFormat {
    /// The format of a file starting with `data`.
    ///
    /// ```
    /// use hep_server::formats::capture_file::CaptureFormat;
    /// assert_eq!(CaptureFormat::detect(b"\xd4\xc3\xb2\xa1..."), CaptureFormat::Pcap);
    /// assert_eq!(CaptureFormat::detect(b"\x0a\x0d\x0d\x0a..."), CaptureFormat::PcapNg);
    /// assert_eq!(CaptureFormat::detect(b"HEP3\x00\x06HEP3\x00\x06"), CaptureFormat::Hep3Stream);
    /// assert_eq!(CaptureFormat::detect(b"HEP3\x00\x06"), CaptureFormat::Datagram);
    /// assert_eq!(CaptureFormat::detect(b"HEP3\x00\x06junk"), CaptureFormat::Hep3Stream);
    /// assert_eq!(CaptureFormat::detect(b"\x02\x10..."), CaptureFormat::Datagram);
    /// ```
    pub fn detect(data: &[u8]) -> Self {
        match data.get(..4) {
            Some(
                [0xa1, 0xb2, 0xc3, 0xd4]
                | [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x4d, 0x3c, 0xb2, 0xa1],
            ) => Self::Pcap,
            Some([0x0a, 0x0d, 0x0d, 0x0a]) => Self::PcapNg,
            Some(m) if is_magic(m) => {
                let total = data
                    .get(4..6)
                    .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
                // Anything after the first frame makes a stream: another frame, or bytes
                // the stream reader reports. (As one datagram, the bytes after its length
                // would be ignored, and frames among them lost without a word.)
                if total >= 6 && data.len() > total {
                    Self::Hep3Stream
                } else {
                    Self::Datagram
                }
            }
            _ => Self::Datagram,
        }
    }

    /// A short name: `datagram`, `HEP3 stream`, `pcap`, `pcapng`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Datagram => "datagram",
            Self::Hep3Stream => "HEP3 stream",
            Self::Pcap => "pcap",
            Self::PcapNg => "pcapng",
        }
    }
}

impl fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_magic(m: &[u8]) -> bool {
    m == HEP3_MAGIC || m == EEP3_MAGIC
}

/// `HEP3`/`EEP3`, or the start of one when fewer than 4 bytes are left.
fn starts_like_magic(b: &[u8]) -> bool {
    let n = b.len().min(4);
    HEP3_MAGIC.starts_with(&b[..n]) || EEP3_MAGIC.starts_with(&b[..n])
}

/// Where in a file a message (or an error) was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Location {
    /// The whole file (a datagram file).
    File,
    /// A frame of a HEP3 stream file.
    StreamFrame {
        /// 1-based frame number.
        index: usize,
        /// Byte offset of the frame in the file.
        offset: usize,
    },
    /// A packet of a pcap/pcapng file, numbered from 1 as Wireshark does.
    Packet(usize),
    /// A HEP3 frame reassembled from a TCP flow of a pcap/pcapng file.
    TcpFrame {
        /// The packet that completed the frame (or where the problem showed).
        packet: usize,
        /// 1-based frame number within the flow.
        frame: usize,
        /// The sending side of the flow.
        peer: SocketAddr,
        /// The receiving side of the flow.
        listener: SocketAddr,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File => f.write_str("file"),
            Self::StreamFrame { index, offset } => write!(f, "frame {index} (byte {offset})"),
            Self::Packet(n) => write!(f, "packet {n}"),
            Self::TcpFrame {
                packet,
                frame,
                peer,
                listener,
            } => write!(f, "packet {packet}: tcp {peer} -> {listener} frame {frame}"),
        }
    }
}

/// The bytes of one HEP message found in a file, undecoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Where it was found.
    pub location: Location,
    /// The HEP message's bytes (a zero-copy slice of the file where possible).
    pub wire: Bytes,
    /// How it travelled, from the pcap's IP/UDP/TCP headers; `None` for non-pcap files.
    pub recv: Option<RecvInfo>,
}

/// A file that cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    /// The file is empty.
    #[error("empty file (expected a HEP datagram, a HEP3 stream or a pcap/pcapng file)")]
    Empty,
    /// The pcap/pcapng file header is invalid.
    #[error("invalid {format} file header: {source}")]
    BadHeader {
        /// `pcap` or `pcapng`.
        format: CaptureFormat,
        /// What pcap-file found.
        source: PcapError,
    },
    /// The pcap's link type is not one this reader understands.
    #[error(
        "pcap link type {code} ({name:?}) is not supported (supported: {SUPPORTED_LINKS})",
        code = u32::from(*.0),
        name = .0
    )]
    UnsupportedLink(DataLink),
}

const SUPPORTED_LINKS: &str =
    "Ethernet, Linux cooked capture v1/v2, raw IPv4/IPv6, BSD loopback/null";

/// A message that could not be taken out of a file; the reader goes on after it.
#[derive(Debug, thiserror::Error)]
#[error("{}{kind}", LocationPrefix(*.location))]
pub struct FrameError {
    /// Where.
    pub location: Location,
    /// What.
    pub kind: FrameErrorKind,
}

struct LocationPrefix(Location);

struct Resumed(Option<usize>);

impl fmt::Display for Resumed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(at) => write!(f, "resuming at byte {at}"),
            None => f.write_str("to the end of the file (no HEP3 after them)"),
        }
    }
}

impl fmt::Display for LocationPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Location::File => Ok(()),
            loc => write!(f, "{loc}: "),
        }
    }
}

/// Why a message could not be taken out of a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameErrorKind {
    /// The packet's headers are malformed.
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// A HEP3 stream is out of step (bad magic, bad length): the rest of the stream (or
    /// of the TCP flow, up to the next segment holding `HEP3`) is skipped.
    #[error("HEP3 stream out of step, skipping the rest: {0}")]
    Framing(HepCodecError),
    /// A HEP3 stream file has bytes where a frame should start that are not one: no
    /// `HEP3`/`EEP3`, a length below the header, or a length running past the end of the
    /// file while a `HEP3` follows. They are skipped up to the next `HEP3`/`EEP3`, where
    /// reading resumes (or to the end of the file, when there is none).
    #[error("not a HEP3 frame: {cause}; skipped {skipped} bytes, {}", Resumed(*.resumed_at))]
    OutOfStep {
        /// What was found.
        cause: HepCodecError,
        /// Bytes skipped.
        skipped: usize,
        /// The byte offset of the next frame, `None` at the end of the file.
        resumed_at: Option<usize>,
    },
    /// The stream ends inside a HEP3 frame.
    #[error("stream ends inside a HEP3 frame: {left} bytes left over")]
    Truncated {
        /// Bytes of the incomplete frame.
        left: usize,
    },
    /// Bytes of a TCP flow are missing from the capture.
    #[error(
        "{missing} bytes of the TCP stream are missing from the capture; resuming at the next HEP3 frame"
    )]
    TcpGap {
        /// How many bytes are missing.
        missing: u32,
    },
    /// The capture holds a TCP flow from the middle: its first bytes are the tail of a
    /// frame whose start was not captured.
    #[error(
        "TCP stream captured from its middle: {skipped} bytes before the first HEP3 frame skipped"
    )]
    MidStream {
        /// Bytes skipped.
        skipped: usize,
    },
    /// The capture file ends inside a packet record.
    #[error("file ends inside a packet record (truncated capture)")]
    TruncatedCapture,
    /// The capture file is corrupt from here on.
    #[error("corrupt {format} file, stopping here: {source}")]
    Corrupt {
        /// `pcap` or `pcapng`.
        format: CaptureFormat,
        /// What pcap-file found.
        source: PcapError,
    },
    /// A pcapng interface with a link type this reader does not understand; its other
    /// packets are skipped without further errors.
    #[error(
        "link type {code} ({name:?}) is not supported (supported: {SUPPORTED_LINKS}); skipping this interface",
        code = u32::from(*.0),
        name = .0
    )]
    UnsupportedLink(DataLink),
}

/// Malformed packet headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// A header is cut short.
    #[error("{layer} header truncated: {len} bytes, need {need}")]
    Truncated {
        /// `Ethernet`, `IPv4`, `UDP` ...
        layer: &'static str,
        /// Bytes available.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A length field that is impossible.
    #[error("{layer} {field} {value} is invalid (packet has {len} bytes)")]
    BadLength {
        /// The header.
        layer: &'static str,
        /// The field.
        field: &'static str,
        /// Its value.
        value: usize,
        /// Bytes available.
        len: usize,
    },
    /// Neither IPv4 nor IPv6.
    #[error("IP version {0} (expected 4 or 6)")]
    IpVersion(u8),
    /// An IP fragment.
    #[error("{0} fragment: reassembly of IP fragments is not supported")]
    Fragment(&'static str),
}

/// Reads the HEP messages of one file; see the [module docs](self).
///
/// Yields `Ok(Frame)` per message and `Err(FrameError)` per problem, in file order, and
/// goes on after an error where it can.
pub struct CaptureReader {
    format: CaptureFormat,
    source: Source,
    pending: VecDeque<Result<Frame, FrameError>>,
}

enum Source {
    Datagram(Option<Bytes>),
    Stream {
        data: Bytes,
        index: usize,
        offset: usize,
    },
    Pcap {
        data: Bytes,
        offset: usize,
        parser: PcapParser,
        link: Link,
        packets: Packets,
    },
    PcapNg {
        data: Bytes,
        offset: usize,
        parser: Box<PcapNgParser>,
        packets: Packets,
        bad_interfaces: HashSet<u32>,
    },
    Done,
}

impl CaptureReader {
    /// Reads the file at `path` into memory.
    ///
    /// # Errors
    /// When it cannot be read, is empty, or has an invalid or unsupported pcap header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CaptureError> {
        Self::from_bytes(Bytes::from(std::fs::read(path)?))
    }

    /// A reader over the bytes of a file.
    ///
    /// # Errors
    /// When `data` is empty, or has an invalid or unsupported pcap header.
    pub fn from_bytes(data: Bytes) -> Result<Self, CaptureError> {
        if data.is_empty() {
            return Err(CaptureError::Empty);
        }
        let format = CaptureFormat::detect(&data);
        let source = match format {
            CaptureFormat::Datagram => Source::Datagram(Some(data)),
            CaptureFormat::Hep3Stream => Source::Stream {
                data,
                index: 0,
                offset: 0,
            },
            CaptureFormat::Pcap => {
                let (rest, parser) = PcapParser::new(&data)
                    .map_err(|source| CaptureError::BadHeader { format, source })?;
                let link = parser.header().datalink;
                let link = Link::from_datalink(link).ok_or(CaptureError::UnsupportedLink(link))?;
                Source::Pcap {
                    offset: data.len() - rest.len(),
                    data,
                    parser,
                    link,
                    packets: Packets::default(),
                }
            }
            CaptureFormat::PcapNg => {
                let (rest, parser) = PcapNgParser::new(&data)
                    .map_err(|source| CaptureError::BadHeader { format, source })?;
                Source::PcapNg {
                    offset: data.len() - rest.len(),
                    data,
                    parser: Box::new(parser),
                    packets: Packets::default(),
                    bad_interfaces: HashSet::new(),
                }
            }
        };
        Ok(Self {
            format,
            source,
            pending: VecDeque::new(),
        })
    }

    /// The format detected.
    pub const fn format(&self) -> CaptureFormat {
        self.format
    }

    /// Reads on until something is pending or the file is done; false when done.
    fn fill(&mut self) -> bool {
        let out = &mut self.pending;
        match &mut self.source {
            Source::Done => return false,
            Source::Datagram(data) => {
                if let Some(wire) = data.take() {
                    out.push_back(Ok(Frame {
                        location: Location::File,
                        wire,
                        recv: None,
                    }));
                }
                self.source = Source::Done;
            }
            Source::Stream {
                data,
                index,
                offset,
            } => {
                if *offset >= data.len() {
                    self.source = Source::Done;
                    return true;
                }
                *index += 1;
                let location = Location::StreamFrame {
                    index: *index,
                    offset: *offset,
                };
                let rest = &data[*offset..];
                match stream_frame(rest) {
                    Ok(len) => {
                        out.push_back(Ok(Frame {
                            location,
                            wire: data.slice(*offset..*offset + len),
                            recv: None,
                        }));
                        *offset += len;
                    }
                    Err(StreamStep::Truncated) => {
                        out.push_back(Err(FrameError {
                            location,
                            kind: FrameErrorKind::Truncated { left: rest.len() },
                        }));
                        self.source = Source::Done;
                    }
                    Err(StreamStep::OutOfStep(cause)) => {
                        // The next magic after this position (not this one: it is bad).
                        let next = find_magic(&rest[1..]).map(|i| 1 + i);
                        let skipped = next.unwrap_or(rest.len());
                        let resumed_at = next.map(|n| *offset + n);
                        out.push_back(Err(FrameError {
                            location,
                            kind: FrameErrorKind::OutOfStep {
                                cause,
                                skipped,
                                resumed_at,
                            },
                        }));
                        *offset += skipped;
                    }
                }
            }
            Source::Pcap {
                data,
                offset,
                parser,
                link,
                packets,
            } => {
                let rest = &data[*offset..];
                if rest.is_empty() {
                    packets.finish(out);
                    self.source = Source::Done;
                    return true;
                }
                packets.number += 1;
                match parser.next_raw_packet(rest) {
                    Ok((rem, packet)) => {
                        *offset = data.len() - rem.len();
                        packets.handle(data, *link, &packet.data, out);
                    }
                    Err(e) => {
                        packets.fail(CaptureFormat::Pcap, e, out);
                        self.source = Source::Done;
                    }
                }
            }
            Source::PcapNg {
                data,
                offset,
                parser,
                packets,
                bad_interfaces,
            } => {
                let rest = &data[*offset..];
                if rest.is_empty() {
                    packets.finish(out);
                    self.source = Source::Done;
                    return true;
                }
                let (rem, block) = match parser.next_block(rest) {
                    Ok(ok) => ok,
                    Err(e) => {
                        packets.number += 1;
                        packets.fail(CaptureFormat::PcapNg, e, out);
                        self.source = Source::Done;
                        return true;
                    }
                };
                *offset = data.len() - rem.len();
                let (interface, bytes) = match &block {
                    Block::EnhancedPacket(b) => (b.interface_id, &b.data),
                    Block::SimplePacket(b) => (0, &b.data),
                    Block::Packet(b) => (u32::from(b.interface_id), &b.data),
                    _ => return true,
                };
                packets.number += 1;
                let Some(idb) = parser.interfaces().get(interface as usize) else {
                    out.push_back(Err(FrameError {
                        location: Location::Packet(packets.number),
                        kind: FrameErrorKind::Corrupt {
                            format: CaptureFormat::PcapNg,
                            source: PcapError::InvalidInterfaceId(interface),
                        },
                    }));
                    return true;
                };
                match Link::from_datalink(idb.linktype) {
                    Some(link) => packets.handle(data, link, bytes, out),
                    None => {
                        if bad_interfaces.insert(interface) {
                            out.push_back(Err(FrameError {
                                location: Location::Packet(packets.number),
                                kind: FrameErrorKind::UnsupportedLink(idb.linktype),
                            }));
                        }
                    }
                }
            }
        }
        true
    }
}

impl fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("format", &self.format)
            .field("done", &matches!(self.source, Source::Done))
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Iterator for CaptureReader {
    type Item = Result<Frame, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if !self.fill() {
                return None;
            }
        }
    }
}

// ===== packets =====

/// Packet numbering and TCP reassembly, shared by pcap and pcapng.
#[derive(Debug, Default)]
struct Packets {
    number: usize,
    flows: BTreeMap<(SocketAddr, SocketAddr), Flow>,
}

type Out = VecDeque<Result<Frame, FrameError>>;

impl Packets {
    fn handle(&mut self, file: &Bytes, link: Link, bytes: &[u8], out: &mut Out) {
        let location = Location::Packet(self.number);
        match parse_packet(link, bytes) {
            Err(e) => out.push_back(Err(FrameError {
                location,
                kind: e.into(),
            })),
            Ok(None) => {}
            Ok(Some(p)) => match p.l4 {
                L4::Udp => out.push_back(Ok(Frame {
                    location,
                    wire: share(file, p.payload),
                    recv: Some(RecvInfo::new(Transport::Udp, p.src, p.dst)),
                })),
                L4::Tcp { seq, flags } => {
                    let flow = self.flows.entry((p.src, p.dst)).or_default();
                    flow.segment(self.number, (p.src, p.dst), seq, flags, p.payload, out);
                }
            },
        }
    }

    fn fail(&mut self, format: CaptureFormat, e: PcapError, out: &mut Out) {
        let kind = match e {
            PcapError::IncompleteBuffer => FrameErrorKind::TruncatedCapture,
            source => FrameErrorKind::Corrupt { format, source },
        };
        out.push_back(Err(FrameError {
            location: Location::Packet(self.number),
            kind,
        }));
        self.finish(out);
    }

    /// End of file: every flow with part of a frame left reports it.
    fn finish(&mut self, out: &mut Out) {
        for (&key, flow) in &mut self.flows {
            flow.leftover(key, out);
        }
        self.flows.clear();
    }
}

/// A `Bytes` of `part`: a zero-copy slice when `part` lies inside `file`, else a copy.
fn share(file: &Bytes, part: &[u8]) -> Bytes {
    let start = file.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if p >= start && p + part.len() <= start + file.len() {
        file.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

/// One direction of a TCP connection.
#[derive(Debug, Default)]
struct Flow {
    /// The sequence number of the next byte expected; `None` before the first segment.
    next_seq: Option<u32>,
    /// Bytes of the frame being completed.
    buf: BytesMut,
    codec: HepFrameCodec,
    /// Frames taken so far.
    frames: usize,
    /// Skipping until a segment holds `HEP3` (after a gap or a framing error).
    resync: bool,
    /// The last packet that carried data.
    last_packet: usize,
}

impl Flow {
    fn segment(
        &mut self,
        packet: usize,
        (peer, listener): (SocketAddr, SocketAddr),
        seq: u32,
        flags: u8,
        payload: &[u8],
        out: &mut Out,
    ) {
        let mut seq = seq;
        if flags & TCP_SYN != 0 {
            // A new connection on this address pair: whatever was left is lost.
            self.leftover((peer, listener), out);
            *self = Self::default();
            seq = seq.wrapping_add(1);
            self.next_seq = Some(seq);
        }
        // A FIN needs nothing: a partial frame left over is reported at the end of the file
        // (or when the address pair starts a new connection).
        if flags & TCP_RST != 0 || payload.is_empty() {
            return;
        }
        let mut data = payload;
        let first_data = self.next_seq.is_none();
        if let Some(next) = self.next_seq {
            // Serial-number arithmetic (RFC 1982): the sign of the wrapped difference.
            let diff = seq.wrapping_sub(next) as i32;
            if diff < 0 {
                let seen = diff.unsigned_abs() as usize;
                if seen >= data.len() {
                    return; // a retransmission of bytes already taken
                }
                data = &data[seen..];
                seq = next;
            } else if diff > 0 {
                out.push_back(Err(FrameError {
                    location: self.location(packet, peer, listener),
                    kind: FrameErrorKind::TcpGap {
                        missing: diff.unsigned_abs(),
                    },
                }));
                self.buf.clear();
                self.resync = true;
            }
        }
        // Segments are at most 64 KiB: the length fits.
        self.next_seq = Some(seq.wrapping_add(data.len() as u32));
        self.last_packet = packet;

        if first_data && !starts_like_magic(data) {
            // Captured from the middle of the connection.
            let skipped = find_magic(data).unwrap_or(data.len());
            out.push_back(Err(FrameError {
                location: self.location(packet, peer, listener),
                kind: FrameErrorKind::MidStream { skipped },
            }));
            self.resync = true;
        }
        if self.resync {
            match find_magic(data) {
                Some(at) => {
                    data = &data[at..];
                    self.resync = false;
                }
                None => return,
            }
        }

        self.buf.extend_from_slice(data);
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(wire)) => {
                    self.frames += 1;
                    out.push_back(Ok(Frame {
                        location: Location::TcpFrame {
                            packet,
                            frame: self.frames,
                            peer,
                            listener,
                        },
                        wire,
                        recv: Some(RecvInfo::new(Transport::Tcp, peer, listener)),
                    }));
                }
                Ok(None) => break,
                Err(e) => {
                    out.push_back(Err(FrameError {
                        location: self.location(packet, peer, listener),
                        kind: FrameErrorKind::Framing(e),
                    }));
                    self.buf.clear();
                    self.resync = true;
                    break;
                }
            }
        }
    }

    /// Reports a partial frame left in the buffer, and drops it.
    fn leftover(&mut self, (peer, listener): (SocketAddr, SocketAddr), out: &mut Out) {
        if !self.buf.is_empty() && !self.resync {
            out.push_back(Err(FrameError {
                location: self.location(self.last_packet, peer, listener),
                kind: FrameErrorKind::Truncated {
                    left: self.buf.len(),
                },
            }));
        }
        self.buf.clear();
    }

    const fn location(&self, packet: usize, peer: SocketAddr, listener: SocketAddr) -> Location {
        Location::TcpFrame {
            packet,
            frame: self.frames + 1,
            peer,
            listener,
        }
    }
}

fn find_magic(data: &[u8]) -> Option<usize> {
    data.windows(4).position(is_magic)
}

/// Why no frame starts at a position of a HEP3 stream file.
enum StreamStep {
    /// The file ends inside what reads as a frame (and no `HEP3` follows in it).
    Truncated,
    /// These bytes are not a frame.
    OutOfStep(HepCodecError),
}

/// The length of the HEP3 frame at the start of `rest` (the rest of a stream file).
fn stream_frame(rest: &[u8]) -> Result<usize, StreamStep> {
    let mut codec = HepFrameCodec::new();
    match codec.decode(&mut BytesMut::from(&rest[..rest.len().min(6)])) {
        Err(e) => return Err(StreamStep::OutOfStep(e)),
        // Fewer than 6 bytes left that start like a magic, or a complete 6-byte frame.
        Ok(Some(frame)) => return Ok(frame.len()),
        Ok(None) if rest.len() < 6 => return Err(StreamStep::Truncated),
        Ok(None) => {}
    }
    let total = u16::from_be_bytes([rest[4], rest[5]]);
    let len = usize::from(total);
    if len <= rest.len() {
        return Ok(len);
    }
    // A frame running past the end: a truncated last frame, unless a HEP3 follows inside
    // it, which says the length was wrong and valid frames come after.
    if find_magic(&rest[6..]).is_some() {
        return Err(StreamStep::OutOfStep(
            hep_proto::DecodeError::TotalLengthExceedsData {
                total,
                available: rest.len(),
            }
            .into(),
        ));
    }
    Err(StreamStep::Truncated)
}

// ===== link, IP, UDP, TCP headers =====

/// The link layers understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Ethernet,
    LinuxSll,
    LinuxSll2,
    /// BSD loopback (`NULL`, host byte order, and `LOOP`, network order): a 4-byte
    /// family; the IP version nibble tells the rest.
    Loopback,
    RawIp,
}

impl Link {
    fn from_datalink(d: DataLink) -> Option<Self> {
        match d {
            DataLink::ETHERNET => Some(Self::Ethernet),
            DataLink::LINUX_SLL => Some(Self::LinuxSll),
            DataLink::LINUX_SLL2 => Some(Self::LinuxSll2),
            DataLink::NULL | DataLink::LOOP => Some(Self::Loopback),
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(Self::RawIp),
            _ => None,
        }
    }
}

/// What a packet carries, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed<'a> {
    src: SocketAddr,
    dst: SocketAddr,
    l4: L4,
    payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L4 {
    Udp,
    Tcp { seq: u32, flags: u8 },
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];

fn need(layer: &'static str, b: &[u8], n: usize) -> Result<(), PacketError> {
    if b.len() < n {
        return Err(PacketError::Truncated {
            layer,
            len: b.len(),
            need: n,
        });
    }
    Ok(())
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The UDP or TCP payload of a link-layer frame; `Ok(None)` for anything else (ARP,
/// ICMP ...).
fn parse_packet(link: Link, b: &[u8]) -> Result<Option<Parsed<'_>>, PacketError> {
    // The ethertype when the link layer names one; 0 = tell by the IP version nibble.
    let (ethertype, ip) = match link {
        Link::Ethernet => {
            need("Ethernet", b, 14)?;
            let (mut et, mut off) = (be16(b, 12), 14);
            while ETHERTYPE_VLAN.contains(&et) {
                need("VLAN", b, off + 4)?;
                et = be16(b, off + 2);
                off += 4;
            }
            (et, &b[off..])
        }
        Link::LinuxSll => {
            need("Linux cooked", b, 16)?;
            (be16(b, 14), &b[16..])
        }
        Link::LinuxSll2 => {
            need("Linux cooked v2", b, 20)?;
            (be16(b, 0), &b[20..])
        }
        Link::Loopback => {
            need("loopback", b, 4)?;
            (0, &b[4..])
        }
        Link::RawIp => (0, b),
    };
    let version = match ethertype {
        ETHERTYPE_IPV4 => 4,
        ETHERTYPE_IPV6 => 6,
        0 => {
            need("IP", ip, 1)?;
            ip[0] >> 4
        }
        _ => return Ok(None),
    };
    match version {
        4 => parse_ipv4(ip),
        6 => parse_ipv6(ip),
        v => Err(PacketError::IpVersion(v)),
    }
}

fn parse_ipv4(ip: &[u8]) -> Result<Option<Parsed<'_>>, PacketError> {
    need("IPv4", ip, 20)?;
    if ip[0] >> 4 != 4 {
        return Err(PacketError::IpVersion(ip[0] >> 4));
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2));
    if ihl < 20 || ihl > total {
        return Err(PacketError::BadLength {
            layer: "IPv4",
            field: "header length",
            value: ihl,
            len: ip.len(),
        });
    }
    // Ethernet pads short frames: the IP total length says where the packet ends.
    need("IPv4", ip, total)?;
    let frag = be16(ip, 6);
    if frag & 0x2000 != 0 || frag & 0x1fff != 0 {
        return Err(PacketError::Fragment("IPv4"));
    }
    let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    parse_l4(ip[9], src, dst, &ip[ihl..total])
}

fn parse_ipv6(ip: &[u8]) -> Result<Option<Parsed<'_>>, PacketError> {
    need("IPv6", ip, 40)?;
    let plen = usize::from(be16(ip, 4));
    need("IPv6", ip, 40 + plen)?;
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&ip[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    let (src, dst) = (addr(8), addr(24));
    let mut next = ip[6];
    let mut rest = &ip[40..40 + plen];
    // Extension headers: hop-by-hop, routing, destination options, AH.
    for _ in 0..8 {
        let len = match next {
            0 | 43 | 60 => {
                need("IPv6 extension", rest, 2)?;
                (usize::from(rest[1]) + 1) * 8
            }
            51 => {
                need("IPv6 AH", rest, 2)?;
                (usize::from(rest[1]) + 2) * 4
            }
            44 => return Err(PacketError::Fragment("IPv6")),
            _ => break,
        };
        need("IPv6 extension", rest, len)?;
        next = rest[0];
        rest = &rest[len..];
    }
    parse_l4(next, src, dst, rest)
}

fn parse_l4<'a>(
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    l4: &'a [u8],
) -> Result<Option<Parsed<'a>>, PacketError> {
    match proto {
        17 => {
            need("UDP", l4, 8)?;
            let len = usize::from(be16(l4, 4));
            if len < 8 || len > l4.len() {
                return Err(PacketError::BadLength {
                    layer: "UDP",
                    field: "length",
                    value: len,
                    len: l4.len(),
                });
            }
            Ok(Some(Parsed {
                src: SocketAddr::new(src, be16(l4, 0)),
                dst: SocketAddr::new(dst, be16(l4, 2)),
                l4: L4::Udp,
                payload: &l4[8..len],
            }))
        }
        6 => {
            need("TCP", l4, 20)?;
            let off = usize::from(l4[12] >> 4) * 4;
            if off < 20 || off > l4.len() {
                return Err(PacketError::BadLength {
                    layer: "TCP",
                    field: "data offset",
                    value: off,
                    len: l4.len(),
                });
            }
            Ok(Some(Parsed {
                src: SocketAddr::new(src, be16(l4, 0)),
                dst: SocketAddr::new(dst, be16(l4, 2)),
                l4: L4::Tcp {
                    seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
                    flags: l4[13],
                },
                payload: &l4[off..],
            }))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: [u8; 4] = [10, 0, 0, 1];
    const DST: [u8; 4] = [10, 0, 0, 2];

    fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + l4.len()).unwrap();
        let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&SRC);
        p.extend_from_slice(&DST);
        p.extend_from_slice(l4);
        p
    }

    fn udp(payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(8 + payload.len()).unwrap();
        let mut u = vec![0x13, 0xc4, 0x23, 0x84];
        u.extend_from_slice(&len.to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    fn tcp(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut t = vec![0x9c, 0x40, 0x23, 0x84];
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        t.extend_from_slice(payload);
        t
    }

    fn ethernet(ethertype: u16, ip: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; 12];
        e.extend_from_slice(&ethertype.to_be_bytes());
        e.extend_from_slice(ip);
        e
    }

    #[test]
    fn ethernet_ipv4_udp_with_padding() {
        let mut frame = ethernet(ETHERTYPE_IPV4, &ipv4(17, &udp(b"hi")));
        frame.extend_from_slice(&[0; 16]); // Ethernet padding to 60 bytes
        let p = parse_packet(Link::Ethernet, &frame).unwrap().unwrap();
        assert_eq!(p.payload, b"hi");
        assert_eq!(p.src, "10.0.0.1:5060".parse().unwrap());
        assert_eq!(p.dst, "10.0.0.2:9092".parse().unwrap());
        assert_eq!(p.l4, L4::Udp);
    }

    #[test]
    fn vlan_sll_sll2_loopback_and_raw() {
        let ip = ipv4(17, &udp(b"x"));
        let mut vlan = vec![0u8; 12];
        vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x07, 0x08, 0x00]);
        vlan.extend_from_slice(&ip);
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(&ip);
        for (link, frame) in [
            (Link::Ethernet, vlan),
            (Link::LinuxSll, sll),
            (Link::LinuxSll2, sll2),
            (Link::Loopback, null),
            (Link::RawIp, ip.clone()),
        ] {
            let p = parse_packet(link, &frame).unwrap().unwrap();
            assert_eq!(p.payload, b"x", "{link:?}");
        }
    }

    #[test]
    fn ipv6_with_extension_header_and_tcp() {
        let seg = tcp(1000, 0x18, b"HEP3");
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&u16::try_from(8 + seg.len()).unwrap().to_be_bytes());
        ip.extend_from_slice(&[0, 64]); // next header: hop-by-hop
        ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ip.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop, then TCP
        ip.extend_from_slice(&seg);
        let p = parse_packet(Link::RawIp, &ip).unwrap().unwrap();
        assert_eq!(
            p.l4,
            L4::Tcp {
                seq: 1000,
                flags: 0x18
            }
        );
        assert_eq!(p.payload, b"HEP3");
        assert_eq!(p.src, "[::1]:40000".parse().unwrap());
    }

    #[test]
    fn malformed_and_other_packets() {
        assert!(matches!(
            parse_packet(Link::Ethernet, &[0; 10]),
            Err(PacketError::Truncated {
                layer: "Ethernet",
                ..
            })
        ));
        let arp = ethernet(0x0806, &[0; 28]);
        assert_eq!(parse_packet(Link::Ethernet, &arp), Ok(None));
        let icmp = ipv4(1, &[8, 0, 0, 0]);
        assert_eq!(parse_packet(Link::RawIp, &icmp), Ok(None));
        let mut frag = ipv4(17, &udp(b"x"));
        frag[6] = 0x20; // more fragments
        assert_eq!(
            parse_packet(Link::RawIp, &frag),
            Err(PacketError::Fragment("IPv4"))
        );
        let mut cut = ipv4(17, &udp(b"xyz"));
        cut.truncate(cut.len() - 1);
        assert!(matches!(
            parse_packet(Link::RawIp, &cut),
            Err(PacketError::Truncated { layer: "IPv4", .. })
        ));
        assert_eq!(
            parse_packet(Link::RawIp, &[0x50; 30]),
            Err(PacketError::IpVersion(5))
        );
    }

    fn hep3(body: u8, len: usize) -> Vec<u8> {
        let mut f = b"HEP3".to_vec();
        f.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        f.resize(len, body);
        f
    }

    fn run_tcp(segments: &[(u32, u8, Vec<u8>)]) -> Vec<Result<Frame, FrameError>> {
        let mut packets = Packets::default();
        let mut out = VecDeque::new();
        let file = Bytes::new();
        for (seq, flags, payload) in segments {
            packets.number += 1;
            let frame = ipv4(6, &tcp(*seq, *flags, payload));
            packets.handle(&file, Link::RawIp, &frame, &mut out);
        }
        packets.finish(&mut out);
        out.into()
    }

    #[test]
    fn tcp_reassembles_split_frames_and_skips_retransmissions() {
        let a = hep3(b'a', 30);
        let b = hep3(b'b', 20);
        let mut ab = a.clone();
        ab.extend_from_slice(&b);
        let out = run_tcp(&[
            (99, TCP_SYN, vec![]),
            (100, 0x18, ab[..10].to_vec()),
            (110, 0x18, ab[10..40].to_vec()),
            (110, 0x18, ab[10..40].to_vec()), // retransmission
            (130, 0x18, ab[30..].to_vec()),   // partial overlap
        ]);
        let frames: Vec<Bytes> = out.into_iter().map(|r| r.unwrap().wire).collect();
        assert_eq!(frames, vec![Bytes::from(a), Bytes::from(b)]);
    }

    #[test]
    fn tcp_gap_is_reported_and_the_stream_resumes() {
        let a = hep3(b'a', 30);
        let b = hep3(b'b', 20);
        let out = run_tcp(&[
            (99, TCP_SYN, vec![]),
            (100, 0x18, a[..10].to_vec()),
            (200, 0x18, a[20..].to_vec()), // 90 bytes missing, tail of a
            (210, 0x18, b.clone()),
        ]);
        assert_eq!(out.len(), 2, "{out:?}");
        let err = out[0].as_ref().unwrap_err();
        assert!(matches!(err.kind, FrameErrorKind::TcpGap { missing: 90 }));
        assert_eq!(
            err.to_string(),
            "packet 3: tcp 10.0.0.1:40000 -> 10.0.0.2:9092 frame 1: 90 bytes of the TCP stream are missing from the capture; resuming at the next HEP3 frame"
        );
        assert_eq!(out[1].as_ref().unwrap().wire, b);
    }

    #[test]
    fn tcp_mid_stream_start_and_leftover_at_eof() {
        let b = hep3(b'b', 20);
        let mut seg = b"tail of a frame".to_vec();
        seg.extend_from_slice(&b);
        seg.extend_from_slice(&b[..7]);
        let out = run_tcp(&[(5000, 0x18, seg)]);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(matches!(
            out[0].as_ref().unwrap_err().kind,
            FrameErrorKind::MidStream { skipped: 15 }
        ));
        assert_eq!(out[1].as_ref().unwrap().wire, b);
        assert!(matches!(
            out[2].as_ref().unwrap_err().kind,
            FrameErrorKind::Truncated { left: 7 }
        ));
    }

    #[test]
    fn tcp_garbage_is_a_framing_error() {
        let out = run_tcp(&[
            (1, TCP_SYN, vec![]),
            (2, 0x18, b"GET / HTTP/1.1\r\n".to_vec()),
        ]);
        assert_eq!(out.len(), 1);
        assert!(matches!(
            out[0].as_ref().unwrap_err().kind,
            FrameErrorKind::Framing(_)
        ));
    }

    #[test]
    fn stream_files_split_and_report_a_truncated_tail() {
        let mut data = hep3(b'a', 10);
        data.extend_from_slice(&hep3(b'b', 12));
        data.extend_from_slice(&hep3(b'c', 40)[..15]);
        let reader = CaptureReader::from_bytes(data.into()).unwrap();
        assert_eq!(reader.format(), CaptureFormat::Hep3Stream);
        let out: Vec<_> = reader.collect();
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[1].as_ref().unwrap().location,
            Location::StreamFrame {
                index: 2,
                offset: 10
            }
        );
        assert_eq!(
            out[2].as_ref().unwrap_err().to_string(),
            "frame 3 (byte 22): stream ends inside a HEP3 frame: 15 bytes left over"
        );
    }

    #[test]
    fn stream_files_skip_what_is_not_a_frame_and_resume_at_the_next() {
        let (a, b, c) = (hep3(b'a', 10), hep3(b'b', 12), hep3(b'c', 8));
        let mut data = a.clone();
        data.extend_from_slice(b"junk"); // right after the first frame
        data.extend_from_slice(&b);
        data.extend_from_slice(b"HEP3\x00\x03"); // a length below the header
        data.extend_from_slice(b"HEP3\xff\xf0"); // a length past the end, HEP3 after it
        data.extend_from_slice(&c);
        data.extend_from_slice(b"tail");
        let reader = CaptureReader::from_bytes(data.into()).unwrap();
        assert_eq!(reader.format(), CaptureFormat::Hep3Stream);
        let out: Vec<String> = reader
            .map(|r| match r {
                Ok(f) => format!("{} {}", f.location, f.wire[6] as char),
                Err(e) => e.to_string(),
            })
            .collect();
        assert_eq!(
            out,
            [
                "frame 1 (byte 0) a",
                "frame 2 (byte 10): not a HEP3 frame: stream frame does not start with HEP3 \
                 (found [6a, 75, 6e, 6b]); skipped 4 bytes, resuming at byte 14",
                "frame 3 (byte 14) b",
                "frame 4 (byte 26): not a HEP3 frame: HEP3 total length 3 is below the 6-byte \
                 header; skipped 6 bytes, resuming at byte 32",
                "frame 5 (byte 32): not a HEP3 frame: HEP3 total length 65520 exceeds the 18 \
                 bytes received; skipped 6 bytes, resuming at byte 38",
                "frame 6 (byte 38) c",
                "frame 7 (byte 46): not a HEP3 frame: stream frame does not start with HEP3 \
                 (found [74, 61, 69, 6c]); skipped 4 bytes, to the end of the file (no HEP3 \
                 after them)",
            ]
        );
    }

    #[test]
    fn empty_and_unreadable_files() {
        assert!(matches!(
            CaptureReader::from_bytes(Bytes::new()),
            Err(CaptureError::Empty)
        ));
        let e = CaptureReader::from_bytes(Bytes::from_static(b"\xd4\xc3\xb2\xa1\x02")).unwrap_err();
        assert!(e.to_string().starts_with("invalid pcap file header"), "{e}");
    }
}
