//! `outputs`: where every accepted message goes.

use hep_transport::{ListenOn, Transport};
use toml::Spanned;

use super::error::{ConfigError, Source};
use super::{Specs, Written};
use crate::outputs::OutputSpec;
use crate::outputs::conflict::conflict;

/// The outputs of `outputs` (a relay destination without a port takes `hep_port`),
/// checked to work together and with `listeners` ([`conflict`]), or the default one: the
/// store in [`DEFAULT_DIR`](crate::store::DEFAULT_DIR). With them, where the file asks
/// for a `hep_tls` relay first (a missing `[relay_tls]` is reported there).
pub(super) fn resolve(
    raw: Option<Vec<Spanned<String>>>,
    hep_port: u16,
    listeners: &[Written<ListenOn>],
    src: &Source<'_>,
) -> Result<Specs<OutputSpec>, ConfigError> {
    let Some(list) = raw else {
        let store = OutputSpec::Store(crate::store::DEFAULT_DIR.into());
        return Ok(Specs {
            specs: vec![Written::from(store)],
            tls_at: None,
        });
    };
    let mut tls = None;
    let mut outputs = Vec::with_capacity(list.len());
    for s in &list {
        let o = Written::parse(s.get_ref(), |s| {
            OutputSpec::parse_with_default_port(s, hep_port)
        })
        .map_err(|e| src.error(s.span(), format!("key `outputs`: {e}")))?;
        if o.relay_destination()
            .is_some_and(|d| d.transport() == Transport::Tls)
            && tls.is_none()
        {
            tls = Some(s.span());
        }
        outputs.push(o);
    }
    let written: Vec<(&str, &OutputSpec)> = outputs.iter().map(|o| (o.text(), o.value())).collect();
    if let Some(c) = conflict(listeners.iter().map(Written::value), &written) {
        return Err(src.error(list[c.output].span(), format!("key `outputs`: {c}")));
    }
    Ok(Specs {
        specs: outputs,
        tls_at: tls,
    })
}
