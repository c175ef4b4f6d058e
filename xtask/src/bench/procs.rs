//! The processes a benchmark starts, and what it reads about them and the kernel.
//!
//! Every process is started here, recorded by PID, and stopped by PID: `SIGTERM` (through
//! `kill`, since std has no signal API and the workspace forbids `unsafe`), then `SIGKILL`
//! after a grace period. [`Proc`] stops its process when dropped, so an error anywhere in
//! a benchmark leaves nothing running. Long-lived peers also get their own time limit
//! (`timeout` for Kamailio, `--max-secs` for `hep-bench-peer`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// A started process, stopped when dropped.
pub(crate) struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Option<mpsc::Receiver<String>>,
}

impl Proc {
    /// Starts `cmd` with stdin/stdout piped when `talk` (for `hep-bench-peer`), stderr to
    /// `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path, talk: bool) -> Result<Self> {
        let err = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stderr(err);
        if talk {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        } else {
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({cmd:?})"))?;
        let stdin = child.stdin.take();
        let lines = child.stdout.take().map(|out| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        Ok(Self {
            name: name.to_owned(),
            child,
            stdin,
            lines,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the process prints, within `timeout`.
    pub(crate) fn line(&self, timeout: Duration) -> Result<String> {
        let rx = self.lines.as_ref().context("no stdout pipe")?;
        rx.recv_timeout(timeout)
            .with_context(|| format!("{} printed nothing within {timeout:?}", self.name))
    }

    /// Sends one command line and returns the answer line.
    pub(crate) fn ask(&mut self, command: &str) -> Result<String> {
        let stdin = self.stdin.as_mut().context("no stdin pipe")?;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("{} does not take commands any more", self.name))?;
        self.line(Duration::from_secs(10))
    }

    /// Whether it is still running.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for it to exit on its own, at most `timeout`; then stops it.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("{} exited with {status}", self.name);
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop();
        bail!("{} did not finish within {timeout:?}; stopped", self.name)
    }

    /// `SIGTERM`, up to 5 s to exit, then `SIGKILL`. Idempotent.
    pub(crate) fn stop(&mut self) {
        self.stdin = None;
        if !self.running() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !self.running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `VmRSS`, `VmHWM` (KiB) and CPU ticks of the process.
    pub(crate) fn sample(&self) -> Sample {
        sample(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What `/proc/PID` tells about a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sample {
    /// Resident set, KiB.
    pub(crate) rss_kib: u64,
    /// Peak resident set, KiB.
    pub(crate) hwm_kib: u64,
    /// User + system clock ticks of all its threads.
    pub(crate) cpu_ticks: u64,
}

pub(crate) fn sample(pid: u32) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Sample {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        cpu_ticks: cpu_ticks(pid),
    }
}

/// utime + stime of a process (all threads), in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may contain spaces: count after the last ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// The children of `pid` (one level), from `/proc/*/stat`.
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
        if after
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u32>().ok())
            == Some(pid)
        {
            out.push(p);
        }
    }
    out
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when it cannot be asked).
pub(crate) fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The kernel's UDP counters (`/proc/net/snmp`), for drops nobody else counts.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UdpSnmp {
    pub(crate) rcvbuf_errors: u64,
    pub(crate) in_errors: u64,
}

impl UdpSnmp {
    pub(crate) fn read() -> Self {
        let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
        let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
            return Self::default();
        };
        let map: BTreeMap<&str, u64> = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
            .collect();
        Self {
            rcvbuf_errors: map.get("RcvbufErrors").copied().unwrap_or(0),
            in_errors: map.get("InErrors").copied().unwrap_or(0),
        }
    }

    pub(crate) fn since(self, before: Self) -> Self {
        Self {
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(before.rcvbuf_errors),
            in_errors: self.in_errors.saturating_sub(before.in_errors),
        }
    }
}

/// A loopback port free for both UDP and TCP right now.
pub(crate) fn free_port() -> Result<u16> {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port found")
}

