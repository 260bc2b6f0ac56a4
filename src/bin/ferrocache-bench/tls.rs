//! TLS for the load generator (`--tls`): the client configuration (rustls 0.23, ring
//! provider, TLS 1.2 and 1.3, no session resumption, so every handshake is a full one),
//! the blocking connect + handshake every connection starts with, the non-blocking TLS
//! stream the load engine drives the same way as its plain TCP stream (one socket read
//! per readiness event, replies of a pipelined batch sent in one write), and
//! certificates made with the `openssl` command-line tool for `compare --tls`.

use crate::stream::{Established, Stream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConnection;
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What a TLS client needs: its configuration and the name it expects the server's
/// certificate to carry.
#[derive(Clone, Debug)]
pub struct TlsClient {
    /// rustls client configuration (shared by every connection).
    pub config: Arc<rustls::ClientConfig>,
    /// Server name (SNI and certificate check): a DNS name or an IP address.
    pub name: ServerName<'static>,
}

impl TlsClient {
    /// Trusts the certificates in the PEM file `cacert` (or, without one, the system's
    /// roots) and expects certificates for `name`.
    pub fn new(cacert: Option<&Path>, name: &str) -> Result<TlsClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        match cacert {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("--cacert {}: {e}", path.display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("--cacert {}: {e}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!("--cacert {}: no certificate in it", path.display()));
                }
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| format!("--cacert {}: {e}", path.display()))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err("--tls: no system root certificates; give --cacert FILE".into());
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Every handshake a full one: no tickets or session ids kept between connections.
        config.resumption = rustls::client::Resumption::disabled();
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| format!("TLS server name {name:?}: {e}"))?;
        Ok(TlsClient {
            config: Arc::new(config),
            name,
        })
    }

    /// A new client connection (no I/O yet).
    pub fn connection(&self) -> Result<ClientConnection, String> {
        ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(|e| format!("TLS: {e}"))
    }

    /// Completes a handshake over the blocking `tcp` (at most 10 s per read or write).
    pub fn handshake(&self, tcp: &std::net::TcpStream) -> Result<ClientConnection, String> {
        let mut conn = self.connection()?;
        let t = Some(Duration::from_secs(10));
        tcp.set_read_timeout(t)
            .and_then(|()| tcp.set_write_timeout(t))
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let mut sock = tcp;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)
                .map_err(|e| format!("TLS handshake: {e}"))?;
        }
        while conn.wants_write() {
            conn.write_tls(&mut sock)
                .map_err(|e| format!("TLS handshake: {e}"))?;
        }
        Ok(conn)
    }
}

/// "TLSv1_3 TLS13_AES_256_GCM_SHA384 X25519": what a connection negotiated.
pub fn describe(conn: &ClientConnection) -> String {
    let v = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_else(|| "?".into());
    let s = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_else(|| "?".into());
    let g = conn
        .negotiated_key_exchange_group()
        .map(|g| format!("{:?}", g.name()))
        .unwrap_or_else(|| "?".into());
    format!("{v} {s} {g}")
}

/// Size of the ciphertext read buffer: one socket read per readiness event takes up to
/// this much, as the plain path's reads do into its 64 KiB input buffer.
const RAW: usize = 64 << 10;

/// A non-blocking TLS client connection for the load engine.
pub struct TlsStream {
    sock: mio::net::TcpStream,
    conn: ClientConnection,
    /// Ciphertext read from the socket, not yet given to rustls.
    raw: Vec<u8>,
    raw_start: usize,
    raw_end: usize,
    /// The last socket read was short: the socket is empty until the next readiness
    /// event (edge-triggered), so the current burst of reads need not ask it again.
    drained: bool,
    /// A close_notify has been decoded: the reader reports the end once the plaintext
    /// before it is read, which needs one more call even after a short read.
    peer_closed: bool,
}

impl TlsStream {
    /// Wraps an established (handshaken) connection; `tcp` becomes non-blocking.
    pub fn new(tcp: std::net::TcpStream, conn: ClientConnection) -> io::Result<TlsStream> {
        tcp.set_nonblocking(true)?;
        Ok(TlsStream {
            sock: mio::net::TcpStream::from_std(tcp),
            conn,
            raw: vec![0; RAW],
            raw_start: 0,
            raw_end: 0,
            drained: false,
            peer_closed: false,
        })
    }

