//! Who is at the other end of a TLS connection: the [`ClientIdentity`] of a verified
//! client certificate, as callbacks see it in [`RecvInfo::client`](crate::RecvInfo::client).
//!
//! The identity itself is plain data in `hep-proto`; reading it from a certificate needs
//! an X.509 parser (rustls-webpki) and a hash (rustls's `ring`), which stay here, with
//! the TLS listener that verifies the certificate.

use hep_proto::ClientIdentity;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// The identity of a DER certificate: its SHA-256 and the DNS names of its subject
/// alternative names, in lower case. A certificate whose extensions cannot be parsed
/// (which rustls would not have verified) has its fingerprint and no names.
///
/// The TLS listener calls it once per connection, after the handshake verified the
/// certificate against the configured CA (`client_ca_file`).
pub fn identity_from_der(cert: &CertificateDer<'_>) -> ClientIdentity {
    let dns_names: Vec<String> = webpki::EndEntityCert::try_from(cert)
        .map(|c| c.valid_dns_names().map(str::to_owned).collect())
        .unwrap_or_default();
    ClientIdentity::new(sha256(cert.as_ref()), dns_names)
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
