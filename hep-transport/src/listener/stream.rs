//! The stream half of `hep_tcp` and `hep_tls`: HEPv3 frames read back to back from any
//! [`AsyncRead`], under the limits and timeouts of [`TcpConfig`] (`max_msg_chunks`,
//! `frame_timeout`, `idle_timeout`, `max_frame_length`), and handed to the service in
//! order. What a connection is before it is a stream (a plain TCP socket, or one a TLS
//! handshake ran on) is a [`Handshake`]; the framing does not know which it reads.
//!
//! The user-facing story (framing, why no resync, the limits' OpenSIPS names) is told in
//! [`tcp`](super::tcp).

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hep_proto::{
    DecodeError, HEP3_HEADER_LEN, HepCodecError, HepFrameCodec, HepMessage, HepVersion,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::config::TcpConfig;
use super::dispatch::Dispatcher;
use super::shared::Shared;
use crate::{
    BoxError, ClientIdentity, HepService, ListenerDropReason, Received, RecvInfo, RejectReason,
};

/// A read with less room than this left in the buffer makes room first.
const MIN_READ: usize = 4 * 1024;
/// The first read of a connection (or after it was idle) is this small at most, so that
/// an idle connection holds little memory.
const FIRST_READ: usize = 8 * 1024;

/// What an accepted connection goes through before its bytes are framed: nothing for
/// `hep_tcp`, the TLS handshake for `hep_tls`. The accept loop is generic over it, so
/// that a plain TCP connection's task holds nothing of TLS.
pub(super) trait Handshake: Clone + Send + Sync + 'static {
    /// The stream frames are read from.
    type Stream: AsyncRead + ReadReady + Unpin + Send + Sync;

    /// The stream and the identity of the client's verified certificate (mTLS), or
    /// `None` (counted and logged here) if the connection is not to be served: a failed
    /// or timed-out handshake, a refused certificate, or `stop` meanwhile.
    fn handshake(
        &self,
        stream: TcpStream,
        info: &RecvInfo,
        shared: &Shared,
        stop: &CancellationToken,
    ) -> impl Future<Output = Option<(Self::Stream, Option<Arc<ClientIdentity>>)>> + Send;
}