/// `GET path` on `addr` over one HTTP/1.0 connection (closed by the server after the
/// answer): the status code and the body.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to http://{addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .with_context(|| format!("reading the answer to GET http://{addr}{path}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("GET http://{addr}{path}: no status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Prometheus text from `http://addr/metrics`.
pub(crate) fn scrape(addr: SocketAddr) -> Result<Metrics> {
    let (_, body) = http_get(addr, "/metrics")?;
    Ok(Metrics::parse(&body))
}

/// Samples by full name (`name{labels}`).
#[derive(Debug, Default)]
pub(crate) struct Metrics(Vec<(String, f64)>);

impl Metrics {
    /// The samples of a Prometheus text exposition (comments left out).
    pub(crate) fn parse(body: &str) -> Self {
        Self(
            body.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (k, v) = l.rsplit_once(' ')?;
                    Some((k.to_owned(), v.parse().ok()?))
                })
                .collect(),
        )
    }

    /// The samples of `name`: the text between its braces (empty without labels) and
    /// the value.
    pub(crate) fn family<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> {
        self.0.iter().filter_map(move |(k, v)| {
            let (n, l) = k.split_once('{').unwrap_or((k.as_str(), ""));
            (n == name).then(|| (l.trim_end_matches('}'), *v))
        })
    }

    /// The sum of the samples of `name` whose labels contain every one of `labels`.
    pub(crate) fn sum(&self, name: &str, labels: &[&str]) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| {
                let (n, l) = k.split_once('{').unwrap_or((k.as_str(), ""));
                n == name && labels.iter().all(|want| l.contains(want))
            })
            .map(|(_, v)| *v)
            .sum::<f64>() as u64
    }
}

/// A `hep-server run` with a metrics endpoint.
pub(crate) struct Server {
    pub(crate) proc: Proc,
    pub(crate) metrics: SocketAddr,
}

impl Server {
    /// Starts `hep-server run ARGS --metrics 127.0.0.1:PORT` (the file descriptor limit
    /// raised to the hard limit; `--http off` unless ARGS name `--http`) and waits until its
    /// metrics answer.
    pub(crate) fn start(bin: &Path, name: &str, args: &[String], log: &Path) -> Result<Self> {
        let metrics: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec \"$0\" \"$@\"")
            .arg(bin)
            .arg("run")
            .args(args)
            .arg("--metrics")
            .arg(metrics.to_string())
            .env("RUST_LOG", "warn");
        if !args.iter().any(|a| a == "--http") {
            // The ingest figures are measured without the HTTP API (and no port 9080).
            cmd.args(["--http", "off"]);
        }
        let mut proc = Proc::spawn(name, cmd, log, false)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if scrape(metrics).is_ok() {
                break;
            }
            if !proc.running() || Instant::now() > deadline {
                let log_text = std::fs::read_to_string(log).unwrap_or_default();
                proc.stop();
                bail!("{name} did not start: {}", log_text.trim());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { proc, metrics })
    }

    pub(crate) fn scrape(&self) -> Result<Metrics> {
        scrape(self.metrics)
    }

    /// Messages counted by the `null` output.
    pub(crate) fn delivered_null(&self) -> Result<u64> {
        Ok(self
            .scrape()?
            .sum("hep_delivered_total", &["output=\"null\""]))
    }
}

/// A `hep-bench-peer` process.
pub(crate) struct Peer {
    pub(crate) proc: Proc,
    /// The rest of its `ready` line.
    pub(crate) ready: String,
}

