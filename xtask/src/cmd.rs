//! A thin wrapper over [`std::process::Command`] that echoes what it runs and names what failed.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// A command to run in a fixed directory, with a human-readable rendering for logs and errors.
#[derive(Debug)]
pub(crate) struct Cmd {
    /// The process to spawn.
    inner: Command,
    /// What `==> ...` prints: environment overrides, the program's short name, the arguments.
    display: String,
}

impl Cmd {
    /// A command running `program` in `dir`, shown in logs as `name`.
    pub(crate) fn new(program: &OsStr, name: &str, dir: &Path) -> Self {
        let mut inner = Command::new(program);
        inner.current_dir(dir);
        Self {
            inner,
            display: name.to_owned(),
        }
    }

    /// Appends one argument.
    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        let arg = arg.as_ref();
        self.display.push(' ');
        self.display.push_str(&quote(arg));
        self.inner.arg(arg);
        self
    }

    /// Appends several arguments.
    pub(crate) fn args<I>(self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        args.into_iter().fold(self, Self::arg)
    }

    /// Sets an environment variable for the child only, shown as a `KEY=value` prefix.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        let mut prefix = String::new();
        // Writing to a String cannot fail.
        let _ = write!(prefix, "{key}={} ", quote(OsStr::new(value)));
        self.display.insert_str(0, &prefix);
        self.inner.env(key, value);
        self
    }

    /// Prints `==> <command>`, runs it with inherited stdio, and waits for it.
    ///
    /// # Errors
    /// Fails, naming the command, if it cannot be started or exits unsuccessfully.
    pub(crate) fn run(mut self) -> Result<()> {
        println!("==> {}", self.display);
        let status = self
            .inner
            .status()
            .with_context(|| format!("`{}` could not be started", self.display))?;
        if !status.success() {
            bail!("`{}` failed ({status})", self.display);
        }
        Ok(())
    }

    /// Runs the command silently and reports whether it succeeded; used for capability probes.
    pub(crate) fn probe(mut self) -> bool {
        self.inner
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Prints `==> <command>`, runs it, and returns its standard output; stderr is inherited.
    ///
    /// # Errors
    /// Fails, naming the command, if it cannot be started, exits unsuccessfully, or prints
    /// something that is not UTF-8.
    pub(crate) fn read_stdout(mut self) -> Result<String> {
        println!("==> {}", self.display);
        let output = self
            .inner
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("`{}` could not be started", self.display))?;
        if !output.status.success() {
            bail!("`{}` failed ({})", self.display, output.status);
        }
        String::from_utf8(output.stdout)
            .with_context(|| format!("`{}` printed non-UTF-8 output", self.display))
    }
}

/// Renders an argument for display, single-quoting it when a shell would need quotes.
fn quote(arg: &OsStr) -> String {
    let arg = arg.to_string_lossy();
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c));
    if plain {
        arg.into_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_when_needed() {
        let cmd = Cmd::new(OsStr::new("/usr/bin/cargo"), "cargo", Path::new("."))
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--workspace", "-max_total_time=20", "it's"]);
        assert_eq!(
            cmd.display,
            r"RUSTDOCFLAGS='-D warnings' cargo doc --workspace -max_total_time=20 'it'\''s'"
        );
    }
}
