//! The legs of calls: every Call-ID reachable from a call through the rows' link ids
//! ([`super::link`]), either way, so that a search of any leg of a chain A-B-C (C names
//! B, B names A; or legs meeting at one `Session-ID` key) finds all of it.
//!
//! A breadth-first walk over the store, one hop a round: a round reads, in every
//! partition, the distinct `(call_id, correlation_id)` pairs of the rows whose Call-ID or
//! link id is one found in the round before (the indexes of both; nothing else of the
//! row), within the query's scope (time range, capture ids). Bounded twice:
//! - [`MAX_CHAIN_HOPS`] rounds: a chain longer than that is cut at that distance from
//!   the call searched;
//! - [`MAX_LEGS`] Call-IDs in one chain: a walk stops growing a chain that has them (a
//!   proxy that stamps one `X-CID` on every call would otherwise make one chain of
//!   everything).

use std::collections::BTreeMap;

use rusqlite::types::Value;

use super::StoreError;
use super::link::SESSION_KEY_PREFIX;
use super::query::{Filter, Source, Term};

/// Hops a walk goes from the call searched, at most (A-B-C is two).
pub const MAX_CHAIN_HOPS: usize = 8;
/// Call-IDs in one chain, at most (the call itself and its other legs).
pub const MAX_LEGS: usize = 16;
/// Ids in one round's query, at most (four SQL parameters each).
const IDS_PER_QUERY: usize = 500;

/// The chains of some calls: a union-find over the ids the walk met.
#[derive(Debug, Default)]
pub(super) struct Chains {
    index: BTreeMap<String, usize>,
    names: Vec<String>,
    parent: Vec<usize>,
    /// Per root: how many Call-IDs (not `Session-ID` keys) its chain holds.
    calls: Vec<usize>,
    /// Per root: whether a bound cut its chain (it may have more legs than it shows).
    cut: Vec<bool>,
}

impl Chains {
    fn node(&mut self, id: &str) -> (usize, bool) {
        if let Some(&i) = self.index.get(id) {
            return (i, false);
        }
        let i = self.names.len();
        self.index.insert(id.to_owned(), i);
        self.names.push(id.to_owned());
        self.parent.push(i);
        self.calls
            .push(usize::from(!id.starts_with(SESSION_KEY_PREFIX)));
        self.cut.push(false);
        (i, true)
    }

    fn root(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra != rb {
            self.parent[rb] = ra;
            self.calls[ra] += self.calls[rb];
            self.cut[ra] |= self.cut[rb];
        }
    }

    /// Marks the chain of node `i` as cut by a bound.
    fn mark_cut(&mut self, i: usize) {
        let r = self.root(i);
        self.cut[r] = true;
    }

    /// Whether a bound ([`MAX_CHAIN_HOPS`], [`MAX_LEGS`]) cut the chain of `id`: it may
    /// have more legs than [`legs`](Self::legs) gives. (Seeds of one walk join their
    /// chains whatever their size, so a chain may hold more calls than `legs` lists.)
    pub(super) fn is_cut(&mut self, id: &str) -> bool {
        match self.index.get(id) {
            Some(&i) => {
                let r = self.root(i);
                self.cut[r] || self.calls[r] > MAX_LEGS
            }
            None => false,
        }
    }

    fn full(&mut self, i: usize) -> bool {
        let r = self.root(i);
        self.calls[r] >= MAX_LEGS
    }

    /// Every id of `id`'s chain, itself included, `Session-ID` keys too (what the rows
    /// of the chain hold as Call-ID or link id).
    pub(super) fn members(&mut self, id: &str) -> Vec<String> {
        let Some(&i) = self.index.get(id) else {
            return vec![id.to_owned()];
        };
        let r = self.root(i);
        let mut out = Vec::new();
        for j in 0..self.names.len() {
            if self.root(j) == r {
                out.push(self.names[j].clone());
            }
        }
        out
    }

