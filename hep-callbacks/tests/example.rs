//! `examples/skip_options.rs` end to end on loopback: the program a user runs, as built by
//! `cargo test` (which builds the examples beside the tests).

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/examples/skip_options`, beside the `deps/` this test runs from.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir
        .join("examples")
        .join(format!("skip_options{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        // `cargo test --all-targets` and nextest build the example under a hashed name
        // only; `cargo build --example` puts it here (quick when it is built already).
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "-p", "hep-callbacks", "--example", "skip_options"])
            .status()
            .expect("run cargo build --example skip_options");
        assert!(built.success(), "cargo build --example skip_options failed");
    }
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

#[test]
fn skip_options_skips_options_prints_the_rest_and_stops_after_count() {
    let mut child = Command::new(example())
        .args(["--listen", "hep_udp:127.0.0.1:0", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut first = String::new();
    stderr.read_line(&mut first).expect("its first line");
    let addr: SocketAddr = first
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {first:?}"));

    let vectors = concat!(env!("CARGO_MANIFEST_DIR"), "/../hep-testkit/testdata");
    let options = std::fs::read(format!("{vectors}/hepjs/hepjs-v3-options.hep")).unwrap();
    let invite = std::fs::read(format!("{vectors}/kamailio/v3-udp-0001.hep")).unwrap();
    let ringing = std::fs::read(format!("{vectors}/kamailio/v3-udp-0003.hep")).unwrap();
    let agent = UdpSocket::bind("127.0.0.1:0").unwrap();
    for datagram in [&options, &invite, &ringing] {
        agent.send_to(datagram, addr).unwrap();
        // Loopback does not reorder; the pause keeps the order of the lines stable.
        std::thread::sleep(Duration::from_millis(20));
    }

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the example did not stop after --count 2");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status}: {rest}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].ends_with("Call-ID 1-13274@127.0.0.1 INVITE sip:service@127.0.0.1:5060 SIP/2.0"),
        "{out}"
    );
    assert!(lines[1].ends_with("SIP/2.0 180 Ringing"), "{out}");
    assert!(rest.contains("2 passed, 1 skipped"), "{rest}");
}
