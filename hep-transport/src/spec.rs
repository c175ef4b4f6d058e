//! Listen specs: `hep_udp:IP[:PORT]`, `hep_tcp:IP[:PORT]`, `hep_tls:IP[:PORT]`, and with
//! options: `hep_udp:0.0.0.0:9060;allow=10.0.0.0/8,192.0.2.7`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::{SourceAllowlist, Transport};

/// The port a listen spec or a destination without one uses: the seed's `hep_port` as
/// documented (5656). One default for both, so that a sender and a collector left to
/// their defaults meet.
///
/// (OpenSIPS's code says 9060 while its README says 5656; we follow the documented seed
/// contract. Most agents (Kamailio `siptrace`, heplify, captagent, OpenSIPS's `hep_id`)
/// send to 9060 by default: listen there explicitly if yours do,
/// `hep_udp:0.0.0.0:9060`.)
pub const HEP_PORT: u16 = 5656;

/// A spec that could not be parsed; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{input}`: {reason}")]
pub struct SpecError {
    what: &'static str,
    input: String,
    reason: &'static str,
}

impl SpecError {
    /// A spec error about `input`, which is a `what` (e.g. "listen spec").
    pub fn new(what: &'static str, input: &str, reason: &'static str) -> Self {
        Self {
            what,
            input: input.to_owned(),
            reason,
        }
    }
}

/// Where to listen: `hep_udp:IP[:PORT]`, `hep_tcp:IP[:PORT]` or `hep_tls:IP[:PORT]`.
///
/// IPv6 addresses are written in brackets when a port follows (`hep_udp:[::1]:9060`);
/// a bare IPv6 address takes the default port.
///
/// ```
/// use hep_transport::{ListenSpec, Transport};
///
/// let spec: ListenSpec = "hep_tcp:127.0.0.1:9060".parse().unwrap();
/// assert_eq!(spec.transport, Transport::Tcp);
/// assert_eq!(spec.addr.port(), 9060);
/// let spec: ListenSpec = "hep_udp:[::1]".parse().unwrap();
/// assert_eq!(spec.addr.port(), hep_transport::HEP_PORT);
/// assert_eq!(spec.to_string(), "hep_udp:[::1]:5656");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenSpec {
    /// The transport.
    pub transport: Transport,
    /// The local address and port.
    pub addr: SocketAddr,
}

impl ListenSpec {
    /// A spec.
    pub const fn new(transport: Transport, addr: SocketAddr) -> Self {
        Self { transport, addr }
    }

    /// Parses a spec, using `default_port` when it has none (the seed's `hep_port`).
    ///
    /// # Errors
    /// A [`SpecError`] saying what was expected.
    pub fn parse_with_default_port(s: &str, default_port: u16) -> Result<Self, SpecError> {
        let err = |reason| SpecError::new("listen spec", s, reason);
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| err("expected hep_udp|hep_tcp|hep_tls:IP[:PORT]"))?;
        let transport = Transport::parse(scheme)
            .filter(|_| scheme.to_ascii_lowercase().starts_with("hep_"))
            .ok_or_else(|| err("the transport must be hep_udp, hep_tcp or hep_tls"))?;
        let addr = parse_ip_port(rest, default_port)
            .ok_or_else(|| err("expected an IP address with an optional :PORT"))?;
        Ok(Self { transport, addr })
    }
}

impl FromStr for ListenSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        Self::parse_with_default_port(s, HEP_PORT)
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.scheme(), self.addr)
    }
}

/// A listen spec with its options, as `listen = [...]` and `--listen` take it:
/// `SPEC[;allow=NETWORKS]`.
///
/// - `allow=NET,NET,...`: a [`SourceAllowlist`]; the listener refuses agents from other
///   addresses before reading anything from them (see
///   [`ListenerConfig::allow`](crate::ListenerConfig::allow)).
///
/// ```
/// use hep_transport::{ListenOn, Transport};
///
/// let l: ListenOn = "hep_udp:0.0.0.0:9060;allow=10.0.0.0/8,192.0.2.7".parse().unwrap();
/// assert_eq!(l.spec.transport, Transport::Udp);
/// assert!(l.allow.as_ref().unwrap().contains("10.1.2.3".parse().unwrap()));
/// assert_eq!(l.to_string(), "hep_udp:0.0.0.0:9060;allow=10.0.0.0/8,192.0.2.7");
/// let plain: ListenOn = "hep_tcp:127.0.0.1".parse().unwrap();
/// assert_eq!(plain.allow, None);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenOn {
    /// Where to listen.
    pub spec: ListenSpec,
    /// `allow=`: the agents' networks, if restricted.
    pub allow: Option<SourceAllowlist>,
}

impl ListenOn {
    /// A spec without options.
    pub const fn new(spec: ListenSpec) -> Self {
        Self { spec, allow: None }
    }

