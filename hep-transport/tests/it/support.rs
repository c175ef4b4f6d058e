//! Test support: a listener running with a collecting service, bounded waits, vectors.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hep_proto::DecodeOptions;
use hep_transport::{
    BoxError, HepService, ListenError, Listener, ListenerConfig, ListenerStats, Received,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tower::Service;

/// How long any single wait in a test may take before it fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(5);

/// A listener running in a task until [`Running::stop`].
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) stats: Arc<ListenerStats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ListenError>>,
}

impl Running {
    pub(crate) async fn start<S: HepService>(
        spec: &str,
        config: ListenerConfig,
        service: S,
    ) -> Self {
        let listener = Listener::bind(spec.parse().unwrap(), config).await.unwrap();
        Self::from_listener(listener, service)
    }

    pub(crate) fn from_listener<S: HepService>(listener: Listener, service: S) -> Self {
        let addr = listener.local_addr();
        assert_ne!(addr.port(), 0, "the bound port is reported");
        let stats = listener.stats().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(listener.run(service, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stats,
            stop: Some(stop),
            task,
        }
    }

    /// Signals shutdown without waiting.
    pub(crate) fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Signals shutdown and waits (bounded) for `run` to return.
    pub(crate) async fn stop(mut self) -> Result<(), ListenError> {
        self.signal_stop();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the listener stops in time")
            .expect("the listener task does not panic")
    }
}

/// A service that sends every message into a channel, and the channel's receiver.
pub(crate) fn collector() -> (
    impl Service<
        Received,
        Response = (),
        Error = BoxError,
        Future = std::future::Ready<Result<(), BoxError>>,
    > + Clone
    + Send
    + 'static,
    mpsc::UnboundedReceiver<Received>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let svc = tower::service_fn(move |msg: Received| {
        std::future::ready(tx.send(msg).map_err(|_| BoxError::from("collector gone")))
    });
    (svc, rx)
}

/// Starts `spec` with a [`collector`].
pub(crate) async fn start_collecting(
    spec: &str,
    config: ListenerConfig,
) -> (Running, mpsc::UnboundedReceiver<Received>) {
    let (svc, rx) = collector();
    (Running::start(spec, config, svc).await, rx)
}

/// The next message, or a failed test after [`PATIENCE`].
pub(crate) async fn recv(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a message arrives in time")
        .expect("the collector is alive")
}

/// The next `n` messages.
pub(crate) async fn recv_n(rx: &mut mpsc::UnboundedReceiver<Received>, n: usize) -> Vec<Received> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(PATIENCE, rx.recv()).await {
            Ok(Some(msg)) => out.push(msg),
            _ => panic!("only {} of {n} messages arrived", out.len()),
        }
    }
    out
}

/// Asserts that nothing arrives for `wait`.
pub(crate) async fn assert_nothing(rx: &mut mpsc::UnboundedReceiver<Received>, wait: Duration) {
    if let Ok(Some(msg)) = tokio::time::timeout(wait, rx.recv()).await {
        panic!(
            "unexpected message from {}: {:?}",
            msg.info.peer, msg.message.payload
        );
    }
}

/// Waits until `cond` holds, polling; fails the test after [`PATIENCE`].
pub(crate) async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads until the server closes the connection (EOF or reset); fails after [`PATIENCE`].
pub(crate) async fn expect_closed<S: AsyncReadExt + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closes the connection");
}

/// A connected client with `TCP_NODELAY`, so that each write is its own segment.
/// What a connection the server resets at accept looks like from here: the reset can
/// come before the connect returns (`connected` is then ECONNRESET) or after (the
/// connection then ends). Whatever it manages to write first (`first`) is never read.
pub(crate) async fn expect_refused(connected: std::io::Result<TcpStream>, first: &[u8]) {
    match connected {
        Ok(mut conn) => {
            let _ = conn.write_all(first).await;
            expect_closed(&mut conn).await;
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

pub(crate) async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Writes `bytes` in `pieces` writes, pausing after each so that the server reads each
/// piece on its own.
pub(crate) async fn write_in_pieces<W>(w: &mut W, bytes: &[u8], pieces: usize, pause: Duration)
where
    W: AsyncWriteExt + Unpin,
{
    let size = bytes.len().div_ceil(pieces);
    for piece in bytes.chunks(size) {
        w.write_all(piece).await.unwrap();
        w.flush().await.unwrap();
        tokio::time::sleep(pause).await;
    }
}

/// The Kamailio HEP3-over-TCP frames, in capture order.
pub(crate) fn tcp_frames() -> Vec<Vec<u8>> {
    hep_testkit::vectors::kamailio("v3-tcp-")
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect()
}

/// The Kamailio TCP capture: the frames above, back to back.
pub(crate) fn tcp_stream() -> Vec<u8> {
    hep_testkit::vectors::read("kamailio/v3-tcp-stream.bin")
}

/// What the decoder makes of `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> Result<hep_proto::HepMessage, hep_proto::DecodeError> {
    DecodeOptions::default().decode(&Bytes::copy_from_slice(bytes))
}

/// Runs `fut` with [`PATIENCE`].
pub(crate) async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
