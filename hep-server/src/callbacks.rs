//! The callback chain of the configuration's `[tls.clients]`, `[auth]`, `[filter]`,
//! `[rate_limit]`, `[rewrite]` and `[dedup]`, with the relay loop check
//! ([`crate::outputs::relay::mark`]) that always runs and, without `[auth]`, the removal of the
//! keys agents send ([`Config::strip_auth_key`]), and how a reload rebuilds it.
//!
//! A reload builds a new chain, but a callback whose section did not change is the same
//! instance in it: a dedup keeps its window of payloads, a rate limit its buckets. A
//! new chain has new counters; the metrics and the exit summary sum those of every
//! chain by callback name ([`CallbackCollect`](crate::telemetry::stats::CallbackCollect)).

use std::fmt;
use std::sync::Arc;

use std::collections::BTreeMap;

use hep_callbacks::{
    AuthKeyCheck, CallbackChainBuilder, CallbackChainLayer, CallbackStats, ClientCaptureIds, Dedup,
    Filter, HepCallback, RateLimit, Rewrite, StripAuthKey, Verdict,
};
use hep_transport::Received;

use crate::config::{
    AuthConfig, Config, DedupConfig, FilterConfig, RateLimitConfig, RewriteConfig, TlsConfig,
};
use crate::outputs::relay::mark::LoopGuard;

/// One configured callback: its section's values and the instance built from them.
struct Slot<T, C> {
    config: T,
    callback: Arc<C>,
}

/// A callback instance shared by successive chains.
struct Shared<C>(Arc<C>);

impl<C: HepCallback> HepCallback for Shared<C> {
    fn call(&self, received: &mut Received) -> Verdict {
        self.0.call(received)
    }

    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn reasons(&self) -> &'static [&'static str] {
        self.0.reasons()
    }
}

/// The configured callbacks, in the order they run, and the relay loop check, which
/// always runs (after `[tls.clients]` and `[auth]`, so that a stranger's message is
/// refused as such, before `[filter]`).
#[derive(Default)]
pub(crate) struct CallbackSet {
    relay_loop: Arc<LoopGuard>,
    /// Without `[auth]`: remove the keys agents send all the same
    /// ([`Config::strip_auth_key`]).
    strip_unchecked_keys: bool,
    tls_clients: Option<Slot<BTreeMap<String, Vec<u32>>, ClientCaptureIds>>,
    auth: Option<Slot<AuthConfig, AuthKeyCheck>>,
    filter: Option<Slot<FilterConfig, Filter>>,
    rate_limit: Option<Slot<RateLimitConfig, RateLimit>>,
    rewrite: Option<Slot<RewriteConfig, Rewrite>>,
    dedup: Option<Slot<DedupConfig, Dedup>>,
}

/// What a rebuild did to each callback, for the log: `filter (changed), dedup`.
#[derive(Debug, Default)]
pub(crate) struct CallbackChanges(Vec<(&'static str, &'static str)>);

impl fmt::Display for CallbackChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, (name, change)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
            if !change.is_empty() {
                write!(f, " ({change})")?;
            }
        }
        Ok(())
    }
}

/// The slot for `new`: the old one when its values are the same, else a new instance.
fn rebuild<T: Clone + PartialEq, C>(
    name: &'static str,
    new: Option<&T>,
    old: Option<&Slot<T, C>>,
    make: impl FnOnce(&T) -> C,
    changes: &mut CallbackChanges,
) -> Option<Slot<T, C>> {
    match (new, old) {
        (None, None) => None,
        (None, Some(_)) => {
            changes.0.push((name, "removed"));
            None
        }
        (Some(new), Some(old)) if *new == old.config => {
            changes.0.push((name, ""));
            Some(Slot {
                config: old.config.clone(),
                callback: Arc::clone(&old.callback),
            })
        }
        (Some(new), old) => {
            changes
                .0
                .push((name, if old.is_some() { "changed" } else { "added" }));
            Some(Slot {
                config: new.clone(),
                callback: Arc::new(make(new)),
            })
        }
    }
}