/// Whether a stream can say it is readable without being read: lets an idle connection
/// give its read buffer back (a TLS stream cannot tell: its records may already be
/// buffered).
pub(super) trait ReadReady {
    /// `Ready` when a read would not wait (or it cannot tell).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// Why a connection ended.
enum End {
    /// The peer closed it between frames.
    Eof,
    /// A read failed between frames (e.g. the peer reset): nothing was lost.
    Reset(io::Error),
    /// The listener is shutting down.
    Shutdown,
    /// Closed for a transport-level reason (counted here).
    Closed(RejectReason, Option<io::Error>),
    /// A framing error (already counted under its decode label).
    Framing(DecodeError),
    /// The service failed in `poll_ready`.
    ServiceFailed(BoxError),
}

/// Runs the frame loop on an established stream until it ends, then logs why.
pub(super) async fn serve_stream<IO, S>(
    io: IO,
    info: RecvInfo,
    shared: &Arc<Shared>,
    service: S,
    stop: &CancellationToken,
    hard_stop: &CancellationToken,
) where
    IO: AsyncRead + ReadReady + Unpin,
    S: HepService,
{
    let tcp = &shared.config.tcp;
    let peer = info.peer;
    let mut codec = HepFrameCodec::new();
    codec.set_max_frame_length(tcp.max_frame_length);
    codec.set_accept_eep3(shared.config.decode.get_accept_eep3());
    let mut conn = Conn {
        io,
        buf: BytesMut::new(),
        filled: false,
        codec,
        info,
        dispatcher: Dispatcher::new(service, shared.clone(), tcp.max_in_flight, false),
        shared,
    };
    let end = tokio::select! {
        biased;
        () = hard_stop.cancelled() => None,
        end = conn.run(stop) => Some(end),
    };
    conn.dispatcher.flush_counts();
    let Some(end) = end else {
        shared.stats.record_dropped(
            ListenerDropReason::Shutdown,
            conn.dispatcher.pending() as u64,
        );
        if !conn.buf.is_empty() {
            shared.stats.record_rejected(RejectReason::Truncated);
        }
        return;
    };
    let spec = &shared.spec;
    match end {
        End::Eof => tracing::debug!(listener = %spec, %peer, "connection closed by the peer"),
        End::Reset(e) => {
            tracing::debug!(listener = %spec, %peer, error = %e, "connection ended between frames");
        }
        End::Shutdown => tracing::debug!(listener = %spec, %peer, "connection closed: shutdown"),
        End::Closed(reason, error) => {
            shared.stats.record_rejected(reason);
            if let Some(suppressed) = shared.warn_input.check() {
                let why = describe(reason, &shared.config.tcp);
                match error {
                    Some(e) => {
                        tracing::warn!(listener = %spec, %peer, reason = reason.label(), suppressed, "closing connection: {why}: {e}")
                    }
                    None => {
                        tracing::warn!(listener = %spec, %peer, reason = reason.label(), suppressed, "closing connection: {why}")
                    }
                }
            }
        }
        End::Framing(e) => {
            if let Some(suppressed) = shared.warn_input.check() {
                tracing::warn!(
                    listener = %spec,
                    %peer,
                    reason = e.label(),
                    suppressed,
                    "closing connection: {e}; the stream is out of step (no resync)"
                );
            }
        }
        End::ServiceFailed(e) => {
            if let Some(suppressed) = shared.warn_service.check() {
                tracing::warn!(listener = %spec, %peer, suppressed, error = %e, "closing connection: the service failed");
            }
        }
    }
}

fn describe(reason: RejectReason, config: &TcpConfig) -> String {
    match reason {
        RejectReason::MaxMsgChunks => format!(
            "a frame took {} reads without completing (max_msg_chunks)",
            config.max_msg_chunks
        ),
        RejectReason::FrameTimeout => format!(
            "a frame did not complete within {:?} (frame_timeout)",
            config.frame_timeout
        ),
        RejectReason::IdleTimeout => {
            format!("no bytes for {:?} (idle_timeout)", config.idle_timeout)
        }
        RejectReason::Truncated => "the peer closed the connection in the middle of a frame".into(),
        RejectReason::TlsHandshake => "TLS handshake failed".into(),
        RejectReason::ClientCertNotAllowed => {
            "the client certificate is not one the listener knows".into()
        }
        _ => reason.label().into(),
    }
}

struct Conn<'a, IO, S>
where
    S: HepService,
{
    io: IO,
    /// Bytes read and not yet framed: at most one incomplete frame between reads.
    buf: BytesMut,
    /// The last read filled all the room it had (see [`read_some`]).
    filled: bool,
    codec: HepFrameCodec,
    info: RecvInfo,
    dispatcher: Dispatcher<S>,
    shared: &'a Arc<Shared>,
}

impl<IO, S> Conn<'_, IO, S>
where
    IO: AsyncRead + ReadReady + Unpin,
    S: HepService,
{
    async fn run(&mut self, stop: &CancellationToken) -> End {
        let shared = self.shared;
        let tcp = &shared.config.tcp;
        let mut attempts: u32 = 0;
        let mut frame_deadline: Option<Instant> = None;
        let mut idle_deadline = Instant::now() + tcp.idle_timeout;
        let mut sleep = pin!(tokio::time::sleep_until(idle_deadline));
        let mut stopping = false;
        loop {
            let deadline = frame_deadline.map_or(idle_deadline, |f| f.min(idle_deadline));
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            let limit = stopping.then(|| missing_of_current_frame(&self.buf));
            let read = tokio::select! {
                biased;
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    if self.buf.is_empty() {
                        self.dispatcher.drain().await;
                        return End::Shutdown;
                    }
                    // Finish the frame being read (within frame_timeout), then close.
                    continue;
                }
                () = &mut sleep => {
                    let reason = if frame_deadline.is_some_and(|f| f <= Instant::now()) {
                        RejectReason::FrameTimeout
                    } else {
                        RejectReason::IdleTimeout
                    };
                    self.dispatcher.drain().await;
                    return End::Closed(reason, None);
                }
                () = self.dispatcher.drain(), if self.dispatcher.has_in_flight() => continue,
                // Stopping: read only what the frame being read still needs, so that a
                // peer that keeps sending cannot hold the connection open.
                read = read_some(
                    &mut self.io,
                    &mut self.buf,
                    &mut self.filled,
                    tcp.read_buffer_size,
                    limit,
                ) => read,
            };
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    self.dispatcher.drain().await;
                    if self.buf.is_empty() {
                        return End::Reset(e);
                    }
                    return End::Closed(RejectReason::Truncated, Some(e));
                }
            };
            if n == 0 {
                self.dispatcher.drain().await;
                if self.buf.is_empty() {
                    return End::Eof;
                }
                return End::Closed(RejectReason::Truncated, None);
            }
            shared.stats.record_bytes(n as u64);

