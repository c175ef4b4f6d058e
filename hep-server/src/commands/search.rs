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

use std::io::{self, BufWriter, Write};
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

/// What a search found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchSummary {
    /// Messages written.
    pub messages: usize,
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
    match args.format {
        SearchFormat::Json => {
            let mut out = BufWriter::with_capacity(256 * 1024, dest.out);
            for s in &found {
                write_json_line(&mut out, &s.message, s.recv.as_ref())?;
            }
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
            ladder::render_named(&arrows, &style, &aliases, &mut out)?;
            // One call asked for, and found: its KPIs and QoS under its ladder.
            if let (Some(id), false) = (&args.call_id, found.is_empty()) {
                CallQuality::of(id, &found, crate::time::now_usec()).write_text(&mut out)?;
            }
            out.flush()?;
        }
    }
    Ok(SearchSummary {
        messages: found.len(),
    })
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
