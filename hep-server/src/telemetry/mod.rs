//! What the collector says about itself: metrics, drop warnings, logs.
//!
//! - [`metrics`]: Prometheus text at `/metrics`, gathered from every counter;
//! - [`drops`]: every drop logged at `warn`, by reason, rate-limited; the summary's list
//!   by reason;
//! - [`log`]: logging set-up (`[log]`), and the program's own lines (`hep-server: ...`),
//!   JSON in JSON mode;
//! - [`stats`]: the counters of the listeners, the callbacks and the reloads as metrics
//!   (each output's are beside it, in [`crate::outputs`]).

pub mod drops;
pub mod log;
pub mod metrics;
pub mod stats;
