//! The command line, parsed with clap.
//!
//! ```text
//! hep-server                       run on embedded defaults (store in ./hep-store)
//! hep-server run [--config FILE] [--listen SPEC]... [--output SPEC]... [--metrics ADDR]
//!                [--http ADDR|off]
//! hep-server check-config [--config FILE] [--listen SPEC]... [--output SPEC]... [--metrics ADDR]
//!                         [--http ADDR|off]
//! hep-server decode [--format json|text] FILE|-...
//! hep-server send --dest SPEC [--hep-version 1|2|3] [--proto-type N|sip|log|...]
//!                 [--src IP:PORT] [--dst IP:PORT] [--capture-id N] [--auth-key K]
//!                 [--correlation-id ID] [--count N] [--rate R] [FILE|-]...
//! hep-server search [--config FILE] [--store DIR] [--call-id ID] [--user U] [--method M]
//!                   [--node NAME] [--text TEXT] [--since T] [--until T] [--limit N]
//!                   [--format ladder|json|pcap] [--output FILE]
//!                   [--color auto|always|never] [--ascii]
//! ```
//!
//! ```
//! use clap::Parser as _;
//! use hep_server::cli::{Cli, Command, DecodeFormat};
//!
//! let cli = Cli::try_parse_from(["hep-server", "decode", "--format", "text", "a.pcap"]).unwrap();
//! let Some(Command::Decode(args)) = cli.command else { panic!() };
//! assert_eq!(args.format, DecodeFormat::Text);
//!
//! // No subcommand: `run` with defaults.
//! let cli = Cli::try_parse_from(["hep-server"]).unwrap();
//! assert!(matches!(cli.command_or_default(), Command::Run(_)));
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hep_proto::{HepVersion, ProtoType};
use hep_transport::{HepDestination, ListenOn, SpecError};

use crate::config::{Config, MetricsConfig, Written};
use crate::nats::NatsInputSpec;
use crate::outputs::OutputSpec;

/// What `hep-server --version` prints after the name: the package version and the git
/// commit it was built from (`0.1.0 (git 0123456789ab)`), or the package version alone
/// when built from files without their history.
pub const VERSION: &str = env!("HEP_SERVER_VERSION");

