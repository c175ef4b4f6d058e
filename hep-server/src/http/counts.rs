//! `hep_http_requests_total{route,status}`: API and page requests by route (the route's
//! template, `/api/v1/calls/{call_id}`, so the series stay few) and status.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::sync::lock;
use crate::telemetry::metrics::{Collect, Kind, Samples};

/// The counter; registered in the run's metrics registry.
#[derive(Debug, Default)]
pub(crate) struct RequestCounts {
    counts: Mutex<BTreeMap<(String, u16), u64>>,
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
    }
}