impl Peer {
    pub(crate) fn start(bin: &Path, name: &str, args: &[String], log: &Path) -> Result<Self> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec \"$0\" \"$@\"")
            .arg(bin)
            .args(args)
            .args(["--max-secs", "1200"]);
        let proc = Proc::spawn(name, cmd, log, true)?;
        let line = proc.line(Duration::from_secs(60)).with_context(|| {
            format!(
                "{name} did not get ready: {}",
                std::fs::read_to_string(log).unwrap_or_default().trim()
            )
        })?;
        let ready = line
            .strip_prefix("ready ")
            .with_context(|| format!("{name}: expected `ready ...`, got `{line}`"))?
            .to_owned();
        Ok(Self { proc, ready })
    }

    /// `stats`, as `key -> value`.
    pub(crate) fn stats(&mut self) -> Result<BTreeMap<String, f64>> {
        let line = self.proc.ask("stats")?;
        Ok(parse_pairs(&line))
    }
}

/// `key=value` pairs of a line; values that are not numbers are left out.
pub(crate) fn parse_pairs(line: &str) -> BTreeMap<String, f64> {
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Kamailio 5.6 sipcapture in accept-only mode, as `../shared/peers/bench-receiver.sh
/// event` runs it (see `xtask/bench/kamailio-accept-only.cfg`).
pub(crate) struct Kamailio {
    proc: Proc,
    ctl: PathBuf,
    /// The kamailio main process (the child of `timeout`).
    main: u32,
}

/// The configuration, with `@PORT@`, `@CTL@` and `@DB@` to fill in.
const KAMAILIO_CFG: &str = include_str!("../../bench/kamailio-accept-only.cfg");

impl Kamailio {
    /// Whether `kamailio` and `kamcmd` are installed.
    pub(crate) fn available() -> bool {
        Path::new("/usr/sbin/kamailio").exists() && Path::new("/usr/sbin/kamcmd").exists()
    }

    pub(crate) fn start(dir: &Path, port: u16) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ctl = dir.join("ctl.sock");
        let db = dir.join("hep.sqlite");
        // sipcapture needs a database URL; accept-only mode never writes to it.
        File::create(&db)?;
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(
            &cfg,
            KAMAILIO_CFG
                .replace("@PORT@", &port.to_string())
                .replace("@CTL@", &ctl.display().to_string())
                .replace("@DB@", &db.display().to_string()),
        )?;
        let mut cmd = Command::new("timeout");
        cmd.args([
            "--kill-after=5",
            "1200",
            "/usr/sbin/kamailio",
            "-DD",
            "-E",
            "-f",
        ])
        .arg(&cfg)
        .arg("-Y")
        .arg(dir)
        .arg("-w")
        .arg(dir);
        let proc = Proc::spawn("kamailio", cmd, &dir.join("kamailio.log"), false)?;
        let mut k = Self { main: 0, proc, ctl };
        let deadline = Instant::now() + Duration::from_secs(15);
        while k.count().is_err() {
            if !k.proc.running() || Instant::now() > deadline {
                bail!(
                    "kamailio did not start: {}",
                    std::fs::read_to_string(dir.join("kamailio.log"))
                        .unwrap_or_default()
                        .lines()
                        .rev()
                        .take(5)
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        k.main = children_of(k.proc.pid()).first().copied().unwrap_or(0);
        Ok(k)
    }

    /// The `hep_raw` counter: HEP packets accepted by `event_route[sipcapture:request]`.
    pub(crate) fn count(&self) -> Result<u64> {
        let out = Command::new("/usr/sbin/kamcmd")
            .arg("-s")
            .arg(format!("unix:{}", self.ctl.display()))
            .args(["stats.get_statistics", "hep_raw"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.trim().strip_prefix("script:hep_raw = "))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("kamcmd: {}", text.trim()))
    }

    /// CPU ticks of kamailio and all its processes.
    pub(crate) fn cpu_ticks(&self) -> u64 {
        let mut t = cpu_ticks(self.main);
        for c in children_of(self.main) {
            t += cpu_ticks(c);
        }
        t
    }

    /// Resident set of all its processes, KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        let mut t = sample(self.main).rss_kib;
        for c in children_of(self.main) {
            t += sample(c).rss_kib;
        }
        t
    }

    pub(crate) fn stop(&mut self) {
        // `timeout` passes SIGTERM on to kamailio, whose main process stops its children.
        self.proc.stop();
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
    }
}
