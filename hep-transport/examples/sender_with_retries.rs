//! A HEP sender with its retry and backoff settings: sends N SIP messages to a
//! destination, one a millisecond, then prints what became of them.
//!
//! ```text
//! cargo run -p hep-transport --example sender_with_retries -- hep_tcp:127.0.0.1:9060 2000
//! ```
//!
//! Stop and restart the collector while it runs: the sender reconnects after a backoff;
//! after `max_retries` failed attempts in a row it refuses messages for
//! `retry_cooldown` (counted as `cooldown`), then tries again. Every message ends up in
//! the counters: sent, or dropped with its reason.

use std::error::Error;
use std::time::{Duration, SystemTime};

use hep_proto::{HepMessage, ProtoType};
use hep_transport::sender::{Backoff, SenderDropReason};
use hep_transport::{HepDestination, HepSender, SenderConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let dest: HepDestination = args
        .next()
        .unwrap_or_else(|| "hep_tcp:127.0.0.1:9060".into())
        .parse()?;
    let count: u32 = args.next().map_or(Ok(1000), |n| n.parse())?;

    let mut config = SenderConfig::default();
    // Wait 50 ms after the first failure, doubling up to 2 s (with jitter).
    config.backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    // After 3 failures in a row, refuse messages for 5 s (OpenSIPS hep_max_retries and
    // hep_retry_cooldown), then try again.
    config.max_retries = 3;
    config.retry_cooldown = Duration::from_secs(5);
    config.connect_timeout = Duration::from_secs(1);
    // What close() may still flush.
    config.close_timeout = Duration::from_secs(2);
    let sender = HepSender::new(dest, config)?;

    let mut tick = tokio::time::interval(Duration::from_millis(1));
    for i in 0..count {
        tick.tick().await;
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
        let message = HepMessage::builder()
            .timestamp(u32::try_from(now.as_secs())?, now.subsec_micros())
            .src("192.0.2.1:5060".parse()?)
            .dst("192.0.2.2:5060".parse()?)
            .proto_type(ProtoType::Sip)
            .capture_id(2001)
            .payload(format!(
                "OPTIONS sip:ping@example.com SIP/2.0\r\nCall-ID: {i}@example.com\r\nCSeq: 1 OPTIONS\r\n\r\n"
            ))
            .build();
        // Queued at once (async mode); the future only reports the outcome, which the
        // counters keep anyway.
        drop(sender.send_message(&message));
    }
    sender.close().await;

    let stats = sender.stats().snapshot();
    println!(
        "{} of {count} sent ({} bytes), {} connects ({} reconnects), {} connect errors",
        stats.sent_messages,
        stats.sent_bytes,
        stats.connects,
        stats.reconnects,
        stats.connect_errors
    );
    for (reason, n) in stats.dropped_by_reason().filter(|&(_, n)| n > 0) {
        println!("dropped {n}: {reason}");
    }
    if stats.dropped(SenderDropReason::Cooldown) > 0 {
        println!("(cooldown: the destination failed max_retries times in a row)");
    }
    Ok(())
}
