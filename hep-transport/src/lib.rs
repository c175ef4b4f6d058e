//! HEP over the network: listeners for UDP, TCP and TLS, and senders, with the limits,
//! timeouts and backpressure of OpenSIPS's `proto_hep` (and without its bugs).
//!
//! ```text
//!  socket --> listener (framing, limits, timeouts) --> hep_proto decode
//!         --> tower::Service<Received>  (your stack: auth, filters, callbacks, outputs)
//! ```
//!
//! Each decoded message is handed on as a [`Received`]: the message, the exact bytes it
//! came in (for relaying unchanged) and its [`RecvInfo`] (transport, peer, listener).
//! A TCP/TLS listener waits for the service to be ready before reading more, which
//! pushes back on the sender; a UDP listener cannot push back, so overflow is dropped
//! and counted.
//!
//! # Layout
//! - `spec`: [`ListenSpec`] (`hep_udp:IP[:PORT]` ...), [`Transport`], [`HEP_PORT`].
//! - `recv`: [`Received`], [`RecvInfo`].
//! - [`sender`]: [`HepSender`] (a `tower::Service<Bytes>` for UDP/TCP/TLS destinations),
//!   [`HepDestination`] (OpenSIPS `hep_id` and relay specs), [`SenderConfig`].
#![doc(test(attr(deny(warnings))))]
#![warn(clippy::unwrap_used)]

mod recv;
pub mod sender;
mod spec;

pub use recv::{Received, RecvInfo};
pub use sender::{HepDestination, HepSender, SenderConfig};
pub use spec::{HEP_PORT, ListenSpec, SpecError, Transport};

/// The boxed error tower middleware returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
