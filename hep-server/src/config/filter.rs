//! `[filter]`: which messages to keep, by protocol type, capture id, networks and SIP
//! method.

use std::net::IpAddr;

use hep_proto::ProtoType;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::{ConfigError, Source};

/// `[filter]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    /// Names or numbers: `["sip", 100]`.
    proto_types: Option<Vec<Spanned<toml::Value>>>,
    capture_ids: Option<Vec<u32>>,
    agent_networks: Option<Vec<Spanned<String>>>,
    source_networks: Option<Vec<Spanned<String>>>,
    allow_sip_methods: Option<Vec<String>>,
    deny_sip_methods: Option<Vec<String>>,
}

/// Filter rules (`[filter]`); see [`hep_callbacks::Filter`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// `[filter]`, its protocol types and networks parsed.
pub(super) fn resolve(f: RawFilter, src: &Source<'_>) -> Result<FilterConfig, ConfigError> {
    let mut proto_type_values = Vec::new();
    let mut proto_type_names = Vec::new();
    for t in f.proto_types.iter().flatten() {
        let name = match t.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            other => other.to_string(),
        };
        proto_type_values.push(ProtoType::parse(&name).ok_or_else(|| {
            src.error(
                t.span(),
                format!(
                    "key `filter.proto_types`: unknown protocol type `{name}` \
                     (expected a number 0-255 or a name such as sip, log, rtcp)"
                ),
            )
        })?);
        proto_type_names.push(name);
    }
    let nets =
        |list: &Option<Vec<Spanned<String>>>, key: &str| -> Result<Vec<IpNet>, ConfigError> {
            list.iter()
                .flatten()
                .map(|n| {
                    parse_net(n.get_ref()).ok_or_else(|| {
                        src.error(
                            n.span(),
                            format!(
                                "key `filter.{key}`: expected a network like 10.0.0.0/8 or ::1/128"
                            ),
                        )
                    })
                })
                .collect()
        };
    let agent_net_values = nets(&f.agent_networks, "agent_networks")?;
    let source_net_values = nets(&f.source_networks, "source_networks")?;
    let strings = |l: Option<Vec<Spanned<String>>>| {
        l.map(|l| l.into_iter().map(Spanned::into_inner).collect())
    };
    Ok(FilterConfig {
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

/// A CIDR network, or a single address as a /32 or /128.
fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}
