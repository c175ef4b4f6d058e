//! `cargo xtask interop`: our HEP code against real, independently written peers on loopback.
//!
//! Peers: Kamailio 5.6 (`siptrace` as a HEP sender driven by sipp calls, `sipcapture` as a
//! HEP receiver storing to SQLite), npm `hep-js`, tshark and sngrep. Every check is a row of
//! the final table `peer | direction | version | transport | result | detail`, followed by
//! `N passed, N failed`; the exit code is non-zero if any row failed.
//!
//! Checks are independent: each starts its own peers and `hep-server` on fresh loopback
//! ports, bounds every process in time (`timeout`) and stops it by PID. A peer that is not
//! installed (and could not be installed: that needs root) fails its rows when `CI=true`,
//! and skips them otherwise.
//!
//! ```text
//! cargo xtask interop [--no-install] [FILTER...]
//! ```
//!
//! A `FILTER` keeps only the rows whose `peer direction version transport` text contains it
//! (for example `hep-js` or `sipcapture`). The work directory is
//! `$CARGO_TARGET_DIR/interop` (default `target/interop`); each check's logs, captures and
//! databases stay in `run/<check>/` for inspection.

mod hepjs;
mod kamailio_kpi;
mod kamailio_receiver;
mod kamailio_sender;
pub(crate) mod ours;
pub(crate) mod peers;
pub(crate) mod proc;
mod rtpengine;
mod sip;
mod sngrep;
mod tshark;

use std::env;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::Workspace;
use peers::{Available, Tool};

/// Parsed `cargo xtask interop` arguments.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Options {
    /// Do not install missing peers.
    no_install: bool,
    /// Keep only rows whose description contains one of these.
    filters: Vec<String>,
}

impl Options {
    /// Parses `[--no-install] [FILTER...]`.
    ///
    /// # Errors
    /// Fails on an unknown flag.
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Self::default();
        for arg in args {
            match arg.as_str() {
                "--no-install" => opts.no_install = true,
                flag if flag.starts_with('-') => {
                    bail!("unknown `cargo xtask interop` flag `{flag}`")
                }
                filter => opts.filters.push(filter.to_owned()),
            }
        }
        Ok(opts)
    }
}

/// Which way HEP flows in a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// The peer writes, we read.
    PeerToOurs,
    /// We write, the peer reads.
    OursToPeer,
}

impl fmt::Display for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PeerToOurs => "peer -> ours",
            Self::OursToPeer => "ours -> peer",
        })
    }
}

/// The body of a check: returns the detail of a pass, or the reason of a failure.
pub(crate) type CheckFn = Box<dyn Fn(&Ctx) -> Result<String>>;

/// One row of the table.
pub(crate) struct Check {
    /// The peer, e.g. `kamailio siptrace`.
    pub(crate) peer: &'static str,
    /// Which way HEP flows.
    pub(crate) dir: Dir,
    /// HEP version(s).
    pub(crate) version: &'static str,
    /// Transport (and variant).
    pub(crate) transport: &'static str,
    /// Tools the check needs.
    pub(crate) needs: &'static [Tool],
    /// The check itself.
    pub(crate) run: CheckFn,
}

impl Check {
    /// A check row.
    pub(crate) fn new(
        peer: &'static str,
        dir: Dir,
        version: &'static str,
        transport: &'static str,
        needs: &'static [Tool],
        run: impl Fn(&Ctx) -> Result<String> + 'static,
    ) -> Self {
        Self {
            peer,
            dir,
            version,
            transport,
            needs,
            run: Box::new(run),
        }
    }

    /// `peer direction version transport`, for filters and progress lines.
    fn label(&self) -> String {
        format!(
            "{} {} {} {}",
            self.peer, self.dir, self.version, self.transport
        )
    }

    /// A file-name-safe slug of the label, for the check's work directory.
    fn slug(&self) -> String {
        let mut slug = String::new();
        for c in self.label().chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.ends_with('-') {
                slug.push('-');
            }
        }
        slug.trim_matches('-').to_owned()
    }
}

/// What every check gets: paths, the binary under test, ports.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The `hep-server` binary under test.
    pub(crate) hep_server: PathBuf,
    /// `hep-testkit/testdata`: the Kamailio and hep-js vectors.
    pub(crate) testdata: PathBuf,
    /// Where the assets and `node_modules` live.
    pub(crate) node_dir: PathBuf,
    /// This check's own fresh work directory.
    pub(crate) dir: PathBuf,
    /// Loopback ports handed out in this run.
    pub(crate) ports: proc::Ports,
}

