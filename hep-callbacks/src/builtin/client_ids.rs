//! TLS client certificates mapped to the capture ids they may send.

use std::collections::HashMap;

use hep_proto::{ClientIdentity, Received};

use crate::{HepCallback, Verdict};

/// Which capture ids each TLS client certificate may send; refuses the rest.
///
/// A certificate is named by a DNS name of its subject alternative names
/// (`agent-a.example`, compared without regard to case; a wildcard SAN only matches the
/// same wildcard written as a key) or by its SHA-256 fingerprint
/// (`sha256:AB:CD:...`, as `openssl x509 -noout -fingerprint -sha256` prints it, colons
/// optional). A certificate may send the capture ids of every key it matches.
///
/// Messages without a client certificate (UDP, TCP, TLS without mTLS) are not this
/// check's business and pass; on a message with one:
/// - a certificate no key matches: `Reject("client_not_allowed")` (a listener built with
///   hep-transport's `TlsConfig::with_client_check` and [`knows`](Self::knows) already
///   refused its connection; this is the second line);
/// - a capture id the certificate may not send, or none at all:
///   `Reject("capture_id_not_allowed_for_client")`.
///
/// ```
/// use hep_callbacks::ClientCaptureIds;
/// use hep_proto::ClientIdentity;
///
/// let ids = ClientCaptureIds::new()
///     .allow("agent-a.example", [2001, 2002]).unwrap()
///     .allow("sha256:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB", [3001]).unwrap();
/// let a = ClientIdentity::new([0; 32], ["Agent-A.example".to_owned()]);
/// assert!(ids.knows(&a) && ids.allows(&a, 2002) && !ids.allows(&a, 3001));
/// let pinned = ClientIdentity::new([0xab; 32], []);
/// assert!(ids.allows(&pinned, 3001));
/// assert!(!ids.knows(&ClientIdentity::new([1; 32], ["agent-b.example".to_owned()])));
/// assert!(ids.allow("sha256:AB", [1]).is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientCaptureIds {
    by_name: HashMap<String, Vec<u32>>,
    by_sha256: HashMap<[u8; 32], Vec<u32>>,
}

/// A key of a [`ClientCaptureIds`] that is neither a DNS name nor a SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a client certificate name: expected a DNS name (agent-a.example) or \
     sha256: followed by 64 hex digits (colons allowed)"
)]
pub struct ClientKeyError(String);

impl ClientCaptureIds {
    /// No certificate allowed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets the certificate named `key` (a DNS name, or `sha256:` and its fingerprint)
    /// send `capture_ids`, in addition to what it may already send.
    ///
    /// # Errors
    /// `key` is neither (see [`ClientKeyError`]).
    pub fn allow(
        mut self,
        key: &str,
        capture_ids: impl IntoIterator<Item = u32>,
    ) -> Result<Self, ClientKeyError> {
        let bad = || ClientKeyError(key.to_owned());
        let ids = match key.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("sha256:") => {
                let hex: String = key[7..].chars().filter(|c| *c != ':').collect();
                let mut sha = [0u8; 32];
                if hex.len() != 64 || !hex.is_ascii() {
                    return Err(bad());
                }
                for (i, byte) in sha.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
                }
                self.by_sha256.entry(sha).or_default()
            }
            _ => {
                let name = key.trim().to_ascii_lowercase();
                let valid = !name.is_empty()
                    && name.len() <= 253
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '_'));
                if !valid {
                    return Err(bad());
                }
                self.by_name.entry(name).or_default()
            }
        };
        ids.extend(capture_ids);
        ids.sort_unstable();
        ids.dedup();
        Ok(self)
    }

    /// Whether any key names this certificate.
    pub fn knows(&self, client: &ClientIdentity) -> bool {
        self.by_sha256.contains_key(client.sha256())
            || client
                .dns_names()
                .iter()
                .any(|n| self.by_name.contains_key(n))
    }

    /// Whether this certificate may send `capture_id`.
    pub fn allows(&self, client: &ClientIdentity, capture_id: u32) -> bool {
        let has = |ids: &Vec<u32>| ids.binary_search(&capture_id).is_ok();
        self.by_sha256.get(client.sha256()).is_some_and(has)
            || client
                .dns_names()
                .iter()
                .any(|n| self.by_name.get(n).is_some_and(has))
    }

    /// Whether no certificate is allowed at all.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty() && self.by_sha256.is_empty()
    }
}

