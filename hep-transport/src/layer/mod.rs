//! Tower middleware for HEP listeners, for what tower itself lacks.
//!
//! Use tower's own layers where they fit: `Timeout` (bound each message's handling),
//! `ConcurrencyLimit`, `LoadShed` (fail fast with an error) and `Buffer` (a bounded
//! queue in front of a service that runs in its own task). This module adds:
//!
//! - [`overload`]: [`OverloadDrop`](overload::OverloadDrop), drop-and-count for datagrams
//!   when the service is not ready, because a UDP listener cannot push back.
//!
//! # Order
//! As with `tower::ServiceBuilder`, the first layer added is the outermost: the listener
//! calls it first. A typical UDP stack:
//!
//! ```
//! # use std::{convert::Infallible, sync::Arc};
//! # use hep_transport::{ListenerStats, Received};
//! use std::time::Duration;
//! use hep_transport::layer::overload::OverloadDropLayer;
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let stats = Arc::new(ListenerStats::new());
//! # let sink = tower::service_fn(|_: Received| async { Ok::<_, Infallible>(()) });
//! let service = ServiceBuilder::new()
//!     .layer(OverloadDropLayer::new(stats.clone())) // never waits: drops when the queue is full
//!     .buffer(8192)                                 // the queue: the burst we absorb
//!     .timeout(Duration::from_secs(1))              // a stuck output fails its message (counted)
//!     .service(sink);
//! # drop(service);
//! # }
//! ```
//!
//! `OverloadDrop` must be outside the `Buffer`: inside it, the buffer would accept
//! everything until full and then make the UDP listener wait, and the kernel would drop
//! the excess without counting it. For TCP/TLS listeners leave `OverloadDrop` out:
//! waiting is what pushes back on a stream's sender.

pub mod overload;
