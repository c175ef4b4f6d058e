//! `hep-server search` across the cluster: the same filters asked of the peers' HTTP APIs
//! (`[cluster] peers` of `--config`, or `--peer URL`), each call whole from the node that
//! holds it, in the format asked (a call's JSON view, its ladder, its pcap).
//!
//! With `--call-id`: when this node holds no message of it, the first peer that answers
//! `200` ([`Cluster::find`]). Otherwise: every peer's list of the calls matching (at most
//! `--limit`, [`MAX_LIMIT`] at most) at once ([`Cluster::ask_all`]), then each call from
//! its peer. Peers that did not answer are returned, never dropped.

use bytes::Bytes;

use crate::cli::{SearchArgs, SearchFormat};
use crate::cluster::{Cluster, Peer, Unanswered};
use crate::http::params::MAX_LIMIT;

/// A call one peer holds, in the format asked.
#[derive(Debug, Clone)]
pub struct PeerCall {
    /// The peer asked.
    pub peer: Peer,
    /// Its Call-ID.
    pub call_id: String,
    /// The node's name for itself (`X-Hep-Node`, or the view's `node`).
    pub node: String,
    /// The answer: the call's JSON view, its ladder (text) or its pcap.
    pub body: Bytes,
}

/// What the peers gave.
#[derive(Debug, Default)]
pub struct PeerResults {
    /// The calls, peer by peer (in the order of the peers), each peer's newest first.
    pub calls: Vec<PeerCall>,
    /// The peers that did not answer (the list or a call of it).
    pub unanswered: Vec<Unanswered>,
}

/// `%XX` for what is not unreserved in a path segment or a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@:!$'()*,".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Microseconds as the API's Unix seconds with a fraction.
fn seconds(usec: i64) -> String {
    format!(
        "{}.{:06}",
        usec.div_euclid(1_000_000),
        usec.rem_euclid(1_000_000)
    )
}

/// The query string of `GET /api/v1/calls` for the filters of `args`.
fn list_query(args: &SearchArgs) -> String {
    let mut q: Vec<String> = Vec::new();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            q.push(format!("{k}={}", encode(&v)));
        }
    };
    add("user", args.user.clone());
    add("method", args.method.clone());
    add("node", args.node.clone());
    add("q", args.text.clone());
    add("since", args.since.map(seconds));
    add("until", args.until.map(seconds));
    let limit = usize::try_from(args.limit)
        .unwrap_or(MAX_LIMIT)
        .min(MAX_LIMIT);
    add("limit", Some(limit.to_string()));
    q.join("&")
}

/// What follows `/api/v1/calls/{call_id}` for `format`.
const fn suffix(format: SearchFormat) -> &'static str {
    match format {
        SearchFormat::Json => "",
        SearchFormat::Ladder => "/text?format=ladder",
        SearchFormat::Pcap => "/pcap",
    }
}

