//! `hep-server`: the HEP collector, as a library and a thin binary.
//!
//! The binary (`src/main.rs`) parses the command line, sets up logging to stderr and
//! calls into this library, which the tests reuse too.
//!
//! # Layout
//!
//! The tree follows a message. What the operator wrote becomes a
//! [`Config`](config::Config); the [`server`] binds the listeners, which hand every
//! message to the callback stack built from the configuration (`callbacks`), whose last
//! service is the fan-out to the [`outputs`]; one output is the [`store`], which the
//! readers ([`commands::search`], the HTTP API [`http`]) query.
//!
//! ```text
//!  config/ ─> server/: listeners ─> callbacks.rs ─> outputs/: fanout, a queue each
//!                                                     ├─> store:  ─> store/ <─ commands/search.rs, http/
//!                                                     ├─> relay:  (outputs/relay/, its spool/)
//!                                                     ├─> nats:   (a cluster's edge, nats/)
//!                                                     ├─> stdout, json:, pcap: ─> formats/
//!                                                     └─> null
//! ```
//!
//! - [`config`]: the TOML file, one module per section; listen and output specs parsed
//!   once, with the text they were written as.
//! - [`server`]: a run: listeners -> callbacks -> outputs until shutdown (a tree of
//!   cancellation tokens); reloads (SIGHUP) of the callbacks and outputs through a
//!   [`Switch`](server::switch::Switch); the exit [`Summary`](server::Summary).
//! - `callbacks` (private): the callback stack of `[auth]`, `[filter]`, ... and the relay
//!   loop check, rebuilt by a reload.
//! - [`outputs`]: where messages go: the fan-out, each output's bounded queue and its
//!   counters, one module per kind (`stdout`, `json:`, `pcap:`, `store:`, `null`,
//!   [`relay`](outputs::relay) with its disk spool and its mark).
//! - [`nats`]: a cluster on NATS JetStream: the specs, the message on the stream (its
//!   partition and key) and the stream, shared by the edge (`outputs`' `nats:`) and the
//!   consumer (`inputs`, private: an input beside the listeners, acknowledging what the
//!   outputs have).
//! - [`store`]: the embedded capture store (SQLite partitions): open, write a batch, what
//!   was written, search. It knows neither the outputs nor the configuration file.
//! - [`formats`]: how a message is written out or read back: the HEP bytes it goes on as
//!   (relays, the store), the JSON record, the text line, the ladder diagram, pcap files
//!   written, capture files read.
//! - [`http`]: the HTTP API and the page (`[http]`, `--http`): a reader of the store
//!   beside `search`, on hyper and axum, with its limits, tokens and JSON errors.
//! - [`cluster`]: search across the cluster (`[cluster] peers`): one GET to each peer at
//!   once, each within its deadline, what did not answer named; pages of calls merged.
//! - [`telemetry`]: Prometheus metrics, the drop warnings, logging, and the counters of
//!   the listeners and callbacks.
//! - [`commands`]: the subcommands other than `run` (`decode`, `search`, `send`);
//!   [`cli`] is the command line (clap).
//! - [`aliases`]: names for addresses (`[aliases]`), most specific entry first; the
//!   ladders' column names (and the KPI targets to come). It imports no other module.
//! - [`kpi`]: SIP KPIs from the live feed (a per-call state machine, `hep_sip_*`
//!   metrics) and of one stored call ([`kpi::call`]); [`qos`]: media quality from RTCP,
//!   RTCP-XR and `X-RTP-Stat` (pure parsers, the E-model, a call's streams);
//!   [`call_quality`]: both for a stored call, the one path of the API, the page and
//!   `search`'s ladder.
//! - [`time`]: UTC timestamps without a date-time dependency; `sync` (locks that survive
//!   a panic) and `read` (a fixed-size record read whole) are private helpers.
#![doc(test(attr(deny(warnings))))]

pub mod aliases;
pub mod call_quality;
mod callbacks;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
mod durable;
pub mod formats;
pub mod http;
mod inputs;
pub mod kpi;
pub mod nats;
pub mod outputs;
pub mod qos;
mod read;
pub mod server;
pub mod store;
mod sync;
pub mod telemetry;
#[cfg(test)]
mod testing;
pub mod time;
