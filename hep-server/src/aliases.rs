//! Names for addresses (`[aliases]`): `IP:PORT`, `IP` or a network mapped to a name that
//! people recognise (`proxy`, `sbc-1`, `phones`), shown by the terminal ladder
//! (`hep-server search`), the page's ladder and, later, the SIP KPIs' `target` label.
//!
//! # Which name an address gets
//! The most specific entry wins:
//! 1. `IP:PORT`, the address and port exactly;
//! 2. `IP`, any port of that address;
//! 3. the network with the longest prefix holding the address (`10.1.0.0/16` before
//!    `10.0.0.0/8`).
//!
//! IPv4 and IPv6 alike; an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is looked up as
//! the IPv4 address it carries. An address no entry covers has no name (the ladders show
//! the address).
//!
//! ```
//! use hep_server::aliases::Aliases;
//!
//! let aliases = Aliases::new([
//!     ("10.0.0.0/8", "core"),
//!     ("10.1.0.0/16", "edge"),
//!     ("10.1.2.3", "sbc"),
//!     ("10.1.2.3:5080", "sbc-internal"),
//!     ("[2001:db8::1]:5060", "proxy-v6"),
//! ])
//! .unwrap();
//! let name = |a: &str| aliases.name_of(a.parse().unwrap());
//! assert_eq!(name("10.1.2.3:5080"), Some("sbc-internal"));
//! assert_eq!(name("10.1.2.3:5060"), Some("sbc"));
//! assert_eq!(name("10.1.9.9:5060"), Some("edge"));
//! assert_eq!(name("10.9.9.9:5060"), Some("core"));
//! assert_eq!(name("[2001:db8::1]:5060"), Some("proxy-v6"));
//! assert_eq!(name("192.0.2.1:5060"), None);
//! ```
//!
//! Lookups are a hash lookup for addresses and a walk of the networks, longest prefix
//! first: cheap for the hundreds of entries a deployment names. The ladders look up each
//! column once, not each message.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// What an entry's key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AliasKey {
    /// `IP:PORT` (`[IPv6]:PORT`).
    Socket(SocketAddr),
    /// `IP`: every port.
    Host(IpAddr),
    /// `IP/PREFIX`: every address in the network.
    Network(IpNet),
}

impl std::str::FromStr for AliasKey {
    type Err = String;

    /// `IP:PORT`, `[IPv6]:PORT`, `IP` or `NETWORK/PREFIX`; a network with host bits set
    /// (`10.0.0.1/8`) is refused, naming the network meant.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Self::Socket(canonical_socket(a)));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Host(ip.to_canonical()));
        }
        if let Some((ip, prefix)) = s.split_once('/') {
            if ip.parse::<IpAddr>().is_err() {
                return Err(format!("`{ip}` is not an IP address"));
            }
            let net: IpNet = s.parse().map_err(|_| {
                format!("`/{prefix}` is not a prefix length (0-32 for IPv4, 0-128 for IPv6)")
            })?;
            if net.trunc() != net {
                return Err(format!("host bits are set: the network is {}", net.trunc()));
            }
            return Ok(Self::Network(net));
        }
        Err("expected IP:PORT ([IPv6]:PORT), IP, or a network IP/PREFIX".to_owned())
    }
}

impl std::fmt::Display for AliasKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Socket(a) => a.fmt(f),
            Self::Host(ip) => ip.fmt(f),
            Self::Network(n) => n.fmt(f),
        }
    }
}

/// An entry of `[aliases]` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AliasError {
    /// The key is not an address or a network.
    #[error("`{key}`: {reason}")]
    BadKey {
        /// The key as written.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The name is empty, too long or holds control characters.
    #[error("`{key}`: the name {reason}")]
    BadName {
        /// The key as written.
        key: String,
        /// What is wrong with the name.
        reason: String,
    },
    /// Two keys name the same address or network (`10.0.0.1` and `10.0.0.01`...).
    #[error("`{key}`: the same address as `{other}`")]
    Duplicate {
        /// The key as written.
        key: String,
        /// The other key, as written.
        other: String,
    },
}

impl AliasError {
    /// The key of the entry, as written.
    pub fn key(&self) -> &str {
        match self {
            Self::BadKey { key, .. } | Self::BadName { key, .. } | Self::Duplicate { key, .. } => {
                key
            }
        }
    }
}

/// The names of addresses; see the [module docs](self) for which entry wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    sockets: HashMap<SocketAddr, String>,
    hosts: HashMap<IpAddr, String>,
    /// Longest prefix first.
    networks: Vec<(IpNet, String)>,
    /// The keys as written and their names, in the order given (for `check-config`).
    written: Vec<(String, String)>,
}

