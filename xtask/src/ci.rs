//! `cargo xtask ci`: every check CI runs, in order, with a pass/fail summary.
//!
//! All steps run even after one fails, so a single run reports everything that is broken. The
//! last line printed is `N passed, N failed`; the exit code is non-zero if any step failed.
//!
//! `-D warnings` is passed per step (clippy arguments, `RUSTDOCFLAGS` for `cargo doc`) rather
//! than through a global `RUSTFLAGS`, which would change the compiler flags between steps and
//! make each step rebuild the workspace from scratch.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::interop::peers::{apt_install, is_root};
use crate::{Workspace, bench, browser, fuzz, interop, package};

/// Seconds each fuzz target runs during `ci`: a smoke run, not a fuzzing campaign.
const FUZZ_SMOKE_SECS: u64 = 20;

/// What a step did when it did not fail.
#[derive(Debug)]
enum Outcome {
    /// The step ran and passed.
    Passed,
    /// The step did not apply to this checkout; the string says why.
    Skipped(&'static str),
}

/// One CI step: a short name for the summary and the function that runs it.
struct Step {
    /// Name used in progress lines and the summary.
    name: &'static str,
    /// Runs the step; an error means the step failed.
    run: fn(&Workspace) -> Result<Outcome>,
}

/// The CI steps, in the order they run: the quick checks of the source first, then the
/// builds and runs.
fn steps() -> Vec<Step> {
    vec![
        Step {
            name: "fmt",
            run: fmt,
        },
        Step {
            name: "clippy",
            run: clippy,
        },
        Step {
            name: "structure",
            run: structure,
        },
        Step {
            name: "test",
            run: test,
        },
        Step {
            name: "doctest",
            run: doctest,
        },
        Step {
            name: "doc",
            run: doc,
        },
        Step {
            name: "package",
            run: package_step,
        },
        Step {
            name: "fuzz",
            run: fuzz_smoke,
        },
        Step {
            name: "interop",
            run: interop_step,
        },
        Step {
            name: "browser",
            run: browser_step,
        },
        Step {
            name: "bench",
            run: bench_smoke,
        },
    ]
}

/// `cargo fmt --all --check`.
fn fmt(ws: &Workspace) -> Result<Outcome> {
    ws.cargo().args(["fmt", "--all", "--check"]).run()?;
    Ok(Outcome::Passed)
}

/// `cargo clippy --workspace --all-targets -- -D warnings`.
fn clippy(ws: &Workspace) -> Result<Outcome> {
    ws.cargo()
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .run()?;
    Ok(Outcome::Passed)
}

/// `cargo xtask structure`: no import cycle among sibling modules, hep-callbacks without
/// IO crates, hep-proto without its codec feature.
fn structure(ws: &Workspace) -> Result<Outcome> {
    crate::structure::run(ws)?;
    Ok(Outcome::Passed)
}

/// The test suite: `cargo nextest run` when cargo-nextest is installed, else `cargo test`;
/// `nats-server` is installed first when missing (as root).
///
/// Both run all targets, so benches and examples are built and smoke-run in test mode either way.
/// Neither runs doctests; that is [`doctest`].
fn test(ws: &Workspace) -> Result<Outcome> {
    // hep-server's tests/nats.rs runs the cluster's edge and consumer against a real
    // JetStream server.
    let nats = ["/usr/sbin/nats-server", "/usr/bin/nats-server"];
    if !nats.iter().any(|p| std::path::Path::new(p).exists()) && is_root() {
        apt_install(&["nats-server"])?;
    }
    let nextest = ws.cargo().args(["nextest", "--version"]).probe();
    let cmd = if nextest {
        ws.cargo().args([
            "nextest",
            "run",
            "--workspace",
            "--all-targets",
            "--no-fail-fast",
        ])
    } else {
        println!("==> note: cargo-nextest not found, falling back to cargo test");
        ws.cargo()
            .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
    };
    cmd.run()?;
    Ok(Outcome::Passed)
}

/// `cargo test --workspace --doc`.
fn doctest(ws: &Workspace) -> Result<Outcome> {
    ws.cargo().args(["test", "--workspace", "--doc"]).run()?;
    Ok(Outcome::Passed)
}

/// `cargo doc --workspace --no-deps` with `RUSTDOCFLAGS="-D warnings"`.
fn doc(ws: &Workspace) -> Result<Outcome> {
    ws.cargo()
        .env("RUSTDOCFLAGS", "-D warnings")
        .args(["doc", "--workspace", "--no-deps"])
        .run()?;
    Ok(Outcome::Passed)
}

/// `cargo xtask package --check`: the .deb built (dev profile, which the test step has
/// built), lintian, installed, its service run as systemd would, reloaded, stopped,
/// purged. Needs root (CI runs as root); skipped otherwise, saying why.
fn package_step(ws: &Workspace) -> Result<Outcome> {
    if !is_root() {
        return Ok(Outcome::Skipped(
            "not root: the check installs and purges the package",
        ));
    }
    package::run(
        ws,
        &package::Options {
            profile: "dev".to_owned(),
            check: true,
        },
    )?;
    Ok(Outcome::Passed)
}

/// A bounded run of the decoder fuzz targets, when the workspace has a `fuzz/` crate.
///
/// The config and spec targets need hep-server built with sanitizers (about ten minutes on
/// two cores), so CI leaves them to `cargo xtask fuzz --all`; the decoders build in one.
fn fuzz_smoke(ws: &Workspace) -> Result<Outcome> {
    if !ws.root().join("fuzz").join("Cargo.toml").is_file() {
        return Ok(Outcome::Skipped("no fuzz/Cargo.toml in the workspace"));
    }
    let opts = fuzz::Options {
        targets: fuzz::Targets::Some(
            fuzz::DECODER_TARGETS
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
        ),
        time_secs: FUZZ_SMOKE_SECS,
    };
    fuzz::run(ws, &opts)?;
    Ok(Outcome::Passed)
}

/// `cargo xtask interop`: hep-server against Kamailio, hep-js, tshark and sngrep on loopback.
///
/// Installs missing peers when run as root; with `CI=true` a missing peer fails its rows.
fn interop_step(ws: &Workspace) -> Result<Outcome> {
    let failed = interop::run_checks(ws, &interop::Options::default())?;
    anyhow::ensure!(
        failed.is_empty(),
        "{} interop check(s) failed: {}",
        failed.len(),
        failed.join("; ")
    );
    Ok(Outcome::Passed)
}

/// `cargo xtask browser`: the web page in Debian's chromium against a fed hep-server.
///
/// Installs chromium (apt, as root) and playwright-core (`npm ci`) when missing.
fn browser_step(ws: &Workspace) -> Result<Outcome> {
    let failed = browser::run_checks(ws, &browser::Options::default())?;
    anyhow::ensure!(
        failed == 0,
        "{failed} browser test(s) failed (see the table above)"
    );
    Ok(Outcome::Passed)
}

/// `cargo xtask bench --smoke`: one small step of every benchmark section on debug builds
/// (seconds), so that the harness cannot rot; its figures mean nothing.
fn bench_smoke(ws: &Workspace) -> Result<Outcome> {
    let opts = bench::Options::parse(&["--smoke".to_owned()])?;
    bench::run(ws, &opts)?;
    Ok(Outcome::Passed)
}

/// The result of one step, kept for the summary.
#[derive(Debug)]
struct Record {
    /// The step's name.
    name: &'static str,
    /// How it ended: `Ok` with its outcome, or the error that failed it.
    result: Result<Outcome>,
    /// Wall-clock time the step took.
    elapsed: Duration,
}

/// Runs every step, prints a per-step report and the `N passed, N failed` line.
///
/// Returns a failing exit code if any step failed.
pub(crate) fn run(ws: &Workspace) -> ExitCode {
    let records: Vec<Record> = steps()
        .into_iter()
        .map(|step| {
            println!("\n==> step `{}`", step.name);
            let start = Instant::now();
            let result = (step.run)(ws);
            let elapsed = start.elapsed();
            match &result {
                Ok(Outcome::Passed) => println!("==> step `{}` passed", step.name),
                Ok(Outcome::Skipped(why)) => println!("==> step `{}` skipped: {why}", step.name),
                Err(err) => eprintln!("==> step `{}` FAILED: {err:#}", step.name),
            }
            Record {
                name: step.name,
                result,
                elapsed,
            }
        })
        .collect();

    println!("\n==> ci summary");
    for record in &records {
        let status = match &record.result {
            Ok(Outcome::Passed) => "ok".to_owned(),
            Ok(Outcome::Skipped(why)) => format!("skipped ({why})"),
            Err(err) => format!("FAILED: {err:#}"),
        };
        let secs = record.elapsed.as_secs_f64();
        println!("    {:<8} {secs:>7.1}s  {status}", record.name);
    }
    let (passed, failed) = tally(&records);
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Counts passed and failed steps; skipped steps count as neither.
fn tally(records: &[Record]) -> (usize, usize) {
    let passed = records
        .iter()
        .filter(|r| matches!(r.result, Ok(Outcome::Passed)))
        .count();
    let failed = records.iter().filter(|r| r.result.is_err()).count();
    (passed, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(result: Result<Outcome>) -> Record {
        Record {
            name: "step",
            result,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn tally_counts_skipped_as_neither() {
        let records = [
            record(Ok(Outcome::Passed)),
            record(Err(anyhow::anyhow!("boom"))),
            record(Ok(Outcome::Skipped("absent"))),
            record(Ok(Outcome::Passed)),
        ];
        assert_eq!(tally(&records), (2, 1));
    }

    #[test]
    fn steps_have_unique_names_in_ci_order() {
        let names: Vec<_> = steps().iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "fmt",
                "clippy",
                "structure",
                "test",
                "doctest",
                "doc",
                "package",
                "fuzz",
                "interop",
                "browser",
                "bench"
            ]
        );
    }
}
