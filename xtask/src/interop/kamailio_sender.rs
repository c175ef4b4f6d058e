//! Kamailio 5.6 `siptrace` as a HEP sender, driven by sipp calls, into `hep-server run`.
//!
//! sipp UAC -> Kamailio -> sipp UAS, `CALLS` calls. Kamailio mirrors every SIP message it
//! receives and sends as HEP (`trace_mode=1`): 6 messages per call, each seen in and out, so
//! 12 HEP packets per call. Both sipps write a message trace (`-trace_msg`) with the exact
//! bytes they sent and received; that is the ground truth:
//!
//! - UAC sent -> HEP `uac -> kamailio`, UAC received -> HEP `kamailio -> uac`,
//! - UAS received -> HEP `kamailio -> uas`, UAS sent -> HEP `uas -> kamailio`,
//!
//! each with the payload byte for byte. The records `hep-server run` writes to its `json:`
//! output must be exactly that multiset (nothing missing, nothing twice), with the HEP
//! version, address family, IP protocol, capture id 2001, timestamps inside the run's
//! wall-clock window, and (per variant) auth key and `hlog()` log packets.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use super::ours::{self, Listen, Server, Window};
use super::peers::{self, Tool};
use super::proc::{self, Proc};
use super::sip::{self, StartLine};
use super::{Check, Ctx, Dir};

/// Calls per run.
const CALLS: usize = 2;

/// The capture id `kamailio-sender.cfg` configures.
const CAPTURE_ID: u64 = 2001;

/// The auth key `WITH_AUTH_KEY` configures.
const AUTH_KEY: &str = "hep-secret";

/// One Kamailio sender configuration.
#[derive(Debug, Clone, Copy)]
struct Variant {
    /// HEP version Kamailio writes.
    version: u8,
    /// HEP over TCP instead of UDP.
    tcp: bool,
    /// SIP over `[::1]` instead of 127.0.0.1.
    ipv6: bool,
    /// Auth key and `hlog()` packets.
    auth_hlog: bool,
}

/// The rows.
pub(crate) fn checks() -> Vec<Check> {
    const NEEDS: &[Tool] = &[Tool::Kamailio, Tool::Sipp];
    let row = |version: &'static str, transport: &'static str, v: Variant| {
        Check::new(
            "kamailio siptrace",
            Dir::PeerToOurs,
            version,
            transport,
            NEEDS,
            move |ctx| run(ctx, v),
        )
    };
    let v = |version, tcp, ipv6, auth_hlog| Variant {
        version,
        tcp,
        ipv6,
        auth_hlog,
    };
    vec![
        row("v1", "udp", v(1, false, false, false)),
        row("v1", "udp, SIP over IPv6", v(1, false, true, false)),
        row("v2", "udp", v(2, false, false, false)),
        row("v2", "udp, SIP over IPv6", v(2, false, true, false)),
        row("v3", "udp", v(3, false, false, false)),
        row("v3", "udp, SIP over IPv6", v(3, false, true, false)),
        row("v3", "tcp", v(3, true, false, false)),
        row("v3", "udp, auth key + hlog()", v(3, false, false, true)),
    ]
}

/// Starts Kamailio with `kamailio-sender.cfg` in `dir`: SIP on `sip_port` forwarded to
/// a UAS on `uas_port`, with these `-A` defines (`HEP_DST` at least); returns once it
/// listens on UDP and its worker has started.
///
/// # Errors
/// It cannot be configured or started, or does not listen within 10 s.
pub(super) fn start_kamailio(
    dir: &std::path::Path,
    sip_port: u16,
    uas_port: u16,
    defines: &[String],
) -> Result<Proc> {
    let cfg = dir.join("kamailio-sender.cfg");
    fs::write(
        &cfg,
        peers::asset("kamailio-sender.cfg")
            .replace("@SIP_PORT@", &sip_port.to_string())
            .replace("@UAS_PORT@", &uas_port.to_string()),
    )?;
    let mut args = vec![
        "-DD".to_owned(),
        "-E".to_owned(),
        "-f".to_owned(),
        cfg.display().to_string(),
        "-Y".to_owned(),
        dir.display().to_string(),
    ];
    for d in defines {
        args.extend(["-A".to_owned(), d.clone()]);
    }
    let mut kamailio = Proc::start(
        "kamailio",
        "/usr/sbin/kamailio",
        &args,
        &dir.join("kamailio.log"),
        Duration::from_secs(60),
    )?;
    proc::wait_for("kamailio to listen", Duration::from_secs(10), || {
        kamailio.ensure_running()?;
        Ok(proc::udp_bound(sip_port))
    })?;
    // Workers finish starting shortly after the sockets are bound.
    std::thread::sleep(Duration::from_millis(300));
    Ok(kamailio)
}

