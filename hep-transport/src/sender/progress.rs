//! What the peer of a stream connection can have missed: the bytes written to the
//! connection that its application may not have read.
//!
//! A write the kernel accepted proves nothing: the bytes may still be in our send queue
//! (not yet acknowledged by the peer's kernel), or acknowledged and waiting in the peer's
//! receive buffer for its application; when the peer dies, both are lost. The first part
//! is measured: the kernel knows what it has not had acknowledged (`write_seq - snd_una`,
//! what `SIOCOUTQ` reports). The second cannot be seen from here, but the receive window
//! the peer advertises bounds it: a TCP receiver takes no byte beyond the window it
//! offered, and the window it offers is the free room in its buffer, so what waits unread
//! in it is its whole window less the one it offers now. Its whole window is not
//! advertised as such; we take twice the largest window seen (the buffer grows with use:
//! Linux's autotuning), so the allowance is between one and two of the largest windows.
//! This is an estimate, not a proof: a peer that advertises far less than its buffer
//! holds could hold more.
//!
//! The measure comes from the kernel's socket diagnostics (`NETLINK_SOCK_DIAG`, as `ss`
//! uses): an exact lookup of our socket by its addresses, answered with its queues and its
//! `tcp_info` (`tcpi_snd_wnd`, Linux 5.4 and later). It is plain bytes over a netlink
//! socket, so no `unsafe` is needed (a `getsockopt(TCP_INFO)` or `ioctl(SIOCOUTQ)` would
//! be). A sample costs a few microseconds; the writer takes one at most every
//! [`SAMPLE_INTERVAL`] after a flush, and a last one when the connection fails (which
//! finds the socket only if the peer closed it gracefully: after a reset it is gone from
//! the kernel's tables, and the last sample stands). Where the measure is not available
//! (not Linux, a kernel without `tcpi_snd_wnd`, a lookup refused), nothing is confirmed:
//! everything written is counted as possibly missed, the old behaviour.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Least time between two samples of one connection.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_millis(1);

/// The progress of one stream connection.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Bytes handed to the stream (the writer's and the direct writes).
    written: AtomicU64,
    /// Bytes of the stream, from its start, that the peer's application has read by the
    /// latest sample's estimate; only ever grows.
    confirmed: AtomicU64,
    /// The largest receive window the peer advertised in a sample.
    max_window: AtomicU64,
}

impl Progress {
    /// `n` more bytes were handed to the stream.
    pub(crate) fn wrote(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes handed to the stream so far.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Bytes at the end of the stream that the peer's application may not have read.
    pub(crate) fn unconfirmed(&self) -> u64 {
        self.written()
            .saturating_sub(self.confirmed.load(Ordering::Relaxed))
    }

    /// Takes a sample: `written` was read before it was taken (so that bytes written
    /// meanwhile, by a direct write, only make the estimate more cautious).
    pub(crate) fn record(&self, written: u64, sample: Sample) {
        let max_window = self
            .max_window
            .fetch_max(sample.peer_window, Ordering::Relaxed)
            .max(sample.peer_window);
        let read = written
            .saturating_sub(sample.unacked)
            .saturating_sub(unread_at_most(max_window, sample.peer_window));
        self.confirmed.fetch_max(read, Ordering::Relaxed);
    }
}

/// The most bytes the peer's kernel can hold acknowledged and unread, when it offers
/// `window` and has offered at most `max_window`: a receiver offers the free room of its
/// buffer, so what waits unread is its whole window less the one it offers now. Its whole
/// window is taken as twice the largest seen (the buffer grows with use).
fn unread_at_most(max_window: u64, window: u64) -> u64 {
    (2 * max_window).saturating_sub(window)
}

/// One measure of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Bytes written and not yet acknowledged by the peer (`write_seq - snd_una`).
    pub(crate) unacked: u64,
    /// The receive window the peer advertised last (`tcpi_snd_wnd`), bytes.
    pub(crate) peer_window: u64,
}

pub(crate) use imp::Probe;

#[cfg(target_os = "linux")]
mod imp {
    use std::io::{self, Read as _};
    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;

    use socket2::{Domain, Protocol, Socket, Type};

    use super::Sample;

    const NETLINK_SOCK_DIAG: i32 = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLMSG_ERROR: u16 = 2;
    const NLM_F_REQUEST: u16 = 1;
    const INET_DIAG_INFO: u16 = 2;
    const IPPROTO_TCP: u8 = 6;
    const NLMSG_HDR_LEN: usize = 16;
    /// `struct inet_diag_req_v2`.
    const REQ_LEN: usize = 56;
    /// `struct inet_diag_msg`.
    const MSG_LEN: usize = 72;
    /// `idiag_wqueue` in `struct inet_diag_msg`.
    const WQUEUE_AT: usize = 60;
    /// `tcpi_snd_wnd` in `struct tcp_info` (Linux 5.4 and later).
    pub(super) const SND_WND_AT: usize = 228;

