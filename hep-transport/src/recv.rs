//! What a listener hands to the service: a message and where it came from.

use std::net::SocketAddr;

use bytes::Bytes;
use hep_proto::HepMessage;

use crate::Transport;

/// Where and how a message was received (OpenSIPS's `receive_info` of the outer packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecvInfo {
    /// The transport it arrived on.
    pub transport: Transport,
    /// The capture agent's address.
    pub peer: SocketAddr,
    /// The local address of the listener that received it.
    pub listener: SocketAddr,
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
