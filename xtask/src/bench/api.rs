//! Section 7: the HTTP API under load. A store filled with millions of SIP messages, a
//! steady ingest into it, and concurrent clients asking `GET /api/v1/calls` for one call
//! by Call-ID and for a user's calls: the latency each client sees, per request.
//!
//! The clients are threads of this process, each with its own connection per request
//! (HTTP/1.0, as a page's fetch without keep-alive pays it): the latency is the time from
//! the connect to the last byte of the answer. Requests are sent back to back for a fixed
//! time per kind of question, so the server has `CLIENTS` requests in hand at any moment
//! and the ingest is measured over seconds, not over a few commits; a request that finds
//! no call, or gets anything but 200, is counted and reported, not hidden in the
//! percentiles. The store's queue and its writer's busy and waiting time over the same
//! seconds tell whether the ingest kept up and, if not, why.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::Ctx;
use super::procs::{Peer, Server, free_port, http_get};
use super::report::percentile;
use super::store::fill;

/// Clients asking at once (issue 16: 20).
pub(crate) const CLIENTS: usize = 20;

/// The ingest rate while the clients ask, SIP messages a second (issue 16: 100,000).
const INGEST_RATE: u64 = 100_000;

/// The time window every question names: the fill's capture times span the 24 hours
/// before it started.
const WINDOW: &str = "since=-48h";

/// One kind of question, asked by every client.
#[derive(Debug, Clone, Default)]
pub(crate) struct Phase {
    /// The latency of each answered request, ms.
    pub(crate) ms: Vec<f64>,
    /// Answers other than 200, and requests that failed (connect, read).
    pub(crate) errors: u64,
    /// 200 answers without the call asked for (call phase) or without any call (user).
    pub(crate) misses: u64,
    /// Wall time of the phase, s.
    pub(crate) secs: f64,
}

impl Phase {
    /// The `p`-th percentile latency, ms.
    pub(crate) fn pct(&self, p: f64) -> f64 {
        percentile(&self.ms, p)
    }
}

/// What the section measured.
#[derive(Debug, Clone)]
pub(crate) struct ApiResult {
    /// Messages in the store before the questions (the ingest adds more during them).
    pub(crate) stored: u64,
    pub(crate) clients: usize,
    /// The ingest rate asked of the peer, msg/s.
    pub(crate) ingest_asked: u64,
    /// The rate the store output took during the questions, msg/s.
    pub(crate) ingest_taken: f64,
    /// What the store output dropped during the questions.
    pub(crate) ingest_dropped: u64,
    /// The store's queue before and after the questions, messages.
    pub(crate) queue: (u64, u64),
    /// The share of the questions' time the store's writer spent in transactions, and
    /// waiting for WAL checkpoints.
    pub(crate) writer_busy: f64,
    pub(crate) writer_waited: f64,
    /// `GET /api/v1/calls?call_id=ID`.
    pub(crate) call: Phase,
    /// `GET /api/v1/calls?user=U&limit=100`.
    pub(crate) user: Phase,
}

