//! Where a sender sends: OpenSIPS `hep_id` destinations and hep-server relay specs.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use hep_proto::HepVersion;

use crate::{SpecError, Transport};

/// The port a destination without one uses: [`HEP_PORT`](crate::HEP_PORT) (5656), the
/// port a listen spec without one listens on, so that a sender and a collector left to
/// their defaults meet (`hep-server send --dest hep_tcp:127.0.0.1` reaches
/// `hep-server run`). [`HepDestination::parse_with_default_port`] takes another (the
/// config's `hep_port`).
///
/// OpenSIPS's `hep_id` and most agents (Kamailio `siptrace`, heplify, captagent) default
/// to 9060: give the port, or listen there too (`--listen hep_udp:0.0.0.0:9060`).
pub const DEFAULT_DESTINATION_PORT: u16 = crate::HEP_PORT;

const WHAT: &str = "HEP destination";

/// The host part of a [`HepDestination`]: an IP address or a host name resolved at
/// connect time.
///
/// ```
/// use hep_transport::sender::Host;
///
/// let h: Host = "homer.example.net".parse()?;
/// assert_eq!(h.as_name(), Some("homer.example.net"));
/// let h: Host = "::1".parse()?;
/// assert_eq!(h.as_ip(), Some("::1".parse().unwrap()));
/// assert!("bad host!".parse::<Host>().is_err());
/// # Ok::<(), hep_transport::SpecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Host(HostKind);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostKind {
    Ip(IpAddr),
    Name(String),
}

// ===== impl Host =====

impl Host {
    /// A host given by its address.
    pub const fn ip(ip: IpAddr) -> Self {
        Self(HostKind::Ip(ip))
    }

    /// The address, when the host is an IP address.
    pub const fn as_ip(&self) -> Option<IpAddr> {
        match &self.0 {
            HostKind::Ip(ip) => Some(*ip),
            HostKind::Name(_) => None,
        }
    }

    /// The name, when the host is a name to resolve.
    pub fn as_name(&self) -> Option<&str> {
        match &self.0 {
            HostKind::Ip(_) => None,
            HostKind::Name(n) => Some(n),
        }
    }

    /// Writes the host as it appears before `:PORT` (IPv6 in brackets).
    fn fmt_with_port(&self, port: u16, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            HostKind::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{port}"),
            HostKind::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{port}"),
            HostKind::Name(n) => write!(f, "{n}:{port}"),
        }
    }

    fn parse_in(s: &str, input: &str) -> Result<Self, SpecError> {
        let err = |reason| SpecError::new(WHAT, input, reason);
        if s.is_empty() {
            return Err(err("missing host: expected an IP address or a host name"));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::ip(ip));
        }
        if s.len() > 253
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            || s.starts_with(['.', '-'])
            || s.contains("..")
        {
            return Err(err(
                "invalid host: expected an IP address or a host name of letters, digits, `-`, `_` and `.`",
            ));
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(err(
                "invalid host: not an IPv4 address, and a host name cannot be all digits",
            ));
        }
        // `hep_tls:9060` would read as a relay spec: such a name cannot be written back.
        if Transport::parse(s).is_some_and(|t| t.scheme().eq_ignore_ascii_case(s)) {
            return Err(err(
                "invalid host: hep_udp, hep_tcp and hep_tls are transports (write hep_tls:HOST:PORT)",
            ));
        }
        Ok(Self(HostKind::Name(s.to_owned())))
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Self {
        Self::ip(ip)
    }
}

impl FromStr for Host {
    type Err = SpecError;

    /// An IP address (IPv6 without brackets) or a host name.
    fn from_str(s: &str) -> Result<Self, SpecError> {
        Self::parse_in(s, s)
    }
}

impl fmt::Display for Host {
    /// The address (IPv6 without brackets) or the name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            HostKind::Ip(ip) => ip.fmt(f),
            HostKind::Name(n) => f.write_str(n),
        }
    }
}

/// Which syntax a destination was written in; [`Display`](fmt::Display) writes it back in
/// the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums, reason = "the two documented syntaxes")]
pub enum DestinationSyntax {
    /// OpenSIPS `hep_id`: `[name] host[:port]; transport=udp|tcp|tls; version=1|2|3`.
    HepId,
    /// hep-server relay spec: `hep_udp|hep_tcp|hep_tls:HOST[:PORT][;version=N]`.
    Relay,
}

