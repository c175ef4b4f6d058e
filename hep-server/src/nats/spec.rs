//! `nats:` specs: the edge's output `nats:URL[,URL...][;stream=HEP][;subject=hep]
//! [;partitions=P][;replicas=R][;max_age=AGE][;window=W][;spool=DIR]` and the consumer's
//! input `nats:URL[,URL...][;stream=HEP][;subject=hep][;partitions=A-B][;replicas=R]
//! [;max_age=AGE][;positions=FILE]`.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Partitions of a stream unless its spec says (`partitions=P`).
pub const DEFAULT_PARTITIONS: u32 = 64;
/// The most partitions a stream may have: one durable consumer each.
pub const MAX_PARTITIONS: u32 = 4096;
/// Publishes awaiting their acknowledgement at once, unless `window=W` says.
pub const DEFAULT_WINDOW: usize = 256;
/// The largest `window=W`.
pub const MAX_WINDOW: usize = 65_536;
/// How long the stream keeps a message unless `max_age=AGE` says: what a consumer may be
/// down (or behind) without losing its partitions' messages.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3_600);
/// The shortest `max_age=AGE`: under it, a consumer's restart could cost messages.
pub const MIN_MAX_AGE: Duration = Duration::from_secs(60);

/// What the edge and the consumer agree on: where the stream is and how it is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// The servers (`nats://HOST:PORT`), tried in turn.
    pub urls: Vec<String>,
    /// The JetStream stream (`stream=`, default `HEP`).
    pub stream: String,
    /// The subject prefix (`subject=`, default `hep`): partition k is `<subject>.<k>`.
    pub subject: String,
    /// Copies of each message in the cluster (`replicas=`; default: as many servers as
    /// are listed, at most 3).
    pub replicas: usize,
    /// How long the stream keeps each message (`max_age=`, default 24 h), read or not:
    /// the stream is not a work queue (see `nats::stream::config`).
    pub max_age: Duration,
}

impl StreamSpec {
    /// The subject of partition `k`.
    pub fn partition_subject(&self, k: u32) -> String {
        format!("{}.{k}", self.subject)
    }
}

/// `output nats:...`: an edge publishing every message to the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOutputSpec {
    /// The stream.
    pub stream: StreamSpec,
    /// Partitions (`partitions=P`, default 64): fixed for the life of a stream, the same
    /// on every edge.
    pub partitions: u32,
    /// Publishes in flight (`window=W`, default 256).
    pub window: usize,
    /// The disk spool every message goes through (`spool=DIR`), if any.
    pub spool: Option<PathBuf>,
}

/// `input nats:...`: a consumer reading partitions of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsInputSpec {
    /// The stream.
    pub stream: StreamSpec,
    /// The partitions this node reads (`partitions=A-B`, or `A`; default 0-63).
    pub partitions: RangeInclusive<u32>,
    /// Where the consumer keeps how far its outputs have read each partition
    /// (`positions=FILE`; default: in the directory of the node's store, see
    /// [`NatsInputSpec::positions_file`]).
    pub positions: Option<PathBuf>,
}

/// A `nats:` spec that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid nats spec `{input}`: {reason}")]
pub struct NatsSpecError {
    input: String,
    reason: String,
}

impl NatsSpecError {
    /// What was wrong, without the spec (for an error that names the spec already).
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The options of a spec, as written.
struct Options<'a> {
    urls: Vec<String>,
    pairs: Vec<(&'a str, &'a str)>,
}

fn split(s: &str) -> Result<Options<'_>, String> {
    let rest = s
        .strip_prefix("nats:")
        .ok_or("expected nats:URL[,URL...][;key=value...]")?;
    let mut parts = rest.split(';');
    let servers = parts.next().unwrap_or_default();
    let mut urls = Vec::new();
    for url in servers.split(',').map(str::trim) {
        if url.is_empty() {
            return Err("expected at least one server URL (nats://HOST:PORT) after `nats:`".into());
        }
        let host = url.strip_prefix("nats://").unwrap_or(url);
        if host.contains('/') || !host.contains(':') {
            return Err(format!(
                "`{url}` is not a server address: expected nats://HOST:PORT"
            ));
        }
        urls.push(format!("nats://{host}"));
    }
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for part in parts.map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: expected key=value"))?;
        if pairs.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("`{k}=` given twice"));
        }
        if v.is_empty() {
            return Err(format!("`{k}=` has no value"));
        }
        pairs.push((k, v));
    }
    Ok(Options { urls, pairs })
}

