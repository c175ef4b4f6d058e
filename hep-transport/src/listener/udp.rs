//! `hep_udp`: HEPv1, v2 and v3 datagrams on one socket (or several, with `SO_REUSEPORT`).
//!
//! # Receive path
//! Each socket has one worker task. It waits for readability and then takes up to
//! [`quinn_udp::BATCH_SIZE`] datagrams per system call (`recvmmsg` on Linux, with UDP GRO:
//! one buffer may hold several datagrams of one sender, split here by their stride).
//! Each datagram is copied once into a shared arena and frozen as a [`Bytes`]: the
//! message's payload and other fields are slices of it, not copies.
//!
//! Why one copy: `recvmmsg` needs a slot of the largest datagram size (64 KiB, which a GRO
//! batch may also fill) per message, and a message handed on keeps its whole buffer
//! alive. Receiving straight into `Bytes` would pin 64 KiB per retained datagram; the copy
//! (one `memcpy` of the datagram's real length, tens of ns for a SIP message) packs
//! datagrams back to back, 64 KiB arenas shared by about a hundred of them.
//!
//! Then: decode ([`DecodeOptions::decode`](hep_proto::DecodeOptions::decode)); a bad
//! datagram is counted under its [`DecodeError::label`](hep_proto::DecodeError::label),
//! logged (warn, at most one line a second per listener, with the number left out) and
//! skipped. A good one is handed to the service with its [`RecvInfo`].
//!
//! # Receive buffer
//! The kernel's default receive buffer (about 200 KiB on Linux) holds a few hundred SIP
//! messages: a millisecond's stall of the worker at 100,000 messages/s overflows it and
//! the kernel drops datagrams without telling anyone. The listener asks for
//! [`UdpConfig::recv_buffer_size`] (8 MiB by default). Linux grants at most
//! `net.core.rmem_max` (and reports twice what it grants), unless the process has
//! `CAP_NET_ADMIN` (root): then the listener asks again with `SO_RCVBUFFORCE` and gets
//! the size requested. The granted size is logged at startup, with a warning if it is
//! below the request; raise the limit with `sysctl -w net.core.rmem_max=8388608` (or
//! more). Kernel drops are visible in `/proc/net/snmp` (`Udp: RcvbufErrors`, one per
//! datagram, or per GRO batch of up to 64).
//!
//! # Binding
//! `IPV6_V6ONLY` is set on IPv6 sockets (listen on `0.0.0.0` and `[::]` separately to
//! take both). `SO_REUSEADDR` is not set: for UDP it would let a second process bind the
//! same port and silently receive part of the traffic; a port in use is a bind error.
//! Several sockets on one port are asked for explicitly ([`UdpConfig::sockets`],
//! [`UdpConfig::reuse_port`]).
//!
//! # Backpressure
//! None is possible: see the [listener docs](crate::listener#backpressure). Wrap the
//! service in [`OverloadDrop`](crate::layer::overload::OverloadDrop).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hep_proto::HepVersion;
use quinn_udp::{RecvMeta, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use super::config::{DEFAULT_RECV_BUFFER_SIZE, DEFAULT_UDP_MAX_IN_FLIGHT, UdpConfig};
use super::dispatch::Dispatcher;
use super::error::ListenError;
use super::shared::{Shared, next_backoff};
use crate::{
    BoxError, HepService, ListenSpec, ListenerDropReason, Received, RecvInfo, RejectReason,
    SourceAllowlist,
};

/// Receive slot per datagram: the largest UDP payload, or a GRO batch (at most 64 KiB).
const SLOT: usize = 64 * 1024;
/// Size of the arenas datagrams are packed into.
const ARENA: usize = 64 * 1024;
/// Datagrams a worker hands on before it yields its thread to the tasks it woke (see
/// `Receiver::run`): about 1.3 ms of work at 800,000 datagrams/s. Yielding after every
/// batch cost 18% more user and 50% more kernel cycles a datagram (an I/O driver poll per
/// batch) for the null output at 800,000/s.
const YIELD_EVERY: usize = 1024;

/// A bound, non-blocking UDP socket with quinn-udp's state (GRO, batched receive).
pub(super) struct UdpSock {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
}

/// Binds `config.sockets` sockets to `spec`; returns them, the bound address and the
/// smallest receive buffer granted.
pub(super) fn bind(
    spec: ListenSpec,
    config: &UdpConfig,
) -> Result<(Vec<UdpSock>, SocketAddr, usize), ListenError> {
    let n = config.sockets.max(1);
    let reuse_port = config.reuse_port || n > 1;
    let mut addr = spec.addr;
    let mut socks = Vec::with_capacity(n);
    let mut granted = usize::MAX;
    for _ in 0..n {
        let (sock, rcvbuf) = bind_one(spec, addr, config.recv_buffer_size, reuse_port)?;
        // With port 0, the first socket picks the port and the others join it.
        addr = sock.io.local_addr().map_err(|source| ListenError::Socket {
            spec,
            what: "reading the bound address",
            source,
        })?;
        granted = granted.min(rcvbuf);
        socks.push(sock);
    }
    if granted < config.recv_buffer_size {
        tracing::warn!(
            listener = %ListenSpec::new(spec.transport, addr),
            requested = config.recv_buffer_size,
            granted,
            "the kernel granted a smaller UDP receive buffer than requested: bursts may be \
             dropped by the kernel, uncounted; raise net.core.rmem_max \
             (sysctl -w net.core.rmem_max={})",
            config.recv_buffer_size,
        );
    }
    Ok((socks, addr, granted))
}

fn bind_one(
    spec: ListenSpec,
    addr: SocketAddr,
    recv_buffer_size: usize,
    reuse_port: bool,
) -> Result<(UdpSock, usize), ListenError> {
    let err = |what| move |source| ListenError::Socket { spec, what, source };
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(err("creating the socket"))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true).map_err(err("setting IPV6_V6ONLY"))?;
    }
    // No SO_REUSEADDR: on Linux it lets a second UDP socket bind the same port and
    // silently take part of the traffic. Sharing a port is explicit (`reuse_port`).
    if reuse_port {
        set_reuse_port(&sock).map_err(err("setting SO_REUSEPORT"))?;
    }
    if let Err(e) = sock.set_recv_buffer_size(recv_buffer_size) {
        tracing::warn!(listener = %spec, error = %e, "cannot set SO_RCVBUF");
    }
    let mut granted = sock.recv_buffer_size().map_err(err("reading SO_RCVBUF"))?;
    // Linux grants at most net.core.rmem_max and reports twice what it grants. A process
    // with CAP_NET_ADMIN may go above that limit (SO_RCVBUFFORCE): the configured size is
    // what the operator asked for, and a relay's bursts need it (docs/BENCHMARKS.md).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if granted < recv_buffer_size.saturating_mul(2)
        && rustix::net::sockopt::set_socket_recv_buffer_size_force(&sock, recv_buffer_size).is_ok()
    {
        granted = sock.recv_buffer_size().map_err(err("reading SO_RCVBUF"))?;
    }
    sock.set_nonblocking(true)
        .map_err(err("making the socket non-blocking"))?;
    sock.bind(&addr.into())
        .map_err(|source| ListenError::Bind { spec, source })?;
    let std: std::net::UdpSocket = sock.into();
    let state =
        UdpSocketState::new((&std).into()).map_err(err("enabling batched receive (quinn-udp)"))?;
    let io =
        tokio::net::UdpSocket::from_std(std).map_err(err("registering the socket with tokio"))?;
    Ok((UdpSock { io, state }, granted))
}

