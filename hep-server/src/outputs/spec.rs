//! Output specs, as `outputs = [...]` and `--output` take them: `store:DIR` (the
//! default), `stdout`, `json:PATH|-`, `pcap:PATH`,
//! `relay:hep_udp|hep_tcp|hep_tls:HOST:PORT[;version=N][;spool=DIR]`, `null`, and a
//! cluster's edge `nats:URL[,URL...][;key=value...]` ([`NatsOutputSpec`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hep_transport::HepDestination;

use crate::nats::NatsOutputSpec;

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
    Relay {
        /// Where to.
        dest: HepDestination,
        /// The spool directory (`;spool=DIR`), if the relay spools to disk.
        spool: Option<PathBuf>,
    },
    /// Count and discard (for benchmarks).
    Null,
    /// The embedded capture store in this directory (`hep-server search` reads it).
    Store(PathBuf),
    /// A cluster's edge: every message published to a NATS JetStream stream.
    Nats(Box<NatsOutputSpec>),
}

/// An output spec that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid output spec `{input}`: {reason}")]
pub struct OutputSpecError {
    input: String,
    reason: String,
}

impl OutputSpec {
    /// The destination of a relay output.
    pub fn relay_destination(&self) -> Option<&HepDestination> {
        match self {
            Self::Relay { dest, .. } => Some(dest),
            _ => None,
        }
    }

    /// The file (`json:`, `pcap:`) or directory (`store:`, a relay's `spool=`) the output
    /// writes, which no other output may write too.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Json(Some(p))
            | Self::Pcap(p)
            | Self::Store(p)
            | Self::Relay { spool: Some(p), .. } => Some(p),
            Self::Nats(n) => n.spool.as_deref(),
            _ => None,
        }
    }
}

impl OutputSpec {
    /// Parses a spec; a relay destination without a port takes `default_port` (the
    /// config's `hep_port`; [`FromStr`] takes [`HEP_PORT`](hep_transport::HEP_PORT)).
    ///
    /// # Errors
    /// An [`OutputSpecError`] saying what was expected.
    pub fn parse_with_default_port(s: &str, default_port: u16) -> Result<Self, OutputSpecError> {
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
            ("store", Some("")) | ("store", None) => {
                Err(err("expected a directory after the colon"))
            }
            ("store", Some(p)) => Ok(Self::Store(PathBuf::from(p))),
            ("json", Some(p)) => Ok(Self::Json(Some(PathBuf::from(p)))),
            ("pcap", Some(p)) => Ok(Self::Pcap(PathBuf::from(p))),
            ("nats", Some(_)) => NatsOutputSpec::parse(s)
                .map(|n| Self::Nats(Box::new(n)))
                .map_err(|e| err(e.reason())),
            ("relay", Some(arg)) => {
                // `;spool=DIR` is ours; the rest is the destination's.
                let mut spool = None;
                let mut dest = Vec::new();
                for part in arg.split(';') {
                    match part.trim().strip_prefix("spool=") {
                        Some("") => return Err(err("expected a directory after `spool=`")),
                        Some(_) if spool.is_some() => return Err(err("`spool=` given twice")),
                        Some(dir) => spool = Some(PathBuf::from(dir)),
                        None => dest.push(part),
                    }
                }
                let dest = HepDestination::parse_with_default_port(&dest.join(";"), default_port)
                    .map_err(|e| err(&e.to_string()))?;
                Ok(Self::Relay { dest, spool })
            }
            _ => Err(err("expected store:DIR, stdout, json:PATH|-, pcap:PATH, \
                 relay:hep_udp|hep_tcp|hep_tls:HOST:PORT[;version=N][;spool=DIR], \
                 nats:URL[,URL...][;stream=S][;subject=S][;partitions=P][;spool=DIR] or null")),
        }
    }
}

impl FromStr for OutputSpec {
    type Err = OutputSpecError;

    fn from_str(s: &str) -> Result<Self, OutputSpecError> {
        Self::parse_with_default_port(s, hep_transport::HEP_PORT)
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
            Self::Store(p) => write!(f, "store:{}", p.display()),
            Self::Relay { dest, spool: None } => write!(f, "relay:{dest}"),
            Self::Relay {
                dest,
                spool: Some(dir),
            } => write!(f, "relay:{dest};spool={}", dir.display()),
            Self::Nats(n) => n.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_takes_a_spool_directory_beside_its_version() {
        let spec: OutputSpec = "relay:hep_tcp:127.0.0.1:9060;version=3;spool=/var/spool/hep"
            .parse()
            .unwrap();
        let OutputSpec::Relay { dest, spool } = &spec else {
            panic!("{spec:?}")
        };
        assert_eq!(dest.version(), hep_proto::HepVersion::V3);
        assert_eq!(spool.as_deref(), Some(Path::new("/var/spool/hep")));
        assert_eq!(spec.to_string().parse::<OutputSpec>().unwrap(), spec);
        let plain: OutputSpec = "relay:hep_udp:10.0.0.1:9060;version=2".parse().unwrap();
        assert!(matches!(plain, OutputSpec::Relay { spool: None, .. }));
    }

    #[test]
    fn an_empty_or_repeated_spool_is_refused() {
        for bad in [
            "relay:hep_tcp:h:1;spool=",
            "relay:hep_tcp:h:1;spool=/a;spool=/b",
            "relay:hep_tcp:h:1;spoll=/a",
        ] {
            assert!(bad.parse::<OutputSpec>().is_err(), "{bad}");
        }
    }
}
