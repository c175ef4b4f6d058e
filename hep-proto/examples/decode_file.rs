//! Decodes capture files of HEP and prints the Call-ID of each SIP message.
//!
//! ```sh
//! cargo run -p hep-proto --example decode_file -- hep-testkit/testdata/kamailio/v3-tcp-stream.bin
//! cargo run -p hep-proto --example decode_file -- hep-testkit/testdata/kamailio/v2-udp-00*.hep
//! ```
//!
//! A file holds either one raw HEP datagram of any version, as an agent sends it over UDP
//! (`v2-udp-0001.hep`), or a HEPv3 stream, frames back to back as on a TCP connection
//! (`v3-tcp-stream.bin`). A stream is cut into frames by `HepFrameCodec`, the tokio-util
//! codec, used here without a runtime or a socket: a codec is bytes in, frames out. Each
//! frame is then decoded on its own, so a bad one costs only itself.
//!
//! One line a message: `FILE #N vVERSION SRC -> DST CALL-ID FIRST-LINE`; a payload that
//! is not SIP shows `-` for both. Errors go to stderr, and the exit code is 1 if there
//! was any.

use std::process::ExitCode;

use bytes::{Bytes, BytesMut};
use hep_proto::sip::SipSummary;
use hep_proto::{DecodeOptions, EEP3_MAGIC, HEP3_MAGIC, HepCodecError, HepFrameCodec, HepMessage};
use tokio_util::codec::Decoder;

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: decode_file FILE...  (raw HEP datagrams or HEPv3 streams)");
        return ExitCode::from(2);
    }
    let options = DecodeOptions::default();
    let (mut decoded, mut errors) = (0usize, 0usize);
    for path in &paths {
        let data = match std::fs::read(path) {
            Ok(data) => data,
            Err(e) => {
                eprintln!("{path}: {e}");
                errors += 1;
                continue;
            }
        };
        let (frames, framing_error) = split(data);
        for (n, frame) in frames.iter().enumerate() {
            match options.decode(frame) {
                Ok(msg) => {
                    decoded += 1;
                    println!("{path} #{} {}", n + 1, line(&msg));
                }
                Err(e) => {
                    errors += 1;
                    eprintln!("{path} #{}: {e} ({})", n + 1, e.label());
                }
            }
        }
        if let Some(e) = framing_error {
            // A stream out of step cannot be resynchronised: the rest of the file is lost.
            errors += 1;
            eprintln!("{path}: after {} frames: {e}", frames.len());
        }
    }
    eprintln!("decoded {decoded} messages, {errors} errors");
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The messages of a file: the frames of a HEPv3 stream (with the error that ended it
/// early, if one did), or the whole file as one datagram of HEPv1 or v2.
fn split(data: Vec<u8>) -> (Vec<Bytes>, Option<HepCodecError>) {
    let is_v3 = data.starts_with(&HEP3_MAGIC) || data.starts_with(&EEP3_MAGIC);
    if !is_v3 {
        return (vec![Bytes::from(data)], None);
    }
    let mut codec = HepFrameCodec::new();
    let mut buf = BytesMut::from(&data[..]);
    let mut frames = Vec::new();
    // `decode_eof`: the file is all there is, so a frame cut short is an error rather
    // than a wait for more bytes.
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

/// `v3 10.0.0.1:5060 -> 10.0.0.2:5060 CALL-ID FIRST-LINE`, from the message's SIP summary.
fn line(msg: &HepMessage) -> String {
    let version = msg
        .version
        .map_or_else(|| "?".to_owned(), |v| v.to_string());
    let addr =
        |a: Option<std::net::SocketAddr>| a.map_or_else(|| "?".to_owned(), |a| a.to_string());
    let sip = SipSummary::parse(msg.payload.bytes());
    let call_id = sip.and_then(|s| s.call_id).unwrap_or("-");
    let first_line = sip.map_or("-", |s| s.first_line);
    format!(
        "v{version} {} -> {} {call_id} {first_line}",
        addr(msg.src()),
        addr(msg.dst())
    )
}
