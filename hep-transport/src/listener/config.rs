//! A listener's settings: [`ListenerConfig`] and the settings of each kind of listener
//! in it ([`UdpConfig`], [`TcpConfig`]; [`TlsConfig`] in `tls_config`). Plain data, below
//! everything that reads it: the shared state, the receive loops and the handshake.

use std::time::Duration;

use hep_proto::DecodeOptions;

use super::tls_config::TlsConfig;
use crate::SourceAllowlist;
#[cfg(doc)]
use crate::{ListenOn, RejectReason};

/// The default [`ListenerConfig::shutdown_grace`]: 5 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How a listener receives: limits, timeouts, buffers. `Default` gives the documented
/// defaults; change fields as needed.
///
/// ```
/// use std::time::Duration;
/// use hep_transport::ListenerConfig;
///
/// let mut config = ListenerConfig::default();
/// config.tcp.max_msg_chunks = 0; // unlimited, as hep_max_msg_chunks = 0
/// config.tcp.idle_timeout = Duration::from_secs(300);
/// config.udp.recv_buffer_size = 16 << 20;
/// ```
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Decode limits (inflate cap, `EEP3`). Default: [`DecodeOptions::default`].
    pub decode: DecodeOptions,
    /// How long a shutdown waits for connections and pending answers before dropping
    /// them (counted). Default: [`DEFAULT_SHUTDOWN_GRACE`] (5 s).
    pub shutdown_grace: Duration,
    /// `hep_udp` settings.
    pub udp: UdpConfig,
    /// `hep_tcp` and `hep_tls` settings.
    pub tcp: TcpConfig,
    /// `hep_tls` certificate, key and client verification. Required for a `hep_tls` spec.
    pub tls: Option<TlsConfig>,
    /// The agents' networks this listener accepts (the `;allow=` of a [`ListenOn`]);
    /// `None` (the default) accepts everyone. Other sources are refused before any work:
    /// datagrams before decoding, connections at accept (before a TLS handshake or a
    /// read), each counted as `rejected{reason="source_not_allowed"}`.
    pub allow: Option<SourceAllowlist>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            decode: DecodeOptions::default(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            udp: UdpConfig::default(),
            tcp: TcpConfig::default(),
            tls: None,
            allow: None,
        }
    }
}

impl ListenerConfig {
    /// This config with TLS settings (for `hep_tls` specs).
    #[must_use]
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// This config accepting agents from `allow` only (see [`allow`](Self::allow)).
    #[must_use]
    pub fn with_allow(mut self, allow: Option<SourceAllowlist>) -> Self {
        self.allow = allow;
        self
    }
}

// ===== UDP =====

/// The default [`UdpConfig::recv_buffer_size`]: 8 MiB.
pub const DEFAULT_RECV_BUFFER_SIZE: usize = 8 << 20;
/// The default [`UdpConfig::max_in_flight`].
pub const DEFAULT_UDP_MAX_IN_FLIGHT: usize = 4096;

/// `hep_udp` settings (part of [`ListenerConfig`]); what they do is told in
/// [`udp`](super::udp).
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// `SO_RCVBUF` to ask for, in bytes. Default: [`DEFAULT_RECV_BUFFER_SIZE`] (8 MiB).
    /// See [`udp`](super::udp#receive-buffer).
    pub recv_buffer_size: usize,
    /// Sockets bound to the port with `SO_REUSEPORT`, one worker task each; the kernel
    /// spreads senders over them by address hash. Default: 1 (on a 2-core machine the
    /// sender and the kernel need the other core). Values above 1 need Unix.
    pub sockets: usize,
    /// Set `SO_REUSEPORT` even with one socket, so that other processes may share the
    /// port. Default: false.
    pub reuse_port: bool,
    /// Answers a worker awaits at once (see [`tower::buffer::Buffer`]); when all are
    /// pending, datagrams are dropped and counted as `overload`. Keep it above the
    /// capacity of a `Buffer` in the service stack. Default:
    /// [`DEFAULT_UDP_MAX_IN_FLIGHT`] (4096).
    pub max_in_flight: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            recv_buffer_size: DEFAULT_RECV_BUFFER_SIZE,
            sockets: 1,
            reuse_port: false,
            max_in_flight: DEFAULT_UDP_MAX_IN_FLIGHT,
        }
    }
}

// ===== TCP and TLS =====

/// The default [`TcpConfig::max_msg_chunks`]: 32, as OpenSIPS's `hep_max_msg_chunks`.
pub const DEFAULT_MAX_MSG_CHUNKS: u32 = 32;
/// The default [`TcpConfig::idle_timeout`]: 120 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The default [`TcpConfig::frame_timeout`]: 4 s, as OpenSIPS's `tcp_max_msg_time`.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(4);
/// The default [`TcpConfig::max_connections`]: 4096.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// The default [`TcpConfig::read_buffer_size`]: 64 KiB.
pub const DEFAULT_READ_BUFFER_SIZE: usize = 64 * 1024;
/// The default [`TcpConfig::max_in_flight`] per connection: 64.
pub const DEFAULT_TCP_MAX_IN_FLIGHT: usize = 64;
/// The default [`TcpConfig::backlog`]: 1024.
pub const DEFAULT_BACKLOG: u32 = 1024;

/// `hep_tcp` / `hep_tls` settings (part of [`ListenerConfig`]); the framing, the limits
/// and their OpenSIPS names are told in [`tcp`](super::tcp).
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Reads a frame may take before the connection is closed (`hep_max_msg_chunks`;
    /// 0 = unlimited). Default: [`DEFAULT_MAX_MSG_CHUNKS`] (32).
    pub max_msg_chunks: u32,
    /// No bytes for this long closes the connection. Default: [`DEFAULT_IDLE_TIMEOUT`]
    /// (120 s).
    pub idle_timeout: Duration,
    /// A frame must complete within this time of its first bytes. Default:
    /// [`DEFAULT_FRAME_TIMEOUT`] (4 s).
    pub frame_timeout: Duration,
    /// Longest frame accepted, checked from its header (at most 65535, HEP3's u16).
    /// Default: 65535.
    pub max_frame_length: usize,
    /// Connections served at once; more are reset at accept and counted
    /// ([`RejectReason::MaxConnections`]). Default: [`DEFAULT_MAX_CONNECTIONS`] (4096).
    pub max_connections: usize,
    /// Bytes a busy connection reads at once. Default: [`DEFAULT_READ_BUFFER_SIZE`]
    /// (64 KiB).
    pub read_buffer_size: usize,
    /// Answers a connection awaits at once, oldest first (1 = one message at a time).
    /// Default: [`DEFAULT_TCP_MAX_IN_FLIGHT`] (64).
    pub max_in_flight: usize,
    /// `listen()` backlog. Default: [`DEFAULT_BACKLOG`] (1024).
    pub backlog: u32,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            max_msg_chunks: DEFAULT_MAX_MSG_CHUNKS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            max_frame_length: hep_proto::codec::MAX_FRAME_LENGTH,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            read_buffer_size: DEFAULT_READ_BUFFER_SIZE,
            max_in_flight: DEFAULT_TCP_MAX_IN_FLIGHT,
            backlog: DEFAULT_BACKLOG,
        }
    }
}