/// `hep-server`: receives, checks, routes, stores and relays HEP (Homer Encapsulation
/// Protocol) traffic.
#[derive(Debug, Clone, Parser)]
#[command(name = "hep-server", version = VERSION, about, long_about = None)]
pub struct Cli {
    /// What to do; without a subcommand the collector runs on its embedded defaults.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The subcommand given, or `run` with defaults when none was.
    pub fn command_or_default(self) -> Command {
        self.command
            .unwrap_or_else(|| Command::Run(RunArgs::default()))
    }
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only complicate matching"
)]
pub enum Command {
    /// Run the collector.
    Run(RunArgs),
    /// Validate a config file and print the effective config.
    CheckConfig(CheckConfigArgs),
    /// Decode HEP datagram files, HEP3 stream captures or pcap/pcapng files of HEP
    /// traffic: one record per HEP message on stdout.
    Decode(DecodeArgs),
    /// Pack payloads as HEP and send them (a capture agent, and a load generator).
    Send(SendArgs),
    /// Find messages in a store (`store:DIR`) and show them as a call flow, JSON records
    /// or pcap.
    Search(SearchArgs),
    /// Write the man pages and the shell completions made from these definitions (what
    /// `cargo xtask package` ships).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// `hep-server generate`.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Where to write them: `hep-server.1` and a page per subcommand
    /// (`hep-server-run.1` ...), `hep-server.bash`, `_hep-server` (zsh) and
    /// `hep-server.fish`.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

/// `hep-server search`.
#[derive(Debug, Clone, Args)]
#[command(after_long_help = SEARCH_LONG_HELP)]
pub struct SearchArgs {
    /// The collector's config file: its `[aliases]` name the ladder's columns, and its
    /// first `store:DIR` output is the store (unless --store is given) [env:
    /// HEP_SERVER_CONFIG, as `run`].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The store directory (what `store:DIR` of `run` names; default: the config's, or
    /// `hep-store`).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Messages of this call, with the other legs linked by correlation id or X-CID.
    #[arg(long, value_name = "ID")]
    pub call_id: Option<String>,
    /// Messages whose From or To user is U.
    #[arg(long, value_name = "U")]
    pub user: Option<String>,
    /// Requests of method M and their responses (`invite`), or responses with status M
    /// (`486`).
    #[arg(long, value_name = "M")]
    pub method: Option<String>,
    /// Messages of the HEP node NAME (chunk 0x0013, the agent's node name), exactly.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The calls one of whose SIP messages holds TEXT (start line, headers, body; ASCII
    /// letters without case). Costly: it reads the messages the other filters match,
    /// newest first, at most 50,000 (see below).
    #[arg(long, value_name = "TEXT", value_parser = parse_text)]
    pub text: Option<String>,
    /// Captured at or after T: Unix seconds, RFC 3339 (`2026-11-26T05:21:49Z`), a date,
    /// or a span ago (`-15m`, `2h`, `1d`).
    // Hyphen values: `-1h` is a time, not a flag.
    #[arg(long, value_name = "T", value_parser = parse_time, allow_hyphen_values = true)]
    pub since: Option<i64>,
    /// Captured before T (same forms as --since).
    #[arg(long, value_name = "T", value_parser = parse_time, allow_hyphen_values = true)]
    pub until: Option<i64>,
    /// At most N matching messages, the newest (a call's other legs come in addition).
    #[arg(long, value_name = "N", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// How to show them: a call flow diagram, JSON records, or pcap for Wireshark.
    #[arg(long, value_enum, default_value_t = SearchFormat::Ladder)]
    pub format: SearchFormat,
    /// Write to FILE instead of standard output (pcap needs it on a terminal).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Colors in the ladder: when stdout is a terminal (`auto`), `always` or `never`.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
    /// Draw the ladder with ASCII characters only (terminals without UTF-8).
    #[arg(long)]
    pub ascii: bool,
    /// Also search this node's HTTP API, `http://HOST:PORT` (repeat for several):
    /// instead of the config's `[cluster] peers` (its token and timeout_ms still apply).
    #[arg(long = "peer", value_name = "URL", value_parser = parse_peer)]
    pub peers: Vec<crate::cluster::Peer>,
    /// Search this node's store only, whatever `[cluster] peers` says.
    #[arg(long, conflicts_with = "peers")]
    pub local: bool,
}

fn parse_peer(s: &str) -> Result<crate::cluster::Peer, String> {
    s.parse()
}

impl SearchArgs {
    /// These flags, with `--config` taken from `HEP_SERVER_CONFIG` (as `lookup` finds
    /// it) when not given, so that `search` in a container or a shell set up for `run`
    /// reads the collector's store and aliases. An empty variable counts as unset.
    ///
    /// ```
    /// use clap::Parser as _;
    /// use hep_server::cli::{Cli, Command};
    ///
    /// let Some(Command::Search(args)) = Cli::parse_from(["hep-server", "search"]).command
    /// else { unreachable!() };
    /// let env = |name: &str| (name == "HEP_SERVER_CONFIG").then(|| "/etc/hep.toml".into());
    /// assert_eq!(args.with_env(env).config, Some("/etc/hep.toml".into()));
    /// ```
    #[must_use]
    pub fn with_env(mut self, lookup: impl Fn(&str) -> Option<std::ffi::OsString>) -> Self {
        if self.config.is_none() {
            self.config = lookup(RUN_ENV[0])
                .filter(|v| !v.is_empty())
                .map(PathBuf::from);
        }
        self
    }
}

const SEARCH_LONG_HELP: &str = "\
Every filter given must match. Without --call-id, --user, --method or a time, the newest
--limit messages are shown. Results are in capture time order. Exit status: 0 when
something matched, 1 when nothing did (or on an error), 2 on a usage error, 3 when a
peer did not answer (see below).

--text is not indexed: it reads the messages every other filter matches (time window,
Call-ID, user, method, node), newest first, and looks for TEXT in each. It reads at most
50,000 messages and collects at most 10,000 calls; when it stops there before the
candidates end, it says so on standard error (`--text read N messages ... and
stopped`): older calls may hold the text too, so narrow --since/--until or add a filter.
TEXT is 1 to 256 bytes.

--node finds nothing among messages stored by a hep-server before schema version 6
(which kept no node name).

Across the cluster: with --config naming [cluster] peers, or --peer URL, the peers' HTTP
APIs are asked too, at once, with the same filters: with --call-id, the call from the
first peer that holds it when this node does not; else the calls each peer lists (at
most --limit, 1000 at most, within the last 24 hours without --since), each whole from
its node. This node's messages come first, then each peer's calls (pcap: all packets in
capture time order). A peer that does not answer within [cluster] timeout_ms is named on
standard error, and the exit status is then 3, whatever matched. --local asks no peer.";

fn parse_text(s: &str) -> Result<String, String> {
    let max = crate::store::text::MAX_TEXT_BYTES;
    if s.is_empty() || s.len() > max {
        return Err(format!("expected 1 to {max} bytes, found {}", s.len()));
    }
    Ok(s.to_owned())
}

/// The output format of `search`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
#[non_exhaustive]
pub enum SearchFormat {
    /// The call flow: one column per address:port, an arrow per message.
    #[default]
    Ladder,
    /// One JSON record per message and line, as `json:` outputs and `decode` write.
    Json,
    /// A pcap file of the messages rebuilt as packets.
    Pcap,
}

/// When to use colors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
#[non_exhaustive]
pub enum ColorWhen {
    /// When writing to a terminal.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

fn parse_time(s: &str) -> Result<i64, String> {
    crate::time::parse_instant(s, crate::time::now_usec())
}

/// `hep-server run`.
///
/// Each flag can also be given by an environment variable (its name below, and in
/// `docs/CONFIG.md`), for containers: the file's values are replaced by the
/// environment's, and those by the flags' (file < environment < flags); see
/// [`with_env`](Self::with_env) and [`apply`](Self::apply).
#[derive(Debug, Clone, Default, Args)]
#[command(after_long_help = RUN_LONG_HELP)]
pub struct RunArgs {
    /// Config file (TOML), read again on SIGHUP to reload the outputs and callbacks;
    /// without it the embedded defaults apply [env: HEP_SERVER_CONFIG].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where to listen: `hep_udp:IP[:PORT]`, `hep_tcp:IP[:PORT]` or `hep_tls:IP[:PORT]`
    /// (port 5656 when omitted), optionally `;allow=NET,...` (the agents' networks it
    /// accepts); repeatable, replaces the config's listeners [env: HEP_SERVER_LISTEN,
    /// specs separated by spaces].
    #[arg(long = "listen", value_name = "SPEC")]
    pub listen: Vec<ListenOn>,
    /// Where messages go: `store:DIR` (default: `store:hep-store`), `stdout`,
    /// `json:PATH|-`, `pcap:PATH`, `relay:hep_udp|hep_tcp|hep_tls:HOST[:PORT][;version=N]`
    /// (port 5656 when omitted) or `null`; repeatable, replaces the config's outputs
    /// [env: HEP_SERVER_OUTPUT, specs separated by spaces].
    #[arg(long = "output", value_name = "SPEC")]
    pub output: Vec<String>,
    /// Read a cluster's stream: `nats:URL[,URL...][;stream=HEP][;subject=hep]
    /// [;partitions=A-B]` (a consumer; docs/SCALE-OUT.md); repeatable, replaces the
    /// config's inputs. Without `--listen` or a `listen` in the file, a node with inputs
    /// has no listeners.
    #[arg(long = "input", value_name = "SPEC")]
    pub input: Vec<String>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` [env: HEP_SERVER_METRICS].
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Serve the web page and HTTP API at `http://ADDR/` (default `127.0.0.1:9080`, or
    /// the config's `[http] listen`), or `off` [env: HEP_SERVER_HTTP].
    #[arg(long, value_name = "ADDR|off")]
    pub http: Option<HttpListen>,
}

const RUN_LONG_HELP: &str = "\
Every flag has an environment variable: HEP_SERVER_CONFIG, HEP_SERVER_LISTEN,
HEP_SERVER_OUTPUT, HEP_SERVER_METRICS, HEP_SERVER_HTTP (lists separated by spaces). A
flag given replaces its variable, and both replace the file's keys: file < environment
< flags. An empty variable counts as unset. SIGHUP reads the file again and applies the
same environment and flags over it.";

/// The environment variables of `run`'s flags, in the order of the flags.
pub const RUN_ENV: [&str; 5] = [
    "HEP_SERVER_CONFIG",
    "HEP_SERVER_LISTEN",
    "HEP_SERVER_OUTPUT",
    "HEP_SERVER_METRICS",
    "HEP_SERVER_HTTP",
];

/// A `HEP_SERVER_...` variable whose value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {name}={value:?}: {reason}")]
pub struct EnvError {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl RunArgs {
    /// These flags, with the ones not given taken from `HEP_SERVER_...` variables as
    /// `lookup` (e.g. `|name| std::env::var_os(name)`) finds them: a flag given wins over
    /// its variable. Empty variables count as unset.
    ///
    /// ```
    /// use hep_server::cli::RunArgs;
    ///
    /// let env = |name: &str| (name == "HEP_SERVER_METRICS").then(|| "127.0.0.1:9100".into());
    /// let args = RunArgs::default().with_env(env)?;
    /// assert_eq!(args.metrics, Some("127.0.0.1:9100".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The first variable whose value does not parse, naming it.
    pub fn with_env(
        mut self,
        lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, EnvError> {
        let [config, listen, output, metrics, http] = RUN_ENV;
        let var = |name: &'static str| -> Result<Option<String>, EnvError> {
            let Some(value) = lookup(name) else {
                return Ok(None);
            };
            let value = value.into_string().map_err(|v| EnvError {
                name,
                value: v.to_string_lossy().into_owned(),
                reason: "not UTF-8".to_owned(),
            })?;
            Ok(Some(value).filter(|v| !v.trim().is_empty()))
        };
        let parse_err = |name, value: &str, reason: String| EnvError {
            name,
            value: value.to_owned(),
            reason,
        };
        if self.config.is_none() {
            self.config = var(config)?.map(PathBuf::from);
        }
        if self.listen.is_empty()
            && let Some(v) = var(listen)?
        {
            self.listen = v
                .split_whitespace()
                .map(|spec| {
                    spec.parse::<ListenOn>()
                        .map_err(|e| parse_err(listen, &v, format!("`{spec}`: {e}")))
                })
                .collect::<Result<_, _>>()?;
        }
        if self.output.is_empty()
            && let Some(v) = var(output)?
        {
            // Checked where the flags are: against the file's `hep_port` (`apply`).
            self.output = v.split_whitespace().map(str::to_owned).collect();
        }
        if self.metrics.is_none()
            && let Some(v) = var(metrics)?
        {
            let addr = v.trim().parse().map_err(|_| {
                parse_err(
                    metrics,
                    &v,
                    "expected IP:PORT, e.g. 127.0.0.1:9096".to_owned(),
                )
            })?;
            self.metrics = Some(addr);
        }
        if self.http.is_none()
            && let Some(v) = var(http)?
        {
            self.http = Some(v.trim().parse().map_err(|e| parse_err(http, &v, e))?);
        }
        Ok(self)
    }

