//! The command line (DESIGN.md, "External interfaces"), parsed with clap.
//!
//! ```text
//! hep-server                       run on embedded defaults
//! hep-server run [--config FILE] [--listen SPEC]... [--output SPEC]... [--metrics ADDR]
//! hep-server check-config --config FILE
//! hep-server decode [--format json|text] FILE...
//! hep-server send --dest SPEC [--hep-version 1|2|3] [--proto-type N|sip|log|...]
//!                 [--src IP:PORT] [--dst IP:PORT] [--capture-id N] [--auth-key K]
//!                 [--correlation-id ID] [--count N] [--rate R] [FILE|-]...
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

use clap::{Args, Parser, Subcommand, ValueEnum};
use hep_proto::{HepVersion, ProtoType};
use hep_transport::ListenSpec;

/// `hep-server`: receives, checks, routes, stores and relays HEP (Homer Encapsulation
/// Protocol) traffic.
#[derive(Debug, Clone, Parser)]
#[command(name = "hep-server", version, about, long_about = None)]
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
}

/// `hep-server run`.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Config file (TOML); without it the embedded defaults apply.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where to listen: `hep_udp:IP[:PORT]`, `hep_tcp:IP[:PORT]` or `hep_tls:IP[:PORT]`
    /// (port 5656 when omitted); repeatable, replaces the config's listeners.
    #[arg(long = "listen", value_name = "SPEC")]
    pub listen: Vec<ListenSpec>,
    /// Where messages go: `stdout`, `json:PATH|-`, `pcap:PATH`,
    /// `relay:hep_udp|hep_tcp|hep_tls:HOST:PORT[;version=N]` or `null`; repeatable.
    #[arg(long = "output", value_name = "SPEC")]
    pub output: Vec<String>,
    /// Serve Prometheus metrics at `http://ADDR/metrics`.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
}

/// `hep-server check-config`.
#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// The config file to check.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// `hep-server decode`.
#[derive(Debug, Clone, Args)]
pub struct DecodeArgs {
    /// Output format: one JSON record per line, or one human-readable line.
    #[arg(long, value_enum, default_value_t = DecodeFormat::Json)]
    pub format: DecodeFormat,
    /// Files to decode: raw HEP datagrams (v1, v2, v3), HEP3 stream captures, or
    /// pcap/pcapng files of HEP over UDP or TCP.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// The output format of `decode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
#[non_exhaustive]
pub enum DecodeFormat {
    /// The JSON record of DESIGN.md, one object per line.
    #[default]
    Json,
    /// One human-readable line per message.
    Text,
}

/// `hep-server send`.
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Destination: `hep_udp|hep_tcp|hep_tls:HOST:PORT` (or the OpenSIPS `hep_id` form
    /// `host[:port];transport=udp|tcp|tls;version=1|2|3`).
    #[arg(long, value_name = "SPEC")]
    pub dest: String,
    /// HEP version to encode.
    #[arg(long, value_name = "1|2|3", default_value = "3", value_parser = parse_hep_version)]
    pub hep_version: HepVersion,
    /// Protocol type: a number or a name (`sip`, `log`, `rtcp`, ...).
    #[arg(long, value_name = "N|NAME", default_value = "sip", value_parser = parse_proto_type)]
    pub proto_type: ProtoType,
    /// Source address written in the HEP header.
    #[arg(long, value_name = "IP:PORT")]
    pub src: Option<SocketAddr>,
    /// Destination address written in the HEP header.
    #[arg(long, value_name = "IP:PORT")]
    pub dst: Option<SocketAddr>,
    /// Capture agent id.
    #[arg(long, value_name = "N")]
    pub capture_id: Option<u32>,
    /// Authentication key (chunk 0x000e).
    #[arg(long, value_name = "K")]
    pub auth_key: Option<String>,
    /// Correlation id (chunk 0x0011).
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,
    /// How many times to send each payload.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub count: u64,
    /// Messages per second (default: as fast as possible).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Payload files, `-` for stdin (the default when none are given).
    #[arg(value_name = "FILE|-")]
    pub files: Vec<PathBuf>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
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
            "--count",
            "10",
            "--rate",
            "5.5",
            "a.sip",
            "-",
        ])
        .unwrap();
        let Some(Command::Send(args)) = cli.command else {
            panic!("not send")
        };
        assert_eq!(args.hep_version, HepVersion::V2);
        assert_eq!(args.proto_type, ProtoType::Log);
        assert_eq!((args.count, args.rate), (10, Some(5.5)));
        assert_eq!(args.files.len(), 2);
        let err = Cli::try_parse_from(["hep-server", "send", "--dest", "x", "--hep-version", "4"])
            .unwrap_err();
        assert!(err.to_string().contains("expected 1, 2 or 3"), "{err}");
    }

    #[test]
    fn decode_needs_a_file() {
        assert!(Cli::try_parse_from(["hep-server", "decode"]).is_err());
        assert!(Cli::try_parse_from(["hep-server", "decode", "--format", "xml", "f"]).is_err());
    }
}