/// The node of an answer: its `X-Hep-Node`, or the JSON view's `node`.
fn node_of(answer: &crate::cluster::client::PeerAnswer) -> String {
    if let Some(v) = answer
        .headers
        .get("x-hep-node")
        .and_then(|v| v.to_str().ok())
    {
        return v.to_owned();
    }
    serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v["node"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Asks the peers of `cluster` for what `args` searches; `held_here`: this node has
/// messages of `--call-id` (then no peer is asked for it).
pub async fn search(args: &SearchArgs, cluster: &Cluster, held_here: bool) -> PeerResults {
    let mut out = PeerResults::default();
    let tail = suffix(args.format);
    if let Some(id) = &args.call_id {
        if held_here {
            return out;
        }
        match cluster
            .find(&format!("/api/v1/calls/{}{tail}", encode(id)), None)
            .await
        {
            Ok((peer, answer)) => out.calls.push(PeerCall {
                node: node_of(&answer),
                peer,
                call_id: id.clone(),
                body: answer.body,
            }),
            Err(unanswered) => out.unanswered = unanswered,
        }
        return out;
    }
    let lists = cluster
        .ask_all(&format!("/api/v1/calls?{}", list_query(args)), None)
        .await;
    for (index, (peer, answer)) in lists.into_iter().enumerate() {
        let rows = answer.map_err(|e| e.to_string()).and_then(|a| {
            let v = a.json().map_err(|e| e.to_string())?;
            crate::cluster::merge::NodePage::from_json(&v).map(|p| p.calls)
        });
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                out.unanswered.push(Unanswered::new(&peer, e));
                continue;
            }
        };
        for row in rows {
            let Some(id) = row["call_id"].as_str() else {
                continue;
            };
            let target = format!("/api/v1/calls/{}{tail}", encode(id));
            match cluster.ask(index, &target, None).await {
                Ok(a) if a.status == axum::http::StatusCode::OK => out.calls.push(PeerCall {
                    node: node_of(&a),
                    peer: peer.clone(),
                    call_id: id.to_owned(),
                    body: a.body,
                }),
                Ok(a) => out.unanswered.push(Unanswered::new(
                    &peer,
                    format!("call {id}: {}", a.status_error()),
                )),
                Err(e) => out
                    .unanswered
                    .push(Unanswered::new(&peer, format!("call {id}: {e}"))),
            }
        }
    }
    out
}

/// The records of pcap files written by hep-server (little-endian, microseconds) as one
/// file, in capture time order (stable: one file's order among equal times).
///
/// # Errors
/// A file that is not such a pcap, naming which.
pub fn merge_pcaps(files: &[(&str, &[u8])]) -> Result<Vec<u8>, String> {
    let mut header: Option<&[u8]> = None;
    let mut records: Vec<((u32, u32), &[u8])> = Vec::new();
    for (name, bytes) in files {
        if bytes.len() < 24 || bytes[..4] != 0xa1b2_c3d4u32.to_le_bytes() {
            return Err(format!("{name}: not a pcap file of hep-server"));
        }
        header.get_or_insert(&bytes[..24]);
        let mut at = 24;
        while at < bytes.len() {
            let head = bytes
                .get(at..at + 16)
                .ok_or_else(|| format!("{name}: a record is cut short at byte {at}"))?;
            let word =
                |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
            let len = word(8) as usize;
            let record = bytes
                .get(at..at + 16 + len)
                .ok_or_else(|| format!("{name}: a record is cut short at byte {at}"))?;
            records.push(((word(0), word(4)), record));
            at += 16 + len;
        }
    }
    records.sort_by_key(|(t, _)| *t);
    let mut out = header.map(<[u8]>::to_vec).unwrap_or_default();
    for (_, r) in records {
        out.extend_from_slice(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_encoded_and_times_are_unix_seconds() {
        assert_eq!(encode("a b/c?d#e%"), "a%20b%2Fc%3Fd%23e%25");
        assert_eq!(encode("1-13274@127.0.0.1"), "1-13274@127.0.0.1");
        assert_eq!(seconds(1_795_670_509_250_000), "1795670509.250000");
    }

    #[test]
    fn pcaps_merge_in_capture_time_order() {
        let file = |times: &[u32]| {
            let mut f = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
            f.extend_from_slice(&[0; 20]);
            for t in times {
                f.extend_from_slice(&t.to_le_bytes());
                f.extend_from_slice(&0u32.to_le_bytes());
                f.extend_from_slice(&1u32.to_le_bytes());
                f.extend_from_slice(&1u32.to_le_bytes());
                f.push(*t as u8);
            }
            f
        };
        let (a, b) = (file(&[1, 5]), file(&[3]));
        let merged = merge_pcaps(&[("a", &a), ("b", &b)]).unwrap();
        let order: Vec<u8> = merged[24..].chunks(17).map(|r| r[16]).collect();
        assert_eq!(order, [1, 3, 5]);
        assert!(merge_pcaps(&[("x", b"nope")]).unwrap_err().contains("x"));
        let cut = &a[..a.len() - 1];
        assert!(
            merge_pcaps(&[("a", cut)])
                .unwrap_err()
                .contains("cut short")
        );
    }
}
