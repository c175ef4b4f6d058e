//! `hep-server`: the HEP collector, as a library and a thin binary.
//!
//! The binary (`src/main.rs`) parses the command line, sets up logging to stderr and
//! calls into this library, which the collector's other parts and the tests reuse:
//! the JSON record and the text line every output writes, the SIP summary filters and
//! the store index by, and the capture-file reader behind `decode`.
//!
//! # Layout
//! - [`cli`]: the command line of DESIGN.md (clap): `run`, `check-config`, `decode`,
//!   `send`; no subcommand means `run` with defaults.
//! - [`commands`]: one module per implemented subcommand ([`commands::decode`]).
//! - [`capture_file`]: HEP messages out of files: raw datagrams, HEP3 stream captures,
//!   pcap/pcapng (Ethernet, Linux cooked, raw IP, loopback; IPv4/IPv6; UDP, and TCP
//!   reassembled), with receive info from the packet headers.
//! - [`config`]: the TOML configuration file with the seed's parameter names.
//! - [`log`]: logging set-up (`[log]`), and the program's own lines (`hep-server: ...`),
//!   JSON in JSON mode.
//! - [`drops`]: every drop logged at `warn`, by reason, rate-limited; the summary's list
//!   by reason.
//! - [`metrics`]: Prometheus text at `/metrics`, gathered from every counter.
//! - [`output`]: where messages go (`stdout`, `json:`, `pcap:`, `relay:`, `null`).
//! - [`server`]: the collector: listeners -> callback stack -> outputs, until shutdown;
//!   reloads (SIGHUP) of the callbacks and outputs.
//! - [`switch`]: the service listeners hold, whose stack a reload replaces.
//! - [`store`]: the embedded capture store (`store:DIR`, SQLite partitions) and its
//!   search.
//! - [`stats`]: the counters as metrics, and the summary line printed at exit.
//! - [`record`]: the JSON record of a message ([`record::write_json_line`]).
//! - [`relay_mark`]: the chunk relays add to what they forward, and the check that drops
//!   a message that comes back (relay loops).
//! - [`text`]: the one-line human-readable form ([`text::TextLine`]).
//! - [`ladder`]: a call flow as a ladder diagram in the terminal (`search`).
//! - [`time`]: UTC ISO-8601 timestamps without a date-time dependency.
#![doc(test(attr(deny(warnings))))]

mod callbacks;
pub mod capture_file;
pub mod cli;
pub mod commands;
pub mod config;
pub mod drops;
pub mod fd_limit;
pub mod ladder;
pub mod log;
pub mod metrics;
pub mod output;
mod read;
pub mod record;
pub mod relay_mark;
pub mod server;
pub mod stats;
pub mod store;
pub mod switch;
pub mod text;
pub mod time;
