//! `hep_http_requests_total{route,status}`: API and page requests by route (the route's
//! template, `/api/v1/calls/{call_id}`, so the series stay few) and status;
//! `hep_http_live_streams` and `hep_http_live_skipped_total`: the live view's streams open
//! and the messages its slow clients skipped ([`super::live`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::lock;
use crate::telemetry::metrics::{Collect, Kind, Samples};

/// The counter; registered in the run's metrics registry.
#[derive(Debug, Default)]
pub(crate) struct RequestCounts {
    counts: Mutex<BTreeMap<(String, u16), u64>>,
    /// Live streams open.
    pub(crate) live_streams: AtomicU64,
    /// Messages live streams skipped, lagging.
    pub(crate) live_skipped: AtomicU64,
}

impl RequestCounts {
    pub(crate) fn count(&self, route: &str, status: u16) {
        let mut c = lock(&self.counts);
        *c.entry((route.to_owned(), status)).or_default() += 1;
    }
}

impl Collect for RequestCounts {
    fn collect(&self, out: &mut Samples) {
        out.declare(
            "hep_http_requests_total",
            "HTTP API and page requests answered, by route and status.",
            Kind::Counter,
        );
        for ((route, status), n) in lock(&self.counts).iter() {
            out.sample(
                "hep_http_requests_total",
                &[
                    ("route", route.as_str()),
                    ("status", status.to_string().as_str()),
                ],
                *n,
            );
        }
        out.declare(
            "hep_http_live_streams",
            "Live streams (GET /api/v1/live) open.",
            Kind::Gauge,
        );
        out.sample(
            "hep_http_live_streams",
            &[],
            self.live_streams.load(Ordering::Relaxed),
        );
        out.declare(
            "hep_http_live_skipped_total",
            "Messages live streams skipped because their client fell behind the capture.",
            Kind::Counter,
        );
        out.sample(
            "hep_http_live_skipped_total",
            &[],
            self.live_skipped.load(Ordering::Relaxed),
        );
    }
}
