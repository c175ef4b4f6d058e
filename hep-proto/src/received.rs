//! What a listener hands on: a decoded message, the bytes it came in, and where and how it
//! was received.
//!
//! Plain data, no IO: `hep-transport`'s listeners build these values and a callback or a
//! tower service reads them, so a crate of callbacks depends on this crate only, without
//! sockets or TLS.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::HepMessage;

/// A HEP transport.
///
/// ```
/// use hep_proto::Transport;
///
/// assert_eq!(Transport::parse("HEP_TLS"), Some(Transport::Tls));
/// assert_eq!(Transport::Udp.scheme(), "hep_udp");
/// assert_eq!(Transport::Tcp.to_string(), "tcp");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(clippy::exhaustive_enums, reason = "the seed's three HEP transports")]
pub enum Transport {
    /// `hep_udp`: HEPv1, v2 and v3 datagrams.
    Udp,
    /// `hep_tcp`: HEPv3 frames back to back.
    Tcp,
    /// `hep_tls`: HEPv3 frames over TLS.
    Tls,
}

impl Transport {
    /// `"udp"`, `"tcp"` or `"tls"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }

    /// The spec prefix: `"hep_udp"`, `"hep_tcp"` or `"hep_tls"`.
    pub const fn scheme(self) -> &'static str {
        match self {
            Self::Udp => "hep_udp",
            Self::Tcp => "hep_tcp",
            Self::Tls => "hep_tls",
        }
    }

    /// The transport for a scheme (`hep_udp`) or a bare name (`udp`), any case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "hep_udp" | "udp" => Some(Self::Udp),
            "hep_tcp" | "tcp" => Some(Self::Tcp),
            "hep_tls" | "tls" => Some(Self::Tls),
            _ => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verified TLS client certificate, reduced to what identifies it: its SHA-256
/// fingerprint and the DNS names of its subject alternative name extension.
///
/// `hep-transport` computes it once per connection, after the handshake verified the
/// certificate against the configured CA (`hep_transport::identity_from_der`); every
/// message of the connection shares it. Reading a certificate needs an X.509 parser and
/// a hash, which this crate does not carry: here it is only the result.
///
/// The subject's common name (CN) is not read: RFC 6125 deprecates names in the CN, and
/// current CAs (and `rcgen`, `step`, `cfssl`, `openssl req -addext subjectAltName=...`)
/// put them in the SAN. A certificate with a CN only is identified by its fingerprint.
///
/// ```
/// use hep_proto::ClientIdentity;
///
/// let id = ClientIdentity::new([0xab; 32], ["Agent-A.Example".to_owned()]);
/// assert_eq!(id.dns_names(), ["agent-a.example"]);
/// assert!(id.fingerprint().starts_with("AB:AB:"));
/// assert!(id.to_string().starts_with("agent-a.example (sha256 AB:AB"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientIdentity {
    sha256: [u8; 32],
    dns_names: Vec<String>,
}

impl ClientIdentity {
    /// An identity from its parts: the SHA-256 of the DER certificate and the DNS names of
    /// its subject alternative names. Names are compared in lower case.
    pub fn new(sha256: [u8; 32], dns_names: impl IntoIterator<Item = String>) -> Self {
        Self {
            sha256,
            dns_names: dns_names
                .into_iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The SHA-256 of the DER certificate.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// The SHA-256 as `openssl x509 -noout -fingerprint -sha256` prints it:
    /// colon-separated upper-case hex.
    pub fn fingerprint(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = String::with_capacity(32 * 3);
        for (i, b) in self.sha256.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }

    /// The DNS names of the subject alternative names, in lower case (a wildcard name
    /// such as `*.example.com` is listed as written, not expanded).
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("sha256", &self.fingerprint())
            .field("dns_names", &self.dns_names)
            .finish()
    }
}

impl fmt::Display for ClientIdentity {
    /// `agent-a.example (sha256 AB:CD:...)`, or the fingerprint alone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.dns_names.is_empty() {
            write!(f, "{} ", self.dns_names.join(","))?;
        }
        write!(f, "(sha256 {})", self.fingerprint())
    }
}

