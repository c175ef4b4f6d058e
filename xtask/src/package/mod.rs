//! `cargo xtask package [--profile NAME] [--check]`: the Debian package of hep-server.
//!
//! Builds hep-server, writes its man pages and shell completions with `hep-server
//! generate` (the man pages gzipped, as Debian ships them) into the profile's
//! `package-assets/`, and makes the `.deb` with cargo-deb from `[package.metadata.deb]`
//! of `hep-server/Cargo.toml` into `target/debian/`. cargo-deb is installed with
//! `cargo install --locked` at [`CARGO_DEB_VERSION`] when that version is missing, as
//! `cargo xtask fuzz` installs cargo-fuzz.
//!
//! The package is built from the `release` profile. `--check` (the CI step) builds it from
//! the `dev` profile unless `--profile` says otherwise: CI's test step has built that
//! binary already, where a release build from cold costs minutes of the CI's 2 cores, and
//! what the check proves (the package's files, scripts, unit, user and service) does not
//! depend on the optimisation level. (cargo-deb warns that it prefers release profiles;
//! the pinned version builds from `dev` all the same.) Then it installs, runs and purges
//! the package: see [`check`].

mod check;
mod host;
mod service;
mod traffic;
mod unit;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail, ensure};

use crate::Workspace;

/// The cargo-deb release `cargo xtask package` uses (and installs when missing).
pub(crate) const CARGO_DEB_VERSION: &str = "3.8.0";

/// Parsed `cargo xtask package` arguments.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// The cargo profile to build (default `release`, or `dev` with `--check`).
    pub(crate) profile: String,
    /// Install, run and purge the package after building it.
    pub(crate) check: bool,
}

impl Options {
    /// Parses `[--profile NAME] [--check]`.
    ///
    /// # Errors
    /// An unknown flag, or `--profile` without a name.
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut profile = None;
        let mut check = false;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--check" => check = true,
                "--profile" => {
                    let name = args.next().context("`--profile` needs a profile name")?;
                    profile = Some(name.clone());
                }
                other => bail!("unknown `cargo xtask package` argument `{other}`"),
            }
        }
        let profile = profile.unwrap_or_else(|| if check { "dev" } else { "release" }.to_owned());
        Ok(Self { profile, check })
    }
}

/// Builds the package, then checks it when asked.
///
/// # Errors
/// The first step that failed, named.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let deb = timed("build the .deb", || build(ws, opts))?;
    println!("==> package: {}", deb.display());
    if opts.check {
        check::run(ws, &deb)?;
    }
    Ok(())
}

/// Runs `step`, then prints how long it took (also when it failed).
pub(crate) fn timed<T>(name: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("==> package: {name}");
    let start = Instant::now();
    let result = step();
    let secs = start.elapsed().as_secs_f64();
    let status = if result.is_ok() { "done" } else { "FAILED" };
    println!("==> package: {name}: {status} in {secs:.2} s");
    result.with_context(|| format!("package step `{name}`"))
}

/// The target directory cargo builds into.
fn target_dir(ws: &Workspace) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| ws.root().join("target"), PathBuf::from)
}

/// The directory of a profile's build output (`dev` builds into `debug`).
fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    }
}

/// `cargo build`, the generated assets, `cargo deb`; the path of the `.deb`.
fn build(ws: &Workspace, opts: &Options) -> Result<PathBuf> {
    ensure_cargo_deb(ws)?;
    ws.cargo()
        .args([
            "build",
            "--locked",
            "-p",
            "hep-server",
            "--profile",
            &opts.profile,
        ])
        .run()?;
    let out = target_dir(ws).join(profile_dir(&opts.profile));
    write_assets(ws, &out.join("hep-server"), &out.join("package-assets"))?;
    let debian = target_dir(ws).join("debian");
    // Only this build's package in the directory, so that its path is known.
    let _ = std::fs::remove_dir_all(&debian);
    let mut deb = ws.cargo().args([
        "deb",
        "--no-build",
        // `[profile.release] debug = "line-tables-only"` would otherwise keep the debug
        // lines in the packaged binary (lintian: unstripped-binary-or-object).
        "--strip",
        "-p",
        "hep-server",
        "--profile",
        &opts.profile,
        "--output",
    ]);
    deb = deb.arg(&debian);
    if opts.check {
        // Seconds instead of a minute of xz on a debug binary; the package is thrown away.
        deb = deb.arg("--fast");
    }
    deb.run()?;
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&debian)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    debs.retain(|p| p.extension().is_some_and(|e| e == "deb"));
    match debs.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one .deb in {}, found {debs:?}", debian.display()),
    }
}

/// Installs cargo-deb [`CARGO_DEB_VERSION`] unless `cargo deb --version` says it is there.
fn ensure_cargo_deb(ws: &Workspace) -> Result<()> {
    let version = ws
        .cargo()
        .args(["deb", "--version"])
        .read_stdout()
        .unwrap_or_default();
    if version.split_whitespace().any(|w| w == CARGO_DEB_VERSION) {
        return Ok(());
    }
    println!(
        "==> package: cargo-deb {CARGO_DEB_VERSION} not found (have: {version:?}), installing it"
    );
    ws.cargo()
        .args([
            "install",
            "cargo-deb",
            "--locked",
            "--version",
            CARGO_DEB_VERSION,
        ])
        .run()
}

/// `hep-server generate` into `dir`, then the man pages gzipped (`gzip -9n`: no name
/// or time in the header, as Debian's tools do, so the package is reproducible).
fn write_assets(ws: &Workspace, binary: &Path, dir: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    crate::cmd::Cmd::new(binary.as_os_str(), "hep-server", ws.root())
        .arg("generate")
        .arg("--dir")
        .arg(dir)
        .run()?;
    let pages: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    ensure!(
        !pages.is_empty(),
        "`hep-server generate` wrote no man page into {}",
        dir.display()
    );
    crate::cmd::Cmd::new("gzip".as_ref(), "gzip", ws.root())
        .arg("-9nf")
        .args(&pages)
        .run()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        Options::parse(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn release_by_default_dev_for_the_check_unless_told() {
        assert_eq!(parse(&[]).unwrap().profile, "release");
        let check = parse(&["--check"]).unwrap();
        assert!(check.check);
        assert_eq!(check.profile, "dev");
        assert_eq!(
            parse(&["--check", "--profile", "release"]).unwrap().profile,
            "release"
        );
        assert!(parse(&["--profile"]).is_err());
        assert!(parse(&["--chek"]).is_err());
    }

    #[test]
    fn profiles_map_to_their_directories() {
        assert_eq!(profile_dir("dev"), "debug");
        assert_eq!(profile_dir("release"), "release");
        assert_eq!(profile_dir("dist"), "dist");
    }
}
