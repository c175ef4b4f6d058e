//! Source-network allowlists: which agents a listener hears (`;allow=10.0.0.0/8,192.0.2.7`).
//!
//! A listener with an allowlist refuses everything from other addresses before any other
//! work: a UDP datagram is dropped before it is copied or decoded, a TCP/TLS connection
//! is closed right after `accept()`, before a TLS handshake or a read. Both are counted as
//! `rejected{reason="source_not_allowed"}`.
//!
//! The check runs per datagram, so it is a few integer compares: each network is kept as
//! a (network, mask) pair per address family, and an address is compared only with the
//! networks of its family. A listener without an allowlist does not check at all.
//!
//! A UDP source address can be forged by anyone who can send packets to the collector
//! (a TCP peer cannot, without the handshake): for UDP, an allowlist keeps out
//! misconfigured agents and scanners, not a determined attacker. Combine it with the auth
//! key, or use TLS with client certificates.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;

/// The networks a listener accepts agents from.
///
/// A listener with an allowlist ([`ListenerConfig::allow`](crate::ListenerConfig::allow))
/// refuses everything from other addresses before any other work: a UDP datagram is
/// dropped before it is copied or decoded, a TCP/TLS connection is closed right after
/// `accept()`, before a TLS handshake or a read. Both are counted as
/// `rejected{reason="source_not_allowed"}`. The check is a few integer compares per
/// datagram; a listener without an allowlist does not check at all.
///
/// A UDP source address can be forged: for UDP an allowlist keeps out misconfigured
/// agents and scanners, not a determined attacker.
///
/// Parsed from a comma-separated list of networks (`10.0.0.0/8`) and single addresses
/// (`192.0.2.7`, `::1`), IPv4 and IPv6 mixed; printed back in the same form. An
/// IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) matches the IPv4 networks.
///
/// ```
/// use hep_transport::SourceAllowlist;
///
/// let allow: SourceAllowlist = "10.0.0.0/8,192.0.2.7,2001:db8::/32".parse().unwrap();
/// assert!(allow.contains("10.20.30.40".parse().unwrap()));
/// assert!(allow.contains("192.0.2.7".parse().unwrap()));
/// assert!(!allow.contains("192.0.2.8".parse().unwrap()));
/// assert!(allow.contains("::ffff:10.1.1.1".parse().unwrap()));
/// assert_eq!(allow.to_string(), "10.0.0.0/8,192.0.2.7,2001:db8::/32");
/// assert!("10.0.0.0/33".parse::<SourceAllowlist>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceAllowlist(Arc<Inner>);

#[derive(Debug, PartialEq, Eq, Hash)]
struct Inner {
    /// As written (host bits cleared), for printing.
    nets: Vec<IpNet>,
    /// IPv4 networks as (network, mask).
    v4: Vec<(u32, u32)>,
    /// IPv6 networks as (network, mask).
    v6: Vec<(u128, u128)>,
}

impl SourceAllowlist {
    /// An allowlist of `nets` (host bits are cleared: `10.1.2.3/8` is `10.0.0.0/8`).
    ///
    /// # Errors
    /// An empty list: a listener that accepts no one is a mistake, not a setting.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Result<Self, AllowlistError> {
        let nets: Vec<IpNet> = nets.into_iter().map(|n| n.trunc()).collect();
        if nets.is_empty() {
            return Err(AllowlistError::Empty);
        }
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in &nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.netmask()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.netmask()))),
            }
        }
        Ok(Self(Arc::new(Inner { nets, v4, v6 })))
    }

    /// Whether `ip` is in one of the networks.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let inner = &*self.0;
        match ip {
            IpAddr::V4(ip) => contains_v4(&inner.v4, u32::from(ip)),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(v4) => contains_v4(&inner.v4, u32::from(v4)),
                None => {
                    let ip = u128::from(ip);
                    inner.v6.iter().any(|&(net, mask)| ip & mask == net)
                }
            },
        }
    }

    /// The networks, as given (host bits cleared).
    pub fn networks(&self) -> &[IpNet] {
        &self.0.nets
    }
}

#[inline]
fn contains_v4(nets: &[(u32, u32)], ip: u32) -> bool {
    nets.iter().any(|&(net, mask)| ip & mask == net)
}

/// Why an allowlist could not be parsed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    /// No network at all.
    #[error("an allowlist needs at least one network")]
    Empty,
    /// An entry is neither a network nor an address.
    #[error("`{0}` is not a network (10.0.0.0/8, 2001:db8::/32) or an address (192.0.2.7)")]
    BadNetwork(String),
}

impl FromStr for SourceAllowlist {
    type Err = AllowlistError;

    fn from_str(s: &str) -> Result<Self, AllowlistError> {
        let nets = s
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| parse_net(n).ok_or_else(|| AllowlistError::BadNetwork(n.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(nets)
    }
}

/// A network, or a single address as a /32 or /128.
fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

impl fmt::Display for SourceAllowlist {
    /// `10.0.0.0/8,192.0.2.7`: single addresses without their prefix length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if net.prefix_len() == net.max_prefix_len() {
                write!(f, "{}", net.addr())?;
            } else {
                write!(f, "{net}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(s: &str) -> SourceAllowlist {
        s.parse().unwrap()
    }

    #[test]
    fn networks_match_their_addresses_only() {
        let a = allow("10.0.0.0/8, 127.0.0.1, ::1, 2001:db8:20::/48");
        for yes in [
            "10.0.0.0",
            "10.255.255.255",
            "127.0.0.1",
            "::1",
            "2001:db8:20:ffff::9",
        ] {
            assert!(a.contains(yes.parse().unwrap()), "{yes}");
        }
        for no in ["11.0.0.0", "127.0.0.2", "::2", "2001:db8:21::1", "0.0.0.0"] {
            assert!(!a.contains(no.parse().unwrap()), "{no}");
        }
    }

    #[test]
    fn host_bits_are_cleared_and_printing_round_trips() {
        let a = allow("10.1.2.3/8,192.0.2.7/32,::1");
        assert_eq!(a.to_string(), "10.0.0.0/8,192.0.2.7,::1");
        assert_eq!(allow(&a.to_string()), a);
        assert!(a.contains("10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn an_ipv4_mapped_peer_matches_the_ipv4_networks() {
        let a = allow("192.0.2.0/24");
        assert!(a.contains("::ffff:192.0.2.9".parse().unwrap()));
        assert!(!a.contains("::ffff:192.0.3.9".parse().unwrap()));
    }

    #[test]
    fn mistakes_are_errors() {
        assert_eq!("".parse::<SourceAllowlist>(), Err(AllowlistError::Empty));
        assert_eq!(" , ".parse::<SourceAllowlist>(), Err(AllowlistError::Empty));
        assert_eq!(
            "10.0.0.0/8,localhost".parse::<SourceAllowlist>(),
            Err(AllowlistError::BadNetwork("localhost".into()))
        );
        assert!("10.0.0.0/33".parse::<SourceAllowlist>().is_err());
    }

    #[test]
    fn allow_everything_is_expressible() {
        let a = allow("0.0.0.0/0,::/0");
        assert!(a.contains("203.0.113.1".parse().unwrap()));
        assert!(a.contains("2001:db8::1".parse().unwrap()));
    }
}
