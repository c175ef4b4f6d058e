//! `hep-server generate --dir DIR`: the man pages and shell completions, made from the
//! clap definitions of [`cli`](crate::cli) so that they cannot drift from `--help`.
//! `cargo xtask package` runs it and ships the files in the Debian package.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("hep-generate-doc-{}", std::process::id()));
//! let written = hep_server::commands::generate::write_all(&dir)?;
//! assert!(written.iter().any(|p| p.ends_with("hep-server.1")));
//! assert!(written.iter().any(|p| p.ends_with("hep-server-run.1")));
//! assert!(written.iter().any(|p| p.ends_with("_hep-server")));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

/// The shells completions are written for, with the file names their packages look for
/// (`hep-server.bash`, `_hep-server`, `hep-server.fish`).
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Writes into `dir` (created if missing) `hep-server.1`, a page per subcommand
/// (`hep-server-run.1` ...) and a completion file per shell of [`SHELLS`]; returns their
/// paths.
///
/// # Errors
/// The directory or a file cannot be written.
pub fn write_all(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let before = list(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    let mut cmd = Cli::command();
    for shell in SHELLS {
        clap_complete::generate_to(shell, &mut cmd, "hep-server", dir)?;
    }
    let mut written: Vec<PathBuf> = list(dir)?
        .into_iter()
        .filter(|p| !before.contains(p) || is_ours(p))
        .collect();
    written.sort();
    Ok(written)
}

fn list(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect()
}

/// A file this command writes (when it was there before, it was overwritten).
fn is_ours(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        (n.starts_with("hep-server") && n.ends_with(".1"))
            || ["hep-server.bash", "_hep-server", "hep-server.fish"].contains(&n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_subcommand_has_a_page_and_every_shell_a_file() {
        let tmp = crate::testing::TempDir::new("generate");
        let dir = tmp.path();
        let written = write_all(dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let visible: Vec<String> = Cli::command()
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| format!("hep-server-{}.1", c.get_name()))
            .collect();
        assert!(visible.len() >= 5, "{visible:?}");
        for page in visible.iter().chain([&"hep-server.1".to_owned()]) {
            assert!(names.contains(page), "{page} missing from {names:?}");
        }
        assert!(
            !names.iter().any(|n| n.contains("generate")),
            "the hidden subcommand has no page: {names:?}"
        );
        let man = std::fs::read_to_string(dir.join("hep-server-run.1")).unwrap();
        assert!(man.contains("HEP_SERVER_LISTEN"), "{man}");
        let bash = std::fs::read_to_string(dir.join("hep-server.bash")).unwrap();
        assert!(bash.contains("--call-id"), "search's flags are completed");
        let fish = std::fs::read_to_string(dir.join("hep-server.fish")).unwrap();
        assert!(fish.contains("check-config"));
        assert_eq!(names.len(), visible.len() + 1 + SHELLS.len(), "{names:?}");
    }
}
