//! The cluster configuration of ElastiCache's auto discovery: the one vocabulary the
//! server (`config get cluster`, `--cluster-config`) and the client
//! (`ClientConfig::discover`) share.
//!
//! On the wire (the payload of `config get cluster`, of the legacy
//! `get AmazonElastiCache:cluster`, and of binary opcode 0x60):
//!
//! ```text
//!   CONFIG cluster 0 <bytes>\r\n          <bytes> = length of the two lines below
//!   <version>\n                            decimal, rises by one on every change
//!   <host>|<ip>|<port> <host>|<ip>|<port>\n   one entry per node, separated by spaces
//!   \r\n
//!   END\r\n
//! ```
//!
//! A node's `ip` may be empty (the client then resolves `host`). The same two lines
//! are what `config set cluster <flags> <bytes>` sends; a configuration file
//! (`--cluster-config`) holds the node list alone (entries separated by spaces or
//! newlines, `host:port` allowed as shorthand, `#` comments) and optionally a first
//! line with the version.

use std::fmt;
use std::net::IpAddr;

/// The key ElastiCache's engines before 1.4.14 served the configuration under.
pub const LEGACY_KEY: &[u8] = b"AmazonElastiCache:cluster";

/// The configuration key `config get|set|delete` accepts.
pub const CLUSTER_KEY: &[u8] = b"cluster";

/// Most nodes a configuration may list (a bound on what a client makes us hold).
pub const MAX_NODES: usize = 1024;

/// Longest host name accepted in an entry (DNS' limit).
pub const MAX_HOST: usize = 253;

/// The highest version a configuration may carry: 2^53 − 1, the largest integer
/// every discovery client compares exactly (JavaScript's `Number`, which the npm
/// ElastiCache client parses the version into; Java's `long` and Python's `int`
/// hold it too). Clients apply only a higher version than the one they have, so a
/// configuration at this version could never be followed: a node refuses to take
/// one (`config set` of [`MAX_VERSION`] or more), and parsers refuse versions above
/// it (a node or file claiming 2^64 − 1 would otherwise pin every client).
pub const MAX_VERSION: u64 = (1 << 53) - 1;

/// One node of the fleet: `host|ip|port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterNode {
    /// The node's host name (or its address written as text).
    pub host: String,
    /// Its IP address as text, or empty when only the name is known.
    pub ip: String,
    /// Its TCP port.
    pub port: u16,
}

impl ClusterNode {
    /// What a client connects to: the IP when there is one, else the host, with the
    /// port (`[v6]:port` for IPv6 literals).
    pub fn address(&self) -> String {
        let h = if self.ip.is_empty() {
            &self.host
        } else {
            &self.ip
        };
        if h.contains(':') {
            format!("[{h}]:{}", self.port)
        } else {
            format!("{h}:{}", self.port)
        }
    }

    /// Parses one `host|ip|port` entry, or the shorthand `host:port` (`[v6]:port`),
    /// whose ip is the host when the host is an address, else empty.
    pub fn parse(entry: &str) -> Result<ClusterNode, ConfigError> {
        let bad = || ConfigError::BadNode(entry.chars().take(80).collect());
        let mut parts = entry.split('|');
        let (host, ip, port) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(i), Some(p), None) => (h.to_string(), i.to_string(), p),
            (Some(hp), None, None, None) => {
                let (h, p) = hp.rsplit_once(':').ok_or_else(bad)?;
                let h = h
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(h);
                let ip = if h.parse::<IpAddr>().is_ok() {
                    h.to_string()
                } else {
                    String::new()
                };
                (h.to_string(), ip, p)
            }
            _ => return Err(bad()),
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host_ok = !host.is_empty()
            && host.len() <= MAX_HOST
            && host.bytes().all(|b| b.is_ascii_graphic() && b != b'|');
        let ip_ok = ip.is_empty() || ip.parse::<IpAddr>().is_ok();
        if !host_ok || !ip_ok || port == 0 {
            return Err(bad());
        }
        Ok(ClusterNode { host, ip, port })
    }
}

impl fmt::Display for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}|{}", self.host, self.ip, self.port)
    }
}

/// A version and the node list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterConfig {
    /// The configuration's version: clients apply only a higher one.
    pub version: u64,
    /// The nodes, in the order they were given.
    pub nodes: Vec<ClusterNode>,
}

