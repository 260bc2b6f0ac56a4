//! TLS for the server (`-Z`): memcached's `ssl_*` settings made into a rustls
//! `ServerConfig`, loaded at start-up and again on `refresh_certs` or SIGHUP, with
//! memcached 1.6.18's error texts.
//!
//! ```text
//!   -o ssl_chain_cert, ssl_key, ssl_ca_cert ── load() ──▶ Arc<ServerConfig> ──▶ TlsContext
//!                                    refresh_certs / SIGHUP ─▶ load() again ─┘ (a bad file
//!   new connection: ServerConnection::new(context.config())   keeps the old config)
//! ```
//!
//! What each setting does here:
//! - `ssl_chain_cert` (PEM, leaf first) and `ssl_key` (PEM, or DER with
//!   `ssl_keyformat=2`) are required; every certificate of the chain must parse as
//!   X.509 (PEM armour around anything else is refused, with OpenSSL's ASN.1
//!   reason for a bad outer header, as memcached prints it) and the key must match
//!   the leaf certificate. A start refuses such files (exit 64); `refresh_certs` and
//!   SIGHUP answer memcached's error line and keep the configuration in use.
//! - `ssl_verify_mode`: 0 none; 1 (request) and 3 (once: TLS has no renegotiation
//!   here) ask for a client certificate and verify it against `ssl_ca_cert` when one
//!   is sent; 2 (require) refuses clients without one. 1-3 need `ssl_ca_cert`.
//! - `ssl_min_version`: 2 = TLS 1.2 and 1.3 (default), 3 = TLS 1.3 only; 0 and 1
//!   (TLS 1.0/1.1) are refused at start-up: rustls does not speak them.
//! - `ssl_ciphers`: an OpenSSL cipher list for TLS 1.2, mapped onto rustls' suites
//!   (unknown words are ignored as OpenSSL does; none left is memcached's error).
//!   TLS 1.3 suites are not affected, as in memcached.
//! - `ssl_session_cache`: a server-side session cache (resumption; `ssl_new_sessions`
//!   counts what enters it). Off: as OpenSSL (and so memcached) by default,
//!   stateless session tickets: two after every TLS 1.3 handshake, from keys made
//!   once per process (rotated every 6 hours) and kept across reloads. They matter
//!   beyond resumption: a TLS 1.3 server that sends nothing after the client's
//!   Finished leaves that segment to the delayed ACK (40 ms on Linux), and a client
//!   with Nagle on (pymemcache's default) holds its first request until then: the
//!   first request after a handshake took a median 46 ms (memcached 0.1 ms). The
//!   tickets leave at once and carry the ACK.
//! - `ssl_wbuf_size`: the floor of the plaintext a connection's TLS layer buffers
//!   for encryption (at least 64 KiB here, so a batch of replies leaves in one write).
//! - `ssl_kernel_tls`: accepted and reported; kernel TLS is not used.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier};
use rustls::{ServerConfig, SupportedCipherSuite};

use crate::config::Config;

/// Sessions a `ssl_session_cache` holds.
const SESSION_CACHE_ENTRIES: usize = 4096;
/// Least plaintext a connection's TLS layer buffers before it must write.
pub const MIN_TLS_BUFFER: usize = 64 << 10;

