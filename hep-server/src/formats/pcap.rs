//! Pcap files of messages (`pcap:PATH` outputs, `search --format pcap`): each message
//! rebuilt as the packet that was captured, so that Wireshark and tshark show the
//! original SIP.
//!
//! The frame is Ethernet / IPv4 or IPv6 / UDP or TCP, built from the HEP addresses,
//! ports, IP protocol and timestamp. TCP (and TLS or WebSocket, which agents report as
//! IP protocol 22 and 50: the payload they capture is the decrypted text) gets one
//! sequence space per direction of each flow, so Wireshark follows the stream. SCTP and
//! unknown protocols are written as UDP. Checksums are computed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hep_proto::{HepMessage, ip_proto};

/// Largest payload one rebuilt UDP datagram carries (IPv4's limit); longer payloads are
/// cut there and the record's original length says so.
const MAX_UDP_PAYLOAD: usize = 65_507;
/// TCP payloads are split into segments of at most this size.
const MAX_TCP_SEGMENT: usize = 65_000;

/// Builds frames from messages; keeps the TCP sequence numbers of every flow.
#[derive(Debug, Default)]
pub struct FrameBuilder {
    next_seq: HashMap<(SocketAddr, SocketAddr), u32>,
}

/// One rebuilt frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Capture time.
    pub time: Duration,
    /// The Ethernet frame.
    pub data: Vec<u8>,
    /// Length of the frame as captured, if `data` had to be cut.
    pub orig_len: usize,
}

impl FrameBuilder {
    /// A builder with no flows yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frames for one message (several for a TCP payload above 65,000 bytes).
    /// Messages without addresses get 0.0.0.0 / :: and port 0; without a timestamp
    /// (HEPv1), `received` is used.
    pub fn frames(&mut self, msg: &HepMessage, received: SystemTime) -> Vec<Frame> {
        let time = match (msg.ts_sec, msg.ts_usec) {
            (Some(s), us) => {
                Duration::from_secs(s.into()) + Duration::from_micros(us.unwrap_or(0).into())
            }
            (None, _) => received.duration_since(UNIX_EPOCH).unwrap_or_default(),
        };
        let unspecified = match msg.src_ip.or(msg.dst_ip) {
            Some(IpAddr::V6(_)) => IpAddr::from([0u16; 8]),
            _ => IpAddr::from([0u8; 4]),
        };
        let src = SocketAddr::new(msg.src_ip.unwrap_or(unspecified), msg.src_port.unwrap_or(0));
        let dst = SocketAddr::new(msg.dst_ip.unwrap_or(unspecified), msg.dst_port.unwrap_or(0));
        let payload = &msg.payload.bytes()[..];
        let is_tcp = matches!(
            msg.ip_proto,
            Some(ip_proto::TCP | ip_proto::TLS | ip_proto::WS)
        );
        if src.is_ipv4() != dst.is_ipv4() {
            return Vec::new(); // decode refuses mixed families; nothing sane to draw
        }
        if is_tcp {
            let seq = self.next_seq.entry((src, dst)).or_insert(1);
            let segments: Vec<&[u8]> = if payload.is_empty() {
                vec![payload]
            } else {
                payload.chunks(MAX_TCP_SEGMENT).collect()
            };
            segments
                .into_iter()
                .map(|seg| {
                    let data = ethernet(src, dst, 6, &tcp(src, dst, *seq, seg));
                    *seq = seq.wrapping_add(seg.len() as u32);
                    Frame {
                        time,
                        orig_len: data.len(),
                        data,
                    }
                })
                .collect()
        } else {
            let cut = &payload[..payload.len().min(MAX_UDP_PAYLOAD)];
            let data = ethernet(src, dst, 17, &udp(src, dst, cut));
            let orig_len = data.len() + (payload.len() - cut.len());
            vec![Frame {
                time,
                data,
                orig_len,
            }]
        }
    }
}

