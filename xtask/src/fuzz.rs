//! `cargo xtask fuzz`: run cargo-fuzz targets on the stable toolchain.
//!
//! cargo-fuzz builds with nightly-only flags (`-Z sanitizer=address`, `-C passes=sancov-module`).
//! Setting `RUSTC_BOOTSTRAP=1` lets the stable compiler accept them, so CI needs no nightly
//! toolchain. The variable is set only on the `cargo fuzz run` child, and cargo-fuzz builds into
//! `fuzz/target`, so the workspace's normal build cache is untouched.

use anyhow::{Context as _, Result, bail, ensure};

use crate::Workspace;

/// Seconds each target runs when `--time` is not given.
const DEFAULT_TIME_SECS: u64 = 60;

/// The targets that exercise hep-proto's decoders only (a light sanitizer build).
pub(crate) const DECODER_TARGETS: &[&str] = &["datagram", "stream", "compressed", "sip"];

/// Targets that need the fuzz crate's `server` feature (hep-server and hep-transport).
const SERVER_TARGETS: &[&str] = &["config", "specs", "qos"];

/// Which fuzz targets to run.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Targets {
    /// One named target.
    One(String),
    /// These targets.
    Some(Vec<String>),
    /// Every target `cargo fuzz list` reports.
    All,
}

/// Parsed `cargo xtask fuzz` arguments.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// The targets to run.
    pub(crate) targets: Targets,
    /// libFuzzer's `-max_total_time` for each target, in seconds.
    pub(crate) time_secs: u64,
}

impl Options {
    /// Parses `[TARGET|--all] [--time SECONDS]`; `--time=SECONDS` is accepted too.
    ///
    /// # Errors
    /// Fails on a missing or repeated target, an unknown flag, or a time that is not a positive
    /// whole number of seconds.
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut targets = None;
        let mut time_secs = DEFAULT_TIME_SECS;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let selected = match arg.as_str() {
                "--all" => Targets::All,
                "--time" => {
                    let value = args.next().context("`--time` needs a value in seconds")?;
                    time_secs = parse_secs(value)?;
                    continue;
                }
                flag if flag.starts_with("--time=") => {
                    time_secs = parse_secs(&flag["--time=".len()..])?;
                    continue;
                }
                flag if flag.starts_with('-') => bail!("unknown `cargo xtask fuzz` flag `{flag}`"),
                target => Targets::One(target.to_owned()),
            };
            if let Some((_, previous)) = targets.replace((selected, arg)) {
                bail!("give one fuzz target or `--all`, not both `{previous}` and `{arg}`");
            }
        }
        let (targets, _) = targets.context("`cargo xtask fuzz` needs a TARGET or `--all`")?;
        Ok(Self { targets, time_secs })
    }
}

/// Parses a positive number of seconds.
fn parse_secs(value: &str) -> Result<u64> {
    let secs: u64 = value
        .parse()
        .with_context(|| format!("`--time {value}` is not a whole number of seconds"))?;
    ensure!(secs > 0, "`--time` must be at least 1 second");
    Ok(secs)
}

/// Runs the selected fuzz targets, installing cargo-fuzz first if it is missing.
///
/// With [`Targets::All`] every target runs even if an earlier one fails.
///
/// # Errors
/// Fails if there is no `fuzz/Cargo.toml`, cargo-fuzz cannot be installed, no targets exist, or
/// any target fails (a crash, a leak, or a build error), naming the failed targets.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<()> {
    let manifest = ws.root().join("fuzz").join("Cargo.toml");
    ensure!(
        manifest.is_file(),
        "no fuzz crate: {} does not exist",
        manifest.display()
    );
    ensure_cargo_fuzz(ws)?;

    let targets = match &opts.targets {
        Targets::One(target) => vec![target.clone()],
        Targets::Some(targets) => targets.clone(),
        Targets::All => {
            let listed = ws.cargo().args(["fuzz", "list"]).read_stdout()?;
            let targets: Vec<String> = listed
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect();
            ensure!(
                !targets.is_empty(),
                "`cargo fuzz list` found no fuzz targets"
            );
            targets
        }
    };

    let max_total_time = format!("-max_total_time={}", opts.time_secs);
    let failed: Vec<&str> = targets
        .iter()
        .filter(|target| {
            let mut cmd =
                ws.cargo()
                    .env("RUSTC_BOOTSTRAP", "1")
                    .args(["fuzz", "run", target.as_str()]);
            if SERVER_TARGETS.contains(&target.as_str()) {
                cmd = cmd.args(["--features", "server"]);
            }
            let result = cmd.args(["--", &max_total_time]).run();
            match result {
                Ok(()) => false,
                Err(err) => {
                    eprintln!("==> fuzz target `{target}` FAILED: {err:#}");
                    true
                }
            }
        })
        .map(String::as_str)
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} fuzz targets failed: {}",
            failed.len(),
            targets.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Installs cargo-fuzz with `cargo install cargo-fuzz --locked` unless `cargo fuzz --help` works.
fn ensure_cargo_fuzz(ws: &Workspace) -> Result<()> {
    if ws.cargo().args(["fuzz", "--help"]).probe() {
        return Ok(());
    }
    println!("==> cargo-fuzz is not installed; installing it");
    ws.cargo()
        .args(["install", "cargo-fuzz", "--locked"])
        .run()
        .context("could not install cargo-fuzz")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        Options::parse(&args)
    }

    #[test]
    fn parse_target_with_default_time() {
        let opts = parse(&["decode_packet"]).unwrap();
        assert_eq!(opts.targets, Targets::One("decode_packet".to_owned()));
        assert_eq!(opts.time_secs, DEFAULT_TIME_SECS);
    }

    #[test]
    fn parse_all_with_time_in_either_form() {
        for args in [&["--all", "--time", "20"][..], &["--time=20", "--all"]] {
            let opts = parse(args).unwrap();
            assert_eq!(opts.targets, Targets::All);
            assert_eq!(opts.time_secs, 20);
        }
    }

    #[test]
    fn parse_rejects_bad_arguments() {
        for args in [
            &[][..],
            &["--time", "20"],
            &["a", "b"],
            &["a", "--all"],
            &["a", "--time"],
            &["a", "--time", "0"],
            &["a", "--time", "soon"],
            &["a", "--jobs", "4"],
        ] {
            assert!(parse(args).is_err(), "accepted {args:?}");
        }
    }
}
