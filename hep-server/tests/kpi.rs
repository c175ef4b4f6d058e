//! SIP KPIs end to end: a call Kamailio proxied (the HEPv2 vectors, both sides of the
//! proxy captured) through `hep-server run`, and the `hep_sip_*` metrics it gives,
//! worked out by hand from the vectors' capture times (hep-testkit/testdata/kamailio/
//! SUMMARY.txt).

mod common;

use std::time::Duration;

use common::{Server, send_udp, set_bytes, test_dir, wait_for};

const WAIT: Duration = Duration::from_secs(10);

fn server(name: &str, kpi: &str) -> Server {
    Server::with_config(
        &test_dir(name),
        &format!(
            "listen = [\"hep_udp:127.0.0.1:0\"]\noutputs = [\"null\"]\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n{kpi}"
        ),
    )
}

/// The value of one series (`name{labels}` as printed), as text.
fn series<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.split(['{', ' ']).next() == Some(name))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v)
}

#[test]
fn a_proxied_call_is_one_attempt_with_its_delays_from_the_capture_times() {
    // Kamailio listened on 127.0.0.1:5060; the caller (5061) sent its INVITE there.
    let server = server(
        "kpi-call",
        "[kpi]\nnodes = [2001]\n[aliases]\n\"127.0.0.1:5060\" = \"kamailio\"\n",
    );
    send_udp(server.udp(), &set_bytes("v2-udp-0"));
    let m = wait_for("the call's BYE counted", WAIT, || {
        let m = server.metrics();
        m.0.contains("hep_sip_hangups_total{").then_some(m)
    });
    let labels = [
        ("target", "kamailio"),
        ("direction", "out"),
        ("node", "2001"),
    ];
    assert_eq!(
        m.get("hep_sip_invites_total", &labels),
        1,
        "two INVITEs seen, one call"
    );
    assert_eq!(
        m.get("hep_sip_call_results_total", &[("status", "200")]),
        1,
        "two 200s seen, one result"
    );
    assert_eq!(m.get("hep_sip_hangups_total", &[("by", "caller")]), 1);
    // INVITE at .485110, first 180 at .486360, first 200 at .487448, first BYE at
    // .492111 (SUMMARY.txt).
    assert_eq!(series(&m.0, "hep_sip_srd_seconds_sum"), Some("0.001250"));
    assert_eq!(series(&m.0, "hep_sip_pdd_seconds_sum"), Some("0.001250"));
    assert_eq!(series(&m.0, "hep_sip_answer_seconds_sum"), Some("0.002338"));
    assert_eq!(
        series(&m.0, "hep_sip_call_duration_seconds_sum"),
        Some("0.004663")
    );
    assert_eq!(m.get("hep_sip_srd_seconds_count", &[]), 1);
    assert_eq!(
        m.get("hep_sip_srd_seconds_bucket", &[("le", "0.01")]),
        1,
        "1.25 ms is in the first bucket"
    );
    assert!(!m.0.contains("hep_sip_retransmissions_total{"), "{}", m.0);

    // The same datagrams again: each one a retransmission, nothing new.
    send_udp(server.udp(), &set_bytes("v2-udp-0"));
    let m = wait_for("the copies counted", WAIT, || {
        let m = server.metrics();
        m.0.contains("hep_sip_retransmissions_total{")
            .then_some(())
            .and_then(|()| {
                let n = m.get("hep_sip_retransmissions_total", &[]);
                (n == 12).then_some(m)
            })
    });
    assert_eq!(
        m.get(
            "hep_sip_retransmissions_total",
            &[("method", "INVITE"), ("message", "request")]
        ),
        2
    );
    assert_eq!(m.get("hep_sip_invites_total", &[]), 1);
    assert_eq!(m.get("hep_sip_call_results_total", &[]), 1);
    assert_eq!(m.get("hep_sip_kpi_lagged_total", &[]), 0);
    server.stop();
}

#[test]
fn with_kpi_off_there_are_no_sip_metrics() {
    let server = server("kpi-off", "[kpi]\nenabled = false\n");
    send_udp(server.udp(), &set_bytes("v2-udp-0"));
    wait_for("the messages counted", WAIT, || {
        let m = server.metrics();
        (m.get("hep_delivered_total", &[("output", "null")]) == 12).then_some(())
    });
    assert!(!server.metrics().0.contains("hep_sip_"));
    server.stop();
}

#[test]
fn the_grafana_dashboard_uses_only_metrics_the_server_serves() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/hep-sip-kpis.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");

    let server = server("kpi-grafana", "");
    let served = server.metrics().0;
    let families: Vec<&str> = served
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for expr in &exprs {
        let mut rest = *expr;
        while let Some(at) = rest.find("hep_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                families.contains(&family),
                "the dashboard asks for {name}, which the server does not serve ({expr})"
            );
            rest = &rest[at + name.len()..];
        }
    }
    server.stop();
}

#[test]
fn the_tracker_reads_past_one_batch_and_a_scrape_still_answers() {
    // More messages than one batch of the tracker (256) and a sweep after them: the first
    // version locked its metrics twice there and every later scrape hung.
    let server = server("kpi-batches", "");
    // One burst: the tracker finds more than a batch waiting.
    let burst: Vec<Vec<u8>> = (0..26).flat_map(|_| set_bytes("v2-udp-0")).collect();
    send_udp(server.udp(), &burst);
    let m = wait_for("312 messages read by the tracker", WAIT, || {
        let m = server.metrics();
        let copies =
            m.0.contains("hep_sip_retransmissions_total{")
                .then(|| m.get("hep_sip_retransmissions_total", &[]))?;
        (copies == 25 * 12).then_some(m)
    });
    assert_eq!(m.get("hep_sip_invites_total", &[]), 1);
    // Past the tracker's sweep (once a second): the scrape answers.
    std::thread::sleep(Duration::from_millis(1_200));
    assert_eq!(server.metrics().get("hep_sip_calls_tracked", &[]), 1);
    server.stop();
}