    /// The other Call-IDs of `id`'s chain, sorted, at most [`MAX_LEGS`] - 1.
    pub(super) fn legs(&mut self, id: &str) -> Vec<String> {
        let mut legs: Vec<String> = self
            .members(id)
            .into_iter()
            .filter(|m| m != id && !m.starts_with(SESSION_KEY_PREFIX))
            .collect();
        legs.sort_unstable();
        legs.truncate(MAX_LEGS - 1);
        legs
    }
}

/// The chains of `seeds` in `partitions`, within `scope`; see the [module docs](self).
///
/// # Errors
/// A partition cannot be read.
pub(super) fn chains(
    partitions: &[Source],
    scope: &Filter,
    seeds: &[String],
) -> Result<Chains, StoreError> {
    chains_after(partitions, scope, seeds, None)
}

/// [`chains`], with the first round's pairs already known when `first_round` is given:
/// the pairs ([`first_pairs`]) of every row whose Call-ID or link id is one of `seeds`
/// within `scope` (the call list has just read them all). Used only when the seeds fit
/// one round's query, so that the walk is the same.
pub(super) fn chains_after(
    partitions: &[Source],
    scope: &Filter,
    seeds: &[String],
    mut first_round: Option<Vec<(String, String)>>,
) -> Result<Chains, StoreError> {
    let mut chains = Chains::default();
    let mut frontier: Vec<String> = Vec::new();
    for s in seeds {
        if chains.node(s).1 {
            frontier.push(s.clone());
        }
    }
    if frontier.len() > IDS_PER_QUERY {
        first_round = None;
    }
    for hop in 0..=MAX_CHAIN_HOPS {
        if frontier.is_empty() {
            break;
        }
        if hop == MAX_CHAIN_HOPS {
            // Ids met at the last hop whose own links were not read.
            for id in &frontier {
                let (i, _) = chains.node(id);
                chains.mark_cut(i);
            }
            break;
        }
        let mut next = Vec::new();
        for ids in frontier.chunks(IDS_PER_QUERY) {
            let found = match first_round.take() {
                Some(known) => known,
                None => pairs(partitions, scope, ids)?,
            };
            for (call, linked) in found {
                let (c, c_new) = chains.node(&call);
                let (l, l_new) = chains.node(&linked);
                let (c_full, l_full) = (chains.full(c), chains.full(l));
                // A new id joins no full chain; known ones are already in theirs.
                if (c_full || l_full) && (c_new || l_new) {
                    for (i, full) in [(c, c_full), (l, l_full)] {
                        if full {
                            chains.mark_cut(i);
                        }
                    }
                    continue;
                }
                chains.union(c, l);
                next.extend(c_new.then_some(call));
                next.extend(l_new.then_some(linked));
            }
        }
        frontier = next;
    }
    Ok(chains)
}

/// The distinct `(call_id, correlation_id)` pairs (both set, different) of `rows`,
/// sorted: what [`pairs`] gives for the same rows.
pub(super) fn first_pairs<'a>(
    rows: impl Iterator<Item = (Option<&'a String>, Option<&'a String>)>,
) -> Vec<(String, String)> {
    let mut out = std::collections::BTreeSet::new();
    for (call, linked) in rows {
        if let (Some(c), Some(l)) = (call, linked)
            && c != l
        {
            out.insert((c.clone(), l.clone()));
        }
    }
    out.into_iter().collect()
}

