//! The page: static files of `hep-server/web/`, embedded in the binary (no network, no
//! Node at build or run time).
//!
//! A placeholder until the page itself lands: `index.html` only.

/// The content type and bytes of the file `name` of `hep-server/web/`; `index.html` is
/// what `/` and `/call/{call_id}` serve.
pub(crate) fn asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    match name {
        "index.html" => Some((
            "text/html; charset=utf-8",
            include_bytes!("../../web/index.html"),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_index_is_embedded() {
        let (ctype, bytes) = super::asset("index.html").unwrap();
        assert!(ctype.starts_with("text/html"));
        assert!(String::from_utf8_lossy(bytes).contains("<title>hep-server</title>"));
        assert!(super::asset("../Cargo.toml").is_none());
    }
}