    /// A socket-diagnostics query for one TCP socket of this process.
    pub(crate) struct Probe {
        netlink: Socket,
        request: [u8; NLMSG_HDR_LEN + REQ_LEN],
        seq: u32,
        reply: Vec<u8>,
    }

    impl Probe {
        /// A probe of the TCP connection from `local` to `peer`.
        ///
        /// # Errors
        /// The netlink socket could not be made.
        pub(crate) fn new(local: SocketAddr, peer: SocketAddr) -> io::Result<Self> {
            let netlink = Socket::new(
                Domain::from(libc::AF_NETLINK),
                Type::DGRAM,
                Some(Protocol::from(NETLINK_SOCK_DIAG)),
            )?;
            // The kernel answers before `send` returns; this bounds a lost answer.
            netlink.set_read_timeout(Some(Duration::from_millis(100)))?;
            Ok(Self {
                netlink,
                request: request(local, peer),
                seq: 0,
                reply: vec![0; 8192],
            })
        }

        /// Measures the connection now.
        ///
        /// # Errors
        /// The kernel did not find the socket (it is closed), or refused or did not
        /// answer the query; or it has no `tcpi_snd_wnd` (older than 5.4).
        pub(crate) fn sample(&mut self) -> io::Result<Sample> {
            self.seq = self.seq.wrapping_add(1);
            self.request[8..12].copy_from_slice(&self.seq.to_ne_bytes());
            self.netlink.send(&self.request)?;
            // Skip answers to earlier queries that timed out.
            for _ in 0..8 {
                let n = (&self.netlink).read(&mut self.reply)?;
                match parse(&self.reply[..n], self.seq)? {
                    Some(sample) => return Ok(sample),
                    None => continue,
                }
            }
            Err(io::Error::other("no socket diagnostics answer"))
        }
    }

    /// The query: `nlmsghdr` then `inet_diag_req_v2` naming the socket exactly.
    fn request(local: SocketAddr, peer: SocketAddr) -> [u8; NLMSG_HDR_LEN + REQ_LEN] {
        let mut b = [0; NLMSG_HDR_LEN + REQ_LEN];
        b[0..4].copy_from_slice(&((NLMSG_HDR_LEN + REQ_LEN) as u32).to_ne_bytes());
        b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        b[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        let r = &mut b[NLMSG_HDR_LEN..];
        r[0] = if local.is_ipv4() {
            libc::AF_INET as u8
        } else {
            libc::AF_INET6 as u8
        };
        r[1] = IPPROTO_TCP;
        r[2] = 1 << (INET_DIAG_INFO - 1);
        r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
        // struct inet_diag_sockid: ports and addresses in network order.
        r[8..10].copy_from_slice(&local.port().to_be_bytes());
        r[10..12].copy_from_slice(&peer.port().to_be_bytes());
        let addr = |ip: IpAddr, out: &mut [u8]| match ip {
            IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out[..16].copy_from_slice(&v6.octets()),
        };
        addr(local.ip(), &mut r[12..28]);
        addr(peer.ip(), &mut r[28..44]);
        // idiag_if 0; the cookie "none" (INET_DIAG_NOCOOKIE): match by addresses.
        r[48..56].fill(0xff);
        b
    }

    /// The sample in an answer to query `seq`; `None` for an answer to another query.
    pub(super) fn parse(mut b: &[u8], seq: u32) -> io::Result<Option<Sample>> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed socket diagnostics");
        let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        while b.len() >= NLMSG_HDR_LEN {
            let len = u32_at(b, 0) as usize;
            if len < NLMSG_HDR_LEN || len > b.len() {
                return Err(bad());
            }
            let (msg, rest) = b.split_at(len);
            b = rest
                .get(len.next_multiple_of(4) - len..)
                .unwrap_or_default();
            if u32_at(msg, 8) != seq {
                continue;
            }
            let body = &msg[NLMSG_HDR_LEN..];
            match u16_at(msg, 4) {
                NLMSG_ERROR if body.len() >= 4 => {
                    let errno = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
                    return Err(io::Error::from_raw_os_error(errno.saturating_neg()));
                }
                SOCK_DIAG_BY_FAMILY if body.len() >= MSG_LEN => {
                    let unacked = u64::from(u32_at(body, WQUEUE_AT));
                    let mut attrs = &body[MSG_LEN..];
                    while attrs.len() >= 4 {
                        let alen = usize::from(u16_at(attrs, 0));
                        if alen < 4 || alen > attrs.len() {
                            return Err(bad());
                        }
                        let data = &attrs[4..alen];
                        if u16_at(attrs, 2) == INET_DIAG_INFO {
                            if data.len() < SND_WND_AT + 4 {
                                return Err(io::Error::new(
                                    io::ErrorKind::Unsupported,
                                    "tcp_info without tcpi_snd_wnd (Linux before 5.4)",
                                ));
                            }
                            let peer_window = u64::from(u32_at(data, SND_WND_AT));
                            return Ok(Some(Sample {
                                unacked,
                                peer_window,
                            }));
                        }
                        attrs = attrs.get(alen.next_multiple_of(4)..).unwrap_or_default();
                    }
                    return Err(bad());
                }
                _ => return Err(bad()),
            }
        }
        Ok(None)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::net::SocketAddr;

    use super::Sample;

    /// Socket diagnostics are Linux's: elsewhere nothing is measured.
    pub(crate) struct Probe;

    impl Probe {
        pub(crate) fn new(_local: SocketAddr, _peer: SocketAddr) -> io::Result<Self> {
            Err(io::Error::from(io::ErrorKind::Unsupported))
        }

        pub(crate) fn sample(&mut self) -> io::Result<Sample> {
            Err(io::Error::from(io::ErrorKind::Unsupported))
        }
    }
}

/// A probe of the connection between `local` and `peer`, `None` where there is none.
pub(crate) fn probe(addrs: Option<(SocketAddr, SocketAddr)>) -> Option<Probe> {
    let (local, peer) = addrs?;
    match Probe::new(local, peer) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::debug!(error = %e, "no socket diagnostics: a replay after a break resends all it may");
            None
        }
    }
}

