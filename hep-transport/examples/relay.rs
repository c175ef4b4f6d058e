//! A HEP relay in about 30 lines: every message a listener (UDP, TCP or TLS) receives is
//! forwarded to one destination, byte for byte.
//!
//! ```text
//! cargo run -p hep-transport --example relay -- hep_udp:0.0.0.0:9060 hep_tcp:10.0.0.5:9061
//! ```
//!
//! The sender never makes the listener wait: it queues each message (bounded by
//! `hep_async_max_postponed_chunks`) and drops what it cannot take, counted in its
//! stats, which are printed at the end (Ctrl-C). hep-transport's tests run [`relay`] on
//! loopback.

use std::convert::Infallible;
use std::error::Error;

use hep_transport::{
    HepDestination, HepSender, ListenError, Listener, ListenerConfig, Received, SenderConfig,
};

/// Forwards what `listener` receives to `sender` until `shutdown` completes.
pub(crate) async fn relay(
    listener: Listener,
    sender: HepSender,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ListenError> {
    // Cloned per UDP worker and per TCP connection: every clone holds the same sender.
    let forward = tower::service_fn(move |msg: Received| {
        if msg.modified {
            // A layer changed the message: encode it anew (counted in the stats too).
            drop(sender.send_message(&msg.message));
        } else {
            // The bytes as they came. An error here is a drop the stats count already.
            let _ = sender.enqueue(msg.wire);
        }
        std::future::ready(Ok::<_, Infallible>(()))
    });
    listener.run(forward, shutdown).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "hep_udp:0.0.0.0:9060".into());
    let dest = args
        .next()
        .unwrap_or_else(|| "hep_tcp:127.0.0.1:9061".into());
    let listener = Listener::bind(listen.parse()?, ListenerConfig::default()).await?;
    let sender = HepSender::new(dest.parse::<HepDestination>()?, SenderConfig::default())?;
    println!("relaying {} -> {}", listener.spec(), sender.destination());

    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    relay(listener, sender.clone(), ctrl_c).await?;
    sender.close().await;
    println!("{:?}", sender.stats());
    Ok(())
}
