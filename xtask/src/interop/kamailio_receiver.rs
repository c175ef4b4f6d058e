//! Kamailio 5.6 `sipcapture` as a HEP receiver storing to SQLite.
//!
//! Two ways in:
//!
//! - `hep-server send` packs a synthetic call (IPv4 and IPv6 HEP addresses, v3 with auth key,
//!   a correlation id and a log packet) and sends it to Kamailio; every stored row must match
//!   what was sent field by field: method or status and reason, source and destination
//!   ip/port, family, micro_ts (inside the run's window), node `kamrecv:<capture id>`,
//!   Call-ID, correlation id and the message bytes.
//! - `hep-server run` with a `relay:` output forwards the Kamailio vectors (raw datagrams
//!   replayed to its listener); the rows must equal the ones Kamailio stored when it was
//!   sent the same vectors directly (`decoded-kamailio-sipcapture.tsv`, recorded with the
//!   vectors).
//!
//! Kamailio 5.6 decodes HEP over UDP in its default mode, and HEP over TCP only with
//! `nonsip_hook=1` + `tcp_accept_hep3=yes` (`WITH_NONSIP_HOOK`), where its event route also
//! logs every chunk value (`HEPRX ...`), which the TCP rows check too.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use super::ours::{self, Listen, Server, Window};
use super::peers::{self, Tool};
use super::proc::{self, Proc};
use super::sip::{self, Msg, StartLine};
use super::{Check, Ctx, Dir};

/// The capture id we send with.
const CAPTURE_ID: u32 = 2001;

/// The receiver's `capture_node`.
const NODE: &str = "kamrecv";

/// A row as strings (SQL NULL is `""`, as in the recorded TSV files).
pub(crate) type Row = BTreeMap<String, String>;

/// The rows.
pub(crate) fn checks() -> Vec<Check> {
    const NEEDS: &[Tool] = &[Tool::Kamailio, Tool::Sqlite3];
    let peer = "kamailio sipcapture";
    vec![
        Check::new(peer, Dir::OursToPeer, "v1", "udp (send)", NEEDS, |ctx| {
            send_rows(ctx, 1, false)
        }),
        Check::new(peer, Dir::OursToPeer, "v2", "udp (send)", NEEDS, |ctx| {
            send_rows(ctx, 2, false)
        }),
        Check::new(peer, Dir::OursToPeer, "v3", "udp (send)", NEEDS, |ctx| {
            send_rows(ctx, 3, false)
        }),
        Check::new(peer, Dir::OursToPeer, "v3", "tcp (send)", NEEDS, |ctx| {
            send_rows(ctx, 3, true)
        }),
        Check::new(peer, Dir::OursToPeer, "v1", "udp (relay:)", NEEDS, |ctx| {
            relay_rows(ctx, 1, false, &["v1-udp"])
        }),
        Check::new(peer, Dir::OursToPeer, "v2", "udp (relay:)", NEEDS, |ctx| {
            relay_rows(ctx, 2, false, &["v2-udp", "v2-udp-ipv6"])
        }),
        Check::new(peer, Dir::OursToPeer, "v3", "udp (relay:)", NEEDS, |ctx| {
            relay_rows(
                ctx,
                3,
                false,
                &["v3-udp", "v3-udp-ipv6", "v3-udp-hlog-authkey"],
            )
        }),
        Check::new(peer, Dir::OursToPeer, "v3", "tcp (relay:)", NEEDS, |ctx| {
            relay_rows(ctx, 3, true, &["v3-udp", "v3-udp-ipv6"])
        }),
    ]
}

/// A running Kamailio sipcapture with its SQLite database, stopped when dropped.
struct Receiver {
    /// The Kamailio process.
    proc: Proc,
    /// The SQLite file.
    db: PathBuf,
    /// The HEP port (UDP and TCP).
    port: u16,
}

