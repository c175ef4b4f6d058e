//! Lists the golden vectors Kamailio 5.6 wrote, decoded: the set, the file, the HEP
//! version, the capture id and the SIP start line and Call-ID.
//!
//! ```text
//! cargo run -p hep-testkit --example vectors
//! cargo run -p hep-testkit --example vectors -- v3-tcp
//! ```

use bytes::Bytes;
use hep_proto::HepMessage;
use hep_proto::sip::SipSummary;
use hep_testkit::vectors;

fn main() {
    let only = std::env::args().nth(1);
    for set in vectors::KAMAILIO_SETS {
        if only
            .as_deref()
            .is_some_and(|o| o.trim_end_matches('-') != set.trim_end_matches('-'))
        {
            continue;
        }
        for (name, bytes) in vectors::kamailio(set) {
            match HepMessage::decode(Bytes::from(bytes)) {
                Ok(m) => {
                    let sip = SipSummary::parse(m.payload.bytes());
                    println!(
                        "{name}: {:?} capture id {:?} | {} | {}",
                        m.version,
                        m.capture_id,
                        sip.map_or("(not SIP)", |s| s.first_line),
                        sip.and_then(|s| s.call_id).unwrap_or("-"),
                    );
                }
                Err(e) => println!("{name}: does not decode: {e}"),
            }
        }
    }
}
