//! `cargo xtask browser`: the web page in Debian's chromium, driven by playwright-core,
//! against a `hep-server run` fed with the Kamailio vectors.
//!
//! ```text
//! cargo xtask browser [--no-install]
//! ```
//!
//! 1. Installs what is missing (unless `--no-install`): as root, `apt-get install chromium`
//!    (and `nodejs npm`); `npm ci` in `xtask/browser/` (playwright-core only, from the
//!    committed `package-lock.json`; it downloads no browser).
//! 2. Builds `hep-server` and starts it on free loopback ports: `--http 127.0.0.1:PORT`,
//!    `--listen hep_udp:127.0.0.1:PORT`, `--output store:DIR` in a fresh directory under
//!    `target/browser/run/`, bounded to [`SERVER_MAX`], with `[aliases]` naming the
//!    B2BUA pair's addresses (`b2bua`, `carrier`); and a second one whose
//!    `[http.tokens]` has one token for capture id 2001, fed the IPv4 call (2001) and the
//!    crafted message (capture id 1).
//! 3. Feeds it the Kamailio vectors `hep-testkit/testdata/kamailio/v3-udp-*.hep` (three
//!    calls: IPv4, IPv6, and one with HEP log lines) as raw datagrams, and a crafted SIP
//!    MESSAGE carrying `<script>` in its Call-ID, From and body with `hep-server send`,
//!    two legs of a B2BUA call (the second names the first in `X-CID`) and a 200-message
//!    call, then waits until the API gives every call whole.
//! 4. Runs `node --test` on `xtask/browser/unit.test.mjs` (the page's modules alone) and
//!    `browser.test.mjs` (the page in chromium), bounded to [`NODE_MAX`]; screenshots go to
//!    `target/browser/`.
//! 5. Stops the server and prints one row per test, then `N passed, N failed`; the exit
//!    code is non-zero if any failed.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::Workspace;
use crate::interop::{ours, peers, proc, target_dir, vector_set};

/// Hard bound of the server's run.
const SERVER_MAX: Duration = Duration::from_secs(600);
/// Hard bound of the node tests.
const NODE_MAX: Duration = Duration::from_secs(300);
/// The playwright-core version `package-lock.json` pins.
const PLAYWRIGHT_VERSION: &str = "1.64.1";

/// The vector sets fed, and how many messages each call has.
const SETS: &[(&str, &str, usize)] = &[
    ("HEP_CALL_UDP", "v3-udp", 12),
    ("HEP_CALL_IPV6", "v3-udp-ipv6", 12),
    ("HEP_CALL_HLOG", "v3-udp-hlog-authkey", 15),
];

/// The window the tests search in: the vectors were captured on 2026-11-26 (UTC).
const SINCE: &str = "2026-11-26T00:00:00Z";
const UNTIL: &str = "2026-11-27T00:00:00Z";

/// The Call-ID of the crafted message: markup a page must show as text.
const XSS_CALL_ID: &str = "xss-<i>not-italic</i>-1@evil.example";

/// Parsed `cargo xtask browser` arguments.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Options {
    /// Do not install chromium or `npm ci`.
    no_install: bool,
}

impl Options {
    /// Parses `[--no-install]`.
    ///
    /// # Errors
    /// Fails on anything else.
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let mut opts = Self::default();
        for arg in args {
            match arg.as_str() {
                "--no-install" => opts.no_install = true,
                other => bail!("unknown `cargo xtask browser` argument `{other}`"),
            }
        }
        Ok(opts)
    }
}