impl Receiver {
    /// Starts the receiver in `dir` (TCP-capable `WITH_NONSIP_HOOK` mode when `tcp`).
    fn start(ctx: &Ctx, dir: &Path, tcp: bool) -> Result<Self> {
        let port = ctx.ports.free()?;
        let db = dir.join("hep.sqlite");
        let schema = dir.join("sipcapture-sqlite.sql");
        fs::write(&schema, peers::asset("sipcapture-sqlite.sql"))?;
        proc::stdout(
            "sqlite3",
            &[
                db.display().to_string(),
                format!(".read {}", schema.display()),
                // In WAL mode our polling reads never lock Kamailio out of a commit: with
                // the default rollback journal, db_sqlite's commit failed with "database
                // is locked" while `rows` read, and that row was lost (seen once in CI).
                "PRAGMA journal_mode=WAL;".to_owned(),
            ],
            None,
            Duration::from_secs(10),
        )
        .context("creating the sipcapture SQLite tables")?;
        let cfg = dir.join("kamailio-receiver.cfg");
        fs::write(
            &cfg,
            peers::asset("kamailio-receiver.cfg").replace("@PORT@", &port.to_string()),
        )?;
        let mut args = vec![
            "-DD".to_owned(),
            "-E".to_owned(),
            "-f".to_owned(),
            cfg.display().to_string(),
            "-Y".to_owned(),
            dir.display().to_string(),
            "-w".to_owned(),
            dir.display().to_string(),
            "-A".to_owned(),
            // db_sqlite drops one slash: sqlite:/// + /abs/path.
            format!("DBURL=\"sqlite:///{}\"", db.display()),
            "-A".to_owned(),
            format!("CTLSOCK=\"unix:{}\"", dir.join("ctl.sock").display()),
        ];
        if tcp {
            args.extend(["-A".to_owned(), "WITH_NONSIP_HOOK".to_owned()]);
        }
        let mut proc = Proc::start(
            "kamailio sipcapture",
            "/usr/sbin/kamailio",
            &args,
            &dir.join("kamailio.log"),
            Duration::from_secs(90),
        )?;
        proc::wait_for(
            "kamailio sipcapture to listen",
            Duration::from_secs(10),
            || {
                proc.ensure_running()?;
                Ok(proc::udp_bound(port) && proc::tcp_listening(port))
            },
        )?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(Self { proc, db, port })
    }

    /// The stored rows of `sip_capture` and `logs_capture`.
    fn rows(&self) -> Result<(Vec<Row>, Vec<Row>)> {
        let sip = self.query(
            "SELECT micro_ts, method, reply_reason, source_ip, source_port, destination_ip, \
             destination_port, proto, family, type, node, correlation_id, callid, \
             length(msg) AS msglen, hex(msg) AS msg_hex FROM sip_capture ORDER BY id",
        )?;
        let logs = self.query(
            "SELECT micro_ts, correlation_id, source_ip, source_port, destination_ip, \
             destination_port, proto, family, type, node, msg, hex(msg) AS msg_hex \
             FROM logs_capture ORDER BY id",
        )?;
        Ok((sip, logs))
    }

    /// Runs a query with `sqlite3 -json` and turns every value into a string.
    fn query(&self, sql: &str) -> Result<Vec<Row>> {
        let out = proc::stdout(
            "sqlite3",
            &["-json", &self.db.display().to_string(), sql],
            None,
            Duration::from_secs(10),
        )?;
        if out.trim().is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<serde_json::Map<String, Value>> =
            serde_json::from_str(&out).context("sqlite3 -json output")?;
        Ok(rows
            .into_iter()
            .map(|m| {
                m.into_iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::Null => String::new(),
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (k, v)
                    })
                    .collect()
            })
            .collect())
    }

    /// Waits (up to 10 s) until at least `sip` + `logs` rows are stored, then returns them.
    fn wait_rows(&mut self, sip: usize, logs: usize) -> Result<(Vec<Row>, Vec<Row>)> {
        let mut last = (Vec::new(), Vec::new());
        let done = proc::wait_for(
            "rows in the sipcapture database",
            Duration::from_secs(10),
            || {
                self.proc.ensure_running()?;
                // The database may be locked while Kamailio writes: just look again.
                if let Ok(rows) = self.rows() {
                    last = rows;
                }
                Ok(last.0.len() >= sip && last.1.len() >= logs)
            },
        );
        if done.is_ok() {
            std::thread::sleep(Duration::from_millis(300));
            last = self.rows()?;
        }
        Ok(last)
    }

    /// The log lines containing `needle`.
    fn log_lines(&self, needle: &str) -> Vec<String> {
        let text = fs::read(self.proc_log()).unwrap_or_default();
        String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// The Kamailio log file.
    fn proc_log(&self) -> PathBuf {
        self.db.with_file_name("kamailio.log")
    }
}