/// A HEP destination: where a [`HepSender`](super::HepSender) connects, over which
/// transport, and which HEP version it writes.
///
/// Two syntaxes are accepted.
///
/// **OpenSIPS `hep_id`**: `[name] host[:port]; transport=udp|tcp|tls; version=1|2|3`.
/// The name is optional here (OpenSIPS requires it). The keys `transport` and `version`
/// are case-sensitive, their values are not. Defaults: port [`DEFAULT_DESTINATION_PORT`]
/// (5656, where OpenSIPS takes 9060: see there), transport TCP and version 3 as in
/// OpenSIPS. IPv6 literals are
/// written in brackets (`[::1]:9060`), which OpenSIPS's parser does not support; since
/// the name is in brackets too, a leading bracket group is the *name* only when a host
/// follows it (`[hep1] [::1]:9060`), and an IPv6 host otherwise (`[::1]:9060`).
///
/// **hep-server relay spec** (`DESIGN.md`): `hep_udp|hep_tcp|hep_tls:HOST[:PORT][;version=N]`.
///
/// Host names are resolved when a connection is made, and each resolved address is tried
/// in turn.
///
/// # Deliberate difference from OpenSIPS
/// TCP and TLS carry HEPv3 only. OpenSIPS logs a warning for `transport=tcp; version=2`
/// and silently sends over **UDP** instead; we refuse such a destination with an error,
/// because silently changing the transport hides a configuration mistake.
///
/// ```
/// use hep_proto::HepVersion;
/// use hep_transport::{HepDestination, Transport};
///
/// let d: HepDestination = "[homer] 10.0.0.1:9061; transport=udp; version=2".parse()?;
/// assert_eq!(d.name(), Some("homer"));
/// assert_eq!((d.transport(), d.version(), d.port()), (Transport::Udp, HepVersion::V2, 9061));
/// assert_eq!(d.to_string(), "[homer] 10.0.0.1:9061; transport=udp; version=2");
///
/// let d: HepDestination = "[::1]".parse()?; // defaults: TCP, HEPv3, port 5656
/// assert_eq!(d.to_string(), "[::1]:5656; transport=tcp; version=3");
///
/// let d: HepDestination = "hep_tls:homer.example.net:9061".parse()?;
/// assert_eq!(d.host().as_name(), Some("homer.example.net"));
/// assert_eq!(d.to_string(), "hep_tls:homer.example.net:9061;version=3");
///
/// let e = "10.0.0.1; transport=tcp; version=2".parse::<HepDestination>().unwrap_err();
/// assert!(e.to_string().contains("TCP and TLS carry HEPv3 only"));
/// # Ok::<(), hep_transport::SpecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HepDestination {
    name: Option<String>,
    host: Host,
    port: u16,
    transport: Transport,
    version: HepVersion,
    syntax: DestinationSyntax,
}

// ===== impl HepDestination =====

impl HepDestination {
    /// A destination writing HEPv3 over `transport`, written in the `hep_id` syntax.
    ///
    /// ```
    /// use hep_transport::{HepDestination, Transport};
    ///
    /// let d = HepDestination::new(Transport::Tcp, "127.0.0.1".parse::<std::net::IpAddr>().unwrap(), 9060);
    /// assert_eq!(d.to_string(), "127.0.0.1:9060; transport=tcp; version=3");
    /// ```
    pub fn new(transport: Transport, host: impl Into<Host>, port: u16) -> Self {
        Self {
            name: None,
            host: host.into(),
            port,
            transport,
            version: HepVersion::V3,
            syntax: DestinationSyntax::HepId,
        }
    }

    /// A destination writing HEPv3 over UDP to `addr` (`hep_udp:ADDR`).
    ///
    /// There is one constructor per transport, and no `From<SocketAddr>`: an address does
    /// not say the transport, and a conversion would have to pick one silently.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use hep_transport::{HepDestination, Transport};
    ///
    /// let collector: SocketAddr = "127.0.0.1:9060".parse().unwrap();
    /// let d = HepDestination::udp(collector);
    /// assert_eq!((d.transport(), d.port()), (Transport::Udp, 9060));
    /// assert_eq!(HepDestination::tcp(collector).to_string(), "127.0.0.1:9060; transport=tcp; version=3");
    /// let d = HepDestination::udp(collector).with_version(hep_proto::HepVersion::V2)?;
    /// # let _ = d;
    /// # Ok::<(), hep_transport::SpecError>(())
    /// ```
    pub fn udp(addr: SocketAddr) -> Self {
        Self::new(Transport::Udp, addr.ip(), addr.port())
    }

