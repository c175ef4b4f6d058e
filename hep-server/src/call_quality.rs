//! A stored call's SIP KPIs ([`kpi::call`]) and media quality ([`qos::call`]), computed
//! from its messages when it is read: the one code path of the API's call view, the
//! page (which reads the API) and `search`'s ladder.

use serde::Serialize;

use crate::kpi::call::{CallView, Input as KpiInput};
use crate::qos::call::{CallQos, Input as QosInput};
use crate::store::Stored;

/// The KPIs and the QoS of a call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallQuality {
    /// Its SIP KPIs and its legs'.
    pub kpis: CallView,
    /// Its streams' quality.
    pub qos: CallQos,
}

impl CallQuality {
    /// The quality of `call_id` from its stored `messages` (its legs' included), as it
    /// stands at `now_us`.
    pub fn of(call_id: &str, messages: &[Stored], now_us: i64) -> Self {
        let kpis = CallView::of(
            call_id,
            messages.iter().map(|s| KpiInput {
                message: &s.message,
                recv_us: s.recv_ts_usec,
            }),
            now_us,
        );
        let qos = CallQos::of(messages.iter().map(|s| QosInput {
            proto_type: s.message.proto_type,
            payload: s.message.payload.bytes(),
            capture_us: Some(s.ts_usec),
        }));
        Self { kpis, qos }
    }
}
