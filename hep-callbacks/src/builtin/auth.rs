//! Authentication key check (chunk 0x000e), which OpenSIPS, Kamailio and heplify-server
//! all parse and never check.

use std::collections::HashMap;

use bytes::Bytes;
use hep_transport::Received;

use crate::{HepCallback, Verdict};

/// Which key a message must carry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AuthKeys {
    /// One key for every agent.
    Shared(Bytes),
    /// One key per capture id; a capture id without a key is refused, unless a
    /// fallback shared key is given.
    PerCaptureId {
        /// Keys by capture id.
        keys: HashMap<u32, Bytes>,
        /// Key for capture ids not in `keys`, if any.
        fallback: Option<Bytes>,
    },
}

/// Refuses messages whose auth key (chunk 0x000e) is missing or wrong.
///
/// Keys are compared in constant time for equal lengths (the length itself is not
/// secret-dependent work). HEPv1/v2 cannot carry a key, so with this check on they are
/// refused as `missing_key`.
///
/// ```
/// use hep_callbacks::{AuthKeyCheck, CallbackLayer};
/// let auth = CallbackLayer::new(AuthKeyCheck::shared("hep-secret").strip_key(true));
/// # drop(auth);
/// ```
#[derive(Debug, Clone)]
pub struct AuthKeyCheck {
    keys: AuthKeys,
    strip: bool,
}

impl AuthKeyCheck {
    /// One key for every agent.
    pub fn shared(key: impl Into<Bytes>) -> Self {
        Self {
            keys: AuthKeys::Shared(key.into()),
            strip: false,
        }
    }

    /// A key per capture id, with an optional fallback for other ids.
    pub fn per_capture_id(keys: HashMap<u32, Bytes>, fallback: Option<Bytes>) -> Self {
        Self {
            keys: AuthKeys::PerCaptureId { keys, fallback },
            strip: false,
        }
    }

    /// Removes the key from accepted messages, so that outputs and relays do not pass
    /// the secret on (default: kept, so that a relay forwards the message unchanged).
    #[must_use]
    pub fn strip_key(mut self, strip: bool) -> Self {
        self.strip = strip;
        self
    }

    fn expected(&self, capture_id: Option<u32>) -> Option<&Bytes> {
        match &self.keys {
            AuthKeys::Shared(k) => Some(k),
            AuthKeys::PerCaptureId { keys, fallback } => capture_id
                .and_then(|id| keys.get(&id))
                .or(fallback.as_ref()),
        }
    }
}

impl HepCallback for AuthKeyCheck {
    fn call(&self, r: &mut Received) -> Verdict {
        let Some(key) = &r.message.auth_key else {
            return Verdict::Reject("missing_key");
        };
        let Some(expected) = self.expected(r.message.capture_id) else {
            return Verdict::Reject("unknown_capture_id");
        };
        if !constant_time_eq(key, expected) {
            return Verdict::Reject("wrong_key");
        }
        if self.strip {
            r.message_mut().auth_key = None;
        }
        Verdict::Continue
    }

    fn name(&self) -> &'static str {
        "auth"
    }

    fn reasons(&self) -> &'static [&'static str] {
        &["missing_key", "wrong_key", "unknown_capture_id"]
    }
}

/// Equal in time that depends on the lengths only, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"hep-secret", b"hep-secret"));
        assert!(!constant_time_eq(b"hep-secret", b"hep-secreT"));
        assert!(!constant_time_eq(b"hep", b"hep-secret"));
        assert!(constant_time_eq(b"", b""));
    }
}
