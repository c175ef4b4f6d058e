//! Who may read what: `[http.tokens]`, each token naming the capture ids it may see.
//!
//! Without tokens the API is open (it is bound to loopback: [`super::HttpConfig::check`]
//! refuses anything else). With tokens, every API request needs `Authorization: Bearer
//! TOKEN` naming one of them (else `401 unauthorized`), and every query it makes is
//! filtered by the token's capture ids in the store's SQL ([`crate::store::Query`]'s
//! `capture_ids`), not after the fact. The page's static files need no token: they hold
//! no data.

use std::collections::BTreeMap;

use axum::http::HeaderValue;

use super::error::ApiError;

/// The tokens of `[http.tokens]`.
#[derive(Clone, Default)]
pub(crate) struct Tokens {
    tokens: Vec<(Vec<u8>, Vec<u32>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.tokens.len())
    }
}

/// What a request may read: `None` every capture id, else these.
pub(crate) type Access = Option<Vec<u32>>;

impl Tokens {
    pub(crate) fn new(tokens: &BTreeMap<String, Vec<u32>>) -> Self {
        Self {
            tokens: tokens
                .iter()
                .map(|(t, ids)| (t.as_bytes().to_vec(), ids.clone()))
                .collect(),
        }
    }

    /// What the request with `authorization` may read.
    pub(crate) fn access(&self, authorization: Option<&HeaderValue>) -> Result<Access, ApiError> {
        if self.tokens.is_empty() {
            return Ok(None);
        }
        let Some(value) = authorization else {
            return Err(ApiError::unauthorized(
                "this server needs a token: send `Authorization: Bearer TOKEN`",
            ));
        };
        let given = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer TOKEN`"))?;
        // Compared with every token, in time that does not depend on where they differ.
        let mut found = None;
        for (token, ids) in &self.tokens {
            if constant_time_eq(token, given) {
                found = Some(ids);
            }
        }
        found
            .map(|ids| Some(ids.clone()))
            .ok_or_else(|| ApiError::unauthorized("unknown token"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `access` narrowed by an `X-Hep-Capture-Ids` header (`1,2`, or `none`): what a peer's
/// request may read is what the cluster's token may read here and what the caller could
/// read on the node it asked. Anyone may send it: it only ever narrows.
///
/// # Errors
/// `bad_parameter` for a value that is not a list of capture ids.
pub(crate) fn narrowed(access: Access, header: Option<&HeaderValue>) -> Result<Access, ApiError> {
    let Some(h) = header else {
        return Ok(access);
    };
    let bad = || {
        ApiError::bad_parameter(format!(
            "{}: expected capture ids separated by commas, or `none`",
            crate::cluster::CAPTURE_IDS_HEADER
        ))
    };
    let text = h.to_str().map_err(|_| bad())?.trim();
    let asked: Vec<u32> = if text == "none" {
        Vec::new()
    } else {
        text.split(',')
            .map(|v| v.trim().parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?
    };
    Ok(Some(match access {
        None => asked,
        Some(ids) => ids.into_iter().filter(|i| asked.contains(i)).collect(),
    }))
}

/// The capture ids a query may read: the token's, narrowed to `asked` if given.
pub(crate) fn capture_ids(access: &Access, asked: Option<u32>) -> Option<Vec<u32>> {
    match (access, asked) {
        (None, None) => None,
        (None, Some(id)) => Some(vec![id]),
        (Some(ids), None) => Some(ids.clone()),
        (Some(ids), Some(id)) => Some(ids.iter().copied().filter(|&i| i == id).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&BTreeMap::from([
            ("tenant-a".to_owned(), vec![7]),
            ("ops".to_owned(), vec![7, 8]),
        ]))
    }

    #[test]
    fn a_token_gives_its_capture_ids_and_nothing_else_gets_in() {
        let t = tokens();
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(t.access(Some(&h("Bearer tenant-a"))), Ok(Some(vec![7])));
        assert_eq!(t.access(Some(&h("Bearer ops"))), Ok(Some(vec![7, 8])));
        for bad in [
            None,
            Some(h("Bearer tenant-b")),
            Some(h("tenant-a")),
            Some(h("Bearer ")),
        ] {
            assert_eq!(t.access(bad.as_ref()).unwrap_err().code, "unauthorized");
        }
        assert_eq!(Tokens::default().access(None), Ok(None), "no tokens: open");
    }

    #[test]
    fn a_peers_capture_ids_only_narrow_what_its_token_reads() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            narrowed(Some(vec![7, 8]), Some(&h("8,9"))),
            Ok(Some(vec![8]))
        );
        assert_eq!(narrowed(None, Some(&h("8, 9"))), Ok(Some(vec![8, 9])));
        assert_eq!(narrowed(Some(vec![7]), Some(&h("none"))), Ok(Some(vec![])));
        assert_eq!(narrowed(Some(vec![7]), None), Ok(Some(vec![7])));
        assert_eq!(
            narrowed(None, Some(&h("7;8"))).unwrap_err().code,
            "bad_parameter"
        );
    }

    #[test]
    fn a_capture_id_asked_for_is_narrowed_by_the_token() {
        assert_eq!(capture_ids(&Some(vec![7]), Some(8)), Some(vec![]));
        assert_eq!(capture_ids(&Some(vec![7, 8]), Some(8)), Some(vec![8]));
        assert_eq!(capture_ids(&None, Some(8)), Some(vec![8]));
        assert_eq!(capture_ids(&None, None), None);
    }
}