#[cfg(unix)]
fn set_reuse_port(sock: &Socket) -> io::Result<()> {
    sock.set_reuse_port(true)
}

#[cfg(not(unix))]
fn set_reuse_port(_: &Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_REUSEPORT needs Unix; use one socket",
    ))
}

/// Runs one worker per socket until `stop`; returns the first fatal error.
pub(super) async fn run<S>(
    socks: Vec<UdpSock>,
    shared: Arc<Shared>,
    service: S,
    stop: CancellationToken,
    hard_stop: CancellationToken,
) -> Result<(), ListenError>
where
    S: HepService,
{
    let mut workers = JoinSet::new();
    for sock in socks {
        let dispatcher = Dispatcher::new(
            service.clone(),
            shared.clone(),
            shared.config.udp.max_in_flight,
            true,
        );
        // Unconstrained by tokio's cooperative budget: past 128 operations in one poll,
        // budgeted resources (a bounded channel's `reserve`, a semaphore) answer `Pending`
        // to make the task yield. For a datagram worker that `Pending` reads as "the
        // service is not ready", and the rest of the batch was dropped as overload with
        // the output queues empty (a relay lost 20% at 100,000 messages/s). The worker
        // yields explicitly every `YIELD_EVERY` datagrams; see `run`.
        workers.spawn(tokio::task::unconstrained(worker(
            sock,
            shared.clone(),
            dispatcher,
            stop.clone(),
            hard_stop.clone(),
        )));
    }
    let mut result = Ok(());
    while let Some(joined) = workers.join_next().await {
        let res = match joined {
            Ok(res) => res,
            Err(e) => {
                tracing::error!(listener = %shared.spec, error = %e, "UDP worker panicked");
                Ok(())
            }
        };
        if let Err(e) = res {
            // The service is gone: stop the other workers too.
            stop.cancel();
            hard_stop.cancel();
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result
}

/// One socket's receive loop.
async fn worker<S>(
    sock: UdpSock,
    shared: Arc<Shared>,
    mut dispatcher: Dispatcher<S>,
    stop: CancellationToken,
    hard_stop: CancellationToken,
) -> Result<(), ListenError>
where
    S: HepService,
{
    let mut rx = Receiver {
        sock,
        scratch: vec![0; SLOT * quinn_udp::BATCH_SIZE],
        meta: [RecvMeta::default(); quinn_udp::BATCH_SIZE],
        arena: BytesMut::with_capacity(ARENA),
        allow: shared.config.allow.clone(),
        shared: shared.clone(),
        bytes: 0,
    };
    let res = tokio::select! {
        biased;
        () = hard_stop.cancelled() => {
            shared.stats.record_dropped(ListenerDropReason::Shutdown, dispatcher.pending() as u64);
            Ok(())
        }
        res = rx.run(&mut dispatcher, &stop) => res,
    };
    dispatcher.flush_counts();
    shared.stats.record_bytes(rx.bytes);
    res.map_err(|source| ListenError::Service {
        spec: shared.spec,
        source,
    })
}

struct Receiver {
    sock: UdpSock,
    /// `BATCH_SIZE` receive slots of `SLOT` bytes.
    scratch: Vec<u8>,
    meta: [RecvMeta; quinn_udp::BATCH_SIZE],
    /// Where datagrams are packed before being handed on.
    arena: BytesMut,
    /// The listener's allowlist, if any (checked before a datagram is copied).
    allow: Option<SourceAllowlist>,
    shared: Arc<Shared>,
    /// Bytes received, not yet added to the shared counter (once per batch).
    bytes: u64,
}

impl Receiver {
    async fn run<S>(
        &mut self,
        dispatcher: &mut Dispatcher<S>,
        stop: &CancellationToken,
    ) -> Result<(), BoxError>
    where
        S: HepService,
    {
        let mut backoff = Duration::ZERO;
        let mut unyielded = 0;
        loop {
            let received = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = dispatcher.drain(), if dispatcher.has_in_flight() => continue,
                res = recv_batch(&self.sock, &mut self.scratch, &mut self.meta) => res,
            };
            let n = match received {
                Ok(n) => {
                    backoff = Duration::ZERO;
                    n
                }
                Err(e) => {
                    self.shared.stats.record_rejected(RejectReason::Io);
                    if let Some(suppressed) = self.shared.warn_input.check() {
                        tracing::warn!(listener = %self.shared.spec, suppressed, error = %e, "UDP receive failed");
                    }
                    // Do not spin on a persistent error.
                    backoff = next_backoff(
                        backoff.max(Duration::from_micros(500)),
                        Duration::from_secs(1),
                    );
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(backoff) => continue,
                    }
                }
            };
            for i in 0..n {
                let meta = self.meta[i];
                let start = i * SLOT;
                let len = meta.len.min(SLOT);
                if let Some(allow) = &self.allow
                    && !allow.contains(meta.addr.ip())
                {
                    self.refuse(&meta, len);
                    continue;
                }
                // A GRO buffer holds datagrams of one sender at `stride` intervals; an
                // empty datagram is one (bad) datagram too.
                let stride = if meta.stride == 0 { len } else { meta.stride };
                let mut off = 0;
                loop {
                    let seg = stride.min(len - off);
                    if self.datagram(dispatcher, &meta, start + off, seg) {
                        std::future::poll_fn(|cx| dispatcher.poll_dispatch(cx)).await?;
                    }
                    off += seg;
                    unyielded += 1;
                    if off >= len || seg == 0 {
                        break;
                    }
                }
            }
            dispatcher.flush_counts();
            self.shared
                .stats
                .record_bytes(std::mem::take(&mut self.bytes));
            // Awaiting a socket that has data does not yield, and this task is outside the
            // cooperative budget: under load it would keep its worker thread for as long as
            // datagrams keep coming. A task it wakes (a relay's output task, woken by the
            // output queue) lands in this worker's LIFO slot, which no other worker may
            // steal, so it waited: a relay's output queue (65,536) filled and overflowed
            // at 400,000 msg/s with a core to spare (docs/BENCHMARKS.md).
            if unyielded >= YIELD_EVERY {
                unyielded = 0;
                tokio::task::yield_now().await;
            }
        }
        // Stopped: hand on nothing more, finish what is pending.
        dispatcher.drain().await;
        Ok(())
    }

    /// Counts and skips a receive buffer (one datagram, or a GRO batch of one sender's)
    /// from a source the allowlist does not have: before any copy or decode.
    #[cold]
    fn refuse(&mut self, meta: &RecvMeta, len: usize) {
        let datagrams = if meta.stride == 0 || len == 0 {
            1
        } else {
            len.div_ceil(meta.stride)
        };
        self.bytes += len as u64;
        self.shared
            .stats
            .record_rejected_many(RejectReason::SourceNotAllowed, datagrams as u64);
        if let Some(suppressed) = self.shared.warn_input.check() {
            tracing::warn!(
                listener = %self.shared.spec,
                peer = %meta.addr,
                reason = RejectReason::SourceNotAllowed.label(),
                suppressed,
                "dropped a datagram from a source outside the listener's allowlist"
            );
        }
    }

    /// One datagram at `scratch[at..at + len]`: copy and decode it, then submit it to the
    /// dispatcher (`true`) or count and skip it (`false`).
    fn datagram<S>(
        &mut self,
        dispatcher: &mut Dispatcher<S>,
        meta: &RecvMeta,
        at: usize,
        len: usize,
    ) -> bool
    where
        S: HepService,
    {
        let data = self.scratch.get(at..at + len).unwrap_or_default();
        let wire = pack(&mut self.arena, data);
        self.bytes += len as u64;
        match self.shared.config.decode.decode(&wire) {
            Ok(message) => {
                dispatcher.count_received(message.version.unwrap_or(HepVersion::V3));
                let info =
                    RecvInfo::new(self.shared.spec.transport, meta.addr, self.shared.spec.addr);
                dispatcher.submit(Received::new(message, wire, info));
                true
            }
            Err(e) => {
                self.shared.stats.record_decode_error(&e);
                if let Some(suppressed) = self.shared.warn_input.check() {
                    tracing::warn!(
                        listener = %self.shared.spec,
                        peer = %meta.addr,
                        reason = e.label(),
                        suppressed,
                        "rejected a {len}-byte datagram: {e}"
                    );
                }
                false
            }
        }
    }
}