/// The TLS state of a server: the configuration new connections get, when it was
/// loaded, and the TLS counters `stats` shows.
pub struct TlsContext {
    current: RwLock<Arc<ServerConfig>>,
    settings: Settings,
    /// Relative time of the last successful load (memcached counts it from 0).
    refreshed_at: AtomicU32,
    /// Handshakes that failed or timed out (`ssl_handshake_errors`).
    pub handshake_errors: AtomicU64,
    /// Sessions stored in the session cache (`ssl_new_sessions`).
    new_sessions: Arc<AtomicU64>,
    /// Stateless session tickets without `ssl_session_cache` (one key set for the
    /// process: tickets stay valid across `refresh_certs`).
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The `ssl_*` settings a load reads.
#[derive(Debug, Clone)]
struct Settings {
    chain: Option<String>,
    key: Option<String>,
    keyformat: i64,
    ca: Option<String>,
    verify_mode: u32,
    ciphers: Option<String>,
    min_version: u32,
    session_cache: bool,
    wbuf_size: usize,
}

impl TlsContext {
    /// Loads the certificates `cfg` names. Err: memcached's message for the first
    /// problem (memcached exits with 64 on it).
    pub fn load(cfg: &Config) -> Result<TlsContext, String> {
        let c = &cfg.compat;
        let settings = Settings {
            chain: c.ssl_chain_cert.clone(),
            key: c.ssl_key.clone(),
            keyformat: c.ssl_keyformat,
            ca: c.ssl_ca_cert.clone(),
            verify_mode: c.ssl_verify_mode,
            ciphers: c.ssl_ciphers.clone(),
            min_version: c.ssl_min_version,
            session_cache: c.ssl_session_cache,
            wbuf_size: c.ssl_wbuf_size as usize,
        };
        let new_sessions = Arc::new(AtomicU64::new(0));
        let ticketer =
            provider::Ticketer::new().map_err(|e| format!("TLS session tickets: {e}"))?;
        let config = build(&settings, &new_sessions, &ticketer)?;
        if c.ssl_kernel_tls {
            log::info!("ssl_kernel_tls: accepted; kernel TLS offload is not used");
        }
        Ok(TlsContext {
            current: RwLock::new(config),
            settings,
            refreshed_at: AtomicU32::new(0),
            handshake_errors: AtomicU64::new(0),
            new_sessions,
            ticketer,
        })
    }

    /// The settings in force, as one line for the start-up log at `-v`.
    pub fn describe(&self) -> String {
        let s = &self.settings;
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        let clients = match s.verify_mode {
            0 => "not asked for".to_string(),
            2 => format!("required, verified against {}", show(&s.ca)),
            m => format!(
                "verified against {} when sent (ssl_verify_mode={m})",
                show(&s.ca)
            ),
        };
        format!(
            "TLS (-Z): certificate chain {}, key {} ({}), client certificates {clients}, {}, \
             TLS 1.2 ciphers {}, session cache {}, write buffer {} bytes",
            show(&s.chain),
            show(&s.key),
            if s.keyformat == 2 { "DER" } else { "PEM" },
            if s.min_version >= 3 {
                "TLS 1.3 only"
            } else {
                "TLS 1.2 and 1.3"
            },
            s.ciphers.as_deref().unwrap_or("default"),
            if s.session_cache { "on" } else { "off" },
            self.buffer_limit()
        )
    }

    /// True when every client must present a certificate (`ssl_verify_mode=2`).
    pub fn requires_client_certificates(&self) -> bool {
        self.settings.verify_mode == 2
    }

    /// The configuration a new connection gets.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.read().clone()
    }

    /// Loads the files again (`refresh_certs`, SIGHUP) at relative time `now`: new
    /// connections get the new certificates, open ones keep theirs. Err: memcached's
    /// message; the configuration in use stays.
    pub fn refresh(&self, now: u32) -> Result<(), String> {
        let config = build(&self.settings, &self.new_sessions, &self.ticketer)?;
        *self.current.write() = config;
        self.refreshed_at.store(now, Ordering::Relaxed);
        Ok(())
    }

    /// `time_since_server_cert_refresh` at relative time `now`.
    pub fn since_refresh(&self, now: u32) -> u32 {
        now.wrapping_sub(self.refreshed_at.load(Ordering::Relaxed))
    }

    /// `ssl_new_sessions`, or `None` without `ssl_session_cache` (memcached prints
    /// it only then).
    pub fn new_sessions(&self) -> Option<u64> {
        self.settings
            .session_cache
            .then(|| self.new_sessions.load(Ordering::Relaxed))
    }

    /// Plaintext a connection's TLS layer may buffer for encryption.
    pub fn buffer_limit(&self) -> usize {
        self.settings.wbuf_size.max(MIN_TLS_BUFFER)
    }
}

/// Why a TLS handshake failed, for the log at `-v`: rustls' reason, with what to do
/// about a client certificate rustls refuses where memcached (OpenSSL) accepts it.
pub fn handshake_failure(e: &rustls::Error) -> String {
    let text = e.to_string();
    if text.contains("UnsupportedCertVersion") {
        format!(
            "TLS handshake refused: {text}: the client certificate is an X.509 version 1 \
             certificate; ferrocache's TLS (rustls/webpki) accepts only version 3 \
             certificates (memcached with OpenSSL accepts version 1): issue the client a \
             version 3 certificate"
        )
    } else {
        format!("TLS handshake refused: {text}")
    }
}

