//! The cluster's transport on NATS JetStream: what an edge (`output nats:...`) and a
//! consumer (`input nats:...`) share.
//!
//! ```text
//!  agents ─HEP─> edge ─┐                        ┌─> consumer (partitions 0-31)  ─> store
//!  agents ─HEP─> edge ─┼─> stream HEP, hep.<k> ─┤
//!                      │   (3 replicas)         └─> consumer (partitions 32-63) ─> store
//! ```
//!
//! - [`spec`]: the two specs.
//! - [`envelope`]: a message on the stream (HEP bytes and the edge's receive info as
//!   headers), its partition (from the Call-ID: a call is always read by one consumer)
//!   and its key (`Nats-Msg-Id`, and what the consumer's store deduplicates on).
//! - [`stream`]: connecting, and the stream both roles make sure of.
//! - [`positions`]: how far a consumer has read each partition, kept by the consumer.
//! - [`stats`]: their metrics.
//!
//! The edge is `outputs::nats`, the consumer `inputs::nats`; docs/SCALE-OUT.md is the
//! operator's view.

pub mod envelope;
pub mod positions;
pub mod spec;
pub mod stats;
pub mod stream;

pub use envelope::{Envelope, EnvelopeError, partition_of};
pub use spec::{NatsInputSpec, NatsOutputSpec, NatsSpecError, StreamSpec};