    /// `config` with these flags' values in place of the file's: listeners, outputs, the
    /// metrics endpoint, the HTTP API.
    ///
    /// # Errors
    /// An output spec that does not parse.
    pub fn apply(&self, mut config: Config) -> anyhow::Result<Config> {
        if !self.listen.is_empty() {
            config.listen = self.listen.iter().cloned().map(Written::from).collect();
        }
        if !self.output.is_empty() {
            // A relay without a port takes the file's `hep_port`, as in the file.
            config.outputs = self
                .output
                .iter()
                .map(|o| {
                    Written::parse(o, |o| {
                        OutputSpec::parse_with_default_port(o, config.hep_port)
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if !self.input.is_empty() {
            config.inputs = self
                .input
                .iter()
                .map(|i| Written::parse(i, NatsInputSpec::parse))
                .collect::<Result<_, _>>()?;
            // A consumer listens only where it is told to.
            if self.listen.is_empty()
                && config.listen == crate::config::default_listen(config.hep_port)
            {
                config.listen.clear();
            }
        }
        if let Some(addr) = self.metrics {
            config.metrics = Some(MetricsConfig { listen: addr });
        }
        match self.http {
            Some(HttpListen::Off) => config.http.enabled = false,
            Some(HttpListen::On(addr)) => {
                config.http.enabled = true;
                config.http.listen = addr;
            }
            None => {}
        }
        Ok(config)
    }
}

/// `--http`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpListen {
    /// No HTTP listener.
    Off,
    /// Listen on this address.
    On(SocketAddr),
}

impl FromStr for HttpListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(Self::Off);
        }
        s.parse()
            .map(Self::On)
            .map_err(|_| format!("`{s}`: expected IP:PORT (e.g. 127.0.0.1:9080), or `off`"))
    }
}

/// `hep-server check-config`: the configuration `run` would use with the same flags
/// and environment.
#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// The config file, and `run`'s flags to apply over it (and their
    /// `HEP_SERVER_...` variables).
    #[command(flatten)]
    pub run: RunArgs,
}

/// `hep-server decode`.
#[derive(Debug, Clone, Args)]
pub struct DecodeArgs {
    /// Output format: one JSON record per line, or one human-readable line.
    #[arg(long, value_enum, default_value_t = DecodeFormat::Json)]
    pub format: DecodeFormat,
    /// Files to decode: raw HEP datagrams (v1, v2, v3), HEP3 stream captures, or
    /// pcap/pcapng files of HEP over UDP or TCP; `-` reads standard input.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// The output format of `decode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
#[non_exhaustive]
pub enum DecodeFormat {
    /// One JSON record per message and line, as `json:` outputs write (its keys are
    /// listed in the docs of `hep_server::formats::record`).
    #[default]
    Json,
    /// One human-readable line per message.
    Text,
}

/// `hep-server send`: see [`commands::send`](crate::commands::send) for the semantics.
#[derive(Debug, Clone, Args)]
#[command(after_long_help = SEND_LONG_HELP)]
pub struct SendArgs {
    /// Destination: `hep_udp|hep_tcp|hep_tls:HOST[:PORT][;version=N]`, or the OpenSIPS
    /// `hep_id` form `[name] host[:port]; transport=udp|tcp|tls; version=1|2|3`. Without a
    /// port: 5656, where `run` listens by default (most collectors listen on 9060).
    #[arg(long, value_name = "SPEC")]
    pub dest: SendDestination,
    /// HEP version to encode [default: the destination's `version=N`, else 3]. Overrides a
    /// destination without `version=`; differing from an explicit one is an error. TCP and
    /// TLS carry HEPv3 only.
    #[arg(long, value_name = "1|2|3", value_parser = parse_hep_version)]
    pub hep_version: Option<HepVersion>,
    /// Protocol type (chunk 0x000b, HEPv3 only): a number or a name (`sip`, `log`,
    /// `rtcp`, ...) [default: sip].
    #[arg(long, value_name = "N|NAME", value_parser = parse_proto_type)]
    pub proto_type: Option<ProtoType>,
    /// IP protocol the payload was "captured" on: `udp`, `tcp`, `tls`, `ws`, `sctp` or a
    /// number.
    #[arg(long, value_name = "PROTO", default_value = "udp", value_parser = parse_ip_proto)]
    pub ip_proto: u8,
    /// Source address written in the HEP header [default: `127.0.0.1:5060`, or
    /// `[::1]:5060` when --dst is IPv6].
    #[arg(long, value_name = "IP:PORT")]
    pub src: Option<SocketAddr>,
    /// Destination address written in the HEP header [default: `127.0.0.2:5060`, or
    /// `[::2]:5060` when --src is IPv6].
    #[arg(long, value_name = "IP:PORT")]
    pub dst: Option<SocketAddr>,
    /// Capture agent id (the seed's `hep_capture_id`; 16 bits in HEPv2, absent in HEPv1)
    /// [default: 1].
    #[arg(long, value_name = "N")]
    pub capture_id: Option<u32>,
    /// Authentication key (chunk 0x000e, HEPv3 only).
    #[arg(long, value_name = "K")]
    pub auth_key: Option<String>,
    /// Correlation id (chunk 0x0011, HEPv3 only), e.g. a Call-ID.
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// Messages to send in total, cycling through the payloads in order [default: each
    /// payload once].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Messages per second, paced every millisecond [default: as fast as possible].
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// The seed's `hep_async`: 1 queues and writes in the background, 0 bounds each
    /// write by `hep_send_timeout` (100 ms).
    #[arg(long, value_name = "0|1", default_value = "1", value_parser = parse_bool01,
          action = clap::ArgAction::Set)]
    pub hep_async: bool,
    /// The seed's `hep_async_max_postponed_chunks`: messages pending per connection. The
    /// seed's 32 suits a proxy that must never wait; a load generator waits for room
    /// instead, and a deep queue keeps a fast TCP stream busy.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SEND_QUEUE, value_parser = parse_queue)]
    pub hep_async_max_postponed_chunks: usize,
    /// `hep_tls` destinations: trust the CA certificates in this PEM file (repeatable).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Vec<PathBuf>,
    /// `hep_tls` destinations: present this client certificate chain (PEM; mTLS).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// `hep_tls` destinations: the name to send (SNI) and verify, instead of the host.
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// TESTING ONLY: accept any server certificate (no chain, name or expiry check);
    /// anyone on the path can read and change the traffic.
    #[arg(long)]
    pub tls_insecure: bool,
    /// Payload files, each one message; `-` for stdin (the default when none are given).
    #[arg(value_name = "FILE|-")]
    pub files: Vec<PathBuf>,
}

/// The default `--hep-async-max-postponed-chunks` of `send` (the seed's default is 32).
pub const DEFAULT_SEND_QUEUE: usize = 65_536;

const SEND_LONG_HELP: &str = "\
Each FILE (or stdin for `-`, or stdin when no FILE is given) is one payload, packed as
HEP like OpenSIPS's pack_hep(src, dst, proto, payload). All payloads are packed once,
before sending, with the time of packing as their timestamp: every message of a run
carries the same time.

--count N sends N messages in total, cycling through the payloads in order. --rate R
paces them: every millisecond the messages due so far are sent as one batch (UDP: GSO
sends), catching up if late; without --rate they go as fast as the sender takes them.
The generator never overflows its own queue: when the connection's queue (or for UDP a
full socket buffer) has no room it waits, so a slow collector slows the run instead of
losing messages here.

At the end the queue is flushed (while it makes progress) and the connection closed and
checked: over TCP/TLS the receiver must answer the close with its own within 2 s, which
it does once it has read everything (a receiver that refuses the connection, e.g. an
allow= it does not pass or a missing client certificate, resets it instead); over UDP
no ICMP error (port unreachable) may come back within 200 ms. One line goes to stderr:
  sent N messages (B bytes) in T s: R msg/s; dropped D (reason: n, ...)
and when anything was not delivered, a second one saying how many and why:
  hep-server: send failed: N of M messages NOT delivered: ...
\"sent\" means handed to the kernel (TCP/TLS: written). HEP has no acknowledgement: a
message the receiver drops on a connection it keeps (auth key, filter), or a UDP
datagram it discards or the network loses, is not seen. Exit status: 0 if every
message was sent and confirmed, 1 if not (or on an error), 2 on a usage error.";

/// `--dest` of `send`: a [`HepDestination`], and whether the spec named a version.
///
/// ```
/// use hep_server::cli::SendDestination;
///
/// let d: SendDestination = "hep_udp:127.0.0.1:9060;version=2".parse()?;
/// assert!(d.version_given);
/// let d: SendDestination = "10.0.0.1; transport=udp".parse()?;
/// assert!(!d.version_given);
/// # Ok::<(), hep_transport::SpecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendDestination {
    /// The destination as parsed (version 3 unless the spec said otherwise).
    pub destination: HepDestination,
    /// Whether the spec had a `version=N` parameter.
    pub version_given: bool,
}

