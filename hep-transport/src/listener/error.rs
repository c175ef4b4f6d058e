//! [`ListenError`]: why a listener could not be set up, or stopped by itself.

use std::io;

#[cfg(doc)]
use super::config::ListenerConfig;
use super::tls_config::TlsConfigError;
use crate::{BoxError, ListenSpec};

/// Why a listener could not be set up or stopped by itself.
///
/// The underlying error is the [`source`](std::error::Error::source), not repeated in the
/// message: print the chain (`{:#}` with anyhow) to see both.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address could not be bound (in use, not local, no permission ...).
    #[error("cannot listen on {spec}: bind failed")]
    Bind {
        /// What was being bound.
        spec: ListenSpec,
        /// The OS error.
        source: io::Error,
    },
    /// A socket could not be created or configured.
    #[error("cannot listen on {spec}: {what}")]
    Socket {
        /// The listener.
        spec: ListenSpec,
        /// The step that failed, e.g. "setting SO_REUSEPORT".
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A `hep_tls` spec without [`ListenerConfig::tls`].
    #[error("cannot listen on {spec}: hep_tls needs a certificate and a key (ListenerConfig::tls)")]
    MissingTls {
        /// The listener.
        spec: ListenSpec,
    },
    /// The TLS certificate, key or CA could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// The service failed in `poll_ready` (it can take no more requests).
    #[error("listener {spec} stopped: the service failed")]
    Service {
        /// The listener.
        spec: ListenSpec,
        /// The service's error.
        source: BoxError,
    },
}
