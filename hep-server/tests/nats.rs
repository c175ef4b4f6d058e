//! A cluster's edge and consumers against a real NATS JetStream server (Debian's
//! `nats-server`, started here on loopback): every message published once, read by the
//! one consumer of its partition, stored once, a call whole on one node; an edge with no
//! server spools and delivers when one comes. The cluster under kills (3 servers, 2 edges,
//! 2 consumers) is `cargo xtask cluster` (docs/SCALE-OUT.md).
//!
//! These tests need `nats-server` (`apt-get install nats-server`; `cargo xtask ci`
//! installs it when run as root): without it they fail, saying so.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hep_proto::{HepMessage, HepVersion, ProtoType};

mod common;

use common::*;

/// How long a whole run may take to reach the stores.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

/// One JetStream server on loopback, killed on drop.
struct Nats {
    child: Child,
    port: u16,
}

fn nats_server() -> PathBuf {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect(
        "nats-server is not installed: `apt-get install nats-server` (cargo xtask ci \
             installs it when run as root)",
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nats {
    /// Starts a server with JetStream on `port`, its store in `dir`.
    fn start(port: u16, dir: &Path) -> Self {
        let child = Command::new(nats_server())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_for("nats-server to listen", PROCESS_WAIT, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()
        });
        Self { child, port }
    }

    fn url(&self) -> String {
        url(self.port)
    }
}

fn url(port: u16) -> String {
    format!("nats://127.0.0.1:{port}")
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `calls` calls of 7 SIP messages each (INVITE ... BYE, 200), as HEP3 frames.
fn calls(calls: usize, tag: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let ts = 1_795_683_600u32;
    for c in 0..calls {
        let call_id = format!("{tag}-{c}@10.0.0.1");
        for (i, first) in [
            "INVITE sip:bob@example.com SIP/2.0",
            "SIP/2.0 100 Trying",
            "SIP/2.0 180 Ringing",
            "SIP/2.0 200 OK",
            "ACK sip:bob@example.com SIP/2.0",
            "BYE sip:bob@example.com SIP/2.0",
            "SIP/2.0 200 OK",
        ]
        .iter()
        .enumerate()
        {
            let m = HepMessage::builder()
                .src("10.0.0.1:5060".parse().unwrap())
                .dst("10.0.0.2:5060".parse().unwrap())
                .timestamp(ts + c as u32, i as u32)
                .proto_type(ProtoType::Sip)
                .capture_id(2001)
                .payload(
                    format!(
                        "{first}\r\nFrom: <sip:alice{c}@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\n\
                         Call-ID: {call_id}\r\nCSeq: {} X\r\nContent-Length: 0\r\n\r\n",
                        i + 1
                    )
                    .into_bytes(),
                )
                .build();
            out.extend_from_slice(&m.encode(HepVersion::V3).unwrap());
        }
    }
    out
}

/// (Call-ID, messages) of every call in the store at `dir`, by reading its partitions.
fn stored_calls(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut calls = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "db") {
            continue;
        }
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut q = conn
            .prepare("SELECT call_id, count(*) FROM messages GROUP BY call_id")
            .unwrap();
        let rows = q
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .unwrap();
        for row in rows {
            let (call, n) = row.unwrap();
            *calls.entry(call).or_insert(0) += n;
        }
    }
    calls
}

/// An edge taking HEP over TCP and publishing to `nats` with the spec's `options`.
fn edge(nats: &str, options: &str) -> Server {
    Server::run(&[
        "--listen",
        "hep_tcp:127.0.0.1:0",
        "--output",
        &format!("nats:{nats};{options}"),
        "--metrics",
        "127.0.0.1:0",
    ])
}

fn consumer(nats: &str, partitions: &str, store: &Path) -> Server {
    Server::run(&[
        "--input",
        &format!("nats:{nats};partitions={partitions}"),
        "--output",
        &format!("store:{}", store.display()),
        "--metrics",
        "127.0.0.1:0",
    ])
}