fn ethernet(src: SocketAddr, dst: SocketAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 40 + l4.len());
    // Locally administered MACs: the HEP message does not carry the real ones.
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1]);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let total = (20 + l4.len()).min(usize::from(u16::MAX)) as u16;
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[6] = 0x40; // don't fragment
            h[8] = 64;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let sum = checksum(&[&h]);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            f.extend_from_slice(&h);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
            f.push(proto);
            f.push(64);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => {}
    }
    f.extend_from_slice(l4);
    f
}

fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&src.port().to_be_bytes());
    u.extend_from_slice(&dst.port().to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let sum = match checksum(&[&pseudo_header(src, dst, 17, u.len()), &u]) {
        0 => 0xffff, // 0 means "no checksum" in UDP
        s => s,
    };
    u[6..8].copy_from_slice(&sum.to_be_bytes());
    u
}

fn tcp(src: SocketAddr, dst: SocketAddr, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&src.port().to_be_bytes());
    t.extend_from_slice(&dst.port().to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes()); // no ack number: the other side is not seen
    t.extend_from_slice(&[0x50, 0x18]); // header length 20, flags PSH+ACK
    t.extend_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let sum = checksum(&[&pseudo_header(src, dst, 6, t.len()), &t]);
    t[16..18].copy_from_slice(&sum.to_be_bytes());
    t
}

fn pseudo_header(src: SocketAddr, dst: SocketAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => {}
    }
    p
}

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Snapshot length written in the file header: every frame we build fits.
const SNAPLEN: u32 = 262_144;

/// Writes frames to a pcap file (classic format, Ethernet, microsecond timestamps).
///
/// Each record goes to the buffer whole, so a reader of the growing file never sees
/// half a record after a [`flush`](Self::flush). (The format is 24 bytes of file header
/// and 16 per record; `pcap-file`'s writer has no way to flush while writing, which a
/// file that `tail`-like readers follow needs.)
pub struct PcapFileWriter {
    file: BufWriter<Box<dyn Write + Send>>,
    builder: FrameBuilder,
}

impl PcapFileWriter {
    /// Creates (truncates) the file and writes the pcap header.
    ///
    /// # Errors
    /// When the file cannot be created or written.
    pub fn create(path: &Path) -> io::Result<Self> {
        Self::new(Box::new(File::create(path)?))
    }