impl Ctx {
    /// A fresh subdirectory of this check's work directory.
    ///
    /// # Errors
    /// Fails if it cannot be created.
    pub(crate) fn subdir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.dir.join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// A Kamailio vector file.
    pub(crate) fn kamailio_vector(&self, name: &str) -> PathBuf {
        self.testdata.join("kamailio").join(name)
    }

    /// The Kamailio vector files `PREFIX-0001.hep`, `PREFIX-0002.hep`, ... in order.
    ///
    /// # Errors
    /// Fails if there are none.
    pub(crate) fn kamailio_set(&self, prefix: &str) -> Result<Vec<PathBuf>> {
        vector_set(&self.testdata.join("kamailio"), prefix)
    }
}

/// The vector files `PREFIX-0001.hep`, `PREFIX-0002.hep`, ... of `dir`, in order.
///
/// # Errors
/// Fails if there are none.
pub(crate) fn vector_set(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(prefix))
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|rest| {
                    rest.len() == 8
                        && rest.ends_with(".hep")
                        && rest[..4].bytes().all(|b| b.is_ascii_digit())
                })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no vectors {prefix}-NNNN.hep in {}", dir.display());
    }
    Ok(files)
}

/// How a row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The check passed.
    Pass,
    /// The check failed (or a peer was missing in CI).
    Fail,
    /// A peer was missing outside CI.
    Skip,
}

/// A finished row.
struct Row {
    /// The check's description columns.
    cols: [String; 4],
    /// The verdict.
    verdict: Verdict,
    /// Detail or reason.
    detail: String,
}

/// Every check, in table order.
fn checks() -> Vec<Check> {
    let mut all = Vec::new();
    all.extend(kamailio_sender::checks());
    all.extend(kamailio_kpi::checks());
    all.extend(kamailio_receiver::checks());
    all.extend(hepjs::checks());
    all.extend(tshark::checks());
    all.extend(sngrep::checks());
    all.extend(rtpengine::checks());
    all
}

/// Whether this is a CI run (`CI` set to something other than empty, `0` or `false`).
pub(crate) fn in_ci() -> bool {
    env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The cargo target directory: `$CARGO_TARGET_DIR` (relative to the root) or `target/`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| root.join("target"), |d| root.join(d))
}

/// Runs the interop checks and prints the table; the exit code is non-zero if a row failed.
///
/// # Errors
/// Fails if no check matches the filters or `hep-server` cannot be built.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<ExitCode> {
    let failed = run_checks(ws, opts)?;
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the interop checks, prints the table, and returns the labels of the rows that failed.
///
/// # Errors
/// Fails if no check matches the filters or `hep-server` cannot be built; failed checks are
/// counted, not returned as errors.
pub(crate) fn run_checks(ws: &Workspace, opts: &Options) -> Result<Vec<String>> {
    let started = Instant::now();
    let ci = in_ci();
    let target = target_dir(ws.root());
    let work = target.join("interop");
    let node_dir = work.join("peers");
    let run_dir = work.join("run");

    let selected: Vec<Check> = checks()
        .into_iter()
        .filter(|c| {
            opts.filters.is_empty() || opts.filters.iter().any(|f| c.label().contains(f.as_str()))
        })
        .collect();
    if selected.is_empty() {
        bail!("no interop check matches {:?}", opts.filters);
    }

    ws.cargo()
        .args([
            "build",
            "--quiet",
            "--package",
            "hep-server",
            "--bin",
            "hep-server",
        ])
        .run()
        .context("building hep-server for the interop checks")?;
    let hep_server = target.join("debug").join("hep-server");
    if !hep_server.is_file() {
        bail!(
            "hep-server was built but {} is missing",
            hep_server.display()
        );
    }

    let available = peers::prepare(&node_dir, !opts.no_install);
    if run_dir.exists() {
        fs::remove_dir_all(&run_dir).with_context(|| format!("cleaning {}", run_dir.display()))?;
    }

    let mut ctx = Ctx {
        hep_server,
        testdata: ws.root().join("hep-testkit").join("testdata"),
        node_dir,
        dir: run_dir.clone(),
        ports: proc::Ports::default(),
    };
    let mut rows = Vec::new();
    for check in &selected {
        ctx.dir = run_dir.join(check.slug());
        rows.push(run_one(&ctx, check, &available, ci));
    }

    print_table(&rows);
    let count = |v| rows.iter().filter(|r| r.verdict == v).count();
    let (passed, failed, skipped) = (
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Skip),
    );
    println!(
        "interop took {:.0} s; logs in {}",
        started.elapsed().as_secs_f64(),
        run_dir.display()
    );
    // The failures again, last: CI shows only the tail of a long log.
    for row in rows.iter().filter(|r| r.verdict == Verdict::Fail) {
        let detail: String = row.detail.chars().take(300).collect();
        println!("failed: {}: {detail}", row.cols.join(" "));
    }
    if skipped > 0 {
        println!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        println!("{passed} passed, {failed} failed");
    }
    Ok(rows
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .map(|r| r.cols.join(" "))
        .collect())
}

