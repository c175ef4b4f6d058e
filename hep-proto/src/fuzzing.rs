//! Entry points for the fuzz targets (`fuzz/`); built only under `cfg(fuzzing)`.
//! Not a stable API.

use bytes::Bytes;

use crate::{DecodeOptions, HepVersion};

/// Decodes one datagram and reads it with a `HepView`, which must agree; if it decodes,
/// re-encodes it in every version that can carry it and checks the v3 re-encoding
/// decodes to the same message.
pub fn datagram(data: &[u8]) {
    let opts = DecodeOptions::default().with_max_inflated_len(64 * 1024);
    let decoded = opts.decode(&Bytes::copy_from_slice(data));
    if let Some(why) = crate::view::view_disagreement(&opts, data, &decoded) {
        panic!("{why}");
    }
    let Ok(msg) = decoded else {
        return;
    };
    for v in [HepVersion::V1, HepVersion::V2] {
        let _ = msg.encode(v);
    }
    if let Ok(wire) = msg.encode(HepVersion::V3) {
        let mut again = opts.decode(&wire).expect("re-encoded message must decode");
        again.version = msg.version;
        let mut expect = msg;
        if expect.version != Some(HepVersion::V3) {
            // v1/v2 facts survive, the version does not.
            expect.version = again.version;
        }
        assert_eq!(again, expect);
    }
}

/// Feeds a byte stream to the HEP3 stream codec in reads of varying size.
#[cfg(feature = "codec")]
pub fn stream(data: &[u8]) {
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    use crate::HepCodec;

    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(split).max(1);
    let mut codec = HepCodec::new();
    let mut buf = BytesMut::new();
    for piece in rest.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Wraps `data` as the compressed payload chunk of a HEP3 message and decodes it under
/// a small cap; an inflated payload never exceeds the cap.
pub fn compressed(data: &[u8]) {
    const CAP: usize = 16 * 1024;
    let Ok(chunk_len) = u16::try_from(data.len() + 6) else {
        return;
    };
    let Ok(total) = u16::try_from(usize::from(chunk_len) + 6) else {
        return;
    };
    let mut wire = Vec::with_capacity(usize::from(total));
    wire.extend_from_slice(b"HEP3");
    wire.extend_from_slice(&total.to_be_bytes());
    wire.extend_from_slice(&[0, 0, 0, 0x10]);
    wire.extend_from_slice(&chunk_len.to_be_bytes());
    wire.extend_from_slice(data);
    if let Ok(msg) = DecodeOptions::default()
        .with_max_inflated_len(CAP)
        .decode(&Bytes::from(wire))
    {
        assert!(msg.payload.bytes().len() <= CAP);
        assert!(msg.payload.is_compressed());
    }
}

/// Reads any payload as SIP: never panics, the start line alone agrees with the summary,
/// and every value found is a piece of the input (nothing copied, nothing made up).
pub fn sip(data: &[u8]) {
    use crate::sip::{SipSummary, StartLine, header};
    let within = |s: &str| {
        let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
        let p = s.as_ptr() as usize;
        assert!(
            p >= start && p + s.len() <= end,
            "{s:?} is not a slice of the input"
        );
    };
    let summary = SipSummary::parse(data);
    assert_eq!(StartLine::parse(data), summary.map(|s| s.start));
    if let Some(s) = summary {
        within(s.first_line);
        let names = [s.from, s.to].into_iter().flatten();
        let values = [
            s.call_id,
            s.via_branch,
            s.method(),
            s.cseq.map(|c| c.method),
        ]
        .into_iter()
        .chain(names.flat_map(|n| [n.user, n.tag]))
        .flatten();
        values.for_each(within);
    }
    for name in ["X-CID", "Call-ID", "v"] {
        if let Some(v) = header(data, name) {
            within(v);
        }
    }
}
