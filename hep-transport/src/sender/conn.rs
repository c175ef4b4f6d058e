//! The IO side of a sender: per-destination state, the callers' paths into a
//! connection (queueing, the direct writes), and the writer task that connects and
//! drains one connection's queue. The accounting they keep (what is pending, the
//! overflow rule, what a break leaves unconfirmed) is decided by the sans-IO
//! [`ConnQueue`] each connection keeps behind its mutex (`queue`).
//!
//! Accounting rule: every accepted message is an [`Entry`], which is either in a
//! connection's queue (owned by whoever ends the connection) or in the writer's `held`
//! batch (owned by the writer). Each entry is counted exactly once: sent, or dropped
//! with the reason the connection ended with.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Handle;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::time::{Instant, sleep_until, timeout_at};

use super::backoff::RetryState;
use super::connect::{self, AsyncStream, Connector, Link, UdpLink};
use super::error::SendError;
use super::progress::{self, Probe, Progress};
use super::queue::{
    self, ConnQueue, End, EndedBy, Entry, MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, Next, Overflow,
    Source,
};
use super::{HepDestination, SenderConfig, SenderDropReason, SenderStats};
use crate::RateLimitedWarn;
use crate::sync::lock;

/// The most messages one direct write carries (Linux's `IOV_MAX` is 1024).
const MAX_DIRECT_MESSAGES: usize = 256;
/// A direct write to a connection the peer has reset must fail with `EPIPE`, not raise
/// `SIGPIPE`: the program using this library may not ignore it (Rust programs do).
#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: libc::c_int = 0;

/// State of one destination, shared by the sender handles and the writer tasks.
pub(crate) struct Shared {
    pub(crate) dest: HepDestination,
    pub(crate) label: Arc<str>,
    pub(crate) config: SenderConfig,
    pub(crate) stats: Arc<SenderStats>,
    pub(crate) retry: RetryState,
    pub(crate) current: Mutex<Option<Arc<Conn>>>,
    pub(crate) closed: AtomicBool,
    /// A connection ended and `fence_on_connection_end` is on: no new connection until
    /// `clear_fence`.
    pub(crate) fenced: AtomicBool,
    /// Sync mode: one permit per message in flight (queued or being written).
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) runtime: Handle,
    pub(crate) connector: Connector,
    pub(crate) addr_cursor: AtomicUsize,
    /// The progress of the current or last stream connection.
    pub(crate) last_stream: Mutex<Option<Arc<Progress>>>,
    connected_before: AtomicBool,
    conn_ids: AtomicU64,
    created: Instant,
    warn_overflow: RateLimitedWarn,
    /// Overload (an overflow while the destination reads): its own limiter, so that its
    /// steady stream of lines cannot hide a stalled connection being dropped.
    warn_overload: RateLimitedWarn,
    warn_connect: RateLimitedWarn,
    warn_broken: RateLimitedWarn,
}

/// What happened to a submitted message.
pub(crate) enum Submitted {
    Sent,
    Queued {
        rx: Option<oneshot::Receiver<Result<(), SendError>>>,
        established: bool,
    },
    Dropped(SendError),
}

/// A second handle on an established plain TCP connection's socket: a caller writes its
/// batch through it while the writer is idle, as OpenSIPS writes a message at once and
/// postpones it only when the socket would block. No hop to the writer task, and the
/// caller's whole batch in one system call.
pub(crate) struct TcpDirect {
    sock: socket2::Socket,
    /// Before this, writes prove nothing about the peer (see `Writer::run_stream`).
    proven_at: Instant,
}

/// One connection (or connection attempt) and its queue.
pub(crate) struct Conn {
    id: u64,
    state: Mutex<ConnState>,
    /// A message was queued, or close was requested.
    wake: Notify,
    /// The connection was ended by someone other than the writer.
    abort: Notify,
    /// The queue may have room again: the writer took messages off it, the connection
    /// was established or ended (`HepSender::room`).
    room: Notify,
    /// Close was requested (a deadline is set).
    closing: Notify,
    /// When the writer last made progress (the connection was established, or the
    /// socket took bytes), in milliseconds since `Shared::created`: an overflow tells a
    /// destination that reads slowly from one that stalled by it (`queue::stalled`).
    /// Outside the lock: the writer stores it on every write.
    progress_ms: AtomicU64,
    /// Stream connections: bytes written, and what the peer confirmed.
    stream: Arc<Progress>,
    pub(crate) finished: watch::Sender<bool>,
}

