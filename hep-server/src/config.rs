//! The configuration file (TOML), with the seed's parameter names.
//!
//! Every key, its default and its meaning are listed in `docs/CONFIG.md`; `hep-server
//! check-config --config FILE` prints the effective configuration. Unknown keys and bad
//! values are errors naming the file, the line and the key.
//!
//! ```toml
//! listen = ["hep_udp:0.0.0.0:9060", "hep_tcp:0.0.0.0:9060"]
//! outputs = ["json:/var/log/hep.jsonl"]
//! hep_capture_id = 1
//!
//! [auth]
//! key = "hep-secret"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use hep_callbacks::ClientCaptureIds;
use hep_proto::ProtoType;
use hep_transport::{HEP_PORT, HepDestination, ListenOn, ListenSpec, Transport};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::output::OutputSpec;
use crate::output::spool::SpoolConfig;

/// A configuration error, for a person: where, which key, what was expected.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ConfigError {
    location: String,
    message: String,
}

impl ConfigError {
    fn at(file: &Path, text: &str, span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        let location = match span {
            Some(span) => {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("{}:{line}:{col}", file.display())
            }
            None => file.display().to_string(),
        };
        Self {
            location,
            message: message.into(),
        }
    }
}

// ===== the file as written =====

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Vec<Spanned<String>>>,
    outputs: Option<Vec<Spanned<String>>>,
    hep_port: Option<u16>,
    hep_send_timeout: Option<u64>,
    hep_max_msg_chunks: Option<u32>,
    hep_async: Option<Spanned<toml::Value>>,
    hep_async_max_postponed_chunks: Option<usize>,
    hep_capture_id: Option<u32>,
    hep_async_local_connect_timeout: Option<u64>,
    hep_async_local_write_timeout: Option<u64>,
    #[serde(default)]
    limits: RawLimits,
    tls: Option<RawTls>,
    relay_tls: Option<RawRelayTls>,
    metrics: Option<RawMetrics>,
    log: Option<RawLog>,
    auth: Option<RawAuth>,
    filter: Option<RawFilter>,
    rewrite: Option<RawRewrite>,
    dedup: Option<RawDedup>,
    rate_limit: Option<RawRateLimit>,
    store: Option<RawStore>,
    spool: Option<RawSpool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    max_bytes: Option<u64>,
    segment_bytes: Option<u64>,
    sync_interval_ms: Option<u64>,
    sync_messages: Option<u64>,
    replay_bytes: Option<u64>,
    replay_margin_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    udp_recv_buffer: Option<usize>,
    max_connections: Option<usize>,
    idle_timeout_ms: Option<u64>,
    frame_timeout_ms: Option<u64>,
    max_frame_length: Option<usize>,
    max_inflated_len: Option<usize>,
    output_queue: Option<usize>,
    shutdown_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
    handshake_timeout_ms: Option<u64>,
    clients: Option<Spanned<BTreeMap<String, Vec<u32>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelayTls {
    ca_file: PathBuf,
    cert_file: Option<Spanned<PathBuf>>,
    key_file: Option<Spanned<PathBuf>>,
    server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<Spanned<String>>,
    level: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    key: Option<String>,
    keys: Option<Spanned<BTreeMap<String, String>>>,
    strip: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    /// Names or numbers: `["sip", 100]`.
    proto_types: Option<Vec<Spanned<toml::Value>>>,
    capture_ids: Option<Vec<u32>>,
    agent_networks: Option<Vec<Spanned<String>>>,
    source_networks: Option<Vec<Spanned<String>>>,
    allow_sip_methods: Option<Vec<String>>,
    deny_sip_methods: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRewrite {
    capture_id: Option<u32>,
    node_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDedup {
    window_ms: u64,
    capture_id_aware: Option<bool>,
    max_entries: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    max_age_hours: Option<u64>,
    max_size_mb: Option<u64>,
    min_free_mb: Option<u64>,
    partition_minutes: Option<Spanned<u32>>,
    batch_size: Option<Spanned<usize>>,
    clock_skew_warn_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    rate: f64,
    burst: Option<f64>,
}

// ===== the effective configuration =====

/// The effective configuration: every value resolved, defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Where to listen (`listen`): default UDP and TCP on 0.0.0.0, port `hep_port`.
    pub listen: Vec<String>,
    /// Where messages go (`outputs`): default `stdout`.
    pub outputs: Vec<String>,
    /// Default port of listen specs without one (seed `hep_port`, 5656).
    pub hep_port: u16,
    /// Blocking write timeout of relays with `hep_async = false`, ms (seed default 100).
    pub hep_send_timeout: u64,
    /// Reads a TCP/TLS frame may take before the connection is closed; 0 = unlimited (32).
    pub hep_max_msg_chunks: u32,
    /// Whether relays connect and write without blocking (seed default true).
    pub hep_async: bool,
    /// Per-connection queue of a relay, in messages (seed default 32).
    pub hep_async_max_postponed_chunks: usize,
    /// Capture id this node writes when it originates HEP (`send`) (seed default 1).
    pub hep_capture_id: u32,
    /// How long a relay's connect may hold the caller, ms (seed default 100).
    pub hep_async_local_connect_timeout: u64,
    /// How long a relay's write may block before queueing the rest, ms (seed default 10).
    pub hep_async_local_write_timeout: u64,
    /// Receive-side limits.
    pub limits: Limits,
    /// TLS listener settings (needed by `hep_tls` listeners).
    pub tls: Option<TlsConfig>,
    /// TLS client settings of `relay:hep_tls:` outputs.
    pub relay_tls: Option<RelayTlsConfig>,
    /// Prometheus endpoint, if any.
    pub metrics: Option<MetricsConfig>,
    /// Log settings.
    pub log: LogConfig,
    /// Auth key check, if on.
    pub auth: Option<AuthConfig>,
    /// Filter rules, if any.
    pub filter: Option<FilterConfig>,
    /// Capture id / node name rewrite, if any.
    pub rewrite: Option<RewriteConfig>,
    /// Duplicate suppression, if on.
    pub dedup: Option<DedupConfig>,
    /// Per-agent rate limit, if on.
    pub rate_limit: Option<RateLimitConfig>,
    /// Bounds of the spools of `relay:...;spool=DIR` outputs (`[spool]`).
    pub spool: SpoolConfig,
    /// Settings of `store:` outputs.
    pub store: StoreConfig,
}

/// Settings of `store:DIR` outputs (`[store]`); see `docs/CONFIG.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreConfig {
    /// Partitions whose messages were all received longer ago than this are deleted,
    /// hours; 0 = keep forever (default 168, a week). Receive time, not capture time:
    /// a message is stored whatever time its agent wrote into it.
    pub max_age_hours: u64,
    /// The store's files take at most this much disk, MiB: the oldest partitions go
    /// first; 0 = no limit (default 10240).
    pub max_size_mb: u64,
    /// Below this much free space on the store's filesystem nothing is written and
    /// messages are dropped (counted, `reason="disk_low"`), MiB; 0 = no floor (default
    /// 1024).
    pub min_free_mb: u64,
    /// Receive time one partition file covers, minutes, 1 to 1440 (default 60).
    pub partition_minutes: u32,
    /// Messages written in one transaction at most (default 50000).
    pub batch_size: usize,
    /// A message whose capture time is further than this from its receive time is
    /// counted (`hep_store_clock_skew_total`) and logged (at most a line every 10 s),
    /// seconds; 0 = not checked (default 300). It is stored all the same.
    pub clock_skew_warn_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_age_hours: 168,
            max_size_mb: 10_240,
            min_free_mb: 1_024,
            partition_minutes: 60,
            batch_size: 50_000,
            clock_skew_warn_secs: 300,
        }
    }
}

