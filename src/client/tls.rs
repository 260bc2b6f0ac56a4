//! TLS to the nodes (rustls, ring provider, TLS 1.2 and 1.3): the options, the rustls
//! configuration built from them once per [`super::Client`], and the stream a
//! connection reads and writes, plain TCP or TLS.
//!
//! ```text
//!  TlsOptions ── Client::new ──▶ Connector (Arc<rustls::ClientConfig>, shared by every node)
//!                                    │ NodeConn::connect: TCP connect, then
//!                                    ▼
//!              Stream::Tls(StreamOwned<ClientConnection, TcpStream>) ── handshake ── protocol
//! ```

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::error::{Error, Result};

/// TLS settings for the connections to every node (memcached `-Z`, ferrocache `-Z`).
///
/// The default trusts the system's root certificates (the platform trust store, as
/// `rustls-native-certs` finds it: `/etc/ssl/certs` on Debian), presents no client
/// certificate and checks each node's certificate against the node's host as
/// written in the server list (an IP address host against the certificate's IP
/// addresses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// CA certificates to trust (a PEM file, one or more certificates) instead of the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain (PEM) for mutual TLS; needs [`TlsOptions::key_file`].
    pub cert_file: Option<PathBuf>,
    /// The private key of [`TlsOptions::cert_file`] (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// The name every node's certificate is checked against (and sent as SNI);
    /// `None`: each node's own host.
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// TLS with the system's roots, no client certificate, each node's host as the
    /// server name.
    pub fn new() -> TlsOptions {
        TlsOptions::default()
    }

    /// Trusts the CA certificates in the PEM file `path` instead of the system's roots.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> TlsOptions {
        self.ca_file = Some(path.into());
        self
    }

    /// Presents the certificate chain in `cert` (PEM) with its private key `key`
    /// (PEM) to nodes that ask for one (mutual TLS).
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsOptions {
        self.cert_file = Some(cert.into());
        self.key_file = Some(key.into());
        self
    }

    /// Checks every node's certificate against `name` instead of the node's host.
    pub fn server_name(mut self, name: impl Into<String>) -> TlsOptions {
        self.server_name = Some(name.into());
        self
    }
}

fn tls_err(what: impl Into<String>) -> Error {
    Error::Tls(what.into())
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(format!("{what} {shown}: {e}")))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("{what} {shown}: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(format!("{what} {shown}: no PEM certificate in it")));
    }
    Ok(certs)
}

fn roots(opts: &TlsOptions) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match &opts.ca_file {
        Some(path) => {
            for cert in read_certs(path, "CA file")? {
                roots
                    .add(cert)
                    .map_err(|e| tls_err(format!("CA file {}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(tls_err(format!(
                    "no system root certificates found{}{}",
                    if why.is_empty() { "" } else { ": " },
                    why.join("; ")
                )));
            }
        }
    }
    Ok(roots)
}

/// What every TLS connection of one client shares: the rustls configuration (built
/// once, from [`TlsOptions`]) and the server name, when one is configured.
#[derive(Clone)]
pub(super) struct Connector {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Reads the files `opts` names and builds the rustls configuration.
    pub(super) fn new(opts: &TlsOptions) -> Result<Connector> {
        let client_cert = match (&opts.cert_file, &opts.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => {
                return Err(tls_err(
                    "a client certificate needs its key, and a key its certificate",
                ))
            }
        };
        let server_name = match &opts.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|e| tls_err(format!("server name {name:?}: {e}")))?,
            ),
            None => None,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?
            .with_root_certificates(roots(opts)?);
        let config = match client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_certs(cert, "client certificate")?;
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| tls_err(format!("client key {}: {e}", key.display())))?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    tls_err(format!(
                        "client certificate {} with key {}: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?
            }
        };
        Ok(Connector {
            config: Arc::new(config),
            server_name,
        })
    }

    /// Runs the handshake over `tcp` (already connected, with its I/O timeouts set)
    /// for the node `host` (`name`: `host:port`, for messages). Each read and write is
    /// bounded by the socket's timeouts, the whole handshake by `limit`.
    pub(super) fn handshake(
        &self,
        mut tcp: TcpStream,
        host: &str,
        name: &str,
        limit: Duration,
    ) -> Result<Stream> {
        let server_name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.to_string())
                .map_err(|e| tls_err(format!("{name}: {host:?} as a server name: {e}")))?,
        };
        let mut conn = ClientConnection::new(self.config.clone(), server_name)
            .map_err(|e| tls_err(format!("{name}: {e}")))?;
        let deadline = Instant::now() + limit;
        let io_timeout = tcp.read_timeout()?;
        while conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{name}: TLS handshake not done in {limit:?}"),
                )));
            }
            if conn.wants_write() {
                conn.write_tls(&mut tcp)?;
                continue;
            }
            tcp.set_read_timeout(Some(io_timeout.map_or(left, |t| t.min(left))))?;
            if conn.read_tls(&mut tcp)? == 0 {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{name}: connection closed during the TLS handshake"),
                )));
            }
            if let Err(e) = conn.process_new_packets() {
                // Tell the node why (the alert rustls queued), as far as it listens.
                let _ = conn.write_tls(&mut tcp);
                return Err(tls_err(format!("{name}: TLS handshake failed: {e}")));
            }
        }
        // The client's last handshake flight (its Finished); a few writes at most.
        for _ in 0..64 {
            if !conn.wants_write() || conn.write_tls(&mut tcp)? == 0 {
                break;
            }
        }
        tcp.set_read_timeout(io_timeout)?;
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
    }
}

/// A connection's byte stream: plain TCP, or TLS over TCP.
pub(super) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS (handshake done).
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::error::tls_error_in;
    use super::*;

    #[test]
    fn a_key_without_a_certificate_is_refused() {
        for opts in [
            TlsOptions {
                key_file: Some("k.pem".into()),
                ..TlsOptions::default()
            },
            TlsOptions {
                cert_file: Some("c.pem".into()),
                ..TlsOptions::default()
            },
        ] {
            match Connector::new(&opts) {
                Err(Error::Tls(msg)) => assert!(msg.contains("needs its key"), "{msg}"),
                other => panic!("expected a TLS error, got {other:?}"),
            }
        }
    }

    #[test]
    fn missing_files_are_named_in_the_error() {
        let opts = TlsOptions::new().ca_file("/nonexistent/ca.pem");
        match Connector::new(&opts) {
            Err(Error::Tls(msg)) => assert!(msg.contains("/nonexistent/ca.pem"), "{msg}"),
            other => panic!("expected a TLS error, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_server_name_is_refused() {
        let opts = TlsOptions::new()
            .ca_file("/nonexistent/ca.pem")
            .server_name("not a name");
        assert!(matches!(Connector::new(&opts), Err(Error::Tls(_))));
    }

    #[test]
    fn rustls_errors_are_found_inside_io_errors() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        );
        assert!(tls_error_in(&e).is_some_and(|t| t.contains("CertificateRequired")));
        assert_eq!(tls_error_in(&io::ErrorKind::UnexpectedEof.into()), None);
    }

    #[test]
    fn builder_methods_fill_the_fields() {
        let o = TlsOptions::new()
            .ca_file("ca.pem")
            .client_cert("c.pem", "c.key")
            .server_name("cache.example");
        assert_eq!(o.ca_file.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(o.cert_file.as_deref(), Some(Path::new("c.pem")));
        assert_eq!(o.key_file.as_deref(), Some(Path::new("c.key")));
        assert_eq!(o.server_name.as_deref(), Some("cache.example"));
    }
}
