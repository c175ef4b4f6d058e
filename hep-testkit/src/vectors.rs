//! The golden vectors in `testdata/`.

use std::path::{Path, PathBuf};

/// The `testdata/` directory.
pub fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// A vector file by its path under `testdata/`, e.g. `"kamailio/v3-udp-0001.hep"`.
pub fn read(rel: &str) -> Vec<u8> {
    let p = testdata_dir().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading vector {}: {e}", p.display()))
}

/// The Kamailio vector files (`.hep`, one HEP message each) whose name starts with
/// `prefix` (e.g. `"v2-udp-ipv6-"`), sorted, as (file name, bytes).
pub fn kamailio(prefix: &str) -> Vec<(String, Vec<u8>)> {
    let dir = testdata_dir().join("kamailio");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".hep"))
        // "v2-udp-" must not also pick up "v2-udp-ipv6-..." files: the rest is a number.
        .filter(|n| {
            n[prefix.len()..n.len() - 4]
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .map(|n| {
            let bytes = read(&format!("kamailio/{n}"));
            (n, bytes)
        })
        .collect();
    out.sort();
    out
}

/// The Kamailio vector sets, by file-name prefix.
pub const KAMAILIO_SETS: &[&str] = &[
    "v1-udp-",
    "v2-udp-",
    "v2-udp-ipv6-",
    "v3-udp-",
    "v3-udp-ipv6-",
    "v3-udp-hlog-authkey-",
    "v3-tcp-",
];

/// The values hepdump.py read from every Kamailio vector (`decoded-hepdump.jsonl`), as
/// raw JSON lines keyed by file name.
pub fn hepdump_lines() -> Vec<String> {
    let p = testdata_dir().join("kamailio/decoded-hepdump.jsonl");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}