/// Receive-side limits (`[limits]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// UDP socket receive buffer to request, bytes (default 8 MiB: the kernel default
    /// of about 208 KiB loses packets from about 50,000/s).
    pub udp_recv_buffer: usize,
    /// Open TCP/TLS connections at most, per listener (default 4096).
    pub max_connections: usize,
    /// A TCP/TLS connection with no bytes for this long is closed, ms (default 120000).
    pub idle_timeout_ms: u64,
    /// A started TCP/TLS frame must complete within this, ms (default 4000).
    pub frame_timeout_ms: u64,
    /// Largest TCP/TLS frame accepted, bytes (default and maximum 65535).
    pub max_frame_length: usize,
    /// Largest inflated compressed payload (chunk 0x0010), bytes (default 262144).
    pub max_inflated_len: usize,
    /// Messages queued per output before it drops (counted) or pushes back (default 65536).
    pub output_queue: usize,
    /// How long a stop (SIGTERM, SIGINT) may take to deliver what was accepted, ms
    /// (default 10000; 0 = no deadline). What is still queued then is counted lost.
    pub shutdown_timeout_ms: u64,
}

impl Limits {
    /// The shutdown deadline, `None` for none (`shutdown_timeout_ms = 0`).
    pub fn shutdown_timeout(&self) -> Option<Duration> {
        (self.shutdown_timeout_ms > 0).then(|| Duration::from_millis(self.shutdown_timeout_ms))
    }
}

/// TLS listener settings (`[tls]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle: when set, agents must present a certificate it signed (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// Handshake timeout, ms (default 5000).
    pub handshake_timeout_ms: u64,
    /// `[tls.clients]`: client certificate (DNS name or `sha256:` fingerprint) → the
    /// capture ids it may send. Empty: any certificate `client_ca_file` signed, any id.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub clients: BTreeMap<String, Vec<u32>>,
}

impl TlsConfig {
    /// The `[tls.clients]` map as a check, if there is one.
    pub fn client_ids(&self) -> Option<ClientCaptureIds> {
        if self.clients.is_empty() {
            return None;
        }
        // Every key was checked when the configuration was resolved.
        self.clients
            .iter()
            .try_fold(ClientCaptureIds::new(), |ids, (key, capture_ids)| {
                ids.allow(key, capture_ids.iter().copied())
            })
            .ok()
    }
}

/// TLS client settings of `relay:hep_tls:` outputs (`[relay_tls]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelayTlsConfig {
    /// PEM CA bundle the collector's certificate must chain to (no system store).
    pub ca_file: PathBuf,
    /// PEM client certificate chain, presented when the collector asks (mTLS).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name to send (SNI) and verify instead of the destination's host.
    pub server_name: Option<String>,
}

/// Prometheus endpoint (`[metrics]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsConfig {
    /// Address of the HTTP endpoint serving `/metrics`.
    pub listen: SocketAddr,
}

/// How logs are written (`[log]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `hep_transport=debug` (default `info`).
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Auth key check (`[auth]`). The keys are secrets: `check-config` (whose output ends up
/// in tickets and chats) and `Debug` show that a key is set, never the key.
#[derive(Clone, PartialEq, Serialize)]
pub struct AuthConfig {
    /// The shared key (or the fallback when `keys` is set).
    #[serde(serialize_with = "redact_key")]
    pub key: Option<String>,
    /// Keys per capture id (TOML keys are strings; each is checked to be a number).
    #[serde(serialize_with = "redact_keys")]
    pub keys: BTreeMap<String, String>,
    /// Remove the key from accepted messages before any output sees them (default
    /// true); `false` keeps it, so that relays forward it (and `json:`, `stdout` and the
    /// store keep it too). Without `[auth]` keys are removed all the same
    /// ([`Config::strip_auth_key`]).
    pub strip: bool,
}

/// What is shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

fn redact_key<S: serde::Serializer>(key: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match key {
        Some(_) => s.serialize_some(REDACTED),
        None => s.serialize_none(),
    }
}

fn redact_keys<S: serde::Serializer>(
    keys: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(keys.keys().map(|id| (id, REDACTED)))
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("key", &self.key.as_ref().map(|_| REDACTED))
            .field(
                "keys",
                &self
                    .keys
                    .keys()
                    .map(|id| (id, REDACTED))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("strip", &self.strip)
            .finish()
    }
}

/// Filter rules (`[filter]`); see [`hep_callbacks::Filter`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilterConfig {
    /// Protocol types to keep, by name or number.
    pub proto_types: Option<Vec<String>>,
    /// Capture ids to keep.
    pub capture_ids: Option<Vec<u32>>,
    /// Agent networks allowed to send (CIDR).
    pub agent_networks: Option<Vec<String>>,
    /// Captured source networks to keep (CIDR).
    pub source_networks: Option<Vec<String>>,
    /// SIP methods to keep.
    pub allow_sip_methods: Option<Vec<String>>,
    /// SIP methods to drop.
    pub deny_sip_methods: Vec<String>,
    #[serde(skip)]
    proto_type_values: Vec<ProtoType>,
    #[serde(skip)]
    agent_net_values: Vec<IpNet>,
    #[serde(skip)]
    source_net_values: Vec<IpNet>,
}

impl FilterConfig {
    /// The protocol types as parsed.
    pub fn proto_type_values(&self) -> Option<&[ProtoType]> {
        self.proto_types
            .as_ref()
            .map(|_| &self.proto_type_values[..])
    }

    /// The agent networks as parsed.
    pub fn agent_net_values(&self) -> Option<&[IpNet]> {
        self.agent_networks
            .as_ref()
            .map(|_| &self.agent_net_values[..])
    }

    /// The source networks as parsed.
    pub fn source_net_values(&self) -> Option<&[IpNet]> {
        self.source_networks
            .as_ref()
            .map(|_| &self.source_net_values[..])
    }
}

