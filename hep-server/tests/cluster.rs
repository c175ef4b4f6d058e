//! Search across the cluster (`[cluster] peers`) with the real binary: three
//! `hep-server run` nodes on loopback, each with its own store and its own calls, each
//! listing the two others as peers; every search asked through one node with a plain
//! HTTP/1.1 client.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use hep_proto::{HepMessage, HepVersion, ProtoType};
use serde_json::Value;

use common::*;

/// Capture times: node 0's call first, then node 1's, then node 2's (a minute apart).
const T0: u32 = 1_795_670_509;
const DAY: &str = "since=2026-11-26&until=2026-11-27";
/// The token the nodes present to each other: every capture id of the tests.
const CLUSTER_TOKEN: &str = "cluster-token-of-the-test-nodes";
/// An operator's token: every capture id.
const OPS: &str = "ops-token-every-capture-id";
/// A tenant's token: capture id 2001 only.
const TENANT: &str = "tenant-token-capture-id-2001";

/// Node `i`'s call: its Call-ID and capture id (node 1's is the other tenant's).
fn call_of(i: usize) -> (String, u32) {
    (
        format!("call-of-node-{i}@192.0.2.{i}"),
        if i == 1 { 2002 } else { 2001 },
    )
}

// ===== a tiny HTTP/1.1 client =====

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Answer {
    http_request(addr, "GET", target, headers)
}

fn with_token(addr: SocketAddr, target: &str, token: &str) -> Answer {
    get(
        addr,
        target,
        &[("Authorization", &format!("Bearer {token}"))],
    )
}

fn ids(v: &Value) -> Vec<String> {
    v["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls in {v}"))
        .iter()
        .map(|c| c["call_id"].as_str().unwrap().to_owned())
        .collect()
}

// ===== the nodes =====

/// A call of three messages (INVITE, 200, BYE) of `capture_id`, captured at `ts`.
fn call(call_id: &str, capture_id: u32, ts: u32) -> Vec<Vec<u8>> {
    let (a, b) = ("192.0.2.10:5060", "192.0.2.20:5060");
    let sip = |ts: u32, src: &str, dst: &str, first: &str, cseq: &str| {
        HepMessage::builder()
            .src(src.parse().unwrap())
            .dst(dst.parse().unwrap())
            .timestamp(ts, 0)
            .proto_type(ProtoType::Sip)
            .capture_id(capture_id)
            .payload(format!(
                "{first}\r\nFrom: <sip:alice@example.com>;tag=f\r\nTo: <sip:bob@example.com>\r\n\
                 Call-ID: {call_id}\r\nCSeq: {cseq}\r\n\r\n"
            ))
            .build()
            .encode(HepVersion::V3)
            .unwrap()
            .to_vec()
    };
    vec![
        sip(ts, a, b, "INVITE sip:bob@example.com SIP/2.0", "1 INVITE"),
        sip(ts + 1, b, a, "SIP/2.0 200 OK", "1 INVITE"),
        sip(ts + 5, a, b, "BYE sip:bob@example.com SIP/2.0", "2 BYE"),
    ]
}

/// Free loopback ports (bound, read, released): each node must know the others' API
/// addresses before any starts.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

struct Node {
    server: Server,
    api: SocketAddr,
    config: std::path::PathBuf,
}