    /// A destination writing HEPv3 over TCP to `addr` (`hep_tcp:ADDR`); see
    /// [`udp`](Self::udp).
    pub fn tcp(addr: SocketAddr) -> Self {
        Self::new(Transport::Tcp, addr.ip(), addr.port())
    }

    /// A destination writing HEPv3 over TLS to `addr` (`hep_tls:ADDR`); the sender needs
    /// [`SenderConfig::tls`](super::SenderConfig::tls). See [`udp`](Self::udp).
    pub fn tls(addr: SocketAddr) -> Self {
        Self::new(Transport::Tls, addr.ip(), addr.port())
    }

    /// The same destination writing `version`.
    ///
    /// # Errors
    /// HEPv1 and v2 exist only over UDP: `version` below 3 with TCP or TLS.
    pub fn with_version(mut self, version: HepVersion) -> Result<Self, SpecError> {
        if version != HepVersion::V3 && self.transport != Transport::Udp {
            return Err(SpecError::new(WHAT, &self.to_string(), V3_ONLY));
        }
        self.version = version;
        Ok(self)
    }

    /// The same destination with an OpenSIPS `hep_id` name (it is then written in the
    /// `hep_id` syntax, which is the only one that carries a name).
    ///
    /// # Errors
    /// An empty name, or one with whitespace or brackets.
    pub fn with_name(mut self, name: impl Into<String>) -> Result<Self, SpecError> {
        let name = name.into();
        check_name(&name, &name)?;
        self.name = Some(name);
        self.syntax = DestinationSyntax::HepId;
        Ok(self)
    }

    /// The same destination, written in `syntax` by [`Display`](fmt::Display).
    /// A named destination stays in the `hep_id` syntax.
    pub fn with_syntax(mut self, syntax: DestinationSyntax) -> Self {
        if self.name.is_none() {
            self.syntax = syntax;
        }
        self
    }

    /// The `hep_id` name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The host: an IP address or a name resolved at connect time.
    pub const fn host(&self) -> &Host {
        &self.host
    }

    /// The port.
    pub const fn port(&self) -> u16 {
        self.port
    }

    /// The transport.
    pub const fn transport(&self) -> Transport {
        self.transport
    }

    /// The HEP version messages are encoded in (always 3 for TCP and TLS).
    pub const fn version(&self) -> HepVersion {
        self.version
    }

    /// The syntax [`Display`](fmt::Display) writes.
    pub const fn syntax(&self) -> DestinationSyntax {
        self.syntax
    }

    /// Parses either syntax (see [`FromStr`](#impl-FromStr-for-HepDestination)), with
    /// `default_port` for a destination without a port (the config's `hep_port`).
    ///
    /// ```
    /// use hep_transport::HepDestination;
    ///
    /// let d = HepDestination::parse_with_default_port("hep_tcp:10.0.0.9", 9060)?;
    /// assert_eq!(d.port(), 9060);
    /// let d = HepDestination::parse_with_default_port("hep_tcp:10.0.0.9:7", 9060)?;
    /// assert_eq!(d.port(), 7);
    /// # Ok::<(), hep_transport::SpecError>(())
    /// ```
    ///
    /// # Errors
    /// A [`SpecError`] saying what was expected.
    pub fn parse_with_default_port(s: &str, default_port: u16) -> Result<Self, SpecError> {
        let trimmed = s.trim();
        if let Some((scheme, rest)) = trimmed.split_once(':')
            && scheme.len() == 7
            && scheme.to_ascii_lowercase().starts_with("hep_")
            && let Some(t) = Transport::parse(scheme)
        {
            return Self::parse_relay(s, t, rest, default_port);
        }
        Self::parse_hep_id(s, default_port)
    }

