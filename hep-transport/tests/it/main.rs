//! hep-transport integration tests: one binary, one module per subject. Loopback only;
//! every wait is bounded (see `support`).

mod allow;
mod layer;
mod relay;
mod shutdown;
mod support;
mod tcp;
mod tls;
mod udp;
