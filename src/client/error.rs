//! The client's error type.

use std::fmt;

/// What can go wrong talking to a cluster.
#[derive(Debug)]
pub enum Error {
    /// No node is configured, or every node is ejected.
    NoServers,
    /// The key cannot be sent (empty, longer than 250 bytes, or — on the text
    /// protocol — containing whitespace or control bytes).
    BadKey,
    /// The value is larger than the client will send in one item.
    TooLarge,
    /// Connecting, reading or writing failed or timed out (the node counts a failure).
    Io(std::io::Error),
    /// The node answered with an error (`SERVER_ERROR ...`, `CLIENT_ERROR ...`, a
    /// binary error status); the text is the node's.
    Server(String),
    /// The node answered something the protocol does not allow here.
    Protocol(String),
    /// SASL authentication was refused or could not be carried out.
    Auth(String),
    /// TLS could not be set up or was refused: a certificate or key file that cannot
    /// be read, a handshake that failed (the node's certificate not trusted or not for
    /// this name, the node refusing ours, no common version), or a TLS alert or
    /// malformed record later on. The text is rustls' (or names the file). Like
    /// [`Error::Auth`], not a node failure: the node is reachable, the settings of one
    /// side refuse the other.
    Tls(String),
    /// Cluster discovery ([`super::ClientConfig::discover`]) found no usable
    /// configuration: no endpoint answered with one, or what it sent is not a valid
    /// cluster configuration. The text says which endpoint and why.
    Discovery(String),
}

impl Error {
    /// Whether this error means the node itself is unreachable or broken (and should
    /// count towards ejecting it), rather than a refusal of this one request.
    pub fn is_node_failure(&self) -> bool {
        matches!(self, Error::Io(_) | Error::Protocol(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoServers => write!(f, "no server available"),
            Error::BadKey => write!(f, "invalid key"),
            Error::TooLarge => write!(f, "value too large"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Server(s) => write!(f, "server error: {s}"),
            Error::Protocol(s) => write!(f, "protocol error: {s}"),
            Error::Auth(s) => write!(f, "authentication failed: {s}"),
            Error::Tls(s) => write!(f, "TLS error: {s}"),
            Error::Discovery(s) => write!(f, "cluster discovery: {s}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    /// [`Error::Tls`] when the I/O error carries a rustls error (an alert or a bad
    /// record on a TLS connection), [`Error::Io`] otherwise.
    fn from(e: std::io::Error) -> Self {
        match tls_error_in(&e) {
            Some(text) => Error::Tls(text),
            None => Error::Io(e),
        }
    }
}

/// Results of client operations.
pub type Result<T> = std::result::Result<T, Error>;

/// The rustls error inside an I/O error (rustls reports record and alert errors
/// after the handshake as `InvalidData` I/O errors), as text.
pub(super) fn tls_error_in(e: &std::io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(|tls| tls.to_string())
}
