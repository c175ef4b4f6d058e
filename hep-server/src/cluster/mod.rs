//! Search across the cluster: `[cluster] peers` names the HTTP APIs of the other nodes
//! (each with its own store), and the API, the page and `hep-server search` ask all of
//! them at once and merge what they answer.
//!
//! - `mod.rs` (this file): the settings ([`ClusterConfig`], [`Peer`]) and the loop guard
//!   ([`LOCAL_HEADER`], [`CAPTURE_IDS_HEADER`]);
//! - [`client`]: one GET to one peer, within its deadline, its answer bounded
//!   ([`client::MAX_ANSWER_BYTES`]);
//! - [`fanout`]: every peer at once ([`Cluster`]), what did not answer named
//!   ([`Unanswered`]), timed and counted ([`metrics`]);
//! - [`merge`]: the pages of calls of several nodes as one page, with a cursor that
//!   still holds.
//!
//! A request a node sends to its peers carries `X-Hep-Cluster: local`: a node answers
//! such a request from its own store only, so two nodes that list each other never loop.
//! It also carries the capture ids the caller may read (`X-Hep-Capture-Ids`), which the
//! peer intersects with what the cluster's token may read there: a limited token never
//! sees more through a peer than on the node it asked (docs/API.md, "Across the
//! cluster").

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub mod client;
pub mod fanout;
pub mod merge;
pub mod metrics;

pub use fanout::{Cluster, Unanswered};

/// The header that asks a node to answer from its own store only (a peer's request).
pub const LOCAL_HEADER: &str = "x-hep-cluster";
/// Its value.
pub const LOCAL_VALUE: &str = "local";
/// The header that narrows what a request may read to these capture ids
/// (comma-separated; `none` for none): intersected with what its token allows.
pub const CAPTURE_IDS_HEADER: &str = "x-hep-capture-ids";
/// Default per-peer deadline (`[cluster] timeout_ms`).
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// The longest deadline taken: below the API's own request timeout (10 s), so that a slow peer is named, not the
/// whole answer lost.
pub const MAX_TIMEOUT_MS: u64 = 8_000;
/// Peers at most.
pub const MAX_PEERS: usize = 64;

/// `[cluster]`: the other nodes to search (see `docs/CONFIG.md`).
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    /// What this node calls itself in the `node` of its calls (`name`; `None`: the host
    /// name, [`host_name`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The other nodes' HTTP APIs (`peers`).
    pub peers: Vec<Peer>,
    /// The bearer token presented to the peers (`token`, or read from `token_file`).
    /// A secret: shown redacted.
    #[serde(serialize_with = "redact")]
    pub token: Option<String>,
    /// Where the token was read from, if from a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// How long each peer has to answer, ms (`timeout_ms`).
    pub timeout_ms: u64,
}

fn redact<S: serde::Serializer>(token: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match token {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("name", &self.name)
            .field("peers", &self.peers)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            name: None,
            peers: Vec::new(),
            token: None,
            token_file: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

impl ClusterConfig {
    /// The node's name: `name`, else the host name.
    pub fn node_name(&self) -> String {
        self.name.clone().unwrap_or_else(host_name)
    }

    /// The per-peer deadline.
    pub const fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// This machine's host name (`uname -n`), else `local`.
pub fn host_name() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy();
    if name.is_empty() {
        "local".to_owned()
    } else {
        name.into_owned()
    }
}

/// A peer: `http://HOST:PORT` (port 80 when not given), as written.
///
/// ```
/// use hep_server::cluster::Peer;
/// let p: Peer = "http://10.0.0.2:9080/".parse().unwrap();
/// assert_eq!((p.url(), p.host(), p.port()), ("http://10.0.0.2:9080", "10.0.0.2", 9080));
/// assert_eq!(p.authority(), "10.0.0.2:9080");
/// assert!("https://10.0.0.2:9080".parse::<Peer>().unwrap_err().contains("http://"));
/// assert!("http://10.0.0.2:9080/api".parse::<Peer>().unwrap_err().contains("path"));
/// assert!("10.0.0.2:9080".parse::<Peer>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    url: String,
    host: String,
    port: u16,
}

impl Peer {
    /// `http://HOST:PORT`, without a trailing `/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The host (a name, an IPv4 address, or an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// `HOST:PORT` as in the URL (IPv6 in brackets): what message ids of this peer carry.
    pub fn authority(&self) -> &str {
        self.url.strip_prefix("http://").unwrap_or(&self.url)
    }
}

impl std::str::FromStr for Peer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let expected = "expected http://HOST:PORT (the peer's [http] listen address)";
        let Some(rest) = s.strip_prefix("http://") else {
            return Err(if s.starts_with("https://") {
                format!(
                    "`{s}`: HTTPS peers are not supported yet; {expected}, on a network \
                     you trust (see docs/SCALE-OUT.md)"
                )
            } else {
                format!("`{s}`: {expected}")
            });
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(format!("`{s}`: {expected}, without a path or user"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, Some(p)),
            _ => (authority, None),
        };
        let port =
            match port {
                None => 80,
                Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
                    format!("`{s}`: the port `{p}` is not 1 to 65535; {expected}")
                })?,
            };
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if bare.is_empty()
            || !bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
        {
            return Err(format!("`{s}`: `{host}` is not a host; {expected}"));
        }
        Ok(Self {
            url: format!("http://{host}:{port}"),
            host: bare.to_owned(),
            port,
        })
    }
}

impl Serialize for Peer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.url)
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}