impl HepCallback for ClientCaptureIds {
    fn call(&self, r: &mut Received) -> Verdict {
        let Some(client) = &r.info.client else {
            return Verdict::Continue;
        };
        match r.message.capture_id {
            Some(id) if self.allows(client, id) => Verdict::Continue,
            _ if !self.knows(client) => Verdict::Reject("client_not_allowed"),
            _ => Verdict::Reject("capture_id_not_allowed_for_client"),
        }
    }

    fn name(&self) -> &'static str {
        "tls_clients"
    }

    fn reasons(&self) -> &'static [&'static str] {
        &["capture_id_not_allowed_for_client", "client_not_allowed"]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hep_proto::HepMessage;
    use hep_proto::{RecvInfo, Transport};

    use super::*;

    fn received(capture_id: Option<u32>, client: Option<ClientIdentity>) -> Received {
        let mut b = HepMessage::builder()
            .src("10.0.0.1:5060".parse().unwrap())
            .dst("10.0.0.2:5060".parse().unwrap())
            .payload("OPTIONS sip:a SIP/2.0\r\n\r\n");
        if let Some(id) = capture_id {
            b = b.capture_id(id);
        }
        let info = RecvInfo::new(
            Transport::Tls,
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:9061".parse().unwrap(),
        )
        .with_client(client.map(Arc::new));
        Received::new(b.build(), bytes::Bytes::new(), info)
    }

    fn agent_a() -> ClientIdentity {
        ClientIdentity::new([7; 32], ["agent-a.example".to_owned()])
    }

    #[test]
    fn a_certificate_sends_only_its_capture_ids() {
        let ids = ClientCaptureIds::new()
            .allow("AGENT-A.example", [2001, 2002])
            .unwrap();
        assert_eq!(
            ids.call(&mut received(Some(2001), Some(agent_a()))),
            Verdict::Continue
        );
        assert_eq!(
            ids.call(&mut received(Some(2002), Some(agent_a()))),
            Verdict::Continue
        );
        assert_eq!(
            ids.call(&mut received(Some(2003), Some(agent_a()))),
            Verdict::Reject("capture_id_not_allowed_for_client")
        );
        assert_eq!(
            ids.call(&mut received(None, Some(agent_a()))),
            Verdict::Reject("capture_id_not_allowed_for_client")
        );
        let stranger = ClientIdentity::new([8; 32], ["agent-b.example".to_owned()]);
        assert_eq!(
            ids.call(&mut received(Some(2001), Some(stranger))),
            Verdict::Reject("client_not_allowed")
        );
        assert_eq!(
            ids.call(&mut received(Some(9), None)),
            Verdict::Continue,
            "no certificate: not this check's business"
        );
    }

    #[test]
    fn names_and_fingerprints_add_up() {
        let fp = "sha256:".to_owned() + &["07"; 32].join(":");
        let ids = ClientCaptureIds::new()
            .allow("agent-a.example", [1])
            .unwrap()
            .allow(&fp, [2])
            .unwrap()
            .allow(&fp.replace(':', "").replacen("sha256", "SHA256:", 1), [3])
            .unwrap();
        for id in [1, 2, 3] {
            assert!(ids.allows(&agent_a(), id), "{id}");
        }
        assert!(!ids.allows(&agent_a(), 4));
    }

    #[test]
    fn bad_keys_are_errors() {
        for key in ["", "sha256:zz", "sha256:0707", "agent a", "agent/a"] {
            assert!(ClientCaptureIds::new().allow(key, [1]).is_err(), "{key:?}");
        }
    }
}