    /// Writes out what rustls holds: Ok(true) when all of it went, Ok(false) when the
    /// socket is full.
    fn push(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn process(&mut self) -> io::Result<()> {
        let st = self
            .conn
            .process_new_packets()
            .map_err(|e| io::Error::new(ErrorKind::InvalidData, format!("TLS: {e}")))?;
        self.peer_closed |= st.peer_has_closed();
        Ok(())
    }
}

impl Stream for TlsStream {
    fn from_established(e: Established) -> Result<TlsStream, String> {
        match e {
            Established::Tls(s, conn) => TlsStream::new(s, *conn).map_err(|e| e.to_string()),
            Established::Tcp(_) => Err("a plain TCP connection in a TLS run".into()),
        }
    }

    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        loop {
            // Plaintext already decrypted first.
            match self.conn.reader().read(buf) {
                Ok(0) => return Ok((0, false)), // close_notify
                Ok(n) => {
                    // Less than asked = rustls holds no more plaintext.
                    let more = n == buf.len()
                        || self.raw_start < self.raw_end
                        || !self.drained
                        || self.peer_closed;
                    if !more {
                        self.drained = false;
                    }
                    return Ok((n, more));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Then ciphertext already read.
            if self.raw_start < self.raw_end {
                let mut rd = &self.raw[self.raw_start..self.raw_end];
                let n = self.conn.read_tls(&mut rd)?;
                self.raw_start += n;
                self.process()?;
                continue;
            }
            // Then the socket, unless a short read emptied it in this burst.
            if self.drained {
                self.drained = false;
                return Err(ErrorKind::WouldBlock.into());
            }
            match self.sock.read(&mut self.raw) {
                Ok(0) => {
                    // TCP end: rustls says whether it followed a close_notify.
                    self.conn.read_tls(&mut io::empty())?;
                    self.process()?;
                }
                Ok(n) => {
                    self.raw_start = 0;
                    self.raw_end = n;
                    self.drained = n < self.raw.len();
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn write_some(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let n = self.conn.writer().write(buf)?;
            let all_out = self.push()?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            if !all_out {
                // rustls' send buffer is full and the socket takes nothing more.
                return Err(ErrorKind::WouldBlock.into());
            }
        }
    }

    #[inline]
    fn pending_output(&self) -> bool {
        self.conn.wants_write()
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        self.push().map(|_| ())
    }
}

impl mio::event::Source for TlsStream {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.sock.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.sock.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.sock.deregister(registry)
    }
}

/// Checks an idle TLS connection at the end of a run: still open, and nothing but TLS
/// housekeeping (session tickets) arrived on it.
pub fn check_idle(tcp: &std::net::TcpStream, conn: &mut ClientConnection) -> Result<(), String> {
    tcp.set_nonblocking(true)
        .map_err(|e| format!("idle connection: {e}"))?;
    let mut raw = vec![0u8; 16 << 10];
    let mut sock = tcp;
    loop {
        let n = match sock.read(&mut raw) {
            Ok(0) => return Err("an idle connection was closed by the server".into()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("idle connection: {e}")),
        };
        let mut rd = &raw[..n];
        while !rd.is_empty() {
            conn.read_tls(&mut rd)
                .map_err(|e| format!("idle connection: {e}"))?;
            let st = conn
                .process_new_packets()
                .map_err(|e| format!("idle connection: TLS: {e}"))?;
            if st.plaintext_bytes_to_read() > 0 {
                return Err("unexpected data on an idle connection".into());
            }
            if st.peer_has_closed() {
                return Err("an idle connection was closed by the server".into());
            }
        }
    }
}

/// A server certificate chain and key, and the certificate file a client trusts.
pub struct CertFiles {
    /// PEM certificate chain for `-o ssl_chain_cert=`.
    pub cert: PathBuf,
    /// PEM private key for `-o ssl_key=`.
    pub key: PathBuf,
    /// PEM certificates the load generator trusts.
    pub cacert: PathBuf,
    /// Scratch directory removed on drop (None for files given by the user).
    dir: Option<PathBuf>,
}

impl CertFiles {
    /// Files given on the command line; the client trusts `cacert`, or `cert` itself.
    pub fn given(cert: &Path, key: &Path, cacert: Option<&Path>) -> Result<CertFiles, String> {
        for p in [Some(cert), Some(key), cacert].into_iter().flatten() {
            std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        Ok(CertFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            cacert: cacert.unwrap_or(cert).to_path_buf(),
            dir: None,
        })
    }

    /// A self-signed P-256 certificate for `localhost` and 127.0.0.1, valid for 2
    /// days, made by `openssl req` in a new private temporary directory.
    pub fn generate() -> Result<CertFiles, String> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "ferrocache-bench-tls-{}-{nanos:09}",
            std::process::id()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let files = CertFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            cacert: dir.join("cert.pem"),
            dir: Some(dir),
        };
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                // An end-entity certificate: rustls' verifier refuses a CA as one.
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-keyout",
            ])
            .arg(&files.key)
            .arg("-out")
            .arg(&files.cert)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                format!("openssl (needed to make a certificate; or give --cert/--key): {e}")
            })?;
        if !out.status.success() {
            return Err(format!(
                "openssl req failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(files)
    }

    /// Where the files are ("generated in DIR" or the paths).
    pub fn describe(&self) -> String {
        match &self.dir {
            Some(d) => format!(
                "self-signed P-256 certificate for localhost/127.0.0.1 made with openssl in {}",
                d.display()
            ),
            None => format!(
                "certificate {}, key {}, trusted {}",
                self.cert.display(),
                self.key.display(),
                self.cacert.display()
            ),
        }
    }
}

impl Drop for CertFiles {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// TLS material of `compare --tls`: the servers' certificate files and the client.
pub struct TlsSetup {
    /// The servers' certificate, key and CA files.
    pub files: CertFiles,
    /// The load generator's TLS client configuration.
    pub client: TlsClient,
}

impl TlsSetup {
    /// The given certificate and key (and CA file), or a self-signed pair made
    /// with openssl; `tls_name` is the name the client checks.
    pub fn new(
        cert: Option<&Path>,
        key: Option<&Path>,
        cacert: Option<&Path>,
        tls_name: &str,
    ) -> Result<TlsSetup, String> {
        let files = match (cert, key) {
            (Some(c), Some(k)) => CertFiles::given(c, k, cacert)?,
            _ => CertFiles::generate()?,
        };
        for p in [&files.cert, &files.key] {
            if p.to_string_lossy().contains(',') {
                return Err(format!("{}: a comma cannot be passed in -o", p.display()));
            }
        }
        let client = TlsClient::new(Some(&files.cacert), tls_name)?;
        Ok(TlsSetup { files, client })
    }

    /// The servers' TLS flags (memcached's).
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "-Z".into(),
            "-o".into(),
            format!(
                "ssl_chain_cert={},ssl_key={}",
                self.files.cert.display(),
                self.files.key.display()
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Interest, Poll, Token};
    use std::time::Instant;

    /// A rustls echo server on 127.0.0.1 for one connection: it answers what it reads
    /// in pieces of varying size, one TLS record each, then sends close_notify.
    fn echo_server(
        versions: &'static [&'static rustls::SupportedProtocolVersion],
    ) -> (u16, tempdir::Dir, std::thread::JoinHandle<()>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = tempdir::Dir::new();
        std::fs::write(dir.0.join("ca.pem"), ck.cert.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (tcp, _) = l.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let conn = rustls::ServerConnection::new(Arc::new(cfg)).unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let mut buf = vec![0u8; 40_000];
            let mut piece = 1usize;
            let mut total = 0;
            while total < TOTAL {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "client closed early");
                total += n;
                let mut at = 0;
                while at < n {
                    piece = (piece * 7919 + 13) % 20_000 + 1;
                    let end = (at + piece).min(n);
                    s.write_all(&buf[at..end]).unwrap();
                    s.flush().unwrap();
                    at = end;
                }
            }
            s.conn.send_close_notify();
            s.flush().unwrap();
        });
        (port, dir, h)
    }

    const TOTAL: usize = 300_000;

    mod tempdir {
        /// A scratch directory, removed on drop.
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let d = std::env::temp_dir().join(format!(
                    "ferrocache-bench-tls-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&d).unwrap();
                Dir(d)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    /// The engine's way of using a TlsStream (edge-triggered; reads only after a
    /// readable event, until `more` is false or WouldBlock) gets every byte back in
    /// order, over TLS 1.2 and 1.3, with small and large read buffers, and sees the
    /// close_notify as the end. A lost wake-up shows as a stall.
    #[test]
    fn nonblocking_echo_over_tls() {
        static V13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        static V12: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
        for versions in [&V13[..], &V12[..]] {
            for bufsize in [1000usize, 64 << 10] {
                let (port, dir, server) = echo_server(versions);
                let client = TlsClient::new(Some(&dir.0.join("ca.pem")), "localhost").unwrap();
                let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                let conn = client.handshake(&tcp).unwrap();
                assert_eq!(conn.protocol_version(), Some(versions[0].version));
                let mut s = TlsStream::new(tcp, conn).unwrap();
                let mut poll = Poll::new().unwrap();
                poll.registry()
                    .register(&mut s, Token(0), Interest::READABLE | Interest::WRITABLE)
                    .unwrap();
                let data: Vec<u8> = (0..TOTAL).map(|i| (i * 7 % 251) as u8).collect();
                let (mut sent, mut got, mut closed) = (0usize, Vec::new(), false);
                let mut buf = vec![0u8; bufsize];
                let mut events = Events::with_capacity(8);
                let deadline = Instant::now() + Duration::from_secs(20);
                let write = |s: &mut TlsStream, sent: &mut usize| {
                    while *sent < data.len() {
                        let end = (*sent + 5000).min(data.len());
                        match s.write_some(&data[*sent..end]) {
                            Ok(n) => *sent += n,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => panic!("write: {e}"),
                        }
                    }
                    s.flush_pending().unwrap();
                };
                write(&mut s, &mut sent);
                while !closed {
                    assert!(Instant::now() < deadline, "stalled at {} bytes", got.len());
                    poll.poll(&mut events, Some(Duration::from_secs(5)))
                        .unwrap();
                    assert!(
                        !events.is_empty(),
                        "no event for 5 s: sent {sent}, got {} ({versions:?}, {bufsize})",
                        got.len()
                    );
                    for ev in events.iter() {
                        if ev.is_readable() {
                            loop {
                                match s.read_some(&mut buf) {
                                    Ok((0, _)) => {
                                        closed = true;
                                        break;
                                    }
                                    Ok((n, more)) => {
                                        got.extend_from_slice(&buf[..n]);
                                        if !more {
                                            break;
                                        }
                                    }
                                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                    Err(e) => panic!("read: {e}"),
                                }
                            }
                        }
                    }
                    if sent < data.len() || s.pending_output() {
                        write(&mut s, &mut sent);
                    }
                }
                assert_eq!(got.len(), data.len());
                assert!(got == data, "echo differs");
                server.join().unwrap();
            }
        }
    }

    /// A rustls server on 127.0.0.1 that completes one handshake with `certs`/`key`.
    fn handshake_server(
        certs: Vec<CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> (u16, std::thread::JoinHandle<Result<(), String>>) {
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (tcp, _) = l.accept().map_err(|e| e.to_string())?;
            tcp.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            let mut conn = rustls::ServerConnection::new(Arc::new(cfg)).unwrap();
            let mut sock = &tcp;
            while conn.is_handshaking() {
                conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        (port, h)
    }

    /// The certificate `compare --tls` makes with openssl loads as the servers load it
    /// and verifies for both names a client may use.
    #[test]
    fn generated_certificate_is_trusted_for_localhost_and_127_0_0_1() {
        let files = match CertFiles::generate() {
            Ok(f) => f,
            Err(e) => {
                eprintln!("NOTICE: {e}; skipping");
                return;
            }
        };
        for name in ["localhost", "127.0.0.1"] {
            let certs = CertificateDer::pem_file_iter(&files.cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&files.key).unwrap();
            let (port, server) = handshake_server(certs, key);
            let client = TlsClient::new(Some(&files.cacert), name).unwrap();
            let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            client
                .handshake(&tcp)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            server.join().unwrap().unwrap();
        }
        // A name the certificate does not carry is refused.
        let certs = CertificateDer::pem_file_iter(&files.cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&files.key).unwrap();
        let (port, server) = handshake_server(certs, key);
        let client = TlsClient::new(Some(&files.cacert), "example.com").unwrap();
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert!(client.handshake(&tcp).is_err());
        drop(tcp);
        let _ = server.join();
        let dir = files.cert.parent().map(Path::to_path_buf).unwrap();
        drop(files);
        assert!(!dir.exists(), "scratch directory left behind");
    }
}
