//! Any payload read as RTCP (JSON or raw), an RTCP-XR report and an X-RTP-Stat value:
//! an error or reports, never a panic, and every figure finite.
#![no_main]

use hep_server::qos::{Report, rtcp, vq, xrtpstat};

fn check(reports: Result<Vec<Report>, hep_server::qos::Error>) {
    for r in reports.into_iter().flatten() {
        for v in [r.jitter_ms, r.loss_pct, r.rtt_ms, r.mos].into_iter().flatten() {
            assert!(v.is_finite(), "{r:?}");
        }
        if let Some(m) = r.mos {
            assert!((1.0..=5.0).contains(&m), "{r:?}");
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check(rtcp::parse(data, Some(1_796_592_963_915_144), 8000));
    check(vq::parse(data));
    if let Ok(text) = std::str::from_utf8(data) {
        check(xrtpstat::parse(text));
    }
});
