//! Driving our own side: the `hep-server` binary's `run`, `send` and `decode` subcommands
//! (DESIGN.md, "External interfaces"), and reading its JSON records.

use std::fs;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use super::Ctx;
use super::proc::{self, Proc};

/// Hard bound of one `hep-server run` in a check.
const RUN_MAX: Duration = Duration::from_secs(120);

/// Hard bound of one `hep-server send` or `decode`.
const TOOL_MAX: Duration = Duration::from_secs(30);

/// A loopback listener of `hep-server run`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Listen {
    /// `hep_udp:127.0.0.1:PORT`.
    Udp(u16),
    /// `hep_tcp:127.0.0.1:PORT`.
    Tcp(u16),
}

/// A running `hep-server run`, stopped when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    /// The process.
    proc: Proc,
    /// The `json:` output file, when there is one.
    json: Option<PathBuf>,
}

impl Server {
    /// Starts `hep-server run` with these listeners and outputs, logging to `dir/hep-server.log`,
    /// and waits until every listener is bound.
    ///
    /// # Errors
    /// Fails if it does not start, exits, or does not bind within 10 s.
    pub(crate) fn start(
        ctx: &Ctx,
        dir: &Path,
        listens: &[Listen],
        outputs: &[String],
    ) -> Result<Self> {
        Self::start_with_config(ctx, dir, listens, outputs, None)
    }

    /// [`Server::start`] with a configuration file of this text (`dir/hep-server.toml`)
    /// under the command line's listeners and outputs.
    ///
    /// # Errors
    /// As [`Server::start`], or the file cannot be written.
    pub(crate) fn start_with_config(
        ctx: &Ctx,
        dir: &Path,
        listens: &[Listen],
        outputs: &[String],
        config: Option<&str>,
    ) -> Result<Self> {
        // No HTTP API: checks run side by side, and none reads it.
        let mut args = vec!["run".to_owned(), "--http".to_owned(), "off".to_owned()];
        if let Some(text) = config {
            let path = dir.join("hep-server.toml");
            fs::write(&path, text)?;
            args.push("--config".to_owned());
            args.push(path.to_string_lossy().into_owned());
        }
        for l in listens {
            args.push("--listen".to_owned());
            args.push(match l {
                Listen::Udp(p) => format!("hep_udp:127.0.0.1:{p}"),
                Listen::Tcp(p) => format!("hep_tcp:127.0.0.1:{p}"),
            });
        }
        let mut json = None;
        for o in outputs {
            args.push("--output".to_owned());
            args.push(o.clone());
            if let Some(path) = o.strip_prefix("json:") {
                json = Some(PathBuf::from(path));
            }
        }
        let log = dir.join("hep-server.log");
        let program = ctx.hep_server.to_string_lossy().into_owned();
        let mut proc = Proc::start("hep-server run", &program, &args, &log, RUN_MAX)?;
        let listens = listens.to_vec();
        proc::wait_for(
            "hep-server run to bind its listeners",
            Duration::from_secs(10),
            || {
                proc.ensure_running()?;
                Ok(listens.iter().all(|l| match *l {
                    Listen::Udp(p) => proc::udp_bound(p),
                    Listen::Tcp(p) => proc::tcp_listening(p),
                }))
            },
        )?;
        Ok(Self { proc, json })
    }

    /// The records written so far to the `json:` output.
    ///
    /// # Errors
    /// Fails if there is no `json:` output or a line is not JSON.
    pub(crate) fn records(&self) -> Result<Vec<Value>> {
        let path = self
            .json
            .as_ref()
            .context("this server has no json: output")?;
        if !path.exists() {
            return Ok(Vec::new());
        }
        read_json_lines(path)
    }

    /// Waits until at least `n` records are in the `json:` output (up to `limit`), then a
    /// little longer so that duplicates would show, and returns them all.
    ///
    /// # Errors
    /// Fails if the server exits or the records are unreadable; a shortfall is not an error
    /// here (the caller reports what is missing).
    pub(crate) fn wait_records(&mut self, n: usize, limit: Duration) -> Result<Vec<Value>> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            self.proc.ensure_running()?;
            if self.records()?.len() >= n {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        thread::sleep(Duration::from_millis(300));
        self.records()
    }

    /// Fails with the log's tail if the server has exited.
    ///
    /// # Errors
    /// Fails if it is no longer running.
    pub(crate) fn ensure_running(&mut self) -> Result<()> {
        self.proc.ensure_running()
    }

    /// Stops the server and returns the last lines of its log (its counter summary).
    pub(crate) fn stop(mut self) -> String {
        self.proc.stop();
        self.proc.log_tail(1)
    }
}

/// Runs `hep-server send ARGS`.
///
/// # Errors
/// Fails if it exits unsuccessfully, with its stderr.
pub(crate) fn send(ctx: &Ctx, args: &[String]) -> Result<()> {
    let mut full = vec!["send".to_owned()];
    full.extend(args.iter().cloned());
    let program = ctx.hep_server.to_string_lossy().into_owned();
    let out = proc::output(&program, &full, None, TOOL_MAX)?;
    ensure!(
        out.status.success(),
        "`hep-server {}` failed ({}): {}",
        full.join(" "),
        out.status,
        last_line(&out.stderr)
    );
    Ok(())
}