/// Runs one check (or decides it cannot run) and prints its result line.
fn run_one(ctx: &Ctx, check: &Check, available: &Available, ci: bool) -> Row {
    let cols = [
        check.peer.to_owned(),
        check.dir.to_string(),
        check.version.to_owned(),
        check.transport.to_owned(),
    ];
    let missing: Vec<String> = check
        .needs
        .iter()
        .filter_map(|&t| {
            available
                .why_missing(t)
                .map(|why| format!("{}: {why}", t.name()))
        })
        .collect();
    println!("\n==> interop: {}", check.label());
    let started = Instant::now();
    let (verdict, detail) = if !missing.is_empty() {
        let verdict = if ci { Verdict::Fail } else { Verdict::Skip };
        (verdict, format!("peer missing ({})", missing.join("; ")))
    } else {
        let result = fs::create_dir_all(&ctx.dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| (check.run)(ctx));
        match result {
            Ok(detail) => (Verdict::Pass, detail),
            Err(err) => (Verdict::Fail, format!("{err:#}")),
        }
    };
    let word = match verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Skip => "SKIP",
    };
    println!(
        "==> {word} ({:.1} s): {detail}",
        started.elapsed().as_secs_f64()
    );
    Row {
        cols,
        verdict,
        detail: one_line(&detail),
    }
}

/// Flattens a detail to one line (for the table).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prints the result table as Markdown, so that it can go into the README as is.
fn print_table(rows: &[Row]) {
    let header = [
        "peer",
        "direction",
        "version",
        "transport",
        "result",
        "detail",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let [a, b, c, d] = r.cols.clone();
            let result = match r.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "skip",
            };
            [a, b, c, d, result.to_owned(), r.detail.replace('|', "/")]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // The detail column is not padded: it is the last one and can be long.
    widths[5] = 0;
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("| {} |", padded.join(" | ").trim_end());
    };
    println!("\n==> interop results");
    line(&header);
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w.max(3))).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in &cells {
        line(&row.each_ref().map(String::as_str));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let args = |a: &[&str]| a.iter().map(|&s| s.to_owned()).collect::<Vec<_>>();
        let opts = Options::parse(&args(&["--no-install", "hep-js", "tcp"])).unwrap();
        assert!(opts.no_install);
        assert_eq!(opts.filters, ["hep-js", "tcp"]);
        assert!(Options::parse(&args(&["--fast"])).is_err());
    }

    #[test]
    fn checks_have_unique_labels_and_slugs() {
        let all = checks();
        let mut labels: Vec<String> = all.iter().map(Check::label).collect();
        let mut slugs: Vec<String> = all.iter().map(Check::slug).collect();
        labels.sort();
        labels.dedup();
        slugs.sort();
        slugs.dedup();
        assert_eq!(labels.len(), all.len());
        assert_eq!(slugs.len(), all.len());
        assert!(slugs.iter().all(|s| !s.is_empty()));
    }

    #[test]
    fn assets_are_all_there() {
        for (name, text) in peers::ASSETS {
            assert!(!text.is_empty(), "{name} is empty");
        }
        assert!(peers::asset("kamailio-sender.cfg").contains("@SIP_PORT@"));
        assert!(peers::asset("kamailio-receiver.cfg").contains("@PORT@"));
    }
}
