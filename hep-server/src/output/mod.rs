//! Where received messages go: one module per output kind.
//!
//! Output specs (DESIGN.md): `stdout`, `json:PATH|-`, `pcap:PATH`,
//! `relay:hep_udp|hep_tcp|hep_tls:HOST:PORT[;version=N]`, `null`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use hep_transport::HepDestination;

pub mod fanout;
pub mod pcap;
pub(crate) mod set;
pub(crate) mod writer;

/// A parsed output spec.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputSpec {
    /// One human-readable line per message on standard output.
    Stdout,
    /// JSON lines to a file, or to standard output for `-`.
    Json(Option<PathBuf>),
    /// A pcap file of the captured packets, rebuilt from the HEP headers.
    Pcap(PathBuf),
    /// Forward the HEP messages to another collector.
    Relay(HepDestination),
    /// Count and discard (for benchmarks).
    Null,
}

/// An output spec that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid output spec `{input}`: {reason}")]
pub struct OutputSpecError {
    input: String,
    reason: String,
}

impl FromStr for OutputSpec {
    type Err = OutputSpecError;

    fn from_str(s: &str) -> Result<Self, OutputSpecError> {
        let err = |reason: &str| OutputSpecError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        match (kind, arg) {
            ("stdout", None) => Ok(Self::Stdout),
            ("null", None) => Ok(Self::Null),
            ("json", Some("-")) => Ok(Self::Json(None)),
            ("json" | "pcap", Some("")) | ("json" | "pcap", None) => {
                Err(err("expected a file path after the colon"))
            }
            ("json", Some(p)) => Ok(Self::Json(Some(PathBuf::from(p)))),
            ("pcap", Some(p)) => Ok(Self::Pcap(PathBuf::from(p))),
            ("relay", Some(dest)) => dest
                .parse()
                .map(Self::Relay)
                .map_err(|e: hep_transport::SpecError| err(&e.to_string())),
            _ => Err(err(
                "expected stdout, json:PATH|-, pcap:PATH, relay:hep_udp|hep_tcp|hep_tls:HOST:PORT[;version=N] or null",
            )),
        }
    }
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdout => f.write_str("stdout"),
            Self::Null => f.write_str("null"),
            Self::Json(None) => f.write_str("json:-"),
            Self::Json(Some(p)) => write!(f, "json:{}", p.display()),
            Self::Pcap(p) => write!(f, "pcap:{}", p.display()),
            Self::Relay(d) => write!(f, "relay:{d}"),
        }
    }
}