impl AuthConfig {
    /// The per-capture-id keys with their ids as numbers.
    pub fn keys_by_id(&self) -> BTreeMap<u32, String> {
        // Checked to parse when the configuration was resolved.
        self.keys
            .iter()
            .filter_map(|(id, k)| Some((id.parse().ok()?, k.clone())))
            .collect()
    }
}

/// Rewrite (`[rewrite]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RewriteConfig {
    /// Capture id to set.
    pub capture_id: Option<u32>,
    /// Node name to set.
    pub node_name: Option<String>,
}

/// Dedup (`[dedup]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DedupConfig {
    /// Window, ms.
    pub window_ms: u64,
    /// Capture id is part of the key (default true).
    pub capture_id_aware: bool,
    /// Payload hashes remembered at most (default 100000).
    pub max_entries: usize,
}

/// Rate limit (`[rate_limit]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitConfig {
    /// Messages per second per agent.
    pub rate: f64,
    /// Burst size (default: one second's worth).
    pub burst: f64,
}

impl Default for Config {
    fn default() -> Self {
        // An empty file is the embedded default; it cannot fail to resolve.
        resolve(RawConfig::default(), Path::new("<defaults>"), "")
            .unwrap_or_else(|e| unreachable!("embedded defaults are valid: {e}"))
    }
}

impl Config {
    /// Reads and checks a configuration file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, line and key of the first problem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::at(path, "", None, format!("cannot read the file: {e}")))?;
        Self::parse(path, &text)
    }

    /// Parses configuration text; `path` is only used in error messages.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, line and key of the first problem.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end();
            let at = e.span().map(|s| s.start);
            // serde names the type it expected, not the key: find the key in the text.
            let message = match at {
                Some(at) if message.starts_with("invalid ") => match key_at(text, at) {
                    Some(key) => format!("key `{key}`: {message}"),
                    None => message.to_owned(),
                },
                Some(at) if message.starts_with("missing field") => match section_at(text, at) {
                    Some(section) => format!("section [{section}]: {message}"),
                    None => message.to_owned(),
                },
                _ => message.to_owned(),
            };
            ConfigError::at(path, text, e.span(), message)
        })?;
        resolve(raw, path, text)
    }

    /// The listen specs with their options (`;allow=`), parsed.
    pub fn listen_specs(&self) -> Vec<ListenOn> {
        self.listen
            .iter()
            .filter_map(|s| ListenOn::parse_with_default_port(s, self.hep_port).ok())
            .collect()
    }

    /// The output specs, parsed.
    pub fn output_specs(&self) -> Vec<OutputSpec> {
        self.outputs
            .iter()
            .filter_map(|s| OutputSpec::parse_with_default_port(s, self.hep_port).ok())
            .collect()
    }

    /// The effective configuration as TOML, for `check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    /// The keys a running server cannot change (a reload logs them as needing a restart
    /// and keeps the running values): listeners and their limits, TLS, metrics, logging.
    /// Empty when `new` differs from `self` in reloadable keys only.
    pub fn restart_only_changes(&self, new: &Self) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |key, same: bool| {
            if !same {
                changed.push(key);
            }
        };
        check("listen", self.listen == new.listen);
        check("hep_port", self.hep_port == new.hep_port);
        check(
            "hep_max_msg_chunks",
            self.hep_max_msg_chunks == new.hep_max_msg_chunks,
        );
        check("[limits]", self.limits == new.limits);
        check("[tls]", self.tls == new.tls);
        check("[metrics]", self.metrics == new.metrics);
        check("[log]", self.log == new.log);
        check("[spool]", self.spool == new.spool);
        check("[store]", self.store == new.store);
        changed
    }

    /// `new` with this configuration's values of the keys a running server cannot change
    /// (those of [`restart_only_changes`](Self::restart_only_changes)): what a reload
    /// actually runs.
    #[must_use]
    pub fn reloaded(&self, new: Self) -> Self {
        Self {
            listen: self.listen.clone(),
            hep_port: self.hep_port,
            hep_max_msg_chunks: self.hep_max_msg_chunks,
            limits: self.limits.clone(),
            tls: self.tls.clone(),
            metrics: self.metrics.clone(),
            log: self.log.clone(),
            spool: self.spool,
            store: self.store.clone(),
            ..new
        }
    }

    /// Whether the auth key (chunk 0x000e) is removed from messages before any output
    /// sees them: unless `[auth] strip = false`, so also without `[auth]` (a key an agent
    /// sends to a collector that does not check it is a secret all the same).
    pub fn strip_auth_key(&self) -> bool {
        self.auth.as_ref().is_none_or(|a| a.strip)
    }

    /// Checks that the outputs can work together and with the listeners: no two write
    /// one file or directory (or both standard output), and no relay sends to one of our
    /// own listeners. [`Config::load`] checks this with the file's line; this is for a
    /// configuration changed since (command-line specs, the running listeners of a
    /// reload).
    ///
    /// # Errors
    /// The first conflict, naming the outputs (and listener) concerned.
    pub fn check_outputs(&self) -> Result<(), OutputConflict> {
        let specs: Vec<(&str, OutputSpec)> = self
            .outputs
            .iter()
            .filter_map(|s| Some((s.as_str(), s.parse().ok()?)))
            .collect();
        match output_conflict(&self.listen_specs(), &specs) {
            Some(conflict) => Err(conflict),
            None => Ok(()),
        }
    }

    /// `Duration` helper for the millisecond settings.
    pub const fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
}