/// Runs `hep-server decode FILES` and parses its JSON records.
///
/// # Errors
/// Fails if decode fails or prints something that is not JSON lines.
pub(crate) fn decode(ctx: &Ctx, files: &[PathBuf]) -> Result<Vec<Value>> {
    let mut args = vec![
        "decode".to_owned(),
        "--format".to_owned(),
        "json".to_owned(),
    ];
    args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
    let program = ctx.hep_server.to_string_lossy().into_owned();
    let out = proc::output(&program, &args, None, TOOL_MAX)?;
    ensure!(
        out.status.success(),
        "`hep-server decode` of {} file(s) failed ({}): {}",
        files.len(),
        out.status,
        last_line(&out.stderr)
    );
    parse_json_lines(&String::from_utf8_lossy(&out.stdout))
}

/// The last non-empty line of some output.
pub(crate) fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Reads a JSON-lines file.
///
/// # Errors
/// Fails if the file cannot be read or a complete line is not JSON.
pub(crate) fn read_json_lines(path: &Path) -> Result<Vec<Value>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    // A file being written may end in a partial line: only complete lines count.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    parse_json_lines(complete).with_context(|| format!("in {}", path.display()))
}

/// Parses JSON lines, skipping blank ones.
///
/// # Errors
/// Fails on a line that is not JSON.
pub(crate) fn parse_json_lines(text: &str) -> Result<Vec<Value>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("line {} is not JSON", i + 1))
        })
        .collect()
}

/// A string field of a record (`None` when absent or null).
pub(crate) fn s<'a>(rec: &'a Value, key: &str) -> Option<&'a str> {
    rec.get(key).and_then(Value::as_str)
}

/// An unsigned integer field of a record (`None` when absent or null).
pub(crate) fn u(rec: &Value, key: &str) -> Option<u64> {
    rec.get(key).and_then(Value::as_u64)
}

/// The payload bytes of a record: `payload` (UTF-8 text) or `payload_b64`.
///
/// # Errors
/// Fails when neither is present or the base64 is malformed.
pub(crate) fn payload(rec: &Value) -> Result<Vec<u8>> {
    if let Some(text) = s(rec, "payload") {
        return Ok(text.as_bytes().to_vec());
    }
    let b64 = s(rec, "payload_b64").context("record has neither payload nor payload_b64")?;
    base64_decode(b64)
}

/// The record's source as `ip:port` (`[ip]:port` for IPv6).
pub(crate) fn src(rec: &Value) -> String {
    addr(s(rec, "src_ip"), u(rec, "src_port"))
}

/// The record's destination as `ip:port` (`[ip]:port` for IPv6).
pub(crate) fn dst(rec: &Value) -> String {
    addr(s(rec, "dst_ip"), u(rec, "dst_port"))
}

/// Renders an address the way [`SocketAddr`] does.
fn addr(ip: Option<&str>, port: Option<u64>) -> String {
    let ip = ip.unwrap_or("?");
    let port = port.map_or_else(|| "?".to_owned(), |p| p.to_string());
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The record's timestamp in microseconds since the epoch, if it has one.
pub(crate) fn micros(rec: &Value) -> Option<u64> {
    Some(u(rec, "ts_sec")? * 1_000_000 + u(rec, "ts_usec").unwrap_or(0))
}

/// Now, in microseconds since the epoch.
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A wall-clock window `[start - 1 s, end + 1 s]` that timestamps taken during a run fall in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Start, microseconds since the epoch.
    start: u64,
    /// End, once closed.
    end: Option<u64>,
}

impl Window {
    /// Opens a window now.
    pub(crate) fn open() -> Self {
        Self {
            start: now_micros(),
            end: None,
        }
    }

    /// Closes the window now.
    pub(crate) fn close(&mut self) {
        self.end = Some(now_micros());
    }

    /// Whether `micros` lies in the window (an open window extends to now), with 1 s slack.
    pub(crate) fn contains(&self, micros: u64) -> bool {
        let end = self.end.unwrap_or_else(now_micros);
        micros + 1_000_000 >= self.start && micros <= end + 1_000_000
    }
}

/// Sends raw HEP datagrams from files to `127.0.0.1:port`, 5 ms apart (order is kept).
///
/// # Errors
/// Fails if a file cannot be read or a datagram cannot be sent.
pub(crate) fn replay_udp(files: &[PathBuf], port: u16) -> Result<()> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    for f in files {
        let bytes = fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        sock.send_to(&bytes, ("127.0.0.1", port))
            .with_context(|| format!("sending {} to 127.0.0.1:{port}", f.display()))?;
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Writes a HEP3 byte stream to `127.0.0.1:port` over one TCP connection and closes it.
///
/// # Errors
/// Fails if the connection or the write fails.
pub(crate) fn replay_tcp(stream: &[u8], port: u16) -> Result<()> {
    use std::io::Write as _;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    conn.write_all(stream)?;
    conn.flush()?;
    thread::sleep(Duration::from_millis(200));
    Ok(())
}

/// Decodes standard base64 (with or without padding).
///
/// # Errors
/// Fails on a character outside the base64 alphabet.
pub(crate) fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => bail!("invalid base64 character {:?}", char::from(c)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap_or_default());
        }
    }
    Ok(out)
}

/// Lowercase hex of some bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("AP8=").unwrap(), [0, 255]);
        assert!(base64_decode("a*").is_err());
    }

    #[test]
    fn addresses_render_like_socket_addrs() {
        let rec: Value = serde_json::json!({"src_ip": "::1", "src_port": 5060, "dst_ip": "127.0.0.1", "dst_port": 9});
        assert_eq!(src(&rec), "[::1]:5060");
        assert_eq!(dst(&rec), "127.0.0.1:9");
        assert_eq!(hex(b"\x00\xab"), "00ab");
    }
}
