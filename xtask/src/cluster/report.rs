//! The run's outcome: a table of checks (`N passed, N failed`, the failures named again at
//! the end) and a table of figures, printed and rendered as Markdown for
//! docs/SCALE-OUT.md.

use std::fmt::Write as _;
use std::time::Duration;

/// One check: what it asserts, whether it held, what was seen.
#[derive(Debug)]
pub(crate) struct Check {
    pub(crate) name: String,
    pub(crate) passed: bool,
    pub(crate) detail: String,
}

/// One figure: what, the value with its unit, and how it was obtained.
#[derive(Debug)]
pub(crate) struct Figure {
    pub(crate) what: String,
    pub(crate) value: String,
    /// `measured` or `extrapolated`, and from what.
    pub(crate) how: String,
}

/// Everything a run reports.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) checks: Vec<Check>,
    pub(crate) figures: Vec<Figure>,
    /// Timeline of the run: seconds since start and what happened.
    pub(crate) events: Vec<(f64, String)>,
    /// The command and the machine, for the Markdown.
    pub(crate) header: String,
    pub(crate) elapsed: Duration,
}

impl Report {
    /// Records a check and prints it at once.
    pub(crate) fn check(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        let detail = detail.into();
        println!(
            "==> check {}: {name}: {detail}",
            if passed { "ok" } else { "FAILED" }
        );
        self.checks.push(Check {
            name: name.to_owned(),
            passed,
            detail,
        });
    }

    /// Records a figure and prints it at once.
    pub(crate) fn figure(&mut self, what: &str, value: impl Into<String>, how: &str) {
        let value = value.into();
        println!("==> figure: {what}: {value} ({how})");
        self.figures.push(Figure {
            what: what.to_owned(),
            value,
            how: how.to_owned(),
        });
    }

    /// Records an event of the timeline and prints it.
    pub(crate) fn event(&mut self, at: Duration, what: impl Into<String>) {
        let what = what.into();
        println!("==> [{:7.1} s] {what}", at.as_secs_f64());
        self.events.push((at.as_secs_f64(), what));
    }

    /// Names of the failed checks.
    pub(crate) fn failed(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }

    /// The plain-text tables, the `N passed, N failed` line and the failures again.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(5);
        let _ = writeln!(out, "\n{:<width$}  result  detail", "check");
        for c in &self.checks {
            let _ = writeln!(
                out,
                "{:<width$}  {:<6}  {}",
                c.name,
                if c.passed { "ok" } else { "FAILED" },
                c.detail
            );
        }
        if !self.figures.is_empty() {
            let width = self.figures.iter().map(|f| f.what.len()).max().unwrap_or(5);
            let vwidth = self
                .figures
                .iter()
                .map(|f| f.value.len())
                .max()
                .unwrap_or(5);
            let _ = writeln!(out, "\n{:<width$}  {:<vwidth$}  how", "figure", "value");
            for f in &self.figures {
                let _ = writeln!(out, "{:<width$}  {:<vwidth$}  {}", f.what, f.value, f.how);
            }
        }
        let failed = self.failed();
        let _ = writeln!(
            out,
            "\ncluster: {} passed, {} failed in {:.1} s",
            self.checks.len() - failed.len(),
            failed.len(),
            self.elapsed.as_secs_f64()
        );
        for f in &failed {
            let _ = writeln!(out, "FAILED {f}");
        }
        out
    }

    /// The Markdown of the run: header, checks, figures, timeline.
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}\n", self.header.trim_end());
        let _ = writeln!(out, "| check | result | detail |\n|---|---|---|");
        for c in &self.checks {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                cell(&c.name),
                if c.passed { "ok" } else { "**FAILED**" },
                cell(&c.detail)
            );
        }
        if !self.figures.is_empty() {
            let _ = writeln!(out, "\n| figure | value | how |\n|---|---|---|");
            for f in &self.figures {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    cell(&f.what),
                    cell(&f.value),
                    cell(&f.how)
                );
            }
        }
        if !self.events.is_empty() {
            let _ = writeln!(out, "\n| at (s) | event |\n|---|---|");
            for (at, what) in &self.events {
                let _ = writeln!(out, "| {at:.1} | {} |", cell(what));
            }
        }
        let failed = self.failed().len();
        let _ = writeln!(
            out,
            "\n{} passed, {failed} failed in {:.0} s.",
            self.checks.len() - failed,
            self.elapsed.as_secs_f64()
        );
        out
    }
}

/// A table cell: pipes escaped, on one line.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_and_named_again_at_the_end() {
        let mut r = Report::default();
        r.check("lost", true, "0 of 70");
        r.check("duplicates", false, "3 rows | 2 calls");
        r.figure("msg/s", "1,000", "measured");
        let text = r.text();
        assert!(text.contains("cluster: 1 passed, 1 failed"), "{text}");
        assert!(
            text.trim_end()
                .ends_with("FAILED duplicates: 3 rows | 2 calls"),
            "{text}"
        );
        let md = r.markdown();
        assert!(
            md.contains("| duplicates | **FAILED** | 3 rows \\| 2 calls |"),
            "{md}"
        );
        assert!(md.contains("| msg/s | 1,000 | measured |"), "{md}");
    }
}
