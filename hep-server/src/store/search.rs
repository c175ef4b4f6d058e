//! A search: the messages matching a [`Query`] (its terms in [`super::query`]), with
//! every leg of the call searched ([`super::legs`]).

use std::collections::BTreeSet;
use std::path::Path;

use super::StoreError;
use super::legs;
use super::query::{
    Filter, Found, Query, Results, Term, Terms, check_dir, decode, filters, select, sources,
};
use super::readers::Readers;

/// The messages of the store in `dir` matching `q`, oldest first, and those that
/// matched but could not be read back. A search by Call-ID brings every leg of the call's
/// chain (within the query's time range and capture ids).
///
/// # Errors
/// The directory does not exist or holds a foreign file; a partition cannot be read.
pub fn search(dir: &Path, q: &Query) -> Result<Results, StoreError> {
    Readers::one_shot().search(dir, q)
}

impl Readers {
    /// [`search()`], with the connections of these readers.
    ///
    /// # Errors
    /// As [`search()`].
    pub fn search(&self, dir: &Path, q: &Query) -> Result<Results, StoreError> {
        search_in(self, dir, q)
    }
}

fn search_in(readers: &Readers, dir: &Path, q: &Query) -> Result<Results, StoreError> {
    check_dir(dir)?;
    let partitions = sources(readers, dir, q)?;
    let Terms {
        matching,
        text_scan,
    } = filters(q, &partitions, None)?;
    let Some((filter, time)) = matching else {
        return Ok(Results {
            text_scan,
            ..Results::default()
        });
    };
    let mut found = select(&partitions, &filter.and(&time), q.limit)?;
    let mut legs_cut = false;

    // The other legs: the whole chain of the call searched, with what is linked to its
    // calls in turn (a log line about another leg).
    if let Some(id) = &q.call_id {
        let mut chains = legs::chains(&partitions, &time, std::slice::from_ref(id))?;
        let members = chains.members(id);
        legs_cut = chains.is_cut(id);
        // Not the calls beyond the chain's bounds that name one of its calls.
        let in_chain: BTreeSet<String> = members.iter().cloned().collect();
        let in_chain = |f: &Found| f.call_id.as_ref().is_none_or(|c| in_chain.contains(c));
        found.retain(|f| in_chain(f));
        let others: Vec<String> = members.iter().filter(|m| *m != id).cloned().collect();
        if !others.is_empty() {
            let mut by_leg = Filter::default();
            by_leg.terms.push(Term::CallOrLinked(others));
            let more = select(&partitions, &by_leg.and(&time), usize::MAX)?;
            let seen: BTreeSet<(usize, i64)> = found.iter().map(|f| (f.partition, f.id)).collect();
            found.extend(
                more.into_iter()
                    .filter(|f| !seen.contains(&(f.partition, f.id)) && in_chain(f)),
            );
        }
    }
    found.sort_by_key(|f| (f.id, f.partition));
    let mut results = Results {
        text_scan,
        legs_cut,
        ..Results::default()
    };
    for f in found {
        match decode(f, &partitions) {
            Ok(s) => results.messages.push(s),
            Err(e) => results.damaged.push(e),
        }
    }
    Ok(results)
}