/// What a connection's mutex guards: the sans-IO queue, and the sockets the callers'
/// direct writes go through.
pub(crate) struct ConnState {
    pub(crate) queue: ConnQueue,
    /// UDP: the socket, for the caller's direct-send fast path.
    pub(crate) udp: Option<UdpLink>,
    /// Plain TCP in async mode, once established: the callers' direct writes.
    tcp: Option<TcpDirect>,
}

// ===== impl Shared =====

impl Shared {
    pub(crate) fn new(
        dest: HepDestination,
        config: SenderConfig,
        stats: Arc<SenderStats>,
        runtime: Handle,
        connector: Connector,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(config.hep_async_max_postponed_chunks));
        Self {
            label: dest.to_string().into(),
            dest,
            config,
            stats,
            retry: RetryState::default(),
            current: Mutex::new(None),
            closed: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            slots,
            runtime,
            connector,
            addr_cursor: AtomicUsize::new(0),
            last_stream: Mutex::new(None),
            connected_before: AtomicBool::new(false),
            conn_ids: AtomicU64::new(0),
            created: Instant::now(),
            warn_overflow: RateLimitedWarn::per_second(),
            warn_overload: RateLimitedWarn::per_second(),
            warn_connect: RateLimitedWarn::per_second(),
            warn_broken: RateLimitedWarn::per_second(),
        }
    }

    /// Milliseconds since this sender was created (the clock of `Conn::progress_ms`).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether `conn`'s writer has made no progress for `overflow_stall_timeout`.
    fn stalled(&self, conn: &Conn) -> bool {
        queue::stalled(
            self.now_ms(),
            conn.progress_ms.load(Ordering::Relaxed),
            self.config.overflow_stall_timeout,
        )
    }

    pub(crate) fn error(&self, reason: SenderDropReason, source: Option<Source>) -> SendError {
        SendError::new(reason, self.label.clone(), source)
    }

    /// Counts one message dropped before it was queued.
    pub(crate) fn drop_one(&self, reason: SenderDropReason, source: Option<Source>) -> SendError {
        self.stats.dropped(reason, 1);
        self.error(reason, source)
    }

    /// One more consecutive failure of this destination (backoff, retry limit).
    pub(crate) fn failure(&self) {
        let failures = self.retry.failure(
            Instant::now(),
            &self.config.backoff,
            (&*self.label, self.conn_ids.load(Ordering::Relaxed)),
        );
        self.addr_cursor.fetch_add(1, Ordering::Relaxed);
        let max = self.config.max_retries;
        if max > 0 && failures == max {
            tracing::warn!(
                destination = %self.label,
                failures,
                cooldown = ?self.config.retry_cooldown,
                "HEP destination failed max_retries times in a row: refusing messages during the cooldown"
            );
        }
    }

    fn clear_slot(&self, conn: &Arc<Conn>) {
        let mut cur = lock(&self.current);
        if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *cur = None;
        }
    }

    /// Accepts one message: sends it directly (UDP, idle established socket), queues it
    /// on the current connection (opening one if needed), or drops it (counted).
    pub(crate) fn submit(
        self: &Arc<Self>,
        bytes: Bytes,
        want_result: bool,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Submitted {
        let mut cur = lock(&self.current);
        if self.closed.load(Ordering::Acquire) {
            return Submitted::Dropped(self.drop_one(SenderDropReason::Closed, None));
        }
        loop {
            let conn = match cur.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let cfg = &self.config;
                    if cfg.fence_on_connection_end && self.fenced.load(Ordering::Acquire) {
                        return Submitted::Dropped(self.drop_one(SenderDropReason::Closed, None));
                    }
                    if self
                        .retry
                        .cooling_down(Instant::now(), cfg.max_retries, cfg.retry_cooldown)
                    {
                        return Submitted::Dropped(self.drop_one(SenderDropReason::Cooldown, None));
                    }
                    let id = self.conn_ids.fetch_add(1, Ordering::Relaxed);
                    let c = Arc::new(Conn::new(id));
                    self.runtime.spawn(run_writer(self.clone(), c.clone()));
                    *cur = Some(c.clone());
                    c
                }
            };
            let mut st = conn.lock();
            if st.queue.is_ended() {
                drop(st);
                *cur = None;
                continue;
            }
            if st.queue.is_idle()
                && let Some(link) = &st.udp
            {
                match link.sock.try_send(&bytes) {
                    Ok(_) => {
                        st.queue.sent_directly(1);
                        drop(st);
                        self.stats.sent(bytes.len());
                        self.retry.success();
                        return Submitted::Sent;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        drop(st);
                        let e: Source = Arc::new(e);
                        conn.end(self, End::new(SenderDropReason::Io, Some(e.clone())));
                        *cur = None;
                        self.failure();
                        return Submitted::Dropped(self.drop_one(SenderDropReason::Io, Some(e)));
                    }
                }
            }
            let established = st.queue.is_established();
            let admitted = st.queue.admit(
                self.config.hep_async_max_postponed_chunks,
                permit.is_some(),
                || self.stalled(&conn),
            );
            if let Err(overflow) = admitted {
                drop(st);
                self.overflow(&conn, overflow, &mut cur);
                return Submitted::Dropped(self.drop_one(SenderDropReason::QueueOverflow, None));
            }
            let (done, rx) = if want_result {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            } else {
                (None, None)
            };
            st.queue.push(Entry::with(bytes, done, permit), &self.stats);
            drop(st);
            conn.wake.notify_one();
            return Submitted::Queued { rx, established };
        }
    }

    /// A message met a full queue: says so (rate-limited) and, for a stalled
    /// connection, breaks it (OpenSIPS: the connection is marked bad and dropped with
    /// its queue) and counts a failure. The message itself is dropped by the caller.
    fn overflow(&self, conn: &Arc<Conn>, overflow: Overflow, cur: &mut Option<Arc<Conn>>) {
        match overflow {
            Overflow::Overload => {
                // The destination reads: we offer more than it (or we) can take. Only
                // this message is lost; ending the connection would lose the queue, and
                // counting a failure would cool a healthy destination down.
                if let Some(suppressed) = self.warn_overload.check() {
                    tracing::warn!(
                        destination = %self.label,
                        queue = self.config.hep_async_max_postponed_chunks,
                        suppressed,
                        "HEP destination not keeping up: dropping the messages beyond its send queue"
                    );
                }
            }
            Overflow::Break => {
                if let Some(suppressed) = self.warn_overflow.check() {
                    tracing::warn!(
                        destination = %self.label,
                        queue = self.config.hep_async_max_postponed_chunks,
                        no_progress_ms = self
                            .now_ms()
                            .saturating_sub(conn.progress_ms.load(Ordering::Relaxed)),
                        suppressed,
                        "HEP send queue overflowed: dropping the connection and its queued messages"
                    );
                }
                conn.end(self, End::new(SenderDropReason::QueueOverflow, None));
                *cur = None;
                self.failure();
            }
            // While connecting, only this message is dropped.
            Overflow::Connecting => {}
        }
    }

    /// UDP: sends `msgs` directly (GSO batches) while the current socket is established
    /// and idle. Returns how many leading messages were handled (sent, or dropped and
    /// counted after a socket error) and how many of those were sent; the caller queues
    /// the rest.
    pub(crate) fn udp_direct_batch(self: &Arc<Self>, msgs: &[Bytes]) -> (usize, usize) {
        let mut cur = lock(&self.current);
        if self.closed.load(Ordering::Acquire) {
            return (0, 0);
        }
        let Some(conn) = cur.clone() else {
            return (0, 0);
        };
        let mut st = conn.lock();
        let Some(link) = st.udp.as_ref().filter(|_| st.queue.is_idle()) else {
            return (0, 0);
        };
        let (sent, error) = link.send_batch(msgs, &self.stats);
        st.queue.sent_directly(sent);
        drop(st);
        if sent > 0 {
            self.retry.success();
        }
        match error {
            None => (sent, sent),
            Some((e, lost)) => {
                let e: Source = Arc::new(e);
                conn.end(self, End::new(SenderDropReason::Io, Some(e)));
                *cur = None;
                self.failure();
                self.stats.dropped(SenderDropReason::Io, lost as u64);
                (sent + lost, sent)
            }
        }
    }
    /// Streams in async mode: queues all of `msgs` at once (one lock of each mutex, one
    /// wake-up) when the current connection is open (or opening) and its queue has room
    /// for all of them. Returns how many were queued: all, or none (the caller then
    /// submits them one by one, with the per-message overflow rules).
    pub(crate) fn queue_batch(self: &Arc<Self>, msgs: &[Bytes]) -> usize {
        if msgs.is_empty() || !self.config.hep_async || matches!(self.connector, Connector::Udp) {
            return 0;
        }
        let cur = lock(&self.current);
        if self.closed.load(Ordering::Acquire) {
            return 0;
        }
        let Some(conn) = cur.clone() else {
            return 0;
        };
        let mut st = conn.lock();
        if st.queue.is_ended()
            || st.queue.room(self.config.hep_async_max_postponed_chunks) < msgs.len()
        {
            return 0;
        }
        st.queue.extend(msgs, &self.stats);
        drop(st);
        drop(cur);
        conn.wake.notify_one();
        msgs.len()
    }

    /// Async streams: takes leading `msgs` as OpenSIPS takes a message, written at once
    /// where the socket takes it (plain TCP, idle established connection: one vectored
    /// write from this thread), else queued (postponed) up to
    /// `hep_async_max_postponed_chunks`. Unlike [`submit`](Self::submit) it never drops a
    /// message because the queue is full while the destination reads: it stops, and the
    /// caller keeps the rest until [`room`](Self::room). A message that must open a
    /// connection, is refused (cooldown, fence, close) or meets a stalled connection goes
    /// through `submit`, with its rules and counters. Returns how many it took.
    pub(crate) fn offer_batch(self: &Arc<Self>, msgs: &[Bytes]) -> usize {
        let mut taken = 0;
        while taken < msgs.len() {
            let rest = &msgs[taken..];
            let conn = lock(&self.current)
                .clone()
                .filter(|_| !self.closed.load(Ordering::Acquire));
            let Some(conn) = conn else {
                self.submit(rest[0].clone(), false, None);
                taken += 1;
                continue;
            };
            let mut st = conn.lock();
            if st.queue.is_ended() {
                drop(st);
                self.submit(rest[0].clone(), false, None);
                taken += 1;
                continue;
            }
            let established = st.queue.is_established();
            let written = if established && st.queue.is_idle() {
                self.write_direct(&conn, &mut st, rest)
            } else {
                0
            };
            let room = st.queue.room(self.config.hep_async_max_postponed_chunks);
            let queued = room.min(rest.len() - written);
            st.queue
                .extend(&rest[written..written + queued], &self.stats);
            let wake = st.queue.has_queued();
            drop(st);
            if wake {
                conn.wake.notify_one();
            }
            taken += written + queued;
            if taken < msgs.len() {
                if established && self.stalled(&conn) {
                    // OpenSIPS's rule for a writer that no longer makes progress: `submit`
                    // drops the connection with its queue, and counts a failure.
                    self.submit(msgs[taken].clone(), false, None);
                    taken += 1;
                    continue;
                }
                break;
            }
        }
        taken
    }

    /// Writes leading `msgs` through the connection's direct handle, if it has one.
    /// Returns how many it took: those written whole (counted sent), and one the socket
    /// took only part of, whose rest is queued for the writer (which the caller wakes).
    /// Stops at the first write the socket does not take in full.
    fn write_direct(&self, conn: &Conn, st: &mut ConnState, msgs: &[Bytes]) -> usize {
        let Some(direct) = st.tcp.take() else {
            return 0;
        };
        let mut taken = 0;
        let mut slices = Vec::with_capacity(msgs.len().min(MAX_DIRECT_MESSAGES));
        let mut keep = true;
        while taken < msgs.len() {
            let chunk = &msgs[taken..msgs.len().min(taken + MAX_DIRECT_MESSAGES)];
            slices.clear();
            slices.extend(chunk.iter().map(|m| IoSlice::new(m)));
            let want: usize = chunk.iter().map(Bytes::len).sum();
            let n = match direct.sock.send_vectored_with_flags(&slices, SEND_FLAGS) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The socket is full (`WouldBlock`): the writer takes over. Any other
                    // error the writer meets again on its next write or read, and ends
                    // the connection with it.
                    keep = e.kind() == io::ErrorKind::WouldBlock;
                    break;
                }
            };
            let (mut left, mut whole) = (n, 0);
            while whole < chunk.len() && left >= chunk[whole].len() {
                left -= chunk[whole].len();
                whole += 1;
            }
            // Bytes of a message cut short count as sent now; its rest, when written.
            self.stats.sent_many(whole as u64, n as u64);
            st.queue.sent_directly(whole);
            conn.stream.wrote(n);
            taken += whole;
            if n > 0 {
                conn.progress_ms.store(self.now_ms(), Ordering::Relaxed);
            }
            if left > 0 {
                st.queue
                    .push(Entry::new(msgs[taken].slice(left..)), &self.stats);
                taken += 1;
            }
            if n < want {
                keep = n > 0;
                break;
            }
        }
        if taken > 0 && Instant::now() >= direct.proven_at {
            self.retry.success();
        }
        if keep {
            st.tcp = Some(direct);
        }
        taken
    }

    /// Waits until an [`offer_batch`](Self::offer_batch) may take more: `true` when the
    /// current connection's queue has room, or it ended, or there is none (the next offer
    /// opens one or is refused), or its writer has stalled (the next offer applies the
    /// overflow rule), or the sender is closed; `false` when none of that happened within
    /// `hep_async_local_write_timeout` (`hep_async_local_connect_timeout` while the
    /// connection is being made), OpenSIPS's bound on how long a send may wait.
    pub(crate) async fn room(&self) -> bool {
        let start = Instant::now();
        loop {
            let Some(conn) = lock(&self.current).clone() else {
                return true;
            };
            let notified = conn.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let established = {
                let st = conn.lock();
                if self.closed.load(Ordering::Acquire)
                    || st.queue.is_ended()
                    || st.queue.room(self.config.hep_async_max_postponed_chunks) > 0
                {
                    return true;
                }
                st.queue.is_established()
            };
            if established && self.stalled(&conn) {
                return true;
            }
            let cfg = &self.config;
            let deadline = start
                + if established {
                    cfg.hep_async_local_write_timeout
                } else {
                    cfg.hep_async_local_connect_timeout
                };
            tokio::select! {
                () = notified => {}
                () = sleep_until(deadline) => return false,
            }
        }
    }
}