/// True for the handshake failures an operator acts on (a client certificate refused
/// or missing), which are logged at `-v`; others (scanners, garbage) at `-vv`.
pub fn is_certificate_failure(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
    )
}

/// Start-up refusals of settings this server cannot honour (exit 64), before any
/// file is read.
pub fn unsupported_setting(cfg: &Config) -> Option<String> {
    let c = &cfg.compat;
    if c.ssl_min_version < 2 {
        return Some(format!(
            "ssl_min_version {} ({}) is not supported: ferrocache speaks TLS 1.2 and 1.3 only",
            c.ssl_min_version,
            crate::config::compat::CompatSettings::ssl_version_name(c.ssl_min_version)
        ));
    }
    if c.ssl_keyformat != 1 && c.ssl_keyformat != 2 {
        return Some(format!(
            "ssl_keyformat {} is not supported: ferrocache reads keys in PEM (1) or DER (2)",
            c.ssl_keyformat
        ));
    }
    if c.ssl_verify_mode > 0 && c.ssl_ca_cert.is_none() {
        return Some(format!(
            "ssl_verify_mode {} needs ssl_ca_cert: client certificates are verified \
             against it",
            c.ssl_verify_mode
        ));
    }
    None
}

/// OpenSSL's text for a system error (`error:80000002:system library::No such file
/// or directory`).
fn system_error(e: &std::io::Error) -> String {
    let errno = e.raw_os_error().unwrap_or(5);
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    format!(
        "error:{:08X}:system library::{text}",
        0x8000_0000u32 | errno as u32
    )
}

/// `Error loading the <what>: <path> : <reason>`, as memcached prints it.
fn load_error(what: &str, path: Option<&str>, reason: &str) -> String {
    format!(
        "Error loading the {what}: {} : {reason}",
        path.unwrap_or("(null)")
    )
}

/// A file's bytes, or memcached's message (a missing path is OpenSSL's "Bad address").
fn read(what: &str, path: Option<&str>) -> Result<Vec<u8>, String> {
    let Some(p) = path else {
        return Err(load_error(
            what,
            None,
            "error:8000000E:system library::Bad address",
        ));
    };
    match std::fs::read(p) {
        Ok(b) => Ok(b),
        // OpenSSL reads a directory as an empty file.
        Err(_) if std::path::Path::new(p).is_dir() => Ok(Vec::new()),
        Err(e) => Err(load_error(what, path, &system_error(&e))),
    }
}