fn resolve(raw: RawConfig, path: &Path, text: &str) -> Result<Config, ConfigError> {
    let err = |span: Range<usize>, msg: String| ConfigError::at(path, text, Some(span), msg);
    let hep_port = raw.hep_port.unwrap_or(HEP_PORT);

    // Where the file asks for TLS, so that a missing section is reported there.
    let mut tls_listener = None;
    let mut tls_relay = None;
    let listen = match raw.listen {
        Some(list) => {
            for s in &list {
                let listen = ListenOn::parse_with_default_port(s.get_ref(), hep_port)
                    .map_err(|e| err(s.span(), format!("key `listen`: {e}")))?;
                if listen.spec.transport == Transport::Tls && tls_listener.is_none() {
                    tls_listener = Some(s.span());
                }
            }
            list.into_iter().map(Spanned::into_inner).collect()
        }
        None => vec![
            format!("hep_udp:0.0.0.0:{hep_port}"),
            format!("hep_tcp:0.0.0.0:{hep_port}"),
        ],
    };
    let outputs = match raw.outputs {
        Some(list) => {
            let mut specs = Vec::with_capacity(list.len());
            for s in &list {
                let spec = OutputSpec::parse_with_default_port(s.get_ref(), hep_port)
                    .map_err(|e| err(s.span(), format!("key `outputs`: {e}")))?;
                if spec
                    .relay_destination()
                    .is_some_and(|d| d.transport() == Transport::Tls)
                    && tls_relay.is_none()
                {
                    tls_relay = Some(s.span());
                }
                specs.push((s.get_ref().as_str(), spec));
            }
            let listeners = listen
                .iter()
                .filter_map(|l| ListenOn::parse_with_default_port(l, hep_port).ok())
                .collect::<Vec<_>>();
            if let Some(conflict) = output_conflict(&listeners, &specs) {
                return Err(err(
                    list[conflict.output].span(),
                    format!("key `outputs`: {conflict}"),
                ));
            }
            list.into_iter().map(Spanned::into_inner).collect()
        }
        None => vec![format!("store:{}", crate::store::DEFAULT_DIR)],
    };
    let hep_async = match raw.hep_async {
        None => true,
        Some(v) => match v.get_ref() {
            toml::Value::Boolean(b) => *b,
            toml::Value::Integer(0) => false,
            toml::Value::Integer(1) => true,
            other => {
                return Err(err(
                    v.span(),
                    format!("key `hep_async`: expected true/false or 0/1, found {other}"),
                ));
            }
        },
    };
    let limits = RawLimits { ..raw.limits };
    let limits = Limits {
        udp_recv_buffer: limits.udp_recv_buffer.unwrap_or(8 << 20),
        max_connections: limits.max_connections.unwrap_or(4096),
        idle_timeout_ms: limits.idle_timeout_ms.unwrap_or(120_000),
        frame_timeout_ms: limits.frame_timeout_ms.unwrap_or(4_000),
        max_frame_length: limits.max_frame_length.unwrap_or(65_535).min(65_535),
        max_inflated_len: limits
            .max_inflated_len
            .unwrap_or(hep_proto::DEFAULT_MAX_INFLATED_LEN),
        output_queue: limits.output_queue.unwrap_or(65_536).max(1),
        shutdown_timeout_ms: limits.shutdown_timeout_ms.unwrap_or(10_000),
    };
    let relay_tls = match raw.relay_tls {
        Some(t) => {
            if let Some(set) = match (&t.cert_file, &t.key_file) {
                (Some(c), None) => Some(c),
                (None, Some(k)) => Some(k),
                _ => None,
            } {
                return Err(err(
                    set.span(),
                    "section [relay_tls]: set both `cert_file` and `key_file` (a client \
                     certificate), or neither"
                        .into(),
                ));
            }
            Some(RelayTlsConfig {
                ca_file: t.ca_file,
                cert_file: t.cert_file.map(Spanned::into_inner),
                key_file: t.key_file.map(Spanned::into_inner),
                server_name: t.server_name,
            })
        }
        None => None,
    };
    if let (Some(span), None) = (tls_listener, &raw.tls) {
        return Err(err(
            span,
            "key `listen`: a hep_tls listener needs a [tls] section with cert_file and key_file"
                .into(),
        ));
    }
    if let (Some(span), None) = (tls_relay, &relay_tls) {
        return Err(err(
            span,
            "key `outputs`: a hep_tls relay needs a [relay_tls] section with ca_file (the CA \
             that signed the collector's certificate)"
                .into(),
        ));
    }
    let tls = match raw.tls {
        Some(t) => {
            let mut clients = BTreeMap::new();
            if let Some(map) = t.clients {
                for (key, ids) in map.get_ref() {
                    ClientCaptureIds::new()
                        .allow(key, ids.iter().copied())
                        .map_err(|e| err(map.span(), format!("section [tls.clients]: {e}")))?;
                }
                if !map.get_ref().is_empty() && t.client_ca_file.is_none() {
                    return Err(err(
                        map.span(),
                        "section [tls.clients]: needs `client_ca_file` in [tls] (agents must \
                         present a certificate for it to be mapped)"
                            .into(),
                    ));
                }
                clients = map.into_inner();
            }
            Some(TlsConfig {
                cert_file: t.cert_file,
                key_file: t.key_file,
                client_ca_file: t.client_ca_file,
                handshake_timeout_ms: t.handshake_timeout_ms.unwrap_or(5_000),
                clients,
            })
        }
        None => None,
    };
    let metrics = match raw.metrics {
        Some(m) => Some(MetricsConfig {
            listen: m.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
                err(
                    m.listen.span(),
                    "key `metrics.listen`: expected IP:PORT, e.g. 127.0.0.1:9096".into(),
                )
            })?,
        }),
        None => None,
    };
    let log = match raw.log {
        Some(l) => LogConfig {
            format: match l.format.as_ref().map(|f| f.get_ref().as_str()) {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    let span = l.format.as_ref().map_or(0..0, Spanned::span);
                    return Err(err(
                        span,
                        format!(
                            "key `log.format`: expected \"text\" or \"json\", found \"{other}\""
                        ),
                    ));
                }
            },
            level: match l.level {
                None => "info".to_owned(),
                Some(level) => {
                    // Not only a filter's syntax: a word that is not a level would
                    // silence everything (see the `log` module).
                    crate::log::check_level(level.get_ref())
                        .map_err(|e| err(level.span(), format!("key `log.level`: {e}")))?;
                    level.into_inner()
                }
            },
        },
        None => LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        },
    };
    let auth = match raw.auth {
        Some(a) => {
            let mut keys = BTreeMap::new();
            if let Some(map) = &a.keys {
                for (id, key) in map.get_ref() {
                    id.parse::<u32>().map_err(|_| {
                        err(
                            map.span(),
                            format!("key `auth.keys`: `{id}` is not a capture id (a number)"),
                        )
                    })?;
                    keys.insert(id.clone(), key.clone());
                }
            }
            if a.key.is_none() && keys.is_empty() {
                return Err(ConfigError::at(
                    path,
                    text,
                    None,
                    "section [auth]: set `key` (shared) and/or `keys` (per capture id)",
                ));
            }
            Some(AuthConfig {
                key: a.key,
                keys,
                strip: a.strip.unwrap_or(true),
            })
        }
        None => None,
    };
    let filter = match raw.filter {
        Some(f) => {
            let mut proto_type_values = Vec::new();
            let mut proto_type_names = Vec::new();
            for t in f.proto_types.iter().flatten() {
                let name = match t.get_ref() {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(n) => n.to_string(),
                    other => other.to_string(),
                };
                proto_type_values.push(ProtoType::parse(&name).ok_or_else(|| {
                    err(
                        t.span(),
                        format!(
                            "key `filter.proto_types`: unknown protocol type `{name}` \
                             (expected a number 0-255 or a name such as sip, log, rtcp)"
                        ),
                    )
                })?);
                proto_type_names.push(name);
            }
            let nets = |list: &Option<Vec<Spanned<String>>>,
                        key: &str|
             -> Result<Vec<IpNet>, ConfigError> {
                list.iter()
                    .flatten()
                    .map(|n| {
                        parse_net(n.get_ref()).ok_or_else(|| {
                            err(n.span(), format!("key `filter.{key}`: expected a network like 10.0.0.0/8 or ::1/128"))
                        })
                    })
                    .collect()
            };
            let agent_net_values = nets(&f.agent_networks, "agent_networks")?;
            let source_net_values = nets(&f.source_networks, "source_networks")?;
            let strings = |l: Option<Vec<Spanned<String>>>| {
                l.map(|l| l.into_iter().map(Spanned::into_inner).collect())
            };
            Some(FilterConfig {
                proto_types: f.proto_types.map(|_| proto_type_names),
                capture_ids: f.capture_ids,
                agent_networks: strings(f.agent_networks),
                source_networks: strings(f.source_networks),
                allow_sip_methods: f.allow_sip_methods,
                deny_sip_methods: f.deny_sip_methods.unwrap_or_default(),
                proto_type_values,
                agent_net_values,
                source_net_values,
            })
        }
        None => None,
    };
    let spool = match raw.spool {
        Some(r) => {
            let d = SpoolConfig::default();
            let c = SpoolConfig {
                max_bytes: r.max_bytes.unwrap_or(d.max_bytes),
                segment_bytes: r.segment_bytes.unwrap_or(d.segment_bytes),
                sync_interval_ms: r.sync_interval_ms.unwrap_or(d.sync_interval_ms),
                sync_messages: r.sync_messages.unwrap_or(d.sync_messages),
                replay_bytes: r.replay_bytes.unwrap_or(d.replay_bytes),
                replay_margin_bytes: r.replay_margin_bytes.unwrap_or(d.replay_margin_bytes),
            };
            c.check().map_err(|m| {
                let at = text.find("[spool]");
                ConfigError::at(
                    path,
                    text,
                    at.map(|a| a..a + 7),
                    format!("section [spool]: {m}"),
                )
            })?;
            c
        }
        None => SpoolConfig::default(),
    };
    let store = match raw.store {
        None => StoreConfig::default(),
        Some(st) => {
            let d = StoreConfig::default();
            let partition_minutes = match st.partition_minutes {
                None => d.partition_minutes,
                Some(m) if (1..=1_440).contains(m.get_ref()) => m.into_inner(),
                Some(m) => {
                    return Err(err(
                        m.span(),
                        format!(
                            "key `store.partition_minutes`: expected 1 to 1440 (a day), found {}",
                            m.get_ref()
                        ),
                    ));
                }
            };
            let batch_size = match st.batch_size {
                None => d.batch_size,
                Some(b) if (1..=1_000_000).contains(b.get_ref()) => b.into_inner(),
                Some(b) => {
                    return Err(err(
                        b.span(),
                        format!(
                            "key `store.batch_size`: expected 1 to 1000000, found {}",
                            b.get_ref()
                        ),
                    ));
                }
            };
            StoreConfig {
                max_age_hours: st.max_age_hours.unwrap_or(d.max_age_hours),
                max_size_mb: st.max_size_mb.unwrap_or(d.max_size_mb),
                min_free_mb: st.min_free_mb.unwrap_or(d.min_free_mb),
                partition_minutes,
                batch_size,
                clock_skew_warn_secs: st.clock_skew_warn_secs.unwrap_or(d.clock_skew_warn_secs),
            }
        }
    };
    Ok(Config {
        listen,
        outputs,
        hep_port,
        hep_send_timeout: raw.hep_send_timeout.unwrap_or(100),
        hep_max_msg_chunks: raw.hep_max_msg_chunks.unwrap_or(32),
        hep_async,
        hep_async_max_postponed_chunks: raw.hep_async_max_postponed_chunks.unwrap_or(32),
        hep_capture_id: raw.hep_capture_id.unwrap_or(1),
        hep_async_local_connect_timeout: raw.hep_async_local_connect_timeout.unwrap_or(100),
        hep_async_local_write_timeout: raw.hep_async_local_write_timeout.unwrap_or(10),
        limits,
        tls,
        relay_tls,
        metrics,
        log,
        auth,
        filter,
        rewrite: raw.rewrite.map(|r| RewriteConfig {
            capture_id: r.capture_id,
            node_name: r.node_name,
        }),
        dedup: raw.dedup.map(|d| DedupConfig {
            window_ms: d.window_ms,
            capture_id_aware: d.capture_id_aware.unwrap_or(true),
            max_entries: d.max_entries.unwrap_or(100_000),
        }),
        rate_limit: raw.rate_limit.map(|r| RateLimitConfig {
            rate: r.rate,
            burst: r.burst.unwrap_or(r.rate),
        }),
        spool,
        store,
    })
}

