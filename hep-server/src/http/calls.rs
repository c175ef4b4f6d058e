//! The JSON of the API: a call's row in the list ([`CallRow`]) and a message with its id
//! ([`MessageJson`]).
//!
//! A row summarizes the messages of one Call-ID ([`store::Call`]):
//! - `from_user`, `to_user`: of its first request (the initial INVITE, REGISTER...);
//! - `first_ts`, `last_ts`: capture times of its first and last message, RFC 3339 UTC
//!   with microseconds; `duration`: seconds between them (with microseconds);
//! - `methods`: the request methods seen, in the order first seen;
//! - `final_status`: the first final response (200 to 699) to the first request's method,
//!   else the last provisional one, else `null`;
//! - `messages`: how many messages it has; `legs`: the Call-IDs linked to it;
//!   `legs_cut`: whether a bound of the walk over its legs cut its chain (16 legs, 8
//!   hops: more may exist than `legs` lists);
//! - `node`: the node that holds it (`[cluster] name`, default the host name), `peer`:
//!   the `[cluster] peers` URL it was read from (`null`: this node);
//! - `cursor`: its place in the list (the row id of its newest matching message): the
//!   `cursor` that lists the calls after it, and what pages of several nodes merge by.

use serde::Serialize;

use hep_proto::ProtoType;
use hep_proto::sip::SipSummary;

use crate::formats::record::Record;
use crate::store::{self, Stored};
use crate::time::UtcTimestamp;

/// One row of `GET /api/v1/calls`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRow {
    /// The Call-ID.
    pub call_id: String,
    /// The From user of its first request.
    pub from_user: Option<String>,
    /// The To user of its first request.
    pub to_user: Option<String>,
    /// Capture time of its first message.
    pub first_ts: Option<String>,
    /// Capture time of its last message.
    pub last_ts: Option<String>,
    /// Request methods, in the order first seen.
    pub methods: Vec<String>,
    /// The final status; see the [module docs](self).
    pub final_status: Option<u16>,
    /// Seconds from the first to the last message.
    pub duration: Option<f64>,
    /// How many messages.
    pub messages: usize,
    /// The Call-IDs of the other legs.
    pub legs: Vec<String>,
    /// Whether its chain was cut at a bound; see the [module docs](self).
    pub legs_cut: bool,
    /// The node that holds it.
    pub node: String,
    /// The peer it was read from; `None`: this node.
    pub peer: Option<String>,
    /// Its place in the list; see the [module docs](self).
    pub cursor: i64,
}

/// Capture time as RFC 3339 UTC with microseconds.
pub fn rfc3339(ts_usec: i64) -> String {
    let secs = ts_usec.div_euclid(1_000_000);
    let usecs = ts_usec.rem_euclid(1_000_000) as u32;
    UtcTimestamp::new(secs, usecs).to_string()
}

fn sip(s: &Stored) -> Option<SipSummary<'_>> {
    matches!(s.message.proto_type, None | Some(ProtoType::Sip))
        .then(|| SipSummary::parse(s.message.payload.bytes()))
        .flatten()
}

impl CallRow {
    /// The row of `call`, held by this node, `node`.
    pub fn of(call: &store::Call, node: &str) -> Self {
        let msgs = &call.messages;
        let first = msgs.iter().map(|m| m.ts_usec).min();
        let last = msgs.iter().map(|m| m.ts_usec).max();
        let mut methods: Vec<String> = Vec::new();
        let mut initial: Option<(Option<String>, Option<String>, String)> = None;
        let mut final_status = None;
        let mut provisional = None;
        for m in msgs {
            let Some(s) = sip(m) else { continue };
            if s.is_request() {
                let Some(method) = s.method() else { continue };
                if !methods.iter().any(|x| x == method) {
                    methods.push(method.to_owned());
                }
                if initial.is_none() {
                    initial = Some((
                        s.from.and_then(|f| f.user).map(str::to_owned),
                        s.to.and_then(|t| t.user).map(str::to_owned),
                        method.to_owned(),
                    ));
                }
            } else if let (Some(code), Some(method)) = (s.status(), s.method()) {
                let of_initial = initial.as_ref().is_none_or(|(_, _, m)| m == method);
                if !of_initial || final_status.is_some() {
                    continue;
                }
                if code >= 200 {
                    final_status = Some(code);
                } else {
                    provisional = Some(code);
                }
            }
        }
        let (from_user, to_user, _) = initial.unwrap_or_default();
        Self {
            call_id: call.call_id.clone(),
            from_user,
            to_user,
            first_ts: first.map(rfc3339),
            last_ts: last.map(rfc3339),
            methods,
            final_status: final_status.or(provisional),
            duration: first.zip(last).map(|(a, b)| (b - a) as f64 / 1_000_000.0),
            messages: msgs.len(),
            legs: call.legs.clone(),
            legs_cut: call.legs_cut,
            node: node.to_owned(),
            peer: None,
            cursor: call.newest_row,
        }
    }
}

/// A message as the API gives it: its id, then the JSON record
/// ([`crate::formats::record`], the same as `search --format json`).
#[derive(Debug, Serialize)]
pub struct MessageJson<'a> {
    /// The message's id ([`store::MessageId`]).
    pub id: String,
    /// The record's keys.
    #[serde(flatten)]
    pub record: Record<'a>,
}

impl<'a> MessageJson<'a> {
    /// The JSON of a stored message.
    pub fn of(s: &'a Stored) -> Self {
        Self {
            id: s.id.to_string(),
            record: Record::new(&s.message, s.recv.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_microseconds() {
        assert_eq!(
            rfc3339(1_795_670_509_000_005),
            "2026-11-26T05:21:49.000005Z"
        );
    }
}
