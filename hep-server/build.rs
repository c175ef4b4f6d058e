//! Sets `HEP_SERVER_VERSION`, what `hep-server --version` prints: the package version and
//! the git commit it was built from.
//!
//! The commit comes from `$HEP_SERVER_GIT_COMMIT` when set (the `Containerfile` passes it:
//! its build context has no `.git`), from `.cargo_vcs_info.json` in a source package made by `cargo
//! package` (which records the commit there), from `git rev-parse` in a checkout, and is left
//! out where neither is there (a tarball of the files alone): the version is then the
//! package version only. A checkout with uncommitted changes is not marked: that would
//! make this script run again on every edit, and the crate rebuild with it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let version = env("CARGO_PKG_VERSION").unwrap_or_default();
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR").unwrap_or_default());
    // A source package's record first: unpacked inside some other checkout, git would
    // name that checkout's commit.
    // A build without the history (a container build's context) can be told it.
    println!("cargo:rerun-if-env-changed=HEP_SERVER_GIT_COMMIT");
    let commit = env("HEP_SERVER_GIT_COMMIT")
        .filter(|c| !c.is_empty())
        .or_else(|| vcs_info_commit(&manifest_dir))
        .or_else(|| git_commit(&manifest_dir));
    let full = match commit {
        Some(commit) => format!("{version} (git {commit})"),
        None => version,
    };
    println!("cargo:rustc-env=HEP_SERVER_VERSION={full}");
    rerun_if_changed(&manifest_dir.join(".cargo_vcs_info.json"));
}

/// Asks cargo to run this script again when `path` changes; only for a path that
/// exists: cargo counts a missing one as changed on every build, which would rebuild the
/// crate every time (a branch's ref moves into `packed-refs` when git packs it; the next
/// run then names the file that exists).
fn rerun_if_changed(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// The commit checked out, 12 hex digits; `None` outside a git checkout or without git.
/// Asks to run again when HEAD or the branch it is on moves.
fn git_commit(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    for path in [
        git(dir, &["rev-parse", "--git-path", "HEAD"]),
        git(dir, &["rev-parse", "--git-path", "packed-refs"]),
        git(dir, &["symbolic-ref", "-q", "HEAD"])
            .and_then(|r| git(dir, &["rev-parse", "--git-path", &r])),
    ]
    .into_iter()
    .flatten()
    {
        // Relative paths are relative to `dir`, where git ran.
        rerun_if_changed(&dir.join(path));
    }
    Some(commit)
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

/// The `"sha1": "..."` that `cargo package` writes into `.cargo_vcs_info.json`.
fn vcs_info_commit(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".cargo_vcs_info.json")).ok()?;
    let after = &text[text.find("\"sha1\"")? + "\"sha1\"".len()..];
    let sha: String = after
        .trim_start_matches([' ', ':', '"'])
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (sha.len() >= 12).then(|| sha[..12].to_owned())
}
