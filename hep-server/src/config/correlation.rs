//! `[correlation]`: what links the legs of a call in the store.

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Source};
use crate::store::link::MAX_LINK_HEADERS;
use crate::store::{Correlation, LinkHeader, Pattern};

/// `[correlation]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCorrelation {
    headers: Option<Spanned<Vec<Spanned<RawHeader>>>>,
    session_id: Option<bool>,
}

/// One of `headers`: a name, or a name and the regex extracting the Call-ID.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawHeader {
    Name(String),
    WithRegex { name: String, regex: Option<String> },
}

/// `[correlation]` (its defaults without it), each header name and regex checked.
pub(super) fn resolve(
    raw: Option<RawCorrelation>,
    src: &Source<'_>,
) -> Result<Correlation, ConfigError> {
    let d = Correlation::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let headers = match raw.headers {
        None => d.headers,
        Some(list) => {
            let span = list.span();
            let list = list.into_inner();
            if list.len() > MAX_LINK_HEADERS {
                return Err(src.error(
                    span,
                    format!(
                        "key `correlation.headers`: at most {MAX_LINK_HEADERS} headers (each \
                         is looked for in every SIP message stored), found {}",
                        list.len()
                    ),
                ));
            }
            let mut out = Vec::with_capacity(list.len());
            for (i, h) in list.into_iter().enumerate() {
                let span = h.span();
                let (name, regex) = match h.into_inner() {
                    RawHeader::Name(n) => (n, None),
                    RawHeader::WithRegex { name, regex } => (name, regex),
                };
                let token = |b: u8| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b);
                if name.is_empty() || !name.bytes().all(token) {
                    return Err(src.error(
                        span,
                        format!(
                            "key `correlation.headers[{i}].name`: expected a SIP header name \
                             (letters, digits, `-`), found {name:?}"
                        ),
                    ));
                }
                let regex = regex
                    .map(|r| {
                        Pattern::new(&r).map_err(|e| {
                            src.error(
                                span.clone(),
                                format!("key `correlation.headers[{i}].regex`: {e}"),
                            )
                        })
                    })
                    .transpose()?;
                out.push(LinkHeader { name, regex });
            }
            out
        }
    };
    Ok(Correlation {
        headers,
        session_id: raw.session_id.unwrap_or(d.session_id),
    })
}