/// Runs the browser tests and prints their table.
///
/// # Errors
/// Fails when a tool is missing, hep-server cannot be built, started or fed, or node
/// cannot run; failed tests are counted in the exit code.
pub(crate) fn run(ws: &Workspace, opts: &Options) -> Result<ExitCode> {
    let failed = run_checks(ws, opts)?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the browser tests, prints their table, and returns how many failed (node's own
/// failure with no failed test, a crash say, counts as one).
///
/// # Errors
/// As [`run`].
pub(crate) fn run_checks(ws: &Workspace, opts: &Options) -> Result<usize> {
    let tests_dir = ws.root().join("xtask").join("browser");
    let target = target_dir(ws.root());
    let out = target.join("browser");
    let run_dir = out.join("run");
    if run_dir.exists() {
        fs::remove_dir_all(&run_dir).with_context(|| format!("cleaning {}", run_dir.display()))?;
    }
    fs::create_dir_all(&run_dir)?;

    install(&tests_dir, !opts.no_install)?;

    ws.cargo()
        .args([
            "build",
            "--quiet",
            "--package",
            "hep-server",
            "--bin",
            "hep-server",
        ])
        .run()
        .context("building hep-server for the browser tests")?;
    let hep_server = target.join("debug").join("hep-server");
    let program = hep_server.to_string_lossy().into_owned();

    let ports = proc::Ports::default();
    // `[aliases]` naming the B2BUA and the carrier of the two-leg call (and no address
    // of the other calls).
    let (mut server, http, udp) = start_server(
        &program,
        &ports,
        &run_dir.join("open"),
        Some(
            "[aliases]\n\"192.0.2.2\" = \"b2bua\"\n\"192.0.2.3:5060\" = \"carrier\"\n\
             [cluster]\nname = \"node-open\"\n",
        ),
    )?;
    // A second server that wants a token, which may read capture id 2001 only.
    let (mut guarded, guarded_http, guarded_udp) = start_server(
        &program,
        &ports,
        &run_dir.join("token"),
        Some(&format!("[http.tokens]\n\"{TOKEN}\" = [2001]\n")),
    )?;

    // A node of a cluster with no calls of its own: its peers are the open server and
    // a port where nothing listens (a node that is down).
    let dead_peer = format!("http://127.0.0.1:{}", ports.free()?);
    let (mut front, front_http, _) = start_server(
        &program,
        &ports,
        &run_dir.join("cluster"),
        Some(&format!(
            "[cluster]\nname = \"node-front\"\npeers = [\"http://127.0.0.1:{http}\", \"{dead_peer}\"]\n\
             timeout_ms = 1000\n"
        )),
    )?;

    // Feed it: the vectors as they came from Kamailio, then the crafted message.
    let kamailio = ws
        .root()
        .join("hep-testkit")
        .join("testdata")
        .join("kamailio");
    let mut calls: Vec<(&str, String, usize)> = Vec::new();
    for &(var, prefix, n) in SETS {
        let files = vector_set(&kamailio, prefix)?;
        let call_id = call_id_of(&files[0])?;
        ours::replay_udp(&files, udp)?;
        if prefix == "v3-udp" {
            ours::replay_udp(&files, guarded_udp)?;
        }
        calls.push((var, call_id, n));
    }
    let xss = run_dir.join("xss.sip");
    fs::write(&xss, xss_message())?;
    send(&program, udp, "192.0.2.66:5060", "192.0.2.10:5060", &xss, 1)?;
    // Capture id 1 (send's default): not for the token's eyes.
    send(
        &program,
        guarded_udp,
        "192.0.2.66:5060",
        "192.0.2.10:5060",
        &xss,
        1,
    )?;
    calls.push(("HEP_CALL_XSS", XSS_CALL_ID.to_owned(), 1));
    // Two legs of a B2BUA: the second names the first in X-CID.
    for (leg, src, dst) in [
        (LEG_A, "192.0.2.1:5060", "192.0.2.2:5060"),
        (LEG_B, "192.0.2.2:5062", "192.0.2.3:5060"),
    ] {
        let file = run_dir.join(format!("{}.sip", &leg[..5]));
        fs::write(&file, invite(leg, (leg == LEG_B).then_some(LEG_A)))?;
        send(&program, udp, src, dst, &file, 1)?;
    }
    calls.push(("HEP_CALL_LEGS", LEG_A.to_owned(), 2));
    // A long call, for the time the page takes to draw it.
    let long = run_dir.join("long.sip");
    fs::write(&long, invite(LONG_CALL_ID, None))?;
    send(
        &program,
        udp,
        "192.0.2.7:5060",
        "192.0.2.8:5060",
        &long,
        LONG_MESSAGES,
    )?;
    calls.push(("HEP_CALL_LONG", LONG_CALL_ID.to_owned(), LONG_MESSAGES));
    // A call with RTCP: its INVITE and 200, then two RTCP reports as rtpengine sends them
    // (type 5 JSON, the Call-ID as correlation id).
    let (caller, callee) = ("192.0.2.21:5060", "192.0.2.22:5060");
    let qos_invite = run_dir.join("qos-invite.sip");
    fs::write(&qos_invite, invite(QOS_CALL_ID, None))?;
    send(&program, udp, caller, callee, &qos_invite, 1)?;
    let qos_ok = run_dir.join("qos-200.sip");
    fs::write(&qos_ok, ok_of(QOS_CALL_ID))?;
    send(&program, udp, callee, caller, &qos_ok, 1)?;
    for (i, report) in QOS_RTCP.iter().enumerate() {
        let file = run_dir.join(format!("qos-rtcp-{i}.json"));
        fs::write(&file, report)?;
        send_rtcp(&program, udp, QOS_CALL_ID, &file)?;
    }
    calls.push(("HEP_CALL_QOS", QOS_CALL_ID.to_owned(), 4));
    for (_, id, n) in &calls {
        proc::wait_for(
            &format!("the API to give the {n} messages of call {id}"),
            Duration::from_secs(15),
            || {
                server.ensure_running()?;
                Ok(call_messages(http, id, None).is_ok_and(|got| got >= *n))
            },
        )?;
    }
    let first = &calls[0].1;
    proc::wait_for(
        "the guarded server to store the call",
        Duration::from_secs(15),
        || {
            guarded.ensure_running()?;
            Ok(call_messages(guarded_http, first, Some(TOKEN)).is_ok_and(|got| got >= 12))
        },
    )?;

    // The tests.
    let tap = run_dir.join("node.tap");
    let mut node = std::process::Command::new("timeout");
    node.arg(NODE_MAX.as_secs().to_string())
        .args(["node", "--test", "--test-concurrency=1"])
        .args(["--test-reporter=spec", "--test-reporter-destination=stdout"])
        .args(["--test-reporter=tap", "--test-reporter-destination"])
        .arg(&tap)
        .args(["unit.test.mjs", "browser.test.mjs"])
        .current_dir(&tests_dir)
        .env("HEP_URL", format!("http://127.0.0.1:{http}"))
        .env("HEP_SINCE", SINCE)
        .env("HEP_UNTIL", UNTIL)
        .env("HEP_SHOTS", &out)
        .env("HEP_TOKEN_URL", format!("http://127.0.0.1:{guarded_http}"))
        .env("HEP_TOKEN", TOKEN)
        .env("HEP_CLUSTER_URL", format!("http://127.0.0.1:{front_http}"))
        .env("HEP_DEAD_PEER", &dead_peer)
        // The live view's test sends new calls itself, as HEP over UDP.
        .env("HEP_UDP", format!("127.0.0.1:{udp}"))
        .env("HEP_TOKEN_UDP", format!("127.0.0.1:{guarded_udp}"));
    for (var, id, _) in &calls {
        node.env(var, id);
    }
    println!("==> node --test unit.test.mjs browser.test.mjs (in xtask/browser)");
    let status = node.status().context("cannot run node")?;
    server.ensure_running()?;
    guarded.ensure_running()?;
    front.ensure_running()?;
    server.stop();
    guarded.stop();
    front.stop();

    let mut rows = parse_tap(&fs::read_to_string(&tap).unwrap_or_default());
    rows.push(tshark_row(&out.join("token.pcap")));
    print_table(&rows);
    let failed = rows.iter().filter(|r| !r.1).count();
    if rows.is_empty() {
        bail!("node ran no test ({status}); see the output above");
    }
    println!("screenshots: {}", out.display());
    Ok(if failed == 0 && !status.success() {
        1
    } else {
        failed
    })
}

/// Whether tshark reads the pcap the page downloaded: the 12 SIP packets of the call.
/// Without tshark (CI installs it for interop) the row says so and passes.
fn tshark_row(pcap: &Path) -> (String, bool, String) {
    let name = "tshark reads the pcap the page downloaded".to_owned();
    if !Path::new("/usr/bin/tshark").is_file() {
        return (name, true, "skipped: no /usr/bin/tshark".to_owned());
    }
    let path = pcap.to_string_lossy();
    match proc::stdout(
        "tshark",
        &["-n", "-r", &path, "-Y", "sip"],
        None,
        Duration::from_secs(60),
    ) {
        Ok(text) => {
            let n = text.lines().filter(|l| !l.trim().is_empty()).count();
            (name, n == 12, format!("{n} SIP packets (12 expected)"))
        }
        Err(err) => (name, false, format!("{err:#}")),
    }
}

/// The token of the guarded server (it reads capture id 2001 only).
const TOKEN: &str = "tenant-2001-browser-test";

/// Starts `hep-server run` with an HTTP and a HEP UDP listener on free loopback ports, a
/// store in `dir/store` (writing whatever the free space) and `config` added to its
/// configuration file; waits until both listen.
fn start_server(
    program: &str,
    ports: &proc::Ports,
    dir: &Path,
    config: Option<&str>,
) -> Result<(proc::Proc, u16, u16)> {
    fs::create_dir_all(dir)?;
    let (http, udp) = (ports.free()?, ports.free()?);
    // The store writes whatever the machine's free space (its default floor is 1 GiB).
    let path = dir.join("hep-server.toml");
    fs::write(
        &path,
        format!("[store]\nmin_free_mb = 0\n{}", config.unwrap_or_default()),
    )?;
    let mut args = vec![
        "run".to_owned(),
        "--config".to_owned(),
        path.to_string_lossy().into_owned(),
    ];
    args.extend([
        "--http".to_owned(),
        format!("127.0.0.1:{http}"),
        "--listen".to_owned(),
        format!("hep_udp:127.0.0.1:{udp}"),
        "--output".to_owned(),
        format!("store:{}", dir.join("store").display()),
    ]);
    let mut server = proc::Proc::start(
        "hep-server run",
        program,
        &args,
        &dir.join("hep-server.log"),
        SERVER_MAX,
    )?;
    proc::wait_for(
        "hep-server to listen on HTTP and HEP",
        Duration::from_secs(15),
        || {
            server.ensure_running()?;
            Ok(proc::udp_bound(udp) && proc::tcp_listening(http))
        },
    )?;
    Ok((server, http, udp))
}

/// Chromium, node and npm, and playwright-core in `node_modules`: installed when missing
/// and allowed (apt as root).
fn install(tests_dir: &Path, allowed: bool) -> Result<()> {
    let mut packages = Vec::new();
    if !Path::new("/usr/bin/chromium").is_file() {
        packages.push("chromium");
    }
    for (program, package) in [("node", "nodejs"), ("npm", "npm")] {
        if !proc::output("which", &[program], None, Duration::from_secs(5))
            .is_ok_and(|o| o.status.success())
        {
            packages.push(package);
        }
    }
    if !packages.is_empty() {
        if !allowed {
            bail!(
                "missing {} (not installing: --no-install)",
                packages.join(" ")
            );
        }
        if !peers::is_root() {
            bail!(
                "missing {}: install them (apt-get install {}) or run as root",
                packages.join(" "),
                packages.join(" ")
            );
        }
        peers::apt_install(&packages)?;
    }
    if !playwright_installed(tests_dir) {
        if !allowed {
            bail!("playwright-core is not installed in xtask/browser (run `npm ci` there)");
        }
        println!("==> npm ci (playwright-core {PLAYWRIGHT_VERSION}) in xtask/browser");
        let out = proc::output(
            "npm",
            &["ci", "--no-audit", "--no-fund", "--loglevel=error"],
            Some(tests_dir),
            Duration::from_secs(300),
        )?;
        if !out.status.success() || !playwright_installed(tests_dir) {
            bail!("npm ci ({}): {}", out.status, ours::last_line(&out.stderr));
        }
    }
    Ok(())
}

/// Whether `node_modules/playwright-core` has the pinned version.
fn playwright_installed(dir: &Path) -> bool {
    fs::read_to_string(dir.join("node_modules/playwright-core/package.json")).is_ok_and(|text| {
        serde_json::from_str::<Value>(&text)
            .is_ok_and(|v| v.get("version").and_then(Value::as_str) == Some(PLAYWRIGHT_VERSION))
    })
}

/// The Call-ID in a HEP datagram's SIP payload (the payload chunk is the text as sent).
fn call_id_of(file: &Path) -> Result<String> {
    let bytes = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    text.split("\r\n")
        .find_map(|line| line.strip_prefix("Call-ID:"))
        .map(|v| v.trim().to_owned())
        .with_context(|| format!("no Call-ID header in {}", file.display()))
}

/// The Call-IDs of the two legs of a B2BUA call.
const LEG_A: &str = "leg-a-1@b2bua.example";
const LEG_B: &str = "leg-b-1@b2bua.example";
/// The long call: this many copies of one INVITE.
const LONG_CALL_ID: &str = "long-200@perf.example";
const LONG_MESSAGES: usize = 200;

/// `hep-server send --count N FILE` from `src` to `dst`, to our UDP listener.
fn send(program: &str, udp: u16, src: &str, dst: &str, file: &Path, count: usize) -> Result<()> {
    let out = proc::output(
        program,
        &[
            "send",
            "--dest",
            &format!("hep_udp:127.0.0.1:{udp}"),
            "--src",
            src,
            "--dst",
            dst,
            "--count",
            &count.to_string(),
            &file.to_string_lossy(),
        ],
        None,
        Duration::from_secs(30),
    )?;
    if !out.status.success() {
        bail!("hep-server send failed: {}", ours::last_line(&out.stderr));
    }
    Ok(())
}

/// The call with RTCP.
const QOS_CALL_ID: &str = "qos-call-1@browser.example";
/// rtpengine 10.5's reports on sipp's stream 0x5a1df00d: clean, then 23/256 lost
/// (shared/peers README section 6, verbatim but for `lsr`).
const QOS_RTCP: [&str; 2] = [
    r#"{ "sender_information":{"ntp_timestamp_sec":4005581763,"ntp_timestamp_usec":3930513550,"octets":78876,"rtp_timestamp":49920, "packets":313},"ssrc":185491181,"type":200,"report_count":1,"report_blocks":[{"source_ssrc":1511911437,"highest_seq_no":312,"fraction_lost":0,"ia_jitter":0,"packets_lost":0,"lsr":0,"dlsr":0}],"sdes_report_count":1,"sdes_information": [ {"sdes_chunk_ssrc":185491181,"type":1,"text":"2b47b103a8fe"}] }"#,
    r#"{ "sender_information":{"ntp_timestamp_sec":4005581791,"ntp_timestamp_usec":2761131394,"octets":62748,"rtp_timestamp":41440, "packets":249},"ssrc":185491181,"type":200,"report_count":1,"report_blocks":[{"source_ssrc":1511911437,"highest_seq_no":259,"fraction_lost":23,"ia_jitter":80,"packets_lost":24,"lsr":0,"dlsr":0}],"sdes_report_count":1,"sdes_information": [ {"sdes_chunk_ssrc":185491181,"type":1,"text":"6d8e3f310fed"}] }"#,
];

/// `hep-server send` of one RTCP JSON report (type 5) naming `call_id` as correlation id.
fn send_rtcp(program: &str, udp: u16, call_id: &str, file: &Path) -> Result<()> {
    let out = proc::output(
        program,
        &[
            "send",
            "--dest",
            &format!("hep_udp:127.0.0.1:{udp}"),
            "--proto-type",
            "rtcp",
            "--correlation-id",
            call_id,
            "--src",
            "192.0.2.21:30001",
            "--dst",
            "192.0.2.22:30101",
            &file.to_string_lossy(),
        ],
        None,
        Duration::from_secs(30),
    )?;
    if !out.status.success() {
        bail!("hep-server send failed: {}", ours::last_line(&out.stderr));
    }
    Ok(())
}

/// The 200 answering [`invite`]'s INVITE of `call_id`.
fn ok_of(call_id: &str) -> String {
    format!(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{call_id}\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>;tag=b1\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// An INVITE of call `call_id` from alice to bob, naming the other leg in X-CID.
fn invite(call_id: &str, other_leg: Option<&str>) -> String {
    let xcid = other_leg.map_or_else(String::new, |id| format!("X-CID: {id}\r\n"));
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-{call_id}\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         {xcid}Content-Length: 0\r\n\r\n"
    )
}

/// A SIP MESSAGE whose Call-ID, From and body carry markup and scripts.
fn xss_message() -> String {
    let body = "<img src=x onerror=\"window.__xss=2\"><script>window.__xss=3</script>\r\n";
    format!(
        "MESSAGE sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.66:5060;branch=z9hG4bK-xss-1\r\n\
         From: \"<script>window.__xss=1</script>\" <sip:mallory@evil.example>;tag=x1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {XSS_CALL_ID}\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: text/html\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// How many messages `GET /api/v1/calls/{call_id}` gives (HTTP/1.0, so the body is plain).
fn call_messages(port: u16, call_id: &str, token: Option<&str>) -> Result<usize> {
    let path = format!("/api/v1/calls/{}", percent_encode(call_id));
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        conn,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n{auth}\r\n"
    )?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").context("no end of headers")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("{}", head.lines().next().unwrap_or_default());
    }
    let v: Value = serde_json::from_str(body)?;
    Ok(v["messages"].as_array().map_or(0, Vec::len))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(s: &str) -> String {
    use std::fmt::Write as _;
    s.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// The top-level tests of node's TAP output: name, passed, and the first error line.
fn parse_tap(tap: &str) -> Vec<(String, bool, String)> {
    let mut rows: Vec<(String, bool, String)> = Vec::new();
    let mut in_failure = false;
    // `error: |-`: the message is on the next line.
    let mut block = false;
    for line in tap.lines() {
        if block {
            block = false;
            if let Some(row) = rows.last_mut() {
                row.2 = line.trim().to_owned();
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("not ok ") {
            rows.push((name_of(rest), false, String::new()));
            in_failure = true;
        } else if let Some(rest) = line.strip_prefix("ok ") {
            rows.push((name_of(rest), true, String::new()));
            in_failure = false;
        } else if in_failure
            && let Some(msg) = line.trim_start().strip_prefix("error: ")
            && let Some(row) = rows.last_mut()
            && row.2.is_empty()
        {
            if msg.starts_with('|') || msg.starts_with('>') {
                block = true;
            } else {
                row.2 = msg.trim_matches(|c| c == '\'' || c == ' ').to_owned();
            }
        }
    }
    rows
}

/// `3 - the name # SKIP` -> `the name`.
fn name_of(rest: &str) -> String {
    let name = rest.split_once(" - ").map_or(rest, |(_, n)| n);
    name.split(" # ").next().unwrap_or(name).trim().to_owned()
}

fn print_table(rows: &[(String, bool, String)]) {
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(5).min(100);
    println!();
    println!("{:<width$} | result | detail", "check");
    println!("{}-|--------|-------", "-".repeat(width));
    for (name, ok, detail) in rows {
        println!(
            "{name:<width$} | {:<6} | {detail}",
            if *ok { "pass" } else { "FAIL" }
        );
    }
    let failed = rows.iter().filter(|r| !r.1).count();
    println!();
    // The failures again, last: CI shows only the tail of a long log.
    for (name, _, detail) in rows.iter().filter(|r| !r.1) {
        let detail: String = detail.chars().take(300).collect();
        println!("failed: {name}: {detail}");
    }
    println!("{} passed, {failed} failed", rows.len() - failed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_rows_name_each_test_and_its_error() {
        let tap = "TAP version 13\n# Subtest: a\nok 1 - a\n  ---\n  duration_ms: 1\n  ...\n\
                   # Subtest: b c\nnot ok 2 - b c\n  ---\n  error: 'Expected 1 to equal 2'\n  ...\n\
                   ok 3 - d # SKIP\nnot ok 4 - e\n  ---\n  error: |-\n    page.fill: Malformed\n    more\n1..4\n";
        let rows = parse_tap(tap);
        assert_eq!(
            rows,
            [
                ("a".to_owned(), true, String::new()),
                ("b c".to_owned(), false, "Expected 1 to equal 2".to_owned()),
                ("d".to_owned(), true, String::new()),
                ("e".to_owned(), false, "page.fill: Malformed".to_owned()),
            ]
        );
    }

    #[test]
    fn call_ids_are_percent_encoded_for_the_path() {
        assert_eq!(
            percent_encode(XSS_CALL_ID),
            "xss-%3Ci%3Enot-italic%3C%2Fi%3E-1%40evil.example"
        );
        assert_eq!(percent_encode("1-13649@127.0.0.1"), "1-13649%40127.0.0.1");
    }

    #[test]
    fn the_crafted_message_has_a_right_content_length() {
        let m = xss_message();
        let (_, body) = m.split_once("\r\n\r\n").unwrap();
        assert!(m.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(m.contains(&format!("Call-ID: {XSS_CALL_ID}\r\n")));
    }
}