/// The stream `HEP` as the server holds it: its config and state.
fn stream_info(nats: &str) -> async_nats::jetstream::stream::Info {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(nats).await.unwrap());
        let mut stream = js.get_stream("HEP").await.unwrap();
        stream.info().await.unwrap().clone()
    })
}

/// Messages the consumers' outputs have (their positions moved past them).
fn done(consumers: &[&Server]) -> u64 {
    consumers
        .iter()
        .map(|c| c.metrics().get("hep_nats_done_total", &[]))
        .sum()
}

#[test]
fn every_message_is_stored_once_by_the_consumer_of_its_partition_and_a_call_stays_on_one_node() {
    let dir = test_dir("nats-two-consumers");
    let nats = Nats::start(free_port(), &dir.join("js"));
    let edge = edge(&nats.url(), "partitions=4");
    let (a_dir, b_dir) = (dir.join("store-a"), dir.join("store-b"));
    let a = consumer(&nats.url(), "0-1", &a_dir);
    let b = consumer(&nats.url(), "2-3", &b_dir);
    let n_calls = 300;
    send_tcp(edge.tcp(), &calls(n_calls, "two"));
    let sent = (n_calls * 7) as u64;
    wait_for("every message stored", DELIVERY_WAIT, || {
        (done(&[&a, &b]) >= sent).then_some(())
    });
    let edge_metrics = edge.metrics();
    assert_eq!(edge_metrics.get("hep_nats_published_total", &[]), sent);
    assert_eq!(
        edge_metrics.get("hep_nats_publish_duplicates_total", &[]),
        0
    );
    let (ma, mb) = (a.metrics(), b.metrics());
    for m in [&ma, &mb] {
        assert_eq!(m.get("hep_nats_consumer_restarts_total", &[]), 0);
        assert_eq!(m.get("hep_store_duplicates_total", &[]), 0);
        assert!(m.get("hep_nats_edge_to_store_seconds_count", &[]) > 0);
    }
    assert_eq!(
        ma.get("hep_nats_received_total", &[]) + mb.get("hep_nats_received_total", &[]),
        sent
    );
    assert_eq!(
        edge_metrics.get("hep_nats_sequence_regressions_total", &[]),
        0
    );
    // Kept by age, not removed once acknowledged: an acknowledgement moves only the
    // consumer (a work queue's lost acknowledged messages in nats-server 2.9).
    let info = stream_info(&nats.url());
    assert_eq!(
        info.config.retention,
        async_nats::jetstream::stream::RetentionPolicy::Limits
    );
    assert_eq!(info.config.max_age, Duration::from_secs(24 * 3_600));
    assert_eq!(info.state.messages, sent, "acknowledged and still held");
    edge.stop();
    a.stop();
    b.stop();
    let (in_a, in_b) = (stored_calls(&a_dir), stored_calls(&b_dir));
    assert_eq!(
        in_a.len() + in_b.len(),
        n_calls,
        "every call, on one node only"
    );
    assert!(
        in_a.keys().all(|c| !in_b.contains_key(c)),
        "no call on both"
    );
    assert!(
        !in_a.is_empty() && !in_b.is_empty(),
        "both consumers have calls"
    );
    assert!(
        in_a.values().chain(in_b.values()).all(|&n| n == 7),
        "each call whole: {:?}",
        in_a.iter().chain(&in_b).find(|(_, n)| **n != 7)
    );
}

