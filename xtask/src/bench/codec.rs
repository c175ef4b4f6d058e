//! Section 1: decode and encode cost per message.
//!
//! Three measures, because the machine is shared: criterion's median wall time (what the
//! targets are stated in, and what a noisy neighbour inflates), instructions per message
//! under callgrind (exact and independent of load: the measure to compare changes by),
//! and cycles per message from `perf stat` when the PMU is available (load changes it
//! little: it counts only while the loop runs).

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};

use super::{Ctx, Size};

/// One codec figure.
#[derive(Debug, Clone)]
pub(crate) struct CodecRow {
    pub(crate) what: String,
    pub(crate) ns: Option<f64>,
    pub(crate) instructions: Option<f64>,
    pub(crate) cycles: Option<f64>,
}

/// The criterion benchmarks read back: (group/name, label).
pub(crate) const BENCHES: [(&str, &str); 9] = [
    (
        "decode/v3_invite_608B",
        "decode v3 INVITE (608 B, Kamailio)",
    ),
    ("decode/v3_authkey_log", "decode v3 log with auth key"),
    ("decode/v2_invite", "decode v2 INVITE"),
    ("decode/v1_invite", "decode v1 INVITE"),
    ("view/v3_invite_608B", "read in place (HepView) v3 INVITE"),
    ("view/v2_invite", "read in place (HepView) v2 INVITE"),
    ("encode/v3_invite_608B", "encode v3 INVITE (608 B)"),
    ("encode/v2_invite", "encode v2 INVITE"),
    (
        "stream/frame_and_decode_kamailio_tcp",
        "TCP stream: frame + decode, per frame",
    ),
];

pub(crate) fn run(ctx: &Ctx<'_>) -> Result<Vec<CodecRow>> {
    if ctx.size == Size::Smoke {
        return smoke(ctx);
    }
    let (warm, measure) = ctx.pick(("1", "4"), ("0.3", "1"), ("0.3", "1"));
    ctx.ws
        .cargo()
        .env("CARGO_TARGET_DIR", &ctx.target_dir.display().to_string())
        .args([
            "bench",
            "-p",
            "hep-proto",
            "--bench",
            "codec",
            "--",
            "--noplot",
        ])
        .args(["--warm-up-time", warm, "--measurement-time", measure])
        .run()?;
    let criterion = ctx.target_dir.join("criterion");
    let mut rows: Vec<CodecRow> = BENCHES
        .iter()
        .map(|(id, label)| CodecRow {
            what: (*label).to_owned(),
            ns: median_ns(&criterion, id).ok(),
            instructions: None,
            cycles: None,
        })
        .collect();

    let vector = ctx.vector("v3-udp-0001.hep");
    let v2 = ctx.vector("v2-udp-0001.hep");
    // (row, example, vector, mode): the decode loop reads with `HepView` and one field of
    // it in mode `view-field`, as the criterion benchmark does.
    let loops = [
        (0, "decode_loop", &vector, "message"),
        (2, "decode_loop", &v2, "message"),
        (4, "decode_loop", &vector, "view-field"),
        (5, "decode_loop", &v2, "view-field"),
        (6, "encode_loop", &vector, ""),
        (7, "encode_loop", &v2, ""),
    ];
    let valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    let perf = Command::new("perf")
        .args(["stat", "-x,", "-e", "instructions", "true"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("not supported")
        });
    for (row, example, file, mode) in loops {
        let bin = ctx.release.join("examples").join(example);
        let run = Loop {
            bin: &bin,
            file,
            mode,
        };
        if valgrind {
            rows[row].instructions = callgrind_per_message(&run).ok();
        }
        if perf {
            rows[row].cycles =
                perf_cycles_per_message(&run, ctx.pick(20_000_000, 2_000_000, 1000)).ok();
        }
    }
    Ok(rows)
}