impl CallbackSet {
    /// The callbacks of `config`, reusing those of `self` whose section is unchanged.
    pub(crate) fn rebuild(&self, config: &Config) -> (Self, CallbackChanges) {
        let mut changes = CallbackChanges::default();
        let clients = config.tls.as_ref().filter(|t| !t.clients.is_empty());
        let set = Self {
            relay_loop: Arc::clone(&self.relay_loop),
            strip_unchecked_keys: config.auth.is_none() && config.strip_auth_key(),
            tls_clients: rebuild(
                "tls_clients",
                clients.map(|t| &t.clients),
                self.tls_clients.as_ref(),
                |_| clients.and_then(TlsConfig::client_ids).unwrap_or_default(),
                &mut changes,
            ),
            auth: rebuild(
                "auth",
                config.auth.as_ref(),
                self.auth.as_ref(),
                auth,
                &mut changes,
            ),
            filter: rebuild(
                "filter",
                config.filter.as_ref(),
                self.filter.as_ref(),
                filter,
                &mut changes,
            ),
            rate_limit: rebuild(
                "rate_limit",
                config.rate_limit.as_ref(),
                self.rate_limit.as_ref(),
                |r| RateLimit::new(r.rate, r.burst),
                &mut changes,
            ),
            rewrite: rebuild(
                "rewrite",
                config.rewrite.as_ref(),
                self.rewrite.as_ref(),
                rewrite,
                &mut changes,
            ),
            dedup: rebuild(
                "dedup",
                config.dedup.as_ref(),
                self.dedup.as_ref(),
                |d| {
                    Dedup::new(Config::ms(d.window_ms))
                        .capture_id_aware(d.capture_id_aware)
                        .max_entries(d.max_entries)
                },
                &mut changes,
            ),
        };
        (set, changes)
    }

    /// A chain of these callbacks, cheap refusals first, with its own counters.
    pub(crate) fn chain(&self) -> (CallbackChainLayer, Vec<Arc<CallbackStats>>) {
        fn add<T, C: HepCallback>(
            chain: CallbackChainBuilder,
            slot: Option<&Slot<T, C>>,
        ) -> CallbackChainBuilder {
            match slot {
                Some(s) => chain.register(Shared(Arc::clone(&s.callback))),
                None => chain,
            }
        }
        let mut chain = CallbackChainLayer::builder();
        chain = add(chain, self.tls_clients.as_ref());
        chain = add(chain, self.auth.as_ref());
        if self.strip_unchecked_keys {
            chain = chain.register(StripAuthKey);
        }
        chain = chain.register(Shared(Arc::clone(&self.relay_loop)));
        chain = add(chain, self.filter.as_ref());
        chain = add(chain, self.rate_limit.as_ref());
        chain = add(chain, self.rewrite.as_ref());
        chain = add(chain, self.dedup.as_ref());
        let chain = chain.build();
        let stats = chain.stats();
        (chain, stats)
    }
}

fn auth(a: &AuthConfig) -> AuthKeyCheck {
    let check = if a.keys.is_empty() {
        AuthKeyCheck::shared(a.key.clone().unwrap_or_default())
    } else {
        let keys = a
            .keys_by_id()
            .into_iter()
            .map(|(id, k)| (id, k.into()))
            .collect();
        AuthKeyCheck::per_capture_id(keys, a.key.clone().map(Into::into))
    };
    check.strip_key(a.strip)
}

fn filter(f: &FilterConfig) -> Filter {
    let mut filter = Filter::new();
    if let Some(t) = f.proto_type_values() {
        filter = filter.proto_types(t.iter().copied());
    }
    if let Some(ids) = &f.capture_ids {
        filter = filter.capture_ids(ids.iter().copied());
    }
    if let Some(n) = f.agent_net_values() {
        filter = filter.agent_networks(n.iter().copied());
    }
    if let Some(n) = f.source_net_values() {
        filter = filter.source_networks(n.iter().copied());
    }
    if let Some(m) = &f.allow_sip_methods {
        filter = filter.allow_sip_methods(m);
    }
    filter.deny_sip_methods(&f.deny_sip_methods)
}

fn rewrite(r: &RewriteConfig) -> Rewrite {
    let mut rw = Rewrite::new();
    if let Some(id) = r.capture_id {
        rw = rw.capture_id(id);
    }
    if let Some(n) = &r.node_name {
        rw = rw.node_name(n.clone());
    }
    rw
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(Path::new("t.toml"), text).unwrap()
    }

    #[test]
    fn an_unchanged_section_keeps_its_instance() {
        let (first, changes) = CallbackSet::default().rebuild(&config(
            "[filter]\nproto_types = [\"sip\"]\n[dedup]\nwindow_ms = 500\n",
        ));
        assert_eq!(changes.to_string(), "filter (added), dedup (added)");
        let (second, changes) = first.rebuild(&config(
            "[filter]\nproto_types = [\"log\"]\n[dedup]\nwindow_ms = 500\n[auth]\nkey = \"k\"\n",
        ));
        assert_eq!(changes.to_string(), "auth (added), filter (changed), dedup");
        let (a, b) = (first.dedup.unwrap(), second.dedup.as_ref().unwrap());
        assert!(Arc::ptr_eq(&a.callback, &b.callback), "same dedup window");
        let (third, changes) = second.rebuild(&config(""));
        assert_eq!(
            changes.to_string(),
            "auth (removed), filter (removed), dedup (removed)"
        );
        // The relay loop check, and the removal of keys nobody checks.
        assert_eq!(third.chain().1.len(), 2);
        assert_eq!(CallbackChanges::default().to_string(), "none");
    }
}
