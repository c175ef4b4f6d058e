//! `cargo xtask package --check`: the package installed, run and purged on this machine,
//! as an operator would, each step timed.
//!
//! 1. lintian and systemd (for `systemd-analyze`) are installed with apt-get when
//!    missing; lintian must find no error and no warning (those that do not apply are
//!    overridden, each with its reason, in `hep-server/debian/hep-server.lintian-overrides`).
//! 2. `apt-get install ./hep-server_….deb` (an earlier install is purged first); the user,
//!    the state directory, the conffile, the unit and the man pages are where they belong.
//! 3. `systemd-analyze verify` accepts the unit; `systemd-analyze security` rates it.
//! 4. The unit's `ExecStart` runs the way systemd would run it, which these machines
//!    cannot (no systemd as PID 1): as its `User`/`Group` with no capability and
//!    `NoNewPrivileges` (`setpriv`), its `LimitNOFILE` (`prlimit`), in its
//!    `WorkingDirectory`, with a clean environment, `JOURNAL_STREAM` naming its stderr
//!    (its lines must then carry a `<N>` priority and no timestamp, as the journal reads
//!    them) and `NOTIFY_SOCKET` pointing at a socket the check reads, which must see `READY=1`, then `WATCHDOG=1` (the check asks
//!    for a 2 s watchdog instead of the unit's, to see pings within seconds). The sandbox
//!    options (`ProtectSystem=` ...) need systemd and are not applied.
//! 5. The bundled Kamailio vectors go in over UDP as Kamailio sent them, and their SIP
//!    again through `hep-server send` over TCP; `hep-server search` (as the service user)
//!    and the HTTP API find the call twice over.
//! 6. `ExecReload` (SIGHUP) with a json: output added to the conffile: `RELOADING=1`,
//!    `READY=1`, and the next messages reach the new output; a conffile with a mistake
//!    is refused and the service goes on.
//! 7. SIGTERM (systemd's stop): `STOPPING=1`, exit status 0 within `TimeoutStopSec`, the
//!    ports free again.
//! 8. `apt-get purge`: none of the package's files is left, nor its configuration, state
//!    or unit links; the `hep-server` system user stays, as Debian's practice is.
//!
//! The service listens where the packaged conffile says (UDP and TCP 5656, HTTP
//! 127.0.0.1:9080); when one of those ports is taken on this machine, it is moved to a
//! free one through `HEP_SERVER_LISTEN`/`HEP_SERVER_HTTP` (what `/etc/default/hep-server`
//! would set), and the check says so. Whatever fails, the service is killed and the
//! package purged before the check returns.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use super::timed;
use super::unit::{Unit, parse_span_ms};
use crate::Workspace;
use crate::interop::peers::{apt_install, is_root, on_path};

const PACKAGE: &str = "hep-server";
const UNIT: &str = "/usr/lib/systemd/system/hep-server.service";
const CONFFILE: &str = "/etc/hep-server/hep-server.toml";
const STATE: &str = "/var/lib/hep-server";
const STORE: &str = "/var/lib/hep-server/store";
/// The output the reload adds.
const RELOAD_OUTPUT: &str = "/var/lib/hep-server/reload-check.jsonl";
/// The Call-ID of the Kamailio vectors sent (`v3-udp-0*.hep`).
const VECTOR_CALL_ID: &str = "1-13274@127.0.0.1";
/// The watchdog the check asks for (the unit's is longer).
const WATCHDOG: Duration = Duration::from_secs(2);
/// How long the service may take to say READY=1 (a debug build, a cold disk).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs every step; see the [module docs](self).
///
/// # Errors
/// The first step that failed, named; the package is purged all the same.
pub(crate) fn run(ws: &Workspace, deb: &Path) -> Result<()> {
    ensure!(
        is_root(),
        "`cargo xtask package --check` installs and purges a package and runs the service \
         as its user: run it as root"
    );
    timed("install lintian and systemd-analyze", install_tools)?;
    timed("lintian", || lintian(deb))?;
    timed("purge an earlier install", purge_if_installed)?;
    let installed = timed("apt-get install", || install(deb));
    let checked = installed.and_then(|files| {
        let result = timed("installed files", check_installed)
            .and_then(|()| timed("systemd-analyze", analyze))
            .and_then(|()| run_service(ws));
        result.map(|()| files)
    });
    // Whatever happened, nothing stays installed.
    let purged = timed("apt-get purge", purge);
    let files = checked?;
    purged?;
    timed("nothing left but the user", || nothing_left(&files))
}

