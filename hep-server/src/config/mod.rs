//! The configuration file (TOML): what the operator wrote, checked and resolved into a
//! [`Config`] with the seed's parameter names.
//!
//! Every key, its default and its meaning are listed in `docs/CONFIG.md`; `hep-server
//! check-config --config FILE` prints the effective configuration. Unknown keys and bad
//! values are errors naming the file, the line and the key. Without a file the embedded
//! defaults apply: HEP over UDP and TCP on `0.0.0.0:5656`, every message kept in the
//! store `hep-store` (`store:hep-store`).
//!
//! ```toml
//! listen = ["hep_udp:0.0.0.0:9060", "hep_tcp:0.0.0.0:9060"]
//! outputs = ["json:/var/log/hep.jsonl"]
//! hep_capture_id = 1
//!
//! [auth]
//! key = "hep-secret"
//! ```
//!
//! One module per section: each has the section as written (`Raw...`, deserialized with
//! the spans of the values that are checked) and its `resolve`, which fills in the
//! defaults and checks the values. A section that configures a component resolves into
//! that component's own type (`[store]` into [`StoreConfig`], `[spool]` into
//! [`SpoolConfig`], `[relay_tls]` into [`RelayTlsConfig`], `[log]` into [`LogConfig`]):
//! the components do not know this file. Listen and output specs are parsed once, here,
//! and kept typed with their text ([`Written`]).

use std::path::Path;
use std::time::Duration;

use hep_transport::{HEP_PORT, ListenOn};
use serde::{Deserialize, Serialize};
use toml::Spanned;

mod aliases;
mod auth;
mod cluster;
mod correlation;
mod dedup;
mod error;
mod filter;
mod http;
mod inputs;
mod kpi;
mod limits;
mod listen;
mod log;
mod metrics;
mod outputs;

pub use listen::default as default_listen;
mod rate_limit;
mod relay;
mod rewrite;
mod spool;
mod store;
#[cfg(test)]
mod tests;
mod tls;
mod written;

pub use auth::{AuthConfig, REDACTED};
pub use dedup::DedupConfig;
pub use error::ConfigError;
pub use filter::FilterConfig;
pub use limits::Limits;
pub use metrics::MetricsConfig;
pub use rate_limit::RateLimitConfig;
pub use rewrite::RewriteConfig;
pub use tls::TlsConfig;
pub use written::Written;

use crate::aliases::Aliases;
use crate::http::HttpConfig;
use crate::nats::NatsInputSpec;
use crate::outputs::conflict::conflict;
use crate::outputs::relay::spool::SpoolConfig;
use crate::outputs::relay::{RelaySettings, RelayTlsConfig};
use crate::outputs::{OutputConflict, OutputSettings, OutputSpec};
use crate::store::StoreConfig;
use crate::telemetry::log::LogConfig;
use error::{Source, key_at, section_at};

// ===== the file as written =====

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Vec<Spanned<String>>>,
    outputs: Option<Vec<Spanned<String>>>,
    inputs: Option<Vec<Spanned<String>>>,
    hep_port: Option<u16>,
    hep_send_timeout: Option<u64>,
    hep_max_msg_chunks: Option<u32>,
    hep_async: Option<Spanned<toml::Value>>,
    hep_async_max_postponed_chunks: Option<usize>,
    hep_capture_id: Option<u32>,
    hep_async_local_connect_timeout: Option<u64>,
    hep_async_local_write_timeout: Option<u64>,
    #[serde(default)]
    limits: limits::RawLimits,
    tls: Option<tls::RawTls>,
    relay_tls: Option<relay::RawRelayTls>,
    metrics: Option<metrics::RawMetrics>,
    log: Option<log::RawLog>,
    auth: Option<auth::RawAuth>,
    filter: Option<filter::RawFilter>,
    rewrite: Option<rewrite::RawRewrite>,
    dedup: Option<dedup::RawDedup>,
    rate_limit: Option<rate_limit::RawRateLimit>,
    store: Option<store::RawStore>,
    spool: Option<spool::RawSpool>,
    http: Option<http::RawHttp>,
    aliases: Option<aliases::RawAliases>,
    kpi: Option<kpi::RawKpi>,
    correlation: Option<correlation::RawCorrelation>,
    cluster: Option<cluster::RawCluster>,
}

/// The specs of `listen` or `outputs`, and where the file first asks for TLS among them
/// (a missing `[tls]` or `[relay_tls]` is reported there).
struct Specs<T> {
    specs: Vec<Written<T>>,
    tls_at: Option<std::ops::Range<usize>>,
}

// ===== the effective configuration =====