// ===== impl Conn =====

impl Conn {
    fn new(id: u64) -> Self {
        Self {
            id,
            state: Mutex::new(ConnState {
                queue: ConnQueue::new(),
                udp: None,
                tcp: None,
            }),
            wake: Notify::new(),
            abort: Notify::new(),
            room: Notify::new(),
            closing: Notify::new(),
            progress_ms: AtomicU64::new(0),
            stream: Arc::default(),
            finished: watch::Sender::new(false),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ConnState> {
        lock(&self.state)
    }

    /// Ends the connection: every queued message is dropped with `end`'s reason, the
    /// writer is told. Returns false if it had already ended. Takes no sender lock.
    pub(crate) fn end(&self, shared: &Shared, end: End) -> bool {
        // Before the end is visible: a submit that finds this connection ended must
        // find the fence up.
        if shared.config.fence_on_connection_end {
            shared.fenced.store(true, Ordering::Release);
        }
        let ended = {
            let mut st = self.lock();
            let Some(ended) = st.queue.end(end) else {
                return false;
            };
            st.udp = None;
            st.tcp = None;
            ended
        };
        // Counted and told outside the lock: completing a message frees its sync-mode slot.
        let unconfirmed = ended.unconfirmed.unwrap_or(0);
        let end = ended.end.clone();
        ended.settle(&shared.stats, &shared.label);
        if unconfirmed > 0
            && let Some(suppressed) = shared.warn_broken.check()
        {
            tracing::warn!(
                destination = %shared.label,
                unconfirmed,
                reason = %end.reason,
                error = end.source.as_ref().map(tracing::field::display),
                suppressed,
                "HEP connection broken: the messages written on it may not have been read"
            );
        }
        self.abort.notify_one();
        self.room.notify_waiters();
        true
    }

    /// Asks the writer to flush and stop, at the latest at `deadline`.
    pub(crate) fn begin_close(&self, deadline: Instant) {
        self.lock().queue.begin_close(deadline);
        self.closing.notify_one();
        self.wake.notify_one();
    }

    async fn aborted(&self) {
        loop {
            let notified = self.abort.notified();
            if self.lock().queue.is_ended() {
                return;
            }
            notified.await;
        }
    }

    async fn close_deadline_passed(&self) {
        loop {
            let notified = self.closing.notified();
            let deadline = self.lock().queue.close_deadline();
            if let Some(d) = deadline {
                sleep_until(d).await;
                return;
            }
            notified.await;
        }
    }
}

// ===== writer task =====

async fn run_writer(shared: Arc<Shared>, conn: Arc<Conn>) {
    let mut w = Writer {
        shared,
        conn,
        held: VecDeque::new(),
        probe: None,
    };
    w.run().await;
}

/// Drives one connection. Its `Drop` does the final accounting, so that every exit path
/// (including the task being dropped at runtime shutdown) counts what it still holds.
struct Writer {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    held: VecDeque<Entry>,
    /// Stream connections on Linux: measures what the peer confirmed.
    probe: Option<Probe>,
}

impl Writer {
    fn end(&self, end: End) {
        self.conn.end(&self.shared, end);
    }

    /// The socket took bytes (or the connection was just established).
    fn progressed(&self) {
        self.conn
            .progress_ms
            .store(self.shared.now_ms(), Ordering::Relaxed);
    }

    /// Measures the stream connection (what its peer confirmed), if it can.
    fn sample(&mut self) {
        if let Some(p) = &mut self.probe
            && let Err(e) = progress::sample(p, &self.conn.stream)
            && e.kind() == io::ErrorKind::Unsupported
        {
            self.probe = None;
        }
    }

    /// Ends the connection because of a failure of the destination, after a last
    /// measure of what the peer confirmed (found only if the socket was not reset).
    fn fail(&mut self, end: End) {
        self.sample();
        if let Some(source) = &end.source {
            tracing::debug!(
                destination = %self.shared.label,
                conn = self.conn.id,
                reason = %end.reason,
                error = %source,
                "HEP connection failed"
            );
        }
        self.end(end);
        self.shared.failure();
    }

    /// Runs `fut` unless the connection is ended by someone else or the close deadline
    /// passes (which ends it). `None`: stop.
    async fn interruptible<F: Future>(&self, fut: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = self.conn.aborted() => None,
            () = self.conn.close_deadline_passed() => {
                self.end(End::closed());
                None
            }
            v = fut => Some(v),
        }
    }

    async fn run(&mut self) {
        let shared = self.shared.clone();
        if let Some(at) = shared.retry.next_attempt()
            && at > Instant::now()
            && self.interruptible(sleep_until(at)).await.is_none()
        {
            return;
        }
        {
            let mut st = self.conn.lock();
            if st.queue.is_ended() {
                return;
            }
            st.queue.connecting();
        }
        shared.retry.attempt(Instant::now());
        let connect = connect::connect(
            &shared.dest,
            &shared.label,
            &shared.connector,
            &shared.config,
            &shared.addr_cursor,
        );
        let link = match self.interruptible(connect).await {
            None => return,
            Some(Ok(link)) => link,
            Some(Err(e)) => {
                shared.stats.connect_error();
                if let Some(suppressed) = shared.warn_connect.check() {
                    tracing::warn!(
                        destination = %shared.label,
                        error = %e,
                        suppressed,
                        "cannot connect to HEP destination"
                    );
                }
                self.fail(End::io(SenderDropReason::ConnectFailed, e));
                return;
            }
        };
        let again = shared.connected_before.swap(true, Ordering::Relaxed);
        shared.stats.connected(again);
        tracing::debug!(destination = %shared.label, conn = self.conn.id, "HEP connection established");
        self.progressed();
        let link = {
            let mut st = self.conn.lock();
            st.queue.established();
            match link {
                Link::Udp(u) => {
                    if !st.queue.is_ended() {
                        st.udp = Some(u.clone());
                    }
                    Link::Udp(u)
                }
                Link::Stream(s, direct, addrs) => {
                    if shared.config.measure_unconfirmed {
                        self.probe = progress::probe(addrs);
                        *lock(&shared.last_stream) = Some(self.conn.stream.clone());
                    }
                    if !st.queue.is_ended() {
                        st.tcp = direct.map(|sock| TcpDirect {
                            sock,
                            proven_at: Instant::now() + shared.config.stall_timeout,
                        });
                    }
                    Link::Stream(s, None, None)
                }
            }
        };
        self.conn.room.notify_waiters();
        match link {
            Link::Udp(u) => self.run_udp(&u).await,
            Link::Stream(s, ..) => self.run_stream(s).await,
        }
    }

    /// Moves a batch from the queue into `held`, or says why there is none.
    fn take_batch(&mut self, max_messages: usize) -> Next {
        self.conn
            .lock()
            .queue
            .take_batch(&mut self.held, max_messages, MAX_BATCH_BYTES)
    }

    /// The first `n` held messages were written.
    fn complete_sent(&mut self, n: usize) {
        // Lower the pending count before completing: completing releases sync-mode slots,
        // and a caller holding a fresh slot must see room in the queue.
        self.conn
            .lock()
            .queue
            .sent_from_batch(n, self.held.len() - n);
        queue::complete_sent(self.held.drain(..n), &self.shared.stats);
        self.conn.room.notify_waiters();
    }

    fn write_bound(&self) -> std::time::Duration {
        let cfg = &self.shared.config;
        if cfg.hep_async {
            cfg.stall_timeout
        } else {
            cfg.hep_send_timeout
        }
    }

    async fn run_udp(&mut self, link: &UdpLink) {
        let bound = self.write_bound();
        loop {
            match self.take_batch(1) {
                Next::Ended => return,
                Next::Shutdown => return self.confirm_udp(link).await,
                Next::Idle => {
                    if self
                        .interruptible(self.conn.wake.notified())
                        .await
                        .is_none()
                    {
                        return;
                    }
                }
                Next::Write => {
                    let Some(bytes) = self.held.front().map(|e| e.bytes().clone()) else {
                        continue;
                    };
                    let deadline = Instant::now() + bound;
                    match self
                        .interruptible(timeout_at(deadline, link.sock.send(&bytes)))
                        .await
                    {
                        None => return,
                        Some(Ok(Ok(_))) => {
                            self.progressed();
                            self.complete_sent(1);
                            self.shared.retry.success();
                        }
                        Some(Ok(Err(e))) => return self.fail(End::io(SenderDropReason::Io, e)),
                        Some(Err(_)) => {
                            return self.fail(End::new(SenderDropReason::WriteTimeout, None));
                        }
                    }
                }
            }
        }
    }

    async fn run_stream(&mut self, stream: Box<dyn AsyncStream>) {
        let bound = self.write_bound();
        let sync = !self.shared.config.hep_async;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut scratch = [0u8; 256];
        let mut out = BytesMut::new();
        let mut ends: Vec<usize> = Vec::new();
        // Writes into a fresh connection fill the kernel's socket buffers (megabytes on
        // loopback) whether or not the peer reads: they prove nothing until the
        // connection has outlived the stall timer. Crediting them at once let a peer that
        // accepts and never reads reset the failure count on every reconnect, so the
        // sender reconnected forever (8 times a second at 50,000 msg/s) and never
        // reached the cooldown (docs/BENCHMARKS.md, "stalled destination").
        let proven_at = Instant::now() + self.shared.config.stall_timeout;
        let mut proven = false;
        let mut next_sample = Instant::now();
        let peer_closed = || {
            End::io(
                SenderDropReason::Closed,
                io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the peer closed the connection",
                ),
            )
        };
        loop {
            match self.take_batch(MAX_BATCH_MESSAGES) {
                Next::Ended => return,
                Next::Shutdown => {
                    if self.shared.config.close_confirm_timeout.is_zero() {
                        let _ = self.interruptible(wr.shutdown()).await;
                        return self.end(End::closed());
                    }
                    return self.confirm_stream(&mut rd, &mut wr).await;
                }
                Next::Idle => {
                    let read = tokio::select! {
                        biased;
                        () = self.conn.aborted() => return,
                        () = self.conn.wake.notified() => continue,
                        r = rd.read(&mut scratch) => r,
                    };
                    match read {
                        // A HEP receiver sends nothing: EOF means it closed (e.g. restart).
                        Ok(0) => {
                            self.sample();
                            return self.end(peer_closed().by(EndedBy::PeerInOrder));
                        }
                        Ok(_) => continue,
                        Err(e) => return self.end(End::io(SenderDropReason::Io, e)),
                    }
                }
                Next::Write => {}
            }
            out.clear();
            ends.clear();
            for e in &self.held {
                out.extend_from_slice(e.bytes());
                ends.push(out.len());
            }
            let mut pos = 0;
            let mut done = 0;
            let mut deadline = Instant::now() + bound;
            while pos < out.len() {
                enum Step {
                    Read(io::Result<usize>),
                    Write(Result<io::Result<usize>, tokio::time::error::Elapsed>),
                }
                let step = tokio::select! {
                    biased;
                    () = self.conn.aborted() => return,
                    () = self.conn.close_deadline_passed() => return self.end(End::closed()),
                    r = rd.read(&mut scratch) => Step::Read(r),
                    r = timeout_at(deadline, wr.write(&out[pos..])) => Step::Write(r),
                };
                match step {
                    Step::Read(Ok(0)) => return self.fail(peer_closed()),
                    Step::Read(Ok(_)) => {}
                    Step::Read(Err(e)) | Step::Write(Ok(Err(e))) => {
                        return self.fail(End::io(SenderDropReason::Io, e));
                    }
                    Step::Write(Err(_)) => {
                        return self.fail(End::new(SenderDropReason::WriteTimeout, None));
                    }
                    Step::Write(Ok(Ok(0))) => {
                        let e = io::Error::from(io::ErrorKind::WriteZero);
                        return self.fail(End::io(SenderDropReason::Io, e));
                    }
                    Step::Write(Ok(Ok(n))) => {
                        self.progressed();
                        self.conn.stream.wrote(n);
                        pos += n;
                        let before = done;
                        while ends.get(done).is_some_and(|&end| end <= pos) {
                            done += 1;
                        }
                        if done > before {
                            self.complete_sent(done - before);
                        }
                        // Sync: each message gets hep_send_timeout. Async: any progress
                        // restarts the stall timer.
                        if !sync || done > before {
                            deadline = Instant::now() + bound;
                        }
                    }
                }
            }
            // TLS buffers records: push them out before taking the next batch.
            match self.interruptible(timeout_at(deadline, wr.flush())).await {
                None => return,
                Some(Ok(Ok(()))) => {
                    let now = Instant::now();
                    proven = proven || now >= proven_at;
                    if proven {
                        self.shared.retry.success();
                    }
                    if now >= next_sample {
                        self.sample();
                        next_sample = now + progress::SAMPLE_INTERVAL;
                    }
                }
                Some(Ok(Err(e))) => return self.fail(End::io(SenderDropReason::Io, e)),
                Some(Err(_)) => return self.fail(End::new(SenderDropReason::WriteTimeout, None)),
            }
        }
    }
}

