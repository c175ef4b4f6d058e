//! The call-flow ladder of a real call, against a golden file.
//!
//! The Kamailio sipp call (`hep-testkit/testdata/kamailio/v3-udp-*.hep`: INVITE from
//! 5061 through the proxy at 5060 to 5070, 180, 200, ACK, BYE, 200), decoded with
//! hep-proto, labelled by [`arrow_of`] and drawn without color, must match
//! `tests/golden/ladder-kamailio-v3.txt`. After a deliberate change of the drawing,
//! regenerate the file with `UPDATE_GOLDEN=1 cargo test -p hep-server --test ladder` and
//! look at it before committing it.

use std::path::Path;

use hep_proto::HepMessage;
use hep_server::formats::ladder::{Arrow, LadderStyle, arrow_of, render};
use hep_testkit::vectors::kamailio;

fn kamailio_flow(prefix: &str) -> Vec<Arrow> {
    let files = kamailio(prefix);
    assert_eq!(files.len(), 12, "the {prefix} call has 12 messages");
    files
        .into_iter()
        .map(|(name, bytes)| {
            let msg = HepMessage::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            arrow_of(&msg)
        })
        .collect()
}

fn draw(arrows: &[Arrow], style: LadderStyle) -> String {
    let mut out = Vec::new();
    render(arrows, &style, &mut out).expect("writing to a Vec");
    String::from_utf8(out).expect("the ladder is UTF-8")
}

fn check_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with UPDATE_GOLDEN=1 cargo test -p hep-server --test ladder",
            path.display()
        )
    });
    assert!(
        actual == expected,
        "the ladder differs from {}; if the change is intended, regenerate it with \
         UPDATE_GOLDEN=1 cargo test -p hep-server --test ladder\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn the_kamailio_call_draws_as_its_golden_ladder() {
    let flow = kamailio_flow("v3-udp-");
    check_golden(
        "ladder-kamailio-v3.txt",
        &draw(&flow, LadderStyle::default()),
    );
}

#[test]
fn the_kamailio_call_reads_as_a_call_through_a_proxy() {
    let flow = kamailio_flow("v3-udp-");
    let labels: Vec<&str> = flow.iter().map(|a| a.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "INVITE",
            "INVITE",
            "180 Ringing",
            "180 Ringing",
            "200 OK",
            "200 OK",
            "ACK",
            "ACK",
            "BYE",
            "BYE",
            "200 OK",
            "200 OK"
        ]
    );
    assert!(
        flow.iter()
            .all(|a| a.call_id == flow[0].call_id && !a.call_id.is_empty())
    );
    let text = draw(&flow, LadderStyle::default());
    let header = text.lines().nth(4).expect("a header row");
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns,
        ["127.0.0.1:5061", "127.0.0.1:5060", "127.0.0.1:5070"]
    );
    assert!(
        text.starts_with("12 messages between 3 addresses, first at 2026-11-26T05:21:49.909050Z\n")
    );
    // The last 200 OK came 9.314 ms after the INVITE, 1.278 ms after the one before it.
    let last = text.lines().last().expect("arrows");
    assert!(
        last.trim_start().starts_with("+0.009314  Δ0.001278 "),
        "{last}"
    );
}

#[test]
fn the_ipv6_call_draws_like_the_ipv4_call() {
    let v4 = draw(&kamailio_flow("v3-udp-"), LadderStyle::default());
    let v6 = draw(&kamailio_flow("v3-udp-ipv6-"), LadderStyle::default());
    assert!(
        v6.contains("[::1]:5061") && v6.contains("[::1]:5070"),
        "{v6}"
    );
    // Same shape: the arrows, without the margin, are the same lines.
    let arrows = |text: &str| -> Vec<String> {
        text.lines()
            .skip_while(|l| !l.contains('┬'))
            .skip(1)
            .map(|l| l[l.find(['│', '├']).expect("a lifeline")..].to_owned())
            .collect()
    };
    assert_eq!(arrows(&v4), arrows(&v6));
}

#[test]
fn log_messages_join_the_call_they_correlate_to() {
    let flow: Vec<Arrow> = kamailio("v3-udp-hlog-authkey-")
        .into_iter()
        .map(|(name, bytes)| {
            arrow_of(&HepMessage::decode(bytes).unwrap_or_else(|e| panic!("{name}: {e}")))
        })
        .collect();
    let logs: Vec<&Arrow> = flow.iter().filter(|a| a.label == "log").collect();
    assert_eq!(logs.len(), 3, "kamailio hlog() for INVITE, ACK and BYE");
    assert!(
        logs.iter()
            .all(|a| a.call_id == flow[0].call_id && a.dst == "127.0.0.1:9060")
    );
    let text = draw(&flow, LadderStyle::default());
    assert!(!text.contains("[1]"), "one leg, no markers:\n{text}");
    assert!(text.contains("─ log ─"), "{text}");
}