    /// This spec, accepting agents from `allow` only.
    #[must_use]
    pub fn with_allow(mut self, allow: SourceAllowlist) -> Self {
        self.allow = Some(allow);
        self
    }

    /// Parses `SPEC[;allow=NETWORKS]`, using `default_port` when the spec has none.
    ///
    /// # Errors
    /// A [`SpecError`] saying what was expected.
    pub fn parse_with_default_port(s: &str, default_port: u16) -> Result<Self, SpecError> {
        let mut parts = s.split(';');
        let spec = ListenSpec::parse_with_default_port(
            parts.next().unwrap_or_default().trim(),
            default_port,
        )
        .map_err(|e| SpecError::new("listen spec", s, e.reason))?;
        let mut listen = Self::new(spec);
        for option in parts {
            let err = |reason| SpecError::new("listen spec", s, reason);
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| err("expected an option as key=value, e.g. allow=10.0.0.0/8"))?;
            match key.trim() {
                "allow" if listen.allow.is_some() => return Err(err("allow= is given twice")),
                "allow" => {
                    let allow = value.parse::<SourceAllowlist>().map_err(|_| {
                        err("allow= expects networks or addresses separated by commas, \
                             e.g. allow=10.0.0.0/8,192.0.2.7")
                    })?;
                    listen.allow = Some(allow);
                }
                _ => return Err(err("the only listen option is allow=NETWORKS")),
            }
        }
        Ok(listen)
    }
}

impl FromStr for ListenOn {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        Self::parse_with_default_port(s, HEP_PORT)
    }
}

impl From<ListenSpec> for ListenOn {
    fn from(spec: ListenSpec) -> Self {
        Self::new(spec)
    }
}

impl fmt::Display for ListenOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.spec)?;
        if let Some(allow) = &self.allow {
            write!(f, ";allow={allow}")?;
        }
        Ok(())
    }
}

/// `IP`, `IP:PORT`, `[IPv6]`, `[IPv6]:PORT` or a bare IPv6 address.
pub(crate) fn parse_ip_port(s: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_specs_parse() {
        let cases = [
            ("hep_udp:0.0.0.0", Transport::Udp, "0.0.0.0:5656"),
            ("hep_udp:127.0.0.1:9060", Transport::Udp, "127.0.0.1:9060"),
            ("hep_tcp:[::1]:9061", Transport::Tcp, "[::1]:9061"),
            ("hep_tls:::", Transport::Tls, "[::]:5656"),
            ("HEP_TLS:[::]", Transport::Tls, "[::]:5656"),
        ];
        for (input, t, addr) in cases {
            let spec: ListenSpec = input.parse().unwrap();
            assert_eq!(
                (spec.transport, spec.addr),
                (t, addr.parse().unwrap()),
                "{input}"
            );
        }
    }

    #[test]
    fn bad_listen_specs_say_what_was_expected() {
        let e = "udp:1.2.3.4".parse::<ListenSpec>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid listen spec `udp:1.2.3.4`: the transport must be hep_udp, hep_tcp or hep_tls"
        );
        assert!("hep_udp:localhost".parse::<ListenSpec>().is_err());
        assert!("hep_udp:1.2.3.4:99999".parse::<ListenSpec>().is_err());
        assert!("hep_udp".parse::<ListenSpec>().is_err());
    }

    #[test]
    fn listen_options_parse_and_print_back() {
        let l: ListenOn = "hep_tcp:[::]:9061;allow=2001:db8::/32, 127.0.0.1"
            .parse()
            .unwrap();
        assert_eq!(l.spec.addr, "[::]:9061".parse().unwrap());
        assert_eq!(
            l.to_string(),
            "hep_tcp:[::]:9061;allow=2001:db8::/32,127.0.0.1"
        );
        assert_eq!(l.to_string().parse::<ListenOn>().unwrap(), l);
        let l =
            ListenOn::parse_with_default_port("hep_udp:10.0.0.1;allow=10.0.0.0/8", 9060).unwrap();
        assert_eq!(l.spec.addr.port(), 9060);
    }

    #[test]
    fn bad_listen_options_say_what_was_expected() {
        let e = |s: &str| s.parse::<ListenOn>().unwrap_err().to_string();
        assert_eq!(
            e("hep_udp:0.0.0.0;allow=10.0.0.0/33"),
            "invalid listen spec `hep_udp:0.0.0.0;allow=10.0.0.0/33`: allow= expects \
             networks or addresses separated by commas, e.g. allow=10.0.0.0/8,192.0.2.7"
        );
        assert!(e("hep_udp:0.0.0.0;allow=").contains("allow= expects"));
        assert!(e("hep_udp:0.0.0.0;deny=10.0.0.0/8").contains("the only listen option"));
        assert!(e("hep_udp:0.0.0.0;allow").contains("key=value"));
        assert!(e("hep_udp:0.0.0.0;allow=::1;allow=::2").contains("twice"));
        assert!(e("udp:0.0.0.0;allow=::1").contains("the transport must be"));
    }
}
