//! Authentication key check (chunk 0x000e), which OpenSIPS, Kamailio and heplify-server
//! all parse and never check.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use hep_proto::Received;

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
    /// the secret on (default: kept). The key's chunk is cut from the received bytes
    /// too, so a relay still forwards those (without the key) instead of encoding the
    /// message again.
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
            strip(r);
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

/// Removes the auth key (chunk 0x000e) from every message, checked or not, as
/// [`AuthKeyCheck::strip_key`] does from the messages it accepts: for a collector that does
/// not check keys but must not pass on or keep an agent's secret.
///
/// ```
/// use hep_callbacks::{CallbackLayer, StripAuthKey};
/// let strip = CallbackLayer::new(StripAuthKey);
/// # drop(strip);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StripAuthKey;

impl HepCallback for StripAuthKey {
    fn call(&self, r: &mut Received) -> Verdict {
        strip(r);
        Verdict::Continue
    }

    fn name(&self) -> &'static str {
        "strip_auth_key"
    }
}

/// Removes the key from `r`'s message and from its received bytes, which stay what a
/// relay forwards (`modified` is not set); when the bytes are not the message's HEP3 (a
/// message built in code), the message is marked modified instead, so that outputs encode
/// it (without the key).
fn strip(r: &mut Received) {
    if r.message.auth_key.take().is_none() {
        return;
    }
    match without_auth_key(&r.wire) {
        Some(wire) => r.wire = wire,
        None => r.modified = true,
    }
}

/// A HEP3 frame without its auth key chunks (vendor 0, type 0x000e), its total length
/// fixed (and any bytes after the frame, which a UDP datagram may carry, dropped): one
/// copy. `None` when `wire` is not a well-formed HEP3 frame.
fn without_auth_key(wire: &[u8]) -> Option<Bytes> {
    const AUTH_KEY: [u8; 4] = [0, 0, 0, 0x0e];
    if !matches!(wire.get(..4)?, b"HEP3" | b"EEP3") {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*wire.get(4)?, *wire.get(5)?]));
    let frame = wire.get(..total)?;
    let mut out = BytesMut::with_capacity(total);
    out.extend_from_slice(frame.get(..6)?);
    let mut at = 6;
    while at < total {
        let header = frame.get(at..at + 6)?;
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let chunk = frame.get(at..at + len).filter(|_| len >= 6)?;
        if header[..4] != AUTH_KEY {
            out.extend_from_slice(chunk);
        }
        at += len;
    }
    let new_total = u16::try_from(out.len()).ok()?;
    out[4..6].copy_from_slice(&new_total.to_be_bytes());
    Some(out.freeze())
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
