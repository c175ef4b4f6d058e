//! `hep-server search`: messages out of a store (`store:DIR`), as a call flow, JSON
//! records or pcap.
//!
//! With `--config FILE` (the collector's), the ladder's columns are named by its
//! `[aliases]`, and the store is its first `store:DIR` output unless `--store` is given.
//!
//! The query goes to [`store::search`]: every filter given must match, a call's other
//! legs come with it, results are in capture time order. The formats reuse the
//! collector's writers: [`record`](crate::formats::record) for JSON (the same record `json:`
//! writes, `recv` included), [`PcapFileWriter`] for pcap (as `pcap:` writes), and
//! [`ladder`] for the call flow (the default).
//!
//! With `[cluster] peers` in the config (or `--peer URL`), the peers' HTTP APIs are asked
//! too ([`super::search_peers`]): their calls follow this node's messages (pcap: all in
//! capture time order), and a peer that did not answer is named on standard error.

use std::io::{self, BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;

use std::path::PathBuf;

use hep_proto::ProtoType;

use crate::call_quality::CallQuality;
use crate::cli::{ColorWhen, SearchArgs, SearchFormat};
use crate::config::Config;
use crate::formats::ladder::{self, Arrow, LadderStyle};
use crate::formats::pcap::PcapFileWriter;
use crate::formats::record::write_json_line;
use crate::store::{self, Query, Stored};
use crate::sync::lock;

use super::search_peers::{self, PeerResults};
use crate::cluster::metrics::PeerMetrics;
use crate::cluster::{Cluster, Unanswered};

/// What a search found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchSummary {
    /// Messages written from this node's store.
    pub messages: usize,
    /// Calls written from peers.
    pub peer_calls: usize,
    /// The peers that did not answer.
    pub unanswered: Vec<Unanswered>,
}

/// Where the results go: standard output (and whether it is a terminal) or a file.
pub struct Destination {
    /// The writer.
    pub out: Box<dyn Write + Send>,
    /// Whether `out` is a terminal (no pcap there; colors in `auto`).
    pub is_terminal: bool,
}

impl Destination {
    /// `--output FILE`, or standard output.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn of(args: &SearchArgs) -> anyhow::Result<Self> {
        Ok(match &args.output {
            Some(path) => Self {
                out: Box::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("--output {}", path.display()))?,
                ),
                is_terminal: false,
            },
            None => Self {
                out: Box::new(io::stdout()),
                is_terminal: io::IsTerminal::is_terminal(&io::stdout()),
            },
        })
    }
}