/// Outputs that cannot work together, or an output that would feed a listener of ours;
/// see [`Config::check_outputs`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OutputConflict {
    /// The index in `outputs` of the second output concerned.
    output: usize,
    message: String,
}

/// Where an output writes that no other output may also write.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Stdout,
    /// A file (`json:`, `pcap:`) or a directory (`store:`, a relay's `spool=`).
    Path(PathBuf),
}

impl Target {
    fn of(spec: &OutputSpec) -> Option<Self> {
        match spec {
            OutputSpec::Stdout | OutputSpec::Json(None) => Some(Self::Stdout),
            OutputSpec::Json(Some(p))
            | OutputSpec::Pcap(p)
            | OutputSpec::Store(p)
            | OutputSpec::Relay { spool: Some(p), .. } => Some(Self::Path(resolved_path(p))),
            _ => None,
        }
    }
}

/// The first conflict among `outputs` (each as written, and parsed), or with `listeners`.
fn output_conflict(
    listeners: &[ListenOn],
    outputs: &[(&str, OutputSpec)],
) -> Option<OutputConflict> {
    let mut targets: Vec<(&str, Target)> = Vec::new();
    for (i, (written, spec)) in outputs.iter().enumerate() {
        if let Some(dest) = spec.relay_destination()
            && let Some(l) = listeners.iter().find(|l| relays_to(dest, &l.spec))
        {
            return Some(OutputConflict {
                output: i,
                message: format!(
                    "output `{written}` sends to listener `{}`: it would receive what it \
                     relays, again and again (relay to another collector)",
                    l.spec
                ),
            });
        }
        let Some(target) = Target::of(spec) else {
            continue;
        };
        if let Some((first, _)) = targets.iter().find(|(_, t)| *t == target) {
            let what = match &target {
                Target::Stdout => {
                    "standard output, where their lines would interleave (keep one)".to_owned()
                }
                Target::Path(p) => format!(
                    "{} (each output needs a file or directory of its own)",
                    p.display()
                ),
            };
            return Some(OutputConflict {
                output: i,
                message: format!("outputs `{first}` and `{written}` both write {what}"),
            });
        }
        targets.push((written, target));
    }
    None
}