/// A message to send and what Kamailio must store for it.
struct Sent {
    /// The SIP message and its HEP addresses.
    msg: Msg,
    /// `--correlation-id`, if given.
    correlation_id: Option<String>,
}

/// The expected `sip_capture` row of a sent message (without `micro_ts`).
fn expected_row(sent: &Sent, version: u8) -> Row {
    let m = &sent.msg;
    let (method, reason, kind) = match m.start() {
        Some(StartLine::Request(method)) => (method, String::new(), "1"),
        Some(StartLine::Reply(code, reason)) => (code.to_string(), reason, "2"),
        None => (String::new(), String::new(), "?"),
    };
    let node = if version == 1 {
        NODE.to_owned()
    } else {
        format!("{NODE}:{CAPTURE_ID}")
    };
    let family = if m.src.is_ipv4() { "2" } else { "10" };
    let cid = m.call_id().to_owned();
    [
        ("method", method),
        ("reply_reason", reason),
        ("source_ip", m.src.ip().to_string()),
        ("source_port", m.src.port().to_string()),
        ("destination_ip", m.dst.ip().to_string()),
        ("destination_port", m.dst.port().to_string()),
        ("proto", "1".to_owned()),
        ("family", family.to_owned()),
        ("type", kind.to_owned()),
        ("node", node),
        (
            "correlation_id",
            sent.correlation_id.clone().unwrap_or_else(|| cid.clone()),
        ),
        ("callid", cid),
        ("msg_hex", ours::hex(m.text.as_bytes()).to_uppercase()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `hep-server send` -> Kamailio sipcapture, compared row by row.
fn send_rows(ctx: &Ctx, version: u8, tcp: bool) -> Result<String> {
    let dir = ctx.subdir("run")?;
    let mut recv = Receiver::start(ctx, &dir, tcp)?;
    let mut window = Window::open();

    let a4: SocketAddr = "127.0.0.1:5061".parse()?;
    let b4: SocketAddr = "127.0.0.2:5080".parse()?;
    let a6: SocketAddr = "[::1]:5062".parse()?;
    let b6: SocketAddr = "[::1]:5082".parse()?;
    let cid4 = sip::unique_call_id(&format!("send-v{version}"));
    let cid6 = sip::unique_call_id(&format!("send6-v{version}"));
    let mut sends: Vec<Sent> = sip::call(&cid4, a4, b4)
        .into_iter()
        .chain(sip::call(&cid6, a6, b6))
        .map(|msg| Sent {
            msg,
            correlation_id: None,
        })
        .collect();
    if version == 3 {
        sends[0].correlation_id = Some(format!("corr-{cid4}"));
    }
    let dest = format!(
        "{}:127.0.0.1:{}",
        if tcp { "hep_tcp" } else { "hep_udp" },
        recv.port
    );
    for (i, s) in sends.iter().enumerate() {
        let file = dir.join(format!("msg-{:02}.sip", i + 1));
        fs::write(&file, &s.msg.text)?;
        let mut args = common_send_args(&dest, version, s.msg.src, s.msg.dst);
        if let Some(c) = &s.correlation_id {
            args.extend(["--correlation-id".to_owned(), c.clone()]);
        }
        args.push(file.display().to_string());
        ours::send(ctx, &args)?;
    }
    // A HEPv3 log packet (type 100), as agents send next to SIP.
    let log_text = format!("interop log line for {cid4}");
    if version == 3 {
        let file = dir.join("log.txt");
        fs::write(&file, &log_text)?;
        let mut args = common_send_args(&dest, version, a4, b4);
        args.extend([
            "--proto-type".to_owned(),
            "log".to_owned(),
            "--correlation-id".to_owned(),
            cid4.clone(),
            file.display().to_string(),
        ]);
        ours::send(ctx, &args)?;
    }
    let want_logs = usize::from(version == 3 && !tcp);
    let (sip_rows, log_rows) = recv.wait_rows(sends.len(), want_logs)?;
    window.close();

    let mut problems = Vec::new();
    compare_sent(&sends, version, &window, &sip_rows, &mut problems);
    if want_logs == 1 {
        match log_rows.as_slice() {
            [row] => {
                let want = [
                    ("correlation_id", cid4.as_str()),
                    ("source_ip", "127.0.0.1"),
                    ("source_port", "5061"),
                    ("destination_ip", "127.0.0.2"),
                    ("destination_port", "5080"),
                    ("node", "kamrecv:2001"),
                    ("msg", log_text.as_str()),
                ];
                for (k, v) in want {
                    if row.get(k).map(String::as_str) != Some(v) {
                        problems.push(format!("log row {k}: stored {:?}, sent {v:?}", row.get(k)));
                    }
                }
                check_ts(row, &window, "log row", &mut problems);
            }
            rows => problems.push(format!("{} logs_capture rows, expected 1", rows.len())),
        }
    }
    if tcp {
        check_heprx(&recv, &sends, &log_text, &mut problems);
    }
    recv.proc.stop();
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    let mut detail = format!(
        "{}/{} rows match field by field (method/reason, src/dst ip+port v4+v6, family, micro_ts, node {}, callid, msg)",
        sip_rows.len(),
        sends.len(),
        if version == 1 {
            "kamrecv"
        } else {
            "kamrecv:2001"
        }
    );
    if version == 3 {
        detail.push_str("; correlation id");
        if tcp {
            detail.push_str(
                "; Kamailio HEPRX chunk log: family, ip proto, v4/v6 addrs, ports, type, capid, auth key, payload len",
            );
        } else {
            detail.push_str("; log packet -> logs_capture");
        }
    }
    Ok(detail)
}

/// The `hep-server send` arguments every message shares.
fn common_send_args(dest: &str, version: u8, src: SocketAddr, dst: SocketAddr) -> Vec<String> {
    let mut args = vec![
        "--dest".to_owned(),
        dest.to_owned(),
        "--hep-version".to_owned(),
        version.to_string(),
        "--src".to_owned(),
        src.to_string(),
        "--dst".to_owned(),
        dst.to_string(),
    ];
    // HEPv1 has no capture id (send refuses one).
    if version >= 2 {
        args.extend(["--capture-id".to_owned(), CAPTURE_ID.to_string()]);
    }
    if version == 3 {
        args.extend(["--auth-key".to_owned(), "hep-secret".to_owned()]);
    }
    args
}

/// Compares stored rows with the sent messages (matched by message bytes).
fn compare_sent(
    sends: &[Sent],
    version: u8,
    window: &Window,
    rows: &[Row],
    problems: &mut Vec<String>,
) {
    if rows.len() != sends.len() {
        problems.push(format!(
            "{} sip_capture rows for {} messages sent",
            rows.len(),
            sends.len()
        ));
    }
    for (i, s) in sends.iter().enumerate() {
        let want = expected_row(s, version);
        let Some(row) = rows
            .iter()
            .find(|r| r.get("msg_hex").map(|h| h.to_uppercase()) == want.get("msg_hex").cloned())
        else {
            problems.push(format!(
                "message {} ({}) not stored",
                i + 1,
                s.msg.text.lines().next().unwrap_or_default()
            ));
            continue;
        };
        for (k, v) in &want {
            let got = row.get(k).cloned().unwrap_or_default();
            let got = if k == "msg_hex" {
                got.to_uppercase()
            } else {
                got
            };
            if &got != v {
                problems.push(format!("message {} {k}: stored {got:?}, sent {v:?}", i + 1));
            }
        }
        check_ts(row, window, &format!("message {}", i + 1), problems);
    }
}

/// `micro_ts` must lie in the run's window (HEPv1 has no time: Kamailio uses its clock).
fn check_ts(row: &Row, window: &Window, what: &str, problems: &mut Vec<String>) {
    let ts = row.get("micro_ts").and_then(|t| t.parse::<u64>().ok());
    if !ts.is_some_and(|t| window.contains(t)) {
        problems.push(format!(
            "{what} micro_ts {:?} outside the run's window",
            row.get("micro_ts")
        ));
    }
}

/// TCP rows: Kamailio's event route logs every HEP chunk it decoded (`HEPRX v=3 ...`).
fn check_heprx(recv: &Receiver, sends: &[Sent], log_text: &str, problems: &mut Vec<String>) {
    let lines = recv.log_lines("HEPRX v=3");
    if lines.len() != sends.len() + 1 {
        problems.push(format!(
            "{} HEPRX lines in Kamailio's log, expected {}",
            lines.len(),
            sends.len() + 1
        ));
    }
    for s in sends {
        let (src, dst) = (s.msg.src, s.msg.dst);
        let (fam, sip4, dip4, sip6, dip6) = if src.is_ipv4() {
            (
                "2",
                src.ip().to_string(),
                dst.ip().to_string(),
                String::new(),
                String::new(),
            )
        } else {
            (
                "10",
                String::new(),
                String::new(),
                src.ip().to_string(),
                dst.ip().to_string(),
            )
        };
        let want = [
            format!("fam={fam} ipproto=17"),
            format!("src4={sip4} dst4={dip4} src6={sip6} dst6={dip6}"),
            format!("sport={} dport={}", src.port(), dst.port()),
            "type=1 capid=2001 auth=hep-secret".to_owned(),
            format!("paylen={}", s.msg.text.len()),
        ];
        let found = lines
            .iter()
            .any(|l| want.iter().all(|w| l.contains(w.as_str())));
        if !found {
            problems.push(format!(
                "no HEPRX line with {} for {src} -> {dst}",
                want.join(" ")
            ));
        }
    }
    if recv
        .log_lines(&format!("HEPRX non-SIP payload: {log_text}"))
        .is_empty()
    {
        problems.push("the log packet did not reach Kamailio's event route".to_owned());
    }
}

/// `hep-server run` with a `relay:` output -> Kamailio, compared with the recorded rows.
fn relay_rows(ctx: &Ctx, version: u8, tcp: bool, sets: &[&str]) -> Result<String> {
    let dir = ctx.subdir("run")?;
    let mut recv = Receiver::start(ctx, &dir, tcp)?;
    let mut window = Window::open();
    let files: Vec<PathBuf> = sets
        .iter()
        .map(|set| ctx.kamailio_set(set))
        .collect::<Result<Vec<_>>>()?
        .concat();
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .collect();
    let (want_sip, want_logs) = recorded_rows(ctx, &names)?;

    let hep_port = ctx.ports.free()?;
    let relay = format!(
        "relay:{}:127.0.0.1:{};version={version}",
        if tcp { "hep_tcp" } else { "hep_udp" },
        recv.port
    );
    let json = dir.join("records.jsonl");
    let mut server = Server::start(
        ctx,
        &dir,
        &[Listen::Udp(hep_port)],
        &[relay.clone(), format!("json:{}", json.display())],
    )?;
    ours::replay_udp(&files, hep_port)?;
    let received = server
        .wait_records(files.len(), Duration::from_secs(5))?
        .len();
    let (sip_rows, log_rows) = recv.wait_rows(want_sip.len(), want_logs.len())?;
    window.close();
    let summary = server.stop();
    recv.proc.stop();

    let mut problems = Vec::new();
    if received != files.len() {
        problems.push(format!(
            "hep-server received {received} of {} vectors",
            files.len()
        ));
    }
    // HEPv1 carries no time: Kamailio stores its receive time, so compare that to the window.
    let drop_ts = |rows: &[Row]| -> Vec<Row> {
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                r.remove("msg_hex");
                if version == 1 {
                    r.remove("micro_ts");
                }
                r
            })
            .collect()
    };
    if version == 1 {
        for (i, r) in sip_rows.iter().enumerate() {
            check_ts(r, &window, &format!("row {}", i + 1), &mut problems);
        }
    }
    for (table, want, got) in [
        ("sip_capture", drop_ts(&want_sip), drop_ts(&sip_rows)),
        ("logs_capture", drop_ts(&want_logs), drop_ts(&log_rows)),
    ] {
        let mut want_sorted = want.clone();
        let mut got_sorted = got.clone();
        want_sorted.sort();
        got_sorted.sort();
        if want_sorted != got_sorted {
            let first_diff = want
                .iter()
                .find(|w| !got.contains(w))
                .map(|w| {
                    let closest = got.iter().find(|g| g.get("msglen") == w.get("msglen"));
                    let diff: Vec<String> = w
                        .iter()
                        .filter(|(k, v)| closest.and_then(|g| g.get(*k)) != Some(*v))
                        .map(|(k, v)| {
                            format!(
                                "{k}: recorded {v:?} stored {:?}",
                                closest.and_then(|g| g.get(k))
                            )
                        })
                        .collect();
                    diff.join(", ")
                })
                .unwrap_or_default();
            problems.push(format!(
                "{table}: {} rows stored, {} recorded; first difference: {first_diff}",
                got.len(),
                want.len()
            ));
        }
    }
    if !problems.is_empty() {
        bail!("{}; {summary}", problems.join("; "));
    }
    let mut detail = format!(
        "{} vectors relayed as v{version}/{}: {} sip_capture rows equal to Kamailio's own decoding",
        files.len(),
        if tcp { "tcp" } else { "udp" },
        sip_rows.len()
    );
    if !log_rows.is_empty() {
        detail.push_str(&format!(", {} logs_capture rows", log_rows.len()));
    }
    if version == 1 {
        detail.push_str(" (micro_ts = receive time, in window)");
    }
    Ok(detail)
}

/// The rows Kamailio stored when the vectors were sent to it directly, for these files.
fn recorded_rows(ctx: &Ctx, names: &[String]) -> Result<(Vec<Row>, Vec<Row>)> {
    let sip = read_tsv(&ctx.kamailio_vector("decoded-kamailio-sipcapture.tsv"))?;
    let sip: Vec<Row> = sip
        .into_iter()
        .filter(|r| r.get("file").is_some_and(|f| names.contains(f)))
        .map(|mut r| {
            r.remove("file");
            r.remove("id");
            r
        })
        .collect();
    let logs = if names.iter().any(|n| n.starts_with("v3-udp-hlog-authkey")) {
        read_tsv(&ctx.kamailio_vector("decoded-kamailio-logs_capture.tsv"))?
            .into_iter()
            .map(|mut r| {
                r.remove("id");
                r
            })
            .collect()
    } else {
        Vec::new()
    };
    ensure!(!sip.is_empty(), "no recorded rows for {names:?}");
    Ok((sip, logs))
}

/// Reads a recorded TSV (comment lines start with `#`, then a header line).
pub(crate) fn read_tsv(path: &Path) -> Result<Vec<Row>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let header: Vec<&str> = lines.next().context("empty TSV")?.split('\t').collect();
    Ok(lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            header
                .iter()
                .zip(l.split('\t'))
                .map(|(k, v)| ((*k).to_owned(), v.to_owned()))
                .collect()
        })
        .collect())
}
