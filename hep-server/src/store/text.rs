//! Free text over the messages (`search --text`, the API's `q=`): the calls one of whose
//! SIP messages holds a piece of text, found by reading the messages themselves.
//!
//! The text is in the HEP bytes, not in an index, so a search reads messages one by one
//! (the loop is the query's, `query::calls_with_text`; this module keeps the matching
//! and the bounds): it never runs alone. Its candidates are the rows every other filter of the query already
//! matches (time window, capture ids, node, method, user, Call-ID), SIP messages only
//! (those with a Call-ID), newest first, partition by partition, and it reads at most
//! [`Query::text_scan_limit`](super::Query::text_scan_limit) of them
//! ([`MAX_TEXT_SCAN`] by default) and collects at most [`MAX_TEXT_CALLS`] calls. When it
//! stops at a bound before the candidates end, [`TextScan::truncated`] says so: calls
//! older than the last message read may hold the text too (narrow the window or add a
//! filter).
//!
//! What matches: the message as captured (start line, headers and body), as a substring,
//! ASCII letters compared without case (`alice` finds `Alice`); other characters
//! (UTF-8) compare exactly.

use std::collections::BTreeSet;

use bytes::Bytes;
use hep_proto::HepMessage;

/// Messages a text search reads at most, by default.
pub const MAX_TEXT_SCAN: usize = 50_000;
/// Calls a text search collects at most (their Call-IDs go into an `IN` list).
pub const MAX_TEXT_CALLS: usize = 10_000;
/// The longest text searched for, in bytes.
pub const MAX_TEXT_BYTES: usize = 256;

/// What a text search read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TextScan {
    /// Messages read and looked through.
    pub scanned: usize,
    /// The bound on messages read (the query's `text_scan_limit`).
    pub limit: usize,
    /// Whether it stopped at a bound (messages read, or [`MAX_TEXT_CALLS`] calls) before
    /// the candidates ended: older calls may match too.
    pub truncated: bool,
}

/// `needle` in `haystack`, ASCII letters without case.
///
/// ```
/// use hep_server::store::text::Needle;
/// let n = Needle::new("X-Tenant: ACME");
/// assert!(n.is_in(b"INVITE sip:a@b SIP/2.0\r\nx-tenant: acme\r\n\r\n"));
/// assert!(!n.is_in(b"X-Tenant: acne"));
/// ```
#[derive(Debug, Clone)]
pub struct Needle {
    lower: Vec<u8>,
}

impl Needle {
    /// The text to look for.
    pub fn new(text: &str) -> Self {
        Self {
            lower: text.as_bytes().to_ascii_lowercase(),
        }
    }

    /// Whether `haystack` holds it.
    pub fn is_in(&self, haystack: &[u8]) -> bool {
        if self.lower.is_empty() {
            return true;
        }
        haystack
            .windows(self.lower.len())
            .any(|w| w.eq_ignore_ascii_case(&self.lower))
    }
}

/// A text search under way: the calls found, what was read, the bounds. The store's
/// query feeds it candidates ([`super::query`], partition by partition, newest first).
#[derive(Debug)]
pub(super) struct TextSearch {
    needle: Needle,
    calls: Vec<String>,
    seen: BTreeSet<String>,
    scan: TextScan,
}

impl TextSearch {
    /// A search for `text`, reading at most `limit` messages.
    pub(super) fn new(text: &str, limit: usize) -> Self {
        Self {
            needle: Needle::new(text),
            calls: Vec::new(),
            seen: BTreeSet::new(),
            scan: TextScan {
                scanned: 0,
                limit,
                truncated: false,
            },
        }
    }

    /// Counts one more candidate of call `call_id`; `Next::Stop` at a bound (the search
    /// is then truncated), `Next::Skip` for a call found already (no need to read it).
    pub(super) fn next(&mut self, call_id: &str) -> Next {
        if self.scan.scanned >= self.scan.limit || self.calls.len() >= MAX_TEXT_CALLS {
            self.scan.truncated = true;
            return Next::Stop;
        }
        self.scan.scanned += 1;
        if self.seen.contains(call_id) {
            Next::Skip
        } else {
            Next::Read
        }
    }

    /// Looks through the HEP bytes of a candidate of `call_id` (bytes that do not decode
    /// are no text: searches report those).
    pub(super) fn look(&mut self, call_id: String, hep: Vec<u8>) {
        let Ok(message) = HepMessage::decode(Bytes::from(hep)) else {
            return;
        };
        if self.needle.is_in(message.payload.bytes()) && self.seen.insert(call_id.clone()) {
            self.calls.push(call_id);
        }
    }

    /// The Call-IDs found (newest first) and what was read.
    pub(super) fn finish(self) -> (Vec<String>, TextScan) {
        (self.calls, self.scan)
    }
}

/// What to do with the next candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Read it and look.
    Read,
    /// Its call is found already.
    Skip,
    /// A bound is reached: read no more.
    Stop,
}
