//! Capture id and node name rewrite.

use bytes::Bytes;
use hep_proto::Received;

use crate::{HepCallback, Verdict};

/// Sets the capture id and/or node name of every message (e.g. to tag what one
/// collector received before relaying it). Marks the message modified, so relays
/// re-encode it.
///
/// ```
/// use hep_callbacks::Rewrite;
/// let rewrite = Rewrite::new().capture_id(9).node_name("collector-a");
/// # drop(rewrite);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    capture_id: Option<u32>,
    node_name: Option<Bytes>,
}

impl Rewrite {
    /// A rewrite that changes nothing until told.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets this capture id.
    #[must_use]
    pub fn capture_id(mut self, id: u32) -> Self {
        self.capture_id = Some(id);
        self
    }

    /// Sets this node name (chunk 0x0013).
    #[must_use]
    pub fn node_name(mut self, name: impl Into<Bytes>) -> Self {
        self.node_name = Some(name.into());
        self
    }
}

impl HepCallback for Rewrite {
    fn call(&self, r: &mut Received) -> Verdict {
        if let Some(id) = self.capture_id
            && r.message.capture_id != Some(id)
        {
            r.message_mut().capture_id = Some(id);
        }
        if let Some(name) = &self.node_name
            && r.message.node_name.as_ref() != Some(name)
        {
            r.message_mut().node_name = Some(name.clone());
        }
        Verdict::Continue
    }

    fn name(&self) -> &'static str {
        "rewrite"
    }
}