/// Whether what a relay to `dest` sends arrives at the listener `listen`: the same
/// transport and port, and the destination is the listener's address, or the listener
/// is on every address (`0.0.0.0`, or `::`, which takes IPv4 too) and the destination
/// is a loopback address, an unspecified one (which connects to this host) or
/// `localhost`. Other names are not resolved, nor this host's other addresses listed:
/// the relay's mark catches those loops at run time (`docs/CONFIG.md`).
fn relays_to(dest: &HepDestination, listen: &ListenSpec) -> bool {
    if dest.transport() != listen.transport || dest.port() != listen.addr.port() {
        return false;
    }
    let to = match (dest.host().as_ip(), dest.host().as_name()) {
        (Some(ip), _) => ip.to_canonical(),
        (None, Some(name)) if name.eq_ignore_ascii_case("localhost") => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        _ => return false,
    };
    let on = listen.addr.ip().to_canonical();
    let this_host = |ip: IpAddr| ip.is_loopback() || ip.is_unspecified();
    to == on
        || (on.is_unspecified() && this_host(to) && (on.is_ipv6() || to.is_ipv4()))
        || (to.is_unspecified() && on.is_loopback() && on.is_ipv4() == to.is_ipv4())
}

/// `path` absolute, without `.` and `..`, and with symlinks resolved as far as it exists
/// (the rest is created later): two spellings of one file give one path.
pub(crate) fn resolved_path(path: &Path) -> PathBuf {
    let absolute = std::env::current_dir().map_or_else(|_| path.to_path_buf(), |d| d.join(path));
    let mut lexical = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    let mut tail = Vec::new();
    let mut head = lexical.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(head) {
            return tail.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_owned());
                head = parent;
            }
            _ => return lexical,
        }
    }
}

/// The `[section]` (or `[[section]]`) header in force on the line of byte `at` of `text`.
fn section_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    if !text.is_char_boundary(at) {
        return None;
    }
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    text[..end].lines().filter_map(header).next_back()
}

/// The name of a `[name]` or `[[name]]` line.
fn header(line: &str) -> Option<String> {
    let l = line.split('#').next().unwrap_or_default().trim();
    let name = l.strip_prefix('[')?.strip_suffix(']')?;
    Some(
        name.trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_owned(),
    )
}

/// The dotted name of the key whose value holds byte `at` of `text` (`filter.proto_types`):
/// the key of that line, or for a value that spans lines (an array), of the nearest line
/// above that starts with `key =`. A best effort, for error messages.
fn key_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    if !text.is_char_boundary(at) {
        return None;
    }
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let is_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    let mut key = None;
    for line in std::iter::once(&text[line_start..at]).chain(text[..line_start].lines().rev()) {
        if header(line).is_some() {
            break;
        }
        if let Some((k, _)) = line.split_once('=')
            && is_key(k.trim())
        {
            key = Some(k.trim().to_owned());
            break;
        }
    }
    let key = key?;
    Some(match section_at(text, at) {
        Some(section) => format!("{section}.{key}"),
        None => key,
    })
}