    fn parse_hep_id(input: &str, default_port: u16) -> Result<Self, SpecError> {
        let err = |reason| SpecError::new(WHAT, input, reason);
        let s = input.trim();
        if s.is_empty() {
            return Err(err(EXPECTED));
        }
        let mut rest = s;
        let mut name = None;
        if let Some(after_open) = s.strip_prefix('[') {
            let close = after_open
                .find(']')
                .ok_or_else(|| err("unterminated `[`: expected `[name] host` or `[IPv6]`"))?;
            let inner = &after_open[..close];
            let after = &after_open[close + 1..];
            let next = after.trim_start();
            let host_follows =
                !(after.starts_with(':') || next.is_empty() || next.starts_with(';'));
            if host_follows {
                check_name(inner, input)?;
                name = Some(inner.to_owned());
                rest = next;
            } else if inner.parse::<Ipv6Addr>().is_err() {
                return Err(err(
                    "`[...]` is neither an IPv6 address nor a name followed by a host",
                ));
            }
        }
        let (uri, params) = rest.split_once(';').unwrap_or((rest, ""));
        let (host, port) = parse_host_port(uri.trim(), input, default_port)?;
        let mut transport = None;
        let mut version = None;
        for (key, value) in params_of(params, input)? {
            match key {
                "transport" => {
                    let t = Transport::parse(value)
                        .filter(|_| !value.contains('_'))
                        .ok_or_else(|| err("transport must be udp, tcp or tls"))?;
                    set_once(&mut transport, t, input)?;
                }
                "version" => set_once(&mut version, parse_version(value, input)?, input)?,
                _ => {
                    return Err(err(
                        "unknown parameter: the keys are `transport` and `version` (case-sensitive)",
                    ));
                }
            }
        }
        let dest = Self {
            name,
            host,
            port,
            transport: transport.unwrap_or(Transport::Tcp),
            version: version.unwrap_or(HepVersion::V3),
            syntax: DestinationSyntax::HepId,
        };
        dest.check_version(input)
    }

    fn parse_relay(
        input: &str,
        transport: Transport,
        rest: &str,
        default_port: u16,
    ) -> Result<Self, SpecError> {
        let err = |reason| SpecError::new(WHAT, input, reason);
        let (uri, params) = rest.split_once(';').unwrap_or((rest, ""));
        let (host, port) = parse_host_port(uri.trim(), input, default_port)?;
        let mut version = None;
        for (key, value) in params_of(params, input)? {
            if key != "version" {
                return Err(err(
                    "unknown parameter: only `;version=N` may follow hep_udp|hep_tcp|hep_tls:HOST:PORT",
                ));
            }
            set_once(&mut version, parse_version(value, input)?, input)?;
        }
        let dest = Self {
            name: None,
            host,
            port,
            transport,
            version: version.unwrap_or(HepVersion::V3),
            syntax: DestinationSyntax::Relay,
        };
        dest.check_version(input)
    }

    fn check_version(self, input: &str) -> Result<Self, SpecError> {
        if self.version != HepVersion::V3 && self.transport != Transport::Udp {
            return Err(SpecError::new(WHAT, input, V3_ONLY));
        }
        Ok(self)
    }
}

const EXPECTED: &str = "expected `[name] host[:port]; transport=udp|tcp|tls; version=1|2|3` \
     or `hep_udp|hep_tcp|hep_tls:HOST[:PORT][;version=N]`";

const V3_ONLY: &str = "TCP and TLS carry HEPv3 only: use version=3, or transport=udp for v1/v2 \
     (OpenSIPS would silently fall back to UDP; we refuse)";

fn check_name(name: &str, input: &str) -> Result<(), SpecError> {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '[' || c == ']') {
        return Err(SpecError::new(
            WHAT,
            input,
            "the name in `[name]` must be non-empty, without spaces or brackets",
        ));
    }
    Ok(())
}

fn set_once<T>(slot: &mut Option<T>, value: T, input: &str) -> Result<(), SpecError> {
    if slot.replace(value).is_some() {
        return Err(SpecError::new(WHAT, input, "a parameter is given twice"));
    }
    Ok(())
}

fn parse_version(value: &str, input: &str) -> Result<HepVersion, SpecError> {
    value
        .parse::<u8>()
        .ok()
        .and_then(HepVersion::from_number)
        .ok_or_else(|| SpecError::new(WHAT, input, "version must be 1, 2 or 3"))
}

/// `; key=value; key=value` (the leading `;` already split off). Empty parts are skipped.
fn params_of<'a>(params: &'a str, input: &str) -> Result<Vec<(&'a str, &'a str)>, SpecError> {
    params
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| SpecError::new(WHAT, input, "expected `key=value` after `;`"))
        })
        .collect()
}

