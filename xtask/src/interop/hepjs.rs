//! npm `hep-js` 1.0.22 (HEPv3 only, IPv4 only): it decodes what we encode, and we decode
//! what it encodes.
//!
//! - ours -> hep-js: `hep-server send` writes HEPv3 to a loopback socket held by xtask (UDP
//!   datagrams, or one TCP stream per send); hep-js `decapsulate()` of every frame must give
//!   the fields and payload that were sent.
//! - hep-js -> ours: hep-js `encapsulate()` of JSON inputs (the committed ones in
//!   `hep-testkit/testdata/hepjs/`, including its truncated-UTF-8 packet, and a log packet);
//!   `hep-server decode` of the bytes, and `hep-server run` receiving them over UDP, must
//!   give the input's fields. hep-js sizes string chunks by UTF-16 length, so non-ASCII text
//!   is cut to that many bytes (possibly ending in a byte of uninitialised memory): we
//!   expect exactly those bytes, not the intended text.

use std::fs;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};

use super::ours::{self, Listen, Server, Window};
use super::peers::Tool;
use super::proc;
use super::sip;
use super::{Check, Ctx, Dir};

/// The rows.
pub(crate) fn checks() -> Vec<Check> {
    const NEEDS: &[Tool] = &[Tool::Node, Tool::HepJs];
    vec![
        Check::new(
            "hep-js",
            Dir::OursToPeer,
            "v3",
            "udp (send)",
            NEEDS,
            |ctx| ours_to_hepjs(ctx, false),
        ),
        Check::new(
            "hep-js",
            Dir::OursToPeer,
            "v3",
            "tcp (send)",
            NEEDS,
            |ctx| ours_to_hepjs(ctx, true),
        ),
        Check::new(
            "hep-js",
            Dir::PeerToOurs,
            "v3",
            "file (decode)",
            NEEDS,
            |ctx| hepjs_to_ours(ctx, false),
        ),
        Check::new("hep-js", Dir::PeerToOurs, "v3", "udp (run)", NEEDS, |ctx| {
            hepjs_to_ours(ctx, true)
        }),
    ]
}

/// One message `hep-server send` sends, and the fields hep-js must report.
struct ToSend {
    /// Payload text.
    payload: String,
    /// HEP source.
    src: SocketAddr,
    /// HEP destination.
    dst: SocketAddr,
    /// `--proto-type`.
    proto_type: u8,
    /// `--correlation-id`.
    correlation_id: Option<String>,
}

