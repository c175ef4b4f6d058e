//! `listen`: where to receive HEP, and from whom (`;allow=NETWORKS`).

use std::net::{Ipv4Addr, SocketAddr};

use hep_transport::{ListenOn, ListenSpec, Transport};
use toml::Spanned;

use super::error::{ConfigError, Source};
use super::{Specs, Written};

/// The listeners of `listen` (each spec parsed with `hep_port` as its default port), or
/// the default ones: UDP and TCP on 0.0.0.0, port `hep_port`. With them, where the file
/// asks for a `hep_tls` listener first (a missing `[tls]` is reported there).
pub(super) fn resolve(
    raw: Option<Vec<Spanned<String>>>,
    hep_port: u16,
    src: &Source<'_>,
) -> Result<Specs<ListenOn>, ConfigError> {
    let Some(list) = raw else {
        return Ok(Specs {
            specs: default(hep_port),
            tls_at: None,
        });
    };
    let mut tls = None;
    let mut listen = Vec::with_capacity(list.len());
    for s in &list {
        let l = Written::parse(s.get_ref(), |s| {
            ListenOn::parse_with_default_port(s, hep_port)
        })
        .map_err(|e| src.error(s.span(), format!("key `listen`: {e}")))?;
        if l.spec.transport == Transport::Tls && tls.is_none() {
            tls = Some(s.span());
        }
        listen.push(l);
    }
    Ok(Specs {
        specs: listen,
        tls_at: tls,
    })
}

/// The listeners without a `listen`: UDP and TCP on 0.0.0.0, port `hep_port`.
pub fn default(hep_port: u16) -> Vec<Written<ListenOn>> {
    let on = |transport| {
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, hep_port));
        Written::from(ListenOn::new(ListenSpec::new(transport, addr)))
    };
    vec![on(Transport::Udp), on(Transport::Tcp)]
}