impl FromStr for SendDestination {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let destination = s.parse()?;
        // The parse succeeded, so every `;key=value` is `transport` or `version`.
        let version_given = s.split(';').skip(1).any(|p| {
            p.split_once('=')
                .is_some_and(|(k, _)| k.trim() == "version")
        });
        Ok(Self {
            destination,
            version_given,
        })
    }
}

fn parse_hep_version(s: &str) -> Result<HepVersion, String> {
    s.parse::<u8>()
        .ok()
        .and_then(HepVersion::from_number)
        .ok_or_else(|| format!("`{s}` is not a HEP version (expected 1, 2 or 3)"))
}

fn parse_proto_type(s: &str) -> Result<ProtoType, String> {
    ProtoType::parse(s).ok_or_else(|| {
        format!("`{s}` is not a protocol type (expected a number 0-255 or a name such as sip, log, rtcp)")
    })
}

fn parse_ip_proto(s: &str) -> Result<u8, String> {
    use hep_proto::ip_proto;
    let p = match s.to_ascii_lowercase().as_str() {
        "udp" => ip_proto::UDP,
        "tcp" => ip_proto::TCP,
        "tls" => ip_proto::TLS,
        "ws" => ip_proto::WS,
        "sctp" => ip_proto::SCTP,
        n => n.parse().map_err(|_| {
            format!(
                "`{s}` is not an IP protocol (expected udp, tcp, tls, ws, sctp or a number 0-255)"
            )
        })?,
    };
    Ok(p)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| {
            format!("`{s}` is not a rate (expected a number of messages per second above 0)")
        })
}