    /// Writes the pcap header to `out` (e.g. standard output), and then the frames.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn new(out: Box<dyn Write + Send>) -> io::Result<Self> {
        let mut file = BufWriter::with_capacity(256 * 1024, out);
        file.write_all(&0xa1b2_c3d4u32.to_le_bytes())?; // magic, microseconds
        file.write_all(&2u16.to_le_bytes())?; // version 2.4
        file.write_all(&4u16.to_le_bytes())?;
        file.write_all(&[0; 8])?; // thiszone, sigfigs
        file.write_all(&SNAPLEN.to_le_bytes())?;
        file.write_all(&1u32.to_le_bytes())?; // LINKTYPE_ETHERNET
        file.flush()?;
        Ok(Self {
            file,
            builder: FrameBuilder::new(),
        })
    }

    /// Writes the frames of one message.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write(&mut self, msg: &HepMessage, received: SystemTime) -> io::Result<()> {
        for frame in self.builder.frames(msg, received) {
            let mut record = [0u8; 16];
            record[0..4].copy_from_slice(&(frame.time.as_secs() as u32).to_le_bytes());
            record[4..8].copy_from_slice(&frame.time.subsec_micros().to_le_bytes());
            record[8..12].copy_from_slice(&(frame.data.len() as u32).to_le_bytes());
            record[12..16].copy_from_slice(&(frame.orig_len as u32).to_le_bytes());
            self.file.write_all(&record)?;
            self.file.write_all(&frame.data)?;
        }
        Ok(())
    }

    /// Writes out what is buffered.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(proto: u8, src: &str, dst: &str, payload: &str) -> HepMessage {
        HepMessage::builder()
            .src(src.parse().unwrap())
            .dst(dst.parse().unwrap())
            .ip_proto(proto)
            .timestamp(1_700_000_000, 250_000)
            .payload(payload.to_owned())
            .build()
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3 example: 0001 f203 f4f5 f6f7 sums to ddf2 -> checksum 220d.
        assert_eq!(
            checksum(&[&[0x00, 0x01, 0xf2, 0x03], &[0xf4, 0xf5, 0xf6, 0xf7]]),
            0x220d
        );
    }

    #[test]
    fn udp_ipv4_frame_is_well_formed() {
        let f = &FrameBuilder::new().frames(
            &msg(17, "10.0.0.1:5060", "10.0.0.2:5080", "OPTIONS"),
            UNIX_EPOCH,
        )[0];
        assert_eq!(f.time, Duration::new(1_700_000_000, 250_000_000));
        assert_eq!(&f.data[12..14], &[0x08, 0x00]);
        let ip = &f.data[14..34];
        assert_eq!(checksum(&[ip]), 0, "IPv4 header checksum verifies");
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, 20 + 8 + 7);
        let udp = &f.data[34..];
        assert_eq!(
            (
                u16::from_be_bytes([udp[0], udp[1]]),
                u16::from_be_bytes([udp[2], udp[3]])
            ),
            (5060, 5080)
        );
        assert_eq!(&udp[8..], b"OPTIONS");
        let pseudo = pseudo_header(
            "10.0.0.1:5060".parse().unwrap(),
            "10.0.0.2:5080".parse().unwrap(),
            17,
            udp.len(),
        );
        assert_eq!(checksum(&[&pseudo, udp]), 0, "UDP checksum verifies");
    }

    #[test]
    fn tcp_flows_have_consistent_sequence_numbers() {
        let mut b = FrameBuilder::new();
        // Ethernet (14) + IPv6 (40): the TCP sequence number is at 54 + 4.
        let seq = |f: &Frame| u32::from_be_bytes(f.data[58..62].try_into().unwrap());
        let a1 = b
            .frames(&msg(6, "[::1]:5061", "[::1]:5060", "INVITE"), UNIX_EPOCH)
            .remove(0);
        let back = b
            .frames(
                &msg(6, "[::1]:5060", "[::1]:5061", "SIP/2.0 200 OK"),
                UNIX_EPOCH,
            )
            .remove(0);
        let a2 = b
            .frames(&msg(6, "[::1]:5061", "[::1]:5060", "ACK"), UNIX_EPOCH)
            .remove(0);
        assert_eq!(&a1.data[12..14], &[0x86, 0xdd]);
        assert_eq!(
            seq(&a2),
            seq(&a1) + 6,
            "the second segment follows the 6-byte INVITE"
        );
        assert_eq!(
            seq(&back),
            1,
            "the other direction has its own sequence space"
        );
    }

    #[test]
    fn a_hepv1_message_takes_the_receive_time() {
        let mut m = msg(17, "10.0.0.1:1", "10.0.0.2:2", "x");
        m.ts_sec = None;
        m.ts_usec = None;
        let at = UNIX_EPOCH + Duration::from_secs(42);
        assert_eq!(
            FrameBuilder::new().frames(&m, at)[0].time,
            Duration::from_secs(42)
        );
    }

    #[test]
    fn the_file_reads_back_with_pcap_file() {
        let dir = std::env::temp_dir().join(format!("hep-pcap-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.pcap");
        let mut w = PcapFileWriter::create(&path).unwrap();
        w.write(
            &msg(
                17,
                "10.0.0.1:5060",
                "10.0.0.2:5060",
                "INVITE sip:a SIP/2.0\r\n",
            ),
            UNIX_EPOCH,
        )
        .unwrap();
        w.write(
            &msg(6, "10.0.0.1:5060", "10.0.0.2:5060", "BYE sip:a SIP/2.0\r\n"),
            UNIX_EPOCH,
        )
        .unwrap();
        w.flush().unwrap();
        let mut r = pcap_file::pcap::PcapReader::new(File::open(&path).unwrap()).unwrap();
        let p1 = r.next_packet().unwrap().unwrap();
        assert_eq!(p1.timestamp, Duration::new(1_700_000_000, 250_000_000));
        assert!(p1.data.ends_with(b"INVITE sip:a SIP/2.0\r\n"));
        let p2 = r.next_packet().unwrap().unwrap();
        assert_eq!(p2.data[14 + 9], 6, "TCP");
        assert!(r.next_packet().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
