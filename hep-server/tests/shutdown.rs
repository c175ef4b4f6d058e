//! Stopping under load (SIGTERM), run as the real binary: the shutdown deadline
//! (`[limits] shutdown_timeout_ms`) when an output cannot finish draining.

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

mod common;

use common::*;

/// A destination that accepts connections and never reads (a small receive buffer, so
/// that it fills at once); holds them until dropped, at most 60 s.
struct StalledPeer {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl StalledPeer {
    fn start() -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        sock.bind(&addr.into()).unwrap();
        sock.listen(16).unwrap();
        let listener: std::net::TcpListener = sock.into();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let until = std::time::Instant::now() + Duration::from_secs(60);
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            held.len()
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for StalledPeer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// SIGTERM while a relay's destination is stalled (and `hep_send_timeout` lets each write
/// wait a minute): the drain cannot finish, so the server gives up at
/// `shutdown_timeout_ms`, exits cleanly, and counts what it could not deliver. Every
/// accepted message is accounted for: delivered or counted, once per output.
#[test]
fn sigterm_with_a_stalled_relay_exits_at_the_deadline_and_counts_what_was_left() {
    let peer = StalledPeer::start();
    let dir = test_dir("shutdown-deadline");
    let payload = dir.join("options.sip");
    std::fs::write(
        &payload,
        format!(
            "OPTIONS sip:probe@example.com SIP/2.0\r\nX-Pad: {}\r\n\r\n",
            "x".repeat(300)
        ),
    )
    .unwrap();
    let server = Server::with_config(
        &dir,
        &format!(
            "listen = [\"hep_tcp:127.0.0.1:0\"]\n\
             outputs = [\"relay:hep_tcp:{}\", \"null\"]\n\
             hep_async = false\nhep_send_timeout = 60000\n\
             [limits]\nshutdown_timeout_ms = 1000\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n",
            peer.addr
        ),
    );
    let sent = 50_000;
    let mut agent = spawn_send_tcp(server.tcp(), &payload, 2001, None, sent);
    assert!(agent.wait().unwrap().success());
    // Everything is accepted (the null output has it), and the relay is stuck.
    let queued = wait_for(
        "all accepted, the relay stuck",
        Duration::from_secs(20),
        || {
            let m = server.metrics();
            let accepted = m.get("hep_delivered_total", &[("output", "null")]);
            let queued = m.get("hep_output_queue_depth", &[]);
            (accepted == sent && queued > 0).then_some(queued)
        },
    );

    let started = std::time::Instant::now();
    let stopped = server.stop(); // fails the test if the server is not gone in 10 s
    let took = started.elapsed();
    let c = stopped.counts;
    assert_eq!(c.decoded, sent, "{c:?}");
    // Two outputs: each accepted message is delivered or counted lost, once per output.
    assert_eq!(c.delivered + c.dropped, 2 * sent, "{c:?}");
    let line = stopped
        .stderr
        .lines()
        .find(|l| l.contains("the shutdown deadline (1000 ms) passed"))
        .unwrap_or_else(|| panic!("says what the deadline cost:\n{}", stopped.stderr));
    let lost: u64 = line
        .split(": ")
        .nth(2)
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in `{line}`"));
    assert!(lost > 0 && lost <= sent, "{line}");
    assert!(
        c.dropped >= lost,
        "the lost ones are in the summary's dropped: {c:?}"
    );
    eprintln!(
        "shutdown deadline 1000 ms: stopped in {:.2} s with {queued} queued at SIGTERM; \
         {lost} lost at the deadline; summary {c:?}",
        took.as_secs_f64()
    );
}

/// The same with a file output that blocks: a FIFO whose reader never reads. The writer
/// thread is stuck in `write(2)` and cannot be stopped; the server still exits at the
/// deadline, and every accepted message is counted once per output, delivered or lost.
#[test]
fn sigterm_with_a_blocked_file_output_exits_at_the_deadline() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = test_dir("shutdown-deadline-fifo");
    let fifo = dir.join("stuck.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    // The reader opens the FIFO (so that the server's open succeeds) and never reads.
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let reader = {
        let (fifo, done) = (fifo.clone(), std::sync::Arc::clone(&done));
        std::thread::spawn(move || {
            let _held = std::fs::File::open(&fifo).unwrap();
            let until = std::time::Instant::now() + Duration::from_secs(60);
            while !done.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let payload = dir.join("options.sip");
    std::fs::write(&payload, "OPTIONS sip:probe@example.com SIP/2.0\r\n\r\n").unwrap();
    let server = Server::with_config(
        &dir,
        &format!(
            "listen = [\"hep_tcp:127.0.0.1:0\"]\noutputs = [\"json:{}\", \"null\"]\n\
             [limits]\nshutdown_timeout_ms = 1000\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            fifo.display()
        ),
    );
    let sent = 20_000;
    assert!(
        spawn_send_tcp(server.tcp(), &payload, 2001, None, sent)
            .wait()
            .unwrap()
            .success()
    );
    wait_for(
        "all accepted, the file stuck",
        Duration::from_secs(20),
        || {
            let m = server.metrics();
            let accepted = m.get("hep_delivered_total", &[("output", "null")]);
            (accepted == sent && m.get("hep_output_queue_depth", &[]) > 0).then_some(())
        },
    );
    let started = std::time::Instant::now();
    let stopped = server.stop(); // fails the test if the server is not gone in 10 s
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let c = stopped.counts;
    assert_eq!(c.decoded, sent, "{c:?}");
    assert_eq!(c.delivered + c.dropped, 2 * sent, "{c:?}");
    assert!(c.dropped > 0, "{c:?}");
    assert!(
        stopped
            .stderr
            .contains("the shutdown deadline (1000 ms) passed"),
        "{}",
        stopped.stderr
    );
    eprintln!(
        "shutdown deadline 1000 ms, blocked file output: stopped in {:.2} s; summary {c:?}",
        took.as_secs_f64()
    );
}