/// The smoke run: the profiling loops run (criterion is built and run in test mode by
/// CI's test step).
fn smoke(ctx: &Ctx<'_>) -> Result<Vec<CodecRow>> {
    for (example, mode) in [
        ("decode_loop", "message"),
        ("decode_loop", "view-field"),
        ("encode_loop", ""),
    ] {
        let bin = ctx.release.join("examples").join(example);
        let file = ctx.vector("v3-udp-0001.hep");
        let run = Loop {
            bin: &bin,
            file: &file,
            mode,
        };
        let out = Command::new(&bin)
            .args(run.args(1000))
            .output()
            .with_context(|| format!("{}", bin.display()))?;
        anyhow::ensure!(out.status.success(), "{example} {mode} failed");
    }
    Ok(Vec::new())
}

/// Criterion's median in ns per element (per iteration, divided by the throughput's
/// element count, which is 1 but for the stream benchmark).
fn median_ns(criterion: &Path, id: &str) -> Result<f64> {
    let dir = criterion.join(id).join("new");
    let estimates = std::fs::read_to_string(dir.join("estimates.json"))
        .with_context(|| format!("{}", dir.display()))?;
    let median = json_number_after(&estimates, "\"median\"", "\"point_estimate\"")
        .context("median in estimates.json")?;
    let elements = std::fs::read_to_string(dir.join("benchmark.json"))
        .ok()
        .and_then(|b| json_number_after(&b, "\"Elements\"", ""))
        .unwrap_or(1.0)
        .max(1.0);
    Ok(median / elements)
}

/// The number after `key` (and then after `then`, if not empty) in a JSON text: enough
/// for criterion's files without a JSON parser.
fn json_number_after(text: &str, key: &str, then: &str) -> Option<f64> {
    let mut rest = &text[text.find(key)? + key.len()..];
    if !then.is_empty() {
        rest = &rest[rest.find(then)? + then.len()..];
    }
    let rest = rest.trim_start_matches(|c: char| c == ':' || c.is_whitespace());
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A profiling loop: `BIN FILE N [MODE]` (see hep-proto's examples).
struct Loop<'a> {
    bin: &'a Path,
    file: &'a Path,
    mode: &'a str,
}

impl Loop<'_> {
    /// Its arguments for `n` iterations.
    fn args(&self, n: u64) -> Vec<std::ffi::OsString> {
        let mut args = vec![self.file.into(), n.to_string().into()];
        if !self.mode.is_empty() {
            args.push(self.mode.into());
        }
        args
    }
}

/// Instructions per message: callgrind's total for 110,000 minus that for 10,000
/// iterations, over 100,000 (start-up cancels out).
fn callgrind_per_message(run: &Loop<'_>) -> Result<f64> {
    let refs = |n: u64| -> Result<f64> {
        let out = Command::new("valgrind")
            .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
            .arg(run.bin)
            .args(run.args(n))
            .output()
            .context("valgrind")?;
        let err = String::from_utf8_lossy(&out.stderr);
        err.lines()
            .find_map(|l| {
                l.split_once("refs:")
                    .map(|(_, v)| v.trim().replace(',', ""))
            })
            .and_then(|v| v.parse().ok())
            .context("no `I refs` in callgrind's output")
    };
    Ok((refs(110_000)? - refs(10_000)?) / 100_000.0)
}

/// Cycles per message from `perf stat` (the loop dominates: start-up is a few ms).
fn perf_cycles_per_message(run: &Loop<'_>, n: u64) -> Result<f64> {
    let out = Command::new("perf")
        .args(["stat", "-x,", "-e", "cycles"])
        .arg(run.bin)
        .args(run.args(n))
        .output()
        .context("perf stat")?;
    let err = String::from_utf8_lossy(&out.stderr);
    let cycles: f64 = err
        .lines()
        .find(|l| l.contains(",cycles"))
        .and_then(|l| l.split(',').next())
        .and_then(|v| v.parse().ok())
        .context("no cycles in perf's output")?;
    Ok(cycles / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_found_in_criterion_json() {
        let e = r#"{"mean":{"confidence_interval":{"lower_bound":1.0},"point_estimate":93.5},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":80.1,"upper_bound":82.0},"point_estimate":81.25e0,"standard_error":0.3}}"#;
        assert_eq!(
            json_number_after(e, "\"median\"", "\"point_estimate\""),
            Some(81.25)
        );
        let b = r#"{"throughput":{"Elements":1296},"x":1}"#;
        assert_eq!(json_number_after(b, "\"Elements\"", ""), Some(1296.0));
    }
}