impl Aliases {
    /// The aliases of `(key, name)` entries.
    ///
    /// # Errors
    /// The first entry whose key is not an address or network, whose name is empty,
    /// longer than [`MAX_NAME_CHARS`] or holds control characters, or whose key names an
    /// address another key names already.
    pub fn new<K: AsRef<str>, N: AsRef<str>>(
        entries: impl IntoIterator<Item = (K, N)>,
    ) -> Result<Self, AliasError> {
        let mut aliases = Self::default();
        let mut seen: HashMap<AliasKey, String> = HashMap::new();
        for (key, name) in entries {
            let (key, name) = (key.as_ref(), name.as_ref());
            let parsed: AliasKey = key.trim().parse().map_err(|reason| AliasError::BadKey {
                key: key.to_owned(),
                reason,
            })?;
            check_name(name).map_err(|reason| AliasError::BadName {
                key: key.to_owned(),
                reason,
            })?;
            if let Some(other) = seen.insert(parsed, key.to_owned()) {
                return Err(AliasError::Duplicate {
                    key: key.to_owned(),
                    other,
                });
            }
            let name = name.trim().to_owned();
            match parsed {
                AliasKey::Socket(a) => {
                    aliases.sockets.insert(a, name.clone());
                }
                AliasKey::Host(ip) => {
                    aliases.hosts.insert(ip, name.clone());
                }
                AliasKey::Network(n) => aliases.networks.push((n, name.clone())),
            }
            aliases.written.push((key.to_owned(), name));
        }
        aliases
            .networks
            .sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        Ok(aliases)
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }

    /// The entries as written (key, name), in the order given.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.written.iter().map(|(k, n)| (k.as_str(), n.as_str()))
    }

    /// The name of `addr`: its `IP:PORT` entry, else its `IP` entry, else the longest
    /// network holding it.
    pub fn name_of(&self, addr: SocketAddr) -> Option<&str> {
        let addr = canonical_socket(addr);
        self.sockets
            .get(&addr)
            .map(String::as_str)
            .or_else(|| self.name_of_ip(addr.ip()))
    }

    /// The name of `ip` (any port): its `IP` entry, else the longest network holding it.
    pub fn name_of_ip(&self, ip: IpAddr) -> Option<&str> {
        let ip = ip.to_canonical();
        self.hosts.get(&ip).map(String::as_str).or_else(|| {
            self.networks
                .iter()
                .find(|(n, _)| n.contains(&ip))
                .map(|(_, name)| name.as_str())
        })
    }

    /// The name of an address as the records and ladders write it: `IP:PORT`,
    /// `[IPv6]:PORT` or `IP` (without a port, only `IP` entries and networks apply);
    /// `None` for text that is no address.
    ///
    /// ```
    /// use hep_server::aliases::Aliases;
    /// let aliases = Aliases::new([("::1", "me"), ("10.0.0.1:5060", "proxy")]).unwrap();
    /// assert_eq!(aliases.name_of_text("[::1]:5070"), Some("me"));
    /// assert_eq!(aliases.name_of_text("10.0.0.1:5060"), Some("proxy"));
    /// assert_eq!(aliases.name_of_text("10.0.0.1"), None);
    /// assert_eq!(aliases.name_of_text("-"), None);
    /// ```
    pub fn name_of_text(&self, addr: &str) -> Option<&str> {
        if let Ok(a) = addr.parse::<SocketAddr>() {
            return self.name_of(a);
        }
        addr.parse::<IpAddr>()
            .ok()
            .and_then(|ip| self.name_of_ip(ip))
    }
}

/// `check-config` prints the entries as written.
impl Serialize for Aliases {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.written.len()))?;
        for (k, n) in &self.written {
            map.serialize_entry(k, n)?;
        }
        map.end()
    }
}

/// An IPv4-mapped IPv6 socket address as its IPv4 one.
fn canonical_socket(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn check_name(name: &str) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("is longer than {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("holds control characters".to_owned());
    }
    Ok(())
}

/// Aliases shared by readers and replaced by a reload (SIGHUP): the HTTP API reads the
/// ones in force at each request.
#[derive(Debug, Clone, Default)]
pub struct SharedAliases(std::sync::Arc<std::sync::RwLock<std::sync::Arc<Aliases>>>);