/// Where and how a message was received (OpenSIPS's `receive_info` of the outer packet).
///
/// ```
/// use hep_proto::{RecvInfo, Transport};
///
/// let info = RecvInfo::new(Transport::Udp, "10.0.0.1:5060".parse().unwrap(), "0.0.0.0:9060".parse().unwrap());
/// assert_eq!(info.client, None);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecvInfo {
    /// The transport it arrived on.
    pub transport: Transport,
    /// The capture agent's address.
    pub peer: SocketAddr,
    /// The local address of the listener that received it.
    pub listener: SocketAddr,
    /// `hep_tls` with client certificates (mTLS): the agent's verified certificate, shared
    /// by every message of the connection. `None` for UDP, TCP, and TLS without mTLS.
    pub client: Option<Arc<ClientIdentity>>,
    /// When the collector that first received it did, for a message that reached this one
    /// through another (a cluster's edge): its stores keep that time, so a message
    /// delivered twice is the same row. `None` for a message received here: outputs take
    /// the time they see it. (This crate reads no clock: whoever receives it sets it.)
    pub received_at: Option<SystemTime>,
}

impl RecvInfo {
    /// Receive info without a client certificate or an earlier receive time.
    pub const fn new(transport: Transport, peer: SocketAddr, listener: SocketAddr) -> Self {
        Self {
            transport,
            peer,
            listener,
            client: None,
            received_at: None,
        }
    }

    /// This info with the time another collector first received the message.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use hep_proto::{RecvInfo, Transport};
    ///
    /// let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_651_200);
    /// let info = RecvInfo::new(Transport::Tcp, "10.0.0.1:5060".parse().unwrap(), "10.0.0.9:9060".parse().unwrap())
    ///     .with_received_at(at);
    /// assert_eq!(info.received_at, Some(at));
    /// ```
    #[must_use]
    pub const fn with_received_at(mut self, at: SystemTime) -> Self {
        self.received_at = Some(at);
        self
    }

    /// This info with the agent's verified client certificate.
    #[must_use]
    pub fn with_client(mut self, client: Option<Arc<ClientIdentity>>) -> Self {
        self.client = client;
        self
    }
}

/// A received, decoded HEP message: the request type of a listener's service stack.
///
/// ```
/// use bytes::Bytes;
/// use hep_proto::{HepMessage, Received, RecvInfo, Transport};
///
/// let wire = Bytes::from_static(include_bytes!("../../hep-testkit/testdata/kamailio/v3-udp-0001.hep"));
/// let info = RecvInfo::new(Transport::Udp, "10.0.0.1:5060".parse().unwrap(), "0.0.0.0:9060".parse().unwrap());
/// let mut received = Received::new(HepMessage::decode(wire.clone())?, wire, info);
/// assert!(!received.modified);
/// received.message_mut().capture_id = Some(7);
/// assert!(received.modified, "outputs re-encode it instead of forwarding `wire`");
/// # Ok::<(), hep_proto::DecodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The decoded message; callbacks may change it.
    pub message: HepMessage,
    /// The bytes it was decoded from: a relay forwards these unchanged unless
    /// [`modified`](Self::modified) is set.
    pub wire: Bytes,
    /// Where it came from.
    pub info: RecvInfo,
    /// Set by whoever changes `message`, so that outputs re-encode instead of forwarding
    /// `wire`.
    pub modified: bool,
}

impl Received {
    /// A received message, unmodified.
    pub const fn new(message: HepMessage, wire: Bytes, info: RecvInfo) -> Self {
        Self {
            message,
            wire,
            info,
            modified: false,
        }
    }

    /// The message for changing it; marks it modified.
    pub fn message_mut(&mut self) -> &mut HepMessage {
        self.modified = true;
        &mut self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_openssls_format() {
        let id = ClientIdentity::new([0xab; 32], ["Agent-A.Example".to_owned()]);
        assert_eq!(id.fingerprint().len(), 32 * 3 - 1);
        assert!(id.fingerprint().starts_with("AB:AB:"));
        assert_eq!(id.dns_names(), ["agent-a.example"]);
        assert!(id.to_string().starts_with("agent-a.example (sha256 AB:AB"));
        let mut bytes = [0u8; 32];
        bytes[0] = 0x0f;
        bytes[31] = 0xf0;
        let fp = ClientIdentity::new(bytes, []).fingerprint();
        assert!(fp.starts_with("0F:00:") && fp.ends_with(":00:F0"), "{fp}");
    }

    #[test]
    fn a_transport_is_named_as_in_its_spec() {
        for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
            assert_eq!(Transport::parse(t.scheme()), Some(t));
            assert_eq!(Transport::parse(t.as_str()), Some(t));
        }
        assert_eq!(Transport::parse("hep_sctp"), None);
    }
}