fn build(
    s: &Settings,
    new_sessions: &Arc<AtomicU64>,
    ticketer: &Arc<dyn rustls::server::ProducesTickets>,
) -> Result<Arc<ServerConfig>, String> {
    const CHAIN: &str = "certificate chain";
    let chain_bytes = read(CHAIN, s.chain.as_deref())?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_bytes)
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    if chain.is_empty() {
        return Err(load_error(
            CHAIN,
            s.chain.as_deref(),
            "error:0480006C:PEM routines::no start line",
        ));
    }
    // PEM armour says nothing about what is inside: each certificate must be X.509
    // (as OpenSSL's use_certificate_chain_file checks), or every handshake would
    // fail later.
    for cert in &chain {
        if let Err(reason) = check_certificate(cert) {
            return Err(load_error(CHAIN, s.chain.as_deref(), reason));
        }
    }
    let key_bytes = read("key", s.key.as_deref())?;
    let unsupported = || {
        load_error(
            "key",
            s.key.as_deref(),
            "error:1E08010C:DECODER routines::unsupported",
        )
    };
    let key = if s.keyformat == 2 {
        PrivateKeyDer::try_from(key_bytes).map_err(|_| unsupported())?
    } else {
        PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|_| unsupported())?
    };
    let crypto = Arc::new(provider_with_ciphers(s)?);
    let signing = crypto
        .key_provider
        .load_private_key(key)
        .map_err(|_| unsupported())?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    // A certificate webpki parses but does not support (an X.509 v1 one, say) is
    // served as OpenSSL would; only a key that is not the certificate's is refused.
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err(load_error(
            "key",
            s.key.as_deref(),
            "error:05800074:x509 certificate routines::key values mismatch",
        ));
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = if s.min_version >= 3 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(crypto.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS settings: {e}"))?;
    let builder = match (&s.ca, s.verify_mode) {
        (Some(ca), mode) if mode > 0 => {
            let ca_bytes = read("CA certificate", Some(ca))?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca_bytes).flatten() {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(load_error(
                    "CA certificate",
                    Some(ca),
                    "error:05800088:x509 certificate routines::no certificate or crl found",
                ));
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto.clone());
            let v = if mode == 2 {
                v
            } else {
                v.allow_unauthenticated()
            };
            let verifier = v
                .build()
                .map_err(|e| load_error("CA certificate", Some(ca), &e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        (Some(ca), _) => {
            // Mode 0: memcached still loads the file (and fails on a bad one).
            let ca_bytes = read("CA certificate", Some(ca))?;
            if CertificateDer::pem_slice_iter(&ca_bytes)
                .flatten()
                .next()
                .is_none()
            {
                return Err(load_error(
                    "CA certificate",
                    Some(ca),
                    "error:05800088:x509 certificate routines::no certificate or crl found",
                ));
            }
            builder.with_no_client_auth()
        }
        (None, _) => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    if s.session_cache {
        config.session_storage = Arc::new(CountingCache {
            inner: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
            stored: new_sessions.clone(),
        });
    } else {
        // OpenSSL's default, which memcached keeps: no server-side cache, stateless
        // tickets (two per TLS 1.3 handshake, sent right after the client's
        // Finished: see the module documentation for why that matters).
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.ticketer = ticketer.clone();
        config.send_tls13_tickets = 2;
    }
    Ok(Arc::new(config))
}

/// OpenSSL's reasons for DER that is not a certificate (the first error of its stack,
/// which memcached prints).
mod asn1 {
    pub const HEADER_TOO_LONG: &str = "error:0680007B:asn1 encoding routines::header too long";
    pub const TOO_LONG: &str = "error:0680009B:asn1 encoding routines::too long";
    pub const WRONG_TAG: &str = "error:068000A8:asn1 encoding routines::wrong tag";
    pub const NESTED: &str = "error:0688010A:asn1 encoding routines::nested asn1 error";
}

/// Reads a DER header as OpenSSL's `ASN1_get_object` does: (tag byte, content
/// length, header length), or its reason for refusing it.
fn der_header(b: &[u8]) -> Result<(u8, usize, usize), &'static str> {
    if b.len() < 2 {
        return Err(asn1::HEADER_TOO_LONG);
    }
    let tag = b[0];
    let mut p = 1;
    if tag & 0x1f == 0x1f {
        // High tag number: base-128 digits until one without the top bit.
        loop {
            let Some(&c) = b.get(p) else {
                return Err(asn1::HEADER_TOO_LONG);
            };
            p += 1;
            if c & 0x80 == 0 {
                break;
            }
        }
    }
    let Some(&first) = b.get(p) else {
        return Err(asn1::HEADER_TOO_LONG);
    };
    p += 1;
    let len = if first & 0x80 == 0 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        // OpenSSL wants one byte past the length bytes, and at most a long's worth;
        // the indefinite form (0x80) is not DER.
        if n == 0 || n > 8 || b.len() - p < n + 1 {
            return Err(asn1::HEADER_TOO_LONG);
        }
        let v = b[p..p + n]
            .iter()
            .fold(0u64, |v, &d| (v << 8) | u64::from(d));
        p += n;
        if v > i64::MAX as u64 {
            return Err(asn1::HEADER_TOO_LONG);
        }
        usize::try_from(v).map_err(|_| asn1::TOO_LONG)?
    };
    if len > b.len() - p {
        return Err(asn1::TOO_LONG);
    }
    Ok((tag, len, p))
}

/// Whether `cert` is an X.509 certificate: its outer SEQUENCE and the
/// tbsCertificate SEQUENCE inside are read as OpenSSL reads them (so the reason is
/// OpenSSL's), then the whole is parsed by webpki; a structure webpki cannot read
/// is refused with ASN.1's generic reason.
fn check_certificate(cert: &CertificateDer<'_>) -> Result<(), &'static str> {
    let b = cert.as_ref();
    let (tag, len, hdr) = der_header(b)?;
    if tag != 0x30 {
        return Err(asn1::WRONG_TAG);
    }
    let (tag, _, _) = der_header(&b[hdr..hdr + len])?;
    if tag != 0x30 {
        return Err(asn1::WRONG_TAG);
    }
    match rustls::server::ParsedCertificate::try_from(cert) {
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)) => {
            Err(asn1::NESTED)
        }
        // Parsed (or refused for what it says, not for how it is written: served
        // as OpenSSL would serve it).
        _ => Ok(()),
    }
}