/// `host`, `host:port`, `[ipv6]`, `[ipv6]:port`, or a bare IPv6 address (default port).
fn parse_host_port(s: &str, input: &str, default_port: u16) -> Result<(Host, u16), SpecError> {
    let err = |reason| SpecError::new(WHAT, input, reason);
    if let Some(after_open) = s.strip_prefix('[') {
        let (inner, after) = after_open
            .split_once(']')
            .ok_or_else(|| err("unterminated `[`: expected `[IPv6]` or `[IPv6]:PORT`"))?;
        let ip = inner
            .parse::<Ipv6Addr>()
            .map_err(|_| err("expected an IPv6 address inside `[...]`"))?;
        let port = match after {
            "" => default_port,
            p => parse_port(p.strip_prefix(':').ok_or_else(|| err(EXPECTED))?, input)?,
        };
        return Ok((Host::ip(IpAddr::V6(ip)), port));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((Host::ip(ip), default_port));
    }
    let (host, port) = match s.split_once(':') {
        None => (s, default_port),
        Some((_, p)) if p.contains(':') => {
            return Err(err(
                "an IPv6 address with a port must be written in brackets, e.g. `[::1]:9060`",
            ));
        }
        Some((h, p)) => (h, parse_port(p, input)?),
    };
    Ok((Host::parse_in(host, input)?, port))
}

fn parse_port(p: &str, input: &str) -> Result<u16, SpecError> {
    p.parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| SpecError::new(WHAT, input, "the port must be a number from 1 to 65535"))
}

impl FromStr for HepDestination {
    type Err = SpecError;

    /// Either syntax: a leading `hep_udp:`, `hep_tcp:` or `hep_tls:` (any case) selects the
    /// relay spec, anything else is an OpenSIPS `hep_id`. Without a port:
    /// [`DEFAULT_DESTINATION_PORT`] (5656).
    fn from_str(s: &str) -> Result<Self, SpecError> {
        Self::parse_with_default_port(s, DEFAULT_DESTINATION_PORT)
    }
}

impl fmt::Display for HepDestination {
    /// The syntax it was parsed from (see [`syntax`](Self::syntax)), with every default
    /// written out: parsing the output gives back an equal destination.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.syntax, &self.name) {
            (DestinationSyntax::Relay, None) => {
                write!(f, "{}:", self.transport.scheme())?;
                self.host.fmt_with_port(self.port, f)?;
                write!(f, ";version={}", self.version)
            }
            (_, name) => {
                if let Some(name) = name {
                    write!(f, "[{name}] ")?;
                }
                self.host.fmt_with_port(self.port, f)?;
                write!(
                    f,
                    "; transport={}; version={}",
                    self.transport, self.version
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips() {
        for s in [
            "[a] 1.2.3.4:1; transport=udp; version=1",
            "[::1]:9060; transport=tls; version=3",
            "host-1.example:5; transport=tcp; version=3",
            "hep_udp:[fe80::1]:9;version=2",
            "hep_tcp:collector:9060;version=3",
        ] {
            let d: HepDestination = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
            assert_eq!(d.to_string().parse::<HepDestination>().unwrap(), d);
        }
    }

    /// Found by the `specs` fuzz target: `hep_tls` alone read as a hep_id host name and
    /// printed as `hep_tls:9060; ...`, which reads back as a relay spec.
    #[test]
    fn a_transport_name_is_not_a_host() {
        for s in ["hep_tls", "HEP_UDP; transport=udp", "[n] hep_tcp"] {
            let e = s.parse::<HepDestination>().unwrap_err().to_string();
            assert!(e.contains("are transports"), "{s}: {e}");
        }
    }

    #[test]
    fn a_destination_without_a_port_takes_the_listen_default() {
        for s in [
            "hep_tcp:127.0.0.1",
            "hep_udp:[::1]",
            "10.0.0.1; transport=udp",
            "[h] collector",
        ] {
            let d: HepDestination = s.parse().unwrap();
            assert_eq!(d.port(), crate::HEP_PORT, "{s}");
            let d = HepDestination::parse_with_default_port(s, 9060).unwrap();
            assert_eq!(d.port(), 9060, "{s}");
        }
        let d = HepDestination::parse_with_default_port("hep_tcp:10.0.0.1:7", 9060).unwrap();
        assert_eq!(d.port(), 7);
    }

    #[test]
    fn name_switches_to_hep_id_syntax() {
        let d: HepDestination = "hep_udp:1.2.3.4:9".parse().unwrap();
        let d = d.with_name("x").unwrap();
        assert_eq!(d.to_string(), "[x] 1.2.3.4:9; transport=udp; version=3");
        assert!(d.clone().with_name("a b").is_err());
        assert!(d.with_version(HepVersion::V1).is_ok());
    }
}
