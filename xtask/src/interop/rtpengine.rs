//! rtpengine (Debian's `rtpengine-daemon` 10.5, userspace forwarding) as a real sender of
//! RTCP in HEP: type 5, the JSON it builds from each RTCP packet it receives, the SIP
//! Call-ID as correlation id. The recipe (`xtask/interop/rtpengine/run-rtpengine.sh`, a
//! copy of the shared peers' one: two chained rtpengines with `generate-RTCP`, sipp calls
//! with RTP both ways through Kamailio, 5 % random loss on the media ports in a private
//! network namespace) captures what rtpengine sends to files, and its own reading of each
//! payload (Python's `json`) to `rtcp.jsonl`. The files are then replayed into
//! `hep-server run`, and the QoS of each call that the API gives must hold, stream by
//! stream, the loss that rtpengine's report blocks said: `fraction_lost / 256` and
//! `packets_lost` of each block.
//!
//! Needs root (sipp plays its RTP over a raw socket; the loss needs a network namespace).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use super::peers::Tool;
use super::proc::{self, Proc};
use super::{Check, Ctx, Dir, ours};

/// The recipe and what it runs, compiled in.
const ASSETS: &[(&str, &str)] = &[
    (
        "run-rtpengine.sh",
        include_str!("../../interop/rtpengine/run-rtpengine.sh"),
    ),
    (
        "kamailio-rtpengine.cfg",
        include_str!("../../interop/rtpengine/kamailio-rtpengine.cfg"),
    ),
    (
        "sipp-uac-rtp.xml",
        include_str!("../../interop/rtpengine/sipp-uac-rtp.xml"),
    ),
    (
        "sipp-uas-rtp.xml",
        include_str!("../../interop/rtpengine/sipp-uas-rtp.xml"),
    ),
    (
        "make-rtp-pcap.py",
        include_str!("../../interop/rtpengine/make-rtp-pcap.py"),
    ),
    (
        "capture.py",
        include_str!("../../interop/rtpengine/capture.py"),
    ),
    (
        "hepdump.py",
        include_str!("../../interop/rtpengine/hepdump.py"),
    ),
];

/// Calls, their length (s) and the loss (%) on each rtpengine's media ports.
const CALLS: &str = "2";
const SECONDS: &str = "20";
const LOSS_PCT: &str = "5";
/// The recipe's own bound is `SECONDS + CALLS + 40`; this one is over it.
const RECIPE_MAX: Duration = Duration::from_secs(120);

/// The check.
pub(crate) fn checks() -> Vec<Check> {
    vec![Check::new(
        "rtpengine --homer",
        Dir::PeerToOurs,
        "3",
        "udp (RTCP JSON, 5% loss)",
        &[Tool::Kamailio, Tool::Sipp, Tool::Rtpengine],
        loss_agrees,
    )]
}

/// One report block as rtpengine sent it: (Call-ID, `ssrc:0x...`, loss %, packets lost).
type Block = (String, String, f64, i64);