#[test]
fn a_consumer_started_again_reads_on_from_the_positions_kept_with_its_store() {
    let dir = test_dir("nats-positions");
    let nats = Nats::start(free_port(), &dir.join("js"));
    let edge = edge(&nats.url(), "partitions=2");
    let store = dir.join("store");
    let c = consumer(&nats.url(), "0-1", &store);
    send_tcp(edge.tcp(), &calls(20, "before"));
    wait_for("the first 140 stored", DELIVERY_WAIT, || {
        (done(&[&c]) >= 140).then_some(())
    });
    c.stop();
    // Saved at the stop, beside the store it describes.
    let positions = std::fs::read_to_string(store.join("nats-HEP-0-1.positions")).unwrap();
    let lines: Vec<&str> = positions.lines().collect();
    assert_eq!(lines[1], "stream HEP", "{positions}");
    assert_eq!(lines.len(), 4, "a line per partition: {positions}");
    // Sent while no consumer reads, then read by the next one, and only those.
    send_tcp(edge.tcp(), &calls(10, "while-down"));
    wait_for("the next 70 published", DELIVERY_WAIT, || {
        (edge.metrics().get("hep_nats_published_total", &[]) >= 210).then_some(())
    });
    let c = consumer(&nats.url(), "0-1", &store);
    wait_for("the next 70 stored", DELIVERY_WAIT, || {
        (done(&[&c]) >= 70).then_some(())
    });
    let m = c.metrics();
    assert_eq!(m.get("hep_nats_received_total", &[]), 70, "none read again");
    assert_eq!(m.get("hep_store_duplicates_total", &[]), 0);
    edge.stop();
    c.stop();
    let stored = stored_calls(&store);
    assert_eq!(stored.len(), 30);
    assert!(stored.values().all(|&n| n == 7), "{stored:?}");
}

#[test]
fn a_positions_file_that_cannot_be_written_is_refused_at_start_naming_it() {
    let dir = test_dir("nats-positions-nowhere");
    let file = dir.join("no-such-dir").join("p.positions");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "run",
        "--input",
        &format!("nats:{};positions={}", url(free_port()), file.display()),
        "--output",
        "null",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let stderr = Server::try_spawn(cmd).err().expect("refused at start");
    assert!(stderr.contains("positions"), "{stderr}");
    assert!(
        stderr.contains(&file.display().to_string()),
        "names the file: {stderr}"
    );
}

#[test]
fn two_inputs_that_would_share_a_positions_file_are_refused_at_start() {
    let dir = test_dir("nats-positions-shared");
    // One stream name and range on two clusters, into one store.
    let text = format!(
        "inputs = [\"nats:{};partitions=0-31\", \"nats:{};partitions=0-31\"]\n\
         outputs = [\"store:{}\"]\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        url(free_port()),
        url(free_port()),
        dir.join("store").display()
    );
    let config = dir.join("hep-server.toml");
    std::fs::write(&config, text).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config", &config.display().to_string()]);
    let stderr = Server::try_spawn(cmd).err().expect("refused at start");
    assert!(
        stderr.contains("would keep their positions in one file"),
        "{stderr}"
    );
    assert!(stderr.contains("nats-HEP-0-31.positions"), "{stderr}");
}

#[test]
fn a_damaged_positions_file_is_said_and_the_partitions_read_from_their_start_once_each() {
    let dir = test_dir("nats-positions-damaged");
    let nats = Nats::start(free_port(), &dir.join("js"));
    let store = dir.join("store");
    let c = consumer(&nats.url(), "0-1", &store);
    let edge = edge(&nats.url(), "partitions=2");
    send_tcp(edge.tcp(), &calls(10, "kept"));
    wait_for("70 stored", DELIVERY_WAIT, || {
        (done(&[&c]) >= 70).then_some(())
    });
    c.stop();
    let file = store.join("nats-HEP-0-1.positions");
    std::fs::write(&file, "stream HEP\n0 twelve\n").unwrap();
    let c = consumer(&nats.url(), "0-1", &store);
    c.wait_log("the positions cannot be read", 1);
    assert!(
        c.stderr().contains("line 2"),
        "names the line: {}",
        c.stderr()
    );
    wait_for("the 70 read again", DELIVERY_WAIT, || {
        (c.metrics().get("hep_store_duplicates_total", &[]) >= 70).then_some(())
    });
    edge.stop();
    c.stop();
    let stored = stored_calls(&store);
    assert_eq!(stored.values().sum::<u64>(), 70, "each once: {stored:?}");
    // Written again whole at the next save.
    let positions = std::fs::read_to_string(&file).unwrap();
    assert_eq!(positions.lines().count(), 4, "{positions}");
}