/// `hep-server search ARGS` with node `node`'s config: exit code, stdout, stderr.
fn search(node: &Node, args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = std::process::Command::new(BIN)
        .arg("search")
        .arg("--config")
        .arg(&node.config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `n` nodes, node `i` on `ports[i]` with its own store and call, each listing every
/// other port of `ports` (and `extra_peers`) as peers, deadline `timeout_ms`; returns
/// once each finds its own call.
fn cluster(name: &str, n: usize, extra_peers: &[String], timeout_ms: u64) -> Vec<Node> {
    let ports = free_ports(n);
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let dir = test_dir(&format!("{name}-{i}"));
        let mut peers: Vec<String> = ports
            .iter()
            .filter(|p| *p != port)
            .map(|p| format!("\"http://127.0.0.1:{p}\""))
            .collect();
        peers.extend(extra_peers.iter().map(|p| format!("\"{p}\"")));
        let token_file = dir.join("cluster.token");
        std::fs::write(&token_file, format!("{CLUSTER_TOKEN}\n")).unwrap();
        let text = format!(
            "listen = [\"hep_udp:127.0.0.1:0\"]\n\
             outputs = [\"store:{store}\"]\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [store]\nmax_age_hours = 0\nmin_free_mb = 0\n\
             [http.tokens]\n\"{CLUSTER_TOKEN}\" = [2001, 2002]\n\"{OPS}\" = [2001, 2002]\n\
             \"{TENANT}\" = [2001]\n\
             [cluster]\nname = \"node-{i}\"\npeers = [{peers}]\n\
             token_file = \"{token}\"\ntimeout_ms = {timeout_ms}\n",
            store = dir.join("store").display(),
            peers = peers.join(", "),
            token = token_file.display(),
        );
        let path = dir.join("hep-server.toml");
        std::fs::write(&path, text).unwrap();
        let http = format!("127.0.0.1:{port}");
        let server = Server::run(&["--config", path.to_str().unwrap(), "--http", &http]);
        let (id, capture_id) = call_of(i);
        send_udp(server.udp(), &call(&id, capture_id, T0 + 60 * i as u32));
        nodes.push(Node {
            server,
            api: http.parse().unwrap(),
            config: path,
        });
    }
    for (i, node) in nodes.iter().enumerate() {
        let (id, _) = call_of(i);
        wait_for(&format!("node {i} to store its call"), PROCESS_WAIT, || {
            let a = get(
                node.api,
                &format!("/api/v1/calls/{id}"),
                &[
                    ("Authorization", &format!("Bearer {OPS}")),
                    ("X-Hep-Cluster", "local"),
                ],
            );
            (a.status == 200).then_some(())
        });
    }
    nodes
}

fn stop(nodes: Vec<Node>) {
    for n in nodes {
        n.server.stop();
    }
}

// ===== the tests =====

#[test]
fn a_search_through_any_node_finds_every_call_newest_first_each_naming_its_node() {
    let nodes = cluster("cluster-search", 3, &[], 2_000);
    let newest_first: Vec<String> = (0..3).rev().map(|i| call_of(i).0).collect();
    for (i, node) in nodes.iter().enumerate() {
        let v = with_token(node.api, &format!("/api/v1/calls?{DAY}"), OPS).json();
        assert_eq!(ids(&v), newest_first, "through node {i}: {v}");
        assert_eq!(v["unanswered"], serde_json::json!([]), "{v}");
        assert_eq!(v["next"], Value::Null);
        for row in v["calls"].as_array().unwrap() {
            let holder: usize = row["call_id"].as_str().unwrap()[13..14].parse().unwrap();
            assert_eq!(row["node"], format!("node-{holder}"), "{row}");
            if holder == i {
                assert_eq!(row["peer"], Value::Null, "{row}");
            } else {
                let url = format!("http://{}", nodes[holder].api);
                assert_eq!(row["peer"], url.as_str(), "{row}");
            }
            assert_eq!(row["messages"], 3, "{row}");
        }
    }
    // A page at a time through node 0: each call once, newest first, then no cursor.
    let mut seen = Vec::new();
    let mut target = format!("/api/v1/calls?limit=1&{DAY}");
    for _ in 0..10 {
        let v = with_token(nodes[0].api, &target, OPS).json();
        assert!(v["calls"].as_array().unwrap().len() <= 1, "{v}");
        seen.extend(ids(&v));
        match v["next"].as_str() {
            Some(next) => target = format!("/api/v1/calls?limit=1&{DAY}&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    // A node that keeps no store and only searches its peers.
    let front_dir = test_dir("cluster-search-front");
    let peers: Vec<String> = nodes
        .iter()
        .map(|n| format!("\"http://{}\"", n.api))
        .collect();
    let front_config = front_dir.join("hep-server.toml");
    std::fs::write(
        &front_config,
        format!(
            "listen = [\"hep_udp:127.0.0.1:0\"]\noutputs = [\"null\"]\n\
             [cluster]\nname = \"front\"\npeers = [{}]\ntoken = \"{CLUSTER_TOKEN}\"\n",
            peers.join(", ")
        ),
    )
    .unwrap();
    let front = Server::run(&["--config", front_config.to_str().unwrap()]);
    let front_api = front.http.unwrap();
    let v = get(front_api, &format!("/api/v1/calls?{DAY}"), &[]).json();
    assert_eq!(ids(&v), newest_first, "{v}");
    let view = get(front_api, &format!("/api/v1/calls/{}", call_of(1).0), &[]);
    assert_eq!(view.status, 200);
    assert_eq!(view.json()["node"], "node-1");
    front.stop();
    // Filters go with the query: a user no call has finds nothing anywhere.
    let none = with_token(
        nodes[1].api,
        &format!("/api/v1/calls?user=nobody&{DAY}"),
        OPS,
    )
    .json();
    assert_eq!(ids(&none), Vec::<String>::new());
    stop(nodes);
}

#[test]
fn a_calls_view_and_its_exports_come_whole_from_the_node_that_holds_it() {
    let nodes = cluster("cluster-view", 3, &[], 2_000);
    let (id, _) = call_of(2);
    let local = [
        ("Authorization", format!("Bearer {OPS}")),
        ("X-Hep-Cluster", "local".into()),
    ];
    let local: Vec<(&str, &str)> = local.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let own = get(nodes[2].api, &format!("/api/v1/calls/{id}"), &local).json();
    assert_eq!(own["messages"].as_array().unwrap().len(), 3);
    // Node 0 does not hold it: with the loop guard it says so, without it finds it.
    let here = get(nodes[0].api, &format!("/api/v1/calls/{id}"), &local);
    assert_eq!(here.status, 404);
    let via = with_token(nodes[0].api, &format!("/api/v1/calls/{id}"), OPS);
    assert_eq!(via.status, 200);
    let via = via.json();
    assert_eq!(via["node"], "node-2");
    assert_eq!(via["peer"], format!("http://{}", nodes[2].api).as_str());
    let (a, b) = (
        own["messages"].as_array().unwrap(),
        via["messages"].as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (m, n) in a.iter().zip(b) {
        assert_eq!(m["payload"], n["payload"]);
        // Its id routes back to the node that holds it.
        assert_eq!(
            n["id"].as_str().unwrap(),
            format!("{}@{}", m["id"].as_str().unwrap(), nodes[2].api)
        );
    }
    let msg_id = b[1]["id"].as_str().unwrap();
    let msg = with_token(nodes[0].api, &format!("/api/v1/messages/{msg_id}"), OPS);
    assert_eq!(msg.status, 200);
    assert_eq!(msg.json()["payload"], a[1]["payload"]);
    assert_eq!(msg.json()["id"], msg_id);
    // A message id naming a host that is not a peer is not fetched.
    let foreign = with_token(nodes[0].api, "/api/v1/messages/1-2-3@192.0.2.99:80", OPS);
    assert_eq!(foreign.status, 404);
    // The pcap and the ladder: byte for byte what the holder writes.
    for export in ["pcap", "text?format=ladder"] {
        let own = get(
            nodes[2].api,
            &format!("/api/v1/calls/{id}/{export}"),
            &local,
        );
        let via = with_token(nodes[1].api, &format!("/api/v1/calls/{id}/{export}"), OPS);
        assert_eq!((own.status, via.status), (200, 200), "{export}");
        assert!(own.body.len() > 100, "{export}");
        assert_eq!(own.body, via.body, "{export}");
        assert_eq!(own.header("content-type"), via.header("content-type"));
        assert_eq!(via.header("x-hep-node"), Some("node-2"), "{export}");
    }
    // The command line: the same through the peers' APIs.
    let (code, out, err) = search(
        &nodes[0],
        &[
            "--call-id",
            &id,
            "--format",
            "pcap",
            "--output",
            "/dev/stdout",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let own_pcap = get(nodes[2].api, &format!("/api/v1/calls/{id}/pcap"), &local).body;
    assert_eq!(out, own_pcap, "the holder's pcap, byte for byte");
    let (code, out, err) = search(
        &nodes[0],
        &[
            "--since",
            "2026-11-26",
            "--until",
            "2026-11-27",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let records: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        records.len(),
        9,
        "three calls of three messages: {records:?}"
    );
    for i in 0..3 {
        let n = records
            .iter()
            .filter(|r| r["payload"].as_str().unwrap().contains(&call_of(i).0))
            .count();
        assert_eq!(n, 3, "node {i}'s call whole");
    }
    let (code, out, err) = search(
        &nodes[0],
        &[
            "--user",
            "alice",
            "--since",
            "2026-11-26",
            "--until",
            "2026-11-27",
            "--color",
            "never",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let ladder = String::from_utf8(out).unwrap();
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let head = format!(
            "== call {} on node-{i} (http://{}) ==",
            call_of(i).0,
            node.api
        );
        assert!(ladder.contains(&head), "{head} in\n{ladder}");
    }
    let (code, _, err) = search(&nodes[0], &["--call-id", "no-such-call"]);
    assert_eq!(code, 1, "{err}");
    // --local: this node's store only (node 0 does not hold node 2's call).
    let (code, _, err) = search(
        &nodes[0],
        &["--call-id", &id, "--local", "--format", "json"],
    );
    assert_eq!(code, 1, "{err}");
    // A Call-ID no node holds: every peer answered, so a plain 404.
    let nowhere = with_token(nodes[0].api, "/api/v1/calls/no-such-call", OPS);
    assert_eq!(nowhere.status, 404);
    stop(nodes);
}

#[test]
fn a_peer_that_does_not_answer_is_named_within_its_deadline() {
    // A peer that never answers (its connections wait in the kernel's backlog,
    // never accepted), and one that is stopped.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let mut nodes = cluster(
        "cluster-unanswered",
        3,
        std::slice::from_ref(&silent_url),
        500,
    );
    let stopped = nodes.pop().unwrap();
    let stopped_url = format!("http://{}", stopped.api);
    stopped.server.stop();
    let started = Instant::now();
    let v = with_token(nodes[0].api, &format!("/api/v1/calls?{DAY}"), OPS).json();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2_000), "took {took:?}");
    assert_eq!(ids(&v), [call_of(1).0, call_of(0).0], "{v}");
    let unanswered = v["unanswered"].as_array().unwrap();
    assert_eq!(unanswered.len(), 2, "{v}");
    let named = |url: &str| unanswered.iter().find(|u| u["peer"] == url).cloned();
    let stopped_entry = named(&stopped_url).unwrap_or_else(|| panic!("{v}"));
    assert!(
        stopped_entry["error"].as_str().unwrap().contains("connect"),
        "{v}"
    );
    let silent_entry = named(&silent_url).unwrap_or_else(|| panic!("{v}"));
    assert_eq!(silent_entry["error"], "no answer within 500 ms", "{v}");
    // The command line names them too, and says the results may be incomplete.
    let (code, out, err) = search(
        &nodes[0],
        &[
            "--since",
            "2026-11-26",
            "--until",
            "2026-11-27",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("peer {stopped_url} did not answer")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "peer {silent_url} did not answer: no answer within 500 ms"
        )),
        "{err}"
    );
    let records = String::from_utf8(out).unwrap();
    for i in 0..2 {
        assert!(
            records.contains(&call_of(i).0),
            "node {i}'s call: {records}"
        );
    }
    // A call only the stopped node holds: not "not found", but who did not answer.
    let lost = with_token(
        nodes[0].api,
        &format!("/api/v1/calls/{}", call_of(2).0),
        OPS,
    );
    assert_eq!(lost.status, 502);
    let e = lost.json();
    assert_eq!(e["error"]["code"], "peers_unanswered", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&stopped_url),
        "{e}"
    );
    assert!(
        e["unanswered"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["peer"] == stopped_url.as_str())
    );
    // Counted per peer: node 0 asked each twice (the list, then the call).
    let m = nodes[0].server.metrics();
    let count = |peer: &str, result: &str| {
        m.get(
            "hep_cluster_peer_requests_total",
            &[("peer", peer), ("result", result)],
        )
    };
    assert_eq!(count(&stopped_url, "error"), 2);
    assert_eq!(count(&silent_url, "timeout"), 2);
    assert_eq!(
        m.get("hep_cluster_peer_seconds_count", &[("peer", &silent_url)]),
        2
    );
    stop(nodes);
}

#[test]
fn a_limited_token_sees_no_other_capture_id_through_a_peer() {
    let nodes = cluster("cluster-tokens", 3, &[], 2_000);
    // The tenant reads capture id 2001: nodes 0 and 2's calls, not node 1's (2002),
    // whichever node it asks, although the cluster's token reads both.
    for node in &nodes {
        let v = with_token(node.api, &format!("/api/v1/calls?{DAY}"), TENANT).json();
        assert_eq!(ids(&v), [call_of(2).0, call_of(0).0], "{v}");
        let asked = with_token(
            node.api,
            &format!("/api/v1/calls?capture_id=2002&{DAY}"),
            TENANT,
        );
        assert_eq!(ids(&asked.json()), Vec::<String>::new());
        let view = with_token(node.api, &format!("/api/v1/calls/{}", call_of(1).0), TENANT);
        assert_eq!(view.status, 404, "{}", String::from_utf8_lossy(&view.body));
        let pcap = with_token(
            node.api,
            &format!("/api/v1/calls/{}/pcap", call_of(1).0),
            TENANT,
        );
        assert_eq!(pcap.status, 404);
    }
    // A message of node 1's call, fetched through node 0 with the tenant's token.
    let own = with_token(
        nodes[0].api,
        &format!("/api/v1/calls/{}", call_of(1).0),
        OPS,
    )
    .json();
    let msg_id = own["messages"][0]["id"].as_str().unwrap();
    let m = with_token(nodes[0].api, &format!("/api/v1/messages/{msg_id}"), TENANT);
    assert_eq!(m.status, 404, "{}", String::from_utf8_lossy(&m.body));
    // Without a token, nothing: the peers are not asked for the caller.
    assert_eq!(
        get(nodes[0].api, &format!("/api/v1/calls?{DAY}"), &[]).status,
        401
    );
    stop(nodes);
}

#[test]
fn a_peers_request_is_answered_locally_so_nodes_that_list_each_other_never_loop() {
    let nodes = cluster("cluster-loops", 2, &[], 2_000);
    let v = with_token(nodes[0].api, &format!("/api/v1/calls?{DAY}"), OPS).json();
    assert_eq!(ids(&v).len(), 2);
    // Node 0 asked node 1 once; node 1 answered from its store and asked nobody.
    let (m0, m1) = (nodes[0].server.metrics(), nodes[1].server.metrics());
    let calls = [("route", "/api/v1/calls")];
    assert_eq!(m0.get("hep_http_requests_total", &calls), 1);
    assert_eq!(m1.get("hep_http_requests_total", &calls), 1);
    let peer0 = format!("http://{}", nodes[1].api);
    assert_eq!(
        m0.get("hep_cluster_peer_requests_total", &[("peer", &peer0)]),
        1
    );
    assert!(
        !m1.0.contains("hep_cluster_peer_requests_total{"),
        "node 1 asked nobody:\n{}",
        m1.0
    );
    stop(nodes);
}
