//! A `hep_tls` listener's TLS settings: [`TlsConfig`] (the rustls server config, the
//! handshake timeout, which client certificates may connect), loaded from PEM files, and
//! [`TlsConfigError`] when they cannot be. The handshake itself is in `tls`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

use crate::ClientIdentity;

/// The default [`TlsConfig::handshake_timeout`]: 5 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Decides whether a verified client certificate may connect (see
/// [`TlsConfig::with_client_check`]).
pub type ClientCheck = Arc<dyn Fn(&ClientIdentity) -> bool + Send + Sync>;

/// TLS settings of a `hep_tls` listener: the rustls server config, the handshake
/// timeout, and which client certificates may connect.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    handshake_timeout: Duration,
    client_check: Option<ClientCheck>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server", &self.server)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("client_check", &self.client_check.is_some())
            .finish()
    }
}

impl TlsConfig {
    /// Loads a certificate chain and its private key from PEM files and, if `client_ca`
    /// is given, requires every client to present a certificate signed by one of the CA
    /// certificates in that PEM file (mTLS).
    ///
    /// The chain file holds the server certificate first, then any intermediates. The key
    /// may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC). Uses rustls's `ring` provider, TLS 1.2
    /// and 1.3.
    ///
    /// # Errors
    /// A [`TlsConfigError`] naming the file and what was wrong with it.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
        client_ca: Option<&Path>,
    ) -> Result<Self, TlsConfigError> {
        let cert_path = cert_chain.as_ref();
        let key_path = key.as_ref();
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let chain = load_certs(cert_path, FileRole::Certificate)?;
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsConfigError::Empty {
                role: FileRole::PrivateKey,
                path: key_path.to_owned(),
            },
            e => TlsConfigError::Pem {
                role: FileRole::PrivateKey,
                path: key_path.to_owned(),
                source: e,
            },
        })?;

        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsConfigError::Rustls {
                what: "choosing protocol versions".into(),
                source,
            })?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca_path) => builder.with_client_cert_verifier(client_verifier(ca_path, provider)?),
        };
        let server =
            builder
                .with_single_cert(chain, key)
                .map_err(|source| TlsConfigError::Rustls {
                    what: format!(
                        "using certificate {} with key {}",
                        cert_path.display(),
                        key_path.display()
                    ),
                    source,
                })?;
        Ok(Self::from_server_config(Arc::new(server)))
    }

    /// TLS settings from a rustls server config built by the caller.
    pub fn from_server_config(server: Arc<ServerConfig>) -> Self {
        Self {
            server,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            client_check: None,
        }
    }

    /// Admits only the client certificates `check` accepts: a connection whose verified
    /// certificate it refuses (or that presents none) is closed right after the
    /// handshake, before anything is read, and counted as
    /// `rejected{reason="client_cert_not_allowed"}`. The certificate's identity is logged
    /// (rate-limited), so that an operator can add it.
    ///
    /// The check runs once per connection. It needs client certificates: build the config
    /// with a `client_ca` (without one, every connection is refused).
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use hep_transport::TlsConfig;
    ///
    /// # fn main() -> Result<(), hep_transport::TlsConfigError> {
    /// let tls = TlsConfig::from_pem_files("server.pem", "server.key", Some("agents-ca.pem".as_ref()))?
    ///     .with_client_check(Arc::new(|client| client.dns_names().iter().any(|n| n.ends_with(".agents.example"))));
    /// # let _ = tls;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn with_client_check(mut self, check: ClientCheck) -> Self {
        self.client_check = Some(check);
        self
    }

    /// Sets how long a handshake may take (default [`DEFAULT_HANDSHAKE_TIMEOUT`], 5 s).
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a handshake may take.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The rustls server config.
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }

    /// The check client certificates must pass, if any ([`with_client_check`](Self::with_client_check)).
    pub(super) fn client_check(&self) -> Option<&ClientCheck> {
        self.client_check.as_ref()
    }
}

fn load_certs(path: &Path, role: FileRole) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem_err = |source| TlsConfigError::Pem {
        role,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(TlsConfigError::Empty {
            role,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn client_verifier(
    ca_path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca_path, FileRole::ClientCa)? {
        roots.add(cert).map_err(|source| TlsConfigError::Rustls {
            what: format!("adding a CA certificate from {}", ca_path.display()),
            source,
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| TlsConfigError::Rustls {
            what: format!("building the client verifier from {}", ca_path.display()),
            source: rustls::Error::General(e.to_string()),
        })
}

/// Which file a [`TlsConfigError`] is about.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    /// The server certificate chain.
    Certificate,
    /// The server's private key.
    PrivateKey,
    /// The CA certificates client certificates must chain to.
    ClientCa,
}

impl std::fmt::Display for FileRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Certificate => "certificate",
            Self::PrivateKey => "private key",
            Self::ClientCa => "client CA",
        })
    }
}

/// The TLS certificate, key or CA could not be used; says which file and why.
///
/// The underlying error is the [`source`](std::error::Error::source), not repeated in the
/// message: print the chain (`{:#}` with anyhow) to see both.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The file could not be read or is not valid PEM.
    #[error("{role} file {}: cannot be read as PEM", path.display())]
    Pem {
        /// Which file.
        role: FileRole,
        /// Its path.
        path: PathBuf,
        /// What was wrong.
        source: rustls::pki_types::pem::Error,
    },
    /// The file has no PEM item of the expected kind.
    #[error("{role} file {} contains no {}", path.display(), expected(*role))]
    Empty {
        /// Which file.
        role: FileRole,
        /// Its path.
        path: PathBuf,
    },
    /// rustls refused the material (e.g. the key does not match the certificate).
    #[error("{what}: refused by rustls")]
    Rustls {
        /// What was being done, naming the files.
        what: String,
        /// rustls's reason.
        source: rustls::Error,
    },
}

fn expected(role: FileRole) -> &'static str {
    match role {
        FileRole::Certificate | FileRole::ClientCa => {
            "certificate (expected a \"-----BEGIN CERTIFICATE-----\" block)"
        }
        FileRole::PrivateKey => {
            "private key (expected a \"-----BEGIN PRIVATE KEY-----\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)"
        }
    }
}
