//! Processes, ports and waiting: everything the checks start is bounded in time and stopped
//! by its PID.
//!
//! Every peer runs under coreutils `timeout -k 5 SECS`, a hard bound that holds even if xtask
//! itself dies. `timeout` puts itself and the peer in a new process group and forwards the
//! `TERM` that [`Proc::stop`] sends it to that group, so Kamailio's worker processes are
//! stopped with their parent.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// How long a process has to exit after `TERM` before the group gets `KILL`.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often polling loops look again.
const POLL: Duration = Duration::from_millis(50);

/// A started peer (or hep-server) process, stopped when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    /// Short name for messages.
    name: String,
    /// The `timeout` process; its PID is also the process group of the peer.
    child: Child,
    /// File receiving the process's stdout and stderr.
    log: PathBuf,
    /// Exit status once known.
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `program args` under `timeout`, bounded to `max`, output to `log`, no stdin.
    ///
    /// # Errors
    /// Fails if the log file cannot be created or the process cannot be started.
    pub(crate) fn start<S: AsRef<OsStr>>(
        name: &str,
        program: &str,
        args: &[S],
        log: &Path,
        max: Duration,
    ) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new("timeout")
            .arg("-k")
            .arg(STOP_GRACE.as_secs().to_string())
            .arg(max.as_secs().max(1).to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {name} ({program})"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
            status: None,
        })
    }

    /// The exit status if the process has ended.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `limit` for the process to end by itself.
    ///
    /// # Errors
    /// Fails (after stopping it) if it is still running after `limit`.
    pub(crate) fn wait(&mut self, limit: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.stop();
                bail!(
                    "{} did not finish within {:.0} s; log: {}",
                    self.name,
                    limit.as_secs_f64(),
                    self.log_tail(5)
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Stops the process: `TERM` to its PID (forwarded by `timeout` to the peer's group),
    /// then `KILL` to the group if it has not exited within [`STOP_GRACE`].
    pub(crate) fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        let pid = self.child.id().to_string();
        signal("-TERM", &pid);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            thread::sleep(POLL);
        }
        // The group id is the `timeout` PID (it calls setpgid(0, 0)).
        signal("-KILL", &format!("-{pid}"));
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
        self.status
    }

    /// The PID of the `timeout` wrapper, which is also the process group of the peer.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A crash: `KILL` to the whole process group (the wrapper and the peer) at once, no
    /// `TERM` first; waits for the wrapper to be reaped.
    pub(crate) fn kill_group(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        signal("-KILL", &format!("-{}", self.child.id()));
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
        self.status
    }

    /// The last `n` lines of the log, joined with ` | `, for error messages.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// Fails with the log's tail if the process has already exited.
    ///
    /// # Errors
    /// Fails if the process is no longer running.
    pub(crate) fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.exited() {
            bail!(
                "{} exited early ({status}); log: {}",
                self.name,
                self.log_tail(6)
            );
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends a signal with `kill(1)`; failures (the process is already gone) are ignored.
fn signal(sig: &str, target: &str) {
    let _ = Command::new("kill")
        .args([sig, "--", target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The last `n` non-empty lines of a file, joined with ` | `.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Runs a short command to completion under `timeout`, capturing its output.
///
/// # Errors
/// Fails if it cannot be started. The exit status is left to the caller.
pub(crate) fn output<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    dir: Option<&Path>,
    max: Duration,
) -> Result<Output> {
    let mut cmd = Command::new("timeout");
    cmd.arg("-k")
        .arg(STOP_GRACE.as_secs().to_string())
        .arg(max.as_secs().max(1).to_string())
        .arg(program)
        .args(args)
        .stdin(Stdio::null());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.output()
        .with_context(|| format!("cannot run {program}"))
}

/// Like [`output`], but fails on a non-zero exit and returns stdout as text.
///
/// # Errors
/// Fails if the command cannot be started, fails, or prints non-UTF-8.
pub(crate) fn stdout<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    dir: Option<&Path>,
    max: Duration,
) -> Result<String> {
    let out = output(program, args, dir, max)?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{program} printed non-UTF-8"))
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
///
/// # Errors
/// Fails naming `what` on timeout, or with `cond`'s own error.
pub(crate) fn wait_for(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if cond()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {:.1} s waiting for {what}",
                limit.as_secs_f64()
            );
        }
        thread::sleep(POLL);
    }
}

/// Hands out loopback ports that are free for UDP and TCP on 127.0.0.1 and UDP on ::1,
/// never the same one twice in a run.
#[derive(Debug, Default)]
pub(crate) struct Ports {
    /// Ports already handed out.
    used: RefCell<HashSet<u16>>,
}

impl Ports {
    /// A port that was free a moment ago on every loopback socket a peer may open.
    ///
    /// # Errors
    /// Fails if no such port is found in 100 tries.
    pub(crate) fn free(&self) -> Result<u16> {
        for _ in 0..100 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            if port < 10_000 || self.used.borrow().contains(&port) {
                continue;
            }
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            let free = UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && UdpSocket::bind(v6).is_ok()
                && TcpListener::bind(("127.0.0.1", port)).is_ok();
            if free {
                self.used.borrow_mut().insert(port);
                return Ok(port);
            }
        }
        bail!("no free loopback port found")
    }
}

/// Whether some UDP socket is bound to local `port` (IPv4 or IPv6), from `/proc/net`.
pub(crate) fn udp_bound(port: u16) -> bool {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .any(|table| proc_net_has(table, port, None))
}

/// Whether some TCP socket listens on local `port` (IPv4 or IPv6), from `/proc/net`.
pub(crate) fn tcp_listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .any(|table| proc_net_has(table, port, Some("0A")))
}

/// Whether a `/proc/net/{udp,tcp}[6]` table has a socket on local `port` (in `state`).
fn proc_net_has(table: &str, port: u16, state: Option<&str>) -> bool {
    let Ok(text) = fs::read_to_string(table) else {
        return false;
    };
    let want = format!("{port:04X}");
    text.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1).unwrap_or_default();
        let st = fields.nth(1).unwrap_or_default();
        local.rsplit(':').next() == Some(want.as_str()) && state.is_none_or(|s| s == st)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_probes_see_bound_sockets() {
        let ports = Ports::default();
        let a = ports.free().unwrap();
        let b = ports.free().unwrap();
        assert_ne!(a, b);
        let udp = UdpSocket::bind(("127.0.0.1", a)).unwrap();
        let tcp = TcpListener::bind(("127.0.0.1", b)).unwrap();
        assert!(udp_bound(a));
        assert!(tcp_listening(b));
        drop((udp, tcp));
        assert!(!udp_bound(a));
    }

    #[test]
    fn proc_is_bounded_and_stopped() {
        let dir = std::env::temp_dir().join(format!("xtask-proc-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut p = Proc::start(
            "sleep",
            "sleep",
            &["30"],
            &dir.join("log"),
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(p.exited().is_none());
        let status = p.stop().unwrap();
        assert!(!status.success());
        let mut q = Proc::start(
            "true",
            "true",
            &[] as &[&str],
            &dir.join("log2"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(q.wait(Duration::from_secs(5)).unwrap().success());
        fs::remove_dir_all(&dir).unwrap();
    }
}