impl Options<'_> {
    fn take(&mut self, key: &str) -> Option<String> {
        let i = self.pairs.iter().position(|(k, _)| *k == key)?;
        Some(self.pairs.remove(i).1.to_owned())
    }

    fn stream(&mut self) -> Result<StreamSpec, String> {
        let stream = self.take("stream").unwrap_or_else(|| "HEP".to_owned());
        // JetStream names: no spaces, dots, wildcards or path separators.
        if stream
            .chars()
            .any(|c| matches!(c, ' ' | '.' | '*' | '>' | '/' | '\\') || c.is_control())
        {
            return Err(format!(
                "stream `{stream}`: a stream name has no spaces, dots, `*`, `>` or slashes"
            ));
        }
        let subject = self.take("subject").unwrap_or_else(|| "hep".to_owned());
        if subject
            .split('.')
            .any(|t| t.is_empty() || t == "*" || t == ">")
            || subject.chars().any(|c| c == ' ' || c.is_control())
        {
            return Err(format!(
                "subject `{subject}`: expected tokens separated by dots, without wildcards"
            ));
        }
        let replicas = match self.take("replicas") {
            Some(r) => match r.parse::<usize>() {
                Ok(n @ 1..=5) => n,
                _ => return Err(format!("replicas `{r}`: expected 1 to 5")),
            },
            None => self.urls.len().min(3),
        };
        let max_age = match self.take("max_age") {
            Some(a) => parse_age(&a)?,
            None => DEFAULT_MAX_AGE,
        };
        Ok(StreamSpec {
            urls: self.urls.clone(),
            stream,
            subject,
            replicas,
            max_age,
        })
    }

    fn done(&self, known: &str) -> Result<(), String> {
        match self.pairs.first() {
            Some((k, _)) => Err(format!("unknown option `{k}=` (expected {known})")),
            None => Ok(()),
        }
    }
}

/// `max_age=`: a whole number of seconds, minutes, hours or days (`90s`, `30m`, `24h`,
/// `7d`), at least [`MIN_MAX_AGE`].
fn parse_age(v: &str) -> Result<Duration, String> {
    let bad = || format!("max_age `{v}`: expected a number and s, m, h or d (`24h`), at least 60s");
    let unit = v.chars().last().ok_or_else(bad)?;
    let n: u64 = v[..v.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let age = Duration::from_secs(n.checked_mul(secs).ok_or_else(bad)?);
    if age < MIN_MAX_AGE {
        return Err(bad());
    }
    Ok(age)
}

/// `max_age` as `max_age=` takes it, in the largest unit that divides it.
fn write_age(age: Duration) -> String {
    let s = age.as_secs();
    [(86_400, 'd'), (3_600, 'h'), (60, 'm')]
        .into_iter()
        .find(|&(unit, _)| s.is_multiple_of(unit))
        .map_or_else(|| format!("{s}s"), |(unit, c)| format!("{}{c}", s / unit))
}

fn count(key: &str, v: &str, max: u32) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n @ 1..) if n <= max => Ok(n),
        _ => Err(format!("{key} `{v}`: expected a number from 1 to {max}")),
    }
}

