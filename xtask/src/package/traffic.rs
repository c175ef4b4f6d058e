//! HEP sent to the installed service and looked for again: the bundled Kamailio vectors
//! over UDP, their SIP through `hep-server send` over TCP, `hep-server search` as the
//! service user, the HTTP API.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use super::host::{CONFFILE, PACKAGE, output, run_cmd};

/// The Call-ID of the Kamailio vectors sent (`v3-udp-0*.hep`).
pub(super) const VECTOR_CALL_ID: &str = "1-13274@127.0.0.1";

/// The SIP payloads of the vectors' messages of [`VECTOR_CALL_ID`] (`hep-server decode`).
pub(super) fn call_payloads(vectors: &[PathBuf]) -> Result<Vec<String>> {
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
pub(super) fn send_vectors(vectors: &[PathBuf], port: u16) -> Result<()> {
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
pub(super) fn send_payloads(work: &Path, payloads: &[String], port: u16) -> Result<()> {
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
pub(super) fn until_found(count: impl Fn() -> Result<usize>, expected: usize) -> Result<usize> {
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
pub(super) fn search_count(call_id: &str) -> Result<usize> {
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
pub(super) fn api_call_messages(port: u16, call_id: &str) -> Result<usize> {
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
