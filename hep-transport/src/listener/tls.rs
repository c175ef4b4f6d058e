//! `hep_tls`: HEPv3 frames over TLS (rustls), optionally with client certificates (mTLS).
//!
//! The framing, limits and backpressure are those of [`hep_tcp`](super::tcp); the TLS
//! handshake runs in the connection's task (never in the accept loop) under
//! [`TlsConfig::handshake_timeout`]. A failed or timed-out handshake, including a client
//! that presents no certificate or one that the configured CA did not sign, is counted
//! as `rejected{reason="tls_handshake"}` and logged (rate-limited).
//!
//! With mTLS, the accepted client certificate is logged at debug level with its SHA-256
//! fingerprint (as `openssl x509 -noout -fingerprint -sha256` prints it), so that an
//! operator can tell which agent connected.
//!
//! ```no_run
//! use hep_transport::{ListenerConfig, TlsConfig};
//!
//! # fn main() -> Result<(), hep_transport::TlsConfigError> {
//! // Only agents with a certificate signed by agents-ca.pem may connect:
//! let tls = TlsConfig::from_pem_files("server.pem", "server.key", Some("agents-ca.pem".as_ref()))?;
//! let config = ListenerConfig::default().with_tls(tls);
//! # let _ = config;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::shared::Shared;
use super::stream::{Handshake, ReadReady};
pub use super::tls_config::{
    ClientCheck, DEFAULT_HANDSHAKE_TIMEOUT, FileRole, TlsConfig, TlsConfigError,
};
use crate::{ClientIdentity, RecvInfo, RejectReason};

/// `hep_tls`: the server handshake under [`TlsConfig::handshake_timeout`], then the
/// client check.
#[derive(Clone)]
pub(super) struct TlsHandshake {
    acceptor: TlsAcceptor,
}

impl TlsHandshake {
    pub(super) fn new(config: &TlsConfig) -> Self {
        Self {
            acceptor: TlsAcceptor::from(config.server_config().clone()),
        }
    }
}

impl Handshake for TlsHandshake {
    type Stream = TlsStream<TcpStream>;

    fn handshake(
        &self,
        stream: TcpStream,
        info: &RecvInfo,
        shared: &Shared,
        stop: &CancellationToken,
    ) -> impl Future<Output = Option<(Self::Stream, Option<Arc<ClientIdentity>>)>> + Send {
        handshake(&self.acceptor, stream, info, shared, stop)
    }
}

/// A TLS stream cannot tell readiness without reading: its records may be buffered.
impl<IO> ReadReady for TlsStream<IO> {
    fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs the server handshake under the timeout; the stream and the client certificate's
/// identity (with mTLS), or `None` (counted and logged) if the handshake fails, times
/// out, the listener stops meanwhile, or the client check refuses the certificate.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    info: &RecvInfo,
    shared: &Shared,
    stop: &CancellationToken,
) -> Option<(TlsStream<TcpStream>, Option<Arc<ClientIdentity>>)> {
    let tls = shared.config.tls.as_ref();
    let timeout = tls.map_or(DEFAULT_HANDSHAKE_TIMEOUT, TlsConfig::handshake_timeout);
    let res = tokio::select! {
        () = stop.cancelled() => return None,
        res = tokio::time::timeout(timeout, acceptor.accept(stream)) => res,
    };
    let err = match res {
        Ok(Ok(stream)) => {
            let client = client_identity(&stream);
            log_peer(&stream, client.as_deref(), info, shared);
            if let Some(check) = tls.and_then(TlsConfig::client_check)
                && !client.as_deref().is_some_and(|c| check(c))
            {
                refuse_client(client.as_deref(), info, shared);
                return None;
            }
            return Some((stream, client));
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no handshake within {timeout:?}"),
    };
    shared.stats.record_rejected(RejectReason::TlsHandshake);
    if let Some(suppressed) = shared.warn_input.check() {
        tracing::warn!(
            listener = %shared.spec,
            peer = %info.peer,
            reason = RejectReason::TlsHandshake.label(),
            suppressed,
            "TLS handshake failed: {err}"
        );
    }
    None
}

/// The identity of the verified client certificate, if the client presented one.
fn client_identity(stream: &TlsStream<TcpStream>) -> Option<Arc<ClientIdentity>> {
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|cert| Arc::new(ClientIdentity::from_der(cert)))
}

#[cold]
fn refuse_client(client: Option<&ClientIdentity>, info: &RecvInfo, shared: &Shared) {
    shared
        .stats
        .record_rejected(RejectReason::ClientCertNotAllowed);
    if let Some(suppressed) = shared.warn_input.check() {
        let who = client.map_or_else(|| "no certificate".to_owned(), ToString::to_string);
        tracing::warn!(
            listener = %shared.spec,
            peer = %info.peer,
            reason = RejectReason::ClientCertNotAllowed.label(),
            suppressed,
            "closing a TLS connection: its client certificate is not one the listener knows: {who}"
        );
    }
}

fn log_peer(
    stream: &TlsStream<TcpStream>,
    client: Option<&ClientIdentity>,
    info: &RecvInfo,
    shared: &Shared,
) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let (_, conn) = stream.get_ref();
    let protocol = conn.protocol_version().map(|v| format!("{v:?}"));
    match client {
        Some(client) => tracing::debug!(
            listener = %shared.spec,
            peer = %info.peer,
            ?protocol,
            client_cert_sha256 = %client.fingerprint(),
            client_cert_dns_names = ?client.dns_names(),
            "TLS connection with a verified client certificate"
        ),
        None => {
            tracing::debug!(listener = %shared.spec, peer = %info.peer, ?protocol, "TLS connection")
        }
    }
}