impl NatsOutputSpec {
    /// Parses an output spec.
    ///
    /// ```
    /// use hep_server::nats::NatsOutputSpec;
    /// let spec = NatsOutputSpec::parse("nats:nats://127.0.0.1:4222,nats://127.0.0.1:4223;partitions=8").unwrap();
    /// assert_eq!(spec.partitions, 8);
    /// assert_eq!(spec.stream.replicas, 2, "as many as the servers listed, at most 3");
    /// assert_eq!(spec.stream.partition_subject(5), "hep.5");
    /// assert!(NatsOutputSpec::parse("nats:127.0.0.1:4222;partitions=0").is_err());
    /// ```
    ///
    /// # Errors
    /// A [`NatsSpecError`] naming what was wrong.
    pub fn parse(s: &str) -> Result<Self, NatsSpecError> {
        let known = "stream, subject, partitions, replicas, max_age, window or spool";
        parse_spec(s, known, |o, stream| {
            let partitions = match o.take("partitions") {
                Some(p) => count("partitions", &p, MAX_PARTITIONS)?,
                None => DEFAULT_PARTITIONS,
            };
            let window = match o.take("window") {
                Some(w) => count("window", &w, MAX_WINDOW as u32)? as usize,
                None => DEFAULT_WINDOW,
            };
            Ok(Self {
                stream,
                partitions,
                window,
                spool: o.take("spool").map(PathBuf::from),
            })
        })
    }
}

impl NatsInputSpec {
    /// Parses an input spec.
    ///
    /// ```
    /// use hep_server::nats::NatsInputSpec;
    /// let spec = NatsInputSpec::parse("nats:nats://127.0.0.1:4222;stream=HEP;partitions=0-31").unwrap();
    /// assert_eq!(spec.partitions, 0..=31);
    /// assert_eq!(NatsInputSpec::parse("nats:127.0.0.1:4222;partitions=7").unwrap().partitions, 7..=7);
    /// assert!(NatsInputSpec::parse("nats:127.0.0.1:4222;partitions=9-3").is_err());
    /// ```
    ///
    /// # Errors
    /// A [`NatsSpecError`] naming what was wrong.
    pub fn parse(s: &str) -> Result<Self, NatsSpecError> {
        let known = "stream, subject, partitions, replicas, max_age or positions";
        parse_spec(s, known, |o, stream| {
            let positions = o.take("positions").map(PathBuf::from);
            let partitions = match o.take("partitions") {
                None => 0..=DEFAULT_PARTITIONS - 1,
                Some(p) => {
                    let bad = || {
                        format!(
                            "partitions `{p}`: expected A-B, from 0 to {}",
                            MAX_PARTITIONS - 1
                        )
                    };
                    let (a, b) = p.split_once('-').unwrap_or((&p, &p));
                    let a: u32 = a.trim().parse().map_err(|_| bad())?;
                    let b: u32 = b.trim().parse().map_err(|_| bad())?;
                    if a > b || b >= MAX_PARTITIONS {
                        return Err(bad());
                    }
                    a..=b
                }
            };
            Ok(Self {
                stream,
                partitions,
                positions,
            })
        })
    }

    /// The file this input keeps its positions in: `positions=FILE`, or else
    /// `nats-<STREAM>-<A>-<B>.positions` in `store_dir` (the node's store: the positions
    /// say what that store holds, so a store made anew reads the stream again), or none
    /// (kept in memory only: a restart reads each partition from the stream's start).
    ///
    /// ```
    /// use std::path::Path;
    /// use hep_server::nats::NatsInputSpec;
    /// let spec = NatsInputSpec::parse("nats:127.0.0.1:4222;partitions=0-31").unwrap();
    /// assert_eq!(
    ///     spec.positions_file(Some(Path::new("/var/lib/hep"))).unwrap(),
    ///     Path::new("/var/lib/hep/nats-HEP-0-31.positions"),
    /// );
    /// assert_eq!(spec.positions_file(None), None);
    /// ```
    pub fn positions_file(&self, store_dir: Option<&Path>) -> Option<PathBuf> {
        self.positions.clone().or_else(|| {
            store_dir.map(|dir| {
                dir.join(format!(
                    "nats-{}-{}-{}.positions",
                    self.stream.stream,
                    self.partitions.start(),
                    self.partitions.end()
                ))
            })
        })
    }
}

