//! The web page, embedded in the binary: `hep-server/web/` as it is in the repository (plain
//! HTML, CSS and JavaScript modules; no bundler, no CDN, nothing fetched at run time, no
//! Node needed to build).
//!
//! The router serves [`INDEX`] at `/` and at `/call/{call_id}` (the page reads the path and
//! opens that call), and every other file at `/assets/{name}` through [`asset`]. The page
//! refers to its files by absolute `/assets/...` paths, so it works under both.
//!
//! | file | what it is |
//! |---|---|
//! | `index.html` | the page's skeleton: the search form, the results table, the call view |
//! | `app.js` | the views, and the state they keep in the URL |
//! | `api.js` | the HTTP API client (`/api/v1/...`) |
//! | `ladder.js` | the call flow as SVG, and its SVG and PNG exports |
//! | `sip.js` | reading a record: start line, headers, body, the arrow's label |
//! | `dom.js` | building elements with text nodes only (never markup from data) |
//! | `style.css` | the look: light and dark, laptop and phone |
//! | `icon.svg` | the tab's icon |
//!
//! ```
//! use hep_server::http::page::{asset, INDEX};
//!
//! let (content_type, body) = asset(INDEX).unwrap();
//! assert_eq!(content_type, "text/html; charset=utf-8");
//! assert!(body.starts_with(b"<!doctype html>"));
//! assert_eq!(asset("app.js").unwrap().0, "text/javascript; charset=utf-8");
//! assert!(asset("../Cargo.toml").is_none());
//! ```

/// The page itself, served at `/` and `/call/{call_id}`.
pub const INDEX: &str = "index.html";

/// Every embedded file: its name under `/assets/`, its content type, its bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (INDEX, HTML, include_bytes!("../../web/index.html")),
    ("app.js", JS, include_bytes!("../../web/app.js")),
    ("api.js", JS, include_bytes!("../../web/api.js")),
    ("dom.js", JS, include_bytes!("../../web/dom.js")),
    ("ladder.js", JS, include_bytes!("../../web/ladder.js")),
    ("sip.js", JS, include_bytes!("../../web/sip.js")),
    ("quality.js", JS, include_bytes!("../../web/quality.js")),
    ("style.css", CSS, include_bytes!("../../web/style.css")),
    ("icon.svg", SVG, include_bytes!("../../web/icon.svg")),
];

const HTML: &str = "text/html; charset=utf-8";
// Module scripts must be served with a JavaScript MIME type, or the browser refuses them.
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The content type and bytes of the page's file `name` (`app.js`, `style.css`, ...), or
/// `None` when there is no such file. Names are compared exactly: no path, no `..`.
pub fn asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, content_type, bytes)| (content_type, bytes))
}

/// The names of every embedded file.
pub fn names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(n, _, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: &str) -> &'static str {
        let (_, bytes) = asset(name).unwrap_or_else(|| panic!("{name} is not embedded"));
        std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{name} is not UTF-8: {e}"))
    }

    /// Every `"/assets/NAME"` in `text`.
    fn asset_refs(text: &str) -> Vec<&str> {
        text.split("\"/assets/")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap_or(rest.len())])
            .collect()
    }

    /// Every module a script imports: `from "./NAME"`.
    fn imports(text: &str) -> Vec<&str> {
        text.split("from \"./")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap_or(rest.len())])
            .collect()
    }

    #[test]
    fn every_file_the_page_refers_to_is_served() {
        let refs = asset_refs(text(INDEX));
        for want in ["app.js", "style.css", "icon.svg"] {
            assert!(
                refs.contains(&want),
                "index.html refers to {want}: {refs:?}"
            );
        }
        let mut checked = 0;
        for name in refs {
            assert!(
                asset(name).is_some(),
                "index.html refers to /assets/{name}, which is not served"
            );
            checked += 1;
        }
        // The modules the scripts import, transitively: all of them embedded.
        for js in names().filter(|n| n.ends_with(".js")) {
            for name in imports(text(js)) {
                assert!(
                    asset(name).is_some(),
                    "{js} imports ./{name}, which is not served"
                );
                checked += 1;
            }
        }
        assert!(
            checked >= 7,
            "only {checked} references found: did the pattern change?"
        );
    }

    #[test]
    fn every_web_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap();
            // package.json only tells node the scripts are modules (for the checks).
            if path.is_file() && name != "package.json" {
                assert!(
                    asset(name).is_some(),
                    "web/{name} exists but is not embedded in page.rs"
                );
                assert_eq!(
                    asset(name).unwrap().1,
                    std::fs::read(&path).unwrap().as_slice()
                );
            }
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        for name in names() {
            let (ct, _) = asset(name).unwrap();
            let want = match name.rsplit('.').next() {
                Some("html") => HTML,
                Some("js") => JS,
                Some("css") => CSS,
                Some("svg") => SVG,
                other => panic!("no content type for .{other:?}"),
            };
            assert_eq!(ct, want, "{name}");
        }
    }

    #[test]
    fn names_are_exact_not_paths() {
        for bad in [
            "",
            "/app.js",
            "./app.js",
            "../web/app.js",
            "APP.JS",
            "app.js/",
            "fixtures/call.json",
        ] {
            assert!(asset(bad).is_none(), "{bad:?} must not be served");
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_never_parses_data_as_markup() {
        for name in names() {
            let t = text(name);
            for line in t.lines() {
                // The SVG namespace is a name, not a fetch.
                let line = line.replace("http://www.w3.org/2000/svg", "");
                assert!(
                    !line.contains("http://")
                        && !line.contains("https://")
                        && !line.contains("//cdn"),
                    "{name} refers to another host: {line}"
                );
            }
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(
                    !t.contains(sink),
                    "{name} uses {sink}: text from packets must go in as text"
                );
            }
        }
    }
}