/// Installs lintian and systemd (for `systemd-analyze`) when missing.
fn install_tools() -> Result<()> {
    let missing: Vec<&str> = [("lintian", "lintian"), ("systemd-analyze", "systemd")]
        .into_iter()
        .filter(|(program, _)| on_path(program).is_none())
        .map(|(_, package)| package)
        .collect();
    if missing.is_empty() {
        println!("==> package: lintian and systemd-analyze are installed");
        return Ok(());
    }
    apt_install(&missing)
}

/// lintian: no error, no warning (overrides, with their reasons, in the package).
fn lintian(deb: &Path) -> Result<()> {
    run_cmd(
        Command::new("lintian")
            .args([
                "--fail-on",
                "error,warning",
                "--display-level",
                ">=info",
                "--info",
            ])
            .arg(deb),
    )
}

fn installed_version() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status} ${Version}", PACKAGE])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !text.starts_with("not-installed")).then_some(text)
}

/// An install left by an earlier (failed) check, or by hand, is purged first.
fn purge_if_installed() -> Result<()> {
    match installed_version() {
        Some(v) => {
            println!("==> package: {PACKAGE} is on this machine ({v}): purging it first");
            purge()
        }
        None => Ok(()),
    }
}

/// `apt-get install ./….deb`; the package's files as dpkg lists them.
fn install(deb: &Path) -> Result<Vec<PathBuf>> {
    let deb = fs::canonicalize(deb)?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .arg(&deb)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let list = output(Command::new("dpkg-query").args(["-L", PACKAGE]))?;
    Ok(list
        .lines()
        .filter(|l| l.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}

fn purge() -> Result<()> {
    run_cmd(
        Command::new("apt-get")
            .args(["purge", "-y", "-q", PACKAGE])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The user, the directories and the files the package promises.
fn check_installed() -> Result<()> {
    let uid = id("-u")?;
    let gid = id("-g")?;
    let state = fs::metadata(STATE).with_context(|| format!("{STATE} after install"))?;
    ensure!(
        state.uid() == uid && state.gid() == gid && state.mode() & 0o7777 == 0o750,
        "{STATE}: owner {}:{} mode {:o}, expected {PACKAGE}:{PACKAGE} 750",
        state.uid(),
        state.gid(),
        state.mode() & 0o7777
    );
    let conffiles = fs::read_to_string(format!("/var/lib/dpkg/info/{PACKAGE}.conffiles"))?;
    ensure!(
        conffiles.lines().any(|l| l == CONFFILE),
        "{CONFFILE} is not a conffile: {conffiles}"
    );
    let conf = fs::metadata(CONFFILE)?;
    ensure!(
        conf.gid() == gid && conf.mode() & 0o777 == 0o640,
        "{CONFFILE}: group {} mode {:o}, expected root:{PACKAGE} 640 (it may hold keys)",
        conf.gid(),
        conf.mode() & 0o777
    );
    for path in [
        "/usr/bin/hep-server",
        UNIT,
        "/usr/share/man/man1/hep-server.1.gz",
        "/usr/share/man/man1/hep-server-run.1.gz",
        "/usr/share/bash-completion/completions/hep-server",
        "/usr/share/zsh/vendor-completions/_hep-server",
        "/usr/share/fish/vendor_completions.d/hep-server.fish",
        "/usr/share/doc/hep-server/copyright",
    ] {
        ensure!(Path::new(path).is_file(), "{path} is not installed");
    }
    let version = output(Command::new("/usr/bin/hep-server").arg("--version"))?;
    println!(
        "==> package: /usr/bin/hep-server --version: {}",
        version.trim()
    );
    ensure!(
        version.starts_with("hep-server "),
        "--version printed {version:?}"
    );
    Ok(())
}

/// `id -u hep-server` or `id -g hep-server`.
fn id(flag: &str) -> Result<u32> {
    let out = output(Command::new("id").args([flag, PACKAGE]))?;
    out.trim()
        .parse()
        .with_context(|| format!("id {flag} {PACKAGE}: {out:?}"))
}

/// `systemd-analyze verify` must accept the unit; `security` prints its exposure.
fn analyze() -> Result<()> {
    let out = Command::new("systemd-analyze")
        .args(["verify", UNIT])
        .output()?;
    let said = String::from_utf8_lossy(&out.stderr);
    print!("{said}");
    ensure!(
        out.status.success(),
        "systemd-analyze verify {UNIT} failed ({})",
        out.status
    );
    // verify exits 0 on some warnings; any line about the unit is a finding.
    ensure!(
        !said.contains("hep-server.service"),
        "systemd-analyze verify has findings about the unit"
    );
    let security =
        output(Command::new("systemd-analyze").args(["security", "--offline=true", UNIT]))?;
    let exposure = security
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("");
    println!("==> package: {}", exposure.trim_start_matches('→').trim());
    Ok(())
}

/// Where the service listens in this run.
struct Ports {
    hep: u16,
    http: u16,
    /// The variables that moved them, when the packaged ports were taken.
    env: Vec<(&'static str, String)>,
}

/// The packaged ports (5656, 9080) when free, else free ones through the environment.
fn choose_ports() -> Result<Ports> {
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

fn hep_port_free(port: u16) -> bool {
    UdpSocket::bind(("0.0.0.0", port)).is_ok() && TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// A port free for both UDP and TCP.
fn free_port() -> Result<u16> {
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
struct Service {
    child: Option<Child>,
    log: PathBuf,
}

impl Service {
    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it still runs.
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits up to `timeout` for it to exit.
    fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
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

    fn log_text(&self) -> String {
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
struct Notify {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    /// A datagram socket in `dir` the service user may write to.
    fn bind(dir: &Path, uid: u32, gid: u32) -> Result<Self> {
        let path = dir.join("notify.sock");
        let _ = fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        Ok(Self { socket, path })
    }

    /// Reads until a line equal to `line` arrives; the lines read on the way (that one
    /// included).
    fn wait_for(
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

/// Steps 4 to 7 of the [module docs](self).
fn run_service(ws: &Workspace) -> Result<()> {
    let unit = Unit::parse(&fs::read_to_string(UNIT)?)?;
    let work = ws.root().join("target/package-check");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    // The socket's directory must be reachable by the service user.
    let sockets = std::env::temp_dir().join(format!("hep-server-check-{}", std::process::id()));
    let _ = fs::remove_dir_all(&sockets);
    fs::create_dir_all(&sockets)?;
    let result = with_service(ws, &unit, &work, &sockets);
    let _ = fs::remove_dir_all(&sockets);
    result
}

fn with_service(ws: &Workspace, unit: &Unit, work: &Path, sockets: &Path) -> Result<()> {
    let (uid, gid) = (id("-u")?, id("-g")?);
    let mut notify = Notify::bind(sockets, uid, gid)?;
    let ports = choose_ports()?;
    let mut service = timed("start ExecStart as the unit's user", || {
        start(unit, &notify.path, &ports, work)
    })?;
    timed("READY=1", || {
        let got = notify.wait_for("READY=1", START_TIMEOUT, &mut service)?;
        let status = got
            .iter()
            .find(|l| l.starts_with("STATUS="))
            .cloned()
            .unwrap_or_default();
        ensure!(
            status.contains(STORE),
            "READY=1 with {status:?}, expected the store {STORE}"
        );
        Ok(())
    })?;
    timed("WATCHDOG=1", || {
        notify
            .wait_for("WATCHDOG=1", WATCHDOG * 3, &mut service)
            .map(drop)
    })?;
    timed("the process as systemd would run it", || {
        process_identity(service.pid(), uid, unit)
    })?;
    let vectors =
        crate::interop::vector_set(&ws.root().join("hep-testkit/testdata/kamailio"), "v3-udp")?;
    let payloads = timed("decode the vectors", || call_payloads(&vectors))?;
    let expected = payloads.len();
    timed(
        "send HEP: the vectors over UDP, their SIP again with hep-server send over TCP",
        || {
            send_vectors(&vectors, ports.hep)?;
            send_payloads(work, &payloads, ports.hep)
        },
    )?;
    timed(
        "search: hep-server search as the service user, the HTTP API",
        || {
            // The call twice: as Kamailio sent it, and as `send` packed it.
            let found = until_found(|| search_count(VECTOR_CALL_ID), 2 * expected)?;
            println!(
                "==> package: search --call-id {VECTOR_CALL_ID}: {found} messages ({expected} over \
             UDP, {expected} with send)"
            );
            let api = api_call_messages(ports.http, VECTOR_CALL_ID)?;
            ensure!(
                api == 2 * expected,
                "GET /api/v1/calls/{VECTOR_CALL_ID}: {api} messages, expected {}",
                2 * expected
            );
            println!("==> package: GET /api/v1/calls/{VECTOR_CALL_ID}: {api} messages");
            Ok(())
        },
    )?;
    timed("ExecReload: a json: output added", || {
        reload(
            unit,
            &mut service,
            &mut notify,
            &vectors,
            ports.hep,
            expected,
        )
    })?;
    timed("stop (SIGTERM)", || {
        stop(unit, &mut service, &mut notify, &ports)
    })?;
    Ok(())
}

/// `prlimit --nofile=N:N -- setpriv --reuid U --regid G --init-groups --no-new-privs
/// --inh-caps=-all --bounding-set=-all -- EXECSTART...` in `WorkingDirectory`, with the
/// environment systemd gives a service.
fn start(unit: &Unit, notify: &Path, ports: &Ports, work: &Path) -> Result<Service> {
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
fn open_files_limit(unit: &Unit) -> Result<u64> {
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
fn process_identity(pid: u32, uid: u32, unit: &Unit) -> Result<()> {
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

/// The SIP payloads of the vectors' messages of [`VECTOR_CALL_ID`] (`hep-server decode`).
fn call_payloads(vectors: &[PathBuf]) -> Result<Vec<String>> {
    let json = output(
        Command::new("/usr/bin/hep-server")
            .args(["decode", "--format", "json"])
            .args(vectors),
    )?;
    let payloads: Vec<String> = json
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|r| r["payload"].as_str().map(str::to_owned))
        .filter(|p| p.contains(&format!("Call-ID: {VECTOR_CALL_ID}\r\n")))
        .collect();
    ensure!(
        !payloads.is_empty(),
        "the vectors hold no message of {VECTOR_CALL_ID}"
    );
    Ok(payloads)
}

/// One datagram per vector file (as the README's `cat > /dev/udp/...`).
fn send_vectors(vectors: &[PathBuf], port: u16) -> Result<()> {
    let socket = UdpSocket::bind(("127.0.0.1", 0))?;
    for v in vectors {
        socket.send_to(&fs::read(v)?, ("127.0.0.1", port))?;
        // A burst of 12 is far below the socket buffer; paced all the same.
        sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// The vectors' SIP payloads packed again as HEP by `hep-server send` over TCP, which
/// exits 0 only when the collector confirmed the connection's close after reading
/// everything.
fn send_payloads(work: &Path, payloads: &[String], port: u16) -> Result<()> {
    let mut files = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let file = work.join(format!("payload-{i:02}.sip"));
        fs::write(&file, payload)?;
        files.push(file);
    }
    run_cmd(
        Command::new("/usr/bin/hep-server")
            .args(["send", "--dest", &format!("hep_tcp:127.0.0.1:{port}")])
            .args(&files),
    )
}

/// Polls `count` until it gives `expected` (the store writes in batches), at most 15 s.
fn until_found(count: impl Fn() -> Result<usize>, expected: usize) -> Result<usize> {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let n = count()?;
        if n == expected {
            return Ok(n);
        }
        ensure!(
            n < expected,
            "found {n} messages, more than the {expected} sent"
        );
        if Instant::now() > until {
            bail!("found {n} of the {expected} messages sent after 15 s");
        }
        sleep(Duration::from_millis(250));
    }
}

/// `runuser -u hep-server -- hep-server search --config CONFFILE --call-id ID --format
/// json`: the store the conffile names, read as the service user, so that SQLite's files
/// stay its own.
fn search_count(call_id: &str) -> Result<usize> {
    let out = Command::new("runuser")
        .args([
            "-u",
            PACKAGE,
            "--",
            "/usr/bin/hep-server",
            "search",
            "--config",
            CONFFILE,
        ])
        .args(["--call-id", call_id, "--format", "json"])
        .current_dir("/")
        .output()?;
    // Exit 1 with nothing on stdout: no match yet.
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() && !text.trim().is_empty() {
        bail!(
            "search failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text.lines().filter(|l| l.contains(call_id)).count())
}

/// How many messages `GET /api/v1/calls/{id}` gives.
fn api_call_messages(port: u16, call_id: &str) -> Result<usize> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let path = format!("/api/v1/calls/{}", call_id.replace('@', "%40"));
    write!(
        conn,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").context("no end of headers")?;
    ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(body)?;
    Ok(v["messages"].as_array().map_or(0, Vec::len))
}

/// Runs `ExecReload` for the running service and waits for its READY=1; the STATUS line
/// said with it.
fn exec_reload(unit: &Unit, service: &mut Service, notify: &mut Notify) -> Result<String> {
    let reload = unit.command("ExecReload", Some(service.pid()))?;
    let (program, args) = reload.split_first().context("empty ExecReload")?;
    run_cmd(Command::new(program).args(args))?;
    let got = notify.wait_for("RELOADING=1", Duration::from_secs(10), service)?;
    let mut got = got
        .into_iter()
        .skip_while(|l| l != "RELOADING=1")
        .collect::<Vec<_>>();
    if !got.iter().any(|l| l == "READY=1") {
        got.extend(notify.wait_for("READY=1", Duration::from_secs(10), service)?);
    }
    Ok(got
        .into_iter()
        .rev()
        .find(|l| l.starts_with("STATUS="))
        .unwrap_or_default())
}

/// A json: output added to the conffile reaches the next messages after `ExecReload`;
/// then a conffile with a mistake is refused and the service goes on.
fn reload(
    unit: &Unit,
    service: &mut Service,
    notify: &mut Notify,
    vectors: &[PathBuf],
    port: u16,
    expected: usize,
) -> Result<()> {
    let original = fs::read_to_string(CONFFILE)?;
    let outputs_line = format!("outputs = [\"store:{STORE}\"]");
    ensure!(
        original.contains(&outputs_line),
        "{CONFFILE} has no line `{outputs_line}`"
    );
    let added = original.replace(
        &outputs_line,
        &format!("outputs = [\"store:{STORE}\", \"json:{RELOAD_OUTPUT}\"]"),
    );
    fs::write(CONFFILE, added)?;
    let status = exec_reload(unit, service, notify)?;
    ensure!(
        status == format!("STATUS=reloaded {CONFFILE}"),
        "after the reload: {status}"
    );
    send_vectors(vectors, port)?;
    let lines = || {
        Ok(fs::read_to_string(RELOAD_OUTPUT)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(VECTOR_CALL_ID))
            .count())
    };
    let n = until_found(lines, expected)?;
    let owner = fs::metadata(RELOAD_OUTPUT)?.uid();
    ensure!(owner == id("-u")?, "{RELOAD_OUTPUT} belongs to uid {owner}");
    println!(
        "==> package: the reloaded configuration's json: output has the {n} messages sent after it"
    );
    // A mistake: refused, the running configuration stays.
    fs::write(
        CONFFILE,
        format!("{original}\n[limits]\nmax_conections = 1\n"),
    )?;
    let status = exec_reload(unit, service, notify)?;
    ensure!(
        status.contains("refused"),
        "a conffile with a mistake: {status}"
    );
    ensure!(service.running(), "the service stopped on a bad reload");
    ensure!(
        service.log_text().contains("max_conections"),
        "the log does not name the mistake:\n{}",
        service.log_text()
    );
    fs::write(CONFFILE, original)?;
    Ok(())
}

/// SIGTERM: STOPPING=1, exit 0 within TimeoutStopSec, the ports free again.
fn stop(unit: &Unit, service: &mut Service, notify: &mut Notify, ports: &Ports) -> Result<()> {
    let timeout = Duration::from_millis(parse_span_ms(unit.service("TimeoutStopSec")?)?);
    run_cmd(Command::new("kill").args(["-TERM", &service.pid().to_string()]))?;
    notify.wait_for("STOPPING=1", Duration::from_secs(10), service)?;
    let status = service.wait(timeout)?;
    let log = service.log_text();
    ensure!(
        status.success(),
        "the service exited with {status}; log:\n{log}"
    );
    print!("{log}");
    // As the journal reads them: a priority, no timestamp of our own.
    ensure!(
        log.lines().all(|l| l.starts_with('<')) && log.contains("<6>hep-server: received "),
        "the lines are not journal lines (<N> priority first):\n{log}"
    );
    ensure!(
        hep_port_free(ports.hep) && TcpListener::bind(("127.0.0.1", ports.http)).is_ok(),
        "ports {} and {} still taken after the stop",
        ports.hep,
        ports.http
    );
    Ok(())
}

/// After the purge: no file of the package, no configuration, state or unit link; the
/// system user stays.
fn nothing_left(files: &[PathBuf]) -> Result<()> {
    ensure!(
        installed_version().is_none(),
        "{PACKAGE} is still known to dpkg"
    );
    let mut left: Vec<String> = files
        .iter()
        .filter(|p| p.exists() && !p.is_dir())
        .map(|p| p.display().to_string())
        .collect();
    for path in [
        "/etc/hep-server",
        STATE,
        "/usr/share/doc/hep-server",
        "/etc/systemd/system/multi-user.target.wants/hep-server.service",
        "/var/lib/systemd/deb-systemd-helper-enabled/hep-server.service.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/hep-server.service",
    ] {
        if Path::new(path).exists() {
            left.push(path.to_owned());
        }
    }
    if let Ok(entries) = fs::read_dir("/var/lib/dpkg/info") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("hep-server.") {
                left.push(e.path().display().to_string());
            }
        }
    }
    ensure!(left.is_empty(), "left after apt-get purge: {left:?}");
    let user = output(Command::new("getent").args(["passwd", PACKAGE])).unwrap_or_default();
    println!(
        "==> package: purged: none of the {} paths of the package is left; kept, as Debian \
         does: the system user {}",
        files.len(),
        user.trim()
    );
    Ok(())
}

/// Runs `cmd` with inherited output; an error names it and its status.
fn run_cmd(cmd: &mut Command) -> Result<()> {
    println!("==> {cmd:?}");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(())
}

/// Runs `cmd` and returns its standard output; an error names it, its status and stderr.
fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