impl SharedAliases {
    /// Shares `aliases`.
    pub fn new(aliases: Aliases) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(
            std::sync::Arc::new(aliases),
        )))
    }

    /// The aliases in force.
    pub fn get(&self) -> std::sync::Arc<Aliases> {
        match self.0.read() {
            Ok(a) => std::sync::Arc::clone(&a),
            Err(poisoned) => std::sync::Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Puts `aliases` in force.
    pub fn set(&self, aliases: Aliases) {
        let new = std::sync::Arc::new(aliases);
        match self.0.write() {
            Ok(mut a) => *a = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name<'a>(a: &'a Aliases, addr: &str) -> Option<&'a str> {
        a.name_of(addr.parse().expect("a socket address"))
    }

    #[test]
    fn ip_port_wins_over_ip_which_wins_over_networks() {
        // Given in the opposite order of precedence: the order written does not matter.
        let a = Aliases::new([
            ("0.0.0.0/0", "anywhere"),
            ("10.0.0.0/8", "core"),
            ("10.0.0.0/24", "lan"),
            ("10.0.0.7", "host"),
            ("10.0.0.7:5060", "sip"),
        ])
        .unwrap();
        assert_eq!(name(&a, "10.0.0.7:5060"), Some("sip"));
        assert_eq!(name(&a, "10.0.0.7:5061"), Some("host"));
        assert_eq!(name(&a, "10.0.0.8:5060"), Some("lan"));
        assert_eq!(name(&a, "10.0.1.8:5060"), Some("core"));
        assert_eq!(name(&a, "192.0.2.1:5060"), Some("anywhere"));
    }

    #[test]
    fn ipv6_entries_and_mapped_ipv4_addresses() {
        let a = Aliases::new([
            ("2001:db8::/32", "doc"),
            ("2001:db8:1::/48", "site"),
            ("[2001:db8:1::5]:5060", "proxy"),
            ("192.0.2.9", "v4"),
        ])
        .unwrap();
        assert_eq!(name(&a, "[2001:db8:1::5]:5060"), Some("proxy"));
        assert_eq!(name(&a, "[2001:db8:1::5]:5070"), Some("site"));
        assert_eq!(name(&a, "[2001:db8:2::5]:5060"), Some("doc"));
        assert_eq!(name(&a, "[2001:db9::1]:5060"), None);
        assert_eq!(name(&a, "[::ffff:192.0.2.9]:5060"), Some("v4"));
        assert_eq!(name(&a, "192.0.2.9:1"), Some("v4"));
        // An IPv4 network does not hold IPv6 addresses.
        let v4 = Aliases::new([("0.0.0.0/0", "v4-only")]).unwrap();
        assert_eq!(name(&v4, "[2001:db8::1]:5060"), None);
    }

    #[test]
    fn bad_entries_are_named() {
        let err = |k: &str, n: &str| Aliases::new([(k, n)]).unwrap_err().to_string();
        assert_eq!(
            err("10.0.0.300", "x"),
            "`10.0.0.300`: expected IP:PORT ([IPv6]:PORT), IP, or a network IP/PREFIX"
        );
        assert_eq!(
            err("10.0.0.0/33", "x"),
            "`10.0.0.0/33`: `/33` is not a prefix length (0-32 for IPv4, 0-128 for IPv6)"
        );
        assert_eq!(
            err("10.0.0.1/8", "x"),
            "`10.0.0.1/8`: host bits are set: the network is 10.0.0.0/8"
        );
        assert_eq!(err("host/8", "x"), "`host/8`: `host` is not an IP address");
        assert_eq!(err("10.0.0.1", " "), "`10.0.0.1`: the name is empty");
        assert_eq!(
            err("10.0.0.1", "a\u{1b}[31m"),
            "`10.0.0.1`: the name holds control characters"
        );
        assert!(err("10.0.0.1", &"n".repeat(65)).contains("longer than 64"));
        let dup = Aliases::new([("::1", "a"), ("0:0::1", "b")]).unwrap_err();
        assert_eq!(dup.to_string(), "`0:0::1`: the same address as `::1`");
        let mapped = Aliases::new([("10.0.0.1:5060", "a"), ("[::ffff:10.0.0.1]:5060", "b")]);
        assert!(matches!(mapped, Err(AliasError::Duplicate { .. })));
    }

    #[test]
    fn text_addresses_as_the_ladders_write_them() {
        let a = Aliases::new([("10.0.0.0/8", "core"), ("[::1]:5060", "me")]).unwrap();
        assert_eq!(a.name_of_text("10.2.3.4:5060"), Some("core"));
        assert_eq!(a.name_of_text("10.2.3.4"), Some("core"));
        assert_eq!(a.name_of_text("[::1]:5060"), Some("me"));
        assert_eq!(
            a.name_of_text("::1"),
            None,
            "no port: the IP:PORT entry is not it"
        );
        assert_eq!(a.name_of_text("not an address"), None);
    }

    #[test]
    fn shared_aliases_are_replaced_whole() {
        let shared = SharedAliases::default();
        assert!(shared.get().is_empty());
        let before = shared.get();
        shared.set(Aliases::new([("10.0.0.1", "a")]).unwrap());
        assert_eq!(shared.get().name_of_text("10.0.0.1:1"), Some("a"));
        assert!(before.is_empty(), "a reader keeps the aliases it took");
    }
}