/// Runs `search`, writing to `dest`.
///
/// # Errors
/// A store that cannot be read (naming the file), pcap asked for on a terminal, or a
/// failed write.
pub fn run(args: &SearchArgs, dest: Destination) -> anyhow::Result<SearchSummary> {
    if args.format == SearchFormat::Pcap && dest.is_terminal {
        anyhow::bail!(
            "pcap is binary: give --output FILE, or redirect standard output (`> call.pcap`, \
             `| wireshark -k -i -`)"
        );
    }
    let config = match &args.config {
        Some(path) => Some(Config::load(path)?),
        None => None,
    };
    let dir = match (&args.store, config.as_ref().and_then(Config::store_dir)) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => dir.to_path_buf(),
        (None, None) => PathBuf::from(store::DEFAULT_DIR),
    };
    let mut cluster_config = config
        .as_ref()
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    if !args.peers.is_empty() {
        cluster_config.peers.clone_from(&args.peers);
    }
    if args.local {
        cluster_config.peers.clear();
    }
    let kpi = config.as_ref().map(|c| c.kpi.clone()).unwrap_or_default();
    let aliases = config.map(|c| c.aliases).unwrap_or_default();
    let query = Query {
        call_id: args.call_id.clone(),
        user: args.user.clone(),
        method: args.method.clone(),
        since_usec: args.since,
        until_usec: args.until,
        limit: usize::try_from(args.limit).unwrap_or(usize::MAX),
        capture_ids: None,
        node: args.node.clone(),
        text: args.text.clone(),
        ..Query::default()
    };
    let store::Results {
        messages: found,
        damaged,
        text_scan,
        legs_cut,
        ..
    } = store::search(&dir, &query)?;
    for e in &damaged {
        eprintln!("hep-server: warning: a matching message is left out: {e}");
    }
    if let Some(scan) = text_scan.filter(|s| s.truncated) {
        eprintln!(
            "hep-server: --text read {} messages (its bound is {} messages, {} calls) and \
             stopped: older calls may hold the text too; narrow --since/--until or add a filter",
            scan.scanned,
            scan.limit,
            store::text::MAX_TEXT_CALLS
        );
    }
    if legs_cut {
        eprintln!(
            "hep-server: the chain of legs of {} was cut at its bound ({} legs, {} hops): \
             more legs may exist than shown; search one of them for its side",
            args.call_id.as_deref().unwrap_or_default(),
            store::legs::MAX_LEGS,
            store::legs::MAX_CHAIN_HOPS
        );
    }
    let peers = if cluster_config.peers.is_empty() {
        PeerResults::default()
    } else {
        let cluster = Cluster::new(cluster_config, Arc::new(PeerMetrics::default()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(search_peers::search(args, &cluster, !found.is_empty()))
    };
    for u in &peers.unanswered {
        eprintln!(
            "hep-server: peer {} did not answer: {} (its calls may be missing)",
            u.peer, u.error
        );
    }
    match args.format {
        SearchFormat::Json => {
            let mut out = BufWriter::with_capacity(256 * 1024, dest.out);
            for s in &found {
                write_json_line(&mut out, &s.message, s.recv.as_ref())?;
            }
            for call in &peers.calls {
                let view: serde_json::Value = serde_json::from_slice(&call.body)
                    .with_context(|| format!("call {} of {}", call.call_id, call.peer))?;
                for m in view["messages"].as_array().into_iter().flatten() {
                    let mut record = m.clone();
                    if let Some(o) = record.as_object_mut() {
                        o.remove("id");
                    }
                    serde_json::to_writer(&mut out, &record)?;
                    out.write_all(b"\n")?;
                }
            }
            out.flush()?;
        }
        SearchFormat::Pcap if !peers.calls.is_empty() => {
            // This node's packets and the peers', in capture time order.
            let here = Arc::new(Mutex::new(Vec::new()));
            let mut pcap = PcapFileWriter::new(Box::new(SharedVec(Arc::clone(&here))))?;
            for s in &found {
                if s.message.proto_type == Some(ProtoType::Rtcp)
                    && !crate::qos::rtcp::is_raw(s.message.payload.bytes())
                {
                    continue;
                }
                pcap.write(&s.message, received_at(s))?;
            }
            pcap.flush()?;
            drop(pcap);
            let here = std::mem::take(&mut *lock(&here));
            let names: Vec<String> = peers
                .calls
                .iter()
                .map(|c| format!("call {} of {}", c.call_id, c.peer))
                .collect();
            let mut files: Vec<(&str, &[u8])> = vec![("this node's pcap", &here)];
            files.extend(
                names
                    .iter()
                    .map(String::as_str)
                    .zip(peers.calls.iter().map(|c| &c.body[..])),
            );
            let merged = search_peers::merge_pcaps(&files).map_err(anyhow::Error::msg)?;
            let mut out = dest.out;
            out.write_all(&merged)?;
            out.flush()?;
        }
        SearchFormat::Pcap => {
            let mut pcap = PcapFileWriter::new(dest.out)?;
            // RTCP an agent sent as JSON was never a packet: left out, and said so.
            let mut json_rtcp = 0;
            for s in &found {
                if s.message.proto_type == Some(ProtoType::Rtcp)
                    && !crate::qos::rtcp::is_raw(s.message.payload.bytes())
                {
                    json_rtcp += 1;
                    continue;
                }
                pcap.write(&s.message, received_at(s))?;
            }
            pcap.flush()?;
            if json_rtcp > 0 {
                eprintln!(
                    "hep-server: {json_rtcp} RTCP report(s) sent as JSON (not packets) are left out of the pcap"
                );
            }
        }
        SearchFormat::Ladder => {
            let arrows: Vec<Arrow> = found.iter().map(arrow).collect();
            let style = LadderStyle {
                color: match args.color {
                    ColorWhen::Always => true,
                    ColorWhen::Never => false,
                    ColorWhen::Auto => ladder::color_for(dest.is_terminal),
                },
                ascii: args.ascii,
            };
            let mut out = BufWriter::with_capacity(256 * 1024, dest.out);
            if !found.is_empty() || peers.calls.is_empty() {
                ladder::render_named(&arrows, &style, &aliases, &mut out)?;
            }
            // One call asked for, and found: its KPIs and QoS under its ladder.
            if let (Some(id), false) = (&args.call_id, found.is_empty()) {
                CallQuality::of(id, &found, crate::time::now_usec(), &kpi).write_text(&mut out)?;
            }
            // Each peer's call as its node draws it (its aliases, without colors).
            for call in &peers.calls {
                writeln!(
                    out,
                    "\n== call {} on {} ({}) ==",
                    call.call_id, call.node, call.peer
                )?;
                out.write_all(&call.body)?;
            }
            out.flush()?;
        }
    }
    Ok(SearchSummary {
        messages: found.len(),
        peer_calls: peers.calls.len(),
        unanswered: peers.unanswered,
    })
}

/// A writer into a shared buffer (taken back once its writer is dropped).
struct SharedVec(Arc<Mutex<Vec<u8>>>);

impl Write for SharedVec {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The arrow of a stored message; a HEPv1 message, without a capture time, is drawn at
/// its receive time.
fn arrow(s: &Stored) -> Arrow {
    let mut a = ladder::arrow_of(&s.message);
    if s.message.ts_sec.is_none() {
        a.ts_usec = s.ts_usec;
    }
    a
}

/// The receive time, for messages without a capture time (HEPv1).
fn received_at(s: &Stored) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(s.recv_ts_usec).unwrap_or(0))
}
