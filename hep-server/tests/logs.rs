//! What `hep-server run` says on stderr (docs/CONFIG.md, "`[log]`" and "Drops"): every
//! drop is logged, at `warn`, by reason, naming its source and how many; a level that is
//! not one is refused; in JSON mode every line is JSON; each listener is announced once.
//!
//! The harness is `tests/common` (the same as `tests/run.rs`): a server per test on
//! loopback with port 0, every wait bounded.

use std::process::Command;

use bytes::Bytes;
use hep_proto::{HepMessage, HepVersion};
use serde_json::Value;

mod common;

use common::*;

/// An `[auth]` server on loopback UDP with a `null` output, logging as `format` says.
fn auth_config(format: &str) -> String {
    format!(
        "listen = [\"hep_udp:127.0.0.1:0\", \"hep_tcp:127.0.0.1:0\"]\noutputs = [\"null\"]\n\
         [log]\nformat = \"{format}\"\n[auth]\nkey = \"hep-secret\"\n"
    )
}

/// The 12 datagrams of `v3-udp-` (no auth key) and one with a wrong key.
fn unauthorised() -> Vec<Vec<u8>> {
    let mut datagrams = set_bytes("v3-udp-");
    assert_eq!(datagrams.len(), 12);
    let mut wrong = HepMessage::decode(Bytes::from(datagrams[0].clone())).unwrap();
    wrong.auth_key = Some(Bytes::from_static(b"guess"));
    datagrams.push(wrong.encode(HepVersion::V3).unwrap().to_vec());
    datagrams
}

/// `run` with `config`, whatever `RUST_LOG` says.
fn start(dir: &std::path::Path, config: &str) -> Server {
    let path = dir.join("hep-server.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config", path.to_str().unwrap()])
        .env_remove("RUST_LOG");
    Server::spawn(cmd)
}

/// The value of `key=VALUE` in a text log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split_whitespace().next()
}

#[test]
fn every_drop_is_warned_with_its_reason_source_and_count() {
    let dir = test_dir("logs-drops");
    let server = start(&dir, &auth_config("text"));
    let udp = server.udp();
    let client = send_udp(server.udp(), &unauthorised());
    // And one that is not HEP at all: refused by the listener.
    send_udp(server.udp(), &[b"HE".to_vec()]);

    // The first drop of a reason is logged at once (within the watcher's second).
    let line = server.wait_log("reason=missing_key", 1);
    assert!(line.contains(" WARN "), "{line}");
    assert_eq!(field(&line, "stage"), Some("auth"), "{line}");
    assert_eq!(
        field(&line, "peer"),
        Some(client.to_string().as_str()),
        "the source: the agent's address; {line}"
    );
    assert_eq!(
        field(&line, "listener"),
        Some(format!("hep_udp:{}", server.udp()).as_str()),
        "{line}"
    );
    assert!(
        field(&line, "count").is_some_and(|n| n.parse::<u64>().unwrap() >= 1),
        "{line}"
    );

    let refused = server.wait_log("reason=unknown_version", 1);
    assert!(refused.contains(" WARN "), "{refused}");
    assert_eq!(field(&refused, "stage"), Some("listener"), "{refused}");
    assert_eq!(
        field(&refused, "listener"),
        Some(format!("hep_udp:{}", server.udp()).as_str()),
        "{refused}"
    );
    assert_eq!(field(&refused, "count"), Some("1"), "{refused}");

    let stopped = server.stop();
    assert_eq!(
        (stopped.counts.dropped, stopped.counts.rejected),
        (13, 1),
        "{}",
        stopped.stderr
    );
    // Every drop is in a warning: the counts since the last line add up to the total
    // (what the rate limit held back is said at exit at the latest).
    let sum = |reason: &str| -> u64 {
        stopped
            .stderr
            .lines()
            .filter(|l| l.contains(" WARN ") && field(l, "reason") == Some(reason))
            .map(|l| field(l, "count").unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(
        (sum("missing_key"), sum("wrong_key")),
        (12, 1),
        "{}",
        stopped.stderr
    );
    // The exit summary lists the drops by reason.
    for want in [
        "hep-server: dropped 12: missing_key at auth".to_owned(),
        "hep-server: dropped 1: wrong_key at auth".to_owned(),
        format!("hep-server: rejected 1: unknown_version at listener hep_udp:{udp}"),
    ] {
        assert!(
            stopped.stderr.contains(&want),
            "`{want}` in\n{}",
            stopped.stderr
        );
    }
}

#[test]
fn in_json_mode_every_line_is_json() {
    let dir = test_dir("logs-json");
    let server = start(
        &dir,
        &format!(
            "{}[metrics]\nlisten = \"127.0.0.1:0\"\n",
            auth_config("json")
        ),
    );
    assert!(
        server.metrics.is_some(),
        "the metrics line is read in JSON too"
    );
    send_udp(server.udp(), &unauthorised());
    server.wait_log("missing_key", 1);
    let stopped = server.stop();
    assert!(stopped.stdout.is_empty(), "{}", stopped.stdout);
    let lines: Vec<Value> = stopped
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert_eq!(messages.len(), lines.len(), "every line has a message");
    for want in [
        "listening on hep_udp:",
        "listening on hep_tcp:",
        "metrics on http://",
        "writing to null",
        "shutting down",
        "received 13, decoded 13",
        "dropped 12: missing_key at auth",
    ] {
        assert!(
            messages.iter().any(|m| m.starts_with(want)),
            "`{want}` in\n{}",
            stopped.stderr
        );
    }
    // The summary's figures are fields too.
    let summary = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .unwrap()
                .starts_with("received ")
        })
        .unwrap();
    assert_eq!(summary["fields"]["dropped"], 13, "{summary}");
    // And so are a drop warning's.
    let warning = lines
        .iter()
        .find(|l| l["level"] == "WARN" && l["fields"]["reason"] == "missing_key")
        .unwrap_or_else(|| panic!("a missing_key warning in\n{}", stopped.stderr));
    assert_eq!(warning["fields"]["stage"], "auth", "{warning}");
    assert!(
        warning["fields"]["count"].as_u64().unwrap() >= 1,
        "{warning}"
    );
}

