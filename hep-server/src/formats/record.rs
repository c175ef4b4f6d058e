//! The JSON record of a HEP message: what `json:` outputs, `decode` and `search --format
//! json` write.
//!
//! One object per line, with these keys in this order, every key always present:
//!
//! | key | value |
//! |---|---|
//! | `version` | 1, 2 or 3 |
//! | `family` | `"ipv4"` or `"ipv6"` |
//! | `ip_proto` | IP protocol number of the captured packet (17 = UDP) |
//! | `src_ip`, `src_port`, `dst_ip`, `dst_port` | captured addresses (text) and ports |
//! | `ts_sec`, `ts_usec` | capture time (`null` for HEPv1, which has none) |
//! | `proto_type` | protocol type id (1 = SIP, 100 = log) |
//! | `proto_name` | its name (`"sip"`, `"log"` ...), `null` for ids without one (extension) |
//! | `capture_id` | capture agent id |
//! | `auth_key`, `correlation_id`, `node_name` | text (see below) |
//! | `vlan` | VLAN id |
//! | `payload` | the payload as text when it is UTF-8, else `null` |
//! | `payload_b64` | the payload in standard base64 when it is not UTF-8, else `null` (extension) |
//! | `compressed` | whether the payload arrived compressed (chunk 0x0010); `payload` is inflated |
//! | `chunks` | every other chunk in wire order: `{"vendor": N, "type": N, "hex": "..."}` |
//! | `recv` | `{"transport": "udp"|"tcp"|"tls", "peer": "IP:PORT", "listener": "IP:PORT"}` or `null` |
//!
//! A field whose chunk is absent is `null`; a chunk that is present but empty is `""`.
//!
//! `auth_key`, `correlation_id` and `node_name` are octet strings on the wire. They are
//! written as text when they are UTF-8, and as `"hex:"` followed by lowercase hex
//! otherwise, or when the text itself starts with `hex:`: a reader that decodes every
//! value starting with `hex:` as hex gets the exact bytes back.
//!
//! ```
//! use hep_proto::{HepMessage, ProtoType};
//! use hep_server::formats::record::{write_json_line, RECORD_KEYS};
//!
//! let msg = HepMessage::builder()
//!     .src("10.0.0.1:5060".parse().unwrap())
//!     .dst("10.0.0.2:5060".parse().unwrap())
//!     .proto_type(ProtoType::Log)
//!     .auth_key(&b""[..])
//!     .payload("hello")
//!     .build();
//! let mut out = Vec::new();
//! write_json_line(&mut out, &msg, None).unwrap();
//! let line = String::from_utf8(out).unwrap();
//! assert!(line.starts_with(r#"{"version":null,"family":"ipv4","ip_proto":17,"src_ip":"10.0.0.1""#));
//! assert!(line.contains(r#""proto_type":100,"proto_name":"log","capture_id":null,"auth_key":"""#));
//! assert!(line.ends_with("\"recv\":null}\n"));
//! assert_eq!(RECORD_KEYS.len(), 21);
//! ```

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use hep_proto::{Chunk, HepMessage};
use hep_transport::RecvInfo;
use serde::{Serialize, Serializer};

/// Every key of a record, in the order written.
pub const RECORD_KEYS: &[&str] = &[
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

/// A record borrowing from its message: serializing it allocates nothing per message.
///
/// Build it with [`Record::new`] and hand it to any serde serializer, or use
/// [`write_json_line`].
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    version: Option<u8>,
    family: Option<&'static str>,
    ip_proto: Option<u8>,
    src_ip: Option<IpAddr>,
    src_port: Option<u16>,
    dst_ip: Option<IpAddr>,
    dst_port: Option<u16>,
    ts_sec: Option<u32>,
    ts_usec: Option<u32>,
    proto_type: Option<u8>,
    proto_name: Option<&'static str>,
    capture_id: Option<u32>,
    auth_key: Option<TextOrHex<'a>>,
    correlation_id: Option<TextOrHex<'a>>,
    node_name: Option<TextOrHex<'a>>,
    vlan: Option<u16>,
    payload: Option<&'a str>,
    payload_b64: Option<Base64<'a>>,
    compressed: bool,
    chunks: Chunks<'a>,
    recv: Option<Recv>,
}

