//! The load: `hep-bench-peer sip-calls` into an edge, Kamailio-like calls of 7 messages
//! (INVITE, 100, 180, 200, ACK, BYE, 200) with their own Call-IDs, at a fixed rate.
//!
//! Each peer numbers its calls from its own `--first-call`, so the two peers of a run send
//! disjoint calls and the stores can be checked against the exact set that was sent.
//! Capture times are spread over the run (one microsecond step or more a message), so
//! that a call's messages have distinct capture times in the order they were sent.

use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::stores::STEPS;
use crate::bench::procs::Peer;

/// The most calls under way at once in a peer's stream: a call's messages are this many
/// apart, as on a busy proxy.
const CONCURRENT_CALLS: u64 = 100;

/// Calls under way at once for a peer sending `calls` calls: the largest divisor of
/// `calls` up to [`CONCURRENT_CALLS`], so that the stream ends with whole calls
/// (`sip-calls` interleaves groups of that many calls, step by step: with a partial last
/// group it would send the first steps of calls it never finishes).
fn concurrent_calls(calls: u64) -> u64 {
    (1..=CONCURRENT_CALLS.min(calls).max(1))
        .rev()
        .find(|&d| calls.is_multiple_of(d))
        .unwrap_or(1)
}

/// One peer's share of the run.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    /// The calls it sends.
    pub(crate) calls: Range<u64>,
    /// Messages a second (0: as fast as the edge takes them).
    pub(crate) rate: u64,
    /// Capture time of its first message, Unix seconds.
    pub(crate) start_ts: u64,
}

impl Load {
    /// Messages it sends.
    pub(crate) fn messages(&self) -> u64 {
        (self.calls.end - self.calls.start) * u64::from(STEPS)
    }
}

/// A running `sip-calls` peer.
pub(crate) struct Sender {
    peer: Peer,
    load: Load,
    started: Instant,
}

impl Sender {
    /// Starts the peer towards `port` (an edge's `hep_tcp` listener).
    ///
    /// # Errors
    /// The peer cannot be started or cannot connect.
    pub(crate) fn start(bin: &Path, name: &str, port: u16, load: Load, log: &Path) -> Result<Self> {
        let messages = load.messages();
        // Capture times one message apart by at least a microsecond, over as many
        // seconds as the run is meant to last (at least 1).
        let spread = if load.rate > 0 {
            messages.div_ceil(load.rate).max(1)
        } else {
            messages.div_ceil(100_000).max(1)
        };
        let mut args = vec![
            "sip-calls".to_owned(),
            "--dest".to_owned(),
            format!("127.0.0.1:{port}"),
            "--messages".to_owned(),
            messages.to_string(),
            "--first-call".to_owned(),
            load.calls.start.to_string(),
            "--concurrent-calls".to_owned(),
            concurrent_calls(load.calls.end - load.calls.start).to_string(),
            "--start-ts".to_owned(),
            load.start_ts.to_string(),
            "--spread-secs".to_owned(),
            spread.to_string(),
        ];
        if load.rate > 0 {
            args.extend(["--rate".to_owned(), load.rate.to_string()]);
        }
        println!(
            "==> {name}: hep-bench-peer {} (calls {}..{})",
            args.join(" "),
            load.calls.start,
            load.calls.end
        );
        let peer = Peer::start(bin, name, &args, log)?;
        Ok(Self {
            peer,
            load,
            started: Instant::now(),
        })
    }

    /// Messages written so far, and whether it is done.
    ///
    /// # Errors
    /// The peer does not answer, or reports a write error.
    pub(crate) fn progress(&mut self) -> Result<(u64, bool)> {
        let line = self.peer.proc.ask("stats")?;
        if line.contains("error") {
            bail!("sip-calls peer: {line}");
        }
        let sent = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("sent="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((sent, line.contains("done")))
    }

    /// Waits until it has written everything, at most `limit`.
    ///
    /// # Errors
    /// Not done within `limit`, or an error of the peer.
    pub(crate) fn wait_done(&mut self, limit: Duration) -> Result<Duration> {
        let deadline = Instant::now() + limit;
        loop {
            let (sent, done) = self.progress()?;
            if done {
                return Ok(self.started.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "the sip-calls peer wrote {sent} of {} messages in {:.0} s",
                    self.load.messages(),
                    limit.as_secs_f64()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the peer.
    pub(crate) fn stop(&mut self) {
        self.peer.proc.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_of_concurrent_calls_divide_the_calls() {
        assert_eq!(concurrent_calls(71_500), 100);
        assert_eq!(concurrent_calls(429), 39);
        assert_eq!(concurrent_calls(286), 26);
        assert_eq!(concurrent_calls(7), 7);
        assert_eq!(concurrent_calls(101), 1);
        assert_eq!(concurrent_calls(0), 1);
    }
}
