//! `[limits]`: receive-side limits, the output queues, the shutdown deadline.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[limits]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    udp_recv_buffer: Option<usize>,
    max_connections: Option<usize>,
    idle_timeout_ms: Option<u64>,
    frame_timeout_ms: Option<u64>,
    max_frame_length: Option<usize>,
    max_inflated_len: Option<usize>,
    output_queue: Option<usize>,
    shutdown_timeout_ms: Option<u64>,
}

/// Receive-side limits (`[limits]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// UDP socket receive buffer to request, bytes (default 8 MiB: the kernel default
    /// of about 208 KiB loses packets from about 50,000/s).
    pub udp_recv_buffer: usize,
    /// Open TCP/TLS connections at most, per listener (default 4096).
    pub max_connections: usize,
    /// A TCP/TLS connection with no bytes for this long is closed, ms (default 120000).
    pub idle_timeout_ms: u64,
    /// A started TCP/TLS frame must complete within this, ms (default 4000).
    pub frame_timeout_ms: u64,
    /// Largest TCP/TLS frame accepted, bytes (default and maximum 65535).
    pub max_frame_length: usize,
    /// Largest inflated compressed payload (chunk 0x0010), bytes (default 262144).
    pub max_inflated_len: usize,
    /// Messages queued per output before it drops (counted) or pushes back (default 65536).
    pub output_queue: usize,
    /// How long a stop (SIGTERM, SIGINT) may take to deliver what was accepted, ms
    /// (default 10000; 0 = no deadline). What is still queued then is counted lost.
    pub shutdown_timeout_ms: u64,
}

impl Limits {
    /// The shutdown deadline, `None` for none (`shutdown_timeout_ms = 0`).
    pub fn shutdown_timeout(&self) -> Option<Duration> {
        (self.shutdown_timeout_ms > 0).then(|| Duration::from_millis(self.shutdown_timeout_ms))
    }
}

/// `[limits]` with its defaults filled in.
pub(super) fn resolve(raw: RawLimits) -> Limits {
    Limits {
        udp_recv_buffer: raw.udp_recv_buffer.unwrap_or(8 << 20),
        max_connections: raw.max_connections.unwrap_or(4096),
        idle_timeout_ms: raw.idle_timeout_ms.unwrap_or(120_000),
        frame_timeout_ms: raw.frame_timeout_ms.unwrap_or(4_000),
        max_frame_length: raw.max_frame_length.unwrap_or(65_535).min(65_535),
        max_inflated_len: raw
            .max_inflated_len
            .unwrap_or(hep_proto::DEFAULT_MAX_INFLATED_LEN),
        output_queue: raw.output_queue.unwrap_or(65_536).max(1),
        shutdown_timeout_ms: raw.shutdown_timeout_ms.unwrap_or(10_000),
    }
}