impl<'a> Record<'a> {
    /// The record of `msg`, received as `recv` (`None` when there is no receive
    /// information, e.g. a HEP file decoded from disk).
    pub fn new(msg: &'a HepMessage, recv: Option<&RecvInfo>) -> Self {
        let payload = msg.payload.bytes();
        let text = std::str::from_utf8(payload).ok();
        Self {
            version: msg.version.map(|v| v.number()),
            family: msg.family.map(|f| f.as_str()),
            ip_proto: msg.ip_proto,
            src_ip: msg.src_ip,
            src_port: msg.src_port,
            dst_ip: msg.dst_ip,
            dst_port: msg.dst_port,
            ts_sec: msg.ts_sec,
            ts_usec: msg.ts_usec,
            proto_type: msg.proto_type.map(|t| t.id()),
            proto_name: msg.proto_type.and_then(|t| t.name()),
            capture_id: msg.capture_id,
            auth_key: msg.auth_key.as_deref().map(TextOrHex),
            correlation_id: msg.correlation_id.as_deref().map(TextOrHex),
            node_name: msg.node_name.as_deref().map(TextOrHex),
            vlan: msg.vlan,
            payload: text,
            payload_b64: text.is_none().then_some(Base64(payload)),
            compressed: msg.payload.is_compressed(),
            chunks: Chunks(&msg.chunks),
            recv: recv.map(|r| Recv {
                transport: r.transport.as_str(),
                peer: r.peer,
                listener: r.listener,
            }),
        }
    }
}

/// Writes the record of `msg` as one line of JSON, `\n`-terminated.
///
/// `w` gets many small writes: give it a buffered writer.
///
/// # Errors
/// What writing to `w` returns.
pub fn write_json_line<W: io::Write>(
    mut w: W,
    msg: &HepMessage,
    recv: Option<&RecvInfo>,
) -> io::Result<()> {
    serde_json::to_writer(&mut w, &Record::new(msg, recv))?;
    w.write_all(b"\n")
}

/// The `recv` object.
#[derive(Debug, Serialize)]
struct Recv {
    transport: &'static str,
    peer: SocketAddr,
    listener: SocketAddr,
}

/// An octet string as text, or `hex:...` when it is not UTF-8 (or looks like hex).
#[derive(Debug, Clone, Copy)]
struct TextOrHex<'a>(&'a [u8]);

impl Serialize for TextOrHex<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(self.0) {
            Ok(text) if !text.starts_with("hex:") => s.serialize_str(text),
            _ => s.collect_str(&format_args!("hex:{}", Hex(self.0))),
        }
    }
}

/// Lowercase hex, written straight into the output.
#[derive(Debug, Clone, Copy)]
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 128];
        for chunk in self.0.chunks(buf.len() / 2) {
            for (i, b) in chunk.iter().enumerate() {
                buf[2 * i] = DIGITS[usize::from(b >> 4)];
                buf[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
            }
            // Only ASCII hex digits were written.
            f.write_str(std::str::from_utf8(&buf[..2 * chunk.len()]).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Standard base64 with padding.
#[derive(Debug, Clone, Copy)]
struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Base64Display::new(self.0, &STANDARD))
    }
}

/// The `chunks` array.
#[derive(Debug, Clone, Copy)]
struct Chunks<'a>(&'a [Chunk]);

impl Serialize for Chunks<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Item<'a> {
            vendor: u16,
            #[serde(rename = "type")]
            chunk_type: u16,
            hex: Hex<'a>,
        }
        s.collect_seq(self.0.iter().map(|c| Item {
            vendor: c.vendor,
            chunk_type: c.chunk_type,
            hex: Hex(&c.data),
        }))
    }
}