/// Why a configuration payload or file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The first line is not a decimal version.
    BadVersion,
    /// The version is above [`MAX_VERSION`].
    VersionTooHigh(u64),
    /// An entry is not `host|ip|port` (or `host:port` in a file).
    BadNode(String),
    /// More than [`MAX_NODES`] entries.
    TooManyNodes,
    /// No node at all.
    Empty,
    /// Not UTF-8 text.
    NotText,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::BadVersion => f.write_str("the first line is not a version number"),
            ConfigError::VersionTooHigh(v) => write!(
                f,
                "version {v} is above {MAX_VERSION}, the highest a discovery client can follow"
            ),
            ConfigError::BadNode(e) => {
                write!(
                    f,
                    "bad node entry {e:?} (want host|ip|port, or host:port in a file)"
                )
            }
            ConfigError::TooManyNodes => write!(f, "more than {MAX_NODES} nodes"),
            ConfigError::Empty => f.write_str("no nodes"),
            ConfigError::NotText => f.write_str("not UTF-8 text"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ClusterConfig {
    /// The payload `config get cluster` returns: `<version>\n<entries>\n`.
    pub fn payload(&self) -> Vec<u8> {
        let mut out = format!("{}\n", self.version);
        for (i, n) in self.nodes.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&n.to_string());
        }
        out.push('\n');
        out.into_bytes()
    }

    /// Parses a payload as `config get cluster` returns it and `config set cluster`
    /// sends it: a version line, then the entries (spaces or newlines between them;
    /// trailing whitespace ignored).
    pub fn parse_payload(payload: &[u8]) -> Result<ClusterConfig, ConfigError> {
        let text = std::str::from_utf8(payload).map_err(|_| ConfigError::NotText)?;
        let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
        let version = first
            .trim_end_matches('\r')
            .trim()
            .parse::<u64>()
            .map_err(|_| ConfigError::BadVersion)?;
        check_version(version)?;
        let nodes = parse_entries(rest.split_whitespace(), true)?;
        Ok(ClusterConfig { version, nodes })
    }

    /// Parses a configuration file: an optional first line holding only a version,
    /// then entries separated by spaces or newlines (`host|ip|port` or `host:port`);
    /// `#` starts a comment. Returns the version when the file gives one.
    pub fn parse_file(text: &str) -> Result<(Option<u64>, Vec<ClusterNode>), ConfigError> {
        let mut version = None;
        let mut words = Vec::new();
        let mut first = true;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if first {
                first = false;
                if let Ok(v) = line.parse::<u64>() {
                    version = Some(check_version(v)?);
                    continue;
                }
            }
            words.extend(line.split_whitespace());
        }
        let nodes = parse_entries(words.into_iter(), false)?;
        Ok((version, nodes))
    }
}

/// `v` when it is at most [`MAX_VERSION`].
fn check_version(v: u64) -> Result<u64, ConfigError> {
    if v > MAX_VERSION {
        Err(ConfigError::VersionTooHigh(v))
    } else {
        Ok(v)
    }
}

/// Entries into nodes; `strict`: only `host|ip|port` (the wire form).
fn parse_entries<'a>(
    entries: impl Iterator<Item = &'a str>,
    strict: bool,
) -> Result<Vec<ClusterNode>, ConfigError> {
    let mut nodes = Vec::new();
    for e in entries {
        if nodes.len() == MAX_NODES {
            return Err(ConfigError::TooManyNodes);
        }
        if strict && e.split('|').count() != 3 {
            return Err(ConfigError::BadNode(e.chars().take(80).collect()));
        }
        nodes.push(ClusterNode::parse(e)?);
    }
    if nodes.is_empty() {
        return Err(ConfigError::Empty);
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_and_aws_example_length() {
        let c = ClusterConfig::parse_payload(
            b"12\nmyCluster.pc4ldq.0001.use1.cache.amazonaws.com|10.82.235.120|11211 \
myCluster.pc4ldq.0002.use1.cache.amazonaws.com|10.80.249.27|11211\n",
        )
        .unwrap();
        assert_eq!(c.version, 12);
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.nodes[1].ip, "10.80.249.27");
        // ElastiCache's documented example: CONFIG cluster 0 136.
        assert_eq!(c.payload().len(), 136);
        assert_eq!(ClusterConfig::parse_payload(&c.payload()).unwrap(), c);
    }

    #[test]
    fn entries_and_refusals() {
        let n = ClusterNode::parse("a.example|10.0.0.1|11211").unwrap();
        assert_eq!(n.address(), "10.0.0.1:11211");
        let n = ClusterNode::parse("a.example||11211").unwrap();
        assert_eq!(n.address(), "a.example:11211");
        let n = ClusterNode::parse("[::1]:11300").unwrap();
        assert_eq!((n.ip.as_str(), n.address()), ("::1", "[::1]:11300".into()));
        for bad in [
            "a|b|c",
            "a|1.2.3.4|0",
            "|1.2.3.4|5",
            "a|x|5",
            "a|1.2.3.4|5|6",
            "a",
        ] {
            assert!(ClusterNode::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            ClusterConfig::parse_payload(b"x\na||1\n"),
            Err(ConfigError::BadVersion)
        );
        assert_eq!(
            ClusterConfig::parse_payload(b"3\n\n"),
            Err(ConfigError::Empty)
        );
        assert!(ClusterConfig::parse_payload(b"3\nlocalhost:11211\n").is_err());
        // Versions no client could follow are refused, in payloads and files.
        let top = format!("{MAX_VERSION}\na||1\n");
        assert_eq!(
            ClusterConfig::parse_payload(top.as_bytes()).map(|c| c.version),
            Ok(MAX_VERSION)
        );
        for v in [MAX_VERSION + 1, u64::MAX] {
            let p = format!("{v}\na||1\n");
            assert_eq!(
                ClusterConfig::parse_payload(p.as_bytes()),
                Err(ConfigError::VersionTooHigh(v))
            );
            assert_eq!(
                ClusterConfig::parse_file(&p),
                Err(ConfigError::VersionTooHigh(v))
            );
        }
    }

    #[test]
    fn file_form() {
        let (v, nodes) = ClusterConfig::parse_file(
            "# fleet\n7\nlocalhost|127.0.0.1|11211\n127.0.0.1:11212 # second\n\nb.example:1\n",
        )
        .unwrap();
        assert_eq!(v, Some(7));
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[1].to_string(), "127.0.0.1|127.0.0.1|11212");
        assert_eq!(nodes[2].to_string(), "b.example||1");
        let (v, nodes) = ClusterConfig::parse_file("localhost:5 localhost:6").unwrap();
        assert_eq!((v, nodes.len()), (None, 2));
    }
}