/// Copies `data` to the end of `arena` and splits it off as `Bytes` (see the module docs).
fn pack(arena: &mut BytesMut, data: &[u8]) -> Bytes {
    if arena.capacity() - arena.len() < data.len() && !arena.try_reclaim(data.len()) {
        // The old arena lives on until the last message in it is dropped.
        *arena = BytesMut::with_capacity(ARENA.max(data.len()));
    }
    arena.extend_from_slice(data);
    arena.split().freeze()
}

/// Waits until the socket is readable and receives one batch; returns how many of
/// `meta` are filled. Cancel-safe: nothing is received unless it returns.
async fn recv_batch(
    sock: &UdpSock,
    scratch: &mut [u8],
    meta: &mut [RecvMeta],
) -> io::Result<usize> {
    loop {
        sock.io.readable().await?;
        let mut slots = scratch.chunks_mut(SLOT);
        let mut bufs: [IoSliceMut<'_>; quinn_udp::BATCH_SIZE] =
            std::array::from_fn(|_| IoSliceMut::new(slots.next().unwrap_or_default()));
        // As quinn does: `try_io` clears tokio's readiness on WouldBlock, so the next
        // `readable()` waits for the kernel again.
        match sock.io.try_io(Interest::READABLE, || {
            sock.state.recv((&sock.io).into(), &mut bufs, meta)
        }) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_datagrams_share_an_arena_and_keep_their_bytes() {
        let mut arena = BytesMut::new();
        let a = pack(&mut arena, b"HEP3 first");
        let b = pack(&mut arena, b"second");
        assert_eq!(&a[..], b"HEP3 first");
        assert_eq!(&b[..], b"second");
        // Back to back in one allocation.
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
        let big = pack(&mut arena, &[7; ARENA + 1]);
        assert_eq!(big.len(), ARENA + 1);
        assert_eq!(&a[..], b"HEP3 first");
    }

    #[test]
    fn an_arena_is_reused_once_its_datagrams_are_dropped() {
        let mut arena = BytesMut::with_capacity(ARENA);
        let first = pack(&mut arena, &[1; 1000]);
        let ptr = first.as_ptr();
        drop(first);
        while arena.capacity() >= 1000 {
            drop(pack(&mut arena, &[2; 1000]));
        }
        let again = pack(&mut arena, &[3; 1000]);
        assert_eq!(
            again.as_ptr(),
            ptr,
            "the arena was reclaimed, not reallocated"
        );
    }
}