/// Decodes standard base64 (for tests and tools reading records back).
///
/// # Errors
/// When `s` is not valid padded standard base64.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hep_proto::{HepVersion, Payload, ProtoType};
    use hep_transport::Transport;
    use serde_json::Value;

    fn json(msg: &HepMessage, recv: Option<&RecvInfo>) -> Value {
        let mut out = Vec::new();
        write_json_line(&mut out, msg, recv).unwrap();
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        serde_json::from_slice(&out).unwrap()
    }

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn an_empty_message_has_every_key_null() {
        let v = json(&HepMessage::default(), None);
        let mut expected = RECORD_KEYS.to_vec();
        expected.sort_unstable();
        let mut got = keys(&v);
        got.sort_unstable();
        assert_eq!(got, expected);
        for k in RECORD_KEYS {
            let want_non_null = matches!(*k, "payload" | "compressed" | "chunks");
            assert_eq!(!v[k].is_null(), want_non_null, "{k}: {}", v[k]);
        }
        assert_eq!(v["payload"], "");
        assert_eq!(v["compressed"], false);
        assert_eq!(v["chunks"], Value::Array(vec![]));
    }

    #[test]
    fn keys_are_written_in_documented_order() {
        let mut out = Vec::new();
        write_json_line(&mut out, &HepMessage::default(), None).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut last = 0;
        for k in RECORD_KEYS {
            let at = text.find(&format!("\"{k}\":")).unwrap();
            assert!(at >= last, "{k} out of order in {text}");
            last = at;
        }
    }

    #[test]
    fn fields_are_written() {
        let msg = HepMessage {
            version: Some(HepVersion::V3),
            capture_id: Some(7),
            proto_type: Some(ProtoType::Other(250)),
            auth_key: Some(Bytes::from_static(b"\xff\x00")),
            correlation_id: Some(Bytes::from_static(b"hex:abc")),
            node_name: Some(Bytes::from_static(b"node-\0")),
            vlan: Some(12),
            payload: Payload::Plain(Bytes::from_static(b"\x80\x01rtp")),
            chunks: vec![Chunk::new(0x1234, 0x0042, vec![0xde, 0xad])],
            ..HepMessage::builder()
                .src("[2001:db8::1]:5060".parse().unwrap())
                .dst("[2001:db8::2]:5080".parse().unwrap())
                .timestamp(1, 2)
                .build()
        };
        let recv = RecvInfo::new(
            Transport::Tcp,
            "[::1]:40000".parse().unwrap(),
            "127.0.0.1:9060".parse().unwrap(),
        );
        let v = json(&msg, Some(&recv));
        assert_eq!(v["version"], 3);
        assert_eq!(v["family"], "ipv6");
        assert_eq!(v["src_ip"], "2001:db8::1");
        assert_eq!(v["dst_port"], 5080);
        assert_eq!(
            (v["ts_sec"].clone(), v["ts_usec"].clone()),
            (1.into(), 2.into())
        );
        assert_eq!(v["proto_type"], 250);
        assert_eq!(v["proto_name"], Value::Null);
        assert_eq!(v["auth_key"], "hex:ff00");
        assert_eq!(v["correlation_id"], "hex:6865783a616263");
        assert_eq!(v["node_name"], "node-\u{0}");
        assert_eq!(v["vlan"], 12);
        assert_eq!(v["payload"], Value::Null);
        assert_eq!(
            decode_base64(v["payload_b64"].as_str().unwrap()).unwrap(),
            b"\x80\x01rtp"
        );
        assert_eq!(
            v["chunks"],
            serde_json::json!([{"vendor": 0x1234, "type": 0x42, "hex": "dead"}])
        );
        assert_eq!(
            v["recv"],
            serde_json::json!({"transport": "tcp", "peer": "[::1]:40000", "listener": "127.0.0.1:9060"})
        );
    }

    #[test]
    fn hex_of_long_values_crosses_buffer_boundaries() {
        let data: Vec<u8> = (0..=255).collect();
        let hex = Hex(&data).to_string();
        assert_eq!(hex.len(), 512);
        assert!(hex.starts_with("000102"));
        assert!(hex.ends_with("fdfeff"));
    }
}
