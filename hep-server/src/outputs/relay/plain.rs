//! The task of a relay without a spool: runs of queued messages offered to the sender.

use std::sync::Arc;

use bytes::Bytes;
use hep_transport::{HepDestination, HepSender};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::mark::RelayEncoder;
use crate::outputs::queue::{OutputStats, Queued};

/// The most messages a relay takes off its queue at once: when the destination keeps
/// up, one vectored write of them all (about 150 KB of SIP).
const RELAY_RUN: usize = 256;

/// Forwards queued messages as [`RelayEncoder`] encodes them (the received bytes unless
/// changed, with this instance's relay mark). Ends when the queue is drained after every
/// sender is gone or after `close`.
///
/// Runs of up to [`RELAY_RUN`] messages are taken from this output's queue and offered to
/// the sender ([`HepSender::offer_batch`]). Over plain TCP they are written at once from
/// this task while the socket takes them, one system call a run; what the socket does
/// not take waits in the sender's queue (`hep_async_max_postponed_chunks`, OpenSIPS's
/// postponed writes) and the rest of the run here, until the sender has room, for at most
/// `hep_async_local_write_timeout`; when it does not come in time, the rest of each run is
/// offered as sends are (what does not fit is dropped and counted) until the sender's
/// queue is empty again. So a destination that keeps up with bursts costs no message for
/// lack of room in the sender's queue, and one that stalls cannot hold up this output's
/// queue and with it the other outputs. Awaiting every message's write held a relay to
/// about 60,000 messages/s, and handing runs of 15 to the sender's writer task, within
/// its 32 pending messages, to 300,000 (`docs/BENCHMARKS.md`).
pub(super) async fn forward(
    dest: HepDestination,
    sender: HepSender,
    mut rx: mpsc::Receiver<Queued>,
    stats: Arc<OutputStats>,
    close: CancellationToken,
) {
    let mut encoder = RelayEncoder::new(dest.version());
    let mut queued = Vec::with_capacity(RELAY_RUN);
    let mut run: Vec<Bytes> = Vec::with_capacity(RELAY_RUN);
    let mut offered = 0;
    // Room did not come in time, and the sender's queue has not been empty since.
    let mut behind = false;
    let mut closing = false;
    loop {
        if offered == run.len() {
            run.clear();
            offered = 0;
            let n = tokio::select! {
                biased;
                n = rx.recv_many(&mut queued, RELAY_RUN) => n,
                () = close.cancelled(), if !closing => {
                    // No new messages; those queued or reserved still come.
                    rx.close();
                    closing = true;
                    continue;
                }
            };
            if n == 0 {
                break;
            }
            // Counted as dequeued once the sender takes them (below): until then they
            // are still this output's, and a shutdown deadline counts them lost.
            for m in queued.drain(..) {
                match encoder.encode(&m) {
                    Ok(b) => run.push(b),
                    Err(e) => {
                        tracing::debug!(output = %dest, error = %e, "cannot encode for the relay");
                        stats.add_failed(1);
                        stats.dequeued(1);
                    }
                }
            }
            continue;
        }
        // The destination caught up: the sender's queue is empty.
        behind = behind && sender.stats().queue_depth() > 0;
        // Outcomes (sent, dropped) are counted by the sender.
        let taken = sender.offer_batch(&run[offered..]);
        offered += taken;
        stats.dequeued(taken as u64);
        if offered < run.len() && (behind || !sender.room().await) {
            // No room within hep_async_local_write_timeout: the destination is not
            // keeping up. Until it empties the sender's queue, the rest of each run goes
            // as sends go, what does not fit dropped and counted (`queue_overflow`), with
            // no more waiting: waiting on every run would let one slow destination fill
            // this output's queue, and a full queue holds up every output (UDP datagrams
            // are then dropped for all of them).
            behind = true;
            sender.send_batch(&run[offered..]);
            stats.dequeued((run.len() - offered) as u64);
            offered = run.len();
        }
    }
    sender.close().await;
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::net::SocketAddr;
    use std::task::Poll;
    use std::time::Duration;

    use hep_proto::{HepMessage, HepVersion, ProtoType};
    use hep_transport::sender::SenderDropReason;
    use hep_transport::{Received, RecvInfo, SenderConfig, Transport};
    use tokio::time::{Instant, sleep_until, timeout};
    use tower::Service as _;

    use super::*;
    use crate::outputs::fanout::Fanout;
    use crate::outputs::queue::OutputQueue;

    fn received(i: u64) -> Received {
        let payload = format!(
            "OPTIONS sip:{i}@example.com SIP/2.0\r\nX-Pad: {}\r\n\r\n",
            "x".repeat(900)
        );
        let wire = HepMessage::builder()
            .src("10.0.0.1:5060".parse().unwrap())
            .dst("10.0.0.2:5060".parse().unwrap())
            .timestamp(1_700_000_000, 0)
            .proto_type(ProtoType::Sip)
            .payload(payload.into_bytes())
            .build()
            .encode(HepVersion::V3)
            .unwrap();
        let message = HepMessage::decode(wire.clone()).unwrap();
        let at: SocketAddr = "127.0.0.1:5656".parse().unwrap();
        Received::new(message, wire, RecvInfo::new(Transport::Udp, at, at))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_destination_does_not_hold_up_the_relays_queue() {
        // A destination that accepts and never reads. The relay may wait for room once
        // per connection (hep_async_local_write_timeout); after that it must drain its
        // queue as fast as messages come, dropping (and counting) what the destination
        // does not take: a relay that waited on every run would fill its queue, and a
        // full output queue makes the UDP listener drop messages for every output.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = sock.listen(16).unwrap();
        let addr = listener.local_addr().unwrap();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let dest: HepDestination = format!("hep_tcp:{addr}").parse().unwrap();
        let mut cfg = SenderConfig::default();
        cfg.send_buffer_size = Some(4096);
        cfg.max_retries = 0;
        let sender = HepSender::new(dest.clone(), cfg).unwrap();
        let stats = Arc::new(OutputStats::new("relay"));
        // 200 ms of the load below.
        let (queue, rx) = OutputQueue::new(8_000, Arc::clone(&stats));
        let task = tokio::spawn(forward(
            dest,
            sender.clone(),
            rx,
            Arc::clone(&stats),
            CancellationToken::new(),
        ));
        // 40,000 messages/s for 2 s, handed over as the UDP listener does (outside
        // tokio's cooperative budget, which would otherwise make a queue with room look
        // full): a message that finds the queue full is dropped (counted here).
        let mut fanout = Fanout::new(vec![queue], Vec::new());
        let count = 80_000u64;
        let full = tokio::task::unconstrained(async {
            let mut full = 0u64;
            let start = Instant::now();
            for i in 0..count {
                if i % 40 == 0 {
                    sleep_until(start + Duration::from_millis(i / 40)).await;
                }
                match poll_fn(|cx| Poll::Ready(fanout.poll_ready(cx))).await {
                    Poll::Ready(_) => {
                        fanout.call(received(i)).await.unwrap();
                    }
                    Poll::Pending => full += 1,
                }
            }
            full
        })
        .await;
        drop(fanout);
        timeout(Duration::from_secs(30), task)
            .await
            .expect("the relay never finished")
            .unwrap();
        holder.abort();
        assert_eq!(full, 0, "the relay's queue filled up");
        let s = sender.stats().snapshot();
        assert!(s.dropped(SenderDropReason::QueueOverflow) > 0, "{s:?}");
        assert_eq!(
            s.sent_messages + s.dropped_total() + s.queue_depth,
            count,
            "{s:?}"
        );
    }
}
