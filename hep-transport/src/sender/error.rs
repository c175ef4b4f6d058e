//! Errors of the sender: a message not sent, a sender that cannot be built, a TLS
//! configuration that cannot be loaded.

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::SenderDropReason;

type Source = Arc<dyn StdError + Send + Sync>;

/// A message that was not sent, with the [`SenderDropReason`] it was counted under.
///
/// Cheap to clone (one error fans out to every message a broken connection loses).
/// Users cannot build one.
///
/// ```
/// use hep_transport::sender::error::SendError;
///
/// fn report(e: &SendError) -> &'static str {
///     if e.is_cooldown() { "destination resting" } else { e.reason().label() }
/// }
/// # let _ = report;
/// ```
#[derive(Clone)]
pub struct SendError {
    reason: SenderDropReason,
    destination: Arc<str>,
    source: Option<Source>,
}

// ===== impl SendError =====

impl SendError {
    pub(crate) fn new(
        reason: SenderDropReason,
        destination: Arc<str>,
        source: Option<Source>,
    ) -> Self {
        Self {
            reason,
            destination,
            source,
        }
    }

    /// The reason the message was counted as dropped under.
    pub const fn reason(&self) -> SenderDropReason {
        self.reason
    }

    /// The destination, as written in its spec.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// A write or connect took too long ([`SenderDropReason::WriteTimeout`]).
    pub fn is_timeout(&self) -> bool {
        self.reason == SenderDropReason::WriteTimeout
    }

    /// The destination is resting after too many failures ([`SenderDropReason::Cooldown`]).
    pub fn is_cooldown(&self) -> bool {
        self.reason == SenderDropReason::Cooldown
    }

    /// The sender or the connection was closed ([`SenderDropReason::Closed`]).
    pub fn is_closed(&self) -> bool {
        self.reason == SenderDropReason::Closed
    }

    /// The queue overflowed ([`SenderDropReason::QueueOverflow`]).
    pub fn is_overflow(&self) -> bool {
        self.reason == SenderDropReason::QueueOverflow
    }
}

impl fmt::Debug for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError")
            .field("reason", &self.reason)
            .field("destination", &self.destination)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.reason {
            SenderDropReason::QueueOverflow => {
                "the send queue (hep_async_max_postponed_chunks) is full"
            }
            SenderDropReason::ConnectFailed => "could not connect",
            SenderDropReason::WriteTimeout => "a write blocked too long; the connection was closed",
            SenderDropReason::Cooldown => {
                "the destination failed max_retries times in a row and is cooling down"
            }
            SenderDropReason::Io => "socket error",
            SenderDropReason::Closed => "the connection or the sender was closed",
            SenderDropReason::Encode => {
                "the message cannot be encoded at the destination's version"
            }
        };
        write!(
            f,
            "HEP message for `{}` dropped ({}): {what}",
            self.destination, self.reason
        )?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for SendError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

/// Why a [`HepSender`](super::HepSender) could not be built.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `HepSender::new` was called outside a tokio runtime (the sender spawns its
    /// connection tasks on the runtime it was created in).
    #[error("a HEP sender must be created inside a tokio runtime")]
    NoRuntime,
    /// A TLS destination without [`SenderConfig::tls`](super::SenderConfig::tls).
    #[error("destination `{0}` uses TLS: set SenderConfig::tls to a ClientTls")]
    MissingTls(String),
    /// The TLS server name (the destination's host, or the override) is not a valid DNS
    /// name or IP address.
    #[error("`{0}` is not a valid TLS server name (a DNS name or an IP address)")]
    InvalidServerName(String),
    /// A setting out of range; the message names it.
    #[error("invalid sender setting: {0}")]
    InvalidConfig(&'static str),
}

/// Why a [`ClientTls`](super::ClientTls) could not be built.
///
/// The underlying error is the [`source`](std::error::Error::source), not repeated in the
/// message: print the chain (`{:#}` with anyhow) to see both.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {origin}")]
    Pem {
        /// What was being read: "CA certificates", "client certificate", "client key".
        what: &'static str,
        /// `file `PATH`` or `PEM data`.
        origin: String,
        /// The underlying error.
        #[source]
        source: tokio_rustls::rustls::pki_types::pem::Error,
    },
    /// A certificate source held no certificate.
    #[error("no certificate found in {origin}")]
    NoCertificates {
        /// `file `PATH`` or `PEM data`.
        origin: String,
    },
    /// No CA certificate was given and server verification was not disabled.
    #[error(
        "no CA certificate given: use ca_file/ca_pem/ca_der \
         (or, for tests only, dangerous_accept_any_server_certificate)"
    )]
    NoRoots,
    /// rustls refused a certificate or key (e.g. a CA certificate that does not parse, or a
    /// key that does not match the certificate).
    #[error("TLS configuration rejected by rustls")]
    Rustls(#[from] tokio_rustls::rustls::Error),
    /// The server name override is not a valid DNS name or IP address.
    #[error("`{0}` is not a valid TLS server name (a DNS name or an IP address)")]
    InvalidServerName(String),
}

impl ClientTlsError {
    pub(crate) fn origin(path: Option<&PathBuf>) -> String {
        path.map_or_else(
            || "PEM data".to_owned(),
            |p| format!("file `{}`", p.display()),
        )
    }
}