/// The ring provider limited to the TLS 1.2 suites `ssl_ciphers` names (all TLS 1.3
/// suites stay, as OpenSSL's cipher list does not touch them).
fn provider_with_ciphers(s: &Settings) -> Result<rustls::crypto::CryptoProvider, String> {
    let mut p = provider::default_provider();
    let Some(list) = s.ciphers.as_deref() else {
        return Ok(p);
    };
    let tls12: Vec<SupportedCipherSuite> = p
        .cipher_suites
        .iter()
        .copied()
        .filter(|cs| cs.version() == &rustls::version::TLS12)
        .collect();
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    for word in list.split([':', ',', ' ']).filter(|w| !w.is_empty()) {
        if matches!(word.as_bytes()[0], b'!' | b'-' | b'+' | b'@') {
            // Exclusions and ordering: rustls offers no weak suite to exclude.
            continue;
        }
        let upper = word.to_ascii_uppercase();
        let all = matches!(
            upper.as_str(),
            "DEFAULT" | "ALL" | "HIGH" | "SECURE" | "ECDHE" | "EECDH" | "AESGCM" | "TLSV1.2"
        );
        for cs in &tls12 {
            if (all || openssl_name(*cs) == Some(upper.as_str())) && !chosen.contains(cs) {
                chosen.push(*cs);
            }
        }
    }
    if chosen.is_empty() {
        return Err(format!("Error setting the provided cipher(s): {list}"));
    }
    p.cipher_suites
        .retain(|cs| cs.version() != &rustls::version::TLS12 || chosen.contains(cs));
    Ok(p)
}

/// OpenSSL's name of a TLS 1.2 suite.
fn openssl_name(cs: SupportedCipherSuite) -> Option<&'static str> {
    use rustls::CipherSuite as C;
    Some(match cs.suite() {
        C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => return None,
    })
}

/// A session cache that counts what it stores (`ssl_new_sessions`).
#[derive(Debug)]
struct CountingCache {
    inner: Arc<ServerSessionMemoryCache>,
    stored: Arc<AtomicU64>,
}

impl StoresServerSessions for CountingCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let stored = self.inner.put(key, value);
        if stored {
            self.stored.fetch_add(1, Ordering::Relaxed);
        }
        stored
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(key)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.take(key)
    }
    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_that_is_not_a_certificate_gets_openssls_reason() {
        // Reasons memcached 1.6.18 (OpenSSL 3.0) printed for these chain files.
        for (der, reason) in [
            (&b"\x02\x01\x05"[..], asn1::WRONG_TAG),
            (b"\x30\x03\x02\x01\x05", asn1::WRONG_TAG),
            (b"\x30", asn1::HEADER_TOO_LONG),
            (b"\x30\x84\xff\xff\xff\xff", asn1::HEADER_TOO_LONG),
            (b"abc", asn1::TOO_LONG),
            (
                b"This is not a certificate at all, just junk.",
                asn1::TOO_LONG,
            ),
        ] {
            assert_eq!(
                check_certificate(&CertificateDer::from(der.to_vec())),
                Err(reason),
                "{der:?}"
            );
        }
        // Well-formed headers around something that is not a certificate.
        assert_eq!(
            check_certificate(&CertificateDer::from(
                b"\x30\x05\x30\x03\x02\x01\x05".to_vec()
            )),
            Err(asn1::NESTED)
        );
    }
}
