//! What a listener hands to the service: a message and where it came from.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hep_proto::HepMessage;

use crate::{ClientIdentity, Transport};

/// Where and how a message was received (OpenSIPS's `receive_info` of the outer packet).
///
/// ```
/// use hep_transport::{RecvInfo, Transport};
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
}

impl RecvInfo {
    /// Receive info without a client certificate.
    pub const fn new(transport: Transport, peer: SocketAddr, listener: SocketAddr) -> Self {
        Self {
            transport,
            peer,
            listener,
            client: None,
        }
    }

    /// This info with the agent's verified client certificate.
    #[must_use]
    pub fn with_client(mut self, client: Option<Arc<ClientIdentity>>) -> Self {
        self.client = client;
        self
    }
}

/// A received, decoded HEP message: the request type of the service stack.
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
