//! The harness of the end-to-end tests: `hep-server` as a child process on loopback,
//! the Kamailio vectors, and bounded waits. Every test starts its own server with port 0
//! and reads the bound ports from the `hep-server: listening on ...` lines; every wait is
//! bounded, so a broken server fails a test, it never hangs it.
#![allow(dead_code, reason = "each test file uses a part of the harness")]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hep_testkit::vectors::{kamailio, testdata_dir};
use serde_json::Value;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_hep-server");

/// How long output may take to appear (it is flushed within about 100 ms).
pub(crate) const OUTPUT_WAIT: Duration = Duration::from_secs(2);
/// How long the server may take to start or to stop.
pub(crate) const PROCESS_WAIT: Duration = Duration::from_secs(10);

/// The Kamailio sets sent as UDP datagrams (v3-tcp is sent as a stream).
pub(crate) const UDP_SETS: &[&str] = &[
    "v1-udp-",
    "v2-udp-",
    "v2-udp-ipv6-",
    "v3-udp-",
    "v3-udp-ipv6-",
    "v3-udp-hlog-authkey-",
];

// ===== the server as a child process =====

/// The exit summary: `received N, decoded N, rejected N, skipped N, delivered N, dropped N`,
/// then `, spooled N, replayed N` when a relay spools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub(crate) received: u64,
    pub(crate) decoded: u64,
    pub(crate) rejected: u64,
    pub(crate) skipped: u64,
    pub(crate) delivered: u64,
    pub(crate) dropped: u64,
    pub(crate) spooled: Option<u64>,
    pub(crate) replayed: Option<u64>,
}

impl Counts {
    pub(crate) fn parse(stderr: &str) -> Self {
        let stderr = own_lines(stderr);
        let line = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("hep-server: received "))
            .next_back()
            .unwrap_or_else(|| panic!("no summary line in stderr:\n{stderr}"));
        let n: Vec<u64> = format!("received {line}")
            .split(", ")
            .map(|part| {
                let (_, v) = part.rsplit_once(' ').expect("`name N`");
                v.parse().unwrap_or_else(|_| panic!("bad summary `{line}`"))
            })
            .collect();
        assert!(n.len() == 6 || n.len() == 8, "summary `{line}`");
        Self {
            received: n[0],
            decoded: n[1],
            rejected: n[2],
            skipped: n[3],
            delivered: n[4],
            dropped: n[5],
            spooled: n.get(6).copied(),
            replayed: n.get(7).copied(),
        }
    }
}