/// One expected or received HEP message: source, destination, payload.
type Key = (String, String, Vec<u8>);

/// Runs one variant.
fn run(ctx: &Ctx, v: Variant) -> Result<String> {
    let dir = ctx.subdir("run")?;
    let (hep_port, sip_port, uas_port, uac_port) = (
        ctx.ports.free()?,
        ctx.ports.free()?,
        ctx.ports.free()?,
        ctx.ports.free()?,
    );
    let ip = if v.ipv6 { "::1" } else { "127.0.0.1" };
    let host = if v.ipv6 { "[::1]" } else { "127.0.0.1" };
    let at = |port: u16| format!("{host}:{port}");
    let mut window = Window::open();

    let json = dir.join("records.jsonl");
    // With Kamailio's capture password: checked by our [auth], and kept in the records
    // (`strip = false`; the default strips it from what outputs keep).
    let auth = format!("[auth]\nkey = \"{AUTH_KEY}\"\nstrip = false\n");
    let mut server = Server::start_with_config(
        ctx,
        &dir,
        &[Listen::Udp(hep_port), Listen::Tcp(hep_port)],
        &[format!("json:{}", json.display())],
        v.auth_hlog.then_some(auth.as_str()),
    )?;

    // Kamailio, configured for this variant.
    let hep_dst = if v.tcp {
        format!("HEP_DST=\"sip:127.0.0.1:{hep_port};transport=tcp\"")
    } else {
        format!("HEP_DST=\"sip:127.0.0.1:{hep_port}\"")
    };
    let mut defines = vec![format!("HEP_VERSION={}", v.version), hep_dst];
    if v.tcp {
        defines.push("WITH_TCP".to_owned());
    }
    if v.auth_hlog {
        defines.extend(["WITH_AUTH_KEY".to_owned(), "WITH_HLOG".to_owned()]);
    }
    let mut kamailio = start_kamailio(&dir, sip_port, uas_port, &defines)?;
    if v.tcp {
        proc::wait_for("kamailio to listen on tcp", Duration::from_secs(10), || {
            kamailio.ensure_running()?;
            Ok(proc::tcp_listening(sip_port))
        })?;
    }

    // sipp UAS, then the UAC making the calls.
    let calls = CALLS.to_string();
    let uas_trace = dir.join("uas.msg");
    let uac_trace = dir.join("uac.msg");
    let uas_port_s = uas_port.to_string();
    let uac_port_s = uac_port.to_string();
    let uas_args = [
        "-sn",
        "uas",
        "-i",
        ip,
        "-p",
        &uas_port_s,
        "-m",
        &calls,
        "-nostdin",
        "-timeout",
        "30s",
        "-trace_msg",
        "-message_file",
        &uas_trace.display().to_string(),
    ]
    .map(str::to_owned);
    let mut uas = Proc::start(
        "sipp uas",
        "sipp",
        &uas_args,
        &dir.join("sipp-uas.log"),
        Duration::from_secs(40),
    )?;
    proc::wait_for("sipp uas to listen", Duration::from_secs(10), || {
        uas.ensure_running()?;
        Ok(proc::udp_bound(uas_port))
    })?;
    let remote = at(sip_port);
    let uac_args = [
        "-sn",
        "uac",
        &remote,
        "-i",
        ip,
        "-p",
        &uac_port_s,
        "-m",
        &calls,
        "-r",
        "10",
        "-nostdin",
        "-timeout",
        "30s",
        "-trace_msg",
        "-message_file",
        &uac_trace.display().to_string(),
    ]
    .map(str::to_owned);
    let mut uac = Proc::start(
        "sipp uac",
        "sipp",
        &uac_args,
        &dir.join("sipp-uac.log"),
        Duration::from_secs(40),
    )?;
    let uac_status = uac.wait(Duration::from_secs(40))?;
    let uas_status = uas.wait(Duration::from_secs(10))?;
    ensure!(
        uac_status.success() && uas_status.success(),
        "sipp calls failed (uac {uac_status}, uas {uas_status}); kamailio log: {}",
        kamailio.log_tail(3)
    );

    // The ground truth from the sipp traces.
    let uac_msgs = sip::parse_sipp_trace(&uac_trace)?;
    let uas_msgs = sip::parse_sipp_trace(&uas_trace)?;
    let (kam, uac_addr, uas_addr) = (at(sip_port), at(uac_port), at(uas_port));
    let mut expected: Vec<Key> = Vec::new();
    for m in &uac_msgs {
        let (s, d) = if m.sent {
            (&uac_addr, &kam)
        } else {
            (&kam, &uac_addr)
        };
        expected.push((s.clone(), d.clone(), m.bytes.clone()));
    }
    for m in &uas_msgs {
        let (s, d) = if m.sent {
            (&uas_addr, &kam)
        } else {
            (&kam, &uas_addr)
        };
        expected.push((s.clone(), d.clone(), m.bytes.clone()));
    }
    ensure!(
        expected.len() == 12 * CALLS,
        "the sipp traces hold {} messages, expected {} for {CALLS} calls",
        expected.len(),
        12 * CALLS
    );
    // hlog(): one log packet per request Kamailio received from the UAC.
    let mut expected_logs: Vec<(String, String)> = Vec::new();
    if v.auth_hlog {
        for m in uac_msgs.iter().filter(|m| m.sent) {
            let text = String::from_utf8_lossy(&m.bytes);
            if let (Some(StartLine::Request(method)), Some(cid)) =
                (sip::start_line(&text), sip::call_id(&text))
            {
                expected_logs.push((
                    cid.to_owned(),
                    format!("kamailio hlog: {method} from {uac_addr}"),
                ));
            }
        }
    }

    let records = server.wait_records(
        expected.len() + expected_logs.len(),
        Duration::from_secs(10),
    )?;
    kamailio.stop();
    window.close();
    let summary = server.stop();

    let detail = verify(
        v,
        &window,
        &records,
        expected,
        &expected_logs,
        (&kam, hep_port),
    )
    .with_context(|| summary.clone())?;
    Ok(detail)
}

