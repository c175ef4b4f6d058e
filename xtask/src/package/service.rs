//! The unit's `ExecStart` run as systemd would run it (these machines have no systemd as
//! PID 1 to start it): its user, group and open-files limit, no capability,
//! `NoNewPrivileges`, its working directory, a clean environment with `JOURNAL_STREAM` and
//! `NOTIFY_SOCKET`; the socket that reads the notifications; the ports it listens on.

use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use super::host::STATE;
use super::unit::Unit;

/// The watchdog the check asks for (the unit's is longer).
pub(super) const WATCHDOG: Duration = Duration::from_secs(2);

/// Where the service listens in this run.
pub(super) struct Ports {
    pub(super) hep: u16,
    pub(super) http: u16,
    /// The variables that moved them, when the packaged ports were taken.
    pub(super) env: Vec<(&'static str, String)>,
}

/// The packaged ports (5656, 9080) when free, else free ones through the environment.
pub(super) fn choose_ports() -> Result<Ports> {
    let mut ports = Ports {
        hep: 5656,
        http: 9080,
        env: Vec::new(),
    };
    if !hep_port_free(ports.hep) {
        ports.hep = free_port()?;
        println!(
            "==> package: port 5656 is taken here: HEP_SERVER_LISTEN moves the service to {}",
            ports.hep
        );
        ports.env.push((
            "HEP_SERVER_LISTEN",
            format!("hep_udp:0.0.0.0:{0} hep_tcp:0.0.0.0:{0}", ports.hep),
        ));
    }
    if TcpListener::bind(("127.0.0.1", ports.http)).is_err() {
        ports.http = free_port()?;
        println!(
            "==> package: port 9080 is taken here: HEP_SERVER_HTTP moves the API to {}",
            ports.http
        );
        ports
            .env
            .push(("HEP_SERVER_HTTP", format!("127.0.0.1:{}", ports.http)));
    }
    Ok(ports)
}

pub(super) fn hep_port_free(port: u16) -> bool {
    UdpSocket::bind(("0.0.0.0", port)).is_ok() && TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// A port free for both UDP and TCP.
pub(super) fn free_port() -> Result<u16> {
    for _ in 0..20 {
        let port = TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
        if hep_port_free(port) {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP")
}

/// The service started from the unit's `ExecStart`; killed (by its PID) when dropped
/// before it was stopped.
pub(super) struct Service {
    pub(super) child: Option<Child>,
    pub(super) log: PathBuf,
}

impl Service {
    pub(super) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it still runs.
    pub(super) fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits up to `timeout` for it to exit.
    pub(super) fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let child = self.child.as_mut().context("not started")?;
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > until {
                bail!("still running {} s after the stop", timeout.as_secs());
            }
            sleep(Duration::from_millis(50));
        }
    }

    pub(super) fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The socket systemd would listen on (`NOTIFY_SOCKET`).
pub(super) struct Notify {
    pub(super) socket: UnixDatagram,
    pub(super) path: PathBuf,
}

impl Notify {
    /// A datagram socket in `dir` the service user may write to.
    pub(super) fn bind(dir: &Path, uid: u32, gid: u32) -> Result<Self> {
        let path = dir.join("notify.sock");
        let _ = fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        Ok(Self { socket, path })
    }

    /// Reads until a line equal to `line` arrives; the lines read on the way (that one
    /// included).
    pub(super) fn wait_for(
        &mut self,
        line: &str,
        timeout: Duration,
        service: &mut Service,
    ) -> Result<Vec<String>> {
        let until = Instant::now() + timeout;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "no {line} on NOTIFY_SOCKET within {} s (got {got:?}); log:\n{}",
                    timeout.as_secs(),
                    service.log_text()
                );
            }
            if !service.running() {
                bail!(
                    "the service exited before {line}; log:\n{}",
                    service.log_text()
                );
            }
            self.socket
                .set_read_timeout(Some(left.min(Duration::from_millis(200))))?;
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let mut found = false;
            for l in text.lines().filter(|l| !l.is_empty()) {
                println!("==> package: NOTIFY_SOCKET <- {l}");
                got.push(l.to_owned());
                found |= l == line;
            }
            if found {
                return Ok(got);
            }
        }
    }
}

/// `prlimit --nofile=N:N -- setpriv --reuid U --regid G --init-groups --no-new-privs
/// --inh-caps=-all --bounding-set=-all -- EXECSTART...` in `WorkingDirectory`, with the
/// environment systemd gives a service.
pub(super) fn start(unit: &Unit, notify: &Path, ports: &Ports, work: &Path) -> Result<Service> {
    let exec = unit.command("ExecStart", None)?;
    let user = unit.service("User")?;
    let group = unit.service("Group")?;
    let nofile = open_files_limit(unit)?;
    let cwd = unit.service("WorkingDirectory")?;
    ensure!(
        unit.service("Type")? == "notify",
        "the unit is not Type=notify"
    );
    let log = work.join("hep-server.log");
    let out = fs::File::create(&log)?;
    // systemd names the journal stream it gives as stderr; here, the log file.
    let stream = out.metadata()?;
    let journal_stream = format!("{}:{}", stream.dev(), stream.ino());
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}:{nofile}"))
        .args([
            "--",
            "setpriv",
            "--reuid",
            user,
            "--regid",
            group,
            "--init-groups",
        ])
        .args([
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ])
        .args(&exec)
        .current_dir(cwd)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", STATE)
        .env("USER", user)
        .env("LOGNAME", user)
        .env("NOTIFY_SOCKET", notify)
        .env("JOURNAL_STREAM", journal_stream)
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
        .envs(ports.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    println!("==> {cmd:?}");
    let child = cmd.spawn().context("cannot start prlimit/setpriv")?;
    Ok(Service {
        child: Some(child),
        log,
    })
}

/// The unit's `LimitNOFILE`, or this process's hard limit when that is lower: raising a
/// hard limit needs `CAP_SYS_RESOURCE`, which a container's root may lack (systemd as
/// PID 1 has it).
pub(super) fn open_files_limit(unit: &Unit) -> Result<u64> {
    let wanted: u64 = unit
        .service("LimitNOFILE")?
        .parse()
        .context("LimitNOFILE is not a number")?;
    let limits = fs::read_to_string("/proc/self/limits")?;
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|h| h.parse::<u64>().ok());
    match hard {
        Some(hard) if hard < wanted => {
            println!(
                "==> package: LimitNOFILE={wanted} is above this machine's hard limit {hard} \
                 (raising it needs CAP_SYS_RESOURCE): the service runs with {hard}"
            );
            Ok(hard)
        }
        _ => Ok(wanted),
    }
}

/// The running process has the unit's user, open-files limit and no capabilities.
pub(super) fn process_identity(pid: u32, uid: u32, unit: &Unit) -> Result<()> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let uids = field("Uid:");
    ensure!(
        uids.split_whitespace().all(|u| u == uid.to_string()),
        "pid {pid} runs as uids {uids}, expected {uid}"
    );
    ensure!(field("NoNewPrivs:") == "1", "NoNewPrivs is not set");
    ensure!(
        field("CapEff:").trim_start_matches('0').is_empty(),
        "capabilities: {}",
        field("CapEff:")
    );
    let limits = fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let nofile = open_files_limit(unit)?.to_string();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or("");
    ensure!(
        line.split_whitespace().filter(|w| *w == nofile).count() == 2,
        "open-files limit {line:?}, expected {nofile}"
    );
    println!("==> package: pid {pid}: uid {uid}, NoNewPrivs, no capabilities, {line}");
    Ok(())
}
