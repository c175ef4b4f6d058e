//! Small files replaced whole, atomically and durably: a spool's cursor, a NATS input's
//! positions.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;

/// Replaces `path` with `bytes`: written to `<path>.tmp` (created with `options`, which
/// may set its mode), synced, renamed over `path`, and the directory synced, so a crash
/// leaves either the old file or the new one.
///
/// # Errors
/// An IO error; the previous file is then still in place.
pub(crate) fn replace(path: &Path, bytes: &[u8], options: &mut OpenOptions) -> io::Result<()> {
    let mut tmp = OsString::from(path.as_os_str());
    tmp.push(".tmp");
    let mut f = options.write(true).create(true).truncate(true).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    fs::rename(&tmp, path)?;
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => sync_dir(dir),
        None => sync_dir(Path::new(".")),
    }
}

/// Makes renames, creations and removals in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = TempDir::new("durable-replace");
        let path = dir.path().join("state");
        replace(&path, b"first, longer", &mut OpenOptions::new()).unwrap();
        replace(&path, b"second", &mut OpenOptions::new()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert!(!dir.path().join("state.tmp").exists());
    }
}