            let mut completed = false;
            loop {
                match self.codec.decode(&mut self.buf) {
                    Ok(Some(frame)) => {
                        completed = true;
                        // Ready first, then decode straight into the call (see
                        // `Dispatcher::poll_ready`).
                        let ready = std::future::poll_fn(|cx| self.dispatcher.poll_ready(cx)).await;
                        if let Err(e) = ready {
                            if self.decode(&frame).is_some() {
                                shared
                                    .stats
                                    .record_dropped(ListenerDropReason::ServiceError, 1);
                            }
                            return End::ServiceFailed(e);
                        }
                        if let Some(message) = self.decode(&frame) {
                            self.dispatcher
                                .call(Received::new(message, frame, self.info.clone()));
                        }
                    }
                    Ok(None) => break,
                    Err(HepCodecError::Decode(e)) => {
                        shared.stats.record_decode_error(&e);
                        self.dispatcher.drain().await;
                        return End::Framing(e);
                    }
                    Err(e) => {
                        // Only `Decode` errors come out of framing bytes in memory.
                        self.dispatcher.drain().await;
                        return End::Reset(io::Error::other(e));
                    }
                }
            }
            self.dispatcher.flush_counts();

            // Taken after the frames were handed on: waiting for the service is not the
            // peer's fault and does not count against its timeouts.
            let now = Instant::now();
            idle_deadline = now + tcp.idle_timeout;
            if completed {
                attempts = 0;
                frame_deadline = None;
            }
            if !self.buf.is_empty() {
                attempts = attempts.saturating_add(1);
                if tcp.max_msg_chunks != 0 && attempts >= tcp.max_msg_chunks {
                    self.dispatcher.drain().await;
                    return End::Closed(RejectReason::MaxMsgChunks, None);
                }
                frame_deadline.get_or_insert(now + tcp.frame_timeout);
            } else if stopping {
                self.dispatcher.drain().await;
                return End::Shutdown;
            }
        }
    }

    /// One complete frame decoded and counted as received, or counted and skipped
    /// (`None`).
    fn decode(&mut self, frame: &Bytes) -> Option<HepMessage> {
        match self.shared.config.decode.decode(frame) {
            Ok(message) => {
                self.dispatcher
                    .count_received(message.version.unwrap_or(HepVersion::V3));
                Some(message)
            }
            Err(e) => {
                self.shared.stats.record_decode_error(&e);
                if let Some(suppressed) = self.shared.warn_input.check() {
                    tracing::warn!(
                        listener = %self.shared.spec,
                        peer = %self.info.peer,
                        reason = e.label(),
                        suppressed,
                        "skipped a {}-byte frame: {e}; the connection goes on",
                        frame.len()
                    );
                }
                None
            }
        }
    }
}