pub(crate) fn api(ctx: &Ctx<'_>) -> Result<ApiResult> {
    let stored: u64 = ctx.pick(10_000_000, 1_000_000, 20_000);
    let calls = stored / 7;
    let dir = ctx.dir.join("api");
    let (fill_run, _) = fill(ctx, &dir, stored, 86_400, 1, "api-fill")?;
    println!(
        "    api: store filled with {stored} msgs in {:.1} s",
        fill_run.secs
    );

    let (hep_port, http_port) = (free_port()?, free_port()?);
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let spec = format!("store:{}", dir.join("db").display());
    let server = Server::start(
        &ctx.bin("hep-server"),
        "hep-server (api)",
        &[
            "--config".into(),
            dir.with_extension("toml").display().to_string(),
            "--listen".into(),
            format!("hep_tcp:127.0.0.1:{hep_port}"),
            "--output".into(),
            spec.clone(),
            "--http".into(),
            http.to_string(),
        ],
        &ctx.log("api-hep-server"),
    )?;
    let (status, body) = http_get(http, "/api/v1/calls?limit=1")?;
    if status != 200 {
        bail!("the API does not answer: {status} {body}");
    }

    let ingest_asked = ctx.pick(INGEST_RATE, INGEST_RATE, 5_000);
    let phase = Duration::from_secs(ctx.pick(15, 5, 1));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut ingest = Peer::start(
        &ctx.bin("hep-bench-peer"),
        "sip-calls (api ingest)",
        &[
            "sip-calls".into(),
            "--dest".into(),
            format!("127.0.0.1:{hep_port}"),
            // More than the phases can last (each request ends within `http_get`'s read
            // timeout); the peer is stopped after them.
            "--messages".into(),
            (ingest_asked * (2 * phase.as_secs() + 60)).to_string(),
            "--start-ts".into(),
            now.to_string(),
            "--first-call".into(),
            (calls + 1).to_string(),
            "--concurrent-calls".into(),
            "1000".into(),
            "--rate".into(),
            ingest_asked.to_string(),
        ],
        &ctx.log("api-ingest-peer"),
    )?;
    // The ingest reaches its pace before the first question.
    std::thread::sleep(Duration::from_secs(ctx.pick(3, 2, 1)));
    let label = format!("output=\"{spec}\"");
    let before = server.scrape()?;
    let started = Instant::now();

    let call = ask(http, phase, |client, i| {
        let n = spread(client, i, calls);
        let id = format!("bench-{n}@10.0.0.1");
        (
            format!("/api/v1/calls?call_id={id}&{WINDOW}"),
            format!("\"call_id\":\"{id}\""),
        )
    });
    let user = ask(http, phase, |client, i| {
        let u = spread(client, i, calls) % 50_000;
        (
            format!("/api/v1/calls?user=alice{u}&limit=100&{WINDOW}"),
            "\"calls\":[{".to_owned(),
        )
    });

    let secs_elapsed = started.elapsed().as_secs_f64();
    let after = server.scrape()?;
    let taken = after
        .sum("hep_delivered_total", &[&label])
        .saturating_sub(before.sum("hep_delivered_total", &[&label]));
    let ingest_dropped = after
        .sum("hep_dropped_total", &[&label])
        .saturating_sub(before.sum("hep_dropped_total", &[&label]));
    let queue = |m: &super::procs::Metrics| m.sum("hep_output_queue_depth", &[&label]);
    let share = |name: &str| {
        let secs = |m: &super::procs::Metrics| m.family(name).map(|(_, v)| v).sum::<f64>();
        (secs(&after) - secs(&before)) / secs_elapsed
    };
    let sent = ingest.stats().ok();
    ingest.proc.stop();
    let mut server = server;
    server.proc.stop();
    std::fs::remove_dir_all(&dir).ok();

    let result = ApiResult {
        stored,
        clients: CLIENTS,
        ingest_asked,
        ingest_taken: taken as f64 / secs_elapsed,
        ingest_dropped,
        queue: (queue(&before), queue(&after)),
        writer_busy: share("hep_store_writing_seconds_total"),
        writer_waited: share("hep_store_checkpoint_wait_seconds_total"),
        call,
        user,
    };
    for (what, p) in [("call_id", &result.call), ("user", &result.user)] {
        println!(
            "    api {what}: {} answers in {:.1} s, p50 {:.1} ms p99 {:.1} ms max {:.1} ms; \
             errors {} misses {}",
            p.ms.len(),
            p.secs,
            p.pct(50.0),
            p.pct(99.0),
            p.pct(100.0),
            p.errors,
            p.misses
        );
    }
    println!(
        "    api ingest meanwhile: {:.0} msg/s taken of {ingest_asked} asked, dropped {}, \
         store queue {} -> {}, writer busy {:.0} % waiting {:.0} % (peer: {sent:?})",
        result.ingest_taken,
        result.ingest_dropped,
        result.queue.0,
        result.queue.1,
        result.writer_busy * 100.0,
        result.writer_waited * 100.0
    );
    if result.call.ms.is_empty() || result.user.ms.is_empty() {
        bail!(
            "the API answered no question (see {})",
            ctx.log("api-hep-server").display()
        );
    }
    Ok(result)
}

/// A call number out of `calls` for request `i` of `client`, spread over the whole store.
fn spread(client: usize, i: usize, calls: u64) -> u64 {
    let x = (client as u64) << 32 | i as u64;
    splitmix64(x) % calls.max(1)
}

/// The mixer of `hep-bench-peer`'s random Call-IDs (SplitMix64).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// [`CLIENTS`] threads each ask questions back to back for `phase`;
/// `question(client, i)` gives the path of the `i`-th and what a right answer holds.
fn ask(
    http: SocketAddr,
    phase: Duration,
    question: impl Fn(usize, usize) -> (String, String) + Sync,
) -> Phase {
    let started = Instant::now();
    let deadline = started + phase;
    let (errors, misses) = (AtomicU64::new(0), AtomicU64::new(0));
    let ms: Vec<f64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (question, errors, misses) = (&question, &errors, &misses);
                scope.spawn(move || {
                    let mut ms = Vec::new();
                    for i in 0usize.. {
                        if Instant::now() > deadline {
                            break;
                        }
                        let (path, want) = question(client, i);
                        let t = Instant::now();
                        match http_get(http, &path) {
                            Ok((200, body)) => {
                                ms.push(t.elapsed().as_secs_f64() * 1e3);
                                if !body.contains(&want) {
                                    misses.fetch_add(1, Relaxed);
                                }
                            }
                            Ok(_) | Err(_) => {
                                errors.fetch_add(1, Relaxed);
                            }
                        }
                    }
                    ms
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    Phase {
        ms,
        errors: errors.into_inner(),
        misses: misses.into_inner(),
        secs: started.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_spread_over_the_store_and_differ_between_clients() {
        let calls = 1_428_571;
        let picks: std::collections::BTreeSet<u64> = (0..CLIENTS)
            .flat_map(|c| (0..100).map(move |i| spread(c, i, calls)))
            .collect();
        assert!(
            picks.len() > 1_990,
            "{} distinct calls of 2000",
            picks.len()
        );
        assert!(picks.iter().all(|&n| n < calls));
        assert!(picks.iter().any(|&n| n < calls / 10));
        assert!(picks.iter().any(|&n| n > calls / 10 * 9));
    }
}
