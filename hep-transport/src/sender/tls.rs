//! TLS client settings for `transport=tls` destinations (rustls, ring provider).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    CryptoProvider, ring, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::error::ClientTlsError;

/// TLS settings of a sender: which CAs to trust, an optional client certificate (mTLS),
/// and an optional server name (SNI and verification) overriding the destination's host.
///
/// No system trust store is used: name the CA that signed your collector's certificate.
///
/// ```no_run
/// use hep_transport::sender::ClientTls;
///
/// let tls = ClientTls::builder()
///     .ca_file("/etc/hep/ca.pem")
///     .client_cert_files("/etc/hep/agent.pem", "/etc/hep/agent.key") // mTLS
///     .server_name("homer.example.net")
///     .build()?;
/// # let _ = tls;
/// # Ok::<(), hep_transport::sender::error::ClientTlsError>(())
/// ```
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// A builder with no CA, no client certificate and no server name override.
    pub fn builder() -> ClientTlsBuilder {
        ClientTlsBuilder::default()
    }

    /// Settings from a rustls configuration you built yourself.
    pub const fn from_rustls(config: Arc<ClientConfig>) -> Self {
        Self {
            config,
            server_name: None,
        }
    }

    /// The same settings with `name` as the server name to send (SNI) and verify,
    /// instead of the destination's host.
    ///
    /// # Errors
    /// `name` is neither a DNS name nor an IP address.
    pub fn with_server_name(mut self, name: &str) -> Result<Self, ClientTlsError> {
        self.server_name = Some(server_name(name)?);
        Ok(self)
    }

    /// The rustls configuration.
    pub const fn rustls_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// The server name override, if any.
    pub const fn server_name(&self) -> Option<&ServerName<'static>> {
        self.server_name.as_ref()
    }
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .field(
                "client_auth",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .finish_non_exhaustive()
    }
}

fn server_name(name: &str) -> Result<ServerName<'static>, ClientTlsError> {
    ServerName::try_from(name.to_owned())
        .map_err(|_| ClientTlsError::InvalidServerName(name.to_owned()))
}

#[derive(Debug, Clone)]
enum Pem {
    File(PathBuf),
    Data(Vec<u8>),
}

impl Pem {
    fn origin(&self) -> String {
        match self {
            Self::File(p) => ClientTlsError::origin(Some(p)),
            Self::Data(_) => ClientTlsError::origin(None),
        }
    }

    fn certs(&self, what: &'static str) -> Result<Vec<CertificateDer<'static>>, ClientTlsError> {
        let pem_err = |source| ClientTlsError::Pem {
            what,
            origin: self.origin(),
            source,
        };
        let certs: Vec<_> = match self {
            Self::File(p) => CertificateDer::pem_file_iter(p)
                .map_err(pem_err)?
                .collect::<Result<_, _>>(),
            Self::Data(d) => CertificateDer::pem_slice_iter(d).collect::<Result<_, _>>(),
        }
        .map_err(pem_err)?;
        if certs.is_empty() {
            return Err(ClientTlsError::NoCertificates {
                origin: self.origin(),
            });
        }
        Ok(certs)
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, ClientTlsError> {
        match self {
            Self::File(p) => PrivateKeyDer::from_pem_file(p),
            Self::Data(d) => PrivateKeyDer::from_pem_slice(d),
        }
        .map_err(|source| ClientTlsError::Pem {
            what: "client key",
            origin: self.origin(),
            source,
        })
    }
}

/// Builds a [`ClientTls`]. Nothing is read until [`build`](Self::build).
#[derive(Debug, Clone, Default)]
pub struct ClientTlsBuilder {
    roots: Vec<Pem>,
    roots_der: Vec<Vec<u8>>,
    client: Option<(Pem, Pem)>,
    server_name: Option<String>,
    dangerous_no_verify: bool,
}

impl ClientTlsBuilder {
    /// Trusts every certificate in this PEM file (a CA bundle).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots.push(Pem::File(path.into()));
        self
    }

    /// Trusts every certificate in this PEM text.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots.push(Pem::Data(pem.into()));
        self
    }

    /// Trusts this DER certificate.
    pub fn ca_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.roots_der.push(der.into());
        self
    }

    /// Presents this certificate chain and key (PEM files) when the server asks (mTLS).
    /// The key may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub fn client_cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client = Some((Pem::File(cert.into()), Pem::File(key.into())));
        self
    }

    /// Presents this certificate chain and key (PEM text) when the server asks (mTLS).
    pub fn client_cert_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.client = Some((Pem::Data(cert.into()), Pem::Data(key.into())));
        self
    }

    /// Sends and verifies `name` instead of the destination's host (e.g. when connecting
    /// to an IP address whose certificate names a host).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// **Dangerous: for tests only.** Accepts any server certificate: no chain, name or
    /// expiry check (handshake signatures are still checked). Anyone on the path can then
    /// read and change the HEP traffic.
    pub const fn dangerous_accept_any_server_certificate(mut self) -> Self {
        self.dangerous_no_verify = true;
        self
    }

    /// Reads the files and builds the rustls configuration (TLS 1.2 and 1.3, ring).
    ///
    /// # Errors
    /// A file that cannot be read, PEM without a certificate or key, a certificate or key
    /// rustls rejects, an invalid server name, or no CA at all (unless verification is
    /// disabled).
    pub fn build(self) -> Result<ClientTls, ClientTlsError> {
        let provider = Arc::new(ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if self.dangerous_no_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            for pem in &self.roots {
                for cert in pem.certs("CA certificates")? {
                    roots.add(cert)?;
                }
            }
            for der in self.roots_der {
                roots.add(CertificateDer::from(der))?;
            }
            if roots.is_empty() {
                return Err(ClientTlsError::NoRoots);
            }
            builder.with_root_certificates(roots)
        };
        let config = match &self.client {
            Some((cert, key)) => {
                builder.with_client_auth_cert(cert.certs("client certificate")?, key.key()?)?
            }
            None => builder.with_no_client_auth(),
        };
        let server_name = self.server_name.as_deref().map(server_name).transpose()?;
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// The verifier behind [`ClientTlsBuilder::dangerous_accept_any_server_certificate`].
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_errors_name_the_problem() {
        let e = ClientTls::builder().build().unwrap_err();
        assert!(matches!(e, ClientTlsError::NoRoots), "{e}");
        let e = ClientTls::builder()
            .ca_file("/nonexistent/ca.pem")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let e = ClientTls::builder().ca_pem("nothing").build().unwrap_err();
        assert!(matches!(e, ClientTlsError::NoCertificates { .. }), "{e}");
        let ok = ClientTls::builder()
            .dangerous_accept_any_server_certificate()
            .server_name("collector.local")
            .build()
            .unwrap();
        assert!(ok.server_name().is_some());
        assert!(
            ClientTls::builder()
                .dangerous_accept_any_server_certificate()
                .server_name("bad name!")
                .build()
                .is_err()
        );
    }
}
