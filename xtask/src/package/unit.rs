//! The settings of a systemd unit file that the package check runs the service with,
//! read as systemd reads them (`systemd.syntax(7)`: sections, `Key=value`, comments,
//! later assignments of a key winning; command lines split into words).

use anyhow::{Result, bail};

/// A unit file's assignments, in order, with their section.
#[derive(Debug)]
pub(crate) struct Unit {
    entries: Vec<(String, String, String)>,
}

impl Unit {
    /// Reads the text of a unit file.
    ///
    /// # Errors
    /// A line that is neither a section, an assignment, a comment nor blank.
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let mut section = String::new();
        let mut entries = Vec::new();
        let mut joined = String::new();
        for (n, raw) in text.lines().enumerate() {
            // A trailing backslash continues the line.
            if let Some(head) = raw.strip_suffix('\\') {
                joined.push_str(head);
                joined.push(' ');
                continue;
            }
            joined.push_str(raw);
            let line = std::mem::take(&mut joined);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                name.clone_into(&mut section);
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                bail!("line {}: not `Key=value`: {line}", n + 1);
            };
            entries.push((
                section.clone(),
                key.trim().to_owned(),
                value.trim().to_owned(),
            ));
        }
        Ok(Self { entries })
    }

    /// The value of `key` in `[section]` (the last assignment), if any.
    pub(crate) fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
    }

    /// `key` of `[Service]`, or an error naming it.
    pub(crate) fn service(&self, key: &str) -> Result<&str> {
        self.get("Service", key)
            .ok_or_else(|| anyhow::anyhow!("the unit has no {key}= in [Service]"))
    }

    /// A command line of `[Service]` (`ExecStart`, `ExecReload`) as words, with
    /// `$MAINPID` replaced by `main_pid`. Prefixes (`-`, `@`, `+`, `!`, `:`) are refused:
    /// the check would have to emulate them.
    pub(crate) fn command(&self, key: &str, main_pid: Option<u32>) -> Result<Vec<String>> {
        let line = self.service(key)?;
        if line.starts_with(['-', '@', '+', '!', ':']) {
            bail!("{key}={line}: prefixed command lines are not run by the check");
        }
        let words = split_words(line)?;
        Ok(words
            .into_iter()
            .map(|w| match main_pid {
                Some(pid) => w.replace("$MAINPID", &pid.to_string()),
                None => w,
            })
            .collect())
    }
}

/// Splits a command line into words: whitespace-separated, `"..."` and `'...'` quoted.
fn split_words(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_default().push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_default().push(c),
        }
    }
    if quote.is_some() {
        bail!("unclosed quote in `{line}`");
    }
    words.extend(word);
    Ok(words)
}

/// A systemd time span (`30s`, `2min`, `500ms`, `1min 30s`, a bare number of seconds)
/// in milliseconds.
pub(crate) fn parse_span_ms(span: &str) -> Result<u64> {
    let mut total = 0u64;
    for part in span.split_whitespace() {
        let digits = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        let (n, unit) = part.split_at(digits);
        let n: u64 = n
            .parse()
            .map_err(|_| anyhow::anyhow!("`{span}`: not a time span"))?;
        let ms = match unit {
            "" | "s" | "sec" | "second" | "seconds" => 1_000,
            "ms" | "msec" => 1,
            "m" | "min" | "minute" | "minutes" => 60_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000,
            other => bail!("`{span}`: unknown unit `{other}`"),
        };
        total += n * ms;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "\
# a comment
[Unit]
Description=x

[Service]
Type=notify
User=nobody
ExecStart=/usr/bin/hep-server run \\
    --config '/etc/hep server/hep-server.toml'
ExecReload=/bin/kill -HUP $MAINPID
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
; another comment
";

    #[test]
    fn keys_are_read_per_section_and_the_last_assignment_wins() {
        let unit = Unit::parse(UNIT).unwrap();
        assert_eq!(unit.service("User").unwrap(), "nobody");
        assert_eq!(unit.get("Unit", "Description"), Some("x"));
        assert_eq!(unit.get("Unit", "User"), None);
        assert_eq!(unit.service("SystemCallFilter").unwrap(), "~@privileged");
        assert!(unit.service("WatchdogSec").is_err());
    }

    #[test]
    fn command_lines_are_split_continued_and_given_the_main_pid() {
        let unit = Unit::parse(UNIT).unwrap();
        assert_eq!(
            unit.command("ExecStart", None).unwrap(),
            [
                "/usr/bin/hep-server",
                "run",
                "--config",
                "/etc/hep server/hep-server.toml"
            ]
        );
        assert_eq!(
            unit.command("ExecReload", Some(42)).unwrap(),
            ["/bin/kill", "-HUP", "42"]
        );
        let prefixed = Unit::parse("[Service]\nExecStart=-/bin/true\n").unwrap();
        assert!(prefixed.command("ExecStart", None).is_err());
        assert!(Unit::parse("[Service]\nnonsense\n").is_err());
    }

    #[test]
    fn time_spans_read_as_systemd_writes_them() {
        assert_eq!(parse_span_ms("30s").unwrap(), 30_000);
        assert_eq!(parse_span_ms("30").unwrap(), 30_000);
        assert_eq!(parse_span_ms("1min 30s").unwrap(), 90_000);
        assert_eq!(parse_span_ms("500ms").unwrap(), 500);
        assert!(parse_span_ms("soon").is_err());
    }
}