/// `hep-server send` -> hep-js `decapsulate()`.
fn ours_to_hepjs(ctx: &Ctx, tcp: bool) -> Result<String> {
    let dir = ctx.subdir("run")?;
    let a: SocketAddr = "127.0.0.1:5061".parse()?;
    let b: SocketAddr = "127.0.0.2:5080".parse()?;
    let cid = sip::unique_call_id("hepjs");
    let mut call = sip::call(&cid, a, b);
    // Non-ASCII text: hep-js must get the byte length from our chunk header.
    call[0].text = call[0]
        .text
        .replacen("User-Agent: hep-interop", "Subject: café ✓ naïve", 1);
    let mut msgs: Vec<ToSend> = call
        .iter()
        .map(|m| ToSend {
            payload: m.text.clone(),
            src: m.src,
            dst: m.dst,
            proto_type: 1,
            correlation_id: None,
        })
        .collect();
    msgs[0].correlation_id = Some(format!("corr-{cid}"));
    msgs.push(ToSend {
        payload: format!("interop log line for {cid}"),
        src: a,
        dst: b,
        proto_type: 100,
        correlation_id: Some(cid.clone()),
    });

    let mut window = Window::open();
    let collector = Collector::bind(tcp)?;
    let dest = format!(
        "{}:127.0.0.1:{}",
        if tcp { "hep_tcp" } else { "hep_udp" },
        collector.port()
    );
    for (i, m) in msgs.iter().enumerate() {
        let file = dir.join(format!("payload-{:02}.txt", i + 1));
        fs::write(&file, &m.payload)?;
        let mut args = vec![
            "--dest".to_owned(),
            dest.clone(),
            "--hep-version".to_owned(),
            "3".to_owned(),
            "--proto-type".to_owned(),
            m.proto_type.to_string(),
            "--src".to_owned(),
            m.src.to_string(),
            "--dst".to_owned(),
            m.dst.to_string(),
            "--capture-id".to_owned(),
            "2001".to_owned(),
            "--auth-key".to_owned(),
            "hep-secret".to_owned(),
        ];
        if let Some(c) = &m.correlation_id {
            args.extend(["--correlation-id".to_owned(), c.clone()]);
        }
        args.push(file.display().to_string());
        ours::send(ctx, &args)?;
    }
    let captured = collector.finish(msgs.len(), Duration::from_secs(5))?;
    window.close();
    let mut files = Vec::new();
    for (i, bytes) in captured.iter().enumerate() {
        let f = dir.join(format!(
            "ours-{:02}.{}",
            i + 1,
            if tcp { "bin" } else { "hep" }
        ));
        fs::write(&f, bytes)?;
        files.push(f);
    }
    let decoded = hepjs_decode(ctx, &files)?;
    ensure!(
        decoded.len() == msgs.len(),
        "hep-js found {} HEP frames in what we sent, expected {}",
        decoded.len(),
        msgs.len()
    );
    let mut problems = Vec::new();
    for (i, (m, d)) in msgs.iter().zip(&decoded).enumerate() {
        let tag = format!("message {}", i + 1);
        if d.get("ok") != Some(&Value::Bool(true)) {
            problems.push(format!("{tag}: hep-js decapsulate() returned false"));
            continue;
        }
        let rc = d.get("rcinfo").cloned().unwrap_or_default();
        let mut want = json!({
            "protocolFamily": 2, "protocol": 17,
            "srcIp": m.src.ip().to_string(), "dstIp": m.dst.ip().to_string(),
            "srcPort": m.src.port(), "dstPort": m.dst.port(),
            "payloadType": m.proto_type, "captureId": 2001, "capturePass": "hep-secret",
        });
        if let (Some(c), Some(obj)) = (&m.correlation_id, want.as_object_mut()) {
            obj.insert("correlation_id".to_owned(), json!(c));
        }
        for (k, v) in want.as_object().into_iter().flatten() {
            if rc.get(k) != Some(v) {
                problems.push(format!("{tag} {k}: hep-js {:?}, sent {v}", rc.get(k)));
            }
        }
        let ts = ours::u(&rc, "timeSeconds").zip(ours::u(&rc, "timeUseconds"));
        if !ts.is_some_and(|(s, u)| u < 1_000_000 && window.contains(s * 1_000_000 + u)) {
            problems.push(format!("{tag}: time {ts:?} outside the run's window"));
        }
        if d.get("payload").and_then(Value::as_str) != Some(m.payload.as_str()) {
            problems.push(format!("{tag}: payload differs"));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(format!(
        "hep-js decapsulate() of {} frames ({}): family, proto, IPv4 addrs, ports, ts, type 1+100, capture id, auth key, correlation id, UTF-8 payload all equal",
        decoded.len(),
        if tcp {
            format!("{} TCP streams", captured.len())
        } else {
            "UDP datagrams".to_owned()
        }
    ))
}

/// A loopback socket that collects what `hep-server send` writes.
enum Collector {
    /// UDP: the socket itself.
    Udp(UdpSocket),
    /// TCP: the port, and a thread returning one byte stream per accepted connection.
    Tcp(u16, thread::JoinHandle<Result<Vec<Vec<u8>>>>),
}

impl Collector {
    /// Binds a UDP socket, or a TCP listener served by a bounded thread.
    fn bind(tcp: bool) -> Result<Self> {
        if !tcp {
            let sock = UdpSocket::bind("127.0.0.1:0")?;
            sock.set_read_timeout(Some(Duration::from_millis(200)))?;
            return Ok(Self::Udp(sock));
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let handle = thread::spawn(move || -> Result<Vec<Vec<u8>>> {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut streams = Vec::new();
            let mut idle_since = Instant::now();
            while Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false)?;
                        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
                        let mut buf = Vec::new();
                        // Read until the sender closes (or 5 s pass without data).
                        let _ = conn.read_to_end(&mut buf);
                        streams.push(buf);
                        idle_since = Instant::now();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // Stop after 2 s without a new connection once one was seen.
                        if !streams.is_empty() && idle_since.elapsed() > Duration::from_secs(2) {
                            break;
                        }
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(streams)
        });
        Ok(Self::Tcp(port, handle))
    }

    /// The loopback port.
    fn port(&self) -> u16 {
        match self {
            Self::Udp(s) => s.local_addr().map_or(0, |a| a.port()),
            Self::Tcp(p, _) => *p,
        }
    }

    /// UDP: up to `n` datagrams within `limit`; TCP: every stream received.
    fn finish(self, n: usize, limit: Duration) -> Result<Vec<Vec<u8>>> {
        match self {
            Self::Udp(sock) => {
                let deadline = Instant::now() + limit;
                let mut out = Vec::new();
                let mut buf = vec![0u8; 65_536];
                while out.len() < n && Instant::now() < deadline {
                    if let Ok(len) = sock.recv(&mut buf) {
                        out.push(buf[..len].to_vec());
                    }
                }
                Ok(out)
            }
            Self::Tcp(_, handle) => handle
                .join()
                .map_err(|_| anyhow::anyhow!("the TCP collector thread panicked"))?,
        }
    }
}

/// `node hepjs-decode.js FILES`: one JSON object per HEP3 frame.
fn hepjs_decode(ctx: &Ctx, files: &[PathBuf]) -> Result<Vec<Value>> {
    let mut args = vec!["hepjs-decode.js".to_owned()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = proc::output("node", &args, Some(&ctx.node_dir), Duration::from_secs(30))?;
    // Exit 1 only means some frame gave `false`; that is reported per frame.
    ours::parse_json_lines(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("hepjs-decode.js: {}", ours::last_line(&out.stderr)))
}

/// `node hepjs-encode.js INPUT.json`: the HEPv3 bytes hep-js writes.
fn hepjs_encode(ctx: &Ctx, input: &Path) -> Result<Vec<u8>> {
    let out = proc::output(
        "node",
        &["hepjs-encode.js".to_owned(), input.display().to_string()],
        Some(&ctx.node_dir),
        Duration::from_secs(30),
    )?;
    ensure!(
        out.status.success() && !out.stdout.is_empty(),
        "hepjs-encode.js {} failed ({}): {}",
        input.display(),
        out.status,
        ours::last_line(&out.stderr)
    );
    Ok(out.stdout)
}

/// What hep-js writes for a string chunk: the UTF-8 text cut to its UTF-16 length. Returns
/// the bytes that are certain and the total length (the rest is uninitialised memory when a
/// character straddles the cut).
fn hepjs_string(text: &str) -> (Vec<u8>, usize) {
    let n = text.encode_utf16().count();
    let mut certain = Vec::new();
    for c in text.chars() {
        let mut buf = [0u8; 4];
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        if certain.len() + bytes.len() > n {
            break;
        }
        certain.extend_from_slice(bytes);
    }
    (certain, n)
}

/// hep-js `encapsulate()` -> `hep-server decode` (or `run` over UDP).
fn hepjs_to_ours(ctx: &Ctx, via_run: bool) -> Result<String> {
    let dir = ctx.subdir("run")?;
    let vectors = ctx.testdata.join("hepjs");
    let mut inputs: Vec<(PathBuf, Option<PathBuf>)> =
        ["hepjs-v3-options", "hepjs-v3-utf8-truncated"]
            .iter()
            .map(|n| {
                (
                    vectors.join(format!("{n}.json")),
                    Some(vectors.join(format!("{n}.hep"))),
                )
            })
            .collect();
    let log_input = dir.join("hepjs-log.json");
    fs::write(
        &log_input,
        serde_json::to_string_pretty(&json!({
            "rcinfo": {
                "protocolFamily": 2, "protocol": 17,
                "srcIp": "127.0.0.1", "dstIp": "127.0.0.2", "srcPort": 5060, "dstPort": 9060,
                "timeSeconds": 1_795_000_000, "timeUseconds": 999_999, "payloadType": 100,
                "captureId": 4_000_000_001_u64, "hepNodeName": "interop-node",
                "correlation_id": "log-corr@interop.test"
            },
            "payload": "hep-js log line"
        }))?,
    )?;
    inputs.push((log_input, None));

    let mut problems = Vec::new();
    let mut encoded = Vec::new();
    for (input, committed) in &inputs {
        let bytes = hepjs_encode(ctx, input)?;
        let name = input.file_stem().and_then(|s| s.to_str()).unwrap_or("x");
        let out = dir.join(format!("{name}.hep"));
        fs::write(&out, &bytes)?;
        if let Some(committed) = committed {
            // hep-js is deterministic except for the uninitialised byte of a cut string.
            let want = fs::read(committed)?;
            let differing = want.iter().zip(&bytes).filter(|(a, b)| a != b).count();
            if want.len() != bytes.len() || differing > 1 {
                problems.push(format!(
                    "{name}: hep-js now writes {} bytes ({differing} differ) vs the committed {}",
                    bytes.len(),
                    want.len()
                ));
            }
        }
        let spec: Value = serde_json::from_str(&fs::read_to_string(input)?)?;
        encoded.push((name.to_owned(), out, spec));
    }

    let files: Vec<PathBuf> = encoded.iter().map(|(_, f, _)| f.clone()).collect();
    let records = if via_run {
        let port = ctx.ports.free()?;
        let json = dir.join("records.jsonl");
        let mut server = Server::start(
            ctx,
            &dir,
            &[Listen::Udp(port)],
            &[format!("json:{}", json.display())],
        )?;
        ours::replay_udp(&files, port)?;
        let recs = server.wait_records(files.len(), Duration::from_secs(5))?;
        server.ensure_running()?;
        server.stop();
        for r in &recs {
            let t = r
                .get("recv")
                .and_then(|x| x.get("transport"))
                .and_then(Value::as_str);
            if t != Some("udp") {
                problems.push(format!("recv.transport {t:?}"));
            }
        }
        recs
    } else {
        ours::decode(ctx, &files)?
    };
    ensure!(
        records.len() == encoded.len(),
        "{} records for {} hep-js packets",
        records.len(),
        encoded.len()
    );
    let mut truncated = 0;
    for ((name, _, spec), rec) in encoded.iter().zip(&records) {
        let rc = &spec["rcinfo"];
        let ip = |k: &str| rc.get(k).cloned().unwrap_or(Value::Null);
        let want = [
            ("version", json!(3)),
            ("family", json!("ipv4")),
            ("ip_proto", ip("protocol")),
            ("src_ip", ip("srcIp")),
            ("dst_ip", ip("dstIp")),
            ("src_port", ip("srcPort")),
            ("dst_port", ip("dstPort")),
            ("ts_sec", ip("timeSeconds")),
            ("ts_usec", ip("timeUseconds")),
            ("proto_type", ip("payloadType")),
            ("capture_id", ip("captureId")),
            // `run` strips an agent's key from what its outputs keep (the default, [auth]
            // strip); `decode` shows what the file holds.
            (
                "auth_key",
                if via_run {
                    Value::Null
                } else {
                    ip("capturePass")
                },
            ),
            ("correlation_id", ip("correlation_id")),
        ];
        for (k, v) in want {
            if rec.get(k) != Some(&v) {
                problems.push(format!(
                    "{name} {k}: ours {:?}, hep-js input {v}",
                    rec.get(k)
                ));
            }
        }
        // String chunks: exactly what hep-js wrote (cut to the UTF-16 length).
        let node_name = rc
            .get("hepNodeName")
            .and_then(Value::as_str)
            .map_or_else(|| ip("captureId").to_string(), str::to_owned);
        let payload = spec["payload"].as_str().unwrap_or_default();
        for (field, text, got) in [
            (
                "node_name",
                node_name.as_str(),
                ours::s(rec, "node_name").map(|s| s.as_bytes().to_vec()),
            ),
            ("payload", payload, ours::payload(rec).ok()),
        ] {
            let (certain, len) = hepjs_string(text);
            if certain.len() < text.len() {
                truncated += 1;
            }
            let ok = got
                .as_ref()
                .is_some_and(|g| g.len() >= len && g.starts_with(&certain));
            if !ok {
                problems.push(format!(
                    "{name} {field}: ours {:?}, hep-js wrote {len} bytes starting {:?}",
                    got.map(|g| String::from_utf8_lossy(&g).into_owned()),
                    String::from_utf8_lossy(&certain)
                ));
            }
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(format!(
        "{} hep-js packets ({}): every field equal to hep-js' input; {truncated} truncated UTF-8 string chunk(s) read as the bytes hep-js wrote",
        records.len(),
        if via_run {
            "UDP into hep-server run"
        } else {
            "hep-server decode"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hepjs_strings_are_cut_to_their_utf16_length() {
        assert_eq!(hepjs_string("abc"), (b"abc".to_vec(), 3));
        // "node-é": 6 UTF-16 units, é (2 bytes) does not fit after "node-".
        assert_eq!(hepjs_string("node-é"), (b"node-".to_vec(), 6));
        // "café ✓\r\n": 8 units; UTF-8 is 11 bytes; the first 8 bytes are whole characters.
        assert_eq!(hepjs_string("café ✓\r\n"), ("café ".as_bytes().to_vec(), 8));
    }
}