/// Takes a sample of `probe`'s connection into `progress`; on failure leaves the
/// estimate as it was (and says whether to go on probing).
pub(crate) fn sample(probe: &mut Probe, progress: &Progress) -> io::Result<()> {
    let written = progress.written();
    let s = probe.sample()?;
    progress.record(written, s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmed_is_what_was_acknowledged_less_what_the_peer_may_hold_and_never_goes_back() {
        let p = Progress::default();
        p.wrote(1_000_000);
        assert_eq!(p.unconfirmed(), 1_000_000, "nothing known yet");
        // The peer offers its largest window: it may hold one more window's worth.
        p.record(
            1_000_000,
            Sample {
                unacked: 100_000,
                peer_window: 50_000,
            },
        );
        assert_eq!(p.unconfirmed(), 150_000);
        // A smaller window later: its buffer holds more unread.
        p.wrote(100_000);
        p.record(
            1_100_000,
            Sample {
                unacked: 0,
                peer_window: 10_000,
            },
        );
        assert_eq!(
            p.unconfirmed(),
            90_000,
            "twice its largest window less this one"
        );
        p.record(
            1_100_000,
            Sample {
                unacked: 0,
                peer_window: 50_000,
            },
        );
        assert_eq!(p.unconfirmed(), 50_000);
        // A larger window: the estimate may not go back on what it confirmed.
        p.record(
            1_100_000,
            Sample {
                unacked: 0,
                peer_window: 500_000,
            },
        );
        assert_eq!(p.unconfirmed(), 50_000);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_snd_wnd_offset_is_tcp_info_s() {
        assert_eq!(
            std::mem::offset_of!(libc::tcp_info, tcpi_snd_wnd),
            imp::SND_WND_AT
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_live_connection_is_measured_and_a_closed_one_is_not_found() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut probe =
            Probe::new(client.local_addr().unwrap(), client.peer_addr().unwrap()).unwrap();
        let s = probe.sample().unwrap();
        assert_eq!(s.unacked, 0);
        assert!(s.peer_window > 0, "{s:?}");
        client.write_all(&[7; 10_000]).unwrap();
        let mut got = vec![0; 10_000];
        server.read_exact(&mut got).unwrap();
        // Acknowledged at once on loopback; bounded wait all the same.
        let mut s = probe.sample().unwrap();
        for _ in 0..100 {
            if s.unacked == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            s = probe.sample().unwrap();
        }
        assert_eq!(s.unacked, 0, "{s:?}");
        // Unread data at the peer makes it reset the connection: our socket leaves the
        // kernel's tables.
        client.write_all(&[7; 1000]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        drop(server);
        let mut one = [0; 1];
        let _ = client.read(&mut one);
        assert!(probe.sample().is_err(), "a reset socket is not found");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn answers_to_other_queries_are_skipped_and_errors_are_errors() {
        let mut error = vec![0u8; 36];
        error[0..4].copy_from_slice(&36u32.to_ne_bytes());
        error[4..6].copy_from_slice(&2u16.to_ne_bytes());
        error[8..12].copy_from_slice(&5u32.to_ne_bytes());
        error[16..20].copy_from_slice(&(-2i32).to_ne_bytes());
        assert!(imp::parse(&error, 6).unwrap().is_none(), "another query's");
        let e = imp::parse(&error, 5).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(2), "{e}");
        assert!(imp::parse(&error[..20], 5).is_err(), "truncated");
    }
}