/// A CIDR network, or a single address as a /32 or /128.
fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("hep.toml"), text)
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        let c = parse("").unwrap();
        assert_eq!(c.listen, ["hep_udp:0.0.0.0:5656", "hep_tcp:0.0.0.0:5656"]);
        assert_eq!(c.outputs, ["store:hep-store"]);
        assert_eq!(c.store, StoreConfig::default());
        assert_eq!(
            (
                c.hep_send_timeout,
                c.hep_max_msg_chunks,
                c.hep_async,
                c.hep_async_max_postponed_chunks
            ),
            (100, 32, true, 32)
        );
        assert_eq!(
            (
                c.hep_capture_id,
                c.hep_async_local_connect_timeout,
                c.hep_async_local_write_timeout
            ),
            (1, 100, 10)
        );
    }

    #[test]
    fn the_shutdown_deadline_defaults_to_10_s_and_0_means_none() {
        assert_eq!(
            parse("").unwrap().limits.shutdown_timeout(),
            Some(Duration::from_secs(10))
        );
        let c = parse("[limits]\nshutdown_timeout_ms = 0").unwrap();
        assert_eq!(c.limits.shutdown_timeout(), None);
    }

    #[test]
    fn hep_port_is_the_default_port_of_relay_destinations_too() {
        let c = parse("outputs = [\"relay:hep_tcp:10.0.0.9\"]").unwrap();
        let port = |c: &Config| c.output_specs()[0].relay_destination().unwrap().port();
        assert_eq!(port(&c), HEP_PORT);
        let c = parse(
            "hep_port = 9060\noutputs = [\"relay:hep_tcp:10.0.0.9\", \"relay:hep_udp:10.0.0.9:7\"]",
        )
        .unwrap();
        assert_eq!(port(&c), 9060);
        assert_eq!(c.output_specs()[1].relay_destination().unwrap().port(), 7);
    }

    #[test]
    fn hep_port_is_the_default_port_of_listen_specs() {
        let c = parse("hep_port = 9060\nlisten = [\"hep_udp:127.0.0.1\"]").unwrap();
        assert_eq!(
            c.listen_specs()[0].spec.addr,
            "127.0.0.1:9060".parse().unwrap()
        );
    }

    #[test]
    fn a_listener_may_name_the_networks_it_accepts() {
        let c = parse(
            "listen = [\"hep_udp:0.0.0.0:9060;allow=10.0.0.0/8,192.0.2.7\", \"hep_tcp:0.0.0.0\"]",
        )
        .unwrap();
        let specs = c.listen_specs();
        let allow = specs[0].allow.as_ref().unwrap();
        assert!(allow.contains("10.1.2.3".parse().unwrap()));
        assert!(!allow.contains("192.0.2.8".parse().unwrap()));
        assert_eq!(specs[1].allow, None);
        let e = parse("listen = [\"hep_udp:0.0.0.0;allow=10.0.0.0/33\"]")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:1:11: key `listen`: invalid listen spec"),
            "{e}"
        );
        assert!(e.contains("allow= expects networks"), "{e}");
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let e = parse("hep_port = 9060\nhep_max_msg_chunk = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:2:1: unknown field `hep_max_msg_chunk`"),
            "{e}"
        );
        let e = parse("[limits]\nmax_conections = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:2:1: unknown field `max_conections`"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let e = parse("\nlisten = [\"hep_udp:1.2.3.4\", \"udp:1.2.3.4\"]")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:2:30: key `listen`: invalid listen spec `udp:1.2.3.4`"),
            "{e}"
        );
        let e = parse("hep_port = 70000").unwrap_err().to_string();
        assert_eq!(
            e,
            "hep.toml:1:12: key `hep_port`: invalid value: integer `70000`, expected u16"
        );
        let e = parse("[limits]\nmax_connections = \"many\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:2:19: key `limits.max_connections`: invalid type"),
            "{e}"
        );
        let e = parse("outputs = [\n  \"relay:hep_udp:h:1;version=2\",\n  5,\n]")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:3:3: key `outputs`: invalid type"),
            "{e}"
        );
        let e = parse("[auth]\nkeys = { 2001 = 5 }")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:2:17: key `auth.keys`: invalid type"),
            "{e}"
        );
        let e = parse("[dedup]\ncapture_id_aware = true")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "hep.toml:1:1: section [dedup]: missing field `window_ms`"
        );
        let e = parse("[filter]\nproto_types = [\"sip\", 300]")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:2:23: key `filter.proto_types`: unknown protocol type `300`"),
            "{e}"
        );
        let e = parse("hep_async = 2").unwrap_err().to_string();
        assert_eq!(
            e,
            "hep.toml:1:13: key `hep_async`: expected true/false or 0/1, found 2"
        );
        let e = parse("[filter]\nagent_networks = [\"10.0.0.0/33\"]")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:2:19: key `filter.agent_networks`"),
            "{e}"
        );
        let e = parse("outputs = [\"kafka:x\"]").unwrap_err().to_string();
        assert!(e.starts_with("hep.toml:1:12: key `outputs`"), "{e}");
        let e = parse("[log]\nlevel = \"info,hep_transport=loud\"")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("hep.toml:2:9: key `log.level`"), "{e}");
        assert_eq!(
            parse("[log]\nlevel = \"warn,hep_transport=debug\"")
                .unwrap()
                .log
                .level,
            "warn,hep_transport=debug"
        );
    }

    #[test]
    fn two_relays_cannot_share_a_spool_directory() {
        let e = parse(
            "outputs = [\n  \"relay:hep_tcp:a:1;spool=/var/spool/hep\",\n  \
             \"relay:hep_tcp:b:1;spool=/var/spool/hep\",\n]",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "hep.toml:3:3: key `outputs`: outputs `relay:hep_tcp:a:1;spool=/var/spool/hep` and \
             `relay:hep_tcp:b:1;spool=/var/spool/hep` both write /var/spool/hep (each output \
             needs a file or directory of its own)"
        );
        parse("outputs = [\"relay:hep_tcp:a:1;spool=/a\", \"relay:hep_tcp:b:1;spool=/b\"]")
            .unwrap();
    }

    #[test]
    fn two_outputs_cannot_write_one_file_or_directory() {
        let dir = std::env::temp_dir().join(format!("hep-conf-same-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let d = dir.display();
        let refused = [
            // One file, two writers: the lines of one interleave with the other's packets.
            (format!("json:{d}/a"), format!("pcap:{d}/a")),
            (format!("json:{d}/a"), format!("json:{d}/a")),
            // The same file, spelled differently.
            (format!("json:{d}/a"), format!("json:{d}/sub/../a")),
            (format!("pcap:{d}/a"), format!("pcap:{d}/./a")),
            // Stores, spools: one directory is one writer's.
            (format!("store:{d}/s"), format!("store:{d}/s/")),
            (
                format!("store:{d}/s"),
                format!("relay:hep_tcp:h:1;spool={d}/s"),
            ),
            // Standard output, twice.
            ("stdout".to_owned(), "json:-".to_owned()),
            ("json:-".to_owned(), "json:-".to_owned()),
            ("stdout".to_owned(), "stdout".to_owned()),
        ];
        for (a, b) in &refused {
            let e = parse(&format!("outputs = [\"{a}\", \"{b}\"]"))
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!(
                    "hep.toml:1:{}: key `outputs`: outputs `{a}` and `{b}` both write",
                    16 + a.len()
                )),
                "{a} + {b}: {e}"
            );
        }
        let e = parse("outputs = [\"stdout\", \"json:-\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("both write standard output"), "{e}");
        // Different files, different directories, and outputs without one are fine.
        parse(&format!(
            "outputs = [\"json:{d}/a\", \"pcap:{d}/b\", \"store:{d}/s\", \"store:{d}/t\", \
             \"relay:hep_tcp:h:1;spool={d}/u\", \"relay:hep_tcp:h:1\", \"null\", \"null\", \"stdout\"]"
        ))
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_relay_to_one_of_our_own_listeners_is_refused() {
        let refused = [
            ("hep_udp:127.0.0.1:9060", "relay:hep_udp:127.0.0.1:9060"),
            ("hep_tcp:0.0.0.0:9060", "relay:hep_tcp:127.0.0.1:9060"),
            ("hep_tcp:0.0.0.0:9060", "relay:hep_tcp:localhost:9060"),
            (
                "hep_udp:[::]:9060",
                "relay:hep_udp:127.0.0.1:9060;version=2",
            ),
            ("hep_udp:[::]:9060", "relay:hep_udp:[::1]:9060"),
            (
                "hep_tcp:10.0.0.5:9060",
                "relay:hep_tcp:10.0.0.5:9060;spool=/var/spool/x",
            ),
            ("hep_udp:127.0.0.1", "relay:hep_udp:127.0.0.1:7000"),
        ];
        let config = |listen: &str, output: &str| {
            format!("hep_port = 7000\nlisten = [\"{listen}\"]\noutputs = [\"{output}\"]")
        };
        for (listen, output) in refused {
            let e = parse(&config(listen, output))
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!(
                    "hep.toml:3:12: key `outputs`: output `{output}` sends to listener `"
                )) && e.contains("it would receive what it relays, again and again"),
                "{listen} / {output}: {e}"
            );
        }
        // The default listeners (UDP and TCP on 0.0.0.0, port hep_port) count too.
        let e = parse("hep_port = 7000\noutputs = [\"relay:hep_tcp:127.0.0.1:7000\"]")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sends to listener `hep_tcp:0.0.0.0:7000`"),
            "{e}"
        );
        let fine = [
            // Another port, another transport, another address.
            ("hep_udp:0.0.0.0:9060", "relay:hep_udp:127.0.0.1:9061"),
            ("hep_udp:0.0.0.0:9060", "relay:hep_tcp:127.0.0.1:9060"),
            ("hep_tcp:127.0.0.1:9060", "relay:hep_tcp:127.0.0.2:9060"),
            ("hep_tcp:10.0.0.5:9060", "relay:hep_tcp:10.0.0.6:9060"),
            // An IPv4-only listener does not receive what is sent to ::1.
            ("hep_udp:0.0.0.0:9060", "relay:hep_udp:[::1]:9060"),
            // A name other than localhost is not resolved here (the relay mark catches it).
            (
                "hep_tcp:0.0.0.0:9060",
                "relay:hep_tcp:homer.example.net:9060",
            ),
        ];
        for (listen, output) in fine {
            parse(&config(listen, output)).unwrap_or_else(|e| panic!("{listen} / {output}: {e}"));
        }
    }

    #[test]
    fn the_auth_key_is_stripped_unless_strip_is_false() {
        assert!(parse("").unwrap().strip_auth_key(), "without [auth]");
        let c = parse("[auth]\nkey = \"k\"").unwrap();
        assert!(c.auth.as_ref().unwrap().strip && c.strip_auth_key());
        let c = parse("[auth]\nkey = \"k\"\nstrip = false").unwrap();
        assert!(!c.strip_auth_key());
        assert!(
            parse("[auth]\nkey = \"k\"\nstrip = true")
                .unwrap()
                .strip_auth_key()
        );
    }

    #[test]
    fn spool_bounds_default_and_are_checked_together() {
        assert_eq!(parse("").unwrap().spool, SpoolConfig::default());
        let c = parse("[spool]\nmax_bytes = 1048576\nsegment_bytes = 65536\n").unwrap();
        assert_eq!(
            (c.spool.max_bytes, c.spool.segment_bytes),
            (1 << 20, 1 << 16)
        );
        assert_eq!(c.spool.replay_bytes, SpoolConfig::default().replay_bytes);
        let c = parse("[spool]\nreplay_margin_bytes = 4194304\n").unwrap();
        assert_eq!(c.spool.replay_margin_bytes, 4 << 20);
        let e = parse("\n[spool]\nmax_bytes = 100000\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:2:1: section [spool]: max_bytes (100000)"),
            "{e}"
        );
        let e = parse("[spool]\nsync_intervall_ms = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `sync_intervall_ms`"), "{e}");
    }

    #[test]
    fn relay_tls_needs_both_halves_of_a_client_certificate() {
        let c = parse("[relay_tls]\nca_file = \"ca.pem\"\nserver_name = \"homer\"").unwrap();
        assert_eq!(c.relay_tls.unwrap().server_name.as_deref(), Some("homer"));
        let e = parse("[relay_tls]\nca_file = \"ca.pem\"\ncert_file = \"c.pem\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:3:13: section [relay_tls]: set both"),
            "{e}"
        );
    }

    #[test]
    fn tls_listeners_and_relays_need_their_sections() {
        let e = parse("listen = [\"hep_udp:0.0.0.0\", \"hep_tls:0.0.0.0:9061\"]")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:1:30: key `listen`: a hep_tls listener needs a [tls] section"),
            "{e}"
        );
        let e = parse("outputs = [\"relay:hep_tls:homer:9061\"]")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:1:12: key `outputs`: a hep_tls relay needs a [relay_tls]"),
            "{e}"
        );
        parse("outputs = [\"relay:hep_tls:homer:9061\"]\n[relay_tls]\nca_file = \"ca.pem\"")
            .unwrap();
    }

    #[test]
    fn tls_clients_map_certificates_to_capture_ids() {
        let fp = format!("sha256:{}", ["ab"; 32].join(":"));
        let c = parse(&format!(
            "[tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\nclient_ca_file = \"ca.pem\"\n\
             [tls.clients]\n\"agent-a.example\" = [2001, 2002]\n\"{fp}\" = [3001]\n"
        ))
        .unwrap();
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(tls.clients["agent-a.example"], [2001, 2002]);
        let ids = tls.client_ids().unwrap();
        let a = hep_transport::ClientIdentity::new([0; 32], ["agent-a.example".to_owned()]);
        assert!(ids.allows(&a, 2002) && !ids.allows(&a, 3001));
        assert_eq!(parse(&c.to_toml()).unwrap(), c, "prints and parses back");

        let e = parse(
            "[tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n[tls.clients]\n\"a.example\" = [1]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("section [tls.clients]: needs `client_ca_file`"),
            "{e}"
        );
        let e = parse(
            "[tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\nclient_ca_file = \"ca.pem\"\n\
             [tls.clients]\n\"sha256:abcd\" = [1]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("hep.toml:5:1: section [tls.clients]: `sha256:abcd` is not"),
            "{e}"
        );
    }

    #[test]
    fn proto_types_are_names_or_numbers() {
        let c = parse("[filter]\nproto_types = [\"sip\", 100, \"5\"]").unwrap();
        let f = c.filter.unwrap();
        assert_eq!(
            f.proto_type_values().unwrap(),
            [ProtoType::Sip, ProtoType::Log, ProtoType::Rtcp]
        );
        assert_eq!(f.proto_types.unwrap(), ["sip", "100", "5"]);
    }

    #[test]
    fn store_settings_are_checked() {
        let c =
            parse("[store]\nmax_age_hours = 0\npartition_minutes = 1440\nbatch_size = 5").unwrap();
        assert_eq!(
            (
                c.store.max_age_hours,
                c.store.partition_minutes,
                c.store.batch_size
            ),
            (0, 1440, 5)
        );
        assert_eq!(c.store.max_size_mb, 10_240);
        let e = parse("[store]\npartition_minutes = 0")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("hep.toml:2:21: key `store.partition_minutes`: expected 1 to 1440"),
            "{e}"
        );
        let e = parse("[store]\nretention = 3").unwrap_err().to_string();
        assert!(
            e.starts_with("hep.toml:2:1: unknown field `retention`"),
            "{e}"
        );
    }

    #[test]
    fn hep_async_takes_opensips_0_and_1() {
        assert!(!parse("hep_async = 0").unwrap().hep_async);
        assert!(parse("hep_async = 1").unwrap().hep_async);
        assert!(!parse("hep_async = false").unwrap().hep_async);
    }

    #[test]
    fn effective_config_prints_and_parses_back() {
        let c = parse("[auth]\nkey = \"k\"\nkeys = { 2001 = \"a\" }\n[dedup]\nwindow_ms = 500")
            .unwrap();
        let printed = c.to_toml();
        assert!(printed.contains("hep_max_msg_chunks = 32"), "{printed}");
        let again = parse(&printed).unwrap();
        assert_eq!(again.to_toml(), printed);
    }

    #[test]
    fn printed_and_debugged_configs_show_that_keys_are_set_never_the_keys() {
        let c =
            parse("[auth]\nkey = \"shared-s3cret\"\nkeys = { 2001 = \"agent-s3cret\" }\n").unwrap();
        let auth = c.auth.as_ref().unwrap();
        assert_eq!(auth.key.as_deref(), Some("shared-s3cret"), "kept for use");
        for shown in [c.to_toml(), format!("{c:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(
                shown.contains(REDACTED) && shown.contains("2001"),
                "{shown}"
            );
        }
    }
}