#[test]
fn a_consumer_takes_over_where_an_older_hep_servers_durable_consumers_were_and_removes_them() {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    use futures_util::StreamExt as _;
    let dir = test_dir("nats-durable");
    let nats = Nats::start(free_port(), &dir.join("js"));
    let url = nats.url();
    let edge = edge(&url, "partitions=2");
    send_tcp(edge.tcp(), &calls(10, "old"));
    wait_for("70 published", DELIVERY_WAIT, || {
        (edge.metrics().get("hep_nats_published_total", &[]) >= 70).then_some(())
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let js = rt.block_on(async {
        async_nats::jetstream::new(async_nats::connect(url.as_str()).await.unwrap())
    });
    // What an older hep-server left: `p0` and `p1`, every message acknowledged.
    rt.block_on(async {
        let stream = js.get_stream("HEP").await.unwrap();
        let mut acked = 0;
        for k in 0..2 {
            let c = stream
                .create_consumer(pull::Config {
                    durable_name: Some(format!("p{k}")),
                    filter_subject: format!("hep.{k}"),
                    ack_policy: AckPolicy::Explicit,
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut batch = c.fetch().max_messages(1_000).messages().await.unwrap();
            while let Some(m) = batch.next().await {
                m.unwrap().double_ack().await.unwrap();
                acked += 1;
            }
        }
        assert_eq!(acked, 70);
    });
    let store = dir.join("store");
    let c = consumer(&url, "0-1", &store);
    send_tcp(edge.tcp(), &calls(5, "new"));
    wait_for("the 35 new stored", DELIVERY_WAIT, || {
        (done(&[&c]) >= 35).then_some(())
    });
    c.wait_log("durable consumer p0 of an older hep-server", 1);
    assert_eq!(
        c.metrics().get("hep_nats_received_total", &[]),
        35,
        "none read again"
    );
    let left = rt.block_on(async {
        let mut stream = js.get_stream("HEP").await.unwrap();
        stream.info().await.unwrap().state.consumer_count
    });
    edge.stop();
    c.stop();
    assert_eq!(
        left, 2,
        "p0 and p1 removed; the two left are this node's own"
    );
    let stored = stored_calls(&store);
    assert_eq!(stored.len(), 5);
    assert!(stored.keys().all(|c| c.starts_with("new-")), "{stored:?}");
}

#[test]
fn a_message_that_is_not_an_edges_is_counted_passed_over_and_the_rest_read() {
    let dir = test_dir("nats-invalid");
    let nats = Nats::start(free_port(), &dir.join("js"));
    let url = nats.url();
    let store = dir.join("store");
    let c = consumer(&url, "0-1", &store);
    let edge = edge(&url, "partitions=2");
    send_tcp(edge.tcp(), &calls(2, "first"));
    wait_for("the first 14 stored", DELIVERY_WAIT, || {
        (done(&[&c]) >= 14).then_some(())
    });
    // Not HEP, and without the edge's headers, on partition 0.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seq = rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url.as_str()).await.unwrap());
        let ack = js.publish("hep.0", "not HEP".into()).await.unwrap();
        ack.await.unwrap().sequence
    });
    send_tcp(edge.tcp(), &calls(3, "after"));
    wait_for("the next 21 stored", DELIVERY_WAIT, || {
        (done(&[&c]) >= 35).then_some(())
    });
    let m = c.metrics();
    assert_eq!(
        m.get(
            "hep_dropped_total",
            &[("stage", "input"), ("reason", "nats_invalid")]
        ),
        1
    );
    assert_eq!(m.get("hep_nats_received_total", &[]), 36);
    c.wait_log("not an edge's HEP message", 1);
    edge.stop();
    c.stop();
    let positions = std::fs::read_to_string(store.join("nats-HEP-0-1.positions")).unwrap();
    let p0: u64 = positions
        .lines()
        .find_map(|l| l.strip_prefix("0 "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        p0 >= seq,
        "partition 0 moved past the message at {seq}: {positions}"
    );
    assert_eq!(stored_calls(&store).values().sum::<u64>(), 35);
}

#[test]
fn a_stream_made_as_a_work_queue_is_named_as_a_risk_by_the_edge_and_not_read_by_the_consumer() {
    let dir = test_dir("nats-work-queue");
    let nats = Nats::start(free_port(), &dir.join("js"));
    let url = nats.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url.as_str()).await.unwrap());
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "HEP".to_owned(),
            subjects: vec!["hep.*".to_owned()],
            retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let edge = edge(&url, "partitions=2");
    let store = dir.join("store");
    let c = consumer(&url, "0-1", &store);
    send_tcp(edge.tcp(), &calls(10, "wq"));
    wait_for("every message published", DELIVERY_WAIT, || {
        (edge.metrics().get("hep_nats_published_total", &[]) >= 70).then_some(())
    });
    edge.wait_log("removes messages once acknowledged", 1);
    c.wait_log("read it to the end with the older hep-server", 1);
    assert_eq!(c.metrics().get("hep_nats_received_total", &[]), 0);
    let info = stream_info(&url);
    assert_eq!(
        info.config.retention,
        async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
        "left as it was made"
    );
    assert_eq!(
        info.state.messages, 70,
        "kept for the older hep-server to read"
    );
    edge.stop();
    c.stop();
}

#[test]
fn an_edge_with_no_server_spools_and_delivers_everything_once_one_comes() {
    let dir = test_dir("nats-spool");
    let port = free_port();
    let spool = dir.join("spool");
    let edge = edge(
        &url(port),
        &format!("partitions=2;spool={}", spool.display()),
    );
    let n_calls = 100;
    let sent = (n_calls * 7) as u64;
    send_tcp(edge.tcp(), &calls(n_calls, "spooled"));
    wait_for("every message in the spool", DELIVERY_WAIT, || {
        (edge.metrics().get("hep_spool_messages", &[]) == sent).then_some(())
    });
    assert_eq!(edge.metrics().get("hep_nats_published_total", &[]), 0);
    // The server comes, then a consumer.
    let nats = Nats::start(port, &dir.join("js"));
    let store = dir.join("store");
    let c = consumer(&nats.url(), "0-1", &store);
    wait_for("every message stored", DELIVERY_WAIT, || {
        (done(&[&c]) >= sent).then_some(())
    });
    let m = edge.metrics();
    assert_eq!(m.get("hep_nats_published_total", &[]), sent);
    assert_eq!(m.get("hep_spool_messages", &[]), 0);
    assert_eq!(m.get("hep_dropped_total", &[("stage", "spool")]), 0);
    edge.stop();
    c.stop();
    let stored = stored_calls(&store);
    assert_eq!(stored.len(), n_calls);
    assert_eq!(stored.values().sum::<u64>(), sent, "each message once");
}

#[test]
fn an_edge_without_a_spool_stopped_while_no_server_answers_counts_what_it_had_as_dropped() {
    let port = free_port();
    let edge = edge(&url(port), "partitions=2");
    send_tcp(edge.tcp(), &calls(10, "nowhere"));
    wait_for("the listener took all 70", DELIVERY_WAIT, || {
        (edge.metrics().get("hep_received_total", &[]) == 70).then_some(())
    });
    let stopped = edge.stop();
    assert_eq!(stopped.counts.delivered, 0);
    assert_eq!(stopped.counts.dropped, 70, "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("nats_unavailable"),
        "names the reason:\n{}",
        stopped.stderr
    );
}