/// Compares the records with the sipp ground truth and checks every header field.
fn verify(
    v: Variant,
    window: &Window,
    records: &[Value],
    mut expected: Vec<Key>,
    expected_logs: &[(String, String)],
    (kam, hep_port): (&str, u16),
) -> Result<String> {
    let (sip_recs, log_recs): (Vec<&Value>, Vec<&Value>) = records
        .iter()
        .partition(|r| ours::u(r, "proto_type") != Some(100));
    let mut got: Vec<Key> = sip_recs
        .iter()
        .map(|r| Ok((ours::src(r), ours::dst(r), ours::payload(r)?)))
        .collect::<Result<_>>()?;
    expected.sort();
    got.sort();
    let missing = multiset_minus(&expected, &got);
    let extra = multiset_minus(&got, &expected);
    let mut problems = Vec::new();
    if !missing.is_empty() || !extra.is_empty() {
        let show = |k: &Key| {
            let text = String::from_utf8_lossy(&k.2);
            format!(
                "{} -> {} {:?}",
                k.0,
                k.1,
                text.lines().next().unwrap_or_default()
            )
        };
        problems.push(format!(
            "{} of {} SIP messages missing{}, {} unexpected or duplicated{}",
            missing.len(),
            expected.len(),
            missing
                .first()
                .map(|k| format!(" (e.g. {})", show(k)))
                .unwrap_or_default(),
            extra.len(),
            extra
                .first()
                .map(|k| format!(" (e.g. {})", show(k)))
                .unwrap_or_default(),
        ));
    }

    let family = if v.ipv6 { "ipv6" } else { "ipv4" };
    let transport = if v.tcp { "tcp" } else { "udp" };
    let mut field_errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut note = |what: String| *field_errors.entry(what).or_default() += 1;
    for r in &sip_recs {
        check_common(r, v, window, transport, &mut note);
        if ours::s(r, "family") != Some(family) {
            note(format!("family {:?} (expected {family})", r.get("family")));
        }
        if v.version == 3 && ours::u(r, "proto_type") != Some(1) {
            note(format!("proto_type {:?} (expected 1)", r.get("proto_type")));
        }
    }

    // hlog() packets: correlation id = Call-ID, text, Kamailio's socket -> the collector.
    let mut got_logs: Vec<(String, String)> = Vec::new();
    for r in &log_recs {
        check_common(r, v, window, transport, &mut note);
        if !ours::src(r).ends_with(&format!(":{}", kam.rsplit(':').next().unwrap_or(""))) {
            note(format!(
                "log source {} (expected Kamailio's port)",
                ours::src(r)
            ));
        }
        if ours::u(r, "dst_port") != Some(u64::from(hep_port)) {
            note(format!("log dst_port {:?}", r.get("dst_port")));
        }
        got_logs.push((
            ours::s(r, "correlation_id").unwrap_or("<none>").to_owned(),
            String::from_utf8_lossy(&ours::payload(r)?).into_owned(),
        ));
    }
    let mut want_logs = expected_logs.to_vec();
    want_logs.sort();
    got_logs.sort();
    if want_logs != got_logs {
        problems.push(format!(
            "log packets: expected {} {:?}, got {} {:?}",
            want_logs.len(),
            want_logs.first(),
            got_logs.len(),
            got_logs.first()
        ));
    }
    for (what, n) in field_errors {
        problems.push(format!("{n} record(s): {what}"));
    }
    ensure!(problems.is_empty(), "{}", problems.join("; "));

    let mut detail = format!(
        "{}/{} SIP msgs of {CALLS} sipp calls, each once, payload byte-exact; {family} addrs+ports ok",
        got.len(),
        expected.len()
    );
    if v.version >= 2 {
        detail.push_str(", capture id 2001, ts in run window");
    }
    if v.auth_hlog {
        detail.push_str(&format!(
            "; auth key ok; {} hlog() packets (type 100, correlation id = Call-ID)",
            got_logs.len()
        ));
    }
    Ok(detail)
}

