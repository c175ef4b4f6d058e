//! Filters by protocol type, capture id, network and SIP method.

use std::net::IpAddr;

use hep_proto::ProtoType;
use hep_proto::Received;
use hep_proto::sip::StartLine;
use ipnet::IpNet;

use crate::{HepCallback, Verdict};

/// Lets through only what matches every configured rule; the rest is rejected with the
/// name of the rule it failed (`proto_type`, `capture_id`, `agent_network`,
/// `source_network`, `sip_method`). An unset rule matches everything.
///
/// ```
/// use hep_callbacks::Filter;
/// use hep_proto::ProtoType;
/// let filter = Filter::new()
///     .proto_types([ProtoType::Sip, ProtoType::Log])
///     .agent_networks(["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()])
///     .deny_sip_methods(["OPTIONS", "REGISTER"]);
/// # drop(filter);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Filter {
    proto_types: Option<Vec<ProtoType>>,
    capture_ids: Option<Vec<u32>>,
    agent_networks: Option<Vec<IpNet>>,
    source_networks: Option<Vec<IpNet>>,
    allow_sip_methods: Option<Vec<Vec<u8>>>,
    deny_sip_methods: Vec<Vec<u8>>,
}

impl Filter {
    /// A filter that lets everything through until rules are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only these protocol types (a message without one fails).
    #[must_use]
    pub fn proto_types(mut self, types: impl IntoIterator<Item = ProtoType>) -> Self {
        self.proto_types = Some(types.into_iter().collect());
        self
    }

    /// Only these capture ids (a message without one fails).
    #[must_use]
    pub fn capture_ids(mut self, ids: impl IntoIterator<Item = u32>) -> Self {
        self.capture_ids = Some(ids.into_iter().collect());
        self
    }

    /// Only agents (the HEP sender's address) in these networks: an allowlist.
    #[must_use]
    pub fn agent_networks(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.agent_networks = Some(nets.into_iter().collect());
        self
    }

    /// Only captured packets whose source address is in these networks.
    #[must_use]
    pub fn source_networks(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.source_networks = Some(nets.into_iter().collect());
        self
    }

    /// Only SIP requests with these methods (responses and non-SIP pass this rule).
    #[must_use]
    pub fn allow_sip_methods<M: AsRef<str>>(
        mut self,
        methods: impl IntoIterator<Item = M>,
    ) -> Self {
        self.allow_sip_methods = Some(methods.into_iter().map(|m| upper(m.as_ref())).collect());
        self
    }

    /// No SIP requests with these methods.
    #[must_use]
    pub fn deny_sip_methods<M: AsRef<str>>(mut self, methods: impl IntoIterator<Item = M>) -> Self {
        self.deny_sip_methods = methods.into_iter().map(|m| upper(m.as_ref())).collect();
        self
    }
}

fn upper(m: &str) -> Vec<u8> {
    m.to_ascii_uppercase().into_bytes()
}

fn in_nets(nets: &[IpNet], ip: Option<IpAddr>) -> bool {
    // An IPv4-mapped IPv6 agent (dual-stack socket) matches IPv4 networks too.
    let ip = ip.map(|ip| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    });
    ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)))
}

impl HepCallback for Filter {
    fn call(&self, r: &mut Received) -> Verdict {
        let m = &r.message;
        if let Some(types) = &self.proto_types
            && !m.proto_type.is_some_and(|t| types.contains(&t))
        {
            return Verdict::Reject("proto_type");
        }
        if let Some(ids) = &self.capture_ids
            && !m.capture_id.is_some_and(|id| ids.contains(&id))
        {
            return Verdict::Reject("capture_id");
        }
        if let Some(nets) = &self.agent_networks
            && !in_nets(nets, Some(r.info.peer.ip()))
        {
            return Verdict::Reject("agent_network");
        }
        if let Some(nets) = &self.source_networks
            && !in_nets(nets, m.src_ip)
        {
            return Verdict::Reject("source_network");
        }
        if self.allow_sip_methods.is_some() || !self.deny_sip_methods.is_empty() {
            let is_sip = matches!(m.proto_type, None | Some(ProtoType::Sip));
            // Requests only: a response passes whatever its CSeq names.
            let payload = m.payload.bytes();
            if let Some(method) = is_sip
                .then(|| StartLine::parse(payload))
                .flatten()
                .and_then(|s| s.method())
                .map(str::as_bytes)
            {
                let allowed = self
                    .allow_sip_methods
                    .as_ref()
                    .is_none_or(|a| a.iter().any(|x| x == method));
                if !allowed || self.deny_sip_methods.iter().any(|x| x == method) {
                    return Verdict::Reject("sip_method");
                }
            }
        }
        Verdict::Continue
    }

    fn name(&self) -> &'static str {
        "filter"
    }

    fn reasons(&self) -> &'static [&'static str] {
        &[
            "proto_type",
            "capture_id",
            "agent_network",
            "source_network",
            "sip_method",
        ]
    }
}