/// Reads once into `buf`. Between frames (`buf` empty) it first waits for readability
/// and, if it has to wait, gives the buffer back: an idle connection holds no buffer.
/// Cancel-safe.
///
/// `filled` says the last read filled all the room it had: the peer is likely sending
/// faster than one buffer a read, so the buffer grows to `read_size`. Otherwise a buffer
/// taken after a wait is [`FIRST_READ`] small, so that many connections waking with one
/// message each take little memory. Without `filled`, a busy connection stayed on its
/// first 8 KiB buffer for good: the frame codec reclaims the same allocation for the
/// frame it completes, so the room never fell below [`MIN_READ`], and the connection
/// read 7.9 KB at a time where 64 KiB was possible (docs/BENCHMARKS.md).
async fn read_some<IO>(
    io: &mut IO,
    buf: &mut BytesMut,
    filled: &mut bool,
    read_size: usize,
    limit: Option<usize>,
) -> io::Result<usize>
where
    IO: AsyncRead + ReadReady + Unpin,
{
    if buf.is_empty() {
        std::future::poll_fn(|cx| {
            let ready = io.poll_read_ready(cx);
            if ready.is_pending() {
                *filled = false;
                if buf.capacity() > 0 {
                    *buf = BytesMut::new();
                }
            }
            ready
        })
        .await?;
    }
    let room = buf.capacity() - buf.len();
    if room < MIN_READ || (*filled && buf.capacity() < read_size) {
        let want = if *filled || buf.capacity() > 0 {
            read_size
        } else {
            read_size.min(FIRST_READ)
        };
        // Room for `want` bytes in all (the unfinished frame included), not `want` more:
        // asking for more than the allocation holds would double it.
        buf.reserve(want.saturating_sub(buf.len()).max(MIN_READ));
    }
    let room = buf.capacity() - buf.len();
    let n = match limit {
        Some(n) => io.take(n as u64).read_buf(buf).await?,
        None => io.read_buf(buf).await?,
    };
    *filled = n == room;
    Ok(n)
}

/// Bytes still missing from the frame at the head of `buf` (up to its 6-byte header when
/// even that is incomplete): what a stopping connection still reads.
fn missing_of_current_frame(buf: &[u8]) -> usize {
    match buf {
        [_, _, _, _, hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo]))
            .saturating_sub(buf.len())
            .max(1),
        _ => HEP3_HEADER_LEN - buf.len(),
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use tokio::io::ReadBuf;

    use super::*;
    use crate::listener::config::DEFAULT_READ_BUFFER_SIZE;

    /// A peer that always has more whole frames waiting than a read takes, and records
    /// how much room each read offered.
    struct Busy {
        frame: Vec<u8>,
        at: usize,
        rooms: Vec<usize>,
    }

    impl AsyncRead for Busy {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let room = buf.remaining();
            self.rooms.push(room);
            for _ in 0..room {
                let byte = self.frame[self.at];
                buf.put_slice(&[byte]);
                self.at = (self.at + 1) % self.frame.len();
            }
            Poll::Ready(Ok(()))
        }
    }

    impl ReadReady for Busy {
        fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_busy_connection_grows_its_first_small_buffer_to_the_read_size() {
        // 608-byte frames: 13 of them fill the 8 KiB first buffer but for 288 bytes,
        // the frame the codec then reclaims the buffer for.
        let mut frame = vec![0u8; 608];
        frame[..4].copy_from_slice(b"HEP3");
        frame[4..6].copy_from_slice(&608u16.to_be_bytes());
        let mut io = Busy {
            frame,
            at: 0,
            rooms: Vec::new(),
        };
        let (mut buf, mut filled, mut codec) = (BytesMut::new(), false, HepFrameCodec::new());
        let read_size = DEFAULT_READ_BUFFER_SIZE;
        for _ in 0..8 {
            read_some(&mut io, &mut buf, &mut filled, read_size, None)
                .await
                .unwrap();
            while codec.decode(&mut buf).unwrap().is_some() {}
        }
        assert!(io.rooms[0] <= FIRST_READ, "first read: {:?}", io.rooms);
        let last = *io.rooms.last().unwrap();
        assert!(
            last >= read_size - 608,
            "a busy connection should read about {read_size} bytes at a time: {:?}",
            io.rooms
        );
        assert!(last <= read_size, "the buffer doubled: {:?}", io.rooms);
    }
}