/// The distinct `(call_id, correlation_id)` pairs (both set, different) of the rows
/// whose Call-ID or link id is one of `ids`, within `scope`, from every partition.
fn pairs(
    partitions: &[Source],
    scope: &Filter,
    ids: &[String],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut f = Filter::default();
    f.terms.push(Term::CallOrLinked(ids.to_vec()));
    f.terms.push(Term::Sql(
        "call_id IS NOT NULL AND correlation_id IS NOT NULL AND call_id != correlation_id"
            .to_owned(),
        Vec::<Value>::new(),
    ));
    let f = f.and(scope);
    let mut out = std::collections::BTreeSet::new();
    for source in partitions {
        let p = &source.partition;
        let sql_err = |e| StoreError::sqlite(&p.path, e);
        let Some(conn) = source.open()? else {
            continue;
        };
        let version = conn.version;
        let (clause, params) = f.sql(version);
        let sql = format!("SELECT DISTINCT call_id, correlation_id FROM messages{clause}");
        let mut stmt = conn.prepare_cached(&sql).map_err(sql_err)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(sql_err)?;
        while let Some(r) = rows.next().map_err(sql_err)? {
            out.insert((
                r.get::<_, String>(0).map_err(sql_err)?,
                r.get::<_, String>(1).map_err(sql_err)?,
            ));
        }
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::query::{Query, select, sources};
    use crate::store::readers::Readers;
    use crate::store::tests::{NINE, invite, write, writer};
    use crate::testing::TempDir;

    /// The first round taken from the rows a call list read gives the same chains as the
    /// walk's own query: the same legs of every call, the same cut at the bounds.
    #[test]
    fn a_first_round_from_the_rows_read_walks_as_the_query_does() {
        let dir = TempDir::new("legs-first-round");
        let mut w = writer(dir.path());
        let mut batch = vec![
            invite(NINE, "leg-a", "alice", ""),
            invite(NINE + 1, "leg-b", "alice", "X-CID: leg-a\r\n"),
            invite(NINE + 2, "leg-c", "alice", "X-CID: leg-b\r\n"),
            invite(NINE + 3, "self", "alice", "X-CID: self\r\n"),
            invite(NINE + 4, "alone", "bob", ""),
        ];
        // A hub that more calls name than a chain may hold.
        for i in 0..MAX_LEGS + 4 {
            batch.push(invite(
                NINE + 5,
                &format!("spoke-{i}"),
                "carol",
                "X-CID: hub\r\n",
            ));
        }
        write(&mut w, &batch);
        drop(w);
        let readers = Readers::one_shot();
        let parts = sources(&readers, dir.path(), &Query::default()).expect("lists");
        let scope = Filter::default();
        let seed_sets: [&[&str]; 4] = [
            &["leg-a"],
            &["leg-c", "alone", "self"],
            &["spoke-0", "spoke-3", "leg-b"],
            &["hub", "nobody"],
        ];
        for seeds in seed_sets {
            let seeds: Vec<String> = seeds.iter().map(|s| (*s).to_owned()).collect();
            let mut linked = Filter::default();
            linked.terms.push(Term::CallOrLinked(seeds.clone()));
            let rows = select(&parts, &linked, usize::MAX).expect("reads");
            let first = first_pairs(
                rows.iter()
                    .map(|f| (f.call_id.as_ref(), f.correlation_id.as_ref())),
            );
            let mut walked = chains(&parts, &scope, &seeds).expect("walks");
            let mut given = chains_after(&parts, &scope, &seeds, Some(first)).expect("walks");
            for id in &seeds {
                assert_eq!(walked.is_cut(id), given.is_cut(id), "{seeds:?}: {id}");
            }
            if seeds[0] == "leg-a" {
                assert_eq!(
                    given.legs("leg-a"),
                    ["leg-b", "leg-c"],
                    "a chain was walked"
                );
            }
            for id in seeds
                .iter()
                .map(String::as_str)
                .chain(["leg-a", "leg-b", "leg-c", "spoke-1", "hub"])
            {
                assert_eq!(walked.legs(id), given.legs(id), "{seeds:?}: {id}");
            }
        }
        // The bounds were met: the hub's chain was cut, and only its.
        let seeds = vec!["hub".to_owned(), "leg-a".to_owned()];
        let mut walked = chains(&parts, &scope, &seeds).expect("walks");
        assert!(walked.is_cut("hub"));
        assert!(
            !walked.is_cut("leg-a"),
            "a whole chain beside it is not cut"
        );
    }
}
