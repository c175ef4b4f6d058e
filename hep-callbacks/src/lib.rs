//! The HEP callback API — OpenSIPS's `register_hep_cb` and `HEP_SCRIPT_SKIP` — as tower
//! layers.
//!
//! A callback sees each received message ([`Received`](hep_proto::Received): the decoded
//! message, the bytes it came in and its receive info), may inspect and change it, and
//! returns a [`Verdict`]:
//!
//! - [`Verdict::Continue`]: the next callback, then the rest of the stack, sees it;
//! - [`Verdict::Skip`]: the seed's `HEP_SCRIPT_SKIP`: stop here, nothing further sees it
//!   (counted as skipped);
//! - [`Verdict::Reject`]: a built-in check refused it (counted with the reason).
//!
//! Plain functions and closures are callbacks; [`AsyncCallbackLayer`] takes an async
//! `tower::Service` as one. Every callback becomes a tower [`Layer`](tower::Layer), so it
//! composes with any tower middleware:
//!
//! ```
//! use hep_callbacks::{CallbackChainLayer, Verdict};
//! use hep_proto::Received;
//! use tower::{ServiceBuilder, service_fn};
//!
//! let callbacks = CallbackChainLayer::builder()
//!     // Runs first: drop keep-alive noise.
//!     .register(|r: &mut Received| if r.message.payload.bytes().is_empty() { Verdict::Skip } else { Verdict::Continue })
//!     // Runs second: stamp our node name on what is left.
//!     .register(|r: &mut Received| { r.message_mut().node_name = Some("edge-1".into()); Verdict::Continue })
//!     .build();
//! let stats = callbacks.stats();
//! let service = ServiceBuilder::new()
//!     .layer(callbacks)
//!     .service(service_fn(|_r: Received| async { Ok::<(), std::convert::Infallible>(()) }));
//! # drop((service, stats));
//! ```
//!
//! This crate does no IO: what a callback sees is plain data from [`hep_proto`]
//! (re-exported here), and a listener of `hep-transport` (or anything else) produces it.
//! A crate of callbacks builds without sockets, TLS or an async runtime.
//!
//! # Order
//!
//! Callbacks registered on one [`CallbackChainLayer`] run **in registration order**
//! (OpenSIPS runs them last-registered-first; we chose the order people read in their
//! code). Layers run outermost first, as in tower's `ServiceBuilder`: the layer added
//! first sees a message first. Put cheap refusals (auth, filters, rate limits) before
//! expensive work (dedup, outputs).
//!
//! # Backpressure
//!
//! Every layer of this crate is ready when the service inside it is (and, for
//! [`AsyncCallback`], its callback service too): a slow output holds the listener back
//! through the callbacks, as it would without them. A stopped message (skipped or
//! rejected) never reaches the inner service.
//!
//! # Built-ins
//!
//! Each is a [`HepCallback`], usable alone as a layer ([`CallbackLayer::new`]) or
//! registered with others: [`AuthKeyCheck`] (chunk 0x000e), [`StripAuthKey`],
//! [`ClientCaptureIds`] (TLS client certificates to capture ids), [`Filter`], [`Rewrite`],
//! [`Dedup`], [`RateLimit`].
//!
//! # Layout
//! - `callback`: [`HepCallback`], [`Verdict`], [`CallbackStats`].
//! - `layer`: [`CallbackLayer`] / [`Callback`] (one callback), [`CallbackChainLayer`] /
//!   [`CallbackChain`] (several, in order, built with a [`CallbackChainBuilder`]), and
//!   their [`future`].
//! - `async_layer`: [`AsyncCallbackLayer`] / [`AsyncCallback`], an async service as a
//!   callback.
//! - `builtin/`: one file per built-in.
//!
//! # Examples
//! `examples/skip_options.rs`: a UDP listener with a custom tower layer and a callback
//! that skips SIP OPTIONS (see the crate's README).
#![doc(test(attr(deny(warnings))))]
#![warn(clippy::unwrap_used)]

mod async_layer;
mod builtin;
mod callback;
mod layer;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The message types callbacks see ([`Received`](hep_proto::Received) ...), and the rest of
/// the HEP codec.
pub use hep_proto;

pub use async_layer::{AsyncCallback, AsyncCallbackLayer};
pub use builtin::auth::{AuthKeyCheck, AuthKeys, StripAuthKey};
pub use builtin::client_ids::{ClientCaptureIds, ClientKeyError};
pub use builtin::dedup::Dedup;
pub use builtin::filter::Filter;
pub use builtin::rate_limit::RateLimit;
pub use builtin::rewrite::Rewrite;
pub use callback::{CallbackStats, HepCallback, Verdict};
pub use layer::{
    Callback, CallbackChain, CallbackChainBuilder, CallbackChainLayer, CallbackLayer, future,
};