/// The servers and the stream of spec `s`, then its own options (`rest`), then no
/// option left but the `known` ones.
fn parse_spec<T>(
    s: &str,
    known: &str,
    rest: impl FnOnce(&mut Options<'_>, StreamSpec) -> Result<T, String>,
) -> Result<T, NatsSpecError> {
    let parsed = split(s).and_then(|mut o| {
        let stream = o.stream()?;
        let value = rest(&mut o, stream)?;
        o.done(known)?;
        Ok(value)
    });
    parsed.map_err(|reason| NatsSpecError {
        input: s.to_owned(),
        reason,
    })
}

fn write_stream(f: &mut fmt::Formatter<'_>, s: &StreamSpec) -> fmt::Result {
    write!(
        f,
        "nats:{};stream={};subject={};replicas={};max_age={}",
        s.urls.join(","),
        s.stream,
        s.subject,
        s.replicas,
        write_age(s.max_age)
    )
}

impl fmt::Display for NatsOutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_stream(f, &self.stream)?;
        write!(f, ";partitions={};window={}", self.partitions, self.window)?;
        match &self.spool {
            Some(dir) => write!(f, ";spool={}", dir.display()),
            None => Ok(()),
        }
    }
}

impl fmt::Display for NatsInputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_stream(f, &self.stream)?;
        write!(
            f,
            ";partitions={}-{}",
            self.partitions.start(),
            self.partitions.end()
        )?;
        match &self.positions {
            Some(file) => write!(f, ";positions={}", file.display()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_reads_back_as_it_is_written() {
        let out = NatsOutputSpec::parse(
            "nats:a:1,nats://b:2,c:3;stream=CAP;subject=cap.sip;partitions=16;window=64;spool=/var/spool/hep",
        )
        .unwrap();
        assert_eq!(out.stream.urls, ["nats://a:1", "nats://b:2", "nats://c:3"]);
        assert_eq!(out.stream.replicas, 3);
        assert_eq!(out.stream.partition_subject(3), "cap.sip.3");
        assert_eq!(NatsOutputSpec::parse(&out.to_string()).unwrap(), out);
        let input = NatsInputSpec::parse("nats:a:1;partitions=4-9;replicas=1").unwrap();
        assert_eq!(NatsInputSpec::parse(&input.to_string()).unwrap(), input);
        assert_eq!(input.stream.max_age, DEFAULT_MAX_AGE);
        for (written, secs, back) in [
            ("90s", 90, "90s"),
            ("120s", 120, "2m"),
            ("30m", 1_800, "30m"),
            ("36h", 129_600, "36h"),
            ("7d", 604_800, "7d"),
        ] {
            let spec = NatsInputSpec::parse(&format!("nats:a:1;max_age={written}")).unwrap();
            assert_eq!(spec.stream.max_age, Duration::from_secs(secs), "{written}");
            assert!(
                spec.to_string().contains(&format!(";max_age={back}")),
                "{spec}"
            );
            assert_eq!(NatsInputSpec::parse(&spec.to_string()).unwrap(), spec);
        }
    }

    #[test]
    fn every_mistake_is_named() {
        for (bad, says) in [
            ("nats:", "at least one server"),
            ("nats:a:1,", "at least one server"),
            ("nats:host-without-port", "nats://HOST:PORT"),
            ("nats:a:1;partitions=0", "partitions `0`"),
            ("nats:a:1;partitions=5000", "from 1 to 4096"),
            ("nats:a:1;stream=A.B", "stream `A.B`"),
            ("nats:a:1;subject=hep.*", "without wildcards"),
            ("nats:a:1;replicas=9", "replicas `9`"),
            ("nats:a:1;window=x", "window `x`"),
            ("nats:a:1;max_age=10", "max_age `10`"),
            ("nats:a:1;max_age=59s", "at least 60s"),
            ("nats:a:1;max_age=1w", "max_age `1w`"),
            ("nats:a:1;max_age=-1h", "max_age `-1h`"),
            ("nats:a:1;max_age=99999999999999999d", "max_age `"),
            ("nats:a:1;spool=", "`spool=` has no value"),
            ("nats:a:1;stream=A;stream=B", "given twice"),
            ("nats:a:1;colour=red", "unknown option `colour=`"),
        ] {
            let e = NatsOutputSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        for (bad, says) in [
            ("nats:a:1;partitions=3-2", "expected A-B"),
            ("nats:a:1;partitions=0-4096", "expected A-B"),
            ("nats:a:1;spool=/x", "unknown option `spool=`"),
        ] {
            let e = NatsInputSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
