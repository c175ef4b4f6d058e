//! What the package check's steps share: where the package puts things, and running a
//! command with its failure named.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, ensure};

pub(super) const PACKAGE: &str = "hep-server";

pub(super) const UNIT: &str = "/usr/lib/systemd/system/hep-server.service";

pub(super) const CONFFILE: &str = "/etc/hep-server/hep-server.toml";

pub(super) const STATE: &str = "/var/lib/hep-server";

pub(super) const STORE: &str = "/var/lib/hep-server/store";

/// `id -u hep-server` or `id -g hep-server`.
pub(super) fn id(flag: &str) -> Result<u32> {
    let out = output(Command::new("id").args([flag, PACKAGE]))?;
    out.trim()
        .parse()
        .with_context(|| format!("id {flag} {PACKAGE}: {out:?}"))
}

/// Runs `cmd` with inherited output; an error names it and its status.
pub(super) fn run_cmd(cmd: &mut Command) -> Result<()> {
    println!("==> {cmd:?}");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(())
}

/// Runs `cmd` and returns its standard output; an error names it, its status and stderr.
pub(super) fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