/// Field checks shared by SIP and log records.
fn check_common(
    r: &Value,
    v: Variant,
    window: &Window,
    transport: &str,
    note: &mut impl FnMut(String),
) {
    if ours::u(r, "version") != Some(u64::from(v.version)) {
        note(format!(
            "version {:?} (expected {})",
            r.get("version"),
            v.version
        ));
    }
    if ours::u(r, "ip_proto") != Some(17) {
        note(format!("ip_proto {:?} (expected 17)", r.get("ip_proto")));
    }
    let recv_transport = r
        .get("recv")
        .and_then(|recv| recv.get("transport"))
        .and_then(Value::as_str);
    if recv_transport != Some(transport) {
        note(format!(
            "recv.transport {recv_transport:?} (expected {transport})"
        ));
    }
    if v.version >= 2 {
        if ours::u(r, "capture_id") != Some(CAPTURE_ID) {
            note(format!(
                "capture_id {:?} (expected 2001)",
                r.get("capture_id")
            ));
        }
        match ours::micros(r) {
            Some(us)
                if window.contains(us) && ours::u(r, "ts_usec").is_some_and(|u| u < 1_000_000) => {}
            _ => note("timestamp outside the run's wall-clock window".to_owned()),
        }
    }
    let want_key = v.auth_hlog.then_some(AUTH_KEY);
    if ours::s(r, "auth_key") != want_key {
        note(format!(
            "auth_key {:?} (expected {want_key:?})",
            r.get("auth_key")
        ));
    }
}

/// The elements of sorted `a` not matched one-for-one in sorted `b`.
fn multiset_minus<T: Ord + Clone>(a: &[T], b: &[T]) -> Vec<T> {
    let mut out = Vec::new();
    let mut j = 0;
    for x in a {
        while j < b.len() && b[j] < *x {
            j += 1;
        }
        if j < b.len() && b[j] == *x {
            j += 1;
        } else {
            out.push(x.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiset_minus_counts_duplicates() {
        assert_eq!(multiset_minus(&[1, 2, 2, 3], &[2, 3]), [1, 2]);
        assert_eq!(multiset_minus(&[2, 3], &[1, 2, 2, 3]), Vec::<i32>::new());
    }
}