/// `stderr` with the server's own lines in JSON mode (`"target":"hep-server"`) as they
/// read in text mode, `hep-server: MESSAGE`; every other line as it is.
pub(crate) fn own_lines(stderr: &str) -> String {
    let mut out = String::with_capacity(stderr.len());
    for line in stderr.lines() {
        let own = line
            .starts_with('{')
            .then(|| serde_json::from_str::<Value>(line).ok())
            .flatten()
            .filter(|v| v["target"] == "hep-server")
            .and_then(|v| v["fields"]["message"].as_str().map(str::to_owned));
        match own {
            Some(message) => {
                out.push_str("hep-server: ");
                out.push_str(&message);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A running `hep-server`, killed on drop if a test fails before stopping it.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) stderr: Arc<Mutex<String>>,
    pub(crate) stdout: Arc<Mutex<Vec<u8>>>,
    pub(crate) readers: Vec<JoinHandle<()>>,
    pub(crate) udp: Option<SocketAddr>,
    pub(crate) tcp: Option<SocketAddr>,
    pub(crate) tls: Option<SocketAddr>,
    pub(crate) metrics: Option<SocketAddr>,
    /// The HTTP API's address (`hep-server: http listening on ADDR`).
    pub(crate) http: Option<SocketAddr>,
}

/// Tests run in parallel: a `run` without `--http` gets `--http 127.0.0.1:0`, so that no
/// two servers contend for the default port 9080 (a config file's `[http]` is overridden
/// too; a test that wants its own passes `--http`).
pub(crate) fn with_own_http_port(cmd: &mut Command) {
    let args: Vec<_> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args.first().is_some_and(|a| a == "run") && !args.iter().any(|a| a == "--http") {
        cmd.args(["--http", "127.0.0.1:0"]);
    }
}

/// What a stopped server left behind.
pub(crate) struct Stopped {
    pub(crate) counts: Counts,
    pub(crate) stderr: String,
    pub(crate) stdout: String,
}

impl Server {
    /// `hep-server run ARGS...`.
    pub(crate) fn run(args: &[&str]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.arg("run").args(args);
        Self::spawn(cmd)
    }

    /// `hep-server run --config FILE` with `text` as the file.
    pub(crate) fn with_config(dir: &Path, text: &str) -> Self {
        let path = dir.join("hep-server.toml");
        std::fs::write(&path, text).unwrap();
        Self::run(&["--config", path.to_str().unwrap()])
    }

    /// Starts `cmd` and waits until it says where it writes (it has bound everything).
    pub(crate) fn spawn(cmd: Command) -> Self {
        Self::try_spawn(cmd)
            .unwrap_or_else(|stderr| panic!("hep-server exited at start:\n{stderr}"))
    }

    /// As [`spawn`](Self::spawn); a server that exits at start gives its stderr.
    pub(crate) fn try_spawn(mut cmd: Command) -> Result<Self, String> {
        with_own_http_port(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting hep-server");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let (pipe, sink) = (child.stderr.take().unwrap(), Arc::clone(&stderr));
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        }));
        let (mut pipe, sink) = (child.stdout.take().unwrap(), Arc::clone(&stdout));
        readers.push(std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }));
        let mut server = Self {
            child,
            stderr,
            stdout,
            readers,
            udp: None,
            tcp: None,
            tls: None,
            metrics: None,
            http: None,
        };
        let started = Instant::now();
        loop {
            let err = own_lines(&server.stderr());
            if err.contains("hep-server: writing to ") {
                break;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                for r in server.readers.drain(..) {
                    r.join().unwrap();
                }
                return Err(format!("({status}) {}", server.stderr()));
            }
            assert!(
                started.elapsed() < PROCESS_WAIT,
                "hep-server did not start:\n{err}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let err = own_lines(&server.stderr());
        for line in err.lines() {
            if let Some(rest) = line.strip_prefix("hep-server: http listening on ") {
                let addr = rest.split_whitespace().next().unwrap();
                server.http = Some(addr.parse().unwrap());
            }
            if let Some(rest) = line.strip_prefix("hep-server: listening on ") {
                let spec = rest.split_whitespace().next().unwrap();
                let (scheme, addr) = spec.split_once(':').unwrap();
                let addr: SocketAddr = addr.parse().unwrap();
                match scheme {
                    "hep_udp" => server.udp = Some(addr),
                    "hep_tcp" => server.tcp = Some(addr),
                    "hep_tls" => server.tls = Some(addr),
                    _ => {}
                }
            }
            if let Some(rest) = line.strip_prefix("hep-server: metrics on http://") {
                server.metrics = Some(rest.trim_end_matches("/metrics").parse().unwrap());
            }
        }
        Ok(server)
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub(crate) fn udp(&self) -> SocketAddr {
        self.udp.expect("a hep_udp listener")
    }

    pub(crate) fn tcp(&self) -> SocketAddr {
        self.tcp.expect("a hep_tcp listener")
    }

    /// `GET /metrics`.
    pub(crate) fn metrics(&self) -> Metrics {
        let addr = self.metrics.expect("a metrics endpoint");
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        Metrics(body.to_owned())
    }

    /// Sends signal `name` (`HUP`, `TERM`...) to the server.
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name}");
    }

    /// Waits until stderr holds `n` lines containing `needle`; returns the last of them.
    pub(crate) fn wait_log(&self, needle: &str, n: usize) -> String {
        wait_for(
            &format!("{n} log lines with `{needle}`"),
            PROCESS_WAIT,
            || {
                let err = self.stderr();
                let lines: Vec<&str> = err.lines().filter(|l| l.contains(needle)).collect();
                (lines.len() >= n).then(|| lines[n - 1].to_owned())
            },
        )
    }

    /// SIGTERM, then the exit summary; fails if the server does not stop in time.
    pub(crate) fn stop(mut self) -> Stopped {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
        let started = Instant::now();
        let exit = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > PROCESS_WAIT {
                let _ = self.child.kill();
                panic!("hep-server ignored SIGTERM:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        let stderr = self.stderr();
        assert!(exit.success(), "hep-server exited with {exit}:\n{stderr}");
        assert!(
            own_lines(&stderr).contains("hep-server: shutting down"),
            "says what it does at shutdown:\n{stderr}"
        );
        Stopped {
            counts: Counts::parse(&stderr),
            stdout: self.stdout(),
            stderr,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A Prometheus text exposition.
pub(crate) struct Metrics(pub(crate) String);

impl Metrics {
    /// The sum of the samples of `name` whose labels include every one of `labels`.
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut found = false;
        let mut sum = 0;
        for line in self.0.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                continue;
            }
            let have = parse_labels(rest.strip_suffix('}').unwrap());
            if labels
                .iter()
                .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
            {
                found = true;
                sum += value.parse::<u64>().unwrap();
            }
        }
        assert!(found, "no sample {name}{labels:?} in\n{}", self.0);
        sum
    }
}

pub(crate) fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((k, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next().map_or('\\', |(_, c)| c)),
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(k.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
    }
    out
}

// ===== helpers =====

/// A fresh directory for one test's files.
pub(crate) fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("run-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `f` every 10 ms until it gives a value; panics after `timeout`.
pub(crate) fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The complete lines of a JSON-lines file, parsed.
pub(crate) fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits (while the server runs) until `path` holds `n` records.
pub(crate) fn wait_json(path: &Path, n: usize) -> Vec<Value> {
    wait_for(
        &format!("{n} records in {}", path.display()),
        OUTPUT_WAIT,
        || {
            let records = json_lines(path);
            assert!(records.len() <= n, "more than {n} records: {records:#?}");
            (records.len() == n).then_some(records)
        },
    )
}

/// `hep-server decode FILE...` as JSON records.
pub(crate) fn decode(files: &[PathBuf]) -> Vec<Value> {
    let out = Command::new(BIN)
        .arg("decode")
        .args(files)
        .output()
        .unwrap();
    json_records(&out, "decode")
}

/// The JSON records (one a line) a `hep-server` command printed; it must have succeeded.
pub(crate) fn json_records(out: &std::process::Output, what: &str) -> Vec<Value> {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub(crate) fn without_recv(v: &Value) -> Value {
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove("recv");
    v
}

/// Records without `recv`, as sorted JSON text: compares two sets of records whatever
/// the order they arrived in.
pub(crate) fn sorted(records: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .map(|r| without_recv(r).to_string())
        .collect();
    v.sort();
    v
}

/// The files of a Kamailio set.
pub(crate) fn set_files(prefix: &str) -> Vec<PathBuf> {
    kamailio(prefix)
        .into_iter()
        .map(|(name, _)| testdata_dir().join("kamailio").join(name))
        .collect()
}

/// The datagrams of a Kamailio set.
pub(crate) fn set_bytes(prefix: &str) -> Vec<Vec<u8>> {
    kamailio(prefix).into_iter().map(|(_, b)| b).collect()
}

/// Sends each datagram from one socket; returns that socket's address.
pub(crate) fn send_udp(to: SocketAddr, datagrams: &[Vec<u8>]) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in datagrams {
        s.send_to(d, to).unwrap();
    }
    s.local_addr().unwrap()
}

/// Writes `bytes` over one TCP connection and closes it; returns the connection's
/// local address.
pub(crate) fn send_tcp(to: SocketAddr, bytes: &[u8]) -> SocketAddr {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.local_addr().unwrap()
}

/// Splits a byte stream into HEP3 frames on their length field.
pub(crate) fn hep3_frames(mut stream: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while stream.len() >= 6 {
        assert_eq!(&stream[..4], b"HEP3", "a HEP3 frame");
        let len = usize::from(u16::from_be_bytes([stream[4], stream[5]]));
        assert!((6..=stream.len()).contains(&len), "frame length {len}");
        frames.push(stream[..len].to_vec());
        stream = &stream[len..];
    }
    assert!(stream.is_empty(), "a partial frame at the end");
    frames
}

// ===== TLS clients =====

/// A TLS client config that trusts `cert` (for the name `localhost`).
pub(crate) fn tls_client(cert: CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Completes a TLS handshake for `localhost` over `tcp` (blocking), so that the bytes
/// written next are data.
pub(crate) fn tls_handshake(
    tcp: TcpStream,
    config: &Arc<ClientConfig>,
) -> StreamOwned<ClientConnection, TcpStream> {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::clone(config), name).unwrap();
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

/// A self-signed certificate for `localhost` written to `dir` as `server.pem` and
/// `server.key`: the two files, and the certificate for [`tls_client`].
pub(crate) fn self_signed(dir: &Path) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_file, key_file) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
    (cert_file, key_file, cert.der().clone())
}

/// `hep-server send` over TCP as a child process: `count` messages of `capture_id` with
/// `key` (none if `None`).
pub(crate) fn spawn_send_tcp(
    to: SocketAddr,
    payload: &Path,
    capture_id: u32,
    key: Option<&str>,
    count: u64,
) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["send", "--dest", &format!("hep_tcp:{to}")])
        .args(["--capture-id", &capture_id.to_string()])
        .args(["--count", &count.to_string()])
        .arg(payload)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(key) = key {
        cmd.args(["--auth-key", key]);
    }
    cmd.spawn().unwrap()
}

// ===== a tiny HTTP/1.1 client =====

/// An HTTP answer: status, headers (names lowercase), body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// The value of header `name` (lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `METHOD target` with `headers` to the HTTP API at `addr`, one request per connection;
/// a chunked body is put together.
pub(crate) fn http_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}
