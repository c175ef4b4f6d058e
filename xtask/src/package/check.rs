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
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};

use super::host::{CONFFILE, PACKAGE, STATE, STORE, UNIT, id, output, run_cmd};
use super::service::{
    Notify, Ports, Service, WATCHDOG, choose_ports, hep_port_free, process_identity, start,
};
use super::timed;
use super::traffic::{
    VECTOR_CALL_ID, api_call_messages, call_payloads, search_count, send_payloads, send_vectors,
    until_found,
};
use super::unit::{Unit, parse_span_ms};
use crate::Workspace;
use crate::interop::peers::{apt_install, is_root, on_path};

/// The output the reload adds.
const RELOAD_OUTPUT: &str = "/var/lib/hep-server/reload-check.jsonl";

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
