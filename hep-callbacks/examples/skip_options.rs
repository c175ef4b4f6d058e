//! A HEP collector in one file: a UDP listener, a callback that skips SIP OPTIONS (the
//! keep-alive pings that fill a capture), a tower layer of our own, and a service that
//! prints what passes.
//!
//! ```sh
//! cargo run -p hep-callbacks --example skip_options -- [--listen SPEC] [--count N]
//! ```
//!
//! It listens on `hep_udp:127.0.0.1:9060` unless told otherwise, and stops on Ctrl-C or
//! once N messages have passed (`--count N`). From another terminal, replay the Kamailio
//! call of the test vectors (one HEP datagram a file; `/dev/udp` is bash's):
//!
//! ```sh
//! for f in hep-testkit/testdata/kamailio/v3-udp-0*.hep; do cat "$f" > /dev/udp/127.0.0.1/9060; done
//! ```
//!
//! The service stack, outermost first, as tower's `ServiceBuilder` writes it:
//!
//! ```text
//! listener ─► CallbackChain (skip OPTIONS) ─► Countdown (ours) ─► print
//! ```

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use hep_callbacks::hep_proto::Received;
use hep_callbacks::hep_proto::sip::SipSummary;
use hep_callbacks::{CallbackChainLayer, Verdict};
use hep_transport::{ListenSpec, Listener, ListenerConfig};
use tokio::sync::Notify;
use tower::{Layer, Service, ServiceBuilder, service_fn};

/// The callback: OPTIONS requests, and the responses to them (their CSeq says OPTIONS),
/// stop here: OpenSIPS's `HEP_SCRIPT_SKIP`. Everything else goes on.
fn skip_options(r: &mut Received) -> Verdict {
    match SipSummary::parse(r.message.payload.bytes()).and_then(|sip| sip.method()) {
        Some("OPTIONS") => Verdict::Skip,
        _ => Verdict::Continue,
    }
}

/// A tower layer of our own: counts the messages that reach it, and rings `done` when
/// the count reaches the limit. It is ready when the service inside it is, so it keeps
/// that service's backpressure, as every layer of a stack must.
#[derive(Clone)]
struct CountdownLayer {
    limit: Option<u64>,
    passed: Arc<AtomicU64>,
    done: Arc<Notify>,
}

impl<S> Layer<S> for CountdownLayer {
    type Service = Countdown<S>;

    fn layer(&self, inner: S) -> Countdown<S> {
        Countdown {
            layer: self.clone(),
            inner,
        }
    }
}

/// The service [`CountdownLayer`] builds. The listener clones it per worker (and, on
/// TCP, per connection): the count is shared.
#[derive(Clone)]
struct Countdown<S> {
    layer: CountdownLayer,
    inner: S,
}

impl<S: Service<Received>> Service<Received> for Countdown<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, received: Received) -> S::Future {
        let passed = self.layer.passed.fetch_add(1, Ordering::Relaxed) + 1;
        if Some(passed) == self.layer.limit {
            self.layer.done.notify_one();
        }
        self.inner.call(received)
    }
}

/// `--listen SPEC` and `--count N`.
fn args() -> Result<(ListenSpec, Option<u64>), String> {
    let mut spec = "hep_udp:127.0.0.1:9060".to_owned();
    let mut count = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--listen" => spec = value,
            "--count" => count = Some(value.parse().map_err(|e| format!("--count: {e}"))?),
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    let spec = spec.parse().map_err(|e| format!("--listen: {e}"))?;
    Ok((spec, count))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (spec, limit) = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}\nusage: skip_options [--listen hep_udp:IP:PORT] [--count N]");
            return ExitCode::from(2);
        }
    };
    let listener = match Listener::bind(spec, ListenerConfig::default()).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("{}", chain(&e));
            return ExitCode::FAILURE;
        }
    };
    eprintln!("listening on {} (Ctrl-C to stop)", listener.local_addr());

    let callbacks = CallbackChainLayer::builder().register(skip_options).build();
    let callback_stats = callbacks.stats();
    let countdown = CountdownLayer {
        limit,
        passed: Arc::new(AtomicU64::new(0)),
        done: Arc::new(Notify::new()),
    };
    let (passed, done) = (Arc::clone(&countdown.passed), Arc::clone(&countdown.done));
    let print = service_fn(|r: Received| async move {
        let sip = SipSummary::parse(r.message.payload.bytes());
        println!(
            "{} capture id {} Call-ID {} {}",
            r.info.peer,
            r.message
                .capture_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string()),
            sip.and_then(|s| s.call_id).unwrap_or("-"),
            sip.map_or("(not SIP)", |s| s.first_line),
        );
        Ok::<(), Infallible>(())
    });
    let service = ServiceBuilder::new()
        .layer(callbacks)
        .layer(countdown)
        .service(print);

    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = done.notified() => {}
        }
    };
    if let Err(e) = listener.run(service, shutdown).await {
        eprintln!("{}", chain(&e));
        return ExitCode::FAILURE;
    }
    eprintln!(
        "{} passed, {} skipped",
        passed.load(Ordering::Relaxed),
        callback_stats[0].skipped()
    );
    ExitCode::SUCCESS
}

/// An error and its sources: `cannot listen on ...: bind failed: Address in use`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}