fn parse_queue(s: &str) -> Result<usize, String> {
    s.parse::<u32>()
        .ok()
        .filter(|&n| n >= 1)
        .map(|n| n as usize)
        .ok_or_else(|| format!("`{s}` is not a queue length (expected 1 to 4294967295)"))
}

fn parse_bool01(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("`{s}` is not a switch (expected 0 or 1)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// `run`'s flags as given, completed from `env` (name, value pairs).
    fn run_args(flags: &[&str], env: &[(&str, &str)]) -> Result<RunArgs, EnvError> {
        let argv = ["hep-server", "run"].iter().chain(flags).copied();
        let Command::Run(args) = Cli::try_parse_from(argv).unwrap().command_or_default() else {
            panic!("not run")
        };
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        args.with_env(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.into()))
    }

    fn listen_texts(c: &Config) -> Vec<&str> {
        c.listen.iter().map(Written::text).collect()
    }

    fn output_texts(c: &Config) -> Vec<&str> {
        c.outputs.iter().map(Written::text).collect()
    }

    #[test]
    fn the_environment_replaces_the_file_and_flags_replace_the_environment() {
        let file = Config::parse(
            std::path::Path::new("f.toml"),
            r#"
listen = ["hep_udp:127.0.0.1:7001"]
outputs = ["null"]
hep_port = 7777
[metrics]
listen = "127.0.0.1:7100"
[http]
listen = "127.0.0.1:7080"
"#,
        )
        .unwrap();
        // The file alone.
        let c = run_args(&[], &[]).unwrap().apply(file.clone()).unwrap();
        assert_eq!(listen_texts(&c), ["hep_udp:127.0.0.1:7001"]);
        assert_eq!(output_texts(&c), ["null"]);
        assert_eq!(c.metrics.as_ref().unwrap().listen.port(), 7100);
        assert_eq!(c.http.listen.port(), 7080);
        // The environment over the file: every variable.
        let env = [
            (
                "HEP_SERVER_LISTEN",
                "hep_udp:127.0.0.1:8001  hep_tcp:127.0.0.1:8001",
            ),
            ("HEP_SERVER_OUTPUT", "stdout relay:hep_udp:127.0.0.2"),
            ("HEP_SERVER_METRICS", "127.0.0.1:8100"),
            ("HEP_SERVER_HTTP", "off"),
        ];
        let c = run_args(&[], &env).unwrap().apply(file.clone()).unwrap();
        assert_eq!(
            listen_texts(&c),
            ["hep_udp:127.0.0.1:8001", "hep_tcp:127.0.0.1:8001"]
        );
        assert_eq!(output_texts(&c), ["stdout", "relay:hep_udp:127.0.0.2"]);
        assert_eq!(c.metrics.as_ref().unwrap().listen.port(), 8100);
        assert!(!c.http.enabled);
        // A relay from the environment without a port takes the file's hep_port.
        let relay = c.outputs[1].value();
        assert!(format!("{relay:?}").contains("7777"), "{relay:?}");
        // The flags over the environment, one by one: a flag replaces its variable only.
        let c = run_args(
            &[
                "--listen",
                "hep_tcp:127.0.0.1:9001",
                "--http",
                "127.0.0.1:9080",
            ],
            &env,
        )
        .unwrap()
        .apply(file.clone())
        .unwrap();
        assert_eq!(listen_texts(&c), ["hep_tcp:127.0.0.1:9001"]);
        assert!(c.http.enabled);
        assert_eq!(c.http.listen.port(), 9080);
        assert_eq!(
            output_texts(&c),
            ["stdout", "relay:hep_udp:127.0.0.2"],
            "from env"
        );
        assert_eq!(c.metrics.as_ref().unwrap().listen.port(), 8100, "from env");
        let c = run_args(&["--output", "null", "--metrics", "127.0.0.1:9100"], &env)
            .unwrap()
            .apply(file)
            .unwrap();
        assert_eq!(output_texts(&c), ["null"]);
        assert_eq!(c.metrics.as_ref().unwrap().listen.port(), 9100);
    }

    #[test]
    fn the_config_file_can_come_from_the_environment_and_empty_variables_are_unset() {
        let a = run_args(
            &[],
            &[("HEP_SERVER_CONFIG", "/etc/hep-server/hep-server.toml")],
        );
        assert_eq!(
            a.unwrap().config.unwrap(),
            PathBuf::from("/etc/hep-server/hep-server.toml")
        );
        let a = run_args(
            &["--config", "mine.toml"],
            &[("HEP_SERVER_CONFIG", "env.toml")],
        );
        assert_eq!(a.unwrap().config.unwrap(), PathBuf::from("mine.toml"));
        let a = run_args(
            &[],
            &[("HEP_SERVER_CONFIG", ""), ("HEP_SERVER_LISTEN", "  ")],
        )
        .unwrap();
        assert!(a.config.is_none() && a.listen.is_empty());
    }

    #[test]
    fn a_bad_variable_is_refused_naming_it_and_its_value() {
        let e = run_args(
            &[],
            &[("HEP_SERVER_LISTEN", "hep_udp:0.0.0.0:9060 udp:1.2.3.4")],
        )
        .unwrap_err();
        assert_eq!(e.name, "HEP_SERVER_LISTEN");
        let text = e.to_string();
        assert!(
            text.starts_with(
                "environment variable HEP_SERVER_LISTEN=\"hep_udp:0.0.0.0:9060 udp:1.2.3.4\": `udp:1.2.3.4`"
            ),
            "{text}"
        );
        let e = run_args(&[], &[("HEP_SERVER_METRICS", "9100")]).unwrap_err();
        assert!(e.to_string().contains("expected IP:PORT"), "{e}");
        let e = run_args(&[], &[("HEP_SERVER_HTTP", "on")]).unwrap_err();
        assert!(e.to_string().contains("or `off`"), "{e}");
        // A flag given: its variable is not read, bad or not.
        assert!(
            run_args(
                &["--metrics", "127.0.0.1:1"],
                &[("HEP_SERVER_METRICS", "x")]
            )
            .is_ok()
        );
        // An output spec is checked where the flags' are: by `apply`.
        let a = run_args(&[], &[("HEP_SERVER_OUTPUT", "nowhere:")]).unwrap();
        assert!(a.apply(Config::default()).is_err());
    }

    #[test]
    fn run_flags_parse() {
        let cli = Cli::try_parse_from([
            "hep-server",
            "run",
            "--listen",
            "hep_udp:0.0.0.0:9060",
            "--listen",
            "hep_tcp:[::]",
            "--output",
            "json:-",
            "--metrics",
            "127.0.0.1:9100",
        ])
        .unwrap();
        let Command::Run(args) = cli.command_or_default() else {
            panic!("not run")
        };
        assert_eq!(args.listen.len(), 2);
        assert_eq!(args.output, ["json:-"]);
        assert_eq!(args.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        assert!(Cli::try_parse_from(["hep-server", "run", "--listen", "udp:1.2.3.4"]).is_err());
    }

    #[test]
    fn send_flags_parse() {
        let cli = Cli::try_parse_from([
            "hep-server",
            "send",
            "--dest",
            "hep_udp:127.0.0.1:9060",
            "--hep-version",
            "2",
            "--proto-type",
            "log",
            "--ip-proto",
            "tcp",
            "--count",
            "10",
            "--rate",
            "5.5",
            "--hep-async",
            "0",
            "a.sip",
            "-",
        ])
        .unwrap();
        let Some(Command::Send(args)) = cli.command else {
            panic!("not send")
        };
        assert_eq!(args.hep_version, Some(HepVersion::V2));
        assert_eq!(args.proto_type, Some(ProtoType::Log));
        assert_eq!(args.ip_proto, hep_proto::ip_proto::TCP);
        assert_eq!((args.count, args.rate), (Some(10), Some(5.5)));
        assert!(!args.hep_async);
        assert!(!args.dest.version_given);
        assert_eq!(args.hep_async_max_postponed_chunks, DEFAULT_SEND_QUEUE);
        assert_eq!(args.files.len(), 2);
        let err = Cli::try_parse_from(["hep-server", "send", "--dest", "x", "--hep-version", "4"])
            .unwrap_err();
        assert!(err.to_string().contains("expected 1, 2 or 3"), "{err}");
        for bad in [
            ["--dest", "hep_udp:"],
            ["--rate", "0"],
            ["--count", "0"],
            ["--hep-async", "2"],
            ["--tls-cert", "c.pem"],
        ] {
            let mut argv = vec!["hep-server", "send", "--dest", "hep_udp:1.2.3.4"];
            if bad[0] == "--dest" {
                argv.truncate(2);
            }
            argv.extend(bad);
            assert!(Cli::try_parse_from(&argv).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn search_flags_parse() {
        let cli = Cli::try_parse_from([
            "hep-server",
            "search",
            "--call-id",
            "a@b",
            "--since",
            "2026-11-26T05:00:00Z",
            "--until",
            "1795670509",
            "--format",
            "json",
            "--limit",
            "5",
        ])
        .unwrap();
        let Some(Command::Search(args)) = cli.command else {
            panic!("not search")
        };
        assert_eq!(args.store, None);
        assert_eq!(args.call_id.as_deref(), Some("a@b"));
        assert_eq!(args.since, Some(1_795_669_200_000_000));
        assert_eq!(args.until, Some(1_795_670_509_000_000));
        assert_eq!((args.format, args.limit), (SearchFormat::Json, 5));
        let err = Cli::try_parse_from(["hep-server", "search", "--since", "yesterday"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RFC 3339"), "{err}");
        assert!(Cli::try_parse_from(["hep-server", "search", "--limit", "0"]).is_err());
    }

    #[test]
    fn a_time_ago_parses_as_written() {
        // README: `hep-server search --user alice --since -1h --format json`.
        let cli = Cli::try_parse_from([
            "hep-server",
            "search",
            "--user",
            "alice",
            "--since",
            "-1h",
            "--until",
            "-15m",
            "--format",
            "json",
        ])
        .unwrap();
        let Some(Command::Search(args)) = cli.command else {
            panic!("not search")
        };
        let (since, until) = (args.since.unwrap(), args.until.unwrap());
        // Each reads the clock itself: microseconds apart.
        let apart = until - since - 45 * 60 * 1_000_000;
        assert!((0..1_000_000).contains(&apart), "{since} {until}");
        assert_eq!(args.format, SearchFormat::Json);
        // A flag where the time should be is named in the error, not taken as a flag.
        let err = Cli::try_parse_from(["hep-server", "search", "--since", "--user"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`--user` is not a time"), "{err}");
    }

    #[test]
    fn search_help_states_the_text_searchs_bounds_as_the_store_has_them() {
        use crate::store::text::{MAX_TEXT_BYTES, MAX_TEXT_CALLS, MAX_TEXT_SCAN};
        let thousands = |n: usize| format!("{},{:03}", n / 1000, n % 1000);
        for (what, n) in [
            ("messages read", thousands(MAX_TEXT_SCAN)),
            ("calls", thousands(MAX_TEXT_CALLS)),
            ("bytes", format!("1 to {MAX_TEXT_BYTES} bytes")),
        ] {
            assert!(SEARCH_LONG_HELP.contains(&n), "{what}: {n}");
        }
        let long = "x".repeat(MAX_TEXT_BYTES + 1);
        assert!(Cli::try_parse_from(["hep-server", "search", "--text", &long]).is_err());
        let cli = Cli::try_parse_from(["hep-server", "search", "--node", "sbc-1", "--text", "A b"])
            .unwrap();
        let Some(Command::Search(args)) = cli.command else {
            panic!("not search")
        };
        assert_eq!(
            (args.node.as_deref(), args.text.as_deref()),
            (Some("sbc-1"), Some("A b"))
        );
    }

    #[test]
    fn decode_needs_a_file() {
        assert!(Cli::try_parse_from(["hep-server", "decode"]).is_err());
        assert!(Cli::try_parse_from(["hep-server", "decode", "--format", "xml", "f"]).is_err());
    }
}
