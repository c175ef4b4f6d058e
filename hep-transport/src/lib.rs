//! HEP over the network: listeners for UDP, TCP and TLS, and senders, with the limits,
//! timeouts and backpressure of OpenSIPS's `proto_hep` (and without its bugs).
//!
//! ```text
//!  socket --> listener (framing, limits, timeouts) --> hep_proto decode
//!         --> HepService = tower::Service<Received>  (your stack: auth, filters, outputs)
//! ```
//!
//! Each decoded message is handed on as a [`Received`]: the message, the exact bytes it
//! came in (for relaying unchanged) and its [`RecvInfo`] (transport, peer, listener).
//! A TCP/TLS listener waits for the service to be ready before reading more, which
//! pushes back on the sender; a UDP listener cannot push back, so overflow is dropped
//! and counted.
//!
//! # Layout
//! - `spec`: [`ListenSpec`] (`hep_udp:IP[:PORT]` ...), [`ListenOn`] (a spec with its
//!   options: `;allow=NETWORKS`), [`Transport`], [`HEP_PORT`].
//! - `allow`: [`SourceAllowlist`], the agents' networks a listener accepts.
//! - `recv`: [`Received`], [`RecvInfo`]; `identity`: [`ClientIdentity`] (a verified TLS
//!   client certificate, in [`RecvInfo::client`]).
//! - `service`: [`HepService`], the bound every listener's service meets (a trait alias
//!   of `tower::Service<Received>` with its `Clone + Send` bounds).
//! - [`listener`]: [`Listener`] (bind, then run until a shutdown future), [`serve`],
//!   [`ListenerConfig`], [`ListenError`], [`RateLimitedWarn`]; [`listener::udp`],
//!   [`listener::tcp`], [`listener::tls`]: the three kinds, their settings
//!   ([`UdpConfig`], [`TcpConfig`], [`TlsConfig`]) and their docs (limits, framing, why
//!   no resync).
//! - [`stats`]: [`ListenerStats`], lock-free counters for metrics,
//!   [`ListenerStatsSnapshot`], [`RejectReason`], [`ListenerDropReason`].
//! - [`layer`]: tower middleware tower lacks: [`layer::overload::OverloadDrop`].
//! - [`sender`]: [`HepSender`] (a `tower::Service<Bytes>` for UDP/TCP/TLS destinations),
//!   [`HepDestination`] (OpenSIPS `hep_id` and relay specs), [`SenderConfig`], and its
//!   counters ([`SenderStats`](sender::SenderStats),
//!   [`SenderDropReason`](sender::SenderDropReason)).
//!
//! The listener and the sender count what they drop under different reasons, so the two
//! reason types have different names: [`ListenerDropReason`] (a received message not
//! delivered to the service) and [`SenderDropReason`](sender::SenderDropReason) (a
//! message not sent).
#![doc(test(attr(deny(warnings))))]
#![warn(clippy::unwrap_used)]

mod allow;
mod identity;
pub mod layer;
pub mod listener;
mod recv;
pub mod sender;
mod service;
mod spec;
pub mod stats;
mod sync;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use allow::{AllowlistError, SourceAllowlist};
pub use identity::ClientIdentity;
pub use listener::{
    ClientCheck, ListenError, Listener, ListenerConfig, RateLimitedWarn, TcpConfig, TlsConfig,
    TlsConfigError, UdpConfig, serve,
};
pub use recv::{Received, RecvInfo};
pub use sender::{HepDestination, HepSender, SenderConfig};
pub use service::HepService;
pub use spec::{HEP_PORT, ListenOn, ListenSpec, SpecError, Transport};
pub use stats::{ListenerDropReason, ListenerStats, ListenerStatsSnapshot, RejectReason};

/// The boxed error tower middleware returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
