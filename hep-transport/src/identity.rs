//! Who is at the other end of a TLS connection: the identity of a verified client
//! certificate, as callbacks see it in [`RecvInfo::client`](crate::RecvInfo::client).

use std::fmt;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// A verified TLS client certificate, reduced to what identifies it: its SHA-256
/// fingerprint and the DNS names of its subject alternative name extension.
///
/// Computed once per connection, after the handshake verified the certificate against
/// the configured CA (`client_ca_file`); every message of the connection shares it.
///
/// The subject's common name (CN) is not read: RFC 6125 deprecates names in the CN, and
/// current CAs (and `rcgen`, `step`, `cfssl`, `openssl req -addext subjectAltName=...`)
/// put them in the SAN. A certificate with a CN only is identified by its fingerprint.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientIdentity {
    sha256: [u8; 32],
    dns_names: Vec<String>,
}

impl ClientIdentity {
    /// The identity of a DER certificate. A certificate whose extensions cannot be parsed
    /// (which rustls would not have verified) has its fingerprint and no names.
    pub fn from_der(cert: &CertificateDer<'_>) -> Self {
        let dns_names = webpki::EndEntityCert::try_from(cert)
            .map(|c| c.valid_dns_names().map(str::to_ascii_lowercase).collect())
            .unwrap_or_default();
        Self {
            sha256: sha256(cert.as_ref()),
            dns_names,
        }
    }

    /// An identity from its parts (tests, or callers that verified a certificate
    /// themselves). Names are compared in lower case.
    pub fn new(sha256: [u8; 32], dns_names: impl IntoIterator<Item = String>) -> Self {
        Self {
            sha256,
            dns_names: dns_names
                .into_iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The SHA-256 of the DER certificate.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// The SHA-256 as `openssl x509 -noout -fingerprint -sha256` prints it:
    /// colon-separated upper-case hex.
    pub fn fingerprint(&self) -> String {
        let mut out = String::with_capacity(32 * 3);
        for (i, b) in self.sha256.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            out.push_str(&format!("{b:02X}"));
        }
        out
    }

    /// The DNS names of the subject alternative names, in lower case (a wildcard name
    /// such as `*.example.com` is listed as written, not expanded).
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("sha256", &self.fingerprint())
            .field("dns_names", &self.dns_names)
            .finish()
    }
}

impl fmt::Display for ClientIdentity {
    /// `agent-a.example (sha256 AB:CD:...)`, or the fingerprint alone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.dns_names.is_empty() {
            write!(f, "{} ", self.dns_names.join(","))?;
        }
        write!(f, "(sha256 {})", self.fingerprint())
    }
}

/// SHA-256 with the hash of rustls's `ring` provider (no other crypto dependency).
fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Some(suite) = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13() {
        let digest = suite.common.hash_provider.hash(data);
        out.copy_from_slice(&digest.as_ref()[..32]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_openssls_format() {
        let id = ClientIdentity::new([0xab; 32], ["Agent-A.Example".to_owned()]);
        assert_eq!(id.fingerprint().len(), 32 * 3 - 1);
        assert!(id.fingerprint().starts_with("AB:AB:"));
        assert_eq!(id.dns_names(), ["agent-a.example"]);
        assert!(id.to_string().starts_with("agent-a.example (sha256 AB:AB"));
    }

    #[test]
    fn sha256_is_sha256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            sha256(b"abc")[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "{:02x?}",
            sha256(b"abc")
        );
    }
}
