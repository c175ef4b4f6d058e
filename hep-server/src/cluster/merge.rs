//! The pages of calls of several nodes as one page, sorted as one node sorts them and
//! with a cursor that still holds.
//!
//! A node lists its calls newest first by the row id of their newest matching message
//! (the row's `cursor`; row ids are capture times, so they compare across nodes), and
//! its page is exact down to its `next`: every call of that node whose `cursor` is at or
//! above `next` is on the page (or an earlier one). The merged page is exact down to the
//! highest `next` of the nodes, so it keeps the rows at or above it, the newest `limit`
//! of them, and its `next` is the `cursor` of the last row kept when it had to cut, else
//! that highest `next` (none when no node has more). Asked with that cursor, every node
//! lists the calls below it: no call is shown twice, none is skipped.

use serde_json::Value;

/// One node's page: its rows (each with an integer `cursor`) and its `next`.
#[derive(Debug, Clone, Default)]
pub struct NodePage {
    /// The rows, each with `cursor`.
    pub calls: Vec<Value>,
    /// The node's cursor of its next page.
    pub next: Option<i64>,
}

impl NodePage {
    /// The page of a node's JSON answer (`{"calls": [...], "next": "123"|null}`).
    ///
    /// # Errors
    /// What is not as expected, for the message naming the peer.
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let calls = v["calls"]
            .as_array()
            .ok_or("answer has no `calls` list (is the peer a hep-server of this version?)")?;
        if let Some(bad) = calls.iter().find(|c| c["cursor"].as_i64().is_none()) {
            return Err(format!(
                "a call row has no integer `cursor` (is the peer a hep-server of this \
                 version?): {}",
                bad["call_id"]
            ));
        }
        let next = match &v["next"] {
            Value::Null => None,
            Value::String(s) => Some(
                s.parse()
                    .map_err(|_| format!("answer's `next` is not a cursor: `{s}`"))?,
            ),
            other => return Err(format!("answer's `next` is not a cursor: {other}")),
        };
        Ok(Self {
            calls: calls.clone(),
            next,
        })
    }
}

/// The merged page: at most `limit` rows, newest first, and its `next`; see the
/// [module docs](self).
///
/// ```
/// use hep_server::cluster::merge::{merge, NodePage};
/// use serde_json::json;
/// let row = |id: &str, cursor: i64| json!({"call_id": id, "cursor": cursor});
/// let a = NodePage { calls: vec![row("a1", 90), row("a2", 50)], next: None };
/// let b = NodePage { calls: vec![row("b1", 70), row("b2", 60)], next: Some(60) };
/// let (calls, next) = merge(vec![a, b], 10);
/// let ids: Vec<&str> = calls.iter().map(|c| c["call_id"].as_str().unwrap()).collect();
/// // a2 (50) is below what b is known down to (60): it comes on the next page.
/// assert_eq!((ids, next), (vec!["a1", "b1", "b2"], Some(60)));
/// ```
pub fn merge(pages: Vec<NodePage>, limit: usize) -> (Vec<Value>, Option<i64>) {
    let floor = pages.iter().filter_map(|p| p.next).max();
    let mut rows: Vec<(i64, Value)> = pages
        .into_iter()
        .flat_map(|p| p.calls)
        .filter_map(|c| c["cursor"].as_i64().map(|k| (k, c)))
        .filter(|(k, _)| floor.is_none_or(|f| *k >= f))
        .collect();
    // Newest first; a stable sort keeps a node's own order among equal cursors.
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let limit = limit.max(1);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|(k, _)| *k);
        return (rows.into_iter().map(|(_, c)| c).collect(), next);
    }
    (rows.into_iter().map(|(_, c)| c).collect(), floor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(node: &str, cursors: &[i64], next: Option<i64>) -> NodePage {
        NodePage {
            calls: cursors
                .iter()
                .map(|c| json!({"call_id": format!("{node}{c}"), "cursor": c}))
                .collect(),
            next,
        }
    }

    fn ids(calls: &[Value]) -> Vec<&str> {
        calls
            .iter()
            .map(|c| c["call_id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn the_newest_rows_of_all_nodes_come_first_and_the_cut_is_the_next_cursor() {
        let (calls, next) = merge(
            vec![page("a", &[9, 5, 1], None), page("b", &[8, 7], None)],
            3,
        );
        assert_eq!(ids(&calls), ["a9", "b8", "b7"]);
        assert_eq!(next, Some(7));
    }

    #[test]
    fn paging_through_the_merge_shows_every_call_once() {
        // Two nodes' calls, each listed `limit` at a time as a node lists them.
        let a: Vec<i64> = vec![100, 95, 60, 59, 58, 20, 3];
        let b: Vec<i64> = vec![99, 70, 61, 40, 30, 21, 2, 1];
        let node = |all: &[i64], before: Option<i64>, limit: usize| {
            let below: Vec<i64> = all
                .iter()
                .copied()
                .filter(|c| before.is_none_or(|b| *c < b))
                .collect();
            let next = (below.len() > limit).then(|| below[limit - 1]);
            NodePage {
                calls: below[..below.len().min(limit)]
                    .iter()
                    .map(|c| json!({"call_id": c.to_string(), "cursor": c}))
                    .collect(),
                next,
            }
        };
        let mut seen = Vec::new();
        let mut cursor = None;
        for _ in 0..20 {
            let (calls, next) = merge(vec![node(&a, cursor, 3), node(&b, cursor, 3)], 3);
            assert!(calls.len() <= 3);
            seen.extend(calls.iter().map(|c| c["cursor"].as_i64().unwrap()));
            cursor = next;
            if cursor.is_none() {
                break;
            }
        }
        let mut all: Vec<i64> = a.iter().chain(&b).copied().collect();
        all.sort_unstable_by(|x, y| y.cmp(x));
        assert_eq!(seen, all, "every call once, newest first");
    }

    #[test]
    fn a_peer_answer_without_cursors_is_refused() {
        let e =
            NodePage::from_json(&json!({"calls": [{"call_id": "x"}], "next": null})).unwrap_err();
        assert!(e.contains("cursor"), "{e}");
        let ok = NodePage::from_json(&json!({"calls": [], "next": "42"})).unwrap();
        assert_eq!(ok.next, Some(42));
    }
}
