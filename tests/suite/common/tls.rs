//! Certificates for the TLS tests, made by the test itself (`rcgen`): a CA, a server
//! certificate for `localhost` / `127.0.0.1` signed by it, a client certificate signed
//! by it, and a second server certificate (for rotation), all PEM files in a scratch
//! directory.

use super::Scratch;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The files of a small PKI.
pub struct Pki {
    /// The directory holding them (removed on drop).
    pub dir: Scratch,
    /// The CA certificate (PEM).
    pub ca: String,
    /// The server's certificate chain (PEM: server certificate, then the CA).
    pub server_cert: String,
    /// The server's private key (PEM, PKCS#8).
    pub server_key: String,
    /// A second server certificate and key (another serial and common name), for
    /// rotation tests.
    pub server2_cert: String,
    /// See `server2_cert`.
    pub server2_key: String,
    /// A client certificate signed by the CA (PEM).
    pub client_cert: String,
    /// Its private key (PEM).
    pub client_key: String,
    /// The CA certificate in DER (for clients that take DER).
    pub ca_der: Vec<u8>,
}

fn leaf(
    name: &str,
    usage: ExtendedKeyUsagePurpose,
    ca: &Certificate,
    ca_key: &KeyPair,
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![usage];
    let cert = p.signed_by(&key, ca, ca_key).expect("sign");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// Makes the files under a scratch directory tagged `tag`.
    pub fn new(tag: &str) -> Pki {
        let dir = Scratch::new(tag);
        let ca_key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "ferrocache test CA");
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = p.self_signed(&ca_key).expect("CA");
        let (s1, k1) = leaf(
            "ferrocache test server",
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca,
            &ca_key,
        );
        let (s2, k2) = leaf(
            "ferrocache test server 2",
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca,
            &ca_key,
        );
        let (c, ck) = leaf(
            "ferrocache test client",
            ExtendedKeyUsagePurpose::ClientAuth,
            &ca,
            &ca_key,
        );
        let ca_pem = ca.pem();
        let ca_path = dir.file("ca.pem", &ca_pem);
        let server_cert = dir.file("server.pem", &format!("{s1}{ca_pem}"));
        let server_key = dir.file("server.key", &k1);
        let server2_cert = dir.file("server2.pem", &format!("{s2}{ca_pem}"));
        let server2_key = dir.file("server2.key", &k2);
        let client_cert = dir.file("client.pem", &c);
        let client_key = dir.file("client.key", &ck);
        Pki {
            ca_der: ca.der().to_vec(),
            dir,
            ca: ca_path,
            server_cert,
            server_key,
            server2_cert,
            server2_key,
            client_cert,
            client_key,
        }
    }
}

/// A blocking TLS connection to 127.0.0.1.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// A client configuration trusting `pki`'s CA, presenting its client certificate when
/// `with_client_cert`, limited to `versions` (all of rustls' when empty).
pub fn client_config(
    pki: &Pki,
    with_client_cert: bool,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.ca_der.clone()))
        .expect("CA");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider);
    let builder = if versions.is_empty() {
        builder.with_safe_default_protocol_versions()
    } else {
        builder.with_protocol_versions(versions)
    }
    .expect("versions")
    .with_root_certificates(roots);
    let cfg = if with_client_cert {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.client_cert)
            .expect("client cert")
            .map(|c| c.expect("client cert"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(&pki.client_key).expect("client key");
        builder
            .with_client_auth_cert(certs, key)
            .expect("client auth")
    } else {
        builder.with_no_client_auth()
    };
    std::sync::Arc::new(cfg)
}

/// Connects to `port` on 127.0.0.1 and completes the handshake (server name
/// `localhost`). Err carries the handshake's error.
pub fn connect_tls(
    port: u16,
    cfg: std::sync::Arc<rustls::ClientConfig>,
) -> Result<TlsStream, String> {
    use std::io::Write;
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).ok();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok();
    tcp.set_write_timeout(Some(std::time::Duration::from_secs(5)))
        .ok();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(cfg, name).map_err(|e| e.to_string())?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    s.flush().map_err(|e| e.to_string())?;
    Ok(s)
}

impl super::TimedRead for TlsStream {
    fn set_read_wait(&mut self, wait: std::time::Duration) {
        self.sock
            .set_read_timeout(Some(wait.max(std::time::Duration::from_millis(1))))
            .ok();
    }
}

/// The server arguments that turn on TLS with `pki`'s server certificate, plus
/// `extra` `-o` settings (comma-separated, may be empty).
pub fn tls_args(pki: &Pki, extra: &str) -> Vec<String> {
    let mut o = format!(
        "ssl_chain_cert={},ssl_key={}",
        pki.server_cert, pki.server_key
    );
    if !extra.is_empty() {
        o.push(',');
        o.push_str(extra);
    }
    vec!["-Z".into(), "-o".into(), o]
}
