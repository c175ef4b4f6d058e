//! Opening a connection: name resolution, UDP socket, TCP connect, TLS handshake; and
//! the UDP batch fast path (GSO through quinn-udp).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use super::{HepDestination, SenderConfig, SenderStats};

/// How a sender reaches its destination.
pub(crate) enum Connector {
    Udp,
    Tcp,
    Tls {
        connector: TlsConnector,
        server_name: ServerName<'static>,
    },
}

/// A byte stream a writer drives: TCP or TLS over TCP.
pub(crate) trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}

/// An open connection.
pub(crate) enum Link {
    Udp(UdpLink),
    /// The stream the writer drives, and for plain TCP in async mode a second handle on
    /// the same socket for the callers' direct writes ([`HepSender::offer_batch`]).
    ///
    /// [`HepSender::offer_batch`]: super::HepSender::offer_batch
    ///
    /// The third field is the connection's (local, peer) addresses, to measure it
    /// ([`super::progress`]).
    Stream(
        Box<dyn AsyncStream>,
        Option<socket2::Socket>,
        Option<(SocketAddr, SocketAddr)>,
    ),
}

/// A connected UDP socket.
#[derive(Clone)]
pub(crate) struct UdpLink {
    pub(crate) sock: Arc<UdpSocket>,
    /// quinn-udp state for GSO batches; `None` where it could not be set up.
    gso: Option<Arc<quinn_udp::UdpSocketState>>,
    peer: SocketAddr,
}

/// The largest UDP payload a GSO batch may add up to (IPv4 limit, with headroom).
const MAX_GSO_BYTES: usize = 65_000;

impl UdpLink {
    /// Sends `msgs` in order without waiting: runs of equal-length messages (the last
    /// one may be shorter) go out as one GSO send where the kernel supports it.
    ///
    /// Returns how many leading messages were sent (and counted), and on a socket error
    /// other than `WouldBlock` the error and how many messages the failed send carried
    /// (the caller counts those as dropped). On `WouldBlock` it stops early without error.
    pub(crate) fn send_batch(
        &self,
        msgs: &[Bytes],
        stats: &SenderStats,
    ) -> (usize, Option<(io::Error, usize)>) {
        let mut buf = Vec::new();
        let mut i = 0;
        while i < msgs.len() {
            let len = msgs[i].len();
            let max_segments = self.gso.as_ref().map_or(1, |g| g.max_gso_segments());
            let mut j = i + 1;
            if max_segments > 1 && len > 0 {
                let mut total = len;
                while j < msgs.len()
                    && j - i < max_segments
                    && msgs[j].len() <= len
                    && !msgs[j].is_empty()
                    && total + msgs[j].len() <= MAX_GSO_BYTES
                {
                    total += msgs[j].len();
                    j += 1;
                    if msgs[j - 1].len() < len {
                        break; // only the last segment may be shorter
                    }
                }
            }
            let group = &msgs[i..j];
            let result = match (&self.gso, group) {
                (_, [one]) => self.sock.try_send(one).map(drop),
                (Some(gso), _) => {
                    buf.clear();
                    for m in group {
                        buf.extend_from_slice(m);
                    }
                    let transmit = quinn_udp::Transmit {
                        destination: self.peer,
                        ecn: None,
                        contents: &buf,
                        segment_size: Some(len),
                        src_ip: None,
                    };
                    self.sock.try_io(Interest::WRITABLE, || {
                        gso.try_send((&*self.sock).into(), &transmit)
                    })
                }
                (None, _) => unreachable_group(),
            };
            match result {
                Ok(()) => {
                    for m in group {
                        stats.sent(m.len());
                    }
                    i = j;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return (i, None),
                // quinn-udp turns GSO off after the kernel refuses it: resend one by one.
                Err(_)
                    if group.len() > 1
                        && self.gso.as_ref().is_some_and(|g| g.max_gso_segments() <= 1) => {}
                Err(e) => return (i, Some((e, group.len()))),
            }
        }
        (i, None)
    }
}

/// Groups of more than one message are only formed when GSO is available.
fn unreachable_group() -> io::Result<()> {
    Err(io::Error::other("internal: UDP batch without GSO"))
}

/// Resolves `dest` and connects to each address in turn, each within
/// `connect_timeout`, starting at `cursor` (after the address that failed last); on
/// success `cursor` is left at the address that answered.
pub(crate) async fn connect(
    dest: &HepDestination,
    label: &str,
    connector: &Connector,
    cfg: &SenderConfig,
    cursor: &AtomicUsize,
) -> io::Result<Link> {
    let port = dest.port();
    let addrs: Vec<SocketAddr> = match dest.host().as_ip() {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => {
            let name = dest.host().to_string();
            match timeout(
                cfg.connect_timeout,
                tokio::net::lookup_host((name.as_str(), port)),
            )
            .await
            {
                Ok(r) => r
                    .map_err(|e| io::Error::new(e.kind(), format!("resolving `{name}`: {e}")))?
                    .collect(),
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "resolving `{name}` timed out after {:?}",
                            cfg.connect_timeout
                        ),
                    ));
                }
            }
        }
    };
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("`{}` resolved to no address", dest.host()),
        ));
    }
    let start = cursor.load(Ordering::Relaxed);
    let mut last = None;
    for k in 0..addrs.len() {
        let addr = addrs[(start + k) % addrs.len()];
        let e = match timeout(cfg.connect_timeout, connect_one(connector, cfg, addr)).await {
            Ok(Ok(link)) => {
                cursor.store(start + k, Ordering::Relaxed);
                return Ok(link);
            }
            Ok(Err(e)) => io::Error::new(e.kind(), format!("{addr}: {e}")),
            Err(_) => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{addr}: no answer within {:?}", cfg.connect_timeout),
            ),
        };
        tracing::debug!(destination = %label, %addr, error = %e, "HEP connect attempt failed");
        last = Some(e);
    }
    Err(last.unwrap_or_else(|| io::Error::other("no address to connect to")))
}