fn loss_agrees(ctx: &Ctx) -> Result<String> {
    ensure!(
        super::peers::is_root(),
        "needs root: sipp plays RTP over a raw socket and the loss runs in a network namespace"
    );
    let recipe = ctx.subdir("recipe")?;
    for (name, text) in ASSETS {
        fs::write(recipe.join(name), text)?;
    }
    let out = ctx.dir.join("capture");
    let run = proc::output(
        "bash",
        &[
            recipe
                .join("run-rtpengine.sh")
                .to_string_lossy()
                .into_owned(),
            out.to_string_lossy().into_owned(),
            "-n".into(),
            CALLS.into(),
            "-s".into(),
            SECONDS.into(),
            "-S".into(),
            "-l".into(),
            LOSS_PCT.into(),
        ],
        None,
        RECIPE_MAX,
    )?;
    fs::write(
        ctx.dir.join("recipe.log"),
        [&run.stdout[..], &run.stderr[..]].concat(),
    )?;
    ensure!(
        run.status.success(),
        "the recipe failed ({}): {}",
        run.status,
        ours::last_line(&run.stdout)
    );
    let theirs = blocks(&ours::read_json_lines(&out.join("rtcp.jsonl"))?)?;
    ensure!(
        !theirs.is_empty(),
        "rtpengine sent no report block (see {})",
        out.display()
    );
    let mut files: Vec<PathBuf> = fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hep"))
        .collect();
    files.sort();

    // Ours: the captured datagrams replayed into `hep-server run`, read back by the API.
    let (udp, http) = (ctx.ports.free()?, ctx.ports.free()?);
    let store = ctx.dir.join("store");
    let program = ctx.hep_server.to_string_lossy().into_owned();
    let mut server = Proc::start(
        "hep-server run",
        &program,
        &[
            "run".to_owned(),
            "--listen".to_owned(),
            format!("hep_udp:127.0.0.1:{udp}"),
            "--output".to_owned(),
            format!("store:{}", store.display()),
            "--http".to_owned(),
            format!("127.0.0.1:{http}"),
        ],
        &ctx.dir.join("hep-server.log"),
        Duration::from_secs(120),
    )?;
    proc::wait_for("hep-server to listen", Duration::from_secs(10), || {
        server.ensure_running()?;
        Ok(proc::udp_bound(udp) && proc::tcp_listening(http))
    })?;
    ours::replay_udp(&files, udp)?;
    let calls: BTreeMap<&str, usize> = theirs.iter().fold(BTreeMap::new(), |mut m, b| {
        *m.entry(b.0.as_str()).or_default() += 1;
        m
    });
    let mut mine: Vec<Block> = Vec::new();
    for (&call, &n) in &calls {
        let mut got = Vec::new();
        proc::wait_for(
            &format!("{n} RTCP reports of call {call} in the API"),
            Duration::from_secs(15),
            || {
                server.ensure_running()?;
                got = match call_blocks(http, call) {
                    Ok(b) => b,
                    Err(_) => return Ok(false),
                };
                Ok(got.len() >= n)
            },
        )?;
        mine.extend(got);
    }
    server.stop();

    let key = |b: &Block| (b.0.clone(), b.1.clone(), (b.2 * 1e6).round() as i64, b.3);
    let mut a: Vec<_> = theirs.iter().map(key).collect();
    let mut b: Vec<_> = mine.iter().map(key).collect();
    a.sort();
    b.sort();
    if a != b {
        bail!(
            "the loss we show differs from rtpengine's report blocks: theirs {theirs:?}, ours {mine:?}"
        );
    }
    let lossy = theirs.iter().filter(|b| b.2 > 0.0).count();
    ensure!(
        lossy > 0,
        "no report block shows loss: the {LOSS_PCT}% drop did not happen"
    );
    let max = theirs.iter().map(|b| b.2).fold(0.0, f64::max);
    let lost: i64 = theirs.iter().map(|b| b.3).max().unwrap_or(0);
    Ok(format!(
        "{} report blocks of {} calls (from {} HEP packets): each stream's loss % and packets lost \
         equal rtpengine's ({lossy} with loss, up to {max:.2} % and {lost} packets)",
        theirs.len(),
        calls.len(),
        files.len()
    ))
}

/// The report blocks of the recipe's `rtcp.jsonl` (its own JSON reading).
fn blocks(lines: &[Value]) -> Result<Vec<Block>> {
    let mut out = Vec::new();
    for line in lines {
        let call = line["correlation_id"]
            .as_str()
            .context("a type-5 packet without correlation id")?;
        let Some(reports) = line["json"]["report_blocks"].as_array() else {
            continue;
        };
        for r in reports {
            let ssrc = r["source_ssrc"].as_u64().context("source_ssrc")?;
            let fraction = r["fraction_lost"].as_u64().context("fraction_lost")?;
            let lost = r["packets_lost"].as_i64().context("packets_lost")?;
            out.push((
                call.to_owned(),
                format!("ssrc:{ssrc:#010x}"),
                fraction as f64 * 100.0 / 256.0,
                lost,
            ));
        }
    }
    Ok(out)
}

/// The RTCP samples of `call` in `GET /api/v1/calls/{call}`'s `qos`.
fn call_blocks(port: u16, call: &str) -> Result<Vec<Block>> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let path: String = call
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    write!(
        conn,
        "GET /api/v1/calls/{path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").context("no end of headers")?;
    ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let v: Value = serde_json::from_str(body)?;
    let mut out = Vec::new();
    for s in v["qos"]["streams"].as_array().into_iter().flatten() {
        if s["source"] != "rtcp" {
            continue;
        }
        let stream = s["stream"].as_str().unwrap_or_default();
        for sample in s["samples"].as_array().into_iter().flatten() {
            out.push((
                call.to_owned(),
                stream.to_owned(),
                sample["loss_pct"].as_f64().unwrap_or(f64::NAN),
                sample["packets_lost"].as_i64().unwrap_or(i64::MIN),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_is_compiled_in_whole() {
        for (name, text) in ASSETS {
            assert!(!text.is_empty(), "{name}");
        }
        let script = ASSETS[0].1;
        assert!(
            script.contains("generate") || script.contains("rtpengine"),
            "{script}"
        );
    }

    #[test]
    fn blocks_read_fraction_lost_as_a_256th() {
        let line: Value = serde_json::json!({"correlation_id": "c1", "json": {"report_blocks": [
            {"source_ssrc": 1511911437u32, "fraction_lost": 23, "packets_lost": 24}]}});
        let b = blocks(&[line]).unwrap();
        assert_eq!(
            b,
            [("c1".to_owned(), "ssrc:0x5a1df00d".to_owned(), 8.984375, 24)]
        );
    }
}
