//! `hep_tls`: handshake, mTLS accept and reject, certificate loading errors.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hep_transport::{ClientIdentity, ListenError, Listener, ListenerConfig, TlsConfig, Transport};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::support::{
    assert_nothing, expect_closed, recv_n, start_collecting, tcp_frames, tcp_stream, wait_for,
};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hep-transport-it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA, a server certificate it signed for `localhost`, and files for both.
struct Pki {
    dir: TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    server_cert: PathBuf,
    server_key: PathBuf,
    ca_file: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = TempDir::new();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let (cert, key) = Self::issue(&ca, "localhost");
        let server_cert = dir.write("server.pem", &cert);
        let server_key = dir.write("server.key", &key);
        let ca_file = dir.write("ca.pem", &ca.pem());
        Self {
            dir,
            ca,
            server_cert,
            server_key,
            ca_file,
        }
    }

    /// A certificate for `name` signed by `ca`, and its key, as PEM.
    fn issue(ca: &CertifiedIssuer<'static, KeyPair>, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }
}

fn client_identity(
    cert: &str,
    key: &str,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (
        chain,
        PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
    )
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    ca: CertificateDer<'static>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots.add(ca).unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

#[tokio::test]
async fn frames_over_tls_arrive() {
    // A self-signed server certificate, trusted by the client as its own root.
    let dir = TempDir::new();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_file = dir.write("self-signed.pem", &cert.pem());
    let key_file = dir.write("self-signed.key", &signing_key.serialize_pem());
    let tls = TlsConfig::from_pem_files(&cert_file, &key_file, None).unwrap();
    let (srv, mut rx) = start_collecting(
        "hep_tls:127.0.0.1:0",
        ListenerConfig::default().with_tls(tls),
    )
    .await;
    let mut client = tls_connect(srv.addr, cert.der().clone(), None)
        .await
        .unwrap();
    client.write_all(&tcp_stream()).await.unwrap();
    client.flush().await.unwrap();
    let got = recv_n(&mut rx, 12).await;
    let peer = client.get_ref().0.local_addr().unwrap();
    for (msg, frame) in got.iter().zip(tcp_frames()) {
        assert_eq!(&msg.wire[..], &frame[..]);
        assert_eq!(msg.info.transport, Transport::Tls);
        assert_eq!(msg.info.peer, peer);
        assert_eq!(msg.info.listener, srv.addr);
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn mtls_rejects_clients_without_a_ca_signed_certificate_and_accepts_the_others() {
    let pki = Pki::new();
    let tls = TlsConfig::from_pem_files(&pki.server_cert, &pki.server_key, Some(&pki.ca_file))
        .unwrap()
        .with_handshake_timeout(Duration::from_secs(2));
    let (srv, mut rx) = start_collecting(
        "hep_tls:127.0.0.1:0",
        ListenerConfig::default().with_tls(tls),
    )
    .await;
    let frame = &tcp_frames()[0];
    let stats = srv.stats.clone();

    // No certificate. With TLS 1.3 the client may finish its side first; the server
    // refuses the (empty) certificate and closes.
    if let Ok(mut anonymous) = tls_connect(srv.addr, pki.ca_der(), None).await {
        let _ = anonymous.write_all(frame).await;
        let _ = anonymous.flush().await;
        expect_closed(&mut anonymous).await;
    }
    wait_for("the anonymous client rejected", || {
        stats.rejected_by("tls_handshake") == 1
    })
    .await;

    // A certificate the CA did not sign.
    let rogue_ca = CertifiedIssuer::self_signed(
        {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p
        },
        KeyPair::generate().unwrap(),
    )
    .unwrap();
    let (cert, key) = Pki::issue(&rogue_ca, "rogue-agent");
    if let Ok(mut rogue) =
        tls_connect(srv.addr, pki.ca_der(), Some(client_identity(&cert, &key))).await
    {
        let _ = rogue.write_all(frame).await;
        let _ = rogue.flush().await;
        expect_closed(&mut rogue).await;
    }
    wait_for("the rogue client rejected", || {
        stats.rejected_by("tls_handshake") == 2
    })
    .await;
    assert_nothing(&mut rx, Duration::from_millis(50)).await;

    // A certificate the CA signed.
    let (cert, key) = Pki::issue(&pki.ca, "agent-1");
    let mut agent = tls_connect(srv.addr, pki.ca_der(), Some(client_identity(&cert, &key)))
        .await
        .unwrap();
    agent.write_all(frame).await.unwrap();
    agent.flush().await.unwrap();
    let got = recv_n(&mut rx, 1).await;
    assert_eq!(&got[0].wire[..], &frame[..]);
    assert_eq!(stats.rejected_by("tls_handshake"), 2);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_handshake_that_never_comes_times_out() {
    let pki = Pki::new();
    let tls = TlsConfig::from_pem_files(&pki.server_cert, &pki.server_key, None)
        .unwrap()
        .with_handshake_timeout(Duration::from_millis(100));
    let (srv, mut rx) = start_collecting(
        "hep_tls:127.0.0.1:0",
        ListenerConfig::default().with_tls(tls),
    )
    .await;
    // Plain TCP, silent.
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    expect_closed(&mut silent).await;
    assert_eq!(srv.stats.rejected_by("tls_handshake"), 1);
    // Plain HEP over a TLS port.
    let mut plain = TcpStream::connect(srv.addr).await.unwrap();
    plain.write_all(&tcp_frames()[0]).await.unwrap();
    expect_closed(&mut plain).await;
    assert_eq!(srv.stats.rejected_by("tls_handshake"), 2);
    assert_nothing(&mut rx, Duration::from_millis(20)).await;
    srv.stop().await.unwrap();
}

fn err_text(res: Result<TlsConfig, hep_transport::TlsConfigError>) -> String {
    res.expect_err("the config is refused").to_string()
}

#[tokio::test]
async fn certificate_errors_name_the_file_and_the_problem() {
    let pki = Pki::new();
    let missing = pki.dir.0.join("missing.pem");
    let text = err_text(TlsConfig::from_pem_files(&missing, &pki.server_key, None));
    assert!(text.starts_with("certificate file "), "{text}");
    assert!(text.contains(&missing.display().to_string()), "{text}");

    // A key file without a key.
    let text = err_text(TlsConfig::from_pem_files(
        &pki.server_cert,
        &pki.server_cert,
        None,
    ));
    assert!(text.contains("private key file"), "{text}");
    assert!(
        text.contains(&pki.server_cert.display().to_string()),
        "{text}"
    );
    assert!(text.contains("contains no private key"), "{text}");

    // A certificate file without certificates.
    let text = err_text(TlsConfig::from_pem_files(
        &pki.server_key,
        &pki.server_key,
        None,
    ));
    assert!(text.contains("contains no certificate"), "{text}");

    // A key that is not the certificate's.
    let other_key = pki
        .dir
        .write("other.key", &KeyPair::generate().unwrap().serialize_pem());
    let text = err_text(TlsConfig::from_pem_files(
        &pki.server_cert,
        &other_key,
        None,
    ));
    assert!(text.contains(&other_key.display().to_string()), "{text}");

    // A CA file that is not PEM.
    let junk = pki
        .dir
        .write("junk.pem", "-----BEGIN CERTIFICATE-----\nnot base64!!\n");
    let text = err_text(TlsConfig::from_pem_files(
        &pki.server_cert,
        &pki.server_key,
        Some(&junk),
    ));
    assert!(text.starts_with("client CA file "), "{text}");

    // hep_tls without TLS settings.
    let err = Listener::bind(
        "hep_tls:127.0.0.1:0".parse().unwrap(),
        ListenerConfig::default(),
    )
    .await
    .expect_err("no TLS settings");
    assert!(matches!(err, ListenError::MissingTls { .. }), "{err}");
}

#[tokio::test]
async fn the_client_certificate_reaches_the_service_and_a_client_check_refuses_the_unknown() {
    let pki = Pki::new();
    let tls = TlsConfig::from_pem_files(&pki.server_cert, &pki.server_key, Some(&pki.ca_file))
        .unwrap()
        .with_client_check(Arc::new(|c: &ClientIdentity| {
            c.dns_names().iter().any(|n| n == "agent-a.example")
        }));
    let (srv, mut rx) = start_collecting(
        "hep_tls:127.0.0.1:0",
        ListenerConfig::default().with_tls(tls),
    )
    .await;
    let frame = &tcp_frames()[0];

    // Signed by the CA, but the check does not know it: closed unread, counted.
    let (cert, key) = Pki::issue(&pki.ca, "agent-b.example");
    if let Ok(mut b) = tls_connect(srv.addr, pki.ca_der(), Some(client_identity(&cert, &key))).await
    {
        let _ = b.write_all(frame).await;
        let _ = b.flush().await;
        expect_closed(&mut b).await;
    }
    wait_for("agent b refused", || {
        srv.stats.rejected_by("client_cert_not_allowed") == 1
    })
    .await;
    assert_eq!(srv.stats.rejected_by("tls_handshake"), 0);
    assert_nothing(&mut rx, Duration::from_millis(50)).await;

    // Known: its messages carry its identity.
    let (cert, key) = Pki::issue(&pki.ca, "Agent-A.example");
    let identity = client_identity(&cert, &key);
    let expected = hep_transport::identity_from_der(&identity.0[0]);
    let mut a = tls_connect(srv.addr, pki.ca_der(), Some(identity))
        .await
        .unwrap();
    a.write_all(frame).await.unwrap();
    a.write_all(frame).await.unwrap();
    a.flush().await.unwrap();
    for got in recv_n(&mut rx, 2).await {
        let client = got.info.client.as_deref().expect("the client certificate");
        assert_eq!(client, &expected);
        assert_eq!(client.dns_names(), ["agent-a.example"]);
    }
    drop(a);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_tls_listener_with_an_allowlist_refuses_strangers_before_the_handshake() {
    let pki = Pki::new();
    let tls = TlsConfig::from_pem_files(&pki.server_cert, &pki.server_key, None).unwrap();
    let allow = "127.0.0.1".parse().unwrap();
    let (srv, mut rx) = start_collecting(
        "hep_tls:127.0.0.1:0",
        ListenerConfig::default()
            .with_tls(tls)
            .with_allow(Some(allow)),
    )
    .await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stranger = sock.connect(srv.addr).await.unwrap();
    expect_closed(&mut stranger).await;
    wait_for("the refusal", || {
        srv.stats.rejected_by("source_not_allowed") == 1
    })
    .await;
    assert_eq!(
        srv.stats.rejected_by("tls_handshake"),
        0,
        "no handshake was tried"
    );
    let mut agent = tls_connect(srv.addr, pki.ca_der(), None).await.unwrap();
    agent.write_all(&tcp_frames()[0]).await.unwrap();
    agent.flush().await.unwrap();
    assert_eq!(recv_n(&mut rx, 1).await[0].info.client, None);
    drop(agent);
    srv.stop().await.unwrap();
}