async fn connect_one(
    connector: &Connector,
    cfg: &SenderConfig,
    addr: SocketAddr,
) -> io::Result<Link> {
    match connector {
        Connector::Udp => {
            let local: SocketAddr = if addr.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = UdpSocket::bind(local).await?;
            sock.connect(addr).await?;
            if let Some(size) = cfg.send_buffer_size {
                socket2::SockRef::from(&sock).set_send_buffer_size(size)?;
            }
            let gso = quinn_udp::UdpSocketState::new((&sock).into())
                .ok()
                .map(Arc::new);
            Ok(Link::Udp(UdpLink {
                sock: Arc::new(sock),
                gso,
                peer: addr,
            }))
        }
        Connector::Tcp => {
            let stream = tcp(cfg, addr).await?;
            // The same open socket (non-blocking, as tokio set it): writes through it
            // never wait, and tokio's readiness for the writer stays right (a write that
            // finds the socket full clears it).
            let direct = cfg
                .hep_async
                .then(|| socket2::SockRef::from(&stream).try_clone())
                .transpose()?;
            let addrs = addrs(&stream);
            Ok(Link::Stream(Box::new(stream), direct, addrs))
        }
        Connector::Tls {
            connector,
            server_name,
        } => {
            let tcp = tcp(cfg, addr).await?;
            let addrs = addrs(&tcp);
            let tls = connector.connect(server_name.clone(), tcp).await?;
            Ok(Link::Stream(Box::new(tls), None, addrs))
        }
    }
}

/// A connected stream's (local, peer) addresses.
fn addrs(stream: &TcpStream) -> Option<(SocketAddr, SocketAddr)> {
    Some((stream.local_addr().ok()?, stream.peer_addr().ok()?))
}

async fn tcp(cfg: &SenderConfig, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(size) = cfg.send_buffer_size {
        socket.set_send_buffer_size(u32::try_from(size).unwrap_or(u32::MAX))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