#[test]
fn each_listener_is_announced_once() {
    let dir = test_dir("logs-announce");
    let server = start(&dir, &auth_config("text"));
    let (udp, tcp) = (server.udp(), server.tcp());
    let stopped = server.stop();
    for addr in [udp, tcp] {
        let said: Vec<&str> = stopped
            .stderr
            .lines()
            .filter(|l| l.contains("listening") && l.contains(&addr.to_string()))
            .collect();
        assert_eq!(said.len(), 1, "{addr} announced once:\n{}", stopped.stderr);
    }
}

#[test]
fn a_rust_log_that_is_not_a_level_is_ignored_and_said_so() {
    let dir = test_dir("logs-rust-log");
    let path = dir.join("hep-server.toml");
    std::fs::write(&path, auth_config("text")).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "warning");
    let server = Server::spawn(cmd);
    send_udp(server.udp(), &unauthorised());
    // Not silenced: `[log] level` (info) applies.
    server.wait_log("reason=missing_key", 1);
    let stopped = server.stop();
    assert!(
        stopped.stderr.contains(
            "RUST_LOG=\"warning\" is ignored, [log] level applies: \"warning\" is not a level"
        ),
        "{}",
        stopped.stderr
    );
}

#[test]
fn a_level_that_is_not_one_is_refused_by_check_config_and_run() {
    let dir = test_dir("logs-level");
    let path = dir.join("warning.toml");
    std::fs::write(&path, "[log]\nlevel = \"warning\"\n").unwrap();
    let p = path.to_str().unwrap();
    for args in [
        vec!["check-config", "--config", p],
        vec!["run", "--config", p],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success(), "{args:?}: {err}");
        for want in [
            format!("{p}:2:9: key `log.level`"),
            "\"warning\"".to_owned(),
            "error, warn, info, debug, trace".to_owned(),
            "did you mean \"warn\"".to_owned(),
        ] {
            assert!(err.contains(&want), "{args:?}: `{want}` in {err}");
        }
    }
}