impl Writer {
    /// UDP close with [`SenderConfig::close_confirm_timeout`]: an ICMP error (port or
    /// host unreachable) that came back for any datagram is reported on the connected
    /// socket's next receive. UDP has nothing more to confirm: no error within the
    /// timeout is the best a datagram sender can know.
    async fn confirm_udp(&self, link: &UdpLink) {
        let confirm = self.shared.config.close_confirm_timeout;
        if !confirm.is_zero() {
            let mut buf = [0u8; 64];
            let error = async {
                loop {
                    // A HEP receiver sends nothing back; anything it does is ignored.
                    if let Err(e) = link.sock.recv(&mut buf).await {
                        return e;
                    }
                }
            };
            let error = tokio::select! {
                biased;
                () = self.conn.aborted() => return,
                r = tokio::time::timeout(confirm, error) => r,
            };
            if let Ok(e) = error {
                return self.end(End::io(SenderDropReason::Io, e));
            }
        }
        self.end(End::closed());
    }

    /// Stream close with [`SenderConfig::close_confirm_timeout`]: the destination must
    /// answer our close (after the last byte) with its own, which it does after it has
    /// read everything (a receiver that closes with unread data resets the connection).
    /// A close of its own before ours, a reset, a TLS alert (a client certificate the
    /// server refused after a TLS 1.3 handshake) or no answer within the timeout leaves
    /// the messages written on this connection unconfirmed.
    async fn confirm_stream<R, W>(&self, rd: &mut R, wr: &mut W)
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let confirm = self.shared.config.close_confirm_timeout;
        let mut scratch = [0u8; 256];
        // Did the destination close or reset while the last bytes were written? Its EOF
        // would otherwise pass for the answer to our close below.
        let early = tokio::select! {
            biased;
            r = rd.read(&mut scratch) => Some(r),
            () = std::future::ready(()) => None,
        };
        let ended = match early {
            Some(Ok(0)) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the destination closed the connection before the sender did",
            )),
            Some(Err(e)) => Err(e),
            Some(Ok(_)) | None => {
                let answer = async {
                    wr.shutdown().await?;
                    loop {
                        match rd.read(&mut scratch).await {
                            Ok(0) => return Ok(()),
                            Ok(_) => {}
                            // TLS: the destination closed TCP without a close_notify of
                            // its own, after ours: it read everything (hep-server does).
                            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                                return Ok(());
                            }
                            Err(e) => return Err(e),
                        }
                    }
                };
                tokio::select! {
                    biased;
                    () = self.conn.aborted() => return,
                    r = tokio::time::timeout(confirm, answer) => r.unwrap_or_else(|_| {
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "the destination did not answer the sender's close within {confirm:?}"
                            ),
                        ))
                    }),
                }
            }
        };
        match ended {
            Ok(()) => self.end(End::closed()),
            Err(e) => self.end(End::io(SenderDropReason::Closed, e)),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.conn.end(&self.shared, End::closed());
        let end = self
            .conn
            .lock()
            .queue
            .ended()
            .cloned()
            .unwrap_or_else(End::closed);
        let held = std::mem::take(&mut self.held);
        queue::drop_all(held, &end, &self.shared.stats, &self.shared.label);
        self.conn.lock().queue.release_batch();
        self.shared.clear_slot(&self.conn);
        self.conn.finished.send_replace(true);
    }
}