/// The effective configuration: every value resolved, defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Where to listen (`listen`): default UDP and TCP on 0.0.0.0, port `hep_port`.
    pub listen: Vec<Written<ListenOn>>,
    /// Where messages go (`outputs`): default `store:hep-store`.
    pub outputs: Vec<Written<OutputSpec>>,
    /// Where messages come from besides the listeners (`inputs`): a cluster's consumer,
    /// `nats:URL[,URL...];partitions=A-B`. A node with inputs and no `listen` has no
    /// listeners.
    pub inputs: Vec<Written<NatsInputSpec>>,
    /// Default port of listen specs and relay destinations without one (seed
    /// `hep_port`, 5656).
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
    /// The HTTP API and page (`[http]`): on by default on 127.0.0.1:9080.
    pub http: HttpConfig,
    /// Names for addresses (`[aliases]`), shown by the ladders; reloaded on SIGHUP.
    pub aliases: Aliases,
    /// The SIP KPIs (`[kpi]`): on by default.
    pub kpi: crate::kpi::KpiConfig,
    /// What links the legs of a call in the store (`[correlation]`; the store's copy is
    /// `store.correlation`).
    pub correlation: crate::store::Correlation,
    /// The other nodes searches ask (`[cluster]`): none by default.
    pub cluster: crate::cluster::ClusterConfig,
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

    /// The effective configuration as TOML, for `check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    /// The keys a running server cannot change (a reload logs them as needing a restart
    /// and keeps the running values): listeners and their limits, TLS, metrics, logging,
    /// the HTTP API, the KPIs' call table, the cluster's peers.
    /// Empty when `new` differs from `self` in reloadable keys only.
    pub fn restart_only_changes(&self, new: &Self) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |key, same: bool| {
            if !same {
                changed.push(key);
            }
        };
        // As written (`hep_port`, which a spec without a port depends on, is checked on
        // its own).
        let listen = self.listen.iter().map(Written::text);
        check("listen", listen.eq(new.listen.iter().map(Written::text)));
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
        check("[http]", self.http == new.http);
        check("[kpi]", self.kpi == new.kpi);
        check("[correlation]", self.correlation == new.correlation);
        check("[cluster]", self.cluster == new.cluster);
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
            http: self.http.clone(),
            kpi: self.kpi.clone(),
            correlation: self.correlation.clone(),
            cluster: self.cluster.clone(),
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
        let outputs: Vec<(&str, &OutputSpec)> =
            self.outputs.iter().map(|o| (o.text(), o.value())).collect();
        match conflict(self.listen.iter().map(Written::value), &outputs) {
            Some(conflict) => Err(conflict),
            None => Ok(()),
        }
    }

    /// The directory of the first `store:DIR` output: what the HTTP API reads.
    pub fn store_dir(&self) -> Option<&Path> {
        self.outputs.iter().find_map(|o| match o.value() {
            OutputSpec::Store(dir) => Some(dir.as_path()),
            _ => None,
        })
    }

    /// What the outputs are started with besides their specs: the relays' settings
    /// (`hep_async*`, `hep_send_timeout`, `[relay_tls]`), `[spool]` and `[store]`.
    pub fn output_settings(&self) -> OutputSettings {
        OutputSettings {
            relay: RelaySettings {
                hep_async: self.hep_async,
                hep_send_timeout: self.hep_send_timeout,
                hep_async_max_postponed_chunks: self.hep_async_max_postponed_chunks,
                hep_async_local_connect_timeout: self.hep_async_local_connect_timeout,
                hep_async_local_write_timeout: self.hep_async_local_write_timeout,
                relay_tls: self.relay_tls.clone(),
            },
            spool: self.spool,
            store: self.store.clone(),
        }
    }

    /// `Duration` helper for the millisecond settings.
    pub const fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
}

/// The file as written, resolved section by section; the first error is reported (the
/// order below decides which, when there are several).
fn resolve(raw: RawConfig, path: &Path, text: &str) -> Result<Config, ConfigError> {
    let src = Source { path, text };
    let hep_port = raw.hep_port.unwrap_or(HEP_PORT);
    let inputs = inputs::resolve(raw.inputs, &src)?;
    // A consumer node listens only where it is told to.
    let raw_listen = match (&raw.listen, inputs.is_empty()) {
        (None, false) => Some(Vec::new()),
        _ => raw.listen,
    };
    // Where the file asks for TLS, so that a missing section is reported there.
    let Specs {
        specs: listen,
        tls_at: tls_listener,
    } = listen::resolve(raw_listen, hep_port, &src)?;
    let Specs {
        specs: outputs,
        tls_at: tls_relay,
    } = outputs::resolve(raw.outputs, hep_port, &listen, &src)?;
    let hep_async = relay::hep_async(raw.hep_async, &src)?;
    let limits = limits::resolve(raw.limits);
    let relay_tls = relay::relay_tls(raw.relay_tls, &src)?;
    if let (Some(span), None) = (tls_listener, &raw.tls) {
        return Err(src.error(
            span,
            "key `listen`: a hep_tls listener needs a [tls] section with cert_file and key_file",
        ));
    }
    if let (Some(span), None) = (tls_relay, &relay_tls) {
        return Err(src.error(
            span,
            "key `outputs`: a hep_tls relay needs a [relay_tls] section with ca_file (the CA \
             that signed the collector's certificate)",
        ));
    }
    let tls = raw.tls.map(|t| tls::resolve(t, &src)).transpose()?;
    let metrics = raw.metrics.map(|m| metrics::resolve(m, &src)).transpose()?;
    let log = log::resolve(raw.log, &src)?;
    let auth = raw.auth.map(|a| auth::resolve(a, &src)).transpose()?;
    let filter = raw.filter.map(|f| filter::resolve(f, &src)).transpose()?;
    let spool = spool::resolve(raw.spool, &src)?;
    let mut store = store::resolve(raw.store, &src)?;
    let correlation = correlation::resolve(raw.correlation, &src)?;
    store.correlation = correlation.clone();
    let http = http::resolve(raw.http, &src)?;
    let aliases = aliases::resolve(raw.aliases, &src)?;
    let kpi = kpi::resolve(raw.kpi, &src)?;
    let cluster = cluster::resolve(raw.cluster, &src)?;
    Ok(Config {
        listen,
        outputs,
        inputs,
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
        rewrite: raw.rewrite.map(rewrite::resolve),
        dedup: raw.dedup.map(dedup::resolve),
        rate_limit: raw.rate_limit.map(rate_limit::resolve),
        spool,
        store,
        http,
        aliases,
        kpi,
        correlation,
        cluster,
    })
}
